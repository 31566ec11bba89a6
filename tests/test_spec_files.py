"""Spec files: connection settings are checked against the connector's settings model, a run
loads only its own integration's file, and ``validate`` reports every file in the folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncline.specs import SpecError, find_spec, load_spec, load_specs
from tests.conftest import SPECS_DIR

SHIPPED = (SPECS_DIR / "cmdb_nightly.yaml").read_text()


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def variant(directory: Path, old: str, new: str, name: str = "cmdb_nightly.yaml") -> Path:
    assert old in SHIPPED, old
    return write(directory, name, SHIPPED.replace(old, new, 1))


def line_of(path: Path, fragment: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if fragment in line)


def problems_of(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(path, environ={})
    return caught.value.problems


def test_misspelt_connection_setting_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = variant(tmp_path, "page_size: 1000", "page_sise: 5000")
    (problem,) = problems_of(path)
    assert problem.startswith(
        f"{path}:{line_of(path, 'page_sise')}: source.connection: unknown setting 'page_sise' "
        "(did you mean 'page_size'?); servicenow settings: instance_url, username, page_size, "
    )
    # Secret settings belong in credentials, so connection's list leaves them out.
    assert "password" not in problem and "token" not in problem


def test_connection_value_of_the_wrong_type_is_named_at_its_line(tmp_path: Path) -> None:
    path = variant(tmp_path, "page_size: 1000", "page_size: lots")
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'page_size')}: source.connection.page_size: expected a whole "
        "number, got 'lots'"
    ]


def test_connection_value_out_of_range_and_a_wrong_choice(tmp_path: Path) -> None:
    path = variant(tmp_path, "page_size: 1000", "page_size: 0\n    display_value: sometimes")
    problems = problems_of(path)
    assert len(problems) == 2
    assert problems[0].startswith(
        f"{path}:{line_of(path, 'page_size')}: source.connection.page_size: Input should be "
        "greater than or equal to 1"
    )
    assert problems[1].startswith(
        f"{path}:{line_of(path, 'display_value')}: source.connection.display_value:"
    )
    assert "'sometimes'" in problems[1]


def test_credential_names_must_be_settings_of_the_connector(tmp_path: Path) -> None:
    path = variant(
        tmp_path,
        "password: {env: SYNCLINE_SERVICENOW_PASSWORD}",
        "passwrd: {env: SYNCLINE_SERVICENOW_PASSWORD}",
    )
    (problem,) = problems_of(path)
    assert problem.startswith(
        f"{path}:{line_of(path, 'passwrd')}: source.credentials: unknown setting 'passwrd' "
        "(did you mean 'password'?); servicenow settings: instance_url, username, password, "
    )


def test_sql_settings_take_only_a_url(tmp_path: Path) -> None:
    path = variant(
        tmp_path,
        "  object: cmdb_server\n",
        "  object: cmdb_server\n  connection:\n    schema: reporting\n",
    )
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'schema:')}: target.connection: unknown setting 'schema'; "
        "sql settings: url"
    ]


def test_required_settings_may_come_from_credentials(tmp_path: Path) -> None:
    path = variant(
        tmp_path,
        "    instance_url: ${SYNCLINE_SERVICENOW_URL:-http://127.0.0.1:8701}\n",
        "",
    )
    text = path.read_text().replace(
        "    username: {env: SYNCLINE_SERVICENOW_USER}\n",
        "    username: {env: SYNCLINE_SERVICENOW_USER}\n    instance_url: {env: SN_URL}\n",
    )
    path.write_text(text)
    assert load_spec(path, environ={}).source.credentials["instance_url"] is not None


def test_a_broken_sibling_does_not_stop_a_run(tmp_path: Path) -> None:
    write(tmp_path, "cmdb_nightly.yaml", SHIPPED)
    write(tmp_path, "broken.yaml", "name: broken\nsource: [unclosed\n")
    write(tmp_path, "also_bad.yml", "name: also-bad\nsourse: {}\n")
    spec = find_spec(tmp_path, "cmdb-nightly")
    assert spec.name == "cmdb-nightly"


def test_a_spec_is_found_by_its_name_when_the_file_is_named_otherwise(tmp_path: Path) -> None:
    write(tmp_path, "nightly.yaml", SHIPPED)
    write(tmp_path, "broken.yaml", "name: [unclosed\n")
    write(tmp_path, "other.yaml", "name: other\nsourse: {}\n")
    assert find_spec(tmp_path, "cmdb-nightly").name == "cmdb-nightly"
    with pytest.raises(SpecError) as caught:
        find_spec(tmp_path, "cmdb-weekly")
    assert caught.value.problems == [
        f"{tmp_path}: no integration named 'cmdb-weekly' (cmdb-nightly, other)"
    ]


def test_the_integrations_own_broken_file_is_reported(tmp_path: Path) -> None:
    path = variant(tmp_path, "overlap: 5m", "overlap: soon")
    with pytest.raises(SpecError) as caught:
        find_spec(tmp_path, "cmdb-nightly")
    assert caught.value.problems[0].startswith(f"{path}:{line_of(path, 'overlap')}:")


def test_validate_reports_every_yaml_file_with_its_problems(tmp_path: Path) -> None:
    write(tmp_path, "cmdb_nightly.yaml", SHIPPED)
    misspelt = variant(tmp_path, "\nsource:\n", "\nsourse:\n", name="misspelt.yaml")
    misspelt.write_text(misspelt.read_text().replace("name: cmdb-nightly", "name: misspelt"))
    broken = write(tmp_path, "broken.yml", "name: broken\nsource: [unclosed\n")
    (tmp_path / "gx").mkdir()
    write(tmp_path / "gx", "suite.yaml", "expectations: []\n")
    with pytest.raises(SpecError) as caught:
        load_specs(tmp_path)
    problems = caught.value.problems
    assert any(
        problem.startswith(
            f"{misspelt}:{line_of(misspelt, 'sourse:')}: (top level): unknown "
            "field 'sourse' (did you mean 'source'?)"
        )
        for problem in problems
    ), problems
    assert any(problem.startswith(f"{broken}:3: not valid YAML") for problem in problems), problems
    assert not any("cmdb_nightly.yaml" in problem for problem in problems)
    assert not any("suite.yaml" in problem for problem in problems)
