"""The shared base every connector stands on: HTTP, pagination, retry, rate limits, errors."""

from connectors.base.errors import (
    AuthError,
    ConnectorError,
    FatalError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    RetriableError,
)
from connectors.base.http import RestClient
from connectors.base.keyset import KeysetPage, ReadTally, keyset_pages
from connectors.base.pagination import (
    CursorTokenPaginator,
    LinkHeaderPaginator,
    NextUrlPaginator,
    Paginator,
)
from connectors.base.ratelimit import RequestRateLimiter
from connectors.base.retry import RetryPolicy
from connectors.base.stats import CallStats

__all__ = [
    "AuthError",
    "CallStats",
    "ConnectorError",
    "CursorTokenPaginator",
    "FatalError",
    "InvalidResponseError",
    "KeysetPage",
    "LinkHeaderPaginator",
    "NextUrlPaginator",
    "NotFoundError",
    "Paginator",
    "RateLimitedError",
    "ReadTally",
    "RequestRateLimiter",
    "RestClient",
    "RetriableError",
    "RetryPolicy",
    "keyset_pages",
]
