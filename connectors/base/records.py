"""What moves between connectors and the engine: typed columns, read windows, write results.

Batches are ``pandas.DataFrame`` objects (one row per record, one column per field): the engine
maps and writes whole batches, never one record at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import pandas as pd

from connectors.base.http import CallStats

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
    """A system records are read from, in batches, by cursor."""

    system: str
    object_name: str

    def read(self, window: ReadWindow) -> AsyncIterator[pd.DataFrame]: ...

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

    def call_stats(self) -> CallStats | None: ...

    async def aclose(self) -> None: ...
