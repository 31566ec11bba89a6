"""The SQL connector's side of deletion, on real SQLite and real PostgreSQL.

Sources: field checks before a read, key-only reads with and without the native filter, and
which keys are still in scope. Targets: hard and soft deletes, the mark cleared by an upsert,
every key the table holds, and a soft-delete column added to a table made before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from connectors.base.errors import FatalError
from connectors.base.records import Column, ColumnType, DeleteRule, ReadWindow
from connectors.sql import SqlTableSource, SqlTableTarget, make_engine
from connectors.sql import target as target_module

T0 = datetime(2024, 1, 1, tzinfo=UTC)
COLUMNS = [
    Column("id", ColumnType.STRING, nullable=False),
    Column("name", ColumnType.STRING),
    Column("ram_mb", ColumnType.INTEGER),
    Column("updated_at", ColumnType.DATETIME),
]
SOFT = Column("deleted_at", ColumnType.DATETIME)
HARD = DeleteRule()


def servers(rows: Sequence[tuple[str, str, int, datetime]], *, soft: bool = False) -> pd.DataFrame:
    data = pd.DataFrame(rows, columns=[column.name for column in COLUMNS])
    data["updated_at"] = pd.to_datetime(data["updated_at"], utc=True)
    if soft:
        # As the engine sends it: the mark's column, all None, on every upserted batch.
        data = data.assign(deleted_at=None)
    return data


def fleet() -> pd.DataFrame:
    """k0..k9 changed a minute apart; even ones are web servers, odd ones databases."""
    return servers([
        (f"k{i}", f"{'web' if i % 2 == 0 else 'db'}-{i}", i, T0 + timedelta(minutes=i))
        for i in range(10)
    ])  # fmt: skip


def upsert(
    url: str,
    data: pd.DataFrame,
    columns: Sequence[Column] = COLUMNS,
    *,
    soft_column: str | None = None,
) -> tuple[list[str], list[str], int]:
    async def run() -> tuple[list[str], list[str], int]:
        target = SqlTableTarget(make_engine(url), "servers", soft_column=soft_column)
        await target.prepare(columns, "id")
        try:
            result = await target.upsert(data, "id")
        finally:
            await target.aclose()
        return sorted(result.created), sorted(result.updated), result.unchanged

    return asyncio.run(run())


def delete(url: str, keys: Sequence[Any], rule: DeleteRule, table: str = "servers") -> list[str]:
    async def run() -> list[str]:
        target = SqlTableTarget(make_engine(url), table)
        try:
            return await target.delete(keys, "id", rule)
        finally:
            await target.aclose()

    return sorted(asyncio.run(run()))


def table_rows(url: str, table: str = "servers") -> dict[str, dict[str, Any]]:
    """The table as it is now, by key (as text), read back with SQLAlchemy."""
    engine = make_engine(url)
    reflected = sa.Table(table, sa.MetaData(), autoload_with=engine)
    with engine.connect() as connection:
        rows = {
            str(row["id"]): dict(row) for row in connection.execute(sa.select(reflected)).mappings()
        }
    engine.dispose()
    return rows


def utc(value: Any) -> datetime | None:
    """A datetime read back in UTC: SQLite returns it naive (stored in UTC), PostgreSQL aware."""
    if value is None:
        return None
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def collect(batches: AsyncIterator[list[str]]) -> list[list[str]]:
    return [batch async for batch in batches]


def create_numbers(url: str) -> None:
    """A table someone else made, keyed by an integer: ids 1..5, names n1..n5."""
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE numbers (id INTEGER PRIMARY KEY, name TEXT)"))
        connection.execute(
            sa.text("INSERT INTO numbers (id, name) VALUES (:id, :name)"),
            [{"id": i, "name": f"n{i}"} for i in range(1, 6)],
        )
    engine.dispose()


# Sources: prepare


def test_prepare_names_every_unknown_field_with_a_suggestion(database_url: str) -> None:
    upsert(database_url, fleet())
    source = SqlTableSource(make_engine(database_url), "servers", key="id")
    with pytest.raises(FatalError) as caught:
        asyncio.run(source.prepare(["id", "nmae", "ram_mb", "colour"]))
    message = str(caught.value)
    assert "table servers has no columns nmae, colour" in message
    assert "nmae: did you mean name?" in message
    assert "its columns: id, name, ram_mb, updated_at" in message
    asyncio.run(source.aclose())


def test_prepare_checks_the_key_and_accepts_known_fields(database_url: str) -> None:
    upsert(database_url, fleet())
    good = SqlTableSource(make_engine(database_url), "servers", key="id")
    asyncio.run(good.prepare(["id", "name", "updated_at"]))
    asyncio.run(good.aclose())

    wrong_key = SqlTableSource(make_engine(database_url), "servers", key="ID")
    with pytest.raises(FatalError, match=r"has no column ID: ID: did you mean id\?"):
        asyncio.run(wrong_key.prepare(["name"]))
    asyncio.run(wrong_key.aclose())


def test_prepare_names_a_missing_table(database_url: str) -> None:
    upsert(database_url, fleet())
    source = SqlTableSource(make_engine(database_url), "server", key="id")
    with pytest.raises(FatalError, match=r"table server does not exist.*did you mean servers\?"):
        asyncio.run(source.prepare(["id"]))
    asyncio.run(source.aclose())


def test_prepare_names_a_missing_table_in_an_empty_database(database_url: str) -> None:
    source = SqlTableSource(make_engine(database_url), "servers", key="id")
    with pytest.raises(FatalError, match="table servers does not exist: the database has no"):
        asyncio.run(source.prepare(["id"]))
    asyncio.run(source.aclose())


def test_prepare_refuses_a_filter_the_database_rejects(database_url: str) -> None:
    upsert(database_url, fleet())
    source = SqlTableSource(
        make_engine(database_url), "servers", key="id", filter_sql="colour = 'red'"
    )
    with pytest.raises(FatalError, match=r"filter on table servers is not valid: colour = 'red'"):
        asyncio.run(source.prepare(["id"]))
    asyncio.run(source.aclose())


# Sources: keys and scope


def test_read_keys_in_a_window_with_and_without_the_filter(database_url: str) -> None:
    upsert(database_url, fleet())
    source = SqlTableSource(
        make_engine(database_url), "servers", key="id", filter_sql="name LIKE 'web-%'"
    )
    asyncio.run(source.prepare(["id", "name"]))
    window = ReadWindow("updated_at", since=T0 + timedelta(minutes=3), batch_size=2)

    scoped = asyncio.run(collect(source.read_keys(window)))
    assert all(len(batch) <= 2 for batch in scoped)
    assert sorted(key for batch in scoped for key in batch) == ["k4", "k6", "k8"]

    unscoped = asyncio.run(collect(source.read_keys(window, scoped=False)))
    assert all(len(batch) <= 2 for batch in unscoped)
    assert sorted(key for batch in unscoped for key in batch) == [f"k{i}" for i in range(3, 10)]

    bounded = ReadWindow(
        "updated_at", since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=5)
    )
    assert asyncio.run(collect(source.read_keys(bounded))) == [["k2", "k4"]]
    everything = asyncio.run(collect(source.read_keys(ReadWindow(None), scoped=False)))
    assert sorted(everything[0]) == sorted(f"k{i}" for i in range(10))
    assert source.unread() == 0
    asyncio.run(source.aclose())


def test_in_scope_with_text_keys(database_url: str) -> None:
    upsert(database_url, fleet())
    source = SqlTableSource(
        make_engine(database_url), "servers", key="id", filter_sql="name LIKE 'web-%'"
    )
    # 2,500 keys: the IN lists are chunked; only present web servers are in scope.
    asked = [f"gone{i}" for i in range(2_490)] + [f"k{i}" for i in range(10)]
    assert asyncio.run(source.in_scope(asked)) == {"k0", "k2", "k4", "k6", "k8"}
    assert asyncio.run(source.in_scope([])) == set()

    # Rows that change afterwards are judged as they are now, whatever their change time.
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE servers SET name = 'db-0' WHERE id = 'k0'"))
        connection.execute(sa.text("DELETE FROM servers WHERE id = 'k2'"))
    engine.dispose()
    assert asyncio.run(source.in_scope(["k0", "k2", "k4"])) == {"k4"}

    unfiltered = SqlTableSource(make_engine(database_url), "servers", key="id")
    assert asyncio.run(unfiltered.in_scope(["k0", "k1", "k2"])) == {"k0", "k1"}
    asyncio.run(source.aclose())
    asyncio.run(unfiltered.aclose())


def test_in_scope_and_read_keys_with_an_integer_key(database_url: str) -> None:
    create_numbers(database_url)
    source = SqlTableSource(
        make_engine(database_url), "numbers", key="id", filter_sql="name <> 'n5'"
    )
    asyncio.run(source.prepare(["id", "name"]))
    # Text keys against an integer column; "007" is 7 (absent), "x" is no number at all.
    asked = ["1", "3", "5", "7", "007", "x", "03"]
    assert asyncio.run(source.in_scope(asked)) == {"1", "3", "03"}
    keys = asyncio.run(collect(source.read_keys(ReadWindow(None, batch_size=3))))
    assert [len(batch) for batch in keys] == [3, 1]
    assert sorted(key for batch in keys for key in batch) == ["1", "2", "3", "4"]
    asyncio.run(source.aclose())


# Targets: hard deletes


def test_hard_delete_returns_only_present_keys_and_is_idempotent(database_url: str) -> None:
    upsert(database_url, fleet())
    assert delete(database_url, ["k1", "k3", "nope", "k1"], HARD) == ["k1", "k3"]
    assert sorted(table_rows(database_url)) == sorted(f"k{i}" for i in (0, 2, 4, 5, 6, 7, 8, 9))
    assert delete(database_url, ["k1", "k3", "nope"], HARD) == []
    assert len(table_rows(database_url)) == 8

    # 2,500 keys in one call: chunked IN lists, one transaction.
    asked = [f"k{i}" for i in range(10)] + [f"missing{i}" for i in range(2_490)]
    assert delete(database_url, asked, HARD) == [f"k{i}" for i in (0, 2, 4, 5, 6, 7, 8, 9)]
    assert table_rows(database_url) == {}


def test_hard_delete_with_an_integer_key_takes_integers_and_text(database_url: str) -> None:
    create_numbers(database_url)
    assert delete(database_url, [1, 2, 99], HARD, table="numbers") == ["1", "2"]
    assert delete(database_url, ["3", "x", "2"], HARD, table="numbers") == ["3"]
    assert sorted(table_rows(database_url, "numbers")) == ["4", "5"]


def test_hard_delete_without_returning_reads_the_keys_first(database_url: str) -> None:
    """SQLite before 3.35 has no RETURNING; the engine's dialect says so."""
    upsert(database_url, fleet().assign(deleted_at=None), [*COLUMNS, SOFT])
    soft = DeleteRule("deleted_at", T0)

    async def run() -> list[list[str]]:
        target = SqlTableTarget(make_engine(database_url), "servers")
        target.engine.dialect.delete_returning = False
        target.engine.dialect.update_returning = False
        try:
            return [
                await target.delete(["k1", "nope"], "id", HARD),
                await target.delete(["k1"], "id", HARD),
                await target.delete(["k2", "k3", "nope"], "id", soft),
                await target.delete(["k2"], "id", soft),
            ]
        finally:
            await target.aclose()

    assert [sorted(keys) for keys in asyncio.run(run())] == [["k1"], [], ["k2", "k3"], []]
    rows = table_rows(database_url)
    assert "k1" not in rows
    assert {key for key, row in rows.items() if row["deleted_at"] is not None} == {"k2", "k3"}


