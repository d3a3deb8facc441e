"""Security properties, each with its test:

- no certificate is ever sent to a server that did not ask;
- a wallet never sends a certificate outside the server's acceptable CAs when
  the server named some;
- key material never appears in a repr, an exception message or a log line;
- a context from a foreign libssl is refused before any pointer is used.
"""

from __future__ import annotations

import json
import logging
import ssl
import subprocess
import sys
import traceback
from typing import Any

import pytest
from certs import Issued, issue
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tlsutil import server_context
from worlds import WORLDS, Link, MemoryClient, MemoryServer, client_context

import openssl_ccb as ccb
from openssl_ccb import lib


class WireLink(Link):
    """A Link that keeps every byte the client sent."""

    wire = b""

    def move(self) -> int:
        up, down = self.client.outgoing(), self.server.outgoing()
        self.wire += up
        self.server.incoming(up)
        self.client.incoming(down)
        return len(up) + len(down)


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("asks", [False, True], ids=["server does not ask", "server asks"])
def test_no_certificate_is_sent_to_a_server_that_did_not_ask(
    world, asks, ca, server_cert, credential, client_der, version
):
    """Under TLS 1.2 the Certificate message is in clear: the wire itself shows
    whether the certificate went out (the asking server is the control)."""
    calls: list[int] = []
    ctx = client_context(world, ca, version)
    ccb.set_client_cert_cb(ctx, lambda request: calls.append(1) or credential)
    verify = ssl.CERT_REQUIRED if asks else ssl.CERT_NONE
    server = server_context(ca, server_cert, version=version, verify=verify)
    link = WireLink(MemoryClient(world, ctx), MemoryServer(server))
    link.handshake()
    link.exchange()
    assert calls == ([1] if asks else [])
    assert link.server.peer_der() == (client_der if asks else None)
    if version == "TLSv1.2":
        assert (client_der in link.wire) == asks


# --- the wallet and the server's CA names ---------------------------------------------------

ROOTS = {name: issue(f"Root {name}", ca=True) for name in "ABCD"}
A1 = issue("Intermediate A1", ROOTS["A"], ca=True)
LEAVES = {
    "leaf A": (issue("leaf of A", ROOTS["A"]), ()),
    "leaf B": (issue("leaf of B", ROOTS["B"]), ()),
    "leaf C": (issue("leaf of C", ROOTS["C"]), ()),
    "leaf via A1": (issue("leaf via A1", A1), (A1,)),
}
NAMEABLE = {**{f"Root {n}": r for n, r in ROOTS.items()}, "Intermediate A1": A1}


def issuers(leaf: Issued, chain: tuple[Issued, ...]) -> set[str]:
    return {cert.cert.issuer.rfc4514_string() for cert in (leaf, *chain)}


@pytest.mark.parametrize("world", WORLDS)
@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    order=st.permutations(sorted(LEAVES)),
    named=st.sets(st.sampled_from(sorted(NAMEABLE)), min_size=1),
    version=st.sampled_from(["TLSv1.2", "TLSv1.3"]),
)
def test_wallet_never_sends_outside_the_acceptable_cas(
    world, order, named, version, ca, server_cert
):
    wallet = ccb.Wallet(LEAVES[name][0].credential(*LEAVES[name][1]) for name in order)
    server = server_context(ca, server_cert, version=version, verify=ssl.CERT_OPTIONAL)
    server.load_verify_locations(cadata="".join(r.pem.decode() for r in ROOTS.values()))
    for name in sorted(named):
        x509_ = ccb.credential.load_certificate(NAMEABLE[name].der)
        assert lib.SSL_CTX_add_client_CA(ccb.ssl_ctx(server), x509_) == 1
    ctx = client_context(world, ca, version)
    ccb.set_client_cert_cb(ctx, wallet)
    link = Link(MemoryClient(world, ctx), MemoryServer(server))
    named_dns = {NAMEABLE[name].cert.subject.rfc4514_string() for name in named}
    fitting = [n for n in order if issuers(*LEAVES[n]) & named_dns]
    if (
        world == "pyopenssl"
        and ccb.pyopenssl_route() == "bundled"
        and fitting
        and LEAVES[fitting[0]][1]
    ):
        with pytest.raises(ccb.Error, match="no per-connection chain"):  # chains refused there
            link.handshake()
        return
    link.handshake()
    link.exchange()
    sent = link.server.peer_der()
    if sent is None:
        assert fitting == []  # none fits: none is sent
    else:
        (name,) = [n for n in order if LEAVES[n][0].der == sent]
        assert issuers(*LEAVES[name]) & named_dns  # never outside the named CAs
        assert name == fitting[0]  # and the first that fits


