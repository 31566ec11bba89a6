"""Polling mode: a SQL table of alerts read by cursor into ServiceNow sandbox incidents.

The alerts table, the ledger and the outbox are real databases (SQLite and, where configured,
PostgreSQL); the poll admits rows into the outbox and the normal drain applies them to the
in-process ServiceNow sandbox. One run of the flow on a real Prefect server at the end: a
server process of its own, stopped afterwards (the session's harness, once started, would stay
this process's API for every later test, those that stop their server included).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prefect.context import refresh_global_settings_context
from prefect.logging.handlers import APILogWorker

from sandboxes.core.server import BackgroundServer
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from syncline.alert_claims import AlertClaims
from syncline.alert_poll import POLL_STAGE, PollReport, alert_from_row, poll_alerts
from syncline.alert_spec import AlertSpec, find_alert_spec, load_alert_spec
from syncline.connect import ConnectorFactory
from syncline.incidents import DrainReport, IncidentDrainer
from syncline.outbox import GatewayOutbox
from syncline.specs import SpecError
from syncline.state import Ledger
from syncline.validation import check_alert_deployments
from tests.conftest import ROOT, SPECS_DIR
from tests.gateway.prefect_process import PrefectServerProcess, free_port

pytestmark = pytest.mark.anyio

CREDENTIALS = {"SYNCLINE_SERVICENOW_USER": "admin", "SYNCLINE_SERVICENOW_PASSWORD": "sandbox"}

POLL_SECTION = """
poll:
  source:
    connector: sql
    object: monitoring_alerts
    credentials:
      url: {env: SYNCLINE_ALERTS_DB_URL}
    key: id
    cursor: {field: updated_at, overlap: 2m}
  fields:
    alert_key: check_id
    status: state
    title: summary
    severity: priority
    service: service
    tags: tags
    occurred_at: updated_at
  statuses: {FIRING: triggered, ack: acknowledged, ok: resolved}
"""

alerts_table = sa.Table(
    "monitoring_alerts",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("check_id", sa.String(100), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("summary", sa.String(200)),
    sa.Column("priority", sa.String(10)),
    sa.Column("service", sa.String(50)),
    sa.Column("tags", sa.String(200)),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)


def spec_dir(root: Path) -> Path:
    """The repository's alert spec with a poll section, as a specs folder of its own."""
    text = (SPECS_DIR / "alerts" / "alert_to_servicenow.yaml").read_text(encoding="utf-8")
    (root / "alerts").mkdir(parents=True)
    (root / "alerts" / "alert_to_servicenow.yaml").write_text(text + POLL_SECTION)
    return root


class World:
    """An alerts table a monitoring tool fills, the ledger with its outbox, the sandbox."""

    def __init__(self, database_url: str, specs: Path, sandbox: ServiceNowSandbox) -> None:
        self.sandbox = sandbox
        self.alerts_db = sa.create_engine(database_url)
        alerts_table.metadata.create_all(self.alerts_db)
        self.outbox = GatewayOutbox(database_url)
        self.ledger = Ledger(self.outbox.engine)
        self.spec: AlertSpec = find_alert_spec(specs)
        self.factory = ConnectorFactory(
            environ={**CREDENTIALS, "SYNCLINE_ALERTS_DB_URL": database_url},
            transports={"servicenow": httpx.ASGITransport(app=sandbox.app)},
        )
        self.next_id = 1

    def row(self, check: str, state: str, at: datetime, **values: Any) -> None:
        fields = {"summary": f"{check} failing", "priority": "P2", "service": "checkout"}
        with self.alerts_db.begin() as connection:
            connection.execute(
                alerts_table.insert().values(
                    id=self.next_id,
                    check_id=check,
                    state=state,
                    updated_at=at.replace(tzinfo=None),
                    **{**fields, **values},
                )
            )
        self.next_id += 1

    async def poll(self) -> PollReport:
        source = self.factory.source(self.spec.poll_read_spec())
        try:
            return await poll_alerts(self.spec, source, self.outbox, self.ledger)
        finally:
            await source.aclose()

    async def drain(self) -> DrainReport:
        apply_spec = self.spec.apply_spec()
        drainer = IncidentDrainer(
            self.spec,
            self.factory.target(apply_spec),
            self.ledger,
            AlertClaims(self.ledger.engine),
            lookup=self.factory.source(apply_spec),
        )
        return await drainer.drain()

    def incidents(self) -> dict[str, dict[str, Any]]:
        return {
            str(record["correlation_id"]): record
            for record in self.sandbox.records("incident")
            if record.get("correlation_id")
        }


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> World:
    sandbox = ServiceNowSandbox(
        ServiceNowSandboxConfig(cmdb_ci_server=5, incident=0, sys_user=5, seed=11)
    )
    return World(database_url, spec_dir(tmp_path / "specs"), sandbox)