# Targets: soft deletes


def test_soft_delete_marks_once_and_an_upsert_of_the_same_values_clears_it(
    database_url: str,
) -> None:
    columns = [*COLUMNS, SOFT]
    data = servers([("a", "web-1", 1, T0), ("b", "web-2", 2, T0), ("c", "db-1", 3, T0)], soft=True)
    assert upsert(database_url, data, columns, soft_column="deleted_at") == (["a", "b", "c"], [], 0)
    assert upsert(database_url, data, columns, soft_column="deleted_at") == ([], [], 3)

    t1, t2 = T0 + timedelta(days=1), T0 + timedelta(days=2, microseconds=5)
    assert delete(database_url, ["a", "b", "zz"], DeleteRule("deleted_at", t1)) == ["a", "b"]
    assert delete(database_url, ["a", "b"], DeleteRule("deleted_at", t2)) == []  # already marked
    rows = table_rows(database_url)
    assert {key: utc(row["deleted_at"]) for key, row in rows.items()} == {
        "a": t1,
        "b": t1,
        "c": None,
    }
    assert rows["a"]["name"] == "web-1"  # marked, not deleted

    # The records come back unchanged: the mark is cleared, and that counts as an update.
    assert upsert(database_url, data, columns, soft_column="deleted_at") == ([], ["a", "b"], 1)
    rows = table_rows(database_url)
    assert [utc(row["deleted_at"]) for row in rows.values()] == [None, None, None]
    assert upsert(database_url, data, columns, soft_column="deleted_at") == ([], [], 3)

    # Gone again: marked again, with the new time.
    assert delete(database_url, ["a"], DeleteRule("deleted_at", t2)) == ["a"]
    assert utc(table_rows(database_url)["a"]["deleted_at"]) == t2


