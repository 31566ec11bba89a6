"""The incremental sync pipeline: read by cursor, map, upsert, account; free of Prefect.

    source ──batches──▶ mapper ──▶ target.upsert (by key) ──▶ ledger: audit, links, dead letters

The cursor is *not* moved here: ``run_sync`` returns the newest cursor it saw, and the caller
commits it once the writes are confirmed (the flow does so in its own task). A run that dies
before that commit is simply run again: it rereads the same window and the upsert finds every
record already written, so nothing is duplicated and nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field

from connectors.base.records import (
    CursorValue,
    ReadWindow,
    RecordSource,
    RecordTarget,
    RejectedRecord,
    WriteResult,
)
from connectors.base.stats import CallStats
from syncline.deletes import Deletions
from syncline.mapping import RecordMapper, jsonable
from syncline.specs import CursorSpec, IntegrationSpec
from syncline.state import Ledger, RecordLink

log = logging.getLogger("syncline.sync")


class SyncProgress(BaseModel):
    batches: int
    read: int
    written: int
    dead_lettered: int
    expected: int | None = None

    @property
    def percent(self) -> float | None:
        if not self.expected:
            return None
        return min(100.0, 100.0 * self.read / self.expected)


class SyncSummary(BaseModel):
    """What one run did; shown as the run's table artifact and kept in the ledger."""

    integration: str
    flow_run_id: str | None = None
    full_refresh: bool = False
    started_at: datetime
    finished_at: datetime
    read: int = 0
    filtered: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    dead_lettered: int = 0
    deleted: int = Field(default=0, description="target records deleted or marked deleted")
    unread: int = Field(
        default=0, description="records the source counted but would not deliver (access rules)"
    )
    delete_scan: bool = Field(default=False, description="a key scan for hard deletes ran")
    batches: int = 0
    cursor_before: datetime | int | None = None
    cursor_after: datetime | int | None = None
    data_lag_seconds: float | None = Field(
        default=None, description="now minus the newest change read (or the cursor if none)"
    )
    api_calls: int = 0
    api_retries: int = 0
    rate_limited: int = 0

    @property
    def duration_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def written(self) -> int:
        return self.created + self.updated


def window_start(cursor: CursorValue | None, spec: CursorSpec | None) -> CursorValue | None:
    """Where to start reading: the cursor minus the overlap, so boundary records are reread."""
    if cursor is None or spec is None:
        return None
    if isinstance(cursor, datetime):
        return cursor - spec.overlap
    return cursor - spec.overlap_count


def _read_until(started: datetime) -> datetime:
    """The last whole second before the run began: the read window's fixed upper end.

    Changes made while we read belong to the next run. Ending the window a full second before
    the start means a record updated mid-read always *leaves* the window (its new timestamp is
    later), which paged sources detect; it can never move within it and shift pages unseen.
    """
    return started.replace(microsecond=0) - timedelta(seconds=1)


def row_hashes(frame: pd.DataFrame) -> list[str]:
    """A stable hash of each row as written, to recognise our own writes coming back."""
    return [
        hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()
        for row in frame.to_dict(orient="records")
    ]


