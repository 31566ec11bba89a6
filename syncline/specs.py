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
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, Self, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from connectors.base import registry
from connectors.base.records import Column, ColumnType
from syncline.durations import Duration
from syncline.expressions import Expression, ExpressionError
from syncline.yaml_lines import Location, MissingVariableError, YamlDocument, load_yaml

if TYPE_CHECKING:
    from syncline.two_way import TwoWaySpec

SPEC_SUFFIXES = (".yaml", ".yml")

# Error types of our own: several problems found at once, each at its own place (see
# _problems), and a credential that is not a secret reference.
_PROBLEMS = "spec_problems"
_REFERENCE_ERROR = "secret_reference"
_REFERENCE_MESSAGE = (
    "a secret must be a reference, {env: VARIABLE} or {block: secret/name}, never a literal value"
)


# A problem at a location relative to the model checked, optionally shown under another path
# (an unknown key is reported at its own line, under its parent's path).
Problem = tuple[Location, str] | tuple[Location, str, Location]


def _problems(problems: Sequence[Problem]) -> PydanticCustomError:
    """One error for several problems, each with its location relative to the model checked.

    ``load_spec`` reports each at its own line; code that validates a spec directly still
    gets every problem in the error's message.
    """
    summary = "; ".join(f"{_dotted(problem[0])}: {problem[1]}" for problem in problems)
    return PydanticCustomError(
        _PROBLEMS, "{summary}", {"summary": summary, "problems": list(problems)}
    )


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored.

    Inputs stay out of error messages: a spec may hold a literal secret by mistake.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, hide_input_in_errors=True
    )


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


def _secret_kind(value: Any) -> str | None:
    """Which reference ``value`` means to be; ``None`` (a literal or a stray mapping) is an error.

    Choosing the member up front gives one error per mistake instead of one per member.
    """
    if isinstance(value, EnvSecret) or (isinstance(value, dict) and "env" in value):
        return "EnvSecret"
    if isinstance(value, BlockSecret) or (isinstance(value, dict) and "block" in value):
        return "BlockSecret"
    return None


_CheckedSecretRef = Annotated[
    Annotated[EnvSecret, Tag("EnvSecret")] | Annotated[BlockSecret, Tag("BlockSecret")],
    Discriminator(
        _secret_kind,
        custom_error_type=_REFERENCE_ERROR,
        custom_error_message=_REFERENCE_MESSAGE,
    ),
]

# Names that hold secrets: refused in connection, no default in credentials (it would be a
# literal secret), and their values are never repeated in an error.
_SECRET_NAMES = re.compile(r"password|secret|token|key", re.IGNORECASE)


class CursorSpec(StrictModel):
    """How far an incremental read got: the source field and the re-read overlap."""

    field: str
    type: Literal["datetime", "integer"] = "datetime"
    overlap: Duration = timedelta(minutes=5)
    overlap_count: int = Field(default=0, ge=0, description="for integer cursors")


