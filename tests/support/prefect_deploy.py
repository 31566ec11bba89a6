"""Deploying one deployment of prefect.yaml to a test's Prefect server, as ``make up`` does."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def deploy_from_prefect_yaml(api_url: str, name: str) -> None:
    """Create the work pool and deploy ``name`` (no worker: triggered runs stay scheduled,
    which is enough to see what a trigger passes)."""
    env = {**os.environ, "PREFECT_API_URL": api_url, "PWD": str(ROOT)}
    for command in (
        ["work-pool", "create", "syncline-process", "--type", "process", "--overwrite"],
        ["--no-prompt", "deploy", "--name", name],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "prefect", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
