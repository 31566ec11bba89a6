"""ServiceNow record changes in the body Syncline's business rule posts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncline.inbound import InboundError, parse_delivery
from tests.inbound.payloads import SYS_ID, servicenow_payload


def test_an_update_becomes_a_record_change() -> None:
    event = parse_delivery("servicenow", servicenow_payload())

    assert event.event == "syncline.record.changed"
    assert event.resource_id == f"syncline.record.servicenow.incident.{SYS_ID}"
    assert event.subject_key == SYS_ID
    assert event.record is not None
    assert event.record.model_dump() == {
        "system": "servicenow",
        "object": "incident",
        "key": SYS_ID,
        "display_key": "INC0010042",
        "change": "updated",
        "changed_fields": ["state", "assigned_to", "sys_updated_on", "sys_mod_count"],
        "comment_id": None,
        "changed_by": "jane.doe",
        "occurred_at": datetime(2025, 11, 30, 10, 15, tzinfo=UTC),
    }


@pytest.mark.parametrize(
    ("operation", "change", "event_name"),
    [
        ("insert", "created", "syncline.record.changed"),
        ("delete", "deleted", "syncline.record.deleted"),
    ],
)
def test_insert_and_delete(operation: str, change: str, event_name: str) -> None:
    event = parse_delivery("servicenow", servicenow_payload(operation=operation))
    assert event.event == event_name
    assert event.record is not None and event.record.change == change


def test_the_minimal_body_and_other_tables() -> None:
    payload = {
        "table": "cmdb_ci_server",
        "sys_id": SYS_ID,
        "sys_updated_on": "2025-11-30 10:15:00",
        "operation": "update",
        "fields": {"name": "web-1", "ip_address": None},
    }
    event = parse_delivery("servicenow", payload)
    assert event.resource_id == f"syncline.record.servicenow.cmdb_ci_server.{SYS_ID}"
    assert event.record is not None
    assert (event.record.display_key, event.record.changed_fields) == (None, [])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            servicenow_payload(sys_id="INC0010042"),
            "servicenow: sys_id: string should match pattern '^[0-9a-f]{32}$'",
        ),
        (
            servicenow_payload(sys_updated_on="2025-11-30T10:15:00Z"),
            "servicenow: sys_updated_on: expected 'YYYY-MM-DD HH:MM:SS' (UTC)",
        ),
        (
            servicenow_payload(operation="upsert"),
            "servicenow: operation: input should be 'insert', 'update' or 'delete'",
        ),
        (
            servicenow_payload(table="Incident"),
            "servicenow: table: string should match pattern '^[a-z][a-z0-9_]{0,79}$'",
        ),
        (servicenow_payload(table=None), "servicenow: table: missing"),
        (
            servicenow_payload(sys_updated_by_name="x"),
            "servicenow: sys_updated_by_name: unknown field",
        ),
        (
            servicenow_payload(fields={"state": 6}),
            "servicenow: fields.state: expected a string",
        ),
        (
            servicenow_payload(changed_fields="state"),
            "servicenow: changed_fields: expected a JSON array",
        ),
    ],
)
def test_malformed_bodies_are_refused_with_the_path(payload: object, message: str) -> None:
    with pytest.raises(InboundError) as refused:
        parse_delivery("servicenow", payload)
    assert str(refused.value) == message
