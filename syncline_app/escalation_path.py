"""The warm escalation path: a Jira comment or a ServiceNow change crosses within a second.

As the warm incident path (``syncline_app.incident_path``) does for alerts: a process that is
already up (the gateway's own, wrapped with ``with_escalation_path``, or one of its own,
``python -m syncline_app.escalation_path``) wakes when the gateway accepts a delivery or when
its short poll of the outbox finds one, and runs the SAME flow as the triggered deployment,
``servicenow-jira-escalation``, in-process: every drain is a flow run in the Prefect UI.

Storms: a drain takes every waiting event in batches; events that arrive meanwhile are taken
by its next batch or by the next drain, which starts as soon as it ends. One lease per
integration in the ledger keeps the warm path and the deployment's runs from carrying the same
change at once: the path starts a run only when events wait and nobody holds the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

from syncline.escalation import event_prefix
from syncline.journal_links import EscalationLedger
from syncline.settings import SynclineSettings
from syncline.specs import find_integration
from syncline.state import Ledger
from syncline.two_way import TwoWaySpec

log = logging.getLogger("syncline.escalation_path")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_INTEGRATION = "servicenow-jira-escalation"


class EscalationPath:
    """Carries record-change events by running ``servicenow-jira-escalation`` in-process."""

    def __init__(
        self,
        *,
        integration: str = DEFAULT_INTEGRATION,
        ledger_url: str | None = None,
        poll_interval: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self.integration = integration
        self.ledger_url = ledger_url or SynclineSettings().ledger()
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.runs = 0
        self.failures = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """A delivery was stored: look now (call from the path's event loop)."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name="syncline-escalation-path")

    async def stop(self) -> None:
        """Finish the run in progress (its lease is given back), then stop."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    def _waiting(self, links: EscalationLedger, prefixes: list[str]) -> bool:
        """Events wait and no drainer holds the integration."""
        if links.lease_holder(self.integration, datetime.now(UTC)) is not None:
            return False
        return links.backlog(self.integration, prefixes) > 0

    async def run(self) -> None:
        from flows.escalation import escalation

        spec = find_integration(SynclineSettings().specs_dir, self.integration)
        if not isinstance(spec, TwoWaySpec):
            raise ValueError(f"{self.integration!r} is not a two-way integration")
        prefixes = [event_prefix(spec.a), event_prefix(spec.b)]
        ledger = Ledger(self.ledger_url)
        links = EscalationLedger(ledger.engine)
        pause = self.poll_interval
        log.info("escalation path: carrying the record changes of %s", self.integration)
        try:
            while not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=pause)
                self._wake.clear()
                if self._stopping:
                    break
                try:
                    if not await asyncio.to_thread(self._waiting, links, prefixes):
                        pause = self.poll_interval
                        continue
                    report = await escalation(integration=self.integration)
                    self.runs += 1
                    pause = self.poll_interval
                    if report.events:
                        self._wake.set()  # deliveries that came during the run: look now
                except Exception as error:  # the API or a system is down: wait, retry
                    self.failures += 1
                    pause = min(max(pause * 2, 1.0), self.max_backoff)
                    log.warning(
                        "escalation path: run failed (%s: %s); next try in %.0f s",
                        type(error).__name__,
                        str(error)[:300],
                        pause,
                    )
        finally:
            ledger.dispose()
            log.info("escalation path: stopped after %d runs", self.runs)


def with_escalation_path(app: ASGIApp, path: EscalationPath) -> ASGIApp:
    """``app`` (the webhook gateway) with ``path`` beside it: started and stopped with the
    app's lifespan, woken by every 2xx answer to ``POST /hooks/jira`` or
    ``/hooks/servicenow``."""

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
        route = str(scope.get("path", ""))
        if scope["type"] != "http" or route not in ("/hooks/jira", "/hooks/servicenow"):
            await app(scope, receive, send)
            return

        async def send_and_wake(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                path.wake()

        await app(scope, receive, send_and_wake)

    return wrapped


def serve(integration: str = DEFAULT_INTEGRATION, *, poll_interval: float = 0.25) -> int:
    """The path in a process of its own, polling the outbox."""
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    path = EscalationPath(integration=integration, poll_interval=poll_interval)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    print(f"Syncline escalation path: {integration}, outbox polled every {poll_interval} s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(path.run())
    return 0


if __name__ == "__main__":
    raise SystemExit(serve())
