"""Jira Cloud webhooks about issues and their comments.

The body is Jira's own (no template)::

    {"timestamp": 1700000000000, "webhookEvent": "jira:issue_updated",
     "issue_event_type_name": "issue_generic", "user": {"accountId": "..."},
     "issue": {"id": "10002", "key": "PROJ-12", "fields": {...}},
     "changelog": {"id": "10400", "items": [{"field": "status", "fieldId": "status", ...}]},
     "comment": {"id": "10050", ...}}

- **Record**: ``object="issue"``, ``key`` = the issue id (it survives a move to another
  project, the issue key does not), ``display_key`` = the issue key (``PROJ-12``).
- **Change** from ``webhookEvent``: ``jira:issue_created`` created, ``jira:issue_updated``
  updated (commented when ``issue_event_type_name`` says a comment was added, edited or
  deleted), ``jira:issue_deleted`` deleted, ``comment_created|updated|deleted`` commented.
  Other events (worklogs, issue properties — Syncline writes those itself —, projects,
  sprints) raise ``IgnoredDelivery``.
- **Changed fields**: the ``fieldId`` (else ``field``) of each changelog item; names only,
  the values stay in the raw delivery.
- **Changed by**: ``user.accountId``; **time**: ``timestamp`` (epoch milliseconds).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from syncline.inbound.errors import IgnoredDelivery, problem, validated
from syncline.inbound.models import ChangeKind, InboundEvent, RecordChange
from syncline.inbound.values import OptionalVendorText, Timestamp, VendorPayload, VendorText, quoted

SOURCE = "jira"

ISSUE_EVENTS: dict[str, ChangeKind] = {
    "jira:issue_created": "created",
    "jira:issue_updated": "updated",
    "jira:issue_deleted": "deleted",
}
COMMENT_EVENTS = frozenset({"comment_created", "comment_updated", "comment_deleted"})
# issue_event_type_name of a jira:issue_updated that is about a comment.
COMMENT_UPDATE_TYPES = frozenset(
    {"issue_commented", "issue_comment_edited", "issue_comment_deleted"}
)


class JiraUser(VendorPayload):
    account_id: OptionalVendorText = Field(default=None, alias="accountId")
    # Jira Server / Data Center name the user instead.
    name: OptionalVendorText = None


class JiraIssue(VendorPayload):
    id: VendorText
    key: VendorText
    fields: dict[str, Any]


class ChangelogItem(VendorPayload):
    field: OptionalVendorText = None
    field_id: OptionalVendorText = Field(default=None, alias="fieldId")


class Changelog(VendorPayload):
    id: OptionalVendorText = None
    items: list[ChangelogItem] = []


class JiraComment(VendorPayload):
    id: VendorText


class JiraWebhook(VendorPayload):
    timestamp: Timestamp
    webhook_event: VendorText = Field(alias="webhookEvent")
    issue_event_type_name: OptionalVendorText = None
    user: JiraUser | None = None
    issue: JiraIssue | None = None
    changelog: Changelog | None = None
    comment: JiraComment | None = None


def _change(webhook: JiraWebhook) -> ChangeKind:
    event = webhook.webhook_event
    if event in COMMENT_EVENTS:
        return "commented"
    change = ISSUE_EVENTS.get(event)
    if change is None:
        raise IgnoredDelivery(
            f"{SOURCE}: webhookEvent: {quoted(event)} is not an issue or comment change;"
            " nothing to emit"
        )
    if change == "updated" and webhook.issue_event_type_name in COMMENT_UPDATE_TYPES:
        return "commented"
    return change


def _changed_fields(changelog: Changelog | None) -> list[str]:
    names: list[str] = []
    for item in changelog.items if changelog is not None else []:
        name = item.field_id or item.field
        if name and name not in names:
            names.append(name)
    return names


def parse(payload: object) -> InboundEvent:
    webhook = validated(SOURCE, JiraWebhook, payload)
    change = _change(webhook)
    if webhook.issue is None:
        raise problem(SOURCE, "issue", "missing")
    if webhook.webhook_event in COMMENT_EVENTS and webhook.comment is None:
        raise problem(SOURCE, "comment", "missing")
    user = webhook.user
    record = RecordChange(
        system=SOURCE,
        object="issue",
        key=webhook.issue.id,
        display_key=webhook.issue.key,
        change=change,
        changed_fields=_changed_fields(webhook.changelog),
        comment_id=webhook.comment.id if webhook.comment is not None else None,
        changed_by=(user.account_id or user.name) if user is not None else None,
        occurred_at=webhook.timestamp,
    )
    changelog_id = webhook.changelog.id if webhook.changelog is not None else None
    return InboundEvent.for_record(record, vendor_event_id=changelog_id)
