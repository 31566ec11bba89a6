"""The gateway's outbox: webhook deliveries accepted and not yet (or already) emitted.

The webhook gateway answers 202 only once a delivery is a row here, committed in one short
transaction; its forwarder then turns each row into one Prefect event and marks it emitted.
Rows are kept after that for audit and replay (the raw body as received, the normalised
payload as emitted) until :meth:`GatewayOutbox.prune` removes them after the retention.

De-duplication lives in the same row: ``dedupe_key`` (the vendor's delivery id, else a hash
of the raw body) is unique per source while it is held, i.e. until ``dedupe_until``. A
delivery whose key is held by a row is a duplicate; one whose key is held by a row past its
``dedupe_until`` takes the key over (the old row keeps its audit, without the key).

The tables are part of the ledger (declared on :data:`syncline.state.metadata`, created by
the ledger's migrations), so the gateway needs no database of its own. No Prefect here: the
forwarder that emits lives in the app layer.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from connectors.sql.engine import make_engine
from syncline import migrations
from syncline.state import as_utc, metadata

# Lengths of the text columns; the gateway refuses a delivery id longer than DELIVERY_ID_MAX.
DELIVERY_ID_MAX = 200
_DEDUPE_KEY_MAX = 300
_NAME_MAX = 200
_REFERENCE_MAX = 500

# PostgreSQL sequences run to 2^63; SQLite's rowid alias must be declared INTEGER.
_Sequence = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

gateway_outbox = sa.Table(
    "syncline_gateway_outbox",
    metadata,
    # Arrival order, which the forwarder emits in (received_at can tie).
    sa.Column("seq", _Sequence, primary_key=True, autoincrement=True),
    # Also the Prefect event's id: a re-emit after a lost answer is one event in Prefect.
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("delivery_id", sa.String(DELIVERY_ID_MAX)),  # the vendor's, when it sends one
    # "id:<delivery id>" or "sha256:<body hash>"; emptied when another delivery takes it over.
    sa.Column("dedupe_key", sa.String(_DEDUPE_KEY_MAX)),
    sa.Column("dedupe_until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event", sa.String(_NAME_MAX), nullable=False),
    sa.Column("resource_id", sa.String(_REFERENCE_MAX), nullable=False),
    sa.Column("subject_key", sa.String(_REFERENCE_MAX), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),  # the normalised event, as emitted
    sa.Column("raw_body", sa.LargeBinary, nullable=False),  # the bytes received, for replay
    sa.Column("emitted_at", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    # Prefect refused the event itself (not the connection): kept, never retried by itself.
    sa.Column("rejected_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("source", "dedupe_key", name="uq_syncline_gateway_outbox_dedupe"),
    # The forwarder's query: pending rows in arrival order.
    sa.Index("ix_syncline_gateway_outbox_pending", "emitted_at", "rejected_at", "seq"),
    sa.Index("ix_syncline_gateway_outbox_received_at", "received_at"),
)


# Alert deliveries are applied by the drainers of ``syncline.alert_claims``, which records each
# application in this table (named here, not imported: that module builds on this one).
ALERT_EVENT_PREFIX = "syncline.alert."
_alert_applications = sa.table("syncline_alert_applications", sa.column("outbox_id", sa.String(36)))


@dataclass(frozen=True, slots=True)
class InboundDelivery:
    """A verified, parsed delivery on its way into the outbox."""

    source: str
    delivery_id: str | None
    dedupe_key: str
    dedupe_window: timedelta  # how long a delivery with the same key is a duplicate
    received_at: datetime
    event: str
    resource_id: str
    subject_key: str
    payload: Mapping[str, Any]
    raw_body: bytes


@dataclass(frozen=True, slots=True)
class Admission:
    """What became of a delivery: a new row, or the row that already holds its key."""

    id: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One row, as the forwarder and the audit read it."""

    seq: int
    id: str
    source: str
    delivery_id: str | None
    received_at: datetime
    event: str
    resource_id: str
    subject_key: str
    payload: dict[str, Any]
    raw_body: bytes
    emitted_at: datetime | None
    attempts: int
    last_error: str | None
    rejected_at: datetime | None


