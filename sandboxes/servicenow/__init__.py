"""The ServiceNow Table API simulator (see ``sandbox`` for what it reproduces).

Declared on ``sandboxes.core``: ``sandbox`` (authentication, rate-limit policy, faults),
``table_api`` (routes), ``admin`` (admin routes), ``server`` (serving it). Beneath them:
``store`` (tables, records, saved state), ``query`` and ``encoded_query`` (the query engine),
``records`` and ``incident_rules`` (the instance's own writes and business rules),
``rendering``, ``schema``, ``seed`` (with ``seed_tables`` and ``seed_writer``), ``changes``
(realistic edits) and ``churn``.
"""

from sandboxes.servicenow.api import TableApiError
from sandboxes.servicenow.config import SandboxStats, ServiceNowSandboxConfig
from sandboxes.servicenow.sandbox import ServiceNowSandbox

__all__ = ["SandboxStats", "ServiceNowSandbox", "ServiceNowSandboxConfig", "TableApiError"]
