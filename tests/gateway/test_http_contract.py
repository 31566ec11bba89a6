"""The gateway's HTTP contract, per source: what is accepted, refused, and stored once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from syncline.outbox import GatewayOutbox
from tests.gateway.conftest import (
    DELIVERY_ID_HEADER,
    NEW,
    OLD,
    SIGNING,
    TOKEN_HEADER,
    body_of,
    gateway_client,
    post,
    signed_headers,
)
from tests.gateway.payloads import FIRST, LATER, RESOURCE_PREFIX, SOURCES

pytestmark = pytest.mark.anyio

UNSIGNED = [name for name in SOURCES if name not in SIGNING]


def delivery_id_for(source: str) -> str | None:
    return str(uuid.uuid4()) if source in DELIVERY_ID_HEADER else None


@pytest.mark.parametrize("source", SOURCES)
async def test_a_delivery_is_stored_once_and_answered_202(
    client: httpx.AsyncClient, outbox: GatewayOutbox, source: str
) -> None:
    delivery_id = delivery_id_for(source)
    response = await post(client, source, FIRST[source], delivery_id=delivery_id)

    assert response.status_code == 202, response.text
    answer = response.json()
    (entry,) = outbox.entries()
    assert answer == {"accepted": True, "id": entry.id, "event": entry.event}
    assert entry.source == source
    assert entry.delivery_id == delivery_id
    assert entry.raw_body == body_of(FIRST[source])  # the bytes as received, for replay
    assert entry.resource_id.startswith(RESOURCE_PREFIX[source])
    assert entry.payload["source"] == source
    assert entry.payload["event"] == entry.event
    assert entry.payload["subject_key"] == entry.subject_key
    assert (entry.emitted_at, entry.attempts) == (None, 0)
    assert outbox.backlog().pending == 1


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("secret_age", ["old", "new"])
async def test_during_a_rotation_either_held_secret_passes(
    client: httpx.AsyncClient, outbox: GatewayOutbox, source: str, secret_age: str
) -> None:
    secret = (OLD if secret_age == "old" else NEW)[source]
    response = await post(
        client, source, FIRST[source], secret=secret, delivery_id=delivery_id_for(source)
    )
    assert response.status_code == 202, response.text


async def test_pagerduty_signing_with_several_secrets_passes_if_any_matches(
    client: httpx.AsyncClient, outbox: GatewayOutbox
) -> None:
    body = body_of(FIRST["pagerduty"])
    scheme = SIGNING["pagerduty"]
    # PagerDuty rotating its secret: a signature we cannot check beside one we can.
    signatures = [
        scheme.signature("not-ours-at-all-0000", body),
        scheme.signature(OLD["pagerduty"], body),
    ]
    header = ", ".join(signatures)
    response = await client.post(
        "/hooks/pagerduty",
        content=body,
        headers={"Content-Type": "application/json", scheme.header: header, "X-Webhook-Id": "w-1"},
    )
    assert response.status_code == 202, response.text


@pytest.mark.parametrize("source", SOURCES)
async def test_a_missing_signature_or_token_is_401_and_stores_nothing(
    client: httpx.AsyncClient, outbox: GatewayOutbox, source: str
) -> None:
    header = SIGNING[source].header if source in SIGNING else TOKEN_HEADER
    response = await client.post(
        f"/hooks/{source}",
        content=body_of(FIRST[source]),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 401
    assert response.json() == {"error": f"missing {header} header"}
    assert outbox.entries() == []


@pytest.mark.parametrize("source", SOURCES)
async def test_a_wrong_signature_or_token_is_403_and_stores_nothing(
    client: httpx.AsyncClient, outbox: GatewayOutbox, source: str
) -> None:
    response = await post(client, source, FIRST[source], secret="a-secret-we-do-not-hold-42")
    assert response.status_code == 403
    assert "does not match" in response.json()["error"]
    assert outbox.entries() == []


@pytest.mark.parametrize("source", sorted(SIGNING))
async def test_a_signature_of_other_bytes_is_403(
    client: httpx.AsyncClient, outbox: GatewayOutbox, source: str
) -> None:
    body = body_of(FIRST[source])
    headers = signed_headers(source, body)
    tampered = body.replace(b"10", b"11", 1)
    assert tampered != body
    response = await client.post(f"/hooks/{source}", content=tampered, headers=headers)
    assert response.status_code == 403
    assert outbox.entries() == []


@pytest.mark.parametrize("source", SOURCES)
async def test_malformed_json_is_400(
    client: httpx.AsyncClient, outbox: GatewayOutbox, source: str
) -> None:
    body = b'{"alert_id": "1",'
    response = await client.post(
        f"/hooks/{source}", content=body, headers=signed_headers(source, body)
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("body is not valid JSON: ")
    assert "\n" not in response.json()["error"]
    assert outbox.entries() == []


@pytest.mark.parametrize("source", SOURCES)
async def test_an_envelope_the_source_does_not_send_is_400_with_the_reason(
    client: httpx.AsyncClient, outbox: GatewayOutbox, source: str
) -> None:
    response = await post(client, source, {"hello": "world"}, delivery_id=delivery_id_for(source))
    assert response.status_code == 400
    reason = response.json()["error"]
    assert reason.startswith(f"{source}: "), reason
    assert "\n" not in reason
    assert outbox.entries() == []


async def test_json_that_is_not_an_object_is_400(
    client: httpx.AsyncClient, outbox: GatewayOutbox
) -> None:
    response = await post(client, "generic", [1, 2, 3])
    assert response.status_code == 400
    assert outbox.entries() == []


async def test_nan_is_not_json(client: httpx.AsyncClient, outbox: GatewayOutbox) -> None:
    body = b'{"alert_key": "a", "status": "triggered", "title": "t", "details": {"x": NaN}}'
    response = await client.post(
        "/hooks/generic", content=body, headers=signed_headers("generic", body)
    )
    assert response.status_code == 400
    assert outbox.entries() == []


@pytest.mark.parametrize("source", ["pagerduty", "datadog"])
async def test_a_body_over_the_limit_is_413_by_its_declared_length(
    client: httpx.AsyncClient, outbox: GatewayOutbox, source: str
) -> None:
    payload = {**FIRST[source], "padding": "x" * (256 * 1024)}
    response = await post(client, source, payload)
    assert response.status_code == 413
    assert "over the limit of 262144 bytes" in response.json()["error"]
    assert outbox.entries() == []


async def test_a_body_over_the_limit_is_413_while_reading_when_no_length_is_declared(
    client: httpx.AsyncClient, outbox: GatewayOutbox
) -> None:
    chunk = b" " * 65536

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"alert_key": "a", "status": "triggered", "title": "t", "message": "'
        for _ in range(5):
            yield chunk
        yield b'"}'

    response = await client.post(
        "/hooks/generic",
        content=chunks(),
        headers={"Content-Type": "application/json", TOKEN_HEADER: NEW["generic"]},
    )
    assert response.status_code == 413
    assert outbox.entries() == []


async def test_the_limit_is_per_source(outbox: GatewayOutbox) -> None:
    from syncline_app.gateway.config import load_gateway_config
    from tests.gateway.conftest import gateway_environ

    config = load_gateway_config(gateway_environ(SYNCLINE_GATEWAY_GENERIC_MAX_BODY_BYTES="2048"))
    async with gateway_client(config, outbox) as client:
        payload = {**FIRST["generic"], "details": {"padding": "x" * 3000}}
        assert (await post(client, "generic", payload)).status_code == 413
        padded = {**FIRST["datadog"], "padding": "x" * 3000}
        assert (await post(client, "datadog", padded)).status_code == 202


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "", "application/json; charset=latin-1"],
)
async def test_a_body_that_is_not_json_by_its_type_is_415(
    client: httpx.AsyncClient, outbox: GatewayOutbox, content_type: str
) -> None:
    response = await post(
        client, "generic", FIRST["generic"], headers={"Content-Type": content_type}
    )
    assert response.status_code == 415
    assert outbox.entries() == []


async def test_json_with_a_utf8_charset_is_accepted(
    client: httpx.AsyncClient, outbox: GatewayOutbox
) -> None:
    response = await post(
        client,
        "generic",
        FIRST["generic"],
        headers={"Content-Type": "application/json; charset=UTF-8"},
    )
    assert response.status_code == 202


@pytest.mark.parametrize("source", sorted(DELIVERY_ID_HEADER))
async def test_a_redelivery_by_id_is_acknowledged_and_not_stored_again(
    client: httpx.AsyncClient, outbox: GatewayOutbox, source: str
) -> None:
    first = await post(client, source, FIRST[source], delivery_id="delivery-1")
    again = await post(client, source, FIRST[source], delivery_id="delivery-1")

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == {"duplicate": True, "id": first.json()["id"]}
    assert len(outbox.entries()) == 1


@pytest.mark.parametrize("source", sorted(DELIVERY_ID_HEADER))
async def test_a_new_delivery_id_about_the_same_thing_is_a_new_delivery(
    client: httpx.AsyncClient, outbox: GatewayOutbox, source: str
) -> None:
    # Same bytes, new id: the vendor's re-notification, not its retry.
    assert (await post(client, source, FIRST[source], delivery_id="delivery-1")).status_code == 202
    assert (await post(client, source, FIRST[source], delivery_id="delivery-2")).status_code == 202
    first, second = outbox.entries()
    assert first.subject_key == second.subject_key
    assert first.id != second.id


@pytest.mark.parametrize("source", UNSIGNED)
async def test_the_same_body_again_from_a_source_without_ids_is_a_duplicate(
    client: httpx.AsyncClient, outbox: GatewayOutbox, source: str
) -> None:
    first = await post(client, source, FIRST[source])
    again = await post(client, source, FIRST[source])

    assert first.status_code == 202
    assert (again.status_code, again.json()) == (200, {"duplicate": True, "id": first.json()["id"]})
    assert len(outbox.entries()) == 1


@pytest.mark.parametrize("source", SOURCES)
async def test_a_re_notification_is_not_a_duplicate(
    client: httpx.AsyncClient, outbox: GatewayOutbox, source: str
) -> None:
    first = await post(client, source, FIRST[source], delivery_id=delivery_id_for(source))
    later = await post(client, source, LATER[source], delivery_id=delivery_id_for(source))

    assert (first.status_code, later.status_code) == (202, 202)
    one, two = outbox.entries()
    # About the same alert or record, so a flow finds the same link for both.
    assert one.subject_key == two.subject_key
    assert one.resource_id == two.resource_id


async def test_the_same_body_to_two_sources_is_two_deliveries(
    client: httpx.AsyncClient, outbox: GatewayOutbox
) -> None:
    # Generic's format is any tool's: a datadog body there is refused, not mistaken.
    assert (await post(client, "generic", FIRST["generic"])).status_code == 202
    assert (await post(client, "datadog", FIRST["datadog"])).status_code == 202
    assert len(outbox.entries()) == 2


async def test_a_delivery_pagerduty_sends_for_nothing_syncline_acts_on_is_200_and_not_stored(
    client: httpx.AsyncClient, outbox: GatewayOutbox
) -> None:
    payload = FIRST["pagerduty"]
    payload = {
        "event": {
            **payload["event"],
            "event_type": "service.updated",
            "resource_type": "service",
            "data": {"id": "PF9KMXH", "type": "service"},
        }
    }
    response = await post(client, "pagerduty", payload, delivery_id="svc-1")
    assert response.status_code == 200, response.text
    assert response.json()["ignored"] is True
    assert outbox.entries() == []


async def test_an_unknown_source_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/hooks/nagios", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 404
    assert "'nagios' is not known" in response.json()["error"]


async def test_a_disabled_source_is_404(outbox: GatewayOutbox) -> None:
    from syncline_app.gateway.config import GatewaySettings, load_gateway_config
    from tests.gateway.conftest import gateway_environ

    environ = gateway_environ()
    del environ["SYNCLINE_GATEWAY_SERVICENOW_SECRET"]
    config = load_gateway_config(environ, settings=GatewaySettings(disabled="servicenow"))
    async with gateway_client(config, outbox) as client:
        response = await post(client, "servicenow", FIRST["servicenow"])
    assert response.status_code == 404
    assert "disabled" in response.json()["error"]


async def test_healthz_reports_the_backlog(
    client: httpx.AsyncClient, outbox: GatewayOutbox
) -> None:
    assert (await client.get("/healthz")).json()["outbox"] == {
        "pending": 0,
        "oldest_pending_age_seconds": None,
    }
    await post(client, "generic", FIRST["generic"])
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["outbox"]["pending"] == 1
    assert health.json()["forwarder"] == {"state": "absent"}
