"""The request pipeline every vendor's API routes run through, and the run-time state it keeps.

For each API request, in this order: the injected latency; the vendor's authentication; the
vendor's own quota (ServiceNow's hourly rule, if any); the per-second limiter; the injected
request faults (429, 500/503, garbage bodies, counted from when ``faults`` was last
replaced); then for writes the drawn write fault; then the vendor's handler, under the
vendor's lock; then the write fault that falls after the commit, and the garbage. When
several faults fall on one request, the 429 wins over the 5xx and the 5xx over a garbage
body. An HTML garbage body stands for a proxy or SSO page in front of the instance, so that
request is not carried out; a truncated or empty body stands for a connection lost while
answering, so that request (a write too) is carried out.

The policies (``policy``) spell the answers; the pipeline only decides which one applies.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from sandboxes.core.clock import InstanceClock
from sandboxes.core.faults import FaultConfig, FaultCounters, GarbageKind, falls_on, garbled
from sandboxes.core.policy import ApiError, ErrorSpelling, RateLimitPolicy, RequestStats
from sandboxes.core.rate_limit import PerSecondLimiter
from sandboxes.core.write_faults import (
    WRITE_METHODS,
    DroppedReply,
    WriteFaultKind,
    WriteFaultPicker,
)

_logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One authenticated API request as a vendor handler sees it: the body is already read."""

    request: Request
    body: bytes
    user: str

    @property
    def params(self) -> Mapping[str, Any]:
        return self.request.path_params


ApiHandler = Callable[[ApiCall], Response]


class VendorState:
    """What the core keeps for one simulated vendor: its clock, its lock (vendor handlers run
    under it), the injected faults with their counters, the per-second limiter and the
    request statistics."""

    def __init__(
        self,
        clock: InstanceClock,
        stats: RequestStats,
        *,
        lock: threading.RLock | None = None,
        rate_limit_per_second: float | None = None,
    ) -> None:
        self.clock = clock
        self.stats = stats
        self.lock = lock or threading.RLock()
        self._faults = FaultConfig()
        self.fault_counts = FaultCounters()
        self.write_picker = WriteFaultPicker(self._faults.seed)
        self._limiter: PerSecondLimiter | None = None
        self.rate_limit_per_second = rate_limit_per_second

    @property
    def faults(self) -> FaultConfig:
        """Change fields in place, or replace the whole configuration to also restart the
        "every Nth request" counts and the write-fault generator."""
        return self._faults

    @faults.setter
    def faults(self, config: FaultConfig) -> None:
        with self.lock:
            self._faults = config
            self.fault_counts = FaultCounters()
            self.write_picker = WriteFaultPicker(config.seed)

    @property
    def rate_limit_per_second(self) -> float | None:
        """Requests per second admitted (None: no limit); setting it starts a full bucket."""
        limiter = self._limiter
        return limiter.rate if limiter is not None else None

    @rate_limit_per_second.setter
    def rate_limit_per_second(self, rate: float | None) -> None:
        self._limiter = PerSecondLimiter(rate) if rate is not None else None

    @property
    def limiter(self) -> PerSecondLimiter | None:
        return self._limiter


