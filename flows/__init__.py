"""Prefect flows: thin orchestration over the engine in ``syncline``."""

import logging
import os

# Before Prefect reads its settings: no telemetry (pyproject.toml says so too, for Prefect
# processes started in the project folder), and the connectors' own log lines (retries,
# rate limits) in each run's log in the UI.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "syncline")
# The engine also runs outside flow runs (CLI, benchmarks): its lines then stay local.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
logging.getLogger("syncline").setLevel(logging.INFO)
