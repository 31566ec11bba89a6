"""Inbound webhook deliveries, normalised: what the gateway turns into Prefect events.

The gateway checks a delivery's authentication, size and content type, decodes the JSON and
calls ``parse_delivery(source, payload)``. The result is one ``InboundEvent`` carrying an
``Alert`` (datadog, dynatrace, pagerduty, generic) or a ``RecordChange`` (jira, servicenow);
anything it cannot accept raises ``InboundError`` with one line naming the source and the
JSON path. Each source's module documents the payload (or the template to configure in
the tool) that Syncline expects. ``routing.route`` turns an alert into the fields of a
ServiceNow incident.

Engine code: no Prefect here; the gateway (app layer) emits the events.
"""

from __future__ import annotations

from collections.abc import Callable

from syncline.inbound import datadog, dynatrace, generic, jira, pagerduty, servicenow
from syncline.inbound.errors import IgnoredDelivery, InboundError
from syncline.inbound.models import (
    Alert,
    AlertStatus,
    ChangeKind,
    InboundEvent,
    RecordChange,
    Severity,
)
from syncline.inbound.routing import IncidentDraft, Routing, RoutingRule, route

SOURCES: tuple[str, ...] = ("datadog", "dynatrace", "pagerduty", "jira", "servicenow", "generic")

_PARSERS: dict[str, Callable[[object], InboundEvent]] = {
    datadog.SOURCE: datadog.parse,
    dynatrace.SOURCE: dynatrace.parse,
    pagerduty.SOURCE: pagerduty.parse,
    jira.SOURCE: jira.parse,
    servicenow.SOURCE: servicenow.parse,
    generic.SOURCE: generic.parse,
}
assert tuple(_PARSERS) == SOURCES


def parse_delivery(source: str, payload: object) -> InboundEvent:
    """payload = the already-decoded JSON body. Raises InboundError (unknown source too)."""
    parser = _PARSERS.get(source)
    if parser is None:
        raise InboundError(
            f"{source[:40]!r}: unknown source (expected one of {', '.join(SOURCES)})"
        )
    return parser(payload)


__all__ = [
    "SOURCES",
    "Alert",
    "AlertStatus",
    "ChangeKind",
    "IgnoredDelivery",
    "InboundError",
    "InboundEvent",
    "IncidentDraft",
    "RecordChange",
    "Routing",
    "RoutingRule",
    "Severity",
    "parse_delivery",
    "route",
]
