"""The nightly CMDB sync never loses a record silently, under conditions real instances have.

Each test drives the engine (``run_sync`` + ``finish_run``, as the flow does) against the
ServiceNow sandbox, into a real SQLite reporting table, and then compares the table with the
sandbox by reading both: never by Syncline's own counters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from connectors.base.errors import ConnectorError
from connectors.base.records import RecordTarget, WriteResult
from connectors.sql import make_engine
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from syncline.connect import ConnectorFactory
from syncline.specs import IntegrationSpec, load_spec
from syncline.state import Ledger
from syncline.sync import SyncSummary, finish_run, run_sync
from tests.conftest import SPECS_DIR

INSTANCE = "https://acme.service-now.com"
CMDB = "cmdb_ci_server"


@dataclass
class World:
    sandbox: ServiceNowSandbox
    tmp_path: Path
    spec: IntegrationSpec
    transport: httpx.AsyncBaseTransport
    reporting_url: str
    ledger: Ledger
    runs: list[SyncSummary] = field(default_factory=list)

    def run(
        self,
        *,
        full_refresh: bool = False,
        target_wrapper: Callable[[RecordTarget], RecordTarget] | None = None,
        flow_run_id: str | None = None,
    ) -> SyncSummary:
        environ = {**CREDENTIALS, "SYNCLINE_REPORTING_DB_URL": self.reporting_url}
        factory = ConnectorFactory(environ=environ, transports={"servicenow": self.transport})
        source, target = factory.source(self.spec), factory.target(self.spec)
        if target_wrapper is not None:
            target = target_wrapper(target)
        run_id = flow_run_id or f"run-{len(self.runs) + 1}"

        async def go() -> SyncSummary:
            try:
                return await run_sync(
                    self.spec,
                    source,
                    target,
                    self.ledger,
                    flow_run_id=run_id,
                    full_refresh=full_refresh,
                )
            finally:
                await source.aclose()
                await target.aclose()

        summary = asyncio.run(go())
        finish_run(self.ledger, summary)
        self.runs.append(summary)
        return summary

    def reported(self) -> dict[str, dict[str, Any]]:
        engine = make_engine(self.reporting_url)
        try:
            with engine.connect() as connection:
                rows = [
                    dict(row._mapping)
                    for row in connection.execute(sa.text("SELECT * FROM cmdb_server"))
                ]
        except sa.exc.OperationalError:
            rows = []
        finally:
            engine.dispose()
        by_id = {str(row["ci_id"]): row for row in rows}
        assert len(by_id) == len(rows), "duplicate CI rows in the reporting table"
        return by_id

    def reportable(self) -> dict[str, dict[str, Any]]:
        """What the spec promises the report holds: every CI that is not retired."""
        return {
            record["sys_id"]: record
            for record in self.sandbox.records(CMDB)
            if record["install_status"] != "7"
        }

    def differences(self) -> dict[str, list[str]]:
        """Lost, stale and extra records, comparing the report with the sandbox directly."""
        source, target = self.reportable(), self.reported()
        stale = [
            key
            for key in sorted(set(source) & set(target))
            if str(target[key]["name"]) != source[key]["name"]
            or _stamp(target[key]["updated_at"]) != source[key]["sys_updated_on"]
        ]
        return {
            "lost": sorted(set(source) - set(target)),
            "extra": sorted(set(target) - set(source)),
            "stale": stale,
        }


CREDENTIALS = {"SYNCLINE_SERVICENOW_USER": "admin", "SYNCLINE_SERVICENOW_PASSWORD": "sandbox"}


def _stamp(value: Any) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S")


def spec_for(tmp_path: Path, *, page_size: int = 200, edit: Callable[[str], str] | None = None,
             reporting_url: str) -> IntegrationSpec:  # fmt: skip
    text = (SPECS_DIR / "cmdb_nightly.yaml").read_text()
    text = text.replace("page_size: 1000", f"page_size: {page_size}")
    text = text.replace("batch_size: 5000", "batch_size: 500")
    if edit is not None:
        text = edit(text)
    path = tmp_path / "cmdb_nightly.yaml"
    path.write_text(text)
    return load_spec(
        path,
        environ={"SYNCLINE_SERVICENOW_URL": INSTANCE, "SYNCLINE_REPORTING_DB_URL": reporting_url},
    )


def make_world(tmp_path: Path, sandbox: ServiceNowSandbox, **spec_options: Any) -> World:
    reporting_url = f"sqlite:///{tmp_path / 'reporting.db'}"
    spec = spec_for(tmp_path, reporting_url=reporting_url, **spec_options)
    return World(
        sandbox=sandbox,
        tmp_path=tmp_path,
        spec=spec,
        transport=httpx.ASGITransport(app=sandbox.app),
        reporting_url=reporting_url,
        ledger=Ledger(f"sqlite:///{tmp_path / 'ledger.db'}"),
    )


@pytest.fixture
def sandbox() -> ServiceNowSandbox:
    return ServiceNowSandbox(
        ServiceNowSandboxConfig(cmdb_ci_server=3_000, incident=0, sys_user=50, seed=11)
    )


@pytest.fixture
def world(tmp_path: Path, sandbox: ServiceNowSandbox) -> World:
    return make_world(tmp_path, sandbox)


class ChurningTransport(httpx.AsyncBaseTransport):
    """Changes records in the sandbox between the pages of a read, as a busy instance does."""

    def __init__(self, sandbox: ServiceNowSandbox, per_page: int, *, pages: int = 10**9) -> None:
        self.sandbox = sandbox
        self.per_page = per_page
        self.pages = pages
        self.inner = httpx.ASGITransport(app=sandbox.app)
        self.list_requests = 0
        self.record_reads = 0  # list requests of whole records (not key-only, not probes)
        self.changed: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "GET" and request.url.path.endswith(f"/{CMDB}"):
            self.list_requests += 1
            fields = request.url.params.get("sysparm_fields", "")
            if "asset_tag" in fields and request.url.params.get("sysparm_limit") != "1":
                self.record_reads += 1
            if self.list_requests <= self.pages:
                self.changed += self.sandbox.touch(CMDB, self.per_page, seed=self.list_requests)
        return response


def after_changes() -> None:
    """The read window ends a second before the run starts (syncline.sync.read_until)."""
    import time

    time.sleep(1.02 - time.time() % 1)


# 1. Clock skew -------------------------------------------------------------------------------


def test_clock_skew_and_churn_during_a_full_read_lose_nothing(world: World) -> None:
    # The instance's clock is 3 s behind ours: records changed mid-read stay inside the read
    # window (which ends a second before *our* start) and move to the end of the order.
    world.sandbox.set_now(datetime.now(UTC) - timedelta(seconds=3))
    churn = ChurningTransport(world.sandbox, per_page=10, pages=12)
    world.transport = churn
    first = world.run()
    assert churn.changed, "the read was not churned"
    lost_for_good = [
        key
        for key in world.differences()["lost"]
        if key not in set(churn.changed)  # records nobody touched must be there already
    ]
    assert lost_for_good == [], f"{len(lost_for_good)} untouched records lost by a full read"
    # The churn stops; one incremental run later the report equals the instance exactly.
    world.transport = httpx.ASGITransport(app=world.sandbox.app)
    world.sandbox.advance(5)
    after_changes()
    world.run()
    assert world.differences() == {"lost": [], "extra": [], "stale": []}
    assert first.unread == 0


# 2. Short and empty pages --------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["empty_page_every", "short_page_every"])
def test_an_empty_or_half_page_mid_read_is_read_again(world: World, fault: str) -> None:
    setattr(world.sandbox.faults, fault, 4)  # every 4th list request: a transient glitch
    summary = world.run()
    assert world.differences() == {"lost": [], "extra": [], "stale": []}
    assert summary.unread == 0


def test_rows_hidden_by_access_rules_are_counted_and_warned_not_silently_skipped(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.sandbox.faults.hidden_fraction = 0.02
    with caplog.at_level(logging.WARNING):
        summary = world.run()
    lost = world.differences()["lost"]
    assert lost, "the sandbox hid no rows"
    assert summary.unread == len(lost), "every record not delivered is counted"
    assert any("did not deliver" in record.getMessage() for record in caplog.records)
    # The cursor still moves on: hidden rows cannot stall the integration forever.
    assert world.ledger.read_cursor(world.spec.name) is not None


# 3. Pagination links to another host ---------------------------------------------------------


class RoutingTransport(httpx.AsyncBaseTransport):
    """Two hosts: the instance and a stranger; records who asked the stranger what."""

    def __init__(self, instance: ServiceNowSandbox, stranger: ServiceNowSandbox) -> None:
        self.instance = httpx.ASGITransport(app=instance.app)
        self.stranger = httpx.ASGITransport(app=stranger.app)
        self.stranger_requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "evil.example.com":
            self.stranger_requests.append(request)
            return await self.stranger.handle_async_request(request)
        return await self.instance.handle_async_request(request)


def test_pagination_never_takes_credentials_to_another_host(world: World) -> None:
    stranger = ServiceNowSandbox(
        ServiceNowSandboxConfig(cmdb_ci_server=500, incident=0, sys_user=10, seed=99)
    )
    world.sandbox.faults.foreign_link_host = "https://evil.example.com"
    routing = RoutingTransport(world.sandbox, stranger)
    world.transport = routing
    world.run()
    assert routing.stranger_requests == [], "a request (with credentials) went to another host"
    assert world.differences() == {"lost": [], "extra": [], "stale": []}


# 4. Deletions and retirements ----------------------------------------------------------------


def test_retired_and_deleted_cis_leave_the_report(world: World) -> None:
    world.run()
    keys = sorted(world.reportable())
    retired, deleted = keys[10:15], keys[20:25]
    for sys_id in retired:
        world.sandbox.update(CMDB, sys_id, {"install_status": "7"})
    for sys_id in deleted:
        world.sandbox.delete(CMDB, sys_id)
    after_changes()
    world.run()
    assert not set(retired) & set(world.reported()), "retired CIs are still reported"
    after_changes()
    world.run(full_refresh=True)  # a full refresh always scans for hard deletes
    assert world.differences() == {"lost": [], "extra": [], "stale": []}


# 5. A field the instance does not have -------------------------------------------------------


def test_a_field_the_instance_does_not_have_is_refused_before_anything_is_written(
    tmp_path: Path, sandbox: ServiceNowSandbox
) -> None:
    def misspell(text: str) -> str:
        return text.replace("cpu_count, ram,", "cpu_count, ramm,").replace(
            "ram_mb: {from: ram,", "ram_mb: {from: ramm,"
        )

    world = make_world(tmp_path, sandbox, edit=misspell)
    with pytest.raises(ConnectorError, match="ramm"):
        world.run()
    assert world.reported() == {}


# 6. The audit log across a crash -------------------------------------------------------------


class CrashAfterWrite:
    """A target that dies after its Nth write reached the database, before anything else."""

    def __init__(self, inner: RecordTarget, crash_on: int) -> None:
        self.inner = inner
        self.crash_on = crash_on
        self.writes = 0
        self.system = inner.system
        self.object_name = inner.object_name

    async def upsert(self, batch: pd.DataFrame, key: str) -> WriteResult:
        result = await self.inner.upsert(batch, key)
        self.writes += 1
        if self.writes == self.crash_on:
            raise SystemExit("killed between the write and its audit row")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_the_audit_log_holds_every_applied_change_across_a_crash(world: World) -> None:
    with pytest.raises(SystemExit):
        world.run(target_wrapper=lambda target: CrashAfterWrite(target, crash_on=3),
                  flow_run_id="crashed")  # fmt: skip
    world.run(flow_run_id="crashed")  # the on-call retry of the same flow run
    audited = {
        key
        for entry in world.ledger.audit_entries(world.spec.name)
        for key in entry["keys"]
        if entry["action"] in ("created", "updated", "applied")
    }
    missing = set(world.reported()) - audited
    assert not missing, f"{len(missing)} written records have no audit row"


# 7. Answers that are not JSON ----------------------------------------------------------------


def test_a_truncated_answer_is_retried_and_a_login_page_fails_clearly(world: World) -> None:
    world.sandbox.faults.garbage_every = 5
    world.sandbox.faults.garbage_kind = "truncated"
    world.run()
    assert world.differences() == {"lost": [], "extra": [], "stale": []}

    world.sandbox.faults.garbage_kind = "html"
    world.sandbox.faults.garbage_every = 1
    with pytest.raises(ConnectorError) as raised:
        world.run(full_refresh=True)
    message = str(raised.value)
    assert "servicenow" in message and "text/html" in message and "/api/now/table/" in message
    assert "sysparm_query" not in message, "the URL's query string is left out"


# 9. Failed runs in the history; reads do not multiply under churn ----------------------------


def test_a_failed_run_is_in_the_run_history_with_its_cause(world: World) -> None:
    world.sandbox.faults.garbage_kind = "html"
    world.sandbox.faults.garbage_every = 1
    with pytest.raises(ConnectorError):
        world.run(flow_run_id="doomed")
    runs = world.ledger.runs(world.spec.name)
    assert [(run.flow_run_id, run.status) for run in runs] == [("doomed", "failed")]
    assert "text/html" in (runs[0].error or "")


def test_churn_does_not_multiply_the_requests_of_a_read(world: World) -> None:
    churn = ChurningTransport(world.sandbox, per_page=20)
    world.transport = churn
    pages_needed = -(-len(world.reportable()) // 200)
    world.run()
    # One request per page, give or take one for the records that moved ahead of the read.
    assert churn.record_reads <= pages_needed + 2, (churn.record_reads, pages_needed)


# The soak, short: bench/churn_soak.py runs it at full size -----------------------------------


def test_a_churning_instance_ten_minutes_behind_ends_equal_to_the_report(tmp_path: Path) -> None:
    sandbox = ServiceNowSandbox(
        ServiceNowSandboxConfig(
            cmdb_ci_server=3_000, incident=0, sys_user=50, seed=13, clock_offset_seconds=-600
        )
    )
    world = make_world(
        tmp_path,
        sandbox,
        page_size=100,
        edit=lambda text: text.replace("scan_every: 7d", "scan_every: 0s"),
    )
    sandbox.start_churn(
        changes_per_second=200,
        creates_per_second=5,
        retires_per_second=5,
        deletes_per_second=3,
        duration_seconds=60,
        seed=3,
    )
    try:
        for _ in range(3):
            world.run()
    finally:
        churn = sandbox.stop_churn()
    assert churn.changed and churn.created and churn.retired and churn.deleted
    after_changes()
    world.run()
    assert world.differences() == {"lost": [], "extra": [], "stale": []}


class AddsRowDuringKeyScan(httpx.AsyncBaseTransport):
    """Puts a row into the report while the key scan reads the source, as another writer
    (or a record created once the scan had begun) would."""

    def __init__(self, sandbox: ServiceNowSandbox, reporting_url: str, row_key: str) -> None:
        self.inner = httpx.ASGITransport(app=sandbox.app)
        self.reporting_url = reporting_url
        self.row_key = row_key
        self.added = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fields = request.url.params.get("sysparm_fields", "")
        query = request.url.params.get("sysparm_query", "")
        key_scan = (
            fields.startswith("sys_id") and "name" not in fields and "sys_updated_on>=" not in query
        )
        if key_scan and not self.added:
            self.added = True
            engine = make_engine(self.reporting_url)
            with engine.begin() as connection:
                connection.execute(
                    sa.text("INSERT INTO cmdb_server (ci_id, name) VALUES (:key, 'late')"),
                    {"key": self.row_key},
                )
            engine.dispose()
        return await self.inner.handle_async_request(request)


def test_a_key_created_after_the_scan_began_is_not_deleted_by_it(world: World) -> None:
    world.run()
    gone = sorted(world.reportable())[7]
    world.sandbox.delete(CMDB, gone)
    late = AddsRowDuringKeyScan(world.sandbox, world.reporting_url, "f" * 32)
    world.transport = late
    after_changes()
    world.run(full_refresh=True)  # a full refresh scans for hard deletes
    assert late.added, "the scan never ran"
    reported = world.reported()
    assert gone not in reported, "a CI deleted at the source stayed in the report"
    assert "f" * 32 in reported, "a row that appeared after the scan began was deleted by it"
