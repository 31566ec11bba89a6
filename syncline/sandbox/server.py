"""Serve the ServiceNow sandbox over HTTP, with admin routes for tests and demos.

``build_app`` mounts the Table API (``/api/now/...``) next to admin routes that let a test or
demo running in another process change the instance: create records, make realistic changes,
read request statistics, inject faults and move the clock. Admin routes take JSON, need no
credentials and answer only loopback clients.

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
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from syncline.sandbox.servicenow import (
    FaultConfig,
    ServiceNowSandbox,
    ServiceNowSandboxConfig,
    TableApiError,
)

_LOOPBACK_CLIENTS = frozenset({"127.0.0.1", "::1", "localhost"})
_ADMIN_PREFIX = "/sandbox/servicenow"


class TouchRequest(pydantic.BaseModel):
    table: str
    count: int = pydantic.Field(ge=0)
    seed: int = 0


class RecordRequest(pydantic.BaseModel):
    table: str
    fields: dict[str, str]


class ClockRequest(pydantic.BaseModel):
    """Set the clock to ``now`` and/or move it forward by ``advance_seconds``."""

    now: datetime | None = None
    advance_seconds: float | None = None


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

    async def stats(request: Request) -> Response:
        return JSONResponse(sandbox.stats.model_dump(mode="json"))

    async def faults(request: Request) -> Response:
        if request.method == "PUT":
            sandbox.faults = await _parsed(request, FaultConfig)
        return JSONResponse(sandbox.faults.model_dump(mode="json"))

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            body: ClockRequest = await _parsed(request, ClockRequest)
            if body.now is not None:
                sandbox.set_now(body.now)
            if body.advance_seconds is not None:
                sandbox.advance(body.advance_seconds)
        return JSONResponse({"now": sandbox.now().isoformat()})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def admin(path: str, handler: AdminHandler, methods: list[str]) -> Route:
        return Route(f"{_ADMIN_PREFIX}{path}", _with_input_errors(handler), methods=methods)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            admin("/touch", _loopback_only(touch), ["POST"]),
            admin("/records", _loopback_only(create_record), ["POST"]),
            admin("/stats", _loopback_only(stats), ["GET"]),
            admin("/faults", _loopback_only(faults), ["GET", "PUT"]),
            admin("/clock", _loopback_only(clock), ["GET", "POST"]),
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
    arguments = parser.parse_args(argv)
    config = ServiceNowSandboxConfig(
        cmdb_ci_server=arguments.cmdb_ci_server,
        incident=arguments.incident,
        sys_user=arguments.sys_user,
        seed=arguments.seed,
        instance_url=arguments.instance_url,
        rate_limit_per_hour=arguments.rate_limit_per_hour,
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
