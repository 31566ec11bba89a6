"""Keyset paging: ask for the rows *after the last one read*, never for "page n".

Offset paging over a live table loses rows. When a row before the current offset changes
and moves to the end of the order (an update under a read window that a clock behind ours
keeps open), every later row moves up one place and the next page starts one row too late;
the count does not change, so nothing notices. A keyset read asks for rows sorting after
``(cursor value, unique key)`` of the last row delivered: a row that moves can only move
later, where it is read again (duplicates are harmless, the engine dedupes by key), and a
row that does not move is always still ahead.

The vendor part (how to say "after this row" and "sorted by these fields") is the caller's
``fetch``; what is here is the same for every system:

- each page is checked: its rows must sort after the last row delivered and among
  themselves. A system that ignores the condition would otherwise make a read loop or skip,
  so it stops the read with a ``FatalError`` instead;
- a page shorter than the count says (``min(limit, total - offset)``) is asked for once
  more. Still short, the missing rows are taken as hidden by access rules (ServiceNow counts
  rows that ACLs then filter out of the page): they are counted as unread, a warning names
  the position, and the read steps over that block by offset from the same position until a
  full page comes back. A read always moves forward and ends.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.base.errors import FatalError

Row = dict[str, Any]
Position = tuple[str, ...]
"""A row's place in the order: its sort fields' values as text, the unique key last."""


@dataclass(frozen=True, slots=True)
class KeysetPage:
    """One answer: its rows, and how many rows the query matched from ``offset`` 0 (the
    system's count; ``None`` when it gives none)."""

    rows: list[Row]
    total: int | None


PageFetch = Callable[[Position | None, int], Awaitable[KeysetPage]]
"""``fetch(after, offset)``: up to ``limit`` rows sorting after ``after`` (all rows when
``None``), skipping the first ``offset`` of them."""


@dataclass(slots=True)
class ReadTally:
    """What reads through one source did, added up over its reads."""

    pages: int = 0
    rows: int = 0
    rereads: int = 0
    unread: int = 0
    # The rows the read under way will have gone through when it ends, as last counted.
    expected: int | None = None


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _compare(left: str, right: str) -> int:
    """-1, 0 or 1, as the system orders two values of one field: empty first, numbers by
    value, text case-insensitively (stored date-times sort correctly as text)."""
    if left == right:
        return 0
    if not left or not right:
        return -1 if not left else 1
    # Nearly every value a read compares is a date-time or a lower-case hex key of the same
    # length, whose plain order is the system's: no parsing for those.
    if (
        len(left) == len(right)
        and "." not in left
        and "." not in right
        and left[0] != "-"
        and right[0] != "-"
        and left == left.lower()
        and right == right.lower()
    ):
        return (left > right) - (left < right)
    if _NUMBER.fullmatch(left) and _NUMBER.fullmatch(right):
        numbers = float(left), float(right)
        return (numbers[0] > numbers[1]) - (numbers[0] < numbers[1])
    texts = left.casefold(), right.casefold()
    return (texts[0] > texts[1]) - (texts[0] < texts[1])


def sorts_after(row: Position, previous: Position) -> bool:
    """Whether ``row`` comes strictly after ``previous`` in ascending order."""
    for left, right in zip(row, previous, strict=True):
        order = _compare(left, right)
        if order:
            return order > 0
    return False


def describe(fields: Sequence[str], position: Position | None) -> str:
    if position is None:
        return "the start"
    return ", ".join(f"{name}={value!r}" for name, value in zip(fields, position, strict=True))


def _missing(page: KeysetPage, limit: int, offset: int) -> int:
    """Rows the count promised on this page that did not come."""
    if page.total is None:
        return 0
    expected = min(limit, max(0, page.total - offset))
    return max(0, expected - len(page.rows))


async def keyset_pages(
    fetch: PageFetch,
    *,
    system: str,
    what: str,
    limit: int,
    key_fields: Sequence[str],
    tally: ReadTally,
    log: logging.Logger,
) -> AsyncIterator[list[Row]]:
    """Every page of a keyset read, in order; ``key_fields`` are the sort fields, the unique
    one last. ``what`` names the object read, for messages."""
    after: Position | None = None  # keyset position: the last row of the last full page
    last: Position | None = None  # the last row delivered; every later row sorts after it
    offset = 0  # > 0 only while stepping over a block of hidden rows
    read_start = tally.rows + tally.unread  # the tally adds up every read of its source
    before_position = read_start  # rows gone through before ``after``

    def position_of(row: Mapping[str, Any]) -> Position:
        position = tuple(str(row.get(name) or "") for name in key_fields)
        if not position[-1]:
            raise FatalError(
                system,
                f"{what}: a row without {key_fields[-1]} cannot be paged by keyset",
                detail=f"fields returned: {', '.join(sorted(row)) or 'none'}",
            )
        return position

    while True:
        page = await fetch(after, offset)
        missing = _missing(page, limit, offset)
        if missing:
            # Counted and fetched a moment apart: a row can change in between. Once more.
            tally.rereads += 1
            page = await fetch(after, offset)
            missing = _missing(page, limit, offset)
        positions = [position_of(row) for row in page.rows]
        for position in positions:
            if last is not None and not sorts_after(position, last):
                raise FatalError(
                    system,
                    f"{what}: rows came back out of order ({describe(key_fields, position)} "
                    f"after {describe(key_fields, last)}), so the system ignores the paging "
                    "condition or the sort order",
                    detail="stopped rather than read on and skip or repeat rows without end",
                )
            last = position
        tally.pages += 1
        tally.rows += len(page.rows)
        if page.total is not None:
            tally.expected = before_position - read_start + page.total
        if missing:
            tally.unread += missing
            log.warning(
                "%s: %s: %d row(s) counted but not returned, twice, after %s (offset %d): "
                "taken as hidden by access rules and not read",
                system,
                what,
                missing,
                describe(key_fields, after),
                offset,
            )
        if page.rows:
            yield page.rows
        # Without a count, only a short page says the end has come.
        more = page.total > offset + limit if page.total is not None else len(page.rows) >= limit
        if not more:
            return
        if missing:
            # The hidden rows still sort after ``after``: asking from the last visible row
            # would return them again, so the block is passed by offset instead.
            offset += limit
        else:
            assert last is not None  # a full page has rows
            after, offset = last, 0
            before_position = tally.rows + tally.unread
