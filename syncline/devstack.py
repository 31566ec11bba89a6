"""``syncline up`` / ``syncline down``: the local stack behind the Prefect UI.

Starts, each in its own process group with a PID file and a log under ``.syncline/run/``:
the Prefect server (SQLite under ``$PREFECT_HOME``), the ServiceNow sandbox and a worker of
the ``syncline-process`` work pool; then deploys everything in ``prefect.yaml``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

PREFECT_PORT = 4200
SANDBOX_PORT = 8701
WORK_POOL = "syncline-process"


def _run_dir(home: Path) -> Path:
    path = home / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _start(name: str, command: list[str], env: dict[str, str], run_dir: Path) -> None:
    pid_file = run_dir / f"{name}.pid"
    if pid_file.exists() and _alive(int(pid_file.read_text())):
        print(f"  {name}: already running (pid {pid_file.read_text().strip()})")
        return
    log = (run_dir / f"{name}.log").open("ab")
    # Own process group: the stack outlives this command and stops as a whole on `down`.
    process = subprocess.Popen(  # noqa: S603 - our own executables
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    pid_file.write_text(str(process.pid))
    print(f"  {name}: started (pid {process.pid}, log {run_dir / (name + '.log')})")


def _wait_for(url: str, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"{what} did not answer at {url} within {timeout:.0f}s; see .syncline/run/")


def up(home: Path) -> int:
    run_dir = _run_dir(home)
    bin_dir = Path(sys.executable).parent
    api_url = f"http://127.0.0.1:{PREFECT_PORT}/api"
    env = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "syncline",
        "PREFECT_WORKER_QUERY_SECONDS": os.environ.get("PREFECT_WORKER_QUERY_SECONDS", "5"),
        "SYNCLINE_SERVICENOW_URL": os.environ.get(
            "SYNCLINE_SERVICENOW_URL", f"http://127.0.0.1:{SANDBOX_PORT}"
        ),
        "PWD": str(Path.cwd()),
    }
    print("Starting the local stack:")
    server_env = {key: value for key, value in env.items() if key != "PREFECT_API_URL"}
    prefect = str(bin_dir / "prefect")
    server = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(PREFECT_PORT)]
    _start("prefect-server", server, server_env, run_dir)
    _start(
        "sandbox",
        [str(bin_dir / "syncline"), "sandbox", "--port", str(SANDBOX_PORT)],
        env,
        run_dir,
    )
    _wait_for(f"{api_url}/health", "the Prefect server")
    _wait_for(f"http://127.0.0.1:{SANDBOX_PORT}/healthz", "the ServiceNow sandbox")
    subprocess.run(  # noqa: S603
        [str(bin_dir / "prefect"), "work-pool", "create", WORK_POOL, "--type", "process",
         "--overwrite"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    _start(
        "worker",
        [str(bin_dir / "prefect"), "worker", "start", "--pool", WORK_POOL],
        env,
        run_dir,
    )
    deployed = subprocess.run(  # noqa: S603
        [str(bin_dir / "prefect"), "--no-prompt", "deploy", "--all"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if deployed.returncode != 0:
        print(deployed.stdout[-3000:], deployed.stderr[-3000:], sep="\n")
        return deployed.returncode
    print(
        "\nUp:\n"
        f"  Prefect UI        http://127.0.0.1:{PREFECT_PORT}\n"
        f"  ServiceNow sandbox http://127.0.0.1:{SANDBOX_PORT}/api/now/table/cmdb_ci_server\n"
        f"  work pool         {WORK_POOL} (one process worker)\n"
        "  deployments       scheduled-sync/cmdb-nightly, replay-dead-letters/replay-dead-letters\n"
        f"\nexport PREFECT_API_URL={api_url}   # for prefect CLI commands in this shell\n"
        "prefect deployment run scheduled-sync/cmdb-nightly   # run the sync now\n"
        "make down                                            # stop everything"
    )
    return 0


def down(home: Path) -> int:
    run_dir = _run_dir(home)
    for name in ("worker", "sandbox", "prefect-server"):
        pid_file = run_dir / f"{name}.pid"
        if not pid_file.exists():
            continue
        pid = int(pid_file.read_text())
        if _alive(pid):
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
            print(f"  {name}: stopped")
        pid_file.unlink()
    return 0
