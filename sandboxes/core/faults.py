"""Faults a vendor simulator can inject, for tests that prove a client copes with them.

Shared by every simulator; the examples name ServiceNow's headers and admin path.

Request faults: every Nth API request is rate limited (429 with ``Retry-After``), fails
(500/503) or answers 200 with garbage: an HTML login page (what an SSO proxy or an expired
session answers in front of an instance), a JSON body cut in the middle (a connection
dropped mid-body) or an empty body. Latency is added to every request.

Read faults, on list (collection GET) requests:

* ``empty_page_every`` / ``short_page_every``: every Nth list request answers with no rows or
  only the first half of its rows, with the headers (``X-Total-Count``, ``Link``) of the full
  page. The glitch is transient: the same request again gets the full page.
* ``hidden_fraction``: records hidden as by access rules, persistently. A real instance
  applies read ACLs to the rows of a page after counting, so hidden rows leave pages short
  while ``X-Total-Count`` still counts them; a single-record GET answers 404. Which records
  are hidden depends only on their sys_id (a hash), and a larger fraction hides a superset.
* ``foreign_link_host``: the ``Link`` header's URLs point at another origin, as an instance
  behind a misconfigured proxy announces its internal name.

Write faults, on POST/PUT/PATCH/DELETE (see ``write_faults``): ``write_fault_rate`` (random,
from ``seed``) or ``write_fault_every`` (every Nth write) make a write fail before it is
saved, fail after it is saved, or lose its reply after it is saved, as ``write_fault_kinds``
allows.

Everything is off by default. Counters start at zero whenever the configuration is replaced
(``sandbox.faults = FaultConfig(...)`` or ``PUT /sandbox/servicenow/faults``), so "every Nth"
counts from then.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import pydantic
from starlette.responses import Response

from sandboxes.core.write_faults import WRITE_FAULT_KINDS, WriteFaultKind

T = TypeVar("T")

GarbageKind = Literal["html", "truncated", "empty"]
_HIDDEN_SCALE = float(1 << 64)


class FaultConfig(pydantic.BaseModel):
    """Faults injected into API requests; change the fields at run time."""

    model_config = pydantic.ConfigDict(validate_assignment=True)

    rate_limit_every: int | None = pydantic.Field(default=None, ge=1)
    retry_after_seconds: float = pydantic.Field(default=1.0, ge=0)
    server_error_every: int | None = pydantic.Field(default=None, ge=1)
    server_error_status: Literal[500, 503] = 500
    latency_ms: float = pydantic.Field(default=0.0, ge=0)
    empty_page_every: int | None = pydantic.Field(default=None, ge=1)
    short_page_every: int | None = pydantic.Field(default=None, ge=1)
    hidden_fraction: float = pydantic.Field(default=0.0, ge=0.0, le=1.0)
    foreign_link_host: str | None = pydantic.Field(
        default=None, pattern=r"^https?://[^/\s?#]+/?$", examples=["http://127.0.0.1:9999"]
    )
    garbage_every: int | None = pydantic.Field(default=None, ge=1)
    garbage_kind: GarbageKind = "html"
    write_fault_rate: float = pydantic.Field(default=0.0, ge=0.0, le=1.0)
    write_fault_every: int | None = pydantic.Field(default=None, ge=1)
    write_fault_kinds: list[WriteFaultKind] = pydantic.Field(
        default_factory=lambda: list(WRITE_FAULT_KINDS)
    )
    # Seeds the random write faults; the same seed and order of writes fault the same ones.
    seed: int = 0


@dataclass(slots=True)
class FaultCounters:
    """Requests counted towards the "every Nth" faults."""

    api_requests: int = 0
    list_requests: int = 0


def falls_on(count: int, every: int | None) -> bool:
    return every is not None and count % every == 0


def is_hidden(sys_id: str, fraction: float) -> bool:
    """Whether access rules hide the record: a stable hash of the sys_id below ``fraction``."""
    if fraction <= 0.0:
        return False
    if fraction >= 1.0:
        return True
    digest = hashlib.blake2b(sys_id.encode(), digest_size=8, person=b"sn-acl").digest()
    return int.from_bytes(digest, "big") / _HIDDEN_SCALE < fraction


def glitched_page(rows: Sequence[T], faults: FaultConfig, list_request: int) -> Sequence[T]:
    """The rows a list request answers with after a transient glitch, if one falls on it;
    an empty page wins over a short one."""
    if falls_on(list_request, faults.empty_page_every):
        return rows[:0]
    if falls_on(list_request, faults.short_page_every):
        return rows[: len(rows) // 2]
    return rows


def link_origin(faults: FaultConfig) -> str | None:
    """``scheme://host[:port]`` for the ``Link`` header's URLs; None for the request's own."""
    if faults.foreign_link_host is None:
        return None
    return faults.foreign_link_host.rstrip("/")


_LOGIN_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Log in | ServiceNow</title>
</head>
<body class="login">
<form id="loginPage" name="loginPage" method="post" action="login.do">
<input type="hidden" name="sysparm_ck" value="">
<label for="user_name">User name</label><input id="user_name" name="user_name" type="text">
<label for="user_password">Password</label>
<input id="user_password" name="user_password" type="password">
<button id="sysverb_login" type="submit">Log in</button>
</form>
</body>
</html>
"""


def login_page() -> Response:
    """An instance's login page, answered with 200 in place of the API's JSON."""
    return Response(
        _LOGIN_PAGE.encode(), status_code=200, headers={"Content-Type": "text/html;charset=UTF-8"}
    )


def garbled(response: Response, kind: GarbageKind) -> Response:
    """``response`` as a 200 whose body was cut in the middle (``truncated``) or lost
    (``empty``), keeping its other headers. The request itself was carried out."""
    body = bytes(response.body)
    if kind == "truncated":
        body = body[: len(body) // 2]
    elif kind == "empty":
        body = b""
    headers = {
        name: value
        for name, value in response.headers.items()
        if name.lower() not in ("content-length", "content-type")
    }
    headers["Content-Type"] = "application/json;charset=UTF-8"
    return Response(body, status_code=200, headers=headers)
