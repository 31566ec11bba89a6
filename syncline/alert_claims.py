"""Which alert deliveries have reached their incidents, and who is applying which alert now.

Two kinds of drainer apply the gateway's outbox to incidents: the warm path in a long-running
process and the event-triggered deployment's runs. They may run at once; each delivery must
still be applied once, and the notifications about one alert in the order they arrived.

- ``syncline_alert_claims``: one row per alert (source, subject key) being applied. A drainer
  takes an alert by inserting its row, or by taking over a row whose ``claimed_until`` has
  passed (its drainer crashed); both are single statements whose outcome the database decides
  (a unique key, a conditional update), so two drainers never hold one alert. Holding the
  alert, not single deliveries, keeps a later notification from overtaking an earlier one in
  another drainer. The row is deleted when its batch is recorded.
- ``syncline_alert_applications``: one row per outbox entry applied (its id is the primary key,
  so an entry is recorded once): when, by which flow run, with what outcome, and the incident.

A drainer that crashes between the write and the record leaves the entry unrecorded; the next
drainer applies it again, which the target's upsert by correlation id makes a no-op.

No Prefect here; the tables are part of the ledger (migration 0006).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

# The module, not its names: syncline.state imports this module while the outbox may still be
# importing syncline.state (whichever of them is imported first).
from syncline import outbox
from syncline.state import as_utc, metadata

if TYPE_CHECKING:
    from syncline.outbox import OutboxEntry

ALERT_EVENT_PATTERN = "syncline.alert.%"

alert_claims = sa.Table(
    "syncline_alert_claims",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("subject_key", sa.String(500), primary_key=True),
    sa.Column("claimed_by", sa.String(100), nullable=False),
    sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=False),
)

alert_applications = sa.Table(
    "syncline_alert_applications",
    metadata,
    sa.Column("outbox_id", sa.String(36), primary_key=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("subject_key", sa.String(500), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("flow_run_id", sa.String(64)),
    # created | updated | unchanged | dead-lettered | coalesced (a later notification of the
    # same alert in the same batch carried its news)
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("correlation_id", sa.String(100)),
    sa.Column("incident_key", sa.String(100)),  # the target's key (ServiceNow sys_id)
    sa.Index("ix_syncline_alert_applications_applied_at", "applied_at"),
)

Subject = tuple[str, str]  # (source, subject key)


@dataclass(frozen=True, slots=True)
class Application:
    outbox_id: str
    source: str
    subject_key: str
    outcome: str
    correlation_id: str | None = None
    incident_key: str | None = None


@dataclass(frozen=True, slots=True)
class AppliedEntry:
    outbox_id: str
    applied_at: datetime
    flow_run_id: str | None
    outcome: str
    correlation_id: str | None
    incident_key: str | None


def _unapplied() -> sa.ColumnElement[bool]:
    """Alert entries with no application row."""
    applied = sa.select(alert_applications.c.outbox_id).where(
        alert_applications.c.outbox_id == outbox.gateway_outbox.c.id
    )
    return sa.and_(outbox.gateway_outbox.c.event.like(ALERT_EVENT_PATTERN), ~sa.exists(applied))


class AlertClaims:
    """The claim and application tables of the ledger behind ``engine`` (at head schema)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        dialect = {"postgresql": postgresql, "sqlite": sqlite}.get(engine.dialect.name)
        if dialect is None:
            raise NotImplementedError(
                f"alert claims support PostgreSQL and SQLite, not {engine.dialect.name}"
            )
        self._insert = dialect.insert

    def waiting(self, limit: int) -> list[Subject]:
        """The alerts of the oldest ``limit`` unapplied entries, oldest first (claimed or not)."""
        query = (
            sa.select(outbox.gateway_outbox.c.source, outbox.gateway_outbox.c.subject_key)
            .where(_unapplied())
            .order_by(outbox.gateway_outbox.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return list(dict.fromkeys((row.source, row.subject_key) for row in rows))

    def backlog(self) -> int:
        """Alert entries not yet applied."""
        query = sa.select(sa.func.count()).select_from(outbox.gateway_outbox).where(_unapplied())
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def claimable(self, now: datetime) -> int:
        """Alert entries not yet applied whose alert no drainer holds: what a new run would
        find to do (a warm path looks before it starts one)."""
        entry = outbox.gateway_outbox.c
        held = sa.select(alert_claims.c.source).where(
            alert_claims.c.source == entry.source,
            alert_claims.c.subject_key == entry.subject_key,
            alert_claims.c.claimed_until >= as_utc(now),
        )
        query = (
            sa.select(sa.func.count())
            .select_from(outbox.gateway_outbox)
            .where(_unapplied(), ~sa.exists(held))
        )
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def claim(
        self, subjects: Iterable[Subject], *, holder: str, ttl: timedelta, now: datetime
    ) -> list[Subject]:
        """The ``subjects`` this holder now holds: free ones, its own, or ones whose claim
        expired. Each is one statement the database decides, so no alert has two holders."""
        now = as_utc(now)
        until = now + ttl
        taken: list[Subject] = []
        with self.engine.begin() as connection:
            for source, subject_key in subjects:
                inserted = connection.execute(
                    self._insert(alert_claims)
                    .values(
                        source=source,
                        subject_key=subject_key,
                        claimed_by=holder,
                        claimed_until=until,
                    )
                    .on_conflict_do_nothing()
                    .returning(alert_claims.c.source)
                ).first()
                if inserted is None:
                    inserted = connection.execute(
                        sa.update(alert_claims)
                        .where(
                            alert_claims.c.source == source,
                            alert_claims.c.subject_key == subject_key,
                            sa.or_(
                                alert_claims.c.claimed_by == holder,
                                alert_claims.c.claimed_until < now,
                            ),
                        )
                        .values(claimed_by=holder, claimed_until=until)
                        .returning(alert_claims.c.source)
                    ).first()
                if inserted is not None:
                    taken.append((source, subject_key))
        return taken

    def entries_of(self, subjects: Sequence[Subject]) -> list[OutboxEntry]:
        """Every unapplied entry about ``subjects`` (held by the caller), in arrival order."""
        if not subjects:
            return []
        wanted = sa.tuple_(outbox.gateway_outbox.c.source, outbox.gateway_outbox.c.subject_key).in_(
            list(subjects)
        )
        query = (
            sa.select(outbox.gateway_outbox)
            .where(_unapplied(), wanted)
            .order_by(outbox.gateway_outbox.c.seq)
        )
        with self.engine.connect() as connection:
            return [outbox._entry(row) for row in connection.execute(query)]

    def record(
        self,
        applications: Sequence[Application],
        *,
        holder: str,
        flow_run_id: str | None,
        now: datetime,
    ) -> int:
        """Record ``applications`` and release the holder's claims on their alerts, in one
        transaction; an entry recorded before keeps its first record. Returns rows recorded."""
        rows: list[dict[str, Any]] = [
            {
                "outbox_id": item.outbox_id,
                "source": item.source,
                "subject_key": item.subject_key,
                "applied_at": as_utc(now),
                "flow_run_id": flow_run_id,
                "outcome": item.outcome,
                "correlation_id": item.correlation_id,
                "incident_key": item.incident_key,
            }
            for item in applications
        ]
        recorded = 0
        with self.engine.begin() as connection:
            for row in rows:
                statement = (
                    self._insert(alert_applications)
                    .values(**row)
                    .on_conflict_do_nothing()
                    .returning(alert_applications.c.outbox_id)
                )
                if connection.execute(statement).first() is not None:
                    recorded += 1
            self._release(connection, holder, {(r["source"], r["subject_key"]) for r in rows})
        return recorded

    def release(self, holder: str, subjects: Iterable[Subject]) -> None:
        """Give up claims without recording (the batch failed: another drainer may retry)."""
        with self.engine.begin() as connection:
            self._release(connection, holder, set(subjects))

    @staticmethod
    def _release(connection: sa.Connection, holder: str, subjects: set[Subject]) -> None:
        if not subjects:
            return
        connection.execute(
            sa.delete(alert_claims).where(
                alert_claims.c.claimed_by == holder,
                sa.tuple_(alert_claims.c.source, alert_claims.c.subject_key).in_(list(subjects)),
            )
        )

    def retry_dead_lettered(self, outbox_ids: Sequence[str] | None = None) -> list[str]:
        """Forget that these dead-lettered deliveries (all, without ``outbox_ids``) were
        applied, so the next drain applies them again (after the cause was fixed). Safe to
        repeat: the incident is upserted by correlation id, and the dead letter closes when
        its alert goes through. Returns the outbox ids forgotten."""
        condition = alert_applications.c.outcome == "dead-lettered"
        if outbox_ids is not None:
            condition = sa.and_(condition, alert_applications.c.outbox_id.in_(list(outbox_ids)))
        with self.engine.begin() as connection:
            ids = list(
                connection.execute(sa.select(alert_applications.c.outbox_id).where(condition))
                .scalars()
                .all()
            )
            if ids:
                connection.execute(
                    sa.delete(alert_applications).where(alert_applications.c.outbox_id.in_(ids))
                )
        return ids

    def prune(self) -> int:
        """Delete the application records of deliveries the outbox no longer holds (it prunes
        them after its retention): the table stays as long as the outbox. Returns rows gone."""
        kept = sa.select(outbox.gateway_outbox.c.id).where(
            outbox.gateway_outbox.c.id == alert_applications.c.outbox_id
        )
        with self.engine.begin() as connection:
            result = connection.execute(sa.delete(alert_applications).where(~sa.exists(kept)))
        return int(result.rowcount)

    def applied(self, outbox_ids: Iterable[str] | None = None) -> dict[str, AppliedEntry]:
        """Application records by outbox id (of ``outbox_ids``, or all): for audit and tests."""
        query = sa.select(alert_applications)
        if outbox_ids is not None:
            query = query.where(alert_applications.c.outbox_id.in_(list(outbox_ids)))
        with self.engine.connect() as connection:
            return {
                row.outbox_id: AppliedEntry(
                    outbox_id=row.outbox_id,
                    applied_at=as_utc(row.applied_at),
                    flow_run_id=row.flow_run_id,
                    outcome=row.outcome,
                    correlation_id=row.correlation_id,
                    incident_key=row.incident_key,
                )
                for row in connection.execute(query)
            }
