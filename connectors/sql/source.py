"""A SQL table as an incremental record source."""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from connectors.base.errors import FatalError
from connectors.base.records import CursorValue, ReadWindow
from connectors.base.stats import CallStats
from connectors.sql.engine import adbc_uri
from connectors.sql.schema import split_name

_DONE = object()
T = TypeVar("T")

IN_LIST_SIZE = 1_000
"""Keys per ``IN (...)`` list: well under every driver's bind limit (SQLite: 32,766)."""


async def iterate_in_thread(iterator: Iterator[T]) -> AsyncIterator[T]:
    """Pull a blocking iterator from a worker thread, so reading overlaps writing."""
    while True:
        batch = await asyncio.to_thread(next, iterator, _DONE)
        if batch is _DONE:
            return
        yield batch  # type: ignore[misc]


def chunked(values: Sequence[T], size: int = IN_LIST_SIZE) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def reflect(engine: sa.Engine, name: str) -> sa.Table:
    """The table (or view) with its column types; ``NoSuchTableError`` when there is none."""
    schema, bare = split_name(name)
    # resolve_fks=False: the columns are all we need, not every table a foreign key points to.
    return sa.Table(bare, sa.MetaData(schema=schema), autoload_with=engine, resolve_fks=False)


def key_binds(
    column: sa.ColumnElement[Any], keys: Iterable[Any]
) -> tuple[sa.ColumnElement[Any], dict[Any, list[str]]]:
    """What to compare keys with, and the bind values for ``keys`` by the text they came as.

    Keys travel as text; the column may not be. Binding text to an integer column fails on
    PostgreSQL and misses on SQLite (affinity aside), so integer columns get integers (text
    that is not a number cannot match and is left out). Text columns take the text as it is,
    which keeps the key's index usable. Any other type (numeric, uuid, a type SQLite left
    unnamed) is compared as ``CAST(key AS text)``: slower, but right.
    """
    by_value: dict[Any, list[str]] = {}
    if isinstance(column.type, sa.Integer):
        for key in keys:
            try:
                value: Any = int(key)
            except (TypeError, ValueError):
                continue
            by_value.setdefault(value, []).append(str(key))
        return column, by_value
    for key in keys:
        by_value.setdefault(str(key), []).append(str(key))
    if isinstance(column.type, sa.String):
        return column, by_value
    return sa.cast(column, sa.Text()), by_value


def _names(fields: Sequence[str], window: ReadWindow) -> list[str]:
    names = list(fields)
    if window.cursor_field and window.cursor_field not in names:
        names.append(window.cursor_field)
    return names


def _did_you_mean(name: str, candidates: Sequence[str]) -> str | None:
    folded = {candidate.casefold(): candidate for candidate in candidates}
    close = [folded[name.casefold()]] if name.casefold() in folded else []
    close += difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    close = list(dict.fromkeys(close))
    return f"{name}: did you mean {' or '.join(close)}?" if close else None


def _typed(value: CursorValue) -> sa.BindParameter[Any]:
    kind: sa.types.TypeEngine[Any] = (
        sa.DateTime(timezone=True) if isinstance(value, datetime) else sa.BigInteger()
    )
    return sa.literal(value, kind)


