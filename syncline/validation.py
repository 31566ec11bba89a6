"""Cross-checks between integration specs and ``prefect.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from syncline.specs import IntegrationSpec

SYNC_ENTRYPOINT = "flows/scheduled_sync.py:scheduled_sync"
ESCALATION_ENTRYPOINT = "flows/escalation.py:escalation"
# Deployments that run an integration on the spec's schedule (an escalation's is its polling).
SCHEDULED_ENTRYPOINTS = frozenset({SYNC_ENTRYPOINT, ESCALATION_ENTRYPOINT})


def check_prefect_yaml(path: Path, specs: dict[str, IntegrationSpec]) -> list[str]:
    """Every deployment's integration exists and its schedule matches the spec's.

    ``specs`` holds a two-way spec as its two views (``<name>-a-to-b``, ``-b-to-a``), which
    carry its schedule; a deployment names the two-way integration itself."""
    if not path.exists():
        return []
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    problems: list[str] = []
    for deployment in document.get("deployments") or []:
        name = deployment.get("name", "?")
        integration = (deployment.get("parameters") or {}).get("integration")
        if integration is None:
            continue
        spec = specs.get(integration) or specs.get(f"{integration}-a-to-b")
        if spec is None:
            problems.append(
                f"{path}: deployment {name!r}: no integration spec named {integration!r}"
            )
            continue
        schedules = [s for s in deployment.get("schedules") or [] if "cron" in s]
        entrypoint = deployment.get("entrypoint")
        if entrypoint == ESCALATION_ENTRYPOINT and not deployment.get("triggers"):
            problems.append(
                f"{path}: deployment {name!r}: no triggers: record changes would be carried "
                "only by the warm path and the polling schedule"
            )
        if spec.schedule is None or entrypoint not in SCHEDULED_ENTRYPOINTS:
            continue
        if not any(
            s["cron"] == spec.schedule.cron and s.get("timezone", "UTC") == spec.schedule.timezone
            for s in schedules
        ):
            problems.append(
                f"{path}: deployment {name!r}: schedule differs from {integration}'s spec "
                f"(cron {spec.schedule.cron!r}, timezone {spec.schedule.timezone})"
            )
    return problems


ALERT_ENTRYPOINT = "flows/alert_to_incident.py:alert_to_incident"


def _polls(deployment: dict[str, Any]) -> bool:
    """A polling deployment: ``poll: true`` in its parameters or its schedules'."""
    parameter_sets = [deployment.get("parameters") or {}] + [
        schedule.get("parameters") or {} for schedule in deployment.get("schedules") or []
    ]
    return any(parameters.get("poll") is True for parameters in parameter_sets)


def check_alert_deployments(path: Path, alert_specs: dict[str, Any]) -> list[str]:
    """Every alert-to-incident deployment names an alert spec that exists; a triggered one
    has triggers, a polling one (``poll: true``) a cron schedule and one run at a time; an
    alert spec with a ``poll:`` section is polled by some deployment."""
    if not path.exists():
        return []
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    problems: list[str] = []
    polled: set[str] = set()
    for deployment in document.get("deployments") or []:
        if deployment.get("entrypoint") != ALERT_ENTRYPOINT:
            continue
        name = deployment.get("name", "?")
        wanted = (deployment.get("parameters") or {}).get("alert_spec", "alert-to-servicenow")
        if wanted not in alert_specs:
            known = ", ".join(sorted(alert_specs)) or "none"
            problems.append(
                f"{path}: deployment {name!r}: no alert spec named {wanted!r} in "
                f"deployments/alerts (found: {known})"
            )
        if _polls(deployment):
            polled.add(wanted)
            problems.extend(_polling_problems(path, name, deployment))
        elif not deployment.get("triggers"):
            problems.append(
                f"{path}: deployment {name!r}: no triggers: alerts would reach incidents only "
                f"through the warm path"
            )
    for spec_name, spec in sorted(alert_specs.items()):
        if getattr(spec, "poll", None) is not None and spec_name not in polled:
            problems.append(
                f"{path}: alert spec {spec_name!r} has a poll section but no deployment polls "
                f"it (entrypoint {ALERT_ENTRYPOINT}, parameters poll: true, a cron schedule)"
            )
    return problems


def _polling_problems(path: Path, name: str, deployment: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    if not any("cron" in schedule for schedule in deployment.get("schedules") or []):
        problems.append(
            f"{path}: deployment {name!r}: poll: true without a cron schedule: the poll "
            f'would never run (e.g. cron: "* * * * *")'
        )
    limit = deployment.get("concurrency_limit")
    limit_value = limit.get("limit") if isinstance(limit, dict) else limit
    if limit_value != 1:
        problems.append(
            f"{path}: deployment {name!r}: a polling deployment needs concurrency_limit 1: "
            f"two polls at once would read the same rows and race for the cursor"
        )
    return problems
