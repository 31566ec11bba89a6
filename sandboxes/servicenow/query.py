"""The query engine: encoded queries (``encoded_query``) evaluated against the stored
tables, dot-walks through references, and cached results that follow writes record by
record; a keyset page query is answered from its base query's result (``keyset``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from sandboxes.servicenow.api import Record
from sandboxes.servicenow.encoded_query import EncodedQuery, FieldAccess, format_timestamp, parse
from sandboxes.servicenow.keyset import (
    SortedRows,
    can_patch,
    composite_key,
    keyset_start,
    split_keyset,
)
from sandboxes.servicenow.predicates import CompiledQuery, compile_query, order_records
from sandboxes.servicenow.schema import FieldDefinition, TableDefinition
from sandboxes.servicenow.store import TableStore

# Query results kept (with their sort keys, so writes can be followed record by record).
CACHED_RESULTS = 16


class QueryEngine(TableStore):
    """Field access, encoded-query evaluation and the result cache."""

    def _resolve_field(self, table: TableDefinition, path: str) -> FieldAccess | None:
        """A field of ``table`` or a dot-walk through references (``assigned_to.name``)."""
        definition = self._walk(table, path)
        if definition is None:
            return None
        parts = path.split(".")
        if len(parts) == 1:
            name = parts[0]
            return FieldAccess(read=lambda record: record.get(name, ""), kind=definition.kind)
        return FieldAccess(read=self._walker(table, parts), kind=definition.kind)

    def _walk(self, table: TableDefinition, path: str) -> FieldDefinition | None:
        current = table
        parts = path.split(".")
        for index, part in enumerate(parts):
            definition = current.fields.get(part)
            if definition is None:
                return None
            if index == len(parts) - 1:
                return definition
            if definition.reference is None:
                return None
            target = self._table(definition.reference, create=False)
            if target is None:
                return None
            current = target
        return None

    def _walker(
        self, table: TableDefinition, parts: Sequence[str]
    ) -> Callable[[Mapping[str, str]], str]:
        hops: list[tuple[str, str]] = []
        current = table
        for part in parts[:-1]:
            reference = current.fields[part].reference
            assert reference is not None
            hops.append((part, reference))
            target = self._table(reference, create=False)
            assert target is not None
            current = target
        last = parts[-1]

        def read(record: Mapping[str, str]) -> str:
            current_record: Mapping[str, str] | None = record
            for name, target_table in hops:
                assert current_record is not None
                current_record = self._lookup(target_table, current_record.get(name, ""))
                if current_record is None:
                    return ""
            assert current_record is not None
            return current_record.get(last, "")

        return read

    # --- queries --------------------------------------------------------------------------

    def _select(self, table_name: str, query_text: str = "") -> list[Record]:
        """Stored records of ``table_name`` matching an encoded query, in response order."""
        rows, start = self._select_from(table_name, query_text)
        return rows[start:]

    def _select_from(self, table_name: str, query_text: str) -> tuple[list[Record], int]:
        """The records matching an encoded query, in response order, as ``rows[start:]``.

        Results are cached per (table, query) and follow writes, so paging through a large
        table filters and sorts it once. A keyset page query is answered from the cached
        result of its base query (see ``keyset``), from where the keyset position is passed.
        """
        with self._lock:
            table = self._require_table(table_name)
            query = parse(query_text)
            split = split_keyset(query) if self._keyset_reads else None
            if split is not None:
                keyset = self._compile(table, split.keyset)
                # A keyset clause the table cannot evaluate changes the query's meaning;
                # the whole query is then evaluated as it stands.
                if not keyset.ignored_conditions and keyset.matches is not None:
                    rows = self._result(table, split.base)
                    return rows, keyset_start(rows, keyset.matches)
            return self._result(table, query), 0

    def _compile(self, table: TableDefinition, query: EncodedQuery) -> CompiledQuery:
        return compile_query(
            query,
            lambda path: self._resolve_field(table, path),
            now=self.now(),
            invalid_query_returns_no_rows=self.config.invalid_query_returns_no_rows,
        )

    def _result(self, table: TableDefinition, query: EncodedQuery) -> list[Record]:
        clock_key = format_timestamp(self.now()) if query.depends_on_clock else ""
        key = (table.name, query, clock_key)
        cached = self._result_cache.get(key)
        if cached is not None:
            self._result_cache.move_to_end(key)
            if cached.version == self._version:
                return cached.rows
            if cached.patchable:
                root = self._storage_root(table.name)
                changed = self._journal.since(cached.version, self._version, root)
                if changed is not None and cached.worth_patching(changed):
                    cached.patch(changed, lambda sys_id: self._find(table, sys_id), self._version)
                    return cached.rows
        result = self._evaluate(table, query)
        self._result_cache[key] = result
        while len(self._result_cache) > CACHED_RESULTS:
            self._result_cache.popitem(last=False)
        return result.rows

    def _evaluate(self, table: TableDefinition, query: EncodedQuery) -> SortedRows[Record]:
        self.query_evaluations += 1
        compiled = self._compile(table, query)
        rows = self._rows_by_sys_id(table)
        if compiled.matches_nothing:
            selected: list[Record] = []
        elif compiled.matches is None:
            selected = list(rows)
        else:
            matches = compiled.matches
            selected = [record for record in rows if matches(record)]
        if compiled.orderings:
            selected = order_records(selected, compiled.orderings)
        if not can_patch(query):
            return SortedRows(selected, self._version)
        return SortedRows(
            selected,
            self._version,
            key=composite_key(compiled.orderings),
            matches=compiled.matches,
        )
