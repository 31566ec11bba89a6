"""ServiceNow encoded queries: parsing and evaluation, without HTTP."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest

from sandboxes.servicenow.encoded_query import (
    EncodedQueryError,
    FieldAccess,
    FieldKind,
    Operator,
    normalise_timestamp,
    parse,
    resolve_value,
)
from sandboxes.servicenow.predicates import compile_query, order_records

NOW = datetime(2025, 3, 15, 12, 30, 0, tzinfo=UTC)

KINDS = {
    "name": FieldKind.STRING,
    "ram": FieldKind.INTEGER,
    "disk_space": FieldKind.DECIMAL,
    "active": FieldKind.BOOLEAN,
    "sys_updated_on": FieldKind.DATETIME,
    "assigned_to": FieldKind.REFERENCE,
    "os": FieldKind.STRING,
}

COLUMNS = ("sys_id", "name", "ram", "disk_space", "active", "sys_updated_on", "assigned_to", "os")
RECORDS: list[dict[str, str]] = [
    dict(zip(COLUMNS, row, strict=True))
    for row in (
        ("a1", "lnx-web-00001", "4096", "100", "true", "2024-12-31 23:59:59", "", "Linux Red Hat"),
        (
            "a2",
            "lnx-db-00002",
            "16384",
            "250.5",
            "true",
            "2025-01-01 00:00:00",
            "u1",
            "Linux Ubuntu",
        ),
        (
            "a3",
            "WIN-APP-00003",
            "65536",
            "1000",
            "false",
            "2025-01-01 00:00:00",
            "u2",
            "Windows 2022",
        ),
        ("a4", "aix-batch-00004", "", "", "false", "2025-03-14 12:30:00", "u1", ""),
    )
]


def resolve(path: str) -> FieldAccess | None:
    kind = KINDS.get(path)
    if kind is None:
        return None
    return FieldAccess(read=lambda record: record.get(path, ""), kind=kind)


def matching(query: str, *, strict: bool = False) -> list[str]:
    compiled = compile_query(parse(query), resolve, now=NOW, invalid_query_returns_no_rows=strict)
    if compiled.matches_nothing:
        return []
    selected = [r for r in RECORDS if compiled.matches is None or compiled.matches(r)]
    return [r["sys_id"] for r in order_records(selected, compiled.orderings)]


def test_parse_reads_and_or_new_query_and_ordering() -> None:
    query = parse("active=true^ram>=8192^ORos=Linux Red Hat^NQname=x^ORDERBYname^ORDERBYDESCram^EQ")
    assert len(query.groups) == 2
    first, second = query.groups
    assert [[c.text for c in clause] for clause in first] == [
        ["active=true"],
        ["ram>=8192", "os=Linux Red Hat"],
    ]
    assert [[c.text for c in clause] for clause in second] == [["name=x"]]
    assert [(o.field, o.descending) for o in query.orderings] == [("name", False), ("ram", True)]


@pytest.mark.parametrize(
    ("term", "field", "operator", "value"),
    [
        ("ram>=16384", "ram", Operator.GREATER_OR_EQUAL, "16384"),
        ("ram>4", "ram", Operator.GREATER, "4"),
        ("name!=x", "name", Operator.NOT_EQUALS, "x"),
        ("nameNOT LIKEweb", "name", Operator.NOT_LIKE, "web"),
        ("nameNOT INa,b", "name", Operator.NOT_IN, "a,b"),
        ("nameINa,b", "name", Operator.IN, "a,b"),
        ("nameSTARTSWITHlnx", "name", Operator.STARTS_WITH, "lnx"),
        ("osISEMPTY", "os", Operator.IS_EMPTY, ""),
        ("assigned_to.name=Abel Tuter", "assigned_to.name", Operator.EQUALS, "Abel Tuter"),
        ("sys_updated_onBETWEENa@b", "sys_updated_on", Operator.BETWEEN, "a@b"),
    ],
)
def test_parse_condition_splits_field_operator_value(
    term: str, field: str, operator: Operator, value: str
) -> None:
    (condition,) = parse(term).conditions
    assert (condition.field, condition.operator, condition.value) == (field, operator, value)


def test_unparseable_term_has_no_operator() -> None:
    (condition,) = parse("nameFOO").conditions
    assert condition.operator is None


def test_escaped_caret_stays_in_the_value() -> None:
    (condition,) = parse("name=a^^b").conditions
    assert condition.value == "a^b"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["a1", "a2", "a3", "a4"]),
        ("active=true", ["a1", "a2"]),
        ("active=1", ["a1", "a2"]),
        ("name=win-app-00003", ["a3"]),  # case-insensitive like the instance database
        ("name!=lnx-web-00001", ["a2", "a3", "a4"]),
        ("nameINlnx-db-00002,aix-batch-00004", ["a2", "a4"]),
        ("nameNOT INlnx-db-00002,aix-batch-00004", ["a1", "a3"]),
        ("nameLIKEapp", ["a3"]),
        ("nameNOT LIKE-0000", []),
        ("nameSTARTSWITHlnx", ["a1", "a2"]),
        ("nameENDSWITH004", ["a4"]),
        ("osISEMPTY", ["a4"]),
        ("osISNOTEMPTY", ["a1", "a2", "a3"]),
        ("assigned_to=u1", ["a2", "a4"]),
        # Numerically, not as text: "4096" > "16384" as strings.
        ("ram>=16384", ["a2", "a3"]),
        ("ram<16384", ["a1"]),
        ("ram<=16384", ["a1", "a2"]),
        ("ram>4096", ["a2", "a3"]),
        ("ram=16384.0", ["a2"]),
        ("disk_space>250", ["a2", "a3"]),
        ("ramBETWEEN4096@16384", ["a1", "a2"]),
        ("active=true^ram>4096", ["a2"]),
        ("active=true^ram>4096^ORname=lnx-web-00001", ["a1", "a2"]),
        ("ram=4096^NQram=65536", ["a1", "a3"]),
    ],
)
def test_operators(query: str, expected: list[str]) -> None:
    assert matching(query) == expected


def test_date_times_compare_as_timestamps() -> None:
    assert matching("sys_updated_on>=2025-01-01 00:00:00") == ["a2", "a3", "a4"]
    assert matching("sys_updated_on>2025-01-01 00:00:00") == ["a4"]
    assert matching("sys_updated_on<2025-01-01") == ["a1"]
    generated = "javascript:gs.dateGenerate('2025-01-01','00:00:00')"
    assert matching(f"sys_updated_on>={generated}") == ["a2", "a3", "a4"]
    assert matching(f"sys_updated_on>{generated}") == ["a4"]
    between = (
        "sys_updated_onBETWEENjavascript:gs.dateGenerate('2024-12-31','end')"
        "@javascript:gs.dateGenerate('2025-01-01','23:59:59')"
    )
    assert matching(between) == ["a1", "a2", "a3"]


def test_relative_dates_use_the_given_clock() -> None:
    assert resolve_value("javascript:gs.daysAgo(1)", NOW) == "2025-03-14 12:30:00"
    assert resolve_value("javascript:gs.beginningOfToday()", NOW) == "2025-03-15 00:00:00"
    assert matching("sys_updated_on>=javascript:gs.daysAgoStart(1)") == ["a4"]
    with pytest.raises(EncodedQueryError):
        resolve_value("javascript:gs.getUserID()", NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02", "2024-01-02 00:00:00"),
        ("2024-01-02 03:04", "2024-01-02 03:04:00"),
        ("2024-01-02T03:04:05", "2024-01-02 03:04:05"),
        ("2024-01-02 03:04:05", "2024-01-02 03:04:05"),
    ],
)
def test_normalise_timestamp(text: str, expected: str) -> None:
    assert normalise_timestamp(text) == expected


def test_unknown_field_is_ignored_by_default_and_empties_the_result_in_strict_mode() -> None:
    assert matching("no_such_field=1^active=true") == ["a1", "a2"]
    assert matching("no_such_field=1^active=true", strict=True) == []
    # An OR clause just loses the unknown alternative.
    assert matching("active=false^ORno_such_field=1") == ["a3", "a4"]
    assert matching("garbage") == ["a1", "a2", "a3", "a4"]
    assert matching("garbage", strict=True) == []


def test_malformed_value_counts_as_an_invalid_condition() -> None:
    assert matching("sys_updated_on>not-a-date^ram=4096") == ["a1"]
    assert matching("sys_updated_on>not-a-date^ram=4096", strict=True) == []


def test_order_by_is_stable_and_multi_field() -> None:
    assert matching("ORDERBYsys_updated_on") == ["a1", "a2", "a3", "a4"]
    assert matching("ORDERBYDESCsys_updated_on") == ["a4", "a2", "a3", "a1"]
    assert matching("ORDERBYsys_updated_on^ORDERBYDESCram") == ["a1", "a3", "a2", "a4"]
    # Empty values sort first ascending, numbers by value.
    assert matching("ORDERBYram") == ["a4", "a1", "a2", "a3"]
    assert matching("ORDERBYname") == ["a4", "a2", "a1", "a3"]
    # An unknown ORDERBY field is ignored.
    assert matching("ORDERBYnope") == ["a1", "a2", "a3", "a4"]


def test_clock_dependence_is_reported() -> None:
    assert parse("sys_updated_on>=javascript:gs.daysAgo(1)").depends_on_clock
    assert not parse(
        "sys_updated_on>=javascript:gs.dateGenerate('2025-01-01','00:00:00')"
    ).depends_on_clock


def _ids(records: Sequence[Mapping[str, str]]) -> list[str]:
    return [record["sys_id"] for record in records]


def test_order_records_keeps_the_input_order_for_ties() -> None:
    tied = [dict(record, sys_updated_on="2025-01-01 00:00:00") for record in RECORDS]
    access = resolve("sys_updated_on")
    assert access is not None
    assert _ids(order_records(tied, [(access, False)])) == _ids(RECORDS)
    assert _ids(order_records(tied, [(access, True)])) == _ids(RECORDS)
