"""The callable lives exactly as long as the context (docs/lifetime.md)."""

from __future__ import annotations

import contextlib
import gc
import ssl
import threading
import weakref
from typing import Any

import pytest
from tlsutil import (
    MemoryPair,
    RawEnd,
    client_context,
    finish,
    raw_client_ctx,
    raw_pair_handshake,
    server_context,
)

import openssl_ccb as ccb
from openssl_ccb import ffi, lib
from openssl_ccb.core.state import live_contexts, state_of


class Chooser:
    """A callable that can be weakly referenced."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[int] = []

    def __call__(self, request: ccb.CertificateRequest) -> Any:
        self.calls.append(request.attempt)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def test_callable_dies_with_stdlib_context(ca, credential):
    gc.collect()
    before = live_contexts()
    ctx = client_context(ca)
    chooser = Chooser(credential)
    ref = weakref.ref(chooser)
    ccb.set_client_cert_cb(ctx, chooser)
    del chooser
    gc.collect()
    assert ref() is not None, "the context must keep its callback alive"
    assert live_contexts() == before + 1
    del ctx
    gc.collect()
    assert ref() is None
    assert live_contexts() == before


def test_callable_dies_with_raw_context(ca, credential):
    ctx = lib.SSL_CTX_new(lib.TLS_client_method())
    chooser = Chooser(credential)
    ref = weakref.ref(chooser)
    ccb.set_client_cert_cb(ctx, chooser)
    del chooser
    gc.collect()
    assert ref() is not None
    lib.SSL_CTX_free(ctx)
    assert ref() is None


def test_context_kept_alive_by_its_connection_keeps_the_callable(
    ca, server_cert, credential, client_der
):
    """No callback can run after its context is freed: an SSL holds its context."""
    ctx = lib.SSL_CTX_new(lib.TLS_client_method())
    chooser = Chooser(credential)
    ref = weakref.ref(chooser)
    ccb.set_client_cert_cb(ctx, chooser)
    del chooser
    client = RawEnd(ctx)
    lib.SSL_CTX_free(ctx)  # the user's reference is gone; the SSL's remains
    gc.collect()
    assert ref() is not None
    pair = MemoryPair(server_context(ca, server_cert))
    raw_pair_handshake(client, pair)
    assert pair.peer_der() == client_der
    del client
    gc.collect()
    assert ref() is None


def test_replacing_releases_the_old_callable(ca, credential):
    ctx = client_context(ca)
    first, second = Chooser(credential), Chooser(None)
    ref = weakref.ref(first)
    ccb.set_client_cert_cb(ctx, first)
    ccb.set_client_cert_cb(ctx, second)
    del first
    gc.collect()
    assert ref() is None
    assert ccb.get_client_cert_cb(ctx) is second


def test_clearing_returns_none_and_releases(ca, credential):
    ctx = raw_client_ctx(ca)
    chooser = Chooser(credential)
    ref = weakref.ref(chooser)
    ccb.set_client_cert_cb(ctx, chooser)
    assert ccb.get_client_cert_cb(ctx) is chooser
    ccb.set_client_cert_cb(ctx, None)
    assert ccb.get_client_cert_cb(ctx) is None
    assert lib.SSL_CTX_get_client_cert_cb(ctx) == ffi.NULL
    del chooser
    gc.collect()
    assert ref() is None


def _suspended_client(pair: MemoryPair, ctx: ssl.SSLContext) -> ssl.SSLObject:
    """A client whose handshake is suspended in the callback."""
    client = pair.stdlib_client(ctx)
    for _ in range(10):
        try:
            client.do_handshake()
        except ssl.SSLWantReadError:
            pair.move()
            with contextlib.suppress(ssl.SSLWantReadError):
                pair.server.do_handshake()
            pair.move()
        except ccb.WantX509Lookup:
            return client
    raise AssertionError("the callback never suspended")


def test_replacing_while_a_connection_is_suspended(ca, server_cert, credential, client_der):
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, Chooser(ccb.WantX509Lookup()))
    pairs = [
        MemoryPair(server_context(ca, server_cert, verify=ssl.CERT_OPTIONAL)) for _ in range(2)
    ]
    clients = [_suspended_client(p, ctx) for p in pairs]
    replacement = Chooser(credential)
    ccb.set_client_cert_cb(ctx, replacement)
    finish(pairs[0], clients[0])
    assert pairs[0].peer_der() == client_der
    assert replacement.calls == [2]  # the second attempt of that connection
    ccb.set_client_cert_cb(ctx, None)
    finish(pairs[1], clients[1])  # cleared: OpenSSL sends no certificate
    assert pairs[1].peer_der() is None
    gc.collect()


def test_replacing_and_clearing_while_another_thread_is_in_the_callback(
    ca, server_cert, credential, client_der
):
    entered, release = threading.Event(), threading.Event()

    def blocking(request: ccb.CertificateRequest) -> Any:
        entered.set()
        assert release.wait(10)
        return credential

    ref = weakref.ref(blocking)
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, blocking)
    del blocking
    pair = MemoryPair(server_context(ca, server_cert))
    client = pair.stdlib_client(ctx)
    outcome: list[Any] = []

    def run() -> None:
        try:
            pair.handshake(client)
            outcome.append(pair.peer_der())
        except BaseException as exc:  # reported below
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert entered.wait(10)
    ccb.set_client_cert_cb(ctx, Chooser(None))
    ccb.set_client_cert_cb(ctx, None)
    gc.collect()
    assert ref() is not None, "a running callback must stay alive"
    release.set()
    thread.join(10)
    assert outcome == [client_der]
    del thread, run
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("kind", ["raw", "stdlib"])
def test_new_context_at_a_reused_address_inherits_nothing(ca, credential, kind):
    def make() -> Any:
        if kind == "raw":
            return lib.SSL_CTX_new(lib.TLS_client_method())
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)

    def address(ctx: Any) -> int:
        pointer = ctx if kind == "raw" else ccb.ssl_ctx(ctx)
        return int(ffi.cast("uintptr_t", pointer))

    def free(ctx: Any) -> None:
        if kind == "raw":
            lib.SSL_CTX_free(ctx)

    old = make()
    ccb.set_client_cert_cb(old, Chooser(credential))
    freed = address(old)
    free(old)
    del old
    gc.collect()
    reused = None
    kept = []
    for _ in range(1000):
        candidate = make()
        if address(candidate) == freed:
            reused = candidate
            break
        kept.append(candidate)
    assert reused is not None, "the allocator never reused the address"
    pointer = reused if kind == "raw" else ccb.ssl_ctx(reused)
    assert state_of(pointer) is None
    assert ccb.get_client_cert_cb(reused) is None
    for ctx in [*kept, reused]:
        free(ctx)


class Owner:
    """The everyday pattern: an object that keeps a context and sets its own method."""

    def __init__(self, ctx: Any, credential: ccb.Credential) -> None:
        self.ctx = ctx
        self.credential = credential
        ccb.set_client_cert_cb(self.ctx, self.choose)

    def choose(self, request: ccb.CertificateRequest) -> ccb.Credential:
        return self.credential


@pytest.mark.parametrize("world", ["stdlib", "pyopenssl"])
def test_a_callback_that_refers_to_its_own_context_is_collected(
    world, ca, server_cert, credential, client_der
):
    """``set_client_cert_cb(self.ctx, self.choose)`` is an ordinary cycle: after
    real handshakes, dropping the owners frees them, their contexts and state."""
    from worlds import Link, MemoryClient, MemoryServer
    from worlds import client_context as world_context

    gc.collect()
    before = live_contexts()
    owners = [Owner(world_context(world, ca), credential) for _ in range(50)]
    for owner in owners[:3]:
        link = Link(MemoryClient(world, owner.ctx), MemoryServer(server_context(ca, server_cert)))
        link.handshake()
        link.exchange()
        assert link.server.peer_der() == client_der
    del link
    refs = [weakref.ref(owner) for owner in owners] + [weakref.ref(o.ctx) for o in owners]
    del owner, owners
    gc.collect()
    assert [ref for ref in refs if ref() is not None] == []
    assert live_contexts() == before


def test_a_raw_callback_that_refers_to_its_own_context_goes_when_the_context_is_freed(
    ca, server_cert, credential, client_der
):
    """A bare ``SSL_CTX *`` has no Python object to hold the callable, so the
    context itself holds it until OpenSSL frees the context (``ffi.release``
    of an ``ffi.gc`` pointer, or ``SSL_CTX_free``)."""
    owner = Owner(raw_client_ctx(ca), credential)
    client = RawEnd(owner.ctx)
    pair = MemoryPair(server_context(ca, server_cert))
    raw_pair_handshake(client, pair)
    assert pair.peer_der() == client_der
    ref = weakref.ref(owner)
    del client
    ffi.release(owner.ctx)
    del owner
    gc.collect()
    assert ref() is None


def _c_answer(credential: ccb.Credential) -> Any:
    """A fresh C function pointer (an ``ffi.callback``) that sends ``credential``."""

    @ffi.callback("int(SSL *, X509 **, EVP_PKEY **)")
    def answer(ssl: Any, x509: Any, pkey: Any) -> int:
        lib.X509_up_ref(credential._x509)
        lib.EVP_PKEY_up_ref(credential._key)
        x509[0], pkey[0] = credential._x509, credential._key
        return 1

    return answer


def test_a_replaced_c_callback_is_kept_until_the_context_is_freed(
    ca, server_cert, credential, client_der
):
    """OpenSSL gives no way to know that no handshake is inside a C callback."""
    ctx = lib.SSL_CTX_new(lib.TLS_client_method())
    first = _c_answer(credential)
    ref = weakref.ref(first)
    ccb.set_client_cert_cb(ctx, first)
    client = RawEnd(ctx)
    ccb.set_client_cert_cb(ctx, _c_answer(credential))
    ccb.set_client_cert_cb(ctx, Chooser(credential))
    del first
    gc.collect()
    assert ref() is not None
    pair = MemoryPair(server_context(ca, server_cert))
    raw_pair_handshake(client, pair)
    assert pair.peer_der() == client_der
    del client
    lib.SSL_CTX_free(ctx)
    gc.collect()
    assert ref() is None
