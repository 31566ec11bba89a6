"""The Table API's wire conventions: its error body, JSON responses, how written values are
stored (every value a string, date-times canonical) and how a write body is read."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from sandboxes.core.policy import ApiError, whole_seconds
from sandboxes.servicenow.encoded_query import EncodedQueryError, FieldKind, normalise_timestamp
from sandboxes.servicenow.schema import FieldDefinition

Record = dict[str, str]
JsonValue = Any

DEFAULT_LIMIT = 10_000
TABLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,79}")
SYS_ID = re.compile(r"[0-9a-f]{32}")
API_PATH = re.compile(r"/api/now(?:/v[12])?/table/(?P<table>[^/]+)(?:/(?P<sys_id>[^/]+))?/?")
JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Query results kept (with their sort keys, so writes can be followed record by record).

# --- errors and responses -----------------------------------------------------------------


class TableApiError(ApiError):
    """An error answered with ServiceNow's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        detail: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {message}: {detail}")
        self.status = status
        self.message = message
        self.detail = detail
        self.headers = dict(headers or {})

    def response(self) -> Response:
        body = {"error": {"message": self.message, "detail": self.detail}, "status": "failure"}
        headers = {"Content-Type": JSON_CONTENT_TYPE} | self.headers
        return Response(orjson.dumps(body), status_code=self.status, headers=headers)


def not_found() -> TableApiError:
    return TableApiError(
        404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
    )


def invalid_table(table: str) -> TableApiError:
    return TableApiError(400, f"Invalid table {table}", None)


def json_response(
    payload: JsonValue, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(payload),
        status_code=status,
        headers={"Content-Type": JSON_CONTENT_TYPE} | dict(headers or {}),
    )


def integer_param(value: str | None) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def stored_text(value: JsonValue) -> str:
    """Table API writes take JSON values; the instance stores every one as a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping) and "value" in value:
        return stored_text(value["value"])
    return orjson.dumps(value).decode()


def canonical(definition: FieldDefinition, text: str) -> str:
    """Date-times are stored as ``YYYY-MM-DD HH:MM:SS`` whatever form they were written in
    (``2024-01-02T03:04:05`` too), so they sort and compare as text."""
    if definition.kind is FieldKind.DATETIME and text:
        try:
            return normalise_timestamp(text)
        except EncodedQueryError:
            return text
    return text


def retry_after_header(seconds: float) -> str:
    """Integer seconds, rounded up; under half a second becomes "0"."""
    return whole_seconds(seconds)


def write_failed(headers: Mapping[str, str] | None = None) -> TableApiError:
    return TableApiError(
        500, "Internal Server Error", "The instance failed to process the request", headers
    )


class ServiceNowErrors:
    """The instance's error bodies for what the shared pipeline answers itself."""

    def rate_limited(self, detail: str, headers: Mapping[str, str]) -> TableApiError:
        return TableApiError(429, "Too Many Requests", detail, headers)

    def unavailable(self, status: int, headers: Mapping[str, str]) -> TableApiError:
        if status == 503:
            return TableApiError(
                503, "Service Unavailable", "The instance is temporarily unavailable", headers
            )
        return TableApiError(
            status, "Internal Server Error", "The instance failed to process the request", headers
        )

    def write_failed(self, headers: Mapping[str, str]) -> TableApiError:
        return write_failed(headers)

    def internal_error(self) -> TableApiError:
        return TableApiError(
            500, "Internal Server Error", "The sandbox failed to process the request"
        )


def check_accept(request: Request) -> None:
    accept = request.headers.get("accept", "").lower()
    if accept and not any(kind in accept for kind in ("application/json", "*/*", "application/*")):
        raise TableApiError(
            406, "Not Acceptable", f"Cannot produce {accept}; the sandbox answers application/json"
        )


def json_body(request: Request, body: bytes) -> Mapping[str, JsonValue]:
    """The write body as a JSON object. Only the first record of a JSON array is used, as
    the Table API does."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise TableApiError(
            415,
            "Unsupported Media Type",
            f"Content-Type {content_type or '(none)'} is not supported; send application/json",
        )
    if not body.strip():
        raise TableApiError(400, "Exception while reading request", "No request body")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise TableApiError(
            400, "Exception while reading request", f"The payload is not valid JSON: {error}"
        ) from None
    if isinstance(payload, list):
        payload = payload[0] if payload else None
    if not isinstance(payload, dict):
        raise TableApiError(
            400, "Exception while reading request", "The payload must be a JSON object"
        )
    return payload
