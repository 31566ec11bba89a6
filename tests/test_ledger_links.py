"""Two-way record links in the ledger, on real SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from syncline.state import Ledger, LinkConflictError, PairLink, RecordLink, record_links


def stored(ledger: Ledger, a_key: str) -> Any:
    with ledger.engine.connect() as connection:
        return connection.execute(
            sa.select(record_links.c.flow_run_id, record_links.c.b_written_hash).where(
                record_links.c.source_key == a_key
            )
        ).one()


def test_pairs_round_trip_and_upsert_by_a_key(database_url: str) -> None:
    ledger = Ledger(database_url)
    first = PairLink("a1", "b1", "ha1", "hb1", "2024-03-01T12:00:00+00:00", "7")
    ledger.save_pair_links("i", [first, PairLink("a2", "b2")], flow_run_id="r1")
    assert ledger.pair_links("i", a_keys=["a1", "a2", "a3"]) == {
        "a1": first,
        "a2": PairLink("a2", "b2", None, None, None, None),
    }
    # A save replaces what the A key held, the B key included.
    moved = PairLink("a1", "b9", None, "hb2", None, "8")
    ledger.save_pair_links("i", [moved], flow_run_id="r2")
    assert ledger.pair_links("i", a_keys=["a1"]) == {"a1": moved}
    assert ledger.pair_links("i", b_keys=["b1"]) == {}
    assert stored(ledger, "a1").flow_run_id == "r2"
    # Integrations do not see each other's links.
    assert ledger.pair_links("other", a_keys=["a1"]) == {}
    ledger.dispose()


def test_reverse_lookup_by_b_key(database_url: str) -> None:
    ledger = Ledger(database_url)
    pairs = [PairLink(f"a{n}", f"b{n}", b_written_hash=f"h{n}") for n in range(1_200)]
    ledger.save_pair_links("i", pairs, flow_run_id="r")
    # More keys than one IN list holds, some without a link, some asked twice.
    asked = [f"b{n}" for n in range(0, 1_500, 1)] + ["b3"]
    found = ledger.pair_links("i", b_keys=asked)
    assert found == {pair.b_key: pair for pair in pairs}
    assert ledger.pair_links("i", b_keys=iter(["b5"])) == {"b5": pairs[5]}
    assert ledger.pair_links("i", b_keys=[]) == {}
    ledger.dispose()


def test_pair_links_asks_by_one_side(database_url: str) -> None:
    ledger = Ledger(database_url)
    with pytest.raises(ValueError, match="either a_keys or b_keys"):
        ledger.pair_links("i")
    with pytest.raises(ValueError, match="either a_keys or b_keys"):
        ledger.pair_links("i", a_keys=["a"], b_keys=["b"])
    ledger.dispose()


def test_a_b_record_belongs_to_one_a_record(database_url: str) -> None:
    ledger = Ledger(database_url)
    ledger.save_pair_links("i", [PairLink("a1", "b1", b_written_hash="h1")], flow_run_id="r1")

    # Against the ledger: the whole batch is refused, its other pairs too.
    with pytest.raises(LinkConflictError, match=r"'b1' is linked to A record 'a1'"):
        ledger.save_pair_links("i", [PairLink("a3", "b3"), PairLink("a2", "b1")], flow_run_id="r2")
    # Within one batch.
    with pytest.raises(LinkConflictError, match=r"'b4' cannot be linked to both 'a4' and 'a5'"):
        ledger.save_pair_links("i", [PairLink("a4", "b4"), PairLink("a5", "b4")], flow_run_id="r2")
    # Through the one-way API as well.
    with pytest.raises(LinkConflictError, match="belongs to one A record"):
        ledger.save_links("i", [RecordLink("s9", "b1", "h")], flow_run_id="r2")
    assert ledger.pair_links("i", a_keys=["a1", "a2", "a3", "a4", "a5", "s9"]) == {
        "a1": PairLink("a1", "b1", b_written_hash="h1")
    }
    assert stored(ledger, "a1").flow_run_id == "r1"

    # Saving a pair again is no conflict; nor is a B key its A record gave up in this batch.
    ledger.save_pair_links("i", [PairLink("a1", "b1", b_written_hash="h2")], flow_run_id="r3")
    ledger.save_pair_links("i", [PairLink("a1", "b7")], flow_run_id="r3")
    ledger.save_pair_links("i", [PairLink("a2", "b1")], flow_run_id="r3")
    assert ledger.pair_links("i", b_keys=["b1", "b7"]) == {
        "b1": PairLink("a2", "b1"),
        "b7": PairLink("a1", "b7"),
    }
    # The same B key in another integration is another record.
    ledger.save_pair_links("j", [PairLink("a9", "b1")], flow_run_id="r3")
    assert ledger.pair_links("j", b_keys=["b1"]) == {"b1": PairLink("a9", "b1")}
    ledger.dispose()


def test_note_written_and_note_seen_on_either_side(database_url: str) -> None:
    ledger = Ledger(database_url)
    ledger.save_pair_links("i", [PairLink("a1", "b1"), PairLink("a2", "b2")], flow_run_id="r1")

    assert ledger.note_written("i", "b", {"b1": "hb1", "b9": "x"}, flow_run_id="r2") == {"b9"}
    assert ledger.note_written("i", "a", {"a2": "ha2"}, flow_run_id="r3") == set()
    assert ledger.note_seen("i", "a", {"a1": "2024-03-01T12:00:00+00:00", "a9": "1"}) == {"a9"}
    assert ledger.note_seen("i", "b", {"b1": "41", "b2": "row-hash"}) == set()
    assert ledger.note_seen("i", "b", {}) == set()

    assert ledger.pair_links("i", a_keys=["a1", "a2"]) == {
        "a1": PairLink("a1", "b1", None, "hb1", "2024-03-01T12:00:00+00:00", "41"),
        "a2": PairLink("a2", "b2", "ha2", None, None, "row-hash"),
    }
    # The run that wrote is kept; a read (note_seen) does not change it.
    assert stored(ledger, "a1").flow_run_id == "r2"
    assert stored(ledger, "a2").flow_run_id == "r3"
    # Noting again overwrites; another integration's keys are not touched.
    ledger.note_written("i", "b", {"b1": "hb1-2"}, flow_run_id="r4")
    assert ledger.note_written("j", "b", {"b1": "zz"}, flow_run_id="r4") == {"b1"}
    assert ledger.pair_links("i", b_keys=["b1"])["b1"].b_written_hash == "hb1-2"
    with pytest.raises(ValueError, match="'a' or 'b'"):
        ledger.note_seen("i", "c", {"a1": "1"})  # type: ignore[arg-type]
    ledger.dispose()


def test_one_way_links_are_pairs_written_from_a_to_b(database_url: str) -> None:
    ledger = Ledger(database_url)
    ledger.save_links(
        "i",
        [RecordLink("s1", "t1", "h1"), RecordLink("s2", "t2", "h2"), RecordLink("s2", "t2", "h3")],
        flow_run_id="r1",
    )
    assert ledger.links("i", ["s1", "s2"]) == {
        "s1": RecordLink("s1", "t1", "h1"),
        "s2": RecordLink("s2", "t2", "h3"),
    }
    assert ledger.pair_links("i", b_keys=["t1"]) == {
        "t1": PairLink("s1", "t1", b_written_hash="h1")
    }
    # What save_links does not speak of (A's side, B's version) stays when it saves again.
    ledger.note_seen("i", "a", {"s1": "5"})
    ledger.note_written("i", "a", {"s1": "ha"}, flow_run_id="r1")
    ledger.save_links("i", [RecordLink("s1", "t1", "h9")], flow_run_id="r2")
    assert ledger.pair_links("i", a_keys=["s1"])["s1"] == PairLink(
        "s1", "t1", "ha", "h9", "5", None
    )
    # A pair nothing was written to B for reads as a one-way link with an empty hash.
    ledger.save_pair_links("i", [PairLink("s3", "t3", a_written_hash="ha3")], flow_run_id="r3")
    assert ledger.links("i", ["s3"]) == {"s3": RecordLink("s3", "t3", "")}
    ledger.dispose()


def test_batches_of_5_000_are_fast(database_url: str) -> None:
    ledger = Ledger(database_url)
    pairs = [PairLink(f"a{n}", f"b{n}", b_written_hash=f"h{n}") for n in range(5_000)]
    timings: dict[str, float] = {}

    def timed(name: str, call: Callable[[], object]) -> None:
        started = time.perf_counter()
        call()
        timings[name] = time.perf_counter() - started

    timed("save new", lambda: ledger.save_pair_links("i", pairs, flow_run_id="r1"))
    timed("save again", lambda: ledger.save_pair_links("i", pairs, flow_run_id="r2"))
    timed("by a", lambda: ledger.pair_links("i", a_keys=[p.a_key for p in pairs]))
    timed("by b", lambda: ledger.pair_links("i", b_keys=[p.b_key for p in pairs]))
    written = {p.b_key: f"w{n}" for n, p in enumerate(pairs)}
    timed("written", lambda: ledger.note_written("i", "b", written, flow_run_id="r3"))
    seen = {p.a_key: str(n) for n, p in enumerate(pairs)}
    timed("seen", lambda: ledger.note_seen("i", "a", seen))
    links = [RecordLink(p.a_key, p.b_key, "x") for p in pairs]
    timed("one-way", lambda: ledger.save_links("i", links, flow_run_id="r4"))

    found = ledger.pair_links("i", b_keys=["b4999"])["b4999"]
    assert found == PairLink("a4999", "b4999", None, "x", "4999", None)
    assert len(ledger.links("i", [p.a_key for p in pairs])) == 5_000
    slow = {name: round(seconds, 2) for name, seconds in timings.items() if seconds > 5}
    assert not slow, f"batches of 5,000 that took over 5s: {slow}"
    ledger.dispose()