def test_soft_delete_time_in_another_zone_is_stored_as_utc(database_url: str) -> None:
    upsert(database_url, servers([("a", "web-1", 1, T0)], soft=True), [*COLUMNS, SOFT])
    zurich = datetime(2024, 6, 1, 16, 0, tzinfo=ZoneInfo("Europe/Zurich"))  # 14:00 UTC
    assert delete(database_url, ["a"], DeleteRule("deleted_at", zurich)) == ["a"]
    assert utc(table_rows(database_url)["a"]["deleted_at"]) == datetime(2024, 6, 1, 14, tzinfo=UTC)


@pytest.mark.parametrize(
    "nothing",
    [
        pytest.param(lambda n: [None] * n, id="none"),
        pytest.param(lambda n: np.full(n, np.nan), id="float-nan"),
        pytest.param(lambda n: pd.Series([pd.NaT] * n), id="nat"),
        pytest.param(lambda n: pd.Series([pd.NA] * n, dtype=object), id="pd-na"),
    ],
)
def test_an_all_null_datetime_column_is_written_as_nulls(database_url: str, nothing: Any) -> None:
    """Whatever dtype an empty column has, on the first load (COPY) and in the merge."""
    columns = [*COLUMNS, SOFT]
    first = servers([("a", "web-1", 1, T0), ("b", "web-2", 2, T0)])
    first["deleted_at"] = nothing(2)
    assert upsert(database_url, first, columns) == (["a", "b"], [], 0)
    delete(database_url, ["a"], DeleteRule("deleted_at", T0))
    second = servers([("a", "web-1", 1, T0), ("b", "web-2", 2, T0), ("c", "db-1", 3, T0)])
    second["deleted_at"] = nothing(3)
    assert upsert(database_url, second, columns) == (["c"], ["a"], 1)
    assert [row["deleted_at"] for row in table_rows(database_url).values()] == [None] * 3


