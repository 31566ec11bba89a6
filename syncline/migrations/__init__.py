"""The ledger's schema history: Alembic revisions, applied when a ledger is opened.

Nobody needs an ``alembic.ini``: :func:`upgrade` runs the scripts shipped in this package on
the ledger's own engine. The version table has a name of its own (``syncline_alembic_version``)
so a database that also keeps another application's Alembic history (Prefect's server, say)
holds both without either touching the other's.

Opening an up-to-date ledger costs one query. Only a ledger behind :data:`HEAD` takes the
upgrade lock (a PostgreSQL advisory lock, or SQLite's write lock), reads its revision again,
and upgrades inside one transaction, so processes opening an old ledger at once upgrade it once.

To add a revision: ``command.revision(config(), "what changes", rev_id="0003_<slug>")``
starts ``versions/r0003_<slug>_<what_changes>.py`` from the template, after the current head.
Use ``op.batch_alter_table`` for every ALTER (SQLite rebuilds the table; a plain ADD COLUMN
stays an ALTER), never import ``syncline.state`` in a revision (it moves on, revisions must
not), and move :data:`HEAD` to the new id. ``tests/test_ledger_migrations.py`` checks that
the head schema equals the tables in ``syncline/state.py``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("syncline.ledger")

VERSION_TABLE = "syncline_alembic_version"
BASELINE = "0001_baseline"
HEAD = "0007_escalation_journal_links"

# What a ledger created before migrations existed holds (``metadata.create_all``).
BASELINE_TABLES = frozenset(
    {
        "syncline_cursors",
        "syncline_record_links",
        "syncline_audit_log",
        "syncline_dead_letters",
        "syncline_sync_runs",
    }
)

# pg_advisory_xact_lock key: the bytes of "SYNCLINE"; advisory locks are per database.
_ADVISORY_LOCK_KEY = int.from_bytes(b"SYNCLINE", "big")

# Alembic keeps its running context in module globals (alembic.context, alembic.op): two
# upgrades in one process, on any databases, run one after the other. Always taken before
# the database's lock, so two threads cannot each hold one and wait for the other.
_process_lock = threading.Lock()

_version_table = sa.table(VERSION_TABLE, sa.column("version_num", sa.String(32)))


class LedgerSchemaError(RuntimeError):
    """The ledger's schema is at a revision this Syncline does not know (a newer release)."""


def config(connection: sa.Connection | None = None) -> Config:
    """An Alembic configuration for these scripts; with ``connection``, migrations run on it."""
    from alembic.config import Config

    cfg = Config()
    # Config values go through configparser interpolation: a literal % must be doubled.
    cfg.set_main_option("script_location", str(Path(__file__).parent).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    # Module names must be identifiers (mypy checks this package): r0003_<slug>.py.
    cfg.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def at_head(engine: sa.Engine) -> bool:
    """The fast path of every open: one query for the recorded revision."""
    with engine.connect() as connection:
        try:
            revisions = connection.execute(sa.select(_version_table.c.version_num)).scalars()
            return list(revisions) == [HEAD]
        except (sa.exc.OperationalError, sa.exc.ProgrammingError):
            # No version table yet: a new database, or a ledger made before migrations.
            return False


def upgrade(engine: sa.Engine) -> None:
    """Bring the ledger on ``engine`` to :data:`HEAD`; cheap when it is there already."""
    if at_head(engine):
        return
    with _process_lock, engine.connect() as connection:
        _lock(connection)
        _upgrade_locked(connection)
        connection.commit()


def _lock(connection: sa.Connection) -> None:
    """Hold the upgrade lock until the transaction ends; others wait, then find it done."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_LOCK_KEY)))
    elif dialect == "sqlite":
        # pysqlite defers BEGIN until the first DML, so DDL would run outside a transaction
        # and without the write lock; an explicit BEGIN IMMEDIATE takes the lock now (other
        # openers wait for it up to the busy timeout) and makes the whole upgrade atomic.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _upgrade_locked(connection: sa.Connection) -> None:
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = config(connection)
    script = ScriptDirectory.from_config(cfg)
    # Read again under the lock: another process may have upgraded while this one waited.
    current = set(
        MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE}
        ).get_current_heads()
    )
    known = {revision.revision for revision in script.walk_revisions()}
    if current - known:
        raise LedgerSchemaError(
            f"the ledger's schema is at revision {', '.join(sorted(current - known))}, which "
            f"this Syncline does not know (its newest is {HEAD}): upgrade Syncline to use it"
        )
    if current == set(script.get_heads()):
        return
    start = ", ".join(sorted(current)) or "an empty database"
    if not current:
        tables = set(sa.inspect(connection).get_table_names())
        if BASELINE_TABLES.issubset(tables):
            log.info("ledger: tables from before migrations; stamping them at %s", BASELINE)
            command.stamp(cfg, BASELINE)
            start = BASELINE
        # Some but not all of them (an interrupted create_all): the baseline adds the rest.
    log.info("ledger: upgrading the schema from %s to %s", start, HEAD)
    command.upgrade(cfg, "head")
