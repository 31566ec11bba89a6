"""Jira Cloud REST API v3 connector (registered as ``jira`` on import)."""

from connectors.jira import connector as connector
from connectors.jira.client import JiraClient, JiraSettings
from connectors.jira.models import adf_to_text, text_to_adf
from connectors.jira.records import JiraIssueSource
from connectors.jira.target import JiraIssueTarget

__all__ = [
    "JiraClient",
    "JiraIssueSource",
    "JiraIssueTarget",
    "JiraSettings",
    "adf_to_text",
    "text_to_adf",
]
