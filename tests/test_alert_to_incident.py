"""Alerts to incidents end to end, on a real Prefect server that is stopped and started again.

The gateway (in-process, with its forwarder and the warm incident path) takes signed
deliveries; the warm path runs the ``alert-to-incident`` flow against the Prefect server; the
incidents land in the ServiceNow sandbox served over loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio import to_thread
from prefect.context import refresh_global_settings_context
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker

from sandboxes.core.server import BackgroundServer
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from syncline.alert_claims import AlertClaims
from syncline.outbox import GatewayOutbox
from syncline.state import Ledger
from syncline_app.gateway.app import create_app
from syncline_app.gateway.config import GatewaySettings, load_gateway_config
from syncline_app.gateway.forwarder import OutboxForwarder, PrefectEventsAPI
from syncline_app.incident_path import IncidentPath, with_incident_path
from tests.conftest import SPECS_DIR
from tests.gateway import payloads
from tests.gateway.conftest import gateway_environ, post
from tests.gateway.prefect_process import PrefectServerProcess, free_port
from tests.support.prefect_deploy import deploy_from_prefect_yaml

pytestmark = [pytest.mark.anyio, pytest.mark.prefect]

SPEC = "alert-to-servicenow"


@pytest.fixture
def prefect(tmp_path: Path) -> Iterator[PrefectServerProcess]:
    server = PrefectServerProcess(tmp_path / "prefect-home", free_port())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def servicenow() -> Iterator[tuple[ServiceNowSandbox, str]]:
    sandbox = ServiceNowSandbox(
        ServiceNowSandboxConfig(cmdb_ci_server=10, incident=0, sys_user=10, seed=5)
    )
    with BackgroundServer(sandbox.app) as server:
        yield sandbox, server.url


@pytest.fixture
def prefect_api(
    prefect: PrefectServerProcess, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PrefectServerProcess]:
    """This process's Prefect (flows, and the log and event workers' threads) talks to
    ``prefect``; what they queued is sent before the server is stopped."""
    monkeypatch.setenv("PREFECT_API_URL", prefect.api_url)
    refresh_global_settings_context()
    try:
        yield prefect
    finally:
        for worker in (APILogWorker, EventsWorker):
            worker.drain_all(timeout=10)
        monkeypatch.undo()
        refresh_global_settings_context()


@asynccontextmanager
async def gateway(ledger_url: str, api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway's process: HTTP side, forwarder and warm incident path, as ``syncline
    gateway`` runs them."""
    outbox = GatewayOutbox(ledger_url)
    forwarder = OutboxForwarder(
        outbox,
        PrefectEventsAPI(api_url, timeout=2),
        min_backoff=timedelta(milliseconds=50),
        max_backoff=timedelta(milliseconds=300),
    )
    config = load_gateway_config(gateway_environ(), settings=GatewaySettings())
    inner = create_app(config, outbox, forwarder)
    path = IncidentPath(alert_spec=SPEC, ledger_url=ledger_url, poll_interval=0.2, max_backoff=1)
    app = with_incident_path(inner, path)
    try:
        async with inner.router.lifespan_context(inner):
            path.start()
            try:
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                    yield client
            finally:
                await path.stop()
    finally:
        outbox.dispose()


async def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await to_thread.run_sync(check):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def triggered_event_ids(api_url: str) -> set[str]:
    """The ``event_id`` parameters of the runs the deployment's trigger created."""
    answer = httpx.post(f"{api_url}/flow_runs/filter", json={"limit": 200}, timeout=10)
    answer.raise_for_status()
    return {
        str(run["parameters"].get("event_id"))
        for run in answer.json()
        if run["deployment_id"] is not None
    }


def incidents(sandbox: ServiceNowSandbox) -> dict[str, dict[str, Any]]:
    return {
        str(record["correlation_id"]): record
        for record in sandbox.records("incident")
        if record.get("correlation_id")
    }


