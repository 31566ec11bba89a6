"""Issues, comments and users as the REST API v3 shows them: timestamps in the user's time
zone (``2024-05-01T10:05:00.000+0200``), ``self`` links on the site URL, and only the
fields asked for (``fields=summary,status``, ``*all``, ``*navigable``, ``-comment``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sandboxes.jira.config import JiraSandboxConfig
from sandboxes.jira.model import Comment, Issue
from sandboxes.jira.workflow import Renderer

ALL_FIELDS = (
    "summary",
    "description",
    "issuetype",
    "project",
    "priority",
    "status",
    "labels",
    "created",
    "updated",
    "reporter",
    "creator",
    "assignee",
    "resolution",
    "resolutiondate",
    "duedate",
    "comment",
)
NOT_NAVIGABLE = frozenset({"comment"})


def selected_fields(requested: Sequence[str] | None, custom: Iterable[str]) -> list[str]:
    """The fields to show for ``fields=...``; None means all (a single-issue GET)."""
    everything = [*ALL_FIELDS, *sorted(custom)]
    if requested is None:
        return everything
    chosen: list[str] = []
    excluded = set()
    for name in requested:
        name = name.strip()
        if name == "*all":
            chosen.extend(everything)
        elif name == "*navigable":
            chosen.extend(f for f in everything if f not in NOT_NAVIGABLE)
        elif name.startswith("-"):
            excluded.add(name[1:])
        elif name in everything:
            chosen.append(name)
    return [name for name in dict.fromkeys(chosen) if name not in excluded]


def split_list(values: Sequence[str]) -> list[str]:
    """Query values such as ``fields=a,b&fields=c`` as one list."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


class JiraRenderer:
    """Renders the sandbox's objects for one site and user time zone."""

    def __init__(self, config: JiraSandboxConfig) -> None:
        self.config = config
        self.site = config.site_url.rstrip("/")
        self.api = f"{self.site}/rest/api/3"
        self.workflow = Renderer(self.site)
        self.projects = {key: str(10_000 + index) for index, key in enumerate(config.projects)}

    @property
    def zone(self) -> ZoneInfo:
        return self.config.zone

    def timestamp(self, moment: datetime | None) -> str | None:
        if moment is None:
            return None
        local = moment.astimezone(self.zone)
        return (
            local.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{local.microsecond // 1000:03d}"
            + (local.strftime("%z"))
        )

    def user(self, account_id: str | None) -> dict[str, Any] | None:
        if account_id is None:
            return None
        me = account_id == self.config.account_id
        return {
            "self": f"{self.api}/user?accountId={account_id}",
            "accountId": account_id,
            "emailAddress": self.config.email if me else f"{account_id}@example.com",
            "displayName": self.config.display_name if me else f"User {account_id[-4:]}",
            "active": True,
            "timeZone": self.config.time_zone,
            "accountType": "atlassian",
        }

    def project(self, key: str) -> dict[str, Any]:
        project_id = self.projects.get(key, "10000")
        return {
            "self": f"{self.api}/project/{project_id}",
            "id": project_id,
            "key": key,
            "name": f"{key} project",
            "projectTypeKey": "software",
            "simplified": False,
        }

    def comment(self, issue: Issue, comment: Comment) -> dict[str, Any]:
        rendered: dict[str, Any] = {
            "self": f"{self.api}/issue/{issue.id}/comment/{comment.id}",
            "id": comment.id,
            "author": self.user(comment.author),
            "body": comment.body,
            "updateAuthor": self.user(comment.update_author),
            "created": self.timestamp(comment.created),
            "updated": self.timestamp(comment.updated),
            "jsdPublic": True,
        }
        if comment.visibility is not None:
            rendered["visibility"] = comment.visibility
        return rendered

    def comment_page(
        self, issue: Issue, comments: Sequence[Comment], start_at: int, max_results: int
    ) -> dict[str, Any]:
        page = comments[start_at : start_at + max_results]
        return {
            "startAt": start_at,
            "maxResults": max_results,
            "total": len(comments),
            "comments": [self.comment(issue, comment) for comment in page],
        }

    def field_value(self, issue: Issue, name: str) -> Any:
        workflow = self.workflow
        match name:
            case "summary":
                return issue.summary
            case "description":
                return issue.description
            case "issuetype":
                return workflow.issue_type(issue.issue_type)
            case "project":
                return self.project(issue.project)
            case "priority":
                return workflow.priority(issue.priority)
            case "status":
                return workflow.status(issue.status)
            case "labels":
                return list(issue.labels)
            case "created":
                return self.timestamp(issue.created)
            case "updated":
                return self.timestamp(issue.updated)
            case "reporter" | "creator":
                return self.user(issue.reporter)
            case "assignee":
                return self.user(issue.assignee)
            case "resolution":
                return workflow.resolution(issue.resolution) if issue.resolution else None
            case "resolutiondate":
                return self.timestamp(issue.resolution_date)
            case "duedate":
                return issue.duedate
            case "comment":
                return self.comment_page(issue, issue.comments, 0, 5000)
        return issue.custom.get(name)

    def issue(
        self,
        issue: Issue,
        fields: Sequence[str] | None = None,
        properties: Sequence[str] = (),
        *,
        only_id_without_fields: bool = False,
    ) -> dict[str, Any]:
        """The IssueBean. ``fields=None``: every field, unless ``only_id_without_fields``
        (search/jql without ``fields`` answers ids only)."""
        if fields is None and only_id_without_fields:
            return {"id": str(issue.id)}
        names = selected_fields(fields, issue.custom)
        rendered: dict[str, Any] = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,"
            "versionedRepresentations",
            "id": str(issue.id),
            "self": f"{self.api}/issue/{issue.id}",
            "key": issue.key,
            "fields": {name: self.field_value(issue, name) for name in names},
        }
        wanted = self.property_keys(issue, properties)
        if wanted:
            rendered["properties"] = {key: issue.properties[key] for key in wanted}
        return rendered

    @staticmethod
    def property_keys(issue: Issue, requested: Sequence[str]) -> list[str]:
        keys: list[str] = []
        for name in requested:
            if name == "*all":
                keys.extend(issue.properties)
            elif name in issue.properties:
                keys.append(name)
        return list(dict.fromkeys(keys))
