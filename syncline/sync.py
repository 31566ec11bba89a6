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

from connectors.base.http import CallStats
from connectors.base.records import (
    CursorValue,
    ReadWindow,
    RecordSource,
    RecordTarget,
    RejectedRecord,
    WriteResult,
)
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

    ``logger`` receives the progress lines (flows pass their run logger, so they show in
    the Prefect UI).
    """
    started = now()
    cursor_spec = spec.source.cursor
    before = None if full_refresh or cursor_spec is None else ledger.read_cursor(spec.name)
    window = ReadWindow(
        cursor_field=cursor_spec.field if cursor_spec else None,
        since=window_start(before, cursor_spec),
        until=_read_until(started) if cursor_spec and cursor_spec.type == "datetime" else None,
        batch_size=spec.batch_size,
    )
    summary = SyncSummary(
        integration=spec.name,
        flow_run_id=flow_run_id,
        full_refresh=full_refresh,
        started_at=started,
        finished_at=started,
        cursor_before=before,
    )
    logger.info(
        "%s: reading %s.%s changed since %s",
        spec.name,
        spec.source.connector,
        spec.source.object,
        window.since or "the beginning",
    )
    mapper = RecordMapper(spec)
    batches = ReadAhead(source.read(window))
    try:
        await target.prepare(spec.target_columns(), spec.target.key)
    except BaseException:
        await batches.aclose()
        raise
    pending_dead_letters = ledger.pending_dead_letter_keys(spec.name)
    newest: CursorValue | None = None
    clock = time.perf_counter()
    async for batch in batches:
        summary.batches += 1
        summary.read += len(batch)
        if window.cursor_field:
            newest = _newest(newest, source.max_cursor(batch, window.cursor_field))
        mapped = mapper.apply(batch)
        summary.filtered += mapped.filtered
        ledger.dead_letter(spec.name, mapped.rejected, stage="map", flow_run_id=flow_run_id)
        result = await target.upsert(mapped.frame, spec.target.key)
        ledger.dead_letter(
            spec.name,
            as_source_records(spec, batch, mapped.frame, result.rejected),
            stage="write",
            flow_run_id=flow_run_id,
        )
        _account(spec, ledger, mapped.frame, result, pending_dead_letters, flow_run_id)
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
    summary.finished_at = now()
    summary.cursor_after = _newest(before, newest)
    lag_from = summary.cursor_after
    if isinstance(lag_from, datetime):
        summary.data_lag_seconds = max(0.0, (summary.finished_at - lag_from).total_seconds())
    _add_calls(summary, source.call_stats())
    _add_calls(summary, target.call_stats())
    return summary


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


def _account(
    spec: IntegrationSpec,
    ledger: Ledger,
    written: pd.DataFrame,
    result: WriteResult,
    pending_dead_letters: set[str],
    flow_run_id: str | None,
) -> None:
    """Audit the applied changes, keep links, and close dead letters that now went through."""
    target_object = f"{spec.target.connector}:{spec.target.object}"
    for action, keys in (("created", result.created), ("updated", result.updated)):
        ledger.audit(
            spec.name,
            action=action,
            target_object=target_object,
            keys=keys,
            flow_run_id=flow_run_id,
        )
    if result.assigned_keys:
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
    if pending_dead_letters:
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
