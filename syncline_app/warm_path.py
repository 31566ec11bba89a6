"""A warm path: a flow kept ready in a running process, so an event is carried within a second.

A deployment triggered by the gateway's event starts its run ~16 s later with a stock worker
(the worker polls, then starts a new Python process). A warm path instead lives in a process
that is already up, the gateway's own (``with_warm_path``) or one of its own: it wakes when the
gateway answers 2xx to a delivery (in the gateway's process) or when its short look at the
ledger finds work (any process), and runs the SAME flow as the deployment, in-process, so every
drain is a flow run in the Prefect UI with its logs and artifacts.

Storms: deliveries arriving while a run drains are taken by that run's next batch, or by the
next run, which starts as soon as the previous one ends: a handful of runs, never a process per
delivery. While the Prefect API is down no run can start: deliveries wait in the outbox (the
gateway still accepts them) and the path retries with a growing pause, then drains them all.

A path says what it carries in two methods: ``waiting`` (is there work nobody else holds?)
and ``drain`` (run the flow once; did it carry anything?).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from syncline.settings import SynclineSettings
from syncline.state import Ledger

log = logging.getLogger("syncline.warm_path")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class WarmPath(ABC):
    """Runs a flow in-process whenever work waits, until stopped.

    ``poll_interval``: how often the ledger is looked at without a wake-up (deliveries stored
    by another process); ``max_backoff``: the longest pause after failed runs.
    """

    name: str = "warm path"
    # The gateway routes whose accepted deliveries wake the path (empty: every /hooks/...).
    hooks: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        ledger_url: str | None = None,
        poll_interval: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self.ledger_url = ledger_url or SynclineSettings().ledger()
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.runs = 0
        self.failures = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    def open(self, ledger: Ledger) -> None:
        """Get ready to look at ``ledger`` (called once the loop starts)."""

    @abstractmethod
    def waiting(self) -> bool:
        """Whether work waits that no other drainer holds (runs in a thread)."""

    @abstractmethod
    async def drain(self) -> bool:
        """Run the flow once; whether it carried anything (then the path looks again at once:
        deliveries may have come during the run)."""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        """A delivery was stored: look now (call from the path's event loop)."""
        self._wake.set()

    def wakes_on(self, route: str) -> bool:
        if not route.startswith("/hooks/"):
            return False
        return not self.hooks or route in self.hooks

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name=f"syncline-{self.name}")

    async def stop(self) -> None:
        """Finish the run in progress (what it holds is recorded or given back), then stop."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    async def run(self) -> None:
        ledger = Ledger(self.ledger_url)
        pause = self.poll_interval
        try:
            self.open(ledger)
            log.info("%s: started", self.name)
            while not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=pause)
                self._wake.clear()
                if self._stopping:
                    break
                try:
                    if not await asyncio.to_thread(self.waiting):
                        pause = self.poll_interval  # nothing, or all held by another drainer
                        continue
                    carried = await self.drain()
                    self.runs += 1
                    pause = self.poll_interval
                    if carried:
                        self._wake.set()
                except Exception as error:  # the API or a system is down: wait, retry
                    self.failures += 1
                    pause = min(max(pause * 2, 1.0), self.max_backoff)
                    log.warning(
                        "%s: run failed (%s: %s); next try in %.0f s",
                        self.name,
                        type(error).__name__,
                        str(error)[:300],
                        pause,
                    )
        finally:
            ledger.dispose()
            log.info("%s: stopped after %d runs", self.name, self.runs)


def with_warm_path(app: ASGIApp, path: WarmPath) -> ASGIApp:
    """``app`` (the webhook gateway) with ``path`` running beside it: started and stopped with
    the app's lifespan, woken by every 2xx answer to a hook route it carries (the delivery is
    in the outbox by then)."""

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
        if scope["type"] != "http" or not path.wakes_on(str(scope.get("path", ""))):
            await app(scope, receive, send)
            return

        async def send_and_wake(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                path.wake()

        await app(scope, receive, send_and_wake)

    return wrapped


def serve_path(path: WarmPath, banner: str) -> int:
    """A path in a process of its own, looking at the ledger every ``poll_interval``."""
    # The path logs between flow runs too: those lines stay in this process's log.
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per API call
    print(banner, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(path.run())
    return 0
