"""pyOpenSSL's Context, on whichever OpenSSL pyOpenSSL runs (docs/libssl.md).
`make test` runs this file twice: with pip's pyOpenSSL (bundled
OpenSSL) and with Debian's (the system libssl)."""

from __future__ import annotations

import gc
import os
import socket
import ssl
import weakref
from typing import Any
from unittest import mock

import pytest
import trustme
import worlds
from certs import issue
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from tlsutil import (
    Boom,
    MemoryPair,
    PyOpenSSLEnd,
    SocketServer,
    assert_from_explode,
    explode,
    pump,
    raw_pair_handshake,
    selecting_server,
    server_context,
    their_queue_is_empty,
)

import openssl_ccb as ccb
from openssl_ccb.worlds import pyopenssl, pyopenssl_request


def client_context(ca: trustme.CA, version: str | None = None) -> SSL.Context:
    ctx: SSL.Context = worlds.client_context("pyopenssl", ca, version)
    return ctx


def test_route_is_proven_not_guessed():
    expected = os.environ.get("OPENSSL_CCB_EXPECT_ROUTE")
    theirs = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
    ours = ccb.libssl_proof.our_version()
    if expected is None:  # outside `make test`: versions that differ cannot share a library
        expected = pyopenssl.BUNDLED if theirs != ours else pyopenssl.SAME_LIBSSL
    assert ccb.pyopenssl_route() == expected
    assert ccb.pyopenssl_route() in pyopenssl.describe_route()


def test_certificate_returned_is_received(ca, server_cert, credential, client_der, version):
    ctx = client_context(ca, version)
    seen: list[Any] = []

    def choose(request: ccb.CertificateRequest) -> Any:
        seen.append((request.attempt, request.version, request.server_name, request.connection))
        return credential

    ccb.set_client_cert_cb(ctx, choose)
    assert ccb.get_client_cert_cb(ctx) is choose
    pair = MemoryPair(server_context(ca, server_cert, version=version))
    client = PyOpenSSLEnd(ctx)
    raw_pair_handshake(client, pair)
    assert pair.peer_der() == client_der
    assert seen == [(1, version, "localhost", client.conn)]


def test_request_describes_the_server_request(ca, other_ca, server_cert, credential, version):
    pair = MemoryPair(server_context(ca, server_cert, version=version, client_cas=(ca, other_ca)))
    ctx = client_context(ca, version)
    seen: dict[str, Any] = {}

    def look(request: ccb.CertificateRequest) -> Any:
        seen.update(
            cas=request.acceptable_cas,
            names=request.acceptable_ca_names,
            peer=request.peer_certificate,
        )
        return credential

    ccb.set_client_cert_cb(ctx, look)
    client = PyOpenSSLEnd(ctx)
    raw_pair_handshake(client, pair)
    names = [x509.load_pem_x509_certificate(c.cert_pem.bytes()).subject for c in (ca, other_ca)]
    assert seen["cas"] == [n.public_bytes() for n in names]
    assert seen["names"] == [n.rfc4514_string() for n in names]
    server_leaf = x509.load_pem_x509_certificate(server_cert.cert_chain_pems[0].bytes())
    assert seen["peer"] == server_leaf.public_bytes(serialization.Encoding.DER)


def test_request_names_the_servers_signature_algorithms_on_either_route(
    ca, server_cert, credential, client_der, version
):
    """In the server's order, as IANA names: on the bundled route read from the
    CertificateRequest (that binding has no SSL_get_sigalgs), and used by
    supports() there as everywhere."""
    configured = "rsa_pss_rsae_sha384:rsa_pkcs1_sha256:rsa_pss_rsae_sha256"
    root = issue("sigalgs root", ca=True)
    rsa_only = issue("rsa leaf", root, key="rsa").credential()
    ecdsa = issue("ecdsa leaf", root).credential()
    seen: list[Any] = []

    def look(request: ccb.CertificateRequest) -> Any:
        seen.append(request.signature_algorithms)
        seen.append([request.supports(c) for c in (rsa_only, ecdsa)])
        return rsa_only

    ctx = client_context(ca, version)
    ccb.set_client_cert_cb(ctx, look)
    server = selecting_server(server_cert, trust=(root,), sigalgs=configured, version=version)
    pair = MemoryPair(server)
    raw_pair_handshake(PyOpenSSLEnd(ctx), pair)
    assert seen == [configured.split(":"), [True, False]]
    assert pair.server.getpeercert(binary_form=True) == rsa_only.certificate


