"""Keyset paging on its own (connectors.base.keyset) and ServiceNow's keyset queries.

The pager is driven by a small in-memory "instance": rows sorted by (cursor, id), a count of
every row after a position, and read rules that hide rows from pages but not from the count.
"""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from connectors.base import FatalError, KeysetPage, ReadTally, keyset_pages
from connectors.base.keyset import Position, Row, sorts_after
from connectors.servicenow.query import EncodedQuery, after_condition

LOG = logging.getLogger("syncline.tests.keyset")


class Instance:
    """Rows kept sorted by (updated, id); ``hidden`` ids are counted but never returned."""

    def __init__(self, rows: list[Row], hidden: set[str] | None = None) -> None:
        self.rows = sorted(rows, key=lambda row: (row["updated"], row["id"]))
        self.hidden = hidden or set()
        self.requests: list[tuple[Position | None, int]] = []
        self.glitch_on: set[int] = set()  # request numbers answered with an empty page
        self.count = True

    async def fetch(self, after: Position | None, offset: int, limit: int) -> KeysetPage:
        self.requests.append((after, offset))
        matching = [
            row
            for row in self.rows
            if after is None or sorts_after((row["updated"], row["id"]), after)
        ]
        block = matching[offset : offset + limit]
        visible = [row for row in block if row["id"] not in self.hidden]
        if len(self.requests) in self.glitch_on:
            visible = []
        return KeysetPage(visible, len(matching) if self.count else None)


def read(instance: Instance, limit: int, tally: ReadTally | None = None) -> list[Row]:
    tally = tally if tally is not None else ReadTally()

    async def fetch(after: Position | None, offset: int) -> KeysetPage:
        return await instance.fetch(after, offset, limit)

    async def collect() -> list[Row]:
        rows: list[Row] = []
        async for page in keyset_pages(
            fetch,
            system="test",
            what="things",
            limit=limit,
            key_fields=["updated", "id"],
            tally=tally,
            log=LOG,
        ):
            rows.extend(page)
        return rows

    return asyncio.run(collect())


def make_rows(count: int, seed: int) -> list[Row]:
    rng = random.Random(seed)
    # Few distinct timestamps, so many rows tie on the cursor and the id decides.
    return [
        {"updated": f"2024-01-01 00:00:{rng.randrange(6):02d}", "id": f"{n:04x}"}
        for n in range(count)
    ]


@pytest.mark.parametrize("seed", range(12))
def test_hidden_rows_are_counted_exactly_and_every_visible_row_is_read(seed: int) -> None:
    rng = random.Random(seed)
    rows = make_rows(rng.randrange(0, 160), seed)
    fraction = rng.choice([0.0, 0.05, 0.3, 0.7, 0.95, 1.0])
    hidden = {row["id"] for row in rows if rng.random() < fraction}
    if rows and seed % 3 == 0:  # a run of hidden rows longer than a page
        start = rng.randrange(len(rows))
        hidden |= {row["id"] for row in sorted(rows, key=lambda r: r["id"])[start : start + 25]}
    instance = Instance(rows, hidden)
    limit = rng.choice([1, 3, 10, 200])
    tally = ReadTally()

    read_rows = read(instance, limit, tally)

    ids = [row["id"] for row in read_rows]
    assert len(ids) == len(set(ids)), "no row twice when nothing changes"
    assert set(ids) == {row["id"] for row in rows} - hidden
    assert tally.unread == len(hidden)
    assert tally.expected == len(rows)
    # Each request delivers a full page or steps over a block of rows (and maybe one re-read).
    assert len(instance.requests) <= 2 * (len(rows) // limit + 1) + 1


def test_a_transient_empty_page_is_read_again_once() -> None:
    instance = Instance(make_rows(50, 1))
    instance.glitch_on = {3}
    tally = ReadTally()
    assert len(read(instance, 10, tally)) == 50
    assert tally.rereads == 1 and tally.unread == 0
    assert instance.requests[2] == instance.requests[3], "the same page asked for again"
    assert len(instance.requests) == 6


def test_the_expected_count_is_per_read() -> None:
    tally = ReadTally()
    read(Instance(make_rows(30, 3)), 10, tally)
    read(Instance(make_rows(12, 4)), 10, tally)
    assert (tally.rows, tally.expected, tally.pages) == (42, 12, 5)


def test_without_a_count_a_short_page_ends_the_read() -> None:
    instance = Instance(make_rows(25, 2))
    instance.count = False
    assert len(read(instance, 10)) == 25
    assert len(instance.requests) == 3


def test_a_row_without_the_unique_key_stops_the_read() -> None:
    instance = Instance([{"updated": "2024-01-01 00:00:00", "id": ""}])
    with pytest.raises(FatalError, match="a row without id"):
        read(instance, 10)


def test_comparisons_follow_the_instance_order() -> None:
    assert sorts_after(("10", "a"), ("9", "z")), "numbers by value"
    assert sorts_after(("b", "a"), ("A", "z")), "text without regard to case"
    assert sorts_after(("2024-01-02 00:00:00", "a"), ("2024-01-01 23:59:59", "z"))
    assert sorts_after(("", "b"), ("", "a"))
    assert sorts_after(("x", "a"), ("", "z")), "empty first"
    assert not sorts_after(("x", "a"), ("x", "a"))


# --- ServiceNow queries ----------------------------------------------------------------------


def test_the_keyset_condition_for_a_position() -> None:
    assert after_condition("sys_updated_on", ("2024-01-01 10:00:00", "ab" * 16)) == (
        "sys_updated_on>=2024-01-01 10:00:00^sys_updated_on>2024-01-01 10:00:00"
        f"^ORsys_id>{'ab' * 16}"
    )
    assert after_condition(None, ("ab" * 16,)) == f"sys_id>{'ab' * 16}"
    assert after_condition("u_when", ("", "c" * 32)) == f"u_whenISNOTEMPTY^ORsys_id>{'c' * 32}"
    assert after_condition("name", ("a^b", "c" * 32)).startswith("name>=a^^b^name>a^^b^OR")


def test_conditions_go_into_every_nq_group_and_ordering_once_at_the_end() -> None:
    query = EncodedQuery.parse("active=true^ORpriority=1^NQcategory=network^EQ")
    assert query.groups == ["active=true^ORpriority=1", "category=network"]
    query.where("sys_updated_on", ">=", "2024-01-01 00:00:00").order_by("sys_id")
    assert str(query) == (
        "active=true^ORpriority=1^sys_updated_on>=2024-01-01 00:00:00"
        "^NQcategory=network^sys_updated_on>=2024-01-01 00:00:00^ORDERBYsys_id"
    )
    plain = EncodedQuery.parse("nameLIKEx^^NQy^ORDERBYDESCname")
    assert plain.groups == [] and plain.conditions == ["nameLIKEx^^NQy"]
    assert plain.ordering == ["ORDERBYDESCname"]
    assert str(EncodedQuery.parse("")) == ""
    with pytest.raises(ValueError, match="one filter"):
        EncodedQuery().raw("a=1^NQb=2").raw("c=3^NQd=4")
