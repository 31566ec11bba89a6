"""Jira Cloud REST API v3 client: issues, enhanced JQL search, transitions, comments and
issue properties, over the shared HTTP layer (``connectors.base.http``).

* Auth is Basic ``email:api_token``; the token never reaches a log line or an error.
* Errors: a 400 ``ErrorCollection`` becomes a ``FatalError`` whose detail names each field
  and its message; 401/403/404 are fatal; 409 (a concurrent change), 429 and 5xx are
  retried. A 429 waits its ``Retry-After`` and the ``RateLimit-Reason`` (which limit fired)
  is logged.
* Search is ``POST /rest/api/3/search/jql`` paged by ``nextPageToken`` (absent on the last
  page; there is no total), always with an explicit ``fields`` list (without one Jira
  answers ids only).
* Search is eventually consistent: an issue changed a moment ago may be missing from
  results. ``reconcileIssues`` (issue ids) makes the results reflect those issues, so reads
  of known issues pass their ids; lookups by label cannot, and say so where they are used.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from connectors.base import (
    ConnectorError,
    FatalError,
    NotFoundError,
    RequestRateLimiter,
    RestClient,
    RetriableError,
    RetryPolicy,
)
from connectors.base.errors import UncertainWriteError
from connectors.base.pagination import CursorTokenPaginator, PageRequest, PageTrail
from connectors.jira.models import (
    Comment,
    CommentPage,
    CreatedIssue,
    EntityProperty,
    ErrorCollection,
    IssueBean,
    SearchPage,
    Transition,
    TransitionList,
    text_to_adf,
)

API = "/rest/api/3"
# Jira caps a search page at 100 issues when fields are asked for.
MAX_PAGE = 100


class JiraSettings(BaseModel):
    """Where and how to reach one Jira Cloud site, as the integration user."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="e.g. https://acme.atlassian.net")
    email: str = Field(min_length=1, description="the integration user's Atlassian account")
    api_token: SecretStr
    time_zone: str = Field(
        default="UTC",
        description="the integration user's time zone in Jira's profile: JQL dates are read "
        "in it, so a wrong zone shifts every incremental read window",
    )
    project: str | None = Field(default=None, description="project key new issues go to")
    issue_type: str = Field(default="Task", description="issue type of new issues")
    record_key: Literal["key", "id"] = Field(
        default="key", description="which identifier writes report as the record's key"
    )
    index_lag_seconds: float = Field(
        default=2.0,
        ge=0,
        description="how long search may take to show a change: a create whose answer was "
        "lost is looked up after at least this long before it is sent again",
    )
    page_size: int = Field(default=MAX_PAGE, ge=1, le=MAX_PAGE)
    correlation_field: str = Field(
        default="correlation_id", description="the record field holding the other side's key"
    )
    correlation_property: str = Field(default="syncline", min_length=1, max_length=255)
    correlation_label_prefix: str = Field(default="syncline-", pattern=r"^\S+$")
    requests_per_second: float | None = Field(default=None, gt=0)
    timeout_seconds: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    allowed_hosts: list[str] = Field(default_factory=list)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name, e.g. Europe/Paris)"
            ) from None
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [host.strip() for host in value.split(",") if host.strip()]
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


