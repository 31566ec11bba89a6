"""ServiceNow Table API connector (registered as ``servicenow`` on import)."""

from connectors.servicenow import connector as connector
from connectors.servicenow.client import ServiceNowClient, ServiceNowSettings
from connectors.servicenow.query import EncodedQuery
from connectors.servicenow.records import ServiceNowTableSource, ServiceNowTableTarget

__all__ = [
    "EncodedQuery",
    "ServiceNowClient",
    "ServiceNowSettings",
    "ServiceNowTableSource",
    "ServiceNowTableTarget",
]
