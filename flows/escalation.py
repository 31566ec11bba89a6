"""ServiceNow ↔ Jira escalation: record changes carried both ways, work notes ↔ comments.

Run by the ``servicenow-jira-escalation`` deployment, triggered by each
``syncline.record.changed`` event of a ServiceNow incident or a Jira issue and scheduled every
minute with ``poll: true`` (the fallback when webhooks are not configured, and a sweep behind
them), and in-process by the warm path (``syncline_app.escalation_path``) as deliveries
arrive. An event run carries every record-change event the integration has not carried yet,
whichever started it (``syncline.escalation``), so a run that was cancelled or collapsed loses
nothing; a run that finds another drainer at work returns at once.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows._prefect import load_block_value
from syncline.connect import ConnectorFactory
from syncline.escalation import EscalationReport, EscalationRunner
from syncline.settings import SynclineSettings
from syncline.specs import find_integration
from syncline.state import Ledger
from syncline.two_way import TwoWaySpec
from syncline.two_way_endpoints import open_endpoints
from syncline.two_way_summary import two_way_row

DEFAULT_INTEGRATION = "servicenow-jira-escalation"


def _two_way_spec(integration: str) -> TwoWaySpec:
    spec = find_integration(SynclineSettings().specs_dir, integration)
    if not isinstance(spec, TwoWaySpec):
        raise ValueError(
            f"integration {integration!r} is not a two-way spec (two_way: true): an "
            "escalation carries changes both ways"
        )
    return spec


@task(name="carry-record-changes", cache_policy=NO_CACHE)
async def carry_record_changes(
    spec: TwoWaySpec, mode: Literal["events", "poll"], max_batches: int
) -> EscalationReport:
    """Both systems' changes and journals, from the waiting events or by cursor."""
    ledger = Ledger(SynclineSettings().ledger())
    a, b = open_endpoints(spec, ConnectorFactory(load_block=load_block_value))
    try:
        runner = EscalationRunner(
            spec,
            a,
            b,
            ledger,
            flow_run_id=str(flow_run.get_id() or "") or None,
            logger=get_run_logger(),
        )
        if mode == "poll":
            return await runner.poll()
        return await runner.drain(max_batches=max_batches)
    finally:
        await a.aclose()
        await b.aclose()
        ledger.dispose()


@task(name="publish-escalation", cache_policy=NO_CACHE)
async def publish_escalation(report: EscalationReport) -> None:
    rows = [two_way_row(summary) for summary in report.two_way]
    journal = report.journal
    await acreate_table_artifact(
        key=f"{report.integration}-runs",
        table=rows,
        description=(
            f"{report.integration} ({report.mode}): {report.events} event(s) in "
            f"{report.batches} batch(es); work notes written {journal.a_appended}, comments "
            f"written {journal.b_appended}, own entries recognised {journal.recognised}; "
            f"{report.backlog} waiting"
        ),
    )


@flow(name="servicenow-jira-escalation")
async def escalation(
    event_id: str | None = None,
    integration: str = DEFAULT_INTEGRATION,
    poll: bool = False,
    max_batches: int = 50,
) -> EscalationReport:
    """Carry the waiting record-change events of ``integration`` (or, with ``poll``, both
    sides' changes since the last poll), then the journals of the pairs touched.

    ``event_id`` is the triggering event's id (its outbox entry's), for the record."""
    logger = get_run_logger()
    spec = _two_way_spec(integration)
    report = await carry_record_changes(spec, "poll" if poll else "events", max_batches)
    if report.collapsed:
        logger.info(
            "%s: another run is carrying the changes; %d event(s) waiting for it",
            integration,
            report.backlog,
        )
        return report
    if report.two_way:
        await publish_escalation(report)
    logger.info(
        "%s (%s): %d event(s), %d batch(es): issues created %d, updated %d; incidents updated "
        "%d; conflicts %d; work notes written %d, comments written %d; %d waiting%s",
        integration,
        report.mode,
        report.events,
        report.batches,
        report.count("b_created"),
        report.count("b_updated"),
        report.count("a_updated"),
        report.count("conflicts"),
        report.journal.a_appended,
        report.journal.b_appended,
        report.backlog,
        f" (started by event {event_id})" if event_id else "",
    )
    return report
