"""Routing alerts to ServiceNow incidents: which impact, urgency and group an alert gets.

The ``routing:`` section of an alert-to-incident spec::

    routing:
      rules:                              # in order; the first rule that matches wins
        - name: payments outage           # optional, shown in run summaries
          service: "checkout*"            # glob, case-insensitive
          severity: [critical, high]      # one level or a list
          impact: 1
          urgency: 1
          assignment_group: Payments      # a group name or sys_id
        - tag: "team:db*"                 # glob; matches when any of the alert's tags does
          source: datadog                 # one source or a list
          urgency: 2
          assignment_group: Database
      defaults:                           # for whatever the matching rule (or none) leaves out
        assignment_group: Service Desk
        category: software

A rule matches when every condition it gives holds; a rule with no condition matches every
alert (so it can only be last). Each field of the incident comes from the matching rule,
else ``defaults``, else (impact and urgency only) the alert's severity:

    severity   impact  urgency   ServiceNow's default priority
    critical   1       1         1 - Critical
    high       2       1         2 - High
    warning    2       2         3 - Moderate
    info       3       2         4 - Low
    unknown    2       2         3 - Moderate (someone should look at it)

``priority`` is sent only when given: ServiceNow normally computes it from impact and
urgency, and its priority lookup rules may overwrite a value sent.

A resolved alert also sets the incident's state to 6 (Resolved) with close code "Solution
provided" and close notes saying when it recovered in the source. An acknowledged alert
sets no state: who works on the incident is for ServiceNow's own workflow to say. The
``correlation_id`` (``<source>:<alert_key>``) is what the incident flow looks the incident
up by, so every notification about one alert reaches the same incident.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from syncline.inbound.models import Alert, Severity

ALERT_SOURCES = ("datadog", "dynatrace", "pagerduty", "generic")
AlertSource = Literal["datadog", "dynatrace", "pagerduty", "generic"]

# ServiceNow's impact and urgency: 1 high, 2 medium, 3 low; priority 1 critical .. 5 planning.
Level = Annotated[int, Field(ge=1, le=3)]
Priority = Annotated[int, Field(ge=1, le=5)]

SEVERITY_LEVELS: dict[Severity, tuple[int, int]] = {
    "critical": (1, 1),
    "high": (2, 1),
    "warning": (2, 2),
    "info": (3, 2),
    "unknown": (2, 2),
}

# ServiceNow incident fields.
SHORT_DESCRIPTION_MAX = 160
CORRELATION_ID_MAX = 100
RESOLVED_STATE = "6"
RESOLVED_CLOSE_CODE = "Solution provided"
CORRELATION_DISPLAY = "Syncline"


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class RoutingModel(BaseModel):
    """Unknown keys are errors (a misspelt ``urgncy`` must not silently fall back)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class IncidentSettings(RoutingModel):
    impact: Level | None = None
    urgency: Level | None = None
    priority: Priority | None = None
    assignment_group: str | None = Field(default=None, min_length=1)
    category: str | None = Field(default=None, min_length=1)


class RoutingRule(IncidentSettings):
    """Conditions (all optional, all given must hold) and the incident fields they set."""

    name: str | None = None
    service: str | None = Field(default=None, min_length=1)
    tag: str | None = Field(default=None, min_length=1)
    severity: Annotated[list[Severity] | None, BeforeValidator(_as_list)] = None
    source: Annotated[list[AlertSource] | None, BeforeValidator(_as_list)] = None

    @property
    def matches_everything(self) -> bool:
        return self.service is None and self.tag is None and not self.severity and not self.source

    def matches(self, alert: Alert) -> bool:
        if self.source and alert.source not in self.source:
            return False
        if self.severity and alert.severity not in self.severity:
            return False
        if self.service is not None and not _glob(alert.service, self.service):
            return False
        return self.tag is None or any(_glob(tag, self.tag) for tag in alert.tags)


