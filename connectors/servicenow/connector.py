"""The ServiceNow connector's declaration: Table API tables as record sources and targets."""

from __future__ import annotations

import httpx

from connectors.base.records import RecordSource, RecordTarget
from connectors.base.registry import Connector, EndpointConfig, register
from connectors.servicenow.client import ServiceNowClient, ServiceNowSettings
from connectors.servicenow.records import ServiceNowTableSource, ServiceNowTableTarget


def table_source(
    endpoint: EndpointConfig,
    settings: ServiceNowSettings,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RecordSource:
    return ServiceNowTableSource(
        ServiceNowClient(settings, transport=transport),
        endpoint.object_name,
        key=endpoint.key,
        fields=endpoint.fields,
        filter_query=endpoint.filter,
    )


def table_target(
    endpoint: EndpointConfig,
    settings: ServiceNowSettings,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RecordTarget:
    return ServiceNowTableTarget(
        ServiceNowClient(settings, transport=transport), endpoint.object_name
    )


SERVICENOW = register(
    Connector(
        name="servicenow",
        settings=ServiceNowSettings,
        description="ServiceNow Table API: any table, read by keyset, written one record a request",
        source=table_source,
        target=table_target,
        operations=frozenset({"read", "read_keys", "write", "delete"}),
    )
)
