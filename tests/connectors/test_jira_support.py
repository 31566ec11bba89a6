"""What the Jira connector tests share (no tests here): the Jira sandbox in process, behind a
transport that checks every request the connector sends against Atlassian's OpenAPI
description (REST v3) and keeps them for the tests to look at."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from connectors.jira import JiraClient, JiraIssueSource, JiraIssueTarget, JiraSettings
from sandboxes.jira import JiraSandbox, JiraSandboxConfig
from tests.support.openapi_contract import JIRA_PLATFORM_API, OpenAPIContract

SITE_URL = "https://sandbox.atlassian.net"
EMAIL = "integration@example.com"
# The sandbox's published demo credentials, not secrets.
API_TOKEN = "sandbox-api-token"
START = datetime(2026, 3, 10, 9, 5, 40, tzinfo=UTC)


@functools.cache
def load_contract() -> OpenAPIContract:
    """Atlassian's description (2.4 MB), loaded once for the session, not itself checked."""
    return OpenAPIContract.load(JIRA_PLATFORM_API, validate_spec=False, server_url=SITE_URL)


# Called after each exchange with the request and the response (None when it failed).
AfterHook = Callable[[httpx.Request, httpx.Response | None], None]


@dataclass
class CheckedTransport(httpx.AsyncBaseTransport):
    """The sandbox's app in process; every request is checked against the description
    before the sandbox sees it (a violation fails the test where it is sent)."""

    app: Any
    contract: OpenAPIContract
    sent: list[httpx.Request] = field(default_factory=list)
    after: AfterHook | None = None

    def __post_init__(self) -> None:
        self.inner = httpx.ASGITransport(app=self.app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.contract.validate_request(request)
        self.sent.append(request)
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.TransportError:
            if self.after is not None:
                self.after(request, None)
            raise
        await response.aread()
        if self.after is not None:
            self.after(request, response)
        return response

    def bodies(self, path_end: str, method: str = "POST") -> list[dict[str, Any]]:
        """The JSON bodies of the requests sent to a path ending in ``path_end``."""
        return [
            json.loads(request.content)
            for request in self.sent
            if request.method == method and request.url.path.endswith(path_end)
        ]


class Site:
    """A sandbox site with the connector's client, source and target on it."""

    def __init__(self, *, time_zone: str = "UTC", **config: Any) -> None:
        self.sandbox = JiraSandbox(
            JiraSandboxConfig(issues=0, time_zone=time_zone, **config), now=START
        )
        self.transport = CheckedTransport(self.sandbox.app, load_contract())
        self.settings = JiraSettings(
            base_url=SITE_URL,
            email=EMAIL,
            api_token=SecretStr(API_TOKEN),
            time_zone=time_zone,
            project="OPS",
            index_lag_seconds=0,
        )
        self.client = JiraClient(self.settings, transport=self.transport)

    def source(self, **options: Any) -> JiraIssueSource:
        return JiraIssueSource(self.client, "OPS", **options)

    def target(self) -> JiraIssueTarget:
        return JiraIssueTarget(self.client, "OPS")

    def at(self, moment: datetime) -> None:
        self.sandbox.set_now(moment)

    async def close(self) -> None:
        await self.client.aclose()
        self.sandbox.close()
