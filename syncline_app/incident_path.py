"""The warm incident path: alert deliveries reach their incidents within a second.

A deployment triggered by the gateway's event starts its run ~16 s later with a stock worker
(the worker polls, then starts a new Python process). This path instead lives in a process
that is already up, the gateway's own (``with_incident_path``) or one of its own (``syncline
alerts serve``): it wakes when the gateway answers 2xx to a delivery (in the gateway's
process) or when its short poll of the outbox finds one (any process), and runs the SAME flow,
``alert-to-incident``, in-process, so every batch is a flow run in the Prefect UI with its
logs and incidents table.

Storms: deliveries arriving while a run drains are taken by that run's next batch, or by the
next run, which starts as soon as the previous one ends. So a thousand alerts make a handful
of runs of a few batches each, coalesced per alert, never a process per alert.

The triggered deployment stays what users see, trigger and rerun: its runs drain the same
outbox with the same claims, so whichever drainer comes first applies a delivery, once. While
the Prefect API is down no run can start here: deliveries wait in the outbox (the gateway
still accepts them) and the path retries with a growing pause, then drains them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

from syncline.alert_claims import AlertClaims
from syncline.alert_spec import DEFAULT_ALERT_SPEC
from syncline.settings import SynclineSettings
from syncline.state import Ledger

log = logging.getLogger("syncline.incident_path")

# How often the application records of deliveries the outbox pruned are deleted.
PRUNE_EVERY = timedelta(hours=1)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class IncidentPath:
    """Drains alert deliveries into incidents by running ``alert-to-incident`` in-process.

    ``poll_interval``: how often the outbox is looked at without a wake-up (deliveries stored
    by another process); ``max_backoff``: the longest pause after failed runs.
    """

    def __init__(
        self,
        *,
        alert_spec: str = DEFAULT_ALERT_SPEC,
        ledger_url: str | None = None,
        poll_interval: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self.alert_spec = alert_spec
        self.ledger_url = ledger_url or SynclineSettings().ledger()
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.runs = 0
        self.failures = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        """A delivery was stored: look now (call from the path's event loop)."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name="syncline-incident-path")

    async def stop(self) -> None:
        """Finish the run in progress (its claims are recorded or released), then stop."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    async def run(self) -> None:
        from flows.alert_to_incident import alert_to_incident

        ledger = Ledger(self.ledger_url)
        claims = AlertClaims(ledger.engine)
        pause = self.poll_interval
        next_prune = datetime.now(UTC)
        log.info("incident path: draining %s into incidents", self.alert_spec)
        try:
            while not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=pause)
                self._wake.clear()
                if self._stopping:
                    break
                try:
                    now = datetime.now(UTC)
                    if now >= next_prune:
                        await asyncio.to_thread(claims.prune)
                        next_prune = now + PRUNE_EVERY
                    if await asyncio.to_thread(claims.claimable, now) == 0:
                        pause = self.poll_interval  # nothing, or all held by another drainer
                        continue
                    # Another drainer's claims are not waited for here: the next look is soon.
                    report = await alert_to_incident(
                        alert_spec=self.alert_spec, wait_for_others=0.0
                    )
                    self.runs += 1
                    pause = self.poll_interval
                    if report.entries:
                        self._wake.set()  # deliveries that came during the run: look now
                except Exception as error:  # the API or the target is down: wait, retry
                    self.failures += 1
                    pause = min(max(pause * 2, 1.0), self.max_backoff)
                    log.warning(
                        "incident path: run failed (%s: %s); next try in %.0f s",
                        type(error).__name__,
                        str(error)[:300],
                        pause,
                    )
        finally:
            ledger.dispose()
            log.info("incident path: stopped after %d runs", self.runs)


def with_incident_path(app: ASGIApp, path: IncidentPath) -> ASGIApp:
    """``app`` (the webhook gateway) with ``path`` running beside it: started and stopped with
    the app's lifespan, woken by every 2xx answer to ``POST /hooks/...`` (the delivery is in
    the outbox by then)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":

            async def lifespan_receive() -> Message:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    path.start()
                elif message["type"] == "lifespan.shutdown":
                    await path.stop()
                return message

            await app(scope, lifespan_receive, send)
            return
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/hooks/"):
            await app(scope, receive, send)
            return

        async def send_and_wake(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                path.wake()

        await app(scope, receive, send_and_wake)

    return wrapped


def serve(alert_spec: str = DEFAULT_ALERT_SPEC, *, poll_interval: float = 0.25) -> int:
    """``syncline alerts serve``: the path in a process of its own, polling the outbox."""
    # The path logs between flow runs too: those lines stay in this process's log.
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    path = IncidentPath(alert_spec=alert_spec, poll_interval=poll_interval)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per API call
    print(
        f"Syncline incident path: {alert_spec}, outbox polled every {poll_interval} s", flush=True
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(path.run())
    return 0
