"""Alert specs: which incident table alerts open incidents in, and how they are routed.

An alert spec is a YAML file under ``deployments/alerts/`` (a folder of its own: every
top-level ``deployments/*.yaml`` is a sync spec)::

    name: alert-to-servicenow
    target:                       # where incidents are written, as in a sync spec
      connector: servicenow
      object: incident
      connection: {instance_url: ...}
      credentials: {username: {env: ...}, password: {env: ...}}
      key: correlation_id         # the field incidents are found by: <source>:<alert key>
    routing:                      # syncline.inbound.routing.Routing
      rules:
        - {service: "checkout*", assignment_group: Payments, urgency: 1}
      defaults: {assignment_group: Service Desk, category: software}
    poll:                         # optional: for tools without webhooks (syncline.alert_poll)
      source:                     # as in a sync spec; a cursor is required
        connector: sql
        object: monitoring_alerts
        credentials: {url: {env: SYNCLINE_ALERTS_DB_URL}}
        key: id
        cursor: {field: updated_at, overlap: 2m}
      fields: {alert_key: check_id, status: state, title: summary, severity: priority}
      statuses: {firing: triggered, ok: resolved, ack: acknowledged}

It is checked as strictly as a sync spec (``syncline.specs.load_validated``: file, line,
field, what was expected). ``AlertSpec.apply_spec`` is the ``IntegrationSpec`` the incident
drafts go through the one apply path with: each incident field taken as it is, keyed by the
correlation id, so the links, audit and dead letters are the standard ones.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator

from connectors.base import registry
from syncline.durations import Duration
from syncline.inbound.models import AlertStatus
from syncline.inbound.routing import IncidentDraft, Routing
from syncline.specs import (
    FieldMapping,
    IntegrationSpec,
    SourceSpec,
    SpecError,
    StrictModel,
    TargetSpec,
    _problems,
    load_validated,
)
from syncline.yaml_lines import Location

ALERTS_DIR = "alerts"  # under the specs folder
DEFAULT_ALERT_SPEC = "alert-to-servicenow"
CORRELATION_FIELD = "correlation_id"

# Every field an incident draft can carry, in the order ServiceNow's form shows them.
INCIDENT_FIELDS: tuple[str, ...] = tuple(
    name for name, info in IncidentDraft.model_fields.items() if not info.exclude
)


_OWN_STATUSES: dict[str, AlertStatus] = {
    "triggered": "triggered",
    "acknowledged": "acknowledged",
    "resolved": "resolved",
}


class PollFields(StrictModel):
    """Which column of a polled row holds each part of the alert (the generic alert's names,
    ``syncline.inbound.generic``). Unnamed optional parts stay empty."""

    alert_key: str = Field(description="the same for every row about one alert")
    status: str = Field(description="its values are mapped by `statuses`")
    title: str
    severity: str | None = None
    description: str | None = None
    service: str | None = None
    host: str | None = None
    tags: str | None = Field(default=None, description="a list, or text: 'env:prod, team:x'")
    url: str | None = None
    display_key: str | None = None
    occurred_at: str | None = None

    def columns(self) -> dict[str, str]:
        """Alert part -> column, for the parts named."""
        return {part: column for part, column in self.model_dump().items() if column}


class PollSpec(StrictModel):
    """Alerts read by cursor from a table or view a monitoring tool fills, on a schedule."""

    source: SourceSpec
    fields: PollFields
    # The tool's status values (compared ignoring case and blanks) to Syncline's statuses.
    statuses: dict[str, AlertStatus] = Field(
        default_factory=lambda: dict(_OWN_STATUSES),
        min_length=1,
    )
    alert_source: str = Field(
        default="poll",
        pattern=r"^[a-z0-9][a-z0-9-]{0,31}$",
        description="the source polled alerts carry: correlation ids <alert_source>:<key>",
    )
    batch_size: int = Field(default=1_000, ge=1, le=50_000, description="rows per read")
    dedupe_window: Duration = Field(
        default=timedelta(days=2),
        description="how long a row read again (the cursor's overlap) is not a new alert",
    )

    @field_validator("statuses")
    @classmethod
    def _folded(cls, statuses: dict[str, AlertStatus]) -> dict[str, AlertStatus]:
        return {value.strip().casefold(): status for value, status in statuses.items()}

    @model_validator(mode="after")
    def _readable(self) -> Self:
        problems: list[tuple[Location, str]] = []
        source = self.source
        if source.cursor is None:
            problems.append(
                (("source", "cursor"), "a poll reads by cursor: give {field: <changed-at column>}")
            )
        elif source.cursor.type == "datetime" and self.dedupe_window <= source.cursor.overlap:
            problems.append(
                (
                    ("dedupe_window",),
                    "must be longer than source.cursor.overlap: rows read again would be new "
                    "alerts",
                )
            )
        try:
            if registry.get(source.connector).source is None:
                problems.append(
                    (("source", "connector"), f"{source.connector!r} cannot be read from")
                )
        except registry.UnknownConnectorError:
            pass  # reported at the connector's own line
        if source.fields:
            known = set(source.fields)
            uses: list[tuple[Location, str]] = [(("source", "key"), source.key)]
            if source.cursor is not None:
                uses.append((("source", "cursor", "field"), source.cursor.field))
            uses += [(("fields", part), column) for part, column in self.fields.columns().items()]
            problems += [
                (location, f"source.fields lacks {column}")
                for location, column in uses
                if column not in known
            ]
        if problems:
            raise _problems(problems)
        return self


class AlertSpec(StrictModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="lower-case slug")
    description: str = ""
    target: TargetSpec
    routing: Routing = Field(default_factory=Routing)
    batch_size: int = Field(
        default=200, ge=1, le=5_000, description="outbox entries drained per batch"
    )
    claim_ttl: Duration = Field(
        default=timedelta(minutes=2),
        description="how long a drainer holds an alert before another may take it over "
        "(a drainer that crashed holds it no longer than this)",
    )
    poll: PollSpec | None = Field(
        default=None, description="alerts read by cursor, for tools that send no webhooks"
    )

    @field_validator("target")
    @classmethod
    def _keyed_by_correlation(cls, target: TargetSpec) -> TargetSpec:
        if target.key != CORRELATION_FIELD:
            raise ValueError(
                f"target.key must be {CORRELATION_FIELD!r}: incidents are found by the "
                f"alert's <source>:<alert key>, which the draft carries in that field"
            )
        return target

    def apply_spec(self, fields: tuple[str, ...] = INCIDENT_FIELDS) -> IntegrationSpec:
        """The one-way spec the drafts are applied with: ``fields`` of the draft as they are.

        Its source describes the drafts' own key (the correlation id) on the incident table,
        which is also where the incidents are looked up again for their numbers."""
        source = SourceSpec(
            connector=self.target.connector,
            object=self.target.object,
            connection=self.target.connection,
            credentials=self.target.credentials,
            key=CORRELATION_FIELD,
        )
        mapping = {
            name: FieldMapping.model_validate({"from": name, "required": name == CORRELATION_FIELD})
            for name in fields
        }
        return IntegrationSpec(
            name=self.name,
            description=self.description or f"alerts into {self.target.object} incidents",
            source=source,
            target=self.target,
            mapping=mapping,
            batch_size=self.batch_size,
        )

    @property
    def poll_name(self) -> str:
        """The poll's name in the ledger: its cursor."""
        return f"{self.name}-poll"

    def poll_read_spec(self) -> IntegrationSpec:
        """The spec the poll's source is built and read with (``ConnectorFactory.source``)."""
        if self.poll is None:
            raise ValueError(f"alert spec {self.name!r} has no poll section")
        source = self.poll.source
        return IntegrationSpec(
            name=self.poll_name,
            description=f"alerts polled from {source.connector}:{source.object}",
            source=source,
            target=self.target,
            mapping={
                CORRELATION_FIELD: FieldMapping.model_validate({"from": source.key}),
            },
            batch_size=self.poll.batch_size,
        )