def ago(minutes: int) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes)


async def test_a_new_row_opens_one_incident_a_resolved_row_resolves_it_and_rereads_change_nothing(
    world: World,
) -> None:
    world.row("disk-full:web-1", "FIRING", ago(30), service="storage", tags="env:prod, team:dba")
    first = await world.poll()
    assert (first.read, first.admitted, first.dead_lettered) == (1, 1, 0)
    [opened] = (await world.drain()).incidents
    assert opened.action == "opened"
    assert opened.correlation_id == "poll:disk-full:web-1"
    [incident] = world.incidents().values()
    assert incident["short_description"].startswith("disk-full:web-1 failing")
    assert incident["assignment_group"] == "Database"  # routed by the tag team:dba

    # The tool records the recovery as a later row; the poll's overlap reads the first again.
    recovered_at = ago(25)
    world.row("disk-full:web-1", "ok", recovered_at)
    second = await world.poll()
    assert (second.read, second.admitted, second.duplicates) == (2, 1, 1)
    [resolved] = (await world.drain()).incidents
    assert resolved.action == "resolved"
    [incident] = world.incidents().values()
    assert incident["state"] == "6"

    # Polling again reads the recovery once more (the overlap): nothing new, nothing touched.
    third = await world.poll()
    assert (third.read, third.admitted, third.duplicates) == (1, 0, 1)
    again = await world.drain()
    assert again.entries == 0 and again.incidents == []
    assert len(world.incidents()) == 1
    assert world.ledger.read_cursor(world.spec.poll_name) == recovered_at
    assert len(world.outbox.entries("poll")) == 2


async def test_a_row_with_a_status_outside_the_map_is_a_dead_letter_and_the_others_go_on(
    world: World,
) -> None:
    world.row("cpu:db-1", "flapping", ago(20))
    fired_at = ago(19)
    world.row("cpu:db-2", "firing", fired_at)
    report = await world.poll()
    assert (report.read, report.admitted, report.dead_lettered) == (2, 1, 1)
    [parked] = world.ledger.dead_letters(world.spec.name)
    assert parked.stage == POLL_STAGE
    assert "status 'flapping' (column state) is not in the poll's statuses" in parked.reason
    assert parked.payload["check_id"] == "cpu:db-1"
    [opened] = (await world.drain()).incidents
    assert opened.correlation_id == "poll:cpu:db-2"
    # Parked, not lost: the cursor moves on past it, and polling again parks it once.
    assert world.ledger.read_cursor(world.spec.poll_name) == fired_at
    await world.poll()
    assert len(world.ledger.dead_letters(world.spec.name)) == 1

    # The tool corrects the row: read again by its new cursor value, an alert, the letter closed.
    with world.alerts_db.begin() as connection:
        connection.execute(
            alerts_table.update()
            .where(alerts_table.c.check_id == "cpu:db-1")
            .values(state="firing", updated_at=ago(10).replace(tzinfo=None))
        )
    assert (await world.poll()).admitted == 1
    assert world.ledger.dead_letters(world.spec.name) == []
    assert {item.correlation_id for item in (await world.drain()).incidents} == {"poll:cpu:db-1"}


