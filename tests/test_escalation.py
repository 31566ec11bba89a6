"""ServiceNow ↔ Jira escalation (deployments/servicenow_jira_escalation.yaml) with both
sandboxes, a real SQLite ledger and the webhook gateway served over loopback: the sandboxes'
own webhooks (Jira admin webhooks signed with X-Hub-Signature, ServiceNow outbound REST) reach
the gateway's outbox, and runs carry them (``EscalationRunner.drain``) or poll by cursor.

The last test runs the same path end to end on a real Prefect server: the gateway's forwarder
emits the events and the warm escalation path runs the ``servicenow-jira-escalation`` flow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

import syncline.state  # noqa: F401  # before syncline.outbox (see syncline_app/gateway)
from sandboxes.core.server import BackgroundServer
from sandboxes.jira import JiraSandbox, JiraSandboxConfig
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from syncline.connect import ConnectorFactory
from syncline.escalation import EscalationReport, EscalationRunner
from syncline.journal_links import EscalationLedger
from syncline.outbox import GatewayOutbox
from syncline.state import Ledger
from syncline.two_way import TwoWaySpec, load_two_way_spec
from syncline.two_way_sync import open_endpoints
from syncline_app.gateway.app import create_app
from syncline_app.gateway.config import GatewaySettings, load_gateway_config
from tests.conftest import SPECS_DIR
from tests.gateway.conftest import NEW, gateway_environ

pytestmark = pytest.mark.filterwarnings("ignore:Unsupported scheme type:UserWarning")

SN_URL = "https://sandbox.service-now.com"
JIRA_URL = "https://sandbox.atlassian.net"
JIRA_TOKEN = "sandbox-api-token"  # the sandbox's published demo token
GROUP = "Development"

ENVIRON = {
    "SYNCLINE_SERVICENOW_URL": SN_URL,
    "SYNCLINE_SERVICENOW_USER": "admin",
    "SYNCLINE_SERVICENOW_PASSWORD": "sandbox",
    "SYNCLINE_JIRA_URL": JIRA_URL,
    "SYNCLINE_JIRA_API_TOKEN": JIRA_TOKEN,
}


class World:
    """Both sandboxes, the gateway on loopback (no forwarder: the outbox fills), a ledger."""

    def __init__(self, tmp_path: Path, *, webhooks: bool = True, duplicates: float = 0.0) -> None:
        self.servicenow = ServiceNowSandbox(
            ServiceNowSandboxConfig(
                cmdb_ci_server=0,
                incident=40,
                sys_user=5,
                seed=11,
                outbound_duplicate_probability=duplicates,
            )
        )
        self.jira = JiraSandbox(
            JiraSandboxConfig(issues=0, projects=["ESC"], webhook_duplicate_probability=duplicates)
        )
        self.ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
        self.ledger = Ledger(self.ledger_url)
        self.links = EscalationLedger(self.ledger.engine)
        self.outbox = GatewayOutbox(self.ledger_url)
        config = load_gateway_config(gateway_environ(), settings=GatewaySettings())
        self.server = BackgroundServer(create_app(config, self.outbox))
        self.server.__enter__()
        self.hooks = self.server.url + "/hooks"
        if webhooks:
            self.webhooks_on()
        self.spec: TwoWaySpec = load_two_way_spec(
            SPECS_DIR / "servicenow_jira_escalation.yaml", environ=ENVIRON
        )
        self.group = str(
            self.sn("POST", "/api/now/table/sys_user_group", {"name": GROUP})["sys_id"]
        )

    def webhooks_on(self) -> None:
        self.jira.register_webhook(f"{self.hooks}/jira", NEW["jira"], jql="project = ESC")
        self.servicenow.register_outbound_rest(f"{self.hooks}/servicenow", NEW["servicenow"])

    def close(self) -> None:
        self.jira.close()
        self.servicenow.close()
        self.server.__exit__(None, None, None)
        self.outbox.dispose()
        self.ledger.dispose()

    # the integration ------------------------------------------------------------------------

    def factory(self) -> ConnectorFactory:
        return ConnectorFactory(
            environ=ENVIRON,
            transports={
                "servicenow": httpx.ASGITransport(app=self.servicenow.app),
                "jira": httpx.ASGITransport(app=self.jira.app),
            },
        )

    def run(self, mode: Literal["events", "poll"] = "events") -> EscalationReport:
        """Let the webhooks of what happened so far arrive, then one drain (or poll)."""
        self.settle()

        async def go() -> EscalationReport:
            a, b = open_endpoints(self.spec, self.factory())
            try:
                # A poll's window ends a second before it starts: look from a little ahead so
                # that what the test just wrote is in it.
                ahead = timedelta(seconds=2 if mode == "poll" else 0)
                runner = EscalationRunner(
                    self.spec, a, b, self.ledger, now=lambda: datetime.now(UTC) + ahead
                )
                return await (runner.drain() if mode == "events" else runner.poll())
            finally:
                await a.aclose()
                await b.aclose()

        return asyncio.run(go())

    def settle(self) -> None:
        assert self.servicenow.wait_for_outbound(10)
        assert self.jira.wait_for_webhooks(10)

    def quiet(self) -> EscalationReport:
        """Runs until nothing is left to carry (Syncline's own writes come back as events)."""
        for _ in range(5):
            report = self.run()
            if not report.events:
                return report
        raise AssertionError("events keep coming")

    # the systems ----------------------------------------------------------------------------

    def sn(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            transport = httpx.ASGITransport(app=self.servicenow.app)
            async with httpx.AsyncClient(transport=transport, base_url=SN_URL) as client:
                answer = await client.request(method, path, json=body, auth=("admin", "sandbox"))
                answer.raise_for_status()
                result: dict[str, Any] = answer.json()["result"]
                return result

        return asyncio.run(go())

    def jira_api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async def go() -> Any:
            transport = httpx.ASGITransport(app=self.jira.app)
            async with httpx.AsyncClient(transport=transport, base_url=JIRA_URL) as client:
                answer = await client.request(
                    method, path, json=body, auth=("integration@example.com", JIRA_TOKEN)
                )
                answer.raise_for_status()
                return answer.json() if answer.content else None

        return asyncio.run(go())

    def open_incident(self, title: str, **fields: str) -> str:
        body = {"short_description": title, "assignment_group": GROUP, **fields}
        return str(self.sn("POST", "/api/now/table/incident", body)["sys_id"])

    def incident(self, sys_id: str) -> dict[str, Any]:
        return next(r for r in self.servicenow.records("incident") if r["sys_id"] == sys_id)

    def work_notes(self, sys_id: str) -> list[str]:
        rows = [
            r
            for r in self.servicenow.records("sys_journal_field")
            if r["element_id"] == sys_id and r["element"] == "work_notes"
        ]
        return [r["value"] for r in sorted(rows, key=lambda r: (r["sys_created_on"], r["sys_id"]))]

    def comments(self, key: str) -> list[str]:
        page = self.jira_api("GET", f"/rest/api/3/issue/{key}/comment")
        return [_adf_text(comment["body"]) for comment in page["comments"]]

    def issue(self, key: str) -> dict[str, Any]:
        fields: dict[str, Any] = self.jira.issue(key)["fields"]
        return fields

    def transition(self, key: str, name: str) -> None:
        offered = self.jira_api("GET", f"/rest/api/3/issue/{key}/transitions")["transitions"]
        chosen = next(t for t in offered if t["to"]["name"] == name)
        self.jira_api(
            "POST", f"/rest/api/3/issue/{key}/transitions", {"transition": {"id": chosen["id"]}}
        )

    def comment(self, key: str, text: str) -> None:
        self.jira_api("POST", f"/rest/api/3/issue/{key}/comment", {"body": _adf(text)})


def _adf(text: str) -> dict[str, Any]:
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}],
    }


