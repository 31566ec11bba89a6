"""Keyset page reads are answered from a cached sorted result, identically to evaluating
each page's query from scratch, and stay identical while records change between pages."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from sandboxes.servicenow.encoded_query import parse
from sandboxes.servicenow.keyset import split_keyset
from sandboxes.servicenow.predicates import compile_query, order_records

NOW = datetime(2026, 3, 4, 12, 0, 0, tzinfo=UTC)
CONFIG = ServiceNowSandboxConfig(cmdb_ci_server=1_500, incident=60, sys_user=80, seed=5)
TABLE = "cmdb_ci_server"
ID_A = "0123abcd" * 4
WINDOW = "sys_updated_on>=2026-01-01 00:00:00^sys_updated_on<=2026-11-30 10:00:00"
FILTERS = (
    "install_status!=7",
    "operational_status=1",
    "used_forINProduction,QA",
    "nameSTARTSWITHlnx",
    "ram>=8192",
    "cpu_count<=8^ORvirtual=true",
    "sys_updated_on>=2025-12-01 00:00:00",
    "sys_updated_on<=2026-02-20 00:00:00",
    "os_versionLIKE1",
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def reference(sandbox: ServiceNowSandbox, table: str, query_text: str) -> list[str]:
    """The sys_ids a query selects, evaluated from scratch the way the sandbox always has:
    filter the records in sys_id order, then stable-sort by the ORDERBY fields."""
    definition = sandbox._require_table(table)
    compiled = compile_query(
        parse(query_text),
        lambda path: sandbox._resolve_field(definition, path),
        now=sandbox.now(),
        invalid_query_returns_no_rows=sandbox.config.invalid_query_returns_no_rows,
    )
    records = sandbox.records(table)
    if compiled.matches_nothing:
        records = []
    elif compiled.matches is not None:
        matches = compiled.matches
        records = [record for record in records if matches(record)]
    return [record["sys_id"] for record in order_records(records, compiled.orderings)]


def keyset_query(groups: list[str], cursor: tuple[str, str] | None, *, by_time: bool) -> str:
    """A page query as the ServiceNow client builds it: each ^NQ group repeats the window
    and the keyset clauses."""
    if by_time:
        keyset = (
            f"^sys_updated_on>={cursor[0]}^sys_updated_on>{cursor[0]}^ORsys_id>{cursor[1]}"
            if cursor
            else ""
        )
        return "^NQ".join(f"{group}^{WINDOW}{keyset}" for group in groups) + (
            "^ORDERBYsys_updated_on^ORDERBYsys_id"
        )
    keyset = f"^sys_id>{cursor[1]}" if cursor else ""
    return "^NQ".join(f"{group}{keyset}" for group in groups) + "^ORDERBYsys_id"


def select(sandbox: ServiceNowSandbox, query: str, limit: int) -> tuple[list[str], int]:
    rows, start = sandbox._select_from(TABLE, query)
    return [row["sys_id"] for row in rows[start : start + limit]], len(rows) - start


def random_writes(sandbox: ServiceNowSandbox, rng: random.Random) -> None:
    """Changes between two pages: edits in one second (ties), retirements, a deletion and a
    new record, some of them behind the reader's position."""
    sandbox.advance(rng.choice((0, 0, 1, 30)))
    ids = sandbox.sys_ids(TABLE)
    for sys_id in rng.sample(ids, 8):
        sandbox.change_record(TABLE, sys_id, rng)
    sandbox.update(TABLE, rng.choice(ids), {"install_status": "7", "operational_status": "6"})
    sandbox.update(TABLE, rng.choice(ids), {"install_status": "1", "used_for": "QA"})
    sandbox.delete(TABLE, rng.choice(ids))
    sandbox.insert(TABLE, {"name": f"lnx-new-{rng.randrange(10**6)}", "install_status": "1"})


def read_and_compare(
    sandbox: ServiceNowSandbox,
    groups: list[str],
    *,
    by_time: bool,
    limit: int,
    rng: random.Random | None = None,
) -> list[str]:
    """Page through by keyset, checking every page and count against the reference."""
    cursor: tuple[str, str] | None = None
    seen: list[str] = []
    for _ in range(10_000):
        query = keyset_query(groups, cursor, by_time=by_time)
        page, total = select(sandbox, query, limit)
        expected = reference(sandbox, TABLE, query)
        assert page == expected[:limit], query
        assert total == len(expected), query
        seen.extend(page)
        if len(page) < limit:
            return seen
        last = sandbox.get(TABLE, page[-1])
        assert last is not None
        cursor = (last["sys_updated_on"], last["sys_id"])
        if rng is not None:
            random_writes(sandbox, rng)
    raise AssertionError("the read did not end")


