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
    "_endpoints.py",
    "_driver.py",
    "_proxy.py",
    "_transfer.py",
    "_framing.py",
]
FORBIDDEN = {"trio", "h11", "httpx", "ssl", "socket", "time", "asyncio", "threading", "select"}


def _type_only(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:``: imports for annotations, never run."""
    return isinstance(node, ast.If) and ast.unparse(node.test) in (
        "TYPE_CHECKING",
        "typing.TYPE_CHECKING",
    )


def _walk_run_time(tree: ast.AST) -> list[ast.AST]:
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if _type_only(node):
            assert isinstance(node, ast.If)
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in _walk_run_time(tree):
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


def test_the_check_skips_only_type_checking_blocks(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nimport json\n"
        "if TYPE_CHECKING:\n    import ssl\nelse:\n    import socket\n"
        "if True:\n    import trio\n"
    )
    assert imported_modules(source) == {"typing", "json", "socket", "trio"}
