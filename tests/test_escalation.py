"""ServiceNow ↔ Jira escalation (deployments/servicenow_jira_escalation.yaml) with both
sandboxes, a real SQLite ledger and the webhook gateway served over loopback: the sandboxes'
own webhooks (Jira admin webhooks signed with X-Hub-Signature, ServiceNow outbound REST) reach
the gateway's outbox, and runs carry them (``EscalationRunner.drain``) or poll by cursor.

The ``end_to_end`` tests run the same path on a real Prefect server: the gateway's forwarder
emits the events and the warm escalation path runs the ``servicenow-jira-escalation`` flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.context import refresh_global_settings_context
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker

from sandboxes.core.server import BackgroundServer
from sandboxes.jira import JiraSandbox, JiraSandboxConfig
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from syncline.journal_links import EscalationLedger
from syncline.outbox import GatewayOutbox
from syncline.state import Ledger
from syncline_app.escalation_path import EscalationPath, with_escalation_path
from syncline_app.gateway.app import create_app
from syncline_app.gateway.config import GatewaySettings, load_gateway_config
from syncline_app.gateway.forwarder import OutboxForwarder, PrefectEventsAPI
from tests.conftest import SPECS_DIR
from tests.gateway.conftest import NEW, gateway_environ
from tests.gateway.prefect_process import PrefectServerProcess, free_port
from tests.support.escalation_world import (
    ENVIRON,
    GROUP,
    JIRA_TOKEN,
    World,
    adf,
    adf_text,
    both_equal,
    escalate,
    eventually,
)
from tests.support.prefect_deploy import deploy_from_prefect_yaml

pytestmark = pytest.mark.filterwarnings("ignore:Unsupported scheme type:UserWarning")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    try:
        yield made
    finally:
        made.close()


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


# --- end to end: the gateway, the warm path and the deployment on a real Prefect server -----


def flow_runs(api_url: str) -> list[dict[str, Any]]:
    answer = httpx.post(f"{api_url}/flow_runs/filter", json={"limit": 200}, timeout=10)
    answer.raise_for_status()
    runs: list[dict[str, Any]] = answer.json()
    return runs


INTEGRATION = "servicenow-jira-escalation"
PREFIXES = ["syncline.record.servicenow.incident.", "syncline.record.jira.issue."]


@dataclass
class EndToEnd:
    """The gateway's process (HTTP side, forwarder to Prefect, the warm path) with both
    sandboxes' webhooks registered to it, and a real Prefect server."""

    prefect: PrefectServerProcess
    jira: JiraSandbox
    servicenow: ServiceNowSandbox
    ledger: Ledger
    path: EscalationPath
    hooks: str
    sn: httpx.Client
    jira_api: httpx.Client
    jira_hook: str
    sn_receiver: str

    @property
    def links(self) -> EscalationLedger:
        return EscalationLedger(self.ledger.engine)

    def open_incident(self, title: str, **fields: str) -> str:
        body = {"short_description": title, "assignment_group": GROUP, **fields}
        answer = self.sn.post("/api/now/table/incident", json=body)
        answer.raise_for_status()
        return str(answer.json()["result"]["sys_id"])

    def update_incident(self, sys_id: str, **fields: str) -> None:
        self.sn.patch(f"/api/now/table/incident/{sys_id}", json=fields).raise_for_status()

    def update_issue(self, key: str, **fields: Any) -> None:
        answer = self.jira_api.put(f"/rest/api/3/issue/{key}", json={"fields": fields})
        answer.raise_for_status()

    def incident(self, sys_id: str) -> dict[str, Any]:
        return next(r for r in self.servicenow.records("incident") if r["sys_id"] == sys_id)

    def issue(self, key: str) -> dict[str, Any]:
        fields: dict[str, Any] = self.jira.issue(key)["fields"]
        return fields

    def notes(self, sys_id: str) -> list[str]:
        return [
            r["value"]
            for r in self.servicenow.records("sys_journal_field")
            if r["element_id"] == sys_id and r["element"] == "work_notes"
        ]

    def comments(self, key: str) -> list[str]:
        page = self.jira_api.get(f"/rest/api/3/issue/{key}/comment").json()
        return [adf_text(comment["body"]) for comment in page["comments"]]

    def comment(self, key: str, text: str) -> None:
        answer = self.jira_api.post(f"/rest/api/3/issue/{key}/comment", json={"body": adf(text)})
        answer.raise_for_status()

    def transition(self, key: str, name: str) -> None:
        offered = self.jira_api.get(f"/rest/api/3/issue/{key}/transitions").json()["transitions"]
        chosen = next(t["id"] for t in offered if t["to"]["name"] == name)
        answer = self.jira_api.post(
            f"/rest/api/3/issue/{key}/transitions", json={"transition": {"id": chosen}}
        )
        answer.raise_for_status()

    def backlog(self) -> int:
        return self.links.backlog(INTEGRATION, PREFIXES)

    def delivered(self) -> bool:
        return self.servicenow.wait_for_outbound(10) and self.jira.wait_for_webhooks(10)

    def settle(self, timeout: float = 30) -> None:
        """Until every delivery is in, carried, and no run holds the integration (a run's
        own writes come back as deliveries: looked at again after it ends)."""

        def free() -> bool:
            return self.links.lease_holder(INTEGRATION, datetime.now(UTC)) is None

        def quiet() -> bool:
            if not (free() and self.delivered()):
                return False
            return self.backlog() == 0 and free() and self.delivered() and self.backlog() == 0

        eventually(quiet, timeout=timeout)


