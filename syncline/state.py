"""The state ledger: cursors, record links, the audit log, dead letters and run history.

SQLAlchemy Core on any URL: a SQLite file by default, PostgreSQL in production. Every write
is its own short transaction, and every write is idempotent, so rerunning a flow run leaves
the ledger as one run would have.

The tables below are the schema at the newest migration (``syncline/migrations``); opening a
ledger brings its database there first. A change to them needs a new revision.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from connectors.base.records import CursorValue, RejectedRecord
from connectors.sql.engine import make_engine
from syncline import migrations

metadata = sa.MetaData()

cursors = sa.Table(
    "syncline_cursors",
    metadata,
    sa.Column("integration", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),  # "datetime" | "integer"
    sa.Column("value", sa.String(64), nullable=False),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# One pair of records, on side A (a one-way integration's source) and side B (its target).
record_links = sa.Table(
    "syncline_record_links",
    metadata,
    sa.Column("integration", sa.String(200), primary_key=True),
    sa.Column("source_key", sa.String(255), primary_key=True),  # side A's key
    sa.Column("target_key", sa.String(255), nullable=False),  # side B's key
    # Hash of what Syncline last wrote to each side: a change that comes back from that side
    # with this hash is our own echo. Empty while nothing was written there.
    sa.Column("a_written_hash", sa.String(64)),
    sa.Column("b_written_hash", sa.String(64)),
    # The version last seen on each side: its cursor value as text, or a row hash where the
    # side has no cursor; what tells a change there since from one already handled.
    sa.Column("a_seen_version", sa.Text),
    sa.Column("b_seen_version", sa.Text),
    # Two-way only: the field values both sides last agreed on (see syncline.two_way_sync).
    sa.Column("synced_values", sa.JSON(none_as_null=True)),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # The lookup by B's key, and the rule that a B record belongs to one A record.
    sa.Index("uq_syncline_record_links_target_key", "integration", "target_key", unique=True),
)

audit_log = sa.Table(
    "syncline_audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("integration", sa.String(200), nullable=False, index=True),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),  # created | updated | dead_lettered …
    sa.Column("target_object", sa.String(255), nullable=False),
    sa.Column("record_count", sa.Integer, nullable=False),
    # One row per batch and action with every key: the log stays complete at 1M rows a run.
    sa.Column("keys", sa.JSON, nullable=False),
    sa.Column("detail", sa.Text),  # why, when the action does not say (a delete's cause …)
)

dead_letters = sa.Table(
    "syncline_dead_letters",
    metadata,
    # One row per (integration, source record): a record that fails again updates its row.
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("integration", sa.String(200), nullable=False, index=True),
    sa.Column("source_key", sa.String(255), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),  # "map" | "write"
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | replayed | resolved
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    sa.Column("resolved_by_flow_run_id", sa.String(64)),
)

sync_runs = sa.Table(
    "syncline_sync_runs",
    metadata,
    sa.Column("flow_run_id", sa.String(64), primary_key=True),
    sa.Column("integration", sa.String(200), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # running | completed | failed
    sa.Column("started_at", sa.DateTime(timezone=True)),  # empty for runs from before it was kept
    # finished_at and summary stay empty while a run is running, for good if it was killed.
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("summary", sa.JSON(none_as_null=True)),
    sa.Column("error", sa.Text),
)

# The keys of a batch about to be written; its audit rows replace it once the target confirms.
write_intents = sa.Table(
    "syncline_write_intents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("integration", sa.String(200), nullable=False, index=True),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("target_object", sa.String(255), nullable=False),
    sa.Column("keys", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

delete_scans = sa.Table(
    "syncline_delete_scans",
    metadata,
    sa.Column("integration", sa.String(200), primary_key=True),
    sa.Column("last_scan_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("deleted", sa.Integer, nullable=False),
)

# What a run found for a key of an interrupted write (see Ledger.settle_intents).
CONFIRMATIONS = frozenset({"unchanged", "written"})

# Keys per IN list: well under SQLite's 999 bound parameters on old builds.
_IN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    integration: str
    source_key: str
    stage: str
    reason: str
    payload: dict[str, Any]
    status: str
    attempts: int
    flow_run_id: str | None


@dataclass(frozen=True, slots=True)
class RecordLink:
    """A one-way link: source (side A) → target (side B) and the hash of what was written to B.

    ``written_hash`` is "" for a pair nothing was written to B for yet (no hash equals it).
    """

    source_key: str
    target_key: str
    written_hash: str


@dataclass(frozen=True, slots=True)
class PairLink:
    """One record on side A and one on side B that are the same thing, as the ledger knows it.

    Per side: the hash of what Syncline last wrote there and the version it last saw there
    (the cursor value as text, or a row hash where the side has no cursor); None when none.
    """

    a_key: str
    b_key: str
    a_written_hash: str | None = None
    b_written_hash: str | None = None
    a_seen_version: str | None = None
    b_seen_version: str | None = None
    # Two-way: the values of the synced fields both sides last agreed on, by field name.
    synced_values: dict[str, str | None] | None = None


class LinkConflictError(ValueError):
    """A B record would belong to two A records (or a batch links one B key twice)."""


Side = Literal["a", "b"]


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One flow run of an integration; ``running`` also when its process was killed."""

    integration: str
    flow_run_id: str
    status: str  # running | completed | failed
    started_at: datetime | None  # None for runs recorded before the ledger kept it
    finished_at: datetime | None
    error: str | None
    summary: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class WriteIntent:
    """A batch written (or about to be) whose audit rows are not in yet."""

    id: int
    flow_run_id: str | None
    target_object: str
    keys: list[str]
    created_at: datetime


