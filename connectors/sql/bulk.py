"""Set-based upserts: stage a batch, then one UPDATE and one INSERT apply it.

    UPDATE target SET … FROM stage WHERE target.key = stage.key
           AND (target.a IS DISTINCT FROM stage.a OR …)          RETURNING key  -- updated
    INSERT INTO target SELECT … FROM stage
           WHERE NOT EXISTS (SELECT 1 FROM target WHERE key = stage.key) RETURNING key  -- created

Rows that already hold the values are not rewritten (no write amplification, no WAL, and the
count of unchanged rows is exact). Both statements run in one transaction per batch: a batch is
applied whole or not at all. The same SQL runs on PostgreSQL and on SQLite (3.33+ for
UPDATE … FROM, 3.35+ for RETURNING); only the staging load differs by dialect.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from connectors.base.errors import FatalError
from connectors.base.records import Column, ColumnType, WriteResult
from connectors.sql.engine import adbc_uri
from connectors.sql.schema import SQL_TYPES, split_name

STAGE_TABLE = "syncline_stage"

ARROW_TYPES: dict[ColumnType, pa.DataType] = {
    ColumnType.STRING: pa.large_string(),
    ColumnType.INTEGER: pa.int64(),
    ColumnType.FLOAT: pa.float64(),
    ColumnType.DECIMAL: pa.decimal128(38, 10),
    ColumnType.BOOLEAN: pa.bool_(),
    ColumnType.DATETIME: pa.timestamp("us", tz="UTC"),
    ColumnType.DATE: pa.date32(),
    ColumnType.JSON: pa.large_string(),
}


class BulkWriter(Protocol):
    def write(self, batch: pd.DataFrame) -> WriteResult: ...

    def close(self) -> None: ...


class _SetBasedUpsert:
    """The dialect-independent part: identifiers and the two statements."""

    def __init__(self, engine: sa.Engine, table: str, columns: Sequence[Column], key: str) -> None:
        self.engine = engine
        self.columns = list(columns)
        self.key = key
        quote = engine.dialect.identifier_preparer.quote
        schema, name = split_name(table)
        self.target = f"{quote(schema)}.{quote(name)}" if schema else quote(name)
        self.quote = quote
        self.names = [col.name for col in self.columns]

    def staged(self, column: Column) -> str:
        """How a staged value is read: JSON is staged as text and cast back."""
        ref = f"s.{self.quote(column.name)}"
        if column.type is ColumnType.JSON and self.engine.dialect.name == "postgresql":
            return f"CAST({ref} AS jsonb)"
        return ref

    def update_sql(self) -> str:
        key = self.quote(self.key)
        others = [col for col in self.columns if col.name != self.key]
        if not others:
            return ""
        assignments = ", ".join(f"{self.quote(col.name)} = {self.staged(col)}" for col in others)
        differs = " OR ".join(
            f"t.{self.quote(col.name)} IS DISTINCT FROM {self.staged(col)}" for col in others
        )
        # SQLite's RETURNING sees only the updated table, unqualified; PostgreSQL's sees the
        # FROM list too, where the bare name would be ambiguous.
        returned = key if self.engine.dialect.name == "sqlite" else f"t.{key}"
        return (
            f"UPDATE {self.target} AS t SET {assignments} FROM {STAGE_TABLE} AS s "
            f"WHERE t.{key} = s.{key} AND ({differs}) RETURNING {returned}"
        )

    def insert_sql(self) -> str:
        key = self.quote(self.key)
        names = ", ".join(self.quote(name) for name in self.names)
        values = ", ".join(self.staged(col) for col in self.columns)
        return (
            f"INSERT INTO {self.target} ({names}) SELECT {values} FROM {STAGE_TABLE} AS s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {self.target} AS x WHERE x.{key} = s.{key}) "
            f"RETURNING {key}"
        )


class PostgresBulkWriter(_SetBasedUpsert):
    """Stages with binary COPY from Arrow (ADBC): no Python object per row."""

    def __init__(self, engine: sa.Engine, table: str, columns: Sequence[Column], key: str) -> None:
        import adbc_driver_postgresql.dbapi as adbc

        super().__init__(engine, table, columns, key)
        self.schema = pa.schema([(col.name, ARROW_TYPES[col.type]) for col in self.columns])
        self.connection = adbc.connect(adbc_uri(engine.url))
        stage_columns = ", ".join(
            f"{self.quote(col.name)} "
            + ("text" if col.type is ColumnType.JSON else _compiled_type(engine, col))
            for col in self.columns
        )
        with self.connection.cursor() as cursor:
            # ON COMMIT DELETE ROWS empties the stage at every batch's commit.
            cursor.execute(
                f"CREATE TEMP TABLE {STAGE_TABLE} ({stage_columns}) ON COMMIT DELETE ROWS"
            )
        self.connection.commit()
        self._update, self._insert = self.update_sql(), self.insert_sql()

    def write(self, batch: pd.DataFrame) -> WriteResult:
        staged = batch[self.names]
        json_columns = [col.name for col in self.columns if col.type is ColumnType.JSON]
        if json_columns:
            staged = staged.assign(**{name: _json_text(staged[name]) for name in json_columns})
        data = pa.Table.from_pandas(staged, schema=self.schema, preserve_index=False)
        try:
            with self.connection.cursor() as cursor:
                cursor.adbc_ingest(STAGE_TABLE, data, mode="append", temporary=True)
                # Temporary tables are invisible to autovacuum: without fresh statistics the
                # planner may join a 100k-row stage by nested loop.
                cursor.execute(f"ANALYZE {STAGE_TABLE}")
                updated = _returned_keys(cursor, self._update)
                created = _returned_keys(cursor, self._insert)
            self.connection.commit()
        except Exception:
            self.connection.rollback()
            raise
        return WriteResult(
            created=created, updated=updated, unchanged=len(batch) - len(created) - len(updated)
        )

    def close(self) -> None:
        self.connection.close()


def _json_text(values: pd.Series) -> pd.Series:
    return values.map(lambda v: None if v is None else json.dumps(v, sort_keys=True))


def _returned_keys(cursor: Any, sql: str) -> list[str]:
    if not sql:
        return []
    cursor.execute(sql)
    return [str(key) for key in cursor.fetch_arrow_table().column(0).to_pylist()]


def _compiled_type(engine: sa.Engine, column: Column) -> str:
    return SQL_TYPES[column.type].compile(dialect=engine.dialect)


class SqliteBulkWriter(_SetBasedUpsert):
    """Stages with the stdlib driver's ``executemany`` into a temporary table."""

    def __init__(self, engine: sa.Engine, table: str, columns: Sequence[Column], key: str) -> None:
        super().__init__(engine, table, columns, key)
        self.connection = engine.raw_connection()
        names = ", ".join(self.quote(name) for name in self.names)
        cursor = self.connection.cursor()
        cursor.execute(f"DROP TABLE IF EXISTS temp.{STAGE_TABLE}")
        cursor.execute(
            f"CREATE TEMP TABLE {STAGE_TABLE} AS SELECT {names} FROM {self.target} WHERE 0"
        )
        cursor.close()
        self.connection.commit()
        marks = ", ".join("?" for _ in self.names)
        self._stage = f"INSERT INTO {STAGE_TABLE} ({names}) VALUES ({marks})"
        self._update, self._insert = self.update_sql(), self.insert_sql()

    def write(self, batch: pd.DataFrame) -> WriteResult:
        rows = _sqlite_rows(batch[self.names], self.columns)
        cursor = self.connection.cursor()
        try:
            cursor.execute(f"DELETE FROM {STAGE_TABLE}")
            cursor.executemany(self._stage, rows)
            updated = [str(row[0]) for row in cursor.execute(self._update)] if self._update else []
            created = [str(row[0]) for row in cursor.execute(self._insert)]
            self.connection.commit()
        except Exception:
            self.connection.rollback()
            raise
        finally:
            cursor.close()
        return WriteResult(
            created=created, updated=updated, unchanged=len(batch) - len(created) - len(updated)
        )

    def close(self) -> None:
        self.connection.close()


