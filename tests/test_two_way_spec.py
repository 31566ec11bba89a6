"""Two-way specs: a valid one loads and stands for two valid one-way specs; mistakes are named
by file, line and field path, as in one-way specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncline.specs import SpecError
from syncline.two_way import TwoWaySpec, load_two_way_spec

ENV = {"SYNCLINE_SERVICENOW_USER": "admin", "SYNCLINE_SERVICENOW_PASSWORD": "x"}

SPEC = """\
name: incidents-both-ways
two_way: true
a:
  connector: servicenow
  object: incident
  connection:
    instance_url: http://127.0.0.1:8701
  credentials:
    username: {env: SYNCLINE_SERVICENOW_USER}
    password: {env: SYNCLINE_SERVICENOW_PASSWORD}
  key: sys_id
  fields: [sys_id, short_description, urgency, priority, work_notes, correlation_id,
           sys_updated_on]
  cursor: {field: sys_updated_on}
b:
  connector: sql
  object: tickets
  credentials:
    url: {env: SYNCLINE_TICKETS_DB_URL, default: "sqlite:///tickets.db"}
  key: ticket_id
  fields: [ticket_id, title, urgency, priority, notes, sn_sys_id, updated_at]
  cursor: {field: updated_at}
fields:
  title:    {a: short_description, b: title, direction: both, conflict: newest_wins}
  urgency:  {a: urgency, b: urgency, direction: both, conflict: a_wins,
             map_a_to_b: {"1": high, "2": medium, "3": low}}
  priority: {a: priority, b: priority, direction: a_to_b}
  notes:    {a: work_notes, b: notes, direction: b_to_a}
