"""The instance's records as the instance itself writes them: the Python API tests and admin
routes use (insert, update, delete, realistic changes), and the create/modify path the Table
API shares, with its automatic ``sys_*`` fields, the incident business rules, the journal
fields (``journal``) and the committed writes told to the after business rules
(``commits``)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sandboxes.servicenow import seed as seed_data
from sandboxes.servicenow.api import SYS_ID, JsonValue, Record, canonical, stored_text
from sandboxes.servicenow.commits import CommitListener, Operation, RecordCommit, changed_fields
from sandboxes.servicenow.encoded_query import FieldKind, format_timestamp
from sandboxes.servicenow.incident_rules import apply_incident_rules
from sandboxes.servicenow.journal import JOURNAL_FIELDS, JOURNAL_TABLE, journal_row, split_journal
from sandboxes.servicenow.query import QueryEngine
from sandboxes.servicenow.schema import STRING, TableDefinition


class RecordStore(QueryEngine):
    """Records written the way the instance writes them."""

    # Told of every committed write to a table it wants (see ``commits``); None: nobody.
    commit_listener: CommitListener | None = None

    # --- Python API -----------------------------------------------------------------------

    def insert(
        self, table: str, fields: Mapping[str, str], *, user: str = "system"
    ) -> dict[str, Any]:
        """Create a record as if made on the instance; fields the table lacks are added to
        it. Fills sys_id (unless given), the sys_* audit fields and the table's defaults."""
        with self._lock:
            definition = self._require_table(table, create=True)
            for name in fields:
                self._add_field(definition, name)
            record = self._create(
                definition,
                self._stored_fields(definition, fields),
                user=user,
                suppress_auto_sys_fields=False,
            )
            return dict(record)

    def update(
        self, table: str, sys_id: str, fields: Mapping[str, str], *, user: str = "system"
    ) -> dict[str, Any]:
        """Change a record as if edited on the instance: sys_updated_on becomes ``now()``
        and sys_mod_count goes up. Raises KeyError when there is no such record."""
        with self._lock:
            definition = self._require_table(table)
            record = self._find(definition, sys_id)
            if record is None:
                raise KeyError(f"no {table} record {sys_id}")
            for name in fields:
                self._add_field(definition, name)
            self._modify(
                definition,
                record,
                self._stored_fields(definition, fields),
                user=user,
                suppress_auto_sys_fields=False,
            )
            return dict(record)

    def delete(self, table: str, sys_id: str) -> bool:
        """Remove a record; False when there was none."""
        with self._lock:
            definition = self._require_table(table)
            record = self._find(definition, sys_id)
            if record is None:
                return False
            root = self._storage_root(table)
            del self._store(root).records[sys_id]
            self._changed(root, sys_id)
            self._announce(definition, "delete", record, (), {})
            return True

    def get(self, table: str, sys_id: str) -> dict[str, Any] | None:
        with self._lock:
            definition = self._table(table, create=False)
            if definition is None:
                return None
            record = self._find(definition, sys_id)
            return dict(record) if record is not None else None

    def records(self, table: str) -> list[dict[str, Any]]:
        """Copies of the stored (raw) records, ordered by sys_id."""
        with self._lock:
            definition = self._table(table, create=False)
            if definition is None:
                return []
            return [dict(record) for record in self._rows_by_sys_id(definition)]

    def count(self, table: str) -> int:
        with self._lock:
            definition = self._table(table, create=False)
            if definition is None:
                return 0
            if definition.parent is None:
                return len(self._store(self._storage_root(table)).records)
            return len(self._rows_by_sys_id(definition))

    def touch(self, table: str, count: int, *, seed: int = 0) -> list[str]:
        """Change ``count`` distinct records chosen at random (deterministic for ``seed``) the
        way day-to-day activity would, all in the current second; returns their sys_ids."""
        with self._lock:
            definition = self._require_table(table)
            candidates = [record["sys_id"] for record in self._rows_by_sys_id(definition)]
            if count > len(candidates):
                raise ValueError(f"cannot touch {count} records: {table} has {len(candidates)}")
            rng = random.Random(f"touch:{self.config.seed}:{table}:{seed}")
            chosen = rng.sample(candidates, count)
            for sys_id in chosen:
                self.change_record(table, sys_id, rng)
            return chosen

    def change_record(self, table: str, sys_id: str, rng: random.Random) -> bool:
        """Make one realistic change to a record (discovery finding a patched OS or more
        memory on a CI, an incident moving on); False when there is no such record."""
        with self._lock:
            definition = self._require_table(table)
            record = self._find(definition, sys_id)
            if record is None:
                return False
            text_fields = tuple(
                name
                for name, field_definition in definition.fields.items()
                if field_definition.kind is FieldKind.STRING
                and not name.startswith("sys_")
                and name not in JOURNAL_FIELDS
            )
            root = self._storage_root(definition.name)
            change = seed_data.realistic_change(root, record, rng, self._change_pool(), text_fields)
            self._modify(
                definition, record, change.fields, user=change.user, suppress_auto_sys_fields=False
            )
            return True

    def sys_ids(self, table: str) -> list[str]:
        """The sys_ids of the table's records, in order."""
        with self._lock:
            definition = self._table(table, create=False)
            if definition is None:
                return []
            return [record["sys_id"] for record in self._rows_by_sys_id(definition)]

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the sandbox lock: API requests wait until the writes made inside are all
        done, so a reader sees all of them or none."""
        with self._lock:
            yield

    # --- churn ----------------------------------------------------------------------------
    # --- writes ---------------------------------------------------------------------------

    def _new_sys_id(self) -> str:
        root_records = [store.records for store in self._stores.values()]
        while True:
            candidate = seed_data.new_sys_id(self._ids)
            if not any(candidate in records for records in root_records):
                return candidate

    def _create(
        self,
        table: TableDefinition,
        fields: Mapping[str, str],
        *,
        user: str,
        suppress_auto_sys_fields: bool,
    ) -> Record:
        store = self._store(self._storage_root(table.name))
        fields, notes = split_journal(self._storage_root(table.name), fields)
        requested_id = fields.get("sys_id", "").lower()
        if SYS_ID.fullmatch(requested_id) and requested_id not in store.records:
            sys_id = requested_id
        else:
            sys_id = self._new_sys_id()
        now_text = format_timestamp(self.now())
        record: Record = {name: "" for name in table.fields}
        record.update(fields)
        record["sys_id"] = sys_id
        automatic = {
            "sys_created_on": now_text,
            "sys_created_by": user,
            "sys_updated_on": now_text,
            "sys_updated_by": user,
            "sys_mod_count": "0",
        }
        for name, value in automatic.items():
            if not (suppress_auto_sys_fields and fields.get(name)):
                record[name] = value
        if "sys_class_name" in table.fields:
            requested_class = fields.get("sys_class_name", "")
            record["sys_class_name"] = (
                requested_class
                if requested_class and self._is_a(requested_class, table.name)
                else table.name
            )
        if self._storage_root(table.name) == "incident":
            apply_incident_rules(
                record,
                set(fields),
                inserting=True,
                now_text=now_text,
                next_number=self._next_incident,
                caller_sys_id=lambda: self._user_sys_id(user),
            )
        store.records[sys_id] = record
        self._changed(self._storage_root(table.name), sys_id)
        self._append_journal(table, record, notes, user=user, at=now_text)
        self._announce(table, "insert", record, changed_fields(None, record, notes), notes)
        return record

    def _modify(
        self,
        table: TableDefinition,
        record: Record,
        changes: Mapping[str, str],
        *,
        user: str,
        suppress_auto_sys_fields: bool,
    ) -> None:
        changes, notes = split_journal(self._storage_root(table.name), changes)
        before = dict(record) if self._listened(table) else None
        for name, value in changes.items():
            if name in ("sys_id", "sys_class_name"):
                continue
            record[name] = value
        if self._storage_root(table.name) == "incident":
            apply_incident_rules(
                record,
                set(changes),
                inserting=False,
                now_text=format_timestamp(self.now()),
                next_number=self._next_incident,
                caller_sys_id=lambda: self._user_sys_id(user),
            )
        if not suppress_auto_sys_fields:
            record["sys_updated_on"] = format_timestamp(self.now())
            record["sys_updated_by"] = user
            record["sys_mod_count"] = str(int(record.get("sys_mod_count") or "0") + 1)
        self._changed(self._storage_root(table.name), record["sys_id"])
        self._append_journal(table, record, notes, user=user, at=format_timestamp(self.now()))
        if before is not None:
            self._announce(table, "update", record, changed_fields(before, record, notes), notes)

    def _append_journal(
        self,
        table: TableDefinition,
        record: Record,
        notes: Mapping[str, str],
        *,
        user: str,
        at: str,
    ) -> None:
        """One ``sys_journal_field`` row per journal field written (see ``journal``)."""
        if not notes:
            return
        journal = self._store(JOURNAL_TABLE)
        for element, value in notes.items():
            row = journal_row(
                sys_id=self._new_sys_id(),
                table=record.get("sys_class_name") or table.name,
                element=element,
                element_id=record["sys_id"],
                value=value,
                at=at,
                user=user,
            )
            journal.records[row["sys_id"]] = row
            self._changed(JOURNAL_TABLE, row["sys_id"])

    def _listened(self, table: TableDefinition) -> bool:
        listener = self.commit_listener
        return listener is not None and listener.wants(table.name)

    def _announce(
        self,
        table: TableDefinition,
        operation: Operation,
        record: Record,
        changed: tuple[str, ...],
        notes: Mapping[str, str],
    ) -> None:
        """Tell the after business rules of a committed write, if any listens."""
        listener = self.commit_listener
        if listener is None or not listener.wants(table.name):
            return
        listener.committed(RecordCommit(table.name, operation, dict(record), changed, notes))

    def _next_incident(self) -> str:
        number = f"INC{self._next_incident_number:07d}"
        self._next_incident_number += 1
        return number

    def _user_sys_id(self, user_name: str) -> str:
        for sys_id, user in self._store("sys_user").records.items():
            if user.get("user_name") == user_name:
                return sys_id
        return ""

    def _change_pool(self) -> seed_data.ChangePool:
        """Users, groups and departments a change may point at; rebuilt only after those
        tables change, since churn asks for it on every change."""
        tables = ("sys_user", "sys_user_group", "cmn_department")
        versions = tuple(self._store(table).version for table in tables)
        if self._pool_cache is not None and self._pool_cache[0] == versions:
            return self._pool_cache[1]

        def ids(table: str, *, active_only: bool = False) -> tuple[str, ...]:
            records = self._store(table).records
            return tuple(
                sorted(
                    sys_id
                    for sys_id, record in records.items()
                    if not active_only or record.get("active") == "true"
                )
            )

        pool = seed_data.ChangePool(
            users=ids("sys_user", active_only=True),
            groups=ids("sys_user_group"),
            departments=ids("cmn_department"),
        )
        self._pool_cache = (versions, pool)
        return pool

    # --- HTTP: request pipeline -----------------------------------------------------------

    def _stored_fields(
        self, table: TableDefinition, fields: Mapping[str, JsonValue]
    ) -> dict[str, str]:
        return {
            name: canonical(table.fields.get(name, STRING), stored_text(value))
            for name, value in fields.items()
        }
