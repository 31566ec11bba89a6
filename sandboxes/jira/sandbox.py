"""A faithful in-memory simulator of the Jira Cloud platform REST API v3, declared on the
shared core (``sandboxes.core.vendor``).

``JiraSandbox`` keeps a site's issues in memory (``store``) and serves, as Jira Cloud does:
issue create/read/edit/delete with the server's own field rules and ADF rich text
(``writes``), the default workflow's transitions (``workflow``), comments, entity
properties, enhanced JQL search with token paging and no total (``search``, ``jql``), the
retired ``/rest/api/3/search`` as 410 Gone, Basic ``email:api_token`` authentication, and
admin webhooks signed and retried as Jira sends them (``webhooks``, ``events``). The core
adds the per-second limit and injected faults; this module declares how Jira spells them:
429 with ``Retry-After``, ``X-RateLimit-Reset`` (``yyyy-MM-ddTHH:mmZ``) and
``RateLimit-Reason``; 503 with ``Retry-After``; ``ErrorCollection`` bodies.

The simulator shares no code with any Jira client: a simulator built on the client's code
would share its mistakes.

Choices where Jira varies or is silent: one integration user (the configured email and
account id); any ``customfield_NNNNN`` is accepted and stored as written; results without
``ORDER BY`` come newest created first; the page token holds a position in the result, so
issues changing between two page reads shift later pages, as with any offset (order by a
stable key and overlap). Not simulated: ``expand`` (names, schema, changelog,
renderedFields), ``fieldsByKeys``, createmeta/editmeta, links, attachments, worklogs,
property webhook events (``issue_property_set``), ``X-RateLimit-NearLimit``, points-based
quotas, JWT-signed dynamic webhooks (``/rest/api/3/webhook``) and ``/rest/api/2``.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sandboxes.core.clock import InstanceClock
from sandboxes.core.faults import FaultConfig
from sandboxes.core.pipeline import VendorState
from sandboxes.core.policy import RateLimitPolicy, RequestStats, whole_seconds
from sandboxes.core.rate_limit import Admission
from sandboxes.core.vendor import VendorDeclaration
from sandboxes.jira.api import JiraApi
from sandboxes.jira.config import JiraSandboxConfig
from sandboxes.jira.errors import JiraApiError, JiraErrors
from sandboxes.jira.seed import seed_issues
from sandboxes.jira.store import IssueStore
from sandboxes.jira.webhooks import JiraWebhooks, jira_outbox


def reset_at(now: datetime, seconds: float) -> str:
    """``X-RateLimit-Reset``: ISO 8601 to the minute, UTC, rounded up (never too early)."""
    moment = now.astimezone(UTC) + timedelta(seconds=seconds)
    if moment.second or moment.microsecond:
        moment = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return moment.strftime("%Y-%m-%dT%H:%MZ")


class JiraRateLimitHeaders(RateLimitPolicy):
    """Jira Cloud's burst-limit headers; the reason comes from the site's configuration."""

    def __init__(self, config: JiraSandboxConfig) -> None:
        self.config = config

    def admitted(self, admission: Admission, now: datetime) -> dict[str, str]:
        return {"X-RateLimit-Limit": admission.headers["X-RateLimit-Limit"]}

    def refused(self, admission: Admission, now: datetime) -> dict[str, str]:
        return self._limited(admission.retry_after_seconds, now) | {
            "X-RateLimit-Limit": admission.headers["X-RateLimit-Limit"]
        }

    def injected(self, retry_after_seconds: float, now: datetime) -> dict[str, str]:
        return self._limited(retry_after_seconds, now)

    def unavailable(self, status: int, retry_after_seconds: float, now: datetime) -> dict[str, str]:
        return {"Retry-After": whole_seconds(retry_after_seconds)} if status == 503 else {}

    def _limited(self, retry_after_seconds: float, now: datetime) -> dict[str, str]:
        return {
            "Retry-After": whole_seconds(retry_after_seconds),
            "X-RateLimit-Reset": reset_at(now, math.ceil(retry_after_seconds)),
            "X-RateLimit-Remaining": "0",
            "RateLimit-Reason": self.config.rate_limit_reason,
        }


_LOGIN_PAGE = b"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Log in with Atlassian account</title></head>
<body><div id="root"><form id="form-login" method="post" action="/login">
<input id="username" name="username" type="email"><button id="login-submit">Continue</button>
</form></div></body></html>
"""


def atlassian_login_page() -> Response:
    """What an SSO proxy or expired session answers with 200 in place of the API's JSON."""
    return Response(
        _LOGIN_PAGE, status_code=200, headers={"Content-Type": "text/html;charset=UTF-8"}
    )


