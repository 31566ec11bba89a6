"""The operator's commands: status and dead letters, read from a real ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.base.records import RejectedRecord
from syncline.cli import main
from syncline.state import Ledger
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
