"""Helpers for ServiceNow connector tests: the sandbox behind a transport that checks every
request against the vendor's description and can change what the sandbox answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd

from connectors.base.records import ReadWindow
from connectors.servicenow import ServiceNowClient, ServiceNowSettings, ServiceNowTableSource
from sandboxes.servicenow import ServiceNowSandbox
from tests.conftest import SANDBOX_URL
from tests.support.openapi_contract import SERVICENOW_TABLE_API, OpenAPIContract

SANDBOX_HOST = httpx.URL(SANDBOX_URL).host
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# (request number, request, parsed body) -> the body to answer with instead (or None: as is).
Alter = Callable[[int, httpx.Request, dict[str, Any]], dict[str, Any] | None]


def load_contract() -> OpenAPIContract:
    # The instance export omits sysparm_offset, which the Table API documents and puts in
    # every Link header it sends; anything else undeclared is a contract error.
    return OpenAPIContract.load(
        SERVICENOW_TABLE_API,
        server_url=SANDBOX_URL,
        reject_undeclared_query=True,
        tolerated_query_parameters={"sysparm_offset"},
    )


class SandboxProxy(httpx.AsyncBaseTransport):
    """The sandbox, with every request validated against the description first.

    ``before(n)`` runs before the n-th request (from 0) reaches the sandbox; ``alter`` may
    replace the JSON body of a list answer (its headers kept, so ``X-Total-Count`` still
    counts what the sandbox counted); ``link_host`` rewrites ``Link`` URLs to another origin.
    Requests for any other host never reach the sandbox: they are kept in ``elsewhere`` and
    answered with an empty result, as a foreign server would gladly do.
    """

    def __init__(
        self,
        sandbox: ServiceNowSandbox,
        contract: OpenAPIContract,
        *,
        before: Callable[[int], None] | None = None,
        alter: Alter | None = None,
        link_host: str | None = None,
    ) -> None:
        self.inner = httpx.ASGITransport(app=sandbox.app)
        self.contract = contract
        self.before = before
        self.alter = alter
        self.link_host = link_host
        self.sent: list[httpx.Request] = []
        self.elsewhere: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        if request.url.host != SANDBOX_HOST:
            self.elsewhere.append(request)
            return httpx.Response(200, json={"result": []}, request=request)
        self.contract.validate_request(request)
        number = len(self.sent)
        if self.before is not None:
            self.before(number)
        self.sent.append(request)
        response = await self.inner.handle_async_request(request)
        if self.alter is None and self.link_host is None:
            return response
        content = await response.aread()
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() != "content-length"
        ]
        if self.link_host is not None:
            headers = [
                (name, value.replace(SANDBOX_URL, self.link_host) if name == "link" else value)
                for name, value in headers
            ]
        if self.alter is not None and response.status_code == 200 and request.method == "GET":
            body = json.loads(content)
            if isinstance(body.get("result"), list):
                changed = self.alter(number, request, body)
                if changed is not None:
                    content = json.dumps(changed).encode()
        return httpx.Response(
            response.status_code, headers=headers, content=content, request=request
        )

    def list_requests(self) -> list[httpx.Request]:
        return [r for r in self.sent if r.method == "GET" and r.url.path.count("/") == 4]


def make_client(transport: httpx.AsyncBaseTransport, **settings: object) -> ServiceNowClient:
    values: dict[str, object] = {
        "instance_url": SANDBOX_URL,
        "username": "admin",
        "password": "sandbox",
        "page_size": 200,
    }
    values.update(settings)
    return ServiceNowClient(ServiceNowSettings.model_validate(values), transport=transport)


def read_all(source: ServiceNowTableSource, window: ReadWindow) -> pd.DataFrame:
    async def collect() -> pd.DataFrame:
        try:
            frames = [batch async for batch in source.read(window)]
        finally:
            await source.aclose()
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return asyncio.run(collect())


def in_order(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records in the read order: by sys_updated_on, then sys_id."""
    return sorted(records, key=lambda r: (r["sys_updated_on"], r["sys_id"]))
