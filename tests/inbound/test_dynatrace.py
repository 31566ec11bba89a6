"""Dynatrace problem notifications, delivered through the payload syncline.inbound.dynatrace
documents (and through Dynatrace's own example template)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from syncline.inbound import InboundError, dynatrace, parse_delivery
from tests.inbound.contracts import load_contract
from tests.inbound.payloads import DYNATRACE_VALUES, documented_template, dynatrace_payload

PID = DYNATRACE_VALUES["PID"]
OPENED = datetime(2025, 11, 30, 10, 53, 20, tzinfo=UTC)


def test_an_open_problem_becomes_a_triggered_alert() -> None:
    event = parse_delivery("dynatrace", dynatrace_payload())

    assert event.event == "syncline.alert.triggered"
    assert event.subject_key == PID
    assert event.resource_id == f"syncline.alert.dynatrace.{PID}"
    assert event.occurred_at == OPENED
    alert = event.alert
    assert alert is not None
    assert alert.model_dump() == {
        "source": "dynatrace",
        "alert_key": PID,
        "status": "triggered",
        "severity": "warning",
        "raw_severity": "PERFORMANCE",
        "title": "Response time degradation",
        "display_key": "P-251130",
        "message": 'Problem "Response time degradation"\nRoot cause: checkout',
        "service": "checkout",
        "host": "web-1.prod",
        "tags": ["[Kubernetes]app:checkout", "env:prod", "team:payments"],
        "url": DYNATRACE_VALUES["ProblemURL"],
        "occurred_at": OPENED,
    }


def test_a_merge_renotification_and_the_resolution_keep_the_subject_key() -> None:
    opened = parse_delivery("dynatrace", dynatrace_payload())
    merged_events = parse_delivery(
        "dynatrace", dynatrace_payload(ImpactedEntity="2 impacted entities")
    )
    details = {**DYNATRACE_VALUES["ProblemDetailsJSONv2"], "status": "CLOSED"}
    details["endTime"] = 1764503600000
    resolved = parse_delivery(
        "dynatrace", dynatrace_payload(State="RESOLVED", ProblemDetailsJSONv2=details)
    )
    assert merged_events.event == "syncline.alert.triggered"
    assert resolved.event == "syncline.alert.resolved"
    assert {merged_events.subject_key, resolved.subject_key} == {opened.subject_key}
    assert resolved.occurred_at == datetime(2025, 11, 30, 11, 53, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state", "status"), [("MERGED", "resolved"), ("CLOSED", "resolved"), ("open", "triggered")]
)
def test_other_states(state: str, status: str) -> None:
    alert = parse_delivery("dynatrace", dynatrace_payload(State=state)).alert
    assert alert is not None and alert.status == status


@pytest.mark.parametrize(
    ("severity", "normalised"),
    [
        ("AVAILABILITY", "critical"),
        ("ERROR", "high"),
        ("RESOURCE_CONTENTION", "warning"),
        ("CUSTOM_ALERT", "warning"),
        ("SOMETHING_NEW", "unknown"),
    ],
)
def test_problem_severities(severity: str, normalised: str) -> None:
    alert = parse_delivery("dynatrace", dynatrace_payload(ProblemSeverity=severity)).alert
    assert alert is not None and (alert.severity, alert.raw_severity) == (normalised, severity)


def test_a_service_tag_names_the_service_before_the_impacted_entities() -> None:
    tags = "service:payments-api, env:prod"
    alert = parse_delivery("dynatrace", dynatrace_payload(Tags=tags)).alert
    assert alert is not None and alert.service == "payments-api"


def test_dynatraces_own_example_template_is_accepted() -> None:
    contract = load_contract("dynatrace/dynatrace-problem-notification-placeholders.derived.json")
    payload = dynatrace_payload(contract["documented_example_template"])
    assert "Problem URL" in payload and "ProblemDetailsJSON" in payload

    alert = parse_delivery("dynatrace", payload).alert
    assert alert is not None
    assert (alert.alert_key, alert.url, alert.occurred_at) == (PID, "https://example.com", OPENED)
    assert alert.message == DYNATRACE_VALUES["ImpactedEntity"]


def test_every_placeholder_in_the_documented_payload_is_a_dynatrace_placeholder() -> None:
    contract = load_contract("dynatrace/dynatrace-problem-notification-placeholders.derived.json")
    used = set(re.findall(r"\{[A-Za-z0-9]+\}", documented_template(dynatrace)))
    assert used <= set(contract["placeholders"]), used - set(contract["placeholders"])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            dynatrace_payload(State="CLOSING"),
            "dynatrace: State: unknown value 'CLOSING' (expected one of OPEN, RESOLVED, MERGED,"
            " CLOSED)",
        ),
        (
            # a placeholder misspelt in the template stays as it is
            {**dynatrace_payload(), "PID": "{Pid}"},
            "dynatrace: PID: template placeholder '{Pid}' was not substituted",
        ),
        (
            # {ImpactedEntities} put in quotes by mistake
            {
                **dynatrace_payload(),
                "ImpactedEntities": json.dumps(DYNATRACE_VALUES["ImpactedEntities"]),
            },
            "dynatrace: ImpactedEntities: expected a JSON array",
        ),
        (
            {**dynatrace_payload(), "ProblemDetailsJSONv2": {"startTime": "soon"}},
            "dynatrace: ProblemDetailsJSONv2.startTime: input should be a valid integer,"
            " unable to parse string as an integer",
        ),
        ({"PID": PID, "State": "OPEN"}, "dynatrace: ProblemTitle: missing"),
    ],
)
def test_malformed_notifications_are_refused_with_the_path(payload: object, message: str) -> None:
    with pytest.raises(InboundError) as refused:
        parse_delivery("dynatrace", payload)
    assert str(refused.value) == message


def test_a_tag_placeholder_left_unreplaced_is_no_tag() -> None:
    payload = {**dynatrace_payload(), "Owner": "{Tags[owner]}", "Tags": "{Tags}"}
    alert = parse_delivery("dynatrace", payload).alert
    assert alert is not None and alert.tags == []
