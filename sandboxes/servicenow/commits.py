"""What a committed write tells the instance's *after* business rules: the table, the
operation, the record and which of its fields changed (``GlideElement.changes()``).

``RecordStore`` hands each committed insert, update and delete to its ``commit_listener``
(the outbound REST messages, ``outbound``) when the listener wants the table, so writes to
tables nobody listens to cost nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from sandboxes.servicenow.api import Record

Operation = Literal["insert", "update", "delete"]


@dataclass(frozen=True, slots=True)
class RecordCommit:
    """One committed write. ``record`` is a copy as written (for a delete: as it was);
    ``notes`` are the journal entries the write appended, by field."""

    table: str
    operation: Operation
    record: Record
    changed_fields: tuple[str, ...]
    notes: Mapping[str, str]


class CommitListener(Protocol):
    def wants(self, table: str) -> bool: ...

    def committed(self, commit: RecordCommit) -> None: ...


def changed_fields(
    before: Mapping[str, str] | None, after: Mapping[str, str], notes: Mapping[str, str]
) -> tuple[str, ...]:
    """The fields whose value the write changed, in the record's order, with the journal
    fields written to (``changes()`` is true for a journal field given a new entry). On an
    insert (``before`` None) every field given a value has changed."""
    previous = before or {}
    return tuple(
        name for name, value in after.items() if name in notes or value != previous.get(name, "")
    )
