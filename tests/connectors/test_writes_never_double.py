"""Writes that cannot double: a create whose outcome is unknown is settled by looking the record
up, never by sending it again blindly. Checked against the sandbox's records, not call counts.

The faults are made here by a transport around the sandbox: the write is let through to the
sandbox (committed) and then its answer is lost or replaced by a 500, or it is refused before
the sandbox sees it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pandas as pd
import pytest

from connectors.base.errors import FatalError, UncertainWriteError
from connectors.base.records import WriteResult
from connectors.servicenow import ServiceNowSettings, ServiceNowTableTarget
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from tests.connectors.servicenow_support import load_contract, make_client
from tests.support.openapi_contract import OpenAPIContract

# What happens to a write: the sandbox commits it and then the reply is lost (connection
# closed mid-reply) or replaced by a 500; or it fails before reaching the sandbox.
Fault = str  # "drop_after_commit" | "500_after_commit" | "500_before_commit" | "refused"
ERROR_BODY = {"error": {"message": "Operation Failed", "detail": "injected"}, "status": "failure"}


@pytest.fixture(scope="module")
def contract() -> OpenAPIContract:
    return load_contract()


class FaultyWrites(httpx.AsyncBaseTransport):
    """The sandbox; the n-th write (POST/PATCH) of ``faults`` gets that fault, or the write
    whose JSON body matches ``pick`` gets ``on_match``."""

    def __init__(
        self,
        sandbox: ServiceNowSandbox,
        contract: OpenAPIContract,
        faults: list[Fault | None] | None = None,
        *,
        pick: Callable[[dict[str, str]], Fault | None] | None = None,
        delay_writes: float = 0.0,
    ) -> None:
        self.inner = httpx.ASGITransport(app=sandbox.app)
        self.contract = contract
        self.faults = list(faults or [])
        self.pick = pick
        self.delay_writes = delay_writes
        self.writes = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.contract.validate_request(request)
        if request.method not in ("POST", "PATCH"):
            return await self.inner.handle_async_request(request)
        fault: Fault | None = None
        if self.writes < len(self.faults):
            fault = self.faults[self.writes]
        if self.pick is not None:
            fault = self.pick(json.loads(request.content)) or fault
        self.writes += 1
        if fault == "boom":
            raise RuntimeError("a bug, not a vendor failure")
        if self.delay_writes:
            await asyncio.sleep(self.delay_writes)
        if fault == "refused":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if fault == "500_before_commit":
            return httpx.Response(500, json=ERROR_BODY, request=request)
        if fault == "400":
            body = {"error": {"message": "Invalid field value", "detail": "state"}}
            return httpx.Response(400, json=body, request=request)
        response = await self.inner.handle_async_request(request)
        await response.aread()
        if fault == "drop_after_commit":
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body",
                request=request,
            )
        if fault == "500_after_commit":
            return httpx.Response(500, json=ERROR_BODY, request=request)
        return response


def batch(*keys: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"correlation_id": list(keys), "short_description": [f"alert {k}" for k in keys]}
    )


def upsert(transport: httpx.AsyncBaseTransport, frame: pd.DataFrame) -> WriteResult:
    target = ServiceNowTableTarget(make_client(transport, max_attempts=3), "incident")

    async def run() -> WriteResult:
        try:
            await target.prepare([], "correlation_id")
            return await target.upsert(frame, "correlation_id")
        finally:
            await target.aclose()

    return asyncio.run(run())


def stored(sandbox: ServiceNowSandbox, key: str) -> list[dict[str, object]]:
    return [r for r in sandbox.records("incident") if r["correlation_id"] == key]


@pytest.mark.parametrize(
    "fault", ["drop_after_commit", "500_after_commit", "500_before_commit", "refused"]
)
def test_a_create_that_fails_once_makes_exactly_one_record(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract, fault: Fault
) -> None:
    result = upsert(FaultyWrites(sandbox, contract, [fault]), batch("w-1"))
    records = stored(sandbox, "w-1")
    assert len(records) == 1, f"{fault}: {len(records)} records"
    assert result.created == ["w-1"]
    assert result.assigned_keys == {"w-1": records[0]["sys_id"]}


def test_a_create_whose_reply_is_lost_twice_still_makes_one_record(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    faults: list[Fault | None] = ["500_before_commit", "drop_after_commit"]
    upsert(FaultyWrites(sandbox, contract, faults), batch("w-2"))
    assert len(stored(sandbox, "w-2")) == 1


def test_a_create_in_doubt_after_every_attempt_is_raised_and_nothing_is_doubled(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    transport = FaultyWrites(sandbox, contract, pick=lambda body: "500_before_commit")
    with pytest.raises(UncertainWriteError) as caught:
        upsert(transport, batch("w-3"))
    assert caught.value.status == 500 and caught.value.code == "Operation Failed"
    assert stored(sandbox, "w-3") == []
    assert transport.writes == 3  # the client's max_attempts: as many tries as any request


def test_an_update_whose_reply_is_lost_is_sent_again(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    upsert(FaultyWrites(sandbox, contract), batch("w-4"))
    changed = batch("w-4").assign(short_description="changed")
    upsert(FaultyWrites(sandbox, contract, ["drop_after_commit"]), changed)
    records = stored(sandbox, "w-4")
    assert [r["short_description"] for r in records] == ["changed"]


def test_a_fatal_error_in_one_write_is_dead_lettered_and_the_others_complete(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    def pick(body: dict[str, str]) -> Fault | None:
        return "400" if body.get("correlation_id") == "c-2" else None

    keys = [f"c-{n}" for n in range(6)]
    result = upsert(FaultyWrites(sandbox, contract, pick=pick), batch(*keys))
    assert [rejected.key for rejected in result.rejected] == ["c-2"]
    assert "Invalid field value" in result.rejected[0].reason
    assert sorted(result.created) == [k for k in keys if k != "c-2"]
    assert {k: len(stored(sandbox, k)) for k in keys} == {k: int(k != "c-2") for k in keys}


def test_an_unexpected_error_cancels_the_other_writes(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    def pick(body: dict[str, str]) -> Fault | None:
        return "boom" if body.get("correlation_id") == "u-0" else None

    keys = [f"u-{n}" for n in range(4)]
    # Every write takes a while; the one that fails fails at once and the others, still on
    # their way, are cancelled before they reach the sandbox.
    transport = FaultyWrites(sandbox, contract, pick=pick, delay_writes=0.5)
    with pytest.raises(RuntimeError, match="a bug"):
        upsert(transport, batch(*keys))
    assert all(stored(sandbox, key) == [] for key in keys)


def test_settings_refuse_unknown_fields() -> None:
    with pytest.raises(ValueError, match="page_sise"):
        ServiceNowSettings.model_validate(
            {"instance_url": "https://x.service-now.com", "token": "t", "page_sise": 10}
        )


def test_a_wrong_key_field_is_refused_at_prepare_and_nothing_is_written(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    before = len(sandbox.records("incident"))
    transport = FaultyWrites(sandbox, contract)
    target = ServiceNowTableTarget(make_client(transport), "incident")

    async def run() -> None:
        async with target.client:
            await target.prepare([], "correlation_idd")

    with pytest.raises(FatalError, match="incident has no field correlation_idd"):
        asyncio.run(run())
    assert transport.writes == 0 and len(sandbox.records("incident")) == before


def test_a_wrong_key_field_is_refused_by_upsert_without_prepare(
    sandbox: ServiceNowSandbox, contract: OpenAPIContract
) -> None:
    before = len(sandbox.records("incident"))
    transport = FaultyWrites(sandbox, contract)
    target = ServiceNowTableTarget(make_client(transport), "incident")
    frame = batch("k-1").rename(columns={"correlation_id": "correlation_idd"})

    async def run() -> None:
        async with target.client:
            await target.upsert(frame, "correlation_idd")

    with pytest.raises(FatalError, match="no field correlation_idd"):
        asyncio.run(run())
    assert transport.writes == 0 and len(sandbox.records("incident")) == before


def test_a_wrong_key_field_on_an_empty_table_is_caught_by_the_first_create(
    contract: OpenAPIContract,
) -> None:
    empty = ServiceNowSandbox(
        ServiceNowSandboxConfig(cmdb_ci_server=0, incident=0, sys_user=5, seed=7)
    )
    transport = FaultyWrites(empty, contract)
    target = ServiceNowTableTarget(make_client(transport), "incident")
    frame = batch("e-1", "e-2", "e-3").rename(columns={"correlation_id": "u_no_such_key"})

    async def run() -> None:
        async with target.client:
            await target.prepare([], "u_no_such_key")
            await target.upsert(frame, "u_no_such_key")

    with pytest.raises(FatalError, match="no field u_no_such_key"):
        asyncio.run(run())
    assert transport.writes == 1, "only the first record is written, to see the table's fields"
    assert empty.records("incident") == [], "and it is deleted again"


def test_the_right_key_on_an_empty_table_writes_every_record_once(
    contract: OpenAPIContract,
) -> None:
    empty = ServiceNowSandbox(
        ServiceNowSandboxConfig(cmdb_ci_server=0, incident=0, sys_user=5, seed=7)
    )
    keys = [f"f-{n}" for n in range(5)]
    result = upsert(FaultyWrites(empty, contract), batch(*keys))
    assert sorted(result.created) == keys
    assert sorted(r["correlation_id"] for r in empty.records("incident")) == keys


def test_a_correlation_value_holding_a_comma_is_found_again(sandbox: ServiceNowSandbox) -> None:
    # IN splits its list at commas: such a value is looked up by equality instead, so its
    # second write updates the record rather than creating another.
    key = "datadog:4242:env:prod,host:web-1"
    transport = httpx.ASGITransport(app=sandbox.app)
    first = upsert(transport, batch(key, "plain"))
    second = upsert(transport, batch(key, "plain").assign(short_description="again"))
    assert (len(first.created), len(second.created), len(second.updated)) == (2, 0, 2)
    assert [r["short_description"] for r in stored(sandbox, key)] == ["again"]
