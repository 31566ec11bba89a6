"""Jira Cloud issue and comment webhooks (envelope per the vendor's docs; see test_contracts)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncline.inbound import IgnoredDelivery, InboundError, parse_delivery
from tests.inbound.payloads import jira_payload

WHEN = datetime(2025, 11, 30, 10, 53, 20, tzinfo=UTC)


def test_an_issue_update_names_the_changed_fields() -> None:
    event = parse_delivery("jira", jira_payload())

    assert event.event == "syncline.record.changed"
    assert event.resource_id == "syncline.record.jira.issue.10002"
    assert event.subject_key == "10002"
    assert event.vendor_event_id == "10400"
    assert event.alert is None
    assert event.record is not None
    assert event.record.model_dump() == {
        "system": "jira",
        "object": "issue",
        "key": "10002",
        "display_key": "OPS-12",
        "change": "updated",
        "changed_fields": ["status", "customfield_10016"],
        "comment_id": None,
        "changed_by": "5b10ac8d82e05b22cc7d4ef5",
        "occurred_at": WHEN,
    }


def test_creation_and_deletion() -> None:
    created = parse_delivery("jira", jira_payload("jira:issue_created"))
    deleted = parse_delivery("jira", jira_payload("jira:issue_deleted"))
    assert created.event == "syncline.record.changed"
    assert created.record is not None and created.record.change == "created"
    assert deleted.event == "syncline.record.deleted"
    assert deleted.record is not None and deleted.record.change == "deleted"
    assert created.resource_id == deleted.resource_id


@pytest.mark.parametrize("webhook_event", ["comment_created", "comment_updated", "comment_deleted"])
def test_comment_events(webhook_event: str) -> None:
    event = parse_delivery("jira", jira_payload(webhook_event))
    assert event.event == "syncline.record.changed"
    assert event.record is not None
    assert (event.record.change, event.record.comment_id) == ("commented", "10050")
    assert event.subject_key == "10002"


def test_an_issue_update_announcing_a_comment_is_a_comment() -> None:
    payload = jira_payload(
        issue_event_type_name="issue_commented",
        changelog=None,
        comment={"id": "10051", "body": "On it."},
    )
    record = parse_delivery("jira", payload).record
    assert record is not None
    assert (record.change, record.comment_id, record.changed_fields) == ("commented", "10051", [])


def test_a_field_without_an_id_is_named_by_its_name_and_repeats_are_dropped() -> None:
    items = [{"field": "Flagged"}, {"field": "status", "fieldId": "status"}, {"fieldId": "status"}]
    record = parse_delivery("jira", jira_payload(changelog={"id": "1", "items": items})).record
    assert record is not None and record.changed_fields == ["Flagged", "status"]


def test_jira_server_names_the_user() -> None:
    record = parse_delivery(
        "jira", jira_payload(user={"name": "jdoe", "key": "JIRAUSER10100"})
    ).record
    assert record is not None and record.changed_by == "jdoe"


@pytest.mark.parametrize(
    "webhook_event", ["worklog_created", "issue_property_set", "sprint_started"]
)
def test_events_that_are_not_issue_changes_are_ignored(webhook_event: str) -> None:
    with pytest.raises(IgnoredDelivery, match=f"^jira: webhookEvent: '{webhook_event}' is not"):
        parse_delivery("jira", jira_payload(webhook_event))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (jira_payload(issue=None), "jira: issue: missing"),
        (jira_payload(timestamp=None), "jira: timestamp: missing"),
        (jira_payload(webhookEvent=None), "jira: webhookEvent: missing"),
        (
            jira_payload(issue={"id": "10002", "key": "OPS-12"}),
            "jira: issue.fields: missing",
        ),
        (
            jira_payload(changelog={"id": "1", "items": [{"field": ["status"]}]}),
            "jira: changelog.items[0].field: expected a string",
        ),
        (jira_payload("comment_created", comment=None), "jira: comment: missing"),
        (jira_payload("comment_created", comment={"body": "x"}), "jira: comment.id: missing"),
        (
            jira_payload(timestamp="yesterday"),
            "jira: timestamp: expected an ISO 8601 time or epoch seconds or milliseconds",
        ),
    ],
)
def test_malformed_deliveries_are_refused_with_the_path(payload: object, message: str) -> None:
    with pytest.raises(InboundError) as refused:
        parse_delivery("jira", payload)
    assert str(refused.value) == message