def _adf_text(document: Any) -> str:
    from connectors.jira import adf_to_text

    return adf_to_text(document)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    try:
        yield made
    finally:
        made.close()


def both_equal(world: World, sys_id: str, key: str) -> None:
    incident, issue = world.incident(sys_id), world.issue(key)
    assert incident["short_description"] == issue["summary"]
    priorities = {"1": "Highest", "2": "High", "3": "Medium", "4": "Low", "5": "Lowest"}
    assert priorities[incident["priority"]] == issue["priority"]["name"]
    states = {"1": "To Do", "2": "In Progress", "3": "In Progress", "6": "Done", "7": "Done"}
    assert states[incident["state"]] == issue["status"]["name"]


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --- tests ---------------------------------------------------------------------------------


def test_an_escalated_incident_opens_exactly_one_issue(world: World) -> None:
    sys_id = world.open_incident(
        "Checkout fails for EUR carts", priority="2", description="500 on /pay"
    )
    world.sn("PATCH", f"/api/now/table/incident/{sys_id}", {"priority": "2"})
    first = world.run()
    assert first.events >= 1 and first.count("b_created") == 1
    assert world.jira.keys() == ["ESC-1"]
    issue = world.issue("ESC-1")
    assert issue["summary"] == "Checkout fails for EUR carts"
    assert issue["priority"]["name"] == "High" and issue["status"]["name"] == "To Do"
    assert world.incident(sys_id)["correlation_id"] == "ESC-1"
    # Its own writes come back as webhooks (the back-link on the incident, the issue's
    # creation and property): carried, nothing written.
    quiet = world.quiet()
    assert quiet.count("b_created") == quiet.count("a_updated") == quiet.count("b_updated") == 0
    # Polling finds nothing either; the seeded incidents (other groups, other integrations'
    # correlation ids) stay out of scope.
    polled = world.run("poll")
    assert polled.count("b_created") == 0 and world.jira.keys() == ["ESC-1"]
    both_equal(world, sys_id, "ESC-1")


