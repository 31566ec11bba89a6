"""The outbox → Prefect events: one event per accepted delivery, at least once, in order.

The forwarder drains pending outbox rows in arrival order, in batches, and marks a row emitted
only once Prefect's API has answered that it took the batch. Events go out as one
``POST /api/events`` per batch rather than through ``prefect.events.emit_event``: that hands
events to a background worker and swallows failures, and the ``events/in`` websocket reports
nothing for a message sent, while the POST answers 204 only after the server has taken the
events in, and an error otherwise. An answer lost on the way back means the batch is sent
again: each event's id is its outbox row's id, and Prefect stores and triggers on an event id
once, so a re-emit is harmless.

While the API is unreachable the forwarder waits between attempts (doubling, up to the
configured cap, with jitter) and the rows stay pending, across restarts of either side. A new
delivery wakes it at once (:meth:`OutboxForwarder.wake`), so an event follows its 202 within
milliseconds; it also looks every few seconds, for rows another gateway process committed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from anyio import to_thread
from prefect.events import Event

from syncline.outbox import GatewayOutbox, OutboxEntry

log = logging.getLogger("syncline.gateway")

ForwarderState = Literal["starting", "idle", "emitting", "backing-off", "stopped"]


class EmitUnavailable(Exception):
    """Prefect did not take the events now (unreachable, 5xx, 429, auth): try again later."""


class EmitRefused(Exception):
    """Prefect answered that the events themselves are invalid: sending them again will not help."""


class PrefectEventsAPI:
    """``POST <api>/events`` with Prefect's credentials; raises unless the server took them."""

    def __init__(
        self,
        api_url: str,
        *,
        api_key: str | None = None,
        auth_string: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers: dict[str, str] = {}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        elif auth_string:
            headers["Authorization"] = "Basic " + base64.b64encode(auth_string.encode()).decode()
        self.api_url = api_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.api_url, headers=headers, timeout=timeout, transport=transport
        )

    @classmethod
    def from_prefect_settings(cls) -> PrefectEventsAPI:
        """The API this process's Prefect settings point at (PREFECT_API_URL, key, auth)."""
        from prefect.settings import get_current_settings

        api = get_current_settings().api
        if not api.url:
            raise ValueError(
                "PREFECT_API_URL is not set: the gateway emits into a running Prefect server "
                "(e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api after `syncline up`)"
            )
        key = api.key.get_secret_value() if api.key else None
        auth = api.auth_string.get_secret_value() if api.auth_string else None
        return cls(api.url, api_key=key, auth_string=auth)

    async def emit(self, events: Sequence[dict[str, Any]]) -> None:
        try:
            response = await self._client.post("/events", json=list(events))
        except httpx.HTTPError as error:
            raise EmitUnavailable(f"{type(error).__name__}: {error}") from error
        if response.is_success:
            return
        reason = f"HTTP {response.status_code} from {self.api_url}/events: {response.text[:300]}"
        if response.status_code in (400, 413, 422):
            raise EmitRefused(reason)
        raise EmitUnavailable(reason)

    async def aclose(self) -> None:
        await self._client.aclose()


def prefect_event(entry: OutboxEntry) -> dict[str, Any]:
    """The event for an outbox row, as JSON; its id is the row's.

    ``occurred`` is when the gateway accepted the delivery (the tool's own time, which a
    skewed clock or a late retry can put far off, is in the payload): automations that
    count events within a window count them as they arrived.
    """
    resource = {
        "prefect.resource.id": entry.resource_id,
        "syncline.source": entry.source,
        "syncline.subject-key": entry.subject_key,
    }
    if entry.delivery_id:
        resource["syncline.delivery-id"] = entry.delivery_id
    event = Event(
        id=uuid.UUID(entry.id),
        occurred=entry.received_at,
        event=entry.event,
        resource=resource,
        related=[
            {
                "prefect.resource.id": f"syncline.gateway.{entry.source}",
                "prefect.resource.role": "webhook-source",
            }
        ],
        payload=entry.payload,
    )
    return event.model_dump(mode="json")


@dataclass(slots=True)
class ForwarderStatus:
    state: ForwarderState = "starting"
    emitted: int = 0  # events Prefect took since this process started
    last_emitted_at: datetime | None = None
    last_error: str | None = None
    failures_in_a_row: int = 0
    next_attempt_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        def stamp(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "state": self.state,
            "emitted": self.emitted,
            "last_emitted_at": stamp(self.last_emitted_at),
            "last_error": self.last_error,
            "failures_in_a_row": self.failures_in_a_row,
            "next_attempt_at": stamp(self.next_attempt_at),
        }


