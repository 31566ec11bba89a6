"""Bulk upserts that write only what changed and report exactly what they did.

Each batch is applied in one transaction, whole or not at all, in one of two ways:

- **append**: while the target holds none of the batch's keys (a first load), rows go straight
  in (PostgreSQL: binary COPY from Arrow; SQLite: one prepared INSERT). A key that is already
  there aborts the attempt (unique violation) and the batch is applied by upsert instead; every
  later batch is upserted too.
- **upsert**: the batch is staged in a temporary table and merged by key, skipping rows that
  already hold the values, so reruns cause no writes and "unchanged" is exact:

  PostgreSQL, one statement (``xmax = 0`` marks rows this statement inserted)::

    INSERT INTO target AS t SELECT … FROM stage
    ON CONFLICT (key) DO UPDATE SET … WHERE t.a IS DISTINCT FROM EXCLUDED.a OR …
    RETURNING key, (xmax = 0)

  SQLite, whose RETURNING cannot tell an insert from an update::

    UPDATE target AS t SET … FROM stage WHERE t.key = stage.key AND (t.a IS NOT stage.a …)
    INSERT INTO target SELECT … FROM stage WHERE NOT EXISTS (… same key …)
"""

from __future__ import annotations

import json
import sqlite3
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


class _TargetTable:
    """Quoted names of the target, its columns and its key, for one dialect."""

    def __init__(self, engine: sa.Engine, table: str, columns: Sequence[Column], key: str) -> None:
        self.engine = engine
        self.columns = list(columns)
        self.key = key
        quote = engine.dialect.identifier_preparer.quote
        self.quote = quote
        schema, name = split_name(table)
        self.target = f"{quote(schema)}.{quote(name)}" if schema else quote(name)
        self.names = [col.name for col in self.columns]
        self.column_list = ", ".join(quote(name) for name in self.names)
        self.others = [col for col in self.columns if col.name != key]


class PostgresBulkWriter(_TargetTable):
    """Binary COPY from Arrow through ADBC: no Python object per row."""

    def __init__(
        self,
        engine: sa.Engine,
        table: str,
        columns: Sequence[Column],
        key: str,
        *,
        created: bool,
    ) -> None:
        import adbc_driver_postgresql.dbapi as adbc

        super().__init__(engine, table, columns, key)
        self.schema = pa.schema([(col.name, ARROW_TYPES[col.type]) for col in self.columns])
        self.json_columns = [col.name for col in self.columns if col.type is ColumnType.JSON]
        # Binary COPY needs the table's column types to be exactly the Arrow ones, so it goes
        # straight in only to a table made from the spec this run (a table someone made may
        # say integer where we send bigint; the staged upsert casts). JSON always stages.
        self.appending = created and not self.json_columns
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
        self._upsert = self.upsert_sql()
        _, self._bare_table = split_name(table)
        self._schema_name = split_name(table)[0]

    def _staged(self, column: Column) -> str:
        name = f"s.{self.quote(column.name)}"
        return f"CAST({name} AS jsonb)" if column.type is ColumnType.JSON else name

    def upsert_sql(self) -> str:
        key = self.quote(self.key)
        values = ", ".join(self._staged(col) for col in self.columns)
        head = (
            f"INSERT INTO {self.target} AS t ({self.column_list}) "
            f"SELECT {values} FROM {STAGE_TABLE} AS s ON CONFLICT ({key}) "
        )
        if not self.others:
            return head + f"DO NOTHING RETURNING t.{key}, (t.xmax = 0)"
        assignments = ", ".join(
            f"{self.quote(c.name)} = EXCLUDED.{self.quote(c.name)}" for c in self.others
        )
        differs = " OR ".join(
            f"t.{self.quote(c.name)} IS DISTINCT FROM EXCLUDED.{self.quote(c.name)}"
            for c in self.others
        )
        return head + (
            f"DO UPDATE SET {assignments} WHERE {differs} RETURNING t.{key}, (t.xmax = 0)"
        )

    def _arrow(self, batch: pd.DataFrame) -> pa.Table:
        rows = _nulls_as_none(batch[self.names])
        if self.json_columns:
            rows = rows.assign(**{name: _json_text(rows[name]) for name in self.json_columns})
        return pa.Table.from_pandas(rows, schema=self.schema, preserve_index=False)

    def write(self, batch: pd.DataFrame) -> WriteResult:
        data = self._arrow(batch)
        if self.appending:
            try:
                with self.connection.cursor() as cursor:
                    cursor.adbc_ingest(
                        self._bare_table, data, mode="append", db_schema_name=self._schema_name
                    )
                self.connection.commit()
                return WriteResult(created=[str(k) for k in batch[self.key]])
            except Exception as error:
                self.connection.rollback()
                if not _is_unique_violation(error):
                    raise
                self.appending = False  # some keys exist: merge from now on
        try:
            with self.connection.cursor() as cursor:
                cursor.adbc_ingest(STAGE_TABLE, data, mode="append", temporary=True)
                cursor.execute(self._upsert)
                returned = cursor.fetch_arrow_table()
            self.connection.commit()
        except Exception:
            self.connection.rollback()
            raise
        keys = [str(key) for key in returned.column(0).to_pylist()]
        inserted = returned.column(1).to_pylist()
        created = [key for key, new in zip(keys, inserted, strict=True) if new]
        updated = [key for key, new in zip(keys, inserted, strict=True) if not new]
        return WriteResult(created=created, updated=updated, unchanged=len(batch) - len(keys))

    def close(self) -> None:
        self.connection.close()


