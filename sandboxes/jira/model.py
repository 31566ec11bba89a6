"""Issues and comments as the sandbox keeps them, what their changelog compares, and how
they are saved (``to_state``/``from_state``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sandboxes.jira import adf
from sandboxes.jira.workflow import (
    DONE_RESOLUTION,
    ISSUE_TYPES,
    PRIORITIES,
    STATUSES,
    Named,
    Status,
)


@dataclass(slots=True)
class Comment:
    id: str
    body: dict[str, Any]
    author: str
    created: datetime
    updated: datetime
    update_author: str
    visibility: dict[str, Any] | None = None


@dataclass(slots=True)
class Issue:
    """One issue. ``custom`` holds ``customfield_*`` and other stored values as written;
    ``changed_at`` (monotonic seconds) is when it last changed, for the search lag."""

    id: int
    key: str
    project: str
    issue_type: Named
    summary: str
    status: Status
    priority: Named
    created: datetime
    updated: datetime
    reporter: str
    description: dict[str, Any] | None = None
    labels: list[str] = field(default_factory=list)
    assignee: str | None = None
    duedate: str | None = None
    resolution: Named | None = None
    resolution_date: datetime | None = None
    custom: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    comments: list[Comment] = field(default_factory=list)
    changed_at: float = 0.0


# A field as the changelog shows it: (field id, field name, raw value, display string).
Tracked = dict[str, tuple[str | None, str | None]]

SYSTEM_FIELDS = frozenset(
    {
        "summary",
        "description",
        "issuetype",
        "priority",
        "labels",
        "assignee",
        "duedate",
        "status",
        "resolution",
        "resolutiondate",
        "project",
        "created",
        "updated",
        "reporter",
        "comment",
    }
)


def tracked(issue: Issue, display_name: dict[str, str]) -> Tracked:
    """The values a changelog compares, each as ``(from/to, fromString/toString)``."""

    def named(value: Named | Status | None) -> tuple[str | None, str | None]:
        return (value.id, value.name) if value is not None else (None, None)

    values: Tracked = {
        "summary": (None, issue.summary),
        "description": (None, adf.plain_text(issue.description) or None),
        "issuetype": named(issue.issue_type),
        "priority": named(issue.priority),
        "status": named(issue.status),
        "resolution": named(issue.resolution),
        "labels": (None, " ".join(issue.labels) or None),
        "assignee": (
            (issue.assignee, display_name.get(issue.assignee, issue.assignee))
            if issue.assignee
            else (None, None)
        ),
        "duedate": (issue.duedate, issue.duedate),
    }
    for name, value in issue.custom.items():
        values[name] = (None, None if value is None else _as_text(value))
    return values


def changelog_items(before: Tracked, after: Tracked) -> list[dict[str, Any]]:
    """Jira's changelog items for the fields whose value changed."""
    items = []
    for name in dict.fromkeys([*before, *after]):
        old, new = before.get(name, (None, None)), after.get(name, (None, None))
        if old == new:
            continue
        items.append(
            {
                "field": name,
                "fieldtype": "custom" if name.startswith("customfield_") else "jira",
                "fieldId": name,
                "from": old[0],
                "fromString": old[1],
                "to": new[0],
                "toString": new[1],
            }
        )
    return items


def _as_text(value: Any) -> str:
    if isinstance(value, dict) and value.get("type") == "doc":
        return adf.plain_text(value)
    if isinstance(value, dict):
        return str(value.get("value", value.get("name", value)))
    return str(value)


# --- saved state ----------------------------------------------------------------------------


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def issue_state(issue: Issue) -> dict[str, Any]:
    return {
        "id": issue.id,
        "key": issue.key,
        "project": issue.project,
        "issuetype": issue.issue_type.id,
        "summary": issue.summary,
        "status": issue.status.id,
        "priority": issue.priority.id,
        "created": issue.created.isoformat(),
        "updated": issue.updated.isoformat(),
        "reporter": issue.reporter,
        "description": issue.description,
        "labels": issue.labels,
        "assignee": issue.assignee,
        "duedate": issue.duedate,
        "resolved": issue.resolution is not None,
        "resolutiondate": issue.resolution_date.isoformat() if issue.resolution_date else None,
        "custom": issue.custom,
        "properties": issue.properties,
        "comments": [
            {
                "id": c.id,
                "body": c.body,
                "author": c.author,
                "created": c.created.isoformat(),
                "updated": c.updated.isoformat(),
                "update_author": c.update_author,
                "visibility": c.visibility,
            }
            for c in issue.comments
        ],
    }


def issue_from_state(saved: dict[str, Any]) -> Issue:
    by_id = {option.id: option for option in (*PRIORITIES, *ISSUE_TYPES)}
    created = _moment(saved["created"])
    updated = _moment(saved["updated"])
    assert created is not None and updated is not None
    return Issue(
        id=int(saved["id"]),
        key=saved["key"],
        project=saved["project"],
        issue_type=by_id[saved["issuetype"]],
        summary=saved["summary"],
        status=STATUSES[saved["status"]],
        priority=by_id[saved["priority"]],
        created=created,
        updated=updated,
        reporter=saved["reporter"],
        description=saved["description"],
        labels=list(saved["labels"]),
        assignee=saved["assignee"],
        duedate=saved["duedate"],
        resolution=DONE_RESOLUTION if saved["resolved"] else None,
        resolution_date=_moment(saved["resolutiondate"]),
        custom=dict(saved["custom"]),
        properties=dict(saved["properties"]),
        comments=[
            Comment(
                id=c["id"],
                body=c["body"],
                author=c["author"],
                created=datetime.fromisoformat(c["created"]),
                updated=datetime.fromisoformat(c["updated"]),
                update_author=c["update_author"],
                visibility=c["visibility"],
            )
            for c in saved["comments"]
        ],
    )
