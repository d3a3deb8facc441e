"""ssl.SSLContext hardening: what openssl-ccb believes about memory
it did not allocate, and how connections it cannot report to fail."""

from __future__ import annotations

import contextlib
import ctypes
import socket
import ssl
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from tlsutil import (
    Boom,
    MemoryPair,
    RawEnd,
    SocketServer,
    client_context,
    explode,
    pump,
    server_context,
)

import openssl_ccb as ccb
from openssl_ccb import ffi, lib


@pytest.fixture
def unreadable_page() -> Iterator[int]:
    """The address of a page that any read faults on: app data that is no PyObject."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int]
    libc.mmap.argtypes += [ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    map_private, map_anonymous, prot_none = 0x02, 0x20, 0  # Linux
    address = libc.mmap(None, 4096, prot_none, map_private | map_anonymous, -1, 0)
    assert address not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    yield address
    libc.munmap(address, 4096)


def _raw_on_stdlib_context(ca: Any, server_cert: Any, app_data: int) -> tuple[RawEnd, MemoryPair]:
    pair = MemoryPair(server_context(ca, server_cert))
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, explode)
    raw = RawEnd(ccb.ssl_ctx(ctx), hostname="localhost")
    raw.ctx = ctx  # type: ignore[attr-defined]  # keeps the context alive
    assert lib.SSL_set_ex_data(raw.ssl, 0, ffi.cast("void *", app_data)) == 1
    return raw, pair


def _move(raw: RawEnd, pair: MemoryPair) -> None:
    pair.server_in.write(raw.outgoing())
    raw.incoming(pair.server_out.read())


def _drive_by_lib(raw: RawEnd, pair: MemoryPair) -> int:
    """Handshake with bare ccb.lib calls (no openssl-ccb driver); SSL_get_error's verdict."""
    for _ in range(10):
        outcome = lib.SSL_get_error(raw.ssl, lib.SSL_do_handshake(raw.ssl))
        if outcome != lib.SSL_ERROR_WANT_READ:
            return int(outcome)
        _move(raw, pair)
        with contextlib.suppress(ssl.SSLWantReadError):
            pair.server.do_handshake()
        _move(raw, pair)
    raise AssertionError("the handshake never settled")


def _callback_failed_queued() -> bool:
    """Drain the queue: did it say CALLBACK_FAILED (and nothing else)?"""
    return [reason for _, reason, _ in ccb.errors.drain_error_queue()] == ["callback failed"]


def test_raw_ssl_with_foreign_app_data_reports_to_its_driver(ca, server_cert, unreadable_page):
    """A raw SSL under an adopted ssl.SSLContext, its app data pointing at
    memory that is no PyObject: the driver gets the exception, nothing is read."""
    raw, pair = _raw_on_stdlib_context(ca, server_cert, unreadable_page)
    with pytest.raises(Boom):
        pump(raw.step, pair.server_step, lambda: _move(raw, pair))


def test_raw_ssl_with_foreign_app_data_driven_by_lib_is_never_dereferenced(
    ca, server_cert, unreadable_page, monkeypatch
):
    """Driven by ccb.lib directly (no driver to report to), the callback's
    request.connection and its exception look the connection up: the app data
    is only compared, never read (before the fix: SIGSEGV on the page)."""
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    raw, pair = _raw_on_stdlib_context(ca, server_cert, unreadable_page)
    connections = []

    def look_then_fail(request: ccb.CertificateRequest) -> Any:
        connections.append(request.connection)
        raise Boom("chosen badly")

    ccb.set_client_cert_cb(raw.ctx, look_then_fail)  # type: ignore[attr-defined]
    assert _drive_by_lib(raw, pair) == lib.SSL_ERROR_SSL  # failed, not gone on without one
    assert _callback_failed_queued()
    assert connections == [None]
    assert [type(r.exc_value.__cause__) for r in reported] == [Boom]


