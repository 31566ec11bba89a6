"""The operator's commands: status and dead letters from a real ledger, specs, connectors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectors.base.records import RejectedRecord
from syncline.state import Ledger
from syncline_app.cli import describe_connectors, main
from tests.conftest import SPECS_DIR


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("SYNCLINE_LEDGER_URL", url)
    monkeypatch.setenv("SYNCLINE_SPECS_DIR", str(SPECS_DIR))
    return Ledger(url)


def test_dead_letters_lists_reason_status_and_attempts(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = RejectedRecord("ci-7", "ram_mb (from 'ram'): cannot read 'lots' as integer", {})
    ledger.dead_letter("cmdb-nightly", [bad], stage="map", flow_run_id="run-1")
    assert main(["dead-letters", "cmdb-nightly"]) == 0
    out = capsys.readouterr().out
    assert "cmdb-nightly  ci-7  [pending, 1 attempt(s), map]  ram_mb (from 'ram')" in out
    assert out.rstrip().endswith("1 dead letter(s)")


def test_status_shows_cursor_and_pending_letters(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger.commit_cursor("cmdb-nightly", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), flow_run_id="r")
    ledger.dead_letter(
        "cmdb-nightly", [RejectedRecord("k", "why", {})], stage="map", flow_run_id="r"
    )
    assert main(["status"]) == 0
    assert (
        "cmdb-nightly: cursor 2026-01-02 03:04:05+00:00; 1 pending dead letter(s)"
        in capsys.readouterr().out
    )


def test_status_shows_the_last_run_with_its_cause_and_writes_awaiting_audit(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    started = datetime(2026, 1, 2, 3, 0, 0, tzinfo=UTC)
    ledger.run_started("cmdb-nightly", "run-9", started_at=started)
    ledger.record_intent(
        "cmdb-nightly", target_object="sql:cmdb_server", keys=["a", "b"], flow_run_id="run-9"
    )
    ledger.run_failed("cmdb-nightly", "run-9", error="FatalError: servicenow HTTP 401")
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "last run run-9: failed at " in out and "FatalError: servicenow HTTP 401" in out
    assert "2 record(s) written by an interrupted run await their audit" in out


def spec_named(folder: Path, name: str) -> None:
    folder.mkdir()
    text = (SPECS_DIR / "cmdb_nightly.yaml").read_text()
    (folder / "spec.yaml").write_text(text.replace("name: cmdb-nightly", f"name: {name}", 1))


def test_validate_reads_the_specs_from_syncline_specs_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_named(tmp_path / "from-env", "from-env")
    monkeypatch.setenv("SYNCLINE_SPECS_DIR", str(tmp_path / "from-env"))
    assert main(["validate", "--prefect-yaml", str(tmp_path / "none.yaml")]) == 0
    assert "ok  from-env: servicenow:cmdb_ci_server -> sql:cmdb_server" in capsys.readouterr().out


def test_validate_specs_dir_option_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_named(tmp_path / "from-env", "from-env")
    spec_named(tmp_path / "from-option", "from-option")
    monkeypatch.setenv("SYNCLINE_SPECS_DIR", str(tmp_path / "from-env"))
    argv = ["validate", "--specs-dir", str(tmp_path / "from-option")]
    assert main([*argv, "--prefect-yaml", str(tmp_path / "none.yaml")]) == 0
    out = capsys.readouterr().out
    assert "ok  from-option:" in out and "from-env" not in out


class _DemoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="where the system answers")
    page_size: int = Field(default=500, description="records per request")
    token: SecretStr | None = None
    mode: Literal["fast", "safe"] = "safe"
    hosts: list[str] = Field(default_factory=list, alias="allowed_hosts")


class _DemoConnector:
    name = "demo"
    description = "a system for the listing"
    settings = _DemoSettings
    operations = frozenset({"write", "read"})


def test_connector_listing_shows_operations_and_every_setting() -> None:
    lines = describe_connectors([_DemoConnector()])
    assert lines[:3] == [
        "demo: a system for the listing",
        "  operations: read, write",
        "  settings:",
    ]
    rows = [line.split() for line in lines[3:]]
    assert rows == [
        ["base_url", "str", "required", "where", "the", "system", "answers"],
        ["page_size", "int", "=", "500", "records", "per", "request"],
        ["token", "SecretStr", "|", "None", "=", "None"],
        ["mode", "'fast'", "|", "'safe'", "=", "'safe'"],
        ["allowed_hosts", "list[str]", "=", "[]"],
    ]


def test_connectors_command_lists_every_registered_connector(
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry = pytest.importorskip(
        "connectors.base.registry", reason="the connector registry is not in this tree yet"
    )
    connectors = registry.all_connectors()
    assert connectors, "no connector registered"
    assert main(["connectors"]) == 0
    out = capsys.readouterr().out
    for connector in connectors:
        assert f"{connector.name}: {connector.description}" in out
        assert f"  operations: {', '.join(sorted(connector.operations))}" in out
        for name, field in connector.settings.model_fields.items():
            assert f"    {field.alias or name} " in out
