"""Two-way runs between the ServiceNow sandbox's incidents (A) and a SQL table of tickets (B).

Real SQLite with triggers that stamp ``updated_at`` on every change, as an application's table
does, so Syncline's own writes come back in the next window; the ServiceNow sandbox in-process
with its business rules (priority derived from impact and urgency). Every check reads both
systems' data, not the run's counters alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from connectors.sql.engine import make_engine
from sandboxes.core.server import BackgroundServer
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from syncline.connect import ConnectorFactory
from syncline.replay import ReplaySummary, replay_two_way_letters
from syncline.state import Ledger
from syncline.two_way import TwoWaySpec, load_two_way_spec
from syncline.two_way_endpoints import open_endpoints
from syncline.two_way_merge import Side
from syncline.two_way_summary import TwoWaySummary
from syncline.two_way_sync import TwoWayRun, finish_two_way_run
from syncline.two_way_sync import run_two_way as run_two_way_engine

SPEC = """\
name: incidents-tickets
two_way: true
a:
  connector: servicenow
  object: incident
  connection:
    instance_url: https://acme.service-now.com
  credentials:
    username: {env: SN_USER}
    password: {env: SN_PASSWORD}
  key: sys_id
  fields: [sys_id, short_description, impact, urgency, priority, correlation_id, sys_updated_on]
  cursor: {field: sys_updated_on}
b:
  connector: sql
  object: tickets
  credentials:
    url: {env: TICKETS_URL}
  key: id
  fields: [id, title, impact, urgency, priority, sn_sys_id, updated_at]
  cursor: {field: updated_at}
fields:
  title: {a: short_description, b: title, direction: both, conflict: TITLE_POLICY}
  impact: {a: impact, b: impact, direction: both, conflict: a_wins, type: integer}
  urgency:
    a: urgency
    b: urgency
    direction: both
    conflict: a_wins
    map_a_to_b: {"1": high, "2": medium, "3": low}
