"""Field-by-field decisions of a two-way pair, without any system: echoes, changes, conflicts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncline.two_way import TwoWayField
from syncline.two_way_merge import (
    FieldRule,
    SideRecord,
    UnmappableValueError,
    decide,
    normalise,
    side_record,
)

STATE = TwoWayField(
    a="state",
    b="status",
    direction="both",
    conflict="b_wins",
    # ServiceNow's Resolved (6) and Closed (7) are both Jira's Done; Done is written as 6.
    map_a_to_b={"1": "To Do", "2": "In Progress", "6": "Done", "7": "Done"},
    map_b_to_a={"To Do": "1", "In Progress": "2", "Done": "6"},
)
TITLE = TwoWayField(a="short_description", b="summary", direction="both", conflict="newest_wins")
PRIORITY = TwoWayField(a="priority", b="priority", direction="a_to_b", type="integer")
RULES = [FieldRule("state", STATE), FieldRule("title", TITLE), FieldRule("priority", PRIORITY)]
SYNCED = {"state": "In Progress", "title": "Disk full", "priority": "2"}


def incident(at: int = 0, **values: str) -> SideRecord:
    row = {"state": "2", "short_description": "Disk full", "priority": "2", **values}
    return side_record(
        RULES,
        "a",
        "inc",
        row,
        link_field="correlation_id",
        changed_at=datetime(2026, 1, 1, 0, at, tzinfo=UTC),
    )


def issue(at: int = 0, **values: object) -> SideRecord:
    row = {"status": "In Progress", "summary": "Disk full", "priority": 2, **values}
    return side_record(
        RULES,
        "b",
        "OPS-1",
        row,
        link_field="sn_sys_id",
        changed_at=datetime(2026, 1, 1, 0, at, tzinfo=UTC),
    )


def test_a_record_holding_what_both_agreed_is_no_change() -> None:
    decision = decide(RULES, incident(), issue(), SYNCED)
    assert decision.writes == {"a": {}, "b": {}}
    assert decision.changed == {"a": False, "b": False}
    assert decision.synced == SYNCED


def test_a_code_sharing_a_b_value_reads_back_as_that_value() -> None:
    # Closed (7) after Done was written as Resolved (6): still Done, nothing moves.
    decision = decide(RULES, incident(state="7"), issue(status="Done"), {**SYNCED, "state": "Done"})
    assert decision.writes == {"a": {}, "b": {}}


def test_a_change_travels_in_the_other_sides_terms() -> None:
    decision = decide(RULES, incident(), issue(status="Done"), SYNCED)
    assert decision.writes == {"a": {"state": "6"}, "b": {}}
    assert decision.synced["state"] == "Done"


def test_a_derived_one_way_field_travels_alone() -> None:
    decision = decide(RULES, incident(priority="1"), issue(), SYNCED)
    assert decision.writes == {"a": {}, "b": {"priority": "1"}}


def test_newest_wins_by_each_records_own_change_time() -> None:
    a_newer = decide(RULES, incident(at=5, short_description="A"), issue(at=3, summary="B"), SYNCED)
    b_newer = decide(RULES, incident(at=3, short_description="A"), issue(at=5, summary="B"), SYNCED)
    assert a_newer.writes["b"] == {"title": "A"}
    assert b_newer.writes["a"] == {"title": "B"}
    assert [c.winner for c in (*a_newer.conflicts, *b_newer.conflicts)] == ["a", "b"]


def test_two_sides_that_changed_to_the_same_value_agree() -> None:
    decision = decide(RULES, incident(short_description="X"), issue(summary="X"), SYNCED)
    assert decision.conflicts == []
    assert decision.synced["title"] == "X"


def test_a_new_record_gets_every_field_that_flows_to_its_side() -> None:
    decision = decide(RULES, incident(state="6"), None, None)
    assert decision.writes["b"] == {"state": "Done", "title": "Disk full", "priority": "2"}


def test_a_value_without_a_counterpart_is_refused_naming_the_field() -> None:
    with pytest.raises(UnmappableValueError, match=r"a\.state: '3' is not in map_a_to_b"):
        incident(state="3")


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("", "text", None),
        (None, "integer", None),
        ("2", "integer", "2"),
        (2.0, "integer", "2"),
        ("TRUE", "boolean", "true"),
        ("2026-01-01 01:00:00+01:00", "datetime", "2026-01-01 00:00:00"),
    ],
)
def test_values_compare_in_one_form(value: object, kind: str, expected: str | None) -> None:
    assert normalise(value, kind) == expected  # type: ignore[arg-type]
