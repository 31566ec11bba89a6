"""Tables described by typed columns: created when missing, checked when present."""

from __future__ import annotations

from collections.abc import Sequence
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


def split_name(name: str) -> tuple[str | None, str]:
    """``schema.table`` or ``table``."""
    schema, _, table = name.rpartition(".")
    return (schema or None), table


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


def ensure_table(engine: sa.Engine, name: str, columns: Sequence[Column], key: str) -> sa.Table:
    """Create the table when missing; when present, insist it has every column and a key."""
    table = describe_table(name, columns, key)
    schema, bare = split_name(name)
    inspector = sa.inspect(engine)
    if not inspector.has_table(bare, schema=schema):
        table.create(engine)
        return table
    present = {column["name"] for column in inspector.get_columns(bare, schema=schema)}
    missing = [col.name for col in columns if col.name not in present]
    if missing:
        raise FatalError(
            "sql",
            f"table {name} exists but lacks columns {', '.join(missing)}",
            detail="add them (or drop the table to have it created from the spec)",
        )
    unique_sets = [set(inspector.get_pk_constraint(bare, schema=schema)["constrained_columns"])]
    unique_sets += [
        set(index["column_names"])  # type: ignore[arg-type]
        for index in inspector.get_indexes(bare, schema=schema)
        if index["unique"]
    ]
    unique_sets += [
        set(constraint["column_names"])
        for constraint in inspector.get_unique_constraints(bare, schema=schema)
    ]
    if {key} not in unique_sets:
        raise FatalError(
            "sql",
            f"table {name} has no primary key or unique index on {key}",
            detail=f"an idempotent upsert needs one: CREATE UNIQUE INDEX ON {name} ({key})",
        )
    return table
