"""Dynatrace problem notifications (custom integration webhook).

Dynatrace posts the notification's *custom payload* with its ``{Placeholders}``
substituted. Syncline expects this payload (placeholder names as keys, as in Dynatrace's
own example; ``{ImpactedEntities}`` and ``{ProblemDetailsJSONv2}`` are inserted **without
quotes**, they are JSON)::

    {
      "PID": "{PID}",
      "ProblemID": "{ProblemID}",
      "State": "{State}",
      "ProblemTitle": "{ProblemTitle}",
      "ProblemSeverity": "{ProblemSeverity}",
      "ProblemImpact": "{ProblemImpact}",
      "ProblemURL": "{ProblemURL}",
      "ImpactedEntity": "{ImpactedEntity}",
      "ImpactedEntities": {ImpactedEntities},
      "Tags": "{Tags}",
      "ProblemDetailsText": "{ProblemDetailsText}",
      "ProblemDetailsJSONv2": {ProblemDetailsJSONv2}
    }

Required: ``PID``, ``State`` and ``ProblemTitle``; the rest is optional, other keys are
ignored (Dynatrace's example template, with ``"Problem URL"`` and ``ProblemDetailsJSON``,
is accepted as it is). Enable "notify closed problems" so recoveries arrive.

- **Alert key**: ``{PID}``, the problem's unique system id. ``{ProblemID}`` (``P-12345``) is
  only a display number and becomes ``display_key``.
- **Status** from ``{State}``: ``OPEN`` triggers (again when events merge into the
  problem); ``RESOLVED`` resolves; ``MERGED`` (the problem was folded into another one,
  which is notified on its own) resolves; ``CLOSED`` (the Problems API v2 word) resolves.
- **Severity** from ``{ProblemSeverity}``: ``AVAILABILITY`` critical, ``ERROR`` high,
  ``PERFORMANCE``, ``RESOURCE_CONTENTION``, ``CUSTOM_ALERT`` and ``MONITORING_UNAVAILABLE``
  warning, ``INFO`` info.
- **Service and host**: a ``service:`` tag in ``{Tags}``, else the first impacted entity
  of type ``SERVICE``; the first impacted ``HOST``.
- **Time**: ``endTime`` (resolved) or ``startTime`` of the problem details JSON (v2 or v1),
  epoch milliseconds; none without the details.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from syncline.inbound.errors import validated
from syncline.inbound.models import Alert, AlertStatus, InboundEvent, Severity
from syncline.inbound.values import (
    OptionalText,
    Text,
    VendorPayload,
    lookup,
    parse_timestamp,
    split_tags,
    tag_value,
)

SOURCE = "dynatrace"

State = Literal["OPEN", "RESOLVED", "MERGED", "CLOSED"]
STATES: dict[str, AlertStatus] = {
    "OPEN": "triggered",
    "RESOLVED": "resolved",
    "MERGED": "resolved",
    "CLOSED": "resolved",
}
_STATES_FOLDED: dict[str, State] = {
    "open": "OPEN",
    "resolved": "RESOLVED",
    "merged": "MERGED",
    "closed": "CLOSED",
}

SEVERITIES: dict[str, Severity] = {
    "AVAILABILITY": "critical",
    "ERROR": "high",
    "PERFORMANCE": "warning",
    "RESOURCE_CONTENTION": "warning",
    "CUSTOM_ALERT": "warning",
    "MONITORING_UNAVAILABLE": "warning",
    "INFO": "info",
}


class ImpactedEntity(VendorPayload):
    """One item of ``{ImpactedEntities}``: ``{"type": "HOST", "name": "web-1", "entity": id}``."""

    type: OptionalText = None
    name: OptionalText = None
    entity: OptionalText = None


class ProblemDetails(VendorPayload):
    """The two times Syncline reads from ``{ProblemDetailsJSONv2}`` / ``{ProblemDetailsJSON}``
    (epoch milliseconds; ``endTime`` is -1 while the problem is open)."""

    start_time: int | None = Field(default=None, alias="startTime")
    end_time: int | None = Field(default=None, alias="endTime")


class DynatraceNotification(VendorPayload):
    """The body of Syncline's Dynatrace payload template (see the module docstring)."""

    pid: Text = Field(alias="PID")
    problem_id: OptionalText = Field(default=None, alias="ProblemID")
    state: State = Field(alias="State")
    title: Text = Field(alias="ProblemTitle")
    severity: OptionalText = Field(default=None, alias="ProblemSeverity")
    impact: OptionalText = Field(default=None, alias="ProblemImpact")
    url: OptionalText = Field(default=None, alias="ProblemURL")
    example_url: OptionalText = Field(default=None, alias="Problem URL")
    impacted_entity: OptionalText = Field(default=None, alias="ImpactedEntity")
    impacted_entities: list[ImpactedEntity] = Field(default=[], alias="ImpactedEntities")
    tags: OptionalText = Field(default=None, alias="Tags")
    details_text: OptionalText = Field(default=None, alias="ProblemDetailsText")
    details_v2: ProblemDetails | None = Field(default=None, alias="ProblemDetailsJSONv2")
    details_v1: ProblemDetails | None = Field(default=None, alias="ProblemDetailsJSON")

    @field_validator("state", mode="before")
    @classmethod
    def _known_state(cls, value: object) -> object:
        if isinstance(value, str):
            return lookup(value, _STATES_FOLDED, display=STATES)
        return value

    def first_entity(self, kind: str) -> str | None:
        for entity in self.impacted_entities:
            if entity.type is not None and entity.type.upper() == kind and entity.name:
                return entity.name
        return None

    def occurred_at_millis(self, status: AlertStatus) -> int | None:
        details = self.details_v2 or self.details_v1
        if details is None:
            return None
        if status == "resolved" and details.end_time is not None and details.end_time > 0:
            return details.end_time
        return details.start_time


def parse(payload: object) -> InboundEvent:
    notification = validated(SOURCE, DynatraceNotification, payload)
    status = STATES[notification.state]
    tags = split_tags(notification.tags)
    millis = notification.occurred_at_millis(status)
    raw_severity = notification.severity
    alert = Alert(
        source=SOURCE,
        alert_key=notification.pid,
        status=status,
        severity=SEVERITIES.get((raw_severity or "").upper(), "unknown"),
        raw_severity=raw_severity,
        title=notification.title,
        display_key=notification.problem_id,
        message=notification.details_text or notification.impacted_entity,
        service=tag_value(tags, "service") or notification.first_entity("SERVICE"),
        host=notification.first_entity("HOST"),
        tags=tags,
        url=notification.url or notification.example_url,
        occurred_at=parse_timestamp(millis) if millis is not None and millis > 0 else None,
    )
    return InboundEvent.for_alert(alert)
