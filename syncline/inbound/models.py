"""The normalised inbound models: what the gateway emits, whatever tool sent the webhook.

One delivery becomes one ``InboundEvent`` carrying either an ``Alert`` (Datadog, Dynatrace,
PagerDuty, generic JSON) or a ``RecordChange`` (Jira, ServiceNow). The vendor's raw body is
not kept here: the gateway stores it in its outbox, and a flow that needs more fetches the
record from the vendor's API.

Prefect event names and resource ids::

    syncline.alert.triggered | syncline.alert.acknowledged | syncline.alert.resolved
        resource  syncline.alert.<source>.<alert_key>
    syncline.record.changed | syncline.record.deleted
        resource  syncline.record.<system>.<object>.<key>
        e.g.      syncline.record.jira.issue.10002
                  syncline.record.servicenow.incident.<sys_id>
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal, Self
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, model_validator

AlertStatus = Literal["triggered", "acknowledged", "resolved"]
Severity = Literal["critical", "high", "warning", "info", "unknown"]
RecordSystem = Literal["jira", "servicenow"]
ChangeKind = Literal["created", "updated", "deleted", "commented"]

ALERT_EVENT_PREFIX = "syncline.alert."
RECORD_CHANGED = "syncline.record.changed"
RECORD_DELETED = "syncline.record.deleted"

# A key longer than this is replaced by its hash in resource ids, which Prefect shows in
# its UI and matches with globs.
_RESOURCE_KEY_MAX = 200


class InboundModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Alert(InboundModel):
    """An alert as a monitoring tool reported it, in Syncline's words."""

    source: str
    # Stable across re-notifications and recovery of the same alert: what incidents
    # are correlated by (Datadog monitor id + group, Dynatrace PID, PagerDuty incident id).
    alert_key: str
    status: AlertStatus
    severity: Severity = "unknown"
    # The source's own word (Datadog "P2", Dynatrace "AVAILABILITY", PagerDuty "urgency:high").
    raw_severity: str | None = None
    title: str
    # What people call it in the source (Dynatrace P-12345, PagerDuty incident number).
    display_key: str | None = None
    message: str | None = None
    service: str | None = None
    host: str | None = None
    tags: list[str] = []
    url: str | None = None
    occurred_at: datetime | None = None


class RecordChange(InboundModel):
    """A record created, changed, commented on or deleted in a system of record."""

    system: RecordSystem
    # The kind of record: "issue" for Jira, the table name for ServiceNow ("incident").
    object: str
    # The system's immutable id: Jira issue id, ServiceNow sys_id.
    key: str
    # What people call it: Jira issue key (PROJ-12), ServiceNow number (INC0010001).
    display_key: str | None = None
    change: ChangeKind
    # Field ids the change touched (Jira changelog items; ServiceNow when the business rule
    # sends them); empty when the source does not say.
    changed_fields: list[str] = []
    comment_id: str | None = None
    # Who made the change (Jira accountId, ServiceNow sys_updated_by): lets a flow skip
    # changes Syncline's own integration user wrote, so they are not echoed back.
    changed_by: str | None = None
    occurred_at: datetime | None = None


class InboundEvent(InboundModel):
    """One accepted webhook delivery, ready to become one Prefect event."""

    source: str
    event: str
    resource_id: str
    # The identity deliveries about the same alert or record share (unique within a source).
    subject_key: str
    occurred_at: datetime | None = None
    # The vendor's id of this notification, when it sends one (PagerDuty event.id, Jira
    # changelog id); the gateway's delivery headers are the better dedupe key where present.
    vendor_event_id: str | None = None
    alert: Alert | None = None
    record: RecordChange | None = None

    @model_validator(mode="after")
    def _exactly_one_subject(self) -> Self:
        if (self.alert is None) == (self.record is None):
            raise ValueError("an inbound event carries exactly one of alert and record")
        return self

    @classmethod
    def for_alert(cls, alert: Alert, *, vendor_event_id: str | None = None) -> InboundEvent:
        return cls(
            source=alert.source,
            event=ALERT_EVENT_PREFIX + alert.status,
            resource_id=f"syncline.alert.{alert.source}.{resource_key(alert.alert_key)}",
            subject_key=alert.alert_key,
            occurred_at=alert.occurred_at,
            vendor_event_id=vendor_event_id,
            alert=alert,
        )

    @classmethod
    def for_record(
        cls, record: RecordChange, *, vendor_event_id: str | None = None
    ) -> InboundEvent:
        return cls(
            source=record.system,
            event=RECORD_DELETED if record.change == "deleted" else RECORD_CHANGED,
            resource_id=(
                f"syncline.record.{record.system}.{record.object}.{resource_key(record.key)}"
            ),
            subject_key=record.key,
            occurred_at=record.occurred_at,
            vendor_event_id=vendor_event_id,
            record=record,
        )

    def resource(self) -> dict[str, str]:
        """The Prefect event's ``resource`` labels."""
        labels = {"prefect.resource.id": self.resource_id, "syncline.source": self.source}
        if self.alert is not None:
            labels["prefect.resource.name"] = self.alert.title[:100]
        elif self.record is not None:
            labels["prefect.resource.name"] = self.record.display_key or self.record.key
        return labels

    def payload(self) -> dict[str, Any]:
        """The Prefect event's ``payload``: the alert or record change, JSON-ready."""
        body = self.alert if self.alert is not None else self.record
        assert body is not None  # guaranteed by _exactly_one_subject
        return {
            "subject_key": self.subject_key,
            "vendor_event_id": self.vendor_event_id,
            "alert" if self.alert is not None else "record": body.model_dump(mode="json"),
        }


def resource_key(key: str) -> str:
    """A key as it appears in a resource id: readable, without blanks or commas.

    Characters other than letters, digits and ``-_.:@~`` are percent-encoded (a Datadog
    scope ``host:web-1,env:prod`` becomes ``host:web-1%2Cenv:prod``); a very long key is
    replaced by ``sha256-<first 32 hex digits>``.
    """
    encoded = quote(key, safe="-_.:@~")
    if len(encoded) > _RESOURCE_KEY_MAX:
        return "sha256-" + hashlib.sha256(key.encode()).hexdigest()[:32]
    return encoded
