"""The gateway's configuration: secrets read once, every problem reported before it starts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from syncline_app.cli import build_parser
from syncline_app.gateway.config import GatewayConfigError, GatewaySettings, load_gateway_config
from syncline_app.gateway.serve import describe
from tests.gateway.conftest import NEW, OLD, gateway_environ


def test_every_source_is_served_with_all_its_secrets() -> None:
    config = load_gateway_config(gateway_environ())
    assert sorted(config.sources) == sorted(OLD)
    jira = config.sources["jira"]
    assert [s.get_secret_value() for s in jira.secrets] == [OLD["jira"], NEW["jira"]]
    assert jira.secret_origin == "SYNCLINE_GATEWAY_JIRA_SECRET"
    # Never shown: not in the model's repr, not in the banner.
    assert OLD["jira"] not in repr(config)
    assert not any(OLD["jira"] in line or NEW["jira"] in line for line in describe(config))


def test_a_source_without_a_secret_stops_the_start_with_what_to_set() -> None:
    environ = gateway_environ()
    del environ["SYNCLINE_GATEWAY_PAGERDUTY_SECRET"]
    del environ["SYNCLINE_GATEWAY_DATADOG_SECRET"]
    with pytest.raises(GatewayConfigError) as raised:
        load_gateway_config(environ)
    message = str(raised.value)
    assert "datadog: no secret configured: set SYNCLINE_GATEWAY_DATADOG_SECRET" in message
    assert "pagerduty: no secret configured" in message
    assert "SYNCLINE_GATEWAY_PAGERDUTY_SECRET_BLOCK" in message
    assert "SYNCLINE_GATEWAY_DISABLED=pagerduty" in message


def test_a_disabled_source_needs_no_secret() -> None:
    environ = gateway_environ()
    del environ["SYNCLINE_GATEWAY_SERVICENOW_SECRET"]
    config = load_gateway_config(environ, settings=GatewaySettings(disabled="servicenow, generic"))
    assert "servicenow" not in config.sources and "generic" not in config.sources
    assert config.disabled == {"servicenow", "generic"}


def test_an_unknown_disabled_source_is_named() -> None:
    with pytest.raises(GatewayConfigError, match="unknown source 'nagios'"):
        load_gateway_config(gateway_environ(), settings=GatewaySettings(disabled="nagios"))


def test_a_short_secret_is_refused_by_position_never_by_value() -> None:
    environ = gateway_environ(SYNCLINE_GATEWAY_GENERIC_SECRET=f"{NEW['generic']},short")
    with pytest.raises(GatewayConfigError) as raised:
        load_gateway_config(environ)
    assert "generic: secret number 2 in SYNCLINE_GATEWAY_GENERIC_SECRET is shorter" in str(
        raised.value
    )
    assert "short," not in str(raised.value) and NEW["generic"] not in str(raised.value)


def test_a_secret_block_is_read_once_at_start() -> None:
    environ = gateway_environ()
    del environ["SYNCLINE_GATEWAY_JIRA_SECRET"]
    environ["SYNCLINE_GATEWAY_JIRA_SECRET_BLOCK"] = "jira-webhook-secret"
    reads: list[str] = []

    def read(name: str) -> str:
        reads.append(name)
        return f"{OLD['jira']}, {NEW['jira']}"

    config = load_gateway_config(environ, read_secret_block=read)
    assert reads == ["jira-webhook-secret"]
    assert len(config.sources["jira"].secrets) == 2
    assert "Prefect Secret block 'jira-webhook-secret'" in config.sources["jira"].secret_origin


def test_an_unreadable_secret_block_stops_the_start() -> None:
    environ = gateway_environ()
    del environ["SYNCLINE_GATEWAY_JIRA_SECRET"]
    environ["SYNCLINE_GATEWAY_JIRA_SECRET_BLOCK"] = "jira-webhook-secret"

    def unreachable(name: str) -> str:
        raise ConnectionError("All connection attempts failed")

    with pytest.raises(GatewayConfigError, match="jira: cannot read Prefect Secret block"):
        load_gateway_config(environ, read_secret_block=unreachable)


def test_a_body_limit_per_source_must_be_a_number() -> None:
    environ = gateway_environ(SYNCLINE_GATEWAY_JIRA_MAX_BODY_BYTES="1MB")
    with pytest.raises(GatewayConfigError, match="SYNCLINE_GATEWAY_JIRA_MAX_BODY_BYTES"):
        load_gateway_config(environ)


def test_windows_read_as_durations_and_ids_are_held_at_least_48h() -> None:
    settings = GatewaySettings(body_dedupe_window="10m", retention="3d")  # type: ignore[arg-type]
    assert (settings.body_dedupe_window, settings.retention) == (
        timedelta(minutes=10),
        timedelta(days=3),
    )
    with pytest.raises(ValidationError, match="at least 48h"):
        GatewaySettings(retention="24h")  # type: ignore[arg-type]


def test_the_cli_serves_on_loopback_by_default() -> None:
    args = build_parser().parse_args(["gateway"])
    assert (args.host, args.port, args.ledger) == ("127.0.0.1", 8765, None)
