"""Against a real Prefect server that goes away and comes back: what the gateway accepted
meanwhile reaches Prefect once, across a restart of the gateway and of the server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from anyio import to_thread

from syncline.outbox import GatewayOutbox
from syncline_app.gateway.app import create_app
from syncline_app.gateway.config import GatewayConfig
from syncline_app.gateway.forwarder import OutboxForwarder, PrefectEventsAPI, prefect_event
from tests.gateway.conftest import post
from tests.gateway.payloads import FIRST, LATER
from tests.gateway.prefect_process import PrefectServerProcess, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.prefect]


@pytest.fixture
def prefect(tmp_path: Path) -> Iterator[PrefectServerProcess]:
    """A Prefect server's address and home; not started: the test starts and stops it."""
    server = PrefectServerProcess(tmp_path / "prefect-home", free_port())
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def gateway(
    config: GatewayConfig, ledger_url: str, api_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, GatewayOutbox, OutboxForwarder]]:
    """One run of the gateway process: its own outbox handle, forwarder and lifespan."""
    outbox = GatewayOutbox(ledger_url)
    forwarder = OutboxForwarder(
        outbox,
        PrefectEventsAPI(api_url, timeout=2),
        min_backoff=timedelta(milliseconds=50),
        max_backoff=timedelta(milliseconds=300),
    )
    app = create_app(config, outbox, forwarder)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                yield client, outbox, forwarder
    finally:
        outbox.dispose()


async def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def stored_events(server: PrefectServerProcess, count: int) -> list[dict[str, object]]:
    """Syncline's events in Prefect once ``count`` are stored (they are written in batches)."""
    found: list[dict[str, object]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = await to_thread.run_sync(lambda: server.events(event={"prefix": ["syncline."]}))
        if len(found) >= count:
            break
        await asyncio.sleep(0.2)
    return found


async def test_deliveries_accepted_while_prefect_is_down_are_emitted_once_when_it_is_back(
    config: GatewayConfig, ledger_url: str, prefect: PrefectServerProcess
) -> None:
    accepted: list[str] = []

    # 1. Prefect is down: the gateway still answers 202 and keeps the deliveries.
    async with gateway(config, ledger_url, prefect.api_url) as (client, outbox, forwarder):
        for source, payload, delivery_id in [
            ("pagerduty", FIRST["pagerduty"], "pd-1"),
            ("datadog", FIRST["datadog"], None),
            ("jira", FIRST["jira"], "jira-1"),
        ]:
            answer = await post(client, source, payload, delivery_id=delivery_id)
            assert answer.status_code == 202, answer.text
            accepted.append(answer.json()["id"])
        await eventually(lambda: forwarder.status.failures_in_a_row >= 2)
        assert outbox.backlog().pending == 3
        # The vendor retries meanwhile: acknowledged, not stored again.
        retry = await post(client, "pagerduty", FIRST["pagerduty"], delivery_id="pd-1")
        assert retry.json() == {"duplicate": True, "id": accepted[0]}

    # 2. The gateway was restarted; Prefect comes up: the backlog goes out.
    await to_thread.run_sync(prefect.start)
    async with gateway(config, ledger_url, prefect.api_url) as (client, outbox, forwarder):
        await eventually(lambda: outbox.backlog().pending == 0)
        assert forwarder.status.emitted == 3
        waited = outbox.get(accepted[0])
        assert waited is not None and waited.attempts >= 3 and waited.last_error is None

        # 3. Prefect restarts under a running gateway: accepted meanwhile, emitted after.
        await to_thread.run_sync(prefect.stop)
        for source, payload in [("generic", FIRST["generic"]), ("datadog", LATER["datadog"])]:
            answer = await post(client, source, payload)
            assert answer.status_code == 202, answer.text
            accepted.append(answer.json()["id"])
        await eventually(lambda: forwarder.status.failures_in_a_row >= 1)
        await to_thread.run_sync(prefect.start)
        await eventually(lambda: outbox.backlog().pending == 0)
        entries = {entry.id: entry for entry in outbox.entries()}

        # 4. An answer lost on the way back means a re-emit: Prefect keeps one event.
        await forwarder.api.emit([prefect_event(entries[accepted[0]])])

    events = await stored_events(prefect, len(accepted))
    assert sorted(event["id"] for event in events) == sorted(accepted)  # each once, no other
    for event in events:
        entry = entries[str(event["id"])]
        assert event["event"] == entry.event
        assert event["resource"]["prefect.resource.id"] == entry.resource_id  # type: ignore[index]
        assert event["payload"] == entry.payload
