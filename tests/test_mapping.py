"""Field and value mapping on whole batches; records that do not map are rejected with a reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from connectors.base.records import ColumnType
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from syncline.mapping import RecordMapper
from syncline.specs import IntegrationSpec, load_spec
from tests.conftest import SPECS_DIR


def make_spec(mapping: dict[str, Any], **extra: Any) -> IntegrationSpec:
    return IntegrationSpec.model_validate(
        {
            "name": "test",
            "source": {"connector": "servicenow", "object": "incident", "key": "sys_id"},
            "target": {"connector": "sql", "object": "t", "key": "id"},
            "mapping": {"id": {"from": "sys_id", "required": True}, **mapping},
            **extra,
        }
    )


def source(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame.from_records(list(rows))


def test_rename_cast_default_and_value_map() -> None:
    spec = make_spec(
        {
            "title": "short_description",
            "priority": {"from": "priority", "map": {"1": "Critical", "2": "High"}},
            "ram_mb": {"from": "ram", "type": "integer"},
            "active": {"from": "active", "type": "boolean"},
            "opened": {"from": "opened_at", "type": "datetime"},
            "team": {"from": "group", "default": "Service Desk"},
        }
    )
    batch = source(
        {"sys_id": "a", "short_description": "Disk full", "priority": "1", "ram": "2048",
         "active": "true", "opened_at": "2024-05-01 10:00:00", "group": None},
        {"sys_id": "b", "short_description": "Slow", "priority": "2", "ram": "",
         "active": "false", "opened_at": "", "group": "Network"},
    )  # fmt: skip
    mapped = RecordMapper(spec).apply(batch)
    assert mapped.rejected == []
    frame = mapped.frame
    assert list(frame.index) == ["a", "b"]
    assert frame["title"].tolist() == ["Disk full", "Slow"]
    assert frame["priority"].tolist() == ["Critical", "High"]
    assert frame["ram_mb"].tolist()[0] == 2048 and pd.isna(frame["ram_mb"].tolist()[1])
    assert frame["active"].tolist() == [True, False]
    assert frame["opened"].iloc[0] == pd.Timestamp("2024-05-01 10:00:00", tz="UTC")
    assert pd.isna(frame["opened"].iloc[1])
    assert frame["team"].tolist() == ["Service Desk", "Network"]


def test_unmappable_records_are_rejected_with_reasons_and_the_rest_pass() -> None:
    spec = make_spec(
        {
            "ram_mb": {"from": "ram", "type": "integer"},
            "priority": {"from": "priority", "map": {"1": "Critical"}, "unmapped": "reject"},
            "name": {"from": "name", "required": True},
        }
    )
    batch = source(
        {"sys_id": "good", "ram": "16", "priority": "1", "name": "a"},
        {"sys_id": "cast", "ram": "lots", "priority": "1", "name": "b"},
        {"sys_id": "map", "ram": "1", "priority": "9", "name": "c"},
        {"sys_id": "req", "ram": "1", "priority": "1", "name": ""},
    )
    mapped = RecordMapper(spec).apply(batch)
    assert list(mapped.frame.index) == ["good"]
    reasons = {record.key: record.reason for record in mapped.rejected}
    assert reasons == {
        "cast": "ram_mb (from 'ram'): cannot read 'lots' as integer",
        "map": "priority: value '9' is not in the value map",
        "req": "name: required but empty",
    }
    payload = next(r.payload for r in mapped.rejected if r.key == "cast")
    assert payload == {"sys_id": "cast", "ram": "lots", "priority": "1", "name": "b"}


def test_unmapped_values_can_be_kept_or_nulled() -> None:
    spec = make_spec(
        {
            "kept": {"from": "p", "map": {"1": "One"}, "unmapped": "keep"},
            "nulled": {"from": "p", "map": {"1": "One"}, "unmapped": "null"},
        }
    )
    mapped = RecordMapper(spec).apply(source({"sys_id": "a", "p": "1"}, {"sys_id": "b", "p": "7"}))
    assert mapped.frame["kept"].tolist() == ["One", "7"]
    assert mapped.frame["nulled"].iloc[0] == "One" and pd.isna(mapped.frame["nulled"].iloc[1])


def test_expressions_and_where_filter() -> None:
    spec = make_spec(
        {"fqdn": {"expr": "lower(name) + '.' + domain"}},
        where="state != '7'",
    )
    batch = source(
        {"sys_id": "a", "name": "WEB01", "domain": "corp", "state": "1"},
        {"sys_id": "b", "name": "DB01", "domain": "corp", "state": "7"},
    )
    mapped = RecordMapper(spec).apply(batch)
    assert mapped.filtered == 1
    assert mapped.frame["fqdn"].tolist() == ["web01.corp"]


def test_duplicate_keys_in_a_batch_keep_the_latest() -> None:
    spec = make_spec({"v": "v"})
    mapped = RecordMapper(spec).apply(
        source({"sys_id": "a", "v": "old"}, {"sys_id": "b", "v": "x"}, {"sys_id": "a", "v": "new"})
    )
    assert sorted(zip(mapped.frame["id"], mapped.frame["v"], strict=True)) == [
        ("a", "new"),
        ("b", "x"),
    ]


def test_target_columns_follow_the_mapping() -> None:
    spec = make_spec({"n": {"from": "n", "type": "float"}})
    columns = {column.name: column for column in spec.target_columns()}
    assert columns["id"].nullable is False
    assert columns["n"].type is ColumnType.FLOAT


def test_cmdb_nightly_operating_system_keeps_the_values_it_showed(tmp_path: Path) -> None:
    """The shipped line was ``strip(os + ' ' + os_version)``; under the null rule that would be
    null wherever either part is null, so the spec defaults each part to "". On the sandbox's
    CIs both lines, and the old evaluation (os null read as "", os_version null giving null),
    show the same values: ServiceNow sends "" for an empty field, and "" is not null."""
    shipped = (SPECS_DIR / "cmdb_nightly.yaml").read_text()
    new_line = (
        "operating_system: {expr: \"strip(coalesce(os, '') + ' ' + coalesce(os_version, ''))\"}"
    )
    old_line = "operating_system: {expr: \"strip(os + ' ' + os_version)\"}"
    assert new_line in shipped
    (tmp_path / "old.yaml").write_text(shipped.replace(new_line, old_line))
    environ = {"SYNCLINE_SERVICENOW_USER": "admin", "SYNCLINE_SERVICENOW_PASSWORD": "sandbox"}
    new_spec = load_spec(SPECS_DIR / "cmdb_nightly.yaml", environ=environ)
    old_spec = load_spec(tmp_path / "old.yaml", environ=environ)
    assert str(old_spec.mapping["operating_system"].expr) == "strip(os + ' ' + os_version)"

    sandbox = ServiceNowSandbox(ServiceNowSandboxConfig(cmdb_ci_server=2000))
    records = sandbox.records("cmdb_ci_server")
    batch = pd.DataFrame.from_records(records)
    assert len(batch) >= 2000
    assert batch["os"].notna().all() and batch["os_version"].notna().all()
    assert (batch["os"] == "").any()  # generic servers: no OS recorded, sent as ""

    new = RecordMapper(new_spec).apply(batch)
    old = RecordMapper(old_spec).apply(batch)
    assert new.rejected == [] and old.rejected == []
    today = [
        None if version is None else ((os or "") + " " + version).strip()
        for os, version in zip(batch["os"], batch["os_version"], strict=True)
    ]
    assert new.frame["operating_system"].tolist() == old.frame["operating_system"].tolist()
    assert new.frame["operating_system"].tolist() == today
    assert "" in today and "Windows 2019 Datacenter 10.0.17763" in today

    # Where the two lines part: parts that are null, which ServiceNow does not send.
    partial = source({"os": "Linux", "os_version": None}, {"os": None, "os_version": "9"})
    new_expr, old_expr = (spec.mapping["operating_system"].expr for spec in (new_spec, old_spec))
    assert new_expr is not None and old_expr is not None
    assert new_expr.evaluate(partial).tolist() == ["Linux", "9"]
    assert old_expr.evaluate(partial).tolist() == [None, None]
