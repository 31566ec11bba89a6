"""Datadog monitor notifications (the Webhooks integration).

Datadog posts the webhook's *payload template* with its ``$VARIABLES`` substituted, every
value a string. Syncline expects this template (the variable names, lower-cased, as keys)::

    {
      "alert_id": "$ALERT_ID",
      "alert_transition": "$ALERT_TRANSITION",
      "alert_title": "$ALERT_TITLE",
      "alert_scope": "$ALERT_SCOPE",
      "aggreg_key": "$AGGREG_KEY",
      "alert_cycle_key": "$ALERT_CYCLE_KEY",
      "alert_type": "$ALERT_TYPE",
      "alert_priority": "$ALERT_PRIORITY",
      "hostname": "$HOSTNAME",
      "tags": "$TAGS",
      "link": "$LINK",
      "text_only_msg": "$TEXT_ONLY_MSG",
      "date": "$DATE",
      "id": "$ID"
    }

Required: ``alert_id``, ``alert_transition`` and a title (``alert_title``, else
``event_title`` = ``$EVENT_TITLE``). Everything else is optional; ``event_msg``
(``$EVENT_MSG``) stands in for ``text_only_msg``, ``last_updated`` for ``date``, and a
``service`` key overrides the ``service:`` tag. Other keys are ignored, so a team can add
its own. A variable Datadog left unsubstituted (``"$ALERT_PRIORITY"``) counts as absent.

- **Alert key**: ``<$ALERT_ID>:<scope>`` — the monitor and the group that fired, stable
  across re-notifications and recovery. The scope is ``$ALERT_SCOPE`` with its tags sorted
  (``env:prod,host:web-1``); without a scope, ``$AGGREG_KEY``; without either (a simple
  monitor), ``$ALERT_ID`` alone.
- **Status** from ``$ALERT_TRANSITION``: ``Recovered`` resolves; ``Triggered``,
  ``Re-Triggered``, ``Warn``, ``Re-Warn``, ``No Data``, ``Re-No Data`` and ``Renotify``
  trigger (a re-notification updates the same alert). ``Null`` (older monitors) resolves
  when ``$ALERT_TYPE`` is ``success`` and triggers otherwise.
- **Severity** from ``$ALERT_PRIORITY`` (P1 critical, P2 high, P3 warning, P4/P5 info);
  without a priority, ``Warn`` and ``No Data`` transitions are warnings and otherwise
  ``$ALERT_TYPE`` decides (``error`` high, ``warning`` warning, ``info``/``success`` info).
- **Time**: ``$DATE`` (epoch milliseconds).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from syncline.inbound.errors import problem, validated
from syncline.inbound.models import Alert, AlertStatus, InboundEvent, Severity
from syncline.inbound.values import (
    OptionalText,
    OptionalTimestamp,
    Text,
    VendorPayload,
    lookup,
    normalise_severity,
    split_tags,
    tag_value,
)

SOURCE = "datadog"

Transition = Literal["triggered", "recovered", "warn", "no data", "renotify", "null"]

# $ALERT_TRANSITION as Datadog writes it -> what it means here.
TRANSITIONS: dict[str, Transition] = {
    "Triggered": "triggered",
    "Re-Triggered": "triggered",
    "Recovered": "recovered",
    "Warn": "warn",
    "Re-Warn": "warn",
    "No Data": "no data",
    "Re-No Data": "no data",
    "Renotify": "renotify",
    "Null": "null",
}
_TRANSITIONS_FOLDED = {name.casefold(): meaning for name, meaning in TRANSITIONS.items()}


class DatadogNotification(VendorPayload):
    """The body of Syncline's Datadog webhook template (see the module docstring)."""

    alert_id: Text
    alert_transition: Transition
    alert_title: OptionalText = None
    event_title: OptionalText = None
    alert_scope: OptionalText = None
    aggreg_key: OptionalText = None
    alert_cycle_key: OptionalText = None
    alert_type: OptionalText = None
    alert_priority: OptionalText = None
    hostname: OptionalText = None
    service: OptionalText = None
    tags: OptionalText = None
    link: OptionalText = None
    text_only_msg: OptionalText = None
    event_msg: OptionalText = None
    date: OptionalTimestamp = None
    last_updated: OptionalTimestamp = None
    event_id: OptionalText = Field(default=None, alias="id")

    @field_validator("alert_transition", mode="before")
    @classmethod
    def _known_transition(cls, value: object) -> object:
        if isinstance(value, str):
            return lookup(value, _TRANSITIONS_FOLDED, display=TRANSITIONS)
        return value

    @property
    def alert_key(self) -> str:
        scope = None
        if self.alert_scope is not None and self.alert_scope != "*":
            scope = ",".join(sorted(split_tags(self.alert_scope)))
        group = scope or self.aggreg_key
        return f"{self.alert_id}:{group}" if group else self.alert_id

    @property
    def status(self) -> AlertStatus:
        if self.alert_transition == "recovered":
            return "resolved"
        if self.alert_transition == "null" and (self.alert_type or "").casefold() == "success":
            return "resolved"
        return "triggered"

    @property
    def severity(self) -> tuple[Severity, str | None]:
        if self.alert_priority is not None:
            return normalise_severity(self.alert_priority), self.alert_priority
        if self.alert_transition in ("warn", "no data"):
            return "warning", self.alert_type
        return normalise_severity(self.alert_type), self.alert_type


def parse(payload: object) -> InboundEvent:
    notification = validated(SOURCE, DatadogNotification, payload)
    title = notification.alert_title or notification.event_title
    if title is None:
        raise problem(SOURCE, "alert_title", "missing (or give event_title)")
    tags = split_tags(notification.tags)
    severity, raw_severity = notification.severity
    alert = Alert(
        source=SOURCE,
        alert_key=notification.alert_key,
        status=notification.status,
        severity=severity,
        raw_severity=raw_severity,
        title=title,
        message=notification.text_only_msg or notification.event_msg,
        service=notification.service or tag_value(tags, "service"),
        host=notification.hostname,
        tags=tags,
        url=notification.link,
        occurred_at=notification.date or notification.last_updated,
    )
    return InboundEvent.for_alert(alert, vendor_event_id=notification.event_id)
