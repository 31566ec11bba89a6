"""A record's journal (``work_notes``, ``comments``): read from ``sys_journal_field``, appended
through the record.

An instance keeps journal entries as rows of ``sys_journal_field`` (``element_id`` = the
record's sys_id, ``element`` = the journal field, ``value`` = the text) and shows the field
itself empty through the Table API, so entries are read from that table, oldest first
(``sys_created_on``, then ``sys_id`` among entries of one second). An entry is appended by
writing the field on the record: one PATCH, one new row. That PATCH is not idempotent (sent
twice, it appends twice): a lost answer is an ``UncertainWriteError`` for the caller to settle
by reading the journal again, never a blind resend.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel

from connectors.servicenow.client import ServiceNowClient
from connectors.servicenow.models import SingleResult
from connectors.servicenow.query import EncodedQuery, parse_time

JOURNAL_TABLE = "sys_journal_field"
JOURNAL_FIELDS = ("sys_id", "element_id", "sys_created_on", "sys_created_by", "value")
LOOKUP_CHUNK = 100


class JournalEntry(BaseModel):
    """One row of ``sys_journal_field``."""

    sys_id: str
    record: str  # element_id: the sys_id of the record it belongs to
    created_on: datetime
    created_by: str
    text: str


class ServiceNowJournal:
    """The ``element`` journal (``work_notes`` by default) of the records of ``table``."""

    def __init__(self, client: ServiceNowClient, table: str, element: str = "work_notes") -> None:
        self.client = client
        self.table = table
        self.element = element

    async def entries(self, sys_ids: Sequence[str]) -> dict[str, list[JournalEntry]]:
        """Every entry of each record in ``sys_ids``, oldest first (records without any are
        absent)."""
        wanted = sorted({sys_id for sys_id in sys_ids if sys_id})
        found: dict[str, list[JournalEntry]] = {}
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            query = (
                EncodedQuery()
                .where("name", "=", self.table)
                .where("element", "=", self.element)
                .where("element_id", "IN", wanted[start : start + LOOKUP_CHUNK])
            )
            async for page in self.client.iter_pages(
                JOURNAL_TABLE,
                query=query,
                order_by="sys_created_on",
                fields=JOURNAL_FIELDS,
                display_value="false",
            ):
                for row in page:
                    entry = JournalEntry(
                        sys_id=str(row["sys_id"]),
                        record=str(row["element_id"]),
                        created_on=parse_time(str(row["sys_created_on"])),
                        created_by=str(row.get("sys_created_by") or ""),
                        text=str(row.get("value") or ""),
                    )
                    found.setdefault(entry.record, []).append(entry)
        for entries in found.values():
            entries.sort(key=lambda entry: (entry.created_on, entry.sys_id))
        return found

    async def append(self, sys_id: str, text: str) -> None:
        """Append one entry to the record's journal (one PATCH of the journal field)."""
        await self.client.request_model(
            "PATCH",
            self.client.table_path(self.table, sys_id),
            SingleResult,
            json={self.element: text},
            idempotent=False,
        )
