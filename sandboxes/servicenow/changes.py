"""Day-to-day edits of the ServiceNow sandbox's records: what ``touch`` writes, so that an
incremental reader sees plausible changes (a patched OS, an incident moving on, a new phone
number) rather than noise.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChangePool:
    """sys_ids a change may point a reference at."""

    users: Sequence[str]
    groups: Sequence[str]
    departments: Sequence[str]


@dataclass(frozen=True, slots=True)
class Change:
    """Field values to write and the user who writes them."""

    fields: dict[str, str]
    user: str


_NEW_TITLES = (
    "Senior Systems Engineer",
    "Engineering Manager",
    "Staff Engineer",
    "Principal Engineer",
    "Team Lead",
)


def realistic_change(
    table: str,
    record: Mapping[str, str],
    rng: random.Random,
    pool: ChangePool,
    text_fields: Sequence[str] = (),
) -> Change:
    """One plausible edit of ``record`` in ``table`` (a storage root: ``cmdb_ci`` for every
    CI class), always different from what is stored: discovery finding a patched OS or more
    memory on a CI, an incident moving through its states, an HR feed changing a user."""
    if table == "cmdb_ci":
        return Change(_ci_change(record, rng, pool), "discovery")
    if table == "incident":
        return Change(_incident_change(record, rng, pool), rng.choice(("admin", "itil", "system")))
    if table == "sys_user":
        return Change(_user_change(record, rng, pool), "system")
    if not text_fields:
        return Change({}, "system")
    name = rng.choice(text_fields)
    updated = f"{record.get(name, '')} (updated {rng.randint(1, 9999)})".strip()
    return Change({name: updated}, "system")


def _next_version(version: str) -> str:
    head, _, tail = (version or "1.0").rpartition(".")
    if tail.isdigit():
        return f"{head}.{int(tail) + 1}" if head else str(int(tail) + 1)
    return f"{version}.1"


def _other(rng: random.Random, options: Sequence[str], current: str) -> str | None:
    candidates = [option for option in options if option != current]
    return rng.choice(candidates) if candidates else None


def _ci_change(record: Mapping[str, str], rng: random.Random, pool: ChangePool) -> dict[str, str]:
    changes: dict[str, str] = {}
    aspects = ("os_version", "ram", "operational_status", "disk_space", "support_group",
               "assigned_to", "cpu_count")  # fmt: skip
    for aspect in rng.sample(aspects, k=rng.randint(1, 2)):
        if aspect == "os_version":
            changes["os_version"] = _next_version(record.get("os_version", ""))
        elif aspect == "ram":
            ram = int(record.get("ram") or "4096")
            changes["ram"] = str(ram * 2 if ram < 1_048_576 else ram // 2)
        elif aspect == "cpu_count":
            cpus = int(record.get("cpu_count") or "2")
            changes["cpu_count"] = str(cpus * 2 if cpus < 128 else cpus // 2)
        elif aspect == "disk_space":
            disk = float(record.get("disk_space") or "100")
            changes["disk_space"] = str(int(disk) + rng.choice((50, 100, 250, 500)))
        elif aspect == "operational_status":
            status = _other(rng, ("1", "2", "3", "4", "5"), record.get("operational_status", ""))
            if status is not None:
                changes["operational_status"] = status
        else:
            reference_pool = pool.groups if aspect == "support_group" else pool.users
            target = _other(rng, reference_pool, record.get(aspect, ""))
            if target is not None:
                changes[aspect] = target
    if not changes:
        changes["os_version"] = _next_version(record.get("os_version", ""))
    return changes


def _incident_change(
    record: Mapping[str, str], rng: random.Random, pool: ChangePool
) -> dict[str, str]:
    state = record.get("state", "1")
    if state == "1":
        assignee = record.get("assigned_to") or (rng.choice(pool.users) if pool.users else "")
        return {"state": "2", "assigned_to": assignee}
    if state == "2":
        if rng.random() < 0.6:
            return {
                "state": "6",
                "close_code": "Solved (Permanently)",
                "close_notes": "Fixed and verified with the caller.",
            }
        return {"state": "3"}
    if state == "3":
        return {"state": "2"}
    if state == "6":
        return {"state": "7"}
    return {"close_notes": (record.get("close_notes", "") + " Reviewed.").strip()}


def _user_change(record: Mapping[str, str], rng: random.Random, pool: ChangePool) -> dict[str, str]:
    aspect = rng.randrange(3)
    if aspect == 0:
        title = _other(rng, _NEW_TITLES, record.get("title", ""))
        if title is not None:
            return {"title": title}
    if aspect == 1:
        department = _other(rng, pool.departments, record.get("department", ""))
        if department is not None:
            return {"department": department}
    phone = record.get("phone", "")
    while phone == record.get("phone", ""):
        phone = f"+44 20 7946 {rng.randint(0, 9999):04d}"
    return {"phone": phone}
