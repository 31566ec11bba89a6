"""Enhanced JQL search (``/rest/api/3/search/jql``) as Jira Cloud answers it.

* The body is ``SearchAndReconcileRequestBean`` and nothing else: ``startAt`` or any other
  unknown key is a 400 (the bean has ``additionalProperties: false``); GET takes the same
  names as query parameters.
* The answer is ``{issues, nextPageToken?, isLast}`` with no ``total``; ``nextPageToken`` is
  **absent** on the last page (not null). The token is opaque, bound to the JQL, and holds
  the position reached; a token for another query is refused.
* Without ``fields`` only ids come back. ``maxResults`` defaults to 50 and is capped at 100
  when fields are asked for (5,000 for ids and keys only).
* A query that restricts nothing (empty, or only ``ORDER BY``) is refused as unbounded.
* Search is eventually consistent when ``search_lag_ms`` is set: an issue changed less than
  that long ago is not found yet, unless its id is in ``reconcileIssues``.

The old ``/rest/api/3/search`` answers 410 Gone (see ``api``).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping
from typing import Any

import orjson

from sandboxes.jira.errors import JiraApiError, bad_request
from sandboxes.jira.jql import compile_jql
from sandboxes.jira.model import Issue
from sandboxes.jira.rendering import split_list
from sandboxes.jira.store import IssueStore

BEAN_FIELDS = frozenset(
    {
        "jql",
        "nextPageToken",
        "maxResults",
        "fields",
        "expand",
        "properties",
        "fieldsByKeys",
        "reconcileIssues",
        "failFast",
    }
)
DEFAULT_MAX_RESULTS = 50
MAX_WITH_FIELDS = 100
MAX_IDS_ONLY = 5_000
UNBOUNDED = (
    "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
)
STALE_PAGE_MESSAGE = "The provided next page token is invalid or expired."


def request_from_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("Invalid request payload. Refer to the REST API documentation.")
    unknown = sorted(set(body) - BEAN_FIELDS)
    if unknown:
        raise bad_request(
            f'Invalid request payload. Unrecognized field "{unknown[0]}": refer to the REST '
            "API documentation and try again."
        )
    return body


def request_from_query(query: Mapping[str, list[str]]) -> dict[str, Any]:
    """GET's query parameters as the bean (unknown parameters are ignored, as by Jira)."""
    request: dict[str, Any] = {}
    for name in ("jql", "nextPageToken", "expand"):
        if query.get(name):
            request[name] = query[name][-1]
    if query.get("maxResults"):
        try:
            request["maxResults"] = int(query["maxResults"][-1])
        except ValueError:
            raise bad_request("maxResults must be an integer") from None
    for name in ("fields", "properties"):
        if name in query:
            request[name] = split_list(query[name])
    if "reconcileIssues" in query:
        request["reconcileIssues"] = [int(v) for v in split_list(query["reconcileIssues"])]
    return request


def _token(jql: str, offset: int) -> str:
    bound = hashlib.sha256(jql.encode()).hexdigest()[:16]
    return base64.urlsafe_b64encode(orjson.dumps({"o": offset, "q": bound})).decode().rstrip("=")


def _offset(token: str, jql: str) -> int:
    try:
        state = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = int(state["o"])
        bound = str(state["q"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise bad_request(STALE_PAGE_MESSAGE) from None
    if bound != hashlib.sha256(jql.encode()).hexdigest()[:16] or offset < 0:
        raise bad_request(STALE_PAGE_MESSAGE)
    return offset


def _list_of_strings(request: Mapping[str, Any], name: str) -> list[str] | None:
    value = request.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise bad_request(f"{name} must be a list of strings")
    return split_list(value)


def search(store: IssueStore, request: Mapping[str, Any], account_id: str) -> dict[str, Any]:
    """Run the search; the caller holds the store's lock."""
    jql = request.get("jql") or ""
    if not isinstance(jql, str):
        raise bad_request("jql must be a string")
    compiled = compile_jql(jql, store.jql_context(account_id))
    if not compiled.bounded:
        raise JiraApiError(400, [UNBOUNDED])
    fields = _list_of_strings(request, "fields")
    properties = _list_of_strings(request, "properties") or []
    cap = MAX_IDS_ONLY if not fields or set(fields) <= {"id", "key"} else MAX_WITH_FIELDS
    wanted = request.get("maxResults", DEFAULT_MAX_RESULTS)
    if not isinstance(wanted, int) or isinstance(wanted, bool):
        raise bad_request("maxResults must be an integer")
    page_size = min(max(wanted, 1), cap)
    token = request.get("nextPageToken")
    offset = _offset(token, jql) if isinstance(token, str) and token else 0
    reconcile = {int(i) for i in request.get("reconcileIssues") or []}
    visible = [
        issue
        for issue in store.issues.values()
        if _indexed(issue, store.config.search_lag_ms, reconcile) and compiled.predicate(issue)
    ]
    ordered = compiled.sort(visible)
    page = ordered[offset : offset + page_size]
    is_last = offset + page_size >= len(ordered)
    answer: dict[str, Any] = {
        "issues": [
            store.renderer.issue(issue, fields, properties, only_id_without_fields=True)
            for issue in page
        ],
        "isLast": is_last,
    }
    if not is_last:
        answer["nextPageToken"] = _token(jql, offset + page_size)
    return answer


def approximate_count(store: IssueStore, body: Any, account_id: str) -> dict[str, int]:
    if not isinstance(body, dict) or set(body) - {"jql"}:
        raise bad_request("Invalid request payload. Refer to the REST API documentation.")
    jql = body.get("jql") or ""
    compiled = compile_jql(jql, store.jql_context(account_id))
    if not compiled.bounded:
        raise JiraApiError(400, [UNBOUNDED])
    lag = store.config.search_lag_ms
    return {
        "count": sum(
            1
            for issue in store.issues.values()
            if _indexed(issue, lag, set()) and compiled.predicate(issue)
        )
    }


def _indexed(issue: Issue, lag_ms: float, reconcile: set[int]) -> bool:
    if lag_ms <= 0 or issue.id in reconcile:
        return True
    return (time.monotonic() - issue.changed_at) * 1000 >= lag_ms
