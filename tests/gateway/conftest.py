"""The gateway in-process: its configuration, an outbox on a real SQLite ledger, a client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandboxes.core.webhooks import HUB, PAGERDUTY, SigningScheme
from syncline.outbox import GatewayOutbox
from syncline_app.gateway.app import create_app
from syncline_app.gateway.config import GatewayConfig, GatewaySettings, load_gateway_config

# Two secrets per source: the gateway holds both while it rotates from OLD to NEW.
OLD = {
    name: f"{name}-old-secret-0123456789"
    for name in ("datadog", "dynatrace", "pagerduty", "jira", "servicenow", "generic")
}
NEW = {name: f"{name}-new-secret-9876543210" for name in OLD}

SIGNING: dict[str, SigningScheme] = {"pagerduty": PAGERDUTY, "jira": HUB}
DELIVERY_ID_HEADER = {"pagerduty": "X-Webhook-Id", "jira": "X-Atlassian-Webhook-Identifier"}
TOKEN_HEADER = "X-Syncline-Token"


def gateway_environ(**overrides: str) -> dict[str, str]:
    environ = {
        f"SYNCLINE_GATEWAY_{name.upper()}_SECRET": f"{OLD[name]},{NEW[name]}" for name in OLD
    }
    environ.update(overrides)
    return environ


@pytest.fixture
def config() -> GatewayConfig:
    return load_gateway_config(gateway_environ(), settings=GatewaySettings())


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def outbox(ledger_url: str) -> Iterator[GatewayOutbox]:
    box = GatewayOutbox(ledger_url)
    yield box
    box.dispose()


def gateway_client(config: GatewayConfig, outbox: GatewayOutbox) -> httpx.AsyncClient:
    """The HTTP side alone (no forwarder): what is accepted stays in the outbox."""
    transport = httpx.ASGITransport(app=create_app(config, outbox))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765")


@pytest.fixture
async def client(config: GatewayConfig, outbox: GatewayOutbox) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(config, outbox) as http:
        yield http


def body_of(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def signed_headers(
    source: str,
    body: bytes,
    *,
    secret: str | None = None,
    delivery_id: str | None = None,
) -> dict[str, str]:
    """Headers as ``source`` sends them: its signature (or token) and its delivery id."""
    secret = secret if secret is not None else NEW[source]
    headers = {"Content-Type": "application/json"}
    scheme = SIGNING.get(source)
    if scheme is None:
        headers[TOKEN_HEADER] = secret
    else:
        headers[scheme.header] = scheme.signature(secret, body)
    if delivery_id is not None:
        headers[DELIVERY_ID_HEADER[source]] = delivery_id
    return headers


async def post(
    client: httpx.AsyncClient,
    source: str,
    payload: Any,
    *,
    delivery_id: str | None = None,
    secret: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = body_of(payload)
    sent = signed_headers(source, body, secret=secret, delivery_id=delivery_id)
    sent.update(headers or {})
    return await client.post(f"/hooks/{source}", content=body, headers=sent)