class EndpointSpec(StrictModel):
    connector: str = Field(description="a registered connector, e.g. servicenow or sql")
    object: str = Field(min_length=1, description="table, object or resource name")
    connection: dict[str, str | int | float | bool] = Field(default_factory=dict)
    credentials: dict[str, _CheckedSecretRef] = Field(default_factory=dict)
    key: str = Field(min_length=1)

    @field_validator("connector")
    @classmethod
    def _registered(cls, value: str) -> str:
        try:
            registry.get(value)
        except registry.UnknownConnectorError as error:
            raise PydanticCustomError(
                "unknown_connector", "{message}", {"message": str(error)}
            ) from None
        return value

    @field_validator("connection", mode="before")
    @classmethod
    def _plain_settings(cls, value: Any) -> Any:
        """Checked here, before the value's type, so that a secret is refused whatever its form
        and a wrong value is one problem (not one per scalar type it could have been)."""
        if not isinstance(value, dict):
            return value
        problems: list[tuple[Location, str]] = []
        for name, setting in value.items():
            if _SECRET_NAMES.search(str(name)):
                problems.append(
                    (
                        (str(name),),
                        "looks like a secret: move it to credentials as {env: VARIABLE} or "
                        "{block: secret/name}, never a literal value",
                    )
                )
            elif not isinstance(setting, str | int | float):
                problems.append(
                    ((str(name),), f"expected text, a number or true/false, got {setting!r}")
                )
        if problems:
            raise _problems(problems)
        return value

    @field_validator("credentials")
    @classmethod
    def _no_secret_defaults(cls, value: dict[str, SecretRef]) -> dict[str, SecretRef]:
        problems: list[tuple[Location, str]] = [
            ((name, "default"), "a secret may not have a default in a spec")
            for name, ref in value.items()
            if isinstance(ref, EnvSecret) and ref.default and _SECRET_NAMES.search(name)
        ]
        if problems:
            raise _problems(problems)
        return value

    @model_validator(mode="after")
    def _settings_of_the_connector(self) -> Self:
        """Connection and credential names are the connector's settings, and the values given
        in connection have the types its settings model wants. A required setting that is
        not given is left to run time: it may be filled in where the spec is used."""
        connector = registry.get(self.connector)
        problems = _settings_problems(connector, self.connection, self.credentials)
        if problems:
            raise _problems(problems)
        return self


def _settings_problems(
    connector: registry.Connector,
    connection: dict[str, str | int | float | bool],
    credentials: dict[str, SecretRef],
) -> list[Problem]:
    names = connector.setting_names()
    problems: list[Problem] = []
    for section, given, listed in (
        ("connection", connection, [name for name in names if not _SECRET_NAMES.search(name)]),
        ("credentials", credentials, names),
    ):
        for name in given:
            if name in names:
                continue
            close = difflib.get_close_matches(name, listed, n=1) or difflib.get_close_matches(
                name, names, n=1
            )
            message = f"unknown setting {name!r}"
            message += f" (did you mean {close[0]!r}?)" if close else ""
            message += f"; {connector.name} settings: {', '.join(listed)}"
            problems.append(((section, name), message, (section,)))
    known = {name: value for name, value in connection.items() if name in names}
    try:
        connector.settings.model_validate(known)
    except ValidationError as error:
        for detail in error.errors(include_url=False):
            loc = detail["loc"]
            if not loc or loc[0] not in known:
                # Missing settings, and checks across settings, need the credentials: they
                # are checked when the connector is opened.
                continue
            location: Location = ("connection", *loc)
            found = _describe_one(location, detail)
            problems.append((found.location, found.message))
    return problems


class SourceSpec(EndpointSpec):
    fields: list[str] | None = None
    filter: str | None = Field(default=None, description="native filter: encoded query, SQL")
    cursor: CursorSpec | None = None


class TargetSpec(EndpointSpec):
    pass


