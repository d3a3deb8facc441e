"""The standard library's ssl.SSLContext: contexts, answers, and
the exceptions its sockets and objects raise."""

from __future__ import annotations

import asyncio
import socket
import ssl
import traceback
from typing import Any

import pytest
from tlsutil import (
    Boom,
    MemoryPair,
    SocketServer,
    assert_from_explode,
    client_context,
    explode,
    pump,
    server_context,
)

import openssl_ccb as ccb
from openssl_ccb.worlds.stdlib_sockets import CCBSSLObject


def test_certificate_returned_is_the_one_the_server_receives(
    ca, server_cert, credential, client_der, version
):
    pair = MemoryPair(server_context(ca, server_cert, version=version))
    ctx = client_context(ca)
    requests = []

    def choose(request: ccb.CertificateRequest) -> ccb.Credential:
        requests.append((request.version, request.server_name, request.attempt))
        return credential

    ccb.set_client_cert_cb(ctx, choose)
    client = pair.stdlib_client(ctx)
    pair.handshake(client)
    assert pair.peer_der() == client_der
    assert requests == [(version, "localhost", 1)]
    assert client.version() == version


def test_callback_not_called_when_server_does_not_ask(ca, server_cert, credential, version):
    pair = MemoryPair(server_context(ca, server_cert, version=version, verify=ssl.CERT_NONE))
    ctx = client_context(ca)
    calls = []
    ccb.set_client_cert_cb(ctx, lambda request: calls.append(request) or credential)
    pair.handshake(pair.stdlib_client(ctx))
    assert calls == []
    assert pair.peer_der() is None


def test_callback_not_called_when_certificate_already_configured(
    ca, server_cert, client_cert, client_der, version
):
    pair = MemoryPair(server_context(ca, server_cert, version=version))
    ctx = client_context(ca)
    client_cert.configure_cert(ctx)
    calls = []
    ccb.set_client_cert_cb(ctx, lambda request: calls.append(request))
    pair.handshake(pair.stdlib_client(ctx))
    assert calls == []
    assert pair.peer_der() == client_der


def test_returning_none_sends_no_certificate_and_server_refuses(ca, server_cert, version):
    pair = MemoryPair(server_context(ca, server_cert, version=version))
    ctx = client_context(ca)
    calls = []
    ccb.set_client_cert_cb(ctx, lambda request: calls.append(request.attempt))
    with pytest.raises(ssl.SSLError) as info:
        pair.handshake(pair.stdlib_client(ctx))
    assert calls == [1]
    assert "CERTIFICATE" in str(info.value).upper()


def test_returning_none_to_optional_server_completes_without_certificate(ca, server_cert, version):
    pair = MemoryPair(server_context(ca, server_cert, version=version, verify=ssl.CERT_OPTIONAL))
    ctx = client_context(ca)
    calls = []
    ccb.set_client_cert_cb(ctx, lambda request: calls.append(request.attempt))
    pair.handshake(pair.stdlib_client(ctx))
    assert calls == [1]
    assert pair.peer_der() is None


def test_suspend_n_times_then_succeed(ca, server_cert, credential, client_der, version):
    pair = MemoryPair(server_context(ca, server_cert, version=version))
    ctx = client_context(ca)
    attempts = []

    def slow(request: ccb.CertificateRequest) -> Any:
        attempts.append(request.attempt)
        if request.attempt <= 3:
            raise ccb.WantX509Lookup()
        return credential

    ccb.set_client_cert_cb(ctx, slow)
    client = pair.stdlib_client(ctx)
    suspensions = []

    def client_step() -> bool:
        try:
            client.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ccb.WantX509Lookup as exc:
            suspensions.append(exc)
            return False
        return True

    pump(client_step, pair.server_step, pair.move)
    client.write(b"x")
    pair.move()
    assert pair.server.read(1) == b"x"
    assert attempts == [1, 2, 3, 4]
    assert len(suspensions) == 3
    for exc in suspensions:
        assert isinstance(exc, ssl.SSLError)
        assert isinstance(exc, ccb.SSLWantX509Lookup)
        assert exc.errno == ssl.SSL_ERROR_WANT_X509_LOOKUP
    assert pair.peer_der() == client_der


def test_negative_int_suspends_like_want_x509_lookup(
    ca, server_cert, credential, client_der, version
):
    pair = MemoryPair(server_context(ca, server_cert, version=version))
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, lambda request: -1 if request.attempt == 1 else credential)
    client = pair.stdlib_client(ctx)
    suspended = []

    def client_step() -> bool:
        try:
            client.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ccb.WantX509Lookup as exc:
            suspended.append(exc.errno)
            return False
        return True

    pump(client_step, pair.server_step, pair.move)
    assert suspended == [ssl.SSL_ERROR_WANT_X509_LOOKUP]
    client.write(b"x")
    pair.move()
    assert pair.server.read(1) == b"x"
    assert pair.peer_der() == client_der