# Targets: keys, and the soft column on an older table


def test_read_keys_of_a_target_includes_soft_deleted_rows(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(target_module, "KEY_BATCH_SIZE", 4)
    upsert(database_url, fleet().assign(deleted_at=None), [*COLUMNS, SOFT])
    delete(database_url, ["k3"], DeleteRule("deleted_at", T0))
    delete(database_url, ["k4"], HARD)

    async def run() -> list[list[str]]:
        target = SqlTableTarget(make_engine(database_url), "servers")
        try:
            return await collect(target.read_keys("id"))
        finally:
            await target.aclose()

    batches = asyncio.run(run())
    assert [len(batch) for batch in batches] == [4, 4, 1]
    assert sorted(key for batch in batches for key in batch) == [
        f"k{i}" for i in range(10) if i != 4
    ]


def test_read_keys_of_an_integer_keyed_target_are_text(database_url: str) -> None:
    create_numbers(database_url)

    async def run() -> list[list[str]]:
        target = SqlTableTarget(make_engine(database_url), "numbers")
        try:
            return await collect(target.read_keys("id"))
        finally:
            await target.aclose()

    assert [sorted(batch) for batch in asyncio.run(run())] == [["1", "2", "3", "4", "5"]]


def test_prepare_adds_the_soft_column_to_a_table_made_before_it(database_url: str) -> None:
    data = servers([("a", "web-1", 1, T0), ("b", "web-2", 2, T0)])
    assert upsert(database_url, data) == (["a", "b"], [], 0)  # an earlier spec: no deletes

    columns = [*COLUMNS, SOFT]
    soft_data = data.assign(deleted_at=None)
    assert upsert(database_url, soft_data, columns, soft_column="deleted_at") == ([], [], 2)
    engine = make_engine(database_url)
    added = {col["name"]: col for col in sa.inspect(engine).get_columns("servers")}["deleted_at"]
    engine.dispose()
    assert added["nullable"]
    assert isinstance(added["type"], sa.DateTime)
    assert [row["deleted_at"] for row in table_rows(database_url).values()] == [None, None]

    assert delete(database_url, ["b"], DeleteRule("deleted_at", T0)) == ["b"]
    assert utc(table_rows(database_url)["b"]["deleted_at"]) == T0
    # The next run finds the column there: nothing to add, and the mark is cleared as usual.
    assert upsert(database_url, soft_data, columns, soft_column="deleted_at") == ([], ["b"], 1)


def test_only_the_soft_column_is_added_and_only_when_nothing_else_is_missing(
    database_url: str,
) -> None:
    upsert(database_url, servers([("a", "web-1", 1, T0)]), COLUMNS[:2])  # id, name only
    with pytest.raises(FatalError, match="lacks columns ram_mb, updated_at: add them"):
        upsert(
            database_url,
            servers([("a", "web-1", 1, T0)], soft=True),
            [*COLUMNS, SOFT],
            soft_column="deleted_at",
        )
    # Refused before anything was altered.
    assert set(table_rows(database_url)["a"]) == {"id", "name"}

    # Without a soft column named, a missing datetime column is refused like any other.
    with pytest.raises(FatalError, match="lacks columns ram_mb, updated_at, deleted_at"):
        upsert(database_url, servers([("a", "web-1", 1, T0)], soft=True), [*COLUMNS, SOFT])


def test_one_target_upserts_deletes_and_reads_keys_in_turn(database_url: str) -> None:
    """As a run uses it: one target, its writer's connection open throughout."""
    columns = [*COLUMNS, SOFT]
    data = fleet().assign(deleted_at=None)

    async def run() -> list[object]:
        target = SqlTableTarget(make_engine(database_url), "servers", soft_column="deleted_at")
        await target.prepare(columns, "id")
        try:
            first = await target.upsert(data, "id")
            marked = await target.delete(["k1", "k2"], "id", DeleteRule("deleted_at", T0))
            gone = await target.delete(["k3"], "id", HARD)
            again = await target.upsert(data[data["id"] != "k2"], "id")
            keys = await collect(target.read_keys("id"))
        finally:
            await target.aclose()
        return [
            len(first.created),
            sorted(marked),
            gone,
            (sorted(again.created), sorted(again.updated), again.unchanged),
            sorted(key for batch in keys for key in batch),
        ]

    assert asyncio.run(run()) == [
        10,
        ["k1", "k2"],
        ["k3"],
        (["k3"], ["k1"], 7),
        [f"k{i}" for i in range(10)],
    ]
    rows = table_rows(database_url)
    assert {key for key, row in rows.items() if row["deleted_at"] is not None} == {"k2"}
