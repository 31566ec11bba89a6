"""The shared base every connector stands on: HTTP, pagination, retry, rate limits, errors."""

from connectors.base.errors import (
    AuthError,
    ConnectorError,
    FatalError,
    NotFoundError,
    RateLimitedError,
    RetriableError,
)
from connectors.base.http import CallStats, RestClient
from connectors.base.pagination import (
    CursorTokenPaginator,
    LinkHeaderPaginator,
    NextUrlPaginator,
    Paginator,
)
from connectors.base.ratelimit import RequestRateLimiter
from connectors.base.retry import RetryPolicy

__all__ = [
    "AuthError",
    "CallStats",
    "ConnectorError",
    "CursorTokenPaginator",
    "FatalError",
    "LinkHeaderPaginator",
    "NextUrlPaginator",
    "NotFoundError",
    "Paginator",
    "RateLimitedError",
    "RequestRateLimiter",
    "RestClient",
    "RetriableError",
    "RetryPolicy",
]