@contextlib.contextmanager
def end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, deploy: bool = True
) -> Iterator[EndToEnd]:
    """Both sandboxes, a ledger, a real ``prefect server start`` (with the deployment from
    prefect.yaml when ``deploy``) and the gateway's process, webhooks registered."""
    prefect = PrefectServerProcess(tmp_path / "prefect-home", free_port())
    jira_port = free_port()
    jira = JiraSandbox(
        JiraSandboxConfig(issues=0, projects=["ESC"], site_url=f"http://127.0.0.1:{jira_port}")
    )
    servicenow = ServiceNowSandbox(
        ServiceNowSandboxConfig(
            cmdb_ci_server=0, incident=20, sys_user=5, seed=3, outbound_fields=["sys_mod_count"]
        )
    )
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    outbox = GatewayOutbox(ledger_url)
    ledger = Ledger(ledger_url)
    with contextlib.ExitStack() as stack:
        stack.callback(prefect.stop)
        stack.callback(jira.close)
        stack.callback(servicenow.close)
        stack.callback(outbox.dispose)
        stack.callback(ledger.dispose)
        jira_url = stack.enter_context(BackgroundServer(jira.app, port=jira_port)).url
        sn_url = stack.enter_context(BackgroundServer(servicenow.app)).url
        for name, value in {
            **ENVIRON,
            "SYNCLINE_SERVICENOW_URL": sn_url,
            "SYNCLINE_JIRA_URL": jira_url,
            "SYNCLINE_LEDGER_URL": ledger_url,
            "SYNCLINE_SPECS_DIR": str(SPECS_DIR),
            "PREFECT_API_URL": prefect.api_url,
        }.items():
            monkeypatch.setenv(name, value)
        refresh_global_settings_context()
        stack.callback(refresh_global_settings_context)
        stack.callback(monkeypatch.undo)
        for worker in (APILogWorker, EventsWorker):
            stack.callback(worker.drain_all, timeout=10)
        prefect.start()
        if deploy:
            deploy_from_prefect_yaml(prefect.api_url, "servicenow-jira-escalation")

        # The gateway's process: HTTP side, forwarder to Prefect, and the warm path.
        forwarder = OutboxForwarder(
            outbox,
            PrefectEventsAPI(prefect.api_url, timeout=2),
            min_backoff=timedelta(milliseconds=50),
            max_backoff=timedelta(milliseconds=300),
        )
        config = load_gateway_config(gateway_environ(), settings=GatewaySettings())
        path = EscalationPath(ledger_url=ledger_url, poll_interval=0.2, max_backoff=1)
        app = with_escalation_path(create_app(config, outbox, forwarder), path)
        hooks = stack.enter_context(BackgroundServer(app)).url + "/hooks"
        jira_hook = jira.register_webhook(f"{hooks}/jira", NEW["jira"], jql="project = ESC")
        sn_receiver = servicenow.register_outbound_rest(f"{hooks}/servicenow", NEW["servicenow"])

        sn = httpx.Client(base_url=sn_url, auth=("admin", "sandbox"), timeout=10)
        jira_api = httpx.Client(
            base_url=jira_url, auth=("integration@example.com", JIRA_TOKEN), timeout=10
        )
        stack.callback(sn.close)
        stack.callback(jira_api.close)
        sn.post("/api/now/table/sys_user_group", json={"name": GROUP}).raise_for_status()
        yield EndToEnd(
            prefect, jira, servicenow, ledger, path, hooks, sn, jira_api, jira_hook, sn_receiver
        )


