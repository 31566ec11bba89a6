"""ServiceNow encoded queries: parsing and evaluation against string-valued records.

An encoded query is the `sysparm_query` text of the Table API, for example
``active=true^priority<=2^ORcategory=network^NQsys_updated_on>=2024-01-01 00:00:00``.

Structure, as ServiceNow reads it:

* ``^NQ`` separates whole queries whose results are OR-ed together;
* inside one query, ``^`` separates AND-ed conditions;
* ``^OR`` joins a condition to the one before it, so ``a^b^ORc`` means ``a AND (b OR c)``;
* ``ORDERBYfield`` and ``ORDERBYDESCfield`` may appear anywhere and set the sort order;
* ``^EQ`` (emitted by list-view "copy query") ends the query and is ignored;
* ``^^`` inside a value stands for a literal ``^``.

Records are plain mappings of field name to string, the way the Table API stores and returns
them. Field types come from the caller through a resolver, so this module knows nothing about
any particular table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TypeVar

Record = Mapping[str, str]
RecordT = TypeVar("RecordT", bound=Mapping[str, str])
RecordPredicate = Callable[[Record], bool]


class FieldKind(StrEnum):
    """How a field's stored string compares and sorts."""

    STRING = "string"
    INTEGER = "integer"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    DATETIME = "glide_date_time"
    DATE = "glide_date"
    REFERENCE = "reference"


class Operator(StrEnum):
    """Encoded-query operators supported by the sandbox."""

    EQUALS = "="
    NOT_EQUALS = "!="
    GREATER = ">"
    GREATER_OR_EQUAL = ">="
    LESS = "<"
    LESS_OR_EQUAL = "<="
    IN = "IN"
    NOT_IN = "NOT IN"
    LIKE = "LIKE"
    NOT_LIKE = "NOT LIKE"
    STARTS_WITH = "STARTSWITH"
    ENDS_WITH = "ENDSWITH"
    IS_EMPTY = "ISEMPTY"
    IS_NOT_EMPTY = "ISNOTEMPTY"
    EMPTY_STRING = "EMPTYSTRING"
    ANYTHING = "ANYTHING"
    BETWEEN = "BETWEEN"


