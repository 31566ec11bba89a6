"""A faithful in-memory simulator of the ServiceNow Table API.

``ServiceNowSandbox`` holds seeded tables in memory and serves
``/api/now[/v1|/v2]/table/{table}[/{sys_id}]`` as a Starlette app, reproducing what a client
of a real instance has to cope with: the ``{"result": ...}`` envelope with every value a
string, reference fields as ``{"link", "value"}``, encoded queries, offset paging with
``Link`` and ``X-Total-Count`` headers, display values, the error body, HTTP Basic auth,
hourly rate-limit headers and injected faults (429 with ``Retry-After``, 500/503, latency).
The tables and fields it defines are in ``servicenow_schema``.

The simulator deliberately shares no code with the ServiceNow connector: a simulator built on
the client's code would share its mistakes.

Choices made where a real instance varies or the documentation is silent:

* Unknown table on GET: 400 ``Invalid table <name>`` with ``detail: null``, as instances
  answer. Any ``cmdb_ci_*`` name is accepted as a CMDB class (an empty one reads as
  ``{"result": []}``). A POST to an unknown table whose name is a valid table name creates the
  table and the record; a real instance would answer 400 until an administrator defines the
  table, and the sandbox stands in for that administrator.
* Class hierarchy: ``cmdb_ci_server`` and its subclasses (``cmdb_ci_linux_server`` ...) live in
  one CMDB store; reading a table returns the records of that class and its subclasses, each
  with its own ``sys_class_name``, and only the fields the read table defines.
* Order without ORDERBY: by ``sys_id``. ORDERBY sorts are stable, so ties keep ``sys_id``
  order and page boundaries are reproducible (a real instance does not promise that; clients
  should ORDERBY a unique field, or page by ``sys_updated_on`` with an overlap).
* String comparison is case-insensitive, like the instance database's collation.
* HTTP writes to a defined table ignore fields the table does not have, as ServiceNow does;
  ``ServiceNowSandbox.insert`` adds such fields to the table instead (it plays the admin).
* Incidents get ServiceNow's out-of-box business rules: an ``INC`` number, priority derived
  from impact and urgency (a client writing ``priority`` alone sees it replaced), and
  ``resolved_at``/``closed_at``/``active`` following ``state``.
* A reference may be written as a sys_id or as the display value of the referenced record
  (``"assignment_group": "Service Desk"``); an object with a ``value`` key is accepted too.
* The fault counter counts authenticated API requests; when both ``rate_limit_every`` and
  ``server_error_every`` fall on the same request, the 429 wins.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import operator
import random
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

import orjson
import pydantic
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncline.sandbox import seed as seed_data
from syncline.sandbox.encoded_query import (
    EncodedQueryError,
    FieldAccess,
    FieldKind,
    compile_query,
    format_timestamp,
    normalise_timestamp,
    order_records,
    parse,
)
from syncline.sandbox.servicenow_schema import (
    CMDB_CI_FIELDS,
    CMDB_ROOT,
    STRING,
    SYSTEM_FIELDS,
    FieldDefinition,
    TableDefinition,
    defined_tables,
)

Record = dict[str, str]
JsonValue = Any

_logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 10_000
_TABLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,79}")
_SYS_ID = re.compile(r"[0-9a-f]{32}")
_API_PATH = re.compile(r"/api/now(?:/v[12])?/table/(?P<table>[^/]+)(?:/(?P<sys_id>[^/]+))?/?")
_JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


# --- configuration and statistics ---------------------------------------------------------


class ServiceNowSandboxConfig(pydantic.BaseModel):
    """How the sandbox instance is seeded and how it authenticates and limits callers."""

    cmdb_ci_server: int = pydantic.Field(default=50_000, ge=0)
    incident: int = pydantic.Field(default=500, ge=0)
    sys_user: int = pydantic.Field(default=1_000, ge=0)
    seed: int = 42
    username: str = "admin"
    # The sandbox's published demo credentials, not secrets.
    password: str = "sandbox"  # noqa: S105
    bearer_token: str = "sandbox-token"  # noqa: S105
    instance_url: str = "https://sandbox.service-now.com"
    rate_limit_per_hour: int | None = pydantic.Field(default=None, ge=1)
    invalid_query_returns_no_rows: bool = False


class FaultConfig(pydantic.BaseModel):
    """Faults injected into API requests; change the fields at run time."""

    model_config = pydantic.ConfigDict(validate_assignment=True)

    rate_limit_every: int | None = pydantic.Field(default=None, ge=1)
    retry_after_seconds: float = pydantic.Field(default=1.0, ge=0)
    server_error_every: int | None = pydantic.Field(default=None, ge=1)
    server_error_status: Literal[500, 503] = 500
    latency_ms: float = pydantic.Field(default=0.0, ge=0)


class SandboxStats(pydantic.BaseModel):
    """Counts of API requests the sandbox has answered."""

    requests_total: int = 0
    responses_by_status: dict[int, int] = pydantic.Field(default_factory=dict)
    rate_limited: int = 0


# --- errors and responses -----------------------------------------------------------------


class TableApiError(Exception):
    """An error answered with ServiceNow's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        detail: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {message}: {detail}")
        self.status = status
        self.message = message
        self.detail = detail
        self.headers = dict(headers or {})

    def response(self) -> Response:
        body = {"error": {"message": self.message, "detail": self.detail}, "status": "failure"}
        headers = {"Content-Type": _JSON_CONTENT_TYPE} | self.headers
        return Response(orjson.dumps(body), status_code=self.status, headers=headers)


