"""Two-way integration specs: two endpoints kept in step, field by field.

One YAML file names two endpoints, ``a`` and ``b`` (each a ``source:``-like block with its key,
fields and cursor), and for every synced field the name on each side, the direction it flows
and, for a field flowing both ways, which side wins when both changed::

    fields:
      title:   {a: short_description, b: title, direction: both, conflict: newest_wins}
      urgency: {a: urgency, b: urgency, direction: both, conflict: a_wins,
                map_a_to_b: {"1": high, "2": medium, "3": low}}
      notes:   {a: work_notes, b: notes, direction: b_to_a}
    correlation: {a: correlation_id, b: sn_sys_id}

``correlation`` names where each side keeps the other side's key: ``correlation.b`` is the
field of B that holds A's key, ``correlation.a`` the field of A that holds B's key.

A spec is checked as strictly as a one-way spec (``syncline.specs``), with errors in the same
form (file:line, field path, what was expected), and ``TwoWaySpec.views`` gives the two one-way
``IntegrationSpec``s it stands for, A→B and B→A.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, Self, get_args

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from syncline.specs import (
    IntegrationSpec,
    Problem,
    ScheduleSpec,
    SourceSpec,
    StrictModel,
    TargetSpec,
    _describe,
    _dotted,
    _Found,
    _model_at,
    _problems,
    _user_location,
    load_validated,
)
from syncline.yaml_lines import Location, YamlDocument

Direction = Literal["both", "a_to_b", "b_to_a"]
Conflict = Literal["a_wins", "b_wins", "newest_wins", "manual"]
FieldType = Literal["text", "integer", "number", "boolean", "datetime"]

# Which directions read a side (and so need the field in that side's ``fields``) and write the
# other one.
_FROM_A: frozenset[str] = frozenset({"both", "a_to_b"})
_FROM_B: frozenset[str] = frozenset({"both", "b_to_a"})


def _one_of(kind: str, choices: tuple[str, ...], value: Any) -> Any:
    """``value`` if it is one of ``choices``; otherwise an error with the closest choice, as
    for an unknown key (a plain Literal error lists the choices but does not point at one)."""
    if value is None or value in choices:
        return value
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown {kind} {value!r}{hint}; expected one of: {', '.join(choices)}")


class TwoWayField(StrictModel):
    """One field kept in step: its name on each side, its direction and its conflict policy.

    Value maps translate between the sides' codes. On a ``both`` field a value travels out and
    back, so what B's value is written to A as must read back as that value: otherwise it would
    change on its way back and the two sides would keep rewriting each other. Several A codes
    may share one B value (``map_b_to_a`` then names the code to write); one map alone is
    inverted for the other way, which needs it to be one-to-one.
    """

    a: str = Field(min_length=1, description="the field's name in A")
    b: str = Field(min_length=1, description="the field's name in B")
    direction: Direction
    conflict: Conflict | None = Field(
        default=None, description="both ways only: which change wins when both sides changed"
    )
    type: FieldType = Field(
        default="text",
        description='how values are compared across the sides (ServiceNow\'s "2" equals a '
        "database's 2 as integers) and written to typed columns",
    )
    map_a_to_b: dict[str, str] | None = None
    map_b_to_a: dict[str, str] | None = None

    @field_validator("direction", mode="before")
    @classmethod
    def _known_direction(cls, value: Any) -> Any:
        return _one_of("direction", get_args(Direction), value)

    @field_validator("conflict", mode="before")
    @classmethod
    def _known_conflict(cls, value: Any) -> Any:
        return _one_of("conflict policy", get_args(Conflict), value)

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: Any) -> Any:
        return _one_of("field type", get_args(FieldType), value)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[Problem] = []
        if self.direction == "both" and self.conflict is None:
            problems.append(
                (
                    ("conflict",),
                    "a field synced both ways needs a conflict policy: "
                    f"{', '.join(get_args(Conflict))}",
                )
            )
        if self.direction != "both" and self.conflict is not None:
            problems.append(
                (
                    ("conflict",),
                    f"conflict is for fields synced both ways; direction {self.direction!r} "
                    "has one writer and nothing to resolve",
                )
            )
        # A map for a way the field never flows would be silently unused.
        for name, flows in (("map_a_to_b", _FROM_A), ("map_b_to_a", _FROM_B)):
            if getattr(self, name) is not None and self.direction not in flows:
                problems.append(((name,), f"{name} is never used by direction {self.direction!r}"))
        problems.extend(self._inverse_maps())
        if problems:
            raise _problems(problems)
        return self

    def _inverse_maps(self) -> list[Problem]:
        forward, backward = self.map_a_to_b, self.map_b_to_a
        if forward is not None and backward is not None:
            # Several A codes may share one B value (ServiceNow's Resolved and Closed are both
            # Jira's Done), as long as what B's value is written to A as reads back as that
            # value: otherwise the field would change on its way back and echo for ever.
            problems: list[Problem] = [
                (
                    ("map_b_to_a", value),
                    f"map_b_to_a gives {code!r} for {value!r}, but map_a_to_b gives "
                    f"{forward[code]!r} for {code!r}: {value!r} written to A would read back "
                    f"as {forward[code]!r}"
                    if code in forward
                    else f"map_b_to_a gives {code!r} for {value!r}, which map_a_to_b lacks: "
                    f"add {code!r}: {value!r} to map_a_to_b",
                )
                for value, code in backward.items()
                if forward.get(code) != value
            ]
            if self.direction == "both":
                problems += [
                    (
                        ("map_b_to_a",),
                        f"map_a_to_b gives {value!r} for {code!r}, so map_b_to_a needs "
                        f"{value!r} (the A code to write when B holds it)",
                    )
                    for code, value in forward.items()
                    if value not in backward
                ]
            return problems
        if self.direction == "both":
            for name, table in (("map_a_to_b", forward), ("map_b_to_a", backward)):
                shared = _shared_values(table or {})
                if shared:
                    return [
                        (
                            (name,),
                            f"{name} gives {shared[1]!r} for both {shared[0][0]!r} and "
                            f"{shared[0][1]!r}, so the way back cannot tell them apart; give "
                            "map_b_to_a too, naming the code to write for each value",
                        )
                    ]
        return []

    def value_map(self, way: Literal["a_to_b", "b_to_a"]) -> dict[str, str] | None:
        """The value map one way: the one given, or the inverse of the other way's."""
        given, other = (
            (self.map_a_to_b, self.map_b_to_a)
            if way == "a_to_b"
            else (self.map_b_to_a, self.map_a_to_b)
        )
        if given is not None:
            return dict(given)
        if other is not None and self.direction == "both":
            return {value: code for code, value in other.items()}
        return None