PRIORITY
correlation: {a: correlation_id, b: sn_sys_id}
"""

PRIORITY_A_TO_B = "  priority: {a: priority, b: priority, direction: a_to_b, type: integer}"

# An application's table: its own integer key, a unique column for ServiceNow's sys_id, and
# triggers that stamp every insert and update (unless the statement sets the stamp itself).
TICKETS_DDL = [
    """CREATE TABLE tickets (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT, impact INTEGER, urgency TEXT, priority INTEGER,
        sn_sys_id TEXT UNIQUE, updated_at TIMESTAMP)""",
    """CREATE TRIGGER tickets_stamp_update AFTER UPDATE ON tickets FOR EACH ROW
       WHEN NEW.updated_at IS OLD.updated_at
       BEGIN UPDATE tickets SET updated_at = strftime('%Y-%m-%d %H:%M:%f000', 'now')
             WHERE id = NEW.id; END""",
    """CREATE TRIGGER tickets_stamp_insert AFTER INSERT ON tickets FOR EACH ROW
       WHEN NEW.updated_at IS NULL
       BEGIN UPDATE tickets SET updated_at = strftime('%Y-%m-%d %H:%M:%f000', 'now')
             WHERE id = NEW.id; END""",
]


# The same table on PostgreSQL: a serial key, and a trigger that stamps every update.
TICKETS_DDL_POSTGRES = [
    """CREATE TABLE tickets (
        id BIGSERIAL PRIMARY KEY,
        title TEXT, impact INTEGER, urgency TEXT, priority INTEGER,
        sn_sys_id TEXT UNIQUE, updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())""",
    """CREATE FUNCTION tickets_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
           NEW.updated_at := clock_timestamp();
         END IF;
         RETURN NEW;
       END $$""",
    """CREATE TRIGGER tickets_stamp BEFORE UPDATE ON tickets
       FOR EACH ROW EXECUTE FUNCTION tickets_stamp()""",
]


class World:
    """The sandbox, the tickets database, the ledger and the spec of one test."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        title_policy: str = "a_wins",
        priority: bool = True,
        sandbox: ServiceNowSandbox | None = None,
        tickets_url: str | None = None,
    ):
        self.sandbox = sandbox or ServiceNowSandbox(
            ServiceNowSandboxConfig(cmdb_ci_server=0, incident=0, sys_user=3, seed=7)
        )
        self.tickets_url = tickets_url or f"sqlite:///{tmp_path / 'tickets.db'}"
        self.engine = make_engine(self.tickets_url)
        postgres = self.engine.dialect.name == "postgresql"
        with self.engine.begin() as connection:
            for statement in TICKETS_DDL_POSTGRES if postgres else TICKETS_DDL:
                connection.exec_driver_sql(statement)
        self.ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
        text = SPEC.replace("TITLE_POLICY", title_policy).replace(
            "PRIORITY\n", PRIORITY_A_TO_B + "\n" if priority else ""
        )
        path = tmp_path / "incidents_tickets.yaml"
        path.write_text(text)
        self.spec: TwoWaySpec = load_two_way_spec(path, environ={})
        self.api = httpx.Client(
            transport=_SyncASGI(self.sandbox),
            base_url="https://acme.service-now.com",
            auth=("admin", "sandbox"),
        )

    def factory(self) -> ConnectorFactory:
        return ConnectorFactory(
            environ={"TICKETS_URL": self.tickets_url, "SN_USER": "admin", "SN_PASSWORD": "sandbox"},
            transports={"servicenow": httpx.ASGITransport(app=self.sandbox.app)},
        )

    def run(self, run_id: str = "run", only: dict[Side, list[str]] | None = None) -> TwoWaySummary:
        """One run and its cursor commit; the clock is 2 s ahead so that the read window
        (which ends a second before the run) holds the changes a test has just made."""

        async def go() -> TwoWaySummary:
            a, b = open_endpoints(self.spec, self.factory())
            try:
                return await run_two_way_engine(
                    self.spec,
                    a,
                    b,
                    self.ledger,
                    flow_run_id=run_id,
                    only=only,
                    now=lambda: datetime.now(UTC) + timedelta(seconds=2),
                )
            finally:
                await a.aclose()
                await b.aclose()

        summary = asyncio.run(go())
        finish_two_way_run(self.ledger, self.spec, summary)
        return summary

    # ServiceNow, through its API, as a person's edit arrives ---------------------------------

    def create_incident(self, **fields: str) -> str:
        answer = self.api.post("/api/now/table/incident", json=fields)
        answer.raise_for_status()
        return str(answer.json()["result"]["sys_id"])

    def edit_incident(self, sys_id: str, **fields: str) -> None:
        self.api.patch(f"/api/now/table/incident/{sys_id}", json=fields).raise_for_status()

    def incidents(self) -> list[dict[str, Any]]:
        return list(self.sandbox.records("incident"))

    def incident(self, sys_id: str) -> dict[str, Any]:
        return next(r for r in self.incidents() if r["sys_id"] == sys_id)

    # the tickets table ----------------------------------------------------------------------

    def create_ticket(self, **fields: Any) -> int:
        with self.engine.begin() as connection:
            names = ", ".join(fields)
            binds = ", ".join(f":{name}" for name in fields)
            result = connection.execute(
                sa.text(f"INSERT INTO tickets ({names}) VALUES ({binds}) RETURNING id"), fields
            )
            return int(result.scalar_one())

    def edit_ticket(self, ticket_id: int, **fields: Any) -> None:
        assignments = ", ".join(f"{name} = :{name}" for name in fields)
        with self.engine.begin() as connection:
            connection.execute(
                sa.text(f"UPDATE tickets SET {assignments} WHERE id = :id"),
                {**fields, "id": ticket_id},
            )

    def tickets(self) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT * FROM tickets ORDER BY id"))
            return [dict(row._mapping) for row in rows]

    def ticket(self, ticket_id: int) -> dict[str, Any]:
        return next(row for row in self.tickets() if row["id"] == ticket_id)

    def pairs(self) -> set[tuple[str, str]]:
        """(sys_id, ticket id) as both systems hold them, each naming the other."""
        by_ticket = {str(row["id"]): row["sn_sys_id"] for row in self.tickets()}
        return {
            (r["sys_id"], r["correlation_id"])
            for r in self.incidents()
            if by_ticket.get(r["correlation_id"]) == r["sys_id"]
        }

    def close(self) -> None:
        self.api.close()
        self.engine.dispose()
        self.ledger.dispose()


