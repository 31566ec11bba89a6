"""The webhook sender against a Starlette receiver over loopback: signatures verify, failures
are retried with back-off, and a re-delivery carries the same id and the same body."""

from __future__ import annotations

import threading

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandboxes.core.server import BackgroundServer, free_port
from sandboxes.core.webhooks import GITHUB, HUB, PAGERDUTY, SigningScheme, WebhookSender

SECRET = "receiver-secret"


class Receiver:
    """Verifies each delivery's signature; answers 503 to the first ``fail_first`` ones."""

    def __init__(self, scheme: SigningScheme, id_header: str, fail_first: int = 0) -> None:
        self.scheme = scheme
        self.id_header = id_header
        self.fail_first = fail_first
        self.seen: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/hook", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        valid = self.scheme.verify(SECRET, body, request.headers.get(self.scheme.header))
        with self._lock:
            self.seen.append((request.headers.get(self.id_header, ""), body, valid))
            if len(self.seen) <= self.fail_first:
                return Response(status_code=503)
        return Response(status_code=204 if valid else 401)


@pytest.mark.parametrize(
    ("scheme", "id_header"),
    [(HUB, "X-GitHub-Delivery"), (GITHUB, "X-GitHub-Delivery"), (PAGERDUTY, "X-Webhook-Id")],
)
def test_a_signed_delivery_verifies_and_a_redelivery_keeps_id_and_body(
    scheme: SigningScheme, id_header: str
) -> None:
    receiver = Receiver(scheme, id_header)
    payload = {"event": {"event_type": "incident.triggered", "data": {"id": "Q1"}}}
    with (
        BackgroundServer(receiver.app) as server,
        WebhookSender(f"{server.url}/hook", SECRET, scheme, delivery_id_header=id_header) as sender,
    ):
        first = sender.send(payload)
        again = sender.redeliver(first.id)
    assert first.delivered and again.delivered
    assert [attempt.status for attempt in first.attempts] == [204, 204]  # one delivery, sent twice
    (id_1, body_1, valid_1), (id_2, body_2, valid_2) = receiver.seen
    assert valid_1 and valid_2
    assert id_1 == id_2 == first.id
    assert body_1 == body_2 == orjson.dumps(payload)


def test_header_values_follow_the_vendor_formats() -> None:
    body = b'{"a":1}'
    assert HUB.header == "X-Hub-Signature" and HUB.signature(SECRET, body).startswith("sha256=")
    assert PAGERDUTY.signature(SECRET, body).startswith("v1=")
    signed = PAGERDUTY.signature(SECRET, body)
    assert PAGERDUTY.verify(SECRET, body, f"v1=00ff, {signed}")  # rotation: several signatures
    assert not PAGERDUTY.verify("other", body, signed)
    assert not PAGERDUTY.verify(SECRET, body + b" ", signed)


def test_failures_are_retried_with_back_off_and_the_same_id() -> None:
    receiver = Receiver(PAGERDUTY, "X-Delivery-Id", fail_first=2)
    waits: list[float] = []
    with (
        BackgroundServer(receiver.app) as server,
        WebhookSender(
            f"{server.url}/hook",
            SECRET,
            PAGERDUTY,
            backoff_seconds=(0.5, 1.0),
            sleep=waits.append,
        ) as sender,
    ):
        delivery = sender.send({"n": 1})
    assert [attempt.status for attempt in delivery.attempts] == [503, 503, 204]
    assert waits == [0.5, 1.0]
    assert {seen_id for seen_id, _, _ in receiver.seen} == {delivery.id}


async def refuse(request: Request) -> Response:
    return Response(status_code=400)


def test_a_refusal_is_final_and_an_unreachable_receiver_is_retried() -> None:
    refusing = Starlette(routes=[Route("/hook", refuse, methods=["POST"])])
    with BackgroundServer(refusing) as server:
        sender = WebhookSender(f"{server.url}/hook", SECRET, HUB, sleep=lambda _: None)
        assert [attempt.status for attempt in sender.send({}).attempts] == [400]
        sender.close()
    nobody = WebhookSender(
        f"http://127.0.0.1:{free_port()}/hook", SECRET, HUB, max_attempts=3, sleep=lambda _: None
    )
    delivery = nobody.send({})
    nobody.close()
    assert not delivery.delivered
    assert [attempt.status for attempt in delivery.attempts] == [None, None, None]
    assert all(attempt.error for attempt in delivery.attempts)
    with pytest.raises(KeyError):
        nobody.redeliver("unknown")


def test_an_injected_client_is_left_open() -> None:
    receiver = Receiver(HUB, "X-Delivery-Id")
    with BackgroundServer(receiver.app) as server, httpx.Client() as client:
        with WebhookSender(f"{server.url}/hook", SECRET, HUB, client=client) as sender:
            sender.send({"x": 1})
        assert not client.is_closed