@pytest.mark.parametrize("form", ["pyopenssl", "cryptography", "pem", "credential"])
def test_each_form_is_sent(ca, server_cert, client_cert, client_der, form):
    cert = x509.load_pem_x509_certificate(client_cert.cert_chain_pems[0].bytes())
    key = serialization.load_pem_private_key(client_cert.private_key_pem.bytes(), None)
    value = {
        "pyopenssl": (crypto.X509.from_cryptography(cert), crypto.PKey.from_cryptography_key(key)),
        "cryptography": (cert, key),
        "pem": (client_cert.cert_chain_pems[0].bytes(), client_cert.private_key_pem.bytes()),
        "credential": ccb.Credential.load(cert, key),
    }[form]
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, lambda request: value)
    pair = MemoryPair(server_context(ca, server_cert))
    raw_pair_handshake(PyOpenSSLEnd(ctx), pair)
    assert pair.peer_der() == client_der


def test_socket_handshake_and_implicit_handshake_in_send(
    ca, server_cert, credential, client_der, version
):
    ctx = client_context(ca, version)
    ccb.set_client_cert_cb(ctx, lambda request: credential)
    with SocketServer(server_context(ca, server_cert, version=version)) as server:
        for explicit in (True, False):
            sock = socket.create_connection(("127.0.0.1", server.port))
            conn = SSL.Connection(ctx, sock)
            conn.set_connect_state()
            if explicit:
                conn.do_handshake()
            conn.sendall(b"!")  # without do_handshake, SSL_write runs the handshake
            assert conn.recv(6) == b"hello\n"
            conn.close()
            sock.close()
    assert server.received == [client_der, client_der]


def test_not_called_when_server_does_not_ask(ca, server_cert, credential, version):
    ctx = client_context(ca, version)
    calls: list[int] = []
    ccb.set_client_cert_cb(ctx, lambda request: calls.append(1) or credential)
    pair = MemoryPair(server_context(ca, server_cert, version=version, verify=ssl.CERT_NONE))
    raw_pair_handshake(PyOpenSSLEnd(ctx), pair)
    assert calls == []
    assert pair.peer_der() is None


def test_not_called_when_certificate_configured(
    ca, server_cert, client_cert, client_der, version, tmp_path
):
    ctx = client_context(ca, version)
    client_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "c.pem"))
    client_cert.private_key_pem.write_to_path(str(tmp_path / "k.pem"))
    ctx.use_certificate_file(str(tmp_path / "c.pem"))
    ctx.use_privatekey_file(str(tmp_path / "k.pem"))
    calls: list[int] = []
    ccb.set_client_cert_cb(ctx, lambda request: calls.append(1))
    pair = MemoryPair(server_context(ca, server_cert, version=version))
    raw_pair_handshake(PyOpenSSLEnd(ctx), pair)
    assert calls == []
    assert pair.peer_der() == client_der


def _use(ctx: SSL.Context, cert: Any = None, key: Any = None) -> None:
    """Set a certificate or key on the context, as this pyOpenSSL takes them."""
    for value, method, legacy in (
        (cert, ctx.use_certificate, crypto.X509.from_cryptography),
        (key, ctx.use_privatekey, crypto.PKey.from_cryptography_key),
    ):
        if value is None:
            continue
        try:
            method(value)  # pyOpenSSL 24.3 and later: cryptography's objects
        except TypeError:
            method(legacy(value))


@pytest.mark.parametrize("held", ["certificate alone", "excluded key type", "usable pair"])
def test_the_callback_runs_unless_the_context_holds_what_openssl_would_send(
    ca, server_cert, version, held
):
    """As client_cert_cb: called unless a certificate and its key are set and
    can sign with one of the server's signature algorithms (here RSA only,
    for the usable pair ECDSA too). Same-libssl is OpenSSL itself."""
    root = issue("context-held root", ca=True)
    held_leaf = issue("held ecdsa", root)
    answer = issue("answered rsa", root, key="rsa")
    ctx = client_context(ca, version)
    _use(ctx, held_leaf.cert, None if held == "certificate alone" else held_leaf.key)
    called: list[int] = []
    ccb.set_client_cert_cb(ctx, lambda request: called.append(1) or answer.credential())
    schemes = "rsa_pss_rsae_sha256:rsa_pkcs1_sha256"
    if held == "usable pair":
        schemes += ":ecdsa_secp256r1_sha256"
    server = selecting_server(server_cert, trust=(root,), sigalgs=schemes, version=version)
    pair = MemoryPair(server)
    raw_pair_handshake(PyOpenSSLEnd(ctx), pair)
    sent = x509.load_der_x509_certificate(pair.server.getpeercert(binary_form=True))
    if held == "usable pair":
        assert (called, sent) == ([], held_leaf.cert)
    else:
        assert (called, sent) == ([1], answer.cert)
    assert their_queue_is_empty()


