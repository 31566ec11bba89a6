"""What a two-way run did, per side and in all: its summary and the summary as a table row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from syncline.two_way_merge import SIDES, Side


class SideCounts(BaseModel):
    read: int = 0
    created: int = 0
    updated: int = 0
    echoes: int = Field(default=0, description="Syncline's own writes read back, skipped")
    cursor_before: datetime | int | None = None
    cursor_after: datetime | int | None = None


class TwoWaySummary(BaseModel):
    """What one two-way run did, per side and in all."""

    integration: str
    flow_run_id: str | None = None
    full_refresh: bool = False
    started_at: datetime
    finished_at: datetime
    a: SideCounts = Field(default_factory=SideCounts)
    b: SideCounts = Field(default_factory=SideCounts)
    pairs: int = Field(default=0, description="pairs of records looked at")
    conflicts: int = Field(default=0, description="fields changed on both sides, decided")
    held: int = Field(default=0, description="conflicts held for a person (manual)")
    not_created: int = Field(
        default=0, description="records new on one side that the spec's creates leaves there"
    )
    dead_lettered: int = 0
    api_calls: int = 0
    api_retries: int = 0
    rate_limited: int = 0

    @property
    def duration_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def side(self, side: Side) -> SideCounts:
        return self.a if side == "a" else self.b


def two_way_row(summary: TwoWaySummary) -> dict[str, Any]:
    """The summary as one flat row for a table artifact or a terminal."""
    row: dict[str, Any] = {"integration": summary.integration}
    for side in SIDES:
        counts = summary.side(side)
        row.update(
            {
                f"{side}_read": counts.read,
                f"{side}_created": counts.created,
                f"{side}_updated": counts.updated,
                f"{side}_echoes": counts.echoes,
            }
        )
    row.update(
        {
            "pairs": summary.pairs,
            "conflicts": summary.conflicts,
            "held": summary.held,
            "not_created": summary.not_created,
            "dead_lettered": summary.dead_lettered,
            "api_calls": summary.api_calls,
            "duration_s": round(summary.duration_seconds, 2),
        }
    )
    return row
