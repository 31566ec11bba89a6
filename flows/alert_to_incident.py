"""Alerts to incidents: drain the gateway's outbox into ServiceNow incidents.

Run by the ``alert-to-servicenow`` deployment, triggered by each ``syncline.alert.*`` event,
and in-process by the warm path (``syncline_app.incident_path``) as deliveries arrive. Either
way a run drains every alert delivery not yet applied, batch by batch (``syncline.incidents``:
claimed, coalesced per alert, written through the one apply path), so the event that started
it need not be its own: a run that was collapsed or cancelled loses nothing, and whichever
drainer comes first applies a delivery, once.

Run with ``poll: true`` by the ``alert-polling`` deployment every minute: first the alert spec's
``poll:`` source is read by cursor into the same outbox (``syncline.alert_poll``, for tools
that send no webhooks), then the drain as above; without a ``poll:`` section the run is the
drain alone, the safety net for deliveries a cancelled triggered run left waiting.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows._prefect import load_block_value
from syncline.alert_claims import AlertClaims
from syncline.alert_poll import PollReport, poll_alerts
from syncline.alert_spec import DEFAULT_ALERT_SPEC, AlertSpec, find_alert_spec
from syncline.connect import ConnectorFactory
from syncline.incidents import BatchReport, DrainReport, IncidentDrainer
from syncline.outbox import GatewayOutbox
from syncline.settings import SynclineSettings
from syncline.state import Ledger


@task(name="drain-alerts", cache_policy=NO_CACHE)
async def drain_alerts(spec: AlertSpec, max_batches: int, wait_for_others: float) -> DrainReport:
    """Apply the waiting alert deliveries, batch by batch, until none waits."""
    logger = get_run_logger()
    settings = SynclineSettings()
    factory = ConnectorFactory(load_block=load_block_value)
    apply_spec = spec.apply_spec()
    ledger = Ledger(settings.ledger())
    target, lookup = factory.target(apply_spec), factory.source(apply_spec)

    async def log_batch(batch: BatchReport) -> None:
        for item in batch.incidents:
            logger.info(
                "%s %s (%s, %d notification%s): %s%s",
                item.number or item.incident_key or "-",
                item.action,
                item.correlation_id,
                item.notifications,
                "" if item.notifications == 1 else "s",
                item.title,
                f"; {item.reason}" if item.reason else "",
            )

    try:
        drainer = IncidentDrainer(spec, target, ledger, AlertClaims(ledger.engine), lookup=lookup)
        return await drainer.drain(
            flow_run_id=str(flow_run.get_id() or "") or None,
            max_batches=max_batches,
            wait_for_others=wait_for_others,
            on_batch=log_batch,
        )
    finally:
        await target.aclose()
        await lookup.aclose()
        ledger.dispose()


@task(name="poll-alerts", cache_policy=NO_CACHE)
async def poll_alert_source(spec: AlertSpec) -> PollReport:
    """Admit the rows the poll's source changed since its cursor into the outbox."""
    logger = get_run_logger()
    settings = SynclineSettings()
    factory = ConnectorFactory(load_block=load_block_value)
    ledger = Ledger(settings.ledger())
    outbox = GatewayOutbox(ledger.engine)
    source = factory.source(spec.poll_read_spec())
    try:
        report = await poll_alerts(
            spec, source, outbox, ledger, flow_run_id=str(flow_run.get_id() or "") or None
        )
    finally:
        await source.aclose()
        ledger.dispose()
    assert spec.poll is not None
    logger.info(
        "%s: %d row(s) read from %s:%s since %s: %d new alert notification(s), "
        "%d read before, %d dead-lettered; cursor now %s",
        spec.poll_name,
        report.read,
        spec.poll.source.connector,
        spec.poll.source.object,
        report.cursor_before or "the beginning",
        report.admitted,
        report.duplicates,
        report.dead_lettered,
        report.cursor_after,
    )
    return report


@task(name="publish-incidents", cache_policy=NO_CACHE)
async def publish_incidents(spec: AlertSpec, report: DrainReport) -> None:
    rows = [
        {
            "incident": item.number or item.incident_key or "",
            "action": item.action,
            "alert": item.correlation_id,
            "status": item.status,
            "notifications": item.notifications,
            "title": item.title,
            "reason": item.reason or "",
        }
        for item in report.incidents
    ]
    await acreate_table_artifact(
        key=f"{spec.name}-incidents",
        table=rows,
        description=(
            f"{spec.name}: {report.count('opened')} opened, {report.count('updated')} updated, "
            f"{report.count('resolved')} resolved, {report.count('reopened')} reopened, "
            f"{report.count('dead-lettered')} dead-lettered from {report.entries} deliveries; "
            f"{report.backlog} waiting"
        ),
    )


@flow(name="alert-to-incident")
async def alert_to_incident(
    event_id: str | None = None,
    alert_spec: str = DEFAULT_ALERT_SPEC,
    max_batches: int = 100,
    wait_for_others: float = 10.0,
    poll: bool = False,
) -> DrainReport:
    """Apply every alert delivery waiting in the gateway's outbox to its incident.

    ``event_id`` is the triggering event's id (the outbox entry's), for the record: the run
    drains everything waiting, that entry included unless another drainer applied it first.
    ``poll``: read the spec's ``poll:`` source into the outbox first (if it has one)."""
    logger = get_run_logger()
    spec = find_alert_spec(SynclineSettings().specs_dir, alert_spec)
    if poll and spec.poll is not None:
        await poll_alert_source(spec)
    elif poll:
        logger.info("%s has no poll section: draining what waits in the outbox", spec.name)
    report = await drain_alerts(spec, max_batches, wait_for_others)
    if report.incidents:
        await publish_incidents(spec, report)
    logger.info(
        "%s: %d deliveries applied in %d batch(es): %d opened, %d updated, %d resolved, "
        "%d reopened, %d unchanged, %d dead-lettered; %d waiting%s",
        spec.name,
        report.entries,
        report.batches,
        report.count("opened"),
        report.count("updated"),
        report.count("resolved"),
        report.count("reopened"),
        report.count("unchanged"),
        report.count("dead-lettered"),
        report.backlog,
        f" (started by event {event_id})" if event_id else "",
    )
    return report
