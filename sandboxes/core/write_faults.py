"""Write faults: API writes that fail before, or after, they were saved ("commit then fail",
"drop the reply"); shared by every simulator, described here as ServiceNow's Table API meets them.

A client that retries a failed write must know whether the first attempt took effect. These
faults make the three cases a real instance (or the network in front of it) produces:

* ``error_before_commit``: 500 with ServiceNow's error body; nothing was saved.
* ``error_after_commit``: the write was saved, then 500 with the error body (a business rule
  or the transaction failing after the database commit).
* ``drop_after_commit``: the write was saved, then the connection closes without a complete
  reply. Over a socket the status line and headers go out and the ASGI app raises
  ``ConnectionDropped``, on which uvicorn closes the connection: an HTTP client sees the
  peer close mid-reply (``httpx.RemoteProtocolError``) at once rather than waiting for a
  timeout. In process (``httpx.ASGITransport``) the exception itself reaches the client, and
  since it subclasses ``httpx.RemoteProtocolError`` the client sees the same class either way.

Writes are POST, PUT, PATCH and DELETE on the Table API. A write is faulted either at random
(``write_fault_rate``, drawn from a generator seeded by ``seed``, the kind picked at random
among ``write_fault_kinds``) or every Nth write (``write_fault_every``, the kinds taken in
turn). A write that fails on its own (404, 400 ...) answers that error and is not counted as
faulted. Requests already given another fault (429, 5xx, garbage) are not counted as writes.
The sandbox's stats count each kind (``write_faults``); a dropped reply also counts under the
status its reply started with in ``responses_by_status``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Literal

import httpx
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

WriteFaultKind = Literal["error_before_commit", "error_after_commit", "drop_after_commit"]
WRITE_FAULT_KINDS: tuple[WriteFaultKind, ...] = (
    "error_before_commit",
    "error_after_commit",
    "drop_after_commit",
)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class WriteFaultPicker:
    """Decides which writes get a fault. The settings are read at each draw, so changing
    them in place takes effect at once; the generator and the write count start afresh with
    each picker (each replacement of the fault configuration)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"write-faults:{seed}")
        self.writes = 0

    def draw(
        self, rate: float, every: int | None, kinds: Sequence[WriteFaultKind]
    ) -> WriteFaultKind | None:
        self.writes += 1
        if not kinds:
            return None
        if every is not None and self.writes % every == 0:
            return kinds[(self.writes // every - 1) % len(kinds)]
        # Drawn for every write, so the sequence of faults depends only on the seed and the
        # order of the writes, not on the rate having been zero for a while.
        roll = self._rng.random()
        pick = self._rng.randrange(len(kinds))
        if roll < rate:
            return kinds[pick]
        return None


class ConnectionDropped(httpx.RemoteProtocolError):
    """Raised inside the ASGI app after the reply started, so the server drops the
    connection; in process it is what the client sees."""


class DroppedReply(Response):
    """Sends the status line and headers of ``started`` (its Content-Length promising the
    whole body), then raises ``ConnectionDropped`` before any of the body."""

    def __init__(self, started: Response) -> None:
        super().__init__(bytes(started.body), status_code=started.status_code)
        self.raw_headers = list(started.raw_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": self.raw_headers,
            }
        )
        raise ConnectionDropped(
            "sandbox fault drop_after_commit: the write was saved and the connection "
            "closed before the reply's body"
        )


def _is_dropped(error: BaseException | None, depth: int = 0) -> bool:
    if error is None or depth > 5:
        return False
    if isinstance(error, ConnectionDropped):
        return True
    if isinstance(error, BaseExceptionGroup):
        return any(_is_dropped(inner, depth + 1) for inner in error.exceptions)
    return _is_dropped(error.__cause__ or error.__context__, depth + 1)


class _QuietDroppedConnections(logging.Filter):
    """Keeps uvicorn from logging a traceback for every injected drop."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None or not _is_dropped(record.exc_info[1])


_FILTER = _QuietDroppedConnections()


def quiet_dropped_connections() -> None:
    """Install the filter on uvicorn's error logger (once; later calls do nothing)."""
    logger = logging.getLogger("uvicorn.error")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
