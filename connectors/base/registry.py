"""Connectors as declarations: a name, a settings model and factories for sources and targets.

Each connector declares itself once (``register``); the engine finds it by the name a spec
gives, validates the spec's settings with the connector's model and calls its factories. Adding
a connector therefore touches no engine module. Built-in connectors register when their package
is imported; others through the ``syncline.connectors`` entry-point group (an entry point may
name a ``Connector`` or a module that registers on import).

This module imports neither the engine nor Prefect.
"""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import httpx
from pydantic import BaseModel

from connectors.base.records import RecordSource, RecordTarget

ENTRY_POINT_GROUP = "syncline.connectors"
BUILTIN_MODULES = ("connectors.jira", "connectors.servicenow", "connectors.sql")
OPERATIONS = frozenset({"read", "read_keys", "write", "delete"})


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """What a spec says about one side of an integration, apart from the connection settings."""

    object_name: str
    key: str
    fields: tuple[str, ...] | None = None
    filter: str | None = None
    soft_delete_column: str | None = None
    """Targets only: the column that gets the time of deletion under a ``soft`` policy."""


# The settings argument is the connector's own (validated) settings model instance.
SourceFactory = Callable[[EndpointConfig, Any, httpx.AsyncBaseTransport | None], RecordSource]
TargetFactory = Callable[[EndpointConfig, Any, httpx.AsyncBaseTransport | None], RecordTarget]


@dataclass(frozen=True, slots=True)
class Connector:
    """One outside system as Syncline knows it."""

    name: str
    settings: type[BaseModel]
    description: str
    source: SourceFactory | None
    target: TargetFactory | None
    operations: frozenset[str]

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip():
            raise ValueError(f"a connector needs a name without spaces around it: {self.name!r}")
        unknown = sorted(self.operations - OPERATIONS)
        if unknown:
            raise ValueError(
                f"connector {self.name!r}: unknown operations {', '.join(unknown)} "
                f"(known: {', '.join(sorted(OPERATIONS))})"
            )

    def setting_names(self) -> list[str]:
        """The settings a spec may give, in the model's order (by alias where one is set)."""
        return [field.alias or name for name, field in self.settings.model_fields.items()]

    def required_settings(self) -> list[str]:
        return [
            field.alias or name
            for name, field in self.settings.model_fields.items()
            if field.is_required()
        ]


class UnknownConnectorError(KeyError):
    """No connector of that name; the message suggests the closest and lists the others."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConnectorConflictError(ValueError):
    """A second, different declaration under a name that is taken."""


_registry: dict[str, Connector] = {}
_plugin_failures: dict[str, str] = {}
_loaded = False
_lock = threading.RLock()


def register(connector: Connector) -> Connector:
    """Declare ``connector``; registering the same declaration again is harmless."""
    with _lock:
        known = _registry.get(connector.name)
        if known is not None and known != connector:
            raise ConnectorConflictError(
                f"connector {connector.name!r} is registered already, with another declaration"
            )
        _registry[connector.name] = connector
    return connector


def get(name: str) -> Connector:
    """The connector called ``name``; ``UnknownConnectorError`` (a ``KeyError``) otherwise."""
    _load()
    connector = _registry.get(name)
    if connector is not None:
        return connector
    raise UnknownConnectorError(unknown_connector_message(name))


def all_connectors() -> list[Connector]:
    """Every registered connector, by name."""
    _load()
    return [_registry[name] for name in sorted(_registry)]


def unknown_connector_message(name: str) -> str:
    """``unknown connector 'x' (did you mean 'y'?); registered connectors: a, b``."""
    _load()
    names = sorted(_registry)
    close = difflib.get_close_matches(name, names, n=1)
    message = f"unknown connector {name!r}"
    message += f" (did you mean {close[0]!r}?)" if close else ""
    message += f"; registered connectors: {', '.join(names) or 'none'}"
    if _plugin_failures:
        failed = "; ".join(
            f"{entry}: {reason}" for entry, reason in sorted(_plugin_failures.items())
        )
        message += f" (connector plugins that failed to load: {failed})"
    return message


def _load() -> None:
    """Import the built-ins and the entry-point plugins, once.

    A plugin that fails to load does not stop the others (nor a run of a built-in); its
    failure is named when a spec asks for a connector that is not there.
    """
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        # Set first: the modules imported below call register(), which must not recurse here.
        _loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = entry.load()
                if isinstance(loaded, Connector):
                    register(loaded)
            except Exception as error:
                _plugin_failures[f"{entry.name} = {entry.value}"] = (
                    f"{type(error).__name__}: {error}"
                )


__all__ = [
    "ENTRY_POINT_GROUP",
    "OPERATIONS",
    "Connector",
    "ConnectorConflictError",
    "EndpointConfig",
    "SourceFactory",
    "TargetFactory",
    "UnknownConnectorError",
    "all_connectors",
    "get",
    "register",
    "unknown_connector_message",
]
