"""A faithful in-memory simulator of the ServiceNow Table API.

``ServiceNowSandbox`` holds seeded tables in memory and serves
``/api/now[/v1|/v2]/table/{table}[/{sys_id}]`` as a Starlette app, reproducing what a client
of a real instance has to cope with: the ``{"result": ...}`` envelope with every value a
string, reference fields as ``{"link", "value"}``, encoded queries, offset paging with
``Link`` and ``X-Total-Count`` headers, display values, the error body, HTTP Basic auth,
hourly rate-limit headers, a per-second rate limit (``rate_limit``), a clock that may be
off, records changing while they are read (``churn``) and injected faults (``faults``: 429
with ``Retry-After``, 500/503, latency, garbage bodies, glitched and ACL-filtered pages,
foreign ``Link`` URLs; writes failing before or after the commit, ``write_faults``). The
tables and fields it defines are in ``servicenow_schema``; keyset page reads are served as
``keyset`` describes.

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
* The fault counter counts authenticated API requests (list requests separately for the
  page faults), from when ``faults`` was last replaced. When several faults fall on one
  request, the 429 wins over the 5xx and the 5xx over a garbage body.
* Garbage bodies: an HTML login page stands for a proxy or SSO page answering in front of
  the instance, so that request is not carried out; a truncated or empty JSON body stands
  for a connection lost while answering, so that request (a write too) is carried out.
* Records hidden by ``hidden_fraction`` stay hidden from every API read (lists and
  single-record GET) but can still be written, as with a read-only ACL; the Python API and
  admin routes see everything.
* The clock runs at real time plus ``clock_offset_seconds``, or stands frozen; the time it
  shows is what ``sys_created_on``/``sys_updated_on`` receive and what relative dates
  (``gs.daysAgo``) and the hourly rate limit count from.
* The per-second limit is checked after authentication and the hourly rule, before any
  injected fault; requests it refuses reach no fault counter. Creates through the API are
  counted per value of ``correlation_field`` and table (``creates_by_correlation``), so a
  test can see a client create the same record twice.
* Writes are journaled by record, so a cached query result is patched rather than
  recomputed after records change; results are identical to evaluating the query afresh.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import random
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pydantic
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from syncline.sandbox import seed as seed_data
from syncline.sandbox.churn import Churn, ChurnConfig, ChurnReport
from syncline.sandbox.clock import InstanceClock
from syncline.sandbox.encoded_query import (
    CompiledQuery,
    EncodedQuery,
    EncodedQueryError,
    FieldAccess,
    FieldKind,
    compile_query,
    format_timestamp,
    normalise_timestamp,
    order_records,
    parse,
)
from syncline.sandbox.faults import (
    FaultConfig,
    FaultCounters,
    GarbageKind,
    falls_on,
    garbled,
    glitched_page,
    is_hidden,
    link_origin,
    login_page,
)
from syncline.sandbox.keyset import (
    ChangeJournal,
    SortedRows,
    can_patch,
    composite_key,
    keyset_start,
    split_keyset,
)
from syncline.sandbox.rate_limit import PerSecondLimiter
from syncline.sandbox.rendering import (
    Column,
    ListOptions,
    Projection,
    Renderer,
    display_formatter,
    flag,
    link_header,
    list_options,
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
from syncline.sandbox.write_faults import (
    WRITE_METHODS,
    DroppedReply,
    WriteFaultKind,
    WriteFaultPicker,
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
# Query results kept (with their sort keys, so writes can be followed record by record).
_CACHED_RESULTS = 16


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
    # Requests per second admitted (token bucket, see ``rate_limit``); None: no limit.
    rate_limit_per_second: float | None = pydantic.Field(default=None, gt=0)
    # The field whose values API creates are counted by (see ``creates_by_correlation``).
    correlation_field: str = "correlation_id"
    invalid_query_returns_no_rows: bool = False
    # How far the instance's running clock is ahead of real time (negative: behind).
    clock_offset_seconds: float = 0.0


class SandboxStats(pydantic.BaseModel):
    """Counts of API requests the sandbox has answered."""

    requests_total: int = 0
    responses_by_status: dict[int, int] = pydantic.Field(default_factory=dict)
    rate_limited: int = 0
    # Of ``rate_limited``, those refused by the per-second limit.
    rate_limited_per_second: int = 0
    # API writes (POST/PUT/PATCH/DELETE) past the rate limits and request faults.
    writes: int = 0
    write_faults: dict[str, int] = pydantic.Field(default_factory=dict)
    # API creates carrying a correlation value, and those whose value had been created
    # before in the same table (a client's double).
    correlated_creates: int = 0
    duplicate_creates: int = 0


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


# --- storage ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Store:
    """Records of one storage root (a table, or the whole CMDB class family) by sys_id."""

    records: dict[str, Record] = field(default_factory=dict)
    version: int = 0
    by_sys_id_version: int = -1
    by_sys_id: list[Record] = field(default_factory=list)


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
        self._faults = FaultConfig()
        self._fault_counts = FaultCounters()
        self._write_faults = WriteFaultPicker(self._faults.seed)
        self._per_second: PerSecondLimiter | None = None
        self.rate_limit_per_second = self.config.rate_limit_per_second
        self._creates_by_correlation: dict[str, dict[str, int]] = {}
        self.stats = SandboxStats()
        self._clock = InstanceClock(now, offset_seconds=self.config.clock_offset_seconds)
        self._lock = threading.RLock()
        self._tables = defined_tables()
        self._stores: dict[str, _Store] = {}
        self._version = 0
        self._journal = ChangeJournal()
        self._result_cache: OrderedDict[Hashable, SortedRows[Record]] = OrderedDict()
        # How many times a query result was computed from the whole table (not patched).
        self.query_evaluations = 0
        self._keyset_reads = True
        self._ids = random.Random(f"servicenow-runtime:{self.config.seed}")
        self._rate_limit_rule_id = seed_data.new_sys_id(
            random.Random(f"rate-limit-rule:{self.config.seed}")
        )
        self._churn: Churn | None = None
        self._pool_cache: tuple[tuple[int, ...], seed_data.ChangePool] | None = None
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

    # --- faults ---------------------------------------------------------------------------

    @property
    def faults(self) -> FaultConfig:
        """The injected faults; change fields in place, or replace the whole configuration
        to also restart the "every Nth request" counts."""
        return self._faults

    @faults.setter
    def faults(self, config: FaultConfig) -> None:
        with self._lock:
            self._faults = config
            self._fault_counts = FaultCounters()
            self._write_faults = WriteFaultPicker(config.seed)

    @property
    def rate_limit_per_second(self) -> float | None:
        """Requests per second the API admits (None: no limit); setting it starts a full
        bucket."""
        limiter = self._per_second
        return limiter.rate if limiter is not None else None

    @rate_limit_per_second.setter
    def rate_limit_per_second(self, rate: float | None) -> None:
        self._per_second = PerSecondLimiter(rate) if rate is not None else None

    def creates_by_correlation(self, table: str) -> dict[str, int]:
        """How many records API creates made in ``table`` per value of the correlation
        field (``config.correlation_field``); a value above 1 is a double."""
        with self._lock:
            return dict(self._creates_by_correlation.get(table, {}))

    def is_hidden(self, sys_id: str) -> bool:
        """Whether ``faults.hidden_fraction`` hides the record from API reads."""
        return is_hidden(sys_id, self._faults.hidden_fraction)

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
        while len(self._result_cache) > _CACHED_RESULTS:
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
                if field_definition.kind is FieldKind.STRING and not name.startswith("sys_")
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

    def start_churn(self, config: ChurnConfig | None = None, **settings: Any) -> None:
        """Start changing records from a background thread (see ``churn``), configured by
        ``config`` and/or its fields as keywords. Raises RuntimeError while another churn
        runs, ValueError when the configuration does not fit the table."""
        base = config.model_dump() if config is not None else {}
        chosen = ChurnConfig.model_validate(base | settings)
        with self._lock:
            if self._churn is not None and self._churn.running:
                raise RuntimeError("a churn is already running; stop it first")
            try:
                self._require_table(chosen.table)
            except TableApiError as error:
                raise ValueError(error.message) from None
            churn = Churn(self, chosen)
            churn.start()
            self._churn = churn

    def stop_churn(self) -> ChurnReport:
        """Stop the churn (if it still runs), wait for its thread and report what it did."""
        churn = self._churn
        # Not under the lock: the churn thread needs it to finish its batch.
        return churn.stop() if churn is not None else ChurnReport()

    def wait_for_churn(self, timeout: float | None = None) -> ChurnReport:
        """Wait for the churn to end by itself (duration or ``max_changes`` reached)."""
        churn = self._churn
        if churn is None:
            return ChurnReport()
        churn.join(timeout)
        return churn.report()

    def churn_report(self) -> ChurnReport:
        """What the current or last churn has done so far."""
        churn = self._churn
        return churn.report() if churn is not None else ChurnReport()

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
        self._changed(self._storage_root(table.name), sys_id)
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
        self._changed(self._storage_root(table.name), record["sys_id"])

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

    async def _handle(self, request: Request) -> Response:
        with self._lock:
            self.stats.requests_total += 1
        try:
            response = await self._answer(request)
        except TableApiError as error:
            response = error.response()
        except ClientDisconnect:
            # The client went away before its body arrived: nothing was done and nobody is
            # left to answer. Counted under 499, the status proxies log for this.
            response = Response(status_code=499)
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
        if self._faults.latency_ms > 0:
            await asyncio.sleep(self._faults.latency_ms / 1000)
        user = self._authenticate(request)
        with self._lock:
            limit_headers = self._count_against_hourly_limit()
        limit_headers |= self._count_against_per_second_limit()
        garbage: GarbageKind | None = None
        write_fault: WriteFaultKind | None = None
        try:
            with self._lock:
                garbage = self._inject_faults()
            if garbage == "html":
                # Answered in front of the instance: the request never reached it.
                return login_page()
            body = await request.body() if request.method in ("POST", "PUT", "PATCH") else b""
            with self._lock:
                if garbage is None and request.method in WRITE_METHODS:
                    write_fault = self._draw_write_fault()
                if write_fault == "error_before_commit":
                    self._count_write_fault(write_fault)
                    raise _write_failed()
                response = self._route(request, body, user)
                if write_fault is not None:
                    self._count_write_fault(write_fault)
        except TableApiError as error:
            error.headers = limit_headers | error.headers
            if garbage is None:
                raise
            response = error.response()
        for name, value in limit_headers.items():
            response.headers[name] = value
        if write_fault == "error_after_commit":
            raise _write_failed(limit_headers)
        if write_fault == "drop_after_commit":
            return DroppedReply(response)
        return response if garbage is None else garbled(response, garbage)

    def _count_against_per_second_limit(self) -> dict[str, str]:
        limiter = self._per_second
        if limiter is None:
            return {}
        admission = limiter.admit()
        if admission.allowed:
            return admission.headers
        with self._lock:
            self.stats.rate_limited_per_second += 1
        raise TableApiError(
            429,
            "Too Many Requests",
            f"Rate limit exceeded: {limiter.rate:g} requests per second",
            admission.headers,
        )

    def _draw_write_fault(self) -> WriteFaultKind | None:
        faults = self._faults
        self.stats.writes += 1
        return self._write_faults.draw(
            faults.write_fault_rate, faults.write_fault_every, faults.write_fault_kinds
        )

    def _count_write_fault(self, kind: WriteFaultKind) -> None:
        counts = self.stats.write_faults
        counts[kind] = counts.get(kind, 0) + 1

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

    def _inject_faults(self) -> GarbageKind | None:
        """Raise the 429 or 5xx that falls on this request, or say which garbage it gets."""
        faults = self._faults
        self._fault_counts.api_requests += 1
        count = self._fault_counts.api_requests
        if falls_on(count, faults.rate_limit_every):
            raise TableApiError(
                429,
                "Too Many Requests",
                "Rate limit exceeded",
                {"Retry-After": _retry_after_header(faults.retry_after_seconds)},
            )
        if falls_on(count, faults.server_error_every):
            if faults.server_error_status == 503:
                raise TableApiError(
                    503, "Service Unavailable", "The instance is temporarily unavailable"
                )
            raise TableApiError(
                500, "Internal Server Error", "The instance failed to process the request"
            )
        if falls_on(count, faults.garbage_every):
            return faults.garbage_kind
        return None

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
        rows, start = self._select_from(table_name, params.get("sysparm_query", ""))
        table = self._require_table(table_name)
        render = self._projection(table, list_options(request)).render
        page: Sequence[Record] = rows[start + offset : start + offset + limit]
        total = len(rows) - start
        faults = self._faults
        if faults.hidden_fraction > 0:
            # Read ACLs filter a page after the count, as on an instance.
            page = [record for record in page if not self.is_hidden(record["sys_id"])]
        self._fault_counts.list_requests += 1
        page = glitched_page(page, faults, self._fault_counts.list_requests)
        result = [render(record) for record in page]
        headers: dict[str, str] = {}
        count_wanted = not flag(params.get("sysparm_no_count"))
        if count_wanted:
            headers["X-Total-Count"] = str(total)
        if not flag(params.get("sysparm_suppress_pagination_header")):
            link = link_header(
                request,
                offset,
                limit,
                total,
                include_last=count_wanted,
                origin=link_origin(faults),
            )
            if link is not None:
                headers["Link"] = link
        return _json_response({"result": result}, headers=headers)

    def _http_read(self, request: Request, table_name: str, sys_id: str) -> Response:
        table = self._require_table(table_name)
        record = self._find(table, sys_id)
        if record is None or self.is_hidden(record["sys_id"]):
            raise _not_found()
        return _json_response(
            {"result": self._projection(table, list_options(request)).render(record)}
        )

    def _http_create(
        self, request: Request, table_name: str, payload: Mapping[str, JsonValue], user: str
    ) -> Response:
        table = self._require_table(table_name, create=True)
        params = request.query_params
        fields = self._incoming(table, payload, flag(params.get("sysparm_input_display_value")))
        record = self._create(
            table,
            fields,
            user=user,
            suppress_auto_sys_fields=flag(params.get("sysparm_suppress_auto_sys_field")),
        )
        self._count_create(table_name, record)
        location = f"{self.config.instance_url}/api/now/table/{table_name}/{record['sys_id']}"
        return _json_response(
            {"result": self._projection(table, list_options(request)).render(record)},
            status=201,
            headers={"Location": location},
        )

    def _count_create(self, table_name: str, record: Record) -> None:
        value = record.get(self.config.correlation_field, "")
        if not value:
            return
        counts = self._creates_by_correlation.setdefault(table_name, {})
        seen = counts.get(value, 0)
        counts[value] = seen + 1
        self.stats.correlated_creates += 1
        if seen:
            self.stats.duplicate_creates += 1

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
        changes = self._incoming(table, payload, flag(params.get("sysparm_input_display_value")))
        self._modify(
            table,
            record,
            changes,
            user=user,
            suppress_auto_sys_fields=flag(params.get("sysparm_suppress_auto_sys_field")),
        )
        return _json_response(
            {"result": self._projection(table, list_options(request)).render(record)}
        )

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

    def _projection(self, table: TableDefinition, options: ListOptions) -> Projection:
        names = options.fields if options.fields is not None else tuple(table.fields)
        columns: list[Column] = []
        for name in names:
            definition = self._walk(table, name)
            if definition is None:
                continue
            read = None if "." not in name else self._walker(table, name.split("."))
            columns.append((name, read, self._renderer(definition, options)))
        return Projection.of(columns)

    def _renderer(self, definition: FieldDefinition, options: ListOptions) -> Renderer:
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
        display = display_formatter(definition)
        if mode == "true":
            return display
        return lambda value: {"display_value": display(value), "value": value}


def _write_failed(headers: Mapping[str, str] | None = None) -> TableApiError:
    return TableApiError(
        500, "Internal Server Error", "The instance failed to process the request", headers
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
