"""ASGI helpers every vendor simulator serves with.

``BackgroundServer`` runs an app on a free loopback port from a daemon thread (tests, the demo,
benchmarks). ``AdminRoutes`` collects a vendor's admin routes under its prefix: JSON bodies
validated by pydantic (422 with the errors otherwise), no credentials, and answered to
loopback clients only, since they change the simulated world.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self, TypeVar

import pydantic
import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

LOOPBACK_CLIENTS = frozenset({"127.0.0.1", "::1", "localhost"})

AdminHandler = Callable[[Request], Awaitable[Response]]
ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


class AdminInputError(Exception):
    """An admin request body that does not validate; answered 422."""

    def __init__(self, errors: Sequence[Any]) -> None:
        super().__init__("invalid admin request")
        self.errors = list(errors)


async def parsed(request: Request, model: type[ModelT]) -> ModelT:
    """The request's JSON body as ``model``; raises ``AdminInputError``."""
    try:
        return model.model_validate_json(await request.body())
    except pydantic.ValidationError as error:
        raise AdminInputError(error.errors(include_url=False)) from None


def loopback_only(handler: AdminHandler) -> AdminHandler:
    """Answer 403 to any client not on the loopback interface."""

    async def guarded(request: Request) -> Response:
        client_host = request.client.host if request.client is not None else ""
        if client_host not in LOOPBACK_CLIENTS:
            return JSONResponse({"error": "admin routes answer loopback clients only"}, 403)
        return await handler(request)

    return guarded


def _with_input_errors(handler: AdminHandler) -> AdminHandler:
    async def answered(request: Request) -> Response:
        try:
            return await handler(request)
        except AdminInputError as error:
            return JSONResponse({"error": "invalid request body", "details": error.errors}, 422)

    return answered


class AdminRoutes:
    """A vendor's admin routes under ``prefix`` (``/sandbox/<vendor>``), each guarded."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip("/")
        self.routes: list[Route] = []

    def add(self, path: str, handler: AdminHandler, methods: Sequence[str]) -> None:
        self.routes.append(
            Route(
                f"{self.prefix}{path}",
                _with_input_errors(loopback_only(handler)),
                methods=list(methods),
            )
        )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def health_route() -> Route:
    return Route("/healthz", healthz, methods=["GET"])


class BackgroundServer:
    """An ASGI app served by uvicorn on 127.0.0.1 from a daemon thread of this process.

    For tests, the demo and benchmarks: ``with BackgroundServer(app) as server: server.url``.
    Port 0 picks a free port.
    """

    def __init__(self, app: Any, *, port: int = 0, startup_timeout: float = 10.0) -> None:
        self.port = port or free_port()
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