class ReadAhead:
    """Reads the next batch while the current one is mapped and written.

    Reading starts as soon as this is made (so it also overlaps the target's preparation);
    at most ``depth`` batches wait, so memory stays bounded by the batch size.
    """

    def __init__(self, batches: AsyncIterator[pd.DataFrame], depth: int = 1) -> None:
        self._queue: asyncio.Queue[pd.DataFrame | Exception | None] = asyncio.Queue(depth)
        self._producer = asyncio.create_task(self._produce(batches))

    async def _produce(self, batches: AsyncIterator[pd.DataFrame]) -> None:
        try:
            async for batch in batches:
                await self._queue.put(batch)
        except Exception as error:  # handed to the consumer, raised there
            await self._queue.put(error)
            return
        await self._queue.put(None)

    def __aiter__(self) -> AsyncIterator[pd.DataFrame]:
        return self._consume()

    async def _consume(self) -> AsyncIterator[pd.DataFrame]:
        try:
            while (item := await self._queue.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        self._producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._producer


def _newest(a: CursorValue | None, b: CursorValue | None) -> CursorValue | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _add_calls(summary: SyncSummary, stats: CallStats | None) -> None:
    if stats is not None:
        summary.api_calls += stats.requests
        summary.api_retries += stats.retries
        summary.rate_limited += stats.rate_limited


async def run_sync(
    spec: IntegrationSpec,
    source: RecordSource,
    target: RecordTarget,
    ledger: Ledger,
    *,
    flow_run_id: str | None = None,
    full_refresh: bool = False,
    on_progress: Callable[[SyncProgress], Awaitable[None]] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = log,
) -> SyncSummary:
    """Read everything changed since the cursor, map it, upsert it; report what happened.

    The run is entered in the ledger's run history as it starts; a run that raises is marked
    failed there with its cause (the cursor is committed, and the run marked completed, by
    ``finish_run`` once the caller has the summary). ``logger`` receives the progress lines
    (flows pass their run logger, so they show in the Prefect UI).
    """
    started = now()
    run_id = flow_run_id or "local"
    ledger.run_started(spec.name, run_id, started_at=started)
    summary = SyncSummary(
        integration=spec.name,
        flow_run_id=flow_run_id,
        full_refresh=full_refresh,
        started_at=started,
        finished_at=started,
    )
    try:
        await _sync(spec, source, target, ledger, summary, on_progress, now, logger)
    except BaseException as error:
        summary.finished_at = now()
        _add_calls(summary, source.call_stats())
        _add_calls(summary, target.call_stats())
        ledger.run_failed(
            spec.name,
            run_id,
            error=f"{type(error).__name__}: {error}",
            summary=summary.model_dump(mode="json"),
        )
        raise
    return summary


async def _sync(
    spec: IntegrationSpec,
    source: RecordSource,
    target: RecordTarget,
    ledger: Ledger,
    summary: SyncSummary,
    on_progress: Callable[[SyncProgress], Awaitable[None]] | None,
    now: Callable[[], datetime],
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> None:
    flow_run_id = summary.flow_run_id
    cursor_spec = spec.source.cursor
    before = None if summary.full_refresh or cursor_spec is None else ledger.read_cursor(spec.name)
    summary.cursor_before = before
    window = ReadWindow(
        cursor_field=cursor_spec.field if cursor_spec else None,
        since=window_start(before, cursor_spec),
        until=(
            _read_until(summary.started_at)
            if cursor_spec and cursor_spec.type == "datetime"
            else None
        ),
        batch_size=spec.batch_size,
    )
    logger.info(
        "%s: reading %s.%s changed since %s",
        spec.name,
        spec.source.connector,
        spec.source.object,
        window.since or "the beginning",
    )
    # Fields the source does not have would reach the mapping as NULLs in every row.
    await source.prepare(spec.source_fields())
    mapper = RecordMapper(spec)
    batches = ReadAhead(source.read(window))
    try:
        await target.prepare(spec.target_columns(), spec.target.key)
    except BaseException:
        await batches.aclose()
        raise
    writer = BatchWriter(spec, target, ledger, flow_run_id=flow_run_id)
    deletions = Deletions(
        spec,
        source,
        target,
        ledger,
        full_refresh=summary.full_refresh,
        flow_run_id=flow_run_id,
        now=now,
        logger=logger,
    )
    await deletions.before_writes()
    newest: CursorValue | None = None
    clock = time.perf_counter()
    async for batch in batches:
        summary.batches += 1
        summary.read += len(batch)
        if window.cursor_field:
            newest = _newest(newest, source.max_cursor(batch, window.cursor_field))
        mapped = mapper.apply(batch)
        deletions.saw(batch, mapped)
        summary.filtered += mapped.filtered
        ledger.dead_letter(spec.name, mapped.rejected, stage="map", flow_run_id=flow_run_id)
        result = await writer.write(batch, mapped.frame)
        summary.created += len(result.created)
        summary.updated += len(result.updated)
        summary.unchanged += result.unchanged
        summary.dead_lettered += len(mapped.rejected) + len(result.rejected)
        if on_progress is not None:
            await on_progress(
                SyncProgress(
                    batches=summary.batches,
                    read=summary.read,
                    written=summary.written,
                    dead_lettered=summary.dead_lettered,
                    expected=source.expected_rows(),
                )
            )
        logger.info(
            "%s: batch %d: %d read, %d created, %d updated, %d unchanged, %d dead-lettered "
            "(%.0f rows/s so far)",
            spec.name,
            summary.batches,
            len(batch),
            len(result.created),
            len(result.updated),
            result.unchanged,
            len(mapped.rejected) + len(result.rejected),
            summary.read / max(time.perf_counter() - clock, 1e-9),
        )
    summary.unread = source.unread()
    if summary.unread:
        logger.warning(
            "%s: %s.%s counted %d record(s) it did not deliver, even when asked again "
            "(hidden by access rules?); they are not in this run",
            spec.name,
            spec.source.connector,
            spec.source.object,
            summary.unread,
        )
    deleted = await deletions.apply(window)
    summary.deleted = deleted.deleted
    summary.delete_scan = deleted.scanned
    summary.finished_at = now()
    summary.cursor_after = _newest(before, newest)
    lag_from = summary.cursor_after
    if isinstance(lag_from, datetime):
        summary.data_lag_seconds = max(0.0, (summary.finished_at - lag_from).total_seconds())
    _add_calls(summary, source.call_stats())
    _add_calls(summary, target.call_stats())


def finish_run(ledger: Ledger, summary: SyncSummary) -> None:
    """After the writes are confirmed: move the cursor, then enter the run as completed."""
    if summary.cursor_after is not None:
        ledger.commit_cursor(
            summary.integration, summary.cursor_after, flow_run_id=summary.flow_run_id
        )
    ledger.run_finished(
        summary.integration, summary.flow_run_id or "local", summary.model_dump(mode="json")
    )


class BatchWriter:
    """Writes mapped batches to the target with a complete audit, even across crashes.

    Before each write the batch's keys are recorded as an *intent*; the audit rows replace it
    in one ledger transaction once the target confirms. A crash in between leaves the intent
    open, and the next run (a retry or the next schedule) rereads those records, finds them
    already applied ("unchanged"), and audits them as ``applied`` on the interrupted run's
    behalf: the audit log holds every change, whichever run was cut short.
    """

    def __init__(
        self,
        spec: IntegrationSpec,
        target: RecordTarget,
        ledger: Ledger,
        *,
        flow_run_id: str | None,
    ) -> None:
        self.spec = spec
        self.target = target
        self.ledger = ledger
        self.flow_run_id = flow_run_id
        self.target_object = f"{spec.target.connector}:{spec.target.object}"
        self.pending_dead_letters = ledger.pending_dead_letter_keys(spec.name)
        self.in_doubt = {key for intent in ledger.open_intents(spec.name) for key in intent.keys}

    async def write(self, source_batch: pd.DataFrame, frame: pd.DataFrame) -> WriteResult:
        spec, ledger = self.spec, self.ledger
        if spec.deletes.column is not None:
            # A record that is (back) in scope is not deleted: writing it clears the mark.
            frame = frame.assign(**{spec.deletes.column: None})
        keys = frame[spec.target.key].astype(str).tolist()
        # Ledger writes run in a thread: the read-ahead keeps reading meanwhile.
        intent = await asyncio.to_thread(
            ledger.record_intent,
            spec.name,
            target_object=self.target_object,
            keys=keys,
            flow_run_id=self.flow_run_id,
        )
        result = await self.target.upsert(frame, spec.target.key)
        await asyncio.to_thread(
            ledger.audit_batch,
            spec.name,
            target_object=self.target_object,
            actions={"created": result.created, "updated": result.updated},
            flow_run_id=self.flow_run_id,
            intent_id=intent,
        )
        ledger.dead_letter(
            spec.name,
            as_source_records(spec, source_batch, frame, result.rejected),
            stage="write",
            flow_run_id=self.flow_run_id,
        )
        self._settle(keys, result)
        _keep_links(spec, ledger, frame, result, self.flow_run_id)
        _close_dead_letters(
            spec, ledger, frame, result, self.pending_dead_letters, self.flow_run_id
        )
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
            self.ledger.settle_intents(self.spec.name, confirmed, flow_run_id=self.flow_run_id)
            self.in_doubt.difference_update(confirmed)


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
) -> None:
    """Dead letters whose records have now gone through are resolved."""
    if not pending_dead_letters:
        return
    rejected = {record.key for record in result.rejected}
    recovered = [
        key
        for key in written.index[written.index.isin(list(pending_dead_letters))]
        if key not in rejected
    ]
    if recovered:
        ledger.resolve_dead_letters(
            spec.name, recovered, status="resolved", flow_run_id=flow_run_id
        )
        pending_dead_letters.difference_update(recovered)


def summary_row(summary: SyncSummary) -> dict[str, Any]:
    """The summary as one flat row for a table artifact or a terminal."""
    return {
        "integration": summary.integration,
        "read": summary.read,
        "created": summary.created,
        "updated": summary.updated,
        "unchanged": summary.unchanged,
        "filtered": summary.filtered,
        "dead_lettered": summary.dead_lettered,
        "deleted": summary.deleted,
        "unread": summary.unread,
        "cursor_before": _text(summary.cursor_before),
        "cursor_after": _text(summary.cursor_after),
        "data_lag": _lag(summary.data_lag_seconds),
        "api_calls": summary.api_calls,
        "api_retries": summary.api_retries,
        "rate_limited": summary.rate_limited,
        "duration_s": round(summary.duration_seconds, 2),
    }


def _text(value: CursorValue | None) -> str:
    if value is None:
        return "-"
    return value.isoformat(sep=" ") if isinstance(value, datetime) else str(value)


def _lag(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return str(timedelta(seconds=round(seconds)))
