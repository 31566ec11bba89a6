"""The Jira sandbox's admin routes: seeding, reset, a skewed clock, faults, the site's
settings, saved state, and the loopback guard; and the declaration it is built from."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from sandboxes.core.server import BackgroundServer
from sandboxes.jira import JiraSandbox, JiraSandboxConfig
from sandboxes.jira.admin import build_app

AUTH = ("integration@example.com", "sandbox-api-token")
START = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def served() -> Iterator[tuple[JiraSandbox, httpx.Client]]:
    sandbox = JiraSandbox(JiraSandboxConfig(issues=3, seed=11), now=START)
    with (
        BackgroundServer(build_app(sandbox)) as server,
        httpx.Client(base_url=server.url, auth=AUTH) as client,
    ):
        yield sandbox, client
    sandbox.close()


def test_seed_reset_and_a_skewed_clock(served: tuple[JiraSandbox, httpx.Client]) -> None:
    sandbox, client = served
    assert sandbox.keys() == ["OPS-1", "OPS-2", "OPS-3"]
    seeded = client.post("/sandbox/jira/seed", json={"count": 2, "seed": 5})
    assert seeded.status_code == 201 and seeded.json()["keys"] == ["OPS-4", "OPS-5"]
    assert client.post("/sandbox/jira/reset").json() == {"issues": 0}
    assert sandbox.keys() == []
    clock = client.post("/sandbox/jira/clock", json={"now": "2026-03-10T12:00:00Z"}).json()
    assert clock["frozen"] is True
    skewed = client.post("/sandbox/jira/clock", json={"offset_seconds": -3600}).json()
    assert skewed["frozen"] is False and skewed["offset_seconds"] == -3600
    body = {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Bug"}, "summary": "late"}}
    key = client.post("/rest/api/3/issue", json=body).json()["key"]
    assert key == "OPS-1"  # keys start again after a reset
    created = datetime.strptime(sandbox.issue(key)["fields"]["created"], "%Y-%m-%dT%H:%M:%S.%f%z")
    behind = (datetime.now(UTC) - created).total_seconds()
    assert 3590 <= behind <= 3610


def test_faults_settings_and_stats(served: tuple[JiraSandbox, httpx.Client]) -> None:
    _, client = served
    assert client.put("/sandbox/jira/faults", json={"rate_limit_every": 1}).status_code == 200
    assert client.get("/rest/api/3/myself").status_code == 429
    client.put("/sandbox/jira/faults", json={})
    settings = client.put(
        "/sandbox/jira/settings", json={"time_zone": "Asia/Tokyo", "rate_limit_reason": "r"}
    )
    assert settings.json()["time_zone"] == "Asia/Tokyo"
    issue = client.get("/rest/api/3/issue/OPS-1", params={"fields": "created"}).json()
    assert issue["fields"]["created"].endswith("+0900")
    bad = client.put("/sandbox/jira/settings", json={"time_zone": "Mars/Olympus"})
    assert bad.status_code == 422
    assert client.put("/sandbox/jira/rate-limit", json={"per_second": 5}).json() == {
        "per_second": 5
    }
    stats = client.get("/sandbox/jira/stats").json()
    assert stats["rate_limited"] == 1 and stats["responses_by_status"]["200"] >= 1


def test_state_is_saved_and_loaded(
    served: tuple[JiraSandbox, httpx.Client], tmp_path: Path
) -> None:
    sandbox, client = served
    client.put("/rest/api/3/issue/OPS-2/properties/syncline", json={"id": 7})
    client.post(
        "/rest/api/3/issue/OPS-2/comment",
        json={"body": {"type": "doc", "version": 1, "content": []}},
    )
    before = sandbox.issue("OPS-2")
    path = tmp_path / "jira.json"
    assert client.post("/sandbox/jira/save", json={"path": str(path)}).json()["issues"] == 3
    client.post("/sandbox/jira/reset")
    assert client.post("/sandbox/jira/load", json={"path": str(path)}).json()["issues"] == 3
    assert sandbox.issue("OPS-2") == before
    other = JiraSandbox(JiraSandboxConfig(issues=0))
    other.load(path)
    assert other.issue("OPS-2")["properties"] == {"syncline": {"id": 7}}
    body = {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Bug"}, "summary": "x"}}
    created = other.store.create(body, other.config.account_id)
    assert created.key == "OPS-4"  # the counters were saved too
    missing = client.post("/sandbox/jira/load", json={"path": str(tmp_path / "none.json")})
    assert missing.status_code == 400


def test_admin_routes_answer_loopback_clients_only() -> None:
    sandbox = JiraSandbox(JiraSandboxConfig(issues=0))
    transport = httpx.ASGITransport(app=build_app(sandbox), client=("10.1.2.3", 4000))

    async def call() -> int:
        async with httpx.AsyncClient(transport=transport, base_url="http://jira") as client:
            return (await client.post("/sandbox/jira/reset")).status_code

    assert asyncio.run(call()) == 403


def test_the_declaration_builds_the_api_and_the_admin_routes() -> None:
    sandbox = JiraSandbox(JiraSandboxConfig(issues=0))
    declaration = sandbox.declaration
    assert declaration.name == "jira" and declaration.admin_prefix == "/sandbox/jira"
    paths = {route.path for route in declaration.routes}
    assert {"/rest/api/3/issue", "/rest/api/3/search/jql", "/rest/api/3/search"} <= paths
    admin = {getattr(route, "path", "") for route in declaration.admin_routes()}
    assert {"/sandbox/jira/faults", "/sandbox/jira/webhooks/deliveries"} <= admin