async def test_signed_alerts_open_update_and_resolve_one_incident_each_also_across_a_restart(
    tmp_path: Path,
    prefect_api: PrefectServerProcess,
    servicenow: tuple[ServiceNowSandbox, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox, instance_url = servicenow
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    for name, value in {
        "SYNCLINE_LEDGER_URL": ledger_url,
        "SYNCLINE_SPECS_DIR": str(SPECS_DIR),
        "SYNCLINE_SERVICENOW_URL": instance_url,
        "SYNCLINE_SERVICENOW_USER": "admin",
        "SYNCLINE_SERVICENOW_PASSWORD": "sandbox",
    }.items():
        monkeypatch.setenv(name, value)
    prefect = prefect_api
    await to_thread.run_sync(prefect.start)
    await to_thread.run_sync(deploy_from_prefect_yaml, prefect.api_url, "alert-to-servicenow")
    ledger = Ledger(ledger_url)
    claims = AlertClaims(ledger.engine)
    datadog_id = "datadog:4242:env:prod%2Chost:web-1"
    pagerduty_id = "pagerduty:PGR0VU2"

    def applied(count: int) -> Callable[[], bool]:
        return lambda: len(claims.applied()) >= count

    async with gateway(ledger_url, prefect.api_url) as client:
        # A signed Datadog alert and a signed PagerDuty one: one incident each, linked.
        assert (await post(client, "datadog", payloads.datadog())).status_code == 202
        pagerduty = payloads.pagerduty()
        answer = await post(client, "pagerduty", pagerduty, delivery_id="pd-1")
        assert answer.status_code == 202
        await eventually(lambda: {datadog_id, pagerduty_id} <= set(incidents(sandbox)))
        opened = incidents(sandbox)
        assert opened[datadog_id]["state"] == "1"
        links = ledger.links(SPEC, [datadog_id, pagerduty_id])
        assert {key: link.target_key for key, link in links.items()} == {
            key: opened[key]["sys_id"] for key in (datadog_id, pagerduty_id)
        }

        # The re-notification updates the incident.
        renotified = payloads.datadog(date="1767607260000")
        renotified["alert_title"] = "[P1] High CPU on web-1"
        assert (await post(client, "datadog", renotified)).status_code == 202
        await eventually(
            lambda: incidents(sandbox)[datadog_id]["short_description"].startswith("[P1]")
        )

        # A redelivery is acknowledged and changes nothing.
        before = len(claims.applied())
        again = await post(client, "pagerduty", pagerduty, delivery_id="pd-1")
        assert again.status_code in (200, 202) and again.json()["duplicate"] is True
        await asyncio.sleep(1.0)
        assert len(claims.applied()) == before

        # The recoveries resolve them, with close notes.
        recovered = payloads.datadog("Recovered", date="1767607320000")
        assert (await post(client, "datadog", recovered)).status_code == 202
        resolved = payloads.pagerduty("incident.resolved", event_id="01DEN0ZX2P6Q0B0N0V1S0P1J3X")
        assert (await post(client, "pagerduty", resolved)).status_code == 202
        await eventually(lambda: all(incidents(sandbox)[key]["state"] == "6" for key in opened))
        assert incidents(sandbox)[pagerduty_id]["close_notes"].startswith("Recovered in")

        # With the Prefect server stopped, deliveries are accepted and wait.
        await to_thread.run_sync(prefect.stop)
        waiting = len(claims.applied())
        second = payloads.pagerduty(event_id="01DEN0ZX2P6Q0B0N0V1S0P1J4Y")
        second["event"]["data"]["id"] = "PGR0VU3"
        other = payloads.datadog(date="1767607400000")
        other["alert_id"] = "4343"
        for source, payload in (("pagerduty", second), ("datadog", other)):
            assert (await post(client, source, payload)).status_code == 202
        await asyncio.sleep(1.5)
        assert len(claims.applied()) == waiting and len(incidents(sandbox)) == 2

        # Prefect is back: each reaches its incident, once.
        await to_thread.run_sync(prefect.start)
        await eventually(applied(waiting + 2), timeout=45)
        assert len(incidents(sandbox)) == 4

    # The deployment's trigger started runs for the events, with the outbox id as event_id
    # (the server loads a new automation within seconds: the first events may come before).
    accepted = set(claims.applied())
    await eventually(lambda: bool(triggered_event_ids(prefect.api_url) & accepted), timeout=20)
    assert triggered_event_ids(prefect.api_url) <= accepted

    creates = sandbox.creates_by_correlation("incident")
    assert len(creates) == 4 and set(creates.values()) == {1}
    assert claims.backlog() == 0
    # Every delivery applied once, each by a flow run recorded in Prefect.
    runs = {entry.flow_run_id for entry in claims.applied().values()}
    assert None not in runs and len(claims.applied()) == 7
    ledger.dispose()


def test_the_warm_path_starts_and_stops_with_the_gateway_apps_lifespan(tmp_path: Path) -> None:
    from starlette.applications import Starlette

    path = IncidentPath(ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}", poll_interval=0.05)
    with BackgroundServer(with_incident_path(Starlette(), path)):  # uvicorn runs the lifespan
        deadline = time.monotonic() + 10
        while not path.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.running
    assert not path.running
