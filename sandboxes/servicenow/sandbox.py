"""A faithful in-memory simulator of the ServiceNow Table API, declared on the shared core.

``ServiceNowSandbox`` holds seeded tables in memory and serves
``/api/now[/v1|/v2]/table/{table}[/{sys_id}]`` as a Starlette app, reproducing what a client
of a real instance has to cope with: the ``{"result": ...}`` envelope with every value a
string, reference fields as ``{"link", "value"}``, encoded queries, offset paging with
``Link`` and ``X-Total-Count`` headers, display values, the error body, HTTP Basic auth,
hourly rate-limit headers, a per-second rate limit (``rate_limit``), a clock that may be
off, records changing while they are read (``churn``) and injected faults (``faults``: 429
with ``Retry-After``, 500/503, latency, garbage bodies, glitched and ACL-filtered pages,
foreign ``Link`` URLs; writes failing before or after the commit, ``write_faults``). The
tables and fields it defines are in ``schema``; keyset page reads are served as ``keyset``
describes. The layers: ``store`` (tables, records, saved state), ``query`` (encoded queries),
``records`` (the instance's own writes, ``incident_rules``), ``table_api`` (the routes), and
this module: the declaration on the shared core (``sandboxes.core.vendor``) with the
instance's authentication, its hourly rate-limit rule and its error bodies; the core's
pipeline runs the per-second limit and the injected faults around the Table API.

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
* Incident journal fields (``work_notes``, ``comments``) append rows to ``sys_journal_field``
  and read back empty; that table refuses Table API writes with 403 (``journal``).
* Outbound REST messages (``outbound``): receivers registered with an admin route get a POST
  after each committed write of the tables they want, through the core's webhook outbox.
"""

from __future__ import annotations

import base64
import binascii
import random
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sandboxes.core.faults import FaultConfig
from sandboxes.core.pipeline import ApiCall, VendorState
from sandboxes.core.vendor import ApiRoute, VendorDeclaration
from sandboxes.servicenow import seed as seed_data
from sandboxes.servicenow.api import ALL_METHODS, ServiceNowErrors, TableApiError
from sandboxes.servicenow.churn import Churn, ChurnConfig, ChurnReport
from sandboxes.servicenow.commits import Operation
from sandboxes.servicenow.config import SandboxStats, ServiceNowSandboxConfig
from sandboxes.servicenow.outbound import (
    DEFAULT_HEADER,
    OPERATIONS,
    OutboundRest,
    OutboundRestRequest,
    servicenow_outbox,
)
from sandboxes.servicenow.table_api import TableApi


class ServiceNowSandbox(TableApi):
    """An in-memory ServiceNow instance: seeded tables, a Python API for tests and admin
    routes, and ``app``, the Starlette app serving the Table API."""

    def __init__(
        self, config: ServiceNowSandboxConfig | None = None, *, now: datetime | None = None
    ) -> None:
        super().__init__(config or ServiceNowSandboxConfig(), now)
        self.core = VendorState(
            self._clock,
            SandboxStats(),
            lock=self._lock,
            rate_limit_per_second=self.config.rate_limit_per_second,
        )
        self._creates_by_correlation = {}
        self._rate_limit_rule_id = seed_data.new_sys_id(
            random.Random(f"rate-limit-rule:{self.config.seed}")
        )
        self._churn: Churn | None = None
        self._hour_window_start = 0
        self._hour_window_count = 0
        self.outbox = servicenow_outbox(self.config)
        self.outbound = OutboundRest(self.outbox, self.config.outbound_fields)
        self.commit_listener = self.outbound
        self.declaration = VendorDeclaration(
            name="servicenow",
            routes=[ApiRoute("/api/now/{path:path}", self._api, ALL_METHODS)],
            authenticate=self._authenticate,
            errors=ServiceNowErrors(),
            state=self.core,
            quota=self._count_against_hourly_limit,
            admin=self.outbound.admin_routes(),
            outbox=self.outbox,
        )
        self.app = self.declaration.api_app()

    # --- outbound REST ----------------------------------------------------------------------

    def register_outbound_rest(
        self,
        url: str,
        header_value: str | None = None,
        *,
        header_name: str = DEFAULT_HEADER,
        tables: Sequence[str] = ("incident",),
        operations: Sequence[Operation] = OPERATIONS,
        name: str = "",
    ) -> str:
        """Register a receiver as ``POST /sandbox/servicenow/outbound-rest`` does; its id."""
        request = OutboundRestRequest(
            url=url,
            name=name,
            header_name=header_name,
            header_value=header_value,
            tables=list(tables),
            operations=list(operations),
        )
        with self._lock:
            return str(self.outbound.register(request)["id"])

    def wait_for_outbound(self, timeout: float = 10.0) -> bool:
        """Wait until every outbound delivery so far (with its retries) is done."""
        return self.outbox.wait_idle(timeout)

    def outbound_deliveries(self) -> list[dict[str, Any]]:
        """Every outbound delivery, oldest first, with its attempts."""
        return self.outbox.deliveries()

    def close(self) -> None:
        """Stop the outbound delivery thread (if one started)."""
        self.outbox.close()

    # --- faults ---------------------------------------------------------------------------

    @property
    def faults(self) -> FaultConfig:
        """The injected faults; change fields in place, or replace the whole configuration
        to also restart the "every Nth request" counts."""
        return self.core.faults

    @faults.setter
    def faults(self, config: FaultConfig) -> None:
        self.core.faults = config

    @property
    def rate_limit_per_second(self) -> float | None:
        """Requests per second the API admits (None: no limit); setting it starts a full
        bucket."""
        return self.core.rate_limit_per_second

    @rate_limit_per_second.setter
    def rate_limit_per_second(self, rate: float | None) -> None:
        self.core.rate_limit_per_second = rate

    def creates_by_correlation(self, table: str) -> dict[str, int]:
        """How many records API creates made in ``table`` per value of the correlation
        field (``config.correlation_field``); a value above 1 is a double."""
        with self._lock:
            return dict(self._creates_by_correlation.get(table, {}))

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

    def _api(self, call: ApiCall) -> Response:
        return self._route(call.request, call.body, call.user)

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
