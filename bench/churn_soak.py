"""Churn soak: the nightly CMDB sync against a busy instance whose clock is wrong.

    .venv/bin/python bench/churn_soak.py [--cis 50000] [--changes-per-second 200]
                                         [--clock-offset -600] [--churn-seconds 60]

1. seeds a ServiceNow sandbox with ``--cis`` CIs, its clock ``--clock-offset`` seconds off
   real time, served over loopback;
2. starts churn: ``--changes-per-second`` realistic edits a second, plus a few creations,
   retirements (install_status 7) and hard deletes a second;
3. runs the shipped ``cmdb-nightly`` spec (engine only, no Prefect server) into a SQLite
   reporting table: a full first run, then incremental runs (at least ``--incremental-runs``)
   until the churn has gone on for ``--churn-seconds``;
4. stops the churn, waits for the second to pass, and runs one more incremental run, with its
   key scan for hard deletes due;
5. compares the reporting table with the sandbox, reading both: every CI that is not retired
   must be there once, with the instance's current name and ``sys_updated_on``.

The last line of stdout is one JSON object: ``lost``, ``stale``, ``extra`` and ``duplicated``
must all be 0.
"""

from __future__ import annotations

import os

os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.sql import make_engine  # noqa: E402
from sandboxes.core.server import BackgroundServer  # noqa: E402
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig  # noqa: E402
from sandboxes.servicenow.admin import build_app  # noqa: E402
from syncline.connect import ConnectorFactory  # noqa: E402
from syncline.specs import IntegrationSpec, load_spec  # noqa: E402
from syncline.state import Ledger  # noqa: E402
from syncline.sync import SyncSummary, finish_run, run_sync  # noqa: E402

CMDB = "cmdb_ci_server"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def soak_spec(workdir: Path, instance_url: str, reporting_url: str) -> IntegrationSpec:
    text = (ROOT / "deployments" / "cmdb_nightly.yaml").read_text()
    # Every run scans for hard deletes (the final run must; the others cost a key-only read).
    text = text.replace("scan_every: 7d", "scan_every: 0s")
    path = workdir / "cmdb_nightly.yaml"
    path.write_text(text)
    return load_spec(
        path,
        environ={
            "SYNCLINE_SERVICENOW_URL": instance_url,
            "SYNCLINE_REPORTING_DB_URL": reporting_url,
        },
    )


def sync_once(
    spec: IntegrationSpec, environ: dict[str, str], ledger: Ledger, run_id: str, *, full: bool
) -> SyncSummary:
    factory = ConnectorFactory(environ=environ)
    source, target = factory.source(spec), factory.target(spec)

    async def go() -> SyncSummary:
        try:
            return await run_sync(
                spec, source, target, ledger, flow_run_id=run_id, full_refresh=full
            )
        finally:
            await source.aclose()
            await target.aclose()

    summary = asyncio.run(go())
    finish_run(ledger, summary)
    return summary