def _now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A stamp as stored and as read: SQLite keeps no offset, so every stamp is UTC (naive =
    UTC). Every table of the ledger uses it, the outbox's and the claims' included."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _from_db(value: datetime | None) -> datetime | None:
    """What was stored, as an aware UTC datetime (SQLite hands back naive ones)."""
    return None if value is None else as_utc(value)


def encode_cursor(value: CursorValue) -> tuple[str, str]:
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
        return "datetime", stamp.astimezone(UTC).isoformat()
    return "integer", str(int(value))


def decode_cursor(kind: str, value: str) -> CursorValue:
    return datetime.fromisoformat(value) if kind == "datetime" else int(value)


def dead_letter_id(integration: str, source_key: str) -> str:
    return hashlib.sha256(f"{integration}\x00{source_key}".encode()).hexdigest()[:40]


class Ledger:
    """Syncline's own bookkeeping, in one database (brought to the newest schema on open)."""

    def __init__(self, url: str | sa.Engine) -> None:
        self.engine = url if isinstance(url, sa.Engine) else make_engine(url)
        migrations.upgrade(self.engine)
        # Intents this ledger recorded whose audit has not replaced them yet: the write in
        # flight, which settle_intents must not take for an interrupted one (intent id →
        # integration). run_started forgets an integration's: a new attempt has begun.
        self._in_flight: dict[int, str] = {}

    def dispose(self) -> None:
        self.engine.dispose()

    def _upsert(self, table: sa.Table) -> Any:
        dialect = {"postgresql": postgresql, "sqlite": sqlite}.get(self.engine.dialect.name)
        if dialect is None:
            raise NotImplementedError(
                f"the ledger supports PostgreSQL and SQLite, not {self.engine.dialect.name}"
            )
        return dialect.insert(table)

    # cursors -------------------------------------------------------------------------------

    def read_cursor(self, integration: str) -> CursorValue | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(cursors.c.kind, cursors.c.value).where(
                    cursors.c.integration == integration
                )
            ).first()
        return decode_cursor(row.kind, row.value) if row else None

    def commit_cursor(
        self, integration: str, value: CursorValue, *, flow_run_id: str | None
    ) -> None:
        """Move the cursor; never backwards (a late retry of an old run cannot rewind it)."""
        current = self.read_cursor(integration)
        if current is not None and type(current) is type(value) and value <= current:  # type: ignore[operator]
            return
        kind, text = encode_cursor(value)
        statement = self._upsert(cursors).values(
            integration=integration,
            kind=kind,
            value=text,
            flow_run_id=flow_run_id,
            updated_at=_now(),
        )
        statement = statement.on_conflict_do_update(
            index_elements=[cursors.c.integration],
            set_={"kind": kind, "value": text, "flow_run_id": flow_run_id, "updated_at": _now()},
        )
        with self.engine.begin() as connection:
            connection.execute(statement)

    def reset_cursor(self, integration: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.delete(cursors).where(cursors.c.integration == integration))

    # record links --------------------------------------------------------------------------

    def links(self, integration: str, source_keys: Iterable[str]) -> dict[str, RecordLink]:
        """One-way links by source key (side A)."""
        return {
            key: RecordLink(pair.a_key, pair.b_key, pair.b_written_hash or "")
            for key, pair in self.pair_links(integration, a_keys=source_keys).items()
        }

    def save_links(
        self, integration: str, links: Sequence[RecordLink], *, flow_run_id: str | None
    ) -> None:
        """One-way links: A → B and what was written to B; what else a pair holds stays."""
        if not links:
            return
        statement = self._upsert(record_links)
        statement = statement.on_conflict_do_update(
            index_elements=[record_links.c.integration, record_links.c.source_key],
            set_={
                "target_key": statement.excluded.target_key,
                "b_written_hash": statement.excluded.b_written_hash,
                "flow_run_id": statement.excluded.flow_run_id,
                "updated_at": statement.excluded.updated_at,
            },
        )
        now = _now()
        # The last word on a key wins (one statement cannot upsert a row twice).
        unique = {link.source_key: link for link in links}
        rows = [
            {
                "integration": integration,
                "source_key": link.source_key,
                "target_key": link.target_key,
                "b_written_hash": link.written_hash,
                "flow_run_id": flow_run_id,
                "updated_at": now,
            }
            for link in unique.values()
        ]
        self._save_link_rows(integration, statement, rows)

    def pair_links(
        self,
        integration: str,
        *,
        a_keys: Iterable[str] | None = None,
        b_keys: Iterable[str] | None = None,
    ) -> dict[str, PairLink]:
        """The pairs of the given A keys, or of the given B keys, keyed by the keys asked for.

        Keys without a link are absent from the answer.
        """
        if (a_keys is None) == (b_keys is None):
            raise ValueError("pair_links: give either a_keys or b_keys")
        side: Side = "a" if a_keys is not None else "b"
        keys = list(dict.fromkeys(a_keys if a_keys is not None else b_keys or ()))
        column = _key_column(side)
        found: dict[str, PairLink] = {}
        with self.engine.connect() as connection:
            for chunk in _chunks(keys):
                rows = connection.execute(
                    sa.select(
                        record_links.c.source_key,
                        record_links.c.target_key,
                        record_links.c.a_written_hash,
                        record_links.c.b_written_hash,
                        record_links.c.a_seen_version,
                        record_links.c.b_seen_version,
                        record_links.c.synced_values,
                    ).where(record_links.c.integration == integration, column.in_(chunk))
                )
                for row in rows:
                    pair = PairLink(
                        a_key=row.source_key,
                        b_key=row.target_key,
                        a_written_hash=row.a_written_hash,
                        b_written_hash=row.b_written_hash,
                        a_seen_version=row.a_seen_version,
                        b_seen_version=row.b_seen_version,
                        synced_values=row.synced_values,
                    )
                    found[pair.a_key if side == "a" else pair.b_key] = pair
        return found

    def save_pair_links(
        self, integration: str, links: Sequence[PairLink], *, flow_run_id: str | None
    ) -> None:
        """Upsert pairs by A key, each replacing what its A key held (both hashes, versions).

        Raises :class:`LinkConflictError`, saving none of the batch, when a B key is linked to
        another A key (in the ledger or in the batch): a B record belongs to one A record.
        """
        if not links:
            return
        statement = self._upsert(record_links)
        replaced = (
            "target_key",
            "a_written_hash",
            "b_written_hash",
            "a_seen_version",
            "b_seen_version",
            "synced_values",
            "flow_run_id",
            "updated_at",
        )
        statement = statement.on_conflict_do_update(
            index_elements=[record_links.c.integration, record_links.c.source_key],
            set_={name: statement.excluded[name] for name in replaced},
        )
        now = _now()
        unique = {link.a_key: link for link in links}
        rows = [
            {
                "integration": integration,
                "source_key": link.a_key,
                "target_key": link.b_key,
                "a_written_hash": link.a_written_hash,
                "b_written_hash": link.b_written_hash,
                "a_seen_version": link.a_seen_version,
                "b_seen_version": link.b_seen_version,
                "synced_values": link.synced_values,
                "flow_run_id": flow_run_id,
                "updated_at": now,
            }
            for link in unique.values()
        ]
        self._save_link_rows(integration, statement, rows)

    def note_written(
        self,
        integration: str,
        side: Side,
        hashes: Mapping[str, str],
        *,
        flow_run_id: str | None,
    ) -> set[str]:
        """Syncline wrote to ``side``: the hash of what it wrote, by that side's key.

        Returns the keys that have no link (nothing is noted for them: save the pair first).
        """
        return self._note(
            integration,
            side,
            f"{side}_written_hash",
            hashes,
            {"flow_run_id": flow_run_id},
        )

    def note_seen(self, integration: str, side: Side, versions: Mapping[str, str]) -> set[str]:
        """Syncline read ``side``: the version it saw, by that side's key.

        Returns the keys that have no link (nothing is noted for them: save the pair first).
        """
        return self._note(integration, side, f"{side}_seen_version", versions, {})

    def _note(
        self,
        integration: str,
        side: Side,
        column_name: str,
        values: Mapping[str, str],
        extra: dict[str, Any],
    ) -> set[str]:
        key_column = _key_column(side)
        if not values:
            return set()
        keys = list(values)
        statement = (
            sa.update(record_links)
            .where(
                record_links.c.integration == integration,
                key_column == sa.bindparam("_key", type_=key_column.type),
            )
            .values(
                {
                    column_name: sa.bindparam("_value", type_=record_links.c[column_name].type),
                    "updated_at": _now(),
                    **extra,
                }
            )
        )
        with self.engine.begin() as connection:
            linked: set[str] = set()
            for chunk in _chunks(keys):
                linked.update(
                    connection.execute(
                        sa.select(key_column).where(
                            record_links.c.integration == integration, key_column.in_(chunk)
                        )
                    ).scalars()
                )
            rows = [{"_key": key, "_value": values[key]} for key in keys if key in linked]
            if rows:
                connection.execute(statement, rows)
        return set(keys) - linked

    def _save_link_rows(self, integration: str, statement: Any, rows: list[dict[str, Any]]) -> None:
        """Check the one-A-per-B rule for ``rows``, then upsert them, in one transaction."""
        owner: dict[str, str] = {}
        for row in rows:
            held = owner.setdefault(row["target_key"], row["source_key"])
            if held != row["source_key"]:
                raise LinkConflictError(
                    f"{integration}: B record {row['target_key']!r} cannot be linked to both "
                    f"{held!r} and {row['source_key']!r} (a B record belongs to one A record)"
                )
        b_keys = list(owner)
        try:
            with self.engine.begin() as connection:
                for chunk in _chunks(b_keys):
                    taken = connection.execute(
                        sa.select(record_links.c.target_key, record_links.c.source_key).where(
                            record_links.c.integration == integration,
                            record_links.c.target_key.in_(chunk),
                        )
                    )
                    for b_key, a_key in taken:
                        if owner[b_key] != a_key:
                            raise LinkConflictError(
                                f"{integration}: B record {b_key!r} is linked to A record "
                                f"{a_key!r} already, so it cannot be linked to "
                                f"{owner[b_key]!r} (a B record belongs to one A record)"
                            )
                connection.execute(statement, rows)
        except sa.exc.IntegrityError as error:
            if "target_key" not in str(error.orig):
                raise
            # Another writer linked one of these B keys between the check and the upsert.
            raise LinkConflictError(
                f"{integration}: a B record of this batch was linked to another A record "
                f"meanwhile (a B record belongs to one A record): {error.orig}"
            ) from error

    # audit log -----------------------------------------------------------------------------

    def audit(
        self,
        integration: str,
        *,
        action: str,
        target_object: str,
        keys: Sequence[str],
        flow_run_id: str | None,
        detail: str | None = None,
    ) -> None:
        if not keys:
            return
        with self.engine.begin() as connection:
            connection.execute(
                audit_log.insert(),
                [_audit_row(integration, action, target_object, keys, flow_run_id, detail)],
            )

    def audit_batch(
        self,
        integration: str,
        *,
        target_object: str,
        actions: Mapping[str, Sequence[str]],
        flow_run_id: str | None,
        intent_id: int | None = None,
        detail: str | None = None,
    ) -> None:
        """Audit one written batch (a row per non-empty action) and close its intent, at once.

        Both happen in one transaction: a crash leaves either the intent (settled by a later
        run) or the audit rows, never neither.
        """
        rows = [
            _audit_row(integration, action, target_object, keys, flow_run_id, detail)
            for action, keys in actions.items()
            if keys
        ]
        with self.engine.begin() as connection:
            if rows:
                connection.execute(audit_log.insert(), rows)
            if intent_id is not None:
                connection.execute(
                    sa.delete(write_intents).where(
                        write_intents.c.id == intent_id,
                        write_intents.c.integration == integration,
                    )
                )
        if intent_id is not None:
            self._in_flight.pop(intent_id, None)

    def audit_entries(self, integration: str) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(audit_log)
                .where(audit_log.c.integration == integration)
                .order_by(audit_log.c.id)
            )
            return [dict(row._mapping) for row in rows]

    # write intents -------------------------------------------------------------------------

    def record_intent(
        self,
        integration: str,
        *,
        target_object: str,
        keys: Sequence[str],
        flow_run_id: str | None,
    ) -> int:
        """Before a batch is written: its keys, until audit_batch replaces them with rows."""
        with self.engine.begin() as connection:
            result = connection.execute(
                write_intents.insert().values(
                    integration=integration,
                    flow_run_id=flow_run_id,
                    target_object=target_object,
                    keys=list(keys),
                    created_at=_now(),
                )
            )
            new_key = result.inserted_primary_key
        if new_key is None:  # pragma: no cover - PostgreSQL and SQLite both return it
            raise RuntimeError("the ledger did not return the new write intent's id")
        intent_id = int(new_key[0])
        self._in_flight[intent_id] = integration
        return intent_id

    def open_intents(self, integration: str) -> list[WriteIntent]:
        """Intents not replaced by audit rows: writes cut short between target and audit."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(write_intents)
                .where(write_intents.c.integration == integration)
                .order_by(write_intents.c.id)
            )
            return [
                WriteIntent(
                    id=row.id,
                    flow_run_id=row.flow_run_id,
                    target_object=row.target_object,
                    keys=list(row._mapping["keys"]),
                    created_at=as_utc(row.created_at),
                )
                for row in rows
            ]

    def settle_intents(
        self, integration: str, confirmed: Mapping[str, str], *, flow_run_id: str | None
    ) -> int:
        """Complete the audit of interrupted writes from what this run found in the target.

        ``confirmed`` maps source keys of open intents to ``"unchanged"`` (the target already
        held what this run would write: the interrupted write was applied) or ``"written"``
        (this run wrote it, and audits it itself). Unchanged keys are audited as ``applied``
        on the interrupted run's behalf; every confirmed key leaves its intent; an intent left
        without keys is closed. One transaction. Returns how many keys were audited.

        Open intents of an earlier flow run, or of an earlier attempt of this one (a retry
        keeps the flow run id), are settled; the write this ledger has in flight is not.
        """
        if not confirmed:
            return 0
        unknown = set(confirmed.values()) - CONFIRMATIONS
        if unknown:
            raise ValueError(
                f"settle_intents: a key is either 'unchanged' or 'written', not {sorted(unknown)}"
            )
        this_run = flow_run_id or "local"
        now = _now()
        audit_rows: list[dict[str, Any]] = []
        shrunk: list[dict[str, Any]] = []
        emptied: list[int] = []
        applied_count = 0
        with self.engine.begin() as connection:
            rows = connection.execute(
                sa.select(
                    write_intents.c.id,
                    write_intents.c.flow_run_id,
                    write_intents.c.target_object,
                    write_intents.c["keys"],
                )
                .where(write_intents.c.integration == integration)
                .order_by(write_intents.c.id)
                .with_for_update()
            ).all()
            for intent_id, intent_run, target_object, keys in rows:
                if intent_run == flow_run_id and intent_id in self._in_flight:
                    continue
                # Dictionary lookups, not scans: 50,000 open keys against a 5,000-key batch
                # stay linear.
                remaining = [key for key in keys if key not in confirmed]
                if keys and len(remaining) == len(keys):
                    continue
                applied = list(dict.fromkeys(k for k in keys if confirmed.get(k) == "unchanged"))
                if applied:
                    applied_count += len(applied)
                    audit_rows.append(
                        _audit_row(
                            integration,
                            "applied",
                            target_object,
                            applied,
                            intent_run,
                            f"written by interrupted flow run {intent_run or 'local'}; "
                            f"confirmed by flow run {this_run}",
                            at=now,
                        )
                    )
                if remaining:
                    shrunk.append({"intent_id": intent_id, "remaining": remaining})
                else:
                    emptied.append(intent_id)
            if audit_rows:
                connection.execute(audit_log.insert(), audit_rows)
            if shrunk:
                connection.execute(
                    sa.update(write_intents)
                    .where(write_intents.c.id == sa.bindparam("intent_id"))
                    .values(keys=sa.bindparam("remaining", type_=write_intents.c["keys"].type)),
                    shrunk,
                )
            if emptied:
                connection.execute(sa.delete(write_intents).where(write_intents.c.id.in_(emptied)))
        return applied_count

    # delete scans --------------------------------------------------------------------------

    def last_delete_scan(self, integration: str) -> datetime | None:
        with self.engine.connect() as connection:
            at = connection.execute(
                sa.select(delete_scans.c.last_scan_at).where(
                    delete_scans.c.integration == integration
                )
            ).scalar_one_or_none()
        return _from_db(at)

    def record_delete_scan(
        self, integration: str, *, at: datetime, flow_run_id: str | None, deleted: int
    ) -> None:
        values = {"last_scan_at": as_utc(at), "flow_run_id": flow_run_id, "deleted": deleted}
        statement = self._upsert(delete_scans).values(integration=integration, **values)
        statement = statement.on_conflict_do_update(
            index_elements=[delete_scans.c.integration], set_=values
        )
        with self.engine.begin() as connection:
            connection.execute(statement)

    # dead letters --------------------------------------------------------------------------

    def dead_letter(
        self,
        integration: str,
        rejected: Sequence[RejectedRecord],
        *,
        stage: str,
        flow_run_id: str | None,
    ) -> None:
        """Park records that could not be mapped or written; a repeat failure updates its row."""
        if not rejected:
            return
        now = _now()
        statement = self._upsert(dead_letters)
        statement = statement.on_conflict_do_update(
            index_elements=[dead_letters.c.id],
            set_={
                "stage": statement.excluded.stage,
                "reason": statement.excluded.reason,
                "payload": statement.excluded.payload,
                "status": "pending",
                # A rerun of the same flow run is the same attempt, not another one.
                "attempts": sa.case(
                    (
                        dead_letters.c.flow_run_id == statement.excluded.flow_run_id,
                        dead_letters.c.attempts,
                    ),
                    else_=dead_letters.c.attempts + 1,
                ),
                "flow_run_id": statement.excluded.flow_run_id,
                "last_failed_at": statement.excluded.last_failed_at,
                "resolved_at": None,
                "resolved_by_flow_run_id": None,
            },
        )
        unique = {record.key: record for record in rejected}
        rows = [
            {
                "id": dead_letter_id(integration, record.key),
                "integration": integration,
                "source_key": record.key,
                "stage": stage,
                "reason": record.reason[:4000],
                "payload": json.loads(json.dumps(record.payload, default=str)),
                "status": "pending",
                "attempts": 1,
                "flow_run_id": flow_run_id,
                "first_failed_at": now,
                "last_failed_at": now,
            }
            for record in unique.values()
        ]
        with self.engine.begin() as connection:
            connection.execute(statement, rows)

    def dead_letters(
        self, integration: str | None = None, *, status: str | None = "pending"
    ) -> list[DeadLetter]:
        query = sa.select(dead_letters).order_by(dead_letters.c.first_failed_at)
        if integration is not None:
            query = query.where(dead_letters.c.integration == integration)
        if status is not None:
            query = query.where(dead_letters.c.status == status)
        with self.engine.connect() as connection:
            return [
                DeadLetter(
                    id=row.id,
                    integration=row.integration,
                    source_key=row.source_key,
                    stage=row.stage,
                    reason=row.reason,
                    payload=row.payload,
                    status=row.status,
                    attempts=row.attempts,
                    flow_run_id=row.flow_run_id,
                )
                for row in connection.execute(query)
            ]

    def pending_dead_letter_keys(self, integration: str) -> set[str]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(dead_letters.c.source_key).where(
                    dead_letters.c.integration == integration, dead_letters.c.status == "pending"
                )
            )
            return {row.source_key for row in rows}

    def resolve_dead_letters(
        self, integration: str, source_keys: Iterable[str], *, status: str, flow_run_id: str | None
    ) -> int:
        """Close pending dead letters whose records have now been written."""
        ids = [dead_letter_id(integration, key) for key in source_keys]
        if not ids:
            return 0
        with self.engine.begin() as connection:
            result = connection.execute(
                sa.update(dead_letters)
                .where(dead_letters.c.id.in_(ids), dead_letters.c.status == "pending")
                .values(status=status, resolved_at=_now(), resolved_by_flow_run_id=flow_run_id)
            )
            return int(result.rowcount)

    # run history ---------------------------------------------------------------------------

    def run_started(self, integration: str, flow_run_id: str, *, started_at: datetime) -> None:
        """Enter a run as ``running``; a retry (same flow run id) starts its row over."""
        # A new attempt: intents this ledger still holds for the integration were cut short.
        for intent_id in [i for i, name in self._in_flight.items() if name == integration]:
            del self._in_flight[intent_id]
        started = as_utc(started_at)
        self._put_run(
            integration,
            flow_run_id,
            {
                "status": "running",
                "started_at": started,
                "finished_at": None,
                "summary": None,
                "error": None,
            },
        )

    def run_finished(self, integration: str, flow_run_id: str, summary: dict[str, Any]) -> None:
        """The run completed: its summary (a retry's replaces the earlier one); keeps started_at."""
        self._put_run(
            integration,
            flow_run_id,
            {"status": "completed", "finished_at": _now(), "summary": summary, "error": None},
        )

    def record_run(self, integration: str, flow_run_id: str, summary: dict[str, Any]) -> None:
        """The run completed (the name from before runs had states)."""
        self.run_finished(integration, flow_run_id, summary)

    def run_failed(
        self,
        integration: str,
        flow_run_id: str,
        *,
        error: str,
        summary: dict[str, Any] | None = None,
    ) -> None:
        """The run failed with ``error``; without a summary, the one it had (if any) stays."""
        values: dict[str, Any] = {"status": "failed", "finished_at": _now(), "error": error}
        if summary is not None:
            values["summary"] = summary
        self._put_run(integration, flow_run_id, values)

    def runs(self, integration: str | None = None, *, limit: int = 20) -> list[RunRecord]:
        """The run history, newest first."""
        newest = sa.func.coalesce(sync_runs.c.started_at, sync_runs.c.finished_at)
        query = sa.select(sync_runs).order_by(newest.desc(), sync_runs.c.flow_run_id.desc())
        if integration is not None:
            query = query.where(sync_runs.c.integration == integration)
        with self.engine.connect() as connection:
            return [
                RunRecord(
                    integration=row.integration,
                    flow_run_id=row.flow_run_id,
                    status=row.status,
                    started_at=_from_db(row.started_at),
                    finished_at=_from_db(row.finished_at),
                    error=row.error,
                    summary=row.summary,
                )
                for row in connection.execute(query.limit(limit))
            ]

    def _put_run(self, integration: str, flow_run_id: str, values: dict[str, Any]) -> None:
        statement = self._upsert(sync_runs).values(
            integration=integration, flow_run_id=flow_run_id, **values
        )
        statement = statement.on_conflict_do_update(
            index_elements=[sync_runs.c.flow_run_id, sync_runs.c.integration], set_=values
        )
        with self.engine.begin() as connection:
            connection.execute(statement)


def _key_column(side: str) -> sa.Column[str]:
    if side == "a":
        return record_links.c.source_key
    if side == "b":
        return record_links.c.target_key
    raise ValueError(f"a link's side is 'a' or 'b', not {side!r}")


def _chunks(keys: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), _IN_CHUNK):
        yield keys[start : start + _IN_CHUNK]


def _audit_row(
    integration: str,
    action: str,
    target_object: str,
    keys: Sequence[str],
    flow_run_id: str | None,
    detail: str | None,
    *,
    at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "integration": integration,
        "flow_run_id": flow_run_id,
        "at": at or _now(),
        "action": action,
        "target_object": target_object,
        "record_count": len(keys),
        "keys": list(keys),
        "detail": detail,
    }


# The gateway outbox's tables, the alert claims and the escalations' journal links are part of
# the ledger; they are declared with their code.
from syncline import alert_claims as _alert_claims  # noqa: E402, F401
from syncline import journal_links as _journal_links  # noqa: E402, F401
from syncline import outbox as _outbox  # noqa: E402, F401