def in_step(e2e: EndToEnd, sys_id: str, key: str) -> bool:
    """Both sides equal on every field the spec carries both ways."""
    incident, issue = e2e.incident(sys_id), e2e.issue(key)
    priorities = {"1": "Highest", "2": "High", "3": "Medium", "4": "Low", "5": "Lowest"}
    states = {"1": "To Do", "2": "In Progress", "3": "In Progress", "6": "Done", "7": "Done"}
    return (
        incident["short_description"] == issue["summary"]
        and priorities[incident["priority"]] == issue["priority"]["name"]
        and states[incident["state"]] == issue["status"]["name"]
        and incident["correlation_id"] == key
    )


def marks(e2e: EndToEnd, sys_id: str, key: str) -> tuple[Any, ...]:
    """What any write to either record would move."""
    incident, issue = e2e.incident(sys_id), e2e.issue(key)
    return (
        incident["sys_mod_count"],
        incident["sys_updated_on"],
        issue["updated"],
        len(e2e.notes(sys_id)),
        len(e2e.comments(key)),
        e2e.jira.keys(),
    )


def stays_put(e2e: EndToEnd, sys_id: str, key: str, seconds: float = 2.0) -> None:
    """Settled, then nothing more is written to either side for ``seconds``."""
    e2e.settle()
    before = marks(e2e, sys_id, key)
    time.sleep(seconds)
    e2e.settle()
    assert marks(e2e, sys_id, key) == before


@pytest.mark.prefect
def test_end_to_end_signed_webhooks_through_the_gateway_on_a_real_prefect_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with end_to_end(tmp_path, monkeypatch) as e2e:
        prefect, jira, path = e2e.prefect, e2e.jira, e2e.path
        name = INTEGRATION
        deployed = httpx.get(f"{prefect.api_url}/deployments/name/{name}/{name}").json()
        (polling,) = deployed["schedules"]  # the polling fallback, every minute
        assert polling["schedule"]["cron"] == "* * * * *" and polling["parameters"]["poll"]
        assert deployed["concurrency_limit"] == 1 or deployed.get("global_concurrency_limit")

        sys_id = e2e.open_incident("Login loop on SSO")

        def incident() -> dict[str, Any]:
            return e2e.incident(sys_id)

        def notes() -> list[str]:
            return e2e.notes(sys_id)

        comments = e2e.comments

        # The escalation opens one issue.
        eventually(lambda: incident()["correlation_id"].startswith("ESC-"), timeout=30)
        key = incident()["correlation_id"]
        assert jira.keys() == [key]
        # A Jira comment becomes one work note, a work note one comment: not back.
        e2e.comment(key, "Fix deployed to canary.")
        eventually(lambda: len(notes()) == 1)
        e2e.update_incident(sys_id, work_notes="Users confirm.")
        eventually(lambda: len(comments(key)) == 2)
        # A Jira status change moves the incident, and stops there.
        e2e.transition(key, "Done")
        eventually(lambda: incident()["state"] == "6")
        assert e2e.delivered()
        eventually(lambda: e2e.backlog() == 0)
        assert len(notes()) == 2
        assert len(comments(key)) == 2 and jira.keys() == [key]
        assert jira.issue(key)["fields"]["status"]["name"] == "Done"

        # Every event was carried by a flow run of the escalation flow recorded in Prefect,
        # and the deployment's trigger created runs for the events, with their ids.
        carried = e2e.links.applied(INTEGRATION)
        assert carried and None not in carried.values()

        def triggered() -> bool:
            runs = [r for r in flow_runs(prefect.api_url) if r["deployment_id"] is not None]
            return any(r["parameters"].get("event_id") in carried for r in runs)

        eventually(triggered, timeout=20)
        eventually(lambda: path.runs >= 1)  # the warm path's flow runs (its last may be ending)
        assert path.failures == 0

        # The polling fallback, as the schedule runs it: everything is in step already.
        from flows.escalation import escalation

        polled = asyncio.run(escalation(poll=True))
        assert polled.mode == "poll" and not polled.collapsed
        assert polled.count("a_updated") == polled.count("b_updated") == 0
        assert polled.journal.a_appended == polled.journal.b_appended == 0


