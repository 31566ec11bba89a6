"""The instance's tables: the data dictionary, records by storage root, the clock they are
written by, and the saved state (``save``/``load``) that lets several processes (``make up``,
the demo) share one world.

``TableStore`` is the bottom layer of ``ServiceNowSandbox``; the query engine
(``query.QueryEngine``), the record API (``records.RecordStore``) and the Table API routes
(``table_api.TableApi``) stack on it. Writes are journaled by record (``keyset.ChangeJournal``)
so cached query results follow them.
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from sandboxes.core.clock import InstanceClock
from sandboxes.servicenow import seed as seed_data
from sandboxes.servicenow.api import TABLE_NAME, Record, invalid_table
from sandboxes.servicenow.config import ServiceNowSandboxConfig
from sandboxes.servicenow.encoded_query import FieldKind
from sandboxes.servicenow.journal import JOURNAL_FIELDS, JOURNAL_TABLE
from sandboxes.servicenow.keyset import ChangeJournal, SortedRows
from sandboxes.servicenow.schema import (
    CMDB_CI_FIELDS,
    CMDB_ROOT,
    STRING,
    SYSTEM_FIELDS,
    FieldDefinition,
    TableDefinition,
    defined_tables,
)

# The layout of a saved state; ``load`` refuses any other.
STATE_FORMAT = 1


@dataclass(slots=True)
class Store:
    """Records of one storage root (a table, or the whole CMDB class family) by sys_id."""

    records: dict[str, Record] = field(default_factory=dict)
    version: int = 0
    by_sys_id_version: int = -1
    by_sys_id: list[Record] = field(default_factory=list)


class TableStore:
    """Tables, records and the clock of one simulated instance."""

    def __init__(self, config: ServiceNowSandboxConfig, now: datetime | None) -> None:
        self.config = config
        self._clock = InstanceClock(now, offset_seconds=config.clock_offset_seconds)
        self._lock = threading.RLock()
        self._tables = defined_tables()
        self._stores: dict[str, Store] = {}
        self._version = 0
        self._journal = ChangeJournal()
        self._result_cache: OrderedDict[Hashable, SortedRows[Record]] = OrderedDict()
        # How many times a query result was computed from the whole table (not patched).
        self.query_evaluations = 0
        self._keyset_reads = True
        self._ids = random.Random(f"servicenow-runtime:{config.seed}")
        self._pool_cache: tuple[tuple[int, ...], seed_data.ChangePool] | None = None
        self._next_incident_number = 10_001
        self._seed()

    # --- clock ----------------------------------------------------------------------------

    def now(self) -> datetime:
        """The sandbox clock: UTC, whole seconds."""
        return self._clock.now()

    def set_now(self, when: datetime) -> None:
        """Freeze the clock at ``when`` (naive datetimes are taken as UTC)."""
        self._clock.set(when)

    def advance(self, seconds: float) -> None:
        """Move the clock forward; a running clock becomes frozen at the new time."""
        self._clock.advance(seconds)

    def set_clock_offset(self, seconds: float) -> None:
        """Let the clock run at real time plus ``seconds`` (negative: behind real time), as
        an instance whose clock is off does; a frozen clock starts running."""
        self._clock.run(seconds)

    @property
    def clock_offset_seconds(self) -> float:
        return self._clock.offset_seconds

    @property
    def clock_frozen(self) -> bool:
        return self._clock.frozen

    # --- seeding --------------------------------------------------------------------------

    def _seed(self) -> None:
        sizes = seed_data.SeedSizes(
            cmdb_ci_server=self.config.cmdb_ci_server,
            incident=self.config.incident,
            sys_user=self.config.sys_user,
        )
        generated = seed_data.generate(sizes, seed=self.config.seed, now=self.now())
        for row in generated["incident"]:
            # Journal fields read empty; their text lives in sys_journal_field.
            row.update(dict.fromkeys(JOURNAL_FIELDS, ""))
        for table, rows in generated.items():
            store = self._store(self._storage_root(table))
            store.records.update((row["sys_id"], row) for row in rows)
        self._next_incident_number = 10_001 + len(generated["incident"])
        self._changed(None, None)

    def _changed(self, root: str | None, sys_id: str | None) -> None:
        """Note a write: to one record, to every record of a storage root (sys_id None) or
        to everything (root None). Cached query results follow through the journal."""
        self._version += 1
        self._journal.append(self._version, root, sys_id)
        for store in self._stores.values() if root is None else (self._store(root),):
            store.version += 1

    # --- tables ---------------------------------------------------------------------------

    def _storage_root(self, table: str) -> str:
        return CMDB_ROOT if self._is_cmdb(table) else table

    @staticmethod
    def _is_cmdb(table: str) -> bool:
        return table == CMDB_ROOT or table.startswith(CMDB_ROOT + "_")

    def _store(self, root: str) -> Store:
        store = self._stores.get(root)
        if store is None:
            store = self._stores[root] = Store()
        return store

    def _table(self, name: str, *, create: bool) -> TableDefinition | None:
        """The table's definition. Any ``cmdb_ci_*`` name is a CMDB class; other unknown
        names exist only once something has been created in them (``create``)."""
        table = self._tables.get(name)
        if table is not None:
            return table
        if not TABLE_NAME.fullmatch(name):
            return None
        if self._is_cmdb(name):
            table = TableDefinition(
                name, dict(CMDB_CI_FIELDS), parent=CMDB_ROOT, declared=False, label=name
            )
        elif create:
            table = TableDefinition(
                name,
                dict(SYSTEM_FIELDS) | {"sys_class_name": STRING},
                display_field="sys_id",
                declared=False,
            )
        else:
            return None
        self._tables[name] = table
        return table

    def _require_table(self, name: str, *, create: bool = False) -> TableDefinition:
        table = self._table(name, create=create)
        if table is None:
            raise invalid_table(name)
        return table

    def _add_field(self, table: TableDefinition, name: str) -> FieldDefinition:
        """Define ``name`` as a string column of ``table`` if it is new, and give the
        table's existing records an empty value for it, as adding a column does."""
        definition = table.fields.get(name)
        if definition is not None:
            return definition
        definition = table.fields[name] = STRING
        belongs = self._belongs(table)
        for record in self._store(self._storage_root(table.name)).records.values():
            if belongs is None or belongs(record):
                record.setdefault(name, "")
        self._changed(self._storage_root(table.name), None)
        return definition

    def _is_a(self, class_name: str, table: str) -> bool:
        current: str | None = class_name
        while current is not None:
            if current == table:
                return True
            definition = self._tables.get(current)
            current = (
                definition.parent
                if definition is not None
                else (CMDB_ROOT if self._is_cmdb(current) and current != CMDB_ROOT else None)
            )
        return False

    def _belongs(self, table: TableDefinition) -> Callable[[Record], bool] | None:
        """Whether a stored record is visible through ``table``; None when all are."""
        if table.parent is None:
            return None
        classes: dict[str, bool] = {}

        def belongs(record: Record) -> bool:
            class_name = record.get("sys_class_name", "")
            visible = classes.get(class_name)
            if visible is None:
                visible = classes[class_name] = self._is_a(class_name, table.name)
            return visible

        return belongs

    def _rows_by_sys_id(self, table: TableDefinition) -> list[Record]:
        store = self._store(self._storage_root(table.name))
        if store.by_sys_id_version != store.version:
            store.by_sys_id = [store.records[key] for key in sorted(store.records)]
            store.by_sys_id_version = store.version
        belongs = self._belongs(table)
        if belongs is None:
            return store.by_sys_id
        return [record for record in store.by_sys_id if belongs(record)]

    def _find(self, table: TableDefinition, sys_id: str) -> Record | None:
        record = self._store(self._storage_root(table.name)).records.get(sys_id)
        if record is None:
            return None
        belongs = self._belongs(table)
        if belongs is not None and not belongs(record):
            return None
        return record

    def _lookup(self, table_name: str, sys_id: str) -> Record | None:
        if not sys_id:
            return None
        table = self._table(table_name, create=False)
        if table is None:
            return None
        return self._find(table, sys_id)

    def _display_of(self, table_name: str, sys_id: str) -> str:
        record = self._lookup(table_name, sys_id)
        if record is None:
            return ""
        table = self._tables.get(table_name)
        display_field = table.display_field if table is not None else "name"
        return record.get(display_field, "")

    # --- field access for queries ---------------------------------------------------------

    # --- saved state ----------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write every table's definition and records to ``path`` (JSON), so another process
        can ``load`` the same world (the journal, ``sys_journal_field``, with it). The clock,
        faults, counters and outbound REST receivers are not saved."""
        with self._lock:
            state = {
                "format": STATE_FORMAT,
                "tables": {name: _table_state(table) for name, table in self._tables.items()},
                "stores": {root: store.records for root, store in self._stores.items()},
                "next_incident_number": self._next_incident_number,
                "ids": self._ids.getstate(),
            }
            data = orjson.dumps(state)
        Path(path).write_bytes(data)

    def load(self, path: str | Path) -> None:
        """Replace every table and record with those saved in ``path`` by ``save``."""
        state = orjson.loads(Path(path).read_bytes())
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"{path}: not a saved ServiceNow sandbox (format {STATE_FORMAT})")
        tables = {name: _table_from_state(saved) for name, saved in state["tables"].items()}
        stores = {root: Store(records=records) for root, records in state["stores"].items()}
        version, internal, gauss = state["ids"]
        _add_journal(tables, stores)
        with self._lock:
            self._tables = tables
            self._stores = stores
            self._next_incident_number = int(state["next_incident_number"])
            self._ids.setstate((version, tuple(internal), gauss))
            self._result_cache.clear()
            self._pool_cache = None
            self._changed(None, None)


def _add_journal(tables: dict[str, TableDefinition], stores: dict[str, Store]) -> None:
    """Give a state saved before journal fields existed the journal table and fields."""
    defined = defined_tables()
    tables.setdefault(JOURNAL_TABLE, defined[JOURNAL_TABLE])
    incident = tables.get("incident")
    if incident is None or all(name in incident.fields for name in JOURNAL_FIELDS):
        return
    for name in JOURNAL_FIELDS:
        incident.fields.setdefault(name, defined["incident"].fields[name])
    for record in stores.get("incident", Store()).records.values():
        for name in JOURNAL_FIELDS:
            record.setdefault(name, "")


def _table_state(table: TableDefinition) -> dict[str, Any]:
    return {
        "name": table.name,
        "fields": {
            name: [str(definition.kind), definition.reference, definition.choices]
            for name, definition in table.fields.items()
        },
        "display_field": table.display_field,
        "parent": table.parent,
        "declared": table.declared,
        "label": table.label,
    }


def _table_from_state(saved: dict[str, Any]) -> TableDefinition:
    # One shared definition per distinct field, as ``defined_tables`` builds them.
    shared: dict[tuple[str, str | None, tuple[tuple[str, str], ...] | None], FieldDefinition] = {}
    fields: dict[str, FieldDefinition] = {}
    for name, (kind, reference, choices) in saved["fields"].items():
        key = (kind, reference, tuple(choices.items()) if choices is not None else None)
        definition = shared.get(key)
        if definition is None:
            definition = shared[key] = FieldDefinition(FieldKind(kind), reference, choices)
        fields[name] = definition
    return TableDefinition(
        saved["name"],
        fields,
        display_field=saved["display_field"],
        parent=saved["parent"],
        declared=saved["declared"],
        label=saved["label"],
    )
