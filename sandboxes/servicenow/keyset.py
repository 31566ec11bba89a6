"""Fast keyset page reads: a cached sorted result, kept current, and bisection.

A client paging by keyset sends the same filter for every page, followed by the position of
the last row it has seen (with ``^NQ`` groups, each group repeats the keyset clauses):

    <filter>^F>=T^F>T^ORsys_id>I^ORDERBYF^ORDERBYsys_id     (keyset on a cursor field F)
    <filter>^sys_id>I^ORDERBYsys_id                          (keyset on sys_id alone)

Each page is a new query text, so caching results by text would filter and sort the whole
table once per page. ``split_keyset`` separates the keyset clauses from the rest (the base:
the filter and the orderings). The base result is cached sorted; the keyset clauses say
``(F, sys_id) > (T, I)``, which is false and then true along that order, so the page starts
at the first row where they hold, found by bisection with the compiled clauses themselves.

A cached result stays usable across writes: ``ChangeJournal`` records which records each
write touched, and ``SortedRows.patch`` moves, adds or drops just those. That keeps paging
fast while records change underneath (churn). Results whose order or filter depends on other
records (dot-walked fields) or that sort descending are rebuilt instead.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from sandboxes.servicenow.encoded_query import (
    Condition,
    EncodedQuery,
    FieldAccess,
    Operator,
    Ordering,
)
from sandboxes.servicenow.predicates import sort_key

Record = Mapping[str, str]
RecordT = TypeVar("RecordT", bound=Mapping[str, str])
Clause = tuple[Condition, ...]
SortKey = tuple[float | str, ...]

_SYS_ID = "sys_id"
# Patching moves rows one at a time; past this share of the result, rebuilding is cheaper.
_PATCH_LIMIT_SHARE = 0.1


@dataclass(frozen=True, slots=True)
class KeysetSplit:
    """``base``: the query without its keyset clauses. ``keyset``: one group holding them."""

    base: EncodedQuery
    keyset: EncodedQuery


def split_keyset(query: EncodedQuery) -> KeysetSplit | None:
    """The base and keyset parts of a keyset page query, or None when ``query`` is not one:
    every group must end with the same keyset clauses and the order must be the keyset's
    (``ORDERBY F^ORDERBY sys_id``, or by sys_id alone, which is also the default order)."""
    if not query.groups:
        return None
    tails = [_keyset_tail(group) for group in query.groups]
    first = tails[0]
    if first is None or any(tail != first for tail in tails):
        return None
    cursor_field, clauses = first
    ascending_sys_id = Ordering(_SYS_ID, descending=False)
    if cursor_field is None:
        if query.orderings not in ((), (ascending_sys_id,)):
            return None
    elif query.orderings != (Ordering(cursor_field, descending=False), ascending_sys_id):
        return None
    base_groups = tuple(group[: len(group) - len(clauses)] for group in query.groups)
    # A group left with no conditions matches everything, so the whole base does.
    if any(not group for group in base_groups):
        base_groups = ()
    return KeysetSplit(
        base=EncodedQuery(groups=base_groups, orderings=query.orderings),
        keyset=EncodedQuery(groups=(clauses,), orderings=()),
    )


def _keyset_tail(group: Sequence[Clause]) -> tuple[str | None, tuple[Clause, ...]] | None:
    if group and len(group[-1]) == 1 and _is_sys_id_after(group[-1][0]):
        return None, tuple(group[-1:])
    if len(group) < 2 or len(group[-2]) != 1 or len(group[-1]) != 2:
        return None
    (at_least,), (after, sys_id_after) = group[-2], group[-1]
    field = at_least.field
    if (
        field == _SYS_ID
        or "." in field
        or at_least.operator is not Operator.GREATER_OR_EQUAL
        or after.operator is not Operator.GREATER
        or after.field != field
        or after.value != at_least.value
        or not _is_sys_id_after(sys_id_after)
    ):
        return None
    return field, tuple(group[-2:])


def _is_sys_id_after(condition: Condition) -> bool:
    return condition.field == _SYS_ID and condition.operator is Operator.GREATER


def keyset_start(rows: Sequence[Record], after: Callable[[Record], bool]) -> int:
    """The index of the first row past the keyset position in a keyset-ordered result."""
    return bisect_left(rows, True, key=after)


def can_patch(query: EncodedQuery) -> bool:
    """Whether a result of ``query`` can follow writes record by record: it must depend only
    on each record's own fields (no dot-walks) and sort ascending."""
    fields = [condition.field for condition in query.conditions]
    fields.extend(ordering.field for ordering in query.orderings)
    return all("." not in name for name in fields) and not any(
        ordering.descending for ordering in query.orderings
    )