class DeletesSpec(StrictModel):
    """What happens in the target when a source record is deleted or leaves the spec's scope.

    Two things feed it: every run reads the keys changed in its window without the native
    filter (a key changed but no longer matching has left the scope), and a key-only scan of
    the whole scope every ``scan_every`` (and on every full refresh) finds hard deletes.
    """

    policy: Literal["delete", "soft", "ignore"] = "ignore"
    column: str | None = Field(
        default=None, description="soft: the target column that gets the time of deletion"
    )
    scan_every: Duration | None = Field(
        default=timedelta(days=7),
        description="how often a run scans all source keys for hard deletes (null: only on "
        "full refresh)",
    )

    @model_validator(mode="after")
    def _column_for_soft(self) -> Self:
        if self.policy == "soft" and not self.column:
            raise _problems(
                [(("policy",), "policy 'soft' needs a column (e.g. column: deleted_at)")]
            )
        if self.policy != "soft" and self.column:
            raise _problems(
                [(("column",), f"column is used by policy 'soft' only, not {self.policy!r}")]
            )
        return self


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
    deletes: DeletesSpec = Field(default_factory=DeletesSpec)

    @field_validator("mapping", mode="before")
    @classmethod
    def _expand(cls, value: Any) -> Any:
        return _expand_shorthand(value)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Checks across sections; every problem is reported at the entry that causes it."""
        problems = [*self._unread_fields(), *self._target_key(), *self._deletes()]
        if problems:
            raise _problems(problems)
        return self

    def _unread_fields(self) -> list[tuple[Location, str]]:
        if not self.source.fields:
            return []
        known = set(self.source.fields)
        uses: list[tuple[Location, Iterable[str]]] = [(("source", "key"), [self.source.key])]
        if self.source.cursor:
            uses.append((("source", "cursor", "field"), [self.source.cursor.field]))
        for name, field in self.mapping.items():
            if field.from_ is not None:
                uses.append((("mapping", name, "from"), [field.from_]))
            elif field.expr is not None:
                uses.append((("mapping", name, "expr"), field.expr.paths))
            else:
                uses.append((("mapping", name), [name]))
        if self.where is not None:
            uses.append((("where",), self.where.paths))
        problems: list[tuple[Location, str]] = []
        for location, names in uses:
            missing = sorted({name for name in names if not _reads(name, known)})
            if missing:
                problems.append((location, f"source.fields lacks {', '.join(missing)}"))
        return problems

    def _target_key(self) -> list[tuple[Location, str]]:
        key = self.target.key
        if key in self.mapping:
            return []
        close = difflib.get_close_matches(key, list(self.mapping), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return [(("target", "key"), f"{key!r} must be one of the mapping's fields{hint}")]

    def _deletes(self) -> list[tuple[Location, str]]:
        deletes, key, source_key = self.deletes, self.target.key, self.source.key
        problems: list[tuple[Location, str]] = []
        field = self.mapping.get(key)
        if deletes.policy != "ignore" and field is not None:
            reason = _not_taken_directly(key, field, source_key)
            if reason:
                problems.append(
                    (
                        ("deletes", "policy"),
                        f"policy {deletes.policy!r} needs target.key {key!r} to take source.key "
                        f"{source_key!r} as it is ({key}: {{from: {source_key}}}, a type "
                        f"allowed), because deletions are found by source key and applied "
                        f"by target key; {key!r} {reason}",
                    )
                )
        if deletes.policy != "ignore":
            for role, endpoint, needed in (
                ("source", self.source, "read_keys"),
                ("target", self.target, "delete"),
            ):
                try:
                    operations = registry.get(endpoint.connector).operations
                except registry.UnknownConnectorError:
                    continue  # reported at the connector's own line
                if needed not in operations:
                    problems.append(
                        (
                            ("deletes", "policy"),
                            f"policy {deletes.policy!r} needs a {role} that can "
                            f"{needed.replace('_', ' ')}; the {endpoint.connector} connector "
                            f"offers {', '.join(sorted(operations))}",
                        )
                    )
        if deletes.column is not None and deletes.column in self.mapping:
            problems.append(
                (
                    ("deletes", "column"),
                    f"{deletes.column!r} is a mapping field already; the time of deletion "
                    f"needs a column of its own (e.g. deleted_at)",
                )
            )
        return problems

    def target_columns(self) -> list[Column]:
        columns = [
            Column(name, field.type, nullable=not field.required and name != self.target.key)
            for name, field in self.mapping.items()
        ]
        if self.deletes.column is not None:
            columns.append(Column(self.deletes.column, ColumnType.DATETIME))
        return columns

    def source_fields(self) -> list[str]:
        """The source fields a run reads: ``fields`` plus the key and cursor (deduplicated)."""
        names = list(self.source.fields or [])
        for extra in (self.source.key, self.source.cursor.field if self.source.cursor else None):
            if extra is not None and extra not in names:
                names.append(extra)
        return names


def _not_taken_directly(name: str, field: FieldMapping, source_key: str) -> str | None:
    """Why target field ``name`` is not the source key as it is, or ``None`` if it is."""
    if field.expr is not None:
        return "is computed by expr"
    origin = field.from_ if field.from_ is not None else name
    if origin != source_key:
        return f"is taken from {origin!r}"
    if field.map is not None:
        return "is translated by map"
    if field.default is not None:
        return "has a default"
    return None


def _reads(path: str, known: set[str]) -> bool:
    """Whether reading ``known`` fields gives ``path``: the field itself (a ServiceNow dot-walk
    such as ``assigned_to.name`` is one), its ``.display`` column (display values "all" add one
    per field read), or a field it walks into (nested JSON: ``fields`` gives ``fields.status``)."""
    if path in known or path.removesuffix(".display") in known:
        return True
    parts = path.split(".")
    return any(".".join(parts[:end]) in known for end in range(1, len(parts)))


SpecModel = TypeVar("SpecModel", bound=BaseModel)


class SpecError(ValueError):
    """One or more problems in one spec file, each with its line and field path."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


