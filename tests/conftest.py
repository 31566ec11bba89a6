"""Shared fixtures: the sandbox, real SQLite and PostgreSQL databases, a real Prefect server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

# Before anything imports Prefect: no telemetry, a patient ephemeral server, fast recorder.
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"] = "200"
os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"] = "syncline"
os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"

import httpx
import pytest
import sqlalchemy as sa

from sandboxes.core.server import BackgroundServer
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig

ROOT = Path(__file__).resolve().parents[1]
SPECS_DIR = ROOT / "deployments"
SANDBOX_URL = "https://sandbox.service-now.com"
POSTGRES_ENV = "SYNCLINE_TEST_POSTGRES_URL"


@pytest.fixture
def sandbox() -> ServiceNowSandbox:
    """A small, deterministic ServiceNow instance, in-process."""
    return ServiceNowSandbox(
        ServiceNowSandboxConfig(cmdb_ci_server=2_000, incident=50, sys_user=100, seed=7)
    )


@pytest.fixture
def sandbox_transport(sandbox: ServiceNowSandbox) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=sandbox.app)


@pytest.fixture
def sandbox_server(sandbox: ServiceNowSandbox) -> Iterator[BackgroundServer]:
    with BackgroundServer(sandbox.app) as server:
        yield server


def postgres_admin_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    admin_url = postgres_admin_url()
    if admin_url is None:
        pytest.skip(f"{POSTGRES_ENV} is not set: no PostgreSQL to test against")
    name = f"syncline_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        sa.make_url(admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(admin_url).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'reporting.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each SQL test runs on SQLite and, where configured, on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'reporting.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """One real Prefect server (the test harness) for the whole session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())
