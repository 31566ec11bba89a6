"""Pagination strategies, written once for every connector.

A paginator looks at the request just sent and the response it got, and says what to ask next
(or ``None`` when the last page has arrived). Three shapes cover the vendors we speak to:

- ``LinkHeaderPaginator``: RFC 8288 ``Link: <…>; rel="next"`` (GitHub, PagerDuty);
- ``NextUrlPaginator``: a next-page URL in the body (Salesforce ``nextRecordsUrl``);
- ``CursorTokenPaginator``: an opaque token in the body sent back as a parameter or body field
  (Jira ``nextPageToken``, Datadog ``meta.page.after``).

A next-page URL is the vendor's word: ``RestClient`` refuses one that leaves the configured
origin before sending anything. Offset-style pages over a table that changes while it is read
can skip rows; ``connectors.base.keyset`` pages by "rows after the last one" instead (ServiceNow
reads use it).

Each next page carries the ``token`` that led to it (the cursor token or the next URL). A
token that comes back a second time means the vendor is handing out the same pages again;
following it would read forever, so ``PageTrail`` stops the read with a ``FatalError`` naming
the token.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import httpx

from connectors.base.decode import redact_url
from connectors.base.errors import FatalError

# Enough of a token to recognise it in a log line.
TOKEN_SHOWN = 80


@dataclass(frozen=True, slots=True)
class PageRequest:
    """What to send for one page; the client adds auth, headers and retries."""

    method: str
    url: str
    params: dict[str, str] | None = None
    json: Any = None
    # What the vendor gave to reach this page: a cursor token or a next-page URL.
    token: str | None = None
    via: str = "token"  # "token" or "URL"


@dataclass(slots=True)
class PageTrail:
    """The next-page tokens one read has followed; a repeated one stops the read."""

    system: str
    seen: set[str] = field(default_factory=set)

    def check(self, page: PageRequest) -> None:
        if page.token is None:
            return
        if page.token in self.seen:
            raise FatalError(
                self.system,
                f"the next-page {page.via} {_shown(page)} came back a second time",
                method=page.method,
                url=redact_url(page.url),
                detail=f"the vendor is handing out pages already read; the read stops "
                f"after {len(self.seen) + 1} pages rather than loop",
            )
        self.seen.add(page.token)


def _shown(page: PageRequest) -> str:
    token = page.token or ""
    if page.via == "URL":
        # Query strings may carry keys: the URL is named without one.
        shown = redact_url(token)
        return f"{shown!r} (query string not shown)" if shown != token else repr(shown)
    return repr(token[:TOKEN_SHOWN] + ("…" if len(token) > TOKEN_SHOWN else ""))


class Paginator(Protocol):
    def next_request(self, sent: PageRequest, response: httpx.Response) -> PageRequest | None: ...


class LinkHeaderPaginator:
    """Follow ``rel="next"`` in the ``Link`` header; its URL already carries every parameter."""

    def next_request(self, sent: PageRequest, response: httpx.Response) -> PageRequest | None:
        next_url = response.links.get("next", {}).get("url")
        if not next_url:
            return None
        return PageRequest(method="GET", url=next_url, token=next_url, via="URL")


@dataclass(frozen=True, slots=True)
class NextUrlPaginator:
    """Follow a URL found at ``url_field`` of the JSON body until ``done_field`` is true."""

    url_field: str = "nextRecordsUrl"
    done_field: str | None = "done"

    def next_request(self, sent: PageRequest, response: httpx.Response) -> PageRequest | None:
        body = response.json()
        if self.done_field is not None and body.get(self.done_field) is True:
            return None
        next_url = body.get(self.url_field)
        if not next_url:
            return None
        return PageRequest(method="GET", url=str(next_url), token=str(next_url), via="URL")


@dataclass(frozen=True, slots=True)
class CursorTokenPaginator:
    """Send back the token found at ``token_path`` (dotted) until it is absent or ``last_field``.

    ``send_as`` is ``"param"`` (query string) or ``"body"`` (a field of the JSON body).
    """

    token_path: str = "nextPageToken"  # noqa: S105 - a field name, not a secret
    send_as: str = "body"
    send_field: str = "nextPageToken"
    last_field: str | None = "isLast"

    def next_request(self, sent: PageRequest, response: httpx.Response) -> PageRequest | None:
        body = response.json()
        if self.last_field is not None and body.get(self.last_field) is True:
            return None
        token: Any = body
        for part in self.token_path.split("."):
            token = token.get(part) if isinstance(token, dict) else None
        if not token:
            return None
        text = str(token)
        if self.send_as == "param":
            return replace(sent, params={**(sent.params or {}), self.send_field: text}, token=text)
        return replace(sent, json={**(sent.json or {}), self.send_field: token}, token=text)