def escalate(world: World, title: str = "Payments API times out", **fields: str) -> tuple[str, str]:
    sys_id = world.open_incident(title, **fields)
    world.quiet()
    key = str(world.incident(sys_id)["correlation_id"])
    assert key.startswith("ESC-")
    return sys_id, key


def test_a_jira_comment_becomes_one_work_note_and_a_work_note_one_comment(world: World) -> None:
    sys_id, key = escalate(world)
    world.comment(key, "Reproduced on staging; fix under review.")
    report = world.quiet()
    marker = f"[Syncline: Jira comment {_comment_id(world, key, 0)}]"
    assert world.work_notes(sys_id) == [f"Reproduced on staging; fix under review.\n\n{marker}"]
    assert report.journal.a_appended == 0  # the drain that carried it, and the quiet ones after
    assert len(world.comments(key)) == 1  # not echoed back to Jira

    # ServiceNow's outbound body names the record, the second and the fields changed: a note
    # written in the same second as Syncline's is the same body, which the gateway takes for
    # a redelivery (the polling run carries it then). People are a second apart.
    time.sleep(1.1)
    world.sn(
        "PATCH", f"/api/now/table/incident/{sys_id}", {"work_notes": "Customer confirms EU only."}
    )
    world.sn("PATCH", f"/api/now/table/incident/{sys_id}", {"work_notes": "Rollback done."})
    world.quiet()
    comments = world.comments(key)
    assert [c.split("\n\n[Syncline:")[0] for c in comments] == [
        "Reproduced on staging; fix under review.",
        "Customer confirms EU only.",
        "Rollback done.",
    ]
    assert len(world.work_notes(sys_id)) == 3  # one carried in, two written here: no echo
    # Nothing more on a poll either: every entry is linked.
    polled = world.run("poll")
    assert polled.journal.a_appended == polled.journal.b_appended == 0
    assert len(world.comments(key)) == 3 and len(world.work_notes(sys_id)) == 3


def _comment_id(world: World, key: str, index: int) -> str:
    page = world.jira_api("GET", f"/rest/api/3/issue/{key}/comment")
    return str(page["comments"][index]["id"])


def test_a_rerun_after_a_crash_between_append_and_link_appends_nothing_twice(world: World) -> None:
    sys_id, key = escalate(world)
    world.comment(key, "Deploying the fix.")
    world.sn("PATCH", f"/api/now/table/incident/{sys_id}", {"work_notes": "Thanks, watching."})
    world.quiet()
    # The ledger's journal links are lost (a crash before their save, or a restored ledger):
    # the markers on the entries Syncline wrote link them again, nothing is appended.
    with world.ledger.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM syncline_journal_links")
    report = world.run("poll")
    assert report.journal.recognised == 2
    assert report.journal.a_appended == report.journal.b_appended == 0
    assert len(world.comments(key)) == 2 and len(world.work_notes(sys_id)) == 2


def test_a_status_change_on_either_side_moves_the_other_and_stops_there(world: World) -> None:
    sys_id, key = escalate(world)
    world.transition(key, "In Progress")
    first = world.quiet()
    assert world.incident(sys_id)["state"] == "2"
    world.sn("PATCH", f"/api/now/table/incident/{sys_id}", {"state": "6"})
    world.quiet()
    assert world.issue(key)["status"]["name"] == "Done"
    assert world.incident(sys_id)["state"] == "6"  # Done came back as no change: still Resolved
    world.sn("PATCH", f"/api/now/table/incident/{sys_id}", {"state": "7"})
    last = world.quiet()
    assert world.issue(key)["status"]["name"] == "Done" and world.incident(sys_id)["state"] == "7"
    assert last.count("a_updated") == last.count("b_updated") == 0
    assert first.count("conflicts") == 0
    both_equal(world, sys_id, key)


