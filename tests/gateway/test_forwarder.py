"""The forwarder's bookkeeping, with Prefect's events API answering as told (the transport
is the seam): a failed emit stays pending, a refused event is set aside, a delivery wakes it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest

from syncline.outbox import GatewayOutbox
from syncline_app.gateway.app import create_app
from syncline_app.gateway.config import GatewayConfig
from syncline_app.gateway.forwarder import OutboxForwarder, PrefectEventsAPI
from tests.gateway.conftest import post
from tests.gateway.payloads import FIRST, LATER

pytestmark = pytest.mark.anyio

API = "http://prefect.test/api"


class EventsEndpoint:
    """``POST /api/events`` as Prefect answers it, or with the status it is told to."""

    def __init__(self) -> None:
        self.status = 204
        self.refuse_event_ids: set[str] = set()
        self.received: list[dict[str, object]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/api/events")
        events = json.loads(request.content)
        if self.status != 204:
            return httpx.Response(self.status, text="unavailable")
        if any(event["id"] in self.refuse_event_ids for event in events):
            return httpx.Response(422, json={"detail": "invalid event"})
        self.received += events
        return httpx.Response(204)


@asynccontextmanager
async def running_gateway(
    config: GatewayConfig, outbox: GatewayOutbox, endpoint: EventsEndpoint, **options: object
) -> AsyncIterator[tuple[httpx.AsyncClient, OutboxForwarder]]:
    """The app with its forwarder started by its own lifespan, as uvicorn runs it."""
    api = PrefectEventsAPI(API, transport=httpx.MockTransport(endpoint))
    defaults: dict[str, object] = {
        "min_backoff": timedelta(milliseconds=20),
        "max_backoff": timedelta(milliseconds=100),
    }
    forwarder = OutboxForwarder(outbox, api, **{**defaults, **options})  # type: ignore[arg-type]
    app = create_app(config, outbox, forwarder)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client, forwarder
    assert forwarder.status.state == "stopped"


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_each_delivery_becomes_one_event_with_the_outbox_id(
    config: GatewayConfig, outbox: GatewayOutbox
) -> None:
    endpoint = EventsEndpoint()
    async with running_gateway(config, outbox, endpoint) as (client, _forwarder):
        answers = [
            await post(client, "pagerduty", FIRST["pagerduty"], delivery_id="w-1"),
            await post(client, "datadog", FIRST["datadog"]),
            await post(client, "jira", FIRST["jira"], delivery_id="j-1"),
        ]
        await eventually(lambda: outbox.backlog().pending == 0)

    ids = [answer.json()["id"] for answer in answers]
    assert [event["id"] for event in endpoint.received] == ids
    first = endpoint.received[0]
    entry = outbox.get(ids[0])
    assert entry is not None and entry.emitted_at is not None
    assert first["event"] == entry.event == "syncline.alert.triggered"
    assert first["resource"] == {
        "prefect.resource.id": entry.resource_id,
        "syncline.source": "pagerduty",
        "syncline.subject-key": entry.subject_key,
        "syncline.delivery-id": "w-1",
    }
    assert first["payload"] == entry.payload


async def test_a_failed_emit_leaves_the_rows_pending_until_prefect_takes_them(
    config: GatewayConfig, outbox: GatewayOutbox
) -> None:
    endpoint = EventsEndpoint()
    endpoint.status = 503
    async with running_gateway(config, outbox, endpoint) as (client, forwarder):
        answer = await post(client, "generic", FIRST["generic"])
        assert answer.status_code == 202
        await eventually(lambda: forwarder.status.failures_in_a_row >= 3)

        entry = outbox.get(answer.json()["id"])
        assert entry is not None
        assert entry.emitted_at is None
        assert entry.attempts >= 3
        assert entry.last_error is not None and "HTTP 503" in entry.last_error
        health = (await client.get("/healthz")).json()
        assert health["outbox"]["pending"] == 1
        assert health["forwarder"]["state"] == "backing-off"

        endpoint.status = 204
        await eventually(lambda: outbox.backlog().pending == 0)
    assert [event["id"] for event in endpoint.received] == [entry.id]
    emitted = outbox.get(entry.id)
    assert emitted is not None and emitted.last_error is None


async def test_an_unreachable_api_is_a_failed_emit(
    config: GatewayConfig, outbox: GatewayOutbox
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed", request=request)

    api = PrefectEventsAPI(API, transport=httpx.MockTransport(refuse))
    forwarder = OutboxForwarder(outbox, api, min_backoff=timedelta(milliseconds=10))
    app = create_app(config, outbox, forwarder)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            answer = await post(client, "generic", FIRST["generic"])
            await eventually(lambda: forwarder.status.failures_in_a_row >= 1)
    entry = outbox.get(answer.json()["id"])
    assert entry is not None and entry.emitted_at is None
    assert entry.last_error is not None and entry.last_error.startswith("ConnectError")


async def test_an_event_prefect_refuses_is_set_aside_and_the_others_go_on(
    config: GatewayConfig, outbox: GatewayOutbox
) -> None:
    endpoint = EventsEndpoint()
    endpoint.status = 503  # hold them so they go as one batch
    async with running_gateway(config, outbox, endpoint) as (client, _forwarder):
        sent = [
            ("generic", FIRST["generic"]),
            ("generic", LATER["generic"]),
            ("datadog", FIRST["datadog"]),
        ]
        ids = [(await post(client, source, payload)).json()["id"] for source, payload in sent]
        endpoint.refuse_event_ids = {ids[1]}
        endpoint.status = 204
        await eventually(lambda: outbox.backlog().pending == 0)

    assert [event["id"] for event in endpoint.received] == [ids[0], ids[2]]
    refused = outbox.get(ids[1])
    assert refused is not None
    assert refused.emitted_at is None and refused.rejected_at is not None
    assert refused.last_error is not None and "HTTP 422" in refused.last_error


async def test_a_new_delivery_wakes_the_forwarder_at_once(
    config: GatewayConfig, outbox: GatewayOutbox
) -> None:
    endpoint = EventsEndpoint()
    # Without the wake-up the row would wait for the next look, a minute away.
    async with running_gateway(config, outbox, endpoint, poll_every=timedelta(minutes=1)) as (
        client,
        forwarder,
    ):
        await eventually(lambda: forwarder.status.state == "idle")
        answer = await post(client, "generic", FIRST["generic"])
        await eventually(lambda: len(endpoint.received) == 1, timeout=10)
    assert endpoint.received[0]["id"] == answer.json()["id"]