@pytest.fixture
def sandbox() -> ServiceNowSandbox:
    instance = ServiceNowSandbox(CONFIG, now=NOW)
    # Extra same-second ties: bulk updates in a few seconds, as discovery runs make them.
    rng = random.Random(3)
    ids = instance.sys_ids(TABLE)
    for offset in (-86_400, -3_600, -60):
        instance.set_now(NOW + timedelta(seconds=offset))
        for sys_id in rng.sample(ids, 120):
            instance.change_record(TABLE, sys_id, rng)
    instance.set_now(NOW)
    return instance


def test_split_recognises_the_client_keyset_forms() -> None:
    by_time = parse(keyset_query(["install_status!=7", "used_for=QA"], ("T", ID_A), by_time=True))
    split = split_keyset(by_time)
    assert split is not None
    assert len(split.base.groups) == 2
    assert all(len(group) == 3 for group in split.base.groups)  # filter and window
    assert [c.text for c in split.keyset.conditions] == [
        "sys_updated_on>=T",
        "sys_updated_on>T",
        f"sys_id>{ID_A}",
    ]
    by_sys_id = split_keyset(parse(f"active=true^sys_id>{ID_A}^ORDERBYsys_id"))
    assert by_sys_id is not None
    assert [c.text for c in by_sys_id.keyset.conditions] == [f"sys_id>{ID_A}"]
    only_keyset = split_keyset(parse(f"sys_id>{ID_A}"))
    assert only_keyset is not None
    assert only_keyset.base.groups == ()

    not_keyset = (
        "active=true^ORDERBYsys_id",  # no keyset clause
        f"sys_id>{ID_A}^ORDERBYname",  # another order
        f"sys_id>{ID_A}^ORDERBYDESCsys_id",
        f"a>=T^a>T^ORsys_id>{ID_A}^ORDERBYsys_id",  # order lacks the cursor field
        f"a>=T^a>T^ORsys_id>{ID_A}^ORDERBYb^ORDERBYsys_id",
        f"a>=T^a>U^ORsys_id>{ID_A}^ORDERBYa^ORDERBYsys_id",  # different positions
        f"a>=T^a>T^ORsys_id>={ID_A}^ORDERBYa^ORDERBYsys_id",
        f"x=1^sys_id>{ID_A}^NQy=1^sys_id>{'f' * 32}",  # groups disagree
        f"x=1^sys_id>{ID_A}^NQy=1",
    )
    for text in not_keyset:
        assert split_keyset(parse(text)) is None, text


@pytest.mark.parametrize("by_time", [True, False])
def test_keyset_reads_match_the_reference_on_random_filters(
    sandbox: ServiceNowSandbox, by_time: bool
) -> None:
    rng = random.Random(17 + by_time)
    for _ in range(10):
        groups = [
            "^".join(rng.sample(FILTERS, rng.randint(1, 3))) for _ in range(rng.choice((1, 1, 2)))
        ]
        limit = rng.choice((29, 50, 333, 1000) if by_time else (71, 333, 1000))
        everything = reference(sandbox, TABLE, keyset_query(groups, None, by_time=by_time))
        seen = read_and_compare(sandbox, groups, by_time=by_time, limit=limit)
        assert seen == everything


@pytest.mark.parametrize("by_time", [True, False])
def test_keyset_reads_stay_identical_while_records_change(
    sandbox: ServiceNowSandbox, by_time: bool
) -> None:
    rng = random.Random(29 + by_time)
    for groups in (["install_status!=7"], ["used_for=Production", "ram>=16384^virtual=false"]):
        evaluations = sandbox.query_evaluations
        read_and_compare(sandbox, groups, by_time=by_time, limit=97, rng=rng)
        # The base result is computed once and then patched through every write.
        assert sandbox.query_evaluations - evaluations <= 1


