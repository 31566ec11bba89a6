"""Outbound REST messages from the ServiceNow sandbox to a receiver over loopback: the body
Syncline's business rule sends (parsed by Syncline's inbound parser), the shared-secret
header, retries after a 503, re-delivery on request, seeded duplicates and the receiver's
choice of tables and operations."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandboxes.core.server import BackgroundServer
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from sandboxes.servicenow.admin import build_app
from syncline.inbound import parse_delivery

AUTH = ("admin", "sandbox")
TOKEN = "shared-secret-for-syncline"
NOW = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
ADMIN = "/sandbox/servicenow"
INCIDENTS = "/api/now/table/incident"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


class Receiver:
    """Records every POST; answers the statuses in ``answers`` first, then 200."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/hook", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            self.received.append(Received(dict(request.headers), body))
            status = self.answers.pop(0) if self.answers else 200
        return Response(status_code=status)


class World:
    def __init__(self, config: ServiceNowSandboxConfig, receiver: Receiver) -> None:
        self.receiver = receiver
        self.sandbox = ServiceNowSandbox(config, now=NOW)
        self.hook_server = BackgroundServer(receiver.app).__enter__()
        self.server = BackgroundServer(build_app(self.sandbox)).__enter__()
        self.client = httpx.Client(
            base_url=self.server.url, auth=AUTH, headers={"Accept": "application/json"}
        )
        self.hook_url = f"{self.hook_server.url}/hook"

    def register(self, **options: Any) -> str:
        body = {"url": self.hook_url, "header_value": TOKEN, "name": "Syncline"} | options
        response = self.client.post(f"{ADMIN}/outbound-rest", json=body)
        assert response.status_code == 201, response.text
        receiver_id: str = response.json()["id"]
        return receiver_id

    def create(self, **fields: str) -> str:
        response = self.client.post(INCIDENTS, json={"short_description": "Disk full"} | fields)
        assert response.status_code == 201, response.text
        sys_id: str = response.json()["result"]["sys_id"]
        return sys_id

    def patch(self, sys_id: str, **fields: str) -> None:
        response = self.client.patch(f"{INCIDENTS}/{sys_id}", json=fields)
        assert response.status_code == 200, response.text

    def settle(self) -> list[Received]:
        assert self.sandbox.wait_for_outbound(10)
        return list(self.receiver.received)

    def close(self) -> None:
        self.client.close()
        self.server.__exit__(None, None, None)
        self.sandbox.close()
        self.hook_server.__exit__(None, None, None)


Opener = Callable[..., World]


@pytest.fixture
def open_world() -> Iterator[Opener]:
    opened: list[World] = []

    def opener(answers: list[int] | None = None, **settings: Any) -> World:
        config = ServiceNowSandboxConfig(
            cmdb_ci_server=0, incident=3, sys_user=5, seed=5, **settings
        )
        world = World(config, Receiver(answers))
        opened.append(world)
        return world

    yield opener
    for world in opened:
        world.close()


def test_inserts_updates_journal_entries_and_deletes_reach_the_receiver(
    open_world: Opener,
) -> None:
    world = open_world()
    world.register()
    sys_id = world.create(work_notes="Opened from the monitoring alert")
    world.sandbox.advance(30)
    world.patch(sys_id, state="2")
    world.sandbox.advance(30)
    world.patch(sys_id, work_notes="Volume extended")
    response = world.client.delete(f"{INCIDENTS}/{sys_id}")
    assert response.status_code == 204

    received = world.settle()
    assert len(received) == 4
    for delivery in received:
        assert delivery.headers["x-syncline-token"] == TOKEN
        assert delivery.headers["content-type"] == "application/json"
        assert "x-hub-signature-256" not in delivery.headers
    insert, update, note, delete = (delivery.payload for delivery in received)
    number = insert["number"]
    assert insert["table"] == "incident"
    assert insert["sys_id"] == sys_id
    assert insert["operation"] == "insert"
    assert insert["sys_updated_on"] == "2026-03-02 09:00:00"
    assert insert["sys_updated_by"] == "admin"
    assert number.startswith("INC")
    assert {"short_description", "number", "work_notes", "sys_id"} <= set(insert["changed_fields"])
    assert "comments" not in insert["changed_fields"]
    assert insert["fields"] == {"sys_mod_count": "0"}  # as the documented business rule sends

    assert update["operation"] == "update"
    assert update["sys_updated_on"] == "2026-03-02 09:00:30"
    assert update["number"] == number
    assert {"state", "incident_state", "sys_mod_count", "sys_updated_on"} <= set(
        update["changed_fields"]
    )
    assert "work_notes" not in update["changed_fields"]
    assert note["operation"] == "update"
    assert note["changed_fields"] == ["sys_updated_on", "sys_mod_count", "work_notes"]
    assert (delete["operation"], delete["changed_fields"]) == ("delete", [])
    assert delete["sys_updated_on"] == "2026-03-02 09:01:00"

    kinds = []
    for delivery in received:
        record = parse_delivery("servicenow", delivery.payload).record
        assert record is not None
        assert (record.system, record.object, record.key) == ("servicenow", "incident", sys_id)
        assert record.display_key == number
        assert record.changed_by == "admin"
        kinds.append(record.change)
    assert kinds == ["created", "updated", "updated", "deleted"]