def load_spec(path: Path, *, environ: dict[str, str] | None = None) -> IntegrationSpec:
    """Load and validate one spec file; raise ``SpecError`` naming every problem."""
    return load_validated(path, IntegrationSpec, environ=environ)


def load_validated(
    path: Path,
    model: type[SpecModel],
    *,
    environ: dict[str, str] | None = None,
    describe: Callable[[YamlDocument, ErrorDetails], list[_Found]] | None = None,
) -> SpecModel:
    """Load one YAML file and validate it as ``model``; raise ``SpecError`` naming every
    problem (YAML errors, duplicate keys, validation) at its line, in the order of the file.

    ``describe`` turns a pydantic error into problems; the default knows IntegrationSpec's
    fields (for "did you mean"), other spec kinds pass their own."""
    try:
        document = load_yaml(path, environ=environ)
    except MissingVariableError as error:
        raise SpecError(path, [f"{path}: {_dotted(error.location)}: {error}"]) from None
    except yaml.MarkedYAMLError as error:
        raise SpecError(path, [_describe_yaml_error(path, error)]) from None
    except Exception as error:
        raise SpecError(path, [f"{path}: not valid YAML: {error}"]) from None
    if not isinstance(document.data, dict):
        raise SpecError(path, [f"{path}:1: expected a mapping of spec fields at the top level"])
    found: list[_Found] = [
        _Found(duplicate.location, f"duplicate key (first at line {duplicate.first_line})")
        for duplicate in document.duplicates
    ]
    spec: SpecModel | None = None
    try:
        spec = model.model_validate(document.data)
    except ValidationError as error:
        for detail in error.errors():
            found.extend((describe or _describe)(document, detail))
    if not found and spec is not None:
        return spec
    problems: list[tuple[int, str]] = []
    for location, message, shown in found:
        line = document.line_of(location)
        where = f"{path}:{line}" if line else str(path)
        text = f"{where}: {_dotted(location if shown is None else shown)}: {message}"
        problem = (line or 0, text)
        if problem not in problems:
            problems.append(problem)
    # In the order of the file, whichever check found them (sorted() is stable).
    raise SpecError(path, [text for _, text in sorted(problems, key=lambda problem: problem[0])])


class _Found(NamedTuple):
    """A problem at ``location`` (whose line is reported), shown under ``shown`` if given."""

    location: Location
    message: str
    shown: Location | None = None


def _describe_yaml_error(path: Path, error: yaml.MarkedYAMLError) -> str:
    """The line and the problem, without the parser's excerpt of the file: it could be a
    secret that was about to be refused."""
    mark = error.problem_mark or error.context_mark
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    problem = ", ".join(part for part in (error.context, error.problem) if part)
    return f"{where}: not valid YAML: {problem or 'cannot parse'}"


