"""What each interpreter gets: CPython all three worlds; PyPy the raw world,
and a clear refusal of its ssl.SSLContext.

Runs with or without the suite's conftest (the pypy nox session has no
trustme or cryptography): certificates come from the ``openssl`` command.
"""

from __future__ import annotations

import importlib.machinery
import platform
import ssl
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
from tlsutil import MemoryPair, RawEnd, pump

import openssl_ccb as ccb
from openssl_ccb import ffi, lib

PYPY = platform.python_implementation() == "PyPy"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem; server.pem/.key for 127.0.0.1; client.pem/.key, issued by the CA."""
    root = tmp_path_factory.mktemp("pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=root, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/O=Interpreters CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    for name, extension in [("server", "subjectAltName=IP:127.0.0.1"), ("client", "")]:
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}")  # fmt: skip
        extfile = root / f"{name}.ext"
        extfile.write_text(extension + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-set_serial", str(len(name)), "-days", "1", "-out", f"{name}.pem",
                "-extfile", str(extfile))  # fmt: skip
    return root


def raw_server(pki: Path) -> Any:
    ctx = ffi.gc(lib.SSL_CTX_new(lib.TLS_server_method()), lib.SSL_CTX_free)
    pem = lib.SSL_FILETYPE_PEM
    assert lib.SSL_CTX_use_certificate_file(ctx, str(pki / "server.pem").encode(), pem) == 1
    assert lib.SSL_CTX_use_PrivateKey_file(ctx, str(pki / "server.key").encode(), pem) == 1
    assert lib.SSL_CTX_load_verify_locations(ctx, str(pki / "ca.pem").encode(), ffi.NULL) == 1
    lib.SSL_CTX_set_verify(ctx, lib.SSL_VERIFY_PEER | lib.SSL_VERIFY_FAIL_IF_NO_PEER_CERT, ffi.NULL)
    return ctx


def raw_client(pki: Path, callback: Any) -> Any:
    ctx = ffi.gc(lib.SSL_CTX_new(lib.TLS_client_method()), lib.SSL_CTX_free)
    assert lib.SSL_CTX_load_verify_locations(ctx, str(pki / "ca.pem").encode(), ffi.NULL) == 1
    lib.SSL_CTX_set_verify(ctx, lib.SSL_VERIFY_PEER, ffi.NULL)
    ccb.set_client_cert_cb(ctx, callback)
    return ctx


def handshake(client: RawEnd, server: RawEnd, client_step: Any = None) -> None:
    def move() -> None:
        server.incoming(client.outgoing())
        client.incoming(server.outgoing())

    pump(client_step or client.step, server.step, move)
    client.write(b"ping")  # TLS 1.3: the server judges the certificate after this
    move()
    assert server.read(4) == b"ping"


def test_the_compiled_module_is_built_for_this_interpreter():
    assert ccb._binding.__name__ == "openssl_ccb._binding"
    suffix = Path(sys.modules["openssl_ccb._openssl"].__file__ or "").name.split(".", 1)[1]
    assert f".{suffix}" in importlib.machinery.EXTENSION_SUFFIXES


def test_raw_world_sends_the_chosen_certificate(pki):
    client_pem = (pki / "client.pem").read_bytes()
    seen = []

    def choose(request: ccb.CertificateRequest) -> Any:
        seen.append((request.version, request.attempt))
        return pki / "client.pem", pki / "client.key"

    client = RawEnd(raw_client(pki, choose))
    server = RawEnd(raw_server(pki), server=True)
    handshake(client, server)
    assert seen == [("TLSv1.3", 1)]
    assert server.peer_der() == ccb.Credential.load(client_pem, pki / "client.key").certificate


def test_raw_world_suspends_and_resumes(pki):
    def later(request: ccb.CertificateRequest) -> Any:
        if request.attempt < 2:
            raise ccb.WantX509Lookup()
        return ccb.Credential.load(pki / "client.pem", pki / "client.key")

    client = RawEnd(raw_client(pki, later))
    server = RawEnd(raw_server(pki), server=True)
    suspended = []

    def step() -> bool:
        try:
            return client.step()
        except ccb.WantX509Lookup:
            suspended.append(True)
            return False

    handshake(client, server, step)
    assert suspended == [True]


def test_raw_world_callback_exception_reaches_do_handshake(pki):
    def explode(request: ccb.CertificateRequest) -> Any:
        raise KeyError("no such certificate")

    client = RawEnd(raw_client(pki, explode))
    server = RawEnd(raw_server(pki), server=True)
    with pytest.raises(KeyError) as info:
        handshake(client, server)
    assert "explode" in [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert lib.SSL_is_init_finished(client.ssl) == 0
    lib.ERR_clear_error()  # the server's side of the story


def test_ssl_context_works_on_cpython_and_is_refused_on_pypy(pki):
    """PyPy's ssl module is its own (cffi over libssl): no proof, so no guess."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    choose = lambda request: (pki / "client.pem", pki / "client.key")  # noqa: E731
    if PYPY:
        for refused in (
            lambda: ccb.set_client_cert_cb(ctx, choose),
            lambda: ccb.get_client_cert_cb(ctx),
            lambda: ccb.ssl_ctx(ctx),
        ):
            with pytest.raises(ccb.Error, match=r"PyPy's ssl module .* cannot prove which libssl"):
                refused()
        return
    ccb.set_client_cert_cb(ctx, choose)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    server_ctx.load_verify_locations(pki / "ca.pem")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    pair = MemoryPair(server_ctx)
    pair.handshake(pair.stdlib_client(ctx, hostname="127.0.0.1"))
    assert pair.server.getpeercert()["subject"] == ((("commonName", "client"),),)