def test_none_sends_no_certificate(ca, server_cert, version):
    ctx = client_context(ca, version)
    calls: list[int] = []
    ccb.set_client_cert_cb(ctx, lambda request: calls.append(request.attempt))
    pair = MemoryPair(server_context(ca, server_cert, version=version, verify=ssl.CERT_OPTIONAL))
    raw_pair_handshake(PyOpenSSLEnd(ctx), pair)
    assert calls == [1]
    assert pair.peer_der() is None
    refusing = MemoryPair(server_context(ca, server_cert, version=version))
    with pytest.raises((ssl.SSLError, SSL.Error)):
        raw_pair_handshake(PyOpenSSLEnd(ctx), refusing)


def test_suspension_raises_pyopenssl_want_x509_lookup(
    ca, server_cert, credential, client_der, version
):
    ctx = client_context(ca, version)
    ccb.set_client_cert_cb(
        ctx, lambda r: credential if r.attempt > 3 else -1 if r.attempt == 2 else _want()
    )
    pair = MemoryPair(server_context(ca, server_cert, version=version))
    client = PyOpenSSLEnd(ctx)
    suspensions = 0

    def step() -> bool:
        nonlocal suspensions
        try:
            return client.step()
        except SSL.WantX509LookupError:
            suspensions += 1
            return False

    def move() -> None:
        pair.server_in.write(client.outgoing())
        client.incoming(pair.server_out.read())

    pump(step, pair.server_step, move)
    client.write(b"x")
    move()
    assert pair.server.read(1) == b"x"
    assert suspensions == 3
    assert pair.peer_der() == client_der


def _want() -> Any:
    raise ccb.WantX509Lookup()


def test_exception_reaches_do_handshake_and_the_handshake_stops(ca, server_cert, version):
    ctx = client_context(ca, version)
    ccb.set_client_cert_cb(ctx, explode)
    # An optional server would accept no certificate: the failure is the client's.
    pair = MemoryPair(server_context(ca, server_cert, version=version, verify=ssl.CERT_OPTIONAL))
    client = PyOpenSSLEnd(ctx)
    with pytest.raises(Boom) as info:
        raw_pair_handshake(client, pair)
    assert_from_explode(info.value)
    with pytest.raises(ValueError, match="handshake not done"):
        pair.server.getpeercert(binary_form=True)
    assert their_queue_is_empty()


def test_exception_reaches_sendall_on_a_socket(ca, server_cert):
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, explode)
    with SocketServer(server_context(ca, server_cert)) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        conn = SSL.Connection(ctx, sock)
        conn.set_connect_state()
        with pytest.raises(Boom):
            conn.sendall(b"!")
        sock.close()


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        ("nonsense", TypeError, "returned str"),
        ((b"garbage", b"garbage"), ccb.Error, "not a PEM or DER certificate"),
        ((1, 2, 3, 4), TypeError, "tuple of 4 items"),
    ],
    ids=["wrong type", "garbage", "four-tuple"],
)
def test_bad_returns_fail_clearly(ca, server_cert, value, kind, message):
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, lambda request: value)
    pair = MemoryPair(server_context(ca, server_cert, verify=ssl.CERT_OPTIONAL))
    with pytest.raises(kind, match=message):
        raw_pair_handshake(PyOpenSSLEnd(ctx), pair)
    assert their_queue_is_empty()


def test_key_not_matching_fails(ca, server_cert, client_cert):
    other_key = trustme.CA().issue_cert("x@example.org").private_key_pem.bytes()
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, lambda r: (client_cert.cert_chain_pems[0].bytes(), other_key))
    pair = MemoryPair(server_context(ca, server_cert, verify=ssl.CERT_OPTIONAL))
    with pytest.raises(ccb.Error, match="does not match"):
        raw_pair_handshake(PyOpenSSLEnd(ctx), pair)


