"""ServiceNow encoded queries (``sysparm_query``), built rather than concatenated."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Self

SERVICENOW_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

OPERATORS = frozenset(
    {"=", "!=", ">", ">=", "<", "<=", "IN", "NOT IN", "LIKE", "NOT LIKE", "STARTSWITH",
     "ENDSWITH", "ISEMPTY", "ISNOTEMPTY"}
)  # fmt: skip


def format_time(value: datetime) -> str:
    """A datetime as ServiceNow stores it: ``YYYY-MM-DD HH:MM:SS`` in UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime(SERVICENOW_TIME_FORMAT)


def parse_time(value: str) -> datetime:
    """A ServiceNow ``YYYY-MM-DD HH:MM:SS`` (UTC) value as an aware datetime."""
    return datetime.strptime(value, SERVICENOW_TIME_FORMAT).replace(tzinfo=UTC)


def _literal(value: object) -> str:
    if isinstance(value, datetime):
        text = format_time(value)
    elif isinstance(value, list | tuple | set | frozenset):
        text = ",".join(_literal(v) for v in value)
    else:
        text = str(value)
    # "^" separates conditions; a literal caret is written twice.
    return text.replace("^", "^^")


def split_terms(text: str) -> list[str]:
    """Terms separated by single ``^``; an escaped ``^^`` stays inside its term, as written."""
    terms: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "^" and text[index + 1 : index + 2] == "^":
            current.append("^^")
            index += 2
            continue
        if char == "^":
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    terms.append("".join(current))
    return terms


@dataclass(slots=True)
class EncodedQuery:
    """An encoded query: ``groups`` OR-ed by ``^NQ``, ``conditions`` AND-ed into every group,
    then ORDERBY clauses once at the end.

    ``a^NQb`` with the condition ``c`` is ``a^c^NQb^c``: ServiceNow has no brackets, so a
    condition that must hold for the whole query (a read window, a keyset position) goes
    into each ``^NQ`` group.
    """

    conditions: list[str] = field(default_factory=list)
    ordering: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str | None) -> EncodedQuery:
        """Split a query written elsewhere (a spec's filter): ``^NQ`` groups (not an escaped
        ``^^NQ``), ORDERBY clauses set aside in ``ordering``, a list view's closing ``^EQ``
        dropped (anything after it would be ignored by the instance)."""
        query = cls()
        groups: list[list[str]] = [[]]
        for term in split_terms(text or ""):
            if term.startswith("NQ"):
                groups.append([])
                term = term[2:]
            stripped = term.strip()
            if not stripped or stripped == "EQ":
                continue
            if stripped.startswith("ORDERBY"):
                query.ordering.append(stripped)
                continue
            groups[-1].append(term)
        texts = ["^".join(terms) for terms in groups if terms]
        if len(texts) == 1:
            query.conditions.append(texts[0])
        else:
            query.groups = texts
        return query

    def where(self, name: str, operator: str, value: object = "") -> Self:
        if operator not in OPERATORS:
            raise ValueError(f"unknown ServiceNow query operator {operator!r}")
        self.conditions.append(f"{name}{operator}{_literal(value)}")
        return self

    def where_one_of(self, name: str, values: Sequence[str]) -> Self:
        """``name`` equals one of ``values``. ``IN`` splits its list at commas, so a value
        holding one (a Datadog scope such as ``env:prod,host:web-1``) is its own ``=``
        condition, OR-ed to the list (``^OR`` binds to the condition before it)."""
        listed = [value for value in values if "," not in value]
        alone = [value for value in values if "," in value]
        terms = [f"{name}IN{_literal(listed)}"] if listed else []
        terms += [f"{name}={_literal(value)}" for value in alone]
        if not terms:
            raise ValueError(f"{name}: one of no values matches nothing; ask for at least one")
        self.conditions.append("^OR".join(terms))
        return self

    def raw(self, condition: str | None) -> Self:
        """Add a query already in encoded form (e.g. a filter from a spec); its ``^NQ``
        groups, if any, become this query's groups."""
        parsed = EncodedQuery.parse(condition)
        if parsed.groups:
            if self.groups:
                raise ValueError("a query can take ^NQ groups from one filter only")
            self.groups = parsed.groups
        self.conditions.extend(parsed.conditions)
        self.ordering.extend(parsed.ordering)
        return self

    def order_by(self, name: str, *, descending: bool = False) -> Self:
        self.ordering.append(f"ORDERBY{'DESC' if descending else ''}{name}")
        return self

    def copy(self) -> EncodedQuery:
        return EncodedQuery(list(self.conditions), list(self.ordering), list(self.groups))

    def __str__(self) -> str:
        shared = "^".join(self.conditions)
        if self.groups:
            body = "^NQ".join(
                "^".join(part for part in (group, shared) if part) for group in self.groups
            )
        else:
            body = shared
        return "^".join(part for part in (body, *self.ordering) if part)


def after_condition(order_field: str | None, position: tuple[str, ...]) -> str:
    """Rows sorting after ``position`` in ``ORDERBY<order_field>^ORDERBYsys_id`` order.

    ``F>=T^F>T^ORsys_id>I`` is ``F>=T AND (F>T OR sys_id>I)`` (``^OR`` binds to the condition
    just before it). An empty ``T`` sorts first, like NULL: after it come every non-empty
    value and the empty ones with a greater sys_id.
    """
    sys_id = _literal(position[-1])
    if order_field is None or order_field == "sys_id":
        return f"sys_id>{sys_id}"
    value = position[0]
    if not value:
        return f"{order_field}ISNOTEMPTY^ORsys_id>{sys_id}"
    value = _literal(value)
    return f"{order_field}>={value}^{order_field}>{value}^ORsys_id>{sys_id}"
