"""Webhook payloads as Jira Cloud sends them for issue and comment events.

``{timestamp (epoch ms), webhookEvent, issue_event_type_name, user, issue{id, self, key,
fields}, changelog{id, items[...]}, comment?}``: created issues carry no changelog; edits
and transitions carry the changed fields' items; a comment sends ``comment_created`` (or
``_updated``/``_deleted``) and also ``jira:issue_updated`` with ``issue_commented`` (or
``issue_comment_edited``/``issue_comment_deleted``), as Jira does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sandboxes.jira.model import Comment, Issue
from sandboxes.jira.rendering import JiraRenderer

ISSUE_CREATED = "jira:issue_created"
ISSUE_UPDATED = "jira:issue_updated"
ISSUE_DELETED = "jira:issue_deleted"
COMMENT_EVENTS = {
    "created": ("comment_created", "issue_commented"),
    "updated": ("comment_updated", "issue_comment_edited"),
    "deleted": ("comment_deleted", "issue_comment_deleted"),
}
EVENTS = (
    ISSUE_CREATED,
    ISSUE_UPDATED,
    ISSUE_DELETED,
    *(event for event, _ in COMMENT_EVENTS.values()),
)


@dataclass(frozen=True, slots=True)
class IssueEvent:
    """One webhook event: its name, its payload and the issue it is about (for filters)."""

    name: str
    payload: dict[str, Any]
    issue: Issue


def issue_event(
    renderer: JiraRenderer,
    name: str,
    type_name: str,
    issue: Issue,
    *,
    actor: str,
    at: datetime,
    changelog: tuple[str, list[dict[str, Any]]] | None = None,
    comment: Comment | None = None,
) -> IssueEvent:
    rendered = renderer.issue(issue)
    payload: dict[str, Any] = {
        "timestamp": int(at.timestamp() * 1000),
        "webhookEvent": name,
        "issue_event_type_name": type_name,
        "user": renderer.user(actor),
        "issue": {
            "id": rendered["id"],
            "self": rendered["self"],
            "key": rendered["key"],
            "fields": rendered["fields"],
        },
    }
    if changelog is not None:
        changelog_id, items = changelog
        payload["changelog"] = {"id": changelog_id, "items": items}
    if comment is not None:
        payload["comment"] = renderer.comment(issue, comment)
    return IssueEvent(name, payload, issue)


def comment_events(
    renderer: JiraRenderer, change: str, issue: Issue, comment: Comment, *, actor: str, at: datetime
) -> list[IssueEvent]:
    """The comment event and the issue update that goes with it."""
    comment_name, type_name = COMMENT_EVENTS[change]
    return [
        issue_event(renderer, comment_name, type_name, issue, actor=actor, at=at, comment=comment),
        issue_event(renderer, ISSUE_UPDATED, type_name, issue, actor=actor, at=at, comment=comment),
    ]
