"""Connectors are declarations: one declared in this module runs end to end through the engine
with no engine edit, and the registry refuses what would be ambiguous."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from pydantic import BaseModel, ConfigDict

from connectors.base import registry
from connectors.base.records import (
    Column,
    CursorValue,
    DeleteRule,
    ReadWindow,
    RecordSource,
    RecordTarget,
    WriteResult,
)
from connectors.base.registry import Connector, EndpointConfig
from connectors.base.stats import CallStats
from syncline.connect import ConnectorFactory, ConnectorUnavailableError, CredentialError
from syncline.specs import IntegrationSpec, SpecError, load_spec
from syncline.state import Ledger
from syncline.sync import finish_run, run_sync

# The "memory" connector's whole world: store name -> object name -> key -> record.
STORES: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}


class MemorySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str
    batch_rows: int = 100


class MemorySource:
    system = "memory"

    def __init__(self, endpoint: EndpointConfig, settings: MemorySettings) -> None:
        self.object_name = endpoint.object_name
        self.records = STORES.setdefault(settings.store, {}).setdefault(endpoint.object_name, {})
        self.fields = list(endpoint.fields or [])
        self.batch_rows = settings.batch_rows
        self.reads = 0

    def _window(self, window: ReadWindow) -> list[dict[str, Any]]:
        rows = list(self.records.values())
        if window.cursor_field is not None:
            field = window.cursor_field
            rows = [
                row
                for row in rows
                if (window.since is None or row[field] >= window.since)
                and (window.until is None or row[field] <= window.until)
            ]
        return rows

    async def prepare(self, fields: Sequence[str]) -> None:
        self.fields = list(fields)

    async def read(self, window: ReadWindow) -> AsyncIterator[pd.DataFrame]:
        rows = self._window(window)
        for start in range(0, len(rows), self.batch_rows):
            chunk = rows[start : start + self.batch_rows]
            self.reads += len(chunk)
            yield pd.DataFrame([{name: row.get(name) for name in self.fields} for row in chunk])

    async def read_keys(
        self, window: ReadWindow, *, scoped: bool = True
    ) -> AsyncIterator[list[str]]:
        yield [str(row["id"]) for row in self._window(window)]

    async def in_scope(self, keys: Sequence[str]) -> set[str]:
        return {key for key in keys if key in self.records}

    def unread(self) -> int:
        return 0

    def max_cursor(self, batch: pd.DataFrame, cursor_field: str) -> CursorValue | None:
        return int(batch[cursor_field].max()) if len(batch) else None

    def expected_rows(self) -> int | None:
        return None

    def call_stats(self) -> CallStats | None:
        return None

    async def aclose(self) -> None:
        pass


class MemoryTarget:
    system = "memory"

    def __init__(self, endpoint: EndpointConfig, settings: MemorySettings) -> None:
        self.object_name = endpoint.object_name
        self.records = STORES.setdefault(settings.store, {}).setdefault(endpoint.object_name, {})

    async def prepare(self, columns: Sequence[Column], key: str) -> None:
        pass

    async def upsert(self, batch: pd.DataFrame, key: str) -> WriteResult:
        result = WriteResult()
        for record in batch.to_dict("records"):
            row = {str(column): value for column, value in record.items()}
            name = str(row[key])
            if name not in self.records:
                result.created.append(name)
            elif self.records[name] != row:
                result.updated.append(name)
            else:
                result.unchanged += 1
                continue
            self.records[name] = row
        return result

    async def delete(self, keys: Sequence[Any], key: str, rule: DeleteRule) -> list[str]:
        return [str(k) for k in keys if self.records.pop(str(k), None) is not None]

    async def read_keys(self, key: str) -> AsyncIterator[list[str]]:
        yield list(self.records)

    def call_stats(self) -> CallStats | None:
        return None

    async def aclose(self) -> None:
        pass


def memory_source(
    endpoint: EndpointConfig, settings: MemorySettings, transport: httpx.AsyncBaseTransport | None
) -> RecordSource:
    return MemorySource(endpoint, settings)


def memory_target(
    endpoint: EndpointConfig, settings: MemorySettings, transport: httpx.AsyncBaseTransport | None
) -> RecordTarget:
    return MemoryTarget(endpoint, settings)


MEMORY = registry.register(
    Connector(
        name="memory",
        settings=MemorySettings,
        description="records in a dict, for tests",
        source=memory_source,
        target=memory_target,
        operations=frozenset({"read", "read_keys", "write", "delete"}),
    )
)
MEMORY_SINK = registry.register(
    Connector(
        name="memory-sink",
        settings=MemorySettings,
        description="write-only records in a dict, for tests",
        source=None,
        target=memory_target,
        operations=frozenset({"write"}),
    )
)

SPEC = """\
name: people-copy
source:
  connector: memory
  object: people
  connection:
    store: {store}
  key: id
  fields: [id, name, version]
  cursor: {{field: version, type: integer, overlap_count: 0}}