class JiraClient(RestClient):
    """Jira Cloud's REST API v3 on the shared HTTP layer."""

    system = "jira"
    html_hint = (
        "an HTML page, not the REST API: an Atlassian login page means base_url, the email "
        "or the API token is wrong"
    )

    def __init__(
        self, settings: JiraSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        super().__init__(
            settings.base_url.rstrip("/"),
            auth=httpx.BasicAuth(settings.email, settings.api_token.get_secret_value()),
            transport=transport,
            timeout=settings.timeout_seconds,
            retry=RetryPolicy(max_attempts=settings.max_attempts),
            limiter=RequestRateLimiter(settings.requests_per_second, burst=4),
            allowed_hosts=settings.allowed_hosts,
        )

    # --- the hooks of the shared layer ----------------------------------------------------

    def error_detail(self, response: httpx.Response) -> str:
        """``summary: You must specify a summary of the issue.`` from an ErrorCollection."""
        try:
            body = ErrorCollection.model_validate_json(response.content)
        except ValidationError:
            return super().error_detail(response)
        return body.describe() or super().error_detail(response)

    def classify(self, response: httpx.Response) -> type[ConnectorError] | None:
        # 409: another request changed the issue at the same moment; the same request a
        # moment later succeeds. Everything else follows HTTP (400/401/403/404 fatal).
        if response.status_code == 409:
            return RetriableError
        return None

    def observe_limits(self, response: httpx.Response) -> None:
        """A 429 is waited out by its ``Retry-After`` (the shared layer does that), and
        which limit fired is logged. ``X-RateLimit-Reset`` is not used to pause: Jira spells
        it to the minute, rounded up, so it would hold every request up to a minute longer
        than the ``Retry-After`` Atlassian asks clients to honour."""
        if response.status_code == 429:
            self.log.warning(
                "jira: rate limited (RateLimit-Reason: %s, Retry-After: %s s) on %s %s",
                response.headers.get("RateLimit-Reason", "not given"),
                response.headers.get("Retry-After", "not given"),
                response.request.method,
                response.request.url.path,
            )
        elif response.headers.get("X-RateLimit-NearLimit", "").lower() == "true":
            self.log.info("jira: near a rate limit (%s)", response.request.url.path)

    # --- issues ---------------------------------------------------------------------------

    async def create_issue(
        self, fields: Mapping[str, Any], properties: Mapping[str, Any] | None = None
    ) -> CreatedIssue:
        """One new issue; ``properties`` are set with it, atomically. Never sent twice
        blindly: a lost answer is an ``UncertainWriteError`` for the caller to settle."""
        body: dict[str, Any] = {"fields": dict(fields)}
        if properties:
            body["properties"] = [{"key": k, "value": v} for k, v in properties.items()]
        created, _ = await self.request_model("POST", f"{API}/issue", CreatedIssue, json=body)
        return created

    async def get_issue(
        self, id_or_key: str, fields: Sequence[str], properties: Sequence[str] = ()
    ) -> IssueBean | None:
        """The issue with only ``fields`` (and ``properties``); ``None`` when it is gone."""
        params = {"fields": ",".join(fields) or "summary"}
        if properties:
            params["properties"] = ",".join(properties)
        try:
            issue, _ = await self.request_model(
                "GET", f"{API}/issue/{id_or_key}", IssueBean, params=params
            )
        except NotFoundError:
            return None
        return issue

    async def edit_issue(
        self,
        id_or_key: str,
        fields: Mapping[str, Any] | None = None,
        update: Mapping[str, Any] | None = None,
    ) -> None:
        """Set ``fields`` (and run ``update`` operations). Setting values is idempotent, so a
        PUT whose answer was lost is sent again; label add/remove are too."""
        body: dict[str, Any] = {}
        if fields:
            body["fields"] = dict(fields)
        if update:
            body["update"] = dict(update)
        if body:
            await self.request("PUT", f"{API}/issue/{id_or_key}", json=body)

    # --- transitions ----------------------------------------------------------------------

    async def transitions(self, id_or_key: str) -> list[Transition]:
        """The transitions the workflow offers from the issue's current status."""
        listed, _ = await self.request_model(
            "GET", f"{API}/issue/{id_or_key}/transitions", TransitionList
        )
        return listed.transitions

    async def transition_to(self, id_or_key: str, status: str) -> bool:
        """Move the issue to the status named ``status`` through the transition that leads
        there (transition ids differ per workflow, so they are never assumed). Returns False
        when it is there already. A transition whose answer was lost is settled by reading
        the status back, never by sending it blindly again."""
        wanted = status.strip().casefold()
        sent = False  # a transition in doubt that read back as done was ours
        for _ in range(self.retry.max_attempts):
            current = await self.get_issue(id_or_key, ["status"])
            if current is None:
                raise NotFoundError(self.system, f"issue {id_or_key} does not exist")
            if _status_name(current).casefold() == wanted:
                return sent
            offered = await self.transitions(id_or_key)
            chosen = next((t for t in offered if t.to.name.casefold() == wanted), None)
            if chosen is None:
                listed = ", ".join(f"{t.name!r} → {t.to.name!r}" for t in offered) or "none"
                raise FatalError(
                    self.system,
                    f"issue {id_or_key} cannot move from {_status_name(current)!r} to {status!r}",
                    detail=f"no transition of its workflow leads there from its current "
                    f"status; available: {listed}",
                )
            try:
                await self.request(
                    "POST",
                    f"{API}/issue/{id_or_key}/transitions",
                    json={"transition": {"id": chosen.id}},
                )
            except UncertainWriteError as error:
                self.log.warning("jira: %s; reading %s's status back", error, id_or_key)
                sent = True
                continue
            return True
        raise FatalError(self.system, f"issue {id_or_key}: the transition to {status!r} failed")

    # --- comments -------------------------------------------------------------------------

    async def add_comment(self, id_or_key: str, body: str | Mapping[str, Any]) -> Comment:
        """A new comment; text becomes an ADF document (v3 takes nothing else)."""
        document = text_to_adf(body) if isinstance(body, str) else dict(body)
        comment, _ = await self.request_model(
            "POST", f"{API}/issue/{id_or_key}/comment", Comment, json={"body": document}
        )
        return comment

    async def update_comment(
        self, id_or_key: str, comment_id: str, body: str | Mapping[str, Any]
    ) -> Comment:
        document = text_to_adf(body) if isinstance(body, str) else dict(body)
        comment, _ = await self.request_model(
            "PUT",
            f"{API}/issue/{id_or_key}/comment/{comment_id}",
            Comment,
            json={"body": document},
        )
        return comment

    async def comments(self, id_or_key: str, *, page_size: int = 100) -> AsyncIterator[Comment]:
        """Every comment, oldest first, paged by ``startAt``/``maxResults`` until ``total``."""
        start = 0
        while True:
            params = {"startAt": str(start), "maxResults": str(page_size), "orderBy": "created"}
            page, _ = await self.request_model(
                "GET", f"{API}/issue/{id_or_key}/comment", CommentPage, params=params
            )
            for comment in page.comments:
                yield comment
            start += len(page.comments)
            if not page.comments or start >= page.total:
                return

    # --- issue properties -----------------------------------------------------------------

    async def get_property(self, id_or_key: str, key: str) -> Any:
        """The property's value; ``None`` when the issue has no such property."""
        response = await self.request(
            "GET", f"{API}/issue/{id_or_key}/properties/{key}", expected={404}
        )
        if response.status_code == 404:
            if "property" not in self.error_detail(response).lower():
                raise NotFoundError(self.system, f"issue {id_or_key} does not exist")
            return None
        return self.decode(response, EntityProperty).value

    async def set_property(self, id_or_key: str, key: str, value: Any) -> None:
        await self.request("PUT", f"{API}/issue/{id_or_key}/properties/{key}", json=value)

    # --- search ---------------------------------------------------------------------------

    async def search(
        self,
        jql: str,
        fields: Sequence[str],
        *,
        properties: Sequence[str] = (),
        reconcile: Iterable[int] = (),
        page_size: int | None = None,
    ) -> AsyncGenerator[list[IssueBean], None]:
        """The issues matching ``jql``, page by page, following ``nextPageToken``."""
        body: dict[str, Any] = {
            "jql": jql,
            "maxResults": min(page_size or self.settings.page_size, MAX_PAGE),
            "fields": list(dict.fromkeys(fields)) or ["id"],
        }
        if properties:
            body["properties"] = list(properties)
        ids = sorted(set(reconcile))
        if ids:
            body["reconcileIssues"] = ids
        # A search changes nothing, so a POST whose answer was lost is simply asked again
        # (the shared ``paginate`` would treat a failed POST as a write in doubt).
        trail = PageTrail(self.system)
        paginator = CursorTokenPaginator(last_field="isLast")
        page: PageRequest | None = PageRequest("POST", f"{API}/search/jql", json=body)
        while page is not None:
            trail.check(page)
            response = await self.request(page.method, page.url, json=page.json, idempotent=True)
            yield self.decode(response, SearchPage).issues
            page = paginator.next_request(page, response)


def _status_name(issue: IssueBean) -> str:
    status = issue.fields.get("status")
    return str(status.get("name", "")) if isinstance(status, dict) else ""
