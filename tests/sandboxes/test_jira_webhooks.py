"""Jira webhooks from the sandbox to a receiver over loopback: signed with
``X-Hub-Signature``, identified by ``X-Atlassian-Webhook-Identifier`` across retries (which
count in ``X-Atlassian-Webhook-Retry``), re-delivered on request, sometimes duplicated,
filtered by JQL, and shaped as the derived webhook schema says."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import jsonschema
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandboxes.core.server import BackgroundServer
from sandboxes.core.webhooks import HUB
from sandboxes.jira import JiraSandbox, JiraSandboxConfig
from sandboxes.jira.admin import build_app
from tests.support.openapi_contract import SPECS_DIR

AUTH = ("integration@example.com", "sandbox-api-token")
SECRET = "webhook-secret"
SCHEMA = json.loads((SPECS_DIR / "jira" / "jira-webhook-event.derived.schema.json").read_text())
DOC = {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": []}]}


@dataclass
class Received:
    identifier: str
    retry: str | None
    signature: str | None
    body: bytes

    @property
    def payload(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads(self.body)
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
            self.received.append(
                Received(
                    request.headers.get("X-Atlassian-Webhook-Identifier", ""),
                    request.headers.get("X-Atlassian-Webhook-Retry"),
                    request.headers.get("X-Hub-Signature"),
                    body,
                )
            )
            status = self.answers.pop(0) if self.answers else 200
        return Response(status_code=status)


class World:
    def __init__(self, config: JiraSandboxConfig, receiver: Receiver) -> None:
        self.receiver = receiver
        self.sandbox = JiraSandbox(config)
        self.hook_server = BackgroundServer(receiver.app).__enter__()
        self.server = BackgroundServer(build_app(self.sandbox)).__enter__()
        self.client = httpx.Client(base_url=self.server.url, auth=AUTH)
        self.hook_url = f"{self.hook_server.url}/hook"

    def register(self, secret: str | None = SECRET) -> None:
        response = self.client.post(
            "/sandbox/jira/webhooks", json={"url": self.hook_url, "secret": secret}
        )
        assert response.status_code == 201

    def create(self, **fields: object) -> str:
        body = {
            "fields": {
                "project": {"key": "OPS"},
                "issuetype": {"name": "Incident"},
                "summary": "Latency spike on api-gw",
                **fields,
            }
        }
        response = self.client.post("/rest/api/3/issue", json=body)
        assert response.status_code == 201, response.text
        key: str = response.json()["key"]
        return key

    def settle(self) -> list[Received]:
        assert self.sandbox.wait_for_webhooks(10)
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

    def opener(answers: list[int] | None = None, *, duplicates: bool = False) -> World:
        config = JiraSandboxConfig(
            issues=0, webhook_duplicate_probability=1.0 if duplicates else 0.0
        )
        world = World(config, Receiver(answers))
        opened.append(world)
        return world

    yield opener
    for world in opened:
        world.close()


@pytest.fixture
def world(open_world: Opener) -> World:
    return open_world()


def test_issue_and_comment_events_are_signed_and_shaped_as_jira_sends_them(world: World) -> None:
    world.register()
    key = world.create(labels=["ops"])
    world.client.put(f"/rest/api/3/issue/{key}", json={"fields": {"summary": "Latency fixed"}})
    world.client.post(f"/rest/api/3/issue/{key}/transitions", json={"transition": {"id": "31"}})
    world.client.post(f"/rest/api/3/issue/{key}/comment", json={"body": DOC})
    received = world.settle()
    events = [(r.payload["webhookEvent"], r.payload["issue_event_type_name"]) for r in received]
    assert events == [
        ("jira:issue_created", "issue_created"),
        ("jira:issue_updated", "issue_updated"),
        ("jira:issue_updated", "issue_generic"),
        ("comment_created", "issue_commented"),
        ("jira:issue_updated", "issue_commented"),
    ]
    for delivery in received:
        jsonschema.validate(delivery.payload, SCHEMA)
        assert HUB.verify(SECRET, delivery.body, delivery.signature)
        assert delivery.signature is not None and delivery.signature.startswith("sha256=")
        assert delivery.retry is None
    assert len({delivery.identifier for delivery in received}) == len(received)
    created, renamed, resolved, commented, _ = (r.payload for r in received)
    assert "changelog" not in created
    assert isinstance(created["timestamp"], int)
    assert renamed["changelog"]["items"] == [  # type: ignore[index]
        {
            "field": "summary",
            "fieldtype": "jira",
            "fieldId": "summary",
            "from": None,
            "fromString": "Latency spike on api-gw",
            "to": None,
            "toString": "Latency fixed",
        }
    ]
    fields_changed = {item["field"] for item in resolved["changelog"]["items"]}  # type: ignore[index]
    assert fields_changed == {"status", "resolution"}
    assert commented["comment"]["body"] == DOC  # type: ignore[index]


def test_a_retried_delivery_keeps_its_identifier_counts_retries_and_can_be_redelivered(
    open_world: Opener,
) -> None:
    world = open_world([503, 409, 200])
    world.register()
    world.create()
    first, second, third = world.settle()
    assert first.identifier == second.identifier == third.identifier
    assert [first.retry, second.retry, third.retry] == [None, "1", "2"]
    assert first.body == second.body == third.body
    listed = world.client.get("/sandbox/jira/webhooks/deliveries").json()
    assert [attempt["status"] for attempt in listed[0]["attempts"]] == [503, 409, 200]
    assert listed[0]["delivered"] is True
    again = world.client.post(f"/sandbox/jira/webhooks/deliveries/{first.identifier}/redeliver")
    assert again.status_code == 202
    *_, redelivered = world.settle()
    assert redelivered.identifier == first.identifier and redelivered.body == first.body
    assert HUB.verify(SECRET, redelivered.body, redelivered.signature)
    missing = world.client.post("/sandbox/jira/webhooks/deliveries/nope/redeliver")
    assert missing.status_code == 404


def test_a_refused_delivery_is_not_retried(open_world: Opener) -> None:
    world = open_world([400])
    world.register()
    world.create()
    (only,) = world.settle()
    assert only.retry is None


def test_a_delivery_may_arrive_twice_with_one_identifier(open_world: Opener) -> None:
    world = open_world(duplicates=True)
    world.register()
    world.create()
    received = world.settle()
    assert len(received) == 2
    assert received[0].identifier == received[1].identifier
    assert received[0].body == received[1].body
    deduplicated = {delivery.identifier for delivery in received}
    assert len(deduplicated) == 1


def test_a_webhook_registered_over_rest_filters_by_jql_and_may_be_unsigned(world: World) -> None:
    registered = world.client.post(
        "/rest/webhooks/1.0/webhook",
        json={
            "name": "syncline",
            "url": world.hook_url,
            "events": ["jira:issue_created"],
            "filters": {"issue-related-events-section": "project = OPS AND labels = syncline"},
        },
    )
    assert registered.status_code == 201
    assert registered.json()["filters"]["issue-related-events-section"].startswith("project")
    world.create(labels=["other"])
    wanted = world.create(labels=["syncline"])
    received = world.settle()
    assert [r.payload["issue"]["key"] for r in received] == [wanted]  # type: ignore[index]
    assert received[0].signature is None
    webhook_id = registered.json()["self"].rsplit("/", 1)[1]
    assert world.client.delete(f"/rest/webhooks/1.0/webhook/{webhook_id}").status_code == 204