class Routing(RoutingModel):
    rules: list[RoutingRule] = []
    defaults: IncidentSettings = IncidentSettings()

    @model_validator(mode="after")
    def _every_rule_reachable(self) -> Self:
        for index, rule in enumerate(self.rules[:-1]):
            if rule.matches_everything:
                raise ValueError(
                    f"rules[{index}] has no condition and matches every alert,"
                    f" so rules[{index + 1}:] are never used; make it the last rule"
                )
        return self

    def first_match(self, alert: Alert) -> int | None:
        """The index of the first rule matching ``alert``, or None."""
        return next((i for i, rule in enumerate(self.rules) if rule.matches(alert)), None)


def _glob(value: str | None, pattern: str) -> bool:
    return value is not None and fnmatch.fnmatchcase(value.casefold(), pattern.casefold())


class IncidentDraft(BaseModel):
    """The ServiceNow incident fields for one alert notification."""

    model_config = ConfigDict(frozen=True)

    short_description: str
    description: str
    impact: Level
    urgency: Level
    priority: Priority | None = None
    assignment_group: str | None = None
    category: str | None = None
    correlation_id: str
    correlation_display: str = CORRELATION_DISPLAY
    # Set only for a resolved alert.
    state: str | None = None
    close_code: str | None = None
    close_notes: str | None = None
    # Which rule chose the fields (index in routing.rules), for run summaries; not sent.
    matched_rule: int | None = Field(default=None, exclude=True)

    def as_record(self) -> dict[str, str]:
        """The fields to send to the Table API: every value a string, unset fields left out."""
        return {
            name: str(value)
            for name, value in self.model_dump(exclude_none=True).items()
            if value != ""
        }


def correlation_id(source: str, alert_key: str) -> str:
    """``<source>:<alert_key>``; when that exceeds ServiceNow's 100 characters,
    ``<source>:sha256:<hex>`` of the key (stable, so re-notifications still find it)."""
    plain = f"{source}:{alert_key}"
    if len(plain) <= CORRELATION_ID_MAX:
        return plain
    digest = hashlib.sha256(alert_key.encode()).hexdigest()
    return f"{source}:sha256:{digest}"[:CORRELATION_ID_MAX]


def _truncate(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else "an unreported time"


def _description(alert: Alert) -> str:
    severity = alert.severity + (f" ({alert.raw_severity})" if alert.raw_severity else "")
    facts: Sequence[tuple[str, str | None]] = [
        ("Source", f"{alert.source} (alert {alert.display_key or alert.alert_key})"),
        ("Severity", severity),
        ("Service", alert.service),
        ("Host", alert.host),
        ("Tags", ", ".join(alert.tags) or None),
        ("Link", alert.url),
        ("Occurred at", _when(alert.occurred_at) if alert.occurred_at else None),
    ]
    lines = [f"{label}: {value}" for label, value in facts if value]
    return "\n\n".join(part for part in (alert.message, "\n".join(lines)) if part)


def route(alert: Alert, routing: Routing) -> IncidentDraft:
    """The incident fields for ``alert``: the first matching rule, then the defaults, then
    the severity table; a resolved alert also gets the Resolved state and close notes."""
    index = routing.first_match(alert)
    chosen: list[IncidentSettings] = [routing.rules[index]] if index is not None else []
    chosen.append(routing.defaults)

    def pick(field: str) -> Any:
        return next((getattr(s, field) for s in chosen if getattr(s, field) is not None), None)

    impact, urgency = SEVERITY_LEVELS[alert.severity]
    resolved = alert.status == "resolved"
    return IncidentDraft(
        short_description=_truncate(alert.title, SHORT_DESCRIPTION_MAX),
        description=_description(alert),
        impact=pick("impact") or impact,
        urgency=pick("urgency") or urgency,
        priority=pick("priority"),
        assignment_group=pick("assignment_group"),
        category=pick("category"),
        correlation_id=correlation_id(alert.source, alert.alert_key),
        state=RESOLVED_STATE if resolved else None,
        close_code=RESOLVED_CLOSE_CODE if resolved else None,
        close_notes=(
            f"Recovered in {alert.source} at {_when(alert.occurred_at)}." if resolved else None
        ),
        matched_rule=index,
    )
