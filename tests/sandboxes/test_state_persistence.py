"""A sandbox's world saved to a file and loaded by another sandbox, as ``make up`` and the demo
share one; and ``syncline sandbox --state`` wiring it to the server's start and exit."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig

NOW = datetime(2026, 3, 4, 12, 0, 0, tzinfo=UTC)
SMALL = ServiceNowSandboxConfig(cmdb_ci_server=300, incident=40, sys_user=50, seed=3)
EMPTY = ServiceNowSandboxConfig(cmdb_ci_server=0, incident=0, sys_user=0, seed=9)


def test_a_loaded_world_is_the_saved_one(tmp_path: Path) -> None:
    original = ServiceNowSandbox(SMALL, now=NOW)
    original.insert("u_custom_table", {"u_colour": "blue"})  # a table the sandbox created
    original.insert("cmdb_ci_linux_server", {"name": "added", "u_rack": "R1"})  # a new field
    incident = original.insert("incident", {"short_description": "x", "impact": "1"})
    path = tmp_path / "world.json"
    original.save(path)

    loaded = ServiceNowSandbox(EMPTY, now=NOW)
    loaded.load(path)
    for table in (
        "cmdb_ci_server",
        "cmdb_ci_linux_server",
        "incident",
        "sys_user",
        "u_custom_table",
    ):
        assert loaded.records(table) == original.records(table), table
    assert loaded.get("incident", incident["sys_id"]) == incident
    # Numbering and the added field carry on where the saved world stopped.
    following = loaded.insert("incident", {"short_description": "y"})
    assert int(following["number"][3:]) == int(incident["number"][3:]) + 1
    assert loaded.records("cmdb_ci_linux_server")[0].get("u_rack") is not None
    assert loaded.count("cmdb_ci_server") == original.count("cmdb_ci_server")


def test_queries_after_a_load_see_the_loaded_records(tmp_path: Path) -> None:
    original = ServiceNowSandbox(SMALL, now=NOW)
    path = tmp_path / "world.json"
    original.save(path)
    other = ServiceNowSandbox(ServiceNowSandboxConfig(cmdb_ci_server=10, seed=1), now=NOW)
    before = other._select("cmdb_ci_server", "ORDERBYname")  # cached, then replaced by load
    other.load(path)
    after = other._select("cmdb_ci_server", "ORDERBYname")
    assert len(before) == 10
    assert after == original._select("cmdb_ci_server", "ORDERBYname")


def test_fifty_thousand_cis_save_and_load_in_a_couple_of_seconds(tmp_path: Path) -> None:
    sandbox = ServiceNowSandbox(ServiceNowSandboxConfig(cmdb_ci_server=50_000), now=NOW)
    path = tmp_path / "world.json"
    started = time.perf_counter()
    sandbox.save(path)
    saved = time.perf_counter()
    loaded = ServiceNowSandbox(EMPTY, now=NOW)
    load_started = time.perf_counter()
    loaded.load(path)
    finished = time.perf_counter()
    assert loaded.count("cmdb_ci_server") == 50_000
    assert saved - started < 2.0
    assert finished - load_started < 2.0


def test_a_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"format": 99}')
    sandbox = ServiceNowSandbox(EMPTY, now=NOW)
    with pytest.raises(ValueError, match="not a saved ServiceNow sandbox"):
        sandbox.load(path)