async def test_the_cursor_stays_until_every_row_read_is_in_the_outbox(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    times = [ago(40), ago(39), ago(38)]
    for at, check in zip(times, ("a", "b", "c"), strict=True):
        world.row(f"latency:{check}", "firing", at)
    admit = GatewayOutbox.admit
    calls = 0

    def crash_on_the_second_row(outbox: GatewayOutbox, delivery: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("ledger went away")
        return admit(outbox, delivery)

    monkeypatch.setattr(GatewayOutbox, "admit", crash_on_the_second_row)
    with pytest.raises(ConnectionError):
        await world.poll()
    assert world.ledger.read_cursor(world.spec.poll_name) is None
    assert len(world.outbox.entries("poll")) == 1

    rerun = await world.poll()
    assert (rerun.read, rerun.admitted, rerun.duplicates) == (3, 2, 1)
    assert world.ledger.read_cursor(world.spec.poll_name) == times[-1]
    drained = await world.drain()
    assert sorted(item.correlation_id for item in drained.incidents) == [
        "poll:latency:a",
        "poll:latency:b",
        "poll:latency:c",
    ]
    assert len(world.incidents()) == 3


def test_a_row_is_held_to_the_generic_alerts_rules(tmp_path: Path) -> None:
    spec = find_alert_spec(spec_dir(tmp_path))
    assert spec.poll is not None
    row = {"check_id": 42, "state": " Ack ", "summary": "", "priority": "P1", "service": None}
    row |= {"tags": None, "updated_at": datetime(2026, 1, 5, 10, 0)}
    with pytest.raises(ValueError, match=r"title \(column summary\)"):
        alert_from_row(spec.poll, row)
    event = alert_from_row(spec.poll, {**row, "summary": "Slow"})
    assert event.alert is not None
    assert (event.alert.source, event.alert.alert_key) == ("poll", "42")
    assert (event.alert.status, event.alert.severity) == ("acknowledged", "critical")
    assert event.alert.occurred_at == datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def test_a_poll_section_is_checked_with_file_and_line(tmp_path: Path) -> None:
    text = (SPECS_DIR / "alerts" / "alert_to_servicenow.yaml").read_text(encoding="utf-8")
    first_poll_line = text.count("\n") + 2
    path = tmp_path / "alerts.yaml"
    mistyped = POLL_SECTION.replace("ok: resolved", "ok: closed").replace(
        "severity: priority", "sevrity: priority"
    )
    path.write_text(text + mistyped)
    with pytest.raises(SpecError) as raised:
        load_alert_spec(path)
    message = str(raised.value)
    assert f"{path}:{first_poll_line + 12}: poll.fields: unknown field 'sevrity'" in message
    assert f"{path}:{first_poll_line + 16}: poll.statuses.ok:" in message

    path.write_text(
        text + POLL_SECTION.replace("    cursor: {field: updated_at, overlap: 2m}\n", "")
    )
    with pytest.raises(SpecError) as raised:
        load_alert_spec(path)
    assert f"{path}:{first_poll_line + 1}: poll.source.cursor: a poll reads by cursor" in str(
        raised.value
    )


def test_validate_accepts_the_polling_deployment_and_wants_one_for_a_poll_section(
    tmp_path: Path,
) -> None:
    prefect_yaml = ROOT / "prefect.yaml"
    polled = {"alert-to-servicenow": find_alert_spec(spec_dir(tmp_path / "specs"))}
    assert check_alert_deployments(prefect_yaml, polled) == []
    without = prefect_yaml.read_text(encoding="utf-8").replace("      poll: true\n", "")
    other = tmp_path / "prefect.yaml"
    other.write_text(without)
    problems = check_alert_deployments(other, polled)
    assert any("has a poll section but no deployment polls it" in p for p in problems)


@pytest.fixture
def prefect_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A Prefect server of this test's own, as this process's API while the test runs."""
    server = PrefectServerProcess(tmp_path / "prefect-home", free_port())
    server.start()
    monkeypatch.setenv("PREFECT_API_URL", server.api_url)
    refresh_global_settings_context()
    try:
        yield server.api_url
    finally:
        APILogWorker.drain_all(timeout=10)
        monkeypatch.undo()
        refresh_global_settings_context()
        server.stop()


@pytest.mark.prefect
def test_the_polling_flow_opens_incidents_on_a_real_prefect_server(
    prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.alert_to_incident import alert_to_incident

    sandbox = ServiceNowSandbox(
        ServiceNowSandboxConfig(cmdb_ci_server=5, incident=0, sys_user=5, seed=13)
    )
    alerts_url = f"sqlite:///{tmp_path / 'alerts.db'}"
    engine = sa.create_engine(alerts_url)
    alerts_table.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            alerts_table.insert().values(
                id=1,
                check_id="http:checkout",
                state="firing",
                summary="Checkout answers 500",
                priority="critical",
                service="checkout-api",
                updated_at=ago(5).replace(tzinfo=None),
            )
        )
    with BackgroundServer(sandbox.app) as server:
        environ = {
            **CREDENTIALS,
            "SYNCLINE_SERVICENOW_URL": server.url,
            "SYNCLINE_ALERTS_DB_URL": alerts_url,
            "SYNCLINE_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
            "SYNCLINE_SPECS_DIR": str(spec_dir(tmp_path / "specs")),
            "SYNCLINE_HOME": str(tmp_path / "home"),
        }
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        report = asyncio.run(alert_to_incident(poll=True, wait_for_others=0))
        assert isinstance(report, DrainReport)
        [opened] = report.incidents
        assert (opened.action, opened.correlation_id) == ("opened", "poll:http:checkout")
        again = asyncio.run(alert_to_incident(poll=True, wait_for_others=0))
        assert isinstance(again, DrainReport)
        assert again.incidents == []
    [incident] = [r for r in sandbox.records("incident") if r.get("correlation_id")]
    assert incident["assignment_group"] == "Payments"  # routed by service checkout*
    assert incident["urgency"] == "1"