def _shared_values(table: dict[str, str]) -> tuple[tuple[str, str], str] | None:
    """Two codes that ``table`` maps to the same value, and that value; ``None`` if none do."""
    seen: dict[str, str] = {}
    for code, value in table.items():
        if value in seen:
            return (seen[value], code), value
        seen[value] = code
    return None


class CorrelationSpec(StrictModel):
    """Where each side keeps the other side's key."""

    a: str = Field(min_length=1, description="the field of A that holds B's key")
    b: str = Field(min_length=1, description="the field of B that holds A's key")


class TwoWaySpec(StrictModel):
    """A two-way integration: endpoints ``a`` and ``b`` and the fields kept in step."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="lower-case slug")
    description: str = ""
    two_way: Literal[True] = Field(description="marks the file as a two-way spec")
    a: SourceSpec
    b: SourceSpec
    fields: dict[str, TwoWayField] = Field(min_length=1)
    correlation: CorrelationSpec
    creates: Direction = Field(
        default="both",
        description="which way a record new on one side is created on the other; an "
        "escalation (incidents open issues, not the other way round) is a_to_b",
    )
    batch_size: int = Field(default=5_000, ge=1, le=1_000_000)
    schedule: ScheduleSpec | None = None

    @field_validator("creates", mode="before")
    @classmethod
    def _known_creates(cls, value: Any) -> Any:
        return _one_of("direction", get_args(Direction), value)

    def creates_on(self, side: Literal["a", "b"]) -> bool:
        """Whether a record new on the other side is created on ``side``."""
        return self.creates == "both" or self.creates == ("b_to_a" if side == "a" else "a_to_b")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Checks across sections, each reported at the entry that causes it. The views are
        built only from a spec that passes them, so that a mistake is named here, in the
        spec's own terms, rather than in a view's."""
        problems = [
            *self._unread_fields(),
            *self._correlation(),
            *self._double_writers(),
            *self._change_times(),
        ]
        if problems:
            raise _problems(problems)
        for way, build in (("a_to_b", self._view_a_to_b), ("b_to_a", self._view_b_to_a)):
            try:
                build()
            except ValidationError as error:
                messages = "; ".join(
                    f"{_dotted(detail['loc'])}: {detail['msg']}"
                    for detail in error.errors(include_url=False)
                )
                problems.append(((), f"the {way} view is not a valid spec: {messages}"))
        if problems:
            raise _problems(problems)
        return self

    def _unread_fields(self) -> list[Problem]:
        """Every synced field, whichever way it flows, is in its side's ``fields`` (when that
        side lists them): a run reads back what it wrote, to recognise its own writes, and
        rewrites a record with the values it holds."""
        uses: list[tuple[Literal["a", "b"], Location, str]] = [
            ("a", ("correlation", "a"), self.correlation.a),
            ("b", ("correlation", "b"), self.correlation.b),
        ]
        for name, field in self.fields.items():
            uses.append(("a", ("fields", name, "a"), field.a))
            uses.append(("b", ("fields", name, "b"), field.b))
        problems: list[Problem] = []
        for side, location, field_name in uses:
            listed = self.a.fields if side == "a" else self.b.fields
            if listed is not None and field_name not in listed:
                close = difflib.get_close_matches(field_name, listed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append((location, f"{side}.fields lacks {field_name}{hint}"))
        return problems

    def _correlation(self) -> list[Problem]:
        """The link fields belong to the sync alone: a side's own key is not the other side's,
        and a synced field that also wrote a link would break the match of every record."""
        problems: list[Problem] = []
        for side, endpoint, link in (
            ("a", self.a, self.correlation.a),
            ("b", self.b, self.correlation.b),
        ):
            if link == endpoint.key:
                problems.append(
                    (
                        ("correlation", side),
                        f"{link!r} is {side}.key; correlation.{side} is the field of {side} that "
                        f"holds the other side's key",
                    )
                )
            for name, field in self.fields.items():
                if getattr(field, side) == link:
                    problems.append(
                        (
                            ("fields", name, side),
                            f"{link!r} is correlation.{side}, which the sync keeps itself",
                        )
                    )
        return problems

    def _change_times(self) -> list[Problem]:
        """``newest_wins`` compares the records' change times: both sides need a cursor."""
        problems: list[Problem] = []
        for name, field in self.fields.items():
            if field.conflict != "newest_wins":
                continue
            for side, endpoint in (("a", self.a), ("b", self.b)):
                if endpoint.cursor is None:
                    problems.append(
                        (
                            ("fields", name, "conflict"),
                            f"newest_wins compares change times, and {side} has no cursor "
                            f"(add {side}.cursor naming its change-time field)",
                        )
                    )
        return problems

    def _double_writers(self) -> list[Problem]:
        """No field of a side is written by two synced fields: one would overwrite the other."""
        problems: list[Problem] = []
        for side, writes in (("b", _FROM_A), ("a", _FROM_B)):
            first: dict[str, str] = {}
            for name, field in self.fields.items():
                if field.direction not in writes:
                    continue
                written = str(getattr(field, side))
                if written in first:
                    problems.append(
                        (
                            ("fields", name, side),
                            f"{side} field {written!r} is written by {first[written]!r} too",
                        )
                    )
                else:
                    first[written] = name
        return problems

    def views(self) -> tuple[IntegrationSpec, IntegrationSpec]:
        """The one-way specs this spec stands for: (A→B, B→A).

        Each view upserts by the correlation field of its *target*, which it fills from its
        source's key: A→B finds B rows by ``correlation.b`` (the column holding A's key) and
        B→A finds A records by ``correlation.a`` (the field holding B's key). A target's own
        key cannot be used: a record the view creates gets it from the target system
        (ServiceNow's sys_id, an identity column), so the view never knows it beforehand.

        Deletions are not carried across (``deletes`` stays ``ignore``): a record missing from
        one side may be new on the other. Conflicts are not the views' concern either; the
        engine decides per field which view's change is written.
        """
        return self._view_a_to_b(), self._view_b_to_a()

    def _view_a_to_b(self) -> IntegrationSpec:
        return self._view("a_to_b", self.a, self.b, _FROM_A, self.correlation.b)

    def _view_b_to_a(self) -> IntegrationSpec:
        return self._view("b_to_a", self.b, self.a, _FROM_B, self.correlation.a)

    def _view(
        self,
        way: Literal["a_to_b", "b_to_a"],
        source: SourceSpec,
        target: SourceSpec,
        directions: frozenset[str],
        link: str,
    ) -> IntegrationSpec:
        reads, writes = ("a", "b") if way == "a_to_b" else ("b", "a")
        mapping: dict[str, dict[str, Any]] = {}
        for field in self.fields.values():
            if field.direction not in directions:
                continue
            entry: dict[str, Any] = {"from": getattr(field, reads)}
            value_map = field.value_map(way)
            if value_map is not None:
                entry["map"] = value_map
            mapping[getattr(field, writes)] = entry
        mapping[link] = {"from": source.key, "required": True}
        # The target is written, never read, by this view: only its endpoint settings count.
        target_block = target.model_dump(by_alias=True, include=set(TargetSpec.model_fields))
        data: dict[str, Any] = {
            "name": f"{self.name}-{way.replace('_', '-')}",
            "description": self.description,
            "source": source.model_dump(by_alias=True, exclude_none=True),
            "target": {**target_block, "key": link},
            "mapping": mapping,
            "batch_size": self.batch_size,
        }
        if self.schedule is not None:
            data["schedule"] = self.schedule.model_dump()
        return IntegrationSpec.model_validate(data)


def load_two_way_spec(path: Path, *, environ: dict[str, str] | None = None) -> TwoWaySpec:
    """Load and validate one two-way spec file; raise ``SpecError`` naming every problem."""
    return load_validated(path, TwoWaySpec, environ=environ, describe=_describe_two_way)


def _describe_two_way(document: YamlDocument, detail: ErrorDetails) -> list[_Found]:
    """As ``syncline.specs._describe``, with unknown keys matched against the two-way models
    (the one-way describer suggests names from ``IntegrationSpec``)."""
    if detail["type"] != "extra_forbidden":
        return _describe(document, detail)
    location = _user_location(document.data, detail["loc"])
    name = str(location[-1])
    message = f"unknown field {name!r}"
    parent = _model_at(location[:-1], TwoWaySpec, {"fields": TwoWayField})
    if parent is not None:
        names = [field.alias or key for key, field in parent.model_fields.items()]
        close = difflib.get_close_matches(name, names, n=1)
        message += f" (did you mean {close[0]!r}?)" if close else ""
        message += f"; expected one of: {', '.join(sorted(names))}"
    return [_Found(location, message, location[:-1])]


__all__ = [
    "Conflict",
    "CorrelationSpec",
    "Direction",
    "FieldType",
    "TwoWayField",
    "TwoWaySpec",
    "load_two_way_spec",
]
