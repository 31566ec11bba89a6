"""Alert -> ServiceNow incident fields: ordered rules, defaults, the severity table."""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from syncline.inbound import Alert, Routing, parse_delivery, route
from syncline.inbound.routing import SEVERITY_LEVELS, correlation_id
from tests.inbound.payloads import datadog_payload

ROUTING = Routing.model_validate(
    {
        "rules": [
            {
                "name": "payments outage",
                "service": "checkout*",
                "severity": ["critical", "high"],
                "impact": 1,
                "urgency": 1,
                "assignment_group": "Payments",
            },
            {"tag": "team:db*", "source": "datadog", "urgency": 2, "assignment_group": "Database"},
            {"severity": "info", "impact": 3, "urgency": 3, "category": "inquiry"},
        ],
        "defaults": {"assignment_group": "Service Desk", "category": "software"},
    }
)


def _alert(**fields: Any) -> Alert:
    values: dict[str, Any] = {
        "source": "datadog",
        "alert_key": "6543210:host:web-1",
        "status": "triggered",
        "severity": "high",
        "title": "CPU high on web-1",
        "service": "checkout-api",
        "tags": ["env:prod"],
    }
    return Alert(**{**values, **fields})


def test_the_first_matching_rule_sets_the_fields_and_defaults_fill_the_rest() -> None:
    draft = route(_alert(), ROUTING)
    assert draft.matched_rule == 0
    assert draft.as_record() == {
        "short_description": "CPU high on web-1",
        "description": "Source: datadog (alert 6543210:host:web-1)\nSeverity: high\n"
        "Service: checkout-api\nTags: env:prod",
        "impact": "1",
        "urgency": "1",
        "assignment_group": "Payments",
        "category": "software",
        "correlation_id": "datadog:6543210:host:web-1",
        "correlation_display": "Syncline",
    }


def test_a_rule_without_impact_takes_it_from_the_severity_table() -> None:
    draft = route(_alert(service="db", tags=["team:DBA-core"], severity="warning"), ROUTING)
    assert draft.matched_rule == 1  # tag globs ignore case
    assert (draft.impact, draft.urgency, draft.assignment_group) == (2, 2, "Database")


def test_all_given_conditions_must_hold() -> None:
    # rule 1 wants a datadog alert; this one is from PagerDuty
    draft = route(_alert(source="pagerduty", service="db", tags=["team:dba"]), ROUTING)
    assert draft.matched_rule is None
    assert (draft.impact, draft.urgency, draft.assignment_group) == (2, 1, "Service Desk")


@pytest.mark.parametrize(("severity", "levels"), sorted(SEVERITY_LEVELS.items()))
def test_without_rules_the_severity_table_decides(severity: Any, levels: tuple[int, int]) -> None:
    draft = route(_alert(severity=severity), Routing())
    assert (draft.impact, draft.urgency) == levels
    assert draft.priority is None and "priority" not in draft.as_record()


def test_a_resolved_alert_resolves_the_incident() -> None:
    recovered = parse_delivery(
        "datadog", datadog_payload(ALERT_TRANSITION="Recovered", ALERT_TYPE="success")
    )
    assert recovered.alert is not None
    record = route(recovered.alert, ROUTING).as_record()
    assert record["state"] == "6"
    assert record["close_code"] == "Solution provided"
    assert record["close_notes"] == "Recovered in datadog at 2025-11-30 10:53:20 UTC."
    assert record["correlation_id"] == "datadog:6543210:env:prod,host:web-1"


def test_long_titles_and_keys_fit_servicenows_fields() -> None:
    key = "k" * 200
    draft = route(_alert(title="Disk  full\n" + "x" * 300, alert_key=key), Routing())
    assert len(draft.short_description) == 160
    assert draft.short_description.startswith("Disk full x") and draft.short_description[-1] == "…"
    assert len(draft.correlation_id) <= 100
    assert draft.correlation_id == correlation_id("datadog", key)  # stable
    assert draft.correlation_id != correlation_id("datadog", key + "2")


