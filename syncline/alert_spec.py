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

It is checked as strictly as a sync spec (``syncline.specs.load_validated``: file, line,
field, what was expected). ``AlertSpec.apply_spec`` is the ``IntegrationSpec`` the incident
drafts go through the one apply path with: each incident field taken as it is, keyed by the
correlation id, so the links, audit and dead letters are the standard ones.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, field_validator

from syncline.durations import Duration
from syncline.inbound.routing import IncidentDraft, Routing
from syncline.specs import (
    FieldMapping,
    IntegrationSpec,
    SourceSpec,
    SpecError,
    StrictModel,
    TargetSpec,
    load_validated,
)

ALERTS_DIR = "alerts"  # under the specs folder
DEFAULT_ALERT_SPEC = "alert-to-servicenow"
CORRELATION_FIELD = "correlation_id"

# Every field an incident draft can carry, in the order ServiceNow's form shows them.
INCIDENT_FIELDS: tuple[str, ...] = tuple(
    name for name, info in IncidentDraft.model_fields.items() if not info.exclude
)


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
