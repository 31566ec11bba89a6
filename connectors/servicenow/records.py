"""ServiceNow tables as record sources and targets for the engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from connectors.base.errors import FatalError
from connectors.base.http import CallStats
from connectors.base.records import (
    Column,
    CursorValue,
    ReadWindow,
    RejectedRecord,
    WriteResult,
)
from connectors.servicenow.client import ServiceNowClient
from connectors.servicenow.query import EncodedQuery, parse_time


class ServiceNowTableSource:
    """Reads one table incrementally: ``cursor >= since ^ cursor <= until ^ ORDERBY cursor``."""

    system = "servicenow"

    def __init__(
        self,
        client: ServiceNowClient,
        table: str,
        *,
        fields: Sequence[str] | None = None,
        filter_query: str | None = None,
    ) -> None:
        self.client = client
        self.object_name = table
        self.fields = list(fields) if fields else None
        self.filter_query = filter_query

    def query(self, window: ReadWindow) -> EncodedQuery:
        query = EncodedQuery().raw(self.filter_query)
        if window.cursor_field:
            if window.since is not None:
                query.where(window.cursor_field, ">=", window.since)
            if window.until is not None:
                query.where(window.cursor_field, "<=", window.until)
            query.order_by(window.cursor_field)
        # A second sort key keeps page boundaries stable among same-second records.
        return query.order_by("sys_id")

    async def read(self, window: ReadWindow) -> AsyncIterator[pd.DataFrame]:
        display = self.client.settings.display_value
        if display == "true" and window.cursor_field:
            raise FatalError(
                self.system,
                f"display_value 'true' turns the cursor field {window.cursor_field} into text "
                "in the integration user's own date format",
                detail="use display_value 'all' (raw values plus <field>.display columns)",
            )
        fields = self.fields
        if fields and window.cursor_field and window.cursor_field not in fields:
            fields = [*fields, window.cursor_field]
        # With display values "all", each field also brings its <field>.display column.
        columns = None if display == "all" else fields
        pending: list[dict[str, Any]] = []
        async for page in self.client.iter_pages(
            self.object_name,
            query=self.query(window),
            fields=fields,
            page_size=min(window.batch_size, self.client.settings.page_size),
        ):
            pending.extend(page)
            if len(pending) >= window.batch_size:
                yield pd.DataFrame.from_records(pending, columns=columns)
                pending = []
        if pending:
            yield pd.DataFrame.from_records(pending, columns=columns)

    def expected_rows(self) -> int | None:
        return self.client.last_total_count

    def max_cursor(self, batch: pd.DataFrame, cursor_field: str) -> CursorValue | None:
        values = batch[cursor_field].dropna()
        values = values[values != ""]
        return parse_time(str(values.max())) if len(values) else None

    def call_stats(self) -> CallStats | None:
        return self.client.stats

    async def aclose(self) -> None:
        await self.client.aclose()


def _as_text(value: Any) -> str:
    """ServiceNow takes and returns every value as a string."""
    if value is None or (not isinstance(value, list | dict) and pd.isna(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class ServiceNowTableTarget:
    """Writes to one table, upserting by a correlation field (e.g. ``correlation_id``).

    The correlation field holds the source's key, so a rerun finds what an earlier run wrote
    and updates it instead of creating a duplicate. Records whose fields already hold the
    values are left alone (no write, no new ``sys_updated_on``, so no echo).
    """

    system = "servicenow"

    def __init__(self, client: ServiceNowClient, table: str, *, concurrency: int = 4) -> None:
        self.client = client
        self.object_name = table
        self._slots = asyncio.Semaphore(concurrency)

    async def prepare(self, columns: Sequence[Column], key: str) -> None:
        # A table that is missing or hidden by ACLs fails here, before any record is read.
        await self.client.request(
            "GET",
            self.client.table_path(self.object_name),
            params={"sysparm_limit": "1", "sysparm_fields": "sys_id"},
        )

    async def upsert(self, batch: pd.DataFrame, key: str) -> WriteResult:
        rows = [
            {str(name): _as_text(value) for name, value in row.items()}
            for row in batch.to_dict(orient="records")
        ]
        existing = await self.client.find_by(self.object_name, key, (row[key] for row in rows))
        result = WriteResult()

        async def write(row: dict[str, str]) -> None:
            correlation = row[key]
            current = existing.get(correlation)
            async with self._slots:
                try:
                    if current is None:
                        created = await self.client.create(self.object_name, row)
                        result.created.append(correlation)
                        result.assigned_keys[correlation] = str(created["sys_id"])
                        return
                    changes = {n: v for n, v in row.items() if str(current.get(n, "")) != v}
                    result.assigned_keys[correlation] = str(current["sys_id"])
                    if not changes:
                        result.unchanged += 1
                        return
                    await self.client.update(self.object_name, str(current["sys_id"]), changes)
                    result.updated.append(correlation)
                except FatalError as error:
                    result.rejected.append(RejectedRecord(correlation, str(error), dict(row)))

        await asyncio.gather(*(write(row) for row in rows))
        return result

    def call_stats(self) -> CallStats | None:
        return self.client.stats

    async def aclose(self) -> None:
        await self.client.aclose()
