"""The Jira connector's declaration: a project's issues as a record source and target.

In a spec, ``object`` is the project key (``OPS``); ``key`` is ``key`` (``OPS-12``) or
``id``; ``filter`` is a JQL condition added to ``project = OPS`` (no ``ORDER BY``); the
cursor field is ``updated``.
"""

from __future__ import annotations

import httpx

from connectors.base.records import RecordSource, RecordTarget
from connectors.base.registry import Connector, EndpointConfig, register
from connectors.jira.client import JiraClient, JiraSettings
from connectors.jira.records import JiraIssueSource
from connectors.jira.target import JiraIssueTarget


def _project(endpoint: EndpointConfig, settings: JiraSettings) -> str:
    """The spec's ``object``; ``issue``/``issues`` stands for the settings' ``project``."""
    if endpoint.object_name.lower() in ("issue", "issues"):
        if not settings.project:
            raise ValueError(
                "jira: object 'issue' needs connection.project (the project key, e.g. OPS)"
            )
        return settings.project
    return endpoint.object_name


def issue_source(
    endpoint: EndpointConfig,
    settings: JiraSettings,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RecordSource:
    return JiraIssueSource(
        JiraClient(settings, transport=transport),
        _project(endpoint, settings),
        key=endpoint.key,
        fields=endpoint.fields,
        jql_filter=endpoint.filter,
    )


def issue_target(
    endpoint: EndpointConfig,
    settings: JiraSettings,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RecordTarget:
    return JiraIssueTarget(JiraClient(settings, transport=transport), _project(endpoint, settings))


JIRA = register(
    Connector(
        name="jira",
        settings=JiraSettings,
        description="Jira Cloud REST v3: a project's issues, read by updated through JQL "
        "search, written by key or by a correlation property and label",
        source=issue_source,
        target=issue_target,
        operations=frozenset({"read", "read_keys", "write"}),
    )
)
