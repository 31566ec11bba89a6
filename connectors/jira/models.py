"""Pydantic models of what Jira Cloud's REST API v3 sends and receives, and Atlassian Document
Format (ADF) to and from plain text.

Only what the connector reads is modelled; every model ignores the rest (Jira adds fields to
its beans without notice), so a new field never breaks a read.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class JiraModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ErrorCollection(JiraModel):
    """Jira's error body: ``{"errorMessages": [...], "errors": {"field": "message"}}``."""

    error_messages: list[str] = Field(default_factory=list, alias="errorMessages")
    errors: dict[str, str] = Field(default_factory=dict)

    def describe(self) -> str:
        """``summary: You must specify a summary of the issue.; <messages>``."""
        parts = [f"{field}: {message}" for field, message in sorted(self.errors.items())]
        parts.extend(self.error_messages)
        return "; ".join(parts)


class CreatedIssue(JiraModel):
    """``201`` of ``POST /rest/api/3/issue``."""

    id: str
    key: str


class IssueBean(JiraModel):
    """An issue as a GET or a search shows it: only the fields asked for are in ``fields``."""

    id: str
    key: str = ""
    fields: dict[str, Any] = Field(default_factory=dict)
    properties: dict[str, Any] = Field(default_factory=dict)


class SearchPage(JiraModel):
    """One page of ``POST /rest/api/3/search/jql``: no ``total``, and ``nextPageToken``
    absent (not null) on the last page."""

    issues: list[IssueBean] = Field(default_factory=list)
    next_page_token: str | None = Field(default=None, alias="nextPageToken")
    is_last: bool | None = Field(default=None, alias="isLast")


class StatusRef(JiraModel):
    id: str = ""
    name: str


class Transition(JiraModel):
    """A transition the issue's workflow offers from its current status."""

    id: str
    name: str
    to: StatusRef


class TransitionList(JiraModel):
    transitions: list[Transition] = Field(default_factory=list)


class Comment(JiraModel):
    id: str
    body: Any = None
    created: str | None = None
    updated: str | None = None

    @property
    def text(self) -> str:
        return adf_to_text(self.body)


class CommentPage(JiraModel):
    """``GET .../comment``: old-style paging (startAt, maxResults, total)."""

    start_at: int = Field(default=0, alias="startAt")
    max_results: int = Field(default=0, alias="maxResults")
    total: int = 0
    comments: list[Comment] = Field(default_factory=list)


class EntityProperty(JiraModel):
    key: str
    value: Any = None


# --- Atlassian Document Format ------------------------------------------------------------

# Block nodes whose text ends a line when turned into plain text.
_BLOCKS = frozenset(
    {"paragraph", "heading", "listItem", "blockquote", "codeBlock", "rule", "tableRow", "panel"}
)


def text_to_adf(text: str) -> dict[str, Any]:
    """A document of one paragraph per line (``hardBreak``-free, so it reads back the same);
    an empty line is an empty paragraph. v3 refuses a plain string where rich text goes."""
    paragraphs: list[dict[str, Any]] = []
    for line in text.split("\n"):
        paragraph: dict[str, Any] = {"type": "paragraph", "content": []}
        if line:
            paragraph["content"] = [{"type": "text", "text": line}]
        paragraphs.append(paragraph)
    return {"type": "doc", "version": 1, "content": paragraphs}


def adf_to_text(document: Any) -> str:
    """The text of an ADF document: one line per paragraph (or other block), hard breaks as
    line breaks, mentions and emoji by their text; marks (bold, links) are dropped."""
    if document is None:
        return ""
    if isinstance(document, str):
        return document
    lines: list[str] = []
    current: list[str] = []

    def walk(node: Any) -> None:
        if not isinstance(node, dict):
            return
        kind = node.get("type")
        if kind == "text":
            current.append(str(node.get("text", "")))
        elif kind == "hardBreak":
            current.append("\n")
        elif kind in ("mention", "emoji", "status", "date", "inlineCard"):
            attrs = node.get("attrs") or {}
            current.append(str(attrs.get("text") or attrs.get("shortName") or attrs.get("url", "")))
        for child in node.get("content") or []:
            walk(child)
        if kind in _BLOCKS and kind != "listItem":
            lines.append("".join(current))
            current.clear()

    walk(document)
    if current:
        lines.append("".join(current))
    return "\n".join(lines).strip("\n")
