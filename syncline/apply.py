"""The one apply path: map → write → dead letters → audit → links, for any number of records.

Every way records reach a target goes through ``Applier.apply``: a scheduled sync's batches, a
dead-letter replay, and a handful of records from an event (``apply_records``). So a record
applied alone leaves the ledger (links, audit, dead letters, write intents) exactly as it would
in a batch, and a fix to the path fixes all of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from connectors.base.records import RecordSource, RecordTarget, RejectedRecord, WriteResult
from syncline.mapping import MappedBatch, RecordMapper, jsonable
from syncline.specs import IntegrationSpec
from syncline.state import Ledger, RecordLink


@dataclass(slots=True)
class Applied:
    """What applying one batch did."""

    mapped: MappedBatch
    result: WriteResult
    through: list[str] = field(default_factory=list)  # source keys written or unchanged

    @property
    def dead_lettered(self) -> int:
        return len(self.mapped.rejected) + len(self.result.rejected)


class Applier:
    """Maps source records and writes them to the target with a complete, crash-proof account.

    Writes go through ``AuditedWrites`` (an intent before, the audit after): the audit log holds
    every change, whichever run was cut short.

    ``resolves_as`` is what a dead letter becomes when its record goes through: ``resolved``
    when a later read brought it, ``replayed`` when a replay did.
    """

    def __init__(
        self,
        spec: IntegrationSpec,
        target: RecordTarget,
        ledger: Ledger,
        *,
        flow_run_id: str | None,
        resolves_as: Literal["resolved", "replayed"] = "resolved",
    ) -> None:
        self.spec = spec
        self.target = target
        self.ledger = ledger
        self.flow_run_id = flow_run_id
        self.resolves_as = resolves_as
        self.mapper = RecordMapper(spec)
        self.target_object = f"{spec.target.connector}:{spec.target.object}"
        self.pending_dead_letters = ledger.pending_dead_letter_keys(spec.name)
        self.writes = AuditedWrites(
            target,
            ledger,
            spec.name,
            target_object=self.target_object,
            flow_run_id=flow_run_id,
        )

    async def apply(self, source_batch: pd.DataFrame) -> Applied:
        """Map ``source_batch``, park what does not map, write the rest, account for it all."""
        mapped = self.mapper.apply(source_batch)
        self.ledger.dead_letter(
            self.spec.name, mapped.rejected, stage="map", flow_run_id=self.flow_run_id
        )
        result = await self.write(source_batch, mapped.frame)
        frame = mapped.frame
        if result.rejected:
            rejected = [record.key for record in result.rejected]
            frame = frame.loc[~frame[self.spec.target.key].astype(str).isin(rejected).to_numpy()]
        through = frame.index.astype(str).tolist()
        return Applied(mapped=mapped, result=result, through=through)

    async def write(self, source_batch: pd.DataFrame, frame: pd.DataFrame) -> WriteResult:
        spec, ledger = self.spec, self.ledger
        if spec.deletes.column is not None:
            # A record that is (back) in scope is not deleted: writing it clears the mark.
            frame = frame.assign(**{spec.deletes.column: None})
        result = await self.writes.upsert(frame, spec.target.key)
        ledger.dead_letter(
            spec.name,
            as_source_records(spec, source_batch, frame, result.rejected),
            stage="write",
            flow_run_id=self.flow_run_id,
        )
        _keep_links(spec, ledger, frame, result, self.flow_run_id)
        _close_dead_letters(
            spec,
            ledger,
            frame,
            result,
            self.pending_dead_letters,
            self.flow_run_id,
            status=self.resolves_as,
        )
        return result


class AuditedWrites:
    """A target whose every write is recorded as an intent before and audited after.

    The batch's keys are recorded as an *intent* before the write; the audit rows replace it
    in one ledger transaction once the target confirms. A crash in between leaves the intent
    open, and the next write of those keys (a retry or the next schedule), finding them already
    applied ("unchanged"), audits them as ``applied`` on the interrupted run's behalf.
    """

    def __init__(
        self,
        target: RecordTarget,
        ledger: Ledger,
        integration: str,
        *,
        target_object: str,
        flow_run_id: str | None,
        in_doubt: set[str] | None = None,
    ) -> None:
        """``in_doubt``: the keys of the integration's open intents, when the caller has read
        them already (writers of one run may share the set: a key settled is settled)."""
        self.target = target
        self.ledger = ledger
        self.integration = integration
        self.target_object = target_object
        self.flow_run_id = flow_run_id
        self.in_doubt = in_doubt if in_doubt is not None else open_intent_keys(ledger, integration)

    async def upsert(self, frame: pd.DataFrame, key: str) -> WriteResult:
        keys = frame[key].astype(str).tolist()
        # Ledger writes run in a thread: a read-ahead keeps reading meanwhile.
        intent = await asyncio.to_thread(
            self.ledger.record_intent,
            self.integration,
            target_object=self.target_object,
            keys=keys,
            flow_run_id=self.flow_run_id,
        )
        result = await self.target.upsert(frame, key)
        await asyncio.to_thread(
            self.ledger.audit_batch,
            self.integration,
            target_object=self.target_object,
            actions={"created": result.created, "updated": result.updated},
            flow_run_id=self.flow_run_id,
            intent_id=intent,
        )
        self._settle(keys, result)
        return result

    def _settle(self, keys: list[str], result: WriteResult) -> None:
        if not self.in_doubt:
            return
        written = {str(key) for key in (*result.created, *result.updated)}
        rejected = {record.key for record in result.rejected}
        confirmed = {
            key: "written" if key in written else "unchanged"
            for key in keys
            if key in self.in_doubt and key not in rejected
        }
        if confirmed:
            self.ledger.settle_intents(self.integration, confirmed, flow_run_id=self.flow_run_id)
            self.in_doubt.difference_update(confirmed)


def open_intent_keys(ledger: Ledger, integration: str) -> set[str]:
    """The keys of writes an interrupted run left without their audit."""
    return {key for intent in ledger.open_intents(integration) for key in intent.keys}


def as_source_records(
    spec: IntegrationSpec,
    source_batch: pd.DataFrame,
    written: pd.DataFrame,
    rejected: list[RejectedRecord],
) -> list[RejectedRecord]:
    """Target rejections re-keyed by source key, with the source record as payload.

    Dead letters are replayed through the mapping again, so they keep what the source sent.
    """
    if not rejected:
        return []
    source_key_of = dict(zip(written[spec.target.key].astype(str), written.index, strict=True))
    by_source_key = source_batch.set_index(source_batch[spec.source.key].astype(str))
    records = []
    for record in rejected:
        source_key = source_key_of.get(record.key, record.key)
        payload = record.payload
        if source_key in by_source_key.index:
            payload = jsonable(by_source_key.loc[[source_key]].iloc[-1].to_dict())
        records.append(RejectedRecord(source_key, record.reason, payload))
    return records


def _keep_links(
    spec: IntegrationSpec,
    ledger: Ledger,
    written: pd.DataFrame,
    result: WriteResult,
    flow_run_id: str | None,
) -> None:
    """For targets that choose their own keys: source key → target key, and what was written."""
    if not result.assigned_keys:
        return
    by_target_key = written.reset_index().set_index(spec.target.key, drop=False)
    rows = by_target_key.loc[list(result.assigned_keys)]
    hashes = row_hashes(rows.drop(columns=["source_key"]))
    ledger.save_links(
        spec.name,
        [
            RecordLink(str(source_key), result.assigned_keys[str(target_key)], digest)
            for source_key, target_key, digest in zip(
                rows["source_key"], rows.index, hashes, strict=True
            )
        ],
        flow_run_id=flow_run_id,
    )


def _close_dead_letters(
    spec: IntegrationSpec,
    ledger: Ledger,
    written: pd.DataFrame,
    result: WriteResult,
    pending_dead_letters: set[str],
    flow_run_id: str | None,
    *,
    status: str,
) -> None:
    """Dead letters whose records have now gone through are closed."""
    if not pending_dead_letters:
        return
    rejected = {record.key for record in result.rejected}  # target keys
    target_keys = written[spec.target.key].astype(str)
    recovered = [
        str(source_key)
        for source_key, target_key in zip(written.index, target_keys, strict=True)
        if source_key in pending_dead_letters and target_key not in rejected
    ]
    if recovered:
        ledger.resolve_dead_letters(spec.name, recovered, status=status, flow_run_id=flow_run_id)
        pending_dead_letters.difference_update(recovered)


def row_hashes(frame: pd.DataFrame) -> list[str]:
    """A stable hash of each row as written, to recognise our own writes coming back."""
    return [
        hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()
        for row in frame.to_dict(orient="records")
    ]


async def apply_records(
    spec: IntegrationSpec,
    records: Sequence[Mapping[str, Any]],
    target: RecordTarget,
    ledger: Ledger,
    *,
    source: RecordSource | None = None,
    flow_run_id: str | None = None,
) -> Applied:
    """Apply a handful of source records (e.g. from a webhook) through the same path.

    A webhook can arrive late, twice or partial; when ``source`` can ``fetch`` by key, the
    records are read again from it, so what is written is the record as it is now (a record
    the source no longer has is left alone, for the deletions of the next sync).
    """
    frame = pd.DataFrame.from_records([dict(record) for record in records])
    fetch = getattr(source, "fetch", None)
    if fetch is not None and not frame.empty:
        keys = frame[spec.source.key].astype(str).drop_duplicates().tolist()
        frame = await fetch(keys)
    applier = Applier(spec, target, ledger, flow_run_id=flow_run_id)
    await target.prepare(spec.target_columns(), spec.target.key)
    return await applier.apply(frame)
