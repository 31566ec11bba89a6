"""The state ledger on real SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.base.records import RejectedRecord
from connectors.sql.engine import make_engine
from syncline.state import Ledger, RecordLink, RunRecord, delete_scans, sync_runs

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


def test_audit_rows_carry_an_optional_detail(database_url: str) -> None:
    ledger = Ledger(database_url)
    ledger.audit("i", action="deleted", target_object="t", keys=["a"], flow_run_id="r")
    ledger.audit(
        "i", action="deleted", target_object="t", keys=["b"], flow_run_id="r", detail="scan"
    )
    assert [e["detail"] for e in ledger.audit_entries("i")] == [None, "scan"]
    ledger.dispose()


# run history ---------------------------------------------------------------------------------


def test_run_history_follows_a_run_from_start_to_end(database_url: str) -> None:
    ledger = Ledger(database_url)
    ledger.run_started("i", "r1", started_at=T0)
    (running,) = ledger.runs("i")
    assert running == RunRecord("i", "r1", "running", T0, None, None, None)

    ledger.run_finished("i", "r1", {"read": 3})
    (done,) = ledger.runs("i")
    assert (done.status, done.started_at, done.summary, done.error) == (
        "completed",
        T0,
        {"read": 3},
        None,
    )
    assert done.finished_at is not None and done.finished_at.tzinfo is not None

    ledger.run_started("i", "r2", started_at=T0 + timedelta(hours=1))
    ledger.run_failed("i", "r2", error="ConnectorError: 503")
    # A killed run stays "running": nothing came back to say otherwise.
    ledger.run_started("i", "r3", started_at=T0 + timedelta(hours=2))
    ledger.run_started("other", "r4", started_at=T0 + timedelta(hours=3))
    runs = ledger.runs("i")
    assert [(r.flow_run_id, r.status, r.error) for r in runs] == [
        ("r3", "running", None),
        ("r2", "failed", "ConnectorError: 503"),
        ("r1", "completed", None),
    ]
    assert runs[1].summary is None
    assert [r.flow_run_id for r in ledger.runs(limit=2)] == ["r4", "r3"]

    # The on-call retry of r2 (same flow run id) starts its row over, then fails with a summary.
    ledger.run_started("i", "r2", started_at=T0 + timedelta(hours=4))
    (retry,) = [r for r in ledger.runs("i") if r.flow_run_id == "r2"]
    assert (retry.status, retry.started_at, retry.finished_at, retry.error) == (
        "running",
        T0 + timedelta(hours=4),
        None,
        None,
    )
    ledger.run_failed("i", "r2", error="boom", summary={"read": 1})
    failed = ledger.runs("i")[0]
    assert (failed.flow_run_id, failed.status, failed.started_at) == (
        "r2",
        "failed",
        retry.started_at,
    )
    assert (failed.error, failed.summary) == ("boom", {"read": 1})
    assert failed.finished_at is not None
    # A failure reported after the summary was kept (the cursor commit failed) keeps it.
    ledger.run_failed("i", "r2", error="again")
    assert ledger.runs("i")[0].summary == {"read": 1}
    ledger.dispose()


def test_run_started_accepts_any_timezone_and_returns_utc(database_url: str) -> None:
    ledger = Ledger(database_url)
    paris = timezone(timedelta(hours=1))
    ledger.run_started("i", "r", started_at=T0.astimezone(paris))
    (run,) = ledger.runs("i")
    assert run.started_at == T0
    assert run.started_at is not None and run.started_at.utcoffset() == timedelta(0)
    ledger.dispose()


# write intents -------------------------------------------------------------------------------


def test_audit_batch_writes_the_rows_and_closes_the_intent(database_url: str) -> None:
    ledger = Ledger(database_url)
    intent = ledger.record_intent("i", target_object="sql:t", keys=["a", "b", "c"], flow_run_id="r")
    (open_intent,) = ledger.open_intents("i")
    assert (open_intent.id, open_intent.flow_run_id, open_intent.keys) == (
        intent,
        "r",
        ["a", "b", "c"],
    )
    assert open_intent.target_object == "sql:t" and open_intent.created_at.tzinfo is not None
    ledger.audit_batch(
        "i",
        target_object="sql:t",
        actions={"created": ["a"], "updated": ["b", "c"], "soft_deleted": []},
        flow_run_id="r",
        intent_id=intent,
    )
    assert ledger.open_intents("i") == []
    assert [(e["action"], e["keys"], e["flow_run_id"]) for e in ledger.audit_entries("i")] == [
        ("created", ["a"], "r"),
        ("updated", ["b", "c"], "r"),
    ]
    ledger.audit_batch(
        "i", target_object="sql:t", actions={"deleted": ["x"]}, flow_run_id="r", detail="why"
    )
    assert ledger.audit_entries("i")[-1]["detail"] == "why"
    ledger.dispose()


def test_audit_batch_is_one_transaction(database_url: str) -> None:
    engine = make_engine(database_url)
    ledger = Ledger(engine)
    intent = ledger.record_intent("i", target_object="t", keys=["a"], flow_run_id="r")

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _die_on_close(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM SYNCLINE_WRITE_INTENTS"):
            raise RuntimeError("killed between the audit rows and closing the intent")

    with pytest.raises(RuntimeError, match="killed"):
        ledger.audit_batch(
            "i", target_object="t", actions={"created": ["a"]}, flow_run_id="r", intent_id=intent
        )
    sa.event.remove(engine, "before_cursor_execute", _die_on_close)
    assert ledger.audit_entries("i") == []
    assert [i.id for i in ledger.open_intents("i")] == [intent]
    ledger.dispose()


def test_settle_intents_completes_the_audit_of_an_interrupted_write(database_url: str) -> None:
    crashed = Ledger(database_url)
    first = crashed.record_intent(
        "i", target_object="sql:t", keys=["k1", "k2", "k3", "k4"], flow_run_id="run-1"
    )
    second = crashed.record_intent("i", target_object="sql:t", keys=["k5"], flow_run_id="run-1")
    crashed.record_intent("other", target_object="sql:t", keys=["k1"], flow_run_id="run-1")
    crashed.dispose()  # the process died before audit_batch

    ledger = Ledger(database_url)
    ledger.run_started("i", "run-2", started_at=T0)
    assert ledger.settle_intents("i", {}, flow_run_id="run-2") == 0
    applied = ledger.settle_intents(
        "i", {"k1": "unchanged", "k2": "written", "zz": "written"}, flow_run_id="run-2"
    )
    assert applied == 1
    (entry,) = ledger.audit_entries("i")
    assert (entry["action"], entry["keys"], entry["flow_run_id"], entry["record_count"]) == (
        "applied",
        ["k1"],
        "run-1",
        1,
    )
    assert entry["detail"] == "written by interrupted flow run run-1; confirmed by flow run run-2"
    assert [(i.id, i.keys) for i in ledger.open_intents("i")] == [
        (first, ["k3", "k4"]),
        (second, ["k5"]),
    ]

    applied = ledger.settle_intents(
        "i", {"k3": "unchanged", "k4": "unchanged", "k5": "written"}, flow_run_id="run-2"
    )
    assert applied == 2
    assert ledger.open_intents("i") == []  # emptied intents are closed
    assert [(e["keys"], e["flow_run_id"]) for e in ledger.audit_entries("i")[1:]] == [
        (["k3", "k4"], "run-1")
    ]
    assert [i.keys for i in ledger.open_intents("other")] == [["k1"]]
    with pytest.raises(ValueError, match="created"):
        ledger.settle_intents("i", {"k9": "created"}, flow_run_id="run-2")
    ledger.dispose()


def test_settle_intents_leaves_the_write_in_flight_alone(database_url: str) -> None:
    ledger = Ledger(database_url)
    earlier = ledger.record_intent("i", target_object="t", keys=["a"], flow_run_id="run-1")
    ledger.run_started("i", "run-2", started_at=T0)
    mine = ledger.record_intent("i", target_object="t", keys=["a", "b"], flow_run_id="run-2")
    assert (
        ledger.settle_intents("i", {"a": "unchanged", "b": "unchanged"}, flow_run_id="run-2") == 1
    )
    assert [(i.id, i.keys) for i in ledger.open_intents("i")] == [(mine, ["a", "b"])]
    assert earlier != mine
    ledger.dispose()


def test_a_retry_of_the_same_flow_run_settles_its_interrupted_attempt(database_url: str) -> None:
    ledger = Ledger(database_url)
    ledger.run_started("i", "run-1", started_at=T0)
    ledger.record_intent("i", target_object="t", keys=["a", "b"], flow_run_id="run-1")
    # killed here; the retry keeps the flow run id (and, in tests, this very ledger)
    ledger.run_started("i", "run-1", started_at=T0 + timedelta(minutes=5))
    assert ledger.settle_intents("i", {"a": "unchanged", "b": "written"}, flow_run_id="run-1") == 1
    assert ledger.open_intents("i") == []
    (entry,) = ledger.audit_entries("i")
    assert (entry["keys"], entry["flow_run_id"]) == (["a"], "run-1")
    assert entry["detail"] == "written by interrupted flow run run-1; confirmed by flow run run-1"
    ledger.dispose()


def test_settle_intents_is_fast_for_50_000_open_keys(database_url: str) -> None:
    crashed = Ledger(database_url)
    batches = [[f"k{b}-{n}" for n in range(5_000)] for b in range(10)]
    for keys in batches:
        crashed.record_intent("i", target_object="t", keys=keys, flow_run_id="run-1")
    crashed.dispose()

    ledger = Ledger(database_url)
    started = time.perf_counter()
    applied = 0
    for keys in batches:
        confirmed = {key: "unchanged" if n % 2 else "written" for n, key in enumerate(keys)}
        applied += ledger.settle_intents("i", confirmed, flow_run_id="run-2")
    elapsed = time.perf_counter() - started
    assert applied == 25_000
    assert ledger.open_intents("i") == []
    assert sum(e["record_count"] for e in ledger.audit_entries("i")) == 25_000
    assert elapsed < 10, f"settling 10 batches of 5,000 took {elapsed:.1f}s"
    ledger.dispose()


# delete scans --------------------------------------------------------------------------------


def test_delete_scan_bookkeeping(database_url: str) -> None:
    ledger = Ledger(database_url)
    assert ledger.last_delete_scan("i") is None
    ledger.record_delete_scan("i", at=T0, flow_run_id="r1", deleted=3)
    assert ledger.last_delete_scan("i") == T0
    ledger.record_delete_scan("i", at=T0 + timedelta(days=1), flow_run_id="r2", deleted=0)
    last = ledger.last_delete_scan("i")
    assert last == T0 + timedelta(days=1)
    assert last is not None and last.tzinfo is not None
    assert ledger.last_delete_scan("other") is None
    with ledger.engine.connect() as connection:
        row = connection.execute(sa.select(delete_scans)).one()
    assert (row.flow_run_id, row.deleted) == ("r2", 0)
    ledger.dispose()
