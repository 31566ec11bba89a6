"""ServiceNow record changes, posted by an outbound REST message from a business rule.

ServiceNow has no built-in webhook, so Syncline documents the body it accepts::

    {"table": "incident", "sys_id": "<32 hex>", "sys_updated_on": "YYYY-MM-DD HH:MM:SS",
     "operation": "insert" | "update" | "delete",
     "number"?: "INC0010001", "sys_updated_by"?: "jane.doe",
     "changed_fields"?: ["state", "assigned_to"], "fields"?: {"<name>": "<value>", ...}}

``sys_updated_on`` is the record's internal value, in UTC. An *after* business rule on
insert, update and delete of the table (global scope) sends it (``executeAsync`` keeps the user's
transaction fast; an *async* rule would lose ``changes()``)::

    (function executeRule(current, previous) {
        var body = {table: current.getTableName(), sys_id: current.getUniqueValue(),
                    sys_updated_on: current.getValue('sys_updated_on'),
                    sys_updated_by: current.getValue('sys_updated_by'),
                    operation: current.operation(), number: current.getValue('number'),
                    changed_fields: [],
                    fields: {sys_mod_count: current.getValue('sys_mod_count')}};
        var elements = current.getElements();
        for (var i = 0; i < elements.size(); i++) {
            if (elements.get(i).changes()) body.changed_fields.push(elements.get(i).getName());
        }
        var message = new sn_ws.RESTMessageV2('Syncline', 'post');
        message.setRequestBody(JSON.stringify(body));
        message.executeAsync();
    })(current, previous);

Unknown keys are rejected (this format is Syncline's, so a typo must not pass); ``fields``
is checked to be an object of strings and left in the raw delivery. ``sys_mod_count`` in it
makes two changes of one record within a second two bodies: the gateway tells deliveries
without an id apart by their body, so without it the second would wait for the next one.

- **Record**: ``object`` = the table, ``key`` = ``sys_id``, ``display_key`` = ``number``.
- **Change**: insert created, update updated, delete deleted.
- **Changed by**: ``sys_updated_by``, so a flow can skip changes its own integration user
  made; **time**: ``sys_updated_on`` (for a delete, the record's last update).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from syncline.inbound.errors import validated
from syncline.inbound.models import ChangeKind, InboundEvent, RecordChange
from syncline.inbound.values import OptionalVendorText, VendorPayload

SOURCE = "servicenow"

OPERATIONS: dict[str, ChangeKind] = {
    "insert": "created",
    "update": "updated",
    "delete": "deleted",
}


def _glide_time(value: Any) -> Any:
    """ServiceNow's ``YYYY-MM-DD HH:MM:SS`` (UTC) as an aware time."""
    if not isinstance(value, str):
        return value
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise PydanticCustomError(
            "glide_date_time", "expected 'YYYY-MM-DD HH:MM:SS' (UTC)"
        ) from None


class ServiceNowNotification(VendorPayload):
    """The body of Syncline's ServiceNow business rule (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    # ServiceNow table names: lower case, digits, underscores (u_custom, x_vendor_app_table).
    table: str = Field(pattern=r"^[a-z][a-z0-9_]{0,79}$")
    sys_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    sys_updated_on: Annotated[datetime, BeforeValidator(_glide_time)]
    operation: Literal["insert", "update", "delete"]
    number: OptionalVendorText = None
    sys_updated_by: OptionalVendorText = None
    changed_fields: list[str] = []
    fields: dict[str, str | None] | None = None


def parse(payload: object) -> InboundEvent:
    notification = validated(SOURCE, ServiceNowNotification, payload)
    record = RecordChange(
        system=SOURCE,
        object=notification.table,
        key=notification.sys_id,
        display_key=notification.number,
        change=OPERATIONS[notification.operation],
        changed_fields=list(dict.fromkeys(notification.changed_fields)),
        changed_by=notification.sys_updated_by,
        occurred_at=notification.sys_updated_on,
    )
    return InboundEvent.for_record(record)