def test_a_keyset_read_filters_and_sorts_the_table_once(sandbox: ServiceNowSandbox) -> None:
    before = sandbox.query_evaluations
    seen = read_and_compare(sandbox, ["install_status!=7"], by_time=True, limit=40)
    assert len(seen) > 400
    assert sandbox.query_evaluations - before == 1


def test_unusual_keyset_values_fall_back_to_full_evaluation(sandbox: ServiceNowSandbox) -> None:
    odd = (
        # A keyset value that is no date-time: the condition is ignored, as on an instance.
        f"install_status!=7^sys_updated_on>=soon^sys_updated_on>soon^ORsys_id>{ID_A}"
        "^ORDERBYsys_updated_on^ORDERBYsys_id",
        # A javascript: bound is resolved like any other.
        "sys_updated_on>=javascript:gs.dateGenerate('2026-01-01','00:00:00')"
        f"^sys_updated_on>javascript:gs.dateGenerate('2026-01-01','00:00:00')^ORsys_id>{ID_A}"
        "^ORDERBYsys_updated_on^ORDERBYsys_id",
        f"u_unknown>=1^u_unknown>1^ORsys_id>{ID_A}^ORDERBYu_unknown^ORDERBYsys_id",
        f"ram>=8192^ram>8192^ORsys_id>{ID_A}^ORDERBYram^ORDERBYsys_id",
        f"nameSTARTSWITHwin^name>=WIN-APP^name>WIN-APP^ORsys_id>{ID_A}^ORDERBYname^ORDERBYsys_id",
    )
    for query in odd:
        page, total = select(sandbox, query, 10_000)
        expected = reference(sandbox, TABLE, query)
        assert page == expected, query
        assert total == len(expected)
    strict = ServiceNowSandbox(
        CONFIG.model_copy(update={"invalid_query_returns_no_rows": True}), now=NOW
    )
    assert select(strict, odd[0], 100) == ([], 0)


@pytest.mark.anyio
async def test_keyset_pages_over_http_count_the_rest_and_link_onwards(
    sandbox: ServiceNowSandbox,
) -> None:
    all_rows = reference(sandbox, TABLE, keyset_query(["install_status!=7"], None, by_time=True))
    middle = sandbox.get(TABLE, all_rows[200])
    assert middle is not None
    query = keyset_query(
        ["install_status!=7"], (middle["sys_updated_on"], middle["sys_id"]), by_time=True
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sandbox.app),
        base_url="https://sandbox.service-now.com",
        auth=("admin", "sandbox"),
    ) as client:
        params: dict[str, Any] = {"sysparm_query": query, "sysparm_limit": 100}
        first = await client.get(f"/api/now/table/{TABLE}", params=params)
        assert [r["sys_id"] for r in first.json()["result"]] == all_rows[201:301]
        assert first.headers["x-total-count"] == str(len(all_rows) - 201)
        following = await client.get(first.links["next"]["url"])
        assert [r["sys_id"] for r in following.json()["result"]] == all_rows[301:401]
        offset = await client.get(
            f"/api/now/table/{TABLE}", params=params | {"sysparm_offset": 50, "sysparm_limit": 3}
        )
        assert [r["sys_id"] for r in offset.json()["result"]] == all_rows[251:254]
    assert len(all_rows) > 401


def test_cached_results_of_any_query_follow_writes(sandbox: ServiceNowSandbox) -> None:
    """Offset reads share the cache: a result patched record by record after writes equals a
    fresh evaluation, for orders with ties (kept in sys_id order) and without ORDERBY."""
    queries = (
        "install_status!=7^ORDERBYsys_updated_on",
        "ORDERBYram^ORDERBYos_version",
        "operational_status=1^ORused_for=QA",
        "nameSTARTSWITHlnx^ORDERBYDESCsys_updated_on",  # descending: rebuilt, not patched
        "assigned_to.nameSTARTSWITHa^ORDERBYsys_updated_on",  # dot-walk: rebuilt
        "",
    )
    rng = random.Random(41)
    for _ in range(6):
        for query in queries:
            assert [r["sys_id"] for r in sandbox._select(TABLE, query)] == reference(
                sandbox, TABLE, query
            ), query
        random_writes(sandbox, rng)
        user = rng.choice(sandbox.sys_ids("sys_user"))
        sandbox.update("sys_user", user, {"name": rng.choice(("alex", "zoe"))})
