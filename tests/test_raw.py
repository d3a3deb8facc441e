"""The raw world: SSL_CTX * and SSL * driven only through ccb.ffi, ccb.lib and
ccb.do_handshake."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import traceback
from typing import Any

import pytest
from tlsutil import MemoryPair, RawEnd, pump, raw_client_ctx, raw_pair_handshake, server_context

import openssl_ccb as ccb
from openssl_ccb import ffi, lib


def test_raw_client_sends_the_returned_certificate(
    ca, server_cert, credential, client_der, version
):
    pair = MemoryPair(server_context(ca, server_cert, version=version))
    ctx = raw_client_ctx(ca, version=version)
    seen = []

    def choose(request: ccb.CertificateRequest) -> ccb.Credential:
        seen.append((request.version, request.server_name, request.connection, request.ssl))
        return credential

    ccb.set_client_cert_cb(ctx, choose)
    client = RawEnd(ctx, hostname="localhost")
    raw_pair_handshake(client, pair)
    assert pair.peer_der() == client_der
    assert seen == [(version, "localhost", None, client.ssl)]
    assert lib.SSL_get_verify_result(client.ssl) == lib.X509_V_OK


def test_raw_client_and_raw_server(ca, other_ca, server_cert, credential, client_der, version):
    """Both ends built with ccb.lib alone; the server sends two acceptable CAs."""
    server_ctx = ffi.gc(lib.SSL_CTX_new(lib.TLS_server_method()), lib.SSL_CTX_free)
    with (
        server_cert.cert_chain_pems[0].tempfile() as cert,
        server_cert.private_key_pem.tempfile() as key,
    ):
        assert (
            lib.SSL_CTX_use_certificate_file(server_ctx, cert.encode(), lib.SSL_FILETYPE_PEM) == 1
        )
        assert lib.SSL_CTX_use_PrivateKey_file(server_ctx, key.encode(), lib.SSL_FILETYPE_PEM) == 1
    with ca.cert_pem.tempfile() as path:
        assert lib.SSL_CTX_load_verify_locations(server_ctx, path.encode(), ffi.NULL) == 1
    for trusted in (ca, other_ca):
        x509 = ccb.credential.load_certificate(trusted.cert_pem.bytes())
        assert lib.SSL_CTX_add_client_CA(server_ctx, x509) == 1
    lib.SSL_CTX_set_verify(
        server_ctx, lib.SSL_VERIFY_PEER | lib.SSL_VERIFY_FAIL_IF_NO_PEER_CERT, ffi.NULL
    )
    client_ctx = raw_client_ctx(ca, version=version)
    names = []
    ccb.set_client_cert_cb(client_ctx, lambda r: names.append(r.acceptable_ca_names) or credential)

    client = RawEnd(client_ctx, hostname="localhost")
    server = RawEnd(server_ctx, server=True)

    def move() -> None:
        server.incoming(client.outgoing())
        client.incoming(server.outgoing())

    pump(client.step, server.step, move)
    client.write(b"ping")
    move()
    assert server.read(4) == b"ping"
    assert server.peer_der() == client_der
    assert len(names) == 1
    assert [n.split(",")[-1] for n in names[0]] == ["O=openssl-ccb tests", "O=another CA"]


def test_raw_suspend_then_resume(ca, server_cert, credential, client_der, version):
    pair = MemoryPair(server_context(ca, server_cert, version=version))
    ctx = raw_client_ctx(ca, version=version)
    attempts = []

    def later(request: ccb.CertificateRequest) -> Any:
        attempts.append(request.attempt)
        if request.attempt < 3:
            raise ccb.WantX509Lookup()
        return credential

    ccb.set_client_cert_cb(ctx, later)
    client = RawEnd(ctx)
    suspensions = 0
    kinds: list[type] = []

    def step() -> bool:
        nonlocal suspensions
        try:
            return client.step()
        except ccb.WantX509Lookup as exc:
            kinds.append(type(exc))
            suspensions += 1
            assert lib.SSL_get_error(client.ssl, -1) == lib.SSL_ERROR_WANT_X509_LOOKUP
            return False

    def move() -> None:
        pair.server_in.write(client.outgoing())
        client.incoming(pair.server_out.read())

    pump(step, pair.server_step, move)
    assert attempts == [1, 2, 3]
    assert kinds == [ccb.WantX509Lookup] * 2  # the raw world's own kind, not ssl.SSLError
    assert suspensions == 2
    client.write(b"ok")
    move()
    assert pair.server.read(2) == b"ok"
    assert pair.peer_der() == client_der


def test_raw_callback_exception_reaches_do_handshake(ca, server_cert):
    pair = MemoryPair(server_context(ca, server_cert))
    ctx = raw_client_ctx(ca)

    def explode(request: ccb.CertificateRequest) -> Any:
        raise KeyError("no such certificate")

    ccb.set_client_cert_cb(ctx, explode)
    client = RawEnd(ctx)
    with pytest.raises(KeyError) as info:
        raw_pair_handshake(client, pair)
    assert "explode" in [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    # Suspended, not continued: the server never got a Certificate message.
    assert lib.SSL_is_init_finished(client.ssl) == 0
    assert lib.ERR_peek_error() == 0


def test_raw_handshake_over_a_loopback_socket(ca, server_cert, credential, client_der, version):
    listener = socket.create_server(("127.0.0.1", 0))
    sctx = server_context(ca, server_cert, version=version)
    received: list[Any] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with sctx.wrap_socket(conn, server_side=True) as tls:
            received.append(tls.getpeercert(binary_form=True))
            tls.sendall(b"hi")

    thread = threading.Thread(target=serve)
    thread.start()
    ctx = raw_client_ctx(ca)
    ccb.set_client_cert_cb(ctx, lambda request: credential)
    with socket.create_connection(listener.getsockname()) as sock:
        sock.settimeout(None)  # a blocking fd: OpenSSL reads it directly
        ssl_ = ffi.gc(lib.SSL_new(ctx), lib.SSL_free)
        assert lib.SSL_set_fd(ssl_, sock.fileno()) == 1
        lib.SSL_set_connect_state(ssl_)
        ccb.do_handshake(ssl_)
        buf = ffi.new("char[2]")
        assert lib.SSL_read(ssl_, buf, 2) == 2
        assert ffi.buffer(buf)[:] == b"hi"
    thread.join(10)
    listener.close()
    assert received == [client_der]


def test_do_handshake_raises_error_with_drained_queue(ca, server_cert):
    """A handshake that fails in OpenSSL (untrusted server) gives ccb.Error."""
    pair = MemoryPair(server_context(ca, server_cert))
    ctx = ffi.gc(lib.SSL_CTX_new(lib.TLS_client_method()), lib.SSL_CTX_free)
    lib.SSL_CTX_set_verify(ctx, lib.SSL_VERIFY_PEER, ffi.NULL)  # trusts nothing
    client = RawEnd(ctx)
    with pytest.raises(ccb.Error) as info:
        raw_pair_handshake(client, pair)
    assert "certificate verify failed" in str(info.value)
    assert info.value.errors
    assert lib.ERR_peek_error() == 0


def test_do_handshake_raises_want_read_on_non_blocking_transport(ca):
    ctx = raw_client_ctx(ca)
    client = RawEnd(ctx)
    with pytest.raises(ccb.WantRead):
        ccb.do_handshake(client.ssl)
    assert client.outgoing().startswith(b"\x16\x03")  # a ClientHello went out


def test_do_handshake_refuses_non_ssl_arguments(ca):
    ctx = raw_client_ctx(ca)
    with pytest.raises(TypeError):
        ccb.do_handshake(ctx)
    with pytest.raises(ValueError, match="NULL"):
        ccb.do_handshake(ffi.cast("SSL *", 0))


def test_callback_exception_without_a_driver_is_reported_not_swallowed(
    ca, server_cert, monkeypatch
):
    """lib.SSL_do_handshake called directly: nobody can re-raise, so the
    exception goes to sys.unraisablehook and the handshake stays suspended."""
    import sys

    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    pair = MemoryPair(server_context(ca, server_cert))
    ctx = raw_client_ctx(ca)

    def explode(request: ccb.CertificateRequest) -> Any:
        raise RuntimeError("nobody is listening")

    ccb.set_client_cert_cb(ctx, explode)
    client = RawEnd(ctx)
    outcome = None
    for _ in range(20):
        ret = lib.SSL_do_handshake(client.ssl)
        code = lib.SSL_get_error(client.ssl, ret)
        if code != lib.SSL_ERROR_WANT_READ:
            outcome = code
            break
        pair.server_in.write(client.outgoing())
        client.incoming(pair.server_out.read())
        with contextlib.suppress(ssl.SSLWantReadError):
            pair.server.do_handshake()
    assert outcome == lib.SSL_ERROR_WANT_X509_LOOKUP
    assert [type(r.exc_value) for r in reported] == [RuntimeError]
    assert str(reported[0].exc_value) == "nobody is listening"


def _pha_pair(ca: Any, server_cert: Any, callback: Any) -> tuple[RawEnd, MemoryPair]:
    """A TLS 1.3 raw client that allows post-handshake auth, already connected
    to a server that has not asked for a certificate yet."""
    sctx = server_context(ca, server_cert, version="TLSv1.3")
    sctx.post_handshake_auth = True  # the request comes later, on demand
    pair = MemoryPair(sctx)
    ctx = raw_client_ctx(ca, version="TLSv1.3")
    ccb.set_client_cert_cb(ctx, callback)
    client = RawEnd(ctx)
    lib.SSL_set_post_handshake_auth(client.ssl, 1)
    raw_pair_handshake(client, pair)
    pair.server.verify_client_post_handshake()
    pair.server.write(b"later")  # carries the CertificateRequest
    client.incoming(pair.server_out.read())
    return client, pair


def test_post_handshake_request_is_answered_inside_ccb_read(
    ca, server_cert, credential, client_der
):
    calls = []
    client, pair = _pha_pair(ca, server_cert, lambda r: calls.append(r.version) or credential)
    assert calls == []
    assert ccb.read(client.ssl, 5) == b"later"  # the callback ran in here
    assert calls == ["TLSv1.3"]
    assert ccb.write(client.ssl, b"!") == 1
    pair.server_in.write(client.outgoing())
    assert pair.server.read(1) == b"!"
    assert pair.peer_der() == client_der


def test_post_handshake_exception_surfaces_from_ccb_read(ca, server_cert):
    def explode(request: ccb.CertificateRequest) -> Any:
        raise LookupError("no certificate for later")

    client, _ = _pha_pair(ca, server_cert, explode)
    with pytest.raises(LookupError, match="no certificate for later") as info:
        ccb.read(client.ssl, 5)
    assert "explode" in [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert lib.ERR_peek_error() == 0


def test_post_handshake_suspension_surfaces_from_ccb_read(ca, server_cert, credential, client_der):
    client, pair = _pha_pair(ca, server_cert, lambda r: credential if r.attempt > 1 else -1)
    with pytest.raises(ccb.WantX509Lookup):
        ccb.read(client.ssl, 5)
    assert ccb.read(client.ssl, 5) == b"later"
    ccb.write(client.ssl, b"!")
    pair.server_in.write(client.outgoing())
    assert pair.server.read(1) == b"!"
    assert pair.peer_der() == client_der


def test_callback_driving_another_handshake_answers_each_its_own(ca, server_cert, version):
    """A callback may run a whole handshake of its own (say, to fetch a token
    first): each callback's answer must reach its own connection."""
    outer_cert = ca.issue_cert("outer@example.org")
    inner_cert = ca.issue_cert("inner@example.org")

    def load(leaf: Any) -> ccb.Credential:
        return ccb.Credential.load(leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes())

    outer_credential, inner_credential = load(outer_cert), load(inner_cert)
    inner_ctx = raw_client_ctx(ca, version=version)
    ccb.set_client_cert_cb(inner_ctx, lambda request: inner_credential)
    inner_seen: list[bytes | None] = []

    def outer_choice(request: ccb.CertificateRequest) -> ccb.Credential:
        inner_pair = MemoryPair(server_context(ca, server_cert, version=version))
        raw_pair_handshake(RawEnd(inner_ctx, hostname="localhost"), inner_pair)
        inner_seen.append(inner_pair.peer_der())
        return outer_credential

    outer_ctx = raw_client_ctx(ca, version=version)
    ccb.set_client_cert_cb(outer_ctx, outer_choice)
    pair = MemoryPair(server_context(ca, server_cert, version=version))
    raw_pair_handshake(RawEnd(outer_ctx, hostname="localhost"), pair)
    assert inner_seen == [inner_credential.certificate]
    assert pair.peer_der() == outer_credential.certificate


def test_ccb_read_gives_empty_bytes_on_a_clean_close(ca, server_cert, credential, client_der):
    """As ssl.SSLSocket.recv: the peer's close_notify reads as b"", not an error."""
    pair = MemoryPair(server_context(ca, server_cert))
    ctx = raw_client_ctx(ca)
    ccb.set_client_cert_cb(ctx, lambda request: credential)
    client = RawEnd(ctx)
    raw_pair_handshake(client, pair)
    pair.server.write(b"bye")
    with pytest.raises(ssl.SSLWantReadError):
        pair.server.unwrap()  # sends close_notify, then waits for the client's
    client.incoming(pair.server_out.read())
    assert ccb.read(client.ssl, 5) == b"bye"
    assert ccb.read(client.ssl, 5) == b""
    assert lib.ERR_peek_error() == 0
    assert pair.peer_der() == client_der
