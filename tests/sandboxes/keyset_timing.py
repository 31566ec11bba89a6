"""How long a keyset read of the sandbox's CMDB takes, with and without the keyset index.

    .venv/bin/python -m tests.sandbox.keyset_timing [--cis 50000] [--page-size 1000]

Reads every installed server through the Table API (in process, over ASGI) the way the
ServiceNow client pages by keyset: with each page's query evaluated as it stands (the whole
table filtered and sorted per page), answered from the cached base result, and answered from
the cached result while churn changes records (the result is patched, not recomputed).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime

import httpx

from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig

NOW = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)
FILTER = "install_status!=7^sys_updated_on>=2025-01-01 00:00:00^sys_updated_on<=2026-11-30 10:00:00"


async def keyset_read(sandbox: ServiceNowSandbox, page_size: int) -> tuple[int, int, float]:
    """Records read, pages, seconds."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sandbox.app),
        base_url="https://sandbox.service-now.com",
        auth=("admin", "sandbox"),
    ) as client:
        cursor: tuple[str, str] | None = None
        records = pages = 0
        started = time.perf_counter()
        while True:
            query = FILTER
            if cursor is not None:
                updated_on, sys_id = cursor
                query += (
                    f"^sys_updated_on>={updated_on}^sys_updated_on>{updated_on}^ORsys_id>{sys_id}"
                )
            query += "^ORDERBYsys_updated_on^ORDERBYsys_id"
            response = await client.get(
                "/api/now/table/cmdb_ci_server",
                params={"sysparm_query": query, "sysparm_limit": page_size},
            )
            response.raise_for_status()
            rows = response.json()["result"]
            records += len(rows)
            pages += 1
            if len(rows) < page_size:
                return records, pages, time.perf_counter() - started
            cursor = rows[-1]["sys_updated_on"], rows[-1]["sys_id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cis", type=int, default=50_000)
    parser.add_argument("--page-size", type=int, default=1_000)
    parser.add_argument("--churn", type=int, default=200, help="changes a second, last run")
    arguments = parser.parse_args()
    sandbox = ServiceNowSandbox(ServiceNowSandboxConfig(cmdb_ci_server=arguments.cis), now=NOW)
    runs = (
        ("each page evaluated", False, 0),
        ("keyset index", True, 0),
        ("keyset index, churn", True, arguments.churn),
    )
    for label, indexed, churn in runs:
        sandbox._keyset_reads = indexed
        sandbox._result_cache.clear()
        if churn:
            sandbox.start_churn(changes_per_second=churn, duration_seconds=600)
        records, pages, seconds = asyncio.run(keyset_read(sandbox, arguments.page_size))
        changed = sandbox.stop_churn().changed if churn else 0
        print(
            f"{label:>20}: {records} of {arguments.cis} CIs in {pages} pages of "
            f"{arguments.page_size}: {seconds:.2f} s ({seconds / pages * 1000:.1f} ms a page)"
            + (f", {changed} changes meanwhile" if churn else "")
        )


if __name__ == "__main__":
    main()
