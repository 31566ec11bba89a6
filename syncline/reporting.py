"""Run summaries as people read them: a markdown report for the Prefect UI and terminals."""

from __future__ import annotations

from typing import Any

from syncline.sync import SyncSummary, summary_row
from syncline.two_way_summary import TwoWaySummary, two_way_row


def _table(title: str, run: str | None, full_refresh: bool, row: dict[str, Any]) -> list[str]:
    """A report's heading and its table of measures."""
    return [
        f"# {title}",
        "",
        f"Run `{run or 'local'}`" + (" (full refresh)" if full_refresh else " (incremental)"),
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {name.replace('_', ' ')} | {value} |" for name, value in row.items()),
    ]


def summary_markdown(summary: SyncSummary) -> str:
    lines = _table(
        summary.integration, summary.flow_run_id, summary.full_refresh, summary_row(summary)
    )
    if summary.dead_lettered:
        lines += [
            "",
            f"**{summary.dead_lettered} record(s) were dead-lettered.** Inspect them with "
            f"`syncline dead-letters {summary.integration}` and retry them with the "
            "`replay-dead-letters` flow once the cause is fixed.",
        ]
    return "\n".join(lines) + "\n"


def two_way_markdown(summary: TwoWaySummary) -> str:
    lines = _table(
        f"{summary.integration} (both ways)",
        summary.flow_run_id,
        summary.full_refresh,
        two_way_row(summary),
    )
    if summary.held:
        lines += [
            "",
            f"**{summary.held} conflict(s) are held for a person** (policy `manual`): each dead "
            "letter holds both versions. Make the two records agree (edit either one) and the "
            "next run carries on.",
        ]
    if summary.dead_lettered:
        lines += [
            "",
            f"**{summary.dead_lettered} record(s) or pair(s) were dead-lettered.** Inspect them "
            f"with `syncline dead-letters {summary.integration}`; every run retries them.",
        ]
    return "\n".join(lines) + "\n"
