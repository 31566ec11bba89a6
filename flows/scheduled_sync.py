"""The scheduled, incremental sync of one integration (e.g. the nightly CMDB sync).

Tasks are the unit of retry: ``sync-records`` reads, maps and writes; only after it returns
does ``commit-cursor`` move the cursor. With persisted results a retried flow run gets
``sync-records`` back from cache and only commits; without, it reruns it and every record
comes back "unchanged". Either way the end state is that of one clean run.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    acreate_progress_artifact,
    aupdate_progress_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.runtime import flow_run

from flows._prefect import load_block_value
from flows.two_way_sync import commit_cursors, publish_two_way_summary, sync_both_ways
from syncline.connect import ConnectorFactory
from syncline.reporting import summary_markdown
from syncline.settings import SynclineSettings, fault_point
from syncline.specs import IntegrationSpec, find_integration, find_spec
from syncline.state import Ledger
from syncline.sync import SyncProgress, SyncSummary, finish_run, run_sync, summary_row
from syncline.two_way_summary import TwoWaySummary


@task(name="sync-records", persist_result=True)
def sync_records(integration: str, full_refresh: bool = False) -> SyncSummary:
    return asyncio.run(_sync_records(integration, full_refresh))


async def _sync_records(integration: str, full_refresh: bool) -> SyncSummary:
    settings = SynclineSettings()
    spec = find_spec(settings.specs_dir, integration)
    factory = ConnectorFactory(load_block=load_block_value)
    ledger = Ledger(settings.ledger())
    source, target = factory.source(spec), factory.target(spec)
    progress = ProgressArtifact(integration)
    try:
        return await run_sync(
            spec,
            source,
            target,
            ledger,
            flow_run_id=str(flow_run.get_id() or "") or None,
            full_refresh=full_refresh,
            on_progress=progress.update,
            logger=get_run_logger(),
        )
    finally:
        await source.aclose()
        await target.aclose()
        ledger.dispose()


class ProgressArtifact:
    """A progress bar in the UI for reads whose size the source tells (ServiceNow does)."""

    def __init__(self, integration: str) -> None:
        self.integration = integration
        self.artifact_id: UUID | None = None

    async def update(self, progress: SyncProgress) -> None:
        percent = progress.percent
        if percent is None:
            return
        if self.artifact_id is None:
            self.artifact_id = await acreate_progress_artifact(
                percent,
                key=f"sync-{self.integration}-progress",
                description=f"{self.integration}: records read of {progress.expected:,}",
            )
        else:
            await aupdate_progress_artifact(self.artifact_id, percent)


@task(name="commit-cursor")
def commit_cursor(summary: SyncSummary) -> None:
    """Move the cursor to the newest change the target confirmed; keep the run's summary."""
    ledger = Ledger(SynclineSettings().ledger())
    try:
        finish_run(ledger, summary)
    finally:
        ledger.dispose()


def record_failure(integration: str, error: BaseException) -> None:
    """A run that failed after its records were written is in the run history too."""
    ledger = Ledger(SynclineSettings().ledger())
    try:
        ledger.run_failed(
            integration,
            str(flow_run.get_id() or "") or "local",
            error=f"{type(error).__name__}: {error}",
        )
    finally:
        ledger.dispose()


@task(name="publish-summary")
def publish_summary(summary: SyncSummary) -> None:
    key = f"sync-{summary.integration}"
    create_table_artifact(
        key=key,
        table=[summary_row(summary)],
        description=f"Latest run of {summary.integration}",
    )
    create_markdown_artifact(
        key=f"{key}-report",
        markdown=summary_markdown(summary),
        description=f"Latest run of {summary.integration}, explained",
    )


# A sync flow, not async: `prefect flow-run retry --entrypoint` (on-call's local retry) runs
# only sync flows in Prefect 3.9, and a nightly run does not miss the ~1 s it costs at exit.
@flow(name="scheduled-sync")
def scheduled_sync(
    integration: str = "cmdb-nightly", full_refresh: bool = False
) -> SyncSummary | TwoWaySummary:
    """Sync one integration incrementally from its cursor (or fully with ``full_refresh``);
    a two-way integration both ways."""
    spec = find_integration(SynclineSettings().specs_dir, integration)
    if not isinstance(spec, IntegrationSpec):
        both = sync_both_ways(spec, full_refresh)
        try:
            fault_point("after-target-write")
            commit_cursors(spec, both)
        except BaseException as error:
            record_failure(integration, error)
            raise
        publish_two_way_summary(both)
        return both
    logger = get_run_logger()
    summary = sync_records(integration, full_refresh)
    try:
        fault_point("after-target-write")
        commit_cursor(summary)
    except BaseException as error:
        record_failure(integration, error)
        raise
    publish_summary(summary)
    logger.info(
        "%s: %d read, %d created, %d updated, %d unchanged, %d dead-lettered, %d deleted, "
        "%d unread; cursor %s -> %s",
        integration,
        summary.read,
        summary.created,
        summary.updated,
        summary.unchanged,
        summary.dead_lettered,
        summary.deleted,
        summary.unread,
        summary.cursor_before,
        summary.cursor_after,
    )
    return summary
