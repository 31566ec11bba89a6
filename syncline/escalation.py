"""A two-way integration run by its records' change events, or by cursor, with its journals.

An escalation (ServiceNow incidents ↔ Jira issues) is a two-way spec plus the journal entries
of each linked pair (``syncline.journal_sync``). It runs two ways, under one lease per
integration (``EscalationLedger.take_lease``), so the warm path, the triggered deployment's
runs and the polling schedule never carry the same change at once:

- **events** (``drain``): the gateway's outbox holds the record-change events of both systems
  (``syncline.record.changed``, resources ``syncline.record.servicenow.incident.<sys_id>`` and
  ``syncline.record.jira.issue.<id>``). A drain takes every entry the integration has not
  carried, batch by batch, runs the two-way engine with ``only=`` the records they name and
  then the journals of those pairs, and records the entries as carried. The records are read
  as they are now, whatever the webhook said: a webhook that came before its change was
  visible, twice or after a later one changes nothing the current state does not warrant
  (and the polling run or the next webhook brings what was not visible yet).
- **polling** (``poll``): the two-way engine by cursor, then the journals of the pairs whose
  records changed in the run's windows (a new work note or comment updates its record).

A drain that finds the lease held returns at once: the holder takes the waiting entries in
its next batch. So a storm of webhooks is a few batches of one drainer, never a process each.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

import pandas as pd
from pydantic import BaseModel, Field

from syncline.journal_links import EscalationLedger
from syncline.journal_sync import SIDES, JournalReport, JournalSync, Side, journal_of
from syncline.outbox import OutboxEntry
from syncline.specs import SourceSpec
from syncline.state import Ledger
from syncline.two_way import TwoWaySpec
from syncline.two_way_endpoints import Endpoint
from syncline.two_way_summary import TwoWaySummary, two_way_row
from syncline.two_way_sync import finish_two_way_run, run_two_way

log = logging.getLogger("syncline.escalation")

LEASE_TTL = timedelta(minutes=2)
# The id each system's webhooks name a record by (the resource id's last part).
EVENT_KEYS: dict[str, str] = {"servicenow": "sys_id", "jira": "id"}
# The object name in resource ids where it differs from the spec's (a Jira project's issues).
EVENT_OBJECTS: dict[str, str] = {"jira": "issue"}


def event_prefix(endpoint: SourceSpec) -> str:
    """Resource ids of ``endpoint``'s record-change events start with this."""
    name = EVENT_OBJECTS.get(endpoint.connector, endpoint.object)
    return f"syncline.record.{endpoint.connector}.{name}."


class EscalationReport(BaseModel):
    """What one run did: the engine's summaries, the journals, the events carried."""

    integration: str
    mode: Literal["events", "poll"]
    collapsed: bool = Field(
        default=False, description="another drainer held the lease: it carries the events"
    )
    events: int = 0
    batches: int = 0
    backlog: int = 0
    two_way: list[TwoWaySummary] = Field(default_factory=list)
    journal: JournalReport = Field(default_factory=JournalReport)

    def count(self, what: str) -> int:
        """A total over the runs' summaries: ``a_created``, ``b_updated``, ``conflicts`` …"""
        return sum(int(two_way_row(summary)[what]) for summary in self.two_way)

    def add_journal(self, report: JournalReport) -> None:
        mine = self.journal
        mine.pairs += report.pairs
        mine.a_appended += report.a_appended
        mine.b_appended += report.b_appended
        mine.recognised += report.recognised
        mine.in_doubt += report.in_doubt
        mine.failed_pairs += report.failed_pairs


