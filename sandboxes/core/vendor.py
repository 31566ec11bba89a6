"""A vendor simulator as a small declaration on the shared core.

A vendor fills in ``VendorDeclaration``: its name, API routes (plain functions of an
``ApiCall``), how it authenticates, how it spells errors and rate-limit headers, its run-time
state (clock, faults, limiter, stats, lock), its own admin routes and, if it sends webhooks,
an outbox. ``app()`` builds the ASGI app: ``/healthz``; the admin routes under
``/sandbox/<name>`` (loopback only, JSON bodies validated, see ``server``), the vendor's own
and the standard ones below; and the API routes, each behind the shared pipeline
(``pipeline``: authentication, quota, per-second limit, injected faults, write faults).

Standard admin routes, for every vendor:

* ``GET|PUT  /faults`` with ``FaultConfig``'s fields (PUT restarts the "every Nth" counts).
* ``GET|POST /clock`` ``{"offset_seconds", "now", "advance_seconds"}``, applied in that
  order; both answer ``{"now", "offset_seconds", "frozen"}``.
* ``GET|PUT  /rate-limit`` ``{"per_second"}`` (null: none); a new limit starts full.
* ``GET      /stats``: request counts.

and, when the vendor declares an outbox:

* ``GET|POST /webhooks`` ``{"url", "secret", "events", "name"}``: list or register a
  receiver (201); ``DELETE /webhooks/{id}``.
* ``GET /webhooks/deliveries``: every delivery with its attempts;
  ``POST /webhooks/deliveries/{id}/redeliver`` (202; same id, same bytes).

Declaring a vendor::

    state = VendorState(InstanceClock(), RequestStats())
    vendor = VendorDeclaration(
        name="acme",
        routes=[ApiRoute("/api/things/{id}", read_thing, ["GET"])],
        authenticate=check_basic_auth,          # Request -> user, or raise an ApiError
        errors=AcmeErrors(),                    # the vendor's error bodies
        state=state,
        rate_limit=AcmeRateLimitHeaders(),      # a RateLimitPolicy
        admin=[AdminRoute("/reset", reset, ["POST"])],
        outbox=WebhookOutbox(HUB, delivery_id_header="X-Acme-Delivery"),
    )
    app = vendor.app()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pydantic
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from sandboxes.core.faults import FaultConfig, login_page
from sandboxes.core.outbox import WebhookOutbox
from sandboxes.core.pipeline import ApiHandler, RequestPipeline, VendorState
from sandboxes.core.policy import ErrorSpelling, RateLimitPolicy
from sandboxes.core.server import AdminHandler, AdminRoutes, health_route, parsed
from sandboxes.core.write_faults import quiet_dropped_connections


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """An API path (Starlette syntax, ``{name}`` parameters) and its handler."""

    path: str
    handler: ApiHandler
    methods: Sequence[str]


@dataclass(frozen=True, slots=True)
class AdminRoute:
    """An admin path relative to the vendor's prefix."""

    path: str
    handler: AdminHandler
    methods: Sequence[str]


class ClockRequest(pydantic.BaseModel):
    """Let the clock run ``offset_seconds`` ahead of real time (negative: behind), set it to
    ``now`` (frozen) and/or move it forward by ``advance_seconds``, in that order."""

    offset_seconds: float | None = None
    now: datetime | None = None
    advance_seconds: float | None = None


class RateLimitRequest(pydantic.BaseModel):
    per_second: float | None = pydantic.Field(default=None, gt=0)


class SubscribeRequest(pydantic.BaseModel):
    url: str = pydantic.Field(pattern=r"^https?://")
    secret: str | None = None
    events: list[str] = pydantic.Field(default_factory=list)
    name: str = ""


