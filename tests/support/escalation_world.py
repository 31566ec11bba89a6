"""The escalation's test world: both sandboxes, the gateway on loopback (no forwarder: its
outbox fills), a real SQLite ledger, and runs of ``servicenow-jira-escalation`` (used by
tests/test_escalation.py and tests/test_journal_sync.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx

from sandboxes.core.server import BackgroundServer
from sandboxes.jira import JiraSandbox, JiraSandboxConfig
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from syncline.connect import ConnectorFactory
from syncline.escalation import EscalationReport, EscalationRunner
from syncline.journal_links import EscalationLedger
from syncline.outbox import GatewayOutbox
from syncline.state import Ledger
from syncline.two_way import TwoWaySpec, load_two_way_spec
from syncline.two_way_endpoints import open_endpoints
from syncline_app.gateway.app import create_app
from syncline_app.gateway.config import GatewaySettings, load_gateway_config
from tests.conftest import SPECS_DIR
from tests.gateway.conftest import NEW, gateway_environ

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
                # The business rule sends sys_mod_count (README): two changes in one second
                # are two bodies, not one the gateway would take for a redelivery.
                outbound_fields=["sys_mod_count"],
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
        return [adf_text(comment["body"]) for comment in page["comments"]]

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
        self.jira_api("POST", f"/rest/api/3/issue/{key}/comment", {"body": adf(text)})


def adf(text: str) -> dict[str, Any]:
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}],
    }


def adf_text(document: Any) -> str:
    from connectors.jira import adf_to_text

    return adf_to_text(document)


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


def escalate(world: World, title: str = "Payments API times out", **fields: str) -> tuple[str, str]:
    sys_id = world.open_incident(title, **fields)
    world.quiet()
    key = str(world.incident(sys_id)["correlation_id"])
    assert key.startswith("ESC-")
    return sys_id, key