def test_callback_exception_reaches_do_handshake_with_traceback(ca, server_cert, version):
    pair = MemoryPair(server_context(ca, server_cert, version=version))
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, explode)
    with pytest.raises(Boom) as info:
        pair.handshake(pair.stdlib_client(ctx))
    assert_from_explode(info.value)
    assert info.value.__context__ is None  # the user's exception, untouched


def test_callback_exception_reaches_connect_and_wrap_socket(ca, server_cert, version):
    with SocketServer(server_context(ca, server_cert, version=version)) as server:
        ctx = client_context(ca)
        ccb.set_client_cert_cb(ctx, explode)
        # connect(): handshake on connect
        with ctx.wrap_socket(socket.socket(), server_hostname="localhost") as tls:
            tls.settimeout(10)
            with pytest.raises(Boom) as info:
                tls.connect(("127.0.0.1", server.port))
            assert_from_explode(info.value)
        # wrap_socket() of a connected socket
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with raw, pytest.raises(Boom) as info:
            ctx.wrap_socket(raw, server_hostname="localhost")
        assert_from_explode(info.value)
    # Like wrap_socket's own failures, the new socket is closed: the server
    # saw each connection end, rather than time out waiting for it.
    assert len(server.errors) == 2
    assert not any(isinstance(e, (socket.timeout, TimeoutError)) for e in server.errors), (
        server.errors
    )


def test_suspension_surfaces_from_connect_as_ssl_error(ca, server_cert):
    with SocketServer(server_context(ca, server_cert)) as server:
        ctx = client_context(ca)
        ccb.set_client_cert_cb(ctx, lambda request: -1)
        with ctx.wrap_socket(socket.socket(), server_hostname="localhost") as tls:
            tls.settimeout(10)
            with pytest.raises(ssl.SSLError) as info:
                tls.connect(("127.0.0.1", server.port))
            assert isinstance(info.value, ccb.WantX509Lookup)
            assert info.value.errno == ssl.SSL_ERROR_WANT_X509_LOOKUP


def test_suspended_socket_handshake_resumes(ca, server_cert, credential, client_der):
    # connect() drops its SSL object on any error, so resuming needs the
    # handshake outside connect(): do_handshake_on_connect=False.
    with SocketServer(server_context(ca, server_cert)) as server:
        ctx = client_context(ca)
        ccb.set_client_cert_cb(ctx, lambda r: credential if r.attempt > 1 else -1)
        sock = ctx.wrap_socket(
            socket.socket(), server_hostname="localhost", do_handshake_on_connect=False
        )
        with sock as tls:
            tls.settimeout(10)
            tls.connect(("127.0.0.1", server.port))
            with pytest.raises(ccb.SSLWantX509Lookup):
                tls.do_handshake()
            tls.do_handshake()  # the retry sends the certificate
            assert tls.recv(6) == b"hello\n"
            tls.sendall(b"!")
    assert server.received == [client_der]


def test_socket_handshake_sends_certificate(ca, server_cert, credential, client_der, version):
    with SocketServer(server_context(ca, server_cert, version=version)) as server:
        ctx = client_context(ca)
        seen = []

        def choose(request):
            seen.append(request.connection)
            return credential

        ccb.set_client_cert_cb(ctx, choose)
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with raw, ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.recv(6) == b"hello\n"
            tls.sendall(b"!")
            assert seen == [tls]
    assert server.received == [client_der]


def test_asyncio_open_connection_fails_with_callback_exception(ca, server_cert):
    with SocketServer(server_context(ca, server_cert)) as server:
        ctx = client_context(ca)
        ccb.set_client_cert_cb(ctx, explode)

        async def main() -> None:
            await asyncio.open_connection(
                "127.0.0.1", server.port, ssl=ctx, server_hostname="localhost"
            )

        with pytest.raises(Boom) as info:
            asyncio.run(main())
        assert_from_explode(info.value)


def test_asyncio_open_connection_sends_chosen_certificate(ca, server_cert, credential, client_der):
    with SocketServer(server_context(ca, server_cert)) as server:
        ctx = client_context(ca)
        ccb.set_client_cert_cb(ctx, lambda request: credential)

        async def main() -> bytes:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.port, ssl=ctx, server_hostname="localhost"
            )
            line = await reader.readline()
            writer.write(b"!")
            await writer.drain()
            writer.close()
            return line

        assert asyncio.run(main()) == b"hello\n"
    assert server.received == [client_der]