def _is_unique_violation(error: Exception) -> bool:
    # ADBC reports the server's SQLSTATE; 23505 is unique_violation.
    return "23505" in str(getattr(error, "sqlstate", "") or "") or "23505" in str(error)


def _nulls_as_none(batch: pd.DataFrame) -> pd.DataFrame:
    """``batch`` with every all-null column as plain ``None`` objects.

    A column the engine fills with nothing (the soft-delete mark, cleared on every upsert), or
    a mapped field that is empty throughout a batch, arrives in whatever dtype pandas guessed:
    float NaN, NaT, ``pd.NA``. Arrow will not cast NaN to a timestamp nor NaT to a string, and
    ``json.dumps`` refuses ``pd.NA``; ``None`` converts to a null of every type.
    """
    empty = [name for name in batch.columns if not batch[name].notna().any()]
    if not empty:
        return batch
    nothing = pd.Series([None] * len(batch), index=batch.index, dtype=object)
    return batch.assign(**{name: nothing for name in empty})


def _json_text(values: pd.Series) -> pd.Series:
    return values.map(lambda v: None if v is None else json.dumps(v, sort_keys=True))


def _compiled_type(engine: sa.Engine, column: Column) -> str:
    return SQL_TYPES[column.type].compile(dialect=engine.dialect)


class SqliteBulkWriter(_TargetTable):
    """The stdlib driver's ``executemany``; a temporary stage table for merges."""

    def __init__(self, engine: sa.Engine, table: str, columns: Sequence[Column], key: str) -> None:
        super().__init__(engine, table, columns, key)
        self.appending = self._is_empty()
        self.connection = engine.raw_connection()
        cursor = self.connection.cursor()
        cursor.execute(f"DROP TABLE IF EXISTS temp.{STAGE_TABLE}")
        cursor.execute(
            f"CREATE TEMP TABLE {STAGE_TABLE} AS SELECT {self.column_list} "
            f"FROM {self.target} WHERE 0"
        )
        cursor.close()
        self.connection.commit()
        marks = ", ".join("?" for _ in self.names)
        self._append = f"INSERT INTO {self.target} ({self.column_list}) VALUES ({marks})"
        self._stage = f"INSERT INTO {STAGE_TABLE} ({self.column_list}) VALUES ({marks})"
        key_name = self.quote(key)
        assignments = ", ".join(
            f"{self.quote(c.name)} = s.{self.quote(c.name)}" for c in self.others
        )
        differs = " OR ".join(
            f"t.{self.quote(c.name)} IS NOT s.{self.quote(c.name)}" for c in self.others
        )
        # SQLite's RETURNING sees only the updated table, so the key stays unqualified.
        self._update = (
            f"UPDATE {self.target} AS t SET {assignments} FROM {STAGE_TABLE} AS s "
            f"WHERE t.{key_name} = s.{key_name} AND ({differs}) RETURNING {key_name}"
            if self.others
            else ""
        )
        self._insert = (
            f"INSERT INTO {self.target} ({self.column_list}) SELECT {self.column_list} "
            f"FROM {STAGE_TABLE} AS s WHERE NOT EXISTS "
            f"(SELECT 1 FROM {self.target} AS x WHERE x.{key_name} = s.{key_name}) "
            f"RETURNING {key_name}"
        )

    def _is_empty(self) -> bool:
        with self.engine.connect() as connection:
            return (
                connection.execute(sa.text(f"SELECT 1 FROM {self.target} LIMIT 1")).first() is None
            )

    def write(self, batch: pd.DataFrame) -> WriteResult:
        rows = _sqlite_rows(_nulls_as_none(batch[self.names]), self.columns)
        cursor = self.connection.cursor()
        try:
            if self.appending:
                try:
                    cursor.executemany(self._append, rows)
                    self.connection.commit()
                    return WriteResult(created=[str(k) for k in batch[self.key]])
                except sqlite3.IntegrityError:
                    self.connection.rollback()
                    self.appending = False  # some keys exist: merge from now on
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
    converted: list[np.ndarray[Any, Any]] = []
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
            values = series.astype("boolean").fillna(False).astype(int).to_numpy(dtype=object)
        elif column.type is ColumnType.JSON:
            values = _json_text(series).to_numpy(dtype=object)
        elif column.type is ColumnType.DECIMAL:
            values = series.astype("float64").to_numpy(dtype=object)
        else:
            values = series.to_numpy(dtype=object)
        plain: Any = values.astype(object)
        plain[missing] = None
        converted.append(plain)
    return list(zip(*converted, strict=True))


def bulk_writer(
    engine: sa.Engine, table: str, columns: Sequence[Column], key: str, *, created: bool
) -> BulkWriter:
    """The writer for ``engine``'s dialect; ``created`` says the table was just made by us."""
    dialect = engine.dialect.name
    if dialect == "postgresql":
        return PostgresBulkWriter(engine, table, columns, key, created=created)
    if dialect == "sqlite":
        return SqliteBulkWriter(engine, table, columns, key)
    raise FatalError(
        "sql",
        f"writing to {dialect} is not supported",
        detail="supported targets: postgresql, sqlite (any SQLAlchemy URL can be read from)",
    )
