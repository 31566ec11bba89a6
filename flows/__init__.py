"""Prefect flows: thin orchestration over the engine in ``syncline``."""

import os

# Before Prefect reads its settings: no telemetry (pyproject.toml says so too, for Prefect
# processes started in the project folder).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