@dataclass(slots=True)
class RequestPipeline:
    """Runs a vendor handler behind authentication, limits and injected faults."""

    state: VendorState
    authenticate: Callable[[Request], str]
    errors: ErrorSpelling
    rate_limit: RateLimitPolicy
    login_page: Callable[[], Response]
    # The vendor's own quota, checked after authentication under the lock: the headers to
    # send, or an ``ApiError`` (ServiceNow's hourly rate-limit rule).
    quota: Callable[[], dict[str, str]] | None = None

    def endpoint(self, handler: ApiHandler) -> Callable[[Request], Any]:
        """A Starlette endpoint running ``handler`` through the pipeline."""

        async def answer(request: Request) -> Response:
            return await self.handle(request, handler)

        return answer

    async def handle(self, request: Request, handler: ApiHandler) -> Response:
        state = self.state
        with state.lock:
            state.stats.requests_total += 1
        try:
            response = await self._answer(request, handler)
        except ApiError as error:
            response = error.response()
        except ClientDisconnect:
            # The client went away before its body arrived: nothing was done and nobody is
            # left to answer. Counted under 499, the status proxies log for this.
            response = Response(status_code=499)
        except Exception:
            # Answer like the vendor would rather than dropping the connection; the
            # traceback is logged so a sandbox defect does not pass for an injected fault.
            _logger.exception("sandbox failed to answer %s %s", request.method, request.url)
            response = self.errors.internal_error().response()
        status = response.status_code
        with state.lock:
            by_status = state.stats.responses_by_status
            by_status[status] = by_status.get(status, 0) + 1
            if status == 429:
                state.stats.rate_limited += 1
        return response

    async def _answer(self, request: Request, handler: ApiHandler) -> Response:
        state = self.state
        if state.faults.latency_ms > 0:
            await asyncio.sleep(state.faults.latency_ms / 1000)
        user = self.authenticate(request)
        limit_headers: dict[str, str] = {}
        if self.quota is not None:
            with state.lock:
                limit_headers = self.quota()
        limit_headers |= self._count_against_per_second_limit()
        garbage: GarbageKind | None = None
        write_fault: WriteFaultKind | None = None
        try:
            with state.lock:
                garbage = self._inject_faults()
            if garbage == "html":
                # Answered in front of the instance: the request never reached it.
                return self.login_page()
            body = await request.body() if request.method in ("POST", "PUT", "PATCH") else b""
            with state.lock:
                if garbage is None and request.method in WRITE_METHODS:
                    write_fault = self._draw_write_fault()
                if write_fault == "error_before_commit":
                    self._count_write_fault(write_fault)
                    raise self.errors.write_failed({})
                response = handler(ApiCall(request, body, user))
                if write_fault is not None:
                    self._count_write_fault(write_fault)
        except ApiError as error:
            error.headers = limit_headers | error.headers
            if garbage is None:
                raise
            response = error.response()
        for name, value in limit_headers.items():
            response.headers[name] = value
        if write_fault == "error_after_commit":
            raise self.errors.write_failed(limit_headers)
        if write_fault == "drop_after_commit":
            return DroppedReply(response)
        return response if garbage is None else garbled(response, garbage)

    def _count_against_per_second_limit(self) -> dict[str, str]:
        limiter = self.state.limiter
        if limiter is None:
            return {}
        admission = limiter.admit()
        now = self.state.clock.now()
        if admission.allowed:
            return self.rate_limit.admitted(admission, now)
        with self.state.lock:
            self.state.stats.rate_limited_per_second += 1
        raise self.errors.rate_limited(
            f"Rate limit exceeded: {limiter.rate:g} requests per second",
            self.rate_limit.refused(admission, now),
        )

    def _inject_faults(self) -> GarbageKind | None:
        """Raise the 429 or 5xx that falls on this request, or say which garbage it gets."""
        state = self.state
        faults = state.faults
        state.fault_counts.api_requests += 1
        count = state.fault_counts.api_requests
        if falls_on(count, faults.rate_limit_every):
            headers = self.rate_limit.injected(faults.retry_after_seconds, state.clock.now())
            raise self.errors.rate_limited("Rate limit exceeded", headers)
        if falls_on(count, faults.server_error_every):
            status = faults.server_error_status
            headers = self.rate_limit.unavailable(
                status, faults.retry_after_seconds, state.clock.now()
            )
            raise self.errors.unavailable(status, headers)
        if falls_on(count, faults.garbage_every):
            return faults.garbage_kind
        return None

    def _draw_write_fault(self) -> WriteFaultKind | None:
        state = self.state
        faults = state.faults
        state.stats.writes += 1
        return state.write_picker.draw(
            faults.write_fault_rate, faults.write_fault_every, faults.write_fault_kinds
        )

    def _count_write_fault(self, kind: WriteFaultKind) -> None:
        counts = self.state.stats.write_faults
        counts[kind] = counts.get(kind, 0) + 1
