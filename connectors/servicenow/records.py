"""ServiceNow tables as record sources and targets for the engine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from connectors.base.errors import FatalError, NotFoundError, UncertainWriteError
from connectors.base.keyset import ReadTally
from connectors.base.records import (
    Column,
    CursorValue,
    DeleteRule,
    ReadWindow,
    RejectedRecord,
    WriteResult,
)
from connectors.base.stats import CallStats
from connectors.servicenow.client import LOOKUP_CHUNK, ServiceNowClient
from connectors.servicenow.query import EncodedQuery, format_time, parse_time

log = logging.getLogger("syncline.connectors.servicenow")


class ServiceNowTableSource:
    """Reads one table incrementally: ``filter ^ cursor >= since ^ cursor <= until``, sorted
    by cursor and sys_id and paged by keyset (a ``^NQ`` filter gets the window in each group).

    ``key`` is the field that identifies a record (``sys_id`` unless the spec says otherwise).
    """

    system = "servicenow"

    def __init__(
        self,
        client: ServiceNowClient,
        table: str,
        *,
        fields: Sequence[str] | None = None,
        filter_query: str | None = None,
        key: str = "sys_id",
    ) -> None:
        self.client = client
        self.object_name = table
        self.fields = list(fields) if fields else None
        self.filter_query = filter_query
        self.key = key
        self.tally = ReadTally()
        self._filter = EncodedQuery.parse(filter_query)
        if self._filter.ordering:
            raise FatalError(
                self.system,
                f"{table}: the filter sorts by itself ({'^'.join(self._filter.ordering)})",
                detail="remove the ORDERBY from source.filter: reads are sorted by the cursor "
                "field and sys_id, which is what keeps records from being skipped",
            )

    def scope(self, window: ReadWindow, *, scoped: bool = True) -> EncodedQuery:
        """The filter (unless ``scoped`` is false) and the window, without any ordering."""
        query = self._filter.copy() if scoped else EncodedQuery()
        if window.cursor_field:
            if window.since is not None:
                query.where(window.cursor_field, ">=", window.since)
            if window.until is not None:
                query.where(window.cursor_field, "<=", window.until)
        return query

    async def prepare(self, fields: Sequence[str]) -> None:
        missing = await self.client.missing_fields(self.object_name, fields)
        if missing is None:
            log.warning(
                "servicenow: %s shows no record, so its fields cannot be checked: %s",
                self.object_name,
                ", ".join(fields),
            )
            return
        if missing:
            raise FatalError(
                self.system,
                f"{self.object_name} has no field {', '.join(missing)}",
                detail="the instance leaves unknown fields out of its answers without an "
                "error, so the mapping would get empty values; check source.fields (a "
                "dot-walked name must follow reference fields)",
            )

    async def read(self, window: ReadWindow) -> AsyncIterator[pd.DataFrame]:
        display = self.client.settings.display_value
        fields = self.fields
        if fields and window.cursor_field and window.cursor_field not in fields:
            fields = [*fields, window.cursor_field]
        # With display values "all", each field also brings its <field>.display column.
        columns = None if display == "all" else fields
        pending: list[dict[str, Any]] = []
        async for page in self.client.iter_pages(
            self.object_name,
            query=self.scope(window),
            order_by=window.cursor_field,
            fields=fields,
            page_size=min(window.batch_size, self.client.settings.page_size),
            tally=self.tally,
        ):
            pending.extend(page)
            if len(pending) >= window.batch_size:
                yield pd.DataFrame.from_records(pending, columns=columns)
                pending = []
        if pending:
            yield pd.DataFrame.from_records(pending, columns=columns)

    async def read_keys(
        self, window: ReadWindow, *, scoped: bool = True
    ) -> AsyncIterator[list[str]]:
        fields = [self.key, "sys_id"]
        if window.cursor_field:
            fields.append(window.cursor_field)
        pending: list[str] = []
        async for page in self.client.iter_pages(
            self.object_name,
            query=self.scope(window, scoped=scoped),
            order_by=window.cursor_field,
            fields=fields,
            display_value="false",
            tally=self.tally,
        ):
            pending.extend(str(record.get(self.key) or "") for record in page)
            if len(pending) >= window.batch_size:
                yield [key for key in pending if key]
                pending = []
        if pending:
            yield [key for key in pending if key]

    async def in_scope(self, keys: Sequence[str]) -> set[str]:
        wanted = sorted({str(key) for key in keys if key is not None and str(key)})
        found: set[str] = set()
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = wanted[start : start + LOOKUP_CHUNK]
            query = self._filter.copy().where_one_of(self.key, chunk)
            unread = self.tally.unread
            async for page in self.client.iter_pages(
                self.object_name,
                query=query,
                fields=[self.key, "sys_id"],
                display_value="false",
                tally=self.tally,
            ):
                found.update(str(record.get(self.key) or "") for record in page)
            if self.tally.unread > unread:
                # Some of these exist but are hidden from us; which ones cannot be told, and
                # "out of scope" would delete them downstream, so the whole chunk stays in.
                log.warning(
                    "servicenow: %s: %d of %d keys checked are hidden by access rules; "
                    "keeping all %d in scope",
                    self.object_name,
                    self.tally.unread - unread,
                    len(chunk),
                    len(chunk),
                )
                found.update(chunk)
        found.discard("")
        return found & set(wanted)

    async def fetch(self, keys: Sequence[str], *, by: str | None = None) -> pd.DataFrame:
        """The records of ``keys`` as they are now and in scope, read as ``read`` reads them
        (for events: a webhook can arrive late, twice or with part of the record).

        ``by`` looks records up by another field than the key (e.g. the field holding another
        system's key); only exact matches are returned (the instance compares IN without case).
        """
        field = by or self.key
        wanted = sorted({str(key) for key in keys if key is not None and str(key)})
        display = self.client.settings.display_value
        fields = self.fields
        if fields and field not in fields:
            fields = [*fields, field]
        records: list[dict[str, Any]] = []
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            query = self._filter.copy().where_one_of(field, wanted[start : start + LOOKUP_CHUNK])
            async for page in self.client.iter_pages(
                self.object_name, query=query, fields=fields, tally=self.tally
            ):
                records.extend(page)
        chosen = set(wanted)
        records = [record for record in records if _as_text(record.get(field)) in chosen]
        return pd.DataFrame.from_records(records, columns=None if display == "all" else fields)

    def unread(self) -> int:
        return self.tally.unread

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


class _NoKeyField(FatalError):
    """The target table lacks the correlation field: the whole run stops, not one record."""


class ServiceNowTableTarget:
    """Writes to one table, upserting by a correlation field (e.g. ``correlation_id``).

    The correlation field holds the source's key, so a rerun finds what an earlier run wrote
    and updates it instead of creating a duplicate. Records whose fields already hold the
    values are left alone (no write, no new ``sys_updated_on``, so no echo).

    That only works if the field exists: the instance drops a condition on an unknown field,
    so a lookup by a misspelt key matches the whole table, and the records written never
    carry the key, so every run would create them all again. The key is checked against the
    table before anything is written.

    A create whose outcome is unknown (answer lost, 5xx) is settled by looking the record up
    by its key and creating it again only if it is absent, a bounded number of times.
    """

    system = "servicenow"

    def __init__(self, client: ServiceNowClient, table: str, *, concurrency: int = 4) -> None:
        self.client = client
        self.object_name = table
        self._slots = asyncio.Semaphore(concurrency)
        # Correlation fields checked: True when the table has the field, False when the table
        # showed no record to check against (the first create is checked instead).
        self._keys: dict[str, bool] = {}

    async def prepare(self, columns: Sequence[Column], key: str) -> None:
        # A table that is missing or hidden by ACLs fails here, before any record is read.
        await self._check_key(key)

    async def _check_key(self, key: str) -> None:
        if self._keys.get(key):
            return
        missing = await self.client.missing_fields(self.object_name, [key], display_value="false")
        if missing:
            raise _NoKeyField(
                self.system,
                f"{self.object_name} has no field {key} to correlate records by",
                detail="the instance ignores a condition on an unknown field, so every "
                "lookup would match the whole table and every run would create each record "
                "again; nothing was written. Check target.key",
            )
        if missing is None:
            log.warning(
                "servicenow: %s shows no record, so its field %s is checked on the first "
                "record created",
                self.object_name,
                key,
            )
        self._keys[key] = missing is not None

    async def _key_confirmed(self, key: str, created: dict[str, Any]) -> None:
        """After the first create into a table that was empty: the record must carry
        ``key`` (the Table API answers with every field of the record it made)."""
        if key in created:
            self._keys[key] = True
            return
        await self.client.delete(self.object_name, str(created["sys_id"]))
        raise _NoKeyField(
            self.system,
            f"{self.object_name} has no field {key} to correlate records by",
            detail="the record created to check it was deleted again; every run would "
            "otherwise create each record again. Check target.key",
        )

    async def delete(self, keys: Sequence[Any], key: str, rule: DeleteRule) -> list[str]:
        """Delete (hard) or mark (soft: ``rule.soft_column`` set to ``rule.at`` where still
        empty) the records whose correlation field ``key`` holds one of ``keys``."""
        wanted = list(dict.fromkeys(text for text in map(_as_text, keys) if text))
        column = rule.soft_column
        fields = ["sys_id", key] if column is None else ["sys_id", key, column]
        records: list[dict[str, Any]] = []
        async for page in self.client.records_by(self.object_name, key, wanted, fields=fields):
            records.extend(page)
        if records and key not in records[0]:
            # An unknown field's condition is dropped by the instance: every record matched.
            raise FatalError(self.system, f"{self.object_name} has no field {key}")
        if column is not None and records and column not in records[0]:
            raise FatalError(
                self.system,
                f"{self.object_name} has no field {column} to mark deleted records in",
            )
        # Exact matches only: the instance compares IN case-insensitively.
        chosen = set(wanted)
        records = [record for record in records if str(record.get(key, "")) in chosen]
        done: set[str] = set()
        stamp = format_time(rule.at or datetime.now(UTC))

        async def remove(record: dict[str, Any]) -> None:
            async with self._slots:
                if await self.client.delete(self.object_name, str(record["sys_id"])):
                    done.add(str(record[key]))

        async def mark(record: dict[str, Any]) -> None:
            assert column is not None
            if str(record.get(column) or ""):
                return  # marked before: not newly deleted
            async with self._slots:
                try:
                    await self.client.update(
                        self.object_name, str(record["sys_id"]), {column: stamp}
                    )
                except NotFoundError:
                    return  # deleted meanwhile
            done.add(str(record[key]))

        await _all(remove(record) if column is None else mark(record) for record in records)
        return [value for value in wanted if value in done]

    async def read_keys(self, key: str) -> AsyncIterator[list[str]]:
        query = EncodedQuery().where(key, "ISNOTEMPTY")
        async for page in self.client.iter_pages(
            self.object_name, query=query, fields=["sys_id", key], display_value="false"
        ):
            if page and key not in page[0]:
                raise FatalError(self.system, f"{self.object_name} has no field {key}")
            yield [value for value in (str(record.get(key) or "") for record in page) if value]

    async def upsert(self, batch: pd.DataFrame, key: str) -> WriteResult:
        rows = [
            {str(name): _as_text(value) for name, value in row.items()}
            for row in batch.to_dict(orient="records")
        ]
        result = WriteResult()
        if not rows:
            return result
        await self._check_key(key)
        existing = await self.client.find_by(self.object_name, key, (row[key] for row in rows))

        async def write(row: dict[str, str]) -> None:
            correlation = row[key]
            current = existing.get(correlation)
            async with self._slots:
                try:
                    if current is None:
                        created = await self._create(row, key)
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
                except _NoKeyField:
                    raise
                except FatalError as error:
                    result.rejected.append(RejectedRecord(correlation, str(error), dict(row)))

        if not self._keys[key]:
            # The table was empty when checked: the first record created shows whether the
            # key exists, before any other is written.
            await write(rows[0])
            rows = rows[1:]
        await _all(write(row) for row in rows)
        return result

    async def _create(self, row: dict[str, str], key: str) -> dict[str, Any]:
        """Create ``row`` exactly once: when a create's outcome is unknown, look the record
        up by its key and create it again only if it is not there."""
        correlation = row[key]
        attempt = 0
        while True:
            attempt += 1
            try:
                created = await self.client.create(self.object_name, row)
            except UncertainWriteError as error:
                # As many tries as any other request gets; past them the batch fails (and the
                # run with it, cursor unmoved): the rerun looks the record up first.
                if attempt >= self.client.retry.max_attempts:
                    raise
                log.warning(
                    "servicenow: %s; looking %s %s=%s up before creating it again",
                    error,
                    self.object_name,
                    key,
                    correlation,
                )
                await asyncio.sleep(self.client.retry.delay(attempt))
                found = await self.client.find_by(self.object_name, key, [correlation])
                record = found.get(correlation)
                if record is None:
                    continue
                created = record
            if not self._keys.get(key):
                await self._key_confirmed(key, created)
            return created

    def call_stats(self) -> CallStats | None:
        return self.client.stats

    async def aclose(self) -> None:
        await self.client.aclose()


async def _all(work: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run ``work`` concurrently; the first unexpected failure cancels the rest and is raised
    as itself (not wrapped in an exception group), so callers see the connector's error."""
    try:
        async with asyncio.TaskGroup() as group:
            for item in work:
                group.create_task(item)
    except BaseExceptionGroup as failed:
        leaves = _leaves(failed)
        if len(leaves) > 1:
            log.warning(
                "servicenow: %d concurrent writes failed; raising the first: %s",
                len(leaves),
                "; ".join(str(leaf) for leaf in leaves[1:4]),
            )
        raise leaves[0] from leaves[0].__cause__


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            found.extend(_leaves(error))
        else:
            found.append(error)
    return found
