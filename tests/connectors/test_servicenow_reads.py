"""Reads that must not lose records, against the sandbox (every request checked against the
vendor's Table API description): clock skew with records updated mid-read, empty and short
pages, rows hidden by access rules, Link headers naming another host, and answers that are
not the API's JSON.

Each test compares what was read with what the sandbox holds. These use only the sandbox's
clock and Python API plus a transport that alters answers, so they run on any version of it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.base import ConnectorError
from connectors.base.records import ReadWindow
from connectors.servicenow import ServiceNowClient, ServiceNowSettings, ServiceNowTableSource
from sandboxes.servicenow import ServiceNowSandbox
from tests.conftest import SANDBOX_URL
from tests.connectors.servicenow_support import (
    TIME_FORMAT,
    SandboxProxy,
    in_order,
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


def window_until(seconds_ago: int = 1) -> datetime:
    """The engine's read window end: a whole second before now (our clock)."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds_ago)


def records_until(sandbox: ServiceNowSandbox, until: datetime) -> list[dict[str, Any]]:
    bound = until.strftime(TIME_FORMAT)
    return in_order([r for r in sandbox.records(TABLE) if r["sys_updated_on"] <= bound])


# --- finding 1: clock skew and churn ------------------------------------------------------


def test_records_moving_to_the_end_mid_read_under_clock_skew_are_all_delivered(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    until = window_until()
    # The instance's clock is 6 s behind ours: what it updates now stays inside our window,
    # but moves to the end of the (sys_updated_on, sys_id) order.
    sandbox.set_now(until - timedelta(seconds=5))
    window_records = records_until(sandbox, until)
    order = [r["sys_id"] for r in window_records]
    moved: list[str] = []

    def edit_records_already_read(request_number: int) -> None:
        # Before every page after the first, three records from the front of the order
        # (read already) are edited.
        if request_number >= 1:
            for sys_id in order[3 * (request_number - 1) : 3 * request_number]:
                sandbox.update(TABLE, sys_id, {"comments": "edited mid-read"})
                moved.append(sys_id)

    proxy = SandboxProxy(sandbox, contract, before=edit_records_already_read)
    source = ServiceNowTableSource(make_client(proxy), TABLE, fields=["sys_id", "name"])
    frame = read_all(source, ReadWindow("sys_updated_on", until=until, batch_size=1000))

    assert moved, "the scenario must edit records during the read"
    bound = until.strftime(TIME_FORMAT)
    assert all(sandbox.get(TABLE, s)["sys_updated_on"] <= bound for s in moved)  # type: ignore[index]
    lost = set(order) - set(frame["sys_id"])
    assert not lost, f"{len(lost)} of {len(order)} records in the window were never read"
    # Pages needed: every record once, plus the moved ones a second time at the end.
    assert len(proxy.sent) <= math.ceil((len(order) + len(moved)) / PAGE) + 1


def test_records_leaving_the_window_mid_read_cost_no_extra_requests(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    until = window_until()
    window_records = records_until(sandbox, until)
    order = [r["sys_id"] for r in window_records]
    # Before each of the next eight requests, two records already read and two not yet
    # read are edited; the instance's clock is ours, so their new timestamps lie past the
    # window's end.
    edits = {
        number: [*order[20 * number : 20 * number + 2], *order[1000 + 50 * number :][:2]]
        for number in range(1, 9)
    }
    left: list[str] = []

    def edit(request_number: int) -> None:
        for sys_id in edits.get(request_number, []):
            sandbox.update(TABLE, sys_id, {"comments": "edited mid-read"})
            left.append(sys_id)

    proxy = SandboxProxy(sandbox, contract, before=edit)
    source = ServiceNowTableSource(make_client(proxy), TABLE, fields=["sys_id"])
    frame = read_all(source, ReadWindow("sys_updated_on", until=until, batch_size=1000))

    stayed = set(order) - set(left)
    assert stayed <= set(frame["sys_id"]), "a record in the window all along was not read"
    pages_needed = math.ceil(len(order) / PAGE)
    assert len(proxy.sent) <= pages_needed + 1, (
        f"{len(proxy.sent)} requests for {len(order)} records in pages of {PAGE}"
    )


# --- finding 2: short and empty pages ----------------------------------------------------


@pytest.mark.parametrize(("glitch", "on_request"), [("empty", 2), ("half", 3)])
def test_a_page_cut_short_once_is_read_again_and_nothing_is_lost(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract, glitch: str, on_request: int
) -> None:
    until = window_until()
    expected = {r["sys_id"] for r in records_until(sandbox, until)}

    def cut_once(number: int, request: httpx.Request, body: dict[str, Any]) -> dict[str, Any]:
        if number != on_request:
            return body
        rows = body["result"]
        return {"result": [] if glitch == "empty" else rows[: len(rows) // 2]}

    proxy = SandboxProxy(sandbox, contract, alter=cut_once)
    client = make_client(proxy)
    source = ServiceNowTableSource(client, TABLE, fields=["sys_id"])
    frame = read_all(source, ReadWindow("sys_updated_on", until=until, batch_size=1000))

    missing = expected - set(frame["sys_id"])
    assert not missing, f"{len(missing)} records lost to one {glitch} page"
    assert client.stats.rereads == 1
    assert source.unread() == 0


def test_rows_hidden_by_access_rules_are_counted_and_the_read_ends(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract, caplog: pytest.LogCaptureFixture
) -> None:
    until = window_until()
    order = [r["sys_id"] for r in records_until(sandbox, until)]
    # A run longer than a page (so one page comes back empty) and some scattered rows.
    hidden = set(order[390:640]) | set(order[1100::97])

    def apply_acls(number: int, request: httpx.Request, body: dict[str, Any]) -> dict[str, Any]:
        # As an instance does: the count includes them, the page leaves them out.
        return {"result": [row for row in body["result"] if row["sys_id"] not in hidden]}

    proxy = SandboxProxy(sandbox, contract, alter=apply_acls)
    source = ServiceNowTableSource(make_client(proxy), TABLE, fields=["sys_id"])
    with caplog.at_level(logging.WARNING, logger="syncline"):
        frame = read_all(source, ReadWindow("sys_updated_on", until=until, batch_size=1000))

    assert set(frame["sys_id"]) == set(order) - hidden
    assert source.unread() == len(hidden)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and all(TABLE in message for message in warnings)
    assert any("access rules" in message for message in warnings)
    assert len(proxy.sent) < 2 * math.ceil(len(order) / PAGE) + 4


# --- finding 3: Link headers naming another host ---------------------------------------


def test_a_link_header_naming_another_host_is_never_followed(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    until = window_until()
    expected = {r["sys_id"] for r in records_until(sandbox, until)}
    proxy = SandboxProxy(sandbox, contract, link_host="https://collector.evil.example")
    source = ServiceNowTableSource(make_client(proxy), TABLE, fields=["sys_id"])
    frame = read_all(source, ReadWindow("sys_updated_on", until=until, batch_size=1000))

    leaked = [(str(r.url.host), r.headers.get("authorization")) for r in proxy.elsewhere]
    assert leaked == [], "requests (with credentials) went to another host"
    assert set(frame["sys_id"]) == expected


# --- finding 7: answers that are not the API's JSON --------------------------------------

LOGIN_PAGE = (
    b"<html><head><title>Log in | ServiceNow</title></head><body><form action='login.do'>"
    b"<input name='user_name'><input name='user_password' type='password'></form></body></html>"
)
PAGE_BODY = b'{"result":[{"sys_id":"' + b"a" * 32 + b'","name":"lnx-1"}]}'


class Scripted:
    """A vendor answering requests in order with scripted responses; keeps what it got."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.received: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(request)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def json_answer(body: bytes, **headers: str) -> httpx.Response:
    return httpx.Response(
        200,
        content=body,
        headers={"Content-Type": "application/json;charset=UTF-8", "X-Total-Count": "1"} | headers,
    )


def scripted_client(server: Scripted) -> ServiceNowClient:
    settings = ServiceNowSettings(
        instance_url=SANDBOX_URL,
        username="svc",
        password="s3cr3t-pw",
        max_attempts=3,
    )
    return ServiceNowClient(settings, transport=httpx.MockTransport(server))


def read_table(client: ServiceNowClient) -> list[str]:
    source = ServiceNowTableSource(client, TABLE, fields=["sys_id", "name"])
    frame = read_all(source, ReadWindow("sys_updated_on", until=window_until()))
    return list(frame["sys_id"])


def test_an_html_login_page_with_200_fails_with_a_message_that_says_what_came() -> None:
    server = Scripted(
        httpx.Response(200, content=LOGIN_PAGE, headers={"Content-Type": "text/html"})
    )
    with pytest.raises(ConnectorError) as caught:
        read_table(scripted_client(server))
    message = str(caught.value)
    assert message.startswith(
        f"servicenow HTTP 200 (GET {SANDBOX_URL}/api/now/table/{TABLE}): "
        "expected JSON, got text/html: '<html><head><title>Log in"
    )
    assert "instance_url" in message and "credentials" in message
    assert "s3cr3t" not in message and "sysparm" not in message
    assert len(server.received) == 1, "a login page comes back the same: not retried"


def test_a_truncated_page_is_asked_for_again() -> None:
    server = Scripted(json_answer(PAGE_BODY[:30]), json_answer(PAGE_BODY))
    client = scripted_client(server)
    assert read_table(client) == ["a" * 32]
    assert len(server.received) == 2
    assert client.stats.retries == 1


def test_an_empty_body_again_and_again_ends_in_a_clear_error() -> None:
    server = Scripted(json_answer(b""))
    with pytest.raises(ConnectorError) as caught:
        read_table(scripted_client(server))
    assert "expected JSON, got an empty body" in str(caught.value)
    assert f"GET {SANDBOX_URL}/api/now/table/{TABLE})" in str(caught.value)
    assert len(server.received) == 3, "retried up to max_attempts"


def test_a_create_whose_answer_is_cut_short_is_not_sent_again() -> None:
    server = Scripted(json_answer(PAGE_BODY[:30]))
    client = scripted_client(server)

    async def create() -> None:
        async with client:
            await client.create("incident", {"short_description": "disk full"})

    with pytest.raises(ConnectorError, match="cut short") as caught:
        asyncio.run(create())
    assert len(server.received) == 1, "a POST may have created its record: never resent"
    assert caught.value.retriable is False
    assert caught.value.__cause__ is not None
