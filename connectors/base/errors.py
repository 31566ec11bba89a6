"""Error classes shared by every connector.

Every failure of an outside system is classified once, here, as *retriable* (the same request
may succeed later: 429, 5xx, timeouts, dropped connections) or *fatal* (retrying cannot help:
400, 401, 403, 404, 409, 422 ...). The retry loop in `connectors.base.http` retries only the
former; callers can dead-letter the record behind a fatal error and carry on.

A connector may classify a response differently (``RestClient.classify``): a vendor that
answers "limit exceeded" with a 403 is rate limiting, not refusing credentials. Every error
keeps the HTTP status and the vendor's own error code, so callers can tell cases apart without
parsing messages.

A create that failed *after* it may have reached the vendor is neither: sending it again may
make a second record, so it is an ``UncertainWriteError`` for the caller to settle (look the
record up, then create it only if absent).
"""

from __future__ import annotations

# Status codes whose requests may succeed if sent again. 408/425 are timeouts and "too early";
# 429 is rate limiting; 5xx are the server's own failures (501 "not implemented" is not).
RETRIABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class ConnectorError(Exception):
    """A request to an outside system failed. Says which system, which request and why."""

    retriable: bool = False

    def __init__(
        self,
        system: str,
        message: str,
        *,
        method: str | None = None,
        url: str | None = None,
        status: int | None = None,
        detail: str | None = None,
        code: str | None = None,
    ) -> None:
        self.system = system
        self.message = message
        self.method = method
        self.url = url
        self.status = status
        self.detail = detail
        # The vendor's own error code (e.g. Salesforce ``REQUEST_LIMIT_EXCEEDED``), if any.
        self.code = code
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f" ({self.method} {self.url})" if self.method and self.url else ""
        status = f" HTTP {self.status}" if self.status is not None else ""
        shown_code = self.code and self.code not in (self.detail or "")
        code = f" [{self.code}]" if shown_code else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.system}{status}{code}{where}: {self.message}{detail}"


class RetriableError(ConnectorError):
    """Transient: the same request may succeed later."""

    retriable = True


class RateLimitedError(RetriableError):
    """The system asked us to slow down (429, or a 503 with Retry-After, or whatever a
    connector's ``classify`` says is its way of saying so).

    Vendors refuse such a request before doing any of its work, so even a create is sent
    again: a connector that classifies a response as rate limiting vouches for that.
    """

    def __init__(
        self, system: str, message: str, *, retry_after: float | None, **kw: object
    ) -> None:
        self.retry_after = retry_after
        super().__init__(system, message, **kw)  # type: ignore[arg-type]


class UncertainWriteError(RetriableError):
    """A request that is not idempotent (a create) failed after it may have reached the
    system: the connection dropped after sending, the answer was lost, a 5xx came back.

    The write may or may not have been carried out, so it is never sent again blindly; the
    caller settles it by looking the record up (and writing only if it is absent). A
    ``RetriableError`` in that sense: a run that fails on it can be run again, since reruns
    upsert by key. Its ``retriable`` is false all the same: that flag says the *same request*
    may be sent again, which is exactly what must not happen here.
    """

    retriable = False


class FatalError(ConnectorError):
    """Permanent: sending the same request again cannot succeed."""


class AuthError(FatalError):
    """401/403: credentials missing, wrong or lacking rights. Never retried."""


class NotFoundError(FatalError):
    """404: the record or the endpoint does not exist."""


class InvalidResponseError(ConnectorError):
    """A successful status whose body is not what the API sends: not JSON, cut short, empty,
    or JSON of the wrong shape.

    ``retriable`` is set per instance: a body cut short or empty on an idempotent request is
    worth asking again (a proxy or the instance dropped the end of it); an HTML page with 200
    (a login or SSO page) or well-formed JSON of the wrong shape will come back the same.
    """

    def __init__(
        self,
        system: str,
        message: str,
        *,
        retriable: bool,
        transient: bool = False,
        content_type: str | None = None,
        method: str | None = None,
        url: str | None = None,
        status: int | None = None,
        detail: str | None = None,
        code: str | None = None,
    ) -> None:
        self.retriable = retriable
        # Plausibly lost in transit (empty or cut short), whatever the method: for a create
        # this means the record was probably made and its answer lost.
        self.transient = transient
        self.content_type = content_type
        super().__init__(
            system, message, method=method, url=url, status=status, detail=detail, code=code
        )


def classify_status(status: int) -> type[ConnectorError]:
    """The error class for an unsuccessful HTTP status."""
    if status == 429:
        return RateLimitedError
    if status in RETRIABLE_STATUSES:
        return RetriableError
    if status in (401, 403):
        return AuthError
    if status == 404:
        return NotFoundError
    return FatalError
