"""Opening the connectors an integration spec names, with its credentials resolved.

Credentials are references (an environment variable or a Prefect block), resolved here at run
time and handed to the connector as a settings object: connectors never read the environment.
Which connector, which settings model and which factory all come from the connector registry
(``connectors.base.registry``): no connector is named here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from connectors.base import registry
from connectors.base.records import RecordSource, RecordTarget
from connectors.base.registry import Connector, EndpointConfig
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


class ConnectorUnavailableError(ValueError):
    """A spec names a connector that is not registered, or asks it for a side it lacks."""


class ConnectorFactory:
    """Builds sources and targets from the connectors specs name; tests pass in-process
    transports per connector name."""

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

    def settings(self, endpoint: EndpointSpec, role: str) -> BaseModel:
        """``connection`` and the resolved ``credentials``, validated by the connector's model."""
        connector = self._connector(endpoint, role)
        _refuse_passwords_in_urls(endpoint, role)
        values: dict[str, Any] = dict(endpoint.connection)
        for name, ref in endpoint.credentials.items():
            values[name] = resolve_secret(
                ref,
                where=f"{role}.credentials.{name}",
                environ=self.environ,
                load_block=self.load_block,
            )
        try:
            return connector.settings.model_validate(values)
        except ValidationError as error:
            raise CredentialError(_settings_problems(connector, endpoint, role, error)) from None

    def source(self, spec: IntegrationSpec) -> RecordSource:
        endpoint = spec.source
        connector = self._connector(endpoint, "source")
        if connector.source is None:
            raise ConnectorUnavailableError(
                f"source.connector: {connector.name!r} cannot be a source (it only writes)"
            )
        config = EndpointConfig(
            object_name=endpoint.object,
            key=endpoint.key,
            fields=tuple(endpoint.fields) if endpoint.fields else None,
            filter=endpoint.filter,
        )
        settings = self.settings(endpoint, "source")
        return connector.source(config, settings, self.transports.get(connector.name))

    def target(self, spec: IntegrationSpec) -> RecordTarget:
        endpoint = spec.target
        connector = self._connector(endpoint, "target")
        if connector.target is None:
            raise ConnectorUnavailableError(
                f"target.connector: {connector.name!r} cannot be a target (it only reads)"
            )
        config = EndpointConfig(
            object_name=endpoint.object,
            key=endpoint.key,
            soft_delete_column=spec.deletes.column,
        )
        settings = self.settings(endpoint, "target")
        return connector.target(config, settings, self.transports.get(connector.name))

    @staticmethod
    def _connector(endpoint: EndpointSpec, role: str) -> Connector:
        try:
            return registry.get(endpoint.connector)
        except registry.UnknownConnectorError as error:
            raise ConnectorUnavailableError(f"{role}.connector: {error}") from None


def _refuse_passwords_in_urls(endpoint: EndpointSpec, role: str) -> None:
    """A URL in ``connection`` with a password in it is a literal secret in the spec."""
    for name, value in endpoint.connection.items():
        if isinstance(value, str) and "://" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                continue
            if password:
                raise CredentialError(
                    f"{role}.connection.{name} holds a password: move it to "
                    f"credentials.{name} as {{env: VARIABLE}} or {{block: secret/name}}"
                )


def _settings_problems(
    connector: Connector, endpoint: EndpointSpec, role: str, error: ValidationError
) -> str:
    """Every problem with the settings, by where they came from; values are never repeated
    (a credential may be among them)."""
    problems: list[str] = []
    for detail in error.errors(include_input=False, include_url=False):
        loc = detail["loc"]
        name = str(loc[0]) if loc else ""
        section = "credentials" if name in endpoint.credentials else "connection"
        where = ".".join(str(part) for part in (role, section, *loc))
        if detail["type"] == "missing":
            problems.append(
                f"{role}: the {connector.name} connector needs {name} (connection or credentials)"
            )
        else:
            problems.append(f"{where if loc else role}: {detail['msg']}")
    return "; ".join(problems)
