"""``syncline run`` leaves no Prefect server behind: not after a normal run, not after kill -9.

The first two run the real command in a child process (``python -m syncline_app.cli`` from this
tree), against a ServiceNow sandbox on loopback, with their own PREFECT_HOME and no
PREFECT_API_URL, so the command has to bring up a Prefect server itself. Processes are found
through ``/proc``: the command's descendants, and the server among them by its ``--port``.
The last two check ``temporary_prefect_server`` in this process: a configured server is used
as is, and one that does not come up is stopped and its log named.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandboxes.core.server import BackgroundServer
from sandboxes.servicenow import ServiceNowSandbox
from syncline_app.devstack import PrefectServerError, temporary_prefect_server
from tests.conftest import ROOT, SPECS_DIR

pytestmark = [
    pytest.mark.prefect,
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc; parent-death is Linux"),
]

SERVER_STARTUP_TIMEOUT = 150.0  # a fresh PREFECT_HOME runs ~20 s of migrations first
GONE_WITHIN = 10.0


# --- processes, through /proc -----------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    start_time: int  # clock ticks after boot: tells a reused pid from the original
    cmdline: tuple[str, ...]

    @property
    def port(self) -> int | None:
        """The ``--port`` a server process was started with."""
        if "--port" in self.cmdline[:-1]:
            return int(self.cmdline[self.cmdline.index("--port") + 1])
        return None


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def _parent_pids() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(pid: int) -> list[Proc]:
    parents = _parent_pids()
    found: list[Proc] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent != parent:
                continue
            fields = _stat(child)
            try:
                raw = Path(f"/proc/{child}/cmdline").read_bytes()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields is None or fields[0] == "Z":  # exited (a zombie has no cmdline)
                continue
            found.append(Proc(child, int(fields[19]), tuple(raw.decode().split("\0")[:-1])))
            frontier.append(child)
    return found


def alive(proc: Proc) -> bool:
    """Running, and the same process (a zombie waiting for init to reap it is gone)."""
    fields = _stat(proc.pid)
    return fields is not None and int(fields[19]) == proc.start_time and fields[0] != "Z"


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def server_healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def kill_leftovers(procs: list[Proc]) -> None:
    """So that a failing test does not leave servers running either."""
    for proc in procs:
        if alive(proc):
            os.kill(proc.pid, signal.SIGKILL)


# --- the command under test ---------------------------------------------------------------


class GatedApp:
    """The sandbox's Table API, holding every request while the gate is closed: keeps a
    sync in flight (and its Prefect server in use) for as long as a test needs."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.open = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        while scope["type"] == "http" and not self.open.is_set():
            await asyncio.sleep(0.05)
        await self.app(scope, receive, send)