# --- key material ---------------------------------------------------------------------------


def key_secrets(key: Any) -> list[str]:
    """Text that would betray the private key: PEM lines, DER hex, its numbers."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    lines = [line for line in pem.splitlines() if "-----" not in line]
    chunks = [line[i : i + 24] for line in lines for i in range(0, len(line) - 23, 24)]
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    number = key.private_numbers().private_value
    return [*chunks, der.hex()[:48], der[-24:].hex(), str(number), f"{number:x}"]


@pytest.fixture(scope="module")
def secret() -> Issued:
    return issue("holder of a secret key", ROOTS["A"])


def everything_said(exc: BaseException | None, objects: list[Any], caplog: Any, capfd: Any) -> str:
    parts = [repr(o) for o in objects] + [str(o) for o in objects]
    if exc is not None:
        parts += [
            repr(exc),
            str(exc),
            "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        ]
    out, err = capfd.readouterr()
    return "\n".join([*parts, caplog.text, out, err])


def _handshake(ca: Any, server_cert: Any, callback: Any) -> BaseException | None:
    server = server_context(ca, server_cert, verify=ssl.CERT_OPTIONAL)
    server.load_verify_locations(cadata=ROOTS["A"].pem.decode())
    ctx = client_context("stdlib", ca)
    ccb.set_client_cert_cb(ctx, callback)
    link = Link(MemoryClient("stdlib", ctx), MemoryServer(server))
    try:
        link.handshake()
        link.exchange()
    except Exception as exc:
        return exc
    return None


def _encrypted(secret: Issued, password: bytes) -> bytes:
    return secret.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )


def _wallet(secret: Issued, request: ccb.CertificateRequest, shown: list[Any]) -> Any:
    wallet = ccb.Wallet([secret.credential()])
    shown.append(wallet)
    return wallet(request)


SITUATIONS = {  # what the callback does with the secret key: (secret, request, shown)
    "a handshake that sends it": lambda s, r, shown: s.credential(),
    "a wallet that sends it": _wallet,
    "returned with another certificate": lambda s, r, shown: (ROOTS["B"].pem, s.key_pem),
    "loaded with a wrong password": lambda s, r, shown: ccb.Credential.load(
        s.pem, _encrypted(s, b"right"), password="wrong"
    ),
    "a PKCS#12 with a wrong password": lambda s, r, shown: ccb.Credential.from_pkcs12(
        pkcs12.serialize_key_and_certificates(
            b"p12", s.key, s.cert, None, serialization.BestAvailableEncryption(b"right")
        ),
        password="wrong",
    ),
    "a key given as text": lambda s, r, shown: (s.pem, s.key_pem.decode()),
}


@pytest.mark.parametrize("situation", list(SITUATIONS))
def test_key_material_never_appears_in_a_repr_an_exception_or_a_log(
    situation, secret, ca, server_cert, caplog, capfd
):
    """Everything observable is searched: reprs of the credential, the request
    and the wallet; the exception, its message and traceback (causes too);
    log records at DEBUG; whatever reached stdout and stderr."""
    caplog.set_level(logging.DEBUG)
    shown: list[Any] = []

    def callback(request: ccb.CertificateRequest) -> Any:
        shown.append(repr(request))
        answer = SITUATIONS[situation](secret, request, shown)
        if isinstance(answer, ccb.Credential):  # what the test returns itself is not looked at
            shown.append(answer)
        return answer

    exc = _handshake(ca, server_cert, callback)
    said = everything_said(exc, shown, caplog, capfd)
    leaked = [s for s in key_secrets(secret.key) if s in said]
    assert leaked == [], f"key material in: {said[:2000]}"


# --- a foreign libssl -------------------------------------------------------------------------

FAKE_LIBSSL = r"""
/* A library exporting OpenSSL's names at its own addresses: another libssl. */
void *SSL_CTX_new(void *method) { return 0; }
unsigned long SSL_CTX_get_options(void *ctx) { return 0; }
int SSL_get_error(void *ssl, int ret) { return 0; }
void X509_free(void *x509) {}
void EVP_PKEY_free(void *pkey) {}
"""

REFUSALS = r"""
import ctypes, json, ssl, sys
import _ssl

