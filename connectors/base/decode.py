"""Turning a successful response's body into a model, or into an error a person can act on.

A 200 is not always the API speaking: an SSO or login page, a proxy's error page, a body cut
short by a dropped connection or an empty body all arrive with a success status. Parsing them
straight into a model gives a validation error that names no system, no URL and no status;
``decode_model`` says all of that, shows the start of what came back, and decides whether
asking again can help.
"""

from __future__ import annotations

from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from connectors.base.errors import InvalidResponseError

ModelT = TypeVar("ModelT", bound=BaseModel)

# Methods the HTTP specification calls idempotent: sending them twice does no more harm than
# once, so a garbled answer may be asked for again. POST and PATCH are not among them.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

# Enough of the body to recognise a login page or a proxy's message, short enough for a log.
SNIPPET_BYTES = 200


def redact_url(url: str) -> str:
    """The URL without its query string: some vendors put keys there; logs must not."""
    return url.split("?", 1)[0]


def media_type(response: httpx.Response) -> str:
    """``text/html`` from ``text/html; charset=utf-8``; empty when the header is absent."""
    header = str(response.headers.get("content-type", ""))
    return header.split(";", 1)[0].strip().lower()


def decode_model(
    system: str, response: httpx.Response, model: type[ModelT], *, html_hint: str
) -> ModelT:
    """``model`` from the response's JSON body; ``InvalidResponseError`` when it is not that."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as error:
        raise invalid_response(system, response, error, html_hint=html_hint) from error


def invalid_response(
    system: str, response: httpx.Response, error: ValidationError, *, html_hint: str
) -> InvalidResponseError:
    """Classify a body that did not validate. Only a body that plausibly went wrong in transit
    (empty, or declared JSON that does not parse) is retriable, and only for idempotent
    methods: a POST whose answer was lost may have created its record already."""
    request = response.request
    idempotent = request.method.upper() in IDEMPOTENT_METHODS
    media = media_type(response)
    shown = media or "no content type"
    body = response.content

    def invalid(message: str, *, transient: bool, detail: str | None) -> InvalidResponseError:
        return InvalidResponseError(
            system,
            message,
            retriable=transient and idempotent,
            transient=transient,
            content_type=media or None,
            method=request.method,
            url=redact_url(str(request.url)),
            status=response.status_code,
            detail=detail,
        )

    if not body.strip():
        return invalid(f"expected JSON, got an empty body ({shown})", transient=True, detail=None)
    snippet = _snippet(body)
    problems = error.errors()
    not_json = any(problem["type"] == "json_invalid" for problem in problems)
    if not_json and _is_json(media):
        cut_short = any("EOF" in str(problem.get("msg", "")) for problem in problems)
        what = f"cut short after {len(body):,} bytes" if cut_short else "that does not parse"
        return invalid(f"expected JSON, got {shown} {what}", transient=True, detail=snippet)
    if not_json and _is_html(media, body):
        return invalid(
            f"expected JSON, got {shown}", transient=False, detail=f"{snippet} ({html_hint})"
        )
    if not_json:
        return invalid(f"expected JSON, got {shown}", transient=False, detail=snippet)
    # Well-formed JSON of another shape comes back the same however often it is asked for.
    where = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}"
        for problem in problems[:3]
    )
    return invalid(f"unexpected JSON for {error.title}: {where}", transient=False, detail=snippet)


def _is_json(media: str) -> bool:
    return media in ("application/json", "text/json") or media.endswith("+json")


def _is_html(media: str, body: bytes) -> bool:
    if media in ("text/html", "application/xhtml+xml"):
        return True
    start = body.lstrip()[:15].lower()
    return start.startswith((b"<!doctype html", b"<html"))


def _snippet(body: bytes) -> str:
    """The start of the body in single quotes, control characters escaped (one log line)."""
    text = body[:SNIPPET_BYTES].decode("utf-8", errors="replace")
    shown = "".join(
        "\\" + char if char in "\\'" else char if char.isprintable() else repr(char)[1:-1]
        for char in text
    )
    return f"'{shown}…'" if len(body) > SNIPPET_BYTES else f"'{shown}'"