# Longest spelling first, so ">=" wins over ">" and "NOT LIKE" over "NOT IN"'s prefix.
_OPERATORS_BY_LENGTH: tuple[Operator, ...] = tuple(
    sorted(Operator, key=lambda operator: len(operator.value), reverse=True)
)
_VALUELESS_OPERATORS = frozenset(
    {Operator.IS_EMPTY, Operator.IS_NOT_EMPTY, Operator.EMPTY_STRING, Operator.ANYTHING}
)
# ServiceNow column names are lower case; dot-walking joins them with ".". Operators start
# with an upper-case letter or a symbol, which is how the field name ends.
_FIELD_NAME = re.compile(r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*")
_ORDER_BY_DESC = "ORDERBYDESC"
_ORDER_BY = "ORDERBY"
_GROUP_SEPARATOR = "^NQ"
_QUERY_END = "EQ"


class EncodedQueryError(ValueError):
    """Raised for a value that cannot be interpreted (for example a malformed date)."""


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``field operator value`` term. ``operator`` is None when the term did not parse;
    ServiceNow treats such a term like a condition on an unknown field."""

    field: str
    operator: Operator | None
    value: str
    text: str


@dataclass(frozen=True, slots=True)
class Ordering:
    field: str
    descending: bool


@dataclass(frozen=True, slots=True)
class EncodedQuery:
    """``groups`` are OR-ed (``^NQ``); each group is a tuple of AND-ed clauses; each clause
    is a tuple of OR-ed conditions (``^OR``)."""

    groups: tuple[tuple[tuple[Condition, ...], ...], ...]
    orderings: tuple[Ordering, ...]

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return tuple(condition for group in self.groups for clause in group for condition in clause)

    @property
    def is_unfiltered(self) -> bool:
        return not self.groups

    @property
    def depends_on_clock(self) -> bool:
        """True when a value is relative to "now" (``gs.daysAgo(1)``), so a cached result
        goes stale as the clock moves."""
        return any(
            "javascript:" in condition.value and "dateGenerate" not in condition.value
            for condition in self.conditions
        )


@dataclass(frozen=True, slots=True)
class FieldAccess:
    """How to read one (possibly dot-walked) field from a record, and its kind."""

    read: Callable[[Record], str]
    kind: FieldKind


FieldResolver = Callable[[str], FieldAccess | None]


def _split_terms(text: str) -> list[str]:
    """Split on single ``^``; ``^^`` is an escaped caret that stays in the value."""
    terms: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "^":
            if index + 1 < len(text) and text[index + 1] == "^":
                current.append("^")
                index += 2
                continue
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    terms.append("".join(current))
    return terms


def _split_groups(text: str) -> list[str]:
    groups: list[str] = []
    start = 0
    while True:
        found = text.find(_GROUP_SEPARATOR, start)
        # "^^NQ" would be an escaped caret followed by the letters NQ, not a separator.
        while found > 0 and text[found - 1] == "^":
            found = text.find(_GROUP_SEPARATOR, found + 1)
        if found < 0:
            groups.append(text[start:])
            return groups
        groups.append(text[start:found])
        start = found + len(_GROUP_SEPARATOR)


def parse_condition(text: str) -> Condition:
    """Parse one term such as ``priority<=2`` or ``nameSTARTSWITHlnx-``."""
    match = _FIELD_NAME.match(text)
    if match is None:
        return Condition(field=text, operator=None, value="", text=text)
    field = match.group(0)
    rest = text[match.end() :]
    for operator in _OPERATORS_BY_LENGTH:
        if rest.startswith(operator.value):
            value = rest[len(operator.value) :]
            if operator in _VALUELESS_OPERATORS and value:
                break
            return Condition(field=field, operator=operator, value=value, text=text)
    return Condition(field=field, operator=None, value=rest, text=text)


def parse(text: str) -> EncodedQuery:
    """Parse an encoded query. Never raises: unparseable terms become conditions with
    ``operator=None`` so the caller can ignore them or reject the query, as ServiceNow's
    ``glide.invalid_query.returns_no_rows`` property decides."""
    groups: list[tuple[tuple[Condition, ...], ...]] = []
    orderings: list[Ordering] = []
    for group_text in _split_groups(text.strip()):
        clauses: list[list[Condition]] = []
        for raw_term in _split_terms(group_text):
            term = raw_term.strip()
            if not term or term == _QUERY_END:
                continue
            if term.startswith(_ORDER_BY_DESC):
                orderings.append(Ordering(term[len(_ORDER_BY_DESC) :], descending=True))
                continue
            if term.startswith(_ORDER_BY):
                orderings.append(Ordering(term[len(_ORDER_BY) :], descending=False))
                continue
            if term.startswith("OR") and clauses:
                clauses[-1].append(parse_condition(term[2:]))
                continue
            clauses.append([parse_condition(term)])
        if clauses:
            groups.append(tuple(tuple(clause) for clause in clauses))
    return EncodedQuery(groups=tuple(groups), orderings=tuple(orderings))


# --- values -------------------------------------------------------------------------------

_DATE_GENERATE = re.compile(
    r"""javascript:\s*gs\.dateGenerate\(\s*['"]([^'"]+)['"]\s*,\s*['"]([^'"]+)['"]\s*\)"""
)
_RELATIVE_CALL = re.compile(r"javascript:\s*gs\.(\w+)\(\s*(-?\d*)\s*\)")
_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
_STORED_TIMESTAMP = re.compile(r"\d{4}-[01]\d-[0-3]\d [0-2]\d:[0-5]\d:[0-5]\d")


def format_timestamp(moment: datetime) -> str:
    """ServiceNow's stored date-time format: ``YYYY-MM-DD HH:MM:SS`` in UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(_TIMESTAMP_FORMAT)


def _start_of_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _end_of_day(moment: datetime) -> datetime:
    return moment.replace(hour=23, minute=59, second=59, microsecond=0)


def _relative_moment(function: str, argument: str, now: datetime) -> datetime | None:
    """The GlideSystem date helpers most used in integration queries, for a UTC user."""
    amount = int(argument) if argument not in ("", "-") else 0
    today = _start_of_day(now)
    helpers: dict[str, Callable[[], datetime]] = {
        "nowDateTime": lambda: now,
        "nowNoTZ": lambda: now,
        "beginningOfToday": lambda: today,
        "endOfToday": lambda: _end_of_day(now),
        "beginningOfYesterday": lambda: today - timedelta(days=1),
        "endOfYesterday": lambda: _end_of_day(now - timedelta(days=1)),
        "daysAgo": lambda: now - timedelta(days=amount),
        "daysAgoStart": lambda: _start_of_day(now - timedelta(days=amount)),
        "daysAgoEnd": lambda: _end_of_day(now - timedelta(days=amount)),
        "hoursAgo": lambda: now - timedelta(hours=amount),
        "hoursAgoStart": lambda: (now - timedelta(hours=amount)).replace(
            minute=0, second=0, microsecond=0
        ),
        "minutesAgo": lambda: now - timedelta(minutes=amount),
        "minutesAgoStart": lambda: (now - timedelta(minutes=amount)).replace(
            second=0, microsecond=0
        ),
    }
    helper = helpers.get(function)
    return helper() if helper is not None else None


def resolve_value(value: str, now: datetime) -> str:
    """Turn a ``javascript:`` value into the literal it stands for.

    ``gs.dateGenerate(date, time)`` reads date and time in the calling user's time zone; the
    integration user is on UTC, so the result is used as UTC. ``time`` may also be ``start``
    or ``end`` (00:00:00 / 23:59:59), as in ServiceNow.
    """
    stripped = value.strip()
    if not stripped.startswith("javascript:"):
        return value
    generated = _DATE_GENERATE.fullmatch(stripped)
    if generated is not None:
        date_part, time_part = generated.group(1).strip(), generated.group(2).strip()
        time_part = {"start": "00:00:00", "end": "23:59:59"}.get(time_part, time_part)
        return normalise_timestamp(f"{date_part} {time_part}")
    relative = _RELATIVE_CALL.fullmatch(stripped)
    if relative is not None:
        moment = _relative_moment(relative.group(1), relative.group(2), now)
        if moment is not None:
            return format_timestamp(moment)
    raise EncodedQueryError(f"unsupported javascript value: {value!r}")


def normalise_timestamp(value: str) -> str:
    """Accept ``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM`` or ``YYYY-MM-DD HH:MM:SS`` (also with a
    ``T``) and return the stored ``YYYY-MM-DD HH:MM:SS`` form."""
    if _STORED_TIMESTAMP.fullmatch(value):
        # Stored values are already in this form; skipping strptime keeps a 50,000-row
        # date filter fast.
        return value
    text = value.strip().replace("T", " ")
    for pattern in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, pattern).strftime(_TIMESTAMP_FORMAT)
        except ValueError:
            continue
    raise EncodedQueryError(f"not a date-time: {value!r}")


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
