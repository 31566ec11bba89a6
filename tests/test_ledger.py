"""The state ledger on real SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from connectors.base.records import RejectedRecord
from syncline.state import Ledger, RecordLink, sync_runs

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def test_cursor_round_trips_and_never_moves_backwards(database_url: str) -> None:
    ledger = Ledger(database_url)
    assert ledger.read_cursor("a") is None
    ledger.commit_cursor("a", T0, flow_run_id="run-1")
    assert ledger.read_cursor("a") == T0
    ledger.commit_cursor("a", T0 - timedelta(hours=1), flow_run_id="late-retry")
    assert ledger.read_cursor("a") == T0
    ledger.commit_cursor("a", T0 + timedelta(seconds=1), flow_run_id="run-2")
    assert ledger.read_cursor("a") == T0 + timedelta(seconds=1)
    ledger.commit_cursor("b", 41, flow_run_id="run-1")
    assert ledger.read_cursor("b") == 41
    ledger.reset_cursor("a")
    assert ledger.read_cursor("a") is None
    ledger.dispose()


def test_dead_letters_are_one_row_per_record_and_reruns_do_not_count_twice(
    database_url: str,
) -> None:
    ledger = Ledger(database_url)
    bad = [RejectedRecord("k1", "cannot read 'x' as integer", {"ram": "x"})]
    ledger.dead_letter("i", bad, stage="map", flow_run_id="run-1")
    ledger.dead_letter("i", bad, stage="map", flow_run_id="run-1")  # a retry of the same run
    (letter,) = ledger.dead_letters("i")
    assert (letter.attempts, letter.payload, letter.flow_run_id) == (1, {"ram": "x"}, "run-1")
    ledger.dead_letter("i", bad, stage="map", flow_run_id="run-2")
    assert ledger.dead_letters("i")[0].attempts == 2
    assert ledger.resolve_dead_letters("i", ["k1"], status="replayed", flow_run_id="run-3") == 1
    assert ledger.dead_letters("i") == []
    assert ledger.dead_letters("i", status="replayed")[0].source_key == "k1"
    ledger.dispose()


def test_links_and_audit(database_url: str) -> None:
    ledger = Ledger(database_url)
    ledger.save_links("i", [RecordLink("s1", "t1", "h1")], flow_run_id="r")
    ledger.save_links(
        "i", [RecordLink("s1", "t1", "h2"), RecordLink("s2", "t2", "h3")], flow_run_id="r"
    )
    assert ledger.links("i", ["s1", "s2", "s3"]) == {
        "s1": RecordLink("s1", "t1", "h2"),
        "s2": RecordLink("s2", "t2", "h3"),
    }
    ledger.audit("i", action="updated", target_object="sql:t", keys=["a", "b"], flow_run_id="r")
    ledger.audit("i", action="created", target_object="sql:t", keys=[], flow_run_id="r")
    (entry,) = ledger.audit_entries("i")
    assert (entry["action"], entry["record_count"], entry["keys"]) == ("updated", 2, ["a", "b"])
    ledger.record_run("i", "r", {"read": 3})
    ledger.record_run("i", "r", {"read": 4})  # a retry of run r replaces its summary
    with ledger.engine.connect() as connection:
        runs = connection.execute(sa.select(sync_runs.c.flow_run_id, sync_runs.c.summary)).all()
    assert [tuple(run) for run in runs] == [("r", {"read": 4})]
    ledger.dispose()
