"""Two-way links keep the field values both sides last agreed on.

A two-way run decides each field by comparing both sides with what they last agreed: a side
whose value still equals it did not change (Syncline's own write coming back is one such), a
side whose value differs did, and a field that changed on both sides is a conflict for the
spec's policy. The hashes alone cannot say *which* field changed, so the pair keeps the values.

- ``synced_values`` (JSON, nullable) is added, empty: one-way links never use it, and a pair
  without it is decided as a first meeting (every differing field is a change).

Revision ID: 0004_pair_synced_values
Revises: 0003_two_way_links
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_pair_synced_values"
down_revision: str | None = "0003_two_way_links"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "syncline_record_links"


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(sa.Column("synced_values", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column("synced_values")
