"""The package's shape, held by tests: the folders show the architecture
(docs/internals.md), and each fast path that copies code is checked
against what it copies."""

from __future__ import annotations

import ast
import inspect
import ssl
import textwrap
from pathlib import Path

import pytest

from openssl_ccb.worlds.stdlib_sockets import CCBSSLObject

PACKAGE = Path(__file__).resolve().parent.parent / "openssl_ccb"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The openssl_ccb modules ``path`` imports, at any depth, TYPE_CHECKING blocks aside."""
    tree = ast.parse(path.read_text())
    package = _name(path) if path.name == "__init__.py" else _name(path).rpartition(".")[0]
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for node in ast.walk(block)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped or not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        for alias in node.names:  # `from ..core import channel` imports a submodule
            submodule = f"{module}.{alias.name}"
            found.add(submodule if _known(submodule) else module)
    return {name for name in found if _known(name)}


def _known(name: str) -> bool:
    return name in {_name(path) for path in MODULES}


GRAPH = {_name(path): _imports(path) for path in MODULES}


def test_no_module_is_over_300_lines():
    long = {_name(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > 300}
    assert long == {}


def test_the_core_imports_no_world():
    core = {name: deps for name, deps in GRAPH.items() if name.startswith("openssl_ccb.core")}
    assert core, "no core found"
    assert {name: {d for d in deps if ".worlds" in d} for name, deps in core.items()} == {
        name: set() for name in core
    }


def test_there_is_no_import_cycle():
    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for dep in GRAPH.get(node, ()):
                if dep == start:
                    return [*path, dep]
                if dep not in path and len(path) < len(GRAPH):
                    stack.append((dep, [*path, dep]))
        return None

    cycles = {name: cycle for name in GRAPH if (cycle := cycle_from(name)) is not None}
    assert cycles == {}


def _sslobj_calls(function: object) -> list[str]:
    """The ``self._sslobj.METHOD(...)`` calls a function makes, as source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))  # type: ignore[arg-type]
    return sorted(
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func).startswith("self._sslobj.")
    )


@pytest.mark.parametrize("name", ["do_handshake", "read", "write", "unwrap"])
def test_the_sslobject_fast_path_still_copies_this_interpreters_sslobject(name):
    """CCBSSLObject inlines ssl.SSLObject's bodies: the same signature and the
    same calls into _ssl as the running interpreter's, or the copy drifted."""
    theirs, ours = getattr(ssl.SSLObject, name), getattr(CCBSSLObject, name)

    def parameters(function: object) -> list[tuple[str, object, object]]:
        signature = inspect.signature(function)  # type: ignore[arg-type]
        return [(p.name, p.kind, p.default) for p in signature.parameters.values()]

    assert parameters(ours) == parameters(theirs)
    assert _sslobj_calls(ours) == _sslobj_calls(theirs)
