"""The test deliveries are faithful to the vendors' descriptions in tests/contracts/.

PagerDuty and Jira publish no schema of their webhook bodies; the derived JSON schemas in
tests/contracts/ were written from their docs. Every PagerDuty and Jira fixture must pass
them, and a fixture broken the way a schema forbids must be refused by the parser too.
Datadog and Dynatrace deliver templates: the documented templates may use only the
vendors' documented variables.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from syncline.inbound import InboundError, datadog, parse_delivery
from syncline.inbound.datadog import TRANSITIONS
from tests.inbound.contracts import load_contract
from tests.inbound.payloads import (
    datadog_payload,
    documented_template,
    jira_payload,
    pagerduty_annotated_payload,
    pagerduty_payload,
    pagerduty_service_payload,
)
from tests.support.openapi_contract import SPECS_DIR

PAGERDUTY_SCHEMA = "pagerduty/pagerduty-webhook-v3-event.derived.schema.json"
JIRA_SCHEMA = "jira/jira-webhook-event.derived.schema.json"
DATADOG_VARIABLES = "datadog/datadog-webhook-variables.derived.json"
COPIED_HERE = (
    PAGERDUTY_SCHEMA,
    JIRA_SCHEMA,
    DATADOG_VARIABLES,
    "dynatrace/dynatrace-problem-notification-placeholders.derived.json",
    "BEHAVIOURS.md",
)


def _validator(relative_path: str) -> jsonschema.Draft202012Validator:
    schema = load_contract(relative_path)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


PAGERDUTY_FIXTURES: dict[str, Callable[[], dict[str, Any]]] = {
    "triggered": pagerduty_payload,
    "acknowledged": lambda: pagerduty_payload("incident.acknowledged", status="acknowledged"),
    "resolved": lambda: pagerduty_payload("incident.resolved", status="resolved"),
    "priority_updated": lambda: pagerduty_payload("incident.priority_updated", priority=None),
    "annotated": pagerduty_annotated_payload,
    "service": pagerduty_service_payload,
}
JIRA_FIXTURES: dict[str, Callable[[], dict[str, Any]]] = {
    "updated": jira_payload,
    "created": lambda: jira_payload("jira:issue_created"),
    "deleted": lambda: jira_payload("jira:issue_deleted"),
    "comment": lambda: jira_payload("comment_created"),
}


@pytest.mark.parametrize("name", sorted(PAGERDUTY_FIXTURES))
def test_pagerduty_fixtures_match_the_schema(name: str) -> None:
    _validator(PAGERDUTY_SCHEMA).validate(PAGERDUTY_FIXTURES[name]())


@pytest.mark.parametrize("name", sorted(JIRA_FIXTURES))
def test_jira_fixtures_match_the_schema(name: str) -> None:
    _validator(JIRA_SCHEMA).validate(JIRA_FIXTURES[name]())


def _broken(payload: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    """``payload`` with the value at ``path`` replaced (``...`` deletes it)."""
    broken = copy.deepcopy(payload)
    node = broken
    for part in path[:-1]:
        node = node[part]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return broken


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("event", "id"), ...),
        (("event", "event_type"), "incident triggered"),
        (("event", "resource_type"), "alert"),
        (("event", "agent"), ...),
        (("event", "client"), "PagerDuty"),
        (("event", "data"), ...),
        (("event", "data", "id"), ...),
        (("event", "data", "type"), ...),
        (("event",), []),
    ],
)
def test_pagerduty_deliveries_the_schema_refuses_are_refused(
    path: tuple[str, ...], value: object
) -> None:
    payload = _broken(pagerduty_payload(), path, value)
    assert not _validator(PAGERDUTY_SCHEMA).is_valid(payload)
    with pytest.raises(InboundError):
        parse_delivery("pagerduty", payload)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("timestamp",), ...),
        (("webhookEvent",), ...),
        (("issue", "id"), ...),
        (("issue", "key"), ...),
        (("issue", "fields"), ...),
        (("changelog", "items", 0, "field"), 7),
        (("changelog", "items"), {"field": "status"}),
    ],
)
def test_jira_deliveries_the_schema_refuses_are_refused(
    path: tuple[Any, ...], value: object
) -> None:
    payload = _broken(jira_payload(), path, value)
    assert not _validator(JIRA_SCHEMA).is_valid(payload)
    with pytest.raises(InboundError):
        parse_delivery("jira", payload)


def test_the_datadog_template_uses_only_documented_variables() -> None:
    documented = set(load_contract(DATADOG_VARIABLES)["variables_documented_core"])
    used = set(re.findall(r"\$[A-Z_]+", documented_template(datadog)))
    assert used and used <= documented, used - documented


def test_every_documented_datadog_transition_is_known() -> None:
    assert list(TRANSITIONS) == load_contract(DATADOG_VARIABLES)["ALERT_TRANSITION_values"]


def test_datadogs_default_payload_is_refused_with_a_pointer_to_the_template() -> None:
    default = json.dumps(load_contract(DATADOG_VARIABLES)["default_payload_when_payload_is_null"])
    with pytest.raises(InboundError, match=r"^datadog: alert_id: missing \(and 1 more problem\)$"):
        parse_delivery("datadog", datadog_payload(default))


@pytest.mark.parametrize("relative_path", COPIED_HERE)
def test_the_copies_are_the_files_named_in_provenance(relative_path: str) -> None:
    entries = {entry["file"]: entry for entry in load_contract("PROVENANCE.json")}
    data = (SPECS_DIR / relative_path).read_bytes()
    entry = entries[relative_path]
    assert (entry["bytes"], entry["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert entry["source"]