@pytest.mark.prefect
def test_end_to_end_status_priority_policy_duplicates_and_polling_on_a_real_prefect_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with end_to_end(tmp_path, monkeypatch, deploy=False) as e2e:
        jira, servicenow = e2e.jira, e2e.servicenow
        sys_id = e2e.open_incident("Invoice export hangs")  # priority 5, from impact/urgency
        eventually(lambda: e2e.incident(sys_id)["correlation_id"].startswith("ESC-"), timeout=30)
        key = e2e.incident(sys_id)["correlation_id"]
        e2e.settle()
        assert jira.keys() == [key] and e2e.issue(key)["priority"]["name"] == "Lowest"

        # A ServiceNow state change moves the issue's status, and stops there.
        e2e.update_incident(sys_id, state="2")
        eventually(lambda: e2e.issue(key)["status"]["name"] == "In Progress", timeout=30)
        stays_put(e2e, sys_id, key)
        assert e2e.incident(sys_id)["state"] == "2" and in_step(e2e, sys_id, key)

        # Priority changed on both sides between two deliveries (the warm path held: another
        # drainer has the integration): ServiceNow's stands (priority: conflict: a_wins).
        holder = "test:held"
        assert e2e.links.take_lease(
            INTEGRATION, holder, ttl=timedelta(minutes=1), now=datetime.now(UTC)
        )
        e2e.update_incident(sys_id, priority="1")
        e2e.update_issue(key, priority={"name": "Low"})
        assert e2e.delivered()
        eventually(lambda: e2e.backlog() >= 2)  # both deliveries wait in the outbox
        assert e2e.issue(key)["priority"]["name"] == "Low"
        e2e.links.release_lease(INTEGRATION, holder)
        eventually(lambda: e2e.issue(key)["priority"]["name"] == "Highest", timeout=30)
        stays_put(e2e, sys_id, key)
        assert e2e.incident(sys_id)["priority"] == "1" and in_step(e2e, sys_id, key)

        # Duplicated and early webhooks: Jira delivers everything twice for a while, a
        # ServiceNow webhook announces a change not made yet, and an older ServiceNow delivery
        # comes again after a newer change.
        jira.outbox.duplicate_probability = 1.0  # as PUT /sandbox/jira/settings sets it
        older = servicenow.outbound_deliveries()[-1]["id"]
        early = {
            "table": "incident",
            "sys_id": sys_id,
            "sys_updated_on": "2030-01-01 00:00:00",
            "sys_updated_by": "admin",
            "operation": "update",
            "number": e2e.incident(sys_id)["number"],
            "changed_fields": ["priority"],
        }
        answer = httpx.post(
            f"{e2e.hooks}/servicenow", json=early, headers={"X-Syncline-Token": NEW["servicenow"]}
        )
        assert answer.status_code == 202, answer.text
        e2e.update_issue(key, summary="Invoice export hangs on month end")
        e2e.comment(key, "Reproduced with March data.")
        e2e.update_incident(sys_id, priority="2")
        assert e2e.delivered()
        servicenow.outbox.redeliver(older)  # the same bytes, after the newer change
        assert e2e.delivered()
        (again,) = [d for d in servicenow.outbound_deliveries() if d["id"] == older]
        assert len(again["attempts"]) >= 2 and again["attempts"][-1]["status"] < 300
        eventually(
            lambda: (
                e2e.incident(sys_id)["short_description"] == "Invoice export hangs on month end"
                and e2e.issue(key)["priority"]["name"] == "High"
                and len(e2e.notes(sys_id)) == 1
            ),
            timeout=30,
        )
        assert any(d["duplicates"] for d in jira.deliveries()), "no duplicated webhook"
        stays_put(e2e, sys_id, key)
        assert in_step(e2e, sys_id, key) and e2e.incident(sys_id)["priority"] == "2"
        assert len(e2e.notes(sys_id)) == 1 and len(e2e.comments(key)) == 1
        assert jira.keys() == [key]
        jira.outbox.duplicate_probability = 0.0

        # Webhooks off: the receivers are gone; the polling deployment's flow gets there.
        e2e.jira_api.delete(f"/rest/webhooks/1.0/webhook/{e2e.jira_hook}").raise_for_status()
        assert servicenow.outbound.unregister(e2e.sn_receiver)
        runs = e2e.path.runs
        e2e.update_incident(sys_id, priority="4", work_notes="Customer escalated again.")
        e2e.transition(key, "Done")
        assert e2e.delivered()
        time.sleep(1.5)  # a poll's window ends a second before it starts
        assert e2e.backlog() == 0 and e2e.path.runs == runs  # nothing came by webhook
        assert e2e.issue(key)["priority"]["name"] == "High"  # not carried yet
        assert e2e.incident(sys_id)["state"] == "2"
        from flows.escalation import escalation

        polled = asyncio.run(escalation(poll=True))
        assert polled.mode == "poll" and not polled.collapsed
        assert e2e.incident(sys_id)["state"] == "6"
        assert e2e.issue(key)["priority"]["name"] == "Low"
        assert in_step(e2e, sys_id, key)
        assert len(e2e.notes(sys_id)) == 2 and len(e2e.comments(key)) == 2
        again_polled = asyncio.run(escalation(poll=True))  # reads back its own writes
        assert again_polled.count("a_updated") == again_polled.count("b_updated") == 0
        assert in_step(e2e, sys_id, key) and jira.keys() == [key]
        assert e2e.path.failures == 0


