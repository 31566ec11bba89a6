"""Deliveries as the vendors send them, built from their descriptions in tests/contracts/.

Datadog and Dynatrace fill a user-written template: the builders here take the template
each parser module *documents* (its docstring) and substitute values the way the tool does,
so the documentation and the parser cannot drift apart. PagerDuty and Jira send their own
envelopes; the builders follow the shapes in the vendors' docs, and test_contracts checks
them against the JSON schemas.
"""

from __future__ import annotations

import copy
import json
import re
from types import ModuleType
from typing import Any

from syncline.inbound import datadog, dynatrace

SYS_ID = "46d44a5e2f1b3110c5e6d0e7f6a4e1b2"


def documented_template(module: ModuleType) -> str:
    """The first literal block (after ``::``) of a parser module's docstring, dedented."""
    doc = module.__doc__ or ""
    block = doc.split("::\n\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines).strip()


# --- Datadog -------------------------------------------------------------------------------

DATADOG_VALUES: dict[str, str] = {
    "$ALERT_ID": "6543210",
    "$ALERT_TRANSITION": "Triggered",
    "$ALERT_TITLE": "[P2] CPU above 90% on web-1",
    "$ALERT_SCOPE": "host:web-1,env:prod",
    "$AGGREG_KEY": "9bd4ac313a4d1e8fae2482df7b77628",
    "$ALERT_CYCLE_KEY": "4327312432423429842",
    "$ALERT_TYPE": "error",
    "$ALERT_PRIORITY": "P2",
    "$HOSTNAME": "web-1",
    "$TAGS": "env:prod,service:checkout,team:payments",
    "$LINK": "https://app.datadoghq.com/monitors/6543210",
    "$TEXT_ONLY_MSG": "CPU is at 97% on web-1. @webhook-syncline",
    "$DATE": "1764500000000",
    "$ID": "7650126312123897123",
}


def datadog_payload(template: str | None = None, **values: str) -> dict[str, Any]:
    """The documented template (or ``template``) as Datadog delivers it: each ``$VARIABLE``
    replaced by its value, JSON-escaped; ``values`` are keyed by variable name without ``$``."""
    filled = {**DATADOG_VALUES, **{f"${name}": value for name, value in values.items()}}
    text = template if template is not None else documented_template(datadog)
    # Longest names first: $ALERT_ID must not eat the start of $ALERT_ID_SOMETHING.
    for name in sorted(filled, key=len, reverse=True):
        text = text.replace(name, json.dumps(filled[name])[1:-1])
    result: dict[str, Any] = json.loads(text)
    return result


# --- Dynatrace -----------------------------------------------------------------------------

DYNATRACE_VALUES: dict[str, Any] = {
    "PID": "-1234567890123456789_1764500000000V2",
    "ProblemID": "P-251130",
    "State": "OPEN",
    "ProblemTitle": "Response time degradation",
    "ProblemSeverity": "PERFORMANCE",
    "ProblemImpact": "SERVICE",
    "ProblemURL": "https://abc12345.live.dynatrace.com/#problems/problemdetails;pid=-123",
    "ImpactedEntity": "Response time degradation on Web service checkout",
    "ImpactedEntities": [
        {"type": "SERVICE", "name": "checkout", "entity": "SERVICE-1A2B3C4D5E6F7A8B"},
        {"type": "HOST", "name": "web-1.prod", "entity": "HOST-0A1B2C3D4E5F6A7B"},
    ],
    "Tags": "[Kubernetes]app:checkout, env:prod, team:payments",
    "ProblemDetailsText": 'Problem "Response time degradation"\nRoot cause: checkout',
    "ProblemDetailsJSONv2": {
        "problemId": "-1234567890123456789_1764500000000V2",
        "displayId": "P-251130",
        "title": "Response time degradation",
        "status": "OPEN",
        "severityLevel": "PERFORMANCE",
        "impactLevel": "SERVICE",
        "startTime": 1764500000000,
        "endTime": -1,
        "entityTags": [],
    },
    # Only in Dynatrace's own example template.
    "ProblemDetailsHTML": "<h1>Response time degradation</h1>",
    "ProblemDetailsJSON": {"id": "-123", "startTime": 1764500000000, "endTime": -1},
}


def dynatrace_payload(template: str | None = None, **values: Any) -> dict[str, Any]:
    """The documented template (or ``template``) as Dynatrace delivers it: a quoted
    ``"{Placeholder}"`` gets the JSON-escaped text, an unquoted one (``{ImpactedEntities}``)
    the JSON itself. A placeholder without a value is left as it is, as Dynatrace does."""
    filled = {**DYNATRACE_VALUES, **values}
    text = template if template is not None else documented_template(dynatrace)

    def substitute(match: re.Match[str]) -> str:
        quote, name = match.group(1), match.group(2)
        if name not in filled:
            return match.group(0)
        value = filled[name]
        if quote:
            return json.dumps(value)[1:-1] if isinstance(value, str) else str(value)
        return json.dumps(value)

    text = re.sub(r'("?)\{([A-Za-z0-9]+)\}', lambda m: m.group(1) + substitute(m), text)
    result: dict[str, Any] = json.loads(text)
    return result


# --- PagerDuty -----------------------------------------------------------------------------

_PD_INCIDENT: dict[str, Any] = {
    "id": "PGR0VU2",
    "type": "incident",
    "self": "https://api.pagerduty.com/incidents/PGR0VU2",
    "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
    "number": 2,
    "status": "triggered",
    "incident_key": "d3640fbd41094207a1c11e58e46b1662",
    "created_at": "2020-04-09T15:16:27Z",
    "title": "A little bump in the road",
    "service": {
        "html_url": "https://acme.pagerduty.com/services/PF9KMXH",
        "id": "PF9KMXH",
        "self": "https://api.pagerduty.com/services/PF9KMXH",
        "summary": "API Service",
        "type": "service_reference",
    },
    "assignees": [
        {
            "html_url": "https://acme.pagerduty.com/users/PTUXL6G",
            "id": "PTUXL6G",
            "self": "https://api.pagerduty.com/users/PTUXL6G",
            "summary": "User 123",
            "type": "user_reference",
        }
    ],
    "escalation_policy": {
        "html_url": "https://acme.pagerduty.com/escalation_policies/PUS0KTE",
        "id": "PUS0KTE",
        "self": "https://api.pagerduty.com/escalation_policies/PUS0KTE",
        "summary": "Default",
        "type": "escalation_policy_reference",
    },
    "teams": [
        {
            "html_url": "https://acme.pagerduty.com/teams/PFCVPS0",
            "id": "PFCVPS0",
            "self": "https://api.pagerduty.com/teams/PFCVPS0",
            "summary": "Engineering",
            "type": "team_reference",
        }
    ],
    "priority": {
        "html_url": "https://acme.pagerduty.com/account/incident_priorities",
        "id": "PSO75BM",
        "self": "https://api.pagerduty.com/priorities/PSO75BM",
        "summary": "P1",
        "type": "priority_reference",
    },
    "urgency": "high",
    "conference_bridge": {"conference_number": "+1 1234123412,,987654321#"},
    "resolve_reason": None,
}
_PD_AGENT = {
    "html_url": "https://acme.pagerduty.com/users/PLH1HKV",
    "id": "PLH1HKV",
    "self": "https://api.pagerduty.com/users/PLH1HKV",
    "summary": "Tenex Engineer",
    "type": "user_reference",
}


def pagerduty_payload(
    event_type: str = "incident.triggered",
    *,
    event_id: str = "01DEN4UZWGVH2F6LXTA3NSGXUH",
    **data: Any,
) -> dict[str, Any]:
    """An incident event; ``data`` overrides fields of the incident (None removes one)."""
    incident = copy.deepcopy(_PD_INCIDENT)
    for name, value in data.items():
        if value is None:
            incident.pop(name, None)
        else:
            incident[name] = value
    return {
        "event": {
            "id": event_id,
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": "2020-10-02T18:45:22.169Z",
            "agent": copy.deepcopy(_PD_AGENT),
            "client": None,
            "data": incident,
        }
    }


def pagerduty_annotated_payload() -> dict[str, Any]:
    """``incident.annotated``: the data is the note, the incident only a reference."""
    return {
        "event": {
            "id": "01DEN52LNG1G0UTJRXVW3IOIUF",
            "event_type": "incident.annotated",
            "resource_type": "incident",
            "occurred_at": "2020-10-02T18:50:00.000Z",
            "agent": copy.deepcopy(_PD_AGENT),
            "client": None,
            "data": {
                "incident": {
                    "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
                    "id": "PGR0VU2",
                    "self": "https://api.pagerduty.com/incidents/PGR0VU2",
                    "summary": "A little bump in the road",
                    "type": "incident_reference",
                },
                "id": "P9TJRRA",
                "content": "Good news, we figured out what the issue is!",
                "trimmed": False,
                "type": "incident_note",
            },
        }
    }


def pagerduty_service_payload() -> dict[str, Any]:
    return {
        "event": {
            "id": "01DEN5Z7A8OKY4ZVYE3KWRG1PN",
            "event_type": "service.updated",
            "resource_type": "service",
            "occurred_at": "2020-10-02T19:00:00.000Z",
            "agent": None,
            "client": None,
            "data": {"id": "PF9KMXH", "type": "service", "summary": "API Service"},
        }
    }


# --- Jira ----------------------------------------------------------------------------------

_JIRA_USER = {
    "self": "https://acme.atlassian.net/rest/api/2/user?accountId=5b10ac8d82e05b22cc7d4ef5",
    "accountId": "5b10ac8d82e05b22cc7d4ef5",
    "displayName": "Jane Doe",
    "active": True,
    "timeZone": "Europe/Berlin",
    "accountType": "atlassian",
}
_JIRA_ISSUE = {
    "id": "10002",
    "self": "https://acme.atlassian.net/rest/api/2/10002",
    "key": "OPS-12",
    "fields": {
        "summary": "Checkout latency above SLO",
        "issuetype": {"id": "10001", "name": "Task"},
        "project": {"id": "10000", "key": "OPS"},
        "status": {"id": "3", "name": "In Progress"},
        "priority": {"id": "2", "name": "High"},
    },
}


def jira_payload(webhook_event: str = "jira:issue_updated", **extra: Any) -> dict[str, Any]:
    """An issue webhook; ``extra`` adds or replaces top-level keys (None removes one)."""
    body: dict[str, Any] = {
        "timestamp": 1764500000000,
        "webhookEvent": webhook_event,
        "issue_event_type_name": {
            "jira:issue_created": "issue_created",
            "jira:issue_updated": "issue_generic",
        }.get(webhook_event, "issue_generic"),
        "user": copy.deepcopy(_JIRA_USER),
        "issue": copy.deepcopy(_JIRA_ISSUE),
    }
    if webhook_event == "jira:issue_updated":
        body["changelog"] = {
            "id": "10400",
            "items": [
                {
                    "field": "status",
                    "fieldtype": "jira",
                    "fieldId": "status",
                    "from": "10000",
                    "fromString": "To Do",
                    "to": "3",
                    "toString": "In Progress",
                },
                {
                    "field": "Story Points",
                    "fieldtype": "custom",
                    "fieldId": "customfield_10016",
                    "from": None,
                    "fromString": None,
                    "to": "5",
                    "toString": "5",
                },
            ],
        }
    if webhook_event.startswith("comment_"):
        body.pop("issue_event_type_name")
        body["comment"] = {
            "self": "https://acme.atlassian.net/rest/api/2/issue/10002/comment/10050",
            "id": "10050",
            "author": copy.deepcopy(_JIRA_USER),
            "body": "Rolled back the deploy.",
            "created": "2025-11-30T10:00:00.000+0000",
            "updated": "2025-11-30T10:00:00.000+0000",
        }
    for name, value in extra.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return body


# --- ServiceNow and generic ----------------------------------------------------------------


def servicenow_payload(**fields: Any) -> dict[str, Any]:
    """What Syncline's documented business rule posts; ``fields`` override (None removes)."""
    body: dict[str, Any] = {
        "table": "incident",
        "sys_id": SYS_ID,
        "sys_updated_on": "2025-11-30 10:15:00",
        "sys_updated_by": "jane.doe",
        "operation": "update",
        "number": "INC0010042",
        "changed_fields": ["state", "assigned_to", "sys_updated_on", "sys_mod_count"],
    }
    for name, value in fields.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def generic_payload(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "alert_key": "disk-full:web-1",
        "status": "triggered",
        "title": "Disk full on web-1",
        "severity": "critical",
        "message": "/var is 100% full",
        "service": "checkout",
        "host": "web-1",
        "tags": ["env:prod", "team:payments"],
        "url": "https://monitor.example.com/alerts/42",
        "occurred_at": "2025-11-30T10:00:00Z",
    }
    for name, value in fields.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return body
