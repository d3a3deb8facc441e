"""ssl.SSLContext hardening (issue 11): what openssl-ccb believes about memory
it did not allocate, and how connections it cannot report to fail."""

from __future__ import annotations

import contextlib
import ctypes
import ssl
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from tlsutil import MemoryPair, RawEnd, client_context, pump, server_context

import openssl_ccb as ccb
from openssl_ccb import ffi, lib


class Boom(Exception):
    pass


def _raise_boom(request: ccb.CertificateRequest) -> Any:
    raise Boom("chosen badly")


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
    ccb.set_client_cert_cb(ctx, _raise_boom)
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
    # Suspended, not gone on without a certificate.
    assert _drive_by_lib(raw, pair) == lib.SSL_ERROR_WANT_X509_LOOKUP
    assert connections == [None]
    assert len(reported) == 1
    assert isinstance(reported[0].exc_value, Boom) or isinstance(
        reported[0].exc_value.__cause__, Boom
    )
    ccb.errors.drain_error_queue()


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
    assert _drive_by_lib(raw, pair) == lib.SSL_ERROR_WANT_X509_LOOKUP
    assert "_ccb_error" not in bystander.__dict__
    assert len(reported) == 1
    ccb.errors.drain_error_queue()


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
    from openssl_ccb import stdlib

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