class EscalationRunner:
    """Runs one two-way integration and its journals between two opened endpoints."""

    def __init__(
        self,
        spec: TwoWaySpec,
        a: Endpoint,
        b: Endpoint,
        ledger: Ledger,
        *,
        flow_run_id: str | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = log,
    ) -> None:
        self.spec = spec
        self.ends: dict[Side, Endpoint] = {"a": a, "b": b}
        self.ledger = ledger
        self.links = EscalationLedger(ledger.engine)
        self.flow_run_id = flow_run_id
        self.now = now
        self.logger = logger
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.prefixes: dict[Side, str] = {
            side: event_prefix(self.ends[side].spec) for side in SIDES
        }

    # events ----------------------------------------------------------------------------------

    def backlog(self) -> int:
        return self.links.backlog(self.spec.name, list(self.prefixes.values()))

    async def drain(self, *, max_batches: int = 50, batch_size: int = 200) -> EscalationReport:
        """Carry every record-change event not carried yet (see the module docstring)."""
        report = EscalationReport(integration=self.spec.name, mode="events")
        name = self.spec.name
        if not self.links.take_lease(name, self.holder, ttl=LEASE_TTL, now=self.now()):
            report.collapsed = True
            report.backlog = self.backlog()
            return report
        try:
            while report.batches < max_batches:
                entries = self.links.pending_events(name, list(self.prefixes.values()), batch_size)
                if not entries:
                    break
                only = await self.keys_named(entries)
                summary = await run_two_way(
                    self.spec,
                    self.ends["a"],
                    self.ends["b"],
                    self.ledger,
                    flow_run_id=self.flow_run_id,
                    only=only,
                    now=self.now,
                    logger=self.logger,
                )
                report.two_way.append(summary)
                report.add_journal(await self.journals(self.pairs_of(only)))
                self.links.record_applied(
                    name,
                    [entry.id for entry in entries],
                    flow_run_id=self.flow_run_id,
                    now=self.now(),
                )
                report.events += len(entries)
                report.batches += 1
                self.links.take_lease(name, self.holder, ttl=LEASE_TTL, now=self.now())
        finally:
            self.links.release_lease(name, self.holder)
        report.backlog = self.backlog()
        return report

    async def keys_named(self, entries: Sequence[OutboxEntry]) -> dict[Side, list[str]]:
        """Each side's record keys the entries name (a webhook's id translated to the key the
        spec uses, e.g. a Jira issue id to its key, by reading the record as it is now)."""
        named: dict[Side, list[str]] = {"a": [], "b": []}
        for entry in entries:
            for side in SIDES:
                if entry.resource_id.startswith(self.prefixes[side]):
                    named[side].append(entry.subject_key)
        only: dict[Side, list[str]] = {}
        for side in SIDES:
            ids = list(dict.fromkeys(named[side]))
            end = self.ends[side]
            event_key = EVENT_KEYS.get(end.spec.connector, end.spec.key)
            if not ids or event_key == end.spec.key:
                only[side] = ids
                continue
            found: pd.DataFrame = await end.source.fetch(ids, by=event_key)
            only[side] = [] if found.empty else [str(key) for key in found[end.spec.key]]
        return only

    def pairs_of(self, only: Mapping[Side, Sequence[str]]) -> list[tuple[str, str]]:
        """The linked pairs of the records named (after the run: new pairs included)."""
        name = self.spec.name
        pairs = [
            (link.a_key, link.b_key)
            for link in self.ledger.pair_links(name, a_keys=only.get("a", ())).values()
        ]
        pairs += [
            (link.a_key, link.b_key)
            for link in self.ledger.pair_links(name, b_keys=only.get("b", ())).values()
        ]
        return list(dict.fromkeys(pairs))

    async def journals(self, pairs: Sequence[tuple[str, str]]) -> JournalReport:
        sync = JournalSync(
            self.spec.name,
            journal_of(self.ends["a"]),
            journal_of(self.ends["b"]),
            self.ledger,
            flow_run_id=self.flow_run_id,
            now=self.now,
            logger=self.logger,
        )
        return await sync.run(pairs)

    # polling ---------------------------------------------------------------------------------

    async def poll(self, *, full_refresh: bool = False) -> EscalationReport:
        """The integration by cursor (both sides' changes since the last poll), then the
        journals of the pairs whose records changed in the windows read; cursors move last."""
        report = EscalationReport(integration=self.spec.name, mode="poll")
        name = self.spec.name
        if not self.links.take_lease(name, self.holder, ttl=LEASE_TTL, now=self.now()):
            report.collapsed = True
            return report
        try:
            seen: dict[Side, set[str]] = {}
            summary = await run_two_way(
                self.spec,
                self.ends["a"],
                self.ends["b"],
                self.ledger,
                flow_run_id=self.flow_run_id,
                full_refresh=full_refresh,
                seen=seen,
                now=self.now,
                logger=self.logger,
            )
            report.two_way.append(summary)
            # A new work note or comment changes its record, so the windows the run read name
            # every pair whose journal may have moved.
            changed = {side: sorted(seen.get(side, ())) for side in SIDES}
            report.add_journal(await self.journals(self.pairs_of(changed)))
            finish_two_way_run(self.ledger, self.spec, summary)
            report.batches = 1
        finally:
            self.links.release_lease(name, self.holder)
        return report
