"""Datadog monitor notifications, delivered through the template syncline.inbound.datadog
documents."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncline.inbound import InboundError, parse_delivery
from syncline.inbound.datadog import TRANSITIONS
from tests.inbound.payloads import datadog_payload


def test_a_triggered_monitor_becomes_a_triggered_alert() -> None:
    event = parse_delivery("datadog", datadog_payload())

    assert event.event == "syncline.alert.triggered"
    assert event.subject_key == "6543210:env:prod,host:web-1"
    assert event.resource_id == "syncline.alert.datadog.6543210:env:prod%2Chost:web-1"
    assert event.occurred_at == datetime(2025, 11, 30, 10, 53, 20, tzinfo=UTC)
    assert event.vendor_event_id == "7650126312123897123"
    assert event.record is None
    alert = event.alert
    assert alert is not None
    assert alert.model_dump() == {
        "source": "datadog",
        "alert_key": "6543210:env:prod,host:web-1",
        "status": "triggered",
        "severity": "high",
        "raw_severity": "P2",
        "title": "[P2] CPU above 90% on web-1",
        "display_key": None,
        "message": "CPU is at 97% on web-1. @webhook-syncline",
        "service": "checkout",
        "host": "web-1",
        "tags": ["env:prod", "service:checkout", "team:payments"],
        "url": "https://app.datadoghq.com/monitors/6543210",
        "occurred_at": datetime(2025, 11, 30, 10, 53, 20, tzinfo=UTC),
    }


@pytest.mark.parametrize("transition", ["Re-Triggered", "Renotify", "Warn", "No Data"])
def test_renotifications_keep_the_subject_key(transition: str) -> None:
    first = parse_delivery("datadog", datadog_payload())
    again = parse_delivery(
        "datadog",
        # a later notification: new event id and time, scope tags in another order
        datadog_payload(
            ALERT_TRANSITION=transition,
            ALERT_SCOPE="env:prod, host:web-1",
            ID="7650126312123899999",
            DATE="1764500600000",
        ),
    )
    assert again.event == "syncline.alert.triggered"
    assert (again.subject_key, again.resource_id) == (first.subject_key, first.resource_id)


def test_recovery_resolves_the_same_alert() -> None:
    triggered = parse_delivery("datadog", datadog_payload())
    recovered = parse_delivery(
        "datadog", datadog_payload(ALERT_TRANSITION="Recovered", ALERT_TYPE="success")
    )
    assert recovered.event == "syncline.alert.resolved"
    assert recovered.alert is not None and recovered.alert.status == "resolved"
    assert recovered.subject_key == triggered.subject_key
    assert recovered.resource_id == triggered.resource_id


def test_each_group_of_a_multi_alert_monitor_is_its_own_alert() -> None:
    web1 = parse_delivery("datadog", datadog_payload())
    web2 = parse_delivery("datadog", datadog_payload(ALERT_SCOPE="host:web-2,env:prod"))
    assert web1.subject_key != web2.subject_key


def test_without_a_scope_the_aggregation_key_then_the_monitor_id_name_the_alert() -> None:
    by_aggregation = parse_delivery("datadog", datadog_payload(ALERT_SCOPE=""))
    assert by_aggregation.subject_key == "6543210:9bd4ac313a4d1e8fae2482df7b77628"
    simple = parse_delivery("datadog", datadog_payload(ALERT_SCOPE="*", AGGREG_KEY=""))
    assert simple.subject_key == "6543210"


@pytest.mark.parametrize(
    ("transition", "alert_type", "status"),
    [
        ("Null", "success", "resolved"),
        ("Null", "error", "triggered"),
        ("re-no data", "warning", "triggered"),  # case and blanks do not matter
        (" RECOVERED ", "success", "resolved"),
    ],
)
def test_older_and_oddly_written_transitions(transition: str, alert_type: str, status: str) -> None:
    event = parse_delivery(
        "datadog", datadog_payload(ALERT_TRANSITION=transition, ALERT_TYPE=alert_type)
    )
    assert event.alert is not None and event.alert.status == status


def test_every_documented_transition_is_understood() -> None:
    for transition in TRANSITIONS:
        assert parse_delivery("datadog", datadog_payload(ALERT_TRANSITION=transition)).alert


@pytest.mark.parametrize(
    ("priority", "transition", "alert_type", "severity", "raw"),
    [
        ("P1", "Triggered", "error", "critical", "P1"),
        ("P4", "Triggered", "error", "info", "P4"),
        ("", "Triggered", "error", "high", "error"),
        ("", "Warn", "warning", "warning", "warning"),
        ("", "No Data", "error", "warning", "error"),
        ("$ALERT_PRIORITY", "Triggered", "info", "info", "info"),  # left unsubstituted
        ("", "Triggered", "", "unknown", None),
    ],
)
def test_severity_comes_from_the_priority_else_the_transition_and_type(
    priority: str, transition: str, alert_type: str, severity: str, raw: str | None
) -> None:
    payload = datadog_payload(
        ALERT_PRIORITY=priority, ALERT_TRANSITION=transition, ALERT_TYPE=alert_type
    )
    alert = parse_delivery("datadog", payload).alert
    assert alert is not None
    assert (alert.severity, alert.raw_severity) == (severity, raw)


def test_the_vendor_default_fields_stand_in_for_the_optional_ones() -> None:
    payload = {
        "alert_id": 6543210,  # written without quotes in the template
        "alert_transition": "Triggered",
        "event_title": "[Triggered] CPU high",
        "event_msg": "%%%\nCPU is high\n%%%",
        "last_updated": "1764500000000",
        "service": "api",
        "tags": "service:checkout",
        "team_note": "our own field",
    }
    alert = parse_delivery("datadog", payload).alert
    assert alert is not None
    assert (alert.alert_key, alert.title, alert.service) == (
        "6543210",
        "[Triggered] CPU high",
        "api",
    )
    assert alert.message == "%%%\nCPU is high\n%%%"
    assert alert.occurred_at == datetime(2025, 11, 30, 10, 53, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            datadog_payload(ALERT_TRANSITION="Trigerred"),
            "datadog: alert_transition: unknown value 'Trigerred' (expected one of Triggered,"
            " Re-Triggered, Recovered, Warn, Re-Warn, No Data, Re-No Data, Renotify, Null)",
        ),
        (datadog_payload(ALERT_ID=""), "datadog: alert_id: empty"),
        (
            datadog_payload(ALERT_ID="$ALERT_ID"),
            "datadog: alert_id: template placeholder '$ALERT_ID' was not substituted",
        ),
        (
            datadog_payload(ALERT_TITLE=""),
            "datadog: alert_title: missing (or give event_title)",
        ),
        (
            datadog_payload(DATE="yesterday"),
            "datadog: date: expected an ISO 8601 time or epoch seconds or milliseconds",
        ),
        ({"alert_id": "1", "alert_title": "x"}, "datadog: alert_transition: missing"),
        (
            {"alert_id": ["1"], "alert_transition": 3},
            "datadog: alert_id: expected a string (and 1 more problem)",
        ),
        ("alert_id=1", "datadog: body: expected a JSON object"),
    ],
)
def test_malformed_notifications_are_refused_with_the_path(payload: object, message: str) -> None:
    with pytest.raises(InboundError) as refused:
        parse_delivery("datadog", payload)
    assert str(refused.value) == message
