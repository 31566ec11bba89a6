"""The Jira client against the Jira sandbox in process, every request it sends checked against
Atlassian's OpenAPI description: issues with ADF, token paging to the last page, transitions
by name, comments, properties, 400/401 and 429 as Jira answers them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from connectors.base import registry
from connectors.base.errors import AuthError, FatalError
from connectors.jira import JiraClient, JiraSettings, adf_to_text, text_to_adf
from sandboxes.core.faults import FaultConfig
from tests.connectors.test_jira_support import SITE_URL, Site, load_contract

pytestmark = pytest.mark.filterwarnings("ignore:Unsupported scheme type:UserWarning")
T = TypeVar("T")


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


FIELDS = {
    "project": {"key": "OPS"},
    "issuetype": {"name": "Task"},
    "summary": "Disk full on web-01",
}


def test_create_with_an_adf_description_and_a_property_reads_back() -> None:
    async def work(site: Site) -> None:
        text = "Seen by monitoring\n\nat 09:05 on web-01"
        created = await site.client.create_issue(
            {**FIELDS, "description": text_to_adf(text), "labels": ["ops"]},
            {"syncline": {"correlationId": "INC0010001"}},
        )
        issue = await site.client.get_issue(created.key, ["description", "labels"], ["syncline"])
        assert issue is not None
        assert issue.fields["description"] == text_to_adf(text)
        assert adf_to_text(issue.fields["description"]) == text
        assert issue.properties == {"syncline": {"correlationId": "INC0010001"}}
        posted = site.transport.bodies("/rest/api/3/issue")[0]
        assert posted["fields"]["description"]["type"] == "doc"
        assert posted["properties"] == [
            {"key": "syncline", "value": {"correlationId": "INC0010001"}}
        ]
        assert await site.client.get_issue("OPS-99", ["summary"]) is None

    on_site(work)


def test_search_follows_the_token_to_the_last_page_which_has_none() -> None:
    async def work(site: Site) -> None:
        keys = [site.sandbox.seed(1)[0] for _ in range(5)]
        pages = [
            [issue.key for issue in page]
            async for page in site.client.search(
                "project = OPS ORDER BY id ASC", ["summary"], page_size=2
            )
        ]
        assert pages == [keys[0:2], keys[2:4], keys[4:5]]
        bodies = site.transport.bodies("/search/jql")
        assert len(bodies) == 3  # nothing asked after the page without a token
        assert all(body["fields"] == ["summary"] and body["maxResults"] == 2 for body in bodies)
        assert "nextPageToken" not in bodies[0]
        assert bodies[1]["nextPageToken"] and bodies[2]["nextPageToken"]

    on_site(work)


def test_transitions_go_by_the_target_status_name() -> None:
    async def work(site: Site) -> None:
        created = await site.client.create_issue(FIELDS)
        assert await site.client.transition_to(created.key, "In Progress") is True
        assert await site.client.transition_to(created.key, "in progress") is False
        assert await site.client.transition_to(created.key, "Done") is True
        assert site.sandbox.issue(created.key)["fields"]["status"]["name"] == "Done"
        with pytest.raises(FatalError) as refused:
            await site.client.transition_to(created.key, "In Progress")
        message = str(refused.value)
        assert "cannot move from 'Done' to 'In Progress'" in message
        assert "'Reopen' → 'To Do'" in message  # what the workflow offers instead
        posted = site.transport.bodies("/transitions")
        assert [body["transition"]["id"] for body in posted] == ["21", "31"]

    on_site(work)


def test_a_transition_whose_answer_is_lost_is_read_back_not_sent_again() -> None:
    async def work(site: Site) -> None:
        created = await site.client.create_issue(FIELDS)

        def once(request: httpx.Request, response: httpx.Response | None) -> None:
            if response is None:
                site.sandbox.faults = FaultConfig()

        site.sandbox.faults = FaultConfig(
            write_fault_every=1, write_fault_kinds=["drop_after_commit"]
        )
        site.transport.after = once
        assert await site.client.transition_to(created.key, "Done") is True
        assert site.sandbox.stats.write_faults["drop_after_commit"] == 1
        assert site.sandbox.issue(created.key)["fields"]["status"]["name"] == "Done"
        assert len(site.transport.bodies("/transitions")) == 1

    on_site(work)


def test_comments_are_added_as_adf_listed_page_by_page_and_updated() -> None:
    async def work(site: Site) -> None:
        created = await site.client.create_issue(FIELDS)
        for n in range(5):
            await site.client.add_comment(created.key, f"note {n}")
        listed = [c async for c in site.client.comments(created.key, page_size=2)]
        assert [comment.text for comment in listed] == [f"note {n}" for n in range(5)]
        starts = [r.url.params["startAt"] for r in site.transport.sent if r.method == "GET"]
        assert starts == ["0", "2", "4"]
        updated = await site.client.update_comment(created.key, listed[1].id, "note 1, edited")
        assert updated.text == "note 1, edited"
        assert site.transport.bodies("/comment")[0]["body"] == text_to_adf("note 0")

    on_site(work)


def test_issue_properties_are_put_and_read() -> None:
    async def work(site: Site) -> None:
        created = await site.client.create_issue(FIELDS)
        assert await site.client.get_property(created.key, "syncline") is None
        await site.client.set_property(created.key, "syncline", {"correlationId": "X1"})
        await site.client.set_property(created.key, "syncline", {"correlationId": "X2"})
        assert await site.client.get_property(created.key, "syncline") == {"correlationId": "X2"}

    on_site(work)


def test_a_400_names_the_fields_jira_refused() -> None:
    async def work(site: Site) -> None:
        with pytest.raises(FatalError) as refused:
            await site.client.create_issue(
                {
                    "project": {"key": "OPS"},
                    "issuetype": {"name": "Task"},
                    "priority": {"name": "Urgent"},
                }
            )
        error = refused.value
        assert error.status == 400 and not error.retriable
        assert "priority: Specify the Priority" in str(error)
        assert "summary: You must specify a summary" in str(error)
        assert site.sandbox.keys() == []

    on_site(work)


def test_429_waits_for_retry_after_logs_the_reason_and_loses_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def work(site: Site) -> list[str]:
        site.sandbox.seed(6)
        site.sandbox.faults = FaultConfig(rate_limit_every=2, retry_after_seconds=1)
        keys = [
            issue.key
            async for page in site.client.search("project = OPS", ["summary"], page_size=2)
            for issue in page
        ]
        stats = site.client.stats
        assert stats.rate_limited >= 2 and stats.wait_seconds >= 2.0
        return keys

    with caplog.at_level(logging.WARNING, logger="syncline.connectors.jira"):
        keys = on_site(work)
    assert len(keys) == 6 and len(set(keys)) == 6
    assert "RateLimit-Reason: jira-burst-based" in caplog.text
    assert "Retry-After: 1" in caplog.text


def test_wrong_credentials_are_fatal_and_the_token_is_never_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def work(site: Site) -> None:
        wrong = site.settings.model_copy(update={"api_token": SecretStr("not-the-token-123")})
        client = JiraClient(wrong, transport=site.transport)
        with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as refused:
            await client.get_issue("OPS-1", ["summary"])
        assert refused.value.status == 401
        assert "not-the-token-123" not in str(refused.value) + caplog.text
        assert "not-the-token-123" not in repr(wrong)
        assert client.stats.requests == 1  # never retried
        await client.aclose()

    on_site(work)


def test_settings_refuse_unknown_fields_and_zones() -> None:
    base = {"base_url": SITE_URL, "email": "a@example.com", "api_token": "t"}
    assert JiraSettings.model_validate(base).zone.key == "UTC"
    with pytest.raises(ValidationError, match="page_sise"):
        JiraSettings.model_validate({**base, "page_sise": 10})
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        JiraSettings.model_validate({**base, "time_zone": "Mars/Olympus"})


def test_jira_is_declared_on_the_registry() -> None:
    connector = registry.get("jira")
    assert connector.settings is JiraSettings
    assert connector.source is not None and connector.target is not None
    assert "api_token" in connector.required_settings()
