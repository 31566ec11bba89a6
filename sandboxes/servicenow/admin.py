"""The ServiceNow sandbox's admin routes, next to its Table API.

``build_app`` mounts the Table API (``/api/now/...``) next to admin routes that let a test or
demo running in another process change the instance: create, update and delete records, make
realistic changes, run background churn, read request statistics, inject faults and move or
offset the clock. Admin routes take JSON, need no credentials and answer only loopback
clients:

* ``POST /sandbox/servicenow/records`` ``{"table", "fields"}``: create a record (201).
* ``PATCH /sandbox/servicenow/records/{table}/{sys_id}`` ``{"fields"}``: update it (200),
  ``DELETE`` the same path: delete it (204); 404 when there is no such record.
* ``POST /sandbox/servicenow/touch`` ``{"table", "count", "seed"}``: realistic changes.
* ``PUT /sandbox/servicenow/churn`` with ``ChurnConfig``'s fields: start churn (202; 409 while
  one runs); ``DELETE``: stop it and report; ``GET``: report so far.
* ``GET|PUT /sandbox/servicenow/faults`` with ``FaultConfig``'s fields.
* ``GET|POST /sandbox/servicenow/clock`` ``{"offset_seconds", "now", "advance_seconds"}``,
  applied in that order: run at real time plus an offset, freeze at a moment, move forward.
  Both answer ``{"now", "offset_seconds", "frozen"}``.
* ``GET|PUT /sandbox/servicenow/rate-limit`` ``{"per_second"}``: the per-second limit
  (null: none); a new limit starts with a full bucket.
* ``GET /sandbox/servicenow/stats``: request counts (rate limiting, write faults, creates).
* ``GET /sandbox/servicenow/correlations/{table}``: API creates per correlation value,
  ``{"field", "creates", "duplicated"}`` (``duplicated``: the values created more than once).

The loopback guard, body validation and ``/healthz`` come from ``sandboxes.core.server``.
"""

from __future__ import annotations

from datetime import datetime

import pydantic
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount

from sandboxes.core.faults import FaultConfig
from sandboxes.core.server import AdminRoutes, health_route, parsed
from sandboxes.core.write_faults import quiet_dropped_connections
from sandboxes.servicenow.api import TableApiError
from sandboxes.servicenow.churn import ChurnConfig
from sandboxes.servicenow.sandbox import ServiceNowSandbox

ADMIN_PREFIX = "/sandbox/servicenow"


class TouchRequest(pydantic.BaseModel):
    table: str
    count: int = pydantic.Field(ge=0)
    seed: int = 0


class RecordRequest(pydantic.BaseModel):
    table: str
    fields: dict[str, str]


class RecordChange(pydantic.BaseModel):
    fields: dict[str, str]


class ClockRequest(pydantic.BaseModel):
    """Let the clock run ``offset_seconds`` ahead of real time (negative: behind), set it to
    ``now`` (frozen) and/or move it forward by ``advance_seconds``, in that order."""

    offset_seconds: float | None = None
    now: datetime | None = None
    advance_seconds: float | None = None


class RateLimitRequest(pydantic.BaseModel):
    per_second: float | None = pydantic.Field(default=None, gt=0)


def build_app(sandbox: ServiceNowSandbox) -> Starlette:
    """The ServiceNow Table API of ``sandbox`` plus the admin routes and ``/healthz``."""
    quiet_dropped_connections()

    async def touch(request: Request) -> Response:
        body: TouchRequest = await parsed(request, TouchRequest)
        try:
            sys_ids = sandbox.touch(body.table, body.count, seed=body.seed)
        except ValueError as error:
            return JSONResponse({"error": str(error)}, 400)
        return JSONResponse({"sys_ids": sys_ids})

    async def create_record(request: Request) -> Response:
        body: RecordRequest = await parsed(request, RecordRequest)
        try:
            record = sandbox.insert(body.table, body.fields)
        except TableApiError as error:  # not a valid table name
            return JSONResponse({"error": error.message}, 400)
        return JSONResponse(record, 201)

    async def change_record(request: Request) -> Response:
        table, sys_id = request.path_params["table"], request.path_params["sys_id"]
        try:
            if request.method == "DELETE":
                if not sandbox.delete(table, sys_id):
                    return JSONResponse({"error": f"no {table} record {sys_id}"}, 404)
                return Response(status_code=204)
            body: RecordChange = await parsed(request, RecordChange)
            return JSONResponse(sandbox.update(table, sys_id, body.fields))
        except TableApiError as error:  # not a valid table name
            return JSONResponse({"error": error.message}, 400)
        except KeyError:
            return JSONResponse({"error": f"no {table} record {sys_id}"}, 404)

    async def churn(request: Request) -> Response:
        if request.method == "PUT":
            config: ChurnConfig = await parsed(request, ChurnConfig)
            try:
                sandbox.start_churn(config)
            except RuntimeError as error:
                return JSONResponse({"error": str(error)}, 409)
            except ValueError as error:
                return JSONResponse({"error": str(error)}, 400)
            return JSONResponse(sandbox.churn_report().model_dump(mode="json"), 202)
        if request.method == "DELETE":
            # Joining the churn thread blocks; keep the event loop serving meanwhile.
            report = await run_in_threadpool(sandbox.stop_churn)
            return JSONResponse(report.model_dump(mode="json"))
        return JSONResponse(sandbox.churn_report().model_dump(mode="json"))

    async def stats(request: Request) -> Response:
        return JSONResponse(sandbox.stats.model_dump(mode="json"))

    async def faults(request: Request) -> Response:
        if request.method == "PUT":
            sandbox.faults = await parsed(request, FaultConfig)
        return JSONResponse(sandbox.faults.model_dump(mode="json"))

    async def rate_limit(request: Request) -> Response:
        if request.method == "PUT":
            body: RateLimitRequest = await parsed(request, RateLimitRequest)
            sandbox.rate_limit_per_second = body.per_second
        return JSONResponse({"per_second": sandbox.rate_limit_per_second})

    async def correlations(request: Request) -> Response:
        creates = sandbox.creates_by_correlation(request.path_params["table"])
        return JSONResponse(
            {
                "field": sandbox.config.correlation_field,
                "creates": creates,
                "duplicated": sorted(value for value, count in creates.items() if count > 1),
            }
        )

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            body: ClockRequest = await parsed(request, ClockRequest)
            if body.offset_seconds is not None:
                sandbox.set_clock_offset(body.offset_seconds)
            if body.now is not None:
                sandbox.set_now(body.now)
            if body.advance_seconds is not None:
                sandbox.advance(body.advance_seconds)
        return JSONResponse(
            {
                "now": sandbox.now().isoformat(),
                "offset_seconds": sandbox.clock_offset_seconds,
                "frozen": sandbox.clock_frozen,
            }
        )

    admin = AdminRoutes(ADMIN_PREFIX)
    admin.add("/touch", touch, ["POST"])
    admin.add("/records", create_record, ["POST"])
    admin.add("/records/{table}/{sys_id}", change_record, ["PATCH", "DELETE"])
    admin.add("/churn", churn, ["GET", "PUT", "DELETE"])
    admin.add("/stats", stats, ["GET"])
    admin.add("/faults", faults, ["GET", "PUT"])
    admin.add("/clock", clock, ["GET", "POST"])
    admin.add("/rate-limit", rate_limit, ["GET", "PUT"])
    admin.add("/correlations/{table}", correlations, ["GET"])
    return Starlette(routes=[health_route(), *admin.routes, Mount("", app=sandbox.app)])
