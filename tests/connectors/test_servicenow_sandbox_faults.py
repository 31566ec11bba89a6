"""The ServiceNow connector against the sandbox's own misbehaviour: an instance clock behind
ours with records changing from a background thread, transient empty and short pages, rows
hidden by access rules, Link headers naming another host, and garbage with status 200.

Each test compares what was read with what the sandbox holds."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime, timedelta

import pytest

from connectors.base import FatalError, InvalidResponseError, LinkHeaderPaginator
from connectors.base.pagination import PageRequest
from connectors.base.records import ReadWindow
from connectors.servicenow import ServiceNowClient, ServiceNowTableSource
from sandboxes.core.faults import FaultConfig
from sandboxes.servicenow import ServiceNowSandbox
from tests.connectors.servicenow_support import (
    TIME_FORMAT,
    SandboxProxy,
    load_contract,
    make_client,
    read_all,
)
from tests.support.openapi_contract import OpenAPIContract

TABLE = "cmdb_ci_server"
PAGE = 200


@pytest.fixture(scope="module")
def contract() -> OpenAPIContract:
    return load_contract()


def window() -> ReadWindow:
    until = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    return ReadWindow("sys_updated_on", until=until, batch_size=10_000)


def ids_in(sandbox: ServiceNowSandbox, read_window: ReadWindow) -> set[str]:
    assert isinstance(read_window.until, datetime)
    bound = read_window.until.strftime(TIME_FORMAT)
    return {r["sys_id"] for r in sandbox.records(TABLE) if r["sys_updated_on"] <= bound}


def test_a_clock_behind_ours_and_records_changing_throughout_lose_nothing(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    sandbox.set_clock_offset(-8)  # changes land inside our window, at the end of the order
    sandbox.faults.latency_ms = 30  # a read long enough for the churn to hit every page
    read_window = window()
    before = ids_in(sandbox, read_window)
    proxy = SandboxProxy(sandbox, contract)
    source = ServiceNowTableSource(make_client(proxy), TABLE, fields=["sys_id", "name"])
    sandbox.start_churn(changes_per_second=150, duration_seconds=30, seed=3)
    try:
        frame = read_all(source, read_window)
    finally:
        report = sandbox.stop_churn()

    assert report.changed > 20, "the churn must overlap the read"
    read_ids = set(frame["sys_id"])
    lost = before - read_ids
    assert not lost, f"{len(lost)} records in the window were not read"
    # Requests: the pages needed for every record once plus the changed ones again.
    assert len(proxy.sent) <= math.ceil((len(before) + report.changed) / PAGE) + 1
    assert source.unread() == 0


def test_transient_empty_and_short_pages_are_read_again(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    # Every 6th list answer is empty and every 9th half empty; the re-read after either
    # never falls on another.
    sandbox.faults = FaultConfig(empty_page_every=6, short_page_every=9)
    read_window = window()
    expected = ids_in(sandbox, read_window)
    client = make_client(SandboxProxy(sandbox, contract))
    source = ServiceNowTableSource(client, TABLE, fields=["sys_id"])
    frame = read_all(source, read_window)

    assert set(frame["sys_id"]) == expected
    # Every request beyond the pages needed re-read a glitched page, and nothing more.
    pages = math.ceil(len(expected) / PAGE)
    assert client.stats.rereads == client.stats.requests - pages >= 2
    assert source.unread() == 0


@pytest.mark.parametrize(("fraction", "page_size"), [(0.1, 200), (0.5, 50), (1.0, 100)])
def test_rows_hidden_by_access_rules_are_counted_exactly(
    sandbox: ServiceNowSandbox,
    contract: OpenAPIContract,
    caplog: pytest.LogCaptureFixture,
    fraction: float,
    page_size: int,
) -> None:
    sandbox.faults = FaultConfig(hidden_fraction=fraction)
    read_window = window()
    in_window = ids_in(sandbox, read_window)
    hidden = {sys_id for sys_id in in_window if sandbox.is_hidden(sys_id)}
    proxy = SandboxProxy(sandbox, contract)
    source = ServiceNowTableSource(
        make_client(proxy, page_size=page_size), TABLE, fields=["sys_id"]
    )
    with caplog.at_level(logging.WARNING, logger="syncline"):
        frame = read_all(source, read_window)

    read_ids = set(frame["sys_id"]) if len(frame) else set()
    assert read_ids == in_window - hidden
    assert source.unread() == len(hidden) > 0
    assert f"{TABLE}:" in caplog.text and "hidden by access rules" in caplog.text
    # Every request either moved the keyset or stepped over a block: bounded by the rows.
    assert len(proxy.sent) <= 2 * math.ceil(len(in_window) / page_size) + 2


def test_a_link_header_naming_another_host_is_refused_by_the_http_layer(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    sandbox.faults = FaultConfig(foreign_link_host="https://sn-internal.corp.example")
    proxy = SandboxProxy(sandbox, contract)

    # The table source neither asks for Link headers nor follows them.
    read_window = window()
    source = ServiceNowTableSource(make_client(proxy), TABLE, fields=["sys_id"])
    assert set(read_all(source, read_window)["sys_id"]) == ids_in(sandbox, read_window)

    # Code that does follow them (the shared paginator) is stopped before sending.
    async def follow(client: ServiceNowClient) -> int:
        first = PageRequest(
            "GET",
            client.table_path(TABLE),
            params={"sysparm_limit": "500", "sysparm_fields": "sys_id"},
        )
        pages = 0
        async with client:
            async for _ in client.paginate(first, LinkHeaderPaginator()):
                pages += 1
        return pages

    with pytest.raises(
        FatalError, match=r"refusing to send a request to sn-internal\.corp\.example"
    ):
        asyncio.run(follow(make_client(proxy)))
    assert proxy.elsewhere == []

    # Listed in allowed_hosts (an instance's second name), the host is let through.
    asyncio.run(follow(make_client(proxy, allowed_hosts="sn-internal.corp.example")))
    assert [request.url.host for request in proxy.elsewhere] == ["sn-internal.corp.example"]


@pytest.mark.parametrize("kind", ["truncated", "empty"])
def test_garbled_answers_are_asked_for_again(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract, kind: str
) -> None:
    sandbox.faults = FaultConfig(garbage_every=4, garbage_kind=kind)
    read_window = window()
    client = make_client(SandboxProxy(sandbox, contract))
    source = ServiceNowTableSource(client, TABLE, fields=["sys_id"])
    expected = ids_in(sandbox, read_window)
    assert set(read_all(source, read_window)["sys_id"]) == expected
    pages = math.ceil(len(expected) / PAGE)
    assert client.stats.retries == client.stats.requests - pages >= 2
    assert client.stats.rereads == 0


def test_a_login_page_instead_of_the_api_stops_the_read_with_a_hint(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    sandbox.faults = FaultConfig(garbage_every=1, garbage_kind="html")
    client = make_client(SandboxProxy(sandbox, contract))
    source = ServiceNowTableSource(client, TABLE, fields=["sys_id"])
    with pytest.raises(InvalidResponseError) as caught:
        read_all(source, window())
    message = str(caught.value)
    assert "servicenow HTTP 200 (GET https://sandbox.service-now.com/api/now/table/" in message
    assert "expected JSON, got text/html: '<!DOCTYPE html>" in message
    assert "instance_url or the credentials" in message
    assert client.stats.requests == 1