BUNDLED = ccb.pyopenssl_route() == "bundled"


def test_intermediate_chain_reaches_a_server_that_trusts_only_the_root(ca, server_cert, version):
    """Same-libssl: the chain goes with the connection. Bundled: a chain is
    refused (that OpenSSL's only place for it also verifies servers), and the
    intermediates set once on the Context are sent instead."""
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("chained@example.org", common_name="chained")
    leaf_pem = leaf.cert_chain_pems[0].bytes()
    key_pem = leaf.private_key_pem.bytes()
    server = server_context(ca, server_cert, version=version)  # trusts the root only

    ctx = client_context(ca, version)
    ccb.set_client_cert_cb(ctx, lambda request: (leaf_pem, key_pem))
    with pytest.raises((ssl.SSLError, SSL.Error)):
        raw_pair_handshake(PyOpenSSLEnd(ctx), MemoryPair(server))

    ctx = client_context(ca, version)
    ccb.set_client_cert_cb(
        ctx, lambda request: (leaf_pem, key_pem, [intermediate.cert_pem.bytes()])
    )
    pair = MemoryPair(server)
    if BUNDLED:
        with pytest.raises(ccb.Error, match="no per-connection chain"):
            raw_pair_handshake(PyOpenSSLEnd(ctx), pair)
        ctx = client_context(ca, version)
        middle = x509.load_pem_x509_certificate(intermediate.cert_pem.bytes())
        try:
            ctx.add_extra_chain_cert(middle)  # pyOpenSSL 25 and later: cryptography's
        except TypeError:
            ctx.add_extra_chain_cert(crypto.X509.from_cryptography(middle))
        ccb.set_client_cert_cb(ctx, lambda request: (leaf_pem, key_pem))
        pair = MemoryPair(server)
    raw_pair_handshake(PyOpenSSLEnd(ctx), pair)
    assert pair.server.getpeercert()["subject"][-1] == (("commonName", "chained"),)


def test_a_chain_sent_never_makes_its_ca_trusted_for_servers(ca, server_cert, version):
    """The client's own CA, sent in its chain, must not then vouch for a server."""
    client_ca = trustme.CA()
    intermediate = client_ca.create_child_ca()
    leaf = intermediate.issue_cert("client@example.org")
    chain = [intermediate.cert_pem.bytes(), client_ca.cert_pem.bytes()]
    answer = (leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes(), chain)
    ctx = client_context(ca, version)  # trusts `ca` for servers, never client_ca
    ccb.set_client_cert_cb(ctx, lambda request: answer)
    server = server_context(client_ca, server_cert, version=version)  # wants client_ca
    server.load_verify_locations(cadata=client_ca.cert_pem.bytes().decode())
    if BUNDLED:
        with pytest.raises(ccb.Error, match="no per-connection chain"):
            raw_pair_handshake(PyOpenSSLEnd(ctx), MemoryPair(server))
    else:
        raw_pair_handshake(PyOpenSSLEnd(ctx), MemoryPair(server))
    impostor_cert = client_ca.issue_cert("localhost")
    impostor = server_context(ca, impostor_cert, version=version, verify=ssl.CERT_NONE)
    with pytest.raises(SSL.Error, match="certificate verify failed"):
        raw_pair_handshake(PyOpenSSLEnd(ctx), MemoryPair(impostor))


def test_changing_a_used_context_is_refused_like_pyopenssl(ca, credential):
    ctx = client_context(ca)
    SSL.Connection(ctx, None)
    if hasattr(ctx, "_used"):  # pyOpenSSL 26 and later refuse; so do we
        with pytest.raises(ValueError, match="cannot be mutated"):
            ctx.set_cipher_list(b"DEFAULT")
        with pytest.raises(ValueError, match="cannot be mutated"):
            ccb.set_client_cert_cb(ctx, lambda request: credential)
    else:  # older pyOpenSSL allows it once that Connection is gone; so do we
        gc.collect()
        ccb.set_client_cert_cb(ctx, lambda request: credential)
        assert ccb.get_client_cert_cb(ctx) is not None