class JiraSandbox:
    """A simulated Jira Cloud site: ``app`` (the REST API behind the core's pipeline), the
    Python API below for tests, and ``admin.build_app`` for the admin routes."""

    def __init__(
        self, config: JiraSandboxConfig | None = None, *, now: datetime | None = None
    ) -> None:
        self.config = config or JiraSandboxConfig()
        self.clock = InstanceClock(now, offset_seconds=self.config.clock_offset_seconds)
        self.store = IssueStore(self.config, self.clock)
        self.state = VendorState(
            self.clock,
            RequestStats(),
            lock=self.store.lock,
            rate_limit_per_second=self.config.rate_limit_per_second,
        )
        self.outbox = jira_outbox(self.config)
        self.webhooks = JiraWebhooks(self.store, self.outbox)
        self.declaration = VendorDeclaration(
            name="jira",
            routes=JiraApi(self.store, self.webhooks).routes(),
            authenticate=self._authenticate,
            errors=JiraErrors(),
            state=self.state,
            rate_limit=JiraRateLimitHeaders(self.config),
            outbox=self.outbox,
            login_page=atlassian_login_page,
        )
        self.app = self.declaration.api_app()
        self.seed(self.config.issues, seed=self.config.seed)

    # --- the site -------------------------------------------------------------------------

    def seed(self, count: int, *, seed: int | None = None) -> list[str]:
        """Add ``count`` seeded issues; returns their keys."""
        with self.store.lock:
            made = seed_issues(
                self.store, count, seed=self.config.seed if seed is None else seed, now=self.now()
            )
        return [issue.key for issue in made]

    def reset(self) -> None:
        """No issues, no deliveries; ids and keys start again. Receivers stay registered."""
        with self.store.lock:
            self.store.reset()
        self.outbox.clear()

    def issue(self, id_or_key: str) -> dict[str, Any]:
        """The issue as ``GET /rest/api/3/issue/{key}`` shows it (every field)."""
        with self.store.lock:
            issue = self.store.find(id_or_key)
            return self.store.renderer.issue(issue, None, ["*all"])

    def keys(self) -> list[str]:
        with self.store.lock:
            return [issue.key for issue in self.store.issues.values()]

    def save(self, path: str | Path) -> None:
        self.store.save(path)

    def load(self, path: str | Path) -> None:
        self.store.load(path)

    # --- clock, faults, limits ------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock.now()

    def set_now(self, when: datetime) -> None:
        self.clock.set(when)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def set_clock_offset(self, seconds: float) -> None:
        self.clock.run(seconds)

    @property
    def faults(self) -> FaultConfig:
        return self.state.faults

    @faults.setter
    def faults(self, config: FaultConfig) -> None:
        self.state.faults = config

    @property
    def rate_limit_per_second(self) -> float | None:
        return self.state.rate_limit_per_second

    @rate_limit_per_second.setter
    def rate_limit_per_second(self, rate: float | None) -> None:
        self.state.rate_limit_per_second = rate

    @property
    def stats(self) -> RequestStats:
        return self.state.stats

    # --- webhooks -------------------------------------------------------------------------

    def register_webhook(
        self,
        url: str,
        secret: str | None = None,
        *,
        jql: str | None = None,
        events: list[str] | None = None,
    ) -> str:
        """Register a receiver as ``POST /rest/webhooks/1.0/webhook`` does; returns its id."""
        body: dict[str, Any] = {"url": url, "secret": secret, "events": events}
        if jql:
            body["filters"] = {"issue-related-events-section": jql}
        rendered = self.webhooks.register(body)
        return str(rendered["self"]).rsplit("/", 1)[1]

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Wait until every delivery so far (with its retries) is done."""
        return self.outbox.wait_idle(timeout)

    def deliveries(self) -> list[dict[str, Any]]:
        return self.outbox.deliveries()

    def close(self) -> None:
        self.outbox.close()

    # --- authentication -------------------------------------------------------------------

    def _authenticate(self, request: Request) -> str:
        """Basic ``email:api_token``; anything else is 401."""
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            email, _, token = decoded.partition(":")
            email_ok = secrets.compare_digest(
                email.lower().encode(), self.config.email.lower().encode()
            )
            token_ok = secrets.compare_digest(token.encode(), self.config.api_token.encode())
            if email_ok and token_ok:
                return self.config.account_id
        raise JiraApiError(
            401,
            ["You are not authenticated. Authentication required to perform this operation."],
            headers={"WWW-Authenticate": f'OAuth realm="{self.config.site_url}"'},
        )
