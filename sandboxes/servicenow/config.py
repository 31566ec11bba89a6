"""How a ServiceNow sandbox is seeded, authenticates and limits callers, and what it counts."""

from __future__ import annotations

import pydantic

from sandboxes.core.policy import RequestStats


class ServiceNowSandboxConfig(pydantic.BaseModel):
    """How the sandbox instance is seeded and how it authenticates and limits callers."""

    cmdb_ci_server: int = pydantic.Field(default=50_000, ge=0)
    incident: int = pydantic.Field(default=500, ge=0)
    sys_user: int = pydantic.Field(default=1_000, ge=0)
    seed: int = 42
    username: str = "admin"
    # The sandbox's published demo credentials, not secrets.
    password: str = "sandbox"  # noqa: S105
    bearer_token: str = "sandbox-token"  # noqa: S105
    instance_url: str = "https://sandbox.service-now.com"
    rate_limit_per_hour: int | None = pydantic.Field(default=None, ge=1)
    # Requests per second admitted (token bucket, see ``rate_limit``); None: no limit.
    rate_limit_per_second: float | None = pydantic.Field(default=None, gt=0)
    # The field whose values API creates are counted by (see ``creates_by_correlation``).
    correlation_field: str = "correlation_id"
    invalid_query_returns_no_rows: bool = False
    # How far the instance's running clock is ahead of real time (negative: behind).
    clock_offset_seconds: float = 0.0
    # Outbound REST messages (``outbound``): the chance a delivered body is sent a second
    # time (seeded by ``seed``), the waits before retries, the attempts per delivery, and the
    # fields sent as ``fields`` (empty: no ``fields`` key, as Syncline's documented rule).
    outbound_duplicate_probability: float = pydantic.Field(default=0.0, ge=0.0, le=1.0)
    outbound_backoff_seconds: list[float] = pydantic.Field(default_factory=lambda: [0.05, 0.1, 0.2])
    outbound_max_attempts: int = pydantic.Field(default=4, ge=1)
    # What the outbound REST message sends in ``fields``; Syncline's documented business rule
    # sends sys_mod_count (syncline/inbound/servicenow.py).
    outbound_fields: list[str] = pydantic.Field(default_factory=lambda: ["sys_mod_count"])


class SandboxStats(RequestStats):
    """Counts of API requests the sandbox has answered (``RequestStats``), and of creates."""

    # API creates carrying a correlation value, and those whose value had been created
    # before in the same table (a client's double).
    correlated_creates: int = 0
    duplicate_creates: int = 0
