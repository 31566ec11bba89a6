"""ServiceNow ↔ Jira escalation (deployments/servicenow_jira_escalation.yaml) with both
sandboxes, a real SQLite ledger and the webhook gateway served over loopback: the sandboxes'
own webhooks (Jira admin webhooks signed with X-Hub-Signature, ServiceNow outbound REST) reach
the gateway's outbox, and runs carry them (``EscalationRunner.drain``) or poll by cursor.

The last test runs the same path end to end on a real Prefect server: the gateway's forwarder
emits the events and the warm escalation path runs the ``servicenow-jira-escalation`` flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.context import refresh_global_settings_context
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker

import syncline.state  # noqa: F401  # before syncline.outbox (see syncline_app/gateway)
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
from tests.conftest import ROOT, SPECS_DIR
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


def deploy_escalation(api_url: str) -> None:
    """``servicenow-jira-escalation`` from prefect.yaml, as ``make up`` deploys it (no worker
    here: its triggered runs stay scheduled, which shows what the trigger passes)."""
    env = {**os.environ, "PREFECT_API_URL": api_url, "PWD": str(ROOT)}
    for command in (
        ["work-pool", "create", "syncline-process", "--type", "process", "--overwrite"],
        ["--no-prompt", "deploy", "--name", "servicenow-jira-escalation"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "prefect", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def flow_runs(api_url: str) -> list[dict[str, Any]]:
    answer = httpx.post(f"{api_url}/flow_runs/filter", json={"limit": 200}, timeout=10)
    answer.raise_for_status()
    runs: list[dict[str, Any]] = answer.json()
    return runs


@pytest.mark.prefect
def test_end_to_end_signed_webhooks_through_the_gateway_on_a_real_prefect_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
        deploy_escalation(prefect.api_url)
        name = "servicenow-jira-escalation"
        deployed = httpx.get(f"{prefect.api_url}/deployments/name/{name}/{name}").json()
        (polling,) = deployed["schedules"]  # the polling fallback, every minute
        assert polling["schedule"]["cron"] == "* * * * *" and polling["parameters"]["poll"]
        assert deployed["concurrency_limit"] == 1 or deployed.get("global_concurrency_limit")

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
        jira.register_webhook(f"{hooks}/jira", NEW["jira"], jql="project = ESC")
        servicenow.register_outbound_rest(f"{hooks}/servicenow", NEW["servicenow"])

        sn = httpx.Client(base_url=sn_url, auth=("admin", "sandbox"), timeout=10)
        jira_api = httpx.Client(
            base_url=jira_url, auth=("integration@example.com", JIRA_TOKEN), timeout=10
        )
        stack.callback(sn.close)
        stack.callback(jira_api.close)
        sn.post("/api/now/table/sys_user_group", json={"name": GROUP}).raise_for_status()
        body = {"short_description": "Login loop on SSO", "assignment_group": GROUP}
        sys_id = sn.post("/api/now/table/incident", json=body).json()["result"]["sys_id"]

        def incident() -> dict[str, Any]:
            return next(r for r in servicenow.records("incident") if r["sys_id"] == sys_id)

        def notes() -> list[str]:
            return [
                r["value"]
                for r in servicenow.records("sys_journal_field")
                if r["element_id"] == sys_id and r["element"] == "work_notes"
            ]

        def comments(key: str) -> list[str]:
            page = jira_api.get(f"/rest/api/3/issue/{key}/comment").json()
            return [adf_text(comment["body"]) for comment in page["comments"]]

        # The escalation opens one issue.
        eventually(lambda: incident()["correlation_id"].startswith("ESC-"), timeout=30)
        key = incident()["correlation_id"]
        assert jira.keys() == [key]
        # A Jira comment becomes one work note, a work note one comment: not back.
        jira_api.post(
            f"/rest/api/3/issue/{key}/comment", json={"body": adf("Fix deployed to canary.")}
        ).raise_for_status()
        eventually(lambda: len(notes()) == 1)
        sn.patch(f"/api/now/table/incident/{sys_id}", json={"work_notes": "Users confirm."})
        eventually(lambda: len(comments(key)) == 2)
        # A Jira status change moves the incident, and stops there.
        offered = jira_api.get(f"/rest/api/3/issue/{key}/transitions").json()["transitions"]
        done = next(t["id"] for t in offered if t["to"]["name"] == "Done")
        jira_api.post(f"/rest/api/3/issue/{key}/transitions", json={"transition": {"id": done}})
        eventually(lambda: incident()["state"] == "6")
        assert servicenow.wait_for_outbound(10) and jira.wait_for_webhooks(10)
        eventually(
            lambda: (
                EscalationLedger(ledger.engine).backlog(
                    "servicenow-jira-escalation",
                    ["syncline.record.servicenow.incident.", "syncline.record.jira.issue."],
                )
                == 0
            )
        )
        assert len(notes()) == 2
        assert len(comments(key)) == 2 and jira.keys() == [key]
        assert jira.issue(key)["fields"]["status"]["name"] == "Done"

        # Every event was carried by a flow run of the escalation flow recorded in Prefect,
        # and the deployment's trigger created runs for the events, with their ids.
        carried = EscalationLedger(ledger.engine).applied("servicenow-jira-escalation")
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