@pytest.fixture
def gated_sandbox(sandbox: ServiceNowSandbox) -> Iterator[tuple[BackgroundServer, GatedApp]]:
    gated = GatedApp(sandbox.app)
    try:
        with BackgroundServer(gated) as server:
            yield server, gated
    finally:
        gated.open.set()


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PREFECT_HOME for the module: only the first server start pays for migrations."""
    return tmp_path_factory.mktemp("prefect-home")


@pytest.fixture
def run_env(
    gated_sandbox: tuple[BackgroundServer, GatedApp], prefect_home: Path, tmp_path: Path
) -> dict[str, str]:
    server, _ = gated_sandbox
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_API_", "PREFECT_PROFILE", "SYNCLINE_"))
    }
    env.update(
        {
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PYTHONPATH": str(ROOT),
            "SYNCLINE_SERVICENOW_URL": server.url,
            "SYNCLINE_SERVICENOW_USER": "admin",
            "SYNCLINE_SERVICENOW_PASSWORD": "sandbox",
            "SYNCLINE_REPORTING_DB_URL": f"sqlite:///{tmp_path / 'reporting.db'}",
            "SYNCLINE_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
            "SYNCLINE_SPECS_DIR": str(SPECS_DIR),
            "SYNCLINE_HOME": str(tmp_path / "home"),
        }
    )
    return env


def start_run(env: dict[str, str], output: Path) -> subprocess.Popen[bytes]:
    """``syncline run cmdb-nightly``, stdout to ``output``, stderr next to it."""
    with output.open("wb") as out, output.with_suffix(".err").open("wb") as err:
        # Own session: a Ctrl-C of pytest reaches this test's cleanup, not the command.
        return subprocess.Popen(
            [sys.executable, "-m", "syncline_app.cli", "run", "cmdb-nightly"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def tail(output: Path) -> str:
    err = output.with_suffix(".err").read_text(errors="replace")
    return f"stdout:\n{output.read_text(errors='replace')[-2000:]}\nstderr:\n{err[-3000:]}"


def wait_for_server(process: subprocess.Popen[bytes], output: Path) -> tuple[Proc, list[Proc]]:
    """The command's Prefect server once it answers, and the command's process tree then."""
    deadline = time.monotonic() + SERVER_STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, f"`syncline run` exited early:\n{tail(output)}"
        tree = descendants(process.pid)
        servers = [proc for proc in tree if proc.port is not None]
        if servers and server_healthy(servers[0].port or 0):
            return servers[0], tree
        time.sleep(0.1)
    raise AssertionError(f"no Prefect server came up under `syncline run`:\n{tail(output)}")


def wait_until_gone(procs: list[Proc], port: int) -> tuple[list[Proc], bool]:
    deadline = time.monotonic() + GONE_WITHIN
    while True:
        left = [proc for proc in procs if alive(proc)]
        listening = port_open(port)
        if (not left and not listening) or time.monotonic() > deadline:
            return left, listening
        time.sleep(0.2)


# --- tests -------------------------------------------------------------------------------


def test_kill_9_of_run_takes_its_prefect_server_down(
    run_env: dict[str, str], tmp_path: Path
) -> None:
    output = tmp_path / "run.out"
    process = start_run(run_env, output)
    tree: list[Proc] = []
    try:
        server, tree = wait_for_server(process, output)
        assert server.port is not None
        # The sandbox holds the sync's reads: the command is mid-run, its server in use.
        assert process.poll() is None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

        left, listening = wait_until_gone(tree, server.port)
        assert not left, (
            f"still running {GONE_WITHIN:.0f}s after kill -9 of `syncline run`: "
            + "; ".join(f"{proc.pid} {' '.join(proc.cmdline)}" for proc in left)
        )
        assert not listening, f"port {server.port} still accepts connections"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        kill_leftovers(tree)


def test_normal_run_exits_0_and_leaves_nothing_running(
    run_env: dict[str, str], gated_sandbox: tuple[BackgroundServer, GatedApp], tmp_path: Path
) -> None:
    _, gate = gated_sandbox
    gate.open.set()
    output = tmp_path / "run.out"
    process = start_run(run_env, output)
    seen: set[Proc] = set()
    try:
        # Every process the command starts, while it runs (they are gone once it is done).
        deadline = time.monotonic() + SERVER_STARTUP_TIMEOUT + 60
        while process.poll() is None and time.monotonic() < deadline:
            seen.update(descendants(process.pid))
            time.sleep(0.1)
        assert process.poll() is not None, f"`syncline run` did not finish:\n{tail(output)}"
        assert process.returncode == 0, tail(output)

        summary = json.loads(output.read_text())
        assert summary["read"] > 0
        servers = [proc for proc in seen if proc.port is not None]
        assert servers, f"saw no Prefect server under `syncline run`: {seen}"

        left = [proc for proc in seen if alive(proc)]
        assert not left, "left running: " + "; ".join(" ".join(p.cmdline) for p in left)
        assert not any(port_open(proc.port or 0) for proc in servers)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        kill_leftovers(list(seen))


def test_a_configured_server_is_used_and_nothing_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    before = set(descendants(os.getpid()))
    with temporary_prefect_server(tmp_path) as api_url:
        assert api_url == "http://127.0.0.1:4200/api"
        assert set(descendants(os.getpid())) == before
    assert not (tmp_path / "run").exists()


def test_a_server_that_does_not_come_up_in_time_is_stopped_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    before = set(descendants(os.getpid()))
    with (
        # No server configured, even when the session's test server has set one up.
        temporary_settings(
            {PREFECT_HOME: tmp_path / "prefect"}, restore_defaults={PREFECT_API_URL}
        ),
        pytest.raises(PrefectServerError, match=r"within 1s; see .*temporary-prefect-server\.log"),
        temporary_prefect_server(tmp_path / "home", timeout=1.0),
    ):
        pytest.fail("the server cannot be up within a second")
    assert set(descendants(os.getpid())) == before
    assert (
        "prefect server start on port"
        in (tmp_path / "home" / "run" / "temporary-prefect-server.log").read_text()
    )
