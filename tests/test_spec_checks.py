"""Spec checks that must name the line at fault: duplicate keys, literal secrets, fields the
source does not read, and what a delete policy needs from the target key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from syncline.specs import IntegrationSpec, SpecError, load_spec

# Self-contained, so that edits to the shipped specs do not move these tests' lines.
BASE = """\
name: servers
source:
  connector: servicenow
  object: cmdb_ci_server
  connection:
    instance_url: http://127.0.0.1:8701
    page_size: 1000
  credentials:
    username: {env: SN_USER}
    password: {env: SN_PASSWORD}
  key: sys_id
  fields: [sys_id, name, fqdn, ram, operational_status, sys_updated_on]
  cursor:
    field: sys_updated_on
    overlap: 5m
target:
  connector: sql
  object: servers
  credentials:
    url: {env: DB_URL, default: "sqlite:///servers.db"}
  key: ci_id
mapping:
  ci_id: {from: sys_id, required: true}
  name: name
  fqdn: {expr: "lower(coalesce(fqdn, name))"}
  ram_mb: {from: ram, type: integer}
  status: {from: operational_status, map: {"1": Operational, "2": Down}}
where: "operational_status != '6'"
"""

SECRET_MESSAGE = (
    "a secret must be a reference, {env: VARIABLE} or {block: secret/name}, never a literal value"
)


def write(tmp_path: Path, *replacements: tuple[str, str], append: str = "") -> Path:
    text = BASE
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "servers.yaml"
    path.write_text(text + append)
    return path


def line_of(path: Path, fragment: str, occurrence: int = 1) -> int:
    numbers = [i for i, line in enumerate(path.read_text().splitlines(), 1) if fragment in line]
    return numbers[occurrence - 1]


def problems_of(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(path, environ={})
    return caught.value.problems


def test_base_spec_is_valid(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path), environ={})
    assert spec.target.key == "ci_id"


# 1. Duplicate keys


def test_duplicate_key_in_mapping_names_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, ("  name: name\n", "  name: name\n  fqdn2: fqdn\n  name: fqdn\n"))
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'name: fqdn')}: mapping.name: duplicate key "
        f"(first at line {line_of(path, 'name: name')})"
    ]


def test_duplicate_key_at_top_level_and_deeper(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        ("    overlap: 5m\n", "    overlap: 5m\n    field: name\n"),
        append="name: other-servers\n",
    )
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'field: name')}: source.cursor.field: duplicate key "
        f"(first at line {line_of(path, 'field: sys_updated_on')})",
        f"{path}:{line_of(path, 'name: other-servers')}: name: duplicate key (first at line 1)",
    ]


def test_duplicate_key_in_a_flow_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, ('{"1": Operational, "2": Down}', '{"1": Operational, "1": Down}'))
    (problem,) = problems_of(path)
    line = line_of(path, "status:")
    assert problem == f"{path}:{line}: mapping.status.map.1: duplicate key (first at line {line})"


def test_keys_from_a_merge_may_be_overridden(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        (
            "  ram_mb: {from: ram, type: integer}\n",
            "  ram_mb: &ram {from: ram, type: integer}\n  ram_gb: {<<: *ram, type: float}\n",
        ),
    )
    assert load_spec(path, environ={}).mapping["ram_gb"].type == "float"


# 2. Literal secrets


@pytest.mark.parametrize(
    "literal", ["hunter2", '"hunter2"', "{value: hunter2}", "[hunter2]", "hunter2 # why not"]
)
def test_literal_secret_in_credentials_is_named_once_and_never_echoed(
    tmp_path: Path, literal: str
) -> None:
    path = write(tmp_path, ("password: {env: SN_PASSWORD}", f"password: {literal}"))
    problems = problems_of(path)
    assert problems == [
        f"{path}:{line_of(path, 'password:')}: source.credentials.password: {SECRET_MESSAGE}"
    ]
    assert "hunter2" not in "\n".join(problems)


def test_credentials_that_are_not_a_mapping_are_not_echoed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        (
            '  credentials:\n    url: {env: DB_URL, default: "sqlite:///servers.db"}\n',
            "  credentials: hunter2\n",
        ),
    )
    (problem,) = problems_of(path)
    assert problem.startswith(
        f"{path}:{line_of(path, 'credentials: hunter2')}: target.credentials:"
    )
    assert "hunter2" not in problem


def test_malformed_secret_reference_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, ("password: {env: SN_PASSWORD}", "password: {env: hunter2 now}"))
    (problem,) = problems_of(path)
    assert problem.startswith(
        f"{path}:{line_of(path, 'password:')}: source.credentials.password.env:"
    )
    assert "hunter2" not in problem


def test_secret_like_connection_setting_is_pointed_at_and_not_echoed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        ("    page_size: 1000\n", "    page_size: 1000\n    api_token: [hunter2]\n"),
    )
    (problem,) = problems_of(path)
    assert problem.startswith(
        f"{path}:{line_of(path, 'api_token:')}: source.connection.api_token: looks like a secret"
    )
    assert "hunter2" not in problem


def test_wrong_connection_value_is_one_problem(tmp_path: Path) -> None:
    path = write(tmp_path, ("page_size: 1000", "page_size: [1000]"))
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'page_size')}: source.connection.page_size: expected text, "
        "a number or true/false, got [1000]"
    ]


def test_yaml_syntax_error_does_not_quote_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, ("password: {env: SN_PASSWORD}", "password: hunter2: x"))
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:{line_of(path, 'password:')}: not valid YAML:")
    assert "hunter2" not in problem


def test_validating_a_spec_in_code_does_not_echo_a_secret() -> None:
    import yaml

    data = yaml.safe_load(BASE)
    data["source"]["credentials"]["password"] = "hunter2"
    with pytest.raises(ValidationError) as caught:
        IntegrationSpec.model_validate(data)
    assert "hunter2" not in str(caught.value)


# 3. Fields the source does not read


def test_each_unread_field_is_reported_at_the_entry_that_uses_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        ("field: sys_updated_on", "field: sys_mod_count"),
        ('{expr: "lower(coalesce(fqdn, name))"}', '{expr: "lower(coalesce(dns_name, name))"}'),
        ("{from: ram,", "{from: memory,"),
        ("where: \"operational_status != '6'\"", "where: \"install_status != '7'\""),
    )
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'field: sys_mod_count')}: source.cursor.field: "
        "source.fields lacks sys_mod_count",
        f"{path}:{line_of(path, 'fqdn:')}: mapping.fqdn.expr: source.fields lacks dns_name",
        f"{path}:{line_of(path, 'ram_mb:')}: mapping.ram_mb.from: source.fields lacks memory",
        f"{path}:{line_of(path, 'where:')}: where: source.fields lacks install_status",
    ]


def test_unread_field_of_a_shorthand_or_multi_line_entry(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        ("  name: name\n", "  name: display_name\n"),
        ("  ram_mb: {from: ram, type: integer}\n", "  ram_mb:\n    type: integer\n    from: mem\n"),
    )
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'name: display_name')}: mapping.name.from: "
        "source.fields lacks display_name",
        f"{path}:{line_of(path, 'from: mem')}: mapping.ram_mb.from: source.fields lacks mem",
    ]


def test_target_key_outside_the_mapping_is_reported_at_target_key(tmp_path: Path) -> None:
    path = write(tmp_path, ("  key: ci_id\n", "  key: ci_ids\n"), ("{from: ram,", "{from: memory,"))
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'key: ci_ids')}: target.key: 'ci_ids' must be one of the mapping's "
        "fields (did you mean 'ci_id'?)",
        f"{path}:{line_of(path, 'ram_mb:')}: mapping.ram_mb.from: source.fields lacks memory",
    ]


def test_specs_built_in_code_are_still_checked_across_sections() -> None:
    import yaml

    data = yaml.safe_load(BASE)
    data["mapping"]["ram_mb"]["from"] = "memory"
    data["target"]["key"] = "ci"
    with pytest.raises(ValidationError) as caught:
        IntegrationSpec.model_validate(data)
    message = str(caught.value)
    assert "mapping.ram_mb.from: source.fields lacks memory" in message
    assert "target.key: 'ci' must be one of the mapping's fields" in message


# 4. Deletes


@pytest.mark.parametrize(
    ("key_mapping", "reason"),
    [
        ('{expr: "lower(sys_id)"}', "'ci_id' is computed by expr"),
        ("{from: name}", "'ci_id' is taken from 'name'"),
        ("name", "'ci_id' is taken from 'name'"),
        ('{from: sys_id, map: {"a": b}}', "'ci_id' is translated by map"),
        ("{from: sys_id, default: unknown}", "'ci_id' has a default"),
    ],
)
@pytest.mark.parametrize("policy", ["delete", "soft"])
def test_delete_policy_needs_the_target_key_to_be_the_source_key(
    tmp_path: Path, key_mapping: str, reason: str, policy: str
) -> None:
    column = "\n  column: deleted_at" if policy == "soft" else ""
    path = write(
        tmp_path,
        ("ci_id: {from: sys_id, required: true}", f"ci_id: {key_mapping}"),
        append=f"deletes:\n  policy: {policy}{column}\n",
    )
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:{line_of(path, 'policy:')}: deletes.policy: ")
    assert "deletions are found by source key and applied by target key" in problem
    assert problem.endswith(reason)


@pytest.mark.parametrize(
    "key_mapping",
    ["{from: sys_id, required: true}", "sys_id", "{from: sys_id, type: string}"],
)
def test_delete_policy_accepts_the_source_key_as_it_is(tmp_path: Path, key_mapping: str) -> None:
    path = write(
        tmp_path,
        ("ci_id: {from: sys_id, required: true}", f"ci_id: {key_mapping}"),
        append="deletes: {policy: delete, scan_every: 1d}\n",
    )
    assert load_spec(path, environ={}).deletes.policy == "delete"


def test_ignore_policy_leaves_the_target_key_free(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        ("ci_id: {from: sys_id, required: true}", 'ci_id: {expr: "lower(sys_id)"}'),
        append="deletes: {policy: ignore}\n",
    )
    assert load_spec(path, environ={}).deletes.policy == "ignore"


def test_soft_delete_column_must_not_be_a_mapping_field(tmp_path: Path) -> None:
    path = write(tmp_path, append="deletes:\n  policy: soft\n  column: status\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:{line_of(path, 'column: status')}: deletes.column: ")
    assert "'status' is a mapping field already" in problem
    fine = write(tmp_path, append="deletes:\n  policy: soft\n  column: deleted_at\n")
    assert load_spec(fine, environ={}).target_columns()[-1].name == "deleted_at"


def test_dotted_fields_are_read_whole_by_display_column_or_by_walking_into_them(
    tmp_path: Path,
) -> None:
    fields = "fields: [sys_id, name, assigned_to.name, fields, fqdn, ram, operational_status"
    expr = "upper(assigned_to.name) + fields.status.name + name.display"
    path = write(
        tmp_path,
        ("fields: [sys_id, name, fqdn, ram, operational_status", fields),
        ('fqdn: {expr: "lower(coalesce(fqdn, name))"}', f'fqdn: {{expr: "{expr}"}}'),
    )
    assert load_spec(path, environ={}).mapping["fqdn"].expr is not None
    path.write_text(path.read_text().replace("assigned_to.name, ", ""))
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'fqdn: {expr')}: mapping.fqdn.expr: source.fields lacks "
        "assigned_to.name"
    ]
