"""A SQL table as an idempotent record target."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from connectors.base.records import Column, DeleteRule, WriteResult
from connectors.base.stats import CallStats
from connectors.sql.bulk import BulkWriter, bulk_writer
from connectors.sql.schema import column_type, ensure_table, split_name
from connectors.sql.source import chunked, iterate_in_thread, key_binds, reflect

KEY_BATCH_SIZE = 10_000


def _column_type_of(engine: sa.Engine, table: str, column: str) -> sa.types.TypeEngine[Any]:
    """One column's type, from one catalogue query (a full reflection costs several)."""
    schema, name = split_name(table)
    for described in sa.inspect(engine).get_columns(name, schema=schema):
        if described["name"] == column:
            return described["type"]
    raise KeyError(f"{table} has no column {column}")


def _utc(at: datetime | None) -> datetime:
    """The deletion time in UTC (naive means UTC).

    SQLite keeps a datetime's fields as text without its offset, so the mark must be in UTC to
    read back right, as every datetime the bulk writer stores is.
    """
    at = at or datetime.now(UTC)
    return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)


class SqlTableTarget:
    """Upserts batches into one table by its key; creates the table from the spec if missing.

    ``soft_column`` names the column a soft delete marks, when the spec asks for one: a table
    made before it was asked for gets it added at ``prepare`` instead of being refused.
    """

    system = "sql"

    def __init__(self, engine: sa.Engine, table: str, *, soft_column: str | None = None) -> None:
        self.engine = engine
        self.object_name = table
        self.soft_column = soft_column
        self._writer: BulkWriter | None = None
        self._key_type: dict[str, sa.types.TypeEngine[Any]] = {}

    async def prepare(self, columns: Sequence[Column], key: str) -> None:
        addable = [self.soft_column] if self.soft_column else []

        def setup() -> BulkWriter:
            created = ensure_table(self.engine, self.object_name, columns, key, addable=addable)
            written = columns
            if not created:
                # The staged key is compared with the table's own: an existing table's key
                # type decides it (PostgreSQL compares no integer with text).
                own = column_type(_column_type_of(self.engine, self.object_name, key))
                written = [replace(col, type=own) if col.name == key else col for col in columns]
            return bulk_writer(self.engine, self.object_name, written, key, created=created)

        self._writer = await asyncio.to_thread(setup)

    async def upsert(self, batch: pd.DataFrame, key: str) -> WriteResult:
        if self._writer is None:
            raise RuntimeError("SqlTableTarget.prepare() must run before upsert()")
        if batch.empty:
            return WriteResult()
        return await asyncio.to_thread(self._writer.write, batch)

    async def delete(self, keys: Sequence[Any], key: str, rule: DeleteRule) -> list[str]:
        """Delete the rows (or mark them, for a soft rule) whose ``key`` is one of ``keys``.

        Hard: ``DELETE … WHERE key IN (…)``. Soft: ``UPDATE … SET mark = at WHERE key IN (…)
        AND mark IS NULL``, so a row already marked keeps its first time and is not reported
        again. Returns the keys (as text) this call deleted or marked, all in one transaction.
        """
        if not keys:
            return []
        return await asyncio.to_thread(self._delete, list(dict.fromkeys(keys)), key, rule)

    def _delete(self, keys: list[Any], key: str, rule: DeleteRule) -> list[str]:
        table = self._table(key, rule.soft_column)
        compared, by_value = key_binds(table.c[key], keys)
        values = list(by_value)
        changed: list[str] = []
        with self.engine.begin() as connection:
            for chunk in chunked(values):
                condition: sa.ColumnElement[bool] = compared.in_(chunk)
                statement: sa.Delete | sa.Update
                if rule.soft_column is None:
                    statement = sa.delete(table).where(condition)
                    returning = self.engine.dialect.delete_returning
                else:
                    mark = table.c[rule.soft_column]
                    condition = sa.and_(condition, mark.is_(None))
                    statement = sa.update(table).where(condition).values({mark: _utc(rule.at)})
                    returning = self.engine.dialect.update_returning
                done: Sequence[Any]
                if returning:
                    done = connection.execute(statement.returning(compared)).scalars().all()
                else:
                    # SQLite before 3.35 has no RETURNING: the same transaction reads the keys
                    # first. Under WAL a writer that came in between makes our write fail
                    # (SQLITE_BUSY_SNAPSHOT) rather than the list go stale.
                    done = connection.execute(sa.select(compared).where(condition)).scalars().all()
                    connection.execute(statement)
                # Reported in the text the caller gave (an integer key sent as "007" is "007").
                for value in done:
                    changed.extend(by_value.get(value, [str(value)]))
        return changed

    def _column_type(self, key: str) -> sa.types.TypeEngine[Any]:
        """The key column's type, reflected once: it decides how text keys are bound."""
        if key not in self._key_type:
            self._key_type[key] = reflect(self.engine, self.object_name).c[key].type
        return self._key_type[key]

    def _table(self, key: str, soft_column: str | None) -> sa.TableClause:
        schema, name = split_name(self.object_name)
        columns = [sa.column(key, self._column_type(key))]
        if soft_column is not None:
            # Typed, so SQLite stores the mark in the same text form the bulk writer uses.
            columns.append(sa.column(soft_column, sa.DateTime(timezone=True)))
        return sa.table(name, *columns, schema=schema)

    async def read_keys(self, key: str) -> AsyncIterator[list[str]]:
        """Every key in the table, as text, in batches; soft-deleted rows included."""
        async for batch in iterate_in_thread(self._keys(key)):
            yield batch

    def _keys(self, key: str) -> Iterator[list[str]]:
        schema, name = split_name(self.object_name)
        table = sa.table(name, sa.column(key), schema=schema)
        with self.engine.connect() as connection:
            result = connection.execution_options(stream_results=True).execute(
                sa.select(table.c[key])
            )
            for rows in result.scalars().partitions(KEY_BATCH_SIZE):
                yield [str(value) for value in rows]

    def call_stats(self) -> CallStats | None:
        return None

    async def aclose(self) -> None:
        """Close the writer's connection and the engine's pool (the target owns its engine)."""
        if self._writer is not None:
            await asyncio.to_thread(self._writer.close)
            self._writer = None
        self.engine.dispose()
