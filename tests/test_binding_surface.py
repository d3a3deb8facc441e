"""The C surface: the cdef, its stub, the names that use it, and our C's warnings.

The cdef (build_ffi.py) and the stub (openssl_ccb/_openssl.pyi) are written
by hand, side by side: each C function must be in the stub with its
parameters and the kind of its result, each name declared must be used by
something that ships, and both translation units of the module must build
without a warning.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from openssl_ccb import ffi, lib

ROOT = Path(__file__).resolve().parent.parent
STUB = ROOT / "openssl_ccb" / "_openssl.pyi"
POINTERS = {"_CDataBase", "_CString", "_ClientCertCb"}  # the stub's names for C pointers


def _stub_lib() -> tuple[dict[str, ast.FunctionDef], dict[str, str]]:
    """The stub's ``Lib``: its methods, and its other names with their annotations."""
    tree = ast.parse(STUB.read_text())
    (lib_class,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Lib"]
    functions = {n.name: n for n in lib_class.body if isinstance(n, ast.FunctionDef)}
    values = {
        n.target.id: ast.unparse(n.annotation)
        for n in lib_class.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    }
    return functions, values


def _declared() -> dict[str, Any]:
    """What the cdef declares, as the compiled module has it."""
    return {name: getattr(lib, name) for name in dir(lib) if not name.startswith("__")}


def _stub_kind(annotation: ast.expr | None) -> str:
    text = "None" if annotation is None else ast.unparse(annotation)
    return "pointer" if text in POINTERS else text


def _c_kind(ctype: Any) -> str:
    if ctype.cname == "void":
        return "None"
    return "int" if ctype.kind == "primitive" else "pointer"


def test_the_stub_declares_each_c_function_with_its_parameters_and_result():
    functions, values = _stub_lib()
    declared = _declared()
    c_functions = {n: v for n, v in declared.items() if not isinstance(v, int)}
    c_values = {n for n, v in declared.items() if isinstance(v, int)}
    assert set(functions) == set(c_functions), "a function in only one of cdef and stub"
    assert set(values) == c_values, "a constant in only one of cdef and stub"
    assert set(values.values()) == {"int"}
    for name, function in functions.items():
        ctype = ffi.typeof(c_functions[name])
        args = function.args
        assert [a.arg for a in args.posonlyargs[:1] + args.args[:1]] == ["self"], name
        params = (args.posonlyargs + args.args)[1:]
        assert [args.vararg, args.kwonlyargs, args.kwarg, args.defaults] == [None, [], None, []]
        assert len(params) == len(ctype.args), f"{name}: {len(ctype.args)} C parameters"
        for param, c_arg in zip(params, ctype.args):
            assert _stub_kind(param.annotation) == _c_kind(c_arg), f"{name}({param.arg})"
        assert _stub_kind(function.returns) == _c_kind(ctype.result), f"{name}: result"


def _shipped_text() -> str:
    """Everything that may use a name of ``lib``, but not what declares them."""
    folders = ["openssl_ccb", "tests", "docs", "examples", "benchmarks", "tools"]
    files = [p for f in folders for p in (ROOT / f).rglob("*") if p.suffix in (".py", ".md")]
    files.append(ROOT / "README.md")
    return "\n".join(p.read_text() for p in files if p not in (STUB, Path(__file__).resolve()))


def test_the_cdef_declares_only_names_something_uses():
    text = _shipped_text()
    unused = [name for name in _declared() if not re.search(rf"\b{name}\b", text)]
    assert unused == [], "declared in build_ffi.py, used by nothing: prune them and the stub"


def test_the_libssl_probes_are_functions_the_binding_calls():
    """The proof compares addresses of functions that ``lib`` really calls."""
    from openssl_ccb import libssl_proof

    assert len(libssl_proof.PROBES) >= 5
    assert set(libssl_proof.PROBES) <= set(_declared())
    assert all(address != 0 for address in libssl_proof.OURS.values())
    assert lib.openssl_ccb_probe_name(len(libssl_proof.PROBES)) == ffi.NULL
    proof = (ROOT / "docs" / "libssl.md").read_text().split("**The same library.**", 1)[1]
    named = re.findall(r"`(\w+)`", proof.split("\n\n", 1)[0])
    assert [n for n in named if n in _declared()] == list(libssl_proof.PROBES)  # as documented


def _builder(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """build_ffi.py, imported from the project root as setuptools runs it."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("OPENSSL_CCB_SKIP_PREFLIGHT", "1")  # this test compiles anyway
    spec = importlib.util.spec_from_file_location("build_ffi", ROOT / "build_ffi.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_translation_units_compile_without_a_warning(tmp_path, monkeypatch):
    """Ours (src/openssl_ccb.c) and cffi's, with the build's own compiler and flags."""
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    builder = _builder(monkeypatch)
    generated = tmp_path / "_openssl.c"
    builder.ffi.emit_c_code(str(generated))
    compiler = new_compiler()
    customize_compiler(compiler)
    paths = sysconfig.get_paths()
    # Python's own headers as system headers: their warnings are not ours to fix.
    python = [f"-isystem{paths[key]}" for key in ("include", "platinclude")]
    for source in [ROOT / path for path in builder.C_SOURCES] + [generated]:
        objects = compiler.compile(
            [str(source)],
            output_dir=str(tmp_path / "objects"),
            include_dirs=[*builder.INCLUDE_DIRS, "src"],
            extra_preargs=python,
            extra_postargs=[*builder.WARNINGS, "-Werror"],
        )
        assert objects, source