correlation: {a: correlation_id, b: sn_sys_id}
"""


def write(tmp_path: Path, old: str = "", new: str = "") -> Path:
    assert old in SPEC
    path = tmp_path / "incidents_both_ways.yaml"
    path.write_text(SPEC.replace(old, new, 1) if old else SPEC)
    return path


def line_of(path: Path, fragment: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if fragment in line)


def only_problem(path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        load_two_way_spec(path, environ=ENV)
    (problem,) = caught.value.problems
    return problem


def test_valid_spec_loads(tmp_path: Path) -> None:
    spec = load_two_way_spec(write(tmp_path), environ=ENV)
    assert isinstance(spec, TwoWaySpec)
    assert spec.fields["title"].direction == "both"
    assert spec.fields["title"].conflict == "newest_wins"
    assert spec.fields["priority"].conflict is None
    assert spec.correlation.a == "correlation_id"
    assert spec.correlation.b == "sn_sys_id"


def test_a_to_b_view_upserts_b_by_the_column_holding_a_key(tmp_path: Path) -> None:
    a_to_b, _ = load_two_way_spec(write(tmp_path), environ=ENV).views()
    assert a_to_b.name == "incidents-both-ways-a-to-b"
    assert (a_to_b.source.connector, a_to_b.source.object) == ("servicenow", "incident")
    assert (a_to_b.target.connector, a_to_b.target.object) == ("sql", "tickets")
    assert a_to_b.source.key == "sys_id"
    assert a_to_b.target.key == "sn_sys_id"
    assert a_to_b.mapping["sn_sys_id"].from_ == "sys_id"
    assert a_to_b.mapping["sn_sys_id"].required
    # both and a_to_b fields, by B name from A name; b_to_a fields are not written to B
    assert {name: field.from_ for name, field in a_to_b.mapping.items()} == {
        "title": "short_description",
        "urgency": "urgency",
        "priority": "priority",
        "sn_sys_id": "sys_id",
    }
    assert a_to_b.mapping["urgency"].map == {"1": "high", "2": "medium", "3": "low"}
    assert a_to_b.source.cursor is not None and a_to_b.source.cursor.field == "sys_updated_on"
    assert a_to_b.deletes.policy == "ignore"


def test_b_to_a_view_upserts_a_by_the_field_holding_b_key(tmp_path: Path) -> None:
    _, b_to_a = load_two_way_spec(write(tmp_path), environ=ENV).views()
    assert b_to_a.name == "incidents-both-ways-b-to-a"
    assert (b_to_a.source.connector, b_to_a.target.connector) == ("sql", "servicenow")
    assert b_to_a.source.key == "ticket_id"
    assert b_to_a.target.key == "correlation_id"
    assert {name: field.from_ for name, field in b_to_a.mapping.items()} == {
        "short_description": "title",
        "urgency": "urgency",
        "work_notes": "notes",
        "correlation_id": "ticket_id",
    }
    # A single map on a both-ways field is inverted for the way back.
    assert b_to_a.mapping["urgency"].map == {"high": "1", "medium": "2", "low": "3"}
    assert b_to_a.source.cursor is not None and b_to_a.source.cursor.field == "updated_at"
    # The target endpoint keeps its settings and secret references, not its read settings.
    assert b_to_a.target.credentials["password"].model_dump() == {
        "env": "SYNCLINE_SERVICENOW_PASSWORD",
        "default": None,
    }


def test_both_ways_field_without_conflict_policy(tmp_path: Path) -> None:
    path = write(tmp_path, "direction: both, conflict: newest_wins}", "direction: both}")
    problem = only_problem(path)
    assert problem.startswith(f"{path}:{line_of(path, 'title:')}: fields.title.conflict: ")
    assert "needs a conflict policy" in problem


def test_conflict_policy_on_a_one_way_field(tmp_path: Path) -> None:
    path = write(tmp_path, "direction: a_to_b}", "direction: a_to_b, conflict: a_wins}")
    problem = only_problem(path)
    assert problem.startswith(f"{path}:{line_of(path, 'priority:')}: fields.priority.conflict: ")
    assert "'a_to_b' has one writer" in problem


def test_value_maps_that_are_not_inverses(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '"3": low}}',
        '"3": low},\n             map_b_to_a: {high: "1", medium: "3", low: "3"}}',
    )
    with pytest.raises(SpecError) as caught:
        load_two_way_spec(path, environ=ENV)
    line = line_of(path, "map_b_to_a:")
    assert caught.value.problems == [
        f"{path}:{line}: fields.urgency.map_b_to_a.medium: map_b_to_a gives '3' for 'medium', "
        "but map_a_to_b gives 'low' for '3': 'medium' written to A would read back as 'low'",
    ]


def test_several_a_codes_may_share_a_b_value_when_the_way_back_reads_back_the_same(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        '"3": low}}',
        '"3": low, "4": low},\n             map_b_to_a: {high: "1", medium: "2", low: "3"}}',
    )
    spec = load_two_way_spec(path, environ=ENV)
    assert spec.fields["urgency"].value_map("b_to_a") == {"high": "1", "medium": "2", "low": "3"}


def test_one_map_on_a_both_ways_field_must_be_one_to_one(tmp_path: Path) -> None:
    path = write(tmp_path, '"3": low}', '"3": medium}')
    problem = only_problem(path)
    assert problem.startswith(f"{path}:{line_of(path, 'map_a_to_b:')}: fields.urgency.map_a_to_b:")
    assert "gives 'medium' for both '2' and '3'" in problem


def test_unknown_direction_suggests_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path, "direction: b_to_a}", "direction: b_to_b}")
    problem = only_problem(path)
    assert problem.startswith(f"{path}:{line_of(path, 'notes:')}: fields.notes.direction: ")
    assert "unknown direction 'b_to_b' (did you mean 'b_to_a'?)" in problem


def test_unknown_key_in_a_field_suggests_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path, "direction: a_to_b}", "direction: a_to_b, conflcit: a_wins}")
    problem = only_problem(path)
    assert problem.startswith(f"{path}:{line_of(path, 'priority:')}: fields.priority: ")
    assert "unknown field 'conflcit' (did you mean 'conflict'?)" in problem


def test_field_missing_from_a_sides_fields_list(tmp_path: Path) -> None:
    path = write(tmp_path, "  fields: [ticket_id, title,", "  fields: [ticket_id, titel,")
    problem = only_problem(path)
    assert problem == (
        f"{path}:{line_of(path, 'title:')}: fields.title.b: b.fields lacks title "
        "(did you mean 'titel'?)"
    )


def test_correlation_field_missing_from_a_sides_fields_list(tmp_path: Path) -> None:
    path = write(tmp_path, " correlation_id,\n", "\n")
    problem = only_problem(path)
    assert problem.startswith(f"{path}:{line_of(path, 'correlation:')}: correlation.a: ")
    assert "a.fields lacks correlation_id" in problem


def test_synced_field_may_not_write_a_correlation_field(tmp_path: Path) -> None:
    path = write(tmp_path, "{a: priority, b: priority,", "{a: priority, b: sn_sys_id,")
    problem = only_problem(path)
    assert problem.startswith(f"{path}:{line_of(path, 'priority:')}: fields.priority.b: ")
    assert "is correlation.b" in problem


def test_validate_checks_a_two_way_spec_beside_one_way_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncline.specs import load_specs
    from tests.conftest import SPECS_DIR

    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "cmdb_nightly.yaml").write_text((SPECS_DIR / "cmdb_nightly.yaml").read_text())
    write(tmp_path)
    assert sorted(load_specs(tmp_path)) == [
        "cmdb-nightly",
        "incidents-both-ways-a-to-b",
        "incidents-both-ways-b-to-a",
    ]
    write(tmp_path, "direction: both, conflict: newest_wins", "direction: both")
    with pytest.raises(SpecError) as caught:
        load_specs(tmp_path)
    assert len(caught.value.problems) == 1 and "conflict" in caught.value.problems[0]
