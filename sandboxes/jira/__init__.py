"""The Jira Cloud REST API v3 simulator (see ``sandbox`` for what it reproduces).

Declared on ``sandboxes.core``: ``sandbox`` (authentication, rate-limit headers, the
declaration), ``api`` (routes), ``admin`` (admin routes), ``server`` (serving it). Beneath
them: ``store`` (issues and what writes do), ``writes`` (the server's field rules), ``adf``,
``workflow`` (statuses, transitions, priorities), ``jql`` (with ``jql_fields``) and
``search``, ``rendering``, ``events`` and ``webhooks`` (outgoing webhooks), ``model``,
``seed`` and ``config``.
"""

from sandboxes.jira.config import JiraSandboxConfig
from sandboxes.jira.errors import JiraApiError
from sandboxes.jira.sandbox import JiraSandbox

__all__ = ["JiraApiError", "JiraSandbox", "JiraSandboxConfig"]
