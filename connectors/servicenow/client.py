"""ServiceNow Table API client (``/api/now/table/{table}``).

Reads page by keyset: sorted by (cursor field, sys_id), each page asks for the rows after the
last one read, so records that change mid-read cannot shift the pages (see
``connectors.base.keyset``). ``Link`` headers are neither asked for nor followed. Writes go one
record per request (the Table API ignores all but the first record of a POSTed list).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from connectors.base import (
    FatalError,
    NotFoundError,
    RequestRateLimiter,
    RestClient,
    RetryPolicy,
)
from connectors.base.keyset import KeysetPage, Position, ReadTally, keyset_pages
from connectors.servicenow.models import (
    ListResult,
    ServiceNowErrorBody,
    SingleResult,
    flatten_record,
)
from connectors.servicenow.query import EncodedQuery, after_condition

DisplayValue = Literal["false", "true", "all"]

# Lookups by a list of values are split so the URL stays far below common proxy limits.
LOOKUP_CHUNK = 100


class ServiceNowSettings(BaseModel):
    """Where and how to reach one ServiceNow instance."""

    # A misspelt setting (``page_sise``) would otherwise be dropped without a word and the
    # default used in its place.
    model_config = ConfigDict(extra="forbid")

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
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="other host names of this instance (e.g. a custom domain) that requests "
        "may go to; a list, or one string with commas",
    )

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        # Spec connection values are scalars, so a list may arrive as "a.example,b.example".
        if isinstance(value, str):
            return [host.strip() for host in value.split(",") if host.strip()]
        return value

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


class ServiceNowClient(RestClient):
    """The Table API over the shared HTTP layer.

    Limits: an instance's rate limit rules answer ``X-RateLimit-Limit / -Remaining / -Reset``
    (reset in UNIX seconds), which the base ``observe_limits`` reads: none remaining holds
    every request until the reset. A refused request is a 429 with ``Retry-After``.
    """

    system = "servicenow"
    html_hint = (
        "an HTML page, not the Table API: a login or SSO page means instance_url or the "
        "credentials are wrong"
    )

    def __init__(
        self, settings: ServiceNowSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        # What the read under way will have gone through, as last counted (X-Total-Count).
        self.last_total_count: int | None = None
        super().__init__(
            settings.instance_url.rstrip("/"),
            auth=settings.auth(),
            transport=transport,
            timeout=settings.timeout_seconds,
            retry=RetryPolicy(max_attempts=settings.max_attempts),
            limiter=RequestRateLimiter(settings.requests_per_second, burst=4),
            allowed_hosts=settings.allowed_hosts,
        )

    def error_detail(self, response: httpx.Response) -> str:
        try:
            body = ServiceNowErrorBody.model_validate_json(response.content)
        except ValidationError:
            return super().error_detail(response)
        parts = [body.error.message, body.error.detail or ""]
        return " / ".join(part for part in parts if part)

    def error_code(self, response: httpx.Response) -> str | None:
        """The Table API has no error codes; its short ``error.message`` ("User Not
        Authenticated", "No Record found", "Invalid table x") is the nearest thing."""
        try:
            body = ServiceNowErrorBody.model_validate_json(response.content)
        except ValidationError:
            return None
        return body.error.message or None

    @staticmethod
    def table_path(table: str, sys_id: str | None = None) -> str:
        return f"/api/now/table/{table}" + (f"/{sys_id}" if sys_id else "")

    async def iter_pages(
        self,
        table: str,
        *,
        query: EncodedQuery | str = "",
        order_by: str | None = None,
        fields: Iterable[str] | None = None,
        display_value: DisplayValue | None = None,
        page_size: int | None = None,
        tally: ReadTally | None = None,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield the records matching ``query`` page by page, references flattened to their
        sys_id, sorted by ``order_by`` (if given) and sys_id, paged by keyset.

        ``query`` is a filter: its ``^NQ`` groups each get the keyset condition; an ORDERBY
        of its own is refused (the order is what makes keyset paging correct). Rows counted
        but not returned even when asked twice are added to ``tally.unread``.
        """
        base = query.copy() if isinstance(query, EncodedQuery) else EncodedQuery.parse(query)
        if base.ordering:
            raise FatalError(
                self.system,
                f"{table}: the query sorts by itself ({'^'.join(base.ordering)})",
                detail="reads are sorted by the cursor field and sys_id so that no record is "
                "skipped while others change; remove the ORDERBY from the filter",
            )
        display = display_value or self.settings.display_value
        order_field = order_by if order_by and order_by != "sys_id" else None
        if display == "true" and order_field is not None:
            raise FatalError(
                self.system,
                f"display_value 'true' turns the cursor field {order_field} into text "
                "in the integration user's own date format",
                detail="use display_value 'all' (raw values plus <field>.display columns)",
            )
        key_fields = [order_field, "sys_id"] if order_field else ["sys_id"]
        limit = page_size or self.settings.page_size
        params = {
            "sysparm_limit": str(limit),
            "sysparm_display_value": display,
            "sysparm_exclude_reference_link": "true",
            "sysparm_suppress_pagination_header": "true",
            "sysparm_no_count": "false",
        }
        # Paging needs the sort fields of every row; those the caller did not ask for are
        # taken off again before the rows are handed over.
        added: frozenset[str] = frozenset()
        if fields:
            asked = list(dict.fromkeys(fields))
            extra = [name for name in key_fields if name not in asked]
            added = frozenset(
                name for extra_name in extra for name in (extra_name, f"{extra_name}.display")
            )
            params["sysparm_fields"] = ",".join([*asked, *extra])
        path = self.table_path(table)

        async def fetch(after: Position | None, offset: int) -> KeysetPage:
            page_query = base.copy()
            if after is not None:
                page_query.conditions.append(after_condition(order_field, after))
            if order_field:
                page_query.order_by(order_field)
            page_query.order_by("sys_id")
            page_params = {"sysparm_query": str(page_query), **params}
            if offset:
                page_params["sysparm_offset"] = str(offset)
            body, response = await self.request_model("GET", path, ListResult, params=page_params)
            header = response.headers.get("X-Total-Count", "").strip()
            total = int(header) if header.isdigit() else None
            return KeysetPage([flatten_record(record) for record in body.result], total)

        tally = tally if tally is not None else ReadTally()
        rereads = tally.rereads
        try:
            async for rows in keyset_pages(
                fetch,
                system=self.system,
                what=table,
                limit=limit,
                key_fields=key_fields,
                tally=tally,
                log=self.log,
            ):
                self.last_total_count = tally.expected
                if added:
                    rows = [
                        {name: value for name, value in row.items() if name not in added}
                        for row in rows
                    ]
                yield rows
        finally:
            self.stats.rereads += tally.rereads - rereads

    async def missing_fields(
        self, table: str, fields: Sequence[str], *, display_value: DisplayValue | None = None
    ) -> list[str] | None:
        """Which of ``fields`` one record of ``table`` lacks (``None``: the table shows no
        record to look at). The instance drops unknown names from ``sysparm_fields`` without
        a word, so asking for them and looking at what came back is the check. Dot-walked
        names (``assigned_to.name``) come back under their full name when the walk is valid.
        """
        names = list(dict.fromkeys(name.removesuffix(".display") for name in fields if name))
        if not names:
            return []
        params = {
            "sysparm_limit": "1",
            "sysparm_fields": ",".join(names),
            "sysparm_display_value": display_value or self.settings.display_value,
            "sysparm_exclude_reference_link": "true",
            "sysparm_suppress_pagination_header": "true",
            "sysparm_no_count": "true",
        }
        body, _ = await self.request_model("GET", self.table_path(table), ListResult, params=params)
        if not body.result:
            return None
        # Raw keys, before flattening: display values "all" adds no <field>.display keys here.
        present = set(body.result[0])
        return [name for name in names if name not in present]

    async def get(self, table: str, sys_id: str) -> dict[str, Any] | None:
        try:
            body, _ = await self.request_model("GET", self.table_path(table, sys_id), SingleResult)
        except NotFoundError:
            return None
        return flatten_record(body.result)

    async def create(self, table: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """One new record. Sent again only if it provably never reached the instance; any
        doubt is an ``UncertainWriteError`` (``ServiceNowTableTarget.upsert`` settles it)."""
        body, _ = await self.request_model(
            "POST", self.table_path(table), SingleResult, json=dict(fields)
        )
        return flatten_record(body.result)

    async def update(self, table: str, sys_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        # Setting the same fields to the same values twice ends where once does, so a PATCH
        # whose answer was lost is simply sent again.
        body, _ = await self.request_model(
            "PATCH",
            self.table_path(table, sys_id),
            SingleResult,
            json=dict(fields),
            idempotent=True,
        )
        return flatten_record(body.result)

    async def delete(self, table: str, sys_id: str) -> bool:
        """Delete one record; False when it was already gone (404)."""
        response = await self.request("DELETE", self.table_path(table, sys_id), expected={404})
        return response.status_code != 404

    async def records_by(
        self,
        table: str,
        field: str,
        values: Iterable[str],
        *,
        fields: Iterable[str] | None = None,
        tally: ReadTally | None = None,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every record whose ``field`` is one of ``values`` (one keyset read per 100)."""
        wanted = sorted({value for value in values if value})
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = wanted[start : start + LOOKUP_CHUNK]
            query = EncodedQuery().where_one_of(field, chunk)
            async for page in self.iter_pages(
                table, query=query, fields=fields, display_value="false", tally=tally
            ):
                yield page

    async def find_by(
        self, table: str, field: str, values: Iterable[str], *, fields: Iterable[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Records whose ``field`` is one of ``values``, by that value."""
        found: dict[str, dict[str, Any]] = {}
        async for page in self.records_by(table, field, values, fields=fields):
            for record in page:
                found[str(record.get(field, ""))] = record
        return found
