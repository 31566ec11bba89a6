"""Baseline: the ledger as Syncline created it before it had migrations.

A ledger that already holds these tables (and no version table) is stamped at this revision
instead of running it. Each table is created only when missing, so a ledger whose first
``create_all`` was cut short is completed rather than refused.

Revision ID: 0001_baseline
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_baseline"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _missing(name: str) -> bool:
    if op.get_context().as_sql:  # offline (SQL script): there is no database to look at
        return True
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    if _missing("syncline_cursors"):
        op.create_table(
            "syncline_cursors",
            sa.Column("integration", sa.String(200), primary_key=True),
            sa.Column("kind", sa.String(20), nullable=False),
            sa.Column("value", sa.String(64), nullable=False),
            sa.Column("flow_run_id", sa.String(64)),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        )
    if _missing("syncline_record_links"):
        op.create_table(
            "syncline_record_links",
            sa.Column("integration", sa.String(200), primary_key=True),
            sa.Column("source_key", sa.String(255), primary_key=True),
            sa.Column("target_key", sa.String(255), nullable=False),
            sa.Column("written_hash", sa.String(64), nullable=False),
            sa.Column("flow_run_id", sa.String(64)),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        )
    if _missing("syncline_audit_log"):
        op.create_table(
            "syncline_audit_log",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("integration", sa.String(200), nullable=False),
            sa.Column("flow_run_id", sa.String(64)),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("action", sa.String(32), nullable=False),
            sa.Column("target_object", sa.String(255), nullable=False),
            sa.Column("record_count", sa.Integer, nullable=False),
            sa.Column("keys", sa.JSON, nullable=False),
        )
        op.create_index("ix_syncline_audit_log_integration", "syncline_audit_log", ["integration"])
    if _missing("syncline_dead_letters"):
        op.create_table(
            "syncline_dead_letters",
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("integration", sa.String(200), nullable=False),
            sa.Column("source_key", sa.String(255), nullable=False),
            sa.Column("stage", sa.String(16), nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("payload", sa.JSON, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("flow_run_id", sa.String(64)),
            sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("resolved_at", sa.DateTime(timezone=True)),
            sa.Column("resolved_by_flow_run_id", sa.String(64)),
        )
        op.create_index(
            "ix_syncline_dead_letters_integration", "syncline_dead_letters", ["integration"]
        )
    if _missing("syncline_sync_runs"):
        op.create_table(
            "syncline_sync_runs",
            sa.Column("flow_run_id", sa.String(64), primary_key=True),
            sa.Column("integration", sa.String(200), primary_key=True),
            sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("summary", sa.JSON, nullable=False),
        )


def downgrade() -> None:
    op.drop_table("syncline_sync_runs")
    op.drop_index("ix_syncline_dead_letters_integration", "syncline_dead_letters")
    op.drop_table("syncline_dead_letters")
    op.drop_index("ix_syncline_audit_log_integration", "syncline_audit_log")
    op.drop_table("syncline_audit_log")
    op.drop_table("syncline_record_links")
    op.drop_table("syncline_cursors")
