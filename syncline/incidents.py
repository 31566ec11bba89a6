"""Alerts to incidents: drain the gateway's outbox into the incident table, in batches.

One batch: take the alerts of the oldest unapplied deliveries (``AlertClaims.claim``: no other
drainer holds them meanwhile), read every unapplied delivery about them, coalesce them per
alert in arrival order (a storm of re-notifications is one write carrying the latest news; a
trigger then its recovery in one batch ends resolved), route each alert to its incident fields
(``syncline.inbound.routing``) and write them through the one apply path (``apply_records``,
keyed by correlation id: links, audit, write intents and dead letters are the standard ones).
Then every delivery of the batch is recorded as applied, with its outcome, and the alerts are
released, in one transaction.

A delivery whose alert cannot be read, or whose incident the target refuses, is a dead letter
of the alert spec's integration, recorded as ``dead-lettered``: never silence. A batch that
fails as a whole (the target down) records nothing and releases its alerts for a retry.

Engine code: no Prefect. The flow ``alert-to-incident`` and the warm path call ``drain``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from connectors.base.records import RecordSource, RecordTarget, RejectedRecord
from syncline.alert_claims import AlertClaims, Application, Subject
from syncline.alert_spec import INCIDENT_FIELDS, AlertSpec
from syncline.apply import apply_records
from syncline.inbound.models import Alert
from syncline.inbound.routing import RESOLVED_STATE, IncidentDraft, correlation_id, route
from syncline.outbox import OutboxEntry
from syncline.state import Ledger, LinkConflictError

# Everything but the characters that mean something in an encoded query (and %, the escape).
_KEY_SAFE = "".join(chr(c) for c in range(32, 127) if chr(c) not in "%,^")

Action = Literal["opened", "updated", "resolved", "reopened", "unchanged", "dead-lettered"]

# An alert that fires again after its incident was resolved reopens it: a resolved incident
# that stayed resolved would hide the alert firing. Closed incidents are final in ServiceNow
# and are left as they are.
REOPENED_STATE = "2"  # In Progress
Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class CoalescedAlert:
    """Every delivery about one alert in a batch, in arrival order; the last one is applied."""

    source: str
    subject_key: str
    entries: tuple[OutboxEntry, ...]

    @property
    def latest(self) -> OutboxEntry:
        return self.entries[-1]


def coalesce(entries: Sequence[OutboxEntry]) -> list[CoalescedAlert]:
    """Group ``entries`` by alert (source, subject key), in the order each alert first
    arrived; within an alert, in arrival order (by outbox sequence, whatever order given)."""
    groups: dict[Subject, list[OutboxEntry]] = {}
    for entry in sorted(entries, key=lambda item: item.seq):
        groups.setdefault((entry.source, entry.subject_key), []).append(entry)
    return [
        CoalescedAlert(source, subject_key, tuple(group))
        for (source, subject_key), group in groups.items()
    ]


def alert_of(entry: OutboxEntry) -> Alert:
    """The normalised alert an outbox entry carries (as the gateway emitted it)."""
    body = entry.payload.get("alert")
    if not isinstance(body, dict):
        raise ValueError(f"outbox entry {entry.id} ({entry.event}) carries no alert")
    return Alert.model_validate(body)


class IncidentOutcome(BaseModel):
    """What became of one alert's incident in one batch."""

    correlation_id: str
    source: str
    alert_key: str
    status: str  # the alert's latest status: triggered | acknowledged | resolved | ?
    action: Action
    notifications: int  # deliveries coalesced into this write
    title: str = ""
    incident_key: str | None = None  # the target's key (ServiceNow sys_id)
    number: str | None = None  # what people call it (INC0010001), when looked up
    reason: str | None = None  # why it was dead-lettered


class BatchReport(BaseModel):
    entries: int = 0  # deliveries applied (recorded) in this batch
    incidents: list[IncidentOutcome] = []
    held_elsewhere: int = 0  # waiting alerts another drainer held

    @property
    def empty(self) -> bool:
        return self.entries == 0


class DrainReport(BaseModel):
    entries: int = 0
    batches: int = 0
    incidents: list[IncidentOutcome] = []
    backlog: int = 0  # deliveries still unapplied when the drain ended

    def count(self, action: Action) -> int:
        return sum(1 for item in self.incidents if item.action == action)

    def add(self, batch: BatchReport) -> None:
        self.entries += batch.entries
        self.batches += 1
        self.incidents.extend(batch.incidents)


def incident_correlation_id(source: str, alert_key: str) -> str:
    """The incident's correlation id: ``<source>:<alert key>`` with ``%``, ``,`` and ``^``
    percent-encoded. Incidents are looked up by it with an encoded query's ``IN``, which
    splits its values at commas and its conditions at ``^``: a Datadog key such as
    ``4242:env:prod,host:web-1`` would otherwise never be found, and every re-notification
    would open another incident."""
    return correlation_id(source, quote(alert_key, safe=_KEY_SAFE))


