"""Integration specs: the shipped ones validate; mistakes are named by file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncline.specs import SpecError, load_spec, load_specs
from syncline_app.cli import main
from tests.conftest import ROOT, SPECS_DIR

ENV = {"SYNCLINE_SERVICENOW_USER": "admin", "SYNCLINE_SERVICENOW_PASSWORD": "x"}


def write_variant(tmp_path: Path, old: str, new: str) -> Path:
    text = (SPECS_DIR / "cmdb_nightly.yaml").read_text()
    assert old in text
    path = tmp_path / "cmdb_nightly.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def line_of(path: Path, fragment: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if fragment in line)


def test_shipped_specs_validate() -> None:
    specs = load_specs(SPECS_DIR)
    spec = specs["cmdb-nightly"]
    assert spec.source.cursor is not None
    assert spec.source.cursor.field == "sys_updated_on"
    assert spec.mapping["status"].map is not None
    assert spec.mapping["status"].map["1"] == "Operational"
    assert spec.schedule is not None and spec.schedule.cron == "0 2 * * *"


def test_validate_command_checks_specs_and_prefect_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["validate", "--specs-dir", str(SPECS_DIR), "--prefect-yaml", str(ROOT / "prefect.yaml")]
    )
    assert code == 0
    assert "ok  cmdb-nightly" in capsys.readouterr().out


def test_typo_names_file_line_and_suggestion(tmp_path: Path) -> None:
    path = write_variant(tmp_path, "  fields: [sys_id", "  fiels: [sys_id")
    with pytest.raises(SpecError) as caught:
        load_spec(path, environ=ENV)
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert problem.startswith(f"{path}:{line_of(path, 'fiels:')}: source: unknown field 'fiels'")
    assert "did you mean 'fields'?" in problem


def test_wrong_type_names_field_path_and_expectation(tmp_path: Path) -> None:
    path = write_variant(tmp_path, "overlap: 5m", "overlap: five minutes")
    with pytest.raises(SpecError) as caught:
        load_spec(path, environ=ENV)
    (problem,) = caught.value.problems
    assert problem == (
        f"{path}:{line_of(path, 'overlap:')}: source.cursor.overlap: expected a duration "
        'such as "5m", "30s" or a number of seconds, got \'five minutes\''
    )


def test_unknown_column_type_lists_choices(tmp_path: Path) -> None:
    path = write_variant(tmp_path, "type: integer}", "type: int}")
    with pytest.raises(SpecError) as caught:
        load_spec(path, environ=ENV)
    (problem,) = caught.value.problems
    assert f":{line_of(path, 'type: int}')}: mapping.cpu_count.type:" in problem
    assert "'integer'" in problem and "got 'int'" in problem


def test_mapping_from_a_field_the_source_does_not_read(tmp_path: Path) -> None:
    path = write_variant(tmp_path, "ram_mb: {from: ram,", "ram_mb: {from: memory,")
    with pytest.raises(SpecError) as caught:
        load_spec(path, environ=ENV)
    assert "source.fields lacks memory" in str(caught.value)


def test_literal_secret_is_refused(tmp_path: Path) -> None:
    path = write_variant(
        tmp_path, "    page_size: 1000", "    page_size: 1000\n    password: hunter2"
    )
    with pytest.raises(SpecError) as caught:
        load_spec(path, environ=ENV)
    (problem,) = caught.value.problems
    assert problem.startswith(
        f"{path}:{line_of(path, 'password: hunter2')}: source.connection.password: "
        "looks like a secret: move it to credentials"
    )
    assert "hunter2" not in problem


def test_unsafe_expression_is_refused(tmp_path: Path) -> None:
    path = write_variant(
        tmp_path, 'expr: "lower(coalesce(fqdn, name))"', "expr: \"__import__('os')\""
    )
    with pytest.raises(SpecError) as caught:
        load_spec(path, environ=ENV)
    assert "mapping.fqdn.expr: unknown function" in str(caught.value)


def test_invalid_cron_and_timezone(tmp_path: Path) -> None:
    path = write_variant(tmp_path, "timezone: Europe/Zurich", "timezone: Mars/Olympus")
    with pytest.raises(SpecError) as caught:
        load_spec(path, environ=ENV)
    assert "schedule.timezone: unknown time zone 'Mars/Olympus'" in str(caught.value)


def test_environment_defaults_and_missing_variables(tmp_path: Path) -> None:
    spec = load_spec(SPECS_DIR / "cmdb_nightly.yaml", environ={})
    assert spec.source.connection["instance_url"] == "http://127.0.0.1:8701"
    path = write_variant(
        tmp_path, "${SYNCLINE_SERVICENOW_URL:-http://127.0.0.1:8701}", "${SN_URL_NOT_SET}"
    )
    with pytest.raises(SpecError) as caught:
        load_spec(path, environ={})
    assert "source.connection.instance_url: environment variable SN_URL_NOT_SET is not set" in str(
        caught.value
    )


def test_validate_command_fails_with_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_variant(tmp_path, "overlap: 5m", "overlap: soon")
    (tmp_path / "other.yaml").write_text("name: other\nsource: {}\ntarget: {}\n")
    code = main(["validate", "--specs-dir", str(tmp_path), "--prefect-yaml", "/nonexistent"])
    assert code == 1
    errors = capsys.readouterr().err
    assert f"{tmp_path / 'cmdb_nightly.yaml'}:" in errors and "source.cursor.overlap" in errors
    assert f"{tmp_path / 'other.yaml'}:2: source.connector: required field is missing" in errors
    assert "mapping: required field is missing" in errors
