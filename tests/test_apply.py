"""The one apply path: a record applied alone, in a batch, or replayed leaves the same account.

A SQL table of tickets (real SQLite) is applied to the ServiceNow sandbox's incidents, keyed by
correlation_id, so links (ServiceNow assigns sys_ids), audit rows, dead letters and write
intents are all in play; the end state is read from the sandbox and the ledger.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from syncline.apply import Applied, Applier, apply_records
from syncline.connect import ConnectorFactory
from syncline.replay import replay_dead_letters
from syncline.specs import IntegrationSpec, load_spec
from syncline.state import Ledger

SPEC = """\
name: tickets-to-incidents
source:
  connector: sql
  object: tickets
  credentials:
    url: {env: TICKETS_URL}
  key: id
  fields: [id, title, urgency]
target:
  connector: servicenow
  object: incident
  connection:
    instance_url: https://acme.service-now.com
  credentials:
    username: {env: SN_USER}
    password: {env: SN_PASSWORD}
  key: correlation_id
mapping:
  correlation_id: {from: id, required: true}
  short_description: {from: title, required: true}
  urgency:
    from: urgency
    map: {high: "1", medium: "2", low: "3"}
    unmapped: UNMAPPED
"""

TICKETS = [
    {"id": "T-1", "title": "Disk full on db-01", "urgency": "high"},
    {"id": "T-2", "title": "Slow VPN", "urgency": "low"},
    {"id": "T-3", "title": "Printer on fire", "urgency": "extreme"},  # not in the value map
]


class World:
    def __init__(self, tmp_path: Path, unmapped: str = "reject") -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.tmp_path = tmp_path
        self.sandbox = ServiceNowSandbox(
            ServiceNowSandboxConfig(cmdb_ci_server=0, incident=0, sys_user=5, seed=3)
        )
        self.tickets_url = f"sqlite:///{tmp_path / 'tickets.db'}"
        engine = sa.create_engine(self.tickets_url)
        pd.DataFrame(TICKETS).to_sql("tickets", engine, index=False, if_exists="replace")
        engine.dispose()
        self.ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
        self.spec = self.load(unmapped)

    def load(self, unmapped: str) -> IntegrationSpec:
        path = self.tmp_path / "tickets.yaml"
        path.write_text(SPEC.replace("UNMAPPED", unmapped))
        return load_spec(path, environ={})

    def factory(self) -> ConnectorFactory:
        return ConnectorFactory(
            environ={"TICKETS_URL": self.tickets_url, "SN_USER": "admin", "SN_PASSWORD": "sandbox"},
            transports={"servicenow": httpx.ASGITransport(app=self.sandbox.app)},
        )

    def apply_batch(self, records: list[dict[str, Any]], run: str) -> Applied:
        target = self.factory().target(self.spec)

        async def go() -> Applied:
            try:
                await target.prepare(self.spec.target_columns(), self.spec.target.key)
                applier = Applier(self.spec, target, self.ledger, flow_run_id=run)
                return await applier.apply(pd.DataFrame.from_records(records))
            finally:
                await target.aclose()

        return asyncio.run(go())

    def apply_one(self, record: dict[str, Any], run: str, *, fetch: bool = False) -> Applied:
        factory = self.factory()
        target = factory.target(self.spec)
        source = factory.source(self.spec) if fetch else None

        async def go() -> Applied:
            try:
                return await apply_records(
                    self.spec, [record], target, self.ledger, source=source, flow_run_id=run
                )
            finally:
                await target.aclose()
                if source is not None:
                    await source.aclose()

        return asyncio.run(go())

    def incidents(self) -> dict[str, dict[str, Any]]:
        return {r["correlation_id"]: r for r in self.sandbox.records("incident")}

    def account(self, key: str) -> dict[str, Any]:
        """Everything the ledger holds about one record, free of ids and times."""
        name = self.spec.name
        audit = sorted(
            entry["action"] for entry in self.ledger.audit_entries(name) if key in entry["keys"]
        )
        link = self.ledger.links(name, [key]).get(key)
        letters = [
            (letter.stage, letter.reason, letter.payload, letter.status)
            for letter in self.ledger.dead_letters(name, status=None)
            if letter.source_key == key
        ]
        return {
            "audit": audit,
            "linked": link is not None and link.target_key == self.incidents()[key]["sys_id"],
            "written_hash": link.written_hash if link else None,
            "dead_letters": letters,
            "open_intents": sum(key in i.keys for i in self.ledger.open_intents(name)),
        }


def test_a_record_applied_alone_is_accounted_exactly_as_in_a_batch(tmp_path: Path) -> None:
    batch = World(tmp_path / "batch")
    alone = World(tmp_path / "alone")
    applied = batch.apply_batch(TICKETS, run="run-1")
    assert applied.dead_lettered == 1 and sorted(applied.through) == ["T-1", "T-2"]
    for ticket in TICKETS:
        alone.apply_one(ticket, run="run-1")

    assert set(batch.incidents()) == set(alone.incidents()) == {"T-1", "T-2"}
    for key in ("T-1", "T-2"):
        assert batch.account(key) == alone.account(key)
        assert batch.account(key)["audit"] == ["created"] and batch.account(key)["linked"]
    # T-3's dead letter holds the same reason and source record either way.
    for world in (batch, alone):
        letters = [
            (letter.stage, letter.reason, letter.payload)
            for letter in world.ledger.dead_letters(world.spec.name)
        ]
        assert letters == [
            (
                "map",
                "urgency: value 'extreme' is not in the value map",
                TICKETS[2],
            )
        ]
        assert not world.ledger.open_intents(world.spec.name)


def test_a_replay_goes_through_the_same_path_links_and_audit_included(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.apply_batch(TICKETS, run="run-1")
    assert "T-3" not in world.incidents()
    world.spec = world.load("keep")  # the mapping is fixed: unknown urgencies kept as they are

    async def replay() -> Any:
        target = world.factory().target(world.spec)
        try:
            return await replay_dead_letters(world.spec, target, world.ledger, flow_run_id="r-1")
        finally:
            await target.aclose()

    summary = asyncio.run(replay())
    assert (summary.attempted, summary.replayed, summary.still_failing) == (1, 1, 0)
    assert world.incidents()["T-3"]["short_description"] == "Printer on fire"
    account = world.account("T-3")
    assert account["audit"] == ["created"] and account["linked"], account
    assert [status for *_, status in account["dead_letters"]] == ["replayed"]
    assert account["open_intents"] == 0


def test_an_event_with_part_of_a_record_writes_the_record_as_the_source_has_it(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    world.apply_one({"id": "T-1"}, run="event-1", fetch=True)  # the webhook carried the key only
    incident = world.incidents()["T-1"]
    assert (incident["short_description"], incident["urgency"]) == ("Disk full on db-01", "1")
    # Delivered twice: the second changes nothing.
    again = world.apply_one({"id": "T-1"}, run="event-2", fetch=True)
    assert (again.result.created, again.result.updated, again.result.unchanged) == ([], [], 1)
    assert len(world.sandbox.records("incident")) == 1


@pytest.fixture(autouse=True)
def _quiet_sandbox_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING")
