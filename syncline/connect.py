"""Opening the connectors an integration spec names, with its credentials resolved.

Credentials are references (an environment variable or a Prefect block), resolved here at run
time and handed to the connector as a settings object: connectors never read the environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from connectors.base.records import RecordSource, RecordTarget
from connectors.servicenow import (
    ServiceNowClient,
    ServiceNowSettings,
    ServiceNowTableSource,
    ServiceNowTableTarget,
)
from connectors.sql import SqlTableSource, SqlTableTarget, make_engine
from syncline.specs import BlockSecret, EndpointSpec, EnvSecret, IntegrationSpec, SecretRef

BlockLoader = Callable[[str], str]
"""Reads a block reference such as ``secret/servicenow-password`` (flows pass Prefect's)."""


class CredentialError(ValueError):
    pass


def resolve_secret(
    ref: SecretRef,
    *,
    where: str,
    environ: Mapping[str, str] | None = None,
    load_block: BlockLoader | None = None,
) -> str:
    env = os.environ if environ is None else environ
    if isinstance(ref, EnvSecret):
        value = env.get(ref.env) or ref.default
        if not value:
            raise CredentialError(f"{where}: environment variable {ref.env} is not set")
        return value
    assert isinstance(ref, BlockSecret)
    if load_block is None:
        raise CredentialError(f"{where}: block {ref.block!r} needs Prefect to be loaded")
    return load_block(ref.block)


class ConnectorFactory:
    """Builds sources and targets; tests pass in-process transports per system."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        load_block: BlockLoader | None = None,
        transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        self.environ = environ
        self.load_block = load_block
        self.transports = dict(transports or {})

    def _settings(self, endpoint: EndpointSpec, role: str) -> dict[str, Any]:
        values: dict[str, Any] = dict(endpoint.connection)
        for name, ref in endpoint.credentials.items():
            values[name] = resolve_secret(
                ref,
                where=f"{role}.credentials.{name}",
                environ=self.environ,
                load_block=self.load_block,
            )
        return values

    def _servicenow(self, endpoint: EndpointSpec, role: str) -> ServiceNowClient:
        settings = ServiceNowSettings.model_validate(self._settings(endpoint, role))
        return ServiceNowClient(settings, transport=self.transports.get("servicenow"))

    def _sql_url(self, endpoint: EndpointSpec, role: str) -> str:
        url = str(self._settings(endpoint, role).get("url") or "")
        if not url:
            raise CredentialError(
                f"{role}: the sql connector needs a url (connection or credentials)"
            )
        if "url" in endpoint.connection and make_url(url).password:
            raise CredentialError(
                f"{role}.connection.url holds a password: move it to credentials.url as "
                "{env: VARIABLE} or {block: secret/name}"
            )
        return url

    def source(self, spec: IntegrationSpec) -> RecordSource:
        endpoint = spec.source
        if endpoint.connector == "servicenow":
            return ServiceNowTableSource(
                self._servicenow(endpoint, "source"),
                endpoint.object,
                key=endpoint.key,
                fields=endpoint.fields,
                filter_query=endpoint.filter,
            )
        return SqlTableSource(
            make_engine(self._sql_url(endpoint, "source")),
            endpoint.object,
            key=endpoint.key,
            fields=endpoint.fields,
            filter_sql=endpoint.filter,
        )

    def target(self, spec: IntegrationSpec) -> RecordTarget:
        endpoint = spec.target
        if endpoint.connector == "servicenow":
            return ServiceNowTableTarget(self._servicenow(endpoint, "target"), endpoint.object)
        return SqlTableTarget(
            make_engine(self._sql_url(endpoint, "target")),
            endpoint.object,
            soft_column=spec.deletes.column,
        )
