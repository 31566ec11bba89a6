"""Seeded issues: a realistic spread of types, priorities, statuses, labels and times,
the same for the same seed and start time."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sandboxes.jira import adf
from sandboxes.jira.model import Comment, Issue
from sandboxes.jira.store import IssueStore
from sandboxes.jira.workflow import DONE, DONE_RESOLUTION, ISSUE_TYPES, PRIORITIES, STATUSES

_SUBJECTS = (
    "Disk usage above 90% on",
    "Certificate expiring on",
    "Latency spike on",
    "Backup job failed on",
    "Patch rollout pending for",
    "Memory leak suspected on",
    "Login failures reported on",
    "Replication lag on",
)
_HOSTS = ("web-01", "web-02", "db-primary", "db-replica", "cache-03", "api-gw", "batch-07")
_LABELS = ("ops", "monitoring", "customer", "infra", "security", "network", "oncall")


def seed_issues(store: IssueStore, count: int, *, seed: int, now: datetime) -> list[Issue]:
    """Add ``count`` issues to ``store``, spread over the 30 days before ``now``."""
    rng = random.Random(f"jira-seed:{seed}")
    statuses = list(STATUSES.values())
    made = []
    next_id, next_numbers = store.next_ids()
    for index in range(count):
        project = store.config.projects[index % len(store.config.projects)]
        created = now - timedelta(seconds=rng.randrange(60, 30 * 86_400))
        updated = created + timedelta(
            seconds=rng.randrange(0, int((now - created).total_seconds()) + 1)
        )
        status = rng.choice(statuses)
        summary = f"{rng.choice(_SUBJECTS)} {rng.choice(_HOSTS)}"
        issue = Issue(
            id=next_id + index,
            key=f"{project}-{next_numbers[project]}",
            project=project,
            issue_type=rng.choice(ISSUE_TYPES),
            summary=summary,
            status=status,
            priority=rng.choice(PRIORITIES),
            created=created,
            updated=updated,
            reporter=store.config.account_id,
            description=adf.doc(f"{summary}. Seen by monitoring; see the runbook."),
            labels=sorted(rng.sample(_LABELS, rng.randrange(0, 3))),
            resolution=DONE_RESOLUTION if status == DONE else None,
            resolution_date=updated if status == DONE else None,
        )
        if rng.random() < 0.3:
            issue.comments.append(
                Comment(
                    str(store.new_comment_id()),
                    adf.doc("Looking into it."),
                    store.config.account_id,
                    updated,
                    updated,
                    store.config.account_id,
                )
            )
        next_numbers[project] += 1
        store.insert(issue)
        made.append(issue)
    return made