target:
  connector: memory
  object: people_copy
  connection:
    store: {store}
    batch_rows: 2
  key: person_id
mapping:
  person_id: {{from: id, required: true}}
  name: {{expr: "upper(name)"}}
"""


def write_spec(tmp_path: Path, store: str, text: str = SPEC) -> Path:
    path = tmp_path / "people_copy.yaml"
    path.write_text(text.format(store=store))
    return path


def sync(spec: IntegrationSpec, ledger: Ledger, run: str) -> Any:
    factory = ConnectorFactory(environ={})
    source, target = factory.source(spec), factory.target(spec)

    async def go() -> Any:
        try:
            return await run_sync(spec, source, target, ledger, flow_run_id=run)
        finally:
            await source.aclose()
            await target.aclose()

    summary = asyncio.run(go())
    finish_run(ledger, summary)
    return summary


def test_a_connector_declared_outside_the_engine_runs_end_to_end(tmp_path: Path) -> None:
    people = {
        str(n): {"id": str(n), "name": f"person {n}", "version": n, "secret_note": "x"}
        for n in range(1, 6)
    }
    STORES["e2e"] = {"people": people}
    spec = load_spec(write_spec(tmp_path, "e2e"), environ={})
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")

    first = sync(spec, ledger, "run-1")
    copied = STORES["e2e"]["people_copy"]
    assert {key: row["name"] for key, row in copied.items()} == {
        str(n): f"PERSON {n}" for n in range(1, 6)
    }
    assert (first.read, first.created) == (5, 5)

    people["3"] = {"id": "3", "name": "renamed", "version": 9}
    second = sync(spec, ledger, "run-2")
    assert copied["3"]["name"] == "RENAMED"
    # The boundary record (version 5) is read again, by design, and left unchanged.
    assert (second.read, second.updated, second.unchanged) == (2, 1, 1)
    assert second.cursor_before == 5 and second.cursor_after == 9


def test_a_connector_without_a_source_cannot_be_read_from(tmp_path: Path) -> None:
    text = SPEC.replace(
        "  connector: memory\n  object: people\n", "  connector: memory-sink\n  object: people\n"
    )
    spec = load_spec(write_spec(tmp_path, "sink", text), environ={})
    factory = ConnectorFactory(environ={})
    with pytest.raises(ConnectorUnavailableError, match="'memory-sink' cannot be a source"):
        factory.source(spec)
    assert isinstance(factory.target(spec), MemoryTarget)


def test_settings_of_a_declared_connector_are_checked_in_the_spec(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "s", SPEC.replace("    batch_rows: 2", "    batch_row: 2"))
    with pytest.raises(SpecError) as caught:
        load_spec(path, environ={})
    line = next(
        i for i, text in enumerate(path.read_text().splitlines(), 1) if "batch_row:" in text
    )
    assert caught.value.problems == [
        f"{path}:{line}: target.connection: unknown setting 'batch_row' (did you mean "
        "'batch_rows'?); memory settings: store, batch_rows"
    ]


def test_registering_the_same_declaration_twice_is_harmless_another_is_refused() -> None:
    assert registry.register(MEMORY) is MEMORY
    other = Connector(
        name="memory",
        settings=MemorySettings,
        description="another one",
        source=None,
        target=memory_target,
        operations=frozenset({"write"}),
    )
    with pytest.raises(registry.ConnectorConflictError, match="'memory' is registered already"):
        registry.register(other)
    assert registry.get("memory") is MEMORY


def test_unknown_operations_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown operations upsert"):
        Connector("odd", MemorySettings, "", None, None, frozenset({"upsert"}))


def test_unknown_connector_suggests_and_lists() -> None:
    with pytest.raises(KeyError) as caught:
        registry.get("servicenw")
    message = str(caught.value)
    assert message.startswith("unknown connector 'servicenw' (did you mean 'servicenow'?)")
    assert "registered connectors: " in message
    assert "memory, memory-sink" in message and "servicenow, sql" in message


def test_unknown_connector_in_a_spec_is_reported_at_its_line(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "u", SPEC.replace("connector: memory\n", "connector: memroy\n", 1))
    with pytest.raises(SpecError) as caught:
        load_spec(path, environ={})
    assert caught.value.problems == [
        f"{path}:3: source.connector: unknown connector 'memroy' (did you mean 'memory'?); "
        f"registered connectors: {', '.join(c.name for c in registry.all_connectors())}"
    ]


def test_builtin_connectors_are_listed_with_their_settings() -> None:
    by_name = {connector.name: connector for connector in registry.all_connectors()}
    servicenow, sql = by_name["servicenow"], by_name["sql"]
    assert {"instance_url", "page_size", "username", "password", "token"} <= set(
        servicenow.setting_names()
    )
    assert servicenow.required_settings() == ["instance_url"]
    assert sql.setting_names() == ["url"]
    for connector in (servicenow, sql):
        assert connector.source is not None and connector.target is not None
        assert connector.operations == registry.OPERATIONS


def test_a_password_in_a_connection_url_is_refused_and_not_echoed() -> None:
    spec = IntegrationSpec.model_validate(
        {
            "name": "to-db",
            "source": {
                "connector": "memory",
                "object": "people",
                "key": "id",
                "connection": {"store": "pw"},
            },
            "target": {
                "connector": "sql",
                "object": "people",
                "key": "id",
                "connection": {"url": "postgresql://me:hunter2@db.example/reports"},
            },
            "mapping": {"id": "id"},
        }
    )
    with pytest.raises(CredentialError) as caught:
        ConnectorFactory(environ={}).target(spec)
    assert str(caught.value).startswith("target.connection.url holds a password")
    assert "hunter2" not in str(caught.value)


def test_missing_required_setting_is_named_at_run_time() -> None:
    spec = IntegrationSpec.model_validate(
        {
            "name": "to-db",
            "source": {"connector": "memory", "object": "people", "key": "id"},
            "target": {
                "connector": "sql",
                "object": "people",
                "key": "id",
                "credentials": {"url": {"env": "NOT_SET_HERE"}},
            },
            "mapping": {"id": "id"},
        }
    )
    factory = ConnectorFactory(environ={})
    with pytest.raises(CredentialError, match="source: the memory connector needs store"):
        factory.source(spec)
    with pytest.raises(CredentialError, match="environment variable NOT_SET_HERE is not set"):
        factory.target(spec)


PLUGIN = """
from tests.test_registry import MemorySettings, memory_target
from connectors.base.registry import Connector

