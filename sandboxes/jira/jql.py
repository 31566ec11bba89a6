"""The JQL subset the sandbox understands, compiled to a predicate and an order.

Clauses: ``project``, ``key``/``issuekey``, ``id``, ``status``, ``statusCategory``,
``priority``, ``issuetype``/``type``, ``labels``, ``assignee``, ``reporter`` with ``=``,
``!=``, ``in (...)``, ``not in (...)``, ``is [not] EMPTY``; ``summary``/``text`` with ``~``;
``created``, ``updated``, ``resolutiondate`` with ``=``, ``!=``, ``>``, ``>=``, ``<``,
``<=``; ``AND``, ``OR``, ``NOT``, parentheses; ``ORDER BY field [ASC|DESC], ...``.

Dates are Jira's: ``"yyyy-MM-dd HH:mm"``, ``"yyyy/MM/dd HH:mm"``, ``yyyy-MM-dd`` or a
period (``-5m``, ``-2h``, ``-1d``, ``-1w``) from now, at **minute precision** and read in the
**user's time zone**: ``updated >= "2024-05-01 10:05"`` from a user in Europe/Paris means
08:05 UTC, and an issue updated at 10:05:40 local time is after it. A client that keeps a
cursor to the second must therefore overlap by a minute and deduplicate.

Issue properties (``issue.property[syncline].correlationId``) are searchable only when an
app indexes them, so a REST client gets 400 for them like for any unknown field: search by
``labels`` (or a custom field) instead. A value naming no project, status, priority, issue
type or issue key is a 400 too (``jql_fields``), so ``key in (...)`` fails as a whole once
one of the issues is deleted. Without ``ORDER BY`` results come newest created
first (``created DESC``); every order ends on the issue id, so pages are stable.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sandboxes.jira.jql_fields import (
    DATE_FIELDS,
    KNOWN_FIELDS,
    SORTABLE,
    TEXT_FIELDS,
    JqlContext,
    Predicate,
    is_empty,
    jql_error,
    membership,
    sort_key,
    text_of,
    unknown_field,
)
from sandboxes.jira.model import Issue

_TOKEN = re.compile(
    r"""\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op>!=|>=|<=|!~|=|>|<|~)"""
    r"""|(?P<punct>[(),])|(?P<word>[^\s=!<>~(),"']+))"""
)
_PERIOD = re.compile(r"([-+]?)\s*(\d+)\s*([wdhm])", re.IGNORECASE)
_DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d")
_MINUTES = {"w": 7 * 24 * 60, "d": 24 * 60, "h": 60, "m": 1}
_ALIASES = {"issuekey": "key", "type": "issuetype"}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # string, op, punct, word
    text: str

    def keyword(self, *words: str) -> bool:
        return self.kind == "word" and self.text.lower() in words


@dataclass(frozen=True, slots=True)
class CompiledJql:
    predicate: Predicate
    order: list[tuple[str, bool]]  # (field, descending)
    bounded: bool  # whether the query restricts the issues at all

    def sort(self, issues: Sequence[Issue]) -> list[Issue]:
        ordered = sorted(issues, key=lambda issue: issue.id)
        for name, descending in reversed(self.order):
            ordered.sort(key=functools.partial(sort_key, name=name), reverse=descending)
        return ordered


class _Parser:
    def __init__(self, text: str, context: JqlContext) -> None:
        self.tokens = _tokenise(text)
        self.position = 0
        self.context = context
        self.now = context.now
        self.zone = context.zone

    def peek(self) -> Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise jql_error("Error in the JQL Query: the query ended unexpectedly.")
        self.position += 1
        return token

    def expect_punct(self, text: str) -> None:
        token = self.take()
        if token.kind != "punct" or token.text != text:
            raise jql_error(f"Error in the JQL Query: expecting '{text}' but got '{token.text}'.")

    def parse(self) -> CompiledJql:
        predicate: Predicate = _always
        bounded = False
        token = self.peek()
        if token is not None and not token.keyword("order"):
            predicate = self.or_expression()
            bounded = True
        order: list[tuple[str, bool]] = []
        token = self.peek()
        if token is not None:
            if not token.keyword("order"):
                raise jql_error(f"Error in the JQL Query: unexpected '{token.text}'.")
            self.take()
            if not self.take().keyword("by"):
                raise jql_error("Error in the JQL Query: expecting 'by' after 'order'.")
            order = self.order_list()
        return CompiledJql(predicate, order or [("created", True)], bounded)

    def order_list(self) -> list[tuple[str, bool]]:
        order = []
        while True:
            name = self.field_name(self.take())
            if name not in SORTABLE:
                raise unknown_field(name)
            descending = False
            token = self.peek()
            if token is not None and token.keyword("asc", "desc"):
                descending = self.take().text.lower() == "desc"
            order.append((name, descending))
            token = self.peek()
            if token is None:
                return order
            self.expect_punct(",")

    def or_expression(self) -> Predicate:
        parts = [self.and_expression()]
        while (token := self.peek()) is not None and token.keyword("or"):
            self.take()
            parts.append(self.and_expression())
        return parts[0] if len(parts) == 1 else lambda issue: any(p(issue) for p in parts)

    def and_expression(self) -> Predicate:
        parts = [self.unary()]
        while (token := self.peek()) is not None and token.keyword("and"):
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else lambda issue: all(p(issue) for p in parts)

    def unary(self) -> Predicate:
        token = self.peek()
        if token is not None and token.keyword("not"):
            self.take()
            inner = self.unary()
            return lambda issue: not inner(issue)
        if token is not None and token.kind == "punct" and token.text == "(":
            self.take()
            inner = self.or_expression()
            self.expect_punct(")")
            return inner
        return self.clause()

    def field_name(self, token: Token) -> str:
        if token.kind not in ("word", "string"):
            raise jql_error(f"Error in the JQL Query: expecting a field name, got '{token.text}'.")
        name = _unquote(token) if token.kind == "string" else token.text
        lowered = name.lower()
        return _ALIASES.get(lowered, lowered) if not name.startswith("customfield_") else name

    def clause(self) -> Predicate:
        token = self.take()
        name = self.field_name(token)
        if name.startswith("issue.property") or name not in KNOWN_FIELDS:
            raise unknown_field(_unquote(token) if token.kind == "string" else token.text)
        operator = self.take()
        if operator.keyword("not"):
            if not self.take().keyword("in"):
                raise jql_error("Error in the JQL Query: expecting 'in' after 'not'.")
            values = self.value_list()
            inner = membership(name, values, self.context)
            return lambda issue: not inner(issue)
        if operator.keyword("in"):
            return membership(name, self.value_list(), self.context)
        if operator.keyword("is"):
            negate = False
            if (after := self.peek()) is not None and after.keyword("not"):
                self.take()
                negate = True
            if not self.take().keyword("empty", "null"):
                raise jql_error("Error in the JQL Query: expecting EMPTY after IS.")
            return lambda issue: is_empty(issue, name) != negate
        if operator.kind != "op":
            raise jql_error(
                f"Error in the JQL Query: expecting an operator, got '{operator.text}'."
            )
        value = self.value()
        if name in DATE_FIELDS:
            return self.date_clause(name, operator.text, value)
        if operator.text in ("~", "!~"):
            if name not in TEXT_FIELDS:
                raise jql_error(
                    f"The operator '{operator.text}' is not supported by the '{name}' field."
                )
            needle = value.lower()

            def contains(issue: Issue) -> bool:
                return needle in text_of(issue, name)

            return contains if operator.text == "~" else lambda issue: not contains(issue)
        if operator.text not in ("=", "!="):
            raise jql_error(
                f"The operator '{operator.text}' is not supported by the '{name}' field."
            )
        matches = membership(name, [value], self.context)
        return matches if operator.text == "=" else lambda issue: not matches(issue)

    def date_clause(self, name: str, operator: str, value: str) -> Predicate:
        if operator in ("~", "!~"):
            raise jql_error(f"The operator '{operator}' is not supported by the '{name}' field.")
        moment = self.moment(name, value)
        compare = _COMPARISONS[operator]

        def matches(issue: Issue) -> bool:
            stamp = getattr(issue, "resolution_date" if name == "resolutiondate" else name)
            return stamp is not None and compare(stamp, moment)

        return matches

    def moment(self, name: str, value: str) -> datetime:
        text = value.strip()
        if text.lower() in ("now()", "now"):
            return self.now
        for pattern in _DATE_FORMATS:
            try:
                return datetime.strptime(text, pattern).replace(tzinfo=self.zone).astimezone(UTC)
            except ValueError:
                continue
        periods = _PERIOD.findall(text)
        if periods and _PERIOD.sub("", text).strip() == "":
            sign = -1 if text.startswith("-") else 1
            minutes = sum(int(amount) * _MINUTES[unit.lower()] for _, amount, unit in periods)
            # Periods are at minute precision too.
            return (self.now + timedelta(minutes=sign * minutes)).replace(second=0)
        raise jql_error(
            f"Date value '{value}' for field '{name}' is invalid. Valid formats include: "
            "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period "
            "format e.g. '-5d', '4w 2d'."
        )

    def value_list(self) -> list[str]:
        self.expect_punct("(")
        values = [self.value()]
        while (token := self.take()).kind == "punct" and token.text == ",":
            values.append(self.value())
        if token.text != ")":
            raise jql_error(f"Error in the JQL Query: expecting ')' but got '{token.text}'.")
        return values

    def value(self) -> str:
        token = self.take()
        if token.kind == "string":
            return _unquote(token)
        if token.kind == "word":
            if (after := self.peek()) is not None and after.text == "(":
                self.take()
                self.expect_punct(")")
                return token.text.lower() + "()"
            return token.text
        raise jql_error(f"Error in the JQL Query: expecting a value, got '{token.text}'.")


_COMPARISONS: dict[str, Callable[[datetime, datetime], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def _always(issue: Issue) -> bool:
    return True


def _unquote(token: Token) -> str:
    return re.sub(r"\\(.)", r"\1", token.text[1:-1])


def _tokenise(text: str) -> list[Token]:
    tokens = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise jql_error(f"Error in the JQL Query: cannot read '{text[position:]}'.")
        kind = match.lastgroup or "word"
        tokens.append(Token(kind, match.group(kind)))
        position = match.end()
    return tokens


def compile_jql(text: str, context: JqlContext) -> CompiledJql:
    """Compile ``text``; raises a 400 ``JiraApiError`` as Jira words it."""
    return _Parser(text, context).parse()
