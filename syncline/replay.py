"""Replaying dead letters: map the parked source records again and write them.

A record that now goes through is marked ``replayed``; one that fails again stays ``pending``
with its new reason and one more attempt counted. Replaying twice is harmless: the upsert
finds what the first replay wrote.
"""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel

from connectors.base.records import RecordTarget
from syncline.mapping import RecordMapper
from syncline.specs import IntegrationSpec
from syncline.state import Ledger
from syncline.sync import as_source_records


class ReplaySummary(BaseModel):
    integration: str
    attempted: int = 0
    replayed: int = 0
    still_failing: int = 0


async def replay_dead_letters(
    spec: IntegrationSpec,
    target: RecordTarget,
    ledger: Ledger,
    *,
    flow_run_id: str | None = None,
    limit: int | None = None,
) -> ReplaySummary:
    letters = ledger.dead_letters(spec.name, status="pending")[:limit]
    summary = ReplaySummary(integration=spec.name, attempted=len(letters))
    if not letters:
        return summary
    source = pd.DataFrame.from_records([letter.payload for letter in letters])
    mapped = RecordMapper(spec).apply(source)
    ledger.dead_letter(spec.name, mapped.rejected, stage="map", flow_run_id=flow_run_id)
    await target.prepare(spec.target_columns(), spec.target.key)
    result = await target.upsert(mapped.frame, spec.target.key)
    rejected = as_source_records(spec, source, mapped.frame, result.rejected)
    ledger.dead_letter(spec.name, rejected, stage="write", flow_run_id=flow_run_id)
    failed = {record.key for record in rejected}
    through = [key for key in mapped.frame.index if key not in failed]
    target_object = f"{spec.target.connector}:{spec.target.object}"
    for action, keys in (("created", result.created), ("updated", result.updated)):
        ledger.audit(
            spec.name, action=action, target_object=target_object, keys=keys,
            flow_run_id=flow_run_id,
        )  # fmt: skip
    summary.replayed = ledger.resolve_dead_letters(
        spec.name, through, status="replayed", flow_run_id=flow_run_id
    )
    summary.still_failing = len(mapped.rejected) + len(rejected)
    return summary