def test_raw_ssl_naming_another_connection_leaves_that_connection_alone(
    ca, server_cert, monkeypatch
):
    """App data that is the id() of a live stdlib connection's _SSLSocket, on
    another SSL: the exception is not stored on that connection, where its
    next unrelated failure would raise it."""
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    bystander_pair = MemoryPair(server_context(ca, server_cert))
    raw, pair = _raw_on_stdlib_context(ca, server_cert, 0)
    bystander = bystander_pair.stdlib_client(raw.ctx)  # type: ignore[attr-defined]
    assert lib.SSL_set_ex_data(raw.ssl, 0, ffi.cast("void *", id(bystander._sslobj))) == 1
    assert _drive_by_lib(raw, pair) == lib.SSL_ERROR_SSL
    assert _callback_failed_queued()
    assert "_ccb_error" not in bystander.__dict__
    assert [type(r.exc_value.__cause__) for r in reported] == [Boom]


class _Delegating:
    """A proxy that forwards to a real context and claims its class."""

    def __init__(self, target: ssl.SSLContext) -> None:
        object.__setattr__(self, "_target", target)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._target)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def _impostors(ctx: ssl.SSLContext) -> list[Any]:
    from unittest import mock

    return [mock.Mock(spec=ssl.SSLContext), mock.NonCallableMagicMock(spec=ctx), _Delegating(ctx)]


def test_objects_that_only_claim_to_be_a_context_are_refused_before_any_read(
    ca, server_cert, credential, monkeypatch
):
    """isinstance() honours __class__: the check is by type, before any pointer is read."""
    from openssl_ccb.worlds import stdlib

    reads: list[Any] = []
    real_reader = stdlib._pointer_field
    monkeypatch.setattr(stdlib, "_pointer_field", lambda c: reads.append(c) or real_reader(c))
    ctx = client_context(ca)
    for impostor in _impostors(ctx):
        assert isinstance(impostor, ssl.SSLContext)
        for call in (
            lambda c: ccb.set_client_cert_cb(c, lambda request: credential),
            ccb.ssl_ctx,
            ccb.get_client_cert_cb,
            stdlib.ssl_ctx_of,
        ):
            with pytest.raises(TypeError, match="claims to be one"):
                call(impostor)
    assert reads == []
    # Nothing reached the real context behind the proxy: it sends no certificate.
    pair = MemoryPair(server_context(ca, server_cert, verify=ssl.CERT_OPTIONAL))
    pair.handshake(pair.stdlib_client(ctx))
    assert pair.peer_der() is None
    assert "sslobject_class" not in ctx.__dict__  # never adopted


# --- connections created before set_client_cert_cb (item 15) ---------------------
# Their class is plain ssl.SSLSocket/SSLObject and their _SSLSocket was never
# recorded: nothing can hand them the callback's exception. A raising callback
# fails their handshake with CALLBACK_FAILED and reports to sys.unraisablehook;
# a suspension is the stdlib's own SSLError(SSL_ERROR_WANT_X509_LOOKUP).


def _assert_reported_boom(reported: list[Any]) -> None:
    assert [type(r.exc_value) for r in reported] == [ccb.Error]
    assert "created before set_client_cert_cb" in str(reported[0].exc_value)
    assert isinstance(reported[0].exc_value.__cause__, Boom)
    assert reported[0].exc_value.__cause__.__traceback__ is not None


def test_sslobject_made_before_the_callback_fails_clearly(ca, server_cert, monkeypatch):
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    pair = MemoryPair(server_context(ca, server_cert))
    ctx = client_context(ca)
    client = pair.stdlib_client(ctx)
    ccb.set_client_cert_cb(ctx, explode)
    for _ in range(2):  # and again: never goes on without a certificate
        with pytest.raises(ssl.SSLError) as info:
            pair.handshake(client)
        assert info.value.errno == ssl.SSL_ERROR_SSL
        assert info.value.reason == "CALLBACK_FAILED"
        _assert_reported_boom(reported)
        reported.clear()
    with pytest.raises(ssl.SSLWantReadError):  # the server still waits for a certificate
        pair.server.do_handshake()


def test_sslobject_made_before_the_callback_suspends_as_the_stdlib_does(
    ca, server_cert, credential, client_der
):
    pair = MemoryPair(server_context(ca, server_cert))
    ctx = client_context(ca)
    client = pair.stdlib_client(ctx)
    ccb.set_client_cert_cb(ctx, lambda r: credential if r.attempt > 1 else -1)
    with pytest.raises(ssl.SSLError) as info:
        pair.handshake(client)
    assert info.value.errno == ssl.SSL_ERROR_WANT_X509_LOOKUP
    assert not isinstance(info.value, ccb.WantX509Lookup)
    pair.handshake(client)  # the retry sends the certificate
    client.write(b"x")
    pair.move()
    assert pair.server.read(1) == b"x"
    assert pair.peer_der() == client_der


