"""The local Prefect stack: ``syncline up`` / ``syncline down``, and temporary servers.

``up`` starts, each in its own process group with a PID file and a log under ``.syncline/run/``:
the Prefect server (SQLite under ``$PREFECT_HOME``), the ServiceNow sandbox and a worker of
the ``syncline-process`` work pool; then deploys everything in ``prefect.yaml``. ``down``
stops them.

``temporary_prefect_server()`` gives ``syncline run`` and the demo a Prefect server for the
length of one command when none is configured, one that dies with the command even if the
command is killed with SIGKILL.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx

PREFECT_PORT = 4200
SANDBOX_PORT = 8701
JIRA_PORT = 8702
GATEWAY_PORT = 8765
GATEWAY_SOURCES = ("datadog", "dynatrace", "pagerduty", "jira", "servicenow", "generic")
WORK_POOL = "syncline-process"
SANDBOX_STATE = "servicenow-world.json"  # under the Syncline home; shared by the demo and `up`
JIRA_STATE = "jira-world.json"  # the Jira sandbox's site, likewise
JIRA_TOKEN = "sandbox-api-token"  # noqa: S105 - the Jira sandbox's published demo token


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
        "SYNCLINE_JIRA_URL": os.environ.get("SYNCLINE_JIRA_URL", f"http://127.0.0.1:{JIRA_PORT}"),
        "SYNCLINE_JIRA_API_TOKEN": os.environ.get("SYNCLINE_JIRA_API_TOKEN", JIRA_TOKEN),
        "PWD": str(Path.cwd()),
    }
    # The gateway refuses to start without a secret per source: on this loopback-only stack
    # each defaults to local-<source>-secret (the README's curl example signs with it).
    for source in GATEWAY_SOURCES:
        variable = f"SYNCLINE_GATEWAY_{source.upper()}_SECRET"
        if not env.get(variable) and not env.get(f"{variable}_BLOCK"):
            env[variable] = f"local-{source}-secret"
    print("Starting the local stack:")
    server_env = {key: value for key, value in env.items() if key != "PREFECT_API_URL"}
    prefect = str(bin_dir / "prefect")
    server = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(PREFECT_PORT)]
    _start("prefect-server", server, server_env, run_dir)
    _start(
        "sandbox",
        [
            str(bin_dir / "syncline"),
            "sandbox",
            "--port",
            str(SANDBOX_PORT),
            # The demo's world, if it ran: the UI's runs and the sandbox tell one story.
            "--state",
            str(home / SANDBOX_STATE),
        ],
        env,
        run_dir,
    )
    jira_url = f"http://127.0.0.1:{JIRA_PORT}"
    _start(
        "jira-sandbox",
        [sys.executable, "-m", "sandboxes.jira", "--port", str(JIRA_PORT), "--issues", "0",
         "--project", "ESC", "--site-url", jira_url, "--state", str(home / JIRA_STATE)],
        env, run_dir,
    )  # fmt: skip
    _wait_for(f"{api_url}/health", "the Prefect server")
    _wait_for(f"http://127.0.0.1:{SANDBOX_PORT}/healthz", "the ServiceNow sandbox")
    _wait_for(f"{jira_url}/healthz", "the Jira sandbox")
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
    # Alerts to incidents: the gateway takes webhooks into the outbox and emits the events
    # that trigger alert-to-servicenow; the warm incident path applies them within a second.
    _start("gateway", [str(bin_dir / "syncline"), "gateway", "--port", str(GATEWAY_PORT)], env,
           run_dir)  # fmt: skip
    _start("incident-path", [str(bin_dir / "syncline"), "alerts", "serve"], env, run_dir)
    # ServiceNow ↔ Jira escalation: the warm escalation path carries record changes within a
    # second; the sandboxes' webhooks point at the gateway.
    escalation_path = [sys.executable, "-m", "syncline_app.escalation_path"]
    _start("escalation-path", escalation_path, env, run_dir)
    _wait_for(f"http://127.0.0.1:{GATEWAY_PORT}/healthz", "the webhook gateway", timeout=60)
    _connect_webhooks(env, jira_url)
    print(
        "\nUp:\n"
        f"  Prefect UI        http://127.0.0.1:{PREFECT_PORT}\n"
        f"  ServiceNow sandbox http://127.0.0.1:{SANDBOX_PORT}/api/now/table/cmdb_ci_server\n"
        f"  work pool         {WORK_POOL} (one process worker)\n"
        "  deployments       scheduled-sync/cmdb-nightly, replay-dead-letters/replay-dead-letters,"
        " alert-to-incident/alert-to-servicenow,\n"
        "                    servicenow-jira-escalation/servicenow-jira-escalation\n"
        f"  webhook gateway   http://127.0.0.1:{GATEWAY_PORT}/hooks/<source> (secrets: "
        "SYNCLINE_GATEWAY_<SOURCE>_SECRET, here local-<source>-secret unless set)\n"
        "  incident path     warm: alerts reach ServiceNow incidents within a second\n"
        f"  Jira sandbox      {jira_url}/rest/api/3/search/jql (project ESC)\n"
        "  escalation        servicenow-jira-escalation: incidents of the Development group "
        "<-> ESC issues (webhooks on, warm path, polled every minute)\n"
        f"\nexport PREFECT_API_URL={api_url}   # for prefect CLI commands in this shell\n"
        "prefect deployment run scheduled-sync/cmdb-nightly   # run the sync now\n"
        "make down                                            # stop everything"
    )
    return 0


def _connect_webhooks(env: dict[str, str], jira_url: str) -> None:
    """The sandboxes' webhooks to the gateway, as an admin sets them up (README: ServiceNow ↔
    Jira escalation): a Jira admin webhook with the gateway's Jira secret, and a ServiceNow
    outbound REST message with its token. Registered on every `up`, once (kept while the
    sandboxes run)."""
    hooks = f"http://127.0.0.1:{GATEWAY_PORT}/hooks"
    servicenow = env["SYNCLINE_SERVICENOW_URL"]
    token = env.get("SYNCLINE_GATEWAY_SERVICENOW_SECRET", "").split(",")[0]
    secret = env.get("SYNCLINE_GATEWAY_JIRA_SECRET", "").split(",")[0]
    if not token or not secret:  # the secrets are in Prefect blocks: the admin registers them
        print("  webhooks: set up the Jira webhook and ServiceNow REST message by hand (README)")
        return
    registered = httpx.get(f"{servicenow}/sandbox/servicenow/outbound-rest", timeout=10).json()
    if not any(item.get("url") == f"{hooks}/servicenow" for item in registered):
        httpx.post(
            f"{servicenow}/sandbox/servicenow/outbound-rest",
            json={"url": f"{hooks}/servicenow", "name": "Syncline",
                  "header_value": token},
            timeout=10,
        ).raise_for_status()  # fmt: skip
    auth = ("integration@example.com", env["SYNCLINE_JIRA_API_TOKEN"])
    webhooks = httpx.get(f"{jira_url}/rest/webhooks/1.0/webhook", auth=auth, timeout=10).json()
    if not any(item.get("url") == f"{hooks}/jira" for item in webhooks):
        httpx.post(
            f"{jira_url}/rest/webhooks/1.0/webhook",
            auth=auth,
            json={"name": "Syncline", "url": f"{hooks}/jira",
                  "events": ["jira:issue_created", "jira:issue_updated", "comment_created"],
                  "filters": {"issue-related-events-section": "project = ESC"},
                  "secret": secret},
            timeout=10,
        ).raise_for_status()  # fmt: skip


def down(home: Path) -> int:
    run_dir = _run_dir(home)
    for name in (
        "escalation-path",
        "incident-path",
        "gateway",
        "worker",
        "jira-sandbox",
        "sandbox",
        "prefect-server",
    ):
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


# --- a temporary Prefect server for one command -------------------------------------------

TEMPORARY_SERVER_LOG = "temporary-prefect-server.log"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class PrefectServerError(RuntimeError):
    """The temporary Prefect server did not come up."""


@contextlib.contextmanager
def temporary_prefect_server(
    home: Path, *, timeout: float = 120.0, grace: float = 10.0
) -> Iterator[str | None]:
    """A Prefect API for the length of the block, unless one is configured; yields its URL.

    With ``PREFECT_API_URL`` set (``make up``, a profile, Prefect Cloud) this starts nothing
    and yields that URL. Otherwise it starts ``prefect server start`` on a free loopback port,
    logging to ``<home>/run/temporary-prefect-server.log``, waits for ``/api/health`` (a fresh
    ``$PREFECT_HOME`` spends ~20 s in migrations), points Prefect in this process at it, and
    on leaving the block, by return, exception or Ctrl-C, stops it: SIGTERM to its process
    group, SIGKILL after ``grace`` seconds.

    Prefect's own ephemeral server is a child process that is stopped by ``atexit``, so it
    outlives a command killed with SIGKILL. This one is started with the Linux parent-death
    signal: the kernel sends it SIGTERM when this process dies, however it dies. Enter this
    from the main thread (see ``_die_with_parent``). On other systems (no parent-death signal)
    this starts nothing and yields None: Prefect starts its ephemeral server as before, and
    stops it at exit.
    """
    configured = _configured_api_url()
    if configured is not None or sys.platform != "linux":
        yield configured
        return
    log_path = _run_dir(home) / TEMPORARY_SERVER_LOG
    with log_path.open("ab") as log:
        process, api_url = _start_temporary_server(log, log_path, timeout)
    # Backstop for an interpreter exit with the block still open (entered from a daemon
    # thread, say); SIGKILL and the default SIGTERM skip it, the parent-death signal does not.
    stop = functools.partial(_stop_group, process, grace)
    atexit.register(stop)
    try:
        with _api_url_for_prefect(api_url):
            yield api_url
    finally:
        stop()
        atexit.unregister(stop)


def _configured_api_url() -> str | None:
    """PREFECT_API_URL as Prefect sees it: environment, ``.env``, profile or pyproject."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def _start_temporary_server(
    log: IO[bytes], log_path: Path, timeout: float
) -> tuple[subprocess.Popen[bytes], str]:
    from prefect.settings import get_current_settings

    env = {
        **os.environ,
        "PREFECT_HOME": str(get_current_settings().home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        # Serves one command's API calls: no UI to build, and no scheduling of deployments
        # or marking runs late in the shared database (as Prefect's ephemeral server).
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
        # The log is what a failed start points to: keep it current.
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PREFECT_API_URL", None)
    prefect = str(Path(sys.executable).parent / "prefect")
    deadline = time.monotonic() + timeout
    # A free port can be taken between probing and binding: then the server exits at once
    # and the next attempt takes another port.
    for _attempt in range(3):
        port = _free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        log.write(
            f"--- {datetime.now(UTC).isoformat(timespec='seconds')} pid {os.getpid()}: "
            f"prefect server start on port {port} ---\n".encode()
        )
        log.flush()
        process = subprocess.Popen(  # noqa: S603 - Prefect's own CLI, next to this Python
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own process group: stopped as a whole, and out of reach of the terminal's
            # Ctrl-C, which this process turns into an orderly stop.
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        try:
            if _wait_healthy(process, api_url, deadline):
                return process, api_url
        except BaseException:
            _stop_group(process, grace=5.0)
            raise
        if process.poll() is None:
            _stop_group(process, grace=5.0)
            raise PrefectServerError(
                f"the temporary Prefect server did not answer at {api_url}/health within "
                f"{timeout:.0f}s; see {log_path}"
            )
    raise PrefectServerError(
        f"the temporary Prefect server exited with code {process.returncode} before it "
        f"answered; see {log_path}"
    )


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks the kernel to SIGTERM the child when this process dies.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so only a fork
    from the main thread ties the child to the process; from another thread the child would
    die with that thread, and gets no parent-death signal (the ``finally`` and ``atexit``
    stop it). libc is looked up here, before the fork, so the child loads nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def set_parent_death_signal() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            os._exit(126)
        # The parent may have died between fork and prctl: then no signal will come.
        if os.getppid() != parent:
            os._exit(1)

    return set_parent_death_signal


def _wait_healthy(process: subprocess.Popen[bytes], api_url: str, deadline: float) -> bool:
    """True once the server answers; False if it exited or the deadline passed first."""
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                if client.get(f"{api_url}/health").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
    return False


def _stop_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, SIGKILL what is left after ``grace`` seconds; reap."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def _api_url_for_prefect(api_url: str) -> Iterator[None]:
    """PREFECT_API_URL for this process (loaded or not yet loaded Prefect) and its children.

    Prefect reads its settings into a process-wide context when first imported, and its
    background log and event workers run in threads that see only that one, so the
    environment variable is set and that context rebuilt (``temporary_settings`` would be
    seen by this thread only). Queued logs and events are sent before the server goes.
    """
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api_url
    _refresh_prefect_settings()
    try:
        yield
    finally:
        _drain_prefect_workers()
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
        _refresh_prefect_settings()


def _refresh_prefect_settings() -> None:
    if "prefect.context" in sys.modules:
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()


def _drain_prefect_workers() -> None:
    if "prefect.logging.handlers" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
