"""Encoded queries compiled against string-valued records: each condition becomes a
predicate over a record, ``^OR``/``^NQ`` combine them, ``ORDERBY`` becomes a sort key.
Comparison follows the field's kind (numbers, date-times, booleans, case-insensitive text).
Field types come from the caller through a resolver, so this module knows nothing about any
particular table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sandboxes.servicenow.encoded_query import (
    Condition,
    EncodedQuery,
    EncodedQueryError,
    FieldAccess,
    FieldKind,
    FieldResolver,
    Operator,
    Record,
    RecordPredicate,
    RecordT,
    normalise_timestamp,
    resolve_value,
)

# --- comparison ---------------------------------------------------------------------------


def _number(text: str) -> float | None:
    if not text:
        return None
    try:
        number = float(text.replace(",", ""))
    except ValueError:
        return None
    return None if math.isnan(number) else number


def _comparable(kind: FieldKind, text: str) -> float | str | None:
    """The value used by ``<``, ``>``, BETWEEN and ORDERBY; None when the field is empty or
    not of its declared kind (such records never satisfy a range condition)."""
    if text == "":
        return None
    if kind in (FieldKind.INTEGER, FieldKind.DECIMAL):
        return _number(text)
    if kind is FieldKind.DATETIME:
        if len(text) == 19 and text[10] == " " and text[4] == "-":
            # The stored form already sorts and compares as text; checking three characters
            # instead of parsing keeps a sort of 50,000 records fast.
            return text
        try:
            return normalise_timestamp(text)
        except EncodedQueryError:
            return None
    if kind is FieldKind.DATE:
        return text[:10]
    # String collation on a ServiceNow instance is case-insensitive.
    return text.casefold()


def sort_key(kind: FieldKind, text: str) -> float | str:
    """A plain number or string per kind (cheaper to sort than tuples): empty and unreadable
    values sort first ascending, as NULLs do in ServiceNow's database."""
    comparable = _comparable(kind, text)
    if kind in (FieldKind.INTEGER, FieldKind.DECIMAL):
        return comparable if isinstance(comparable, float) else -math.inf
    return comparable if isinstance(comparable, str) else ""


def _equality_form(kind: FieldKind) -> Callable[[str], Hashable]:
    """The canonical value for ``=``/``!=``/``IN``: numbers compare by value, booleans accept
    ``1``/``0``, strings compare case-insensitively like the instance's database."""
    if kind in (FieldKind.INTEGER, FieldKind.DECIMAL):
        return _number
    if kind is FieldKind.BOOLEAN:
        return lambda text: _BOOLEAN_SPELLINGS.get(text.strip().lower(), text.strip().lower())
    if kind is FieldKind.DATETIME:
        return lambda text: (_comparable(kind, text) or text) if text else ""
    if kind is FieldKind.REFERENCE:
        return lambda text: text.strip().lower()
    return str.casefold


_BOOLEAN_SPELLINGS = {"1": "true", "0": "false"}


def _range_operand(kind: FieldKind, value: str, now: datetime) -> float | str | None:
    return _comparable(kind, resolve_value(value, now))


def _compile_condition(condition: Condition, access: FieldAccess, now: datetime) -> RecordPredicate:
    read, kind = access.read, access.kind
    operator = condition.operator
    if operator is None:  # pragma: no cover - filtered out by the caller
        raise EncodedQueryError(f"invalid condition {condition.text!r}")

    if operator is Operator.IS_EMPTY:
        return lambda record: read(record).strip() == ""
    if operator is Operator.IS_NOT_EMPTY:
        return lambda record: read(record).strip() != ""
    if operator is Operator.EMPTY_STRING:
        return lambda record: read(record) == ""
    if operator is Operator.ANYTHING:
        return lambda record: True

    canonical = _equality_form(kind)
    if operator in (Operator.EQUALS, Operator.NOT_EQUALS):
        expected = canonical(resolve_value(condition.value, now))
        if operator is Operator.EQUALS:
            return lambda record: canonical(read(record)) == expected
        return lambda record: canonical(read(record)) != expected

    if operator in (Operator.IN, Operator.NOT_IN):
        members = frozenset(
            canonical(resolve_value(member, now)) for member in condition.value.split(",")
        )
        if operator is Operator.IN:
            return lambda record: canonical(read(record)) in members
        return lambda record: canonical(read(record)) not in members

    if operator in (
        Operator.LIKE,
        Operator.NOT_LIKE,
        Operator.STARTS_WITH,
        Operator.ENDS_WITH,
    ):
        needle = condition.value.casefold()
        if operator is Operator.LIKE:
            return lambda record: needle in read(record).casefold()
        if operator is Operator.NOT_LIKE:
            return lambda record: needle not in read(record).casefold()
        if operator is Operator.STARTS_WITH:
            return lambda record: read(record).casefold().startswith(needle)
        return lambda record: read(record).casefold().endswith(needle)

    if operator is Operator.BETWEEN:
        low_text, separator, high_text = condition.value.partition("@")
        if not separator:
            raise EncodedQueryError(f"BETWEEN needs 'low@high': {condition.text!r}")
        low = _range_operand(kind, low_text, now)
        high = _range_operand(kind, high_text, now)
        if low is None or high is None:
            raise EncodedQueryError(f"BETWEEN bounds do not fit the field: {condition.text!r}")

        def between(record: Record) -> bool:
            actual = _comparable(kind, read(record))
            return actual is not None and _ordered(low, actual) and _ordered(actual, high)

        return between

    bound = _range_operand(kind, condition.value, now)
    if bound is None:
        raise EncodedQueryError(f"value does not fit the field: {condition.text!r}")
    comparisons: dict[Operator, Callable[[float | str, float | str], bool]] = {
        Operator.GREATER: lambda actual, limit: _ordered(limit, actual) and actual != limit,
        Operator.GREATER_OR_EQUAL: lambda actual, limit: _ordered(limit, actual),
        Operator.LESS: lambda actual, limit: _ordered(actual, limit) and actual != limit,
        Operator.LESS_OR_EQUAL: lambda actual, limit: _ordered(actual, limit),
    }
    compare = comparisons[operator]

    def ranged(record: Record) -> bool:
        actual = _comparable(kind, read(record))
        return actual is not None and compare(actual, bound)

    return ranged