def _sqlite_rows(batch: pd.DataFrame, columns: Sequence[Column]) -> list[tuple[Any, ...]]:
    """Plain Python values in the text forms SQLAlchemy's SQLite types store and read back."""
    converted: dict[str, Any] = {}
    for column in columns:
        series = batch[column.name]
        missing = series.isna().to_numpy()
        values: np.ndarray[Any, Any]
        if column.type is ColumnType.DATETIME:
            naive = pd.to_datetime(series, utc=True).dt.tz_localize(None)
            text = np.datetime_as_string(naive.to_numpy(dtype="datetime64[us]"), unit="us")
            values = np.char.replace(text.astype(str), "T", " ").astype(object)
        elif column.type is ColumnType.DATE:
            values = pd.to_datetime(series).dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
        elif column.type is ColumnType.BOOLEAN:
            values = series.astype("boolean").astype(object).to_numpy()
            values = np.array([int(v) if v is not pd.NA else None for v in values], dtype=object)
        elif column.type is ColumnType.JSON:
            values = _json_text(series).to_numpy(dtype=object)
        elif column.type is ColumnType.DECIMAL:
            values = series.astype("float64").to_numpy(dtype=object)
        else:
            values = series.to_numpy(dtype=object)
        values[missing] = None
        converted[column.name] = values
    return list(zip(*converted.values(), strict=True))


def bulk_writer(engine: sa.Engine, table: str, columns: Sequence[Column], key: str) -> BulkWriter:
    dialect = engine.dialect.name
    if dialect == "postgresql":
        return PostgresBulkWriter(engine, table, columns, key)
    if dialect == "sqlite":
        return SqliteBulkWriter(engine, table, columns, key)
    raise FatalError(
        "sql",
        f"writing to {dialect} is not supported",
        detail="supported targets: postgresql, sqlite (any SQLAlchemy URL can be read from)",
    )
