"""Alembic environment for the ledger.

:func:`syncline.migrations.upgrade` passes an open connection (already in a transaction,
holding the upgrade lock) in ``config.attributes["connection"]``. Run by hand, the ledger URL
comes from ``-x url=...``, ``sqlalchemy.url`` or the Syncline settings.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from syncline.migrations import VERSION_TABLE
from syncline.state import metadata

config = context.config


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from syncline.settings import SynclineSettings

    return SynclineSettings().ledger()


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things: batch operations rebuild the table there.
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if isinstance(connection, sa.Connection):
        _run(connection)
        return
    from connectors.sql.engine import make_engine

    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
