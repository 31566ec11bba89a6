"""PagerDuty v3 webhook deliveries (envelope per the vendor's docs; see test_contracts)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncline.inbound import IgnoredDelivery, InboundError, parse_delivery
from tests.inbound.payloads import (
    pagerduty_annotated_payload,
    pagerduty_payload,
    pagerduty_service_payload,
)

OCCURRED = datetime(2020, 10, 2, 18, 45, 22, 169000, tzinfo=UTC)


def test_a_triggered_incident_becomes_a_triggered_alert() -> None:
    event = parse_delivery("pagerduty", pagerduty_payload())

    assert event.event == "syncline.alert.triggered"
    assert event.subject_key == "PGR0VU2"
    assert event.resource_id == "syncline.alert.pagerduty.PGR0VU2"
    assert event.vendor_event_id == "01DEN4UZWGVH2F6LXTA3NSGXUH"
    assert event.occurred_at == OCCURRED
    alert = event.alert
    assert alert is not None
    assert alert.model_dump() == {
        "source": "pagerduty",
        "alert_key": "PGR0VU2",
        "status": "triggered",
        "severity": "critical",
        "raw_severity": "P1",
        "title": "A little bump in the road",
        "display_key": "2",
        "message": None,
        "service": "API Service",
        "host": None,
        "tags": ["team:Engineering"],
        "url": "https://acme.pagerduty.com/incidents/PGR0VU2",
        "occurred_at": OCCURRED,
    }


@pytest.mark.parametrize(
    ("event_type", "data_status", "event_name"),
    [
        ("incident.acknowledged", "acknowledged", "syncline.alert.acknowledged"),
        ("incident.unacknowledged", "triggered", "syncline.alert.triggered"),
        ("incident.resolved", "resolved", "syncline.alert.resolved"),
        ("incident.reopened", "triggered", "syncline.alert.triggered"),
        # not a change of state: the incident's own status says where it stands
        ("incident.priority_updated", "acknowledged", "syncline.alert.acknowledged"),
        ("incident.escalated", "triggered", "syncline.alert.triggered"),
        ("incident.custom_field_values.updated", "resolved", "syncline.alert.resolved"),
    ],
)
def test_every_incident_event_keeps_the_subject_key(
    event_type: str, data_status: str, event_name: str
) -> None:
    first = parse_delivery("pagerduty", pagerduty_payload())
    later = parse_delivery(
        "pagerduty", pagerduty_payload(event_type, event_id="01DEN5", status=data_status)
    )
    assert later.event == event_name
    assert (later.subject_key, later.resource_id) == (first.subject_key, first.resource_id)


def test_the_event_type_wins_over_a_stale_status_in_the_data() -> None:
    # the event type is the change announced; it decides
    event = parse_delivery("pagerduty", pagerduty_payload("incident.resolved", status="triggered"))
    assert event.event == "syncline.alert.resolved"


@pytest.mark.parametrize(
    ("priority", "urgency", "severity", "raw"),
    [
        ({"id": "P2ID", "summary": "P3", "type": "priority_reference"}, "high", "warning", "P3"),
        (None, "high", "high", "high"),
        (None, "low", "warning", "low"),
    ],
)
def test_severity_from_priority_else_urgency(
    priority: dict[str, str] | None, urgency: str, severity: str, raw: str
) -> None:
    payload = pagerduty_payload(urgency=urgency)
    payload["event"]["data"]["priority"] = priority
    alert = parse_delivery("pagerduty", payload).alert
    assert alert is not None and (alert.severity, alert.raw_severity) == (severity, raw)


def test_an_annotation_carries_no_status_and_is_ignored_not_refused() -> None:
    with pytest.raises(IgnoredDelivery) as ignored:
        parse_delivery("pagerduty", pagerduty_annotated_payload())
    assert str(ignored.value) == (
        "pagerduty: event.data: incident.annotated carries an incident_note, not the"
        " incident's status; nothing to emit"
    )


def test_attached_data_with_a_status_is_an_alert_about_the_referenced_incident() -> None:
    payload = pagerduty_annotated_payload()
    payload["event"]["data"]["status"] = "acknowledged"
    event = parse_delivery("pagerduty", payload)
    assert event.event == "syncline.alert.acknowledged"
    assert event.subject_key == "PGR0VU2"
    assert event.alert is not None and event.alert.title == "A little bump in the road"


def test_service_events_are_ignored() -> None:
    with pytest.raises(IgnoredDelivery, match=r"^pagerduty: event.resource_type: service.updated"):
        parse_delivery("pagerduty", pagerduty_service_payload())


def _without(path: tuple[str, ...]) -> dict[str, object]:
    payload = pagerduty_payload()
    node = payload
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return payload


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (_without(("event", "data", "id")), "pagerduty: event.data.id: missing"),
        (_without(("event", "agent")), "pagerduty: event.agent: missing"),
        (_without(("event",)), "pagerduty: event: missing"),
        (
            pagerduty_payload(number="two"),
            "pagerduty: event.data.number: input should be a valid integer, unable to parse"
            " string as an integer",
        ),
        (
            pagerduty_payload("incident.priority_updated", status="snoozed"),
            "pagerduty: event.data.status: unknown value 'snoozed' (expected one of triggered,"
            " acknowledged, resolved)",
        ),
        (
            pagerduty_payload("incident.priority_updated", status=None),
            "pagerduty: event.data.status: missing",
        ),
        (
            pagerduty_payload("Incident Triggered"),
            "pagerduty: event.event_type: string should match pattern"
            " '^(incident|service)\\.[a-z_.]+$'",
        ),
        (
            {"event": {**pagerduty_payload()["event"], "occurred_at": "last tuesday"}},
            "pagerduty: event.occurred_at: expected an ISO 8601 time or epoch seconds or"
            " milliseconds",
        ),
        (
            {"event": {**pagerduty_payload()["event"], "resource_type": "user"}},
            "pagerduty: event.resource_type: input should be 'incident' or 'service'",
        ),
        ({"messages": []}, "pagerduty: event: missing"),
    ],
)
def test_malformed_deliveries_are_refused_with_the_path(payload: object, message: str) -> None:
    with pytest.raises(InboundError) as refused:
        parse_delivery("pagerduty", payload)
    assert str(refused.value) == message
    assert not isinstance(refused.value, IgnoredDelivery)
