"""A Prefect server in a process of its own, which a test can stop and start again.

The session's test harness cannot be stopped; the gateway's promise is about a server that
goes away and comes back, on the same address and the same database.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrefectServerProcess:
    """``prefect server start`` on ``port`` with its database under ``home``."""

    def __init__(self, home: Path, port: int) -> None:
        self.home = home
        self.port = port
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.log_path = home / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> None:
        env = {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
            # Events are written to the database in batches: read them back sooner.
            "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.25",
        }
        env.pop("PREFECT_API_URL", None)
        self.home.mkdir(parents=True, exist_ok=True)
        prefect = str(Path(sys.executable).parent / "prefect")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stopped as a group, by its pid
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the Prefect server exited; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the Prefect server did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def events(self, **event_filter: Any) -> list[dict[str, Any]]:
        """Every stored event matching ``event_filter`` (the API's EventFilter fields)."""
        body = {"filter": {"order": "ASC", **event_filter}, "limit": 50}
        response = httpx.post(f"{self.api_url}/events/filter", json=body, timeout=10)
        if response.is_error:
            raise AssertionError(f"{response.status_code}: {response.text[:500]}")
        page = response.json()
        events: list[dict[str, Any]] = page["events"]
        while page.get("next_page"):
            page = httpx.get(page["next_page"], timeout=10).json()
            events += page["events"]
        return events
