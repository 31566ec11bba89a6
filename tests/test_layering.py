"""Imports run one way: app (``syncline_app/``) → ``flows/`` → ``syncline/`` → ``connectors/``;
the vendor simulators in ``sandboxes/`` import none of them (a simulator sharing the client's
code would share its mistakes).

Checked on the source, not at run time: every ``import`` statement of every module, including
those inside functions and under ``TYPE_CHECKING``, since a deferred import still ties the
layers together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

# package -> top-level packages it must not import
FORBIDDEN: dict[str, frozenset[str]] = {
    # The simulators serve the demo, the tests and the benches, never the engine or a flow.
    "syncline": frozenset({"flows", "syncline_app", "prefect", "sandboxes"}),
    "connectors": frozenset({"syncline", "flows", "syncline_app", "prefect", "sandboxes"}),
    "flows": frozenset({"syncline_app", "sandboxes"}),
    "sandboxes": frozenset({"connectors", "syncline", "flows", "syncline_app", "prefect"}),
}
# A connector's Prefect Block (it hands out a client) is the one place a connector meets Prefect.
PREFECT_ALLOWED_IN = "credentials.py"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, relative ones resolved."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return sorted(found)


def imports_of(path: Path) -> list[tuple[int, str]]:
    source = path.read_text(encoding="utf-8")
    return imported_modules(source, _module_name(path), is_package=path.name == "__init__.py")


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imports_of(path):
            top = module.split(".")[0]
            if top not in FORBIDDEN[package]:
                continue
            if top == "prefect" and package == "connectors" and path.name == PREFECT_ALLOWED_IN:
                continue
            found.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_the_layers_below(package: str) -> None:
    found = violations(package)
    assert not found, f"{package}/ must not import {sorted(FORBIDDEN[package])}:\n" + "\n".join(
        found
    )


def test_the_record_protocol_does_not_depend_on_the_http_module() -> None:
    path = ROOT / "connectors" / "base" / "records.py"
    assert "connectors.base.http" not in {module for _, module in imports_of(path)}


def test_the_checker_sees_deferred_and_relative_imports() -> None:
    source = "from . import x\nfrom ..sync import run\n\ndef f():\n    import flows.replay\n"
    assert imported_modules(source, "syncline.pkg.m") == [
        (1, "syncline.pkg"),
        (2, "syncline.sync"),
        (5, "flows.replay"),
    ]
