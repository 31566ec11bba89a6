"""The per-second rate limit and the write faults, over loopback (uvicorn) and in process."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from sandboxes.core.faults import FaultConfig
from sandboxes.core.rate_limit import PerSecondLimiter
from sandboxes.core.server import BackgroundServer
from sandboxes.core.write_faults import ConnectionDropped, WriteFaultKind, WriteFaultPicker
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from sandboxes.servicenow.admin import build_app

TINY = ServiceNowSandboxConfig(cmdb_ci_server=50, incident=10, sys_user=20, seed=3)
INCIDENTS = "/api/now/table/incident"
AUTH = ("admin", "sandbox")


@pytest.fixture
def sandbox() -> ServiceNowSandbox:
    return ServiceNowSandbox(TINY)


@pytest.fixture
def served(sandbox: ServiceNowSandbox) -> Iterator[BackgroundServer]:
    with BackgroundServer(build_app(sandbox)) as server:
        yield server


@pytest.fixture
def api(served: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, auth=AUTH, timeout=10.0) as client:
        yield client


def incidents_with(sandbox: ServiceNowSandbox, correlation: str) -> list[dict[str, str]]:
    return [r for r in sandbox.records("incident") if r.get("correlation_id") == correlation]


def only(kind: WriteFaultKind) -> FaultConfig:
    return FaultConfig(write_fault_every=1, write_fault_kinds=[kind])


# --- rate limit -----------------------------------------------------------------------------


class FakeClocks:
    def __init__(self) -> None:
        self.monotonic = 100.0
        self.wall = 1_700_000_000.0

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.wall += seconds


def test_token_bucket_admits_a_seconds_worth_then_refuses_until_refilled() -> None:
    clocks = FakeClocks()
    limiter = PerSecondLimiter(
        5, monotonic=lambda: clocks.monotonic, wall_clock=lambda: clocks.wall
    )
    assert all(limiter.admit().allowed for _ in range(5))
    refused = limiter.admit()
    assert not refused.allowed
    assert refused.retry_after_seconds == 1
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["X-RateLimit-Limit"] == "5"
    assert int(refused.headers["X-RateLimit-Reset"]) == int(clocks.wall) + 1
    clocks.advance(0.2)  # one token back
    assert limiter.admit().allowed
    assert not limiter.admit().allowed
    clocks.advance(5.0)  # the bucket holds one second's worth, no more
    assert sum(limiter.admit().allowed for _ in range(10)) == 5


def test_fractional_rate_admits_one_then_waits_for_the_next_token() -> None:
    clocks = FakeClocks()
    limiter = PerSecondLimiter(
        0.5, monotonic=lambda: clocks.monotonic, wall_clock=lambda: clocks.wall
    )
    assert limiter.admit().allowed
    refused = limiter.admit()
    assert not refused.allowed
    assert refused.retry_after_seconds == 2
    assert refused.headers["X-RateLimit-Limit"] == "0.5"


def test_rate_limit_over_loopback_answers_429_with_headers_and_recovers(
    sandbox: ServiceNowSandbox, api: httpx.Client
) -> None:
    sandbox.rate_limit_per_second = 20
    started = time.monotonic()
    responses = [api.get(INCIDENTS, params={"sysparm_limit": 1}) for _ in range(40)]
    elapsed = time.monotonic() - started
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(admitted) + len(refused) == 40
    assert refused, f"40 requests in {elapsed:.2f}s all admitted at 20/s"
    assert len(admitted) <= 20 + int(elapsed * 20) + 1
    assert all(r.headers["X-RateLimit-Limit"] == "20" for r in responses)
    too_many = refused[0]
    assert too_many.headers["Retry-After"] == "1"
    assert int(too_many.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert too_many.headers["content-type"].startswith("application/json")
    assert too_many.json() == {
        "error": {
            "message": "Too Many Requests",
            "detail": "Rate limit exceeded: 20 requests per second",
        },
        "status": "failure",
    }
    assert sandbox.stats.rate_limited_per_second == len(refused)
    assert sandbox.stats.rate_limited == len(refused)
    time.sleep(1.05)
    recovered = [api.get(INCIDENTS, params={"sysparm_limit": 1}) for _ in range(10)]
    assert [r.status_code for r in recovered] == [200] * 10


def test_rate_limit_is_set_from_the_config_and_the_admin_route(served: BackgroundServer) -> None:
    assert (
        ServiceNowSandbox(
            TINY.model_copy(update={"rate_limit_per_second": 7.5})
        ).rate_limit_per_second
        == 7.5
    )
    with httpx.Client(base_url=served.url, timeout=10.0) as admin:
        assert admin.get("/sandbox/servicenow/rate-limit").json() == {"per_second": None}
        assert admin.put("/sandbox/servicenow/rate-limit", json={"per_second": 2}).json() == {
            "per_second": 2.0
        }
        statuses = [
            admin.get(INCIDENTS, auth=AUTH, params={"sysparm_limit": 1}).status_code
            for _ in range(4)
        ]
        assert statuses[:2] == [200, 200]
        assert 429 in statuses[2:]
        assert admin.put("/sandbox/servicenow/rate-limit", json={"per_second": None}).json() == {
            "per_second": None
        }
        assert (
            admin.put("/sandbox/servicenow/rate-limit", json={"per_second": 0}).status_code == 422
        )
        assert admin.get(INCIDENTS, auth=AUTH, params={"sysparm_limit": 1}).status_code == 200


def test_refused_requests_reach_no_fault_and_no_write(
    sandbox: ServiceNowSandbox, api: httpx.Client
) -> None:
    sandbox.rate_limit_per_second = 1
    sandbox.faults = only("error_before_commit")
    before = sandbox.count("incident")
    first = api.post(INCIDENTS, json={"short_description": "a", "correlation_id": "rl-1"})
    second = api.post(INCIDENTS, json={"short_description": "b", "correlation_id": "rl-2"})
    assert (first.status_code, second.status_code) == (500, 429)
    assert sandbox.stats.writes == 1
    assert sandbox.count("incident") == before


# --- write faults over loopback -------------------------------------------------------------


def test_error_before_commit_saves_nothing(sandbox: ServiceNowSandbox, api: httpx.Client) -> None:
    sandbox.faults = only("error_before_commit")
    before = sandbox.count("incident")
    response = api.post(INCIDENTS, json={"short_description": "x", "correlation_id": "ebc-1"})
    assert response.status_code == 500
    assert response.json()["status"] == "failure"
    assert response.json()["error"]["message"] == "Internal Server Error"
    assert sandbox.count("incident") == before
    assert incidents_with(sandbox, "ebc-1") == []
    target = sandbox.records("incident")[0]
    assert api.delete(f"{INCIDENTS}/{target['sys_id']}").status_code == 500
    assert sandbox.get("incident", target["sys_id"]) is not None
    assert sandbox.stats.write_faults == {"error_before_commit": 2}
    assert sandbox.creates_by_correlation("incident") == {}


def test_error_after_commit_saves_then_answers_500(
    sandbox: ServiceNowSandbox, api: httpx.Client
) -> None:
    sandbox.faults = only("error_after_commit")
    response = api.post(INCIDENTS, json={"short_description": "x", "correlation_id": "eac-1"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "message": "Internal Server Error",
            "detail": "The instance failed to process the request",
        },
        "status": "failure",
    }
    assert len(incidents_with(sandbox, "eac-1")) == 1
    target = incidents_with(sandbox, "eac-1")[0]
    patched = api.patch(f"{INCIDENTS}/{target['sys_id']}", json={"short_description": "changed"})
    assert patched.status_code == 500
    assert sandbox.get("incident", target["sys_id"])["short_description"] == "changed"  # type: ignore[index]
    assert sandbox.stats.write_faults == {"error_after_commit": 2}
    assert sandbox.stats.responses_by_status[500] == 2


def test_drop_after_commit_saves_then_closes_the_connection_promptly(
    sandbox: ServiceNowSandbox, api: httpx.Client
) -> None:
    sandbox.faults = only("drop_after_commit")
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        api.post(INCIDENTS, json={"short_description": "x", "correlation_id": "dac-1"})
    assert time.monotonic() - started < 2.0
    assert len(incidents_with(sandbox, "dac-1")) == 1
    target = incidents_with(sandbox, "dac-1")[0]
    with pytest.raises(httpx.RemoteProtocolError):
        api.put(f"{INCIDENTS}/{target['sys_id']}", json={"short_description": "put"})
    assert sandbox.get("incident", target["sys_id"])["short_description"] == "put"  # type: ignore[index]
    assert sandbox.stats.write_faults == {"drop_after_commit": 2}
    # The server keeps serving: the next request goes through on a fresh connection.
    sandbox.faults = FaultConfig()
    assert api.get(f"{INCIDENTS}/{target['sys_id']}").status_code == 200


@pytest.mark.anyio
async def test_drop_after_commit_in_process_raises_after_the_write(
    sandbox: ServiceNowSandbox,
) -> None:
    sandbox.faults = only("drop_after_commit")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sandbox.app),
        base_url="https://sandbox.service-now.com",
        auth=AUTH,
    ) as client:
        with pytest.raises(httpx.RemoteProtocolError) as raised:
            await client.post(INCIDENTS, json={"short_description": "x", "correlation_id": "ip-1"})
    assert isinstance(raised.value, ConnectionDropped)
    assert len(incidents_with(sandbox, "ip-1")) == 1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_a_write_that_fails_by_itself_is_not_counted_as_faulted(
    sandbox: ServiceNowSandbox, api: httpx.Client
) -> None:
    sandbox.faults = only("drop_after_commit")
    missing = api.patch(f"{INCIDENTS}/{'0' * 32}", json={"short_description": "x"})
    assert missing.status_code == 404
    assert sandbox.stats.write_faults == {}
    assert sandbox.stats.writes == 1


def test_reads_get_no_write_faults(sandbox: ServiceNowSandbox, api: httpx.Client) -> None:
    sandbox.faults = FaultConfig(write_fault_rate=1.0)
    assert api.get(INCIDENTS, params={"sysparm_limit": 1}).status_code == 200
    assert sandbox.stats.writes == 0


# --- random write faults and counters -------------------------------------------------------


def fault_sequence(seed: int, writes: int = 200) -> list[WriteFaultKind | None]:
    picker = WriteFaultPicker(seed)
    kinds: list[WriteFaultKind] = ["error_before_commit", "error_after_commit"]
    return [picker.draw(0.3, None, kinds) for _ in range(writes)]


def test_random_write_faults_follow_the_seed_and_the_rate() -> None:
    first, again, other = fault_sequence(5), fault_sequence(5), fault_sequence(6)
    assert first == again
    assert first != other
    faulted = [kind for kind in first if kind is not None]
    assert 35 <= len(faulted) <= 85  # 30% of 200, loosely
    assert set(faulted) == {"error_before_commit", "error_after_commit"}


def test_every_nth_write_takes_the_kinds_in_turn(
    sandbox: ServiceNowSandbox, served: BackgroundServer
) -> None:
    with httpx.Client(base_url=served.url, timeout=10.0) as admin:
        config = admin.put(
            "/sandbox/servicenow/faults",
            json={
                "write_fault_every": 2,
                "write_fault_kinds": ["error_before_commit", "error_after_commit"],
            },
        ).json()
        assert config["write_fault_every"] == 2
        statuses = [
            admin.post(
                INCIDENTS, auth=AUTH, json={"short_description": "n", "correlation_id": f"nth-{i}"}
            ).status_code
            for i in range(6)
        ]
        assert statuses == [201, 500, 201, 500, 201, 500]
        stats = admin.get("/sandbox/servicenow/stats").json()
    assert stats["write_faults"] == {"error_before_commit": 2, "error_after_commit": 1}
    assert stats["writes"] == 6
    # nth-1 and nth-5 failed before the commit; nth-3 failed after it, so it was saved.
    saved = {f"nth-{i}" for i in range(6)} - {"nth-1", "nth-5"}
    assert set(sandbox.creates_by_correlation("incident")) == saved


def test_creates_are_counted_per_correlation_value_so_doubles_show(
    sandbox: ServiceNowSandbox, served: BackgroundServer
) -> None:
    with httpx.Client(base_url=served.url, timeout=10.0) as client:
        for correlation in ("dup-1", "dup-1", "dup-2", ""):
            body = {"short_description": "d", "correlation_id": correlation}
            assert client.post(INCIDENTS, auth=AUTH, json=body).status_code == 201
        report = client.get("/sandbox/servicenow/correlations/incident").json()
    assert report == {
        "field": "correlation_id",
        "creates": {"dup-1": 2, "dup-2": 1},
        "duplicated": ["dup-1"],
    }
    assert sandbox.stats.correlated_creates == 3
    assert sandbox.stats.duplicate_creates == 1
    assert sandbox.creates_by_correlation("cmdb_ci_server") == {}


def test_the_fault_config_round_trips_through_the_admin_route(served: BackgroundServer) -> None:
    with httpx.Client(base_url=served.url, timeout=10.0) as admin:
        answer = admin.put(
            "/sandbox/servicenow/faults",
            json={"write_fault_rate": 0.2, "write_fault_kinds": ["drop_after_commit"], "seed": 9},
        )
        assert answer.status_code == 200
        assert answer.json()["write_fault_rate"] == 0.2
        assert answer.json()["write_fault_kinds"] == ["drop_after_commit"]
        assert answer.json()["seed"] == 9
        bad = admin.put("/sandbox/servicenow/faults", json={"write_fault_kinds": ["explode"]})
        assert bad.status_code == 422
        assert (
            admin.put("/sandbox/servicenow/faults", json={"write_fault_rate": 1.5}).status_code
            == 422
        )