def composite_key(orderings: Sequence[tuple[FieldAccess, bool]]) -> Callable[[Record], SortKey]:
    """The ORDERBY values then the sys_id: the order ``order_records`` gives when it stably
    sorts records that arrive in sys_id order, with every ordering ascending."""
    parts = [(access.read, access.kind) for access, _ in orderings]

    def key(record: Record) -> SortKey:
        return (*(sort_key(kind, read(record)) for read, kind in parts), record[_SYS_ID])

    return key


class ChangeJournal:
    """Which records the recent writes touched, by the version each write produced.

    An entry's sys_id is None when a write touched every record of its storage root (a
    column added); its root is None when it touched everything (seeding).
    """

    def __init__(self, size: int = 8192) -> None:
        self._entries: deque[tuple[int, str | None, str | None]] = deque(maxlen=size)

    def append(self, version: int, root: str | None, sys_id: str | None) -> None:
        self._entries.append((version, root, sys_id))

    def since(self, version: int, current: int, root: str) -> set[str] | None:
        """sys_ids of ``root`` written after ``version``; None when the journal cannot
        say (it no longer reaches back that far, or a write touched everything)."""
        if version == current:
            return set()
        entries = self._entries
        if not entries or entries[0][0] > version + 1:
            return None
        changed: set[str] = set()
        for entry_version, entry_root, sys_id in reversed(entries):
            if entry_version <= version:
                break
            if entry_root is None or (entry_root == root and sys_id is None):
                return None
            if entry_root == root and sys_id is not None:
                changed.add(sys_id)
        return changed


class SortedRows(Generic[RecordT]):
    """A query's matching records in response order (``rows``, given sorted), as of
    ``version``.

    With a ``key`` (giving that order) the result can be patched after writes: each row's key
    as of the last patch is remembered, so a changed record is found by bisection even
    though the stored dict has already changed in place. The keys are taken at the first
    patch, so results that are never patched cost nothing extra.
    """

    def __init__(
        self,
        rows: list[RecordT],
        version: int,
        *,
        key: Callable[[Record], SortKey] | None = None,
        matches: Callable[[Record], bool] | None = None,
    ) -> None:
        self.rows = rows
        self.version = version
        self._key = key
        self._matches = matches
        self._key_of: dict[str, SortKey] | None = None

    @property
    def patchable(self) -> bool:
        return self._key is not None

    def worth_patching(self, changes: Collection[str]) -> bool:
        return self.patchable and len(changes) <= max(64, len(self.rows) * _PATCH_LIMIT_SHARE)

    def patch(
        self, changed: Iterable[str], lookup: Callable[[str], RecordT | None], version: int
    ) -> None:
        """Bring the result up to ``version``: ``lookup`` gives each changed record as it is
        now, or None when it is gone (or no longer belongs to the table)."""
        key, matches, rows = self._key, self._matches, self.rows
        if key is None:
            raise ValueError("this result cannot be patched")
        key_of = self._key_of
        if key_of is None:
            # The rows are still as sorted, but changed records may hold new values already.
            changed = set(changed)
            key_of = self._key_of = {
                record[_SYS_ID]: key(record) for record in rows if record[_SYS_ID] not in changed
            }
            rows[:] = [record for record in rows if record[_SYS_ID] not in changed]

        def stored_key(record: Record) -> SortKey:
            return key_of[record[_SYS_ID]]

        for sys_id in sorted(changed):
            old_key = key_of.get(sys_id)
            if old_key is not None:
                index = bisect_left(rows, old_key, key=stored_key)
                if index >= len(rows) or rows[index][_SYS_ID] != sys_id:
                    raise AssertionError(f"sorted result lost track of {sys_id}")
                del rows[index]
                del key_of[sys_id]
            record = lookup(sys_id)
            if record is None or (matches is not None and not matches(record)):
                continue
            new_key = key(record)
            rows.insert(bisect_left(rows, new_key, key=stored_key), record)
            key_of[sys_id] = new_key
        self.version = version
