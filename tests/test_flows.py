"""End to end: the CMDB sync flow on a real Prefect server, against the ServiceNow sandbox.

The sandbox serves over loopback, the reporting database is real SQLite or PostgreSQL, and
every assertion is about the end state: rows in the reporting table, the ledger, the flow run.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prefect.artifacts import Artifact
from prefect.client.schemas.objects import FlowRun
from prefect.states import State

from connectors.sql import make_engine
from flows.replay import replay
from flows.scheduled_sync import scheduled_sync
from sandboxes.core.server import BackgroundServer
from sandboxes.servicenow import ServiceNowSandbox
from syncline.state import Ledger
from syncline.sync import SyncSummary
from tests.conftest import ROOT, SPECS_DIR

pytestmark = pytest.mark.prefect
INTEGRATION = "cmdb-nightly"


@pytest.fixture
def environment(
    prefect_server: str,
    sandbox_server: BackgroundServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """The settings a deployment's worker would have, pointing at this test's systems."""
    values = {
        "SYNCLINE_SERVICENOW_URL": sandbox_server.url,
        "SYNCLINE_SERVICENOW_USER": "admin",
        "SYNCLINE_SERVICENOW_PASSWORD": "sandbox",
        "SYNCLINE_REPORTING_DB_URL": f"sqlite:///{tmp_path / 'reporting.db'}",
        "SYNCLINE_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "SYNCLINE_SPECS_DIR": str(SPECS_DIR),
        "SYNCLINE_HOME": str(tmp_path / "home"),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SYNCLINE_INJECT_FAULT", raising=False)
    return values


def run(**parameters: Any) -> SyncSummary:
    summary = scheduled_sync(INTEGRATION, **parameters)
    assert isinstance(summary, SyncSummary)
    return summary


def after_changes() -> None:
    """Let the second of the last change pass: a run reads changes up to the second before
    it started (later ones belong to the next run, see syncline.sync.read_until)."""
    time.sleep(1.02 - time.time() % 1)


def run_state(**parameters: Any) -> State[Any]:
    state = scheduled_sync(INTEGRATION, return_state=True, **parameters)
    assert isinstance(state, State)
    return state


def reported(environment: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The reporting table, by CI id."""
    engine = make_engine(environment["SYNCLINE_REPORTING_DB_URL"])
    with engine.connect() as connection:
        rows = [
            dict(row._mapping) for row in connection.execute(sa.text("SELECT * FROM cmdb_server"))
        ]
    engine.dispose()
    by_id = {row["ci_id"]: row for row in rows}
    assert len(by_id) == len(rows), "duplicate CI rows in the reporting table"
    return by_id


def reportable(sandbox: ServiceNowSandbox) -> dict[str, dict[str, Any]]:
    """What the spec should carry over: CIs that are not retired (install_status 7)."""
    return {
        record["sys_id"]: record
        for record in sandbox.records("cmdb_ci_server")
        if record["install_status"] != "7"
    }


def ledger(environment: dict[str, str]) -> Ledger:
    return Ledger(environment["SYNCLINE_LEDGER_URL"])


def newest_change(sandbox: ServiceNowSandbox) -> str:
    return max(record["sys_updated_on"] for record in sandbox.records("cmdb_ci_server"))


