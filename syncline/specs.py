"""Integration specs: the YAML files in ``deployments/`` that declare an integration.

Every spec is validated by these pydantic models on load. A typo or a wrong type is reported
as one ``SpecError`` naming the file, the line, the field path and what was expected::

    deployments/cmdb_nightly.yaml:14: source.cursor.overlap: expected a duration such as
    "5m", "30s" or a number of seconds, got 'five minutes'
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from connectors.base.records import Column, ColumnType
from syncline.durations import Duration
from syncline.expressions import Expression, ExpressionError
from syncline.yaml_lines import MissingVariableError, YamlDocument, load_yaml

SPEC_SUFFIXES = (".yaml", ".yml")


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EnvSecret(StrictModel):
    """A value read from an environment variable at run time."""

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    default: str | None = Field(
        default=None, description="used when the variable is unset; never put a secret here"
    )


class BlockSecret(StrictModel):
    """A value held by a Prefect block: ``secret/name`` (a Secret block) or ``type/name``."""

    block: str = Field(pattern=r"^[a-z0-9-]+/[A-Za-z0-9_.-]+$")


SecretRef = EnvSecret | BlockSecret

# Names that hold secrets may not carry a default in the spec: it would be a literal secret.
_SECRET_NAMES = re.compile(r"password|secret|token|key", re.IGNORECASE)


class CursorSpec(StrictModel):
    """How far an incremental read got: the source field and the re-read overlap."""

    field: str
    type: Literal["datetime", "integer"] = "datetime"
    overlap: Duration = timedelta(minutes=5)
    overlap_count: int = Field(default=0, ge=0, description="for integer cursors")


class EndpointSpec(StrictModel):
    connector: Literal["servicenow", "sql"]
    object: str = Field(min_length=1, description="table, object or resource name")
    connection: dict[str, str | int | float | bool] = Field(default_factory=dict)
    credentials: dict[str, SecretRef] = Field(default_factory=dict)
    key: str = Field(min_length=1)

    @model_validator(mode="after")
    def _no_literal_secrets(self) -> Self:
        for name in self.connection:
            if _SECRET_NAMES.search(name):
                raise ValueError(
                    f"connection.{name} looks like a secret: move it to credentials "
                    f"as {{env: VARIABLE}} or {{block: secret/name}}"
                )
        for name, ref in self.credentials.items():
            if isinstance(ref, EnvSecret) and ref.default and _SECRET_NAMES.search(name):
                raise ValueError(f"credentials.{name}: a secret may not have a default in a spec")
        return self


class SourceSpec(EndpointSpec):
    fields: list[str] | None = None
    filter: str | None = Field(default=None, description="native filter: encoded query, SQL")
    cursor: CursorSpec | None = None


class TargetSpec(EndpointSpec):
    pass


class FieldMapping(StrictModel):
    """How one target field is made from the source record."""

    from_: str | None = Field(default=None, alias="from")
    expr: Expression | None = None
    type: ColumnType = ColumnType.STRING
    map: dict[str, Any] | None = None
    unmapped: Literal["keep", "null", "reject"] = "reject"
    default: Any = None
    required: bool = False
    format: str | None = Field(default=None, description="strptime format for datetime/date")

    @model_validator(mode="after")
    def _one_origin(self) -> Self:
        if self.from_ is not None and self.expr is not None:
            raise ValueError("give either 'from' or 'expr', not both")
        return self


class ScheduleSpec(StrictModel):
    cron: str
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from cronsim import CronSim, CronSimError

        try:
            CronSim(value, datetime.now(UTC))
        except CronSimError as error:
            raise ValueError(f"not a valid cron expression {value!r}: {error}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value


def _expand_shorthand(value: Any) -> Any:
    """``target: source_field`` is short for ``target: {from: source_field}``."""
    if isinstance(value, dict):
        return {
            name: {"from": item} if isinstance(item, str) else item for name, item in value.items()
        }
    return value


class IntegrationSpec(StrictModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="lower-case slug")
    description: str = ""
    source: SourceSpec
    target: TargetSpec
    mapping: dict[str, FieldMapping] = Field(min_length=1)
    where: Expression | None = Field(default=None, description="keep records where true")
    batch_size: int = Field(default=5_000, ge=1, le=1_000_000)
    schedule: ScheduleSpec | None = None

    @field_validator("mapping", mode="before")
    @classmethod
    def _expand(cls, value: Any) -> Any:
        return _expand_shorthand(value)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        key = self.target.key
        if key not in self.mapping:
            raise ValueError(f"target.key {key!r} must be one of the mapping's fields")
        known = set(self.source.fields) if self.source.fields else None
        if known is not None:
            needed = {self.source.key}
            if self.source.cursor:
                needed.add(self.source.cursor.field)
            for name, field in self.mapping.items():
                if field.from_ is not None:
                    needed.add(field.from_)
                elif field.expr is not None:
                    needed.update(field.expr.names)
                else:
                    needed.add(name)
            if self.where is not None:
                needed.update(self.where.names)
            # ServiceNow's display values "all" adds a <field>.display column per field read.
            missing = sorted(
                name for name in needed - known if name.removesuffix(".display") not in known
            )
            if missing:
                raise ValueError(
                    f"source.fields lacks {', '.join(missing)}, used by key, cursor or mapping"
                )
        return self

    def target_columns(self) -> list[Column]:
        return [
            Column(name, field.type, nullable=not field.required and name != self.target.key)
            for name, field in self.mapping.items()
        ]


class SpecError(ValueError):
    """One or more problems in one spec file, each with its line and field path."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