def test_a_503_is_retried_and_a_delivery_can_be_sent_again(open_world: Opener) -> None:
    world = open_world([503])
    world.register()
    world.create()
    received = world.settle()
    assert len(received) == 2
    assert received[0].body == received[1].body

    (delivery,) = world.client.get(f"{ADMIN}/webhooks/deliveries").json()
    assert [attempt["status"] for attempt in delivery["attempts"]] == [503, 200]
    assert delivery["event"] == "incident.insert"
    response = world.client.post(f"{ADMIN}/webhooks/deliveries/{delivery['id']}/redeliver")
    assert response.status_code == 202
    again = world.settle()
    assert len(again) == 3
    assert again[2].body == received[1].body
    assert again[2].headers["x-syncline-token"] == TOKEN


def test_with_duplicate_probability_one_every_delivery_arrives_twice(open_world: Opener) -> None:
    world = open_world(outbound_duplicate_probability=1.0)
    world.register()
    sys_id = world.create()
    world.patch(sys_id, urgency="1")
    received = world.settle()
    assert len(received) == 4
    assert received[0].body == received[1].body
    assert received[2].body == received[3].body
    assert [d.payload["operation"] for d in received] == ["insert", "insert", "update", "update"]
    assert [d["duplicates"] for d in world.sandbox.outbound_deliveries()] == [1, 1]


def test_a_receiver_gets_only_its_tables_and_operations_until_removed(open_world: Opener) -> None:
    world = open_world()
    inserts_only = world.register(operations=["insert"])
    assert world.client.get(f"{ADMIN}/outbound-rest").json() == [
        {
            "id": inserts_only,
            "name": "Syncline",
            "url": world.hook_url,
            "header_name": "X-Syncline-Token",
            "tables": ["incident"],
            "operations": ["insert"],
        }
    ]
    sys_id = world.create()
    world.patch(sys_id, work_notes="Not an insert")
    world.sandbox.insert("sys_user", {"user_name": "new.hire"})
    assert [d.payload["operation"] for d in world.settle()] == ["insert"]

    assert world.client.delete(f"{ADMIN}/outbound-rest/{inserts_only}").status_code == 204
    assert world.client.get(f"{ADMIN}/outbound-rest").json() == []
    world.create()
    assert len(world.settle()) == 1
    assert world.client.delete(f"{ADMIN}/outbound-rest/{inserts_only}").status_code == 404


def test_configured_fields_are_sent_with_the_note_just_written(open_world: Opener) -> None:
    world = open_world(outbound_fields=["state", "work_notes"])
    world.register(header_name="X-Integration-Key")
    sys_id = world.create(work_notes="First look")
    world.patch(sys_id, state="2")
    first, second = world.settle()
    assert first.headers["x-integration-key"] == TOKEN
    assert first.payload["fields"] == {"state": "1", "work_notes": "First look"}
    assert second.payload["fields"] == {"state": "2", "work_notes": ""}
    assert parse_delivery("servicenow", first.payload).record is not None