class OutboxForwarder:
    """Drains ``outbox`` into ``api``; run :meth:`run` as a task, :meth:`stop` it at exit."""

    def __init__(
        self,
        outbox: GatewayOutbox,
        api: PrefectEventsAPI,
        *,
        batch_size: int = 100,
        min_backoff: timedelta = timedelta(milliseconds=250),
        max_backoff: timedelta = timedelta(seconds=30),
        poll_every: timedelta = timedelta(seconds=5),
        retention: timedelta = timedelta(hours=48),
        prune_every: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.outbox = outbox
        self.api = api
        self.status = ForwarderStatus()
        self._batch_size = batch_size
        self._min_backoff = min_backoff.total_seconds()
        self._max_backoff = max(max_backoff.total_seconds(), self._min_backoff)
        self._poll_every = poll_every.total_seconds()
        self._retention = retention
        self._prune_every = prune_every
        self._clock = clock
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._last_prune: datetime | None = None

    def wake(self) -> None:
        """A delivery was committed: look now (call from the event loop's thread)."""
        self._wake.set()

    async def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Forward until stopped; never raises for a failed emit or an unreachable ledger."""
        backoff = self._min_backoff
        try:
            while not self._stopping.is_set():
                # Cleared before reading: a delivery committed after the read sets it again.
                self._wake.clear()
                try:
                    forwarded = await self._forward_batch()
                    await self._prune_now_and_then()
                except Exception as error:  # EmitUnavailable, or the ledger unreachable
                    await self._back_off(error, backoff)
                    backoff = min(backoff * 2, self._max_backoff)
                    continue
                backoff = self._min_backoff
                if forwarded >= self._batch_size:
                    continue  # more are waiting
                self.status.state = "idle"
                await self._sleep(self._poll_every, wake_on_delivery=True)
        finally:
            self.status.state = "stopped"

    async def _forward_batch(self) -> int:
        entries = await to_thread.run_sync(self.outbox.pending, self._batch_size)
        if not entries:
            return 0
        self.status.state = "emitting"
        ids = [entry.id for entry in entries]
        try:
            await self._emit(entries)
        except EmitUnavailable as error:
            await to_thread.run_sync(self.outbox.record_failure, ids, str(error))
            raise
        return len(entries)

    async def _emit(self, entries: list[OutboxEntry]) -> None:
        """Emit ``entries`` and mark them; a refused batch goes again one by one."""
        try:
            await self.api.emit([prefect_event(entry) for entry in entries])
        except (EmitRefused, ValueError) as error:  # ValueError: an event that will not build
            if len(entries) == 1:
                await self._reject(entries[0], error)
                return
            for entry in entries:
                await self._emit([entry])
            return
        now = self._clock()
        await to_thread.run_sync(self.outbox.mark_emitted, [entry.id for entry in entries], now)
        self.status.emitted += len(entries)
        self.status.last_emitted_at = now
        self.status.last_error = None
        self.status.failures_in_a_row = 0
        self.status.next_attempt_at = None

    async def _reject(self, entry: OutboxEntry, error: Exception) -> None:
        reason = f"Prefect refused the event: {error}"
        log.error(
            "gateway: %s delivery %s (%s) was not emitted and will not be retried: %s",
            entry.source,
            entry.id,
            entry.event,
            reason,
        )
        await to_thread.run_sync(self.outbox.mark_rejected, entry.id, reason, self._clock())

    async def _back_off(self, error: Exception, backoff: float) -> None:
        delay = backoff * random.uniform(0.8, 1.2)
        self.status.state = "backing-off"
        self.status.failures_in_a_row += 1
        self.status.last_error = f"{type(error).__name__}: {error}"[:500]
        self.status.next_attempt_at = self._clock() + timedelta(seconds=delay)
        # The first failure is news; the rest of an outage is in /healthz.
        level = logging.WARNING if self.status.failures_in_a_row == 1 else logging.DEBUG
        log.log(level, "gateway: cannot emit yet, retrying in %.1fs: %s", delay, error)
        await self._sleep(delay, wake_on_delivery=False)

    async def _sleep(self, seconds: float, *, wake_on_delivery: bool) -> None:
        waiters = [asyncio.ensure_future(self._stopping.wait())]
        if wake_on_delivery:
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter

    async def _prune_now_and_then(self) -> None:
        now = self._clock()
        if self._last_prune is not None and now - self._last_prune < self._prune_every:
            return
        self._last_prune = now
        pruned = await to_thread.run_sync(
            lambda: self.outbox.prune(now=now, retention=self._retention)
        )
        if pruned:
            log.info("gateway: pruned %d emitted outbox row(s) past the retention", pruned)