def _wrapped_before(ctx: ssl.SSLContext, port: int) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)


def test_socket_made_before_the_callback_fails_clearly(ca, server_cert, monkeypatch):
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    with SocketServer(server_context(ca, server_cert)) as server:
        ctx = client_context(ca)
        with _wrapped_before(ctx, server.port) as tls:
            ccb.set_client_cert_cb(ctx, explode)
            with pytest.raises(ssl.SSLError) as info:
                tls.do_handshake()
            assert info.value.reason == "CALLBACK_FAILED"
            _assert_reported_boom(reported)
    assert server.received == []


def test_socket_made_before_the_callback_suspends_as_the_stdlib_does(
    ca, server_cert, credential, client_der
):
    with SocketServer(server_context(ca, server_cert)) as server:
        ctx = client_context(ca)
        with _wrapped_before(ctx, server.port) as tls:
            ccb.set_client_cert_cb(ctx, lambda r: credential if r.attempt > 1 else -1)
            with pytest.raises(ssl.SSLError) as info:
                tls.do_handshake()
            assert info.value.errno == ssl.SSL_ERROR_WANT_X509_LOOKUP
            assert not isinstance(info.value, ccb.WantX509Lookup)
            tls.do_handshake()
            assert tls.recv(6) == b"hello\n"
            tls.sendall(b"!")
    assert server.received == [client_der]


# --- smaller items -----------------------------------------------------------------


def test_a_builtin_ssl_module_is_refused_not_searched_globally(ca, monkeypatch):
    """_ssl built into the interpreter has no link map of its own: dlsym on the
    program would search the global namespace, so the proof refuses."""
    import _ssl

    from openssl_ccb.libssl_proof import shares_our_libssl
    from openssl_ccb.worlds import stdlib

    same, why = shares_our_libssl(None)
    assert not same
    assert "built into the interpreter" in why
    monkeypatch.setattr(stdlib, "_proof", False)  # prove again, as on first use
    monkeypatch.delattr(_ssl, "__file__", raising=False)
    with pytest.raises(ccb.Error, match="built into the interpreter"):
        ccb.set_client_cert_cb(client_context(ca), lambda request: None)


def test_refused_inner_handshake_leaves_wrap_socket_its_socket(
    ca, server_cert, credential, client_der, version
):
    """A callback that drives its own socket's handshake inside wrap_socket()
    gets ccb.Error; the refusal must not close the socket the outer handshake
    goes on with (before: closed, and wrap_socket failed)."""
    refused: list[ccb.Error] = []

    def choose(request: ccb.CertificateRequest) -> ccb.Credential:
        try:
            request.connection.do_handshake()
        except ccb.Error as exc:
            refused.append(exc)
        return credential

    with SocketServer(server_context(ca, server_cert, version=version)) as server:
        ctx = client_context(ca)
        ccb.set_client_cert_cb(ctx, choose)
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with raw, ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.recv(6) == b"hello\n"
            tls.sendall(b"!")
    assert len(refused) == 1
    assert "drove its own connection's handshake" in str(refused[0])
    assert server.received == [client_der]


def test_connect_keeps_tls_state_after_a_callback_exception(
    ca, server_cert, credential, client_der
):
    """What README promises: connect() keeps the TLS state when the callback
    raises (not an OSError), and the next call resumes the handshake, calling
    the callback again; a suspension (an SSLError, so an OSError) is dropped
    with the TLS state, as for any failed connect()."""
    attempts = []

    def first_fails(request: ccb.CertificateRequest) -> ccb.Credential:
        attempts.append(request.attempt)
        if request.attempt == 1:
            raise Boom("not yet")
        return credential

    with SocketServer(server_context(ca, server_cert)) as server:
        ctx = client_context(ca)
        ccb.set_client_cert_cb(ctx, first_fails)
        with ctx.wrap_socket(socket.socket(), server_hostname="localhost") as tls:
            tls.settimeout(10)
            with pytest.raises(Boom):
                tls.connect(("127.0.0.1", server.port))
            assert tls.recv(6) == b"hello\n"  # resumes: the callback's second attempt
            tls.sendall(b"!")
        assert attempts == [1, 2]
        ccb.set_client_cert_cb(ctx, lambda request: -1)
        with ctx.wrap_socket(socket.socket(), server_hostname="localhost") as tls:
            tls.settimeout(10)
            with pytest.raises(ccb.SSLWantX509Lookup):
                tls.connect(("127.0.0.1", server.port))
            assert tls.version() is None  # no TLS left on this socket: close it
    assert server.received[0] == client_der


