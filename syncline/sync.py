"""The incremental sync pipeline: read by cursor, map, upsert, account; free of Prefect.

    source ──batches──▶ apply (syncline.apply: map, upsert by key, audit, links, dead letters)

The cursor is *not* moved here: ``run_sync`` returns the newest cursor it saw, and the caller
commits it once the writes are confirmed (the flow does so in its own task). A run that dies
before that commit is simply run again: it rereads the same window and the upsert finds every
record already written, so nothing is duplicated and nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
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
)
from connectors.base.stats import CallStats
from syncline.apply import Applier
from syncline.deletes import Deletions
from syncline.specs import CursorSpec, IntegrationSpec
from syncline.state import Ledger

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


def read_until(started: datetime) -> datetime:
    """The last whole second before the run began: the read window's fixed upper end.

    Changes made while we read belong to the next run; the whole second keeps a change made
    in the run's first second out of this run's window. That is all it does for correctness:
    with the source's clock behind ours, a record updated mid-read can stay inside the window
    and move later in the order, which only keyset paging (``connectors.base.keyset``) reads
    without skipping; the next run's overlap rereads what changed near the cursor.
    """
    return started.replace(microsecond=0) - timedelta(seconds=1)


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
            read_until(summary.started_at)
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
    batches = ReadAhead(source.read(window))
    try:
        await target.prepare(spec.target_columns(), spec.target.key)
    except BaseException:
        await batches.aclose()
        raise
    applier = Applier(spec, target, ledger, flow_run_id=flow_run_id)
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
        applied = await applier.apply(batch)
        mapped, result = applied.mapped, applied.result
        deletions.saw(batch, mapped)
        summary.filtered += mapped.filtered
        summary.created += len(result.created)
        summary.updated += len(result.updated)
        summary.unchanged += result.unchanged
        summary.dead_lettered += applied.dead_lettered
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
            applied.dead_lettered,
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
