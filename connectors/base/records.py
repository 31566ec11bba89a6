"""What moves between connectors and the engine: typed columns, read windows, write results.

Batches are ``pandas.DataFrame`` objects (one row per record, one column per field): the engine
maps and writes whole batches, never one record at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from connectors.base.stats import CallStats

CursorValue = datetime | int
"""A position in a source's change stream: an update timestamp or a monotonic number."""


class ColumnType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    DATE = "date"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType = ColumnType.STRING
    nullable: bool = True


@dataclass(frozen=True, slots=True)
class ReadWindow:
    """Which changes to read: ``since <= cursor_field <= until`` (either end may be open)."""

    cursor_field: str | None
    since: CursorValue | None = None
    until: CursorValue | None = None
    batch_size: int = 10_000


@dataclass(frozen=True, slots=True)
class DeleteRule:
    """How a target removes a record: delete the row, or mark it (``soft_column`` = ``at``)."""

    soft_column: str | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A record the target refused; it goes to the dead-letter table, never into silence."""

    key: str
    reason: str
    payload: dict[str, Any]


@dataclass(slots=True)
class WriteResult:
    """The target's confirmation of one batch, by target key."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    rejected: list[RejectedRecord] = field(default_factory=list)
    # Target keys assigned to records, for targets that choose their own keys (e.g. sys_id).
    assigned_keys: dict[str, str] = field(default_factory=dict)


class RecordSource(Protocol):
    """A system records are read from, in batches, by cursor.

    A read must not skip: every record that matches the window and the native filter for the
    whole read is delivered at least once (duplicates are fine, the engine dedupes by key),
    whatever changes while it runs. Rows the system counts but will not deliver (e.g. hidden
    by access rules, still missing after a re-read) are counted by ``unread``, never dropped
    in silence.
    """

    system: str
    object_name: str

    async def prepare(self, fields: Sequence[str]) -> None:
        """Check, before anything is read, that ``fields`` exist in the source object.

        Raises ``FatalError`` naming every unknown field (sources that silently drop unknown
        fields would otherwise hand the mapping NULLs).
        """
        ...

    def read(self, window: ReadWindow) -> AsyncIterator[pd.DataFrame]: ...

    def read_keys(self, window: ReadWindow, *, scoped: bool = True) -> AsyncIterator[list[str]]:
        """The keys (as text) of the records in ``window``; key-only, so cheap.

        ``scoped=False`` leaves the native filter out: keys changed in the window that the
        scoped read did not return have left the integration's scope.
        """
        ...

    async def in_scope(self, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` exist now and match the native filter (any change time)."""
        ...

    def unread(self) -> int:
        """Rows the source counted but did not deliver, after a re-read, in reads so far."""
        ...

    def max_cursor(self, batch: pd.DataFrame, cursor_field: str) -> CursorValue | None:
        """The newest cursor value in ``batch``, in the cursor's own type."""
        ...

    def expected_rows(self) -> int | None:
        """How many records the read under way will yield, when the system says so."""
        ...

    def call_stats(self) -> CallStats | None:
        """Requests made so far, for connectors that speak HTTP."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class FetchingSource(RecordSource, Protocol):
    """A source that can also re-read records by key (events, two-way runs)."""

    async def fetch(self, keys: Sequence[str], *, by: str | None = None) -> pd.DataFrame:
        """The records whose key (or field ``by``) is one of ``keys``, as they are now and in
        scope; exact matches only, absent ones left out."""
        ...


class RecordTarget(Protocol):
    """A system records are written to, idempotently, by key."""

    system: str
    object_name: str

    async def prepare(self, columns: Sequence[Column], key: str) -> None:
        """Make the target ready for ``columns`` keyed by ``key`` (e.g. create the table)."""
        ...

    async def upsert(self, batch: pd.DataFrame, key: str) -> WriteResult:
        """Create or update every row of ``batch`` by ``key``; unchanged rows are not touched."""
        ...

    async def delete(self, keys: Sequence[Any], key: str, rule: DeleteRule) -> list[str]:
        """Delete (or mark, for a soft rule) the records whose ``key`` is one of ``keys``.

        Returns the keys (as text) that were present and are now deleted or newly marked; keys
        that are absent, or already marked, are not returned. Idempotent.
        """
        ...

    def read_keys(self, key: str) -> AsyncIterator[list[str]]:
        """Every key (as text) the target holds, in batches; soft-deleted rows included."""
        ...

    def call_stats(self) -> CallStats | None: ...

    async def aclose(self) -> None: ...