def test_request_describes_the_server_request(ca, other_ca, server_cert, credential, version):
    pair = MemoryPair(server_context(ca, server_cert, version=version, client_cas=(ca, other_ca)))
    ctx = client_context(ca)
    seen: dict[str, Any] = {}

    def look(request: ccb.CertificateRequest) -> Any:
        seen.update(
            cas=request.acceptable_cas,
            names=request.acceptable_ca_names,
            server_name=request.server_name,
            version=request.version,
            peer=request.peer_certificate,
            connection=request.connection,
            ssl=request.ssl,
        )
        return credential

    ccb.set_client_cert_cb(ctx, look)
    client = pair.stdlib_client(ctx)
    pair.handshake(client)
    from cryptography import x509

    expected = [x509.load_pem_x509_certificate(c.cert_pem.bytes()).subject for c in (ca, other_ca)]
    assert seen["cas"] == [name.public_bytes() for name in expected]
    assert seen["names"] == [name.rfc4514_string() for name in expected]
    assert seen["server_name"] == "localhost"
    assert seen["version"] == version
    assert seen["peer"] == client.getpeercert(binary_form=True)
    assert seen["connection"] is client
    assert isinstance(seen["ssl"], ccb.ffi.CData)


def test_request_expires_after_the_callback(ca, server_cert, credential):
    pair = MemoryPair(server_context(ca, server_cert))
    ctx = client_context(ca)
    kept = []
    ccb.set_client_cert_cb(ctx, lambda request: kept.append(request) or credential)
    pair.handshake(pair.stdlib_client(ctx))
    with pytest.raises(ccb.Error, match="only while the callback runs"):
        _ = kept[0].version


def test_user_sslsocket_class_is_kept(ca, server_cert, credential):
    class Mine(ssl.SSLObject):
        marker = "mine"

    pair = MemoryPair(server_context(ca, server_cert))
    ctx = client_context(ca)
    ctx.sslobject_class = Mine
    ccb.set_client_cert_cb(ctx, explode)
    client = pair.stdlib_client(ctx)
    assert isinstance(client, Mine)
    with pytest.raises(Boom):
        pair.handshake(client)


def test_class_set_after_the_callback_fails_the_handshake_and_reports_why(
    ca, server_cert, monkeypatch
):
    """A plain sslobject_class set after set_client_cert_cb cannot re-raise the
    callback's exception: the handshake fails with CALLBACK_FAILED, and the
    exception reaches sys.unraisablehook with its traceback under a ccb.Error
    that says why; nothing is left on the connection."""
    import sys

    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    pair = MemoryPair(server_context(ca, server_cert))
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, explode)
    ctx.sslobject_class = ssl.SSLObject  # replaces openssl-ccb's own class
    client = pair.stdlib_client(ctx)
    with pytest.raises(ssl.SSLError) as raised:
        pair.handshake(client)
    assert raised.value.errno == ssl.SSL_ERROR_SSL
    assert raised.value.reason == "CALLBACK_FAILED"
    assert [type(r.exc_value) for r in reported] == [ccb.Error]
    assert "cannot report to" in str(reported[0].exc_value)
    boom = reported[0].exc_value.__cause__
    assert isinstance(boom, Boom)
    assert "explode" in [f.name for f in traceback.extract_tb(boom.__traceback__)]
    assert "_ccb_error" not in client.__dict__


def test_sslcontext_subclass_is_accepted(ca, server_cert, credential, client_der):
    class MyContext(ssl.SSLContext):
        pass

    ctx = MyContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(ctx)
    ccb.set_client_cert_cb(ctx, lambda request: credential)
    pair = MemoryPair(server_context(ca, server_cert))
    pair.handshake(pair.stdlib_client(ctx))
    assert pair.peer_der() == client_der


def test_sslobject_failures_the_callback_did_not_cause_pass_through_unchanged(
    ca, other_ca, server_cert, credential, version
):
    """Every entry point of the SSLObject fast path (CCBSSLObject) passes on
    OpenSSL's own failures as they were: nothing stashed, nothing replaced."""
    untrusting = client_context(other_ca)  # cannot verify the server
    ccb.set_client_cert_cb(untrusting, lambda request: credential)
    pair = MemoryPair(server_context(ca, server_cert, version=version))
    client = pair.stdlib_client(untrusting)
    assert type(client) is CCBSSLObject
    with pytest.raises(ssl.SSLCertVerificationError):
        pair.handshake(client)

    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, lambda request: credential)
    pair = MemoryPair(server_context(ca, server_cert, version=version))
    client = pair.stdlib_client(ctx)
    pair.handshake(client)
    pair.server.write(b"hello")
    pair.move()
    buffer = bytearray(5)
    assert (client.read(5, buffer), buffer) == (5, bytearray(b"hello"))
    pair.client_in.write(b"\x17\x03\x03\x00\x20" + bytes(32))  # a record that fails its MAC
    failures = []
    for call in (lambda: client.read(5), lambda: client.write(b"x"), client.unwrap):
        with pytest.raises(ssl.SSLError) as info:
            call()
        failures.append((type(info.value), info.value.reason))
    # write on the broken connection: SSLEOFError since CPython 3.10, SSLSyscallError before
    assert failures[1] in ((ssl.SSLEOFError, None), (ssl.SSLSyscallError, None))
    assert [failures[0], failures[2]] == [
        (ssl.SSLError, "DECRYPTION_FAILED_OR_BAD_RECORD_MAC"),
        (ssl.SSLError, "SHUTDOWN_WHILE_IN_INIT"),
    ]
