"""The shared HTTP layer: retries, error classes, rate-limit headers, pagination strategies."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from connectors.base import (
    AuthError,
    ConnectorError,
    CursorTokenPaginator,
    FatalError,
    InvalidResponseError,
    LinkHeaderPaginator,
    NextUrlPaginator,
    NotFoundError,
    RateLimitedError,
    RestClient,
    RetriableError,
    RetryPolicy,
)
from connectors.base.errors import UncertainWriteError
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


# --- requests stay on the configured origin ----------------------------------------------


def followed(rest: RestClient, first: PageRequest, paginator: object) -> list[object]:
    async def collect() -> list[object]:
        bodies = []
        async with rest:
            async for response in rest.paginate(first, paginator):  # type: ignore[arg-type]
                bodies.append(response.json()["items"])
        return bodies

    return asyncio.run(collect())


def two_hosts(next_url: str) -> Server:
    """Page one names ``next_url`` as the next page, in a Link header and in the body."""

    def route(request: httpx.Request) -> httpx.Response:
        if "p" not in request.url.params:
            return httpx.Response(
                200,
                json={"items": [1], "done": False, "nextRecordsUrl": next_url},
                headers={"Link": f'<{next_url}>; rel="next"'},
            )
        return httpx.Response(200, json={"items": [2], "done": True})

    return Server(route)


@pytest.mark.parametrize("paginator", [LinkHeaderPaginator(), NextUrlPaginator()])
@pytest.mark.parametrize(
    "next_url",
    [
        "https://collector.evil.example/items?p=2",
        "https://vendor.example:8443/items?p=2",  # same host, another port
        "http://vendor.example/items?p=2",  # same host, plain http
    ],
)
def test_a_next_page_on_another_origin_is_refused_before_anything_is_sent(
    paginator: object, next_url: str
) -> None:
    server = two_hosts(next_url)
    rest = client(server, auth=httpx.BasicAuth("svc", "s3cr3t"))
    with pytest.raises(FatalError) as caught:
        followed(rest, PageRequest("GET", "/items"), paginator)
    host = httpx.URL(next_url).host
    assert f"refusing to send a request to {host}" in str(caught.value)
    assert "nothing was sent" in str(caught.value)
    assert [str(request.url) for request in server.received] == ["https://vendor.example/items"]
    assert caught.value.retriable is False


def test_allowed_hosts_let_a_next_page_through() -> None:
    server = two_hosts("https://mirror.vendor.example/items?p=2")
    rest = client(server, allowed_hosts=["mirror.vendor.example"])
    assert followed(rest, PageRequest("GET", "/items"), LinkHeaderPaginator()) == [[1], [2]]
    assert [request.url.host for request in server.received] == [
        "vendor.example",
        "mirror.vendor.example",
    ]
    # Never down to plain http, whatever the list says; a port given must match.
    for url, allowed in [
        ("http://mirror.vendor.example/items", ["mirror.vendor.example"]),
        ("https://mirror.vendor.example:8443/items", ["mirror.vendor.example:443"]),
    ]:
        refused = client(Server(httpx.Response(200, json={})), allowed_hosts=allowed)
        with pytest.raises(FatalError, match=r"mirror\.vendor\.example"):
            get(refused, url)


def test_an_absolute_url_on_the_origin_is_fine() -> None:
    server = Server(httpx.Response(200, json={"ok": 1}))
    assert get(client(server), "https://vendor.example:443/things?x=1").json() == {"ok": 1}


# --- decoding bodies ------------------------------------------------------------------------


class Things(BaseModel):
    result: list[dict[str, object]]


GOOD = b'{"result": [{"id": "1"}, {"id": "2"}]}'


def json_body(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})


def fetch(rest: RestClient, method: str = "GET") -> Things:
    async def call() -> Things:
        async with rest:
            body, _ = await rest.request_model(method, "/things?token=k3y", Things)
            return body

    return asyncio.run(call())


def test_an_html_page_with_200_says_what_it_is_and_is_not_retried() -> None:
    page = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>SSO</body></html>"
    server = Server(httpx.Response(200, content=page, headers={"Content-Type": "text/html"}))
    rest = client(server, auth=httpx.BasicAuth("svc", "s3cr3t-password"))
    with pytest.raises(InvalidResponseError) as caught:
        fetch(rest)
    message = str(caught.value)
    assert message.startswith(
        "http HTTP 200 (GET https://vendor.example/things): expected JSON, got text/html: "
        "'<!DOCTYPE html><html><head><title>Sign in"
    )
    assert "login" in message and "credentials" in message
    assert "k3y" not in message and "s3cr3t" not in message and "Basic" not in message
    assert caught.value.retriable is False and len(server.received) == 1
    assert isinstance(caught.value.__cause__, ValidationError)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize("broken", [GOOD[:20], b"", b'{"result": [}'])
def test_a_body_cut_short_or_lost_is_retried_for_idempotent_methods(
    method: str, broken: bytes
) -> None:
    server = Server(json_body(broken), json_body(GOOD))
    rest = client(server)
    assert len(fetch(rest, method).result) == 2
    assert len(server.received) == 2
    assert rest.stats.retries == 1


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_body_cut_short_is_never_retried_for_other_methods(method: str) -> None:
    # The write was carried out and its answer lost on the way: the caller must settle it.
    server = Server(json_body(GOOD[:20]), json_body(GOOD))
    with pytest.raises(UncertainWriteError, match="cut short after 20 bytes") as caught:
        fetch(client(server), method)
    assert len(server.received) == 1
    cause = caught.value.__cause__
    assert isinstance(cause, InvalidResponseError) and cause.retriable is False
    assert caught.value.status == 200


def test_still_cut_short_after_every_attempt_gives_the_error() -> None:
    server = Server(json_body(b""))
    with pytest.raises(InvalidResponseError) as caught:
        fetch(client(server))
    assert str(caught.value) == (
        "http HTTP 200 (GET https://vendor.example/things): "
        "expected JSON, got an empty body (application/json)"
    )
    assert len(server.received) == FAST.max_attempts


def test_json_of_the_wrong_shape_is_fatal() -> None:
    server = Server(json_body(b'{"result": {"id": "1"}}'))
    with pytest.raises(InvalidResponseError, match=r"unexpected JSON for Things: result:"):
        fetch(client(server))
    assert len(server.received) == 1


def test_a_transport_error_keeps_its_cause() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(RetriableError) as caught:
        get(client(Server(refuse)))
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


# --- writes that cannot double ----------------------------------------------------------


def post(rest: RestClient, *, idempotent: bool | None = None) -> httpx.Response:
    async def call() -> httpx.Response:
        async with rest:
            return await rest.request("POST", "/things", json={"a": 1}, idempotent=idempotent)

    return asyncio.run(call())


def refuse_then(exc: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc("no connection", request=request)

    return answer


@pytest.mark.parametrize(
    "first",
    [
        refuse_then(httpx.ConnectError),
        refuse_then(httpx.ConnectTimeout),
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(503, headers={"Retry-After": "0"}),
    ],
    ids=["refused", "connect-timeout", "429", "503-retry-after"],
)
def test_a_create_that_never_reached_the_server_is_sent_again(first: object) -> None:
    server = Server(first, httpx.Response(201, json={"id": 1}))  # type: ignore[arg-type]
    assert post(client(server)).status_code == 201
    assert len(server.received) == 2


@pytest.mark.parametrize(
    ("first", "cause"),
    [
        (refuse_then(httpx.RemoteProtocolError), httpx.RemoteProtocolError),
        (refuse_then(httpx.ReadTimeout), httpx.ReadTimeout),
        (httpx.Response(500, text="boom"), RetriableError),
        (httpx.Response(502), RetriableError),
    ],
    ids=["dropped", "read-timeout", "500", "502"],
)
def test_a_create_that_may_have_reached_the_server_is_uncertain_not_resent(
    first: object, cause: type[BaseException]
) -> None:
    server = Server(first, httpx.Response(201, json={"id": 1}))  # type: ignore[arg-type]
    with pytest.raises(UncertainWriteError) as caught:
        post(client(server))
    assert len(server.received) == 1
    assert isinstance(caught.value, RetriableError) and caught.value.retriable is False
    assert isinstance(caught.value.__cause__, cause)
    assert "may or may not have been carried out" in str(caught.value)


def test_a_request_declared_idempotent_keeps_its_retries() -> None:
    server = Server(httpx.Response(500), httpx.Response(200, json={}))
    assert post(client(server), idempotent=True).status_code == 200
    assert len(server.received) == 2


# --- hooks: classify, error code, limits --------------------------------------------------


class Salesforce(RestClient):
    system = "salesforce"

    def classify(self, response: httpx.Response) -> type[ConnectorError] | None:
        if response.status_code == 403 and self.error_code(response) == "REQUEST_LIMIT_EXCEEDED":
            return RateLimitedError
        return None


LIMIT_EXCEEDED = [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit"}]


def test_a_classify_hook_makes_a_403_rate_limiting_with_status_and_vendor_code() -> None:
    server = Server(httpx.Response(403, json=LIMIT_EXCEEDED))
    rest = Salesforce(
        "https://vendor.example",
        transport=httpx.MockTransport(server),
        retry=RetryPolicy(max_attempts=1),
    )
    with pytest.raises(RateLimitedError) as caught:
        get(rest)
    assert caught.value.status == 403 and caught.value.code == "REQUEST_LIMIT_EXCEEDED"
    assert "REQUEST_LIMIT_EXCEEDED" in str(caught.value)
    # Retried like any rate limit; an ordinary 403 is still an AuthError.
    server = Server(httpx.Response(403, json=LIMIT_EXCEEDED), httpx.Response(200, json={}))
    rest = Salesforce("https://vendor.example", transport=httpx.MockTransport(server), retry=FAST)
    assert get(rest).status_code == 200
    denied = Server(httpx.Response(403, json=[{"errorCode": "INSUFFICIENT_ACCESS"}]))
    rest = Salesforce("https://vendor.example", transport=httpx.MockTransport(denied), retry=FAST)
    with pytest.raises(AuthError) as refused:
        get(rest)
    assert refused.value.code == "INSUFFICIENT_ACCESS" and len(denied.received) == 1


def test_an_observe_limits_hook_sees_every_answer() -> None:
    seen: list[str] = []

    class Jira(RestClient):
        def observe_limits(self, response: httpx.Response) -> None:
            seen.append(response.headers.get("RateLimit-Reason", ""))

    server = Server(
        httpx.Response(503, headers={"RateLimit-Reason": "jira-burst-based"}),
        httpx.Response(200, json={}),
    )
    get(Jira("https://vendor.example", transport=httpx.MockTransport(server), retry=FAST))
    assert seen == ["jira-burst-based", ""]


# --- a next-page token seen twice ---------------------------------------------------------


def test_a_repeated_cursor_token_stops_the_read_naming_it() -> None:
    pages = {
        '/search {"q":"x"}': httpx.Response(200, json={"items": [1], "nextPageToken": "t2"}),
        '/search {"q":"x","nextPageToken":"t2"}': httpx.Response(
            200, json={"items": [2], "nextPageToken": "t2"}
        ),
    }
    with pytest.raises(FatalError, match="next-page token 't2' came back a second time"):
        paged(CursorTokenPaginator(), pages)


def test_a_repeated_next_url_stops_the_read_without_showing_its_query() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"items": [1], "done": False, "nextRecordsUrl": "/items/2?key=k3y"}
        )

    rest = client(Server(route))
    with pytest.raises(FatalError) as caught:
        followed(rest, PageRequest("GET", "/items"), NextUrlPaginator())
    assert "next-page URL '/items/2' (query string not shown)" in str(caught.value)
    assert "k3y" not in str(caught.value)


# --- resuming after a Retry-After -----------------------------------------------------------


def test_requests_queued_behind_a_retry_after_resume_spread_out() -> None:
    sent: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(time.monotonic())
        if len(sent) == 1:
            return httpx.Response(429, headers={"Retry-After": "1"})
        return httpx.Response(200, json={})

    rest = client(Server(answer))

    async def burst() -> float:
        async with rest:
            first = asyncio.create_task(rest.request("GET", "/a"))
            await asyncio.sleep(0.05)  # the 429 has come back: the limiter is paused
            paused_at = time.monotonic()
            await asyncio.gather(first, *(rest.request("GET", f"/q{n}") for n in range(10)))
            return paused_at

    paused_at = asyncio.run(burst())
    resumed = sorted(sent[1:])
    assert len(resumed) == 11
    assert resumed[0] >= paused_at + 0.85, "nothing goes before the Retry-After ends"
    # Released together they would all leave within a few milliseconds.
    assert resumed[-1] - resumed[0] >= 0.05
    gaps = [later - earlier for earlier, later in itertools.pairwise(resumed)]
    assert max(gaps) < 0.2
