"""Jira's admin webhooks on the core's outbox.

Deliveries are signed as admin webhooks created with a secret are: ``X-Hub-Signature:
sha256=<hex HMAC-SHA256 of the raw body>`` (WebSub; not ``-256``), carry
``X-Atlassian-Webhook-Identifier`` (the same on every retry and re-delivery: receivers
deduplicate on it) and, on retries, ``X-Atlassian-Webhook-Retry`` (how many attempts came
before). They are retried on 408, 409, 425, 429, 5xx and connection errors, and with
``webhook_duplicate_probability`` a delivered one is sometimes sent again.

Receivers are registered with the standard admin route (``POST /sandbox/jira/webhooks``) or,
as on a site, with ``POST /rest/webhooks/1.0/webhook {name, url, events, filters:
{"issue-related-events-section": JQL}, secret}``, whose JQL filter picks the issues.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from starlette.responses import Response

from sandboxes.core.outbox import WebhookOutbox
from sandboxes.core.pipeline import ApiCall
from sandboxes.core.webhooks import HUB, JIRA_RETRIED_STATUSES
from sandboxes.jira.config import JiraSandboxConfig
from sandboxes.jira.errors import JiraApiError, bad_request, json_response, no_content
from sandboxes.jira.events import EVENTS, IssueEvent
from sandboxes.jira.jql import compile_jql
from sandboxes.jira.model import Issue
from sandboxes.jira.store import IssueStore

IDENTIFIER_HEADER = "X-Atlassian-Webhook-Identifier"
RETRY_HEADER = "X-Atlassian-Webhook-Retry"
JQL_FILTER = "issue-related-events-section"


def jira_outbox(config: JiraSandboxConfig) -> WebhookOutbox:
    return WebhookOutbox(
        HUB,
        delivery_id_header=IDENTIFIER_HEADER,
        retry_count_header=RETRY_HEADER,
        retried_statuses=JIRA_RETRIED_STATUSES,
        backoff_seconds=config.webhook_backoff_seconds,
        max_attempts=config.webhook_max_attempts,
        duplicate_probability=config.webhook_duplicate_probability,
        seed=config.seed,
    )


class JiraWebhooks:
    """Publishes the store's events to the outbox; serves the webhook REST resource."""

    def __init__(self, store: IssueStore, outbox: WebhookOutbox) -> None:
        self.store = store
        self.outbox = outbox
        self._registered: dict[str, dict[str, Any]] = {}
        store.publish = self.publish

    def publish(self, event: IssueEvent) -> None:
        self.outbox.publish(event.name, event.payload, subject=event.issue)

    def _filter(self, jql: str) -> Any:
        def accepts(event: str, issue: Any) -> bool:
            if not isinstance(issue, Issue):
                return True
            # Read when the event happens (relative dates move), without checking values:
            # a filter naming an issue deleted since still runs.
            context = self.store.jql_context(self.store.config.account_id)
            return compile_jql(jql, replace(context, exists=None)).predicate(issue)

        return accepts

    def register(self, body: Any) -> dict[str, Any]:
        """Register a receiver from a ``/rest/webhooks/1.0/webhook`` body; its rendering."""
        with self.store.lock:
            return self._register(body)

    def _register(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            raise bad_request("A webhook needs a url.")
        events = body.get("events") or list(EVENTS)
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise bad_request("events must be a list of event names.")
        filters = body.get("filters") or {}
        jql = filters.get(JQL_FILTER) if isinstance(filters, dict) else None
        if jql:
            compile_jql(jql, self.store.jql_context(self.store.config.account_id))
        secret = body.get("secret")
        subscription = self.outbox.subscribe(
            body["url"],
            secret if isinstance(secret, str) and secret else None,
            events=events,
            name=str(body.get("name") or body["url"]),
            accepts=self._filter(jql) if jql else None,
        )
        rendered = {
            "self": f"{self.store.renderer.site}/rest/webhooks/1.0/webhook/{subscription.id}",
            "name": subscription.name,
            "url": subscription.url,
            "events": events,
            "filters": {JQL_FILTER: jql or ""},
            "excludeBody": bool(body.get("excludeBody", False)),
            "enabled": True,
        }
        self._registered[subscription.id] = rendered
        return rendered

    def rest_collection(self, call: ApiCall) -> Response:
        if call.request.method == "POST":
            try:
                body = orjson.loads(call.body)
            except orjson.JSONDecodeError:
                raise bad_request("The body is not valid JSON.") from None
            return json_response(self.register(body), 201)
        return json_response(list(self._registered.values()))

    def rest_item(self, call: ApiCall) -> Response:
        webhook_id = str(call.params["id"])
        rendered = self._registered.get(webhook_id)
        if rendered is None:
            raise JiraApiError(404, [f"No webhook with id {webhook_id}."])
        if call.request.method == "DELETE":
            self.outbox.unsubscribe(webhook_id)
            del self._registered[webhook_id]
            return no_content()
        return json_response(rendered)
