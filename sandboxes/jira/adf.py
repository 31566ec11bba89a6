"""Atlassian Document Format: what v3 takes for ``description``, comment bodies and other
rich text. A plain string is what ``/rest/api/2`` took; v3 answers it with 400, and the
OpenAPI description does not say so (its schema for these fields is open), so the sandbox
checks the shape itself: a ``doc`` node of version 1 whose content is a list of nodes, each
with a ``type``; text nodes carry a string ``text``."""

from __future__ import annotations

from typing import Any


def doc(text: str) -> dict[str, Any]:
    """A one-paragraph document holding ``text``."""
    paragraph: dict[str, Any] = {"type": "paragraph", "content": []}
    if text:
        paragraph["content"] = [{"type": "text", "text": text}]
    return {"type": "doc", "version": 1, "content": [paragraph]}


def problem(value: Any) -> str | None:
    """Why ``value`` is not an ADF document, or None when it is one."""
    if not isinstance(value, dict):
        return "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
    if value.get("type") != "doc" or value.get("version") != 1:
        return "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
    content = value.get("content")
    if not isinstance(content, list):
        return "The document's content must be an array of nodes"
    return _node_problem(content)


def _node_problem(nodes: list[Any], depth: int = 0) -> str | None:
    if depth > 30:
        return "The document is nested too deeply"
    for node in nodes:
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            return "Every node of the document must be an object with a type"
        if node["type"] == "text" and not isinstance(node.get("text"), str):
            return "A text node must have a string text"
        inner = node.get("content")
        if inner is not None:
            if not isinstance(inner, list):
                return "A node's content must be an array of nodes"
            found = _node_problem(inner, depth + 1)
            if found is not None:
                return found
    return None


def plain_text(value: Any) -> str:
    """The document's text, paragraphs joined by newlines (for the changelog's strings)."""
    if not isinstance(value, dict):
        return "" if value is None else str(value)
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "text":
                parts.append(str(node.get("text", "")))
            for child in node.get("content") or []:
                walk(child)
            if node.get("type") in ("paragraph", "heading") and parts:
                parts.append("\n")

    walk(value)
    return "".join(parts).strip()
