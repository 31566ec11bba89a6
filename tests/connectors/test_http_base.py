"""The shared HTTP layer: retries, error classes, rate-limit headers, pagination strategies."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx
import pytest

from connectors.base import (
    AuthError,
    CursorTokenPaginator,
    FatalError,
    LinkHeaderPaginator,
    NextUrlPaginator,
    NotFoundError,
    RateLimitedError,
    RestClient,
    RetriableError,
    RetryPolicy,
)
from connectors.base.http import parse_reset, parse_retry_after
from connectors.base.pagination import PageRequest
from connectors.base.ratelimit import RequestRateLimiter

FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.02)


class Server:
    """A scripted vendor: answers requests in order and remembers what it received."""

    def __init__(self, *answers: httpx.Response | Callable[[httpx.Request], httpx.Response]):
        self.answers = list(answers)
        self.received: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request) if callable(answer) else answer


def client(server: Server, **kw: object) -> RestClient:
    return RestClient(
        "https://vendor.example",
        transport=httpx.MockTransport(server),
        retry=kw.pop("retry", FAST),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def get(rest: RestClient, url: str = "/things") -> httpx.Response:
    async def call() -> httpx.Response:
        async with rest:
            return await rest.request("GET", url)

    return asyncio.run(call())


def test_retries_transient_failures_until_success() -> None:
    server = Server(httpx.Response(503), httpx.Response(502), httpx.Response(200, json={"ok": 1}))
    rest = client(server)
    assert get(rest).json() == {"ok": 1}
    assert len(server.received) == 3
    assert rest.stats.retries == 2
    assert dict(rest.stats.by_status) == {503: 1, 502: 1, 200: 1}


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, FatalError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (422, FatalError),
    ],
)
def test_client_errors_are_fatal_and_never_retried(status: int, error: type[Exception]) -> None:
    server = Server(httpx.Response(status, text="nope"))
    with pytest.raises(error) as caught:
        get(client(server))
    assert len(server.received) == 1
    assert caught.value.retriable is False  # type: ignore[attr-defined]
    assert f"HTTP {status}" in str(caught.value) and "GET https://vendor.example/things" in str(
        caught.value
    )


def test_retry_after_is_honoured_and_pauses_every_request() -> None:
    server = Server(httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(200, json={}))
    rest = client(server)
    started = time.monotonic()
    get(rest)
    waited = time.monotonic() - started
    assert waited >= 0.95, "a 429 with Retry-After: 1 must hold the next request ~1 s"
    assert rest.stats.rate_limited == 1


def test_gives_up_after_max_attempts_with_a_retriable_error() -> None:
    server = Server(httpx.Response(500, text="boom"))
    with pytest.raises(RetriableError) as caught:
        get(client(server))
    assert len(server.received) == FAST.max_attempts
    assert "boom" in str(caught.value)


def test_connection_failures_are_retried() -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={})

    assert get(client(Server(flaky))).status_code == 200
    assert calls["n"] == 2


def test_errors_and_logs_never_carry_the_query_string_or_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = Server(httpx.Response(503), httpx.Response(400))
    rest = RestClient(
        "https://vendor.example",
        auth=httpx.BasicAuth("svc", "s3cr3t-password"),
        transport=httpx.MockTransport(server),
        retry=FAST,
    )
    with pytest.raises(FatalError) as caught:
        get(rest, "/things?api_key=k3y-in-query")
    text = str(caught.value) + caplog.text
    assert "k3y-in-query" not in text and "s3cr3t-password" not in text


def test_remaining_zero_waits_for_the_reset() -> None:
    reset_at = time.time() + 1
    exhausted = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset_at)}
    server = Server(httpx.Response(200, headers=exhausted), httpx.Response(200))
    rest = client(server)

    async def twice() -> float:
        async with rest:
            await rest.request("GET", "/a")
            started = time.monotonic()
            await rest.request("GET", "/b")
            return time.monotonic() - started

    assert asyncio.run(twice()) >= 0.5


def test_request_rate_limiter_paces_requests() -> None:
    limiter = RequestRateLimiter(20.0, burst=1)

    async def six() -> float:
        started = time.monotonic()
        for _ in range(6):
            await limiter.acquire()
        return time.monotonic() - started

    assert asyncio.run(six()) >= 5 / 20 * 0.9


def test_header_parsing() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_reset("1700000010", now=1700000000.0) == 10.0
    assert parse_reset("30", now=1700000000.0) == 30.0
    # Jira's form; 1700000000 is 2023-11-14T22:13:20Z.
    assert parse_reset("2023-11-14T22:14Z", now=1700000000.0) == 40.0
    assert parse_reset("2023-11-14T22:13Z", now=1700000000.0) == 0.0


def paged(paginator: object, pages: dict[str, httpx.Response]) -> list[object]:
    def route(request: httpx.Request) -> httpx.Response:
        key = request.url.path + ("?" + request.url.query.decode() if request.url.query else "")
        if request.content:
            key += " " + request.content.decode()
        return pages[key]

    rest = client(Server(route))

    async def collect(first: PageRequest) -> list[object]:
        bodies = []
        async with rest:
            async for response in rest.paginate(first, paginator):  # type: ignore[arg-type]
                bodies.append(response.json()["items"])
        return bodies

    first = PageRequest("GET", "/items") if not isinstance(paginator, CursorTokenPaginator) else (
        PageRequest("POST", "/search", json={"q": "x"})
    )  # fmt: skip
    return asyncio.run(collect(first))


def test_link_header_pagination() -> None:
    pages = {
        "/items": httpx.Response(
            200,
            json={"items": [1]},
            headers={"Link": '<https://vendor.example/items?p=2>; rel="next"'},
        ),
        "/items?p=2": httpx.Response(200, json={"items": [2]}),
    }
    assert paged(LinkHeaderPaginator(), pages) == [[1], [2]]


def test_next_url_pagination() -> None:
    pages = {
        "/items": httpx.Response(
            200, json={"items": [1], "done": False, "nextRecordsUrl": "/items/2"}
        ),
        "/items/2": httpx.Response(200, json={"items": [2], "done": True}),
    }
    assert paged(NextUrlPaginator(), pages) == [[1], [2]]


def test_cursor_token_pagination() -> None:
    pages = {
        '/search {"q":"x"}': httpx.Response(200, json={"items": [1], "nextPageToken": "t2"}),
        '/search {"q":"x","nextPageToken":"t2"}': httpx.Response(
            200, json={"items": [2], "isLast": True}
        ),
    }
    assert paged(CursorTokenPaginator(), pages) == [[1], [2]]


def test_rate_limited_error_carries_retry_after() -> None:
    server = Server(httpx.Response(429, headers={"Retry-After": "0"}, text=json.dumps({})))
    with pytest.raises(RateLimitedError) as caught:
        get(client(server, retry=RetryPolicy(max_attempts=1)))
    assert caught.value.retry_after == 0.0
