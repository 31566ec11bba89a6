"""One valid delivery per source, as each tool sends it, and a later one about the same thing."""

from __future__ import annotations

from typing import Any

SOURCES = ("datadog", "dynatrace", "pagerduty", "jira", "servicenow", "generic")


def datadog(transition: str = "Triggered", date: str = "1767607200000") -> dict[str, Any]:
    return {
        "alert_id": "4242",
        "alert_transition": transition,
        "alert_title": "[P2] High CPU on web-1",
        "alert_scope": "host:web-1,env:prod",
        "alert_type": "error",
        "alert_priority": "P2",
        "hostname": "web-1",
        "tags": "env:prod,service:checkout",
        "link": "https://app.datadoghq.com/monitors/4242",
        "date": date,
        "id": f"evt-{date}",
    }


def dynatrace(state: str = "OPEN", title: str = "Response time degradation") -> dict[str, Any]:
    return {
        "PID": "-1234567890123456789_1767607200000V2",
        "ProblemID": "P-2601",
        "State": state,
        "ProblemTitle": title,
        "ProblemSeverity": "PERFORMANCE",
        "ImpactedEntities": [{"type": "SERVICE", "name": "checkout", "entity": "SERVICE-1"}],
        "Tags": "env:prod",
    }


def pagerduty(
    event_type: str = "incident.triggered", event_id: str = "01DEN0ZX2P6Q0B0N0V1S0P1J2W"
) -> dict[str, Any]:
    status = event_type.removeprefix("incident.")
    return {
        "event": {
            "id": event_id,
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": "2026-01-05T10:00:00.000Z",
            "agent": None,
            "client": None,
            "data": {
                "id": "PGR0VU2",
                "type": "incident",
                "number": 2,
                "status": status
                if status in ("triggered", "acknowledged", "resolved")
                else "triggered",
                "title": "Checkout latency above SLO",
                "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
                "service": {"id": "PF9KMXH", "summary": "checkout"},
                "teams": [{"id": "PFCVPS0", "summary": "payments"}],
                "priority": {"id": "PSO75BM", "summary": "P2"},
                "urgency": "high",
            },
        }
    }


def jira(
    webhook_event: str = "jira:issue_updated", timestamp: int = 1767607200000
) -> dict[str, Any]:
    return {
        "timestamp": timestamp,
        "webhookEvent": webhook_event,
        "issue_event_type_name": "issue_generic",
        "user": {"accountId": "5b10a2844c20165700ede21g"},
        "issue": {"id": "10002", "key": "OPS-12", "fields": {"summary": "Checkout latency"}},
        "changelog": {
            "id": "10400",
            "items": [
                {"field": "status", "fieldId": "status", "fromString": "Open", "toString": "Done"}
            ],
        },
    }


def servicenow(
    operation: str = "update", updated_on: str = "2026-01-05 10:00:00"
) -> dict[str, Any]:
    return {
        "table": "incident",
        "sys_id": "9d385017c611228701d22104cc95c371",
        "sys_updated_on": updated_on,
        "operation": operation,
        "number": "INC0010001",
        "sys_updated_by": "jane.doe",
        "changed_fields": ["state"],
    }


def generic(status: str = "triggered", occurred_at: str = "2026-01-05T10:00:00Z") -> dict[str, Any]:
    return {
        "alert_key": "disk-full:web-1",
        "status": status,
        "title": "Disk full on web-1",
        "severity": "critical",
        "host": "web-1",
        "tags": ["env:prod"],
        "occurred_at": occurred_at,
    }


FIRST: dict[str, dict[str, Any]] = {
    "datadog": datadog(),
    "dynatrace": dynatrace(),
    "pagerduty": pagerduty(),
    "jira": jira(),
    "servicenow": servicenow(),
    "generic": generic(),
}

# A later delivery about the same alert or record: a re-notification, a new change.
LATER: dict[str, dict[str, Any]] = {
    "datadog": datadog("Renotify", date="1767610800000"),
    "dynatrace": dynatrace("OPEN", title="Response time degradation (2 services)"),
    "pagerduty": pagerduty("incident.acknowledged", event_id="01DEN0ZX2P6Q0B0N0V1S0P1J3X"),
    "jira": jira(timestamp=1767610800000),
    "servicenow": servicenow(updated_on="2026-01-05 11:00:00"),
    "generic": generic(occurred_at="2026-01-05T11:00:00Z"),
}

# What each source's event is about, as its resource id begins.
RESOURCE_PREFIX = {
    "datadog": "syncline.alert.datadog.",
    "dynatrace": "syncline.alert.dynatrace.",
    "pagerduty": "syncline.alert.pagerduty.",
    "jira": "syncline.record.jira.issue.",
    "servicenow": "syncline.record.servicenow.incident.",
    "generic": "syncline.alert.generic.",
}
