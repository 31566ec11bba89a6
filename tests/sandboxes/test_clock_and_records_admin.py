"""The instance clock can run off real time; admin routes update and delete records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sandboxes.core import clock as clock_module
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from sandboxes.servicenow.admin import build_app

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = ServiceNowSandboxConfig(cmdb_ci_server=50, incident=10, sys_user=20, seed=3)
ADMIN = "/sandbox/servicenow"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


REAL_NOW = datetime(2026, 3, 4, 5, 6, 7, 250_000, tzinfo=UTC)


class _RealTime:
    """Stands in for ``datetime`` in the clock module, so tests decide what "real time" is."""

    current = REAL_NOW

    @classmethod
    def now(cls, tz: object = None) -> datetime:
        return cls.current


@pytest.fixture
def real_time(monkeypatch: pytest.MonkeyPatch) -> type[_RealTime]:
    monkeypatch.setattr(clock_module, "datetime", _RealTime)
    monkeypatch.setattr(_RealTime, "current", REAL_NOW)
    return _RealTime


def test_a_running_clock_can_be_behind_or_ahead_of_real_time(real_time: type[_RealTime]) -> None:
    sandbox = ServiceNowSandbox(CONFIG.model_copy(update={"clock_offset_seconds": -300}))
    assert not sandbox.clock_frozen
    assert sandbox.clock_offset_seconds == -300
    assert sandbox.now() == datetime(2026, 3, 4, 5, 1, 7, tzinfo=UTC)
    real_time.current += timedelta(seconds=42)  # the clock runs on with real time
    assert sandbox.now() == datetime(2026, 3, 4, 5, 1, 49, tzinfo=UTC)
    record = sandbox.insert("incident", {"short_description": "written by a slow clock"})
    assert record["sys_created_on"] == record["sys_updated_on"] == "2026-03-04 05:01:49"

    sandbox.set_clock_offset(90)
    assert sandbox.now() == datetime(2026, 3, 4, 5, 8, 19, tzinfo=UTC)
    sandbox.set_now(NOW)  # set_now and advance still freeze the clock
    assert sandbox.clock_frozen
    real_time.current += timedelta(hours=1)
    sandbox.advance(1.5)
    assert sandbox.now() == NOW + timedelta(seconds=1)
    sandbox.set_clock_offset(-0.5)  # and an offset makes it run again
    assert not sandbox.clock_frozen
    assert sandbox.now() == datetime(2026, 3, 4, 6, 6, 48, tzinfo=UTC)


def test_the_real_clock_offset_applies_without_patching() -> None:
    sandbox = ServiceNowSandbox(CONFIG)
    sandbox.set_clock_offset(-3_600)
    expected = datetime.now(UTC) - timedelta(hours=1)
    assert abs(sandbox.now() - expected) < timedelta(seconds=5)


@pytest.mark.anyio
async def test_clock_route_sets_and_shows_the_offset(real_time: type[_RealTime]) -> None:
    sandbox = ServiceNowSandbox(CONFIG, now=NOW)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(sandbox)), base_url="http://127.0.0.1:8701"
    ) as admin:
        frozen = await admin.get(f"{ADMIN}/clock")
        assert frozen.json() == {
            "now": "2025-06-01T12:00:00+00:00",
            "offset_seconds": 0.0,
            "frozen": True,
        }
        behind = await admin.post(f"{ADMIN}/clock", json={"offset_seconds": -90})
        assert behind.json() == {
            "now": "2026-03-04T05:04:37+00:00",
            "offset_seconds": -90.0,
            "frozen": False,
        }
        assert (await admin.get(f"{ADMIN}/clock")).json() == behind.json()
        refrozen = await admin.post(
            f"{ADMIN}/clock", json={"now": "2030-01-01T00:00:00Z", "advance_seconds": 5}
        )
        assert refrozen.json()["now"] == "2030-01-01T00:00:05+00:00"
        assert refrozen.json()["frozen"] is True
        invalid = await admin.post(f"{ADMIN}/clock", json={"offset_seconds": "soon"})
        assert invalid.status_code == 422


@pytest.mark.anyio
async def test_admin_routes_update_and_delete_records() -> None:
    sandbox = ServiceNowSandbox(CONFIG, now=NOW)
    target = sandbox.records("cmdb_ci_server")[3]
    path = f"{ADMIN}/records/cmdb_ci_server/{target['sys_id']}"
    app = build_app(sandbox)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8701"
    ) as admin:
        sandbox.advance(60)
        updated = await admin.patch(path, json={"fields": {"ram": "131072", "u_rack": "R12"}})
        assert updated.status_code == 200
        body = updated.json()
        assert (body["ram"], body["u_rack"]) == ("131072", "R12")
        assert body["sys_updated_on"] == "2025-06-01 12:01:00"
        assert int(body["sys_mod_count"]) == int(target["sys_mod_count"]) + 1
        assert sandbox.get("cmdb_ci_server", target["sys_id"]) == body

        assert (await admin.patch(path, json={"ram": "1"})).status_code == 422
        missing = f"{ADMIN}/records/cmdb_ci_server/{'0' * 32}"
        assert (await admin.patch(missing, json={"fields": {"ram": "1"}})).status_code == 404
        bad_table = f"{ADMIN}/records/Not-A-Table/{target['sys_id']}"
        assert (await admin.patch(bad_table, json={"fields": {}})).status_code == 400

        deleted = await admin.delete(path)
        assert deleted.status_code == 204
        assert sandbox.get("cmdb_ci_server", target["sys_id"]) is None
        assert (await admin.delete(path)).status_code == 404
        api_read = await admin.get(
            f"/api/now/table/cmdb_ci_server/{target['sys_id']}", auth=("admin", "sandbox")
        )
        assert api_read.status_code == 404
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("192.0.2.10", 40000)),
        base_url="http://sandbox.example",
    ) as remote:
        other = sandbox.records("cmdb_ci_server")[0]["sys_id"]
        remote_path = f"{ADMIN}/records/cmdb_ci_server/{other}"
        assert (await remote.delete(remote_path)).status_code == 403
        assert (await remote.patch(remote_path, json={"fields": {}})).status_code == 403
        assert sandbox.get("cmdb_ci_server", other) is not None
