"""ServiceNow Table API client (``/api/now/table/{table}``).

Reads page by ``Link`` header with ``sysparm_limit``/``sysparm_offset``; writes one record per
request (the Table API ignores all but the first record of a POSTed list).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, Field, SecretStr, ValidationError

from connectors.base import (
    LinkHeaderPaginator,
    RequestRateLimiter,
    RestClient,
    RetryPolicy,
)
from connectors.base.pagination import PageRequest
from connectors.servicenow.models import (
    ListResult,
    ServiceNowErrorBody,
    SingleResult,
    flatten_record,
)
from connectors.servicenow.query import EncodedQuery

DisplayValue = Literal["false", "true", "all"]

# Lookups by a list of values are split so the URL stays far below common proxy limits.
LOOKUP_CHUNK = 100


class ServiceNowSettings(BaseModel):
    """Where and how to reach one ServiceNow instance."""

    instance_url: str = Field(description="e.g. https://acme.service-now.com")
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = Field(default=None, description="OAuth bearer token")
    page_size: int = Field(default=1_000, ge=1, le=10_000)
    display_value: DisplayValue = Field(
        default="false",
        description="reads: raw values (false), display values (true) or both (all)",
    )
    requests_per_second: float | None = Field(default=None, gt=0)
    timeout_seconds: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)

    def auth(self) -> httpx.Auth:
        if self.token is not None:
            return _BearerAuth(self.token.get_secret_value())
        if self.username is None or self.password is None:
            raise ValueError("ServiceNow settings need a token or a username and password")
        return httpx.BasicAuth(self.username, self.password.get_secret_value())


class _BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class DriftCorrectingPaginator(LinkHeaderPaginator):
    """Link-header paging that does not skip records when the result set shrinks mid-read.

    Offset paging over a live table skips rows whenever rows *before* the current offset leave
    the result set (they were updated, so they no longer match the read window): every later
    row moves up. Each page's ``X-Total-Count`` says how many left since the last page; the
    rows skipped are the ones just before this page's offset, so the next request backs up by
    that many. Rows read twice are harmless (the engine dedupes by key); rows skipped would be
    lost for good, since the cursor moves past them.
    """

    def __init__(self) -> None:
        self._last_total: int | None = None

    def next_request(self, sent: PageRequest, response: httpx.Response) -> PageRequest | None:
        following = super().next_request(sent, response)
        total_header = response.headers.get("X-Total-Count", "")
        total = int(total_header) if total_header.isdigit() else None
        shrunk = 0
        if total is not None and self._last_total is not None and total < self._last_total:
            shrunk = self._last_total - total
        if total is not None:
            self._last_total = total
        if not shrunk:
            return following
        current = str(response.request.url)
        return PageRequest(method="GET", url=_with_offset(current, _offset_of(current) - shrunk))


def _offset_of(url: str) -> int:
    params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    return int(params.get("sysparm_offset", "0") or 0)


def _with_offset(url: str, offset: int) -> str:
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    params["sysparm_offset"] = str(max(0, offset))
    return urlunsplit(parts._replace(query=urlencode(params)))


class ServiceNowClient(RestClient):
    system = "servicenow"

    def __init__(
        self, settings: ServiceNowSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        # X-Total-Count of the last page read: how many records the current read will yield.
        self.last_total_count: int | None = None
        super().__init__(
            settings.instance_url.rstrip("/"),
            auth=settings.auth(),
            transport=transport,
            timeout=settings.timeout_seconds,
            retry=RetryPolicy(max_attempts=settings.max_attempts),
            limiter=RequestRateLimiter(settings.requests_per_second, burst=4),
        )

    def error_detail(self, response: httpx.Response) -> str:
        try:
            body = ServiceNowErrorBody.model_validate_json(response.content)
        except ValidationError:
            return super().error_detail(response)
        parts = [body.error.message, body.error.detail or ""]
        return " / ".join(part for part in parts if part)

    @staticmethod
    def table_path(table: str, sys_id: str | None = None) -> str:
        return f"/api/now/table/{table}" + (f"/{sys_id}" if sys_id else "")

    async def iter_pages(
        self,
        table: str,
        *,
        query: EncodedQuery | str = "",
        fields: Iterable[str] | None = None,
        display_value: DisplayValue | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield the matching records page by page, references flattened to their sys_id."""
        params = {
            "sysparm_query": str(query),
            "sysparm_limit": str(page_size or self.settings.page_size),
            "sysparm_display_value": display_value or self.settings.display_value,
            "sysparm_exclude_reference_link": "true",
        }
        if fields:
            params["sysparm_fields"] = ",".join(fields)
        first = PageRequest(method="GET", url=self.table_path(table), params=params)
        async for response in self.paginate(first, DriftCorrectingPaginator()):
            total = response.headers.get("X-Total-Count", "")
            self.last_total_count = int(total) if total.isdigit() else None
            page = ListResult.model_validate_json(response.content).result
            yield [flatten_record(record) for record in page]

    async def get(self, table: str, sys_id: str) -> dict[str, Any] | None:
        response = await self.request("GET", self.table_path(table, sys_id), expected={404})
        if response.status_code == 404:
            return None
        return flatten_record(SingleResult.model_validate_json(response.content).result)

    async def create(self, table: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        response = await self.request("POST", self.table_path(table), json=dict(fields))
        return flatten_record(SingleResult.model_validate_json(response.content).result)

    async def update(self, table: str, sys_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        response = await self.request("PATCH", self.table_path(table, sys_id), json=dict(fields))
        return flatten_record(SingleResult.model_validate_json(response.content).result)

    async def delete(self, table: str, sys_id: str) -> None:
        await self.request("DELETE", self.table_path(table, sys_id))

    async def find_by(
        self, table: str, field: str, values: Iterable[str], *, fields: Iterable[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Records whose ``field`` is one of ``values``, by that value (one GET per 100)."""
        wanted = sorted({value for value in values if value})
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = wanted[start : start + LOOKUP_CHUNK]
            query = EncodedQuery().where(field, "IN", chunk).order_by("sys_id")
            async for page in self.iter_pages(table, query=query, fields=fields):
                for record in page:
                    found[str(record.get(field, ""))] = record
        return found
