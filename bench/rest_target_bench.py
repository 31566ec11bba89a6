"""REST target benchmark: upserts into the ServiceNow sandbox under a rate limit and write faults.

    .venv/bin/python bench/rest_target_bench.py [--records 10000] [--rate 100]
                                                [--fault-rate 0.2] [--concurrency 8]

``--records`` records are upserted by ``correlation_id`` into the sandbox's ``incident`` table
through ``connectors.servicenow.ServiceNowTableTarget``, the sandbox served by uvicorn over
loopback from a background thread. The sandbox admits ``--rate`` requests per second (429
with ``Retry-After`` past that) and fails ``--fault-rate`` of the writes it admits, split
evenly at random between an error before the commit, an error after the commit and a
connection dropped after the commit. A batch whose upsert raises is tried again (up to
``--batch-attempts`` times), as the next run of a sync would.

Measured over the wall time of the upserts: requests admitted by the sandbox per second (its
own counters), records confirmed written per second (created + updated + found unchanged by
the target), and at the end, read straight from the sandbox: records present, missing
(lost) and created more than once (duplicated). Human summary first; the last line of stdout
is one JSON object. The goals are printed as met or not; they do not change the exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections import Counter
from typing import Any

import pandas as pd

from connectors.base.records import WriteResult
from connectors.servicenow.client import ServiceNowClient, ServiceNowSettings
from connectors.servicenow.records import ServiceNowTableTarget
from sandboxes.core.faults import FaultConfig
from sandboxes.core.server import BackgroundServer
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from sandboxes.servicenow.admin import build_app

TABLE = "incident"
KEY = "correlation_id"
PREFIX = "bench-"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=100.0, help="sandbox requests/s allowed")
    parser.add_argument("--fault-rate", type=float, default=0.2, help="share of writes failed")
    parser.add_argument("--concurrency", type=int, default=8, help="target's writes in flight")
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--batch-attempts", type=int, default=3)
    parser.add_argument(
        "--client-rate",
        type=float,
        default=None,
        help="the client's own requests/s limit (ServiceNowSettings.requests_per_second); "
        "default none: it learns the limit from 429s",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="show the client's retry log")
    return parser.parse_args(argv)


def batches(records: int, size: int) -> list[pd.DataFrame]:
    rows = [
        {
            KEY: f"{PREFIX}{index:06d}",
            "short_description": f"bench record {index}",
            "impact": str(1 + index % 3),
            "urgency": str(1 + (index // 3) % 3),
        }
        for index in range(records)
    ]
    return [pd.DataFrame(rows[start : start + size]) for start in range(0, len(rows), size)]


async def upsert_all(
    target: ServiceNowTableTarget, frames: list[pd.DataFrame], attempts: int
) -> tuple[int, int, int, list[str]]:
    """Confirmed writes, created, rejected, and the errors of failed batch attempts."""
    confirmed = created = rejected = 0
    errors: list[str] = []
    for number, frame in enumerate(frames, start=1):
        for attempt in range(1, attempts + 1):
            try:
                result: WriteResult = await target.upsert(frame, KEY)
            except Exception as error:
                errors.append(f"batch {number} attempt {attempt}: {type(error).__name__}: {error}")
                print(f"  batch {number}: attempt {attempt} failed: {error}", file=sys.stderr)
                # The upsert's other writes go on after the first one raised; trying the
                # batch again before they end would race them and count doubles the target
                # never made on its own.
                await _writes_settled()
                continue
            confirmed += len(result.created) + len(result.updated) + result.unchanged
            created += len(result.created)
            rejected += len(result.rejected)
            break
        print(f"  batch {number}/{len(frames)} done", file=sys.stderr)
    return confirmed, created, rejected, errors


async def _writes_settled() -> None:
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(others)


def check(sandbox: ServiceNowSandbox, records: int) -> tuple[int, int, int, int]:
    """Records present, lost, duplicated values and surplus records, read from the sandbox."""
    counts = Counter(
        record.get(KEY, "")
        for record in sandbox.records(TABLE)
        if record.get(KEY, "").startswith(PREFIX)
    )
    expected = {f"{PREFIX}{index:06d}" for index in range(records)}
    lost = len(expected - set(counts))
    duplicated = sum(1 for count in counts.values() if count > 1)
    surplus = sum(count - 1 for count in counts.values() if count > 1)
    return sum(counts.values()), lost, duplicated, surplus


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sandbox = ServiceNowSandbox(
        ServiceNowSandboxConfig(cmdb_ci_server=0, incident=0, sys_user=50, seed=args.seed)
    )
    frames = batches(args.records, args.batch_size)
    with BackgroundServer(build_app(sandbox)) as server:
        settings = ServiceNowSettings(
            instance_url=server.url,
            username="admin",
            password="sandbox",  # the sandbox's published demo password
            requests_per_second=args.client_rate,
        )
        target = ServiceNowTableTarget(
            ServiceNowClient(settings), TABLE, concurrency=args.concurrency
        )
        try:
            await target.prepare([], KEY)
            # Limits and faults from here, so the figures cover the upserts alone.
            sandbox.rate_limit_per_second = args.rate
            sandbox.faults = FaultConfig(write_fault_rate=args.fault_rate, seed=args.seed)
            before = sandbox.stats.model_copy(deep=True)
            started = time.perf_counter()
            confirmed, created, rejected, errors = await upsert_all(
                target, frames, args.batch_attempts
            )
            wall = time.perf_counter() - started
            after = sandbox.stats.model_copy(deep=True)
            client_stats = target.call_stats()
        finally:
            await target.aclose()
    present, lost, duplicated, surplus = check(sandbox, args.records)
    requests = after.requests_total - before.requests_total
    refused = after.rate_limited_per_second - before.rate_limited_per_second
    admitted = requests - refused
    writes = after.writes - before.writes
    faults = {kind: count for kind, count in after.write_faults.items() if count}
    return {
        "allowed_rate_per_s": args.rate,
        "achieved_rate_per_s": round(admitted / wall, 2),
        "requests_per_s": round(requests / wall, 2),
        "confirmed_writes_per_s": round(confirmed / wall, 2),
        "records": present,
        "expected_records": args.records,
        "lost": lost,
        "duplicated": duplicated,
        "duplicate_records": surplus,
        "fault_rate": args.fault_rate,
        "write_faults": faults,
        "writes": writes,
        "requests": requests,
        "rate_limited": refused,
        "confirmed_writes": confirmed,
        "created": created,
        "rejected": rejected,
        "failed_batch_attempts": len(errors),
        "concurrency": args.concurrency,
        "client_rate": args.client_rate,
        "client_retries": getattr(client_stats, "retries", None),
        "seconds": round(wall, 2),
    }


def summary(figures: dict[str, Any]) -> list[str]:
    rate = figures["allowed_rate_per_s"]
    goals = [
        ("admitted requests/s >= 0.9 x allowed", figures["achieved_rate_per_s"] >= 0.9 * rate),
        ("confirmed writes/s >= 0.7 x allowed", figures["confirmed_writes_per_s"] >= 0.7 * rate),
        ("no record lost", figures["lost"] == 0),
        ("no record duplicated", figures["duplicated"] == 0),
    ]
    lines = [
        f"REST target bench: {figures['expected_records']:,} records upserted into {TABLE} "
        f"by {KEY}, sandbox over loopback",
        f"  allowed {rate:g} requests/s; {figures['fault_rate']:.0%} of writes faulted; "
        f"concurrency {figures['concurrency']}; client limit {figures['client_rate']}",
        f"  wall time              {figures['seconds']:>10.2f} s",
        f"  requests reaching it   {figures['requests']:>10,} ({figures['requests_per_s']:.1f}/s)",
        f"  of which refused (429) {figures['rate_limited']:>10,}",
        f"  admitted requests/s    {figures['achieved_rate_per_s']:>10.1f}",
        f"  writes admitted        {figures['writes']:>10,}  faults: {figures['write_faults']}",
        f"  confirmed writes       {figures['confirmed_writes']:>10,} "
        f"({figures['confirmed_writes_per_s']:.1f}/s); rejected {figures['rejected']}, "
        f"failed batch attempts {figures['failed_batch_attempts']}",
        f"  in the sandbox         {figures['records']:>10,} records; lost {figures['lost']}, "
        f"duplicated values {figures['duplicated']} ({figures['duplicate_records']} extra records)",
        "goals:",
    ]
    lines += [f"  {'met' if met else 'NOT met'}: {goal}" for goal, met in goals]
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if not args.verbose:
        logging.getLogger("syncline.connectors").setLevel(logging.ERROR)
    figures = asyncio.run(run(args))
    print("\n".join(summary(figures)))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
