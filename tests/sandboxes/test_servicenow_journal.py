"""Incident journal fields in the ServiceNow sandbox: ``work_notes`` and ``comments`` written
through the Table API append rows to ``sys_journal_field``, read back empty on the incident,
update the incident, and the journal table itself refuses Table API writes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig

INSTANCE = "https://sandbox.service-now.com"
NOW = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
CONFIG = ServiceNowSandboxConfig(cmdb_ci_server=0, incident=5, sys_user=5, seed=3)
SYS_ID = re.compile(r"[0-9a-f]{32}")
TABLE = "/api/now/table"


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
        base_url=INSTANCE,
        auth=("admin", "sandbox"),
        headers={"Accept": "application/json"},
    ) as client:
        yield client


async def create_incident(api: httpx.AsyncClient, **fields: str) -> dict[str, Any]:
    response = await api.post(f"{TABLE}/incident", json={"short_description": "Disk full"} | fields)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


async def journal(api: httpx.AsyncClient, sys_id: str, element: str) -> list[dict[str, Any]]:
    response = await api.get(
        f"{TABLE}/sys_journal_field",
        params={
            "sysparm_query": f"element_id={sys_id}^element={element}^ORDERBYsys_created_on",
            "sysparm_fields": "sys_id,element,element_id,name,value,sys_created_on,sys_created_by",
        },
    )
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["result"]
    return rows


@pytest.mark.anyio
async def test_work_notes_written_on_create_and_patch_become_journal_rows(
    api: httpx.AsyncClient, sandbox: ServiceNowSandbox
) -> None:
    created = await create_incident(api, work_notes="Paged the storage team")
    sys_id = created["sys_id"]
    assert created["work_notes"] == ""
    assert created["sys_mod_count"] == "0"

    sandbox.advance(60)
    response = await api.patch(
        f"{TABLE}/incident/{sys_id}",
        json={"work_notes": "Volume extended by 50 GB", "comments": "We are on it"},
    )
    assert response.status_code == 200
    patched = response.json()["result"]
    assert (patched["work_notes"], patched["comments"]) == ("", "")
    assert patched["sys_mod_count"] == "1"
    assert patched["sys_updated_on"] == "2026-03-02 09:01:00"

    notes = await journal(api, sys_id, "work_notes")
    assert [row["value"] for row in notes] == ["Paged the storage team", "Volume extended by 50 GB"]
    assert [row["sys_created_on"] for row in notes] == [
        "2026-03-02 09:00:00",
        "2026-03-02 09:01:00",
    ]
    for row in notes:
        assert SYS_ID.fullmatch(row["sys_id"])
        assert (row["element"], row["element_id"], row["name"]) == (
            "work_notes",
            sys_id,
            "incident",
        )
        assert row["sys_created_by"] == "admin"
    comments = await journal(api, sys_id, "comments")
    assert [row["value"] for row in comments] == ["We are on it"]

    read = (await api.get(f"{TABLE}/incident/{sys_id}")).json()["result"]
    assert (read["work_notes"], read["comments"]) == ("", "")
    shown = await api.get(f"{TABLE}/incident/{sys_id}", params={"sysparm_display_value": "true"})
    assert shown.json()["result"]["work_notes"] == ""


@pytest.mark.anyio
async def test_journal_reads_with_in_and_time_queries_and_pages(
    api: httpx.AsyncClient, sandbox: ServiceNowSandbox
) -> None:
    first = (await create_incident(api))["sys_id"]
    second = (await create_incident(api))["sys_id"]
    for minute in range(3):
        sandbox.advance(60)
        for sys_id in (first, second):
            await api.put(f"{TABLE}/incident/{sys_id}", json={"work_notes": f"note {minute}"})

    both = await api.get(
        f"{TABLE}/sys_journal_field",
        params={
            "sysparm_query": (
                f"element_idIN{first},{second}^sys_created_on>=2026-03-02 09:02:00"
                "^ORDERBYsys_created_on"
            ),
            "sysparm_limit": "2",
        },
    )
    assert both.status_code == 200
    assert both.headers["X-Total-Count"] == "4"
    assert 'rel="next"' in both.headers["Link"]
    assert [row["value"] for row in both.json()["result"]] == ["note 1", "note 1"]


@pytest.mark.anyio
async def test_an_empty_note_appends_nothing(
    api: httpx.AsyncClient, sandbox: ServiceNowSandbox
) -> None:
    sys_id = (await create_incident(api, work_notes=""))["sys_id"]
    await api.patch(f"{TABLE}/incident/{sys_id}", json={"work_notes": "", "urgency": "1"})
    assert await journal(api, sys_id, "work_notes") == []
    assert sandbox.count("sys_journal_field") == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("POST", "", "Insert"),
        ("PATCH", "/{sys_id}", "Update"),
        ("PUT", "/{sys_id}", "Update"),
        ("DELETE", "/{sys_id}", "Delete"),
    ],
)
async def test_the_journal_table_refuses_direct_writes(
    api: httpx.AsyncClient, sandbox: ServiceNowSandbox, method: str, path: str, operation: str
) -> None:
    incident = (await create_incident(api, work_notes="Original"))["sys_id"]
    (row,) = await journal(api, incident, "work_notes")
    body = None if method == "DELETE" else {"value": "Rewritten", "element_id": incident}
    response = await api.request(
        method, f"{TABLE}/sys_journal_field" + path.format(sys_id=row["sys_id"]), json=body
    )
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "message": "Operation Failed",
            "detail": f"ACL Exception {operation} Failed due to security constraints",
        },
        "status": "failure",
    }
    assert [r["value"] for r in await journal(api, incident, "work_notes")] == ["Original"]


@pytest.mark.anyio
async def test_the_python_api_journals_too_but_a_ci_comment_is_plain_text(
    sandbox: ServiceNowSandbox,
) -> None:
    incident = sandbox.insert("incident", {"short_description": "VPN down"})
    updated = sandbox.update("incident", incident["sys_id"], {"comments": "Restarted the VPN"})
    assert updated["comments"] == ""
    assert updated["sys_mod_count"] == "1"
    (row,) = sandbox.records("sys_journal_field")
    assert (row["element"], row["value"], row["sys_created_by"]) == (
        "comments",
        "Restarted the VPN",
        "system",
    )
    server = sandbox.insert("cmdb_ci_server", {"name": "db01", "comments": "rack 4"})
    assert server["comments"] == "rack 4"
    assert sandbox.count("sys_journal_field") == 1


@pytest.mark.anyio
async def test_save_and_load_keep_the_journal(
    api: httpx.AsyncClient, sandbox: ServiceNowSandbox, tmp_path: Path
) -> None:
    sys_id = (await create_incident(api, work_notes="Saved with the world"))["sys_id"]
    path = tmp_path / "state.json"
    sandbox.save(path)
    other = ServiceNowSandbox(CONFIG, now=NOW)
    other.load(path)
    (row,) = other.records("sys_journal_field")
    assert (row["element_id"], row["value"]) == (sys_id, "Saved with the world")
    other.update("incident", sys_id, {"work_notes": "After the load"})
    assert other.count("sys_journal_field") == 2
