"""Concurrency: one context shared by eight threads and by 200
asyncio connections, the callback choosing by server_name; callbacks replaced
and contexts collected while handshakes run on other threads."""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
import threading
import weakref
from typing import Any, Callable

import pytest
from certs import issue
from tlsutil import server_context
from worlds import WORLDS, Client, Link, MemoryClient, MemoryServer, client_context

import openssl_ccb as ccb
from openssl_ccb.core.state import live_contexts
from openssl_ccb.worlds import pyopenssl_bundled

DOMAIN = "concurrency.test"


CLIENT_ROOT = issue("Concurrency Client CA", ca=True)


@pytest.fixture(scope="module")
def wildcard_cert(ca: Any) -> Any:
    return ca.issue_cert(f"*.{DOMAIN}")


def credentials(count: int) -> dict[str, ccb.Credential]:
    """A distinct client certificate (EC: quick to make) for each name h0, h1, ..."""
    return {
        f"h{i}.{DOMAIN}": issue(f"client for h{i}", CLIENT_ROOT).credential() for i in range(count)
    }


def requiring_server(ca: Any, cert: Any) -> ssl.SSLContext:
    """A server requiring a client certificate from CLIENT_ROOT."""
    ctx = server_context(ca, cert)
    ctx.load_verify_locations(cadata=CLIENT_ROOT.pem.decode())
    return ctx


class EchoServer:
    """A loopback TLS server, one thread per connection, that sends back the
    DER of the certificate each client presented, then closes."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.listener.getsockname()[1]
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> EchoServer:
        self.acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        self.acceptor.join(10)
        for thread in self.threads:
            thread.join(10)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(30)
        try:
            with self.ctx.wrap_socket(sock, server_side=True) as tls:
                tls.sendall(tls.getpeercert(binary_form=True) or b"none")
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(exc)


@pytest.mark.parametrize("world", WORLDS)
def test_eight_threads_each_receive_the_certificate_chosen_for_them(world, ca, wildcard_cert):
    """All eight handshakes wait inside the callback together (a barrier), then
    each thread checks that the server got the credential of its own name."""
    chosen = credentials(8)
    barrier = threading.Barrier(8, timeout=60)

    def by_name(request: ccb.CertificateRequest) -> ccb.Credential:
        barrier.wait()  # every round: eight callbacks running at once
        return chosen[request.server_name]

    ctx = client_context(world, ca)
    ccb.set_client_cert_cb(ctx, by_name)
    results: dict[str, list[Any]] = {name: [] for name in chosen}

    def run(name: str) -> None:
        for _ in range(5):
            try:
                with Client(world, ctx, server.port, hostname=name) as client:
                    client.handshake()
                    results[name].append(client.read_all())
            except BaseException as exc:  # reported below
                results[name].append(exc)
                barrier.abort()

    with EchoServer(requiring_server(ca, wildcard_cert)) as server:
        threads = [threading.Thread(target=run, args=(name,)) for name in chosen]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert results == {name: [cred.certificate] * 5 for name, cred in chosen.items()}
    assert server.errors == []


def test_two_hundred_asyncio_connections_each_receive_their_certificate(ca, wildcard_cert):
    chosen = credentials(200)
    ctx = client_context("stdlib", ca)
    ccb.set_client_cert_cb(ctx, lambda request: chosen[request.server_name])
    server_ctx = requiring_server(ca, wildcard_cert)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = writer.get_extra_info("ssl_object")
        writer.write(tls.getpeercert(binary_form=True) or b"none")
        await writer.drain()
        writer.close()

    async def fetch(port: int, name: str) -> bytes:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname=name
        )
        data = await reader.read()
        writer.close()
        return data

    async def main() -> list[bytes]:
        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx, backlog=512)
        port = server.sockets[0].getsockname()[1]
        async with server:
            fetches = [fetch(port, name) for name in chosen]
            return await asyncio.wait_for(asyncio.gather(*fetches), 300)

    received = asyncio.run(main())
    assert received == [cred.certificate for cred in chosen.values()]


def _handshakes(
    world: str, make_ctx: Callable[[], Any], server: ssl.SSLContext, count: int
) -> Callable[[list[Any]], None]:
    """A worker that runs ``count`` handshakes, recording what the server received."""

    def work(into: list[Any]) -> None:
        for _ in range(count):
            try:
                link = Link(MemoryClient(world, make_ctx()), MemoryServer(server))
                link.handshake()
                link.exchange()
                into.append(link.server.peer_der())
            except BaseException as exc:  # reported by the test
                into.append(exc)

    return work


class Answer:
    """A callable that answers with one credential (and can be weakly referenced)."""

    def __init__(self, credential: ccb.Credential) -> None:
        self.credential = credential

    def __call__(self, request: ccb.CertificateRequest) -> ccb.Credential:
        return self.credential


@pytest.mark.parametrize("world", ["stdlib", "raw"])  # pyOpenSSL 26 refuses changes once used
def test_replacing_the_callback_while_other_threads_handshake(world, ca, server_cert):
    """Each handshake sends one of the two answers set, never nothing, never a
    freed callable's; the callables replaced are released."""
    a, b = credentials(2).values()
    ctx = client_context(world, ca)
    first = Answer(a)
    ccb.set_client_cert_cb(ctx, first)
    work = _handshakes(world, lambda: ctx, requiring_server(ca, server_cert), 30)
    outcomes: list[list[Any]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=work, args=(into,)) for into in outcomes]
    replaced = [weakref.ref(first)]
    del first
    for thread in threads:
        thread.start()
    flips = 0
    while any(thread.is_alive() for thread in threads):
        answer = Answer(b if flips % 2 else a)
        replaced.append(weakref.ref(answer))
        ccb.set_client_cert_cb(ctx, answer)
        del answer
        flips += 1
    for thread in threads:
        thread.join()
    sent = [der for into in outcomes for der in into]
    assert len(sent) == 120
    assert set(sent) <= {a.certificate, b.certificate}, [
        x for x in sent if isinstance(x, BaseException)
    ]
    last = ccb.get_client_cert_cb(ctx)
    gc.collect()
    assert [ref() for ref in replaced if ref() is not None] == [last]


