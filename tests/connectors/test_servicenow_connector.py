"""The ServiceNow connector against the sandbox, every request checked against the vendor's
Table API description (the copy in tests/contracts/servicenow, see its PROVENANCE.json)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pandas as pd
import pytest

from connectors.base import AuthError, FatalError
from connectors.base.records import DeleteRule, ReadWindow
from connectors.servicenow import (
    EncodedQuery,
    ServiceNowTableSource,
    ServiceNowTableTarget,
)
from sandboxes.servicenow import ServiceNowSandbox
from tests.conftest import SANDBOX_URL
from tests.connectors.servicenow_support import load_contract, make_client, read_all
from tests.support.openapi_contract import OpenAPIContract


@pytest.fixture(scope="module")
def contract() -> OpenAPIContract:
    return load_contract()


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
        async for _ in client.iter_pages("incident"):
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


# --- keyset reads -------------------------------------------------------------------------


def window_to_now() -> ReadWindow:
    until = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    return ReadWindow("sys_updated_on", until=until, batch_size=10_000)


def test_reads_page_by_keyset_and_a_filter_with_nq_groups_gets_the_window_in_each(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    transport = CheckedTransport(sandbox, contract)
    records = sandbox.records("cmdb_ci_server")
    since = sorted(r["sys_updated_on"] for r in records)[len(records) // 4]
    expected = {
        r["sys_id"]
        for r in records
        if r["sys_updated_on"] >= since
        and (r["operational_status"] == "1" or (r["operational_status"] == "2" and r["ram"]))
    }
    source = ServiceNowTableSource(
        make_client(transport),
        "cmdb_ci_server",
        fields=["sys_id", "name"],
        filter_query="operational_status=1^NQoperational_status=2^ramISNOTEMPTY",
    )
    window = ReadWindow(
        "sys_updated_on",
        since=datetime.strptime(since, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC),
        batch_size=10_000,
    )
    frame = read_all(source, window)
    assert set(frame["sys_id"]) == expected and len(frame) == len(expected)
    assert len(expected) > 400, "the read must span several pages"

    queries = [request.url.params["sysparm_query"] for request in transport.sent]
    assert all("sysparm_offset" not in request.url.params for request in transport.sent)
    assert all("Link" not in q for q in queries)
    window_part = f"sys_updated_on>={since}"
    assert queries[0] == (
        f"operational_status=1^{window_part}^NQoperational_status=2^ramISNOTEMPTY^"
        f"{window_part}^ORDERBYsys_updated_on^ORDERBYsys_id"
    )
    # Page two asks for the rows after the last one of page one, in each group.
    last = transport_rows(transport, 0)[-1]
    after = (
        f"sys_updated_on>={last['sys_updated_on']}^sys_updated_on>{last['sys_updated_on']}"
        f"^ORsys_id>{last['sys_id']}"
    )
    assert queries[1] == (
        f"operational_status=1^{window_part}^{after}^NQoperational_status=2^ramISNOTEMPTY^"
        f"{window_part}^{after}^ORDERBYsys_updated_on^ORDERBYsys_id"
    )
    assert len(transport.sent) == -(-len(expected) // 200)


def transport_rows(transport: CheckedTransport, index: int) -> list[dict[str, Any]]:
    """The rows the sandbox holds for request ``index`` of a read, by asking it again."""
    request = transport.sent[index]

    async def again() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(transport=transport.inner) as plain:
            response = await plain.get(str(request.url), headers=dict(request.headers))
            rows: list[dict[str, Any]] = response.json()["result"]
            return rows

    return asyncio.run(again())


def test_a_filter_with_its_own_order_is_refused() -> None:
    client = make_client(httpx.MockTransport(lambda request: httpx.Response(500)))
    with pytest.raises(FatalError, match=r"ORDERBYname.*remove the ORDERBY"):
        ServiceNowTableSource(client, "cmdb_ci_server", filter_query="active=true^ORDERBYname")
    # An escaped caret is a character of a value, not a separator.
    query = EncodedQuery.parse("nameLIKEa^^NQb^NQos=Linux")
    assert query.groups == ["nameLIKEa^^NQb", "os=Linux"]


def scripted_table(pages: list[list[str]], total: int) -> httpx.MockTransport:
    """An instance that answers each list request with the next of ``pages`` (sys_ids),
    whatever the query says, and counts ``total``."""
    answers = iter(pages)

    def answer(request: httpx.Request) -> httpx.Response:
        rows = [{"sys_id": sys_id} for sys_id in next(answers, pages[-1])]
        return httpx.Response(200, json={"result": rows}, headers={"X-Total-Count": str(total)})

    return httpx.MockTransport(answer)


@pytest.mark.parametrize(
    ("pages", "complaint"),
    [
        ([["a1", "a2", "a3"]], "a1"),  # the keyset condition ignored: page one again
        ([["a1", "a2", "a3"], ["b1", "a9", "b3"]], "a9"),  # a page out of order
    ],
)
def test_an_instance_that_ignores_the_keyset_condition_stops_the_read(
    pages: list[list[str]], complaint: str
) -> None:
    client = make_client(scripted_table(pages, total=9), page_size=3)

    async def read() -> list[str]:
        seen: list[str] = []
        async for page in client.iter_pages("cmdb_ci_server"):
            seen.extend(str(row["sys_id"]) for row in page)
        return seen

    with pytest.raises(FatalError, match=rf"out of order.*sys_id='{complaint}'"):
        asyncio.run(read())


# --- the source's checks and key reads ---------------------------------------------------


def test_prepare_names_every_field_the_table_lacks(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    transport = CheckedTransport(sandbox, contract)
    source = ServiceNowTableSource(make_client(transport, display_value="all"), "cmdb_ci_server")
    good = ["sys_id", "name", "ram", "assigned_to.name", "operational_status.display"]
    asyncio.run(source.prepare(good))
    with pytest.raises(FatalError) as caught:
        asyncio.run(source.prepare([*good, "ramm", "assigned_to.nmae"]))
    message = str(caught.value)
    assert "has no field ramm, assigned_to.nmae" in message
    probe = transport.sent[-1].url.params
    assert probe["sysparm_limit"] == "1" and probe["sysparm_display_value"] == "all"
    assert probe["sysparm_fields"].split(",") == [
        "sys_id", "name", "ram", "assigned_to.name", "operational_status", "ramm",
        "assigned_to.nmae",
    ]  # fmt: skip


def test_prepare_on_an_empty_table_warns_and_passes(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract, caplog: pytest.LogCaptureFixture
) -> None:
    source = ServiceNowTableSource(
        make_client(CheckedTransport(sandbox, contract)), "cmdb_ci_nothing_here"
    )
    with caplog.at_level(logging.WARNING, logger="syncline"):
        asyncio.run(source.prepare(["sys_id", "ramm"]))
    assert "cmdb_ci_nothing_here shows no record" in caplog.text


def collect_keys(source: ServiceNowTableSource, window: ReadWindow, *, scoped: bool) -> list[str]:
    async def collect() -> list[str]:
        return [key async for batch in source.read_keys(window, scoped=scoped) for key in batch]

    return asyncio.run(collect())


def test_read_keys_reads_only_keys_with_and_without_the_filter(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    transport = CheckedTransport(sandbox, contract)
    records = sandbox.records("cmdb_ci_server")
    since_text = sorted(r["sys_updated_on"] for r in records)[len(records) // 2]
    since = datetime.strptime(since_text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    window = ReadWindow("sys_updated_on", since=since, batch_size=300)
    in_window = [r for r in records if r["sys_updated_on"] >= since_text]
    source = ServiceNowTableSource(
        make_client(transport), "cmdb_ci_server", filter_query="operational_status=1"
    )

    scoped = collect_keys(source, window, scoped=True)
    assert sorted(scoped) == sorted(
        r["sys_id"] for r in in_window if r["operational_status"] == "1"
    )
    unscoped = collect_keys(source, window, scoped=False)
    assert sorted(unscoped) == sorted(r["sys_id"] for r in in_window)
    assert len(scoped) < len(unscoped)
    fields = {request.url.params["sysparm_fields"] for request in transport.sent}
    assert fields == {"sys_id,sys_updated_on"}
    assert not any("operational_status" in request.url.params["sysparm_query"]
                   for request in transport.sent[-(-len(unscoped) // 200):])  # fmt: skip


def test_in_scope_says_which_keys_exist_and_match_the_filter(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    transport = CheckedTransport(sandbox, contract)
    records = sandbox.records("cmdb_ci_server")
    source = ServiceNowTableSource(
        make_client(transport, page_size=40),
        "cmdb_ci_server",
        filter_query="operational_status=1^NQoperational_status=2",
    )
    keys = [r["sys_id"] for r in records[:250]] + ["0" * 32, "f" * 32]
    sandbox.delete("cmdb_ci_server", keys[0])
    expected = {r["sys_id"] for r in records[1:250] if r["operational_status"] in ("1", "2")}
    assert asyncio.run(source.in_scope(keys)) == expected
    queries = [request.url.params["sysparm_query"] for request in transport.sent]
    assert all(q.count("sys_idIN") == 2 for q in queries), "the keys go into each ^NQ group"
    assert max(len(q.split("^")[1].split(",")) for q in queries) <= 100


# --- the target's deletes and keys -------------------------------------------------------


def make_mirror(sandbox: ServiceNowSandbox, count: int) -> list[str]:
    """A custom table (created on first write) with records keyed by correlation_id."""
    ids = []
    for number in range(count):
        record = sandbox.insert(
            "u_mirror",
            {"correlation_id": f"c-{number:02d}", "name": f"m-{number}", "u_deleted_at": ""},
        )
        ids.append(record["sys_id"])
    sandbox.insert("u_mirror", {"correlation_id": "", "name": "not ours", "u_deleted_at": ""})
    return ids


def test_target_hard_delete_returns_what_it_deleted_and_is_idempotent(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    make_mirror(sandbox, 8)
    transport = CheckedTransport(sandbox, contract)
    target = ServiceNowTableTarget(make_client(transport, page_size=3), "u_mirror")

    deleted = asyncio.run(target.delete(["c-01", "c-05", "absent"], "correlation_id", DeleteRule()))
    assert deleted == ["c-01", "c-05"]
    left = sorted(r["correlation_id"] for r in sandbox.records("u_mirror"))
    assert left == ["", "c-00", "c-02", "c-03", "c-04", "c-06", "c-07"]
    assert asyncio.run(target.delete(["c-01"], "correlation_id", DeleteRule())) == []
    assert sum(request.method == "DELETE" for request in transport.sent) == 2


def test_a_delete_already_done_by_someone_else_is_not_an_error(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    ids = make_mirror(sandbox, 2)

    def delete_first_meanwhile(sent: int) -> None:
        request = transport.sent[-1] if transport.sent else None
        if request is not None and request.method == "GET":
            sandbox.delete("u_mirror", ids[0])

    transport = CheckedTransport(sandbox, contract, before=delete_first_meanwhile)
    target = ServiceNowTableTarget(make_client(transport), "u_mirror")
    assert asyncio.run(target.delete(["c-00", "c-01"], "correlation_id", DeleteRule())) == ["c-01"]
    assert sandbox.records("u_mirror")[0]["correlation_id"] == ""


def test_target_soft_delete_marks_only_unmarked_records(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    ids = make_mirror(sandbox, 4)
    sandbox.update("u_mirror", ids[2], {"u_deleted_at": "2024-01-01 00:00:00"})
    transport = CheckedTransport(sandbox, contract)
    target = ServiceNowTableTarget(make_client(transport), "u_mirror")
    at = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    rule = DeleteRule(soft_column="u_deleted_at", at=at)

    marked = asyncio.run(target.delete(["c-00", "c-02", "c-03", "absent"], "correlation_id", rule))
    assert marked == ["c-00", "c-03"]
    by_key = {r["correlation_id"]: r["u_deleted_at"] for r in sandbox.records("u_mirror")}
    assert by_key == {
        "": "",
        "c-00": "2025-03-04 05:06:07",
        "c-01": "",
        "c-02": "2024-01-01 00:00:00",
        "c-03": "2025-03-04 05:06:07",
    }
    assert asyncio.run(target.delete(["c-00"], "correlation_id", rule)) == []
    assert len(sandbox.records("u_mirror")) == 5, "a soft delete deletes nothing"


def test_soft_delete_into_a_column_the_table_lacks_fails_before_writing(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    transport = CheckedTransport(sandbox, contract)
    target = ServiceNowTableTarget(make_client(transport), "incident")
    batch = pd.DataFrame({"correlation_id": ["dd-9"], "short_description": ["x"]})
    asyncio.run(target.upsert(batch, "correlation_id"))
    rule = DeleteRule(soft_column="u_gone_at", at=datetime.now(UTC))
    with pytest.raises(FatalError, match="incident has no field u_gone_at"):
        asyncio.run(target.delete(["dd-9"], "correlation_id", rule))
    assert [request.method for request in transport.sent].count("PATCH") == 0


def test_target_read_keys_returns_every_correlation_value(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    make_mirror(sandbox, 10)
    transport = CheckedTransport(sandbox, contract)
    target = ServiceNowTableTarget(make_client(transport, page_size=4), "u_mirror")

    async def collect() -> list[str]:
        return [key async for batch in target.read_keys("correlation_id") for key in batch]

    assert sorted(asyncio.run(collect())) == [f"c-{n:02d}" for n in range(10)]
    assert len(transport.sent) == 3
    assert all(
        request.url.params["sysparm_fields"] == "sys_id,correlation_id"
        for request in transport.sent
    )


def test_find_by_pages_by_keyset_on_sys_id(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    make_mirror(sandbox, 10)
    transport = CheckedTransport(sandbox, contract)
    client = make_client(transport, page_size=4)
    wanted = [f"c-{n:02d}" for n in range(0, 10, 1)]
    found = asyncio.run(client.find_by("u_mirror", "correlation_id", wanted))
    assert sorted(found) == wanted
    queries = [request.url.params["sysparm_query"] for request in transport.sent]
    assert queries[0].endswith("^ORDERBYsys_id")
    assert "^sys_id>" in queries[1] and "sysparm_offset" not in transport.sent[1].url.params