fake = sys.argv[1]
ctypes.CDLL(fake)  # loaded, as a foreign libssl would be
POISON = 0x10  # any use of this pointer crashes the process
out = {}


def attempts(ctx, pointer_cb, python_cb=True):
    import openssl_ccb as ccb

    calls = [
        ("set", lambda: ccb.set_client_cert_cb(ctx, lambda request: None)),
        ("set C", lambda: ccb.set_client_cert_cb(ctx, pointer_cb)),
        ("get", lambda: ccb.get_client_cert_cb(ctx)),
        ("ssl_ctx", lambda: ccb.ssl_ctx(ctx)),
    ]
    for name, call in calls[0 if python_cb else 1 :]:
        try:
            call()
            yield name, "accepted"
        except (ccb.Error, TypeError) as exc:
            yield name, type(exc).__name__


# The standard library: Python's _ssl now appears to run on the fake libssl.
_ssl.__file__ = fake
import openssl_ccb as ccb

c_cb = ccb.ffi.cast("int (*)(SSL *, X509 **, EVP_PKEY **)", POISON)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
field = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__)
real, field.value = field.value, POISON
try:
    out["stdlib"] = dict(attempts(ctx, c_cb))
finally:
    field.value = real

# pyOpenSSL: its OpenSSL binding now appears to live in the fake libssl.
from OpenSSL import SSL
from openssl_ccb.worlds import pyopenssl

theirs = pyopenssl.binding()
pyopenssl.binding = lambda: (theirs[0], theirs[1], fake)
pyopenssl.route.cache_clear()
out["route"] = ccb.pyopenssl_route()
ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
real, ctx._context = ctx._context, theirs[0].cast("SSL_CTX *", POISON)
try:
    # (a Python callable goes through pyOpenSSL's own binding: not ours to refuse)
    out["pyopenssl"] = dict(attempts(ctx, c_cb, python_cb=False))
finally:
    ctx._context = real

# Raw: an SSL_CTX * and an SSL * of another binding (another libssl, perhaps).
import cffi

other = cffi.FFI()
other.cdef("typedef struct ssl_ctx_st SSL_CTX; typedef struct ssl_st SSL;")
out["raw"] = dict(attempts(other.cast("SSL_CTX *", POISON), c_cb))
for name, call in [("do_handshake", ccb.do_handshake), ("read", lambda s: ccb.read(s, 1))]:
    try:
        call(other.cast("SSL *", POISON))
        out["raw"][name] = "accepted"
    except TypeError:
        out["raw"][name] = "TypeError"
print(json.dumps(out, sort_keys=True))
"""


@pytest.fixture(scope="module")
def fake_libssl(tmp_path_factory: pytest.TempPathFactory) -> str:
    import cffi

    builder = cffi.FFI()
    builder.cdef("")
    builder.set_source("_ccb_fake_libssl", FAKE_LIBSSL)
    return str(builder.compile(tmpdir=str(tmp_path_factory.mktemp("fake_libssl"))))


def test_context_from_a_foreign_libssl_is_refused_before_any_pointer_is_used(fake_libssl, tmp_path):
    """Every context carries a pointer that crashes the process if used: the
    refusals must come first (a crash fails the run, non-zero)."""
    result = subprocess.run(
        [sys.executable, "-c", REFUSALS, fake_libssl],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode, result.stderr) == (0, ""), result
    refused = {"set": "Error", "set C": "Error", "get": "Error", "ssl_ctx": "Error"}
    assert json.loads(result.stdout) == {
        "stdlib": refused,
        "route": "bundled",
        "pyopenssl": {"set C": "Error", "get": "accepted", "ssl_ctx": "Error"},
        "raw": {k: "TypeError" for k in [*refused, "do_handshake", "read"]},
    }


def test_the_foreign_library_is_told_apart_by_address(fake_libssl):
    """The proof itself, against a real library that exports OpenSSL's names."""
    import ctypes

    ctypes.CDLL(fake_libssl)
    same, why = ccb.libssl_proof.shares_our_libssl(fake_libssl)
    assert not same
    assert why == "its OpenSSL functions are at other addresses than openssl-ccb's"
