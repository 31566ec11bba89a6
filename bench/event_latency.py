"""Alert → incident latency through the real path: gateway, outbox, warm path, ServiceNow.

    .venv/bin/python bench/event_latency.py [--steady-seconds 60] [--storm-alerts 1000]
                                            [--storm-seconds 20] [--floor-samples 30]
                                            [--comments 60] [--comment-interval 1]
                                            [--only-comments]

Processes, as ``make up`` runs them: a Prefect server (temporary, on a free port), the
ServiceNow sandbox (``syncline sandbox``), and the webhook gateway with the warm incident path
in its process (``with_incident_path``), all on loopback. This process posts signed alerts
(Datadog with its token header, PagerDuty signed ``v1=`` HMAC, alternating; each a new alert)
and polls the sandbox's incident table every 50 ms for the incidents of the alerts not yet seen.

Per alert: from the gateway's 202 to its incident visible in the sandbox. Phases: steady (one
alert a second) and storm (``--storm-alerts`` spread over ``--storm-seconds``). Lost = sent
(202) but no incident at the end; duplicated = correlation ids the sandbox created more than
once (its own count of API creates). The floor: a no-op Prefect background task's latency
(``task.delay()`` to the task running in a ``prefect.task_worker.serve`` process), measured in
the same run on the same server.

The escalation phase (``bench/escalation_phase.py``): a Jira comment → a ServiceNow work note
through the Jira sandbox's signed admin webhook, the gateway and the warm escalation path,
``--comments`` at one per ``--comment-interval`` seconds; ``echo_writes`` counts Syncline's own
entries written back (0 expected). ``--only-comments`` runs that phase alone (no floor, no
alerts).

Human-readable lines first (progress on stderr); the last line of stdout is one JSON object.
"""

from __future__ import annotations

import os

os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"

import argparse
import asyncio
import contextlib
import json
import math
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prefect import task  # noqa: E402

from bench.escalation_phase import measure_comments  # noqa: E402
from sandboxes.core.server import free_port  # noqa: E402
from sandboxes.core.webhooks import PAGERDUTY  # noqa: E402

SECRETS = {
    "datadog": "bench-datadog-secret-0123456789",
    "pagerduty": "bench-pd-secret-0123456789",
    "jira": "bench-jira-secret-0123456789",
    "servicenow": "bench-servicenow-secret-0123456789",
}
SANDBOX_AUTH = ("admin", "sandbox")


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the floor: a no-op background task -----------------------------------------------------


@task(name="bench-noop")
def noop(submitted: float) -> float:
    """Returns how long after its submission it started running."""
    return time.time() - submitted


