"""The SQL connector on real SQLite and real PostgreSQL: tables, bulk upserts, cursor reads."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from connectors.base.errors import FatalError
from connectors.base.records import Column, ColumnType, ReadWindow
from connectors.sql import SqlTableSource, SqlTableTarget, make_engine

COLUMNS = [
    Column("id", ColumnType.STRING, nullable=False),
    Column("name", ColumnType.STRING),
    Column("ram_mb", ColumnType.INTEGER),
    Column("load", ColumnType.FLOAT),
    Column("active", ColumnType.BOOLEAN),
    Column("updated_at", ColumnType.DATETIME),
    Column("tags", ColumnType.JSON),
]
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def frame(
    rows: list[tuple[str, str, int | None, float, bool, datetime, list[str]]],
) -> pd.DataFrame:
    data = pd.DataFrame(rows, columns=[column.name for column in COLUMNS])
    data["ram_mb"] = data["ram_mb"].astype("Int64")
    data["updated_at"] = pd.to_datetime(data["updated_at"], utc=True)
    return data


def rows_of(url: str, table: str = "servers") -> list[tuple[object, ...]]:
    engine = make_engine(url)
    with engine.connect() as connection:
        result = connection.execute(
            sa.text(f"SELECT id, name, ram_mb, active FROM {table} ORDER BY id")
        )
        rows = [tuple(row) for row in result]
    engine.dispose()
    return rows


async def upsert(url: str, data: pd.DataFrame) -> tuple[list[str], list[str], int]:
    target = SqlTableTarget(make_engine(url), "servers")
    await target.prepare(COLUMNS, "id")
    try:
        result = await target.upsert(data, "id")
    finally:
        await target.aclose()
    return sorted(result.created), sorted(result.updated), result.unchanged


def test_upsert_creates_updates_and_skips_unchanged(database_url: str) -> None:
    first = frame([
        ("a", "web-1", 1024, 0.5, True, T0, ["x"]),
        ("b", "web-2", None, 0.1, False, T0, []),
    ])  # fmt: skip
    assert asyncio.run(upsert(database_url, first)) == (["a", "b"], [], 0)
    assert asyncio.run(upsert(database_url, first)) == ([], [], 2)

    second = frame([
        ("a", "web-1", 2048, 0.5, True, T0 + timedelta(hours=1), ["x"]),
        ("b", "web-2", None, 0.1, False, T0, []),
        ("c", "db-1", 4096, 0.9, True, T0, ["db"]),
    ])  # fmt: skip
    assert asyncio.run(upsert(database_url, second)) == (["c"], ["a"], 1)
    assert rows_of(database_url) == [
        ("a", "web-1", 2048, True),
        ("b", "web-2", None, False),
        ("c", "db-1", 4096, True),
    ]


def test_incremental_read_by_cursor(database_url: str) -> None:
    data = frame([
        (f"k{i}", f"n{i}", i, 0.0, True, T0 + timedelta(minutes=i), []) for i in range(10)
    ])  # fmt: skip
    asyncio.run(upsert(database_url, data))
    source = SqlTableSource(
        make_engine(database_url), "servers", key="id", fields=["id", "updated_at"]
    )

    async def read(since: datetime | None) -> list[str]:
        window = ReadWindow("updated_at", since=since, batch_size=3)
        keys: list[str] = []
        async for batch in source.read(window):
            assert len(batch) <= 3
            keys.extend(batch["id"])
        return sorted(keys)

    assert asyncio.run(read(None)) == sorted(f"k{i}" for i in range(10))
    assert asyncio.run(read(T0 + timedelta(minutes=7))) == ["k7", "k8", "k9"]
    batch = pd.DataFrame({"updated_at": pd.to_datetime([T0, T0 + timedelta(minutes=3)], utc=True)})
    assert source.max_cursor(batch, "updated_at") == T0 + timedelta(minutes=3)


def test_existing_table_without_the_columns_is_refused(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE servers (id TEXT PRIMARY KEY, name TEXT)"))
    target = SqlTableTarget(engine, "servers")
    with pytest.raises(FatalError, match="lacks columns ram_mb, load, active, updated_at, tags"):
        asyncio.run(target.prepare(COLUMNS, "id"))


def test_existing_table_without_a_unique_key_is_refused(database_url: str) -> None:
    engine = make_engine(database_url)
    names = ", ".join(f"{column.name} TEXT" for column in COLUMNS)
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE servers ({names})"))
    with pytest.raises(FatalError, match="no primary key or unique index on id"):
        asyncio.run(SqlTableTarget(engine, "servers").prepare(COLUMNS, "id"))


def test_first_load_appends_then_merges_when_keys_already_exist(database_url: str) -> None:
    """Batches go straight in while the keys are new; the first known key switches to merging."""

    async def scenario() -> list[tuple[list[str], list[str], int]]:
        target = SqlTableTarget(make_engine(database_url), "servers")
        await target.prepare(COLUMNS[:-1], "id")  # no JSON column: PostgreSQL COPYs directly
        outcomes = []
        for batch in (
            frame([("a", "web-1", 1, 0.0, True, T0, []), ("b", "web-2", 2, 0.0, True, T0, [])]),
            frame([("c", "web-3", 3, 0.0, True, T0, [])]),
            frame([("b", "web-2", 20, 0.0, True, T0, []), ("d", "web-4", 4, 0.0, True, T0, [])]),
            frame([("a", "web-1", 1, 0.0, True, T0, []), ("e", "web-5", 5, 0.0, True, T0, [])]),
        ):
            result = await target.upsert(batch, "id")
            outcomes.append((sorted(result.created), sorted(result.updated), result.unchanged))
        await target.aclose()
        return outcomes

    assert asyncio.run(scenario()) == [
        (["a", "b"], [], 0),
        (["c"], [], 0),
        (["d"], ["b"], 0),
        (["e"], [], 1),
    ]
    assert [row[0] for row in rows_of(database_url)] == ["a", "b", "c", "d", "e"]
    assert rows_of(database_url)[1] == ("b", "web-2", 20, True)


def test_a_table_made_by_someone_else_with_narrower_types_is_written_through_the_stage(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    json_type = "jsonb" if engine.dialect.name == "postgresql" else "TEXT"
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE TABLE servers (id TEXT PRIMARY KEY, name TEXT, ram_mb INTEGER, "
                f"load REAL, active BOOLEAN, updated_at TIMESTAMP WITH TIME ZONE, tags {json_type})"
            )
        )
    data = frame([("a", "web-1", 1024, 0.5, True, T0, ["x"])])
    assert asyncio.run(upsert(database_url, data)) == (["a"], [], 0)
    assert rows_of(database_url) == [("a", "web-1", 1024, True)]
