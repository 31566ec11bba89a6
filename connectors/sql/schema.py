"""Tables described by typed columns: created when missing, checked when present."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from connectors.base.errors import FatalError
from connectors.base.records import Column, ColumnType

SQL_TYPES: dict[ColumnType, sa.types.TypeEngine[Any]] = {
    ColumnType.STRING: sa.Text(),
    ColumnType.INTEGER: sa.BigInteger(),
    ColumnType.FLOAT: sa.Double(),
    ColumnType.DECIMAL: sa.Numeric(38, 10),
    ColumnType.BOOLEAN: sa.Boolean(),
    ColumnType.DATETIME: sa.DateTime(timezone=True),
    ColumnType.DATE: sa.Date(),
    # JSONB on PostgreSQL: plain json has no equality operator, so no change detection.
    ColumnType.JSON: sa.JSON().with_variant(JSONB(), "postgresql"),
}


def column_type(sql_type: sa.types.TypeEngine[Any]) -> ColumnType:
    """The column type a reflected SQL type holds (text for anything unknown)."""
    for python_type, kind in (
        (bool, ColumnType.BOOLEAN),
        (int, ColumnType.INTEGER),
        (float, ColumnType.FLOAT),
    ):
        try:
            if issubclass(sql_type.python_type, python_type):
                return kind
        except NotImplementedError:
            break
    if isinstance(sql_type, sa.Numeric):
        return ColumnType.DECIMAL
    if isinstance(sql_type, sa.DateTime):
        return ColumnType.DATETIME
    if isinstance(sql_type, sa.Date):
        return ColumnType.DATE
    return ColumnType.STRING


def split_name(name: str) -> tuple[str | None, str]:
    """``schema.table`` or ``table``."""
    schema, _, table = name.rpartition(".")
    return (schema or None), table


def _quoted(engine: sa.Engine, name: str) -> str:
    schema, table = split_name(name)
    quote = engine.dialect.identifier_preparer.quote
    return f"{quote(schema)}.{quote(table)}" if schema else quote(table)


def describe_table(name: str, columns: Sequence[Column], key: str) -> sa.Table:
    schema, table = split_name(name)
    return sa.Table(
        table,
        sa.MetaData(schema=schema),
        *(
            sa.Column(col.name, SQL_TYPES[col.type], nullable=col.nullable and col.name != key)
            for col in columns
        ),
        sa.PrimaryKeyConstraint(key, name=f"pk_{table}"),
    )


def ensure_table(
    engine: sa.Engine,
    name: str,
    columns: Sequence[Column],
    key: str,
    *,
    addable: Collection[str] = (),
) -> bool:
    """Create the table when missing; when present, insist it has every column and a key.

    Columns named in ``addable`` (ones the engine adds itself, such as a soft-delete mark) are
    added, nullable, to a table that lacks them, so a table made before they were asked for
    keeps working; any other missing column is refused before anything is altered.

    Returns whether it created the table (so its column types are exactly ours).

    Every run starts with this, so the common case (the table is there, keyed as we made it)
    costs two cheap queries rather than a full reflection.
    """
    table = describe_table(name, columns, key)
    schema, bare = split_name(name)
    present = _column_names(engine, name)
    if present is None:
        table.create(engine)
        if engine.dialect.name == "postgresql":
            # Room on each page lets an update stay on its page without touching the index
            # (a HOT update): nightly updates of a few percent of rows then stay cheap.
            with engine.begin() as connection:
                connection.execute(
                    sa.text(f"ALTER TABLE {_quoted(engine, name)} SET (fillfactor = 90)")
                )
        return True
    missing = [col for col in columns if col.name not in present]
    refused = [col.name for col in missing if col.name not in addable]
    if refused:
        raise FatalError(
            "sql",
            f"table {name} exists but lacks columns {', '.join(refused)}",
            detail="add them (or drop the table to have it created from the spec)",
        )
    if missing:
        _add_columns(engine, name, missing)
    inspector = sa.inspect(engine)
    if inspector.get_pk_constraint(bare, schema=schema)["constrained_columns"] == [key]:
        return False
    unique_sets = [
        index["column_names"]
        for index in inspector.get_indexes(bare, schema=schema)
        if index["unique"]
    ]
    unique_sets += [
        list(constraint["column_names"])
        for constraint in inspector.get_unique_constraints(bare, schema=schema)
    ]
    if [key] not in unique_sets:
        raise FatalError(
            "sql",
            f"table {name} has no primary key or unique index on {key}",
            detail=f"an idempotent upsert needs one: CREATE UNIQUE INDEX ON {name} ({key})",
        )
    return False


def _add_columns(engine: sa.Engine, name: str, columns: Sequence[Column]) -> None:
    """``ALTER TABLE … ADD COLUMN`` for each of ``columns``, nullable, in one transaction."""
    quote = engine.dialect.identifier_preparer.quote
    try:
        with engine.begin() as connection:
            for column in columns:
                kind = SQL_TYPES[column.type].compile(dialect=engine.dialect)
                connection.execute(
                    sa.text(
                        f"ALTER TABLE {_quoted(engine, name)} "
                        f"ADD COLUMN {quote(column.name)} {kind}"
                    )
                )
    except sa.exc.DBAPIError:
        # Another run preparing the same table at the same moment may have added them first.
        present = _column_names(engine, name) or set()
        if any(column.name not in present for column in columns):
            raise


def _column_names(engine: sa.Engine, name: str) -> set[str] | None:
    """The table's column names, or ``None`` when there is no such table."""
    try:
        with engine.connect() as connection:
            result = connection.execute(
                sa.text(f"SELECT * FROM {_quoted(engine, name)} WHERE 1 = 0")
            )
            return set(result.keys())
    except sa.exc.DBAPIError:
        schema, bare = split_name(name)
        if sa.inspect(engine).has_table(bare, schema=schema):
            raise  # there, but unreadable (rights, locks): not ours to create
        return None
