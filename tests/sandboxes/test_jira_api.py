"""The Jira sandbox's REST API over loopback, every request and response checked against
Atlassian's OpenAPI description (REST v3) where the exchange is one the description
covers: issues with ADF, search with token paging, JQL in the user's time zone,
transitions, comments, entity properties, the retired search, rate limits and auth."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from sandboxes.core.faults import FaultConfig
from sandboxes.core.server import BackgroundServer
from sandboxes.jira import JiraSandbox, JiraSandboxConfig
from sandboxes.jira.admin import build_app
from tests.support.openapi_contract import JIRA_PLATFORM_API, OpenAPIContract

pytestmark = pytest.mark.filterwarnings("ignore:Unsupported scheme type:UserWarning")

AUTH = ("integration@example.com", "sandbox-api-token")
START = datetime(2026, 3, 10, 9, 5, 40, tzinfo=UTC)


def doc(text: str) -> dict[str, object]:
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}],
    }


_SCHEMA_ERROR = re.compile(r"<ValidationError: \"(.*?)\">")
_JIRA_TIMESTAMP = re.compile(
    r"'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}' is not a 'date-time'"
)


def _only_jira_timestamps(problem: str) -> bool:
    """Whether every schema error of ``problem`` is a Jira timestamp failing ``date-time``.

    Jira writes ``2024-01-17T12:34:00.000+0000`` (no colon in the offset, as its own examples
    show) where the description says ``format: date-time`` (RFC 3339), so every real
    response with a comment's ``created`` fails the description the same way."""
    errors = _SCHEMA_ERROR.findall(problem)
    return bool(errors) and all(_JIRA_TIMESTAMP.fullmatch(error) for error in errors)


class ContractCheckingTransport(httpx.BaseTransport):
    """Checks each request and its response against the description, then hands both on."""

    def __init__(self, contract: OpenAPIContract) -> None:
        self.contract = contract
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.contract.validate_request(request)
        response = self.inner.handle_request(request)
        response.read()
        problems = self.contract.response_problems(request, response)
        if not response.content:
            # The description gives a JSON schema of ``{}`` to 204s and to the property
            # PUT's 200/201, which Jira answers with no body at all.
            problems = [p for p in problems if not p.startswith("MissingData")]
        problems = [p for p in problems if not _only_jira_timestamps(p)]
        assert not problems, f"{request.method} {request.url}: {problems}"
        return response

    def close(self) -> None:
        self.inner.close()


class Site:
    """A sandbox served over loopback, with a contract-checked and a plain client."""

    def __init__(self, sandbox: JiraSandbox, contract: OpenAPIContract) -> None:
        self.sandbox = sandbox
        self.server = BackgroundServer(build_app(sandbox)).__enter__()
        self.contract = OpenAPIContract(
            openapi=contract.openapi.__class__.from_dict(
                {**contract.document, "servers": [{"url": self.server.url}]},
                config=contract.openapi.config,
            ),
            source=contract.source,
            document=contract.document,
        )
        self.api = httpx.Client(
            base_url=self.server.url, auth=AUTH, transport=ContractCheckingTransport(self.contract)
        )
        self.raw = httpx.Client(base_url=self.server.url, auth=AUTH)

    def create(self, summary: str = "Disk full on web-01", **fields: object) -> dict[str, str]:
        body = {
            "fields": {
                "project": {"key": "OPS"},
                "issuetype": {"name": "Task"},
                "summary": summary,
                "description": doc("Seen by monitoring"),
                **fields,
            }
        }
        response = self.api.post("/rest/api/3/issue", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, str] = response.json()
        return created

    def close(self) -> None:
        self.api.close()
        self.raw.close()
        self.server.__exit__(None, None, None)
        self.sandbox.close()


@pytest.fixture(scope="module")
def contract() -> OpenAPIContract:
    # The description is large (2.4 MB): loaded once for the module, without checking it.
    return OpenAPIContract.load(JIRA_PLATFORM_API, validate_spec=False)


