"""The Jira connector as one side of a two-way integration run by the engine: ServiceNow
incidents (A) and Jira issues (B), both sandboxes in process, every Jira request checked
against Atlassian's description. An incident opens one issue (correlated by property and
label), the back-links are not echoed, and a Jira status and summary change reaches the
incident through the mapped state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandboxes.jira import JiraSandbox, JiraSandboxConfig
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from syncline.connect import ConnectorFactory
from syncline.state import Ledger
from syncline.two_way import TwoWaySpec, load_two_way_spec
from syncline.two_way_endpoints import open_endpoints
from syncline.two_way_summary import TwoWaySummary
from syncline.two_way_sync import finish_two_way_run, run_two_way
from tests.connectors.test_jira_support import (
    API_TOKEN,
    EMAIL,
    SITE_URL,
    CheckedTransport,
    load_contract,
)

pytestmark = pytest.mark.filterwarnings("ignore:Unsupported scheme type:UserWarning")

SPEC = f"""\
name: incidents-issues
two_way: true
a:
  connector: servicenow
  object: incident
  connection:
    instance_url: https://acme.service-now.com
  credentials:
    username: {{env: SN_USER}}
    password: {{env: SN_PASSWORD}}
  key: sys_id
  fields: [sys_id, short_description, state, correlation_id, sys_updated_on]
  cursor: {{field: sys_updated_on}}
b:
  connector: jira
  object: OPS
  connection:
    base_url: {SITE_URL}
    email: {EMAIL}
    time_zone: America/Los_Angeles
    index_lag_seconds: 0
  credentials:
    api_token: {{env: JIRA_API_TOKEN}}
  key: key
  fields: [key, summary, status, correlation_id, updated]
  cursor: {{field: updated}}
fields:
  title: {{a: short_description, b: summary, direction: both, conflict: a_wins}}
  state:
    a: state
    b: status
    direction: both
    conflict: b_wins
    map_a_to_b: {{"1": To Do, "2": In Progress}}
correlation: {{a: correlation_id, b: correlation_id}}
"""


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.servicenow = ServiceNowSandbox(
            ServiceNowSandboxConfig(cmdb_ci_server=0, incident=0, sys_user=3, seed=7)
        )
        # A running clock: the engine's read windows end at the real time.
        self.jira = JiraSandbox(JiraSandboxConfig(issues=0, time_zone="America/Los_Angeles"))
        self.jira_transport = CheckedTransport(self.jira.app, load_contract())
        self.ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
        path = tmp_path / "incidents_issues.yaml"
        path.write_text(SPEC)
        self.spec: TwoWaySpec = load_two_way_spec(path, environ={})

    def factory(self) -> ConnectorFactory:
        return ConnectorFactory(
            environ={"SN_USER": "admin", "SN_PASSWORD": "sandbox", "JIRA_API_TOKEN": API_TOKEN},
            transports={
                "servicenow": httpx.ASGITransport(app=self.servicenow.app),
                "jira": self.jira_transport,
            },
        )

    def run(self) -> TwoWaySummary:
        async def go() -> TwoWaySummary:
            a, b = open_endpoints(self.spec, self.factory())
            try:
                return await run_two_way(
                    self.spec,
                    a,
                    b,
                    self.ledger,
                    now=lambda: datetime.now(UTC) + timedelta(seconds=2),
                )
            finally:
                await a.aclose()
                await b.aclose()

        summary = asyncio.run(go())
        finish_two_way_run(self.ledger, self.spec, summary)
        return summary

    def servicenow_api(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            transport = httpx.ASGITransport(app=self.servicenow.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="https://acme.service-now.com"
            ) as client:
                answer = await client.request(method, path, json=body, auth=("admin", "sandbox"))
                answer.raise_for_status()
                result: dict[str, Any] = answer.json()["result"]
                return result

        return asyncio.run(go())

    def incident(self, sys_id: str) -> dict[str, Any]:
        return next(r for r in self.servicenow.records("incident") if r["sys_id"] == sys_id)

    def jira_api(self, method: str, path: str, body: dict[str, Any]) -> None:
        async def go() -> None:
            transport = httpx.ASGITransport(app=self.jira.app)
            async with httpx.AsyncClient(transport=transport, base_url=SITE_URL) as client:
                answer = await client.request(method, path, json=body, auth=(EMAIL, API_TOKEN))
                answer.raise_for_status()

        asyncio.run(go())


def test_an_incident_opens_one_issue_and_a_jira_change_comes_back(tmp_path: Path) -> None:
    world = World(tmp_path)
    sys_id = str(
        world.servicenow_api(
            "POST", "/api/now/table/incident", {"short_description": "Disk full", "state": "1"}
        )["sys_id"]
    )
    first = world.run()
    assert first.b.created == 1 and first.dead_lettered == 0
    assert world.jira.keys() == ["OPS-1"]
    issue = world.jira.issue("OPS-1")
    assert issue["fields"]["summary"] == "Disk full"
    assert issue["fields"]["status"]["name"] == "To Do"
    assert issue["properties"]["syncline"] == {"correlationId": sys_id}
    assert f"syncline-{sys_id}" in issue["fields"]["labels"]
    assert world.incident(sys_id)["correlation_id"] == "OPS-1"

    quiet = world.run()  # both sides read back Syncline's own writes
    assert (quiet.a.created, quiet.a.updated, quiet.b.created, quiet.b.updated) == (0, 0, 0, 0)
    assert quiet.dead_lettered == 0

    world.jira_api("POST", "/rest/api/3/issue/OPS-1/transitions", {"transition": {"id": "21"}})
    world.jira_api("PUT", "/rest/api/3/issue/OPS-1", {"fields": {"summary": "Disk full, web-01"}})
    third = world.run()
    assert third.a.updated == 1 and third.b.updated == 0 and third.dead_lettered == 0
    incident = world.incident(sys_id)
    assert incident["state"] == "2" and incident["short_description"] == "Disk full, web-01"
    assert world.jira.keys() == ["OPS-1"]
    world.jira.close()
