"""Write bodies (``fields`` and ``update`` of create, edit and transition) checked the way
the server checks them, and turned into the values to store.

The OpenAPI description leaves these objects open, so a client learns the rules only from
the server: ``project``, ``issuetype`` and ``summary`` are required on create (createmeta),
rich text must be ADF, ``status`` is changed only by a transition, fields the screen does not
have are refused with ``Field 'x' cannot be set. It is not on the appropriate screen, or
unknown.``, and every problem is reported at once in ``errors{field: message}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from sandboxes.jira import adf
from sandboxes.jira.errors import JiraApiError, bad_request, field_errors
from sandboxes.jira.workflow import DONE_RESOLUTION, ISSUE_TYPES, PRIORITIES, find_named

CUSTOM_FIELD = re.compile(r"customfield_\d{5,}")
DUE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Fields an edit or create may set; ``resolution`` only on a transition's screen.
EDITABLE = frozenset(
    {"summary", "description", "issuetype", "priority", "labels", "assignee", "duedate"}
)
PROPERTY_VALUE_LIMIT = 32_768


@dataclass(slots=True)
class Changes:
    """Validated values to store, label operations and comments to add."""

    values: dict[str, Any] = field(default_factory=dict)
    label_ops: list[tuple[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)


def cannot_set(name: str) -> str:
    return f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."


def read_changes(
    body: dict[str, Any],
    *,
    creating: bool = False,
    transitioning: bool = False,
    account_ids: frozenset[str] = frozenset(),
) -> Changes:
    """The ``fields`` and ``update`` of ``body``; raises a 400 naming every bad field."""
    fields = body.get("fields") or {}
    update = body.get("update") or {}
    if not isinstance(fields, dict) or not isinstance(update, dict):
        raise bad_request("fields and update must be JSON objects")
    changes = Changes()
    errors: dict[str, str] = {}
    for name, value in fields.items():
        if creating and name == "project":
            continue
        if name == "resolution" and transitioning:
            if value is not None and find_named((DONE_RESOLUTION,), value) is None:
                errors[name] = "Resolution is invalid."
            changes.values[name] = DONE_RESOLUTION if value is not None else None
            continue
        problem = _check(name, value, account_ids)
        if problem is not None:
            errors[name] = problem
        else:
            changes.values[name] = _stored(name, value)
    for name, operations in update.items():
        problem = _read_operations(name, operations, changes)
        if problem is not None:
            errors[name] = problem
    if creating:
        for name, message in (
            ("issuetype", "Specify an issue type"),
            ("summary", "You must specify a summary of the issue."),
        ):
            if name not in changes.values and name not in errors:
                errors[name] = message
    if errors:
        raise field_errors(errors)
    return changes


def _check(name: str, value: Any, account_ids: frozenset[str]) -> str | None:
    if name not in EDITABLE and not CUSTOM_FIELD.fullmatch(name):
        return cannot_set(name)
    if name == "summary":
        if not isinstance(value, str) or not value.strip():
            return "You must specify a summary of the issue."
        if len(value) > 255:
            return "Summary must be less than 255 characters."
    elif name == "description":
        if value is not None:
            return adf.problem(value)
    elif name == "issuetype":
        if find_named(ISSUE_TYPES, value) is None:
            return "Specify a valid issue type"
    elif name == "priority":
        if find_named(PRIORITIES, value) is None:
            return "Specify the Priority (id or name) in the string format"
    elif name == "labels":
        if not isinstance(value, list) or not all(_is_label(label) for label in value):
            return "The label must be a string without spaces."
    elif name == "assignee":
        if value is not None and (
            not isinstance(value, dict) or value.get("accountId") not in account_ids
        ):
            return "Specify a valid value for assignee"
    elif name == "duedate" and value is not None and not _is_date(value):
        return "Error parsing date string: " + str(value)
    return None


def _stored(name: str, value: Any) -> Any:
    if name == "issuetype":
        return find_named(ISSUE_TYPES, value)
    if name == "priority":
        return find_named(PRIORITIES, value)
    if name == "assignee":
        return value["accountId"] if value is not None else None
    if name == "labels":
        return list(dict.fromkeys(value))
    return value


def _is_date(value: Any) -> bool:
    return isinstance(value, str) and DUE_DATE.fullmatch(value) is not None


def _is_label(label: Any) -> bool:
    return isinstance(label, str) and bool(label) and not any(c.isspace() for c in label)


def _read_operations(name: str, operations: Any, changes: Changes) -> str | None:
    """``update: {field: [{"set"|"add"|"remove": value}]}``."""
    if not isinstance(operations, list):
        return "Operations must be a list"
    for operation in operations:
        if not isinstance(operation, dict) or len(operation) != 1:
            return "Each operation must be an object with one verb"
        verb, value = next(iter(operation.items()))
        if name == "labels" and verb in ("add", "remove"):
            if not _is_label(value):
                return "The label must be a string without spaces."
            changes.label_ops.append((verb, value))
        elif name == "comment" and verb == "add":
            body = value.get("body") if isinstance(value, dict) else None
            problem = adf.problem(body)
            if problem is not None or not isinstance(body, dict):
                return problem
            changes.comments.append(body)
        elif verb == "set" and name != "comment":
            problem = _check(name, value, frozenset())
            if name == "assignee":
                problem = None if value is None else problem
            if problem is not None:
                return problem
            changes.values[name] = _stored(name, value)
        else:
            return f"Operation '{verb}' is not supported for field '{name}'"
    return None


def read_properties(entries: Any) -> dict[str, Any]:
    """``properties: [{key, value}]`` of a create, checked."""
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise bad_request("properties must be a list")
    properties = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise bad_request("Each property must have a key")
        check_property(entry["key"], entry.get("value"))
        properties[entry["key"]] = entry.get("value")
    return properties


def check_property(key: str, value: Any) -> None:
    if not key or len(key) > 255:
        raise JiraApiError(400, ["The property key must be between 1 and 255 characters."])
    if len(orjson.dumps(value)) > PROPERTY_VALUE_LIMIT:
        raise JiraApiError(400, ["The property value is longer than 32768 bytes."])
