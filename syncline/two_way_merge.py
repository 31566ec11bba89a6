"""Deciding one pair of records field by field: what changed where, what wins, what is held.

A two-way run compares each side's values with the values both sides last agreed on (the
pair's ``synced_values`` in the ledger), field by field:

- a side whose value still equals the agreed one did not change it. Syncline's own write
  coming back is exactly that: what it wrote, read back through the reverse value map and the
  field's type, equals what it agreed; so an echo is skipped, and a field the vendor derived on
  its own (ServiceNow's priority from impact and urgency) is a change of that field alone;
- a field that changed on one side flows to the other (if its direction lets it);
- a field that changed on both sides to different values is a conflict, decided by the field's
  policy: ``a_wins``, ``b_wins``, ``newest_wins`` (the record changed last, by each side's own
  change time; a tie goes to A) or ``manual``: neither is written, the pair is held with both
  versions until the sides agree again.

Values are compared in one form: text normalised by the field's ``type``, in B's terms (A's
values pass through ``map_a_to_b``). Pure functions: no connector, no ledger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd

from syncline.two_way import FieldType, TwoWayField

Side = Literal["a", "b"]
SIDES: tuple[Side, Side] = ("a", "b")
Value = str | None
Values = dict[str, Value]

# Which directions a side's changes flow out of, and into.
FLOWS_FROM: dict[Side, frozenset[str]] = {
    "a": frozenset({"both", "a_to_b"}),
    "b": frozenset({"both", "b_to_a"}),
}
_TRUE = frozenset({"true", "1", "yes", "y", "t", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "f", "off"})


class UnmappableValueError(ValueError):
    """A value that has no counterpart on the other side (or is not of the field's type)."""


def other(side: Side) -> Side:
    return "b" if side == "a" else "a"


def normalise(value: Any, kind: FieldType) -> Value:
    """``value`` as comparable text: empty is ``None`` (ServiceNow sends "" for a database's
    NULL), integers without a decimal point, booleans as true/false, times as UTC seconds."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, str):
        value = value.strip() if kind != "text" else value
        if value == "":
            return None
    try:
        if kind == "text":
            return str(value)
        if kind == "integer":
            number = float(value)
            if not number.is_integer():
                raise ValueError(f"{value!r} is not a whole number")
            return str(int(number))
        if kind == "number":
            return repr(float(value))
        if kind == "boolean":
            text = str(value).strip().lower()
            if text in _TRUE:
                return "true"
            if text in _FALSE:
                return "false"
            raise ValueError(f"{value!r} is not a boolean")
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
        return stamp.strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError) as error:
        raise UnmappableValueError(f"not a {kind}: {error}") from None


@dataclass(frozen=True, slots=True)
class FieldRule:
    """One synced field as the merge needs it."""

    name: str
    spec: TwoWayField

    def native_name(self, side: Side) -> str:
        return self.spec.a if side == "a" else self.spec.b

    def flows_from(self, side: Side) -> bool:
        return self.spec.direction in FLOWS_FROM[side]

    def to_common(self, side: Side, native: Value) -> Value:
        """A side's normalised value in B's terms (the form values are compared in)."""
        if side == "b" or native is None:
            return native
        table = self.spec.value_map("a_to_b")
        if table is None:
            return native
        if native not in table:
            raise UnmappableValueError(
                f"{native!r} is not in map_a_to_b (known: {', '.join(sorted(table)) or 'none'})"
            )
        return table[native]

    def to_native(self, side: Side, common: Value) -> Value:
        """A common (B-terms) value as ``side`` writes it."""
        if side == "b" or common is None:
            return common
        table = self.spec.value_map("b_to_a")
        if table is None:
            return common
        if common not in table:
            raise UnmappableValueError(
                f"{common!r} is not in map_b_to_a (known: {', '.join(sorted(table)) or 'none'})"
            )
        return table[common]


@dataclass(slots=True)
class SideRecord:
    """One side's record of a pair: its values per synced field (normalised, own terms) and,
    for the fields that flow out of it, the same values in common terms."""

    key: str
    native: Values
    common: Values
    changed_at: datetime | None = None
    back_link: str | None = None  # the other side's key, as this record holds it
    raw: dict[str, Any] = field(default_factory=dict)


def side_record(
    rules: list[FieldRule],
    side: Side,
    key: str,
    row: dict[str, Any],
    *,
    link_field: str,
    changed_at: datetime | None,
) -> SideRecord:
    """Read one side's row; raises ``UnmappableValueError`` naming the field."""
    native: Values = {}
    common: Values = {}
    for rule in rules:
        name = rule.native_name(side)
        try:
            native[rule.name] = normalise(row.get(name), rule.spec.type)
            if rule.flows_from(side):
                common[rule.name] = rule.to_common(side, native[rule.name])
        except UnmappableValueError as error:
            raise UnmappableValueError(f"{side}.{name}: {error}") from None
    back_link = normalise(row.get(link_field), "text")
    return SideRecord(key, native, common, changed_at, back_link, row)


@dataclass(frozen=True, slots=True)
class Conflict:
    """A field changed on both sides to different values."""

    field: str
    a: Value
    b: Value
    synced: Value
    winner: Side | None  # None: held (manual)


@dataclass(slots=True)
class Decision:
    """What to do with one pair: the values to write per side (in that side's own terms), the
    values both sides hold afterwards (common terms), and the conflicts met."""

    writes: dict[Side, Values] = field(default_factory=lambda: {"a": {}, "b": {}})
    synced: Values = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)
    # Whether a side brought a change of its own (not an echo of Syncline's write).
    changed: dict[Side, bool] = field(default_factory=lambda: {"a": False, "b": False})

    @property
    def held(self) -> list[Conflict]:
        return [conflict for conflict in self.conflicts if conflict.winner is None]


