"""Two-way record links: both sides' written hashes and last seen versions.

``syncline_record_links`` keeps its rows and its keys: ``source_key`` is side A's key and
``target_key`` side B's, which is what they already mean for one-way integrations.

- ``written_hash`` is renamed ``b_written_hash`` rather than copied: every existing hash is of
  what a one-way run wrote to its target (side B), and one column with one meaning cannot drift
  the way a kept original and its copy would. It becomes nullable, as a pair first seen on B and
  written to A has had nothing written to B.
- ``a_written_hash``, ``a_seen_version`` and ``b_seen_version`` are added, empty.
- A unique index on (integration, target_key) indexes the lookup by B's key and holds the rule
  that a B record belongs to one A record. A ledger that already links one target key to two
  source keys is refused (the upgrade rolls back, nothing changes): dropping either link would
  make the next run create that record in the target again.

Revision ID: 0003_two_way_links
Revises: 0002_run_status_write_intents
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_two_way_links"
down_revision: str | None = "0002_run_status_write_intents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "syncline_record_links"
TARGET_INDEX = "uq_syncline_record_links_target_key"

_links = sa.table(
    TABLE,
    sa.column("integration", sa.String(200)),
    sa.column("source_key", sa.String(255)),
    sa.column("target_key", sa.String(255)),
    sa.column("written_hash", sa.String(64)),
)


def _refuse_shared_targets() -> None:
    if op.get_context().as_sql:  # offline (SQL script): there is no data to look at
        return
    shared = (
        op.get_bind()
        .execute(
            sa.select(_links.c.integration, _links.c.target_key, sa.func.count())
            .group_by(_links.c.integration, _links.c.target_key)
            .having(sa.func.count() > 1)
            .order_by(_links.c.integration, _links.c.target_key)
            .limit(10)
        )
        .all()
    )
    if shared:
        listed = "; ".join(f"{name}: {key!r} ({count} links)" for name, key, count in shared)
        raise RuntimeError(
            "cannot upgrade the ledger to two-way record links: these target records are each "
            f"linked to more than one source record ({listed}); delete the stale rows of "
            f"{TABLE} (keep one source_key per integration and target_key) and open it again"
        )


def upgrade() -> None:
    _refuse_shared_targets()
    with op.batch_alter_table(TABLE) as batch:
        batch.alter_column(
            "written_hash",
            new_column_name="b_written_hash",
            existing_type=sa.String(64),
            nullable=True,
        )
        batch.add_column(sa.Column("a_written_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("a_seen_version", sa.Text, nullable=True))
        batch.add_column(sa.Column("b_seen_version", sa.Text, nullable=True))
    op.create_index(TARGET_INDEX, TABLE, ["integration", "target_key"], unique=True)


def downgrade() -> None:
    op.drop_index(TARGET_INDEX, TABLE)
    # One-way links require a hash; a pair never written to B gets "", which no hash equals.
    links = sa.table(TABLE, sa.column("b_written_hash", sa.String(64)))
    op.execute(links.update().where(links.c.b_written_hash.is_(None)).values(b_written_hash=""))
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column("b_seen_version")
        batch.drop_column("a_seen_version")
        batch.drop_column("a_written_hash")
        batch.alter_column(
            "b_written_hash",
            new_column_name="written_hash",
            existing_type=sa.String(64),
            nullable=False,
        )
