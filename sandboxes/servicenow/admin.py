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
* ``GET|POST /sandbox/servicenow/outbound-rest`` ``{"url", "header_name", "header_value",
  "tables", "operations", "name"}``: list or register a receiver of outbound REST messages
  (201); ``DELETE /sandbox/servicenow/outbound-rest/{id}`` (see ``outbound``).
* ``GET /sandbox/servicenow/webhooks/deliveries`` and ``POST .../deliveries/{id}/redeliver``:
  the outbound deliveries with their attempts, and sending one again.

The faults, clock, rate-limit and stats routes are the core's standard admin routes
(``sandboxes.core.vendor``); the loopback guard, body validation and ``/healthz`` come from
``sandboxes.core.server``.
"""

from __future__ import annotations

import pydantic
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandboxes.core.server import parsed
from sandboxes.core.vendor import AdminRoute
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


def build_app(sandbox: ServiceNowSandbox) -> Starlette:
    """The ServiceNow Table API of ``sandbox`` plus the admin routes and ``/healthz``."""

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

    async def correlations(request: Request) -> Response:
        creates = sandbox.creates_by_correlation(request.path_params["table"])
        return JSONResponse(
            {
                "field": sandbox.config.correlation_field,
                "creates": creates,
                "duplicated": sorted(value for value, count in creates.items() if count > 1),
            }
        )

    return sandbox.declaration.app(
        sandbox.app,
        extra_admin=[
            AdminRoute("/touch", touch, ["POST"]),
            AdminRoute("/records", create_record, ["POST"]),
            AdminRoute("/records/{table}/{sys_id}", change_record, ["PATCH", "DELETE"]),
            AdminRoute("/churn", churn, ["GET", "PUT", "DELETE"]),
            AdminRoute("/correlations/{table}", correlations, ["GET"]),
        ],
    )
