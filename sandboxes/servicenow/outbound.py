"""Outbound REST messages: what an admin sets up so an instance tells an integration about
record changes (an *after* business rule calling a REST message), on the core's outbox.

A receiver is registered with the admin route ``POST /sandbox/servicenow/outbound-rest``
(or ``ServiceNowSandbox.register_outbound_rest``)::

    {"url": "http://127.0.0.1:8000/webhooks/servicenow",
     "header_name": "X-Syncline-Token",      # the default
     "header_value": "a-shared-secret",      # optional: no header without it
     "tables": ["incident"],                 # the default
     "operations": ["insert", "update", "delete"],   # the default
     "name": "Syncline"}

answered 201 ``{"id", "name", "url", "header_name", "tables", "operations"}``; ``GET`` lists
them, ``DELETE /sandbox/servicenow/outbound-rest/{id}`` removes one (204). After each committed
insert, update or delete of a record of a wanted table (a journal entry is an update of the
incident) the instance POSTs, as the business rule documented by Syncline's inbound
ServiceNow module sends it::

    {"table": "incident", "sys_id": "<32 hex>", "sys_updated_on": "2026-11-30 12:00:00",
     "sys_updated_by": "admin", "operation": "update", "number": "INC0010001",
     "changed_fields": ["sys_mod_count", "sys_updated_on", "work_notes"]}

``changed_fields`` lists, in the table's field order, what ``GlideElement.changes()`` reports:
the fields whose value the write changed (the ``sys_*`` ones included), journal fields given an
entry, every field given a value on an insert, none on a delete (whose ``sys_updated_on`` is
the record's last update). ``fields`` is sent when ``outbound_fields`` in the sandbox's
configuration names some: their stored values (a journal field: the entry just written, else
``""``); by default ``sys_mod_count``, as Syncline's documented business rule sends. ``number``
is null for tables without one.

Deliveries carry the receiver's header and ``Content-Type: application/json``, no delivery id
(a REST message sends none: Syncline's gateway de-duplicates ServiceNow deliveries by body),
leave from a background thread after the API call has answered, and are retried on 408, 429,
5xx and connection errors (``outbound_backoff_seconds``, ``outbound_max_attempts``); with
``outbound_duplicate_probability`` a delivered body is sometimes sent again (seeded by
``seed``). The core's standard routes list them (``GET /sandbox/servicenow/webhooks/
deliveries``) and re-deliver one (``POST .../deliveries/{id}/redeliver``: same bytes).

Not simulated: the ECC queue and MID servers, REST message templates and variable
substitution, OAuth or Basic auth profiles on the message, business rule conditions and
ordering, rules inherited by child tables (a receiver names the table a record is written
through), and notifications of ``sys_journal_field`` rows themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pydantic
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandboxes.core.outbox import WebhookOutbox
from sandboxes.core.server import parsed
from sandboxes.core.vendor import AdminRoute
from sandboxes.core.webhooks import SigningScheme
from sandboxes.servicenow.commits import Operation, RecordCommit
from sandboxes.servicenow.config import ServiceNowSandboxConfig

DEFAULT_HEADER = "X-Syncline-Token"
OPERATIONS: tuple[Operation, ...] = ("insert", "update", "delete")
# Used only by the core's generic ``/webhooks`` route when given a secret: a script-computed
# HMAC-SHA256 of the body (ServiceNow itself signs nothing).
SCRIPTED_SIGNATURE = SigningScheme("X-Hub-Signature-256")


def servicenow_outbox(config: ServiceNowSandboxConfig) -> WebhookOutbox:
    return WebhookOutbox(
        SCRIPTED_SIGNATURE,
        delivery_id_header=None,
        backoff_seconds=config.outbound_backoff_seconds,
        max_attempts=config.outbound_max_attempts,
        duplicate_probability=config.outbound_duplicate_probability,
        seed=config.seed,
    )


def event_name(table: str, operation: str) -> str:
    """The outbox event of a write: ``incident.update``."""
    return f"{table}.{operation}"


class OutboundRestRequest(pydantic.BaseModel):
    """A receiver to register; see the module docstring."""

    model_config = pydantic.ConfigDict(extra="forbid")

    url: str = pydantic.Field(pattern=r"^https?://")
    name: str = ""
    header_name: str = pydantic.Field(default=DEFAULT_HEADER, pattern=r"^[A-Za-z0-9-]{1,100}$")
    header_value: str | None = None
    tables: list[str] = pydantic.Field(default_factory=lambda: ["incident"], min_length=1)
    operations: list[Operation] = pydantic.Field(
        default_factory=lambda: list(OPERATIONS), min_length=1
    )


class OutboundRest:
    """The instance's outbound REST messages: receivers, and the body sent to them."""

    def __init__(self, outbox: WebhookOutbox, fields: Sequence[str] = ()) -> None:
        self.outbox = outbox
        self.fields = tuple(fields)
        self._receivers: dict[str, dict[str, Any]] = {}

    def register(self, request: OutboundRestRequest) -> dict[str, Any]:
        """Register a receiver; its description (without the header's value)."""
        headers = {request.header_name: request.header_value} if request.header_value else {}
        subscription = self.outbox.subscribe(
            request.url,
            None,
            events=[
                event_name(table, operation)
                for table in request.tables
                for operation in request.operations
            ],
            name=request.name or request.url,
            headers=headers,
        )
        described = {
            "id": subscription.id,
            "name": subscription.name,
            "url": subscription.url,
            "header_name": request.header_name if request.header_value else None,
            "tables": list(request.tables),
            "operations": list(request.operations),
        }
        self._receivers[subscription.id] = described
        return described

    def receivers(self) -> list[dict[str, Any]]:
        live = {subscription.id for subscription in self.outbox.subscriptions()}
        return [described for key, described in self._receivers.items() if key in live]

    def unregister(self, receiver_id: str) -> bool:
        self._receivers.pop(receiver_id, None)
        return self.outbox.unsubscribe(receiver_id)

    # --- the after business rule (a ``CommitListener``) -----------------------------------

    def wants(self, table: str) -> bool:
        prefix = event_name(table, "")
        return any(
            not subscription.events or any(e.startswith(prefix) for e in subscription.events)
            for subscription in self.outbox.subscriptions()
        )

    def committed(self, commit: RecordCommit) -> None:
        self.outbox.publish(event_name(commit.table, commit.operation), self.body(commit))

    def body(self, commit: RecordCommit) -> dict[str, Any]:
        """What the business rule posts for ``commit``."""
        record = commit.record
        body: dict[str, Any] = {
            "table": commit.table,
            "sys_id": record["sys_id"],
            "sys_updated_on": record.get("sys_updated_on", ""),
            "sys_updated_by": record.get("sys_updated_by") or None,
            "operation": commit.operation,
            "number": record.get("number") or None,
            "changed_fields": list(commit.changed_fields),
        }
        if self.fields:
            body["fields"] = {
                name: commit.notes.get(name, record.get(name, "")) for name in self.fields
            }
        return body

    # --- admin routes ---------------------------------------------------------------------

    def admin_routes(self) -> list[AdminRoute]:
        async def collection(request: Request) -> Response:
            if request.method == "POST":
                body: OutboundRestRequest = await parsed(request, OutboundRestRequest)
                return JSONResponse(self.register(body), 201)
            return JSONResponse(self.receivers())

        async def item(request: Request) -> Response:
            receiver_id = request.path_params["id"]
            if not self.unregister(receiver_id):
                return JSONResponse({"error": f"no outbound REST receiver {receiver_id}"}, 404)
            return Response(status_code=204)

        return [
            AdminRoute("/outbound-rest", collection, ["GET", "POST"]),
            AdminRoute("/outbound-rest/{id}", item, ["DELETE"]),
        ]
