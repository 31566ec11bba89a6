"""The ServiceNow sandbox behaves like the Table API a connector meets in production."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from sandboxes.servicenow.admin import build_app
from tests.support.openapi_contract import (
    SERVICENOW_TABLE_API,
    ContractViolationError,
    OpenAPIContract,
)

INSTANCE = "https://sandbox.service-now.com"
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
SMALL = ServiceNowSandboxConfig(cmdb_ci_server=2_500, incident=200, sys_user=150, seed=11)
SYS_ID = re.compile(r"[0-9a-f]{32}")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def seeded() -> ServiceNowSandbox:
    """Read-only tests share one instance; tests that write make their own."""
    return ServiceNowSandbox(SMALL, now=NOW)


@pytest.fixture
def instance() -> ServiceNowSandbox:
    return ServiceNowSandbox(SMALL, now=NOW)


def client_for(
    sandbox: ServiceNowSandbox, *, auth: httpx.Auth | None = None, **options: Any
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sandbox.app),
        base_url=INSTANCE,
        auth=auth if auth is not None else httpx.BasicAuth("admin", "sandbox"),
        **options,
    )


@pytest.fixture
async def api(seeded: ServiceNowSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(seeded) as client:
        yield client


@pytest.fixture
async def writable_api(instance: ServiceNowSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(instance) as client:
        yield client


def assert_error(response: httpx.Response, status: int, message: str, detail: str | None) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {
        "error": {"message": message, "detail": detail},
        "status": "failure",
    }


# --- envelope, typing, references -----------------------------------------------------------


@pytest.mark.anyio
async def test_list_envelope_holds_only_strings_and_reference_objects(
    api: httpx.AsyncClient,
) -> None:
    for table in ("cmdb_ci_server", "incident", "sys_user"):
        response = await api.get(f"/api/now/table/{table}", params={"sysparm_limit": 40})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert list(body) == ["result"]
        assert len(body["result"]) == 40
        for record in body["result"]:
            assert SYS_ID.fullmatch(record["sys_id"])
            assert TIMESTAMP.fullmatch(record["sys_updated_on"])
            assert TIMESTAMP.fullmatch(record["sys_created_on"])
            for name, value in record.items():
                if isinstance(value, dict):
                    assert set(value) == {"link", "value"}, name
                    assert SYS_ID.fullmatch(value["value"]), name
                    assert value["link"].startswith(f"{INSTANCE}/api/now/table/")
                    assert value["link"].endswith("/" + value["value"])
                else:
                    assert isinstance(value, str), (table, name, value)


@pytest.mark.anyio
async def test_seeded_server_fields_are_realistic(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/now/table/cmdb_ci_server", params={"sysparm_limit": 500})
    servers = response.json()["result"]
    for server in servers:
        assert re.fullmatch(r"(lnx|win|aix|sol|esx|srv)-[a-z0-9]+-\d{5}", server["name"])
        assert server["sys_class_name"].startswith("cmdb_ci_")
        assert server["fqdn"].startswith(server["name"] + ".")
        assert re.fullmatch(r"10\.\d+\.\d+\.\d+", server["ip_address"])
        assert server["operational_status"] in {"1", "2", "3", "4", "5", "6"}
        assert server["used_for"] in {
            "Production", "Staging", "QA", "Development", "Test", "Disaster recovery",
        }  # fmt: skip
        assert server["cpu_count"].isdigit()
        assert server["ram"].isdigit()
        assert server["manufacturer"]["link"].startswith(f"{INSTANCE}/api/now/table/core_company/")
        assert server["sys_created_on"] <= server["sys_updated_on"] < "2025-06-01 12:00:00"
    assert len({server["name"] for server in servers}) == len(servers)
    assert len({server["sys_class_name"] for server in servers}) >= 3


@pytest.mark.anyio
async def test_references_link_to_the_referenced_table(
    api: httpx.AsyncClient, seeded: ServiceNowSandbox
) -> None:
    response = await api.get(
        "/api/now/table/incident",
        params={"sysparm_query": "cmdb_ciISNOTEMPTY^assigned_toISEMPTY", "sysparm_limit": 1},
    )
    (incident,) = response.json()["result"]
    ci = incident["cmdb_ci"]
    assert ci["link"] == f"{INSTANCE}/api/now/table/cmdb_ci/{ci['value']}"
    assert incident["assigned_to"] == ""  # an empty reference is a plain string
    # The link resolves: cmdb_ci serves every CI class.
    followed = await api.get(ci["link"])
    assert followed.status_code == 200
    assert followed.json()["result"]["sys_id"] == ci["value"]
    assert "os" not in followed.json()["result"], "cmdb_ci has no os column"

    plain = await api.get(
        f"/api/now/table/incident/{incident['sys_id']}",
        params={"sysparm_exclude_reference_link": "true"},
    )
    assert plain.json()["result"]["cmdb_ci"] == ci["value"]


# --- paging ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_following_next_links_reads_every_record_exactly_once(
    seeded: ServiceNowSandbox,
) -> None:
    total = seeded.count("cmdb_ci_server")
    assert total == 2_500
    seen: list[str] = []
    pages: list[httpx.Response] = []
    async with client_for(seeded) as client:
        url: str | None = "/api/now/table/cmdb_ci_server"
        params: dict[str, Any] | None = {
            "sysparm_query": "ORDERBYsys_updated_on",
            "sysparm_limit": 300,
            "sysparm_fields": "sys_id,sys_updated_on",
        }
        while url is not None:
            response = await client.get(url, params=params)
            params = None
            assert response.status_code == 200
            assert response.headers["x-total-count"] == str(total)
            pages.append(response)
            seen.extend(record["sys_id"] for record in response.json()["result"])
            url = response.links.get("next", {}).get("url")
    assert len(seen) == len(set(seen)) == total
    assert set(seen) == {record["sys_id"] for record in seeded.records("cmdb_ci_server")}
    assert len(pages) == 9

    first, second, last = pages[0].links, pages[1].links, pages[-1].links
    assert set(first) == {"first", "next", "last"}
    assert set(second) == {"first", "prev", "next", "last"}
    assert set(last) == {"first", "prev", "last"}
    assert "sysparm_offset=2400" in first["last"]["url"]
    assert httpx.URL(second["prev"]["url"]).params["sysparm_offset"] == "0"
    assert httpx.URL(last["prev"]["url"]).params["sysparm_offset"] == "2100"
    next_url = httpx.URL(first["next"]["url"])
    assert next_url.params["sysparm_query"] == "ORDERBYsys_updated_on"
    assert next_url.params["sysparm_fields"] == "sys_id,sys_updated_on"
    assert next_url.params["sysparm_offset"] == "300"
    assert next_url.params["sysparm_limit"] == "300"


@pytest.mark.anyio
async def test_pagination_headers_on_single_pages_and_when_suppressed(
    api: httpx.AsyncClient,
) -> None:
    single = await api.get("/api/now/table/incident", params={"sysparm_limit": 1000})
    assert "link" not in single.headers
    assert single.headers["x-total-count"] == "200"
    assert len(single.json()["result"]) == 200

    default_limit = await api.get("/api/now/table/cmdb_ci_server")
    assert len(default_limit.json()["result"]) == 2_500  # default sysparm_limit is 10,000

    suppressed = await api.get(
        "/api/now/table/incident",
        params={"sysparm_limit": 10, "sysparm_suppress_pagination_header": "true"},
    )
    assert "link" not in suppressed.headers

    uncounted = await api.get(
        "/api/now/table/incident", params={"sysparm_limit": 10, "sysparm_no_count": "true"}
    )
    assert "x-total-count" not in uncounted.headers
    assert "next" in uncounted.links

    beyond = await api.get("/api/now/table/incident", params={"sysparm_offset": 5000})
    assert beyond.json() == {"result": []}


@pytest.mark.anyio
async def test_versioned_paths_serve_the_same_api(api: httpx.AsyncClient) -> None:
    base = await api.get("/api/now/table/sys_user", params={"sysparm_limit": 5})
    for version in ("v1", "v2"):
        response = await api.get(f"/api/now/{version}/table/sys_user", params={"sysparm_limit": 5})
        assert response.json() == base.json()


# --- queries --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_encoded_queries_filter_like_the_instance(
    api: httpx.AsyncClient, seeded: ServiceNowSandbox
) -> None:
    servers = seeded.records("cmdb_ci_server")

    async def sys_ids(query: str) -> list[str]:
        response = await api.get(
            "/api/now/table/cmdb_ci_server",
            params={"sysparm_query": query, "sysparm_fields": "sys_id"},
        )
        assert response.status_code == 200
        return [record["sys_id"] for record in response.json()["result"]]

    production_big = {
        s["sys_id"]
        for s in servers
        if s["operational_status"] == "1"
        and s["used_for"] == "Production"
        and int(s["ram"]) >= 16384
    }
    assert (
        set(await sys_ids("operational_status=1^used_for=Production^ram>=16384")) == production_big
    )
    assert 0 < len(production_big) < len(servers)

    linux_or_esx = {
        s["sys_id"]
        for s in servers
        if s["sys_class_name"] in ("cmdb_ci_linux_server", "cmdb_ci_esx_server")
    }
    assert (
        set(await sys_ids("sys_class_nameINcmdb_ci_linux_server,cmdb_ci_esx_server"))
        == linux_or_esx
    )
    assert (
        set(
            await sys_ids("sys_class_name=cmdb_ci_linux_server^ORsys_class_name=cmdb_ci_esx_server")
        )
        == linux_or_esx
    )
    web = {s["sys_id"] for s in servers if "-web-" in s["name"]}
    assert set(await sys_ids("nameLIKE-web-")) == web
    assert set(await sys_ids("nameSTARTSWITHlnx-^NQnameSTARTSWITHwin-")) == {
        s["sys_id"] for s in servers if s["name"][:4] in ("lnx-", "win-")
    }
    unassigned = {s["sys_id"] for s in servers if s["assigned_to"] == ""}
    assert set(await sys_ids("assigned_toISEMPTY")) == unassigned
    # An unknown field is silently ignored, as with glide.invalid_query.returns_no_rows=false.
    assert set(await sys_ids("u_no_such_field=1^assigned_toISEMPTY")) == unassigned


@pytest.mark.anyio
async def test_incremental_query_with_date_generate_and_order_by(
    api: httpx.AsyncClient, seeded: ServiceNowSandbox
) -> None:
    cutoff = "2025-03-01 00:00:00"
    expected = sorted(
        (s["sys_updated_on"], s["sys_id"])
        for s in seeded.records("cmdb_ci_server")
        if s["sys_updated_on"] >= cutoff
    )
    query = (
        "sys_updated_on>=javascript:gs.dateGenerate('2025-03-01','00:00:00')^ORDERBYsys_updated_on"
    )
    response = await api.get(
        "/api/now/table/cmdb_ci_server",
        params={"sysparm_query": query, "sysparm_fields": "sys_id,sys_updated_on"},
    )
    got = [(r["sys_updated_on"], r["sys_id"]) for r in response.json()["result"]]
    assert got == expected  # ascending by time; ties in sys_id order
    assert response.headers["x-total-count"] == str(len(expected))

    descending = await api.get(
        "/api/now/table/cmdb_ci_server",
        params={
            "sysparm_query": "sys_updated_on>=2025-03-01 00:00:00^ORDERBYDESCsys_updated_on",
            "sysparm_fields": "sys_updated_on",
            "sysparm_limit": 50,
        },
    )
    times = [r["sys_updated_on"] for r in descending.json()["result"]]
    assert times == sorted(times, reverse=True)
    assert times[0] == expected[-1][0]


def test_seed_has_bulk_runs_sharing_one_second(seeded: ServiceNowSandbox) -> None:
    per_second = Counter(s["sys_updated_on"] for s in seeded.records("cmdb_ci_server"))
    runs = [count for count in per_second.values() if count >= 20]
    assert runs, "no same-second bulk runs"
    assert max(per_second.values()) <= 200
    assert sum(runs) >= 0.15 * seeded.count("cmdb_ci_server")
    assert len(per_second) > 500, "updates must also be spread over the year"
    times = sorted(per_second)
    assert times[0] >= "2024-06-01 12:00:00"
    assert times[-1] < "2025-06-01 12:00:00"


@pytest.mark.anyio
async def test_boundary_second_needs_greater_or_equal(
    api: httpx.AsyncClient, seeded: ServiceNowSandbox
) -> None:
    per_second = Counter(s["sys_updated_on"] for s in seeded.records("cmdb_ci_server"))
    boundary, shared = per_second.most_common(1)[0]
    later = sum(count for second, count in per_second.items() if second > boundary)

    async def total(query: str) -> int:
        response = await api.get(
            "/api/now/table/cmdb_ci_server", params={"sysparm_query": query, "sysparm_limit": 1}
        )
        return int(response.headers["x-total-count"])

    assert await total(f"sys_updated_on>{boundary}") == later
    assert await total(f"sys_updated_on>={boundary}") == later + shared


@pytest.mark.anyio
async def test_invalid_query_can_return_no_rows() -> None:
    strict = ServiceNowSandbox(
        SMALL.model_copy(update={"cmdb_ci_server": 50, "invalid_query_returns_no_rows": True}),
        now=NOW,
    )
    async with client_for(strict) as client:
        response = await client.get(
            "/api/now/table/cmdb_ci_server",
            params={"sysparm_query": "u_nope=1^operational_status=1"},
        )
        assert response.json() == {"result": []}
        valid = await client.get(
            "/api/now/table/cmdb_ci_server", params={"sysparm_query": "operational_status=1"}
        )
        assert valid.json()["result"]


# --- projection and display values ----------------------------------------------------------


@pytest.mark.anyio
async def test_fields_projection_skips_unknown_names_and_dot_walks(
    api: httpx.AsyncClient, seeded: ServiceNowSandbox
) -> None:
    response = await api.get(
        "/api/now/table/cmdb_ci_server",
        params={
            "sysparm_fields": "name,ip_address,u_bogus,assigned_to.name,assigned_to",
            "sysparm_query": "assigned_toISNOTEMPTY",
            "sysparm_limit": 20,
        },
    )
    seeded_id_by_ip = {r["ip_address"]: r["sys_id"] for r in seeded.records("cmdb_ci_server")}
    for record in response.json()["result"]:
        assert list(record) == ["name", "ip_address", "assigned_to.name", "assigned_to"]
        user = seeded.get("sys_user", record["assigned_to"]["value"])
        assert user is not None
        assert record["assigned_to.name"] == user["name"]

    plain = await api.get(
        "/api/now/table/cmdb_ci_server",
        params={
            "sysparm_fields": "ip_address,name,assigned_to,location",
            "sysparm_exclude_reference_link": "true",
            "sysparm_limit": 20,
        },
    )
    for record in plain.json()["result"]:
        stored = seeded.get("cmdb_ci_server", seeded_id_by_ip[record["ip_address"]])
        assert stored is not None
        assert record == {
            "ip_address": stored["ip_address"],
            "name": stored["name"],
            "assigned_to": stored["assigned_to"],
            "location": stored["location"],
        }
        assert list(record) == ["ip_address", "name", "assigned_to", "location"]


@pytest.mark.anyio
async def test_display_values_show_labels_and_names(
    api: httpx.AsyncClient, seeded: ServiceNowSandbox
) -> None:
    incident = next(
        r for r in seeded.records("incident") if r["assigned_to"] and r["priority"] == "1"
    )
    assignee = seeded.get("sys_user", incident["assigned_to"])
    assert assignee is not None
    path = f"/api/now/table/incident/{incident['sys_id']}"

    shown = (await api.get(path, params={"sysparm_display_value": "true"})).json()["result"]
    assert shown["priority"] == "1 - Critical"
    assert shown["state"] == {
        "1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed",
    }[incident["state"]]  # fmt: skip
    assert shown["assigned_to"] == {
        "display_value": assignee["name"],
        "link": f"{INSTANCE}/api/now/table/sys_user/{assignee['sys_id']}",
    }
    assert shown["number"] == incident["number"]

    names_only = (
        await api.get(
            path,
            params={"sysparm_display_value": "true", "sysparm_exclude_reference_link": "true"},
        )
    ).json()["result"]
    assert names_only["assigned_to"] == assignee["name"]

    both = (await api.get(path, params={"sysparm_display_value": "all"})).json()["result"]
    assert both["priority"] == {"display_value": "1 - Critical", "value": "1"}
    assert both["assigned_to"] == {
        "display_value": assignee["name"],
        "link": f"{INSTANCE}/api/now/table/sys_user/{assignee['sys_id']}",
        "value": assignee["sys_id"],
    }

    server = (
        await api.get(
            "/api/now/table/cmdb_ci_server",
            params={
                "sysparm_display_value": "true",
                "sysparm_query": "operational_status=1^ram>=16384",
                "sysparm_fields": "operational_status,ram,sys_class_name",
                "sysparm_limit": 1,
            },
        )
    ).json()["result"][0]
    assert server["operational_status"] == "Operational"
    assert re.fullmatch(r"\d{1,3}(,\d{3})+", server["ram"])  # "16,384"
    assert server["sys_class_name"].endswith("Server")


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_authentication_errors_and_accepted_credentials(seeded: ServiceNowSandbox) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=seeded.app), base_url=INSTANCE
    ) as anonymous:
        missing = await anonymous.get("/api/now/table/incident")
        assert_error(missing, 401, "User Not Authenticated", "Required to provide Auth information")
        wrong = await anonymous.get("/api/now/table/incident", auth=("admin", "wrong"))
        assert_error(wrong, 401, "User Not Authenticated", "Required to provide Auth information")
        garbled = await anonymous.get(
            "/api/now/table/incident", headers={"Authorization": "Basic !!!"}
        )
        assert garbled.status_code == 401
        bearer = await anonymous.get(
            "/api/now/table/incident",
            params={"sysparm_limit": 1},
            headers={"Authorization": "Bearer sandbox-token"},
        )
        assert bearer.status_code == 200
        bad_bearer = await anonymous.get(
            "/api/now/table/incident", headers={"Authorization": "Bearer nope"}
        )
        assert bad_bearer.status_code == 401


@pytest.mark.anyio
async def test_client_errors_use_the_servicenow_error_body(api: httpx.AsyncClient) -> None:
    missing = await api.get(f"/api/now/table/incident/{'0' * 32}")
    assert_error(
        missing,
        404,
        "No Record found",
        "Record doesn't exist or ACL restricts the record retrieval",
    )
    negative = await api.get("/api/now/table/incident", params={"sysparm_offset": -1})
    assert_error(negative, 400, "offset is -1", "Negative offset is not supported")
    unknown = await api.get("/api/now/table/no_such_table")
    assert_error(unknown, 400, "Invalid table no_such_table", None)
    empty_class = await api.get("/api/now/table/cmdb_ci_appl_custom")
    assert empty_class.status_code == 200
    assert empty_class.json() == {"result": []}
    not_allowed = await api.delete("/api/now/table/incident")
    assert not_allowed.status_code == 405
    assert not_allowed.json()["status"] == "failure"
    unsupported = await api.post(
        "/api/now/table/incident", content=b"short_description=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert unsupported.status_code == 415
    broken = await api.post(
        "/api/now/table/incident",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert broken.status_code == 400
    assert broken.json()["error"]["message"] == "Exception while reading request"
    no_resource = await api.get("/api/now/tables/incident")
    assert_error(no_resource, 400, "Requested URI does not represent any resource", None)


# --- faults and rate limits -----------------------------------------------------------------


@pytest.mark.anyio
async def test_every_nth_request_is_rate_limited_with_retry_after(
    instance: ServiceNowSandbox, writable_api: httpx.AsyncClient
) -> None:
    instance.faults.rate_limit_every = 3
    statuses = [
        (await writable_api.get("/api/now/table/sys_user", params={"sysparm_limit": 1}))
        for _ in range(6)
    ]
    assert [r.status_code for r in statuses] == [200, 200, 429, 200, 200, 429]
    limited = statuses[2]
    assert limited.headers["retry-after"] == "1"
    assert limited.json() == {
        "error": {"message": "Too Many Requests", "detail": "Rate limit exceeded"},
        "status": "failure",
    }
    assert instance.stats.rate_limited == 2
    assert instance.stats.requests_total == 6
    assert instance.stats.responses_by_status == {200: 4, 429: 2}

    instance.faults.rate_limit_every = 1
    for seconds, header in ((0.3, "0"), (0.5, "1"), (2.2, "3")):
        instance.faults.retry_after_seconds = seconds
        response = await writable_api.get("/api/now/table/sys_user")
        assert response.headers["retry-after"] == header


@pytest.mark.anyio
async def test_server_errors_and_latency_are_injected(
    instance: ServiceNowSandbox, writable_api: httpx.AsyncClient
) -> None:
    instance.faults.server_error_every = 2
    first = await writable_api.get("/api/now/table/sys_user", params={"sysparm_limit": 1})
    second = await writable_api.get("/api/now/table/sys_user", params={"sysparm_limit": 1})
    assert first.status_code == 200
    assert second.status_code == 500
    assert second.json()["status"] == "failure"
    instance.faults.server_error_status = 503
    await writable_api.get("/api/now/table/sys_user", params={"sysparm_limit": 1})
    unavailable = await writable_api.get("/api/now/table/sys_user", params={"sysparm_limit": 1})
    assert unavailable.status_code == 503
    instance.faults.server_error_every = None
    instance.faults.latency_ms = 1
    assert (await writable_api.get("/api/now/table/sys_user")).status_code == 200
    with pytest.raises(ValueError, match="greater than or equal"):
        instance.faults.latency_ms = -1


@pytest.mark.anyio
async def test_hourly_rate_limit_sends_headers_and_resets_with_the_hour() -> None:
    limited = ServiceNowSandbox(
        SMALL.model_copy(update={"cmdb_ci_server": 10, "rate_limit_per_hour": 3}), now=NOW
    )
    async with client_for(limited) as client:
        responses = [await client.get("/api/now/table/sys_user") for _ in range(4)]
        assert [r.status_code for r in responses] == [200, 200, 200, 429]
        reset = int(NOW.timestamp()) + 3600
        for response in responses:
            assert response.headers["x-ratelimit-limit"] == "3"
            assert response.headers["x-ratelimit-reset"] == str(reset)
            assert SYS_ID.fullmatch(response.headers["x-ratelimit-rule"])
        assert responses[3].headers["retry-after"] == "3600"
        assert responses[3].json()["error"]["message"] == "Too Many Requests"
        limited.advance(3600)
        assert (await client.get("/api/now/table/sys_user")).status_code == 200


# --- writes ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_create_read_update_delete(
    instance: ServiceNowSandbox, writable_api: httpx.AsyncClient
) -> None:
    caller = instance.records("sys_user")[3]
    created = await writable_api.post(
        "/api/now/table/incident",
        json={
            "short_description": "Disk full on lnx-db-00042",
            "caller_id": caller["sys_id"],
            "impact": 1,
            "urgency": "2",
            "priority": "5",
            "u_not_a_column": "dropped",
        },
    )
    assert created.status_code == 201
    record = created.json()["result"]
    sys_id = record["sys_id"]
    assert SYS_ID.fullmatch(sys_id)
    assert created.headers["location"] == f"{INSTANCE}/api/now/table/incident/{sys_id}"
    assert record["number"] == "INC0010201"  # after the 200 seeded incidents
    assert (record["impact"], record["urgency"], record["priority"]) == ("1", "2", "2")
    assert record["state"] == "1"
    assert record["active"] == "true"
    assert record["caller_id"]["value"] == caller["sys_id"]
    assert record["sys_created_on"] == record["sys_updated_on"] == "2025-06-01 12:00:00"
    assert record["sys_created_by"] == "admin"
    assert record["sys_mod_count"] == "0"
    assert "u_not_a_column" not in record

    fetched = await writable_api.get(f"/api/now/table/incident/{sys_id}")
    assert fetched.status_code == 200
    assert fetched.json()["result"] == record

    instance.advance(90)
    patched = await writable_api.patch(
        f"/api/now/table/incident/{sys_id}",
        json={"state": "6", "close_code": "Solved (Permanently)"},
    )
    assert patched.status_code == 200
    updated = patched.json()["result"]
    assert updated["sys_updated_on"] == "2025-06-01 12:01:30"
    assert updated["sys_created_on"] == "2025-06-01 12:00:00"
    assert updated["sys_mod_count"] == "1"
    assert updated["resolved_at"] == "2025-06-01 12:01:30"
    assert updated["active"] == "false"

    put = await writable_api.put(
        f"/api/now/table/incident/{sys_id}",
        json={"assignment_group": "Service Desk"},  # a reference by display value
        params={"sysparm_fields": "assignment_group,short_description,sys_mod_count"},
    )
    assert put.status_code == 200
    group = put.json()["result"]["assignment_group"]
    stored_group = instance.get("sys_user_group", group["value"])
    assert stored_group is not None
    assert stored_group["name"] == "Service Desk"
    assert put.json()["result"]["short_description"] == "Disk full on lnx-db-00042"  # PUT merges
    assert put.json()["result"]["sys_mod_count"] == "2"

    deleted = await writable_api.delete(f"/api/now/table/incident/{sys_id}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await writable_api.get(f"/api/now/table/incident/{sys_id}")).status_code == 404
    assert (await writable_api.delete(f"/api/now/table/incident/{sys_id}")).status_code == 404
    assert (
        await writable_api.patch(f"/api/now/table/incident/{sys_id}", json={"state": "7"})
    ).status_code == 404


@pytest.mark.anyio
async def test_post_uses_only_the_first_record_and_can_create_a_table(
    instance: ServiceNowSandbox, writable_api: httpx.AsyncClient
) -> None:
    before = instance.count("incident")
    response = await writable_api.post(
        "/api/now/table/incident",
        json=[{"short_description": "first"}, {"short_description": "second"}],
    )
    assert response.status_code == 201
    assert instance.count("incident") == before + 1
    assert response.json()["result"]["short_description"] == "first"

    assert (await writable_api.get("/api/now/table/u_syncline_probe")).status_code == 400
    custom = await writable_api.post(
        "/api/now/table/u_syncline_probe", json={"u_name": "probe", "u_size": 3}
    )
    assert custom.status_code == 201
    assert custom.json()["result"]["u_size"] == "3"
    listed = await writable_api.get("/api/now/table/u_syncline_probe")
    assert [r["u_name"] for r in listed.json()["result"]] == ["probe"]

    linux = await writable_api.post(
        "/api/now/table/cmdb_ci_linux_server", json={"name": "lnx-new-99999", "ram": "8192"}
    )
    assert linux.json()["result"]["sys_class_name"] == "cmdb_ci_linux_server"
    servers = await writable_api.get(
        "/api/now/table/cmdb_ci_server", params={"sysparm_query": "name=lnx-new-99999"}
    )
    assert len(servers.json()["result"]) == 1


@pytest.mark.anyio
async def test_input_display_value_turns_labels_into_values(
    writable_api: httpx.AsyncClient,
) -> None:
    response = await writable_api.post(
        "/api/now/table/incident",
        params={"sysparm_input_display_value": "true"},
        json={"short_description": "x", "impact": "1 - High", "urgency": "1 - High"},
    )
    result = response.json()["result"]
    assert (result["impact"], result["urgency"], result["priority"]) == ("1", "1", "1")


def test_python_update_bumps_updated_on_and_mod_count(instance: ServiceNowSandbox) -> None:
    target = instance.records("cmdb_ci_server")[0]
    instance.set_now(NOW + timedelta(days=1))
    updated = instance.update("cmdb_ci_server", target["sys_id"], {"ram": "999999"})
    assert updated["ram"] == "999999"
    assert updated["sys_updated_on"] == "2025-06-02 12:00:00"
    assert int(updated["sys_mod_count"]) == int(target["sys_mod_count"]) + 1
    assert instance.get("cmdb_ci_server", target["sys_id"]) == updated
    with pytest.raises(KeyError):
        instance.update("cmdb_ci_server", "f" * 32, {"ram": "1"})


def test_insert_fills_system_fields(instance: ServiceNowSandbox) -> None:
    inserted = instance.insert("cmdb_ci_server", {"name": "srv-new-00001", "u_rack": "R12"})
    assert SYS_ID.fullmatch(inserted["sys_id"])
    assert inserted["sys_created_on"] == inserted["sys_updated_on"] == "2025-06-01 12:00:00"
    assert inserted["sys_mod_count"] == "0"
    assert inserted["sys_class_name"] == "cmdb_ci_server"
    assert inserted["u_rack"] == "R12"
    assert instance.count("cmdb_ci_server") == 2_501
    # A new column reaches every record of the table, empty.
    assert all(record["u_rack"] in ("", "R12") for record in instance.records("cmdb_ci_server"))
    incident = instance.insert("incident", {"opened_at": "2025-05-30T08:15:00"})
    assert incident["opened_at"] == "2025-05-30 08:15:00"  # stored in the canonical form


@pytest.mark.anyio
async def test_writes_invalidate_cached_query_results(
    instance: ServiceNowSandbox, writable_api: httpx.AsyncClient
) -> None:
    params = {"sysparm_query": "ram>=1000000", "sysparm_fields": "sys_id"}
    assert (await writable_api.get("/api/now/table/cmdb_ci_server", params=params)).json() == {
        "result": []
    }
    target = instance.records("cmdb_ci_server")[5]["sys_id"]
    instance.update("cmdb_ci_server", target, {"ram": "2000000"})
    after = await writable_api.get("/api/now/table/cmdb_ci_server", params=params)
    assert after.json() == {"result": [{"sys_id": target}]}


# --- touch, clock, determinism --------------------------------------------------------------


def test_touch_changes_distinct_records_now_and_is_deterministic(
    instance: ServiceNowSandbox,
) -> None:
    before = {r["sys_id"]: r for r in instance.records("cmdb_ci_server")}
    instance.set_now(NOW + timedelta(hours=2))
    touched = instance.touch("cmdb_ci_server", 40, seed=1)
    assert len(touched) == len(set(touched)) == 40
    watched = ("os_version", "ram", "operational_status", "disk_space", "support_group",
               "assigned_to", "cpu_count")  # fmt: skip
    for sys_id in touched:
        after = instance.get("cmdb_ci_server", sys_id)
        assert after is not None
        assert after["sys_updated_on"] == "2025-06-01 14:00:00"
        assert after["sys_updated_by"] == "discovery"
        assert int(after["sys_mod_count"]) == int(before[sys_id]["sys_mod_count"]) + 1
        assert any(after[name] != before[sys_id][name] for name in watched), sys_id
    untouched = set(before) - set(touched)
    assert all(instance.get("cmdb_ci_server", s) == before[s] for s in sorted(untouched)[:200])

    again = ServiceNowSandbox(SMALL, now=NOW)
    assert again.touch("cmdb_ci_server", 40, seed=1) == touched
    assert again.touch("incident", 10, seed=1) != []
    with pytest.raises(ValueError, match="cannot touch"):
        again.touch("incident", 10_000)


def test_seed_is_deterministic_for_seed_and_clock() -> None:
    config = SMALL.model_copy(update={"cmdb_ci_server": 300})
    first, second = ServiceNowSandbox(config, now=NOW), ServiceNowSandbox(config, now=NOW)
    for table in ("cmdb_ci_server", "incident", "sys_user", "sys_user_group"):
        assert first.records(table) == second.records(table)
    other = ServiceNowSandbox(config.model_copy(update={"seed": 12}), now=NOW)
    assert other.records("cmdb_ci_server") != first.records("cmdb_ci_server")
    assert first.count("sys_user") == 150
    assert first.count("incident") == 200


@pytest.mark.anyio
async def test_seeded_records_have_exactly_the_columns_of_their_table(
    seeded: ServiceNowSandbox, api: httpx.AsyncClient
) -> None:
    """Every seeded value is visible through the API, and every column has a value."""
    for table in ("incident", "sys_user", "cmdb_ci_server"):
        response = await api.get(f"/api/now/table/{table}", params={"sysparm_limit": 1})
        columns = set(response.json()["result"][0])
        for record in seeded.records(table):
            assert set(record) == columns, set(record) ^ columns
            assert all(isinstance(value, str) for value in record.values())


def test_clock_is_frozen_once_set_and_moves_with_advance() -> None:
    sandbox = ServiceNowSandbox(SMALL.model_copy(update={"cmdb_ci_server": 5}))
    assert abs(sandbox.now() - datetime.now(UTC)) < timedelta(seconds=5)
    assert sandbox.now().microsecond == 0
    sandbox.set_now(datetime(2030, 1, 1, 0, 0, 0))  # naive means UTC
    assert sandbox.now() == datetime(2030, 1, 1, tzinfo=UTC)
    sandbox.advance(0.6)
    sandbox.advance(0.6)
    assert sandbox.now() == datetime(2030, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_cmdb_tables_follow_the_class_hierarchy(seeded: ServiceNowSandbox) -> None:
    servers = seeded.records("cmdb_ci_server")
    linux = seeded.records("cmdb_ci_linux_server")
    assert linux
    assert all(r["sys_class_name"] == "cmdb_ci_linux_server" for r in linux)
    assert seeded.count("cmdb_ci") == len(servers)
    unix = {r["sys_class_name"] for r in seeded.records("cmdb_ci_unix_server")}
    assert unix <= {"cmdb_ci_aix_server", "cmdb_ci_solaris_server"}
    assert unix
    windows_id = next(r["sys_id"] for r in servers if r["sys_class_name"] == "cmdb_ci_win_server")
    assert seeded.get("cmdb_ci_linux_server", windows_id) is None
    assert seeded.get("cmdb_ci", windows_id) is not None


# --- admin routes ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_admin_routes(instance: ServiceNowSandbox) -> None:
    app = build_app(instance)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8701"
    ) as admin:
        assert (await admin.get("/healthz")).status_code == 200
        touched = await admin.post(
            "/sandbox/servicenow/touch", json={"table": "cmdb_ci_server", "count": 5, "seed": 1}
        )
        assert touched.status_code == 200
        assert touched.json()["sys_ids"] == ServiceNowSandbox(SMALL, now=NOW).touch(
            "cmdb_ci_server", 5, seed=1
        )
        created = await admin.post(
            "/sandbox/servicenow/records",
            json={"table": "incident", "fields": {"short_description": "from admin"}},
        )
        assert created.status_code == 201
        assert instance.get("incident", created.json()["sys_id"]) is not None
        faults = await admin.put("/sandbox/servicenow/faults", json={"rate_limit_every": 1})
        assert faults.json()["rate_limit_every"] == 1
        api_response = await admin.get(
            "/api/now/table/incident", auth=("admin", "sandbox"), params={"sysparm_limit": 1}
        )
        assert api_response.status_code == 429
        stats = (await admin.get("/sandbox/servicenow/stats")).json()
        assert stats["requests_total"] == 1
        assert stats["responses_by_status"] == {"429": 1}
        assert stats["rate_limited"] == 1
        assert stats["rate_limited_per_second"] == 0
        clock = await admin.post("/sandbox/servicenow/clock", json={"advance_seconds": 60})
        assert clock.json()["now"] == "2025-06-01T12:01:00+00:00"
        invalid = await admin.post("/sandbox/servicenow/touch", json={"table": "incident"})
        assert invalid.status_code == 422
        too_many = await admin.post(
            "/sandbox/servicenow/touch", json={"table": "incident", "count": 100_000}
        )
        assert too_many.status_code == 400

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("192.0.2.10", 40000)),
        base_url="http://sandbox.example",
    ) as remote:
        assert (await remote.get("/sandbox/servicenow/stats")).status_code == 403


# --- the vendor's description ---------------------------------------------------------------


@pytest.fixture(scope="module")
def table_contract() -> OpenAPIContract:
    return OpenAPIContract.load(
        SERVICENOW_TABLE_API,
        validate_spec=True,
        server_url=INSTANCE,
        path_rewrites={r"^/api/now/v[12]/": "/api/now/"},
    )


def signed(request: httpx.Request) -> httpx.Request:
    return next(httpx.BasicAuth("admin", "sandbox").auth_flow(request))


@pytest.mark.anyio
async def test_requests_used_against_the_sandbox_match_the_vendor_description(
    seeded: ServiceNowSandbox, table_contract: OpenAPIContract
) -> None:
    checked: list[httpx.Request] = []

    async def check(request: httpx.Request) -> None:
        table_contract.validate_request(request)
        checked.append(request)

    async with client_for(seeded, event_hooks={"request": [check]}) as client:
        listed = await client.get(
            "/api/now/table/incident",
            params={
                "sysparm_query": "active=true^ORDERBYsys_updated_on",
                "sysparm_fields": "sys_id,number,priority",
                "sysparm_limit": 50,
                "sysparm_offset": 0,
                "sysparm_display_value": "all",
                "sysparm_exclude_reference_link": "true",
                "sysparm_no_count": "false",
            },
        )
        assert listed.status_code == 200
        created = await client.post(
            "/api/now/table/incident", json={"short_description": "contract check"}
        )
        assert created.status_code == 201
        sys_id = created.json()["result"]["sys_id"]
        assert (await client.get(f"/api/now/v2/table/incident/{sys_id}")).status_code == 200
        assert (
            await client.patch(f"/api/now/table/incident/{sys_id}", json={"state": "2"})
        ).status_code == 200
        assert (await client.delete(f"/api/now/table/incident/{sys_id}")).status_code == 204
    assert len(checked) == 5


def test_contract_rejects_what_the_description_forbids(table_contract: OpenAPIContract) -> None:
    def problems(request: httpx.Request) -> list[str]:
        with pytest.raises(ContractViolationError) as raised:
            table_contract.validate_request(request)
        assert str(request.url) in str(raised.value)
        return raised.value.problems

    assert (
        "PathNotFound"
        in problems(signed(httpx.Request("GET", f"{INSTANCE}/api/now/tables/incident")))[0]
    )
    assert (
        "OperationNotFound"
        in problems(signed(httpx.Request("PATCH", f"{INSTANCE}/api/now/table/incident")))[0]
    )
    assert "Security" in problems(httpx.Request("GET", f"{INSTANCE}/api/now/table/incident"))[0]
    assert "text/plain" in problems(
        signed(
            httpx.Request(
                "POST", f"{INSTANCE}/api/now/table/incident", content=b"x",
                headers={"Content-Type": "text/plain"},
            )
        )
    )[0]  # fmt: skip
    assert (
        "ServerNotFound"
        in problems(
            signed(httpx.Request("GET", "https://elsewhere.example.com/api/now/table/incident"))
        )[0]
    )


def test_undeclared_query_parameters_are_caught_only_when_asked(
    table_contract: OpenAPIContract,
) -> None:
    typo = signed(
        httpx.Request("GET", f"{INSTANCE}/api/now/table/incident", params={"sysparm_limt": "10"})
    )
    # The export declares its parameters without schemas, and openapi-core ignores
    # undeclared query parameters: an ill-typed limit or a typo passes by default.
    assert table_contract.problems(typo) == []
    ill_typed = signed(
        httpx.Request("GET", f"{INSTANCE}/api/now/table/incident", params={"sysparm_limit": "ten"})
    )
    assert table_contract.problems(ill_typed) == []

    strict = OpenAPIContract.load(
        SERVICENOW_TABLE_API,
        server_url=INSTANCE,
        reject_undeclared_query=True,
        # Documented by ServiceNow but missing from this export's GET list.
        tolerated_query_parameters={"sysparm_offset"},
    )
    (problem,) = strict.problems(typo)
    assert "'sysparm_limt' is not declared for GET /api/now/table/{tableName}" in problem
    paged = signed(
        httpx.Request(
            "GET",
            f"{INSTANCE}/api/now/table/incident",
            params={"sysparm_limit": "10", "sysparm_offset": "10"},
        )
    )
    assert strict.problems(paged) == []


def test_contract_handles_the_exports_own_server_url() -> None:
    as_exported = OpenAPIContract.load(
        SERVICENOW_TABLE_API
    )  # "https://example.service-now.com:443"
    request = signed(httpx.Request("GET", "https://example.service-now.com/api/now/table/x"))
    assert as_exported.problems(request) == []
    templated = OpenAPIContract.load(
        SERVICENOW_TABLE_API, server_url="https://{instance}.service-now.com"
    )
    assert templated.problems(signed(httpx.Request("GET", f"{INSTANCE}/api/now/table/x"))) == []
