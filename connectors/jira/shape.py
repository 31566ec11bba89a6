"""An issue as a flat record: which Jira fields lie behind each record field, and how the
issue bean (ADF, named objects, Jira's timestamps, the correlation property) is flattened."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from connectors.jira import jql as q
from connectors.jira.client import JiraClient
from connectors.jira.models import IssueBean, adf_to_text

CUSTOM_FIELD = re.compile(r"customfield_\d+")
# Jira field ids behind each flat field (the keys are read from the bean itself).
NATIVE_FIELDS: dict[str, str] = {
    "project": "project",
    "summary": "summary",
    "description": "description",
    "status": "status",
    "priority": "priority",
    "issuetype": "issuetype",
    "labels": "labels",
    "created": "created",
    "updated": "updated",
}
RECORD_FIELDS = ("id", "key", *NATIVE_FIELDS)


def is_known_field(name: str, correlation_field: str) -> bool:
    return name in RECORD_FIELDS or name == correlation_field or bool(CUSTOM_FIELD.fullmatch(name))


class IssueShape:
    """How an issue becomes a flat record, for one site's settings."""

    def __init__(self, client: JiraClient) -> None:
        settings = client.settings
        self.correlation_field = settings.correlation_field
        self.property = settings.correlation_property
        self.label_prefix = settings.correlation_label_prefix

    def native_fields(self, names: Iterable[str]) -> list[str]:
        """Jira field ids to ask for, for the flat ``names``."""
        wanted = ["updated", "status"]
        for name in names:
            if name in NATIVE_FIELDS:
                wanted.append(NATIVE_FIELDS[name])
            elif CUSTOM_FIELD.fullmatch(name):
                wanted.append(name)
        return list(dict.fromkeys(wanted))

    def flatten(self, issue: IssueBean) -> dict[str, Any]:
        fields = issue.fields
        record: dict[str, Any] = {"id": issue.id, "key": issue.key}
        for name, native in NATIVE_FIELDS.items():
            if native not in fields:
                continue
            value = fields[native]
            if name == "description":
                record[name] = adf_to_text(value)
            elif name in ("status", "priority", "issuetype"):
                record[name] = value.get("name") if isinstance(value, dict) else value
            elif name == "project":
                record[name] = value.get("key") if isinstance(value, dict) else value
            elif name == "labels":
                record[name] = [
                    label for label in value or [] if not label.startswith(self.label_prefix)
                ]
            elif name in ("created", "updated"):
                record[name] = q.parse_jira_time(value)
            else:
                record[name] = value
        for name, value in fields.items():
            if CUSTOM_FIELD.fullmatch(name):
                record[name] = adf_to_text(value) if _is_adf(value) else value
        record[self.correlation_field] = self.correlation_of(issue)
        return record

    def correlation_of(self, issue: IssueBean) -> str | None:
        value = issue.properties.get(self.property)
        found = value.get("correlationId") if isinstance(value, dict) else None
        return str(found) if found not in (None, "") else None

    def label(self, value: str) -> str:
        return q.correlation_label(self.label_prefix, value)


def _is_adf(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "doc"
