"""ServiceNow encoded queries (``sysparm_query``), built rather than concatenated."""

from __future__ import annotations

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


@dataclass(slots=True)
class EncodedQuery:
    """Conditions AND-ed together, then ORDERBY clauses: ``a>=1^b=x^ORDERBYa``."""

    conditions: list[str] = field(default_factory=list)
    ordering: list[str] = field(default_factory=list)

    def where(self, name: str, operator: str, value: object = "") -> Self:
        if operator not in OPERATORS:
            raise ValueError(f"unknown ServiceNow query operator {operator!r}")
        self.conditions.append(f"{name}{operator}{_literal(value)}")
        return self

    def raw(self, condition: str | None) -> Self:
        """Add a condition already in encoded form (e.g. a filter from a spec)."""
        if condition:
            self.conditions.append(condition)
        return self

    def order_by(self, name: str, *, descending: bool = False) -> Self:
        self.ordering.append(f"ORDERBY{'DESC' if descending else ''}{name}")
        return self

    def __str__(self) -> str:
        return "^".join([*self.conditions, *self.ordering])
