"""Jira issues as records, against the Jira sandbox in process, every request checked against
Atlassian's OpenAPI description: the record shape, minute-precise windows in a user zone
west of UTC, reads that neither skip nor repeat under churn, fetch by key and by correlation,
upserts that never double a create (also when its answer is lost) and rejections that name
the field."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pandas as pd
import pytest

from connectors.base.records import ReadWindow, WriteResult
from connectors.jira import JiraIssueSource, text_to_adf
from sandboxes.core.faults import FaultConfig
from tests.connectors.test_jira_support import Site, load_contract

pytestmark = pytest.mark.filterwarnings("ignore:Unsupported scheme type:UserWarning")
T = TypeVar("T")
DAY = datetime(2026, 3, 10, 9, 0, 10, tzinfo=UTC)
FIELDS = {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}}


@pytest.fixture(scope="module", autouse=True)
def _contract_loaded_once() -> None:
    load_contract()


def on_site(work: Callable[[Site], Awaitable[T]], **config: Any) -> T:
    async def run() -> T:
        site = Site(**config)
        try:
            return await work(site)
        finally:
            await site.close()

    return asyncio.run(run())


async def create(site: Site, summary: str, at: datetime, **fields: Any) -> str:
    site.at(at)
    created = await site.client.create_issue({**FIELDS, "summary": summary, **fields})
    return created.key


async def read_all(source: JiraIssueSource, window: ReadWindow) -> pd.DataFrame:
    frames = [frame async for frame in source.read(window)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def test_an_issue_reads_as_a_flat_record() -> None:
    async def work(site: Site) -> None:
        site.at(DAY)
        await site.client.create_issue(
            {
                **FIELDS,
                "summary": "Disk full",
                "description": text_to_adf("Seen by monitoring\nweb-01"),
                "priority": {"name": "High"},
                "labels": ["ops", "syncline-INC1"],
                "customfield_10050": "eu-west",
            },
            {"syncline": {"correlationId": "INC1"}},
        )
        source = site.source(fields=["summary", "description", "customfield_10050"])
        await source.prepare(["summary", "status", "correlation_id", "customfield_10050"])
        row = (await read_all(source, ReadWindow("updated"))).iloc[0].to_dict()
        assert row["key"] == "OPS-1" and row["summary"] == "Disk full"
        assert row["description"] == "Seen by monitoring\nweb-01"
        assert row["customfield_10050"] == "eu-west"
        assert row["updated"] == DAY
        every = (await read_all(site.source(), ReadWindow("updated"))).iloc[0].to_dict()
        assert every["status"] == "To Do" and every["priority"] == "High"
        assert every["issuetype"] == "Task" and every["project"] == "OPS"
        assert every["labels"] == ["ops"]  # the correlation label is the connector's own
        assert every["correlation_id"] == "INC1"
        assert every["created"] == DAY and every["updated"].tzinfo is not None
        with pytest.raises(Exception, match="no field sumary"):
            await source.prepare(["sumary"])
        searched = site.transport.bodies("/search/jql")[0]
        assert searched["properties"] == ["syncline"] and "summary" in searched["fields"]

    on_site(work)


def test_a_window_in_a_user_zone_west_of_utc_misses_nothing_in_the_cursors_minute() -> None:
    """JQL dates are minutes in the user's zone (Los Angeles, UTC-7 in March 2026): an issue
    updated later in the same minute as the cursor is read by the next window."""

    async def work(site: Site) -> None:
        source = site.source()
        await create(site, "earlier", datetime(2026, 3, 10, 9, 4, 20, tzinfo=UTC))
        await create(site, "at the cursor", datetime(2026, 3, 10, 9, 5, 10, tzinfo=UTC))
        first = await read_all(
            source,
            ReadWindow("updated", until=datetime(2026, 3, 10, 9, 5, 12, tzinfo=UTC)),
        )
        cursor = source.max_cursor(first, "updated")
        assert cursor == datetime(2026, 3, 10, 9, 5, 10, tzinfo=UTC)
        await create(site, "same minute", datetime(2026, 3, 10, 9, 5, 30, tzinfo=UTC))
        second = await read_all(source, ReadWindow("updated", since=cursor))
        assert list(second["summary"]) == ["at the cursor", "same minute"]
        jql = site.transport.bodies("/search/jql")[-1]["jql"]  # the second read's only query
        # 09:05 UTC is 02:05 in Los Angeles; one minute earlier, to the minute.
        assert 'updated >= "2026-03-10 02:04"' in jql
        assert jql.endswith("ORDER BY updated ASC, id ASC")
        until_jql = site.transport.bodies("/search/jql")[0]["jql"]
        assert 'updated <= "2026-03-10 02:07"' in until_jql

    on_site(work, time_zone="America/Los_Angeles")


def test_a_read_in_small_pages_delivers_each_issue_once_while_issues_change() -> None:
    """An issue edited between two pages moves to the end of the results; an offset token
    would then skip the issue that shifted into its place."""

    async def work(site: Site) -> None:
        keys = [await create(site, f"issue {n}", DAY + timedelta(minutes=n)) for n in range(7)]
        searches = 0

        def churn(request: httpx.Request, response: httpx.Response | None) -> None:
            nonlocal searches
            if not request.url.path.endswith("/search/jql"):
                return
            searches += 1
            if searches == 1:
                site.at(DAY + timedelta(minutes=20))
                with site.sandbox.store.lock:
                    store = site.sandbox.store
                    store.edit(store.find(keys[0]), {"fields": {"summary": "edited"}}, "me")

        site.transport.after = churn
        frame = await read_all(site.source(), ReadWindow("updated", batch_size=2))
        assert sorted(frame["key"]) == sorted(keys)
        assert len(frame) == len(keys)

    on_site(work)


def test_fetch_by_key_and_by_correlation_and_scope_under_search_lag() -> None:
    """Search is eventually consistent (lag switched on): fetch reads each issue by GET and
    asks search about the filter with reconcileIssues, so just-made issues are found."""

    async def work(site: Site) -> None:
        target = site.target()
        frame = pd.DataFrame(
            {
                "correlation_id": ["A-1", "A-2"],
                "summary": ["one", "two"],
                "priority": ["High", "Low"],
            }
        )
        result = await target.upsert(frame, "correlation_id")
        assert result.assigned_keys == {"A-1": "OPS-1", "A-2": "OPS-2"}
        # Search does not show them yet; the target remembers what it made.
        again = await target.upsert(frame, "correlation_id")
        assert not again.created and site.sandbox.keys() == ["OPS-1", "OPS-2"]
        source = site.source(jql_filter="priority = High")
        found = await source.fetch(["OPS-1", "OPS-2", "OPS-9"])
        assert list(found["key"]) == ["OPS-1"]  # OPS-2 out of scope, OPS-9 absent
        assert await source.in_scope(["OPS-1", "OPS-2", "OPS-9"]) == {"OPS-1"}
        reconciled = site.transport.bodies("/search/jql")[-1]
        assert reconciled["reconcileIssues"] == [10001, 10002]
        # A read by search does not see them yet: the cursor's overlap reads them later.
        assert (await read_all(site.source(), ReadWindow("updated"))).empty
        site.sandbox.config.search_lag_ms = 0
        by_link = await site.source().fetch(["A-2", "A-3"], by="correlation_id")
        assert list(by_link["key"]) == ["OPS-2"] and list(by_link["correlation_id"]) == ["A-2"]

    on_site(work, search_lag_ms=600_000)


def test_scope_of_keys_survives_a_deleted_issue_which_jira_refuses_in_key_in() -> None:
    async def work(site: Site) -> None:
        keys = [await create(site, f"issue {n}", DAY, priority={"name": "High"}) for n in range(3)]
        with site.sandbox.store.lock:
            store = site.sandbox.store
            store.delete(store.find(keys[1]), "me")
        source = site.source(jql_filter="priority = High")
        assert await source.in_scope([*keys, "OPS-404"]) == {keys[0], keys[2]}
        asked = [body["jql"] for body in site.transport.bodies("/search/jql")]
        assert 'key in ("OPS-1", "OPS-2", "OPS-3", "OPS-404")' in asked[0]
        assert 'key in ("OPS-1", "OPS-3")' in asked[-1]  # each refused key left out in turn
        # Only the keys search did not show are read one by one (search may lag).
        gets = sorted(r.url.path for r in site.transport.sent if r.method == "GET")
        assert gets == ["/rest/api/3/issue/OPS-2", "/rest/api/3/issue/OPS-404"]

    on_site(work)


def test_upsert_by_correlation_creates_once_then_writes_only_changes() -> None:
    async def work(site: Site) -> None:
        target = site.target()
        frame = pd.DataFrame(
            {
                "correlation_id": ["INC0010001", "INC 2/x"],
                "summary": ["Disk full", "Mail down"],
                "description": ["Seen by monitoring\nweb-01", None],
                "priority": ["High", "Medium"],
                "labels": [["ops"], []],
                "status": ["In Progress", "To Do"],
            }
        )
        await target.prepare([], "correlation_id")
        first = await target.upsert(frame, "correlation_id")
        assert sorted(first.created) == ["INC 2/x", "INC0010001"]
        assert first.assigned_keys == {"INC0010001": "OPS-1", "INC 2/x": "OPS-2"}
        one = site.sandbox.issue(first.assigned_keys["INC0010001"])
        assert one["properties"] == {"syncline": {"correlationId": "INC0010001"}}
        assert sorted(one["fields"]["labels"]) == ["ops", "syncline-INC0010001"]
        assert one["fields"]["status"]["name"] == "In Progress"
        assert one["fields"]["description"] == text_to_adf("Seen by monitoring\nweb-01")
        two = site.sandbox.issue("OPS-2")
        assert two["fields"]["labels"] == ["syncline-INC_2_x"]

        writes_before = len(site.transport.sent)
        again = await target.upsert(frame, "correlation_id")
        assert again.unchanged == 2 and not again.created and not again.updated
        new_requests = site.transport.sent[writes_before:]
        assert [r.url.path for r in new_requests] == ["/rest/api/3/search/jql"]

        changed = frame.copy()
        changed.loc[0, "priority"] = "Highest"
        changed.loc[0, "status"] = "Done"
        changed.at[1, "labels"] = ["mail"]
        third = await target.upsert(changed, "correlation_id")
        assert sorted(third.updated) == ["INC 2/x", "INC0010001"]
        one = site.sandbox.issue("OPS-1")
        assert one["fields"]["priority"]["name"] == "Highest"
        assert one["fields"]["status"]["name"] == "Done"
        assert sorted(site.sandbox.issue("OPS-2")["fields"]["labels"]) == [
            "mail",
            "syncline-INC_2_x",
        ]
        assert len(site.sandbox.keys()) == 2
        assert not site.transport.bodies("/rest/api/3/issue/OPS-1", "PUT")[0].get("status")

    on_site(work)


def test_two_rows_with_one_correlation_value_make_one_issue_the_last_row_winning() -> None:
    async def work(site: Site) -> WriteResult:
        frame = pd.DataFrame({"correlation_id": ["INC5", "INC5"], "summary": ["first", "second"]})
        result = await site.target().upsert(frame, "correlation_id")
        assert site.sandbox.keys() == ["OPS-1"]
        assert site.sandbox.issue("OPS-1")["fields"]["summary"] == "second"
        return result

    result = on_site(work)
    assert result.created == ["INC5"] and result.updated == ["INC5"]


@pytest.mark.parametrize("kind", ["drop_after_commit", "error_after_commit", "error_before_commit"])
def test_a_create_whose_outcome_is_unknown_is_looked_up_not_doubled(kind: str) -> None:
    async def work(site: Site) -> WriteResult:
        def once(request: httpx.Request, response: httpx.Response | None) -> None:
            if response is None or response.status_code >= 500:
                site.sandbox.faults = FaultConfig()  # one fault, on the create

        # Writes: the lookup search is the first POST, the create the second.
        site.sandbox.faults = FaultConfig(write_fault_every=2, write_fault_kinds=[kind])
        site.transport.after = once
        frame = pd.DataFrame({"correlation_id": ["INC7"], "summary": ["Disk full"]})
        result = await site.target().upsert(frame, "correlation_id")
        assert site.sandbox.stats.write_faults[kind] == 1
        assert len(site.sandbox.keys()) == 1
        creates = site.transport.bodies("/rest/api/3/issue")
        assert len(creates) == (2 if kind == "error_before_commit" else 1)
        return result

    result = on_site(work)
    assert result.created == ["INC7"] and result.assigned_keys == {"INC7": "OPS-1"}
    assert not result.rejected


def test_a_refused_record_is_rejected_with_the_field_named_and_the_rest_written() -> None:
    async def work(site: Site) -> WriteResult:
        frame = pd.DataFrame(
            {
                "correlation_id": ["OK-1", "BAD-1", "BAD-2", None],
                "summary": ["fine", "wrong priority", "nowhere to go", "no key"],
                "priority": ["Low", "Urgent", "Low", "Low"],
                "status": ["To Do", "To Do", "Nowhere", "To Do"],
            }
        )
        result = await site.target().upsert(frame, "correlation_id")
        by_key = {rejected.key: rejected for rejected in result.rejected}
        assert set(by_key) == {"BAD-1", "BAD-2", ""}
        assert "no correlation_id to write it by" in by_key[""].reason
        assert "HTTP 400" in by_key["BAD-1"].reason
        assert "priority: Specify the Priority" in by_key["BAD-1"].reason
        assert by_key["BAD-1"].payload["summary"] == "wrong priority"
        assert "cannot move from 'To Do' to 'Nowhere'" in by_key["BAD-2"].reason
        assert sorted(result.created) == ["BAD-2", "OK-1"]  # made, but its status is not
        return result

    on_site(work)


def test_upsert_by_key_updates_existing_issues_and_rejects_unknown_ones() -> None:
    async def work(site: Site) -> None:
        key = await create(site, "before", DAY)
        target = site.target()
        frame = pd.DataFrame(
            {
                "key": [key, "OPS-404"],
                "summary": ["after", "x"],
                "correlation_id": ["SN-1", "SN-2"],
            }
        )
        result = await target.upsert(frame, "key")
        assert result.updated == [key] and result.assigned_keys[key] == key
        assert [rejected.key for rejected in result.rejected] == ["OPS-404"]
        issue = site.sandbox.issue(key)
        assert issue["fields"]["summary"] == "after"
        assert issue["properties"]["syncline"] == {"correlationId": "SN-1"}
        assert issue["fields"]["labels"] == ["syncline-SN-1"]
        keys = [batch async for batch in target.read_keys("correlation_id")]
        assert keys == [["SN-1"]]
        relinked = await target.upsert(
            pd.DataFrame({"key": [key], "correlation_id": ["SN-9"]}), "key"
        )
        assert relinked.updated == [key]
        assert site.sandbox.issue(key)["fields"]["labels"] == ["syncline-SN-9"]

    on_site(work)
