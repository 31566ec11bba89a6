"""prefect.yaml deploys as it stands, to a real Prefect server and a process work pool."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import Deployment

from tests.conftest import ROOT

pytestmark = pytest.mark.prefect


def prefect_cli(api_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        cwd=ROOT,
        env={**os.environ, "PREFECT_API_URL": api_url, "PWD": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_prefect_deploy_all_creates_the_scheduled_deployments(prefect_server: str) -> None:
    pool = prefect_cli(
        prefect_server,
        "work-pool",
        "create",
        "syncline-process",
        "--type",
        "process",
        "--overwrite",
    )
    assert pool.returncode == 0, pool.stdout + pool.stderr
    deployed = prefect_cli(prefect_server, "--no-prompt", "deploy", "--all")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    async def read() -> list[Deployment]:
        async with get_client() as client:
            return [d for d in await client.read_deployments()]

    deployments = {d.name: d for d in asyncio.run(read())}
    nightly = deployments["cmdb-nightly"]
    assert nightly.work_pool_name == "syncline-process"
    assert nightly.parameters == {"integration": "cmdb-nightly"}
    assert nightly.entrypoint == "flows/scheduled_sync.py:scheduled_sync"
    (schedule,) = nightly.schedules
    assert schedule.schedule.cron == "0 2 * * *"  # type: ignore[union-attr]
    assert schedule.schedule.timezone == "Europe/Zurich"  # type: ignore[union-attr]
    assert nightly.global_concurrency_limit is not None
    assert nightly.global_concurrency_limit.limit == 1
    assert "replay-dead-letters" in deployments
    alerts = deployments["alert-to-servicenow"]
    assert alerts.entrypoint == "flows/alert_to_incident.py:alert_to_incident"
    assert alerts.parameters == {"alert_spec": "alert-to-servicenow"}
    assert alerts.global_concurrency_limit is not None
    assert alerts.global_concurrency_limit.limit == 1
    assert alerts.concurrency_options is not None
    assert alerts.concurrency_options.collision_strategy.value == "CANCEL_NEW"

    async def automations() -> list[Any]:
        async with get_client() as client:
            return await client.read_automations_by_name("alert-to-servicenow__automation_1")

    (automation,) = asyncio.run(automations())
    trigger = automation.trigger
    assert trigger.expect == {"syncline.alert.*"}
    assert trigger.match.model_dump()["prefect.resource.id"] == "syncline.alert.*"
    (action,) = automation.actions
    assert action.deployment_id == alerts.id
    # A v1-style template: Prefect renders it with the triggering event when the action runs.
    assert action.parameters == {"event_id": "{{ event.id | string }}"}