def _not_found() -> TableApiError:
    return TableApiError(
        404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
    )


def _invalid_table(table: str) -> TableApiError:
    return TableApiError(400, f"Invalid table {table}", None)


def _json_response(
    payload: JsonValue, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(payload),
        status_code=status,
        headers={"Content-Type": _JSON_CONTENT_TYPE} | dict(headers or {}),
    )


# --- clock --------------------------------------------------------------------------------


class _Clock:
    """Real UTC time until frozen by ``set``; ``advance`` moves a frozen clock (and freezes a
    running one at the advanced time)."""

    def __init__(self, frozen_at: datetime | None) -> None:
        self._frozen_at = _as_utc(frozen_at) if frozen_at is not None else None

    def now(self) -> datetime:
        moment = self._frozen_at if self._frozen_at is not None else datetime.now(UTC)
        return moment.replace(microsecond=0)

    def set(self, moment: datetime) -> None:
        self._frozen_at = _as_utc(moment)

    def advance(self, seconds: float) -> None:
        base = self._frozen_at if self._frozen_at is not None else datetime.now(UTC)
        self._frozen_at = base + timedelta(seconds=seconds)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- storage ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Store:
    """Records of one storage root (a table, or the whole CMDB class family) by sys_id."""

    records: dict[str, Record] = field(default_factory=dict)
    by_sys_id_version: int = -1
    by_sys_id: list[Record] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _ListOptions:
    display_value: Literal["false", "true", "all"]
    exclude_reference_link: bool
    fields: tuple[str, ...] | None


# Renders one stored value for the response; None means the stored string as it is.
_Renderer = Callable[[str], JsonValue] | None


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() == "true"


def _display_mode(value: str | None) -> Literal["false", "true", "all"]:
    lowered = (value or "").strip().lower()
    if lowered == "true":
        return "true"
    if lowered == "all":
        return "all"
    return "false"


