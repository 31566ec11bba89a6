"""The gateway served over loopback by uvicorn, posted to by the sandbox's vendor sender:
signed as PagerDuty signs, retried and re-delivered as PagerDuty does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from sandboxes.core.server import BackgroundServer
from sandboxes.core.webhooks import PAGERDUTY, WebhookSender
from syncline.outbox import Admission, GatewayOutbox, InboundDelivery
from syncline_app.gateway.app import create_app
from syncline_app.gateway.config import GatewayConfig
from syncline_app.gateway.forwarder import OutboxForwarder, PrefectEventsAPI
from tests.gateway.conftest import NEW
from tests.gateway.payloads import FIRST
from tests.gateway.test_forwarder import EventsEndpoint


class OutboxDownAtFirst(GatewayOutbox):
    """The ledger unreachable for the first ``failures`` deliveries."""

    failures = 0

    def admit(self, delivery: InboundDelivery) -> Admission:
        if self.failures:
            self.failures -= 1
            raise sa.exc.OperationalError("INSERT", {}, Exception("connection refused"))
        return super().admit(delivery)


@pytest.fixture
def served(
    config: GatewayConfig, ledger_url: str
) -> Iterator[tuple[str, OutboxDownAtFirst, EventsEndpoint]]:
    outbox = OutboxDownAtFirst(ledger_url)
    endpoint = EventsEndpoint()
    api = PrefectEventsAPI("http://prefect.test/api", transport=httpx.MockTransport(endpoint))
    forwarder = OutboxForwarder(outbox, api, min_backoff=timedelta(milliseconds=20))
    with BackgroundServer(create_app(config, outbox, forwarder)) as server:
        yield server.url, outbox, endpoint
    outbox.dispose()


def sender(url: str) -> WebhookSender:
    return WebhookSender(
        f"{url}/hooks/pagerduty",
        NEW["pagerduty"],
        PAGERDUTY,
        delivery_id_header="X-Webhook-Id",
        backoff_seconds=(0.05,),
    )


def wait_for(events: list[Any], count: int) -> None:
    deadline = time.monotonic() + 5
    while len(events) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_redelivered_webhook_is_acknowledged_and_emitted_once(
    served: tuple[str, OutboxDownAtFirst, EventsEndpoint],
) -> None:
    url, outbox, endpoint = served
    with sender(url) as pagerduty:
        delivery = pagerduty.send(FIRST["pagerduty"])
        pagerduty.redeliver(delivery.id)

    assert [attempt.status for attempt in delivery.attempts] == [202, 200]
    wait_for(endpoint.received, 1)
    (entry,) = outbox.entries()
    assert entry.delivery_id == delivery.id
    assert [event["id"] for event in endpoint.received] == [entry.id]


def test_while_the_outbox_is_unreachable_the_vendor_is_told_to_retry(
    served: tuple[str, OutboxDownAtFirst, EventsEndpoint],
) -> None:
    url, outbox, endpoint = served
    outbox.failures = 2
    with sender(url) as pagerduty:
        delivery = pagerduty.send(FIRST["pagerduty"])

    assert [attempt.status for attempt in delivery.attempts] == [503, 503, 202]
    wait_for(endpoint.received, 1)
    assert len(outbox.entries()) == 1
    assert len(endpoint.received) == 1
