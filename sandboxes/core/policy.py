"""What a vendor declares about how it refuses and fails: its error body and its rate-limit
headers. The shared request pipeline (``pipeline``) decides *when* a request is limited or
faulted; these policies decide what the answer looks like, so ServiceNow's hourly
``X-RateLimit-*`` headers and Jira's ``Retry-After`` with ``RateLimit-Reason`` come out of the
same machinery.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

import pydantic
from starlette.responses import Response

from sandboxes.core.rate_limit import Admission


class ApiError(Exception):
    """An error answered in the vendor's own spelling; vendors subclass it."""

    status: int
    headers: dict[str, str]

    def response(self) -> Response:
        raise NotImplementedError


class ErrorSpelling(Protocol):
    """The vendor's error bodies for the answers the shared pipeline produces itself."""

    def rate_limited(self, detail: str, headers: Mapping[str, str]) -> ApiError:
        """429: a rate limit refused the request."""
        ...

    def unavailable(self, status: int, headers: Mapping[str, str]) -> ApiError:
        """An injected 500 or 503; the request was not carried out."""
        ...

    def write_failed(self, headers: Mapping[str, str]) -> ApiError:
        """500 for a write fault (before or after the commit)."""
        ...

    def internal_error(self) -> ApiError:
        """500 for a defect of the sandbox itself (logged with its traceback)."""
        ...


def whole_seconds(seconds: float) -> str:
    """``Retry-After`` as integer seconds, rounded up; under half a second becomes "0"."""
    if seconds < 0.5:
        return "0"
    return str(math.ceil(seconds))


class RateLimitPolicy:
    """The headers of limited and admitted requests. This default sends the per-second
    limiter's ``X-RateLimit-Limit``/``X-RateLimit-Reset`` (UNIX second) and ``Retry-After``,
    and nothing else on an injected 429 than ``Retry-After``."""

    def admitted(self, admission: Admission, now: datetime) -> dict[str, str]:
        return dict(admission.headers)

    def refused(self, admission: Admission, now: datetime) -> dict[str, str]:
        """A 429 from the per-second limiter."""
        return dict(admission.headers)

    def injected(self, retry_after_seconds: float, now: datetime) -> dict[str, str]:
        """A 429 injected by ``FaultConfig.rate_limit_every``."""
        return {"Retry-After": whole_seconds(retry_after_seconds)}

    def unavailable(self, status: int, retry_after_seconds: float, now: datetime) -> dict[str, str]:
        """Headers of an injected 500/503 (none by default)."""
        return {}


class RequestStats(pydantic.BaseModel):
    """Counts of API requests a simulator has answered (vendors may add their own)."""

    requests_total: int = 0
    responses_by_status: dict[int, int] = pydantic.Field(default_factory=dict)
    rate_limited: int = 0
    # Of ``rate_limited``, those refused by the per-second limit.
    rate_limited_per_second: int = 0
    # API writes (POST/PUT/PATCH/DELETE) past the rate limits and request faults.
    writes: int = 0
    write_faults: dict[str, int] = pydantic.Field(default_factory=dict)
