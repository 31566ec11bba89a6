"""Alerts to incidents, the engine alone (no Prefect): coalescing, claims, the apply path.

Deliveries go into a real outbox on a real SQLite ledger as the gateway stores them; the
incidents are written to the in-process ServiceNow sandbox.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from syncline.alert_claims import AlertClaims
from syncline.alert_spec import AlertSpec, find_alert_spec, load_alert_spec
from syncline.connect import ConnectorFactory
from syncline.inbound import parse_delivery
from syncline.incidents import IncidentDrainer, coalesce
from syncline.outbox import GatewayOutbox, InboundDelivery, OutboxEntry
from syncline.specs import SpecError
from syncline.state import Ledger
from tests.conftest import SPECS_DIR
from tests.gateway import payloads

pytestmark = pytest.mark.anyio

CREDENTIALS = {"SYNCLINE_SERVICENOW_USER": "admin", "SYNCLINE_SERVICENOW_PASSWORD": "sandbox"}
INSTANCE = "https://sandbox.service-now.com"


def deliver(outbox: GatewayOutbox, source: str, payload: dict[str, Any]) -> str:
    """Store ``payload`` as the gateway does after checking it; returns the outbox id."""
    event = parse_delivery(source, payload)
    body = json.dumps(payload).encode()
    admission = outbox.admit(
        InboundDelivery(
            source=source,
            delivery_id=None,
            dedupe_key=f"id:{uuid.uuid4()}",
            dedupe_window=timedelta(hours=48),
            received_at=datetime.now(UTC),
            event=event.event,
            resource_id=event.resource_id,
            subject_key=event.subject_key,
            payload=event.payload(),
            raw_body=body,
        )
    )
    return admission.id


class World:
    def __init__(self, ledger_url: str, sandbox: ServiceNowSandbox) -> None:
        self.sandbox = sandbox
        self.ledger_url = ledger_url
        self.outbox = GatewayOutbox(self.ledger_url)
        self.ledger = Ledger(self.ledger_url)
        self.claims = AlertClaims(self.outbox.engine)
        self.spec = find_alert_spec(SPECS_DIR)
        self.factory = ConnectorFactory(
            environ=CREDENTIALS, transports={"servicenow": httpx.ASGITransport(app=sandbox.app)}
        )

    def drainer(self, holder: str | None = None) -> IncidentDrainer:
        spec = self.spec.apply_spec()
        return IncidentDrainer(
            self.spec,
            self.factory.target(spec),
            self.ledger,
            self.claims,
            lookup=self.factory.source(spec),
            holder=holder,
        )

    def incidents(self) -> dict[str, dict[str, Any]]:
        return {
            str(record["correlation_id"]): record
            for record in self.sandbox.records("incident")
            if record.get("correlation_id")
        }


@pytest.fixture
def world(database_url: str) -> World:
    """The ledger (outbox, claims, links) on SQLite and, where configured, PostgreSQL."""
    sandbox = ServiceNowSandbox(
        ServiceNowSandboxConfig(cmdb_ci_server=10, incident=0, sys_user=10, seed=3)
    )
    return World(database_url, sandbox)


def entry(seq: int, source: str, subject: str, status: str = "triggered") -> OutboxEntry:
    return OutboxEntry(
        seq=seq,
        id=f"id-{seq}",
        source=source,
        delivery_id=None,
        received_at=datetime.now(UTC),
        event=f"syncline.alert.{status}",
        resource_id=f"syncline.alert.{source}.{subject}",
        subject_key=subject,
        payload={},
        raw_body=b"{}",
        emitted_at=None,
        attempts=0,
        last_error=None,
        rejected_at=None,
    )


def test_coalescing_keeps_each_alert_once_with_its_deliveries_in_arrival_order() -> None:
    entries = [
        entry(3, "datadog", "a"),
        entry(1, "datadog", "a"),
        entry(2, "pagerduty", "a"),
        entry(4, "datadog", "b"),
        entry(5, "datadog", "a", "resolved"),
    ]
    alerts = coalesce(entries)
    assert [(a.source, a.subject_key) for a in alerts] == [
        ("datadog", "a"),
        ("pagerduty", "a"),
        ("datadog", "b"),
    ]
    assert [e.seq for e in alerts[0].entries] == [1, 3, 5]
    assert alerts[0].latest.event == "syncline.alert.resolved"


async def test_an_alert_opens_one_incident_which_its_renotification_updates_and_recovery_resolves(
    world: World,
) -> None:
    deliver(world.outbox, "datadog", payloads.datadog())
    first = await world.drainer().drain()
    [opened] = first.incidents
    assert opened.action == "opened" and opened.number and opened.number.startswith("INC")
    incident = world.incidents()[opened.correlation_id]
    assert incident["assignment_group"] or incident["category"] == "software"
    assert world.ledger.links("alert-to-servicenow", [opened.correlation_id])

    renotified = payloads.datadog(date="1767607260000")
    renotified["alert_title"] = "[P2] High CPU on web-1 (still)"
    deliver(world.outbox, "datadog", renotified)
    [updated] = (await world.drainer().drain()).incidents
    assert updated.action == "updated" and updated.number == opened.number
    assert world.incidents()[opened.correlation_id]["short_description"].endswith("(still)")

    deliver(world.outbox, "datadog", payloads.datadog("Recovered", date="1767607320000"))
    [resolved] = (await world.drainer().drain()).incidents
    assert resolved.action == "resolved"
    incident = world.incidents()[opened.correlation_id]
    assert incident["state"] == "6" and incident["close_notes"].startswith("Recovered in datadog")
    assert world.sandbox.creates_by_correlation("incident") == {opened.correlation_id: 1}
    assert len(world.claims.applied()) == 3
    # Nothing is left to drain: a further run changes nothing.
    again = await world.drainer().drain()
    assert again.entries == 0 and again.backlog == 0

    # The alert fires again after its recovery: the resolved incident is reopened, not hidden.
    deliver(world.outbox, "datadog", payloads.datadog(date="1767607380000"))
    [reopened] = (await world.drainer().drain()).incidents
    assert reopened.action == "reopened" and reopened.number == opened.number
    assert world.incidents()[opened.correlation_id]["state"] == "2"
    assert world.sandbox.creates_by_correlation("incident") == {opened.correlation_id: 1}


async def test_a_storm_of_one_alert_is_one_write_and_a_trigger_then_resolve_ends_resolved(
    world: World,
) -> None:
    ids = [
        deliver(world.outbox, "datadog", payloads.datadog(date=str(1767607200000 + i * 1000)))
        for i in range(50)
    ]
    ids.append(deliver(world.outbox, "datadog", payloads.datadog("Recovered", "1767607300000")))
    report = await world.drainer().drain()
    assert report.entries == 51 and report.batches == 1
    [incident] = report.incidents
    assert incident.notifications == 51 and incident.action == "opened"
    assert world.incidents()[incident.correlation_id]["state"] == "6"
    applied = world.claims.applied(ids)
    assert sorted(a.outcome for a in applied.values()) == ["coalesced"] * 50 + ["created"]
    assert world.sandbox.creates_by_correlation("incident") == {incident.correlation_id: 1}


async def test_two_drainers_at_once_apply_every_delivery_once(world: World) -> None:
    ids = []
    for number in range(40):
        payload = payloads.datadog(date=str(1767607200000 + number))
        payload["alert_id"] = str(5000 + number % 20)  # 20 alerts, two deliveries each
        ids.append(deliver(world.outbox, "datadog", payload))
    world.spec = world.spec.model_copy(update={"batch_size": 7})
    first, second = await asyncio.gather(world.drainer("one").drain(), world.drainer("two").drain())
    assert first.entries + second.entries == 40
    applied = world.claims.applied(ids)
    assert len(applied) == 40
    creates = world.sandbox.creates_by_correlation("incident")
    assert len(creates) == 20 and set(creates.values()) == {1}


async def test_a_claim_held_by_a_crashed_drainer_is_taken_over_once_it_expires(
    world: World,
) -> None:
    deliver(world.outbox, "pagerduty", payloads.pagerduty())
    subjects = world.claims.waiting(10)
    now = datetime.now(UTC)
    assert world.claims.claimable(now) == 1
    assert world.claims.claim(subjects, holder="crashed", ttl=timedelta(minutes=2), now=now)
    assert world.claims.claimable(now) == 0  # a warm path starts no run for it
    assert world.claims.claimable(now + timedelta(minutes=3)) == 1
    held = await world.drainer().drain(wait_for_others=0.4)
    assert held.entries == 0 and held.backlog == 1
    # Two minutes later the claim has expired: another drainer takes the alert over.
    later = IncidentDrainer(
        world.spec,
        world.factory.target(world.spec.apply_spec()),
        world.ledger,
        world.claims,
        clock=lambda: now + timedelta(minutes=3),
    )
    report = await later.drain()
    assert report.entries == 1 and report.incidents[0].action == "opened"


async def test_an_incident_the_target_refuses_is_a_dead_letter_never_silence(
    world: World,
) -> None:
    payload = payloads.pagerduty()
    entry_id = deliver(world.outbox, "pagerduty", payload)
    # An outbox row whose normalised payload no longer reads as an alert (schema drift).
    with world.outbox.engine.begin() as connection:
        from syncline.outbox import gateway_outbox

        connection.execute(
            gateway_outbox.update()
            .where(gateway_outbox.c.id == entry_id)
            .values(payload={"alert": {"source": "pagerduty"}})
        )
    report = await world.drainer().drain()
    [outcome] = report.incidents
    assert outcome.action == "dead-lettered" and outcome.reason
    [letter] = world.ledger.dead_letters("alert-to-servicenow")
    assert letter.stage == "route" and entry_id in letter.reason
    assert world.claims.applied([entry_id])[entry_id].outcome == "dead-lettered"
    assert world.incidents() == {}


def test_the_alert_spec_file_loads_and_errors_name_the_line(tmp_path: Path) -> None:
    spec = load_alert_spec(SPECS_DIR / "alerts" / "alert_to_servicenow.yaml")
    assert isinstance(spec, AlertSpec) and spec.target.key == "correlation_id"
    bad = tmp_path / "bad.yaml"
    text = (SPECS_DIR / "alerts" / "alert_to_servicenow.yaml").read_text()
    bad.write_text(text.replace("urgency: 1", "urgncy: 1"))
    with pytest.raises(SpecError) as error:
        load_alert_spec(bad)
    line = next(n for n, t in enumerate(bad.read_text().splitlines(), 1) if "urgncy" in t)
    assert f"bad.yaml:{line}:" in str(error.value) and "urgncy" in str(error.value)


def test_validate_checks_the_alert_specs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from syncline_app.cli import main

    (tmp_path / "alerts").mkdir()
    text = (SPECS_DIR / "alerts" / "alert_to_servicenow.yaml").read_text()
    (tmp_path / "alerts" / "a.yaml").write_text(text.replace("key: correlation_id", "key: number"))
    assert main(["validate", "--specs-dir", str(tmp_path)]) == 1
    assert "target.key must be 'correlation_id'" in capsys.readouterr().err
    (tmp_path / "alerts" / "a.yaml").write_text(text)
    missing = tmp_path / "none.yaml"  # no prefect.yaml: the specs alone
    assert main(["validate", "--specs-dir", str(tmp_path), "--prefect-yaml", str(missing)]) == 0
    assert "ok  alert-to-servicenow: alerts -> servicenow:incident" in capsys.readouterr().out


def pagerduty_alert(incident_id: str) -> dict[str, Any]:
    payload = payloads.pagerduty(event_id=f"evt-{incident_id}")
    payload["event"]["data"]["id"] = incident_id
    return payload


async def test_an_incident_linked_to_another_alert_parks_that_alert_alone(world: World) -> None:
    deliver(world.outbox, "pagerduty", pagerduty_alert("PA"))
    [first] = (await world.drainer().drain()).incidents
    assert first.incident_key is not None
    # The incident now says it belongs to alert PB (restored from a backup, edited by hand),
    # while the ledger links it to PA.
    world.sandbox.update("incident", first.incident_key, {"correlation_id": "pagerduty:PB"})
    deliver(world.outbox, "pagerduty", pagerduty_alert("PB"))
    deliver(world.outbox, "pagerduty", pagerduty_alert("PC"))
    report = await world.drainer().drain()
    outcomes = {item.correlation_id: item for item in report.incidents}
    assert outcomes["pagerduty:PC"].action == "opened"
    assert outcomes["pagerduty:PB"].action == "dead-lettered"
    assert "link refused" in (outcomes["pagerduty:PB"].reason or "")
    [letter] = world.ledger.dead_letters("alert-to-servicenow")
    assert letter.stage == "link" and letter.source_key == "pagerduty:PB"
    assert report.backlog == 0  # recorded: the batch did not fail on every retry

    # On-call fixes the incident's correlation id and retries the parked delivery.
    world.sandbox.update("incident", first.incident_key, {"correlation_id": "pagerduty:PA"})
    assert len(world.claims.retry_dead_lettered()) == 1
    [retried] = (await world.drainer().drain()).incidents
    assert retried.correlation_id == "pagerduty:PB" and retried.action == "opened"
    assert world.ledger.dead_letters("alert-to-servicenow") == []
    assert world.claims.retry_dead_lettered() == []


async def test_application_records_go_when_the_outbox_prunes_their_deliveries(
    world: World,
) -> None:
    entry_id = deliver(world.outbox, "pagerduty", pagerduty_alert("PP"))
    await world.drainer().drain()
    world.outbox.mark_emitted([entry_id], datetime.now(UTC))
    assert world.claims.prune() == 0  # the outbox still holds it
    later = datetime.now(UTC) + timedelta(days=3)
    assert world.outbox.prune(now=later, retention=timedelta(hours=48)) == 1
    assert world.claims.prune() == 1 and world.claims.applied() == {}


async def test_an_alert_no_drainer_applied_outlives_the_outbox_retention(world: World) -> None:
    entry_id = deliver(world.outbox, "pagerduty", pagerduty_alert("PQ"))
    world.outbox.mark_emitted([entry_id], datetime.now(UTC))
    later = datetime.now(UTC) + timedelta(days=3)
    # Emitted, past the retention, but never applied (no drainer ran): it stays.
    assert world.outbox.prune(now=later, retention=timedelta(hours=48)) == 0
    [opened] = (await world.drainer().drain()).incidents
    assert opened.action == "opened"
    assert world.outbox.prune(now=later, retention=timedelta(hours=48)) == 1
