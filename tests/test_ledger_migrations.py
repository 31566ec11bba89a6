"""The ledger's migrations on real SQLite and PostgreSQL: old ledgers upgrade in place.

``LEGACY`` is a frozen copy of the tables as ``syncline/state.py`` defined them before the
ledger had migrations (what ``metadata.create_all`` made); it must never follow state.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from connectors.sql.engine import make_engine
from syncline import migrations
from syncline.state import (
    Ledger,
    LinkConflictError,
    PairLink,
    RecordLink,
    dead_letter_id,
    metadata,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]

LEGACY = sa.MetaData()

sa.Table(
    "syncline_cursors",
    LEGACY,
    sa.Column("integration", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("value", sa.String(64), nullable=False),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Table(
    "syncline_record_links",
    LEGACY,
    sa.Column("integration", sa.String(200), primary_key=True),
    sa.Column("source_key", sa.String(255), primary_key=True),
    sa.Column("target_key", sa.String(255), nullable=False),
    sa.Column("written_hash", sa.String(64), nullable=False),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Table(
    "syncline_audit_log",
    LEGACY,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("integration", sa.String(200), nullable=False, index=True),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target_object", sa.String(255), nullable=False),
    sa.Column("record_count", sa.Integer, nullable=False),
    sa.Column("keys", sa.JSON, nullable=False),
)
sa.Table(
    "syncline_dead_letters",
    LEGACY,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("integration", sa.String(200), nullable=False, index=True),
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
sa.Table(
    "syncline_sync_runs",
    LEGACY,
    sa.Column("flow_run_id", sa.String(64), primary_key=True),
    sa.Column("integration", sa.String(200), primary_key=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
)

AUDIT_KEYS = [f"key-{n}" for n in range(1_000)]


def make_legacy_ledger(url: str) -> None:
    """A ledger as the code before migrations left it, with a row or more in every table."""
    engine = make_engine(url)
    LEGACY.create_all(engine)
    t = LEGACY.tables
    with engine.begin() as connection:
        connection.execute(
            t["syncline_cursors"].insert(),
            [
                {
                    "integration": "cmdb",
                    "kind": "datetime",
                    "value": T0.isoformat(),
                    "flow_run_id": "old-1",
                    "updated_at": T0,
                },
                {
                    "integration": "users",
                    "kind": "integer",
                    "value": "41",
                    "flow_run_id": "old-1",
                    "updated_at": T0,
                },
            ],
        )
        connection.execute(
            t["syncline_record_links"].insert(),
            [
                {
                    "integration": "cmdb",
                    "source_key": f"s{n}",
                    "target_key": f"t{n}",
                    "written_hash": f"h{n}",
                    "flow_run_id": "old-1",
                    "updated_at": T0,
                }
                for n in range(3)
            ],
        )
        connection.execute(
            t["syncline_audit_log"].insert(),
            [
                {
                    "integration": "cmdb",
                    "flow_run_id": "old-1",
                    "at": T0,
                    "action": "created",
                    "target_object": "sql:cmdb_server",
                    "record_count": len(AUDIT_KEYS),
                    "keys": AUDIT_KEYS,
                },
                {
                    "integration": "cmdb",
                    "flow_run_id": "old-2",
                    "at": T0,
                    "action": "updated",
                    "target_object": "sql:cmdb_server",
                    "record_count": 2,
                    "keys": ["a", "b"],
                },
            ],
        )
        connection.execute(
            t["syncline_dead_letters"].insert(),
            [
                {
                    "id": dead_letter_id("cmdb", "bad-1"),
                    "integration": "cmdb",
                    "source_key": "bad-1",
                    "stage": "map",
                    "reason": "cannot read 'x' as integer",
                    "payload": {"ram": "x", "nested": {"list": [1, 2]}},
                    "status": "pending",
                    "attempts": 2,
                    "flow_run_id": "old-2",
                    "first_failed_at": T0,
                    "last_failed_at": T0,
                },
                {
                    "id": dead_letter_id("cmdb", "bad-2"),
                    "integration": "cmdb",
                    "source_key": "bad-2",
                    "stage": "write",
                    "reason": "refused",
                    "payload": {},
                    "status": "replayed",
                    "attempts": 1,
                    "flow_run_id": "old-1",
                    "first_failed_at": T0,
                    "last_failed_at": T0,
                    "resolved_at": T0,
                    "resolved_by_flow_run_id": "old-2",
                },
            ],
        )
        connection.execute(
            t["syncline_sync_runs"].insert(),
            [
                {
                    "flow_run_id": "old-1",
                    "integration": "cmdb",
                    "finished_at": T0,
                    "summary": {"read": 3},
                },
                {
                    "flow_run_id": "old-2",
                    "integration": "cmdb",
                    "finished_at": T0.replace(hour=13),
                    "summary": {"read": 4},
                },
            ],
        )
    engine.dispose()


def row_counts(engine: sa.Engine, tables: Any) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            name: connection.execute(sa.select(sa.func.count()).select_from(sa.table(name))).one()[
                0
            ]
            for name in tables
        }


def revisions(engine: sa.Engine) -> set[str]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": migrations.VERSION_TABLE}
        )
        return set(context.get_current_heads())


def schema_differences(engine: sa.Engine, target: sa.MetaData) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": migrations.VERSION_TABLE}
        )
        return list(compare_metadata(context, target))


def counting_engine(url: str, statements: list[str]) -> sa.Engine:
    """An engine that notes every statement it sends in ``statements`` (not SQLite PRAGMAs)."""
    engine = make_engine(url)

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith("PRAGMA"):
            statements.append(statement)

    return engine


def test_a_ledger_from_before_migrations_is_upgraded_in_place(database_url: str) -> None:
    make_legacy_ledger(database_url)
    before = row_counts(make_engine(database_url), LEGACY.tables)

    ledger = Ledger(database_url)

    assert revisions(ledger.engine) == {migrations.HEAD}
    assert row_counts(ledger.engine, LEGACY.tables) == before
    # Every row, through the API.
    assert ledger.read_cursor("cmdb") == T0
    assert ledger.read_cursor("users") == 41
    assert ledger.links("cmdb", ["s0", "s1", "s2"]) == {
        f"s{n}": RecordLink(f"s{n}", f"t{n}", f"h{n}") for n in range(3)
    }
    # Each one-way link is a pair written from A to B, found by either key.
    assert ledger.pair_links("cmdb", b_keys=["t0", "t1", "t2"]) == {
        f"t{n}": PairLink(f"s{n}", f"t{n}", b_written_hash=f"h{n}") for n in range(3)
    }
    entries = ledger.audit_entries("cmdb")
    assert [(e["action"], e["keys"], e["record_count"], e["detail"]) for e in entries] == [
        ("created", AUDIT_KEYS, 1_000, None),
        ("updated", ["a", "b"], 2, None),
    ]
    (pending,) = ledger.dead_letters("cmdb")
    assert (pending.source_key, pending.payload, pending.attempts) == (
        "bad-1",
        {"ram": "x", "nested": {"list": [1, 2]}},
        2,
    )
    assert [letter.source_key for letter in ledger.dead_letters("cmdb", status=None)] == [
        "bad-1",
        "bad-2",
    ]
    runs = ledger.runs("cmdb")
    assert [(r.flow_run_id, r.status, r.started_at, r.summary, r.error) for r in runs] == [
        ("old-2", "completed", None, {"read": 4}, None),
        ("old-1", "completed", None, {"read": 3}, None),
    ]
    assert runs[0].finished_at == T0.replace(hour=13)
    # The new columns and tables, in use.
    ledger.audit("cmdb", action="deleted", target_object="t", keys=["z"], flow_run_id="new")
    assert ledger.audit_entries("cmdb")[-1]["detail"] is None
    ledger.run_started("cmdb", "new", started_at=T0.replace(hour=14))
    assert ledger.runs("cmdb")[0].status == "running"
    intent = ledger.record_intent("cmdb", target_object="t", keys=["k"], flow_run_id="new")
    assert [i.id for i in ledger.open_intents("cmdb")] == [intent]
    ledger.record_delete_scan("cmdb", at=T0, flow_run_id="new", deleted=0)
    assert ledger.last_delete_scan("cmdb") == T0
    assert schema_differences(ledger.engine, metadata) == []
    ledger.dispose()

    # Opened again (several times a run): one query, and nothing changes.
    counted: list[str] = []
    engine = counting_engine(database_url, counted)
    Ledger(engine)
    assert len(counted) == 1, counted
    assert migrations.VERSION_TABLE in counted[0]
    assert revisions(engine) == {migrations.HEAD}
    engine.dispose()


def test_a_new_database_goes_straight_to_head(database_url: str) -> None:
    counted: list[str] = []
    engine = counting_engine(database_url, counted)
    Ledger(engine)
    assert revisions(engine) == {migrations.HEAD}
    assert schema_differences(engine, metadata) == []
    tables = set(sa.inspect(engine).get_table_names())
    assert tables == {*metadata.tables, migrations.VERSION_TABLE}
    # The baseline ran (a new ledger has nothing to adopt), then the changes since.
    created = [s.split("(")[0].strip() for s in counted if s.lstrip().startswith("CREATE TABLE")]
    assert "CREATE TABLE syncline_cursors" in created
    assert "CREATE TABLE syncline_write_intents" in created
    engine.dispose()


def test_downgrade_to_the_baseline_and_up_again_keeps_the_rows(database_url: str) -> None:
    make_legacy_ledger(database_url)
    ledger = Ledger(database_url)
    ledger.run_started("cmdb", "killed", started_at=T0.replace(hour=15))
    ledger.audit(
        "cmdb", action="deleted", target_object="t", keys=["z"], flow_run_id="n", detail="gone"
    )
    with ledger.engine.connect() as connection:
        command.downgrade(migrations.config(connection), migrations.BASELINE)
        connection.commit()
    assert revisions(ledger.engine) == {migrations.BASELINE}
    assert schema_differences(ledger.engine, LEGACY) == []
    with ledger.engine.connect() as connection:
        killed = connection.execute(
            sa.select(LEGACY.tables["syncline_sync_runs"]).where(
                LEGACY.tables["syncline_sync_runs"].c.flow_run_id == "killed"
            )
        ).one()
    assert killed.summary == {}
    assert killed.finished_at is not None
    ledger.dispose()

    ledger = Ledger(database_url)
    assert revisions(ledger.engine) == {migrations.HEAD}
    assert schema_differences(ledger.engine, metadata) == []
    assert [r.flow_run_id for r in ledger.runs("cmdb")] == ["killed", "old-2", "old-1"]
    assert [r.status for r in ledger.runs("cmdb")] == ["completed"] * 3
    assert len(ledger.audit_entries("cmdb")) == 3
    assert ledger.dead_letters("cmdb")[0].source_key == "bad-1"
    ledger.dispose()


AT_0002 = "0002_run_status_write_intents"
LINKS_AT_0002 = [
    {
        "integration": name,
        "source_key": f"{name}-s{n}",
        "target_key": f"t{n}",
        "written_hash": f"{name}-h{n}",
        "flow_run_id": "r-0002",
        "updated_at": T0,
    }
    for name in ("cmdb", "users")
    for n in range(1_200)
]


def make_ledger_at_0002(url: str) -> None:
    """A ledger at revision 0002 (one-way links, ``written_hash`` required), with links."""
    engine = make_engine(url)
    with engine.connect() as connection:
        command.upgrade(migrations.config(connection), AT_0002)
        connection.commit()
    with engine.begin() as connection:
        # The links table at 0002 is the baseline's.
        connection.execute(LEGACY.tables["syncline_record_links"].insert(), LINKS_AT_0002)
    assert revisions(engine) == {AT_0002}
    engine.dispose()


def link_differences(engine: sa.Engine, target: sa.MetaData) -> list[Any]:
    """Schema differences of the links table alone (the others are at other revisions)."""
    return [
        diff for diff in schema_differences(engine, target) if "syncline_record_links" in repr(diff)
    ]


def test_a_ledger_at_0002_is_upgraded_in_place_with_every_link(database_url: str) -> None:
    make_ledger_at_0002(database_url)

    ledger = Ledger(database_url)

    assert revisions(ledger.engine) == {migrations.HEAD}
    assert schema_differences(ledger.engine, metadata) == []
    for name in ("cmdb", "users"):
        source_keys = [f"{name}-s{n}" for n in range(1_200)]
        assert ledger.links(name, source_keys) == {
            f"{name}-s{n}": RecordLink(f"{name}-s{n}", f"t{n}", f"{name}-h{n}")
            for n in range(1_200)
        }
        # The same target key in two integrations is two records: both links survive.
        assert ledger.pair_links(name, b_keys=[f"t{n}" for n in range(1_200)]) == {
            f"t{n}": PairLink(f"{name}-s{n}", f"t{n}", None, f"{name}-h{n}", None, None)
            for n in range(1_200)
        }
    with ledger.engine.connect() as connection:
        kept = connection.execute(
            sa.select(
                metadata.tables["syncline_record_links"].c.flow_run_id,
                metadata.tables["syncline_record_links"].c.updated_at,
            ).distinct()
        ).all()
    assert [(run, at.replace(tzinfo=UTC) if at.tzinfo is None else at) for run, at in kept] == [
        ("r-0002", T0)
    ]
    # The new columns, in use on an upgraded row; the rule holds on it.
    ledger.note_seen("cmdb", "a", {"cmdb-s0": "v1"})
    ledger.note_written("cmdb", "a", {"cmdb-s0": "ha"}, flow_run_id="new")
    assert ledger.pair_links("cmdb", a_keys=["cmdb-s0"])["cmdb-s0"] == PairLink(
        "cmdb-s0", "t0", "ha", "cmdb-h0", "v1", None
    )
    with pytest.raises(LinkConflictError):
        ledger.save_pair_links("cmdb", [PairLink("other", "t1")], flow_run_id="new")
    ledger.dispose()


def test_a_ledger_linking_a_target_twice_is_refused_and_left_as_it_was(
    database_url: str,
) -> None:
    make_ledger_at_0002(database_url)
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            LEGACY.tables["syncline_record_links"].insert(),
            [{**LINKS_AT_0002[0], "source_key": "cmdb-stale"}],
        )
    with pytest.raises(RuntimeError, match=r"cmdb: 't0' \(2 links\)"):
        Ledger(engine)
    assert revisions(engine) == {AT_0002}
    assert link_differences(engine, LEGACY) == []
    assert row_counts(engine, ["syncline_record_links"]) == {
        "syncline_record_links": len(LINKS_AT_0002) + 1
    }
    # Once the stale link is gone, it upgrades.
    with engine.begin() as connection:
        connection.execute(
            sa.text("DELETE FROM syncline_record_links WHERE source_key = 'cmdb-stale'")
        )
    Ledger(engine)
    assert revisions(engine) == {migrations.HEAD}
    engine.dispose()


def test_downgrade_to_0002_keeps_every_link(database_url: str) -> None:
    make_ledger_at_0002(database_url)
    ledger = Ledger(database_url)
    ledger.save_pair_links(
        "two-way",
        [PairLink("a1", "b1", "ha", "hb", "1", "2"), PairLink("a2", "b2", a_written_hash="ha")],
        flow_run_id="new",
    )
    with ledger.engine.connect() as connection:
        command.downgrade(migrations.config(connection), AT_0002)
        connection.commit()
    assert revisions(ledger.engine) == {AT_0002}
    assert link_differences(ledger.engine, LEGACY) == []
    links = LEGACY.tables["syncline_record_links"]
    with ledger.engine.connect() as connection:
        two_way = connection.execute(
            sa.select(links.c.source_key, links.c.target_key, links.c.written_hash)
            .where(links.c.integration == "two-way")
            .order_by(links.c.source_key)
        ).all()
    # What was written to B stays; a pair never written to B gets "", which no hash equals.
    assert [tuple(row) for row in two_way] == [("a1", "b1", "hb"), ("a2", "b2", "")]
    assert row_counts(ledger.engine, ["syncline_record_links"]) == {
        "syncline_record_links": len(LINKS_AT_0002) + 2
    }
    ledger.dispose()

    ledger = Ledger(database_url)
    assert schema_differences(ledger.engine, metadata) == []
    assert ledger.links("two-way", ["a1", "a2"]) == {
        "a1": RecordLink("a1", "b1", "hb"),
        "a2": RecordLink("a2", "b2", ""),
    }
    assert len(ledger.links("cmdb", [f"cmdb-s{n}" for n in range(1_200)])) == 1_200
    ledger.dispose()


OPEN_WHEN_TOLD = """
import sys, time
from pathlib import Path
from syncline.state import Ledger
url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.005)
Ledger(url).dispose()
"""


def test_processes_opening_an_old_ledger_at_once_upgrade_it_once(
    database_url: str, tmp_path: Path
) -> None:
    make_legacy_ledger(database_url)
    before = row_counts(make_engine(database_url), LEGACY.tables)
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{n}" for n in range(2)]
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_WHEN_TOLD, database_url, str(flag), str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for flag in ready
    ]
    deadline = time.monotonic() + 120
    while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # all imported and waiting: they open the ledger within milliseconds
    for opener in openers:
        output, _ = opener.communicate(timeout=120)
        assert opener.returncode == 0, output
    engine = make_engine(database_url)
    assert revisions(engine) == {migrations.HEAD}
    with engine.connect() as connection:
        versions = connection.execute(
            sa.text(f"SELECT version_num FROM {migrations.VERSION_TABLE}")
        ).all()
    assert len(versions) == 1
    assert row_counts(engine, LEGACY.tables) == before
    assert schema_differences(engine, metadata) == []
    engine.dispose()


def test_a_failed_upgrade_leaves_the_ledger_as_it_was(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_legacy_ledger(database_url)
    upgrade = command.upgrade

    def upgrade_then_die(config: Any, revision: str, **kwargs: Any) -> None:
        upgrade(config, revision, **kwargs)
        raise RuntimeError("killed at the end of the upgrade")

    monkeypatch.setattr(command, "upgrade", upgrade_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        Ledger(database_url)
    engine = make_engine(database_url)
    assert set(sa.inspect(engine).get_table_names()) == set(LEGACY.tables)
    assert schema_differences(engine, LEGACY) == []
    monkeypatch.undo()
    Ledger(engine)
    assert revisions(engine) == {migrations.HEAD}
    engine.dispose()


def test_another_applications_alembic_history_is_left_alone(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
        connection.execute(sa.text("INSERT INTO alembic_version VALUES ('someone-elses')"))
    Ledger(engine)
    with engine.connect() as connection:
        theirs = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    assert [tuple(row) for row in theirs] == [("someone-elses",)]
    assert revisions(engine) == {migrations.HEAD}
    engine.dispose()


def test_a_ledger_from_a_newer_syncline_is_refused(database_url: str) -> None:
    engine = make_engine(database_url)
    Ledger(engine)
    with engine.begin() as connection:
        connection.execute(
            sa.text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '0099_from_the_future'")
        )
    with pytest.raises(migrations.LedgerSchemaError, match="0099_from_the_future"):
        Ledger(engine)
    engine.dispose()


def test_an_interrupted_first_create_is_completed(database_url: str) -> None:
    engine = make_engine(database_url)
    LEGACY.tables["syncline_cursors"].create(engine)
    Ledger(engine)
    assert revisions(engine) == {migrations.HEAD}
    assert schema_differences(engine, metadata) == []
    engine.dispose()


def test_the_head_constant_is_the_newest_script() -> None:
    script = ScriptDirectory.from_config(migrations.config())
    assert script.get_heads() == [migrations.HEAD]
    assert script.get_base() == migrations.BASELINE
    assert set(LEGACY.tables) == migrations.BASELINE_TABLES
    for revision in script.walk_revisions():
        assert len(revision.revision) <= 32  # the version table's column
