"""The site's issues and what writes do to them: ids and keys, ``updated`` from the
instance clock, the changelog, the resolution following the status, comments, entity
properties, the events each write publishes, and the saved state (``save``/``load``).

What changes ``updated``: an edit that changes a value, a transition, and adding, editing or
deleting a comment (as on Jira Cloud). Setting or deleting an entity property does not: it
is not an issue field and writes no changelog. Every write is stamped ``changed_at`` so
search can lag behind it (``search_lag_ms``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from sandboxes.core.clock import InstanceClock
from sandboxes.jira import events as webhook_events
from sandboxes.jira.config import JiraSandboxConfig
from sandboxes.jira.errors import JiraApiError, bad_request, issue_not_found
from sandboxes.jira.events import IssueEvent
from sandboxes.jira.jql_fields import JqlContext
from sandboxes.jira.model import (
    Comment,
    Issue,
    changelog_items,
    issue_from_state,
    issue_state,
    tracked,
)
from sandboxes.jira.rendering import JiraRenderer
from sandboxes.jira.workflow import (
    DEFAULT_PRIORITY,
    DONE_CATEGORY,
    DONE_RESOLUTION,
    INITIAL_STATUS,
    ISSUE_TYPES,
    PRIORITIES,
    STATUSES,
    Transition,
    transitions_from,
)
from sandboxes.jira.writes import Changes, check_property, read_changes, read_properties

STATE_FORMAT = 1
FIRST_ISSUE_ID = 10_001


class IssueStore:
    """Issues of one simulated Jira site; callers hold ``lock`` around every call."""

    def __init__(self, config: JiraSandboxConfig, clock: InstanceClock) -> None:
        self.config = config
        self.clock = clock
        self.lock = threading.RLock()
        self.renderer = JiraRenderer(config)
        self.publish: Callable[[IssueEvent], None] = lambda event: None
        self.reset()

    def reset(self) -> None:
        """No issues; ids and keys start again."""
        self.issues: dict[int, Issue] = {}
        self._by_key: dict[str, int] = {}
        self._next_id = FIRST_ISSUE_ID
        self._next_number = dict.fromkeys(self.config.projects, 1)
        self._next_comment = 10_000
        self._next_changelog = 10_000

    @property
    def account_ids(self) -> frozenset[str]:
        return frozenset({self.config.account_id})

    # --- reading --------------------------------------------------------------------------

    def find(self, id_or_key: str) -> Issue:
        """The issue with this id or key (keys case-insensitively); 404 otherwise."""
        issue_id = int(id_or_key) if id_or_key.isdigit() else self._by_key.get(id_or_key.upper())
        issue = self.issues.get(issue_id) if issue_id is not None else None
        if issue is None:
            raise issue_not_found()
        return issue

    def comment(self, issue: Issue, comment_id: str) -> Comment:
        for comment in issue.comments:
            if comment.id == comment_id:
                return comment
        raise JiraApiError(404, ["Can not find a comment for the id: " + comment_id + "."])

    def jql_context(self, account_id: str) -> JqlContext:
        """What a query by ``account_id`` is read against now."""
        return JqlContext(self.clock.now(), self.config.zone, account_id, self._value_exists)

    def _value_exists(self, field: str, value: str) -> bool:
        if field == "key":
            return value.upper() in self._by_key or (value.isdigit() and int(value) in self.issues)
        if field == "project":
            projects = self.renderer.projects
            return value.upper() in projects or value in projects.values()
        named: list[tuple[str, str]] = []
        if field == "status":
            named = [(status.id, status.name) for status in STATUSES.values()]
        elif field in ("priority", "issuetype"):
            named = [(o.id, o.name) for o in (PRIORITIES if field == "priority" else ISSUE_TYPES)]
        return any(value in (option_id, name.lower()) for option_id, name in named)

    # --- writes ---------------------------------------------------------------------------

    def create(self, body: dict[str, Any], actor: str) -> Issue:
        project = self._project(body.get("fields"))
        changes = read_changes(body, creating=True, account_ids=self.account_ids)
        properties = read_properties(body.get("properties"))
        now = self.clock.now()
        issue = Issue(
            id=self._next_id,
            key=f"{project}-{self._next_number[project]}",
            project=project,
            issue_type=changes.values["issuetype"],
            summary=changes.values["summary"],
            status=INITIAL_STATUS,
            priority=changes.values.get("priority") or DEFAULT_PRIORITY,
            created=now,
            updated=now,
            reporter=actor,
            properties=properties,
        )
        self._apply(issue, changes, actor, now)
        self._next_id += 1
        self._next_number[project] += 1
        self.issues[issue.id] = issue
        self._by_key[issue.key] = issue.id
        issue.changed_at = time.monotonic()
        self._emit(webhook_events.ISSUE_CREATED, "issue_created", issue, actor, now)
        for comment in issue.comments:
            self._emit_comment("created", issue, comment, actor, now)
        return issue

    def edit(self, issue: Issue, body: dict[str, Any], actor: str) -> None:
        changes = read_changes(body, account_ids=self.account_ids)
        self._change(issue, changes, actor, "issue_updated")

    def transition(self, issue: Issue, body: dict[str, Any], actor: str) -> None:
        wanted = body.get("transition")
        transition_id = str(wanted.get("id", "")) if isinstance(wanted, dict) else ""
        chosen = _offered(issue, transition_id)
        if chosen is None:
            raise bad_request(f"Transition id '{transition_id}' is not valid for this issue.")
        changes = read_changes(body, transitioning=True, account_ids=self.account_ids)
        self._change(issue, changes, actor, "issue_generic", transition=chosen)

    def delete(self, issue: Issue, actor: str) -> None:
        now = self.clock.now()
        del self.issues[issue.id]
        del self._by_key[issue.key]
        self._emit(webhook_events.ISSUE_DELETED, "issue_deleted", issue, actor, now)

    def add_comment(self, issue: Issue, body: dict[str, Any], actor: str) -> Comment:
        comment = self._new_comment(body, actor, self.clock.now())
        issue.comments.append(comment)
        self._touch(issue, comment.created)
        self._emit_comment("created", issue, comment, actor, comment.created)
        return comment

    def edit_comment(
        self, issue: Issue, comment: Comment, body: dict[str, Any], actor: str
    ) -> None:
        now = self.clock.now()
        checked = self._new_comment(body, actor, now)
        comment.body = checked.body
        comment.visibility = checked.visibility or comment.visibility
        comment.updated = now
        comment.update_author = actor
        self._touch(issue, now)
        self._emit_comment("updated", issue, comment, actor, now)

    def delete_comment(self, issue: Issue, comment: Comment, actor: str) -> None:
        now = self.clock.now()
        issue.comments.remove(comment)
        self._touch(issue, now)
        self._emit_comment("deleted", issue, comment, actor, now)

    def set_property(self, issue: Issue, key: str, value: Any) -> bool:
        """Whether the property is new (201) rather than replaced (200)."""
        check_property(key, value)
        created = key not in issue.properties
        issue.properties[key] = value
        return created

    # --- internals ------------------------------------------------------------------------

    def _project(self, fields: Any) -> str:
        reference = fields.get("project") if isinstance(fields, dict) else None
        if isinstance(reference, dict):
            key = str(reference.get("key", "")).upper()
            if key in self._next_number:
                return key
            by_id = {v: k for k, v in self.renderer.projects.items()}
            if str(reference.get("id", "")) in by_id:
                return by_id[str(reference["id"])]
        raise JiraApiError(400, [], {"project": "Specify a valid project ID or key"})

    def _new_comment(self, body: dict[str, Any], actor: str, now: datetime) -> Comment:
        checked = read_changes({"update": {"comment": [{"add": {"body": body.get("body")}}]}})
        visibility = body.get("visibility")
        if visibility is not None and not (
            isinstance(visibility, dict) and visibility.get("type") in ("group", "role")
        ):
            raise bad_request("Visibility must be a role or a group.")
        self._next_comment += 1
        return Comment(
            str(self._next_comment), checked.comments[0], actor, now, now, actor, visibility
        )

    def _change(
        self,
        issue: Issue,
        changes: Changes,
        actor: str,
        type_name: str,
        *,
        transition: Transition | None = None,
    ) -> None:
        now = self.clock.now()
        names = self._display_names()
        before = tracked(issue, names)
        if transition is not None:
            issue.status = transition.to
            done = transition.to.category == DONE_CATEGORY
            if done and issue.resolution is None:
                issue.resolution, issue.resolution_date = DONE_RESOLUTION, now
            if not done:
                issue.resolution, issue.resolution_date = None, None
        self._apply(issue, changes, actor, now)
        items = changelog_items(before, tracked(issue, names))
        if not items and not changes.comments and transition is None:
            return
        self._touch(issue, now)
        if items or transition is not None:
            self._next_changelog += 1
            changelog = (str(self._next_changelog), items)
            self._emit(webhook_events.ISSUE_UPDATED, type_name, issue, actor, now, changelog)
        for comment in issue.comments[len(issue.comments) - len(changes.comments) :]:
            self._emit_comment("created", issue, comment, actor, now)

    def _apply(self, issue: Issue, changes: Changes, actor: str, now: datetime) -> None:
        for name, value in changes.values.items():
            match name:
                case "summary" | "description" | "priority" | "labels" | "assignee" | "duedate":
                    setattr(issue, name, value)
                case "issuetype":
                    issue.issue_type = value
                case "resolution":
                    issue.resolution = value
                    issue.resolution_date = now if value is not None else None
                case _:
                    issue.custom[name] = value
        for verb, label in changes.label_ops:
            if verb == "add" and label not in issue.labels:
                issue.labels.append(label)
            elif verb == "remove" and label in issue.labels:
                issue.labels.remove(label)
        for body in changes.comments:
            self._next_comment += 1
            issue.comments.append(Comment(str(self._next_comment), body, actor, now, now, actor))

    def _touch(self, issue: Issue, now: datetime) -> None:
        issue.updated = now
        issue.changed_at = time.monotonic()

    def _display_names(self) -> dict[str, str]:
        return {self.config.account_id: self.config.display_name}

    def _emit(
        self,
        name: str,
        type_name: str,
        issue: Issue,
        actor: str,
        at: datetime,
        changelog: tuple[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        self.publish(
            webhook_events.issue_event(
                self.renderer, name, type_name, issue, actor=actor, at=at, changelog=changelog
            )
        )

    def _emit_comment(
        self, change: str, issue: Issue, comment: Comment, actor: str, at: datetime
    ) -> None:
        for event in webhook_events.comment_events(
            self.renderer, change, issue, comment, actor=actor, at=at
        ):
            self.publish(event)

    # --- saved state ----------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write every issue (with comments and properties) and the id counters to
        ``path``; the clock, faults and webhooks are not saved."""
        with self.lock:
            state = {
                "format": STATE_FORMAT,
                "issues": [issue_state(issue) for issue in self.issues.values()],
                "next_id": self._next_id,
                "next_number": self._next_number,
                "next_comment": self._next_comment,
                "next_changelog": self._next_changelog,
            }
            data = orjson.dumps(state)
        Path(path).write_bytes(data)

    def load(self, path: str | Path) -> None:
        """Replace every issue with those saved in ``path`` by ``save``."""
        state = orjson.loads(Path(path).read_bytes())
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"{path}: not a saved Jira sandbox (format {STATE_FORMAT})")
        issues = [issue_from_state(saved) for saved in state["issues"]]
        with self.lock:
            self.reset()
            self.issues = {issue.id: issue for issue in issues}
            self._by_key = {issue.key: issue.id for issue in issues}
            self._next_id = int(state["next_id"])
            self._next_number.update({k: int(v) for k, v in state["next_number"].items()})
            self._next_comment = int(state["next_comment"])
            self._next_changelog = int(state["next_changelog"])

    def insert(self, issue: Issue) -> None:
        """Add a ready-made issue (seeding), keeping the counters ahead of it."""
        self.issues[issue.id] = issue
        self._by_key[issue.key] = issue.id
        self._next_id = max(self._next_id, issue.id + 1)
        number = int(issue.key.rsplit("-", 1)[1])
        self._next_number[issue.project] = max(self._next_number[issue.project], number + 1)

    def new_comment_id(self) -> int:
        self._next_comment += 1
        return self._next_comment

    def next_ids(self) -> tuple[int, dict[str, int]]:
        return self._next_id, dict(self._next_number)


def _offered(issue: Issue, transition_id: str) -> Transition | None:
    for transition in transitions_from(issue.status.id):
        if transition.id == transition_id:
            return transition
    return None
