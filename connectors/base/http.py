"""The one HTTP layer every REST connector uses: auth, retries, pacing, errors, call counting.

A connector subclasses ``RestClient``, names its ``system`` and, where the vendor has its own
ways, overrides the hooks: ``error_detail`` / ``error_code`` (the error body's shape),
``classify`` (a status that means something else, e.g. a 403 that is rate limiting) and
``observe_limits`` (limit headers). Everything else (when to retry, how long to wait, what to
count, where requests may go, how a body is decoded) lives here once.

A create must never be made twice: a request that is not idempotent is sent again only when
it provably never reached the vendor; otherwise its failure is an ``UncertainWriteError``
(see ``RestClient._exchange``).

Requests go only to the configured origin (scheme, host and port of ``base_url``) or to hosts
listed in ``allowed_hosts``: a next-page URL from a header or a body is the vendor's word, and
following it elsewhere would hand our credentials to whoever wrote it.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

import httpx

from connectors.base.decode import IDEMPOTENT_METHODS, ModelT, decode_model, redact_url
from connectors.base.errors import (
    ConnectorError,
    FatalError,
    InvalidResponseError,
    RateLimitedError,
    RetriableError,
    UncertainWriteError,
    classify_status,
)
from connectors.base.pagination import PageRequest, PageTrail, Paginator
from connectors.base.ratelimit import RequestRateLimiter
from connectors.base.retry import RetryPolicy
from connectors.base.stats import CallStats

T = TypeVar("T")
# Transport failures that happen before a request's first byte leaves: no connection was
# made (refused, unreachable, connect timeout) or none was free in the pool.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]


def origin_of(url: httpx.URL) -> Origin:
    """Scheme, host and port (the default one spelt out), as browsers compare origins."""
    scheme = url.scheme.lower()
    return scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(scheme, 0)


@dataclass(frozen=True, slots=True)
class _AllowedHost:
    host: str
    port: int | None


def _allowed(entries: Iterable[str]) -> tuple[_AllowedHost, ...]:
    """``host``, ``host:port`` or ``https://host[:port]`` entries."""
    allowed = []
    for entry in entries:
        text = entry.strip()
        if not text:
            continue
        url = httpx.URL(text if "://" in text else f"//{text}")
        allowed.append(_AllowedHost(url.host.lower(), url.port))
    return tuple(allowed)


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
    """An async HTTP client for one outside system.

    ``allowed_hosts`` names other hosts requests may go to (``host`` or ``host:port``), for a
    system that links to itself under a second name; any other origin is refused.
    """

    system: ClassVar[str] = "http"
    # What an HTML page where JSON was expected usually means, for the error message.
    html_hint: ClassVar[str] = (
        "an HTML page, not the API: a login or proxy page means the base URL or the "
        "credentials are wrong"
    )

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
        allowed_hosts: Iterable[str] = (),
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
        self.origin = origin_of(self._http.base_url)
        self.allowed_hosts = _allowed(allowed_hosts)

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

    def error_code(self, response: httpx.Response) -> str | None:
        """The vendor's error code in a failed response, kept on the error as ``code``.

        The default looks for ``errorCode`` or ``code`` in a JSON object, or in the first
        object of a JSON list (Salesforce answers ``[{"errorCode": …, "message": …}]``).
        """
        try:
            body = response.json()
        except ValueError:
            return None
        if isinstance(body, list) and body:
            body = body[0]
        if not isinstance(body, dict):
            return None
        for name in ("errorCode", "code"):
            value = body.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)
        return None

    def classify(self, response: httpx.Response) -> type[ConnectorError] | None:
        """The error class for a failed response, where the vendor departs from HTTP's
        meaning (a 403 that means "limit exceeded" is rate limiting); ``None`` keeps the
        default rules (``classify_status``). Answering ``RateLimitedError`` vouches that the
        vendor refused the request before doing any of it: creates are sent again.
        """
        return None

    def observe_limits(self, response: httpx.Response) -> None:
        """Read the vendor's limit headers on every answer and slow down before it refuses.

        The default reads ``X-RateLimit-Remaining`` / ``X-RateLimit-Reset`` (ServiceNow and
        many others): none left means every request waits for the reset. A vendor with
        other headers (Jira ``RateLimit-Reason``, Salesforce ``Sforce-Limit-Info``) overrides
        this, calling ``self.limiter.pause_for`` as it sees fit.
        """
        remaining = response.headers.get("X-RateLimit-Remaining")
        if remaining is not None and remaining.strip() in ("0", "0.0"):
            reset = parse_reset(response.headers.get("X-RateLimit-Reset"))
            if reset is not None:
                self.limiter.pause_for(min(reset, self.retry.max_retry_after))

    def decode(self, response: httpx.Response, model: type[ModelT]) -> ModelT:
        """``model`` from the body; ``InvalidResponseError`` naming system, request, status,
        content type and the start of the body when the body is not that model's JSON."""
        return decode_model(self.system, response, model, html_hint=self.html_hint)

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        expected: Collection[int] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send one request, retrying transient failures; raise a classified error otherwise.

        ``expected`` lists statuses that are answers, not failures (e.g. 404 for a lookup).
        ``idempotent`` says whether sending it twice is harmless; by default GET, HEAD, PUT,
        DELETE and OPTIONS are, POST and PATCH are not (see ``_exchange``).
        """
        return await self._exchange(
            method,
            url,
            params=params,
            json=json,
            expected=expected,
            accept=_as_is,
            idempotent=idempotent,
        )

    async def request_model(
        self,
        method: str,
        url: str,
        model: type[ModelT],
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> tuple[ModelT, httpx.Response]:
        """Send one request and decode its body into ``model``.

        A body that is empty or cut short counts as a transient failure for idempotent
        requests: it is asked for again with the same back-off as a 503.
        """

        def accept(response: httpx.Response) -> tuple[ModelT, httpx.Response]:
            return self.decode(response, model), response

        return await self._exchange(
            method, url, params=params, json=json, accept=accept, idempotent=idempotent
        )

    async def _exchange(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None,
        json: Any,
        accept: Callable[[httpx.Response], T],
        expected: Collection[int] | None = None,
        idempotent: bool | None = None,
    ) -> T:
        """Send, retry, classify.

        An idempotent request is retried on every retriable failure. Any other request is
        retried only when it provably never reached the vendor: the connection could not be
        made (refused, connect or pool timeout), or the vendor refused it as rate limiting
        (429, 503 with Retry-After), which it does before any of the work. Every other
        failure after sending (connection dropped, answer lost or cut short, 5xx) leaves the
        write in doubt and is raised as ``UncertainWriteError`` for the caller to settle.
        """
        safe_to_repeat = (
            idempotent if idempotent is not None else method.upper() in IDEMPOTENT_METHODS
        )
        attempt = 0
        while True:
            attempt += 1
            request = self._build(method, url, params=params, json=json)
            await self.limiter.acquire()
            self.stats.requests += 1
            cause: BaseException | None = None
            never_sent = False
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                cause = exc
                never_sent = isinstance(exc, _NEVER_SENT)
                error: ConnectorError = RetriableError(
                    self.system,
                    f"{type(exc).__name__}: {exc}",
                    method=method,
                    url=redact_url(str(request.url)),
                )
            else:
                self.stats.by_status[response.status_code] += 1
                self.observe_limits(response)
                if response.is_success or (expected and response.status_code in expected):
                    try:
                        return accept(response)
                    except InvalidResponseError as invalid:
                        # Retriable only if asking again is harmless for this request.
                        invalid.retriable = invalid.transient and safe_to_repeat
                        cause = invalid.__cause__
                        error = invalid
                        if invalid.transient and not safe_to_repeat:
                            raise self._uncertain(invalid) from invalid
                else:
                    error = self._error_for(method, response)
                    never_sent = isinstance(error, RateLimitedError)
            if not error.retriable:
                raise error from cause
            if not safe_to_repeat and not never_sent:
                raise self._uncertain(error) from (cause or error)
            if attempt >= self.retry.max_attempts:
                raise error from cause
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

    def _uncertain(self, error: ConnectorError) -> UncertainWriteError:
        return UncertainWriteError(
            self.system,
            f"the write may or may not have been carried out ({error.message})",
            method=error.method,
            url=error.url,
            status=error.status,
            detail=error.detail,
            code=error.code,
        )

    def _build(
        self, method: str, url: str, *, params: Mapping[str, str] | None, json: Any
    ) -> httpx.Request:
        """The request as it would be sent, refused before sending when it leaves the origin.

        The check is on the final URL (after joining with the base URL), so an absolute URL
        from a header, a body field or anywhere else is caught the same way.
        """
        request = self._http.build_request(method, url, params=params, json=json)
        target = origin_of(request.url)
        if target != self.origin and not self._host_allowed(target):
            scheme, host, port = target
            raise FatalError(
                self.system,
                f"refusing to send a request to {host}: {scheme}://{host}:{port} is not the "
                f"configured origin {self.origin[0]}://{self.origin[1]}:{self.origin[2]}",
                method=method,
                url=redact_url(str(request.url)),
                detail="nothing was sent; if that host is the same system under another name, "
                "list it in allowed_hosts",
            )
        return request

    def _host_allowed(self, target: Origin) -> bool:
        scheme, host, port = target
        # Never from https down to plain http, whatever the host.
        if scheme != self.origin[0] and scheme != "https":
            return False
        return any(
            allowed.host == host and (allowed.port is None or allowed.port == port)
            for allowed in self.allowed_hosts
        )

    async def paginate(
        self, first: PageRequest, paginator: Paginator
    ) -> AsyncIterator[httpx.Response]:
        """Yield every page's response, following ``paginator`` from ``first``; a next-page
        token or URL that comes back a second time stops the read (``PageTrail``)."""
        trail = PageTrail(self.system)
        page: PageRequest | None = first
        while page is not None:
            trail.check(page)
            response = await self.request(page.method, page.url, params=page.params, json=page.json)
            yield response
            page = paginator.next_request(page, response)

    def _error_for(self, method: str, response: httpx.Response) -> ConnectorError:
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        error_class = self.classify(response)
        if error_class is None:
            error_class = classify_status(status)
            if status == 503 and retry_after is not None:
                error_class = RateLimitedError
        common: dict[str, Any] = {
            "method": method,
            "url": redact_url(str(response.request.url)),
            "status": status,
            "detail": self.error_detail(response),
            "code": self.error_code(response),
        }
        message = response.reason_phrase or "request failed"
        if issubclass(error_class, RateLimitedError):
            return error_class(self.system, "rate limited", retry_after=retry_after, **common)
        if issubclass(error_class, InvalidResponseError):
            return error_class(self.system, message, retriable=False, **common)
        return error_class(self.system, message, **common)


def _as_is(response: httpx.Response) -> httpx.Response:
    return response