def compare(sandbox: ServiceNowSandbox, reporting_url: str) -> dict[str, int]:
    source = {
        record["sys_id"]: record
        for record in sandbox.records(CMDB)
        if record["install_status"] != "7"
    }
    engine = make_engine(reporting_url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT ci_id, name, updated_at FROM cmdb_server"))
        target_rows = [tuple(row) for row in rows]
    engine.dispose()
    target = {str(ci_id): (name, updated_at) for ci_id, name, updated_at in target_rows}
    stale = 0
    for key in source.keys() & target.keys():
        name, updated_at = target[key]
        stamp = pd.Timestamp(updated_at).strftime("%Y-%m-%d %H:%M:%S")
        if name != source[key]["name"] or stamp != source[key]["sys_updated_on"]:
            stale += 1
    return {
        "source_records": len(source),
        "target_records": len(target_rows),
        "lost": len(source.keys() - target.keys()),
        "extra": len(target.keys() - source.keys()),
        "stale": stale,
        "duplicated": len(target_rows) - len(target),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cis", type=int, default=50_000)
    parser.add_argument("--changes-per-second", type=float, default=200.0)
    parser.add_argument("--creates-per-second", type=float, default=2.0)
    parser.add_argument("--retires-per-second", type=float, default=2.0)
    parser.add_argument("--deletes-per-second", type=float, default=1.0)
    parser.add_argument("--clock-offset", type=float, default=-600.0, help="instance clock, s")
    parser.add_argument("--incremental-runs", type=int, default=2, help="at least this many")
    parser.add_argument(
        "--churn-seconds", type=float, default=60.0, help="keep syncing under churn this long"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    workdir = Path(tempfile.mkdtemp(prefix="syncline-soak-"))
    reporting_url = f"sqlite:///{workdir / 'reporting.db'}"
    say(f"seeding {args.cis:,} CIs, instance clock {args.clock_offset:+.0f} s ...")
    sandbox = ServiceNowSandbox(
        ServiceNowSandboxConfig(
            cmdb_ci_server=args.cis, clock_offset_seconds=args.clock_offset, seed=5
        )
    )
    ledger = Ledger(f"sqlite:///{workdir / 'ledger.db'}")
    runs: list[dict[str, Any]] = []
    with BackgroundServer(build_app(sandbox)) as server:
        environ = {
            "SYNCLINE_SERVICENOW_USER": "admin",
            "SYNCLINE_SERVICENOW_PASSWORD": "sandbox",
            "SYNCLINE_REPORTING_DB_URL": reporting_url,
        }
        spec = soak_spec(workdir, server.url, reporting_url)
        sandbox.start_churn(
            changes_per_second=args.changes_per_second,
            creates_per_second=args.creates_per_second,
            retires_per_second=args.retires_per_second,
            deletes_per_second=args.deletes_per_second,
            duration_seconds=3_600,
            seed=1,
        )
        try:
            churn_started = time.perf_counter()
            number = 0
            # A full run, then incremental runs until the churn has gone on long enough.
            while number <= args.incremental_runs or (
                time.perf_counter() - churn_started < args.churn_seconds
            ):
                started = time.perf_counter()
                summary = sync_once(spec, environ, ledger, f"soak-{number}", full=number == 0)
                runs.append(_figures(summary, time.perf_counter() - started, churning=True))
                say(f"run {number} under churn: {runs[-1]}")
                number += 1
        finally:
            churn = sandbox.stop_churn()
        say(
            f"churn stopped: {churn.changed} changes, {churn.created} creates, "
            f"{churn.retired} retires, {churn.deleted} deletes"
        )
        time.sleep(1.05 - time.time() % 1)  # the read window ends a second before the start
        started = time.perf_counter()
        summary = sync_once(spec, environ, ledger, "soak-final", full=False)
        runs.append(_figures(summary, time.perf_counter() - started, churning=False))
        say(f"final run: {runs[-1]}")
    result = compare(sandbox, reporting_url)
    figures = {
        "cis": args.cis,
        "changes_per_second": args.changes_per_second,
        "clock_offset_seconds": args.clock_offset,
        "churn": {
            "changed": churn.changed,
            "created": churn.created,
            "retired": churn.retired,
            "deleted": churn.deleted,
        },
        "runs": runs,
        **result,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(
        f"{result['source_records']:,} CIs in scope, {result['target_records']:,} reported: "
        f"lost {result['lost']}, stale {result['stale']}, extra {result['extra']}, "
        f"duplicated {result['duplicated']}"
    )
    print(json.dumps(figures))
    ok = not any(result[name] for name in ("lost", "stale", "extra", "duplicated"))
    return 0 if ok else 1


def _figures(summary: SyncSummary, seconds: float, *, churning: bool) -> dict[str, Any]:
    return {
        "under_churn": churning,
        "seconds": round(seconds, 1),
        "read": summary.read,
        "created": summary.created,
        "updated": summary.updated,
        "deleted": summary.deleted,
        "unread": summary.unread,
        "api_calls": summary.api_calls,
        "key_scan": summary.delete_scan,
    }


if __name__ == "__main__":
    raise SystemExit(main())