def load_specs(directory: Path) -> dict[str, IntegrationSpec]:
    """Every spec in ``directory`` by name; all files are checked before anything is raised.

    A two-way spec (``two_way: true``) appears as its two one-way views."""
    specs: dict[str, IntegrationSpec] = {}
    problems: list[str] = []
    for path in spec_files(directory):
        try:
            loaded = _two_way_views(path) if _is_two_way(path) else [load_spec(path)]
        except SpecError as error:
            problems.extend(error.problems)
            continue
        for spec in loaded:
            if spec.name in specs:
                problems.append(f"{path}: name {spec.name!r} is used by another spec too")
            specs[spec.name] = spec
    if problems:
        raise SpecError(directory, problems)
    return specs


def _is_two_way(path: Path) -> bool:
    return bool(re.search(r"(?m)^two_way:\s*true\s*(#.*)?$", path.read_text(encoding="utf-8")))


def _two_way_views(path: Path) -> list[IntegrationSpec]:
    """A two-way spec stands for its two one-way views (A→B, B→A), checked as such."""
    from syncline.two_way import load_two_way_spec  # the two-way module builds on this one

    return list(load_two_way_spec(path).views())


def spec_files(directory: Path) -> list[Path]:
    """Every ``*.yaml``/``*.yml`` file directly in ``directory``: each is an integration spec.

    Other YAML (expectation suites, block setup) belongs in subfolders: guessing which files
    are specs would let a spec with a misspelt ``source:`` go unchecked.
    """
    return sorted(
        path for path in directory.iterdir() if path.suffix in SPEC_SUFFIXES and path.is_file()
    )


def _slug(name: str) -> str:
    return name.replace("_", "-").lower()


def _declared_name(path: Path) -> str | None:
    """The file's top-level ``name:``, or ``None`` if the file cannot tell (it does not parse,
    or has no such name). Nothing else in the file is checked here."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def find_integration(directory: Path, name: str) -> IntegrationSpec | TwoWaySpec:
    """The spec of integration ``name``, loading (and validating) only its file: a one-way
    spec, a two-way spec, or one of a two-way spec's views (``<name>-a-to-b``/``-b-to-a``).

    ``<name>.yaml``/``.yml`` (with ``-`` and ``_`` alike) is tried first; otherwise each
    file's top-level ``name:`` is read. Other files are never validated here: a broken
    sibling must not stop this integration's runs (``syncline validate`` checks them all).
    """
    files = spec_files(directory)
    owner = _VIEW_SUFFIX.sub("", name)
    named = [path for path in files if _slug(path.stem) in {_slug(name), _slug(owner)}]
    for path in named:
        declared = _declared_name(path)
        if declared is None or declared in {name, owner}:
            # Its file by name: if it is broken, its own problems are the answer.
            found = _integration_in(path, name)
            if found is not None:
                return found
    available: list[str] = []
    for path in files:
        declared = _declared_name(path)
        if declared in {name, owner}:
            found = _integration_in(path, name)
            if found is not None:
                return found
        if declared is not None:
            available.append(declared)
    listed = ", ".join(sorted(available)) or "none"
    raise SpecError(directory, [f"{directory}: no integration named {name!r} ({listed})"])


def find_spec(directory: Path, name: str) -> IntegrationSpec:
    """The one-way spec ``name`` (a two-way spec's view included): see ``find_integration``."""
    found = find_integration(directory, name)
    if not isinstance(found, IntegrationSpec):
        views = ", ".join(view.name for view in found.views())
        raise SpecError(
            directory,
            [
                f"{directory}: {name!r} is a two-way integration, run as a whole by the "
                f"scheduled-sync flow; its one-way views are {views}"
            ],
        )
    return found


_VIEW_SUFFIX = re.compile(r"-(a-to-b|b-to-a)$")


def _integration_in(path: Path, name: str) -> IntegrationSpec | TwoWaySpec | None:
    if not _is_two_way(path):
        spec = load_spec(path)
        return spec if spec.name == name else None
    from syncline.two_way import load_two_way_spec  # the two-way module builds on this one

    two_way = load_two_way_spec(path)
    if two_way.name == name:
        return two_way
    return next((view for view in two_way.views() if view.name == name), None)


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
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "dict_type": "a mapping of names to values",
    "list_type": "a list",
    "model_type": "a mapping",
}