def load_alert_spec(path: Path, *, environ: dict[str, str] | None = None) -> AlertSpec:
    """Load and validate one alert spec; raise ``SpecError`` naming every problem."""
    return load_validated(path, AlertSpec, environ=environ)


def alert_spec_files(specs_dir: Path) -> list[Path]:
    folder = specs_dir / ALERTS_DIR
    if not folder.is_dir():
        return []
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def load_alert_specs(specs_dir: Path) -> dict[str, AlertSpec]:
    """Every alert spec under ``<specs_dir>/alerts`` by name; every file is checked first."""
    specs: dict[str, AlertSpec] = {}
    problems: list[str] = []
    for path in alert_spec_files(specs_dir):
        try:
            spec = load_alert_spec(path)
        except SpecError as error:
            problems.extend(error.problems)
            continue
        if spec.name in specs:
            problems.append(f"{path}: name {spec.name!r} is used by another alert spec too")
        specs[spec.name] = spec
    if problems:
        raise SpecError(specs_dir / ALERTS_DIR, problems)
    return specs


def find_alert_spec(specs_dir: Path, name: str = DEFAULT_ALERT_SPEC) -> AlertSpec:
    specs = load_alert_specs(specs_dir)
    spec = specs.get(name)
    if spec is None:
        known = ", ".join(sorted(specs)) or "none"
        raise LookupError(
            f"no alert spec named {name!r} in {specs_dir / ALERTS_DIR} (found: {known})"
        )
    return spec
