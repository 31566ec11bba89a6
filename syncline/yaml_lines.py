"""YAML loading that remembers where every value came from, for errors that name a line."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import yaml

Location = tuple[str | int, ...]

_ENV_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


_MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKey(NamedTuple):
    """A mapping key given twice: YAML keeps the last value and drops the first without a word."""

    location: Location
    line: int
    first_line: int


class YamlDocument:
    """A parsed YAML file plus the line of every mapping key and sequence item."""

    def __init__(
        self,
        path: Path,
        data: Any,
        lines: dict[Location, int],
        duplicates: list[DuplicateKey] | None = None,
    ) -> None:
        self.path = path
        self.data = data
        self.lines = lines
        self.duplicates = duplicates or []

    def line_of(self, location: Location) -> int | None:
        """The line of ``location`` or of its nearest ancestor that has one."""
        while location:
            if location in self.lines:
                return self.lines[location]
            location = location[:-1]
        return self.lines.get((), None)


def load_yaml(path: Path, *, environ: dict[str, str] | None = None) -> YamlDocument:
    """Parse ``path``; ``${VAR}`` and ``${VAR:-default}`` in strings are filled from ``environ``."""
    text = path.read_text(encoding="utf-8")
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: dict[Location, int] = {}
    if node is None:
        return YamlDocument(path, None, lines)
    duplicates: list[DuplicateKey] = []
    _record_lines(node, (), lines, duplicates, yaml.constructor.SafeConstructor())
    data = yaml.load(text, Loader=yaml.SafeLoader)
    env = dict(os.environ) if environ is None else environ
    return YamlDocument(path, _interpolate(data, env), lines, duplicates)


def _record_lines(
    node: yaml.Node,
    location: Location,
    lines: dict[Location, int],
    duplicates: list[DuplicateKey],
    constructor: yaml.constructor.SafeConstructor,
) -> None:
    lines[location] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        first_lines: dict[Any, int] = {}
        for key_node, value_node in node.value:
            child = (*location, str(key_node.value))
            line = key_node.start_mark.line + 1
            identity = _key_identity(key_node, constructor)
            if identity is not None:
                if identity in first_lines:
                    duplicates.append(DuplicateKey(child, line, first_lines[identity]))
                else:
                    first_lines[identity] = line
            _record_lines(value_node, child, lines, duplicates, constructor)
            lines[child] = line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*location, index), lines, duplicates, constructor)


def _key_identity(node: yaml.Node, constructor: yaml.constructor.SafeConstructor) -> Any:
    """The key as the loaded dict sees it (``1`` and ``01`` are one key, ``1`` and ``'1'`` two).

    ``None`` for merge keys, whose entries may be overridden on purpose, and for keys that
    cannot be a dict key at all (the loader reports those itself).
    """
    if not isinstance(node, yaml.ScalarNode) or node.tag == _MERGE_TAG:
        return None
    try:
        key = constructor.construct_object(node)
        hash(key)
    except (yaml.YAMLError, TypeError):
        return None
    return key


class MissingVariableError(ValueError):
    def __init__(self, message: str, location: Location) -> None:
        super().__init__(message)
        self.location = location


def _interpolate(value: Any, env: dict[str, str], location: Location = ()) -> Any:
    if isinstance(value, str):
        try:
            return _ENV_REFERENCE.sub(lambda m: _lookup(m, env), value)
        except KeyError as missing:
            raise MissingVariableError(str(missing.args[0]), location) from None
    if isinstance(value, list):
        return [_interpolate(item, env, (*location, i)) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {k: _interpolate(item, env, (*location, str(k))) for k, item in value.items()}
    return value


def _lookup(match: re.Match[str], env: dict[str, str]) -> str:
    name, default = match.group("name"), match.group("default")
    if name in env and env[name] != "":
        return env[name]
    if default is not None:
        return default
    raise KeyError(f"environment variable {name} is not set and has no default")
