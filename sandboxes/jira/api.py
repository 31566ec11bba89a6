"""The REST API v3 routes of the Jira sandbox: issues, transitions, comments, entity
properties, search, the retired search (410) and the admin webhook registration
(``/rest/webhooks/1.0/webhook``). Each handler runs inside the core's pipeline, under the
store's lock, and answers as Jira does (201/204 where Jira does, ``ErrorCollection`` bodies)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from sandboxes.core.pipeline import ApiCall
from sandboxes.core.vendor import ApiRoute
from sandboxes.jira import search as searching
from sandboxes.jira.errors import JiraApiError, bad_request, json_response, no_content
from sandboxes.jira.model import Issue
from sandboxes.jira.rendering import split_list
from sandboxes.jira.store import IssueStore
from sandboxes.jira.webhooks import JiraWebhooks
from sandboxes.jira.workflow import transitions_from

API = "/rest/api/3"
ISSUE = API + "/issue/{issueIdOrKey}"
GONE = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at "
    "https://developer.atlassian.com/changelog/#CHANGE-2046"
)


def json_body(call: ApiCall, *, allow_any: bool = False) -> Any:
    content_type = call.request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise JiraApiError(415, ["Unsupported Media Type: send application/json."])
    try:
        body = orjson.loads(call.body) if call.body.strip() else None
    except orjson.JSONDecodeError:
        raise bad_request("Invalid request payload. The body is not valid JSON.") from None
    if not allow_any and not isinstance(body, dict):
        raise bad_request("Invalid request payload. Refer to the REST API documentation.")
    return body


def _query_list(call: ApiCall, name: str) -> list[str] | None:
    values = call.request.query_params.getlist(name)
    return split_list(values) if values else None


def _int_param(call: ApiCall, name: str, default: int) -> int:
    value = call.request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        return max(0, int(value))
    except ValueError:
        raise bad_request(f"{name} must be an integer") from None


class JiraApi:
    """The route handlers over an ``IssueStore`` and the site's webhooks."""

    def __init__(self, store: IssueStore, webhooks: JiraWebhooks) -> None:
        self.store = store
        self.webhooks = webhooks

    def routes(self) -> list[ApiRoute]:
        return [
            ApiRoute(API + "/issue", self.create_issue, ["POST"]),
            ApiRoute(ISSUE, self.issue, ["GET", "PUT", "DELETE"]),
            ApiRoute(ISSUE + "/transitions", self.transitions, ["GET", "POST"]),
            ApiRoute(ISSUE + "/comment", self.comments, ["GET", "POST"]),
            ApiRoute(ISSUE + "/comment/{id}", self.comment, ["GET", "PUT", "DELETE"]),
            ApiRoute(ISSUE + "/properties", self.property_keys, ["GET"]),
            ApiRoute(ISSUE + "/properties/{propertyKey}", self.property, ["GET", "PUT", "DELETE"]),
            ApiRoute(API + "/search/jql", self.search, ["GET", "POST"]),
            ApiRoute(API + "/search/approximate-count", self.approximate_count, ["POST"]),
            ApiRoute(API + "/search", self.retired_search, ["GET", "POST"]),
            ApiRoute(API + "/myself", self.myself, ["GET"]),
            ApiRoute("/rest/webhooks/1.0/webhook", self.webhooks.rest_collection, ["GET", "POST"]),
            ApiRoute("/rest/webhooks/1.0/webhook/{id}", self.webhooks.rest_item, ["GET", "DELETE"]),
        ]

    def _issue(self, call: ApiCall) -> Issue:
        return self.store.find(str(call.params["issueIdOrKey"]))

    # --- issues ---------------------------------------------------------------------------

    def create_issue(self, call: ApiCall) -> Response:
        issue = self.store.create(json_body(call), call.user)
        return json_response(
            {
                "id": str(issue.id),
                "key": issue.key,
                "self": f"{self.store.renderer.api}/issue/{issue.id}",
            },
            201,
        )

    def issue(self, call: ApiCall) -> Response:
        issue = self._issue(call)
        if call.request.method == "GET":
            fields = _query_list(call, "fields")
            properties = _query_list(call, "properties") or []
            return json_response(self.store.renderer.issue(issue, fields, properties))
        if call.request.method == "DELETE":
            self.store.delete(issue, call.user)
            return no_content()
        self.store.edit(issue, json_body(call), call.user)
        if call.request.query_params.get("returnIssue", "").lower() == "true":
            return json_response(self.store.renderer.issue(issue))
        return no_content()

    def transitions(self, call: ApiCall) -> Response:
        issue = self._issue(call)
        if call.request.method == "POST":
            self.store.transition(issue, json_body(call), call.user)
            return no_content()
        wanted = call.request.query_params.get("transitionId")
        offered = [
            self.store.renderer.workflow.transition(transition)
            for transition in transitions_from(issue.status.id)
            if wanted is None or transition.id == wanted
        ]
        return json_response({"expand": "transitions", "transitions": offered})

    # --- comments -------------------------------------------------------------------------

    def comments(self, call: ApiCall) -> Response:
        issue = self._issue(call)
        renderer = self.store.renderer
        if call.request.method == "POST":
            comment = self.store.add_comment(issue, json_body(call), call.user)
            return json_response(renderer.comment(issue, comment), 201)
        start_at = _int_param(call, "startAt", 0)
        max_results = _int_param(call, "maxResults", 5000)
        order = call.request.query_params.get("orderBy", "created")
        if order.lstrip("+-") != "created":
            raise bad_request("orderBy must be created, -created or +created")
        ordered = sorted(issue.comments, key=lambda c: (c.created, int(c.id)))
        if order.startswith("-"):
            ordered.reverse()
        return json_response(renderer.comment_page(issue, ordered, start_at, max_results))

    def comment(self, call: ApiCall) -> Response:
        issue = self._issue(call)
        comment = self.store.comment(issue, str(call.params["id"]))
        if call.request.method == "PUT":
            self.store.edit_comment(issue, comment, json_body(call), call.user)
        elif call.request.method == "DELETE":
            self.store.delete_comment(issue, comment, call.user)
            return no_content()
        return json_response(self.store.renderer.comment(issue, comment))

    # --- entity properties ----------------------------------------------------------------

    def property_keys(self, call: ApiCall) -> Response:
        issue = self._issue(call)
        base = f"{self.store.renderer.api}/issue/{issue.id}/properties"
        keys = [{"self": f"{base}/{key}", "key": key} for key in issue.properties]
        return json_response({"keys": keys})

    def property(self, call: ApiCall) -> Response:
        issue = self._issue(call)
        key = str(call.params["propertyKey"])
        if call.request.method == "PUT":
            created = self.store.set_property(issue, key, json_body(call, allow_any=True))
            return Response(status_code=201 if created else 200)
        if key not in issue.properties:
            raise JiraApiError(404, [f"The property with key '{key}' does not exist."])
        if call.request.method == "DELETE":
            del issue.properties[key]
            return no_content()
        return json_response({"key": key, "value": issue.properties[key]})

    # --- search ---------------------------------------------------------------------------

    def search(self, call: ApiCall) -> Response:
        if call.request.method == "POST":
            request = searching.request_from_body(json_body(call))
        else:
            query = call.request.query_params
            request = searching.request_from_query({k: query.getlist(k) for k in query})
        return json_response(searching.search(self.store, request, call.user))

    def approximate_count(self, call: ApiCall) -> Response:
        return json_response(searching.approximate_count(self.store, json_body(call), call.user))

    def retired_search(self, call: ApiCall) -> Response:
        raise JiraApiError(410, [GONE])

    def myself(self, call: ApiCall) -> Response:
        return json_response(self.store.renderer.user(call.user))
