"""PagerDuty webhooks v3: one event per delivery, about an incident.

The body is PagerDuty's envelope (no template to configure)::

    {"event": {"id": "01DEN...", "event_type": "incident.triggered",
               "resource_type": "incident", "occurred_at": "2020-10-02T18:45:22.169Z",
               "agent": {...} | null, "client": {...} | null,
               "data": {"id": "PGR0VU2", "type": "incident", "number": 2,
                        "status": "triggered", "title": "...", "html_url": "...",
                        "service": {"summary": "..."}, "teams": [...],
                        "priority": {"summary": "P2"} | null, "urgency": "high", ...}}}

- **Alert key**: the incident id (``event.data.id``); its number is ``display_key``.
- **Status**: ``incident.triggered``, ``incident.reopened`` and ``incident.unacknowledged``
  trigger; ``incident.acknowledged`` acknowledges; ``incident.resolved`` resolves. Other
  incident events (``incident.priority_updated``, ``incident.escalated``, ...) carry the
  incident, whose ``data.status`` gives the status.
- Events whose ``data`` is not the incident and says nothing of its status
  (``incident.annotated`` carries an ``incident_note``, ``incident.responder.added`` a
  responder request) and ``service.*`` events raise ``IgnoredDelivery``: well-formed, but
  nothing to emit. Answer them with a 2xx, or PagerDuty disables the subscription after
  three refused deliveries.
- **Severity**: the incident priority (``P1`` critical ... ``P4``/``P5`` info), else its
  urgency (``high`` high, ``low`` warning).
- **Tags**: ``team:<name>`` for each team, so routing rules can match teams.
- **Time**: ``event.occurred_at``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from syncline.inbound.errors import IgnoredDelivery, problem, validated
from syncline.inbound.models import Alert, AlertStatus, InboundEvent, Severity
from syncline.inbound.values import (
    OptionalVendorText,
    Timestamp,
    VendorPayload,
    VendorText,
    normalise_severity,
    quoted,
)

SOURCE = "pagerduty"

# Event types that are a change of the incident's status, and the status they mean.
STATE_EVENTS: dict[str, AlertStatus] = {
    "incident.triggered": "triggered",
    "incident.reopened": "triggered",
    "incident.unacknowledged": "triggered",
    "incident.acknowledged": "acknowledged",
    "incident.resolved": "resolved",
}
STATUSES: dict[str, AlertStatus] = {
    "triggered": "triggered",
    "acknowledged": "acknowledged",
    "resolved": "resolved",
}
URGENCIES: dict[str, Severity] = {"high": "high", "low": "warning"}


class Reference(VendorPayload):
    """A PagerDuty resource reference (service, team, priority, agent)."""

    id: OptionalVendorText = None
    summary: OptionalVendorText = None


class PagerDutyEvent(VendorPayload):
    id: VendorText
    event_type: str = Field(pattern=r"^(incident|service)\.[a-z_.]+$")
    resource_type: Literal["incident", "service"]
    occurred_at: Timestamp
    # Required by the envelope, null for automation (agent) and PagerDuty itself (client).
    agent: dict[str, Any] | None
    client: dict[str, Any] | None
    data: dict[str, Any]


class PagerDutyDelivery(VendorPayload):
    event: PagerDutyEvent


class Incident(VendorPayload):
    """``event.data`` of incident events whose data is the incident itself."""

    id: VendorText
    type: Literal["incident"]
    number: int | None = None
    status: OptionalVendorText = None
    title: OptionalVendorText = None
    html_url: OptionalVendorText = None
    service: Reference | None = None
    teams: list[Reference] = []
    priority: Reference | None = None
    urgency: OptionalVendorText = None


class IncidentReference(VendorPayload):
    """``event.data`` of events about something attached to an incident (a note, a
    responder request): the incident is a reference, its status is rarely given."""

    type: VendorText
    incident: Reference
    status: OptionalVendorText = None


def _status(event_type: str, data_status: str | None, path: str) -> AlertStatus:
    if event_type in STATE_EVENTS:
        return STATE_EVENTS[event_type]
    if data_status is None:
        raise problem(SOURCE, path, "missing")
    found = STATUSES.get(data_status.casefold())
    if found is None:
        raise problem(
            SOURCE,
            path,
            f"unknown value {quoted(data_status)} (expected one of {', '.join(STATUSES)})",
        )
    return found


def _severity(incident: Incident) -> tuple[Severity, str | None]:
    if incident.priority is not None and incident.priority.summary is not None:
        return normalise_severity(incident.priority.summary), incident.priority.summary
    if incident.urgency is not None:
        return URGENCIES.get(incident.urgency.casefold(), "unknown"), incident.urgency
    return "unknown", None


def parse(payload: object) -> InboundEvent:
    event = validated(SOURCE, PagerDutyDelivery, payload).event
    if event.resource_type != "incident":
        raise IgnoredDelivery(
            f"{SOURCE}: event.resource_type: {event.event_type} is not about an incident;"
            " nothing to emit"
        )
    if event.data.get("type") != "incident":
        return _attached_event(event)
    incident = validated(SOURCE, Incident, event.data, at=("event", "data"))
    severity, raw_severity = _severity(incident)
    number = str(incident.number) if incident.number is not None else None
    alert = Alert(
        source=SOURCE,
        alert_key=incident.id,
        status=_status(event.event_type, incident.status, "event.data.status"),
        severity=severity,
        raw_severity=raw_severity,
        title=incident.title or f"PagerDuty incident {number or incident.id}",
        display_key=number,
        service=incident.service.summary if incident.service is not None else None,
        tags=[f"team:{team.summary}" for team in incident.teams if team.summary],
        url=incident.html_url,
        occurred_at=event.occurred_at,
    )
    return InboundEvent.for_alert(alert, vendor_event_id=event.id)


def _attached_event(event: PagerDutyEvent) -> InboundEvent:
    attached = validated(SOURCE, IncidentReference, event.data, at=("event", "data"))
    if attached.status is None:
        raise IgnoredDelivery(
            f"{SOURCE}: event.data: {event.event_type} carries an {attached.type}, not the"
            " incident's status; nothing to emit"
        )
    if attached.incident.id is None:
        raise problem(SOURCE, "event.data.incident.id", "missing")
    status = _status(event.event_type, attached.status, "event.data.status")
    alert = Alert(
        source=SOURCE,
        alert_key=attached.incident.id,
        status=status,
        title=attached.incident.summary or f"PagerDuty incident {attached.incident.id}",
        occurred_at=event.occurred_at,
    )
    return InboundEvent.for_alert(alert, vendor_event_id=event.id)
