"""Replay the dead letters of one integration (after the cause was fixed)."""

from __future__ import annotations

import asyncio

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows._prefect import load_block_value
from syncline.connect import ConnectorFactory
from syncline.replay import ReplaySummary, replay_dead_letters, replay_two_way_letters
from syncline.settings import SynclineSettings
from syncline.specs import IntegrationSpec, find_integration
from syncline.state import Ledger
from syncline.two_way_endpoints import open_endpoints


@flow(name="replay-dead-letters")
def replay(integration: str = "cmdb-nightly", limit: int | None = None) -> ReplaySummary:
    """Retry the pending dead letters of ``integration`` (at most ``limit`` of them)."""
    return asyncio.run(_replay(integration, limit))


async def _replay(integration: str, limit: int | None) -> ReplaySummary:
    settings = SynclineSettings()
    spec = find_integration(settings.specs_dir, integration)
    ledger = Ledger(settings.ledger())
    factory = ConnectorFactory(load_block=load_block_value)
    run_id = str(flow_run.get_id() or "") or None
    try:
        if isinstance(spec, IntegrationSpec):
            target = factory.target(spec)
            try:
                summary = await replay_dead_letters(
                    spec, target, ledger, flow_run_id=run_id, limit=limit
                )
            finally:
                await target.aclose()
        else:
            a, b = open_endpoints(spec, factory)
            try:
                summary = await replay_two_way_letters(
                    spec, a, b, ledger, flow_run_id=run_id, limit=limit
                )
            finally:
                await a.aclose()
                await b.aclose()
    finally:
        ledger.dispose()
    get_run_logger().info(
        "%s: %d dead letters retried, %d replayed, %d still failing",
        integration,
        summary.attempted,
        summary.replayed,
        summary.still_failing,
    )
    return summary
