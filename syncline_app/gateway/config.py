"""The gateway's configuration: which sources it serves, their secrets and limits.

Everything comes from ``SYNCLINE_GATEWAY_*`` environment variables, read once at start:

- ``SYNCLINE_GATEWAY_<SOURCE>_SECRET``: the source's secret; several, comma-separated, while
  a secret is being rotated (a delivery matching any of them passes);
- ``SYNCLINE_GATEWAY_<SOURCE>_SECRET_BLOCK``: or the name of a Prefect Secret block holding
  it (comma-separated the same way), read once at start, so the gateway keeps accepting
  deliveries while the Prefect API is down;
- ``SYNCLINE_GATEWAY_<SOURCE>_MAX_BODY_BYTES``: that source's body limit;
- ``SYNCLINE_GATEWAY_DISABLED``: sources not served (comma-separated); every other source
  must have a secret, or the gateway refuses to start;
- the limits and windows of :class:`GatewaySettings`.

A secret is never logged or shown: models hold it as ``SecretStr``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from syncline.durations import Duration

ENV_PREFIX = "SYNCLINE_GATEWAY_"
MIN_SECRET_LENGTH = 16
# Seen delivery ids are kept at least this long: vendors retry a delivery for hours.
MIN_RETENTION = timedelta(hours=48)


@dataclass(frozen=True, slots=True)
class SourceScheme:
    """How a source proves a delivery is its own, and how it names a delivery."""

    auth: Literal["hmac", "token"]
    header: str  # the signature header (hmac) or the shared-secret header (token)
    prefix: str = ""  # before the hex digest in a signature: "v1=", "sha256="
    delivery_id_header: str | None = None  # a retry repeats it; None: de-duplicate by body


TOKEN_HEADER = "X-Syncline-Token"  # noqa: S105 - a header name, not a secret

# The vendors' own schemes where they sign; a shared secret header where they cannot.
SCHEMES: Mapping[str, SourceScheme] = {
    "datadog": SourceScheme("token", TOKEN_HEADER),
    "dynatrace": SourceScheme("token", TOKEN_HEADER),
    "pagerduty": SourceScheme(
        "hmac", "X-PagerDuty-Signature", "v1=", delivery_id_header="X-Webhook-Id"
    ),
    "jira": SourceScheme(
        "hmac",
        "X-Hub-Signature",
        "sha256=",
        delivery_id_header="X-Atlassian-Webhook-Identifier",
    ),
    "servicenow": SourceScheme("token", TOKEN_HEADER),
    "generic": SourceScheme("token", TOKEN_HEADER),
}


class GatewayConfigError(ValueError):
    """The gateway cannot start as configured; the message lists every problem."""


class GatewaySettings(BaseSettings):
    """Limits and windows shared by every source (``SYNCLINE_GATEWAY_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    max_body_bytes: int = Field(
        default=256 * 1024, ge=1024, description="largest body accepted (413 above)"
    )
    body_dedupe_window: Duration = Field(
        default=timedelta(minutes=30),
        description="sources without a delivery id: the same bytes again within this window "
        "are a vendor's retry; after it, a new delivery (an alert that fires again with an "
        "identical body)",
    )
    retention: Duration = Field(
        default=MIN_RETENTION,
        description="seen delivery ids are held, and emitted rows kept, this long (min 48h)",
    )
    disabled: str = Field(default="", description="sources not served, comma-separated")
    forwarder_batch_size: int = Field(default=100, ge=1, le=1000)
    forwarder_max_backoff: Duration = Field(
        default=timedelta(seconds=30), description="longest wait between emit attempts"
    )

    @field_validator("retention")
    @classmethod
    def _retention_holds_ids_long_enough(cls, value: timedelta) -> timedelta:
        if value < MIN_RETENTION:
            raise ValueError("must be at least 48h: vendors retry a delivery for that long")
        return value

    @model_validator(mode="after")
    def _window_within_retention(self) -> GatewaySettings:
        if self.body_dedupe_window > self.retention:
            raise ValueError("body_dedupe_window must not exceed retention")
        return self

    def disabled_sources(self) -> set[str]:
        return {part.strip().lower() for part in self.disabled.split(",") if part.strip()}


class SourceConfig(BaseModel):
    """One source as served: its scheme, its secrets and its body limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    scheme: SourceScheme
    secrets: tuple[SecretStr, ...] = Field(min_length=1)
    secret_origin: str  # where the secrets came from, for the start-up log (never the value)
    max_body_bytes: int = Field(ge=1024)


class GatewayConfig(BaseModel):
    """The whole gateway as it runs: the served sources and the shared settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sources: dict[str, SourceConfig]
    disabled: frozenset[str]
    settings: GatewaySettings


SecretBlockReader = Callable[[str], str]


def _env_name(source: str, suffix: str) -> str:
    return f"{ENV_PREFIX}{source.upper()}_{suffix}"


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def load_gateway_config(
    environ: Mapping[str, str],
    *,
    read_secret_block: SecretBlockReader | None = None,
    settings: GatewaySettings | None = None,
) -> GatewayConfig:
    """Read every source's secrets and limits once; raise with every problem at once.

    ``read_secret_block`` reads a Prefect Secret block by name (the app passes one that uses
    Prefect); only sources configured with ``_SECRET_BLOCK`` call it.
    """
    settings = settings or GatewaySettings()
    disabled = settings.disabled_sources()
    problems = [
        f"SYNCLINE_GATEWAY_DISABLED: unknown source {name!r} (sources: {', '.join(SCHEMES)})"
        for name in sorted(disabled - set(SCHEMES))
    ]
    sources: dict[str, SourceConfig] = {}
    for name, scheme in SCHEMES.items():
        if name in disabled:
            continue
        secrets, origin, problem = _secrets_of(name, environ, read_secret_block)
        if problem is None:
            short = [n for n, secret in enumerate(secrets, 1) if len(secret) < MIN_SECRET_LENGTH]
            if short:
                problem = (
                    f"{name}: secret number {', '.join(map(str, short))} in {origin} is "
                    f"shorter than {MIN_SECRET_LENGTH} characters"
                )
        limit, limit_problem = _body_limit_of(name, environ, settings.max_body_bytes)
        if problem or limit_problem:
            problems += [p for p in (problem, limit_problem) if p]
            continue
        sources[name] = SourceConfig(
            name=name,
            scheme=scheme,
            secrets=tuple(SecretStr(secret) for secret in secrets),
            secret_origin=origin,
            max_body_bytes=limit,
        )
    if problems:
        raise GatewayConfigError(
            "the webhook gateway cannot start:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return GatewayConfig(sources=sources, disabled=frozenset(disabled), settings=settings)


def _secrets_of(
    name: str, environ: Mapping[str, str], read_secret_block: SecretBlockReader | None
) -> tuple[list[str], str, str | None]:
    """(secrets, where they came from, the problem or None)."""
    env_var, block_var = _env_name(name, "SECRET"), _env_name(name, "SECRET_BLOCK")
    in_env, block = environ.get(env_var, "").strip(), environ.get(block_var, "").strip()
    if in_env and block:
        return [], env_var, f"{name}: set {env_var} or {block_var}, not both"
    if in_env:
        return _split(in_env), env_var, None
    if block:
        origin = f"Prefect Secret block {block!r} ({block_var})"
        if read_secret_block is None:
            return [], origin, f"{name}: {block_var} is set but Secret blocks cannot be read here"
        try:
            value = read_secret_block(block)
        except Exception as error:  # the block is missing, the API is down ...
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            return [], origin, f"{name}: cannot read {origin}: {reason}"
        secrets = _split(value)
        return secrets, origin, None if secrets else f"{name}: {origin} is empty"
    return (
        [],
        env_var,
        f"{name}: no secret configured: set {env_var} (comma-separated for several) or "
        f"{block_var} (a Prefect Secret block's name), or disable the source with "
        f"SYNCLINE_GATEWAY_DISABLED={name}",
    )


def _body_limit_of(name: str, environ: Mapping[str, str], default: int) -> tuple[int, str | None]:
    variable = _env_name(name, "MAX_BODY_BYTES")
    text = environ.get(variable, "").strip()
    if not text:
        return default, None
    if not text.isdigit() or int(text) < 1024:
        return default, f"{name}: {variable} must be a whole number of bytes, at least 1024"
    return int(text), None
