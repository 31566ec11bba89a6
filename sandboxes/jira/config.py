"""How a Jira Cloud sandbox is seeded, whom it lets in, and the quirks it switches on."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic


class JiraSandboxConfig(pydantic.BaseModel):
    """The simulated site: its URL, the integration user, seeding and behaviours."""

    model_config = pydantic.ConfigDict(validate_assignment=True)

    site_url: str = "https://sandbox.atlassian.net"
    # The sandbox's published demo credentials (Basic email:api_token), not secrets.
    email: str = "integration@example.com"
    api_token: str = "sandbox-api-token"  # noqa: S105
    account_id: str = "5b10ac8d82e05b22cc7d4ef5"
    display_name: str = "Syncline Integration"
    # The user's time zone: JQL dates are read in it and timestamps are rendered in it.
    time_zone: str = "UTC"
    projects: list[str] = pydantic.Field(default_factory=lambda: ["OPS"], min_length=1)
    issues: int = pydantic.Field(default=25, ge=0)
    seed: int = 7
    # Search is eventually consistent: an issue changed less than this many ms ago is not
    # yet in search results (0: off), unless named in ``reconcileIssues``.
    search_lag_ms: float = pydantic.Field(default=0.0, ge=0)
    rate_limit_per_second: float | None = pydantic.Field(default=None, gt=0)
    # Which limit a 429 names in ``RateLimit-Reason``.
    rate_limit_reason: str = "jira-burst-based"
    clock_offset_seconds: float = 0.0
    # Webhooks: the chance a delivered payload is sent a second time, seeded by ``seed``.
    webhook_duplicate_probability: float = pydantic.Field(default=0.0, ge=0.0, le=1.0)
    webhook_backoff_seconds: list[float] = pydantic.Field(default_factory=lambda: [0.05, 0.1, 0.2])
    webhook_max_attempts: int = pydantic.Field(default=4, ge=1)

    @pydantic.field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)