@pytest.fixture
def site(contract: OpenAPIContract) -> Iterator[Site]:
    sandbox = JiraSandbox(JiraSandboxConfig(issues=0), now=START)
    opened = Site(sandbox, contract)
    yield opened
    opened.close()


def test_create_with_adf_and_properties_then_read_back(site: Site) -> None:
    created = site.create(
        labels=["ops"],
        priority={"name": "High"},
    )
    assert re.fullmatch(r"OPS-\d+", created["key"]) and created["self"].endswith(created["id"])
    response = site.api.post(
        "/rest/api/3/issue",
        json={
            "fields": {
                "project": {"key": "OPS"},
                "issuetype": {"id": "10003"},
                "summary": "with a property",
            },
            "properties": [{"key": "syncline", "value": {"correlationId": "SN-INC0010001"}}],
        },
    )
    assert response.status_code == 201
    key = response.json()["key"]
    issue = site.api.get(f"/rest/api/3/issue/{key}", params={"properties": "syncline"}).json()
    assert issue["properties"] == {"syncline": {"correlationId": "SN-INC0010001"}}
    assert issue["fields"]["issuetype"]["name"] == "Incident"
    assert issue["fields"]["status"]["statusCategory"]["key"] == "new"
    assert issue["fields"]["priority"]["name"] == "Medium"  # the default
    first = site.api.get(
        f"/rest/api/3/issue/{created['key']}", params={"fields": "summary,description,priority"}
    ).json()
    assert set(first["fields"]) == {"summary", "description", "priority"}
    assert first["fields"]["description"] == doc("Seen by monitoring")
    assert first["fields"]["priority"]["name"] == "High"


def test_a_plain_string_description_is_refused_though_the_description_allows_it(
    site: Site,
) -> None:
    body = {
        "fields": {
            "project": {"key": "OPS"},
            "issuetype": {"name": "Task"},
            "summary": "v2 style",
            "description": "a plain string, as /rest/api/2 took",
        }
    }
    response = site.api.post("/rest/api/3/issue", json=body)  # the contract accepts it
    assert response.status_code == 400
    assert response.json() == {
        "errorMessages": [],
        "errors": {
            "description": "Operation value must be an Atlassian Document "
            "(see the Atlassian Document Format)"
        },
    }
    missing = site.api.post("/rest/api/3/issue", json={"fields": {"project": {"key": "NOPE"}}})
    assert missing.status_code == 400
    assert set(missing.json()["errors"]) == {"project"}
    no_summary = site.api.post(
        "/rest/api/3/issue", json={"fields": {"project": {"key": "OPS"}, "status": {"id": "3"}}}
    )
    assert set(no_summary.json()["errors"]) == {"status", "issuetype", "summary"}
    assert site.sandbox.keys() == []


def test_search_pages_by_token_and_the_last_page_has_no_token(site: Site) -> None:
    keys = [site.create(f"issue {n}")["key"] for n in range(5)]
    seen: list[str] = []
    pages = []
    token: str | None = None
    while True:
        body: dict[str, object] = {"jql": "project = OPS ORDER BY key ASC", "maxResults": 2}
        body["fields"] = ["summary", "updated"]
        if token:
            body["nextPageToken"] = token
        page = site.api.post("/rest/api/3/search/jql", json=body).json()
        pages.append(page)
        assert "total" not in page
        seen.extend(issue["key"] for issue in page["issues"])
        if page["isLast"]:
            assert "nextPageToken" not in page  # absent, not null
            break
        token = page["nextPageToken"]
    assert seen == keys and len(pages) == 3
    ids_only = site.api.get("/rest/api/3/search/jql", params={"jql": "project = OPS"}).json()
    assert all(set(issue) == {"id"} for issue in ids_only["issues"])  # without fields: ids
    assert ids_only["isLast"] is True