def test_a_callback_set_after_a_connection_reaches_it_or_is_refused(
    ca, server_cert, credential, client_der
):
    """Never a callback that silently does not run: pyOpenSSL 25+ refuses any
    change once a Connection was made; before that, the bundled route (where
    each SSL copies cert_cb when it is made) refuses while one made earlier
    lives, and same-libssl (client_cert_cb read from the context) reaches it."""
    ctx = client_context(ca)
    early = PyOpenSSLEnd(ctx)

    def set_callback() -> None:
        ccb.set_client_cert_cb(ctx, lambda request: credential)

    if hasattr(ctx, "_used"):
        with pytest.raises(ValueError, match="cannot be mutated"):
            set_callback()
        assert ccb.get_client_cert_cb(ctx) is None
        return
    if ccb.pyopenssl_route() == pyopenssl.BUNDLED:
        with pytest.raises(ccb.Error, match=r"1 live Connection.*before creating Connections"):
            set_callback()
        assert ccb.get_client_cert_cb(ctx) is None
        del early
        gc.collect()
        set_callback()  # none left that it would miss
        client = PyOpenSSLEnd(ctx)
    else:
        set_callback()
        client = early
    pair = MemoryPair(server_context(ca, server_cert))
    raw_pair_handshake(client, pair)
    assert pair.server.getpeercert(binary_form=True) == client_der


@pytest.mark.parametrize("kind", ["X509", "PKey"])
def test_lookalike_pyopenssl_objects_returned_are_refused(ca, server_cert, client_cert, kind):
    cert, key = client_cert.cert_chain_pems[0].bytes(), client_cert.private_key_pem.bytes()
    fake = mock.Mock(spec=getattr(crypto, kind))
    answer = (fake, key) if kind == "X509" else (cert, fake)
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, lambda request: answer)
    with pytest.raises(TypeError, match="cannot use Mock"):
        raw_pair_handshake(PyOpenSSLEnd(ctx), MemoryPair(server_context(ca, server_cert)))
    assert their_queue_is_empty()


def test_callable_lives_exactly_as_long_as_the_context(ca, credential):
    class Chooser:
        def __call__(self, request: ccb.CertificateRequest) -> Any:
            return credential

    ctx = client_context(ca)
    chooser = Chooser()
    ref = weakref.ref(chooser)
    ccb.set_client_cert_cb(ctx, chooser)
    del chooser
    gc.collect()
    assert ref() is not None
    del ctx
    gc.collect()
    assert ref() is None


def test_clear_and_replace(ca, server_cert, credential, client_der):
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, lambda request: None)
    ccb.set_client_cert_cb(ctx, None)
    assert ccb.get_client_cert_cb(ctx) is None
    pair = MemoryPair(server_context(ca, server_cert, verify=ssl.CERT_OPTIONAL))
    raw_pair_handshake(PyOpenSSLEnd(ctx), pair)  # cleared: nothing is called
    assert pair.peer_der() is None

    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, lambda request: None)

    def second(request: ccb.CertificateRequest) -> Any:
        return credential

    ccb.set_client_cert_cb(ctx, second)
    assert ccb.get_client_cert_cb(ctx) is second
    pair = MemoryPair(server_context(ca, server_cert))
    raw_pair_handshake(PyOpenSSLEnd(ctx), pair)
    assert pair.peer_der() == client_der


def test_ssl_ctx_and_c_pointers_follow_the_route(ca):
    ctx = client_context(ca)
    pointer = ccb.ffi.cast("int (*)(SSL *, X509 **, EVP_PKEY **)", 0x1000)
    if ccb.pyopenssl_route() == pyopenssl.BUNDLED:
        with pytest.raises(ccb.Error, match="bundled"):
            ccb.ssl_ctx(ctx)
        with pytest.raises(ccb.Error, match="cannot run on pyOpenSSL's bundled OpenSSL"):
            ccb.set_client_cert_cb(ctx, pointer)
    else:
        raw = ccb.ssl_ctx(ctx)
        from OpenSSL._util import ffi as their_ffi

        assert int(ccb.ffi.cast("uintptr_t", raw)) == int(their_ffi.cast("uintptr_t", ctx._context))
        ccb.set_client_cert_cb(ctx, pointer)  # installed as it is, never called here
        assert ccb.get_client_cert_cb(ctx) is pointer
        ccb.set_client_cert_cb(ctx, None)