def test_a_priority_changed_on_both_sides_between_deliveries_follows_the_policy(
    world: World,
) -> None:
    sys_id, key = escalate(world, priority="3")
    # Both change before either change is carried: ServiceNow wins (conflict: a_wins).
    world.sn("PATCH", f"/api/now/table/incident/{sys_id}", {"priority": "1"})
    world.jira_api("PUT", f"/rest/api/3/issue/{key}", {"fields": {"priority": {"name": "Low"}}})
    report = world.quiet()
    assert report.count("conflicts") == 0  # the quiet run after the deciding one
    assert world.incident(sys_id)["priority"] == "1"
    assert world.issue(key)["priority"]["name"] == "Highest"
    # A change on one side alone goes through as usual.
    world.jira_api("PUT", f"/rest/api/3/issue/{key}", {"fields": {"priority": {"name": "Lowest"}}})
    world.quiet()
    assert world.incident(sys_id)["priority"] == "5"
    both_equal(world, sys_id, key)


def _outbound_body(world: World, sys_id: str, when: str, fields: list[str]) -> dict[str, Any]:
    incident = world.incident(sys_id)
    return {
        "table": "incident",
        "sys_id": sys_id,
        "sys_updated_on": when,
        "sys_updated_by": "admin",
        "operation": "update",
        "number": incident["number"],
        "changed_fields": fields,
    }


def _post_servicenow(world: World, body: dict[str, Any]) -> None:
    answer = httpx.post(
        f"{world.hooks}/servicenow", json=body, headers={"X-Syncline-Token": NEW["servicenow"]}
    )
    assert answer.status_code == 202, answer.text


def test_duplicated_reordered_and_early_webhooks_end_with_both_sides_equal(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, duplicates=1.0)  # every webhook is delivered twice
    try:
        sys_id, key = escalate(world, priority="4")
        assert world.jira.keys() == [key]
        # Early: a webhook announcing a change not made yet reads the record as it is.
        _post_servicenow(world, _outbound_body(world, sys_id, "2030-01-01 00:00:00", ["state"]))
        early = world.run()
        assert early.events == 1 and early.count("b_updated") == 0
        # The change, then a stale webhook about an older change arriving after it.
        world.sn("PATCH", f"/api/now/table/incident/{sys_id}", {"priority": "2", "state": "2"})
        world.settle()
        _post_servicenow(world, _outbound_body(world, sys_id, "2020-01-01 00:00:00", ["priority"]))
        world.transition(key, "Done")
        world.comment(key, "Closed from Jira.")
        world.quiet()
        assert world.incident(sys_id)["state"] == "6"
        assert world.issue(key)["priority"]["name"] == "High"
        assert len(world.work_notes(sys_id)) == 1 and len(world.comments(key)) == 1
        # Redelivered (the same bytes, the same webhook identifier): nothing moves.
        for delivery in world.jira.deliveries()[-3:]:
            world.jira.outbox.redeliver(str(delivery["id"]))
        assert world.quiet().count("a_updated") == 0
        both_equal(world, sys_id, key)
        assert world.jira.keys() == [key] and len(world.work_notes(sys_id)) == 1
    finally:
        world.close()


def test_with_webhooks_off_polling_gets_there_too(tmp_path: Path) -> None:
    world = World(tmp_path, webhooks=False)
    try:
        sys_id = world.open_incident("Search index stale", priority="2")
        first = world.run("poll")
        assert first.count("b_created") == 1 and world.run().events == 0
        key = str(world.incident(sys_id)["correlation_id"])
        world.transition(key, "In Progress")
        world.comment(key, "Looking into it.")
        world.sn("PATCH", f"/api/now/table/incident/{sys_id}", {"work_notes": "Priority raised."})
        world.sn("PATCH", f"/api/now/table/incident/{sys_id}", {"priority": "1"})
        world.run("poll")
        world.run("poll")  # reads back its own writes: nothing more
        both_equal(world, sys_id, key)
        assert world.incident(sys_id)["state"] == "2"
        # (Entries of one second are ordered by id, so compare them as a set.)
        assert {n.split("\n\n")[0] for n in world.work_notes(sys_id)} == {
            "Priority raised.",
            "Looking into it.",
        }
        assert len(world.comments(key)) == 2 and world.jira.keys() == [key]
    finally:
        world.close()
