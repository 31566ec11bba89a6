"""What a two-way escalation keeps beside its record links: journal entries linked one by one,
the record-change events it has carried, and who drains its events now.

- ``syncline_journal_links``: a ServiceNow work note (side A) and the Jira comment (side B)
  that are the same note, by their ids, with the pair of records they belong to and the side
  the note was written on first. An entry either side holds that is linked was carried (or
  written by Syncline) and is never appended again, whichever way it is read.
- ``syncline_record_event_applications``: the gateway outbox entries (``syncline.record.
  changed``) an integration has carried. Events are applied by reading the records as they are
  now, so an entry is recorded once whatever became of it; a crash before the record leaves
  it pending and the next drain reads the records again, which changes nothing twice.
- ``syncline_integration_leases``: one drainer of an integration's events at a time (the warm
  path, a triggered deployment run, the polling run): a drain takes the lease with one
  statement the database decides, renews it as it goes, and gives it back at the end; a lease
  whose holder crashed expires.

No Prefect here; the tables are part of the ledger (migration 0007).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

# The module, not its names: syncline.state imports this module at its end.
from syncline import outbox
from syncline.state import as_utc, metadata

if TYPE_CHECKING:
    from syncline.outbox import OutboxEntry

RECORD_CHANGED = "syncline.record.changed"

journal_links = sa.Table(
    "syncline_journal_links",
    metadata,
    sa.Column("integration", sa.String(200), primary_key=True),
    sa.Column("a_entry", sa.String(100), primary_key=True),
    sa.Column("b_entry", sa.String(100), nullable=False),
    sa.Column("a_key", sa.String(200), nullable=False),
    sa.Column("b_key", sa.String(200), nullable=False),
    sa.Column("origin", sa.String(1), nullable=False),  # "a" or "b": where it was written first
    sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("flow_run_id", sa.String(64)),
    sa.UniqueConstraint("integration", "b_entry", name="uq_syncline_journal_links_b_entry"),
    sa.Index("ix_syncline_journal_links_pair", "integration", "a_key", "b_key"),
)

record_event_applications = sa.Table(
    "syncline_record_event_applications",
    metadata,
    sa.Column("integration", sa.String(200), primary_key=True),
    sa.Column("outbox_id", sa.String(36), primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("flow_run_id", sa.String(64)),
)

integration_leases = sa.Table(
    "syncline_integration_leases",
    metadata,
    sa.Column("integration", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(100), nullable=False),
    sa.Column("held_until", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True, slots=True)
class JournalLink:
    a_key: str
    b_key: str
    a_entry: str
    b_entry: str
    origin: Literal["a", "b"]


class EscalationLedger:
    """The journal links, event applications and leases of the ledger behind ``engine``
    (opened at head schema by ``syncline.state.Ledger``)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        dialect = {"postgresql": postgresql, "sqlite": sqlite}.get(engine.dialect.name)
        if dialect is None:
            raise NotImplementedError(
                f"escalation links support PostgreSQL and SQLite, not {engine.dialect.name}"
            )
        self._insert = dialect.insert

    # journal links ---------------------------------------------------------------------------

    def links(self, integration: str, a_key: str, b_key: str) -> list[JournalLink]:
        """The entries linked for one pair of records."""
        query = sa.select(journal_links).where(
            journal_links.c.integration == integration,
            journal_links.c.a_key == a_key,
            journal_links.c.b_key == b_key,
        )
        with self.engine.connect() as connection:
            return [
                JournalLink(row.a_key, row.b_key, row.a_entry, row.b_entry, row.origin)
                for row in connection.execute(query)
            ]

    def link(
        self, integration: str, link: JournalLink, *, flow_run_id: str | None, now: datetime
    ) -> bool:
        """Record one link; False when either entry was linked already (kept as it was)."""
        statement = (
            self._insert(journal_links)
            .values(
                integration=integration,
                a_entry=link.a_entry,
                b_entry=link.b_entry,
                a_key=link.a_key,
                b_key=link.b_key,
                origin=link.origin,
                linked_at=as_utc(now),
                flow_run_id=flow_run_id,
            )
            .on_conflict_do_nothing()
            .returning(journal_links.c.a_entry)
        )
        with self.engine.begin() as connection:
            return connection.execute(statement).first() is not None

    # record-change events --------------------------------------------------------------------

    def _unapplied(self, integration: str, prefixes: Sequence[str]) -> sa.ColumnElement[bool]:
        entry = outbox.gateway_outbox.c
        applied = sa.select(record_event_applications.c.outbox_id).where(
            record_event_applications.c.integration == integration,
            record_event_applications.c.outbox_id == entry.id,
        )
        about = sa.or_(
            *(entry.resource_id.startswith(prefix, autoescape=True) for prefix in prefixes)
        )
        return sa.and_(entry.event == RECORD_CHANGED, about, ~sa.exists(applied))

    def pending_events(
        self, integration: str, prefixes: Sequence[str], limit: int
    ) -> list[OutboxEntry]:
        """The oldest ``limit`` record-change entries about ``prefixes`` (resource ids) that
        ``integration`` has not carried, in arrival order."""
        query = (
            sa.select(outbox.gateway_outbox)
            .where(self._unapplied(integration, prefixes))
            .order_by(outbox.gateway_outbox.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [outbox._entry(row) for row in connection.execute(query)]

    def backlog(self, integration: str, prefixes: Sequence[str]) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(outbox.gateway_outbox)
            .where(self._unapplied(integration, prefixes))
        )
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def record_applied(
        self,
        integration: str,
        outbox_ids: Sequence[str],
        *,
        flow_run_id: str | None,
        now: datetime,
    ) -> int:
        """Record the entries carried (an entry recorded before keeps its first record)."""
        recorded = 0
        with self.engine.begin() as connection:
            for outbox_id in dict.fromkeys(outbox_ids):
                statement = (
                    self._insert(record_event_applications)
                    .values(
                        integration=integration,
                        outbox_id=outbox_id,
                        applied_at=as_utc(now),
                        flow_run_id=flow_run_id,
                    )
                    .on_conflict_do_nothing()
                    .returning(record_event_applications.c.outbox_id)
                )
                if connection.execute(statement).first() is not None:
                    recorded += 1
        return recorded

    def applied(self, integration: str) -> dict[str, str | None]:
        """Flow run ids by outbox id of the entries ``integration`` carried: audit, tests."""
        query = sa.select(record_event_applications).where(
            record_event_applications.c.integration == integration
        )
        with self.engine.connect() as connection:
            return {row.outbox_id: row.flow_run_id for row in connection.execute(query)}

    # leases ----------------------------------------------------------------------------------

    def take_lease(self, integration: str, holder: str, *, ttl: timedelta, now: datetime) -> bool:
        """Hold ``integration``'s drain until ``now + ttl``: a free lease, the holder's own,
        or one that expired. One statement each, so two drainers never both hold it."""
        now = as_utc(now)
        values: dict[str, Any] = {"holder": holder, "held_until": now + ttl}
        with self.engine.begin() as connection:
            inserted = connection.execute(
                self._insert(integration_leases)
                .values(integration=integration, **values)
                .on_conflict_do_nothing()
                .returning(integration_leases.c.integration)
            ).first()
            if inserted is not None:
                return True
            taken = connection.execute(
                sa.update(integration_leases)
                .where(
                    integration_leases.c.integration == integration,
                    sa.or_(
                        integration_leases.c.holder == holder,
                        integration_leases.c.held_until < now,
                    ),
                )
                .values(**values)
                .returning(integration_leases.c.integration)
            ).first()
        return taken is not None

    def release_lease(self, integration: str, holder: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                sa.delete(integration_leases).where(
                    integration_leases.c.integration == integration,
                    integration_leases.c.holder == holder,
                )
            )

    def lease_holder(self, integration: str, now: datetime) -> str | None:
        """Who holds the lease now (None: free or expired)."""
        query = sa.select(integration_leases.c.holder).where(
            integration_leases.c.integration == integration,
            integration_leases.c.held_until >= as_utc(now),
        )
        with self.engine.connect() as connection:
            holder = connection.execute(query).scalar_one_or_none()
        return None if holder is None else str(holder)
