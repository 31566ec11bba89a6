"""The state ledger: cursors, record links, the audit log, dead letters and run history.

SQLAlchemy Core on any URL: a SQLite file by default, PostgreSQL in production. Every write
is its own short transaction, and every write is idempotent, so rerunning a flow run leaves
the ledger as one run would have.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from connectors.base.records import CursorValue, RejectedRecord
from connectors.sql.engine import make_engine

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

record_links = sa.Table(
    "syncline_record_links",
    metadata,
    sa.Column("integration", sa.String(200), primary_key=True),
    sa.Column("source_key", sa.String(255), primary_key=True),
    sa.Column("target_key", sa.String(255), nullable=False),
    # Hash of what Syncline wrote: a change that comes back with this hash is our own echo.
    sa.Column("written_hash", sa.String(64), nullable=False),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
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
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
)


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
    source_key: str
    target_key: str
    written_hash: str


def _now() -> datetime:
    return datetime.now(UTC)


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
    """Syncline's own bookkeeping, in one database."""

    def __init__(self, url: str | sa.Engine) -> None:
        self.engine = url if isinstance(url, sa.Engine) else make_engine(url)
        metadata.create_all(self.engine)

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
        keys = list(source_keys)
        found: dict[str, RecordLink] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(keys), 500):
                rows = connection.execute(
                    sa.select(
                        record_links.c.source_key,
                        record_links.c.target_key,
                        record_links.c.written_hash,
                    ).where(
                        record_links.c.integration == integration,
                        record_links.c.source_key.in_(keys[start : start + 500]),
                    )
                )
                for row in rows:
                    found[row.source_key] = RecordLink(
                        row.source_key, row.target_key, row.written_hash
                    )
        return found

    def save_links(
        self, integration: str, links: Sequence[RecordLink], *, flow_run_id: str | None
    ) -> None:
        if not links:
            return
        statement = self._upsert(record_links)
        statement = statement.on_conflict_do_update(
            index_elements=[record_links.c.integration, record_links.c.source_key],
            set_={
                "target_key": statement.excluded.target_key,
                "written_hash": statement.excluded.written_hash,
                "flow_run_id": statement.excluded.flow_run_id,
                "updated_at": statement.excluded.updated_at,
            },
        )
        now = _now()
        rows = [
            {
                "integration": integration,
                "source_key": link.source_key,
                "target_key": link.target_key,
                "written_hash": link.written_hash,
                "flow_run_id": flow_run_id,
                "updated_at": now,
            }
            for link in links
        ]
        with self.engine.begin() as connection:
            connection.execute(statement, rows)

    # audit log -----------------------------------------------------------------------------

    def audit(
        self,
        integration: str,
        *,
        action: str,
        target_object: str,
        keys: Sequence[str],
        flow_run_id: str | None,
    ) -> None:
        if not keys:
            return
        with self.engine.begin() as connection:
            connection.execute(
                audit_log.insert().values(
                    integration=integration,
                    flow_run_id=flow_run_id,
                    at=_now(),
                    action=action,
                    target_object=target_object,
                    record_count=len(keys),
                    keys=list(keys),
                )
            )

    def audit_entries(self, integration: str) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(audit_log)
                .where(audit_log.c.integration == integration)
                .order_by(audit_log.c.id)
            )
            return [dict(row._mapping) for row in rows]

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

    def record_run(self, integration: str, flow_run_id: str, summary: dict[str, Any]) -> None:
        statement = self._upsert(sync_runs)
        statement = statement.on_conflict_do_update(
            index_elements=[sync_runs.c.flow_run_id, sync_runs.c.integration],
            set_={"summary": statement.excluded.summary, "finished_at": _now()},
        )
        with self.engine.begin() as connection:
            connection.execute(
                statement.values(
                    flow_run_id=flow_run_id,
                    integration=integration,
                    finished_at=_now(),
                    summary=summary,
                )
            )
