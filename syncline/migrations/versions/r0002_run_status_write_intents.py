"""Run states, audit details, write intents and delete-scan bookkeeping.

- ``syncline_sync_runs`` records a run as it starts and how it ended: ``status`` (rows from
  before are ``completed``), ``started_at`` and ``error``; ``summary`` and ``finished_at`` are
  empty while a run is ``running`` (or when it was killed).
- ``syncline_audit_log.detail``: why, when the action alone does not say.
- ``syncline_write_intents``: the keys of a batch about to be written, replaced by its audit
  rows once the target confirms; what is left open after a crash is settled by the next run.
- ``syncline_delete_scans``: when each integration last scanned for hard deletes.

Revision ID: 0002_run_status_write_intents
Revises: 0001_baseline
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_run_status_write_intents"
down_revision: str | None = "0001_baseline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("syncline_sync_runs") as batch:
        # The default fills the rows already there; it is dropped below, as the ledger always
        # says which state it writes.
        batch.add_column(
            sa.Column("status", sa.String(16), nullable=False, server_default="completed")
        )
        batch.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("error", sa.Text, nullable=True))
        batch.alter_column("summary", existing_type=sa.JSON, nullable=True)
        batch.alter_column("finished_at", existing_type=sa.DateTime(timezone=True), nullable=True)
    with op.batch_alter_table("syncline_sync_runs") as batch:
        batch.alter_column("status", existing_type=sa.String(16), server_default=None)

    # A plain ADD COLUMN on every database (no rebuild of a large audit log on SQLite).
    with op.batch_alter_table("syncline_audit_log") as batch:
        batch.add_column(sa.Column("detail", sa.Text, nullable=True))

    op.create_table(
        "syncline_write_intents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("integration", sa.String(200), nullable=False),
        sa.Column("flow_run_id", sa.String(64)),
        sa.Column("target_object", sa.String(255), nullable=False),
        sa.Column("keys", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_syncline_write_intents_integration", "syncline_write_intents", ["integration"]
    )
    op.create_table(
        "syncline_delete_scans",
        sa.Column("integration", sa.String(200), primary_key=True),
        sa.Column("last_scan_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("flow_run_id", sa.String(64)),
        sa.Column("deleted", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("syncline_delete_scans")
    op.drop_index("ix_syncline_write_intents_integration", "syncline_write_intents")
    op.drop_table("syncline_write_intents")

    with op.batch_alter_table("syncline_audit_log") as batch:
        batch.drop_column("detail")

    # The baseline requires a summary and an end: runs that never finished get both.
    runs = sa.table(
        "syncline_sync_runs",
        sa.column("summary", sa.JSON),
        sa.column("finished_at", sa.DateTime(timezone=True)),
        sa.column("started_at", sa.DateTime(timezone=True)),
    )
    op.execute(runs.update().where(runs.c.summary.is_(None)).values(summary={}))
    op.execute(
        runs.update()
        .where(runs.c.finished_at.is_(None))
        .values(finished_at=sa.func.coalesce(runs.c.started_at, sa.func.current_timestamp()))
    )
    with op.batch_alter_table("syncline_sync_runs") as batch:
        batch.drop_column("error")
        batch.drop_column("started_at")
        batch.drop_column("status")
        batch.alter_column("summary", existing_type=sa.JSON, nullable=False)
        batch.alter_column("finished_at", existing_type=sa.DateTime(timezone=True), nullable=False)
