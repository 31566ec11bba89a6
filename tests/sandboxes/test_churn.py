"""Background churn: realistic changes, creations, retirements and deletions from a thread,
deterministic by seed, bounded, stopped cleanly, and atomic for readers."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pydantic
import pytest

from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from sandboxes.servicenow.admin import build_app
from sandboxes.servicenow.churn import ChurnConfig, new_ci_fields

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
NOW_TEXT = "2025-06-01 12:00:00"
CONFIG = ServiceNowSandboxConfig(cmdb_ci_server=1_000, incident=40, sys_user=50, seed=9)
TABLE = "cmdb_ci_server"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def churn_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("sandbox-churn")]


@pytest.fixture
def sandbox() -> Iterator[ServiceNowSandbox]:
    instance = ServiceNowSandbox(CONFIG, now=NOW)
    yield instance
    instance.stop_churn()
    assert not churn_threads()


def test_churn_changes_creates_retires_and_deletes_until_stopped(
    sandbox: ServiceNowSandbox,
) -> None:
    before = {record["sys_id"]: record for record in sandbox.records(TABLE)}
    sandbox.start_churn(
        changes_per_second=400,
        creates_per_second=40,
        retires_per_second=40,
        deletes_per_second=40,
        duration_seconds=30,
    )
    assert sandbox.churn_report().running
    time.sleep(0.4)
    report = sandbox.stop_churn()
    assert not report.running
    assert not churn_threads()
    assert report.error is None
    assert report.changed >= 40
    assert min(report.created, report.retired, report.deleted) >= 4
    assert report.changed >= len(report.changed_ids)
    assert (len(report.created_ids), len(report.retired_ids), len(report.deleted_ids)) == (
        report.created,
        report.retired,
        report.deleted,
    )
    deleted = set(report.deleted_ids)
    assert sandbox.count(TABLE) == len(before) + report.created - report.deleted
    for sys_id in set(report.changed_ids) - deleted:
        record = sandbox.get(TABLE, sys_id)
        assert record is not None
        assert record["sys_updated_on"] == NOW_TEXT
        if sys_id in before:
            assert int(record["sys_mod_count"]) > int(before[sys_id]["sys_mod_count"])
    for sys_id in set(report.retired_ids) - deleted:
        record = sandbox.get(TABLE, sys_id)
        assert record is not None
        assert (record["install_status"], record["operational_status"]) == ("7", "6")
    for sys_id in set(report.created_ids) - deleted:
        record = sandbox.get(TABLE, sys_id)
        assert record is not None
        assert record["sys_created_on"] == NOW_TEXT
        assert record["sys_class_name"].startswith("cmdb_ci_")
        assert record.keys() == next(iter(before.values())).keys()
    for sys_id in deleted:
        assert sandbox.get(TABLE, sys_id) is None
    # Stopped means stopped: nothing changes afterwards.
    after = sandbox.records(TABLE)
    time.sleep(0.15)
    assert sandbox.records(TABLE) == after
    assert sandbox.stop_churn() == report  # stopping again reports the same


def test_churn_is_deterministic_by_seed() -> None:
    def run(seed: int) -> tuple[object, list[dict[str, str]]]:
        instance = ServiceNowSandbox(CONFIG, now=NOW)
        instance.start_churn(
            changes_per_second=5_000,
            creates_per_second=500,
            retires_per_second=500,
            deletes_per_second=500,
            max_changes=600,
            seed=seed,
        )
        report = instance.wait_for_churn(timeout=10)
        assert not report.running
        assert report.changed + report.created + report.retired + report.deleted == 600
        return report.model_dump(), instance.records(TABLE)

    first, again, other = run(1), run(1), run(2)
    assert first == again
    assert first[0] != other[0]


def test_churn_always_ends_by_itself(sandbox: ServiceNowSandbox) -> None:
    started = time.monotonic()
    sandbox.start_churn(changes_per_second=100, duration_seconds=0.3)
    report = sandbox.wait_for_churn(timeout=5)
    assert not report.running
    assert time.monotonic() - started < 5
    assert report.changed == 30  # 100 a second for 0.3 seconds
    sandbox.start_churn(changes_per_second=5_000, max_changes=25)
    assert sandbox.wait_for_churn(timeout=5).changed == 25
    for unbounded in ({"duration_seconds": 0}, {"duration_seconds": 3_601}):
        with pytest.raises(pydantic.ValidationError):
            ChurnConfig.model_validate(unbounded)


def test_one_churn_at_a_time_and_checked_against_the_table(sandbox: ServiceNowSandbox) -> None:
    sandbox.start_churn(ChurnConfig(changes_per_second=10, duration_seconds=10))
    with pytest.raises(RuntimeError, match="already running"):
        sandbox.start_churn(changes_per_second=10)
    sandbox.stop_churn()
    with pytest.raises(ValueError, match="Invalid table"):
        sandbox.start_churn(table="no such table")
    with pytest.raises(ValueError, match="not a CMDB table"):
        sandbox.start_churn(table="incident", creates_per_second=1)
    sandbox.start_churn(table="incident", changes_per_second=2_000, max_changes=30)
    report = sandbox.wait_for_churn(timeout=5)
    assert (report.table, report.changed) == ("incident", 30)


def test_a_reader_holding_the_lock_sees_no_churn(sandbox: ServiceNowSandbox) -> None:
    sandbox.start_churn(changes_per_second=2_000, deletes_per_second=100, duration_seconds=10)
    time.sleep(0.1)
    with sandbox.locked():
        snapshot = sandbox.records(TABLE)
        time.sleep(0.2)
        assert sandbox.records(TABLE) == snapshot
    time.sleep(0.2)
    assert sandbox.records(TABLE) != snapshot


def test_a_keyset_read_during_churn_sees_every_record_that_stays(
    sandbox: ServiceNowSandbox,
) -> None:
    """Changed records move to the end of the (sys_updated_on, sys_id) order, past the
    reader, so a keyset read that starts before the churn meets every record not deleted."""
    present_at_start = set(sandbox.sys_ids(TABLE))
    sandbox.start_churn(changes_per_second=3_000, deletes_per_second=50, duration_seconds=10)
    seen: set[str] = set()
    cursor: tuple[str, str] | None = None
    while True:
        query = "install_status!=7"
        if cursor is not None:
            query += f"^sys_updated_on>={cursor[0]}^sys_updated_on>{cursor[0]}^ORsys_id>{cursor[1]}"
        query += "^ORDERBYsys_updated_on^ORDERBYsys_id"
        with sandbox.locked():
            rows, start = sandbox._select_from(TABLE, query)
            page = [dict(row) for row in rows[start : start + 20]]
        seen.update(row["sys_id"] for row in page)
        if len(page) < 20:
            break
        cursor = page[-1]["sys_updated_on"], page[-1]["sys_id"]
        time.sleep(0.002)
    report = sandbox.stop_churn()
    assert report.changed > 100
    retired_at_start = {r["sys_id"] for r in sandbox.records(TABLE) if r["install_status"] == "7"}
    assert present_at_start - set(report.deleted_ids) - retired_at_start <= seen


def test_new_cis_copy_their_template_with_their_own_identity() -> None:
    template = {
        "sys_id": "a" * 32,
        "sys_updated_on": "2024-01-01 00:00:00",
        "sys_class_name": "cmdb_ci_linux_server",
        "name": "lnx-web-00042",
        "host_name": "lnx-web-00042",
        "fqdn": "lnx-web-00042.zrh.corp.example.com",
        "ip_address": "10.10.0.44",
        "mac_address": "00:50:56:00:00:01",
        "serial_number": "VMware-42",
        "asset_tag": "",
        "virtual": "true",
        "install_status": "7",
        "operational_status": "6",
        "first_discovered": "2023-01-01 00:00:00",
        "install_date": "2023-01-01 00:00:00",
        "os": "Linux Red Hat",
    }
    fields = new_ci_fields(template, 1_001, random.Random(0), NOW_TEXT)
    assert "sys_id" not in fields
    assert "sys_updated_on" not in fields
    assert fields["sys_class_name"] == "cmdb_ci_linux_server"
    assert fields["name"] == fields["host_name"] == "lnx-web-01001"
    assert fields["fqdn"] == "lnx-web-01001.zrh.corp.example.com"
    assert fields["ip_address"] == "10.250.4.3"
    assert fields["mac_address"].startswith("00:50:56:")
    assert fields["serial_number"] != template["serial_number"]
    assert fields["asset_tag"] == ""
    assert (fields["install_status"], fields["operational_status"]) == ("1", "1")
    assert fields["first_discovered"] == fields["install_date"] == NOW_TEXT
    assert fields["os"] == "Linux Red Hat"


@pytest.mark.anyio
async def test_churn_admin_routes(sandbox: ServiceNowSandbox) -> None:
    app = build_app(sandbox)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8701"
    ) as admin:
        idle = await admin.get("/sandbox/servicenow/churn")
        assert idle.json()["running"] is False
        settings = {"changes_per_second": 500, "creates_per_second": 50, "duration_seconds": 20}
        started = await admin.put("/sandbox/servicenow/churn", json=settings)
        assert started.status_code == 202
        assert started.json()["running"] is True
        assert started.json()["table"] == TABLE
        again = await admin.put("/sandbox/servicenow/churn", json=settings)
        assert again.status_code == 409
        time.sleep(0.2)
        assert (await admin.get("/sandbox/servicenow/churn")).json()["changed"] > 0
        stopped = await admin.delete("/sandbox/servicenow/churn")
        assert stopped.status_code == 200
        body = stopped.json()
        assert body["running"] is False
        assert body["changed"] > 0
        assert len(body["created_ids"]) == body["created"]
        assert not churn_threads()
        bad = await admin.put("/sandbox/servicenow/churn", json={"changes_per_second": -1})
        assert bad.status_code == 422
        unknown = await admin.put("/sandbox/servicenow/churn", json={"surprise": 1})
        assert unknown.status_code == 422
        wrong_table = await admin.put(
            "/sandbox/servicenow/churn", json={"table": "sys_user", "retires_per_second": 1}
        )
        assert wrong_table.status_code == 400
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("192.0.2.10", 40000)),
        base_url="http://sandbox.example",
    ) as remote:
        assert (await remote.delete("/sandbox/servicenow/churn")).status_code == 403
