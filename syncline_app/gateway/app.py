"""The webhook gateway's HTTP side: ``POST /hooks/<source>`` and ``GET /healthz``.

A delivery passes, in order: the declared size (413), the content type (415), the size as
read (413), the source's signature or token (401 missing, 403 wrong), JSON (400) and the
source's envelope (400, via ``syncline.inbound.parse_delivery``). Then it is committed to the
outbox in one short transaction and answered 202; the forwarder emits it. A vendor's retry of
a delivery already stored (same delivery id, or for sources without one the same bytes within
the body window) is answered 200 ``{"duplicate": true}`` and stored nowhere. A well-formed
delivery that carries nothing Syncline acts on is answered 200 ``{"ignored": true}``: vendors
switch off webhooks that keep getting 4xx. Every refusal is a JSON body with a one-line
``error``; nothing is stored or emitted for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from syncline.inbound import IgnoredDelivery, InboundError, InboundEvent, parse_delivery
from syncline.outbox import DELIVERY_ID_MAX, GatewayOutbox, InboundDelivery
from syncline_app.gateway.auth import AuthFailure, verify
from syncline_app.gateway.config import GatewayConfig, SourceConfig
from syncline_app.gateway.forwarder import OutboxForwarder

log = logging.getLogger("syncline.gateway")

_JSON_CHARSETS = frozenset({"utf-8", "utf8"})


class Refusal(Exception):
    """An answer other than 202, with its one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def create_app(
    config: GatewayConfig, outbox: GatewayOutbox, forwarder: OutboxForwarder | None = None
) -> Starlette:
    """The gateway for ``config``, storing into ``outbox``; ``forwarder`` runs with the app.

    Without a forwarder (tests of the HTTP contract, or a process that only receives) the
    outbox fills and another process's forwarder emits it.
    """

    async def receive(request: Request) -> JSONResponse:
        name = request.path_params["source"]
        source = config.sources.get(name)
        if source is None:
            why = "is disabled on this gateway" if name in config.disabled else "is not known"
            known = ", ".join(sorted(config.sources)) or "none"
            return _error(404, f"webhook source {name!r} {why} (served: {known})")
        started = time.perf_counter()
        try:
            response = await _accept(request, source)
        except Refusal as refusal:
            log.info("gateway: %s delivery refused (%d): %s", name, refusal.status, refusal.reason)
            return _error(refusal.status, refusal.reason)
        log.debug("gateway: %s answered in %.1f ms", name, (time.perf_counter() - started) * 1e3)
        return response

    async def _accept(request: Request, source: SourceConfig) -> JSONResponse:
        limit = source.max_body_bytes
        _check_declared_length(request, limit)
        _check_content_type(request)
        body = await _read_body(request, limit)
        try:
            verify(source, request.headers, body)
        except AuthFailure as failure:
            raise Refusal(failure.status, failure.reason) from None
        delivery_id = _delivery_id(request, source)
        payload = _parse_json(body)
        try:
            inbound = parse_delivery(source.name, payload)
        except IgnoredDelivery as ignored:
            return JSONResponse({"ignored": True, "reason": str(ignored)}, status_code=200)
        except InboundError as error:
            raise Refusal(400, str(error)) from None
        delivery = _delivery(source, config, inbound, delivery_id, body)
        try:
            admission = await run_in_threadpool(outbox.admit, delivery)
        except Exception:
            # The vendor retries a 5xx: nothing is lost while the ledger is unreachable.
            log.exception("gateway: cannot store a %s delivery in the outbox", source.name)
            raise Refusal(503, "the outbox is unavailable; retry later") from None
        if admission.duplicate:
            return JSONResponse({"duplicate": True, "id": admission.id}, status_code=200)
        if forwarder is not None:
            forwarder.wake()
        log.info(
            "gateway: accepted %s delivery %s as %s (%s)",
            source.name,
            delivery_id or "-",
            admission.id,
            inbound.event,
        )
        return JSONResponse(
            {"accepted": True, "id": admission.id, "event": inbound.event}, status_code=202
        )

    async def healthz(request: Request) -> JSONResponse:
        try:
            backlog = await run_in_threadpool(outbox.backlog)
        except Exception as error:
            reason = f"the outbox is unreachable: {type(error).__name__}"
            return JSONResponse({"status": "error", "error": reason}, status_code=503)
        oldest = backlog.oldest_received_at
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else None
        body: dict[str, Any] = {
            "status": "ok",
            "sources": sorted(config.sources),
            "outbox": {"pending": backlog.pending, "oldest_pending_age_seconds": age},
            "forwarder": forwarder.status.as_json() if forwarder else {"state": "absent"},
        }
        return JSONResponse(body)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if forwarder is None:
            yield
            return
        task = asyncio.create_task(forwarder.run(), name="syncline-gateway-forwarder")
        try:
            yield
        finally:
            await forwarder.stop()
            await task
            await forwarder.api.aclose()

    routes = [
        Route("/hooks/{source}", receive, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.strip().isdigit():
        raise Refusal(400, "Content-Length is not a number")
    if int(declared) > limit:
        raise Refusal(413, f"body of {int(declared)} bytes is over the limit of {limit} bytes")


def _check_content_type(request: Request) -> None:
    header = request.headers.get("content-type", "")
    media, *parameters = (part.strip() for part in header.split(";"))
    if media.lower() != "application/json":
        raise Refusal(415, f"content type must be application/json, not {media or 'none'!r}")
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if key.strip().lower() == "charset" and charset not in _JSON_CHARSETS:
            raise Refusal(415, f"JSON must be UTF-8, not charset {charset!r}")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes ``limit`` (a chunked or lying sender)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refusal(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _delivery_id(request: Request, source: SourceConfig) -> str | None:
    header = source.scheme.delivery_id_header
    if header is None:
        return None
    value = request.headers.get(header, "").strip()
    if len(value) > DELIVERY_ID_MAX:
        raise Refusal(400, f"{header} is longer than {DELIVERY_ID_MAX} characters")
    return value or None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as error:
        raise Refusal(400, f"body is not UTF-8 (byte {error.start})") from None
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise Refusal(400, f"body is not valid JSON: {error.msg} at {where}") from None
    except (ValueError, RecursionError) as error:
        raise Refusal(400, f"body is not valid JSON: {error}") from None


def _delivery(
    source: SourceConfig,
    config: GatewayConfig,
    inbound: InboundEvent,
    delivery_id: str | None,
    body: bytes,
) -> InboundDelivery:
    settings = config.settings
    if delivery_id is not None:
        # The vendor names its retries: a retry repeats the id, a re-notification does not.
        key, window = f"id:{delivery_id}", settings.retention
    else:
        # Nothing names a retry but its bytes; the same bytes much later are a new delivery.
        key, window = f"sha256:{hashlib.sha256(body).hexdigest()}", settings.body_dedupe_window
    return InboundDelivery(
        source=source.name,
        delivery_id=delivery_id,
        dedupe_key=key,
        dedupe_window=window,
        received_at=datetime.now(UTC),
        event=inbound.event,
        resource_id=inbound.resource_id,
        subject_key=inbound.subject_key,
        payload=inbound.model_dump(mode="json"),
        raw_body=body,
    )
