"""The one HTTP layer every REST connector uses: auth, retries, pacing, errors, call counting.

A connector subclasses ``RestClient``, names its ``system`` and, if the vendor's error body has
its own shape, overrides ``error_detail``. Everything else (when to retry, how long to wait,
what to count) lives here once.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Self

import httpx

from connectors.base.errors import (
    ConnectorError,
    RateLimitedError,
    RetriableError,
    classify_status,
)
from connectors.base.pagination import PageRequest, Paginator
from connectors.base.ratelimit import RequestRateLimiter
from connectors.base.retry import RetryPolicy


@dataclass(slots=True)
class CallStats:
    """What a client did during one run: shown in the run summary."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    wait_seconds: float = 0.0
    by_status: Counter[int] = field(default_factory=Counter)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def parse_reset(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds until an ``X-RateLimit-Reset``: a UNIX timestamp, delta-seconds or ISO-8601."""
    if value is None or not value.strip():
        return None
    current = now if now is not None else time.time()
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        try:
            number = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    # Vendors send either an absolute UNIX time or a number of seconds from now.
    return max(0.0, number - current) if number > 1_000_000_000 else max(0.0, number)


class RestClient:
    """An async HTTP client for one outside system."""

    system: ClassVar[str] = "http"

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        limiter: RequestRateLimiter | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.limiter = limiter or RequestRateLimiter()
        self.stats = CallStats()
        self.log = logging.getLogger(f"syncline.connectors.{self.system}")
        self._http = httpx.AsyncClient(
            base_url=base_url,
            auth=auth,
            headers={"Accept": "application/json", **(headers or {})},
            transport=transport,
            timeout=httpx.Timeout(timeout),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def error_detail(self, response: httpx.Response) -> str:
        """The vendor's explanation of a failed response; subclasses parse their own shape."""
        return response.text[:500]

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        expected: Collection[int] | None = None,
    ) -> httpx.Response:
        """Send one request, retrying transient failures; raise a classified error otherwise.

        ``expected`` lists statuses that are answers, not failures (e.g. 404 for a lookup).
        """
        attempt = 0
        while True:
            attempt += 1
            await self.limiter.acquire()
            self.stats.requests += 1
            try:
                response = await self._http.request(method, url, params=params, json=json)
            except httpx.TransportError as exc:
                error: ConnectorError = RetriableError(
                    self.system,
                    f"{type(exc).__name__}: {exc}",
                    method=method,
                    url=_redact(url),
                )
            else:
                self.stats.by_status[response.status_code] += 1
                self._note_rate_headers(response)
                if response.is_success or (expected and response.status_code in expected):
                    return response
                error = self._error_for(method, response)
            if not error.retriable or attempt >= self.retry.max_attempts:
                raise error
            retry_after = error.retry_after if isinstance(error, RateLimitedError) else None
            delay = self.retry.delay(attempt, retry_after)
            if isinstance(error, RateLimitedError):
                self.stats.rate_limited += 1
                self.limiter.pause_for(delay)
            self.stats.retries += 1
            self.stats.wait_seconds += delay
            self.log.warning(
                "%s; retrying in %.1fs (attempt %d of %d)",
                error,
                delay,
                attempt + 1,
                self.retry.max_attempts,
            )
            if not isinstance(error, RateLimitedError):
                await asyncio.sleep(delay)

    async def paginate(
        self, first: PageRequest, paginator: Paginator
    ) -> AsyncIterator[httpx.Response]:
        """Yield every page's response, following ``paginator`` from ``first``."""
        page: PageRequest | None = first
        while page is not None:
            response = await self.request(page.method, page.url, params=page.params, json=page.json)
            yield response
            page = paginator.next_request(page, response)

    def _error_for(self, method: str, response: httpx.Response) -> ConnectorError:
        status = response.status_code
        error_class = classify_status(status)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        common: dict[str, Any] = {
            "method": method,
            "url": _redact(str(response.request.url)),
            "status": status,
            "detail": self.error_detail(response),
        }
        if error_class is RateLimitedError or (status == 503 and retry_after is not None):
            return RateLimitedError(self.system, "rate limited", retry_after=retry_after, **common)
        return error_class(self.system, response.reason_phrase or "request failed", **common)

    def _note_rate_headers(self, response: httpx.Response) -> None:
        # Slow down *before* the vendor refuses us: when it says none are left, wait for reset.
        remaining = response.headers.get("X-RateLimit-Remaining")
        if remaining is not None and remaining.strip() in ("0", "0.0"):
            reset = parse_reset(response.headers.get("X-RateLimit-Reset"))
            if reset is not None:
                self.limiter.pause_for(min(reset, self.retry.max_retry_after))


def _redact(url: str) -> str:
    """The URL without its query string: some vendors put keys there; logs must not."""
    return url.split("?", 1)[0]