@pytest.mark.parametrize("world", WORLDS)
def test_collecting_contexts_while_other_threads_handshake(world, ca, server_cert):
    """Workers make a context per handshake and drop it; meanwhile this thread
    makes, drops and collects contexts of its own. All state is released."""
    (cred,) = credentials(1).values()
    gc.collect()
    kept = (live_contexts(), len(pyopenssl_bundled._bundled))
    answers: list[weakref.ref[Answer]] = []
    lock = threading.Lock()

    def make_ctx() -> Any:
        ctx = client_context(world, ca)
        answer = Answer(cred)
        with lock:
            answers.append(weakref.ref(answer))
        ccb.set_client_cert_cb(ctx, answer)
        return ctx

    work = _handshakes(world, make_ctx, requiring_server(ca, server_cert), 25)
    outcomes: list[list[Any]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=work, args=(into,)) for into in outcomes]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        for _ in range(20):
            ccb.set_client_cert_cb(make_ctx(), Answer(cred))
        gc.collect()
    for thread in threads:
        thread.join()
    assert [der for into in outcomes for der in into] == [cred.certificate] * 100
    gc.collect()
    assert [ref for ref in answers if ref() is not None] == []
    assert (live_contexts(), len(pyopenssl_bundled._bundled)) == kept


def _c_answer(credential: ccb.Credential) -> Any:
    """A fresh C function pointer (an ``ffi.callback``) that sends ``credential``."""
    from openssl_ccb import ffi, lib

    @ffi.callback("int(SSL *, X509 **, EVP_PKEY **)")
    def answer(ssl: Any, x509: Any, pkey: Any) -> int:
        lib.X509_up_ref(credential._x509)
        lib.EVP_PKEY_up_ref(credential._key)
        x509[0], pkey[0] = credential._x509, credential._key
        return 1

    return answer


@pytest.mark.parametrize("world", ["stdlib", "raw"])
def test_swapping_python_and_c_callbacks_while_other_threads_handshake(world, ca, server_cert):
    """Every handshake sees the old or the new callback, never neither and never
    a freed C pointer: fresh ``ffi.callback`` pointers and Python callables
    alternate on the context while four threads handshake on it."""
    (cred,) = credentials(1).values()
    ctx = client_context(world, ca)
    ccb.set_client_cert_cb(ctx, Answer(cred))
    work = _handshakes(world, lambda: ctx, requiring_server(ca, server_cert), 30)
    outcomes: list[list[Any]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=work, args=(into,)) for into in outcomes]
    for thread in threads:
        thread.start()
    flips = 0
    while any(thread.is_alive() for thread in threads):
        ccb.set_client_cert_cb(ctx, _c_answer(cred) if flips % 2 else Answer(cred))
        flips += 1
    for thread in threads:
        thread.join()
    sent = [der for into in outcomes for der in into]
    assert sent == [cred.certificate] * 120, [x for x in sent if x != cred.certificate][:3]
    assert flips > 120
