"""Two-way escalations: journal entries linked one by one, record-change events applied, and
one drainer per integration at a time.

- ``syncline_journal_links``: one row per pair of journal entries that are the same note (a
  ServiceNow work note on side A, a Jira comment on side B): the pair's record keys, both
  entry ids, the side it was written on first, when and by which flow run it was linked.
- ``syncline_record_event_applications``: one row per gateway outbox entry (a record-change
  event) an integration has carried: when and by which flow run.
- ``syncline_integration_leases``: who runs an integration's event drain now, and until when;
  an expired lease may be taken over (its holder crashed).

Revision ID: 0007_escalation_journal_links
Revises: 0006_alert_applications
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_escalation_journal_links"
down_revision: str | None = "0006_alert_applications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LINKS = "syncline_journal_links"
APPLICATIONS = "syncline_record_event_applications"
LEASES = "syncline_integration_leases"


def upgrade() -> None:
    op.create_table(
        LINKS,
        sa.Column("integration", sa.String(200), primary_key=True),
        sa.Column("a_entry", sa.String(100), primary_key=True),
        sa.Column("b_entry", sa.String(100), nullable=False),
        sa.Column("a_key", sa.String(200), nullable=False),
        sa.Column("b_key", sa.String(200), nullable=False),
        sa.Column("origin", sa.String(1), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("flow_run_id", sa.String(64)),
        sa.UniqueConstraint("integration", "b_entry", name="uq_syncline_journal_links_b_entry"),
    )
    op.create_index("ix_syncline_journal_links_pair", LINKS, ["integration", "a_key", "b_key"])
    op.create_table(
        APPLICATIONS,
        sa.Column("integration", sa.String(200), primary_key=True),
        sa.Column("outbox_id", sa.String(36), primary_key=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("flow_run_id", sa.String(64)),
    )
    op.create_table(
        LEASES,
        sa.Column("integration", sa.String(200), primary_key=True),
        sa.Column("holder", sa.String(100), nullable=False),
        sa.Column("held_until", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table(LEASES)
    op.drop_table(APPLICATIONS)
    op.drop_index("ix_syncline_journal_links_pair", LINKS)
    op.drop_table(LINKS)
