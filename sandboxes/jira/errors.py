"""Jira's error body (``ErrorCollection {errorMessages[], errors{field: message}}``), JSON
responses, and the spelling of the answers the shared pipeline gives (429, 5xx)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from sandboxes.core.policy import ApiError

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"


class JiraApiError(ApiError):
    """An error answered with Jira's ErrorCollection."""

    def __init__(
        self,
        status: int,
        messages: list[str] | None = None,
        errors: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.messages = list(messages or [])
        self.errors = dict(errors or {})
        self.headers = dict(headers or {})
        super().__init__(f"{status}: {self.messages} {self.errors}")

    def response(self) -> Response:
        body = {"errorMessages": self.messages, "errors": self.errors}
        headers = {"Content-Type": JSON_CONTENT_TYPE} | self.headers
        return Response(orjson.dumps(body), status_code=self.status, headers=headers)


def bad_request(message: str | None = None, **errors: str) -> JiraApiError:
    return JiraApiError(400, [message] if message else [], errors)


def field_errors(errors: Mapping[str, str]) -> JiraApiError:
    return JiraApiError(400, [], errors)


def issue_not_found() -> JiraApiError:
    return JiraApiError(404, ["Issue does not exist or you do not have permission to see it."])


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(payload), status_code=status, headers={"Content-Type": JSON_CONTENT_TYPE}
    )


def no_content() -> Response:
    return Response(status_code=204)


class JiraErrors:
    """What the shared pipeline's own answers look like on Jira Cloud."""

    def rate_limited(self, detail: str, headers: Mapping[str, str]) -> JiraApiError:
        return JiraApiError(429, ["Rate limit exceeded."], headers=headers)

    def unavailable(self, status: int, headers: Mapping[str, str]) -> JiraApiError:
        if status == 503:
            return JiraApiError(503, ["Service Unavailable"], headers=headers)
        return JiraApiError(status, ["Internal server error."], headers=headers)

    def write_failed(self, headers: Mapping[str, str]) -> JiraApiError:
        return JiraApiError(500, ["Internal server error."], headers=headers)

    def internal_error(self) -> JiraApiError:
        return JiraApiError(500, ["The sandbox failed to process the request."])