class _InterruptedOnce(ssl.SSLObject):
    """Stands for a KeyboardInterrupt that a signal handler raises in the
    stdlib's frame, after the C call failed and before openssl-ccb's wrapper
    takes the callback's stored exception."""

    interrupt = True

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except ssl.SSLError as exc:
            if exc.errno == ssl.SSL_ERROR_WANT_X509_LOOKUP and type(self).interrupt:
                type(self).interrupt = False
                raise KeyboardInterrupt from None
            raise


def test_a_stored_exception_superseded_by_keyboardinterrupt_never_surfaces_later(ca, server_cert):
    ctx = client_context(ca)
    ctx.sslobject_class = _InterruptedOnce
    answers: list[Any] = [Boom("superseded"), None]

    def choose(request: ccb.CertificateRequest) -> Any:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    ccb.set_client_cert_cb(ctx, choose)
    pair = MemoryPair(server_context(ca, server_cert))
    client = pair.stdlib_client(ctx)
    with pytest.raises(KeyboardInterrupt):
        pair.handshake(client)
    assert "_ccb_error" not in client.__dict__
    # The retry sends no certificate and the server refuses: that failure, not Boom.
    with pytest.raises(ssl.SSLError) as info:
        pair.handshake(client)
    assert "CERTIFICATE" in str(info.value).upper()
    assert answers == []


def test_callback_cannot_run_inside_unwrap_under_post_handshake_auth(ca, server_cert):
    """A TLS 1.3 certificate request that arrives after the client sent
    close_notify is ignored by OpenSSL: unwrap() never runs the callback
    (it is wrapped anyway), and nothing is stored on the connection."""
    server_ctx = server_context(ca, server_cert)
    server_ctx.post_handshake_auth = True
    ctx = client_context(ca)
    ctx.post_handshake_auth = True
    calls: list[int] = []
    ccb.set_client_cert_cb(ctx, lambda request: calls.append(request.attempt) or explode(request))
    pair = MemoryPair(server_ctx)
    client = pair.stdlib_client(ctx)
    pair.handshake(client)
    pair.server.verify_client_post_handshake()
    with contextlib.suppress(ssl.SSLWantReadError):
        pair.server.do_handshake()  # sends the CertificateRequest
    pair.move()
    with pytest.raises(ssl.SSLWantReadError):
        client.unwrap()
    assert calls == []
    assert "_ccb_error" not in client.__dict__
    # The same request read by read(): the callback runs, its exception surfaces.
    pair2 = MemoryPair(server_ctx)
    client2 = pair2.stdlib_client(ctx)
    pair2.handshake(client2)
    pair2.server.verify_client_post_handshake()
    with contextlib.suppress(ssl.SSLWantReadError):
        pair2.server.do_handshake()
    pair2.move()
    with pytest.raises(Boom):
        client2.read(1)
    assert calls == [1]


def test_derived_classes_die_with_the_users_class(ca, server_cert, credential, client_der):
    import gc
    import weakref

    from openssl_ccb.worlds import stdlib_sockets

    class Mine(ssl.SSLObject):
        pass

    ctx = client_context(ca)
    ctx.sslobject_class = Mine
    ccb.set_client_cert_cb(ctx, lambda request: credential)
    pair = MemoryPair(server_context(ca, server_cert))
    client = pair.stdlib_client(ctx)
    pair.handshake(client)
    assert isinstance(client, Mine)
    assert pair.peer_der() == client_der
    mine, derived = weakref.ref(Mine), weakref.ref(type(client))
    assert Mine in stdlib_sockets._derived
    del Mine, client, ctx, pair
    gc.collect()
    assert mine() is None
    assert derived() is None