def test_a_storm_is_one_drainer_at_a_time_and_a_collapsed_run_loses_nothing(world: World) -> None:
    sys_id, key = escalate(world)
    for number in range(25):
        world.comment(key, f"Storm comment {number}")
    world.settle()
    # Another drainer (the deployment's run, say) holds the integration: this run collapses.
    other = "worker-1:42:deadbeef"
    assert world.links.take_lease(
        world.spec.name, other, ttl=timedelta(minutes=1), now=datetime.now(UTC)
    )
    collapsed = world.run()
    assert collapsed.collapsed and collapsed.events == 0 and collapsed.backlog >= 25
    world.links.release_lease(world.spec.name, other)
    # The next drain, one run, carries every waiting webhook: the 50 from Jira in its first
    # batch, then those of its own work notes as they arrive (nothing written for them).
    carried = world.run()
    assert carried.events >= 50 and carried.two_way[0].b.read == 1
    assert carried.journal.a_appended == 25 and carried.journal.b_appended == 0
    # (Appended in the comments' order; ServiceNow sorts the entries of one second by id.)
    notes = {note.split("\n\n")[0] for note in world.work_notes(sys_id)}
    assert notes == {f"Storm comment {number}" for number in range(25)}
    world.quiet()
    assert len(world.comments(key)) == 25 and len(world.work_notes(sys_id)) == 25
