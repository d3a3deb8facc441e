"""What pip users get: the sdist and wheel, their metadata, an isolated install
into a fresh venv that shakes hands, types for their checker, and a failing
build's one sentence.

Tests marked ``packaging`` build and install (minutes): ``nox -s packaging``
runs them once; the others run everywhere.
"""

from __future__ import annotations

import ast
import email.parser
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest
import trustme

import openssl_ccb as ccb

ROOT = Path(__file__).resolve().parent.parent
VERSION = ccb.__version__
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv*", ".nox", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
    "*.so", "*.o", "_openssl.c",
)  # fmt: skip


def run(*argv: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=900, **kwargs
    )


# --- everywhere: one version (the stub is checked in test_binding_surface.py) -------


def test_the_version_lives_in_one_place():
    pyproject = (ROOT / "pyproject.toml").read_text()
    project = pyproject.split("[project]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^dynamic = \["version"(, "license")?\]', project, re.M)
    assert not re.search(r"^version\s*=", project, re.M)
    assert 'version = { attr = "openssl_ccb.__version__" }' in pyproject
    init = ast.parse((ROOT / "openssl_ccb" / "__init__.py").read_text())
    literal = [
        n.value.value
        for n in init.body
        if isinstance(n, ast.Assign)
        and [getattr(t, "id", None) for t in n.targets] == ["__version__"]
        and isinstance(n.value, ast.Constant)
    ]
    assert literal == [VERSION]  # a literal, so setuptools reads it without importing
    newest = re.search(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert newest is not None
    assert newest.group(1) == VERSION


# --- once: build, install, check --------------------------------------------------


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build`` of a copy of the source tree: the sdist, then a wheel from it."""
    tmp = tmp_path_factory.mktemp("dist")
    shutil.copytree(ROOT, tmp / "src", ignore=NOT_SOURCES)
    result = run(sys.executable, "-m", "build", "--outdir", tmp / "dist", tmp / "src")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return tmp / "dist"


def sdist(dist: Path) -> Path:
    return dist / f"openssl_ccb-{VERSION}.tar.gz"


def wheel(dist: Path) -> Path:
    (found,) = dist.glob(f"openssl_ccb-{VERSION}-*.whl")
    return found


@pytest.mark.packaging
def test_build_gives_one_sdist_and_one_wheel(dist):
    assert sdist(dist).is_file()
    assert sorted(p.name for p in dist.iterdir()) == sorted([sdist(dist).name, wheel(dist).name])


@pytest.mark.packaging
def test_the_wheel_holds_the_compiled_module_its_stub_and_py_typed(dist):
    names = zipfile.ZipFile(wheel(dist)).namelist()
    assert [n for n in names if re.fullmatch(r"openssl_ccb/_openssl\..*\.so", n)]
    assert {"openssl_ccb/_openssl.pyi", "openssl_ccb/py.typed"} <= set(names)
    assert not [n for n in names if n.startswith(("tests/", "docs/", "build_ffi", "src/"))]


@pytest.mark.packaging
def test_the_sdist_holds_what_a_build_and_a_reader_need(dist):
    top = f"openssl_ccb-{VERSION}/"
    with tarfile.open(sdist(dist)) as archive:
        names = {n[len(top) :] for n in archive.getnames()}
    assert {"build_ffi.py", "setup.py", "pyproject.toml", "README.md", "CHANGELOG.md"} <= names
    assert {str(p.relative_to(ROOT)) for p in (ROOT / "src").iterdir()} <= names
    assert {"LICENSE", "openssl_ccb/_openssl.pyi", "openssl_ccb/py.typed"} <= names
    assert {"docs/index.md", "tests/test_docs.py"} <= names
    assert not [n for n in names if n.endswith((".so", ".o"))]


@pytest.mark.packaging
def test_the_metadata_is_complete(dist):
    with zipfile.ZipFile(wheel(dist)) as archive:
        text = archive.read(f"openssl_ccb-{VERSION}.dist-info/METADATA").decode()
        assert f"openssl_ccb-{VERSION}.dist-info/licenses/LICENSE" in archive.namelist() or (
            f"openssl_ccb-{VERSION}.dist-info/LICENSE" in archive.namelist()
        )
    meta = email.parser.Parser().parsestr(text)
    assert (meta["Name"], meta["Version"]) == ("openssl-ccb", VERSION)
    assert "Apache-2.0" in (meta["License"] or meta["License-Expression"])
    assert meta["Requires-Python"] == ">=3.9"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "OpenSSL's **client-certificate callback**" in meta.get_payload()
    classifiers = meta.get_all("Classifier")
    for minor in range(9, 14):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert {"Typing :: Typed", "Operating System :: POSIX"} <= set(classifiers)
    assert {"pyopenssl", "cryptography", "test"} <= set(meta.get_all("Provides-Extra"))
    requires = meta.get_all("Requires-Dist")
    assert any(r.startswith("cffi>=") for r in requires)
    assert any(r.startswith("pyOpenSSL") and 'extra == "pyopenssl"' in r for r in requires)


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the sdist installed by pip, in an isolated build."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    result = run(python, "-m", "pip", "install", "--no-cache-dir", sdist(dist))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return python


HANDSHAKE = """
import socket, ssl, sys, threading
import openssl_ccb as ccb

pki = sys.argv[1]
server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server.load_cert_chain(f"{pki}/server.pem", f"{pki}/server.key")
server.load_verify_locations(f"{pki}/ca.pem")
server.verify_mode = ssl.CERT_REQUIRED
listener = socket.create_server(("127.0.0.1", 0))

def serve():
    sock, _ = listener.accept()
    with server.wrap_socket(sock, server_side=True) as tls:
        tls.sendall(dict(item[0] for item in tls.getpeercert()["subject"])["commonName"].encode())

threading.Thread(target=serve, daemon=True).start()
client = ssl.create_default_context(cafile=f"{pki}/ca.pem")
ccb.set_client_cert_cb(client, lambda request: (f"{pki}/client.pem", f"{pki}/client.key"))
with socket.create_connection(listener.getsockname()) as sock:
    with client.wrap_socket(sock, server_hostname="localhost") as tls:
        print(ccb.__version__, ccb.__file__, tls.recv(100).decode())
"""


@pytest.mark.packaging
def test_the_sdist_installs_into_a_fresh_venv_and_shakes_hands(installed, tmp_path):
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    leaves = {
        "server": ca.issue_cert("localhost", "127.0.0.1"),
        "client": ca.issue_cert("client@example.org", common_name="packaged"),
    }
    for name, leaf in leaves.items():
        leaf.cert_chain_pems[0].write_to_path(str(tmp_path / f"{name}.pem"))
        leaf.private_key_pem.write_to_path(str(tmp_path / f"{name}.key"))
    (tmp_path / "handshake.py").write_text(HANDSHAKE)
    result = run(installed, "handshake.py", tmp_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    version, where, received = result.stdout.split()
    assert (version, received) == (VERSION, "packaged")
    assert Path(where).is_relative_to(installed.parent.parent)  # the venv's, not the tree's


USER_CODE = """
from __future__ import annotations
import openssl_ccb as ccb
from openssl_ccb import ffi, lib

def choose(request: ccb.CertificateRequest) -> ccb.Credential | None:
    print(request.server_name, request.attempt)
    return None

ctx = ffi.gc(lib.SSL_CTX_new(lib.TLS_client_method()), lib.SSL_CTX_free)
lib.SSL_CTX_set_min_proto_version(ctx, lib.TLS1_3_VERSION)
ccb.set_client_cert_cb(ctx, choose)
import ssl
stdlib_ctx = ssl.create_default_context()
ccb.set_client_cert_cb(stdlib_ctx, ccb.Wallet([]))
ccb.set_client_cert_cb(stdlib_ctx, lambda request: None)
ccb.set_client_cert_cb(stdlib_ctx, None)
reveal_type(lib.SSL_CTX_set_client_cert_cb)
reveal_type(ccb.set_client_cert_cb)
"""

USER_MISTAKES = """
import openssl_ccb as ccb
from openssl_ccb import lib

lib.SSL_CTX_new()
lib.SSL_CTX_nonesuch()
name: str = lib.SSL_get_error(lib.SSL_new(lib.SSL_CTX_new(lib.TLS_method())), 0)

def choose(request: ccb.CertificateRequest) -> None:
    request.server_nmae

ccb.set_client_cert_cb("example.org", choose)
ccb.set_client_cert_cb(lib.SSL_CTX_new(lib.TLS_method()), lambda request, extra: None)
ccb.get_client_cert_cb(42)
"""


@pytest.mark.packaging
def test_a_users_type_checker_knows_lib_and_the_callback(installed, tmp_path):
    """mypy, checking a user's code against the installed wheel (py.typed and the stub)."""
    (tmp_path / "user.py").write_text(textwrap.dedent(USER_CODE))
    (tmp_path / "mistakes.py").write_text(textwrap.dedent(USER_MISTAKES))
    mypy = [sys.executable, "-m", "mypy", "--strict", "--python-executable", installed,
            "--no-incremental", "--config-file", os.devnull]  # fmt: skip
    good = run(*mypy, "user.py", cwd=tmp_path)
    assert good.returncode == 0, good.stdout
    assert 'Revealed type is "def (Any, Any)' not in good.stdout  # typed, not Any
    assert "def (openssl_ccb._openssl._CDataBase, openssl_ccb._openssl._CDataBase)" in good.stdout
    assert "CertificateRequest" in good.stdout.splitlines()[-2]  # the callback's signature
    bad = run(*mypy, "mistakes.py", cwd=tmp_path)
    assert bad.returncode == 1
    for line, complaint in [
        (5, 'Too few arguments for "SSL_CTX_new"'),
        (6, 'has no attribute "SSL_CTX_nonesuch"'),
        (7, 'incompatible types in assignment (expression has type "int", variable has type'),
        (10, 'has no attribute "server_nmae"'),
        (12, 'argument 1 to "set_client_cert_cb" has incompatible type "str"'),
        (13, 'argument 2 to "set_client_cert_cb" has incompatible type'),
        (14, 'argument 1 to "get_client_cert_cb" has incompatible type "int"'),
    ]:
        assert f"mistakes.py:{line}: error: " in bad.stdout, bad.stdout
        assert complaint.lower() in bad.stdout.lower(), bad.stdout


@pytest.mark.packaging
@pytest.mark.parametrize("missing", ["headers", "compiler"])
def test_a_build_without_headers_or_compiler_fails_with_one_sentence(dist, tmp_path, missing):
    """What a pip user sees, through an isolated build: one line, naming the package."""
    env = dict(os.environ)
    if missing == "headers":
        (tmp_path / "empty").mkdir()
        env["OPENSSL_CCB_INCLUDE_DIR"] = str(tmp_path / "empty")
    else:
        env["CC"] = str(tmp_path / "no-such-cc")
    venv.create(tmp_path / "venv", with_pip=True)
    pip = [tmp_path / "venv" / "bin" / "python", "-m", "pip", "install", "--no-cache-dir"]
    result = run(*pip, sdist(dist), env=env)
    assert result.returncode != 0
    box = re.search(r"\[(\d+) lines? of output\]\n(.*?)\n\s*\[end of output\]", result.stderr, re.S)
    assert box is not None, result.stderr
    assert box.group(1) == "1", box.group(2)  # nothing else buries it
    sentence = box.group(2).strip()
    assert sentence.startswith("openssl-ccb cannot build (")
    assert "apt-get install libssl-dev gcc" in sentence
    assert sentence.endswith(".")
    assert ("no openssl/ssl.h" if missing == "headers" else "no C compiler") in sentence
