"""The Jira sandbox's admin routes, next to its REST API, for tests and demos in another
process. JSON bodies, no credentials, loopback clients only (``sandboxes.core.server``):

* ``POST /sandbox/jira/reset``: no issues, no deliveries (receivers stay registered).
* ``POST /sandbox/jira/seed`` ``{"count", "seed"}``: add seeded issues; answers their keys.
* ``GET|PUT /sandbox/jira/settings`` ``{"time_zone", "search_lag_ms",
  "webhook_duplicate_probability", "rate_limit_reason"}``: the site's switchable behaviours.
* ``POST /sandbox/jira/save`` / ``POST /sandbox/jira/load`` ``{"path"}``: the saved state.

and the core's standard ones under the same prefix: ``faults``, ``clock`` (skew or freeze),
``rate-limit``, ``stats``, ``webhooks`` (register a receiver ``{"url", "secret",
"events"}``), ``webhooks/deliveries`` and ``webhooks/deliveries/{id}/redeliver``.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pydantic
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandboxes.core.server import parsed
from sandboxes.core.vendor import AdminRoute
from sandboxes.jira.config import JiraSandboxConfig
from sandboxes.jira.sandbox import JiraSandbox


class SeedRequest(pydantic.BaseModel):
    count: int = pydantic.Field(ge=0, le=100_000)
    seed: int | None = None


class SettingsRequest(pydantic.BaseModel):
    time_zone: str | None = None
    search_lag_ms: float | None = pydantic.Field(default=None, ge=0)
    webhook_duplicate_probability: float | None = pydantic.Field(default=None, ge=0, le=1)
    rate_limit_reason: str | None = None


class PathRequest(pydantic.BaseModel):
    path: Path


def _settings(config: JiraSandboxConfig) -> dict[str, object]:
    return {
        "time_zone": config.time_zone,
        "search_lag_ms": config.search_lag_ms,
        "webhook_duplicate_probability": config.webhook_duplicate_probability,
        "rate_limit_reason": config.rate_limit_reason,
    }


def admin_routes(sandbox: JiraSandbox) -> list[AdminRoute]:
    async def reset(request: Request) -> Response:
        sandbox.reset()
        return JSONResponse({"issues": 0})

    async def seed(request: Request) -> Response:
        body: SeedRequest = await parsed(request, SeedRequest)
        return JSONResponse({"keys": sandbox.seed(body.count, seed=body.seed)}, 201)

    async def settings(request: Request) -> Response:
        if request.method == "PUT":
            body: SettingsRequest = await parsed(request, SettingsRequest)
            try:
                for name, value in body.model_dump(exclude_none=True).items():
                    setattr(sandbox.config, name, value)
            except pydantic.ValidationError as error:
                details = orjson.loads(error.json(include_url=False))
                return JSONResponse({"error": "invalid settings", "details": details}, 422)
            sandbox.outbox.duplicate_probability = sandbox.config.webhook_duplicate_probability
        return JSONResponse(_settings(sandbox.config))

    async def save(request: Request) -> Response:
        body: PathRequest = await parsed(request, PathRequest)
        sandbox.save(body.path)
        return JSONResponse({"path": str(body.path), "issues": len(sandbox.keys())})

    async def load(request: Request) -> Response:
        body: PathRequest = await parsed(request, PathRequest)
        try:
            sandbox.load(body.path)
        except (OSError, ValueError) as error:
            return JSONResponse({"error": str(error)}, 400)
        return JSONResponse({"path": str(body.path), "issues": len(sandbox.keys())})

    return [
        AdminRoute("/reset", reset, ["POST"]),
        AdminRoute("/seed", seed, ["POST"]),
        AdminRoute("/settings", settings, ["GET", "PUT"]),
        AdminRoute("/save", save, ["POST"]),
        AdminRoute("/load", load, ["POST"]),
    ]


def build_app(sandbox: JiraSandbox) -> Starlette:
    """The REST API of ``sandbox`` plus the admin routes and ``/healthz``."""
    return sandbox.declaration.app(sandbox.app, extra_admin=admin_routes(sandbox))
