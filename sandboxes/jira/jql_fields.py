"""What each field means to JQL: the values a clause compares an issue's field with, how
results sort on it, and which values exist. Jira refuses a query that names a project,
status, priority, issue type or issue key that does not exist (``The value 'X' does not
exist for the field 'project'.``, ``An issue with key 'OPS-9' does not exist for field
'key'.``) rather than matching nothing, so a batch lookup by key fails as a whole when one
of the issues was deleted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sandboxes.jira.adf import plain_text
from sandboxes.jira.errors import JiraApiError
from sandboxes.jira.model import Issue
from sandboxes.jira.workflow import PRIORITIES

Predicate = Callable[[Issue], bool]
# Whether a value names something that exists: (field, lower-cased value) -> bool.
ValueExists = Callable[[str, str], bool]

DATE_FIELDS = frozenset({"created", "updated", "resolutiondate"})
TEXT_FIELDS = frozenset({"summary", "text", "description"})
KNOWN_FIELDS = (
    frozenset(
        {
            "project",
            "key",
            "id",
            "status",
            "statuscategory",
            "priority",
            "issuetype",
            "labels",
            "assignee",
            "reporter",
        }
    )
    | DATE_FIELDS
    | TEXT_FIELDS
)
SORTABLE = frozenset(
    {"created", "updated", "key", "id", "priority", "status", "summary", "project"}
    | {"resolutiondate"}
)
# Fields whose values must name something that exists.
CHECKED_FIELDS = frozenset({"project", "key", "status", "priority", "issuetype"})
PRIORITY_RANK = {p.name.lower(): len(PRIORITIES) - i for i, p in enumerate(PRIORITIES)}


@dataclass(frozen=True, slots=True)
class JqlContext:
    """What a query is read against: the instance's now, the user's time zone and account
    id, and which values exist (None: any value is accepted)."""

    now: datetime
    zone: ZoneInfo
    me: str
    exists: ValueExists | None = None


def jql_error(message: str) -> JiraApiError:
    return JiraApiError(400, [message])


def unknown_field(name: str) -> JiraApiError:
    return jql_error(f"Field '{name}' does not exist or you do not have permission to view it.")


def check_values(name: str, values: list[str], context: JqlContext) -> None:
    """Refuse values that name nothing, as Jira does."""
    if context.exists is None or name not in CHECKED_FIELDS:
        return
    for value in values:
        if value.lower() in ("empty", "null") or context.exists(name, value.lower()):
            continue
        if name == "key":
            raise jql_error(f"An issue with key '{value}' does not exist for field 'key'.")
        raise jql_error(f"The value '{value}' does not exist for the field '{name}'.")


def sort_key(issue: Issue, name: str) -> Any:
    match name:
        case "created":
            return issue.created
        case "updated":
            return issue.updated
        case "key" | "id":
            return issue.id
        case "priority":
            return PRIORITY_RANK[issue.priority.name.lower()]
        case "status":
            return issue.status.name.lower()
        case "summary":
            return issue.summary.lower()
        case "project":
            return issue.project
        case "resolutiondate":
            return issue.resolution_date or datetime.min.replace(tzinfo=UTC)
    raise unknown_field(name)


def values_of(issue: Issue, name: str) -> list[str]:
    """The issue's values for ``name``, lower-cased, as equality and ``in`` compare them."""
    match name:
        case "project":
            return [issue.project.lower()]
        case "key":
            return [issue.key.lower(), str(issue.id)]
        case "id":
            return [str(issue.id)]
        case "status":
            return [issue.status.name.lower(), issue.status.id]
        case "statuscategory":
            category = issue.status.category
            return [category.name.lower(), category.key, str(category.id)]
        case "priority":
            return [issue.priority.name.lower(), issue.priority.id]
        case "issuetype":
            return [issue.issue_type.name.lower(), issue.issue_type.id]
        case "labels":
            return [label.lower() for label in issue.labels]
        case "assignee":
            return [issue.assignee.lower()] if issue.assignee else []
        case "reporter":
            return [issue.reporter.lower()]
    return []


def membership(name: str, values: list[str], context: JqlContext) -> Predicate:
    if name in DATE_FIELDS or name in TEXT_FIELDS:
        raise jql_error(f"The operator 'in' is not supported by the '{name}' field.")
    check_values(name, values, context)
    me = context.me.lower()
    wanted = {me if value.lower() == "currentuser()" else value.lower() for value in values}
    return lambda issue: any(value in wanted for value in values_of(issue, name))


def is_empty(issue: Issue, name: str) -> bool:
    if name in DATE_FIELDS:
        return getattr(issue, "resolution_date" if name == "resolutiondate" else name) is None
    return not values_of(issue, name)


def text_of(issue: Issue, name: str) -> str:
    if name == "summary":
        return issue.summary.lower()
    description = plain_text(issue.description).lower()
    return description if name == "description" else f"{issue.summary.lower()} {description}"