def test_start_at_breaks_the_contract_and_is_refused(site: Site) -> None:
    request = site.raw.build_request(
        "POST", "/rest/api/3/search/jql", json={"jql": "project = OPS", "startAt": 0}
    )
    assert any("startAt" in problem for problem in site.contract.problems(request))
    response = site.raw.send(request)
    assert response.status_code == 400 and "startAt" in response.json()["errorMessages"][0]
    unbounded = site.api.post("/rest/api/3/search/jql", json={"jql": "ORDER BY updated"})
    assert unbounded.status_code == 400
    stale = site.api.post(
        "/rest/api/3/search/jql", json={"jql": "project = OPS", "nextPageToken": "bogus"}
    )
    assert stale.status_code == 400


def test_jql_dates_are_minutes_in_the_users_time_zone(contract: OpenAPIContract) -> None:
    # 09:05:40 UTC is 10:05:40 in Paris (UTC+1 in March).
    sandbox = JiraSandbox(JiraSandboxConfig(issues=0, time_zone="Europe/Paris"), now=START)
    site = Site(sandbox, contract)
    try:
        key = site.create()["key"]

        def found(jql: str) -> bool:
            body = {"jql": jql, "fields": ["updated"]}
            page = site.api.post("/rest/api/3/search/jql", json=body).json()
            return any(issue["key"] == key for issue in page["issues"])

        assert found('updated >= "2026-03-10 10:05"')  # the minute it changed in
        assert not found('updated >= "2026-03-10 10:06"')
        assert not found('updated <= "2026-03-10 10:05"')  # 10:05 means 10:05:00
        assert not found('updated < "2026-03-10 10:00" AND project = OPS')  # 09:00 UTC
        assert found("updated >= 2026/03/10 AND labels is EMPTY")
        assert found("updated >= -5m")
        updated = site.api.get(f"/rest/api/3/issue/{key}", params={"fields": "updated"}).json()
        assert updated["fields"]["updated"] == "2026-03-10T10:05:40.000+0100"
        bad = site.api.post("/rest/api/3/search/jql", json={"jql": 'updated >= "10/03/2026"'})
        assert bad.status_code == 400 and "Date value" in bad.json()["errorMessages"][0]
    finally:
        site.close()


def test_labels_status_and_keys_are_searchable_but_properties_are_not(site: Site) -> None:
    one = site.create(labels=["syncline-SN-1"])["key"]
    two = site.create(labels=["other"])["key"]

    def keys(jql: str) -> list[str]:
        page = site.api.post("/rest/api/3/search/jql", json={"jql": jql, "fields": ["key"]})
        assert page.status_code == 200, page.text
        return sorted(issue["key"] for issue in page.json()["issues"])

    assert keys("labels = syncline-SN-1") == [one]
    assert keys("labels in (syncline-SN-1, other) ORDER BY updated DESC, key") == [one, two]
    assert keys(f'key in ({one}, {two}) AND status = "To Do"') == [one, two]
    assert keys('status = "In Progress" OR labels = none') == []

    def refusal(jql: str) -> str:
        response = site.api.post("/rest/api/3/search/jql", json={"jql": jql})
        assert response.status_code == 400
        message: str = response.json()["errorMessages"][0]
        return message

    # Values that name nothing fail the whole query rather than matching nothing.
    assert refusal("project = NONE") == "The value 'NONE' does not exist for the field 'project'."
    site.api.delete(f"/rest/api/3/issue/{two}")
    assert refusal(f"key in ({one}, {two})") == (
        f"An issue with key '{two}' does not exist for field 'key'."
    )
    refused = site.api.post(
        "/rest/api/3/search/jql",
        json={"jql": 'issue.property[syncline].correlationId = "SN-1"'},
    )
    assert refused.status_code == 400
    assert "issue.property[syncline].correlationId" in refused.json()["errorMessages"][0]