def test_clearing_while_a_connection_is_suspended(ca, server_cert, client_der):
    """Connections keep what they were made with; clearing must not leave them
    a dangling callback (each bundled SSL copied cert_cb and its argument)."""
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, lambda request: _want() if request.attempt == 1 else None)
    pair = MemoryPair(server_context(ca, server_cert, verify=ssl.CERT_OPTIONAL))
    client = PyOpenSSLEnd(ctx)
    suspended = False
    refused = hasattr(ctx, "_used")  # pyOpenSSL 26+: no changes once used

    def step() -> bool:
        nonlocal suspended
        try:
            return client.step()
        except SSL.WantX509LookupError:
            if suspended:
                raise
            suspended = True
            if refused:
                with pytest.raises(ValueError, match="cannot be mutated"):
                    ccb.set_client_cert_cb(ctx, None)
            else:
                ccb.set_client_cert_cb(ctx, None)
            gc.collect()
            return False

    def move() -> None:
        pair.server_in.write(client.outgoing())
        client.incoming(pair.server_out.read())

    pump(step, pair.server_step, move)
    assert suspended
    assert pair.peer_der() is None  # cleared, or the callback said none


def test_context_at_a_reused_address_inherits_nothing(ca, credential):
    from OpenSSL._util import ffi as their_ffi

    def address(ctx: SSL.Context) -> int:
        return int(their_ffi.cast("uintptr_t", ctx._context))

    old = client_context(ca)
    ccb.set_client_cert_cb(old, lambda request: credential)
    freed = address(old)
    del old
    gc.collect()
    kept = []
    for _ in range(1000):
        candidate = SSL.Context(SSL.TLS_CLIENT_METHOD)
        if address(candidate) == freed:
            assert ccb.get_client_cert_cb(candidate) is None
            break
        kept.append(candidate)
    else:
        raise AssertionError("the allocator never reused the address")


def test_objects_that_only_claim_to_be_a_context_are_refused_before_any_read():
    """A Mock or a proxy reporting Context as its __class__ is no Context."""
    real = SSL.Context(SSL.TLS_CLIENT_METHOD)

    class Proxy:
        def __init__(self, target: object) -> None:
            self._target = target

        @property  # type: ignore[misc]
        def __class__(self) -> type:
            return SSL.Context

        def __getattr__(self, name: str) -> object:
            return getattr(self._target, name)

    pointer = mock.PropertyMock(side_effect=AssertionError("the pointer was read"))
    spied = mock.Mock(spec=SSL.Context)
    type(spied)._context = pointer
    impostors = (spied, mock.MagicMock(spec=SSL.Context), Proxy(real))
    for impostor in impostors:
        assert isinstance(impostor, SSL.Context)  # what the old check believed
        for call, args in (
            (ccb.set_client_cert_cb, (impostor, lambda request: None)),
            (ccb.get_client_cert_cb, (impostor,)),
            (ccb.ssl_ctx, (impostor,)),
        ):
            with pytest.raises(TypeError, match="claims to be one"):
                call(*args)
    assert pointer.call_count == 0
    assert ccb.get_client_cert_cb(real) is None  # the real one still works

    class Subclass(SSL.Context):  # a real Context's subclass still is one
        pass

    ctx = Subclass(SSL.TLS_CLIENT_METHOD)
    ccb.set_client_cert_cb(ctx, lambda request: None)
    assert ccb.get_client_cert_cb(ctx) is not None


def test_a_certificate_request_that_cannot_be_read_gives_unknown_schemes():
    """The bundled route reads the server's schemes from the message itself:
    any truncation of it reads as unknown (None), never as an exception."""
    tls12 = bytes([13, 0, 0, 11, 2, 1, 64, 0, 4, 8, 4, 4, 3, 0, 0])
    tls13 = bytes([13, 0, 0, 13, 0, 0, 10, 0, 13, 0, 6, 0, 4, 8, 4, 4, 3])
    expected = ["rsa_pss_rsae_sha256", "ecdsa_secp256r1_sha256"]  # in the server's order
    for message, version in (
        (tls12, pyopenssl_request.TLS1_2_VERSION),
        (tls13, pyopenssl_request.TLS1_3_VERSION),
    ):
        assert pyopenssl_request.offered_schemes(message, version) == expected
        for end in range(len(message) - 2):
            assert pyopenssl_request.offered_schemes(message[:end], version) is None
    assert pyopenssl_request.offered_schemes(tls12, 0x0302) is None  # TLS 1.1 names none