def _ordered(smaller: float | str, larger: float | str) -> bool:
    """``smaller <= larger`` for two values of the same kind; mixed kinds never match."""
    if isinstance(smaller, float) and isinstance(larger, float):
        return smaller <= larger
    if isinstance(smaller, str) and isinstance(larger, str):
        return smaller <= larger
    return False


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    """A query bound to a table's fields: ``matches`` is None when every record matches."""

    matches: RecordPredicate | None
    orderings: tuple[tuple[FieldAccess, bool], ...]
    matches_nothing: bool
    ignored_conditions: tuple[str, ...]


def _never(record: Record) -> bool:
    return False


def compile_query(
    query: EncodedQuery,
    resolve: FieldResolver,
    *,
    now: datetime,
    invalid_query_returns_no_rows: bool = False,
) -> CompiledQuery:
    """Bind a parsed query to a table.

    A condition on an unknown field, or one that does not parse, is dropped silently (an OR
    clause loses that alternative), which is ServiceNow's default; with
    ``invalid_query_returns_no_rows`` (the ``glide.invalid_query.returns_no_rows`` property)
    the whole query matches nothing instead. A value that cannot be read for its field (such
    as a malformed date) is treated the same way.
    """
    ignored: list[str] = []
    group_predicates: list[list[list[RecordPredicate]]] = []
    for group in query.groups:
        clause_predicates: list[list[RecordPredicate]] = []
        for clause in group:
            alternatives: list[RecordPredicate] = []
            for condition in clause:
                access = resolve(condition.field) if condition.operator is not None else None
                predicate: RecordPredicate | None = None
                if access is not None:
                    try:
                        predicate = _compile_condition(condition, access, now)
                    except EncodedQueryError:
                        predicate = None
                if predicate is None:
                    ignored.append(condition.text)
                    continue
                alternatives.append(predicate)
            if alternatives:
                clause_predicates.append(alternatives)
        group_predicates.append(clause_predicates)

    orderings: list[tuple[FieldAccess, bool]] = []
    for ordering in query.orderings:
        access = resolve(ordering.field)
        if access is not None:
            orderings.append((access, ordering.descending))

    if ignored and invalid_query_returns_no_rows:
        return CompiledQuery(_never, tuple(orderings), True, tuple(ignored))
    # A group whose every condition was dropped matches everything, as an empty query does.
    if not group_predicates or any(not clauses for clauses in group_predicates):
        return CompiledQuery(None, tuple(orderings), False, tuple(ignored))
    return CompiledQuery(_combine(group_predicates), tuple(orderings), False, tuple(ignored))


def _combine(groups: Sequence[Sequence[Sequence[RecordPredicate]]]) -> RecordPredicate:
    def all_of(clauses: Sequence[Sequence[RecordPredicate]]) -> RecordPredicate:
        flattened = [
            alternatives[0] if len(alternatives) == 1 else _any_of(alternatives)
            for alternatives in clauses
        ]
        if len(flattened) == 1:
            return flattened[0]
        return lambda record: all(predicate(record) for predicate in flattened)

    group_checks = [all_of(clauses) for clauses in groups]
    if len(group_checks) == 1:
        return group_checks[0]
    return lambda record: any(check(record) for check in group_checks)


def _any_of(alternatives: Sequence[RecordPredicate]) -> RecordPredicate:
    return lambda record: any(predicate(record) for predicate in alternatives)


def order_records(
    records: Iterable[RecordT],
    orderings: Sequence[tuple[FieldAccess, bool]],
) -> list[RecordT]:
    """Sort by the ORDERBY fields, first one most significant. The sort is stable, so records
    equal on every ORDERBY field keep the order they came in."""
    ordered = list(records)
    for access, descending in reversed(orderings):
        read, kind = access.read, access.kind
        ordered.sort(key=lambda record: sort_key(kind, read(record)), reverse=descending)
    return ordered
