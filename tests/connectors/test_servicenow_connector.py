"""The ServiceNow connector against the sandbox, every request checked against the vendor's
Table API description (../shared/specs/servicenow)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd
import pytest

from connectors.base import AuthError, FatalError
from connectors.base.records import ReadWindow
from connectors.servicenow import (
    EncodedQuery,
    ServiceNowClient,
    ServiceNowSettings,
    ServiceNowTableSource,
    ServiceNowTableTarget,
)
from syncline.sandbox.servicenow import ServiceNowSandbox
from tests.conftest import SANDBOX_URL
from tests.support.openapi_contract import SPECS_DIR, OpenAPIContract

TABLE_API = SPECS_DIR / "servicenow" / "servicenow-table-api-latest.instance-export.oas3.json"


@pytest.fixture(scope="module")
def contract() -> OpenAPIContract:
    # The instance export omits sysparm_offset, which the Table API documents and puts in
    # every Link header it sends; anything else undeclared is a contract error.
    return OpenAPIContract.load(
        TABLE_API,
        server_url=SANDBOX_URL,
        reject_undeclared_query=True,
        tolerated_query_parameters={"sysparm_offset"},
    )


class CheckedTransport(httpx.AsyncBaseTransport):
    """Validates each request against the description, then lets the sandbox answer it."""

    def __init__(
        self,
        sandbox: ServiceNowSandbox,
        contract: OpenAPIContract,
        before: Callable[[int], None] | None = None,
    ) -> None:
        self.inner = httpx.ASGITransport(app=sandbox.app)
        self.contract = contract
        self.before = before
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.contract.validate_request(request)
        if self.before is not None:
            self.before(len(self.sent))
        self.sent.append(request)
        return await self.inner.handle_async_request(request)


def make_client(transport: httpx.AsyncBaseTransport, **settings: object) -> ServiceNowClient:
    values: dict[str, object] = {
        "instance_url": SANDBOX_URL,
        "username": "admin",
        "password": "sandbox",
        "page_size": 200,
    }
    values.update(settings)
    return ServiceNowClient(ServiceNowSettings.model_validate(values), transport=transport)


def read_all(source: ServiceNowTableSource, window: ReadWindow) -> pd.DataFrame:
    async def collect() -> pd.DataFrame:
        frames = [batch async for batch in source.read(window)]
        await source.aclose()
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return asyncio.run(collect())


def test_incremental_read_pages_through_every_record_once(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    transport = CheckedTransport(sandbox, contract)
    records = sandbox.records("cmdb_ci_server")
    since = sorted(r["sys_updated_on"] for r in records)[len(records) // 2]
    expected = {r["sys_id"] for r in records if r["sys_updated_on"] >= since}
    source = ServiceNowTableSource(
        make_client(transport), "cmdb_ci_server", fields=["sys_id", "name", "assigned_to"]
    )
    window = ReadWindow(
        "sys_updated_on",
        since=datetime.strptime(since, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC),
        batch_size=500,
    )
    frame = read_all(source, window)
    assert len(frame) == len(expected) == frame["sys_id"].nunique()
    assert set(frame["sys_id"]) == expected
    # References arrive as plain sys_ids (sysparm_exclude_reference_link), not {link, value}.
    assert all(isinstance(value, str) for value in frame["assigned_to"])
    first = transport.sent[0].url.params
    assert first["sysparm_query"] == (
        f"sys_updated_on>={since}^ORDERBYsys_updated_on^ORDERBYsys_id"
    )
    assert first["sysparm_fields"] == "sys_id,name,assigned_to,sys_updated_on"
    assert len(transport.sent) == -(-len(expected) // 200), "one request per page"


def test_records_updated_mid_read_are_not_skipped(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    until = sandbox.now().replace(microsecond=0) - timedelta(seconds=1)
    in_window = sorted(
        (r for r in sandbox.records("cmdb_ci_server")),
        key=lambda r: (r["sys_updated_on"], r["sys_id"]),
    )
    moved = [r["sys_id"] for r in in_window[10:13]]

    def update_after_first_page(sent: int) -> None:
        # Three records already read leave the window: every later row moves up three places.
        if sent == 1:
            for sys_id in moved:
                sandbox.update("cmdb_ci_server", sys_id, {"os_version": "moved"})

    transport = CheckedTransport(sandbox, contract, before=update_after_first_page)
    source = ServiceNowTableSource(make_client(transport), "cmdb_ci_server", fields=["sys_id"])
    frame = read_all(source, ReadWindow("sys_updated_on", until=until, batch_size=200))
    # Nothing is skipped. (The moved records were read before they changed; their new
    # versions lie past the window's end and belong to the next run.)
    assert set(frame["sys_id"]) == {r["sys_id"] for r in in_window}


def test_upsert_by_correlation_creates_then_updates_then_leaves_alone(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    transport = CheckedTransport(sandbox, contract)
    target = ServiceNowTableTarget(make_client(transport), "incident")
    batch = pd.DataFrame(
        {
            "correlation_id": ["dd-1", "dd-2"],
            "short_description": ["CPU high on web-1", "Disk full on db-2"],
            # ServiceNow derives priority from impact and urgency; writing it is overruled.
            "impact": ["2", "1"],
            "urgency": ["2", "1"],
        }
    )

    async def upsert(frame: pd.DataFrame) -> tuple[list[str], list[str], int]:
        await target.prepare([], "correlation_id")
        result = await target.upsert(frame, "correlation_id")
        return sorted(result.created), sorted(result.updated), result.unchanged

    assert asyncio.run(upsert(batch)) == (["dd-1", "dd-2"], [], 0)
    assert asyncio.run(upsert(batch)) == ([], [], 2)
    batch.loc[0, "urgency"] = "1"
    assert asyncio.run(upsert(batch)) == ([], ["dd-1"], 1)

    mine = [r for r in sandbox.records("incident") if r["correlation_id"].startswith("dd-")]
    assert sorted((r["correlation_id"], r["urgency"], r["priority"]) for r in mine) == [
        ("dd-1", "1", "2"),
        ("dd-2", "1", "1"),
    ]
    assert {request.method for request in transport.sent} == {"GET", "POST", "PATCH"}


@pytest.mark.parametrize(
    ("table", "correlation"),
    [("sys_user", "employee_number"), ("cmdb_ci_server", "correlation_id")],
)
def test_create_update_and_lookup_on_other_tables(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract, table: str, correlation: str
) -> None:
    client = make_client(CheckedTransport(sandbox, contract))

    async def scenario() -> dict[str, dict[str, object]]:
        created = await client.create(table, {"name": "syncline-test", correlation: "x-1"})
        await client.update(table, str(created["sys_id"]), {"name": "syncline-renamed"})
        found = await client.find_by(table, correlation, ["x-1", "absent"])
        await client.aclose()
        return found

    found = asyncio.run(scenario())
    assert list(found) == ["x-1"]
    stored = sandbox.get(table, str(found["x-1"]["sys_id"]))
    assert stored is not None and stored["name"] == "syncline-renamed"


def test_wrong_credentials_fail_fast_with_the_vendors_message(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    transport = CheckedTransport(sandbox, contract)
    client = make_client(transport, password="wrong")

    async def read() -> None:
        async for _ in client.iter_pages("incident", query=EncodedQuery().order_by("sys_id")):
            pass

    with pytest.raises(AuthError, match="User Not Authenticated") as caught:
        asyncio.run(read())
    assert caught.value.status == 401
    assert len(transport.sent) == 1, "a 401 is never retried"


def test_a_request_outside_the_description_is_caught(contract: OpenAPIContract) -> None:
    request = httpx.Request(
        "GET", f"{SANDBOX_URL}/api/now/table/incident", params={"sysparm_limt": "10"}
    )
    assert contract.problems(request), "a misspelt parameter must not validate"


@pytest.mark.parametrize(
    ("display_value", "expected"),
    [("false", "raw"), ("true", "display"), ("all", "both")],
)
def test_display_values(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract, display_value: str, expected: str
) -> None:
    client = make_client(CheckedTransport(sandbox, contract), display_value=display_value)
    incident = sandbox.records("incident")[0]
    user = sandbox.get("sys_user", incident["caller_id"])
    assert user is not None

    async def first() -> dict[str, object]:
        query = EncodedQuery().where("sys_id", "=", incident["sys_id"])
        async for page in client.iter_pages(
            "incident", query=query, fields=["priority", "caller_id"]
        ):
            await client.aclose()
            return page[0]
        raise AssertionError("no page")

    record = asyncio.run(first())
    labels = {
        "1": "1 - Critical",
        "2": "2 - High",
        "3": "3 - Moderate",
        "4": "4 - Low",
        "5": "5 - Planning",
    }
    raw = {"priority": incident["priority"], "caller_id": incident["caller_id"]}
    display = {"priority": labels[incident["priority"]], "caller_id": user["name"]}
    if expected == "raw":
        assert record == raw
    elif expected == "display":
        assert record == display
    else:
        assert record == raw | {f"{k}.display": v for k, v in display.items()}


def test_display_values_all_reach_the_engine_and_true_is_refused_with_a_cursor(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    window = ReadWindow("sys_updated_on", batch_size=1000)
    source = ServiceNowTableSource(
        make_client(CheckedTransport(sandbox, contract), display_value="all"),
        "cmdb_ci_server",
        fields=["sys_id", "operational_status"],
    )
    frame = read_all(source, window)
    assert {"operational_status", "operational_status.display"} <= set(frame.columns)
    assert set(frame["operational_status.display"]) <= {
        "Operational", "Non-Operational", "Repair in Progress", "DR Standby", "Ready", "Retired",
    }  # fmt: skip

    refused = ServiceNowTableSource(
        make_client(CheckedTransport(sandbox, contract), display_value="true"), "cmdb_ci_server"
    )
    with pytest.raises(FatalError, match="display_value 'all'"):
        read_all(refused, window)
