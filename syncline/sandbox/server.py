"""Serve the ServiceNow sandbox over HTTP, with admin routes for tests and demos.

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

Run it with ``python -m syncline.sandbox.server --port 8701``.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Self

import pydantic
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from syncline.sandbox.churn import ChurnConfig
from syncline.sandbox.faults import FaultConfig
from syncline.sandbox.servicenow import (
    ServiceNowSandbox,
    ServiceNowSandboxConfig,
    TableApiError,
)
from syncline.sandbox.write_faults import quiet_dropped_connections

_LOOPBACK_CLIENTS = frozenset({"127.0.0.1", "::1", "localhost"})
_ADMIN_PREFIX = "/sandbox/servicenow"


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


AdminHandler = Callable[[Request], Awaitable[Response]]


def _loopback_only(handler: AdminHandler) -> AdminHandler:
    async def guarded(request: Request) -> Response:
        client_host = request.client.host if request.client is not None else ""
        if client_host not in _LOOPBACK_CLIENTS:
            return JSONResponse({"error": "admin routes answer loopback clients only"}, 403)
        return await handler(request)

    return guarded


async def _parsed(request: Request, model: type[pydantic.BaseModel]) -> Any:
    try:
        return model.model_validate_json(await request.body())
    except pydantic.ValidationError as error:
        raise _AdminInputError(error.errors(include_url=False)) from None


class _AdminInputError(Exception):
    def __init__(self, errors: Sequence[Any]) -> None:
        super().__init__("invalid admin request")
        self.errors = list(errors)


def build_app(sandbox: ServiceNowSandbox) -> Starlette:
    """The ServiceNow Table API of ``sandbox`` plus the admin routes and ``/healthz``."""
    quiet_dropped_connections()

    async def touch(request: Request) -> Response:
        body: TouchRequest = await _parsed(request, TouchRequest)
        try:
            sys_ids = sandbox.touch(body.table, body.count, seed=body.seed)
        except ValueError as error:
            return JSONResponse({"error": str(error)}, 400)
        return JSONResponse({"sys_ids": sys_ids})

    async def create_record(request: Request) -> Response:
        body: RecordRequest = await _parsed(request, RecordRequest)
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
            body: RecordChange = await _parsed(request, RecordChange)
            return JSONResponse(sandbox.update(table, sys_id, body.fields))
        except TableApiError as error:  # not a valid table name
            return JSONResponse({"error": error.message}, 400)
        except KeyError:
            return JSONResponse({"error": f"no {table} record {sys_id}"}, 404)

    async def churn(request: Request) -> Response:
        if request.method == "PUT":
            config: ChurnConfig = await _parsed(request, ChurnConfig)
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
            sandbox.faults = await _parsed(request, FaultConfig)
        return JSONResponse(sandbox.faults.model_dump(mode="json"))

    async def rate_limit(request: Request) -> Response:
        if request.method == "PUT":
            body: RateLimitRequest = await _parsed(request, RateLimitRequest)
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
            body: ClockRequest = await _parsed(request, ClockRequest)
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

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def admin(path: str, handler: AdminHandler, methods: list[str]) -> Route:
        return Route(f"{_ADMIN_PREFIX}{path}", _with_input_errors(handler), methods=methods)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            admin("/touch", _loopback_only(touch), ["POST"]),
            admin("/records", _loopback_only(create_record), ["POST"]),
            admin("/records/{table}/{sys_id}", _loopback_only(change_record), ["PATCH", "DELETE"]),
            admin("/churn", _loopback_only(churn), ["GET", "PUT", "DELETE"]),
            admin("/stats", _loopback_only(stats), ["GET"]),
            admin("/faults", _loopback_only(faults), ["GET", "PUT"]),
            admin("/clock", _loopback_only(clock), ["GET", "POST"]),
            admin("/rate-limit", _loopback_only(rate_limit), ["GET", "PUT"]),
            admin("/correlations/{table}", _loopback_only(correlations), ["GET"]),
            Mount("", app=sandbox.app),
        ]
    )


def _with_input_errors(handler: AdminHandler) -> AdminHandler:
    async def answered(request: Request) -> Response:
        try:
            return await handler(request)
        except _AdminInputError as error:
            return JSONResponse({"error": "invalid request body", "details": error.errors}, 422)

    return answered


def serve(
    host: str = "127.0.0.1",
    port: int = 8701,
    config: ServiceNowSandboxConfig | None = None,
) -> None:
    """Seed a sandbox and serve it until interrupted. Binds loopback unless told otherwise."""
    sandbox = ServiceNowSandbox(config)
    uvicorn.run(build_app(sandbox), host=host, port=port, log_level="warning", access_log=False)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the ServiceNow Table API sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8701)
    defaults = ServiceNowSandboxConfig()
    parser.add_argument("--cmdb-ci-server", type=int, default=defaults.cmdb_ci_server)
    parser.add_argument("--incident", type=int, default=defaults.incident)
    parser.add_argument("--sys-user", type=int, default=defaults.sys_user)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--instance-url", default=defaults.instance_url)
    parser.add_argument("--rate-limit-per-hour", type=int, default=None)
    parser.add_argument("--rate-limit-per-second", type=float, default=None)
    parser.add_argument(
        "--clock-offset-seconds",
        type=float,
        default=defaults.clock_offset_seconds,
        help="run the instance clock this far ahead of real time (negative: behind)",
    )
    arguments = parser.parse_args(argv)
    config = ServiceNowSandboxConfig(
        cmdb_ci_server=arguments.cmdb_ci_server,
        incident=arguments.incident,
        sys_user=arguments.sys_user,
        seed=arguments.seed,
        instance_url=arguments.instance_url,
        rate_limit_per_hour=arguments.rate_limit_per_hour,
        rate_limit_per_second=arguments.rate_limit_per_second,
        clock_offset_seconds=arguments.clock_offset_seconds,
    )
    serve(arguments.host, arguments.port, config)


if __name__ == "__main__":
    main()


class BackgroundServer:
    """An ASGI app served by uvicorn on 127.0.0.1 from a daemon thread of this process.

    For tests, the demo and benchmarks: ``with BackgroundServer(app) as server: server.url``.
    Port 0 picks a free port.
    """

    def __init__(self, app: Any, *, port: int = 0, startup_timeout: float = 10.0) -> None:
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._startup_timeout = startup_timeout
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
