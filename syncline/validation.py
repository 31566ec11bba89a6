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


def check_alert_deployments(path: Path, alert_specs: dict[str, Any]) -> list[str]:
    """Every alert-to-incident deployment names an alert spec that exists."""
    if not path.exists():
        return []
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    problems: list[str] = []
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
        if not deployment.get("triggers"):
            problems.append(
                f"{path}: deployment {name!r}: no triggers: alerts would reach incidents only "
                f"through the warm path"
            )
    return problems
