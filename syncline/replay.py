"""Replaying dead letters: the parked source records go through the apply path again.

A record that now goes through is marked ``replayed``; one that fails again stays ``pending``
with its new reason and one more attempt counted. Replaying twice is harmless: the upsert
finds what the first replay wrote.
"""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel

from connectors.base.records import RecordTarget
from syncline.apply import Applier
from syncline.specs import IntegrationSpec
from syncline.state import Ledger
from syncline.two_way import TwoWaySpec
from syncline.two_way_endpoints import Endpoint
from syncline.two_way_merge import SIDES, Side
from syncline.two_way_sync import run_two_way


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
    await target.prepare(spec.target_columns(), spec.target.key)
    applier = Applier(spec, target, ledger, flow_run_id=flow_run_id, resolves_as="replayed")
    applied = await applier.apply(pd.DataFrame.from_records([letter.payload for letter in letters]))
    summary.replayed = len(applied.through)
    summary.still_failing = applied.dead_lettered
    return summary


async def replay_two_way_letters(
    spec: TwoWaySpec,
    a: Endpoint,
    b: Endpoint,
    ledger: Ledger,
    *,
    flow_run_id: str | None = None,
    limit: int | None = None,
) -> ReplaySummary:
    """A two-way integration's letters name records (``a:<key>``, ``b:<key>``), not payloads:
    they are decided again from both sides as they are now, like an event naming them."""
    letters = ledger.dead_letters(spec.name, status="pending")[:limit]
    summary = ReplaySummary(integration=spec.name, attempted=len(letters))
    only: dict[Side, list[str]] = {side: [] for side in SIDES}
    for letter in letters:
        side, _, key = letter.source_key.partition(":")
        if side in only and key:
            only["a" if side == "a" else "b"].append(key)
    if not letters:
        return summary
    await run_two_way(
        spec, a, b, ledger, flow_run_id=flow_run_id, only=only, resolves_as="replayed"
    )
    still = ledger.pending_dead_letter_keys(spec.name)
    summary.still_failing = sum(letter.source_key in still for letter in letters)
    summary.replayed = summary.attempted - summary.still_failing
    return summary
