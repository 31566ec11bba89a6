"""Read faults: glitched pages, ACL-hidden rows, foreign Link URLs and garbage bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from sandboxes.core.faults import FaultConfig, is_hidden
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from sandboxes.servicenow.admin import build_app

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = ServiceNowSandboxConfig(cmdb_ci_server=400, incident=20, sys_user=30, seed=7)
SERVERS = "/api/now/table/cmdb_ci_server"
PAGE = {"sysparm_limit": 50, "sysparm_query": "ORDERBYsys_id", "sysparm_fields": "sys_id"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sandbox() -> ServiceNowSandbox:
    return ServiceNowSandbox(CONFIG, now=NOW)


@pytest.fixture
async def api(sandbox: ServiceNowSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sandbox.app),
        base_url="https://sandbox.service-now.com",
        auth=("admin", "sandbox"),
    ) as client:
        yield client


def ids(response: httpx.Response) -> list[str]:
    return [record["sys_id"] for record in response.json()["result"]]


async def page(api: httpx.AsyncClient, **params: Any) -> httpx.Response:
    response = await api.get(SERVERS, params=PAGE | params)
    assert response.status_code == 200, response.text
    return response


@pytest.mark.anyio
async def test_every_nth_list_request_gets_an_empty_or_short_page_with_full_headers(
    sandbox: ServiceNowSandbox, api: httpx.AsyncClient
) -> None:
    full = await page(api, sysparm_offset=100)
    sandbox.faults = FaultConfig(empty_page_every=3, short_page_every=2)
    responses = [await page(api, sysparm_offset=100) for _ in range(6)]
    sizes = [len(ids(response)) for response in responses]
    # 2 and 4 are short, 3 empty, 6 both (empty wins); 1 and 5 are whole.
    assert sizes == [50, 25, 0, 25, 50, 0]
    assert ids(responses[1]) == ids(full)[:25]
    for response in responses:
        assert response.headers["x-total-count"] == full.headers["x-total-count"] == "400"
        assert response.headers["link"] == full.headers["link"]
    # Single-record reads do not count as list requests.
    sandbox.faults = FaultConfig(empty_page_every=2)
    await api.get(f"{SERVERS}/{ids(full)[0]}")
    assert len(ids(await page(api))) == 50
    assert ids(await page(api)) == []


@pytest.mark.anyio
async def test_hidden_records_leave_pages_short_but_are_counted(
    sandbox: ServiceNowSandbox, api: httpx.AsyncClient
) -> None:
    everything = [record["sys_id"] for record in sandbox.records("cmdb_ci_server")]
    sandbox.faults.hidden_fraction = 0.2
    hidden = {sys_id for sys_id in everything if sandbox.is_hidden(sys_id)}
    assert 40 < len(hidden) < 120
    seen: list[str] = []
    for offset in range(0, 400, 50):
        response = await page(api, sysparm_offset=offset)
        assert response.headers["x-total-count"] == "400"
        assert ids(response) == [s for s in everything[offset : offset + 50] if s not in hidden]
        seen.extend(ids(response))
    assert set(seen) == set(everything) - hidden

    hidden_id, visible_id = sorted(hidden)[0], next(s for s in everything if s not in hidden)
    missing = await api.get(f"{SERVERS}/{hidden_id}")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "No Record found"
    assert (await api.get(f"{SERVERS}/{visible_id}")).status_code == 200
    assert sandbox.get("cmdb_ci_server", hidden_id) is not None  # the Python API sees all

    # The hidden set depends only on the sys_id, and a larger fraction hides a superset.
    assert all(is_hidden(sys_id, 0.5) for sys_id in hidden)
    assert not any(is_hidden(sys_id, 0.0) for sys_id in everything)
    assert all(is_hidden(sys_id, 1.0) for sys_id in everything)
    sandbox.faults.hidden_fraction = 0.0
    assert len(ids(await page(api))) == 50


@pytest.mark.anyio
async def test_link_urls_can_point_at_a_foreign_origin(
    sandbox: ServiceNowSandbox, api: httpx.AsyncClient
) -> None:
    sandbox.faults.foreign_link_host = "http://127.0.0.1:9999/"
    response = await page(api, sysparm_offset=50)
    links = response.links
    assert set(links) == {"first", "prev", "next", "last"}
    for link in links.values():
        url = httpx.URL(link["url"])
        assert (url.scheme, url.host, url.port) == ("http", "127.0.0.1", 9999)
        assert url.path == SERVERS
        assert url.params["sysparm_query"] == "ORDERBYsys_id"
    assert httpx.URL(links["next"]["url"]).params["sysparm_offset"] == "100"
    with pytest.raises(ValueError, match="pattern"):
        sandbox.faults.foreign_link_host = "127.0.0.1:9999/path"


@pytest.mark.anyio
async def test_garbage_bodies_answer_200(
    sandbox: ServiceNowSandbox, api: httpx.AsyncClient
) -> None:
    sandbox.faults = FaultConfig(garbage_every=2)  # html by default
    assert (await page(api)).headers["content-type"].startswith("application/json")
    login = await page(api)
    assert login.headers["content-type"].startswith("text/html")
    assert login.text.startswith("<!DOCTYPE html>")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(login.content)
    incidents = sandbox.count("incident")
    await api.post("/api/now/table/incident", json={"short_description": "one"})
    proxied = await api.post("/api/now/table/incident", json={"short_description": "two"})
    assert proxied.status_code == 200
    assert proxied.headers["content-type"].startswith("text/html")
    assert sandbox.count("incident") == incidents + 1  # the proxied request never arrived

    sandbox.faults = FaultConfig(garbage_every=2, garbage_kind="truncated")
    whole = await page(api)
    cut = await page(api)
    assert cut.status_code == 200
    assert cut.headers["content-type"].startswith("application/json")
    assert cut.headers["x-total-count"] == "400"
    assert 0 < len(cut.content) < len(whole.content)
    assert whole.content.startswith(cut.content)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(cut.content)
    await api.get(f"{SERVERS}/{ids(whole)[0]}")
    written = await api.post("/api/now/table/incident", json={"short_description": "three"})
    assert written.status_code == 200  # not 201: the body was cut, but the write happened
    assert sandbox.count("incident") == incidents + 2

    sandbox.faults = FaultConfig(garbage_every=1, garbage_kind="empty")
    empty = await api.get(f"{SERVERS}/{'0' * 32}")  # a 404 becomes an empty 200 too
    assert (empty.status_code, empty.content) == (200, b"")
    assert empty.headers["content-type"].startswith("application/json")


@pytest.mark.anyio
async def test_faults_are_off_by_default_and_replaced_through_the_admin_route(
    sandbox: ServiceNowSandbox,
) -> None:
    defaults = FaultConfig().model_dump()
    assert defaults["empty_page_every"] is None
    assert defaults["short_page_every"] is None
    assert defaults["hidden_fraction"] == 0.0
    assert defaults["foreign_link_host"] is None
    assert defaults["garbage_every"] is None
    with pytest.raises(ValueError, match="less than or equal"):
        sandbox.faults.hidden_fraction = 1.5
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(sandbox)), base_url="http://127.0.0.1:8701"
    ) as admin:
        for _ in range(3):  # counted before the new configuration
            await admin.get(SERVERS, params=PAGE, auth=("admin", "sandbox"))
        settings = {"short_page_every": 2, "hidden_fraction": 0.1, "garbage_kind": "empty"}
        answer = await admin.put("/sandbox/servicenow/faults", json=settings)
        assert answer.status_code == 200
        assert {key: answer.json()[key] for key in settings} == settings
        assert sandbox.faults.hidden_fraction == 0.1
        first = await admin.get(SERVERS, params=PAGE, auth=("admin", "sandbox"))
        second = await admin.get(SERVERS, params=PAGE, auth=("admin", "sandbox"))
        assert len(ids(second)) == len(ids(first)) // 2
        invalid = await admin.put("/sandbox/servicenow/faults", json={"garbage_kind": "xml"})
        assert invalid.status_code == 422
