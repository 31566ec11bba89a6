"""How the ServiceNow sandbox renders list and record responses: the request's options
(``sysparm_fields``, ``sysparm_display_value``, ``sysparm_exclude_reference_link``), each
record's response columns, and the ``Link`` paging header."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from starlette.requests import Request

from sandboxes.servicenow.encoded_query import FieldKind
from sandboxes.servicenow.schema import FieldDefinition

Record = dict[str, str]
JsonValue = Any


@dataclass(frozen=True, slots=True)
class ListOptions:
    display_value: Literal["false", "true", "all"]
    exclude_reference_link: bool
    fields: tuple[str, ...] | None


# Renders one stored value for the response; None means the stored string as it is.
Renderer = Callable[[str], JsonValue] | None


def flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() == "true"


def display_mode(value: str | None) -> Literal["false", "true", "all"]:
    lowered = (value or "").strip().lower()
    if lowered == "true":
        return "true"
    if lowered == "all":
        return "all"
    return "false"


Column = tuple[str, Callable[[Record], str] | None, Renderer]


@dataclass(frozen=True, slots=True)
class Projection:
    """The response columns of a request and how to render each one.

    Serving 50,000 records quickly matters (bulk syncs page through whole CMDB tables). When
    every column is a plain field of the stored record, a record renders without a Python
    loop over its columns: the stored dict itself when it has exactly those fields and none
    needs re-rendering, otherwise a C-level copy or ``itemgetter`` pick, with only the
    re-rendered columns (references, display values) replaced.
    """

    columns: tuple[Column, ...]
    names: tuple[str, ...]
    plain_keys: frozenset[str] | None
    pick: Callable[[Record], tuple[str, ...]] | None
    rerendered: tuple[tuple[str, Callable[[str], JsonValue]], ...]

    @classmethod
    def of(cls, columns: Sequence[Column]) -> Projection:
        names = tuple(name for name, _, _ in columns)
        plain = all(read is None for _, read, _ in columns)
        rerendered = tuple((name, render) for name, _, render in columns if render is not None)
        keys = frozenset(names) if plain else None
        pick: Callable[[Record], tuple[str, ...]] | None = None
        if plain and len(names) >= 2:
            pick = operator.itemgetter(*names)
        return cls(tuple(columns), names, keys, pick, rerendered)

    def render(self, record: Record) -> Mapping[str, JsonValue]:
        """The record as the response shows it. May be the stored dict itself when nothing
        needs re-rendering: callers serialise it at once, under the sandbox lock."""
        keys = self.plain_keys
        if keys is not None:
            rendered: dict[str, JsonValue] | None = None
            if record.keys() == keys:
                if not self.rerendered:
                    return record
                rendered = dict(record)
            elif self.pick is not None and keys <= record.keys():
                rendered = dict(zip(self.names, self.pick(record), strict=True))
            if rendered is not None:
                for name, rerender in self.rerendered:
                    rendered[name] = rerender(record[name])
                return rendered
        rendered = {}
        for name, read, render in self.columns:
            value = record.get(name, "") if read is None else read(record)
            rendered[name] = value if render is None else render(value)
        return rendered


def display_formatter(definition: FieldDefinition) -> Callable[[str], str]:
    """Display values for a UTC user with the default formats: choice labels, grouped
    integers ("16,384"), two-decimal numbers; everything else as stored."""
    choices = definition.choices
    if choices is not None:
        return lambda value: choices.get(value, value)
    if definition.kind is FieldKind.INTEGER:
        return lambda value: f"{int(value):,}" if value.lstrip("-").isdigit() else value
    if definition.kind is FieldKind.DECIMAL:

        def decimal(value: str) -> str:
            try:
                return f"{float(value):,.2f}"
            except ValueError:
                return value

        return decimal
    return lambda value: value


def list_options(request: Request) -> ListOptions:
    params = request.query_params
    fields_param = params.get("sysparm_fields")
    fields: tuple[str, ...] | None = None
    if fields_param is not None and fields_param.strip():
        fields = tuple(
            dict.fromkeys(name.strip() for name in fields_param.split(",") if name.strip())
        )
    return ListOptions(
        display_value=display_mode(params.get("sysparm_display_value")),
        exclude_reference_link=flag(params.get("sysparm_exclude_reference_link")),
        fields=fields,
    )


def link_header(
    request: Request,
    offset: int,
    limit: int,
    total: int,
    *,
    include_last: bool,
    origin: str | None = None,
) -> str | None:
    """RFC 8288 ``Link`` with first/prev/next/last, each the request URL with
    ``sysparm_offset`` changed (and on ``origin``, ``scheme://host[:port]``, when given);
    absent when everything fits on one page."""
    if offset == 0 and total <= limit:
        return None
    url = request.url
    base = f"{origin or f'{url.scheme}://{url.netloc}'}{url.path}"
    kept = [
        (key, value)
        for key, value in request.query_params.multi_items()
        if key not in ("sysparm_offset", "sysparm_limit")
    ]

    def page(page_offset: int) -> str:
        items = [*kept, ("sysparm_offset", str(page_offset)), ("sysparm_limit", str(limit))]
        query = "&".join(f"{quote(key, safe='')}={quote(value, safe=',')}" for key, value in items)
        return f"{base}?{query}"

    links = [(page(0), "first")]
    if offset > 0:
        links.append((page(max(offset - limit, 0)), "prev"))
    if offset + limit < total:
        links.append((page(offset + limit), "next"))
    if include_last:
        links.append((page((total - 1) // limit * limit if total else 0), "last"))
    return ",".join(f'<{target}>;rel="{relation}"' for target, relation in links)
