"""The webhook gateway's outbox: deliveries accepted, emitted as Prefect events, kept a while.

- ``syncline_gateway_outbox`` is created, empty: one row per accepted delivery (its id is the
  Prefect event's id), with the raw body for audit and replay, the normalised payload, and the
  forwarder's bookkeeping (``emitted_at``, ``attempts``, ``last_error``, ``rejected_at``).
- ``(source, dedupe_key)`` is unique: a vendor's retry of a delivery finds the row that holds
  its key. Rows that no longer hold one have an empty key, which the constraint allows twice.

Revision ID: 0005_gateway_outbox
Revises: 0004_pair_synced_values
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_gateway_outbox"
down_revision: str | None = "0004_pair_synced_values"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "syncline_gateway_outbox"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("delivery_id", sa.String(200)),
        sa.Column("dedupe_key", sa.String(300)),
        sa.Column("dedupe_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(200), nullable=False),
        sa.Column("resource_id", sa.String(500), nullable=False),
        sa.Column("subject_key", sa.String(500), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("raw_body", sa.LargeBinary, nullable=False),
        sa.Column("emitted_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("rejected_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("source", "dedupe_key", name="uq_syncline_gateway_outbox_dedupe"),
    )
    op.create_index(
        "ix_syncline_gateway_outbox_pending", TABLE, ["emitted_at", "rejected_at", "seq"]
    )
    op.create_index("ix_syncline_gateway_outbox_received_at", TABLE, ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_syncline_gateway_outbox_received_at", TABLE)
    op.drop_index("ix_syncline_gateway_outbox_pending", TABLE)
    op.drop_table(TABLE)
