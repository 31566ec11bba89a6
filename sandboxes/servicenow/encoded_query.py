"""ServiceNow encoded queries: the query model, parsing, and date-time values (relative
dates such as ``gs.daysAgo``). ``predicates`` compiles a parsed query to record predicates.

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

import re
from collections.abc import Callable, Mapping
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