def _describe(document: YamlDocument, detail: ErrorDetails) -> list[_Found]:
    """Where and what: a check that found several problems gives each at its own place."""
    location = _user_location(document.data, detail["loc"])
    if detail["type"] == _PROBLEMS:
        found: list[_Found] = []
        for problem in detail.get("ctx", {}).get("problems", []):
            shown = (*location, *problem[2]) if len(problem) > 2 else None
            found.append(_Found((*location, *problem[0]), problem[1], shown))
        return found
    return [_describe_one(location, detail)]


def _user_location(data: Any, loc: tuple[str | int, ...]) -> Location:
    """``loc`` without the parts pydantic adds: union members, tags and function names mean
    nothing to a user. A part that is a key in the spec itself is always kept."""
    location: list[str | int] = []
    node = data
    for part in loc:
        in_spec = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if in_spec:
            node = node[part]
        elif isinstance(part, str) and (
            part[:1].isupper() or "[" in part or part.startswith("function-")
        ):
            continue
        else:
            node = None
        location.append(part)
    return tuple(location)


def _may_hold_secret(location: Location) -> bool:
    """Whether the value at ``location`` may be a secret, which an error must never repeat:
    anything under credentials, a whole connection block, or a connection setting whose name
    looks like a secret."""
    for index, part in enumerate(location):
        if part == "credentials":
            return True
        if part == "connection":
            following = location[index + 1 : index + 2]
            return not following or bool(_SECRET_NAMES.search(str(following[0])))
    return False


def _describe_one(location: Location, detail: ErrorDetails) -> _Found:
    kind = detail["type"]
    got = "" if _may_hold_secret(location) else f", got {detail.get('input')!r}"
    if kind == _REFERENCE_ERROR:
        return _Found(location, _REFERENCE_MESSAGE)
    if kind == "extra_forbidden":
        name = str(location[-1])
        message = f"unknown field {name!r}"
        parent = _model_at(location[:-1])
        if parent is not None:
            close = difflib.get_close_matches(name, _field_names(parent), n=1)
            message += f" (did you mean {close[0]!r}?)" if close else ""
            message += f"; expected one of: {', '.join(sorted(_field_names(parent)))}"
        # At the unknown key's line, under its parent's path.
        return _Found(location, message, shown=location[:-1])
    if kind == "missing":
        return _Found(location, "required field is missing")
    if kind in _FRIENDLY:
        return _Found(location, f"expected {_FRIENDLY[kind]}{got}")
    message = detail["msg"].removeprefix("Value error, ")
    return _Found(
        location,
        message + (got if kind in {"literal_error", "enum", "string_pattern_mismatch"} else ""),
    )


def _field_names(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _model_at(
    location: tuple[str | int, ...],
    root: type[BaseModel] | None = None,
    collections: Mapping[str, type[BaseModel]] | None = None,
) -> type[BaseModel] | None:
    """The spec model that sits at ``location`` (for suggestions on unknown fields).

    ``collections`` names the root's fields that map names to models (an integration's
    ``mapping`` holds a FieldMapping per target field)."""
    model: type[BaseModel] = root or IntegrationSpec
    keyed = collections if collections is not None else {"mapping": FieldMapping}
    index = 0
    while index < len(location):
        part = location[index]
        if index == 0 and isinstance(part, str) and part in keyed:
            if index + 1 >= len(location):
                return None
            model, index = keyed[part], index + 2
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
    "DeletesSpec",
    "EnvSecret",
    "ExpressionError",
    "FieldMapping",
    "IntegrationSpec",
    "ScheduleSpec",
    "SecretRef",
    "SourceSpec",
    "SpecError",
    "TargetSpec",
    "find_integration",
    "find_spec",
    "load_spec",
    "load_specs",
]