def decide(
    rules: list[FieldRule],
    a: SideRecord | None,
    b: SideRecord | None,
    synced: Values | None,
) -> Decision:
    """Merge a pair: what to write to each side, what both hold afterwards, the conflicts.

    ``synced`` is what both sides last agreed (``None``: they never met, e.g. a record just
    created on one side, or a pair found by its back-link with nothing in the ledger; then each
    value is a change, and two differing values are a conflict). A side that is ``None`` has
    no record yet: it gets every field that flows to it. Raises ``UnmappableValueError`` when
    a winning value has no counterpart on the side it must be written to.
    """
    decision = Decision()
    present: dict[Side, SideRecord] = {}
    if a is not None:
        present["a"] = a
    if b is not None:
        present["b"] = b
    for rule in rules:
        sources = [side for side in present if rule.flows_from(side)]
        values = {side: present[side].common[rule.name] for side in sources}
        known = synced is not None and rule.name in synced
        agreed = synced.get(rule.name) if synced is not None else None
        moved = [side for side in sources if not known or values[side] != agreed]
        if synced is not None:
            for side in moved:
                decision.changed[side] = True
        if not moved:
            if known:
                decision.synced[rule.name] = agreed
            continue
        winner: Side | None = moved[0]
        if len(moved) == 2 and values["a"] != values["b"]:
            winner = _winner(rule, present)
            decision.conflicts.append(Conflict(rule.name, values["a"], values["b"], agreed, winner))
        if winner is None:  # held: both keep their values, the agreed one stays
            if known:
                decision.synced[rule.name] = agreed
            continue
        value = values[winner]
        decision.synced[rule.name] = value
        target = other(winner)
        if not rule.flows_from(winner):
            continue
        try:
            written = rule.to_native(target, value)
        except UnmappableValueError as error:
            raise UnmappableValueError(
                f"{winner}.{rule.native_name(winner)} -> {target}.{rule.native_name(target)}: "
                f"{error}"
            ) from None
        if target not in present or present[target].native[rule.name] != written:
            decision.writes[target][rule.name] = written
    return decision


def _winner(rule: FieldRule, present: dict[Side, SideRecord]) -> Side | None:
    policy = rule.spec.conflict
    if policy == "a_wins":
        return "a"
    if policy == "b_wins":
        return "b"
    if policy == "newest_wins":
        a_time, b_time = present["a"].changed_at, present["b"].changed_at
        if a_time is None or b_time is None:
            return None  # cannot tell: held like manual rather than guessed
        return "b" if b_time > a_time else "a"
    return None
