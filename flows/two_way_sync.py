"""The tasks of a two-way integration's run, called by the ``scheduled-sync`` flow.

As for a one-way run: ``sync-both-ways`` reads both sides, decides and writes (its result is
persisted, so a retried flow run only commits); ``commit-cursors`` then moves both sides'
cursors; ``publish-two-way-summary`` shows what happened in the UI.
"""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from flows._prefect import load_block_value
from syncline.connect import ConnectorFactory
from syncline.reporting import two_way_markdown
from syncline.settings import SynclineSettings
from syncline.state import Ledger
from syncline.two_way import TwoWaySpec
from syncline.two_way_endpoints import open_endpoints
from syncline.two_way_summary import TwoWaySummary, two_way_row
from syncline.two_way_sync import finish_two_way_run, run_two_way


@task(name="sync-both-ways", persist_result=True)
def sync_both_ways(spec: TwoWaySpec, full_refresh: bool = False) -> TwoWaySummary:
    return asyncio.run(_sync_both_ways(spec, full_refresh))


async def _sync_both_ways(spec: TwoWaySpec, full_refresh: bool) -> TwoWaySummary:
    ledger = Ledger(SynclineSettings().ledger())
    a, b = open_endpoints(spec, ConnectorFactory(load_block=load_block_value))
    try:
        return await run_two_way(
            spec,
            a,
            b,
            ledger,
            flow_run_id=str(flow_run.get_id() or "") or None,
            full_refresh=full_refresh,
            logger=get_run_logger(),
        )
    finally:
        await a.aclose()
        await b.aclose()
        ledger.dispose()


@task(name="commit-cursors")
def commit_cursors(spec: TwoWaySpec, summary: TwoWaySummary) -> None:
    """Move both sides' cursors to the newest change read; keep the run's summary."""
    ledger = Ledger(SynclineSettings().ledger())
    try:
        finish_two_way_run(ledger, spec, summary)
    finally:
        ledger.dispose()


@task(name="publish-two-way-summary")
def publish_two_way_summary(summary: TwoWaySummary) -> None:
    key = f"sync-{summary.integration}"
    create_table_artifact(
        key=key, table=[two_way_row(summary)], description=f"Latest run of {summary.integration}"
    )
    create_markdown_artifact(
        key=f"{key}-report",
        markdown=two_way_markdown(summary),
        description=f"Latest run of {summary.integration}, explained",
    )