class _SyncASGI(httpx.BaseTransport):
    """Drives the sandbox's ASGI app from synchronous test code."""

    def __init__(self, sandbox: ServiceNowSandbox) -> None:
        self.inner = httpx.ASGITransport(app=sandbox.app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def go() -> httpx.Response:
            request.stream = httpx.ByteStream(request.read())
            response = await self.inner.handle_async_request(request)
            body = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=body)

        return asyncio.run(go())


@pytest.fixture
def sandbox() -> ServiceNowSandbox:
    """An instance without incidents (the shared fixture's seeded ones carry other
    integrations' correlation ids)."""
    return ServiceNowSandbox(
        ServiceNowSandboxConfig(cmdb_ci_server=0, incident=0, sys_user=3, seed=7)
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    built = World(tmp_path)
    yield built
    built.close()


def synced_world(tmp_path: Path, **options: Any) -> tuple[World, str, int]:
    """A world with one incident and one ticket made on their own sides and synced once."""
    made = World(tmp_path, **options)
    sys_id = made.create_incident(short_description="Disk full on db-01", impact="2", urgency="1")
    ticket = made.create_ticket(title="Slow VPN", impact=3, urgency="low")
    made.run("first")
    made.run("settle")  # what the instance derived on the incidents it made travels once
    assert written(made.run("quiet")) == 0
    return made, sys_id, ticket


def written(summary: TwoWaySummary) -> int:
    return sum(side.created + side.updated for side in (summary.a, summary.b))


def test_first_run_creates_each_record_on_the_other_side_and_links_both_ways(
    world: World,
) -> None:
    sys_id = world.create_incident(short_description="Disk full on db-01", impact="2", urgency="1")
    ticket = world.create_ticket(title="Slow VPN", impact=3, urgency="low")

    first = world.run("first")

    assert (first.a.created, first.b.created) == (1, 1)
    (copy_of_ticket,) = [r for r in world.incidents() if r["correlation_id"] == str(ticket)]
    assert copy_of_ticket["short_description"] == "Slow VPN"
    assert (copy_of_ticket["impact"], copy_of_ticket["urgency"]) == ("3", "3")  # low -> "3"
    (copy_of_incident,) = [row for row in world.tickets() if row["sn_sys_id"] == sys_id]
    assert copy_of_incident["title"] == "Disk full on db-01"
    assert (copy_of_incident["impact"], copy_of_incident["urgency"]) == (2, "high")
    assert copy_of_incident["priority"] == int(world.incident(sys_id)["priority"])
    # The back-links: each side now holds the other's key.
    assert world.incident(sys_id)["correlation_id"] == str(copy_of_incident["id"])
    assert world.ticket(ticket)["sn_sys_id"] == copy_of_ticket["sys_id"]
    assert len(world.pairs()) == 2

    # Everything Syncline wrote comes back in the next windows and is recognised; what the
    # instance derived on the incident it made from the ticket (its priority) travels once.
    second = world.run("second")
    assert (second.a.created, second.a.updated, second.b.created, second.b.updated) == (
        0,
        0,
        0,
        1,
    )
    assert second.a.echoes + second.b.echoes >= 2
    assert world.ticket(ticket)["priority"] == int(copy_of_ticket["priority"])
    assert (len(world.incidents()), len(world.tickets())) == (2, 2)
    assert written(world.run("third")) == 0


@pytest.fixture(params=["sqlite", "postgresql"])
def tickets_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tickets.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_creates_a_to_b_leaves_records_new_on_b_where_they_are(tmp_path: Path) -> None:
    world = World(tmp_path, priority=False)
    path = tmp_path / "incidents_tickets.yaml"
    path.write_text(path.read_text().replace("correlation:", "creates: a_to_b\ncorrelation:"))
    world.spec = load_two_way_spec(path, environ={})
    world.create_incident(short_description="Escalated", impact="2", urgency="1")
    world.create_ticket(title="Internal only", impact=3, urgency="low")

    summary = world.run("escalation")

    assert (summary.a.created, summary.b.created, summary.not_created) == (0, 1, 1)
    assert [r["short_description"] for r in world.incidents()] == ["Escalated"]
    assert sorted(row["title"] for row in world.tickets()) == ["Escalated", "Internal only"]
    assert world.ledger.dead_letters(world.spec.name) == []


def test_a_change_on_each_side_reaches_the_other_and_stops_there(
    tmp_path: Path, tickets_url: str
) -> None:
    world, sys_id, ticket = synced_world(tmp_path, tickets_url=tickets_url)
    ticket_of_incident = int(world.incident(sys_id)["correlation_id"])
    incident_of_ticket = world.ticket(ticket)["sn_sys_id"]

    world.edit_incident(sys_id, short_description="Disk full on db-01 (90%)")
    world.edit_ticket(ticket, urgency="high")
    summary = world.run("edits")

    assert world.ticket(ticket_of_incident)["title"] == "Disk full on db-01 (90%)"
    assert world.incident(incident_of_ticket)["urgency"] == "1"
    assert (summary.a.updated, summary.b.updated) == (1, 1)

    # ServiceNow derived a new priority from the new urgency: it is a change of its own
    # (priority flows A to B), so it reaches the ticket once, and then nothing moves.
    derived = world.incident(incident_of_ticket)["priority"]
    world.run("priority")
    assert world.ticket(ticket)["priority"] == int(derived)
    assert world.ticket(ticket)["urgency"] == "high"
    assert written(world.run("quiet")) == 0
    assert written(world.run("still quiet")) == 0


def test_own_writes_are_echoes_even_when_servicenow_recomputes_priority(tmp_path: Path) -> None:
    # Priority is not synced here: the incident changes after Syncline's write (ServiceNow
    # recomputes priority), yet the fields Syncline wrote read back as written.
    world, _, ticket = synced_world(tmp_path, priority=False)
    incident_of_ticket = world.ticket(ticket)["sn_sys_id"]
    priority_before = world.incident(incident_of_ticket)["priority"]

    world.edit_ticket(ticket, urgency="high", impact=1)
    world.run("edit")
    after_write = world.incident(incident_of_ticket)
    assert (after_write["urgency"], after_write["impact"]) == ("1", "1")
    assert after_write["priority"] != priority_before  # the instance derived a new one

    echo = world.run("echo")
    assert echo.a.echoes == 1
    assert written(echo) == 0
    assert written(world.run("quiet")) == 0


@pytest.mark.parametrize(
    ("policy", "newer", "expected"),
    [
        ("a_wins", "b", "from ServiceNow"),
        ("b_wins", "a", "from the ticket"),
        ("newest_wins", "a", "from ServiceNow"),
        ("newest_wins", "b", "from the ticket"),
    ],
)
def test_each_conflict_policy_decides_a_change_made_on_both_sides(
    tmp_path: Path, policy: str, newer: str, expected: str
) -> None:
    world, sys_id, _ = synced_world(tmp_path, title_policy=policy, priority=False)
    ticket = int(world.incident(sys_id)["correlation_id"])

    edits = {
        "a": lambda: world.edit_incident(sys_id, short_description="from ServiceNow"),
        "b": lambda: world.edit_ticket(ticket, title="from the ticket"),
    }
    older = "a" if newer == "b" else "b"
    # Another field changed on one side only, in the same record, is no conflict: it travels.
    world.edit_ticket(ticket, urgency="medium")
    edits[older]()
    time.sleep(1.1)  # ServiceNow keeps whole seconds: the later edit is a second later
    edits[newer]()

    summary = world.run("both")

    assert world.incident(sys_id)["short_description"] == expected
    assert world.ticket(ticket)["title"] == expected
    assert world.incident(sys_id)["urgency"] == "2"
    assert (summary.conflicts, summary.held) == (1, 0)
    assert written(world.run("quiet")) == 0


def test_manual_conflicts_are_held_with_both_versions_until_the_sides_agree(
    tmp_path: Path,
) -> None:
    world, sys_id, _ = synced_world(tmp_path, title_policy="manual", priority=False)
    ticket = int(world.incident(sys_id)["correlation_id"])
    world.edit_incident(sys_id, short_description="from ServiceNow", impact="1")
    world.edit_ticket(ticket, title="from the ticket")

    summary = world.run("conflict")

    assert summary.held == 1
    assert world.incident(sys_id)["short_description"] == "from ServiceNow"
    assert world.ticket(ticket)["title"] == "from the ticket"
    assert world.ticket(ticket)["impact"] == 1  # the field without a conflict still travels
    (letter,) = world.ledger.dead_letters(world.spec.name)
    assert letter.stage == "conflict"
    assert "title" in letter.reason
    assert letter.payload["a"]["short_description"] == "from ServiceNow"
    assert letter.payload["b"]["title"] == "from the ticket"
    assert letter.payload["fields"] == ["title"]

    # A quiet run leaves it held; the person makes the sides agree, and the letter closes.
    world.run("still held")
    assert world.ticket(ticket)["title"] == "from the ticket"
    world.edit_ticket(ticket, title="from ServiceNow")
    world.run("agreed")
    assert world.ledger.dead_letters(world.spec.name) == []
    assert written(world.run("quiet")) == 0


def test_a_value_without_a_counterpart_is_a_dead_letter_until_fixed(tmp_path: Path) -> None:
    world, _, ticket = synced_world(tmp_path)
    world.edit_ticket(ticket, urgency="extreme", title="Slow VPN (all sites)")

    world.run("bad")

    (letter,) = world.ledger.dead_letters(world.spec.name)
    assert letter.stage == "map"
    assert "urgency" in letter.reason and "extreme" in letter.reason
    incident = world.incident(world.ticket(ticket)["sn_sys_id"])
    assert incident["short_description"] == "Slow VPN"  # nothing of the record went

    world.edit_ticket(ticket, urgency="high")
    world.run("fixed")
    incident = world.incident(world.ticket(ticket)["sn_sys_id"])
    assert (incident["short_description"], incident["urgency"]) == ("Slow VPN (all sites)", "1")
    assert world.ledger.dead_letters(world.spec.name) == []


def test_an_event_carries_the_records_it_names_as_they_are_now(tmp_path: Path) -> None:
    world, sys_id, ticket = synced_world(tmp_path, priority=False)
    cursors = {
        name: world.ledger.read_cursor(name) for name in (v.name for v in world.spec.views())
    }
    incident_of_ticket = world.ticket(ticket)["sn_sys_id"]

    # A webhook that arrives before its change: the record is as it was, nothing moves.
    early = world.run("early", only={"b": [str(ticket)]})
    assert written(early) == 0

    world.edit_ticket(ticket, title="Slow VPN in Zurich")
    world.edit_incident(sys_id, short_description="Disk full on db-01 (paged)")
    event = world.run("event", only={"b": [str(ticket)]})
    assert world.incident(incident_of_ticket)["short_description"] == "Slow VPN in Zurich"
    assert (event.a.updated, event.b.updated) == (1, 0)  # only the record the event named
    # The same webhook delivered again changes nothing; no cursor moved.
    assert written(world.run("again", only={"b": [str(ticket)]})) == 0
    assert cursors == {name: world.ledger.read_cursor(name) for name in cursors}
    # The next scheduled run still carries the change the event did not name.
    world.run("scheduled")
    assert world.ticket(int(world.incident(sys_id)["correlation_id"]))["title"] == (
        "Disk full on db-01 (paged)"
    )


def test_a_replay_after_a_spec_fix_decides_the_parked_record_again(tmp_path: Path) -> None:
    world, _, ticket = synced_world(tmp_path, priority=False)
    world.edit_ticket(ticket, urgency="extreme")
    world.run("bad")
    assert [letter.stage for letter in world.ledger.dead_letters(world.spec.name)] == ["map"]

    # The fix is in the spec (a fourth urgency); nothing changes in either system.
    path = tmp_path / "incidents_tickets.yaml"
    path.write_text(path.read_text().replace('"3": low}', '"3": low, "4": extreme}'))
    world.spec = load_two_way_spec(path, environ={})

    async def replay() -> ReplaySummary:
        a, b = open_endpoints(world.spec, world.factory())
        try:
            return await replay_two_way_letters(world.spec, a, b, world.ledger, flow_run_id="r")
        finally:
            await a.aclose()
            await b.aclose()

    summary = asyncio.run(replay())
    assert (summary.attempted, summary.replayed, summary.still_failing) == (1, 1, 0)
    assert world.incident(world.ticket(ticket)["sn_sys_id"])["urgency"] == "4"
    (letter,) = world.ledger.dead_letters(world.spec.name, status=None)
    assert letter.status == "replayed"


def test_a_run_that_dies_after_its_writes_is_rerun_without_doubling_anything(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.create_incident(short_description="Disk full on db-01", impact="2", urgency="1")
    world.create_ticket(title="Slow VPN", impact=3, urgency="low")

    def crash(self: TwoWayRun, done: object) -> None:
        raise RuntimeError("killed before the links were saved")

    with monkeypatch.context() as patched:
        patched.setattr(TwoWayRun, "save", crash)
        with pytest.raises(RuntimeError, match="killed"):
            world.run("crashed")
    assert (len(world.incidents()), len(world.tickets())) == (2, 2)

    # The rerun finds the records it created by the keys they hold: no second copy.
    world.run("crashed")
    assert (len(world.incidents()), len(world.tickets())) == (2, 2)
    assert len(world.pairs()) == 2
    assert written(world.run("quiet")) == 0


def test_the_scheduled_sync_flow_runs_a_two_way_integration_both_ways(
    prefect_server: str,
    sandbox_server: BackgroundServer,
    sandbox: ServiceNowSandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.scheduled_sync import scheduled_sync

    world = World(tmp_path, priority=False, sandbox=sandbox)
    specs = tmp_path / "specs"
    specs.mkdir()
    text = (tmp_path / "incidents_tickets.yaml").read_text()
    (specs / "incidents_tickets.yaml").write_text(
        text.replace("https://acme.service-now.com", sandbox_server.url)
    )
    for name, value in {
        "SN_USER": "admin",
        "SN_PASSWORD": "sandbox",
        "TICKETS_URL": world.tickets_url,
        "SYNCLINE_LEDGER_URL": f"sqlite:///{tmp_path / 'flow-ledger.db'}",
        "SYNCLINE_SPECS_DIR": str(specs),
        "SYNCLINE_HOME": str(tmp_path / "home"),
    }.items():
        monkeypatch.setenv(name, value)
    sys_id = world.create_incident(short_description="Disk full on db-01", impact="2", urgency="1")
    ticket = world.create_ticket(title="Slow VPN", impact=3, urgency="low")
    time.sleep(2.02 - time.time() % 1)  # a run reads up to the second before it starts

    first = scheduled_sync("incidents-tickets")

    assert isinstance(first, TwoWaySummary)
    letters = Ledger(f"sqlite:///{tmp_path / 'flow-ledger.db'}").dead_letters("incidents-tickets")
    assert letters == [], [letter.reason for letter in letters[:3]]
    assert (first.a.created, first.b.created) == (1, 1)
    assert len(world.pairs()) == 2
    assert world.incident(sys_id)["correlation_id"] != ""
    assert world.ticket(ticket)["sn_sys_id"]
    time.sleep(2.02 - time.time() % 1)
    second = scheduled_sync("incidents-tickets")
    assert isinstance(second, TwoWaySummary)
    assert written(second) == 0
    assert (len(world.incidents()), len(world.tickets())) == (2, 2)
