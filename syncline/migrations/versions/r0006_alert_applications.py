"""Alerts to incidents: which outbox entries were applied, and who is applying which alert.

- ``syncline_alert_claims``: one row per alert (source, subject key) a drainer is applying,
  with the holder and until when; an expired row may be taken over (its drainer crashed).
- ``syncline_alert_applications``: one row per outbox entry applied to its incident (when, by
  which flow run, the outcome, the correlation id and the incident's key).

Revision ID: 0006_alert_applications
Revises: 0005_gateway_outbox
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_alert_applications"
down_revision: str | None = "0005_gateway_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIMS = "syncline_alert_claims"
APPLICATIONS = "syncline_alert_applications"


def upgrade() -> None:
    op.create_table(
        CLAIMS,
        sa.Column("source", sa.String(32), primary_key=True),
        sa.Column("subject_key", sa.String(500), primary_key=True),
        sa.Column("claimed_by", sa.String(100), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        APPLICATIONS,
        sa.Column("outbox_id", sa.String(36), primary_key=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("subject_key", sa.String(500), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("flow_run_id", sa.String(64)),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("correlation_id", sa.String(100)),
        sa.Column("incident_key", sa.String(100)),
    )
    op.create_index("ix_syncline_alert_applications_applied_at", APPLICATIONS, ["applied_at"])


def downgrade() -> None:
    op.drop_index("ix_syncline_alert_applications_applied_at", APPLICATIONS)
    op.drop_table(APPLICATIONS)
    op.drop_table(CLAIMS)