CONNECTOR = Connector(
    name="plugged-in",
    settings=MemorySettings,
    description="from an installed distribution",
    source=None,
    target=memory_target,
    operations=frozenset({"write"}),
)
"""


def test_connectors_of_installed_distributions_load_once_and_a_broken_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "syncline_plugin_example.py").write_text(PLUGIN)
    info = tmp_path / "syncline_plugin_example-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: syncline-plugin-example\n")
    (info / "entry_points.txt").write_text(
        "[syncline.connectors]\n"
        "plugged-in = syncline_plugin_example:CONNECTOR\n"
        "broken = syncline_plugin_missing:CONNECTOR\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    # A fresh registry for this test: the process-wide one has loaded its plugins already.
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))
    monkeypatch.setattr(registry, "_plugin_failures", {})
    monkeypatch.setattr(registry, "_loaded", False)

    assert registry.get("plugged-in").description == "from an installed distribution"
    assert "plugged-in" in [connector.name for connector in registry.all_connectors()]
    with pytest.raises(KeyError) as caught:
        registry.get("broken")
    assert (
        "connector plugins that failed to load: broken = syncline_plugin_missing:CONNECTOR: "
        "ModuleNotFoundError" in str(caught.value)
    )


def test_a_delete_policy_needs_a_target_that_can_delete(tmp_path: Path) -> None:
    text = SPEC.replace(
        "  connector: memory\n  object: people_copy",
        "  connector: memory-sink\n  object: people_copy",
    )
    text += "deletes:\n  policy: delete\n"
    path = write_spec(tmp_path, "sink", text)
    with pytest.raises(SpecError) as caught:
        load_spec(path, environ={})
    assert any(
        "policy 'delete' needs a target that can delete; the memory-sink connector offers write"
        in problem
        for problem in caught.value.problems
    ), caught.value.problems