class SqlTableSource:
    """Reads ``SELECT fields FROM table WHERE since <= cursor <= until [AND filter]``.

    One statement per run: the database gives it a consistent snapshot, so there is no paging
    drift to guard against. PostgreSQL streams Arrow batches through ADBC (no Python tuple per
    row); other dialects stream through SQLAlchemy.
    """

    system = "sql"

    def __init__(
        self,
        engine: sa.Engine,
        table: str,
        *,
        key: str,
        fields: Sequence[str] | None = None,
        filter_sql: str | None = None,
    ) -> None:
        self.engine = engine
        self.object_name = table
        self.key = key
        self.fields = list(fields) if fields else None
        self.filter_sql = filter_sql
        self._table: sa.Table | None = None  # reflected once, by prepare() or on first need

    async def prepare(self, fields: Sequence[str]) -> None:
        """Check that the table exists, has every field and the key, and takes the filter."""
        await asyncio.to_thread(self._check, [*fields, self.key])

    def _check(self, fields: Sequence[str]) -> None:
        table = self._reflected()
        present = list(table.c.keys())
        unknown = list(dict.fromkeys(field for field in fields if field not in table.c))
        if unknown:
            hints = [hint for field in unknown if (hint := _did_you_mean(field, present))]
            raise FatalError(
                "sql",
                f"table {self.object_name} has no column{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(unknown)}",
                detail="; ".join([*hints, f"its columns: {', '.join(present)}"]),
            )
        if self.filter_sql:
            # Compiled and planned by the database, on no rows: a typo in the filter fails
            # here, before any writing, rather than in the middle of the first read.
            probe = sa.select(table.c[self.key]).where(sa.text(self.filter_sql)).limit(0)
            try:
                with self.engine.connect() as connection:
                    connection.execute(probe).all()
            except sa.exc.DBAPIError as error:
                raise FatalError(
                    "sql",
                    f"the filter on table {self.object_name} is not valid: {self.filter_sql}",
                    # The database's own words; the rest of its message quotes our SQL.
                    detail=str(error.orig).strip().splitlines()[0],
                ) from error

    def _reflected(self) -> sa.Table:
        if self._table is None:
            try:
                self._table = reflect(self.engine, self.object_name)
            except sa.exc.NoSuchTableError as error:
                raise FatalError(
                    "sql",
                    f"table {self.object_name} does not exist",
                    detail=self._similar_tables(),
                ) from error
        return self._table

    def _similar_tables(self) -> str | None:
        schema, name = split_name(self.object_name)
        inspector = sa.inspect(self.engine)
        try:
            names = inspector.get_table_names(schema=schema) + inspector.get_view_names(
                schema=schema
            )
        except sa.exc.SQLAlchemyError:
            return None  # e.g. the schema is missing too; the message says enough
        where = f"schema {schema}" if schema else "the database"
        if not names:
            return f"{where} has no tables"
        return _did_you_mean(name, names) or f"{where} has {', '.join(sorted(names)[:20])}"

    def statement(
        self,
        window: ReadWindow,
        fields: Sequence[str] | None = None,
        *,
        scoped: bool = True,
    ) -> sa.Select[Any]:
        """``SELECT fields`` (default: the source's) in ``window``; the filter if ``scoped``."""
        fields = list(fields) if fields else self.fields
        schema, name = split_name(self.object_name)
        table: sa.TableClause | sa.Table
        if fields and self.engine.dialect.name == "postgresql":
            # PostgreSQL compares typed literals itself: no reflection (0.1-0.2 s a run) needed.
            table = sa.table(
                name, *(sa.column(field) for field in _names(fields, window)), schema=schema
            )
        else:
            # Elsewhere (SQLite keeps datetimes as text) the column types shape the binds.
            table = self._reflected()
        columns = [table.c[field] for field in fields] if fields else list(table.c)
        statement = sa.select(*columns)
        if window.cursor_field:
            cursor = table.c[window.cursor_field]
            if window.since is not None:
                statement = statement.where(cursor >= _typed(window.since))
            if window.until is not None:
                statement = statement.where(cursor <= _typed(window.until))
        if self.filter_sql and scoped:
            statement = statement.where(sa.text(self.filter_sql))
        return statement

    async def read(self, window: ReadWindow) -> AsyncIterator[pd.DataFrame]:
        async for batch in iterate_in_thread(self._batches(window)):
            yield batch

    async def read_keys(
        self, window: ReadWindow, *, scoped: bool = True
    ) -> AsyncIterator[list[str]]:
        """``SELECT key FROM table WHERE window [AND filter]``, as text, in ``batch_size`` lists."""
        async for batch in iterate_in_thread(self._batches(window, [self.key], scoped=scoped)):
            # The same text form the engine gives the keys of read() batches: astype(str).
            yield batch[self.key].astype(str).tolist()

    async def in_scope(self, keys: Sequence[str]) -> set[str]:
        """The ``keys`` whose rows exist now and match the filter, whatever their change time."""
        if not keys:
            return set()
        return await asyncio.to_thread(self._in_scope, list(dict.fromkeys(keys)))

    def _in_scope(self, keys: list[str]) -> set[str]:
        table = self._reflected()
        compared, by_value = key_binds(table.c[self.key], keys)
        values = list(by_value)
        found: set[str] = set()
        # One connection, one statement per chunk. Each sees its own snapshot, which is fine:
        # a key is in scope or not at the moment it is asked about.
        with self.engine.connect() as connection:
            for chunk in chunked(values):
                statement = sa.select(compared).where(compared.in_(chunk))
                if self.filter_sql:
                    statement = statement.where(sa.text(self.filter_sql))
                for value in connection.execute(statement).scalars():
                    found.update(by_value.get(value, ()))
        return found

    async def fetch(self, keys: Sequence[str], *, by: str | None = None) -> pd.DataFrame:
        """The rows of ``keys`` as they are now and in scope (for events); ``by`` looks rows
        up by another column than the key."""
        return await asyncio.to_thread(self._fetch, list(dict.fromkeys(keys)), by or self.key)

    def _fetch(self, keys: list[str], by: str) -> pd.DataFrame:
        table = self._reflected()
        compared, by_value = key_binds(table.c[by], keys)
        names = list(dict.fromkeys([*self.fields, self.key, by])) if self.fields else None
        columns = [table.c[name] for name in names] if names else list(table.c)
        frames: list[pd.DataFrame] = []
        with self.engine.connect() as connection:
            for chunk in chunked(list(by_value)):
                statement = sa.select(*columns).where(compared.in_(chunk))
                if self.filter_sql:
                    statement = statement.where(sa.text(self.filter_sql))
                result = connection.execute(statement)
                frames.append(pd.DataFrame.from_records(result.all(), columns=list(result.keys())))
        empty = pd.DataFrame(columns=[column.name for column in columns])
        return pd.concat(frames, ignore_index=True) if frames else empty

    def unread(self) -> int:
        # One statement reads a consistent snapshot: nothing it counts is kept from it.
        return 0

    def _batches(
        self,
        window: ReadWindow,
        fields: Sequence[str] | None = None,
        *,
        scoped: bool = True,
    ) -> Iterator[pd.DataFrame]:
        # Reflection included: all of it runs in the reading thread, off the event loop.
        statement = self.statement(window, fields, scoped=scoped)
        if self.engine.dialect.name == "postgresql":
            yield from self._read_postgres(statement, window.batch_size)
        else:
            yield from self._read_generic(statement, window.batch_size)

    def _read_postgres(self, statement: sa.Select[Any], batch_size: int) -> Iterator[pd.DataFrame]:
        import adbc_driver_postgresql.dbapi as adbc

        sql = str(statement.compile(self.engine, compile_kwargs={"literal_binds": True}))
        with adbc.connect(adbc_uri(self.engine.url)) as connection, connection.cursor() as cursor:
            cursor.execute(sql)
            reader: pa.RecordBatchReader = cursor.fetch_record_batch()
            pending: list[pa.RecordBatch] = []
            pending_rows = 0
            for record_batch in reader:
                pending.append(record_batch)
                pending_rows += record_batch.num_rows
                while pending_rows >= batch_size:
                    table = pa.Table.from_batches(pending)
                    yield table.slice(0, batch_size).to_pandas()
                    rest = table.slice(batch_size)
                    pending, pending_rows = rest.to_batches(), rest.num_rows
            if pending_rows:
                yield pa.Table.from_batches(pending).to_pandas()

    def _read_generic(self, statement: sa.Select[Any], batch_size: int) -> Iterator[pd.DataFrame]:
        with self.engine.connect() as connection:
            result = connection.execution_options(stream_results=True).execute(statement)
            names = list(result.keys())
            for rows in result.partitions(batch_size):
                yield pd.DataFrame.from_records(rows, columns=names)

    def expected_rows(self) -> int | None:
        # Counting first would cost a second scan of the window; progress shows rows instead.
        return None

    def max_cursor(self, batch: pd.DataFrame, cursor_field: str) -> CursorValue | None:
        value = batch[cursor_field].max()
        if value is None or pd.isna(value):
            return None
        if isinstance(value, pd.Timestamp | datetime):
            stamp = pd.Timestamp(value)
            stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
            return stamp.to_pydatetime()
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return int(value)

    def call_stats(self) -> CallStats | None:
        return None

    async def aclose(self) -> None:
        """Close the engine's pool (the source owns its engine)."""
        self.engine.dispose()
