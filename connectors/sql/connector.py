"""The SQL connector's declaration: tables of any SQLAlchemy URL as sources and targets."""

from __future__ import annotations

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectors.base.records import RecordSource, RecordTarget
from connectors.base.registry import Connector, EndpointConfig, register
from connectors.sql.engine import make_engine
from connectors.sql.source import SqlTableSource
from connectors.sql.target import SqlTableTarget


class SqlSettings(BaseModel):
    """A database to read from or write to. The URL may hold a password: it is a secret, so it
    is normally given in credentials (in connection only when it holds none)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: SecretStr = Field(description="SQLAlchemy URL, e.g. postgresql://user@host/db")


def table_source(
    endpoint: EndpointConfig,
    settings: SqlSettings,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RecordSource:
    # SQL speaks no HTTP: a transport, if any, is not for this connector.
    return SqlTableSource(
        make_engine(settings.url.get_secret_value()),
        endpoint.object_name,
        key=endpoint.key,
        fields=endpoint.fields,
        filter_sql=endpoint.filter,
    )


def table_target(
    endpoint: EndpointConfig,
    settings: SqlSettings,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RecordTarget:
    return SqlTableTarget(
        make_engine(settings.url.get_secret_value()),
        endpoint.object_name,
        soft_column=endpoint.soft_delete_column,
    )


SQL = register(
    Connector(
        name="sql",
        settings=SqlSettings,
        description="SQL tables (any SQLAlchemy URL): cursor reads; bulk upserts on PostgreSQL "
        "and SQLite",
        source=table_source,
        target=table_target,
        operations=frozenset({"read", "read_keys", "write", "delete"}),
    )
)