def drainer_name() -> str:
    """Who holds a claim: host, process and a random part (two drainers in one process)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@dataclass(slots=True)
class _Prepared:
    alert: CoalescedAlert
    draft: IncidentDraft | None = None
    title: str = ""
    status: str = "?"
    reason: str | None = None
    outcome: str = "unchanged"
    reopens: bool = False
    incident_key: str | None = None
    record: dict[str, Any] = field(default_factory=dict)  # the fields to write


class IncidentDrainer:
    """Applies the outbox's alert deliveries to incidents, batch by batch, as ``holder``.

    ``lookup`` (a source keyed by correlation id on the incident table) is read before each
    batch's write, for the incidents' states (an alert firing again reopens its resolved
    incident) and numbers, and after it for the numbers of the incidents it opened; without
    it the report has their keys only and resolved incidents stay resolved.
    """

    def __init__(
        self,
        spec: AlertSpec,
        target: RecordTarget,
        ledger: Ledger,
        claims: AlertClaims,
        *,
        lookup: RecordSource | None = None,
        holder: str | None = None,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self.spec = spec
        self.target = target
        self.ledger = ledger
        self.claims = claims
        self.lookup = lookup
        self.holder = holder or drainer_name()
        self.clock = clock

    async def drain_batch(self, *, flow_run_id: str | None = None) -> BatchReport:
        """Apply one batch: the alerts of the oldest unapplied deliveries that no other
        drainer holds. An empty report with ``held_elsewhere`` means: wait, then look again."""
        waiting = await asyncio.to_thread(self.claims.waiting, self.spec.batch_size)
        if not waiting:
            return BatchReport()
        taken = await asyncio.to_thread(
            self.claims.claim,
            waiting,
            holder=self.holder,
            ttl=self.spec.claim_ttl,
            now=self.clock(),
        )
        report = BatchReport(held_elsewhere=len(waiting) - len(taken))
        if not taken:
            return report
        try:
            entries = await asyncio.to_thread(self.claims.entries_of, taken)
            prepared = [self._prepare(alert, flow_run_id) for alert in coalesce(entries)]
            current = await self._incidents(prepared)
            await self._write(prepared, current, flow_run_id)
            numbers = {key: str(found.get("number") or "") for key, found in current.items()}
            created = [item for item in prepared if item.outcome == "created"]
            if created:
                after = await self._incidents(created)
                numbers.update({k: str(found.get("number") or "") for k, found in after.items()})
        except BaseException:
            await asyncio.to_thread(self.claims.release, self.holder, taken)
            raise
        applications = [
            Application(
                outbox_id=entry.id,
                source=entry.source,
                subject_key=entry.subject_key,
                outcome=item.outcome if entry is item.alert.latest else "coalesced",
                correlation_id=item.draft.correlation_id if item.draft else None,
                incident_key=item.incident_key,
            )
            for item in prepared
            for entry in item.alert.entries
        ]
        report.entries = await asyncio.to_thread(
            self.claims.record,
            applications,
            holder=self.holder,
            flow_run_id=flow_run_id,
            now=self.clock(),
        )
        report.incidents = [_outcome(item, numbers) for item in prepared]
        return report

    async def drain(
        self,
        *,
        flow_run_id: str | None = None,
        max_batches: int | None = None,
        wait_for_others: float = 10.0,
        on_batch: Callable[[BatchReport], Awaitable[None]] | None = None,
    ) -> DrainReport:
        """Apply batches until no delivery waits (or ``max_batches``); alerts held by another
        drainer are waited for up to ``wait_for_others`` seconds, then left to it."""
        total = DrainReport()
        waited = 0.0
        while max_batches is None or total.batches < max_batches:
            batch = await self.drain_batch(flow_run_id=flow_run_id)
            if not batch.empty:
                total.add(batch)
                if on_batch is not None:
                    await on_batch(batch)
                continue
            if batch.held_elsewhere == 0 or waited >= wait_for_others:
                break
            await asyncio.sleep(0.2)
            waited += 0.2
        total.backlog = await asyncio.to_thread(self.claims.backlog)
        return total

    def _prepare(self, alert: CoalescedAlert, flow_run_id: str | None) -> _Prepared:
        item = _Prepared(alert)
        latest = alert.latest
        try:
            parsed = alert_of(latest)
            draft = route(parsed, self.spec.routing)
            item.draft = draft.model_copy(
                update={"correlation_id": incident_correlation_id(alert.source, parsed.alert_key)}
            )
            item.title, item.status = parsed.title, parsed.status
        except (ValidationError, ValueError) as error:
            reason = f"outbox entry {latest.id}: not an alert Syncline can route: {error}"
            self._park(item, reason, "route", flow_run_id)
        return item

    async def _write(
        self,
        prepared: list[_Prepared],
        current: dict[str, dict[str, Any]],
        flow_run_id: str | None,
    ) -> None:
        """One ``apply_records`` per set of fields the drafts carry: a field a draft leaves
        out (no state while the alert is open) must stay as it is, not be emptied."""
        groups: dict[tuple[str, ...], list[_Prepared]] = {}
        for item in prepared:
            if item.draft is not None:
                record = item.draft.as_record()
                existing = current.get(item.draft.correlation_id, {})
                if item.status == "triggered" and existing.get("state") == RESOLVED_STATE:
                    record["state"] = REOPENED_STATE
                    item.reopens = True
                fields = tuple(name for name in INCIDENT_FIELDS if name in record)
                item.record = record
                groups.setdefault(fields, []).append(item)
        for fields, items in groups.items():
            try:
                await self._apply(fields, items, flow_run_id)
            except LinkConflictError:
                # The ledger links an incident to another alert already (a target restored
                # from a backup, a ledger kept across sandboxes): that alert alone is parked,
                # not the whole batch, which would otherwise fail on every retry.
                for item in items:
                    try:
                        await self._apply(fields, [item], flow_run_id)
                    except LinkConflictError as error:
                        reason = f"incident written, link refused: {error}"
                        self._park(item, reason, "link", flow_run_id)
                    absent = item.draft is not None and item.draft.correlation_id not in current
                    if item.outcome == "unchanged" and absent and self.lookup is not None:
                        item.outcome = "created"  # by the batch's first attempt

    async def _apply(
        self, fields: tuple[str, ...], items: list[_Prepared], flow_run_id: str | None
    ) -> None:
        applied = await apply_records(
            self.spec.apply_spec(fields),
            [item.record for item in items],
            self.target,
            self.ledger,
            flow_run_id=flow_run_id,
        )
        result = applied.result
        created, updated = set(map(str, result.created)), set(map(str, result.updated))
        rejected = {r.key: r.reason for r in (*applied.mapped.rejected, *result.rejected)}
        for item in items:
            assert item.draft is not None
            key = item.draft.correlation_id
            item.incident_key = result.assigned_keys.get(key)
            if key in rejected:
                item.outcome, item.reason = "dead-lettered", rejected[key]
            elif key in created:
                item.outcome = "created"
            elif key in updated:
                item.outcome = "updated"

    def _park(self, item: _Prepared, reason: str, stage: str, flow_run_id: str | None) -> None:
        """``item``'s alert as a dead letter of the spec's integration, with its delivery."""
        latest = item.alert.latest
        key = (
            item.draft.correlation_id
            if item.draft is not None
            else incident_correlation_id(item.alert.source, item.alert.subject_key)
        )
        item.outcome, item.reason = "dead-lettered", reason
        self.ledger.dead_letter(
            self.spec.name,
            [RejectedRecord(key, reason, {"outbox_id": latest.id, **latest.payload})],
            stage=stage,
            flow_run_id=flow_run_id,
        )

    async def _incidents(self, prepared: list[_Prepared]) -> dict[str, dict[str, Any]]:
        """The incidents of ``prepared`` as they are now, by correlation id (none without
        a lookup)."""
        fetch = getattr(self.lookup, "fetch", None)
        keys = [item.draft.correlation_id for item in prepared if item.draft is not None]
        if fetch is None or not keys:
            return {}
        frame = await fetch(keys)
        key = self.spec.target.key
        if frame.empty or key not in frame.columns:
            return {}
        return {str(record[key]): record for record in frame.to_dict(orient="records")}


def _outcome(item: _Prepared, numbers: dict[str, str]) -> IncidentOutcome:
    alert, draft = item.alert, item.draft
    action: Action
    if item.outcome == "dead-lettered":
        action = "dead-lettered"
    elif item.outcome == "created":
        action = "opened"
    elif item.outcome == "updated" and item.reopens:
        action = "reopened"
    elif item.outcome == "updated":
        action = "resolved" if draft is not None and draft.state == RESOLVED_STATE else "updated"
    else:
        action = "unchanged"
    key = (
        draft.correlation_id if draft else incident_correlation_id(alert.source, alert.subject_key)
    )
    return IncidentOutcome(
        correlation_id=key,
        source=alert.source,
        alert_key=alert.subject_key,
        status=item.status,
        action=action,
        notifications=len(alert.entries),
        title=item.title,
        incident_key=item.incident_key,
        number=numbers.get(key) or None,
        reason=item.reason,
    )
