"""The sans-IO core imports no I/O, event loop or clock: a static check of its imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sseproto"
CORE = [
    "__init__.py",
    "_errors.py",
    "_events.py",
    "_core.py",
    "_parser.py",
    "_encoder.py",
    "_version.py",
    "tasks.py",
    "_rules.py",
    "_eventsource.py",
    "_watching.py",
    "_api.py",
]
FORBIDDEN = {"trio", "h11", "ssl", "socket", "time", "asyncio", "threading", "select"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_io(module: str) -> None:
    assert imported_modules(PACKAGE / module) & FORBIDDEN == set()


def test_the_check_sees_imports() -> None:
    assert {"json", "hmac"} <= imported_modules(PACKAGE / "tasks.py")