def test_transitions_follow_the_workflow(site: Site) -> None:
    key = site.create()["key"]
    offered = site.api.get(f"/rest/api/3/issue/{key}/transitions").json()["transitions"]
    assert {(t["id"], t["to"]["name"]) for t in offered} == {("21", "In Progress"), ("31", "Done")}
    wrong = site.api.post(f"/rest/api/3/issue/{key}/transitions", json={"transition": {"id": "11"}})
    assert wrong.status_code == 400
    site.sandbox.advance(90)
    moved = site.api.post(f"/rest/api/3/issue/{key}/transitions", json={"transition": {"id": "21"}})
    assert moved.status_code == 204
    issue = site.api.get(f"/rest/api/3/issue/{key}", params={"fields": "status,updated"}).json()
    assert issue["fields"]["status"]["name"] == "In Progress"
    assert issue["fields"]["status"]["statusCategory"]["key"] == "indeterminate"
    assert issue["fields"]["updated"] == "2026-03-10T09:07:10.000+0000"
    offered = site.api.get(f"/rest/api/3/issue/{key}/transitions").json()["transitions"]
    assert {t["id"] for t in offered} == {"11", "31"}
    done = site.api.post(f"/rest/api/3/issue/{key}/transitions", json={"transition": {"id": "31"}})
    assert done.status_code == 204
    fields = site.api.get(f"/rest/api/3/issue/{key}").json()["fields"]
    assert fields["resolution"]["name"] == "Done" and fields["resolutiondate"]


def test_edits_change_updated_and_status_is_not_a_field(site: Site) -> None:
    key = site.create(labels=["a"])["key"]
    site.sandbox.advance(60)
    edit = {"fields": {"summary": "renamed"}, "update": {"labels": [{"add": "b"}, {"remove": "a"}]}}
    assert site.api.put(f"/rest/api/3/issue/{key}", json=edit).status_code == 204
    fields = site.api.get(f"/rest/api/3/issue/{key}").json()["fields"]
    assert fields["summary"] == "renamed" and fields["labels"] == ["b"]
    assert fields["updated"] == "2026-03-10T09:06:40.000+0000"
    refused = site.api.put(f"/rest/api/3/issue/{key}", json={"fields": {"status": {"id": "3"}}})
    assert refused.status_code == 400 and "status" in refused.json()["errors"]
    missing = site.api.get("/rest/api/3/issue/OPS-999")
    assert missing.status_code == 404


def test_comments_are_adf_paginated_and_touch_the_issue(site: Site) -> None:
    key = site.create()["key"]
    site.sandbox.advance(120)
    added = site.api.post(f"/rest/api/3/issue/{key}/comment", json={"body": doc("first")})
    assert added.status_code == 201
    comment = added.json()
    assert comment["id"] and comment["author"]["accountId"] and comment["created"]
    assert comment["created"] == comment["updated"] == "2026-03-10T09:07:40.000+0000"
    plain = site.api.post(f"/rest/api/3/issue/{key}/comment", json={"body": "plain text"})
    assert plain.status_code == 400
    for text in ("second", "third"):
        site.api.post(f"/rest/api/3/issue/{key}/comment", json={"body": doc(text)})
    page = site.api.get(
        f"/rest/api/3/issue/{key}/comment", params={"startAt": 1, "maxResults": 1}
    ).json()
    assert (page["startAt"], page["maxResults"], page["total"]) == (1, 1, 3)
    assert page["comments"][0]["body"] == doc("second")
    site.sandbox.advance(30)
    changed = site.api.put(
        f"/rest/api/3/issue/{key}/comment/{comment['id']}", json={"body": doc("edited")}
    )
    assert changed.status_code == 200 and changed.json()["updated"].startswith(
        "2026-03-10T09:08:10"
    )
    deleted = site.api.delete(f"/rest/api/3/issue/{key}/comment/{comment['id']}")
    assert deleted.status_code == 204
    issue = site.api.get(f"/rest/api/3/issue/{key}", params={"fields": "updated,comment"}).json()
    assert issue["fields"]["updated"] == "2026-03-10T09:08:10.000+0000"
    assert issue["fields"]["comment"]["total"] == 2