@dataclass(slots=True)
class VendorDeclaration:
    """Everything that makes one vendor's simulator; see the module docstring."""

    name: str
    routes: Sequence[ApiRoute]
    authenticate: Callable[[Request], str]
    errors: ErrorSpelling
    state: VendorState
    rate_limit: RateLimitPolicy = field(default_factory=RateLimitPolicy)
    quota: Callable[[], dict[str, str]] | None = None
    admin: Sequence[AdminRoute] = ()
    outbox: WebhookOutbox | None = None
    # What an SSO proxy in front of the vendor answers (the "html" garbage fault).
    login_page: Callable[[], Response] = login_page

    @property
    def admin_prefix(self) -> str:
        return f"/sandbox/{self.name}"

    def pipeline(self) -> RequestPipeline:
        return RequestPipeline(
            self.state, self.authenticate, self.errors, self.rate_limit, self.login_page, self.quota
        )

    def api_app(self) -> Starlette:
        """The API routes alone, behind the pipeline."""
        pipeline = self.pipeline()
        return Starlette(
            routes=[
                Route(route.path, pipeline.endpoint(route.handler), methods=list(route.methods))
                for route in self.routes
            ]
        )

    def admin_routes(self, extra: Sequence[AdminRoute] = ()) -> list[BaseRoute]:
        """The vendor's admin routes (and ``extra`` ones), then the standard ones, under its
        prefix."""
        admin = AdminRoutes(self.admin_prefix)
        for route in (*self.admin, *extra, *standard_admin_routes(self.state, self.outbox)):
            admin.add(route.path, route.handler, route.methods)
        return list(admin.routes)

    def app(
        self, api: Starlette | None = None, *, extra_admin: Sequence[AdminRoute] = ()
    ) -> Starlette:
        """``/healthz``, the admin routes (with ``extra_admin``, for routes built around an
        existing vendor object) and the API (``api``, or a new ``api_app()``)."""
        quiet_dropped_connections()
        return Starlette(
            routes=[
                health_route(),
                *self.admin_routes(extra_admin),
                Mount("", app=api if api is not None else self.api_app()),
            ]
        )


def standard_admin_routes(state: VendorState, outbox: WebhookOutbox | None) -> list[AdminRoute]:
    """Faults, clock, rate limit and stats; the webhook routes when there is an outbox."""

    async def faults(request: Request) -> Response:
        if request.method == "PUT":
            state.faults = await parsed(request, FaultConfig)
        return JSONResponse(state.faults.model_dump(mode="json"))

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            body: ClockRequest = await parsed(request, ClockRequest)
            if body.offset_seconds is not None:
                state.clock.run(body.offset_seconds)
            if body.now is not None:
                state.clock.set(body.now)
            if body.advance_seconds is not None:
                state.clock.advance(body.advance_seconds)
        return JSONResponse(
            {
                "now": state.clock.now().isoformat(),
                "offset_seconds": state.clock.offset_seconds,
                "frozen": state.clock.frozen,
            }
        )

    async def rate_limit(request: Request) -> Response:
        if request.method == "PUT":
            body: RateLimitRequest = await parsed(request, RateLimitRequest)
            state.rate_limit_per_second = body.per_second
        return JSONResponse({"per_second": state.rate_limit_per_second})

    async def stats(request: Request) -> Response:
        with state.lock:
            return JSONResponse(state.stats.model_dump(mode="json"))

    routes = [
        AdminRoute("/faults", faults, ["GET", "PUT"]),
        AdminRoute("/clock", clock, ["GET", "POST"]),
        AdminRoute("/rate-limit", rate_limit, ["GET", "PUT"]),
        AdminRoute("/stats", stats, ["GET"]),
    ]
    if outbox is not None:
        routes.extend(webhook_admin_routes(outbox))
    return routes


def webhook_admin_routes(outbox: WebhookOutbox) -> list[AdminRoute]:
    async def webhooks(request: Request) -> Response:
        if request.method == "POST":
            body: SubscribeRequest = await parsed(request, SubscribeRequest)
            subscription = outbox.subscribe(
                body.url, body.secret, events=body.events, name=body.name
            )
            return JSONResponse({"id": subscription.id, "url": subscription.url}, 201)
        return JSONResponse(
            [
                {"id": s.id, "url": s.url, "name": s.name, "events": s.events}
                for s in outbox.subscriptions()
            ]
        )

    async def unsubscribe(request: Request) -> Response:
        if not outbox.unsubscribe(request.path_params["id"]):
            return JSONResponse({"error": "no such webhook"}, 404)
        return Response(status_code=204)

    async def deliveries(request: Request) -> Response:
        return JSONResponse(outbox.deliveries())

    async def redeliver(request: Request) -> Response:
        delivery_id = request.path_params["id"]
        try:
            outbox.redeliver(delivery_id)
        except KeyError:
            return JSONResponse({"error": f"no delivery {delivery_id}"}, 404)
        return JSONResponse({"id": delivery_id}, 202)

    return [
        AdminRoute("/webhooks", webhooks, ["GET", "POST"]),
        AdminRoute("/webhooks/{id}", unsubscribe, ["DELETE"]),
        AdminRoute("/webhooks/deliveries", deliveries, ["GET"]),
        AdminRoute("/webhooks/deliveries/{id}/redeliver", redeliver, ["POST"]),
    ]
