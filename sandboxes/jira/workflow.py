"""The site's configuration that issues refer to: the default workflow (statuses with their
categories, and the transitions between them), priorities and issue types.

The workflow is Jira's classic default: To Do -> In Progress -> Done. Transition ids are
the ones Jira's default workflow uses (11 To Do, 21 In Progress, 31 Done) and which are
offered depends on the current status, so a client must ask ``GET .../transitions`` rather
than assume an id; reaching Done sets the resolution, leaving it clears it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class StatusCategory:
    id: int
    key: str
    name: str
    color: str


@dataclass(frozen=True, slots=True)
class Status:
    id: str
    name: str
    category: StatusCategory


@dataclass(frozen=True, slots=True)
class Transition:
    id: str
    name: str
    to: Status


@dataclass(frozen=True, slots=True)
class Named:
    """A priority or issue type: an id, a name and what Jira says about it."""

    id: str
    name: str
    description: str = ""


NEW = StatusCategory(2, "new", "To Do", "blue-gray")
IN_PROGRESS_CATEGORY = StatusCategory(4, "indeterminate", "In Progress", "yellow")
DONE_CATEGORY = StatusCategory(3, "done", "Done", "green")

TO_DO = Status("10000", "To Do", NEW)
IN_PROGRESS = Status("3", "In Progress", IN_PROGRESS_CATEGORY)
DONE = Status("10001", "Done", DONE_CATEGORY)
STATUSES = {status.id: status for status in (TO_DO, IN_PROGRESS, DONE)}
INITIAL_STATUS = TO_DO

# Transitions offered from each status.
TRANSITIONS: dict[str, tuple[Transition, ...]] = {
    TO_DO.id: (Transition("21", "Start progress", IN_PROGRESS), Transition("31", "Done", DONE)),
    IN_PROGRESS.id: (Transition("11", "Stop progress", TO_DO), Transition("31", "Done", DONE)),
    DONE.id: (Transition("11", "Reopen", TO_DO),),
}

PRIORITIES = (
    Named("1", "Highest", "This problem will block progress."),
    Named("2", "High", "Serious problem that could block progress."),
    Named("3", "Medium", "Has the potential to affect progress."),
    Named("4", "Low", "Minor problem or easily worked around."),
    Named("5", "Lowest", "Trivial problem with little or no impact on progress."),
)
DEFAULT_PRIORITY = PRIORITIES[2]
ISSUE_TYPES = (
    Named("10001", "Task", "A small, distinct piece of work."),
    Named("10002", "Bug", "A problem or error."),
    Named("10003", "Incident", "An unplanned interruption of a service."),
    Named("10004", "Story", "A user story."),
)
DONE_RESOLUTION = Named("10000", "Done", "Work has been completed on this issue.")


def find_named(options: tuple[Named, ...], reference: Any) -> Named | None:
    """The option a write refers to by ``{"id"}`` or ``{"name"}``."""
    if not isinstance(reference, dict):
        return None
    for option in options:
        if str(reference.get("id", "")) == option.id or reference.get("name") == option.name:
            return option
    return None


def transitions_from(status_id: str) -> tuple[Transition, ...]:
    return TRANSITIONS.get(status_id, ())


class Renderer:
    """These objects as the REST API shows them, with ``self`` links on ``site_url``."""

    def __init__(self, site_url: str) -> None:
        self.base = site_url.rstrip("/") + "/rest/api/3"

    def category(self, category: StatusCategory) -> dict[str, Any]:
        return {
            "self": f"{self.base}/statuscategory/{category.id}",
            "id": category.id,
            "key": category.key,
            "colorName": category.color,
            "name": category.name,
        }

    def status(self, status: Status) -> dict[str, Any]:
        return {
            "self": f"{self.base}/status/{status.id}",
            "description": "",
            "iconUrl": f"{self.base[: -len('/rest/api/3')]}/images/icons/statuses/generic.png",
            "name": status.name,
            "id": status.id,
            "statusCategory": self.category(status.category),
        }

    def transition(self, transition: Transition) -> dict[str, Any]:
        return {
            "id": transition.id,
            "name": transition.name,
            "to": self.status(transition.to),
            "hasScreen": False,
            "isGlobal": False,
            "isInitial": False,
            "isAvailable": True,
            "isConditional": False,
            "isLooped": False,
        }

    def priority(self, priority: Named) -> dict[str, Any]:
        return {
            "self": f"{self.base}/priority/{priority.id}",
            "iconUrl": f"{self.base[: -len('/rest/api/3')]}/images/icons/priorities/"
            f"{priority.name.lower()}.svg",
            "name": priority.name,
            "id": priority.id,
        }

    def issue_type(self, issue_type: Named) -> dict[str, Any]:
        return {
            "self": f"{self.base}/issuetype/{issue_type.id}",
            "id": issue_type.id,
            "description": issue_type.description,
            "name": issue_type.name,
            "subtask": False,
            "hierarchyLevel": 0,
        }

    def resolution(self, resolution: Named) -> dict[str, Any]:
        return {
            "self": f"{self.base}/resolution/{resolution.id}",
            "id": resolution.id,
            "description": resolution.description,
            "name": resolution.name,
        }