@pytest.fixture(params=["sqlite", "postgresql"])
def reporting_db(
    request: pytest.FixtureRequest, environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> str:
    if request.param == "postgresql":
        url = str(request.getfixturevalue("postgres_url"))
        monkeypatch.setenv("SYNCLINE_REPORTING_DB_URL", url)
        environment["SYNCLINE_REPORTING_DB_URL"] = url
    return environment["SYNCLINE_REPORTING_DB_URL"]


def test_first_run_loads_every_ci_then_one_percent_change_updates_exactly_those(
    sandbox: ServiceNowSandbox, environment: dict[str, str], reporting_db: str
) -> None:
    expected = reportable(sandbox)
    first = run()
    rows = reported(environment)
    assert set(rows) == set(expected)
    assert first.created == len(expected) and first.updated == 0 and first.dead_lettered == 0
    some = next(iter(expected.values()))
    assert rows[some["sys_id"]]["name"] == some["name"]
    assert ledger(environment).read_cursor(INTEGRATION) == first.cursor_after

    changed = sorted(expected)[:: len(expected) // 19][:19]  # ~1%
    for index, sys_id in enumerate(changed):
        sandbox.update("cmdb_ci_server", sys_id, {"ram": str(900_000 + index)})
    after_changes()
    second = run()
    assert (second.created, second.updated) == (0, len(changed))
    assert second.read < len(expected) // 10, "an incremental run must not reread everything"
    rows = reported(environment)
    assert len(rows) == len(expected)
    assert {sys_id: rows[sys_id]["ram_mb"] for sys_id in changed} == {
        sys_id: 900_000 + index for index, sys_id in enumerate(changed)
    }
    audit = ledger(environment).audit_entries(INTEGRATION)
    assert (
        sorted(key for entry in audit if entry["action"] == "updated" for key in entry["keys"])
        == changed
    )

    artifact = Artifact.get(f"sync-{INTEGRATION}")
    assert artifact is not None
    table = json.loads(str(artifact.data))
    assert table[0]["updated"] == len(changed) and table[0]["created"] == 0
    progress = Artifact.get(f"sync-{INTEGRATION}-progress")
    assert progress is not None and float(str(progress.data)) == 100.0


def test_records_changed_at_the_cursor_boundary_are_neither_lost_nor_doubled(
    sandbox: ServiceNowSandbox, environment: dict[str, str]
) -> None:
    first = run()
    assert isinstance(first.cursor_after, datetime)
    boundary = newest_change(sandbox)
    # Freeze the sandbox clock on the cursor's own second and change records in it: they
    # carry the same sys_updated_on as records the first run already read.
    sandbox.set_now(first.cursor_after)
    same_second = sorted(reportable(sandbox))[:3]
    for sys_id in same_second:
        sandbox.update("cmdb_ci_server", sys_id, {"os_version": "boundary-1"})
    assert {sandbox.get("cmdb_ci_server", s)["sys_updated_on"] for s in same_second} == {boundary}

    second = run()
    assert second.updated == 3 and second.created == 0
    third = run()
    assert third.updated == 0 and third.created == 0, "boundary records applied twice"
    rows = reported(environment)
    assert len(rows) == len(reportable(sandbox))
    assert all(rows[s]["operating_system"].endswith("boundary-1") for s in same_second)


def test_crash_after_write_then_retry_of_the_flow_run_gives_one_clean_end_state(
    sandbox: ServiceNowSandbox, environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = reportable(sandbox)
    monkeypatch.setenv("SYNCLINE_INJECT_FAULT", "after-target-write")
    state = run_state()
    assert state.is_failed()
    assert len(reported(environment)) == len(expected), "the writes happened before the crash"
    assert ledger(environment).read_cursor(INTEGRATION) is None, "cursor moved before commit"
    flow_run_id = str(state.state_details.flow_run_id)
    monkeypatch.delenv("SYNCLINE_INJECT_FAULT")

    # On-call's command, as documented in the README.
    retried = subprocess.run(
        [
            sys.executable, "-m", "prefect", "flow-run", "retry", flow_run_id,
            "--entrypoint", "flows/scheduled_sync.py:scheduled_sync",
        ],
        cwd=ROOT,
        env={**os.environ, "PREFECT_API_URL": os.environ.get("PREFECT_API_URL", "")}
        | {"PREFECT_API_URL": environment_api_url()},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert retried.returncode == 0, retried.stdout + retried.stderr

    run_record = read_flow_run(flow_run_id)
    assert run_record.state is not None and run_record.state.is_completed()
    assert run_record.run_count >= 2
    rows = reported(environment)
    assert set(rows) == set(expected)
    assert ledger(environment).read_cursor(INTEGRATION) is not None
    again = run()
    assert (again.created, again.updated) == (0, 0)


def environment_api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


def read_flow_run(flow_run_id: str) -> FlowRun:
    from prefect.client.orchestration import get_client

    async def read() -> FlowRun:
        async with get_client() as client:
            return await client.read_flow_run(flow_run_id)  # type: ignore[arg-type]

    return asyncio.run(read())


def test_unmappable_records_are_dead_lettered_and_the_run_completes(
    sandbox: ServiceNowSandbox,
    environment: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def add_ci(name: str, ram: str, operational_status: str) -> dict[str, Any]:
        fields = {"name": name, "ram": ram, "operational_status": operational_status}
        return sandbox.insert("cmdb_ci_server", {**fields, "install_status": "1"})

    bad = {
        "ram": add_ci("bad-ram", "lots", "1"),
        "status": add_ci("bad-status", "8", "42"),
        "name": add_ci("", "8", "1"),
    }
    after_changes()
    summary = run()
    assert summary.dead_lettered == 3
    rows = reported(environment)
    assert not {record["sys_id"] for record in bad.values()} & set(rows)
    assert len(rows) == len(reportable(sandbox)) - 3
    letters = {
        letter.source_key: letter for letter in ledger(environment).dead_letters(INTEGRATION)
    }
    assert (
        letters[bad["ram"]["sys_id"]].reason == "ram_mb (from 'ram'): cannot read 'lots' as integer"
    )
    assert (
        letters[bad["status"]["sys_id"]].reason
        == "status (from 'operational_status'): value '42' is not in the value map"
    )
    assert letters[bad["name"]["sys_id"]].reason == "name: required but empty"
    assert letters[bad["ram"]["sys_id"]].payload["ram"] == "lots"
    assert all(letter.flow_run_id == summary.flow_run_id for letter in letters.values())

    # The source is fixed: the next incremental run writes the record and closes its letter.
    sandbox.update("cmdb_ci_server", bad["ram"]["sys_id"], {"ram": "64"})
    after_changes()
    run()
    assert reported(environment)[bad["ram"]["sys_id"]]["ram_mb"] == 64
    pending = {letter.source_key for letter in ledger(environment).dead_letters(INTEGRATION)}
    assert pending == {bad["status"]["sys_id"], bad["name"]["sys_id"]}

    # The mapping is fixed (unknown statuses now kept as they are): replay writes the parked one.
    specs = tmp_path / "specs"
    specs.mkdir()
    text = (
        (SPECS_DIR / "cmdb_nightly.yaml").read_text().replace("unmapped: reject", "unmapped: keep")
    )
    (specs / "cmdb_nightly.yaml").write_text(text)
    monkeypatch.setenv("SYNCLINE_SPECS_DIR", str(specs))
    replayed = replay(INTEGRATION)
    assert (replayed.attempted, replayed.replayed, replayed.still_failing) == (2, 1, 1)
    assert reported(environment)[bad["status"]["sys_id"]]["status"] == "42"
    # Tried by the first run, by the second (it lies within the overlap window) and the replay.
    remaining = ledger(environment).dead_letters(INTEGRATION)
    assert [(letter.source_key, letter.attempts) for letter in remaining] == [
        (bad["name"]["sys_id"], 3)
    ]


def test_rate_limiting_slows_the_run_but_loses_nothing(
    sandbox: ServiceNowSandbox, environment: dict[str, str]
) -> None:
    sandbox.faults.rate_limit_every = 2
    sandbox.faults.retry_after_seconds = 1
    summary = run()
    assert summary.rate_limited >= 1
    assert summary.api_retries == summary.rate_limited
    assert sandbox.stats.requests_total == summary.api_calls
    assert set(reported(environment)) == set(reportable(sandbox))
    assert sandbox.stats.rate_limited == summary.rate_limited
    assert summary.duration_seconds >= summary.rate_limited * 1.0, "Retry-After was not honoured"


def test_server_errors_are_retried_and_lose_nothing(
    sandbox: ServiceNowSandbox, environment: dict[str, str]
) -> None:
    sandbox.faults.server_error_every = 2
    summary = run()
    assert summary.api_retries >= 1 and summary.rate_limited == 0
    assert sandbox.stats.responses_by_status.get(500, 0) == summary.api_retries
    assert set(reported(environment)) == set(reportable(sandbox))


def test_credentials_from_a_prefect_secret_block(
    sandbox: ServiceNowSandbox,
    environment: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.blocks.system import Secret

    Secret(value="sandbox").save("servicenow-password", overwrite=True)
    specs = tmp_path / "specs"
    specs.mkdir()
    text = (SPECS_DIR / "cmdb_nightly.yaml").read_text()
    text = text.replace(
        "password: {env: SYNCLINE_SERVICENOW_PASSWORD}",
        "password: {block: secret/servicenow-password}",
    )
    (specs / "cmdb_nightly.yaml").write_text(text)
    monkeypatch.setenv("SYNCLINE_SPECS_DIR", str(specs))
    monkeypatch.delenv("SYNCLINE_SERVICENOW_PASSWORD")
    summary = run()
    assert summary.created == len(reportable(sandbox))