@dataclass(frozen=True, slots=True)
class Backlog:
    pending: int
    oldest_received_at: datetime | None


def _optional_utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


class GatewayOutbox:
    """The outbox tables of the ledger at ``url`` (brought to the newest schema on open)."""

    def __init__(self, url: str | sa.Engine) -> None:
        self.engine = url if isinstance(url, sa.Engine) else make_engine(url)
        migrations.upgrade(self.engine)
        dialect = {"postgresql": postgresql, "sqlite": sqlite}.get(self.engine.dialect.name)
        if dialect is None:
            name = self.engine.dialect.name
            raise NotImplementedError(
                f"the gateway outbox supports PostgreSQL and SQLite, not {name}"
            )
        self._insert = dialect.insert

    def dispose(self) -> None:
        self.engine.dispose()

    def admit(self, delivery: InboundDelivery) -> Admission:
        """Store ``delivery`` unless a row holds its key; one transaction, committed on return.

        Safe under concurrent deliveries of the same key: the unique constraint decides, and
        the loser reads the winner's row.
        """
        if len(delivery.dedupe_key) > _DEDUPE_KEY_MAX:
            raise ValueError(f"dedupe key longer than {_DEDUPE_KEY_MAX} characters")
        received_at = as_utc(delivery.received_at)
        new_id = str(uuid.uuid4())
        row: dict[str, Any] = {
            "id": new_id,
            "source": delivery.source,
            "delivery_id": delivery.delivery_id,
            "dedupe_key": delivery.dedupe_key,
            "dedupe_until": received_at + delivery.dedupe_window,
            "received_at": received_at,
            "event": delivery.event,
            "resource_id": delivery.resource_id,
            "subject_key": delivery.subject_key,
            "payload": dict(delivery.payload),
            "raw_body": delivery.raw_body,
            "attempts": 0,
        }
        holder = sa.and_(
            gateway_outbox.c.source == delivery.source,
            gateway_outbox.c.dedupe_key == delivery.dedupe_key,
        )
        # RETURNING says whether the row went in (rowcount is not reliable across drivers).
        insert = (
            self._insert(gateway_outbox)
            .values(**row)
            .on_conflict_do_nothing()
            .returning(gateway_outbox.c.id)
        )
        with self.engine.begin() as connection:
            if connection.execute(insert).first() is not None:
                return Admission(new_id, duplicate=False)
            held = connection.execute(
                sa.select(gateway_outbox.c.id, gateway_outbox.c.dedupe_until).where(holder)
            ).one()
            if as_utc(held.dedupe_until) > received_at:
                return Admission(held.id, duplicate=True)
            # The window has passed: the same bytes again are a new delivery.
            connection.execute(
                sa.update(gateway_outbox)
                .where(gateway_outbox.c.id == held.id)
                .values(dedupe_key=None)
            )
            if connection.execute(insert).first() is None:
                # Another delivery of the same bytes took the key over first.
                return Admission(
                    connection.execute(sa.select(gateway_outbox.c.id).where(holder)).scalar_one(),
                    duplicate=True,
                )
        return Admission(new_id, duplicate=False)

    def pending(self, limit: int) -> list[OutboxEntry]:
        """The oldest ``limit`` rows neither emitted nor rejected, in arrival order."""
        query = (
            sa.select(gateway_outbox)
            .where(gateway_outbox.c.emitted_at.is_(None), gateway_outbox.c.rejected_at.is_(None))
            .order_by(gateway_outbox.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [_entry(row) for row in connection.execute(query)]

    def get(self, entry_id: str) -> OutboxEntry | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(gateway_outbox).where(gateway_outbox.c.id == entry_id)
            ).first()
        return None if row is None else _entry(row)

    def entries(self, source: str | None = None) -> list[OutboxEntry]:
        """Every row (of ``source``), in arrival order: for audit, replay and tests."""
        query = sa.select(gateway_outbox).order_by(gateway_outbox.c.seq)
        if source is not None:
            query = query.where(gateway_outbox.c.source == source)
        with self.engine.connect() as connection:
            return [_entry(row) for row in connection.execute(query)]

    def mark_emitted(self, ids: Sequence[str], at: datetime) -> None:
        """Prefect accepted these events; an emitted row keeps its first emitted_at."""
        if not ids:
            return
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(gateway_outbox)
                .where(gateway_outbox.c.id.in_(ids), gateway_outbox.c.emitted_at.is_(None))
                .values(
                    emitted_at=as_utc(at),
                    attempts=gateway_outbox.c.attempts + 1,
                    last_error=None,
                )
            )

    def record_failure(self, ids: Sequence[str], error: str) -> None:
        """An attempt to emit these failed (the API down, say): they stay pending."""
        if not ids:
            return
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(gateway_outbox)
                .where(gateway_outbox.c.id.in_(ids), gateway_outbox.c.emitted_at.is_(None))
                .values(attempts=gateway_outbox.c.attempts + 1, last_error=error[:2000])
            )

    def mark_rejected(self, entry_id: str, error: str, at: datetime) -> None:
        """Prefect refused this event as invalid: retrying cannot help; keep it for a person."""
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(gateway_outbox)
                .where(gateway_outbox.c.id == entry_id)
                .values(
                    rejected_at=as_utc(at),
                    attempts=gateway_outbox.c.attempts + 1,
                    last_error=error[:2000],
                )
            )

    def backlog(self) -> Backlog:
        """Rows waiting to be emitted, and when the oldest of them arrived."""
        query = sa.select(sa.func.count(), sa.func.min(gateway_outbox.c.received_at)).where(
            gateway_outbox.c.emitted_at.is_(None), gateway_outbox.c.rejected_at.is_(None)
        )
        with self.engine.connect() as connection:
            count, oldest = connection.execute(query).one()
        return Backlog(int(count), _optional_utc(oldest))

    def prune(self, *, now: datetime, retention: timedelta) -> int:
        """Delete emitted rows received more than ``retention`` ago whose key is not held.

        Pending and rejected rows stay whatever their age: nothing accepted is dropped unseen.
        So does an alert until a drainer has applied it: alerts have no other way back (a
        record change is also found by its integration's polling, by cursor).
        """
        now = as_utc(now)
        applied = sa.exists(
            sa.select(_alert_applications.c.outbox_id).where(
                _alert_applications.c.outbox_id == gateway_outbox.c.id
            )
        )
        with self.engine.begin() as connection:
            result = connection.execute(
                sa.delete(gateway_outbox).where(
                    gateway_outbox.c.emitted_at.is_not(None),
                    gateway_outbox.c.received_at < now - retention,
                    gateway_outbox.c.dedupe_until <= now,
                    sa.or_(~gateway_outbox.c.event.startswith(ALERT_EVENT_PREFIX), applied),
                )
            )
        return int(result.rowcount)


def _entry(row: sa.Row[Any]) -> OutboxEntry:
    return OutboxEntry(
        seq=int(row.seq),
        id=row.id,
        source=row.source,
        delivery_id=row.delivery_id,
        received_at=as_utc(row.received_at),
        event=row.event,
        resource_id=row.resource_id,
        subject_key=row.subject_key,
        payload=dict(row.payload),
        raw_body=bytes(row.raw_body),
        emitted_at=_optional_utc(row.emitted_at),
        attempts=int(row.attempts),
        last_error=row.last_error,
        rejected_at=_optional_utc(row.rejected_at),
    )