def floor_latencies(samples: int, env: dict[str, str]) -> list[float]:
    worker = subprocess.Popen(
        [sys.executable, __file__, "--task-worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(4)  # the worker subscribes to its task keys
        ran_after(noop.delay(time.time()))  # warm-up, not counted: the worker's first run
        latencies = []
        for _ in range(samples):
            latencies.append(ran_after(noop.delay(time.time())))
            time.sleep(0.2)
        return latencies
    finally:
        worker.terminate()
        worker.wait(timeout=20)


def ran_after(future: Any, timeout: float = 60.0) -> float:
    """The task's own figure; a result asked for before the task run is known to the server
    raises at once ("no state"), so it is asked again until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return float(future.result(timeout=timeout))
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def serve_task_worker() -> None:
    from prefect.task_worker import serve

    serve(noop)


# --- the gateway's process, with the warm path --------------------------------------------


def serve_gateway(port: int) -> None:
    import uvicorn

    from syncline.outbox import GatewayOutbox
    from syncline.settings import SynclineSettings
    from syncline_app.escalation_path import EscalationPath, with_escalation_path
    from syncline_app.gateway.app import create_app
    from syncline_app.gateway.config import load_gateway_config
    from syncline_app.gateway.forwarder import OutboxForwarder, PrefectEventsAPI
    from syncline_app.incident_path import IncidentPath, with_incident_path

    outbox = GatewayOutbox(SynclineSettings().ledger())
    forwarder = OutboxForwarder(outbox, PrefectEventsAPI.from_prefect_settings())
    app = create_app(load_gateway_config(os.environ), outbox, forwarder)
    app = with_incident_path(app, IncidentPath())  # type: ignore[assignment]
    app = with_escalation_path(app, EscalationPath())  # type: ignore[assignment]
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the alerts -------------------------------------------------------------------------------


def alert(run: str, number: int) -> tuple[str, bytes, dict[str, str], str]:
    """(source, body, headers, correlation id) of a new alert."""
    key = f"{run}-{number}"
    if number % 2:
        payload: dict[str, Any] = {
            "event": {
                "id": f"evt-{key}",
                "event_type": "incident.triggered",
                "resource_type": "incident",
                "occurred_at": "2026-01-05T10:00:00.000Z",
                "agent": None,
                "client": None,
                "data": {
                    "id": key,
                    "type": "incident",
                    "number": number,
                    "status": "triggered",
                    "title": f"Checkout latency above SLO ({key})",
                    "html_url": f"https://acme.pagerduty.com/incidents/{key}",
                    "service": {"id": "PF9KMXH", "summary": "checkout"},
                    "urgency": "high",
                },
            }
        }
        body = json.dumps(payload).encode()
        headers = {
            PAGERDUTY.header: PAGERDUTY.signature(SECRETS["pagerduty"], body),
            "X-Webhook-Id": f"wh-{key}",
        }
        return "pagerduty", body, headers, f"pagerduty:{key}"
    payload = {
        "alert_id": key,
        "alert_transition": "Triggered",
        "alert_title": f"[P2] High CPU on web-{number}",
        "alert_type": "error",
        "alert_priority": "P2",
        "hostname": f"web-{number}",
        "date": str(int(time.time() * 1000)),
        "id": f"evt-{key}",
    }
    headers = {"X-Syncline-Token": SECRETS["datadog"]}
    return "datadog", json.dumps(payload).encode(), headers, f"datadog:{key}"


class Run:
    def __init__(self, gateway: str, sandbox: str) -> None:
        self.gateway = gateway
        self.sandbox = sandbox
        self.run = uuid.uuid4().hex[:8]
        self.accepted: dict[str, float] = {}  # correlation id -> 202 at
        self.seen: dict[str, float] = {}  # correlation id -> first seen in the sandbox
        self.refused = 0
        self.count = 0

    async def post(self, client: httpx.AsyncClient) -> str:
        self.count += 1
        source, body, headers, correlation = alert(self.run, self.count)
        headers["Content-Type"] = "application/json"
        answer = await client.post(f"{self.gateway}/hooks/{source}", content=body, headers=headers)
        if answer.status_code == 202:
            self.accepted[correlation] = time.monotonic()
        else:
            self.refused += 1
            progress(f"refused {answer.status_code}: {answer.text[:200]}")
        return correlation

    async def poll(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        """Every 50 ms, the incidents of the alerts accepted and not yet seen (a few dozen
        at most, even in the storm: reading them all each time would load the machine the
        path runs on)."""
        while not stop.is_set():
            outstanding = sorted(set(self.accepted) - set(self.seen))
            for start in range(0, len(outstanding), 100):
                params = {
                    "sysparm_query": "correlation_idIN"
                    + ",".join(outstanding[start : start + 100]),
                    "sysparm_fields": "correlation_id",
                    "sysparm_limit": "1000",
                }
                answer = await client.get(
                    f"{self.sandbox}/api/now/table/incident", params=params, auth=SANDBOX_AUTH
                )
                now = time.monotonic()
                for record in answer.json()["result"]:
                    self.seen.setdefault(record["correlation_id"], now)
            await asyncio.sleep(0.05)

    def latencies(self, correlations: list[str]) -> list[float]:
        return [
            self.seen[c] - self.accepted[c]
            for c in correlations
            if c in self.seen and c in self.accepted
        ]


async def measure(args: argparse.Namespace, gateway: str, sandbox: str) -> dict[str, Any]:
    run = Run(gateway, sandbox)
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=30) as client:
        poller = asyncio.create_task(run.poll(client, stop))
        # Warm-up: the first run of the flow in the gateway's process imports and connects.
        warm = [await run.post(client) for _ in range(2)]
        await wait_for(run, warm, 60)

        progress(f"steady: 1 alert/s for {args.steady_seconds} s")
        steady: list[str] = []
        start = time.monotonic()
        for second in range(args.steady_seconds):
            await asyncio.sleep(max(0.0, start + second - time.monotonic()))
            steady.append(await run.post(client))
        await wait_for(run, steady, 60)

        progress(f"storm: {args.storm_alerts} alerts in {args.storm_seconds} s")
        storm: list[str] = []
        interval = args.storm_seconds / max(args.storm_alerts, 1)
        start = time.monotonic()
        posts = []
        for number in range(args.storm_alerts):
            await asyncio.sleep(max(0.0, start + number * interval - time.monotonic()))
            posts.append(asyncio.create_task(run.post(client)))
        storm = list(await asyncio.gather(*posts))
        last_accepted = max(run.accepted[c] for c in storm if c in run.accepted)
        await wait_for(run, storm, 180)
        stop.set()
        await poller
        storm_seen = [run.seen[c] for c in storm if c in run.seen]
        drain = max(storm_seen) - last_accepted if storm_seen else float("nan")
        creates = (await client.get(f"{sandbox}/sandbox/servicenow/correlations/incident")).json()
    ours = {c: n for c, n in creates["creates"].items() if run.run in c}
    sent = [*warm, *steady, *storm]
    delivered = [c for c in sent if c in run.seen]
    storm_first = min(run.accepted[c] for c in storm if c in run.accepted)
    return {
        "run": run,
        "sent": len(sent),
        "accepted": len(run.accepted),
        "delivered": len(delivered),
        "lost": len([c for c in run.accepted if c not in run.seen]),
        "duplicated": sum(1 for n in ours.values() if n > 1),
        "steady": run.latencies(steady),
        "storm": run.latencies(storm),
        "storm_drain_s": drain,
        "rate_per_s": len(storm_seen) / (max(storm_seen) - storm_first) if storm_seen else 0.0,
    }


async def wait_for(run: Run, correlations: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(c in run.seen for c in correlations if c in run.accepted):
            return
        await asyncio.sleep(0.1)
    progress(f"gave up waiting after {timeout:.0f} s")


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def figures(values: list[float]) -> str:
    return (
        f"n={len(values)} p50 {percentile(values, 0.5):.3f} s  p95 {percentile(values, 0.95):.3f}"
        f" s  p99 {percentile(values, 0.99):.3f} s  max {max(values, default=float('nan')):.3f} s"
    )


@contextlib.contextmanager
def child(
    name: str, command: list[str], env: dict[str, str], log_dir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    log = (log_dir / f"{name}.log").open("ab")
    process = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{' '.join(map(str, process.args))} exited; see its log")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def flow_runs(ledger_url: str) -> int:
    """How many flow runs applied the deliveries (from the ledger's application records)."""
    from sqlalchemy import func, select

    from syncline.alert_claims import alert_applications
    from syncline.state import Ledger

    ledger = Ledger(ledger_url)
    try:
        query = select(func.count(func.distinct(alert_applications.c.flow_run_id)))
        with ledger.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())
    finally:
        ledger.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steady-seconds", type=int, default=60)
    parser.add_argument("--storm-alerts", type=int, default=1000)
    parser.add_argument("--storm-seconds", type=float, default=20.0)
    parser.add_argument("--floor-samples", type=int, default=30)
    parser.add_argument("--comments", type=int, default=60, help="Jira comments (0: no phase)")
    parser.add_argument("--comment-interval", type=float, default=1.0)
    parser.add_argument("--only-comments", action="store_true", help="skip floor and alerts")
    parser.add_argument("--task-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--gateway-port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.task_worker:
        serve_task_worker()
        return 0
    if args.gateway_port:
        serve_gateway(args.gateway_port)
        return 0

    from syncline_app.devstack import temporary_prefect_server

    home = Path(tempfile.mkdtemp(prefix="syncline-event-bench-"))
    env_base = {**os.environ, "PREFECT_HOME": str(home / "prefect")}
    os.environ.update(env_base)
    progress(f"starting a Prefect server (home {home})")
    with temporary_prefect_server(home) as api_url:
        assert api_url is not None
        sandbox_port, gateway_port, jira_port = free_port(), free_port(), free_port()
        jira = f"http://127.0.0.1:{jira_port}"
        sandbox, gateway = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{gateway_port}"
        env = {
            **env_base,
            "PREFECT_API_URL": api_url,
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
            "SYNCLINE_HOME": str(home),
            "SYNCLINE_LEDGER_URL": f"sqlite:///{home / 'ledger.db'}",
            "SYNCLINE_SPECS_DIR": str(ROOT / "deployments"),
            "SYNCLINE_SERVICENOW_URL": sandbox,
            "SYNCLINE_SERVICENOW_USER": SANDBOX_AUTH[0],
            "SYNCLINE_SERVICENOW_PASSWORD": SANDBOX_AUTH[1],
            "SYNCLINE_JIRA_URL": jira,
            "SYNCLINE_JIRA_API_TOKEN": "sandbox-api-token",  # the sandbox's published token
            **{f"SYNCLINE_GATEWAY_{name.upper()}_SECRET": value for name, value in SECRETS.items()},
            "SYNCLINE_GATEWAY_DISABLED": "dynatrace,generic",
        }
        syncline = str(Path(sys.executable).parent / "syncline")
        floor: list[float] = []
        if not args.only_comments:
            progress("measuring the floor: a no-op background task")
            floor = floor_latencies(args.floor_samples, env)
        sandbox_cmd = [syncline, "sandbox", "--port", str(sandbox_port), "--cis", "100"]
        gateway_cmd = [sys.executable, __file__, "--gateway-port", str(gateway_port)]
        jira_cmd = [sys.executable, "-m", "sandboxes.jira", "--port", str(jira_port)]
        jira_cmd += ["--issues", "0", "--project", "ESC", "--site-url", jira]
        result: dict[str, Any] = {"steady": [], "storm": []}
        comments: dict[str, Any] = {"latencies": [], "sent": 0, "lost": 0, "echo_writes": 0}
        with (
            child("sandbox", sandbox_cmd, env, home) as sandbox_process,
            child("jira", jira_cmd, env, home) as jira_process,
            child("gateway", gateway_cmd, env, home) as gateway_process,
        ):
            wait_http(f"{sandbox}/healthz", sandbox_process)
            wait_http(f"{jira}/healthz", jira_process)
            wait_http(f"{gateway}/healthz", gateway_process)
            if not args.only_comments:
                result = asyncio.run(measure(args, gateway, sandbox))
            if args.comments > 0:
                progress("escalation: Jira comments → ServiceNow work notes")
                comments = asyncio.run(
                    measure_comments(
                        sandbox,
                        jira,
                        gateway,
                        SECRETS,
                        comments=args.comments,
                        interval=args.comment_interval,
                        progress=progress,
                    )
                )
    if args.only_comments:
        return report_comments(comments)
    steady, storm = result["steady"], result["storm"]
    runs = flow_runs(env["SYNCLINE_LEDGER_URL"])
    both = steady + storm
    print(f"Alert → incident latency (gateway 202 → incident visible), logs in {home}")
    print(f"  steady  {figures(steady)}")
    print(f"  storm   {figures(storm)}")
    print(
        f"  storm drained {result['storm_drain_s']:.2f} s after its last 202; "
        f"{result['rate_per_s']:.1f} incidents/s"
    )
    print(
        f"  sent {result['sent']}, accepted {result['accepted']}, delivered "
        f"{result['delivered']}, lost {result['lost']}, duplicated {result['duplicated']}"
    )
    print(f"  {runs} alert-to-incident flow runs applied them (none spawned a process)")
    print(f"  floor (no-op background task) {figures(floor)}")
    print_comments(comments)
    summary = {
        "sent": result["sent"],
        "accepted": result["accepted"],
        "delivered": result["delivered"],
        "lost": result["lost"],
        "duplicated": result["duplicated"],
        "p50_s": round(percentile(steady, 0.5), 3),
        "p95_s": round(percentile(steady, 0.95), 3),
        "p99_s": round(percentile(steady, 0.99), 3),
        "storm_p50_s": round(percentile(storm, 0.5), 3),
        "storm_p95_s": round(percentile(storm, 0.95), 3),
        "all_p99_s": round(percentile(both, 0.99), 3),
        "storm_drain_s": round(result["storm_drain_s"], 3),
        "floor_p50_s": round(percentile(floor, 0.5), 3),
        "floor_p95_s": round(percentile(floor, 0.95), 3),
        "rate_per_s": round(result["rate_per_s"], 1),
        "flow_runs": runs,
        "steady_seconds": args.steady_seconds,
        "storm_alerts": args.storm_alerts,
        "storm_seconds": args.storm_seconds,
        **comment_figures(comments),
    }
    print(json_line(summary))
    return 0


def print_comments(comments: dict[str, Any]) -> None:
    latencies = comments["latencies"]
    print("Jira comment → ServiceNow work note (Jira's answer → the note visible)")
    print(f"  comments {figures(latencies)}")
    print(
        f"  sent {comments['sent']}, lost {comments['lost']}, "
        f"echo writes {comments['echo_writes']} (Syncline's own entries written back)"
    )


def comment_figures(comments: dict[str, Any]) -> dict[str, Any]:
    latencies = comments["latencies"]
    return {
        "comments_sent": comments["sent"],
        "comments_lost": comments["lost"],
        "comment_p50_s": round(percentile(latencies, 0.5), 3),
        "comment_p95_s": round(percentile(latencies, 0.95), 3),
        "echo_writes": comments["echo_writes"],
    }


def json_line(figures: dict[str, Any]) -> str:
    """The figures as one line of strict JSON: a phase that was skipped (``--comments 0``) has
    NaN figures, which ``json.dumps`` would write as ``NaN``, a token JSON parsers refuse."""
    return json.dumps(
        {
            name: None if isinstance(value, float) and not math.isfinite(value) else value
            for name, value in figures.items()
        },
        allow_nan=False,
    )


def report_comments(comments: dict[str, Any]) -> int:
    print_comments(comments)
    print(json_line(comment_figures(comments)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