def test_entity_properties_are_created_then_replaced_and_leave_updated_alone(site: Site) -> None:
    key = site.create()["key"]
    before = site.sandbox.issue(key)["fields"]["updated"]
    site.sandbox.advance(60)
    path = f"/rest/api/3/issue/{key}/properties/syncline"
    assert site.api.put(path, json={"correlationId": "A"}).status_code == 201
    assert site.api.put(path, json={"correlationId": "B"}).status_code == 200
    assert site.api.get(path).json() == {"key": "syncline", "value": {"correlationId": "B"}}
    listed = site.api.get(f"/rest/api/3/issue/{key}/properties").json()
    assert [entry["key"] for entry in listed["keys"]] == ["syncline"]
    assert site.sandbox.issue(key)["fields"]["updated"] == before
    assert site.api.delete(path).status_code == 204
    assert site.api.get(path).status_code == 404


def test_the_old_search_is_gone(site: Site) -> None:
    for method in ("GET", "POST"):
        # Not checked against the description: it still lists /search, which now answers 410.
        response = site.raw.request(method, "/rest/api/3/search", params={"jql": "project = OPS"})
        assert response.status_code == 410
        assert "/rest/api/3/search/jql" in response.json()["errorMessages"][0]


def test_rate_limits_and_outages_carry_jira_headers(site: Site) -> None:
    site.sandbox.faults = FaultConfig(rate_limit_every=2, retry_after_seconds=7)
    assert site.api.get("/rest/api/3/myself").status_code == 200
    # The description documents 429 on nine operations only; Jira may answer it anywhere.
    limited = site.raw.get("/rest/api/3/myself")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert limited.headers["RateLimit-Reason"] == "jira-burst-based"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}Z", limited.headers["X-RateLimit-Reset"])
    assert limited.headers["X-RateLimit-Reset"] == "2026-03-10T09:06Z"  # 09:05:47, rounded up
    site.sandbox.faults = FaultConfig(server_error_every=1, server_error_status=503)
    unavailable = site.raw.get("/rest/api/3/myself")
    assert unavailable.status_code == 503 and unavailable.headers["Retry-After"] == "1"
    site.sandbox.faults = FaultConfig()
    site.sandbox.rate_limit_per_second = 1
    statuses = [site.raw.get("/rest/api/3/myself") for _ in range(3)]
    refused = [r for r in statuses if r.status_code == 429]
    assert refused and refused[0].headers["RateLimit-Reason"] == "jira-burst-based"
    assert int(refused[0].headers["Retry-After"]) >= 1
    assert site.sandbox.stats.rate_limited == 1 + len(refused)


def test_basic_auth_with_an_api_token_is_required(site: Site) -> None:
    anonymous = httpx.get(f"{site.server.url}/rest/api/3/myself")
    assert anonymous.status_code == 401
    wrong = httpx.get(f"{site.server.url}/rest/api/3/myself", auth=(AUTH[0], "wrong"))
    assert wrong.status_code == 401
    me = site.api.get("/rest/api/3/myself").json()
    assert me["emailAddress"] == AUTH[0]


def test_search_is_eventually_consistent_when_asked(contract: OpenAPIContract) -> None:
    sandbox = JiraSandbox(JiraSandboxConfig(issues=0, search_lag_ms=600_000), now=START)
    site = Site(sandbox, contract)
    try:
        created = site.create()
        body: dict[str, object] = {"jql": "project = OPS", "fields": ["key"]}
        assert site.api.post("/rest/api/3/search/jql", json=body).json()["issues"] == []
        body["reconcileIssues"] = [int(created["id"])]
        issues = site.api.post("/rest/api/3/search/jql", json=body).json()["issues"]
        assert [issue["key"] for issue in issues] == [created["key"]]
        count = site.api.post("/rest/api/3/search/approximate-count", json={"jql": "project = OPS"})
        assert count.json() == {"count": 0}
    finally:
        site.close()