def _integer_param(value: str | None) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _stored_text(value: JsonValue) -> str:
    """Table API writes take JSON values; the instance stores every one as a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping) and "value" in value:
        return _stored_text(value["value"])
    return orjson.dumps(value).decode()


def _canonical(definition: FieldDefinition, text: str) -> str:
    """Date-times are stored as ``YYYY-MM-DD HH:MM:SS`` whatever form they were written in
    (``2024-01-02T03:04:05`` too), so they sort and compare as text."""
    if definition.kind is FieldKind.DATETIME and text:
        try:
            return normalise_timestamp(text)
        except EncodedQueryError:
            return text
    return text


def _retry_after_header(seconds: float) -> str:
    """Integer seconds, rounded up; under half a second becomes "0"."""
    if seconds < 0.5:
        return "0"
    return str(math.ceil(seconds))


class ServiceNowSandbox:
    """An in-memory ServiceNow instance: seeded tables, a Python API for tests and admin
    routes, and ``app``, the Starlette app serving the Table API."""

    def __init__(
        self, config: ServiceNowSandboxConfig | None = None, *, now: datetime | None = None
    ) -> None:
        self.config = config or ServiceNowSandboxConfig()
        self.faults = FaultConfig()
        self.stats = SandboxStats()
        self._clock = _Clock(now)
        self._lock = threading.RLock()
        self._tables = defined_tables()
        self._stores: dict[str, _Store] = {}
        self._version = 0
        self._result_cache: OrderedDict[tuple[str, str, str], tuple[int, list[Record]]] = (
            OrderedDict()
        )
        self._ids = random.Random(f"servicenow-runtime:{self.config.seed}")
        self._rate_limit_rule_id = seed_data.new_sys_id(
            random.Random(f"rate-limit-rule:{self.config.seed}")
        )
        self._fault_counter = 0
        self._hour_window_start = 0
        self._hour_window_count = 0
        self._next_incident_number = 10_001
        self._seed()
        self.app = Starlette(
            routes=[Route("/api/now/{path:path}", self._handle, methods=_ALL_METHODS)]
        )

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

    # --- seeding --------------------------------------------------------------------------

    def _seed(self) -> None:
        sizes = seed_data.SeedSizes(
            cmdb_ci_server=self.config.cmdb_ci_server,
            incident=self.config.incident,
            sys_user=self.config.sys_user,
        )
        generated = seed_data.generate(sizes, seed=self.config.seed, now=self.now())
        for table, rows in generated.items():
            store = self._store(self._storage_root(table))
            store.records.update((row["sys_id"], row) for row in rows)
        self._next_incident_number = 10_001 + len(generated["incident"])
        self._version += 1

    # --- tables ---------------------------------------------------------------------------

    def _storage_root(self, table: str) -> str:
        return CMDB_ROOT if self._is_cmdb(table) else table

    @staticmethod
    def _is_cmdb(table: str) -> bool:
        return table == CMDB_ROOT or table.startswith(CMDB_ROOT + "_")

    def _store(self, root: str) -> _Store:
        store = self._stores.get(root)
        if store is None:
            store = self._stores[root] = _Store()
        return store

    def _table(self, name: str, *, create: bool) -> TableDefinition | None:
        """The table's definition. Any ``cmdb_ci_*`` name is a CMDB class; other unknown
        names exist only once something has been created in them (``create``)."""
        table = self._tables.get(name)
        if table is not None:
            return table
        if not _TABLE_NAME.fullmatch(name):
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
            raise _invalid_table(name)
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
        self._version += 1
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
        if store.by_sys_id_version != self._version:
            store.by_sys_id = [store.records[key] for key in sorted(store.records)]
            store.by_sys_id_version = self._version
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
        """Stored records of ``table_name`` matching an encoded query, in response order.

        Results are cached per (table, query) until the next write, so paging through a large
        table filters and sorts it once.
        """
        with self._lock:
            table = self._require_table(table_name)
            query = parse(query_text)
            clock_key = format_timestamp(self.now()) if query.depends_on_clock else ""
            key = (table.name, query_text, clock_key)
            cached = self._result_cache.get(key)
            if cached is not None and cached[0] == self._version:
                self._result_cache.move_to_end(key)
                return cached[1]
            compiled = compile_query(
                query,
                lambda path: self._resolve_field(table, path),
                now=self.now(),
                invalid_query_returns_no_rows=self.config.invalid_query_returns_no_rows,
            )
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
            self._result_cache[key] = (self._version, selected)
            while len(self._result_cache) > 32:
                self._result_cache.popitem(last=False)
            return selected

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
            del self._store(self._storage_root(table)).records[sys_id]
            self._version += 1
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
            pool = self._change_pool()
            root = self._storage_root(definition.name)
            text_fields = tuple(
                name
                for name, field_definition in definition.fields.items()
                if field_definition.kind is FieldKind.STRING and not name.startswith("sys_")
            )
            for sys_id in chosen:
                record = self._find(definition, sys_id)
                assert record is not None
                change = seed_data.realistic_change(root, record, rng, pool, text_fields)
                self._modify(
                    definition,
                    record,
                    change.fields,
                    user=change.user,
                    suppress_auto_sys_fields=False,
                )
            return chosen

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
        requested_id = fields.get("sys_id", "").lower()
        if _SYS_ID.fullmatch(requested_id) and requested_id not in store.records:
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
            self._apply_incident_rules(record, set(fields), inserting=True, user=user)
        store.records[sys_id] = record
        self._version += 1
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
        for name, value in changes.items():
            if name in ("sys_id", "sys_class_name"):
                continue
            record[name] = value
        if self._storage_root(table.name) == "incident":
            self._apply_incident_rules(record, set(changes), inserting=False, user=user)
        if not suppress_auto_sys_fields:
            record["sys_updated_on"] = format_timestamp(self.now())
            record["sys_updated_by"] = user
            record["sys_mod_count"] = str(int(record.get("sys_mod_count") or "0") + 1)
        self._version += 1

    def _apply_incident_rules(
        self, record: Record, written: set[str], *, inserting: bool, user: str
    ) -> None:
        """ServiceNow's out-of-box incident behaviour: numbering, defaults, the priority
        lookup from impact and urgency, and state-driven timestamps."""
        now_text = format_timestamp(self.now())
        if inserting:
            if not record.get("number"):
                record["number"] = f"INC{self._next_incident_number:07d}"
                self._next_incident_number += 1
            record["state"] = record.get("state") or "1"
            record["impact"] = record.get("impact") or "3"
            record["urgency"] = record.get("urgency") or "3"
            record["opened_at"] = record.get("opened_at") or now_text
            # opened_by is whoever created the record: the API user when it is a user.
            record["opened_by"] = record.get("opened_by") or self._user_sys_id(user)
        if inserting or {"impact", "urgency"} & written:
            derived = seed_data.PRIORITY_BY_IMPACT_URGENCY.get(
                (record.get("impact", ""), record.get("urgency", ""))
            )
            if derived is not None:
                record["priority"] = derived
        state = record.get("state", "")
        if inserting or "state" in written:
            record["incident_state"] = state
            if state in ("6", "7") and not record.get("resolved_at"):
                record["resolved_at"] = now_text
            if state == "7" and not record.get("closed_at"):
                record["closed_at"] = now_text
            record["active"] = "false" if state in ("6", "7", "8") else "true"

    def _user_sys_id(self, user_name: str) -> str:
        for sys_id, user in self._store("sys_user").records.items():
            if user.get("user_name") == user_name:
                return sys_id
        return ""

    def _change_pool(self) -> seed_data.ChangePool:
        def ids(table: str, *, active_only: bool = False) -> tuple[str, ...]:
            records = self._store(table).records
            return tuple(
                sorted(
                    sys_id
                    for sys_id, record in records.items()
                    if not active_only or record.get("active") == "true"
                )
            )

        return seed_data.ChangePool(
            users=ids("sys_user", active_only=True),
            groups=ids("sys_user_group"),
            departments=ids("cmn_department"),
        )

    # --- HTTP: request pipeline -----------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        with self._lock:
            self.stats.requests_total += 1
        try:
            response = await self._answer(request)
        except TableApiError as error:
            response = error.response()
        except Exception:
            # Answer like an instance would rather than dropping the connection; the
            # traceback is logged so a sandbox defect does not pass for an injected fault.
            _logger.exception("sandbox failed to answer %s %s", request.method, request.url)
            response = TableApiError(
                500, "Internal Server Error", "The sandbox failed to process the request"
            ).response()
        status = response.status_code
        with self._lock:
            by_status = self.stats.responses_by_status
            by_status[status] = by_status.get(status, 0) + 1
            if status == 429:
                self.stats.rate_limited += 1
        return response

    async def _answer(self, request: Request) -> Response:
        if self.faults.latency_ms > 0:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        user = self._authenticate(request)
        with self._lock:
            limit_headers = self._count_against_hourly_limit()
        try:
            with self._lock:
                self._inject_faults()
            body = await request.body() if request.method in ("POST", "PUT", "PATCH") else b""
            with self._lock:
                response = self._route(request, body, user)
        except TableApiError as error:
            error.headers = limit_headers | error.headers
            raise
        for name, value in limit_headers.items():
            response.headers[name] = value
        return response

    def _authenticate(self, request: Request) -> str:
        """HTTP Basic with the configured user, or the configured OAuth bearer token."""
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            username, separator, password = decoded.partition(":")
            if (
                separator
                and secrets.compare_digest(username, self.config.username)
                and secrets.compare_digest(password, self.config.password)
            ):
                return username
        elif scheme.lower() == "bearer" and secrets.compare_digest(
            credentials.strip(), self.config.bearer_token
        ):
            return self.config.username
        raise TableApiError(
            401,
            "User Not Authenticated",
            "Required to provide Auth information",
            {"WWW-Authenticate": 'BASIC realm="Service-now"'},
        )

    def _count_against_hourly_limit(self) -> dict[str, str]:
        """Rate-limit rule headers, counted per clock hour like ``sys_rate_limit_rules``."""
        limit = self.config.rate_limit_per_hour
        if limit is None:
            return {}
        now = int(self.now().timestamp())
        window_start = now - now % 3600
        if window_start != self._hour_window_start:
            self._hour_window_start = window_start
            self._hour_window_count = 0
        self._hour_window_count += 1
        reset = window_start + 3600
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Rule": self._rate_limit_rule_id,
        }
        if self._hour_window_count > limit:
            raise TableApiError(
                429,
                "Too Many Requests",
                f"Rate limit exceeded: {limit} requests per hour",
                headers | {"Retry-After": str(max(1, reset - now))},
            )
        return headers

    def _inject_faults(self) -> None:
        faults = self.faults
        self._fault_counter += 1
        if faults.rate_limit_every and self._fault_counter % faults.rate_limit_every == 0:
            raise TableApiError(
                429,
                "Too Many Requests",
                "Rate limit exceeded",
                {"Retry-After": _retry_after_header(faults.retry_after_seconds)},
            )
        if faults.server_error_every and self._fault_counter % faults.server_error_every == 0:
            if faults.server_error_status == 503:
                raise TableApiError(
                    503, "Service Unavailable", "The instance is temporarily unavailable"
                )
            raise TableApiError(
                500, "Internal Server Error", "The instance failed to process the request"
            )

    def _route(self, request: Request, body: bytes, user: str) -> Response:
        match = _API_PATH.fullmatch(request.url.path)
        if match is None:
            raise TableApiError(400, "Requested URI does not represent any resource", None)
        _check_accept(request)
        table, sys_id, method = match["table"], match["sys_id"], request.method
        if sys_id is None:
            if method == "GET":
                return self._http_list(request, table)
            if method == "POST":
                return self._http_create(request, table, _json_body(request, body), user)
        else:
            if method == "GET":
                return self._http_read(request, table, sys_id)
            if method in ("PUT", "PATCH"):
                return self._http_update(request, table, sys_id, _json_body(request, body), user)
            if method == "DELETE":
                return self._http_delete(table, sys_id)
        raise TableApiError(405, "Method not Supported", f"{method} method not supported for API")

    # --- HTTP: operations -----------------------------------------------------------------

    def _http_list(self, request: Request, table_name: str) -> Response:
        params = request.query_params
        offset = _integer_param(params.get("sysparm_offset")) or 0
        if offset < 0:
            raise TableApiError(400, f"offset is {offset}", "Negative offset is not supported")
        limit = _integer_param(params.get("sysparm_limit"))
        if limit is None or limit <= 0:
            limit = DEFAULT_LIMIT
        selected = self._select(table_name, params.get("sysparm_query", ""))
        table = self._require_table(table_name)
        render = self._projection(table, _options(request)).render
        result = [render(record) for record in selected[offset : offset + limit]]
        total = len(selected)
        headers: dict[str, str] = {}
        count_wanted = not _flag(params.get("sysparm_no_count"))
        if count_wanted:
            headers["X-Total-Count"] = str(total)
        if not _flag(params.get("sysparm_suppress_pagination_header")):
            link = _link_header(request, offset, limit, total, include_last=count_wanted)
            if link is not None:
                headers["Link"] = link
        return _json_response({"result": result}, headers=headers)

    def _http_read(self, request: Request, table_name: str, sys_id: str) -> Response:
        table = self._require_table(table_name)
        record = self._find(table, sys_id)
        if record is None:
            raise _not_found()
        return _json_response({"result": self._projection(table, _options(request)).render(record)})

    def _http_create(
        self, request: Request, table_name: str, payload: Mapping[str, JsonValue], user: str
    ) -> Response:
        table = self._require_table(table_name, create=True)
        params = request.query_params
        fields = self._incoming(table, payload, _flag(params.get("sysparm_input_display_value")))
        record = self._create(
            table,
            fields,
            user=user,
            suppress_auto_sys_fields=_flag(params.get("sysparm_suppress_auto_sys_field")),
        )
        location = f"{self.config.instance_url}/api/now/table/{table_name}/{record['sys_id']}"
        return _json_response(
            {"result": self._projection(table, _options(request)).render(record)},
            status=201,
            headers={"Location": location},
        )

    def _http_update(
        self,
        request: Request,
        table_name: str,
        sys_id: str,
        payload: Mapping[str, JsonValue],
        user: str,
    ) -> Response:
        table = self._require_table(table_name)
        record = self._find(table, sys_id)
        if record is None:
            raise _not_found()
        params = request.query_params
        changes = self._incoming(table, payload, _flag(params.get("sysparm_input_display_value")))
        self._modify(
            table,
            record,
            changes,
            user=user,
            suppress_auto_sys_fields=_flag(params.get("sysparm_suppress_auto_sys_field")),
        )
        return _json_response({"result": self._projection(table, _options(request)).render(record)})

    def _http_delete(self, table_name: str, sys_id: str) -> Response:
        self._require_table(table_name)
        if not self.delete(table_name, sys_id):
            raise _not_found()
        return Response(status_code=204)

    def _incoming(
        self,
        table: TableDefinition,
        payload: Mapping[str, JsonValue],
        input_display_value: bool,
    ) -> dict[str, str]:
        """The stored form of a write body: unknown fields of a defined table are dropped,
        references given by display value become sys_ids, and with
        ``sysparm_input_display_value`` choice labels become their values."""
        fields: dict[str, str] = {}
        for name, raw in payload.items():
            definition = table.fields.get(name)
            if definition is None:
                if table.declared or not _TABLE_NAME.fullmatch(name):
                    continue
                definition = self._add_field(table, name)
            text = _stored_text(raw)
            if definition.reference is not None and text:
                text = self._reference_value(definition.reference, text)
            elif input_display_value and definition.choices is not None:
                by_label = {label.casefold(): value for value, label in definition.choices.items()}
                text = by_label.get(text.casefold(), text)
            fields[name] = _canonical(definition, text)
        return fields

    def _stored_fields(
        self, table: TableDefinition, fields: Mapping[str, JsonValue]
    ) -> dict[str, str]:
        return {
            name: _canonical(table.fields.get(name, STRING), _stored_text(value))
            for name, value in fields.items()
        }

    def _reference_value(self, target_table: str, text: str) -> str:
        if self._lookup(target_table, text) is not None:
            return text
        target = self._table(target_table, create=False)
        if target is None:
            return text
        wanted = text.casefold()
        for record in self._rows_by_sys_id(target):
            if record.get(target.display_field, "").casefold() == wanted:
                return record["sys_id"]
        return text

    # --- HTTP: rendering ------------------------------------------------------------------

    def _projection(self, table: TableDefinition, options: _ListOptions) -> _Projection:
        names = options.fields if options.fields is not None else tuple(table.fields)
        columns: list[_Column] = []
        for name in names:
            definition = self._walk(table, name)
            if definition is None:
                continue
            read = None if "." not in name else self._walker(table, name.split("."))
            columns.append((name, read, self._renderer(definition, options)))
        return _Projection.of(columns)

    def _renderer(self, definition: FieldDefinition, options: _ListOptions) -> _Renderer:
        mode = options.display_value
        with_link = not options.exclude_reference_link
        target = definition.reference
        if target is not None:
            link_base = f"{self.config.instance_url}/api/now/table/{target}/"
            if mode == "false":
                if not with_link:
                    return None

                # Many records point at the same user, group or location; one shared
                # object per referenced sys_id keeps a 10,000-record page cheap to build.
                rendered_references: dict[str, JsonValue] = {"": ""}

                def reference_value(value: str) -> JsonValue:
                    rendered = rendered_references.get(value)
                    if rendered is None:
                        rendered = {"link": link_base + value, "value": value}
                        rendered_references[value] = rendered
                    return rendered

                return reference_value

            def reference_display(value: str) -> JsonValue:
                display = self._display_of(target, value)
                if mode == "true":
                    if not value or not with_link:
                        return display
                    return {"display_value": display, "link": link_base + value}
                rendered: dict[str, str] = {"display_value": display}
                if value and with_link:
                    rendered["link"] = link_base + value
                rendered["value"] = value
                return rendered

            return reference_display
        if mode == "false":
            return None
        display = _display_formatter(definition)
        if mode == "true":
            return display
        return lambda value: {"display_value": display(value), "value": value}


_Column = tuple[str, Callable[[Record], str] | None, _Renderer]


@dataclass(frozen=True, slots=True)
class _Projection:
    """The response columns of a request and how to render each one.

    Serving 50,000 records quickly matters (bulk syncs page through whole CMDB tables). When
    every column is a plain field of the stored record, a record renders without a Python
    loop over its columns: the stored dict itself when it has exactly those fields and none
    needs re-rendering, otherwise a C-level copy or ``itemgetter`` pick, with only the
    re-rendered columns (references, display values) replaced.
    """

    columns: tuple[_Column, ...]
    names: tuple[str, ...]
    plain_keys: frozenset[str] | None
    pick: Callable[[Record], tuple[str, ...]] | None
    rerendered: tuple[tuple[str, Callable[[str], JsonValue]], ...]

    @classmethod
    def of(cls, columns: Sequence[_Column]) -> _Projection:
        names = tuple(name for name, _, _ in columns)
        plain = all(read is None for _, read, _ in columns)
        rerendered = tuple((name, render) for name, _, render in columns if render is not None)
        keys = frozenset(names) if plain else None
        pick: Callable[[Record], tuple[str, ...]] | None = None
        if plain and len(names) >= 2:
            pick = operator.itemgetter(*names)
        return cls(tuple(columns), names, keys, pick, rerendered)

    def render(self, record: Record) -> Mapping[str, JsonValue]:
        """The record as the response shows it. May be the stored dict itself when nothing
        needs re-rendering: callers serialise it at once, under the sandbox lock."""
        keys = self.plain_keys
        if keys is not None:
            rendered: dict[str, JsonValue] | None = None
            if record.keys() == keys:
                if not self.rerendered:
                    return record
                rendered = dict(record)
            elif self.pick is not None and keys <= record.keys():
                rendered = dict(zip(self.names, self.pick(record), strict=True))
            if rendered is not None:
                for name, rerender in self.rerendered:
                    rendered[name] = rerender(record[name])
                return rendered
        rendered = {}
        for name, read, render in self.columns:
            value = record.get(name, "") if read is None else read(record)
            rendered[name] = value if render is None else render(value)
        return rendered


def _display_formatter(definition: FieldDefinition) -> Callable[[str], str]:
    """Display values for a UTC user with the default formats: choice labels, grouped
    integers ("16,384"), two-decimal numbers; everything else as stored."""
    choices = definition.choices
    if choices is not None:
        return lambda value: choices.get(value, value)
    if definition.kind is FieldKind.INTEGER:
        return lambda value: f"{int(value):,}" if value.lstrip("-").isdigit() else value
    if definition.kind is FieldKind.DECIMAL:

        def decimal(value: str) -> str:
            try:
                return f"{float(value):,.2f}"
            except ValueError:
                return value

        return decimal
    return lambda value: value


def _options(request: Request) -> _ListOptions:
    params = request.query_params
    fields_param = params.get("sysparm_fields")
    fields: tuple[str, ...] | None = None
    if fields_param is not None and fields_param.strip():
        fields = tuple(
            dict.fromkeys(name.strip() for name in fields_param.split(",") if name.strip())
        )
    return _ListOptions(
        display_value=_display_mode(params.get("sysparm_display_value")),
        exclude_reference_link=_flag(params.get("sysparm_exclude_reference_link")),
        fields=fields,
    )


def _check_accept(request: Request) -> None:
    accept = request.headers.get("accept", "").lower()
    if accept and not any(kind in accept for kind in ("application/json", "*/*", "application/*")):
        raise TableApiError(
            406, "Not Acceptable", f"Cannot produce {accept}; the sandbox answers application/json"
        )


def _json_body(request: Request, body: bytes) -> Mapping[str, JsonValue]:
    """The write body as a JSON object. Only the first record of a JSON array is used, as
    the Table API does."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise TableApiError(
            415,
            "Unsupported Media Type",
            f"Content-Type {content_type or '(none)'} is not supported; send application/json",
        )
    if not body.strip():
        raise TableApiError(400, "Exception while reading request", "No request body")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise TableApiError(
            400, "Exception while reading request", f"The payload is not valid JSON: {error}"
        ) from None
    if isinstance(payload, list):
        payload = payload[0] if payload else None
    if not isinstance(payload, dict):
        raise TableApiError(
            400, "Exception while reading request", "The payload must be a JSON object"
        )
    return payload


def _link_header(
    request: Request, offset: int, limit: int, total: int, *, include_last: bool
) -> str | None:
    """RFC 8288 ``Link`` with first/prev/next/last, each the request URL with
    ``sysparm_offset`` changed; absent when everything fits on one page."""
    if offset == 0 and total <= limit:
        return None
    url = request.url
    base = f"{url.scheme}://{url.netloc}{url.path}"
    kept = [
        (key, value)
        for key, value in request.query_params.multi_items()
        if key not in ("sysparm_offset", "sysparm_limit")
    ]

    def page(page_offset: int) -> str:
        items = [*kept, ("sysparm_offset", str(page_offset)), ("sysparm_limit", str(limit))]
        query = "&".join(f"{quote(key, safe='')}={quote(value, safe=',')}" for key, value in items)
        return f"{base}?{query}"

    links = [(page(0), "first")]
    if offset > 0:
        links.append((page(max(offset - limit, 0)), "prev"))
    if offset + limit < total:
        links.append((page(offset + limit), "next"))
    if include_last:
        links.append((page((total - 1) // limit * limit if total else 0), "last"))
    return ",".join(f'<{target}>;rel="{relation}"' for target, relation in links)