def test_a_catch_all_rule_must_come_last() -> None:
    with pytest.raises(ValidationError, match=r"rules\[0\] has no condition"):
        Routing.model_validate({"rules": [{"urgency": 3}, {"service": "x", "urgency": 1}]})
    assert Routing.model_validate({"rules": [{"service": "x"}, {"urgency": 3}]})


@pytest.mark.parametrize(
    "routing",
    [
        {"rules": [{"service": "x", "urgncy": 1}]},
        {"rules": [{"service": "x", "urgency": 4}]},
        {"rules": [{"severity": "severe"}]},
        {"rules": [{"source": "jira"}]},
        {"defaults": {"impact": 0}},
    ],
)
def test_bad_routing_is_refused(routing: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Routing.model_validate(routing)


# --- properties ----------------------------------------------------------------------------

SEVERITIES = ["critical", "high", "warning", "info", "unknown"]
SERVICES = ["checkout", "checkout-api", "db", "search", None]
TAGS = ["team:db", "team:web", "env:prod", "env:dev"]
SOURCES = ["datadog", "dynatrace", "pagerduty", "generic"]

rules = st.lists(
    st.fixed_dictionaries(
        {
            "impact": st.integers(1, 3),
            "urgency": st.integers(1, 3),
            "assignment_group": st.sampled_from(["A", "B", "C"]),
        },
        optional={
            "service": st.sampled_from(["checkout*", "db", "*a*"]),
            "tag": st.sampled_from(["team:*", "env:prod"]),
            "severity": st.lists(st.sampled_from(SEVERITIES), min_size=1, max_size=2),
            "source": st.sampled_from(SOURCES),
        },
    ).filter(lambda rule: len(rule) > 3),  # at least one condition
    max_size=5,
)
alerts = st.builds(
    _alert,
    source=st.sampled_from(SOURCES),
    severity=st.sampled_from(SEVERITIES),
    service=st.sampled_from(SERVICES),
    tags=st.lists(st.sampled_from(TAGS), max_size=3),
)


def _matches(rule: dict[str, Any], alert: Alert) -> bool:
    """The rule semantics, written out plainly."""
    if "source" in rule and alert.source != rule["source"]:
        return False
    if "severity" in rule and alert.severity not in rule["severity"]:
        return False
    if "service" in rule and (
        alert.service is None or not fnmatch.fnmatchcase(alert.service, rule["service"])
    ):
        return False
    return "tag" not in rule or any(fnmatch.fnmatchcase(t, rule["tag"]) for t in alert.tags)


@settings(max_examples=300, deadline=None)
@given(rules=rules, alert=alerts, default_group=st.sampled_from(["Service Desk", None]))
def test_first_match_wins_else_defaults_then_severity(
    rules: list[dict[str, Any]], alert: Alert, default_group: str | None
) -> None:
    routing = Routing.model_validate(
        {"rules": rules, "defaults": {"assignment_group": default_group}}
    )
    draft = route(alert, routing)
    matching = [i for i, rule in enumerate(rules) if _matches(rule, alert)]
    if matching:
        first = rules[matching[0]]
        assert draft.matched_rule == matching[0]
        assert (draft.impact, draft.urgency) == (first["impact"], first["urgency"])
        assert draft.assignment_group == first["assignment_group"]
    else:
        assert draft.matched_rule is None
        assert (draft.impact, draft.urgency) == SEVERITY_LEVELS[alert.severity]
        assert draft.assignment_group == default_group
    assert draft.correlation_id == f"{alert.source}:{alert.alert_key}"
    assert all(isinstance(value, str) for value in draft.as_record().values())


def test_an_alert_without_a_time_says_so_in_the_close_notes() -> None:
    draft = route(_alert(status="resolved", occurred_at=None), Routing())
    assert draft.close_notes == "Recovered in datadog at an unreported time."
    moment = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert route(_alert(status="resolved", occurred_at=moment), Routing()).close_notes == (
        "Recovered in datadog at 2025-01-02 03:04:05 UTC."
    )
