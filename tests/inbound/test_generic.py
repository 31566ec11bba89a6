"""Syncline's generic JSON alert format."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncline.inbound import InboundError, parse_delivery
from tests.inbound.payloads import generic_payload


def test_a_generic_alert() -> None:
    event = parse_delivery("generic", generic_payload())

    assert event.event == "syncline.alert.triggered"
    assert event.subject_key == "disk-full:web-1"
    assert event.resource_id == "syncline.alert.generic.disk-full:web-1"
    assert event.alert is not None
    assert event.alert.model_dump() == {
        "source": "generic",
        "alert_key": "disk-full:web-1",
        "status": "triggered",
        "severity": "critical",
        "raw_severity": "critical",
        "title": "Disk full on web-1",
        "display_key": None,
        "message": "/var is 100% full",
        "service": "checkout",
        "host": "web-1",
        "tags": ["env:prod", "team:payments"],
        "url": "https://monitor.example.com/alerts/42",
        "occurred_at": datetime(2025, 11, 30, 10, 0, tzinfo=UTC),
    }


def test_recovery_and_acknowledgement_keep_the_subject_key() -> None:
    triggered = parse_delivery("generic", generic_payload())
    for status in ("acknowledged", "Resolved"):
        later = parse_delivery("generic", generic_payload(status=status))
        assert later.event == f"syncline.alert.{status.lower()}"
        assert later.subject_key == triggered.subject_key


def test_id_stands_in_for_alert_key_and_numbers_are_ids() -> None:
    event = parse_delivery("generic", generic_payload(alert_key=None, id=4711))
    assert event.subject_key == "4711"


def test_minimal_alert_with_tag_mapping_and_epoch_time() -> None:
    payload = {
        "id": "a1",
        "status": "resolved",
        "title": "Queue drained",
        "description": "back to normal",
        "severity": "sev2",
        "tags": {"env": "prod", "canary": ""},
        "occurred_at": 1764500000,
        "details": {"anything": ["goes", {"here": 1}]},
    }
    alert = parse_delivery("generic", payload).alert
    assert alert is not None
    assert alert.tags == ["env:prod", "canary"]
    assert (alert.severity, alert.raw_severity, alert.message) == ("high", "sev2", "back to normal")
    assert alert.occurred_at == datetime(2025, 11, 30, 10, 53, 20, tzinfo=UTC)


def test_an_unknown_severity_is_kept_raw() -> None:
    alert = parse_delivery("generic", generic_payload(severity="purple")).alert
    assert alert is not None and (alert.severity, alert.raw_severity) == ("unknown", "purple")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (generic_payload(alert_key=None), "generic: alert_key: missing (or give id)"),
        (
            generic_payload(status="firing"),
            "generic: status: unknown value 'firing' (expected one of triggered, acknowledged,"
            " resolved)",
        ),
        (generic_payload(sevrity="high"), "generic: sevrity: unknown field"),
        (generic_payload(title=""), "generic: title: empty"),
        (generic_payload(tags=["env:prod", {"a": 1}]), "generic: tags[1]: expected a string"),
        (
            generic_payload(occurred_at="soon"),
            "generic: occurred_at: expected an ISO 8601 time or epoch seconds or milliseconds",
        ),
        (generic_payload(details="x"), "generic: details: expected a JSON object"),
        ([generic_payload()], "generic: body: expected a JSON object"),
    ],
)
def test_malformed_alerts_are_refused_with_the_path(payload: object, message: str) -> None:
    with pytest.raises(InboundError) as refused:
        parse_delivery("generic", payload)
    assert str(refused.value) == message
