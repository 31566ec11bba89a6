"""A SQL table as an idempotent record target."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa

from connectors.base.http import CallStats
from connectors.base.records import Column, WriteResult
from connectors.sql.bulk import BulkWriter, bulk_writer
from connectors.sql.schema import ensure_table


class SqlTableTarget:
    """Upserts batches into one table by its key; creates the table from the spec if missing."""

    system = "sql"

    def __init__(self, engine: sa.Engine, table: str) -> None:
        self.engine = engine
        self.object_name = table
        self._writer: BulkWriter | None = None

    async def prepare(self, columns: Sequence[Column], key: str) -> None:
        def setup() -> BulkWriter:
            created = ensure_table(self.engine, self.object_name, columns, key)
            return bulk_writer(self.engine, self.object_name, columns, key, created=created)

        self._writer = await asyncio.to_thread(setup)

    async def upsert(self, batch: pd.DataFrame, key: str) -> WriteResult:
        if self._writer is None:
            raise RuntimeError("SqlTableTarget.prepare() must run before upsert()")
        if batch.empty:
            return WriteResult()
        return await asyncio.to_thread(self._writer.write, batch)

    def call_stats(self) -> CallStats | None:
        return None

    async def aclose(self) -> None:
        """Close the writer's connection and the engine's pool (the target owns its engine)."""
        if self._writer is not None:
            await asyncio.to_thread(self._writer.close)
            self._writer = None
        self.engine.dispose()
