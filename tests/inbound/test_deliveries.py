"""parse_delivery as the gateway uses it: every source, unknown sources, and the promise that
any decoded JSON either parses or is refused with one short line that quotes no payload."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncline.inbound import SOURCES, InboundError, InboundEvent, parse_delivery
from syncline.inbound.models import resource_key
from tests.inbound.payloads import (
    datadog_payload,
    dynatrace_payload,
    generic_payload,
    jira_payload,
    pagerduty_payload,
    servicenow_payload,
)

VALID: dict[str, Callable[[], dict[str, Any]]] = {
    "datadog": datadog_payload,
    "dynatrace": dynatrace_payload,
    "pagerduty": pagerduty_payload,
    "jira": jira_payload,
    "servicenow": servicenow_payload,
    "generic": generic_payload,
}
SECRET = "xoxb-SECRET-3f9a7c1e5b2d4f6a8c0e"


def test_the_sources_are_the_gateways_endpoints() -> None:
    assert SOURCES == ("datadog", "dynatrace", "pagerduty", "jira", "servicenow", "generic")
    assert set(VALID) == set(SOURCES)


@pytest.mark.parametrize("source", SOURCES)
def test_every_source_gives_a_complete_event(source: str) -> None:
    event = parse_delivery(source, VALID[source]())
    assert event.source == source
    assert (event.alert is None) != (event.record is None)
    prefix = "syncline.alert." if event.alert else "syncline.record."
    assert event.event.startswith(prefix)
    assert event.resource_id.startswith(f"{prefix}{source}.")
    assert event.occurred_at is not None and event.occurred_at.utcoffset() is not None
    # what the gateway hands to Prefect is plain JSON
    assert json.loads(json.dumps(event.payload()))["subject_key"] == event.subject_key
    assert event.resource()["prefect.resource.id"] == event.resource_id
    # and the event survives the outbox round trip
    assert InboundEvent.model_validate_json(event.model_dump_json()) == event


def test_an_unknown_source_is_refused() -> None:
    with pytest.raises(
        InboundError, match=r"^'opsgenie': unknown source \(expected one of datadog"
    ):
        parse_delivery("opsgenie", generic_payload())


def test_an_event_carries_exactly_one_subject() -> None:
    event = parse_delivery("generic", generic_payload())
    record = parse_delivery("jira", jira_payload()).record
    with pytest.raises(ValueError, match="exactly one of alert and record"):
        InboundEvent.model_validate({**event.model_dump(), "record": record})


def test_resource_keys_are_readable_and_bounded() -> None:
    assert resource_key("P-12345") == "P-12345"
    assert resource_key("1:env:prod,host:web 1") == "1:env:prod%2Chost:web%201"
    long_key = "x" * 500
    assert resource_key(long_key).startswith("sha256-") and len(resource_key(long_key)) == 39


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ("datadog", "alert_title"),
        ("dynatrace", "ProblemTitle"),
        ("generic", "title"),
        ("servicenow", "number"),
    ],
)
def test_refusals_do_not_quote_values(source: str, field: str) -> None:
    payload = {**VALID[source](), field: {"token": SECRET}}
    with pytest.raises(InboundError) as refused:
        parse_delivery(source, payload)
    assert SECRET not in str(refused.value)
    assert field in str(refused.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[str, object]:
    """A valid delivery with one value (at any depth) replaced or removed, or random JSON."""
    source = draw(st.sampled_from(SOURCES))
    if draw(st.booleans()):
        return source, draw(json_values)
    payload: Any = VALID[source]()
    node = payload
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, dict | list) and child and draw(st.booleans()):
            node = child
            continue
        if isinstance(node, dict) and draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(json_values)
        break
    return source, payload


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delivery=deliveries())
def test_any_json_parses_or_is_refused_in_one_line(delivery: tuple[str, object]) -> None:
    source, payload = delivery
    try:
        event = parse_delivery(source, payload)
    except InboundError as refused:
        message = str(refused)
        assert message.startswith(f"{source}: ")
        assert "\n" not in message and len(message) <= 300
    else:
        assert (event.alert is None) != (event.record is None)