def load_spec(path: Path, *, environ: dict[str, str] | None = None) -> IntegrationSpec:
    """Load and validate one spec file; raise ``SpecError`` naming every problem."""
    try:
        document = load_yaml(path, environ=environ)
    except MissingVariableError as error:
        raise SpecError(path, [f"{path}: {_dotted(error.location)}: {error}"]) from None
    except Exception as error:  # yaml.YAMLError carries its own line and column
        raise SpecError(path, [f"{path}: not valid YAML: {error}"]) from None
    if not isinstance(document.data, dict):
        raise SpecError(path, [f"{path}:1: expected a mapping of spec fields at the top level"])
    try:
        return IntegrationSpec.model_validate(document.data)
    except ValidationError as error:
        problems = [_describe(document, detail) for detail in error.errors()]
        raise SpecError(path, problems) from None


def load_specs(directory: Path) -> dict[str, IntegrationSpec]:
    """Every spec in ``directory`` by name; all files are checked before anything is raised."""
    specs: dict[str, IntegrationSpec] = {}
    problems: list[str] = []
    for path in spec_files(directory):
        try:
            spec = load_spec(path)
        except SpecError as error:
            problems.extend(error.problems)
            continue
        if spec.name in specs:
            problems.append(f"{path}: name {spec.name!r} is used by another spec too")
        specs[spec.name] = spec
    if problems:
        raise SpecError(directory, problems)
    return specs


def spec_files(directory: Path) -> list[Path]:
    return sorted(
        path
        for path in directory.iterdir()
        if path.suffix in SPEC_SUFFIXES and _is_integration(path)
    )


def _is_integration(path: Path) -> bool:
    """Integration specs have top-level ``source:`` and ``target:``; other YAML is skipped."""
    head = path.read_text(encoding="utf-8")
    return bool(re.search(r"(?m)^source:", head)) and bool(re.search(r"(?m)^target:", head))


def find_spec(directory: Path, name: str) -> IntegrationSpec:
    for path in spec_files(directory):
        spec = load_spec(path)
        if spec.name == name:
            return spec
    available = ", ".join(sorted(load_specs(directory))) or "none"
    raise SpecError(directory, [f"{directory}: no integration named {name!r} ({available})"])


def _dotted(location: Iterable[str | int]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


_FRIENDLY = {
    "time_delta_type": 'a duration such as "5m", "30s" or a number of seconds',
    "time_delta_parsing": 'a duration such as "5m", "30s" or a number of seconds',
    "timedelta_type": 'a duration such as "5m", "30s" or a number of seconds',
    "timedelta_parsing": 'a duration such as "5m", "30s" or a number of seconds',
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "bool_parsing": "true or false",
    "string_type": "text",
    "dict_type": "a mapping of names to values",
    "list_type": "a list",
    "model_type": "a mapping",
}


def _describe(document: YamlDocument, detail: ErrorDetails) -> str:
    # Pydantic adds the union member's or function's name to loc; they mean nothing to a user.
    location = tuple(
        part
        for part in detail["loc"]
        if not (
            isinstance(part, str)
            and (part[:1].isupper() or "[" in part or part.startswith("function-"))
        )
    )
    line = document.line_of(location)
    where = f"{document.path}:{line}" if line else str(document.path)
    kind = detail["type"]
    got = detail.get("input")
    if kind == "extra_forbidden":
        name = str(location[-1])
        message = f"unknown field {name!r}"
        parent = _model_at(location[:-1])
        if parent is not None:
            close = difflib.get_close_matches(name, _field_names(parent), n=1)
            message += f" (did you mean {close[0]!r}?)" if close else ""
            message += f"; expected one of: {', '.join(sorted(_field_names(parent)))}"
        return f"{where}: {_dotted(location[:-1]) or '(top level)'}: {message}"
    if kind == "missing":
        return f"{where}: {_dotted(location)}: required field is missing"
    if kind in _FRIENDLY:
        return f"{where}: {_dotted(location)}: expected {_FRIENDLY[kind]}, got {got!r}"
    message = detail["msg"].removeprefix("Value error, ")
    return f"{where}: {_dotted(location)}: {message}" + (
        f", got {got!r}" if kind in {"literal_error", "enum", "string_pattern_mismatch"} else ""
    )


def _field_names(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _model_at(location: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The spec model that sits at ``location`` (for suggestions on unknown fields)."""
    model: type[BaseModel] = IntegrationSpec
    index = 0
    while index < len(location):
        part = location[index]
        if model is IntegrationSpec and part == "mapping":
            if index + 1 >= len(location):
                return None
            model, index = FieldMapping, index + 2
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        nested = _nested_model(field.annotation)
        if nested is None:
            return None
        model, index = nested, index + 1
    return model


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    candidates = getattr(annotation, "__args__", None) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


__all__ = [
    "BlockSecret",
    "CursorSpec",
    "EnvSecret",
    "ExpressionError",
    "FieldMapping",
    "IntegrationSpec",
    "ScheduleSpec",
    "SecretRef",
    "SourceSpec",
    "SpecError",
    "TargetSpec",
    "find_spec",
    "load_spec",
    "load_specs",
]
