"""Alerts from any tool that can post JSON: Syncline's own generic alert format.

::

    {"alert_key": "disk-full:web-1",      # or "id"; the same key for every notification
                                          # about one alert, recovery included
     "status": "triggered",               # triggered | acknowledged | resolved
     "title": "Disk full on web-1",
     "severity"?: "critical",             # critical|high|warning|info, P1..P5, sev1..,
                                          # error, major, minor, low ... (raw kept)
     "message"?: "...", "description"?: "...",
     "service"?: "checkout", "host"?: "web-1",
     "tags"?: ["env:prod", "team:payments"] | {"env": "prod", "team": "payments"},
     "url"?: "https://...", "display_key"?: "ALRT-42",
     "occurred_at"?: "2026-01-05T10:00:00Z" | 1767607200000,
     "details"?: {...}}                   # free-form, not read; stays in the raw delivery

Unknown keys are rejected (this format is Syncline's, so a misspelt ``sevrity`` must not
vanish); anything extra belongs under ``details``. Numbers are accepted where ids are
expected. A severity Syncline does not know is kept raw with ``severity: unknown``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, field_validator

from syncline.inbound.errors import problem, validated
from syncline.inbound.models import Alert, AlertStatus, InboundEvent
from syncline.inbound.values import (
    OptionalText,
    OptionalTimestamp,
    Text,
    VendorPayload,
    lookup,
    normalise_severity,
)

SOURCE = "generic"

STATUSES: dict[str, AlertStatus] = {
    "triggered": "triggered",
    "acknowledged": "acknowledged",
    "resolved": "resolved",
}


def _tag_list(value: Any) -> Any:
    """``{"env": "prod"}`` -> ``["env:prod"]``; a key with an empty value stays a bare tag."""
    if isinstance(value, dict):
        return [
            f"{key}:{item}" if item not in (None, "") else str(key) for key, item in value.items()
        ]
    return value


class GenericAlert(VendorPayload):
    """Syncline's generic alert body (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    alert_key: OptionalText = None
    id: OptionalText = None
    status: AlertStatus
    title: Text
    severity: OptionalText = None
    message: OptionalText = None
    description: OptionalText = None
    service: OptionalText = None
    host: OptionalText = None
    tags: Annotated[list[Text], BeforeValidator(_tag_list)] = []
    url: OptionalText = None
    display_key: OptionalText = None
    occurred_at: OptionalTimestamp = None
    details: dict[str, Any] | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _known_status(cls, value: object) -> object:
        return lookup(value, STATUSES) if isinstance(value, str) else value


def parse(payload: object) -> InboundEvent:
    generic = validated(SOURCE, GenericAlert, payload)
    alert_key = generic.alert_key or generic.id
    if alert_key is None:
        raise problem(SOURCE, "alert_key", "missing (or give id)")
    alert = Alert(
        source=SOURCE,
        alert_key=alert_key,
        status=generic.status,
        severity=normalise_severity(generic.severity),
        raw_severity=generic.severity,
        title=generic.title,
        display_key=generic.display_key,
        message=generic.message or generic.description,
        service=generic.service,
        host=generic.host,
        tags=generic.tags,
        url=generic.url,
        occurred_at=generic.occurred_at,
    )
    return InboundEvent.for_alert(alert)
