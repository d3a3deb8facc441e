"""Certificate requests after the handshake: a TLS 1.2 server
that renegotiates and then asks, and TLS 1.3 post-handshake authentication.
The callback answers, suspends or raises, and its outcome surfaces from the
read (or write) that processed the request."""

from __future__ import annotations

import select
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
from peers import SServer, page_certificate, page_verify_code
from tlsutil import Boom, assert_from_explode, explode, their_queue_is_empty
from worlds import WORLDS, Client, Link, MemoryClient, MemoryServer, client_context, suspension

import openssl_ccb as ccb
from openssl_ccb import lib
from openssl_ccb.worlds import pyopenssl


def assert_server_got_no_certificate(link: Link, world: str) -> None:
    """The server still waits; on pyOpenSSL's bundled route (cert_cb, which can
    send a fatal alert) it was told why the handshake ended."""
    link.move()
    if world == "pyopenssl" and ccb.pyopenssl_route() == pyopenssl.BUNDLED:
        with pytest.raises(Exception, match=r"(?i)alert internal error"):
            link.server.read()
    else:
        assert link.server.read() is None
    assert link.server.peer_der() is None


# --- renegotiation (TLS 1.2) ----------------------------------------------------------


class RenegotiatingServer:
    """A pyOpenSSL TLS 1.2 server over memory that asks for no certificate at
    first. Its session cache and tickets are off, so its renegotiation is a
    full handshake (a resumed one would not ask)."""

    def __init__(self, ca: Any, server_cert: Any) -> None:
        from OpenSSL import SSL

        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        with server_cert.private_key_and_cert_chain_pem.tempfile() as path:
            ctx.use_certificate_chain_file(path)
            ctx.use_privatekey_file(path)
        with ca.cert_pem.tempfile() as path:
            ctx.load_verify_locations(path)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        ctx.set_options(SSL.OP_NO_TICKET)
        self.tls = SSL.Connection(ctx, None)
        self.tls.set_accept_state()

    def outgoing(self) -> bytes:
        from OpenSSL import SSL

        try:
            return bytes(self.tls.bio_read(65536))
        except SSL.WantReadError:
            return b""

    def incoming(self, data: bytes) -> None:
        if data:
            self.tls.bio_write(data)

    def handshake_step(self) -> bool:
        from OpenSSL import SSL

        try:
            self.tls.do_handshake()
        except SSL.WantReadError:
            return False
        return True

    def read(self) -> bytes | None:
        from OpenSSL import SSL

        try:
            return bytes(self.tls.recv(65536))
        except SSL.WantReadError:
            return None

    def peer_der(self) -> bytes | None:
        from cryptography.hazmat.primitives.serialization import Encoding

        cert = self.tls.get_peer_certificate()
        return None if cert is None else cert.to_cryptography().public_bytes(Encoding.DER)

    def renegotiate_asking(self) -> None:
        """Renegotiate, requiring a verified certificate this time."""
        from OpenSSL import SSL

        self.tls.set_verify(
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: bool(args[-1])
        )
        assert self.tls.renegotiate()
        self.tls.do_handshake()  # sends the HelloRequest


def renegotiation_link(world: str, ca: Any, server_cert: Any, callback: Any) -> Link:
    ctx = client_context(world, ca, "TLSv1.2")
    ccb.set_client_cert_cb(ctx, callback)
    link = Link(MemoryClient(world, ctx), RenegotiatingServer(ca, server_cert))
    link.handshake()
    return link


def renegotiate_asking(link: Link) -> None:
    """The server renegotiates, now asking; the client's next read takes the
    HelloRequest and sends a new ClientHello; the server's CertificateRequest
    then reaches the client, not processed yet."""
    link.server.renegotiate_asking()
    link.move()
    assert link.client.read() is None
    link.move()
    assert link.server.read() is None
    link.move()


def finish(link: Link) -> None:
    """Reads on both ends until no bytes move: whatever handshake ran is done."""
    for _ in range(10):
        link.client.read()
        link.server.read()
        if not link.move():
            return
    raise AssertionError("the handshake did not settle")


@pytest.mark.parametrize("world", WORLDS)
def test_renegotiation_that_asks_gets_the_certificate(
    world, ca, server_cert, credential, client_der
):
    attempts: list[int] = []
    link = renegotiation_link(
        world, ca, server_cert, lambda r: attempts.append(r.attempt) or credential
    )
    assert attempts == []  # the first handshake did not ask
    assert link.server.peer_der() is None
    renegotiate_asking(link)
    finish(link)
    assert attempts == [1]
    link.exchange()
    assert link.server.peer_der() == client_der  # verified, or the server had failed


@pytest.mark.parametrize("world", WORLDS)
def test_renegotiation_suspends_from_read_and_resumes(
    world, ca, server_cert, credential, client_der
):
    attempts: list[int] = []

    def later(request: ccb.CertificateRequest) -> Any:
        attempts.append(request.attempt)
        if request.attempt == 1:
            raise ccb.WantX509Lookup()
        return credential

    link = renegotiation_link(world, ca, server_cert, later)
    renegotiate_asking(link)
    with pytest.raises(suspension(world)):
        link.client.read()
    finish(link)
    assert attempts == [1, 2]
    link.exchange()
    assert link.server.peer_der() == client_der


@pytest.mark.parametrize("call", ["read", "write"])
@pytest.mark.parametrize("world", WORLDS)
def test_renegotiation_exception_surfaces_from_the_call_that_processed_it(
    world, call, ca, server_cert
):
    """A write during a renegotiation drives the handshake too: it raises."""
    link = renegotiation_link(world, ca, server_cert, explode)
    renegotiate_asking(link)
    method = link.client.read if call == "read" else lambda: link.client.write(b"late")
    with pytest.raises(Boom) as info:
        method()
    assert_from_explode(info.value)
    assert_server_got_no_certificate(link, world)
    assert their_queue_is_empty(world)


@pytest.mark.parametrize("world", WORLDS)
def test_s_server_renegotiation_command_gets_the_certificate(
    world, tmp_path, ca, server_cert, credential, client_der
):
    """``GET /renegcert`` makes s_server renegotiate, asking for a certificate,
    then print what it got. The client writes the request's last line once
    its side of the renegotiation is done: s_server reads it only then."""
    cert = tmp_path / "server.pem"
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(cert))
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    ctx = client_context(world, ca, "TLSv1.2")
    attempts: list[int] = []
    ccb.set_client_cert_cb(ctx, lambda r: attempts.append(r.attempt) or credential)
    with (
        SServer(Path(cert), "-CAfile", str(cafile), "-tls1_2", "-no_resumption_on_reneg") as peer,
        Client(world, ctx, peer.port) as client,
    ):
        client.handshake()
        assert attempts == []
        client.send(b"GET /renegcert HTTP/1.0\r\n")
        page = _read_page_after_renegotiation(client, attempts)
    assert attempts == [1]
    assert page_certificate(page) == client_der, peer.log
    assert page_verify_code(page) == 0


def _read_page_after_renegotiation(client: Client, attempts: list[int]) -> bytes:
    """Non-blocking: read until the callback ran, then write the final CRLF
    (the write finishes the renegotiation first), then read to the end."""
    client.sock.setblocking(False)
    page, sent = b"", False
    for _ in range(200):
        if attempts and not sent:
            sent = client.write(b"\r\n")
        data = client.read()
        if data == b"":
            return page
        if data is None:
            readable, _, _ = select.select([client.sock], [], [], 10)
            assert readable, "s_server went silent"
            continue
        page += data
    raise AssertionError("s_server's page never ended")


# --- post-handshake authentication (TLS 1.3) -------------------------------------------


def pha_server(ca: Any, server_cert: Any) -> ssl.SSLContext:
    """A TLS 1.3 server that, with post_handshake_auth, asks only after the handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(ctx)
    ca.configure_trust(ctx)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.post_handshake_auth = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def pha_link(world: str, ca: Any, server_cert: Any, callback: Any) -> Link:
    """A TLS 1.3 client with post-handshake authentication enabled, handshaken."""
    ctx = client_context(world, ca, "TLSv1.3")
    if world == "stdlib":
        ctx.post_handshake_auth = True
    elif world == "raw":
        lib.SSL_CTX_set_post_handshake_auth(ctx, 1)
    else:
        from OpenSSL._util import lib as their_lib

        their_lib.SSL_CTX_set_post_handshake_auth(ctx._context, 1)
    ccb.set_client_cert_cb(ctx, callback)
    link = Link(MemoryClient(world, ctx), MemoryServer(pha_server(ca, server_cert)))
    link.handshake()
    link.exchange()
    return link


def ask_after_handshake(link: Link) -> None:
    link.server.tls.verify_client_post_handshake()
    link.server.write(b"now show me")  # the CertificateRequest goes out with it
    link.move()


@pytest.mark.parametrize("world", WORLDS)
def test_post_handshake_request_is_answered_by_the_callback(
    world, ca, server_cert, credential, client_der
):
    asked: list[tuple[int, str]] = []
    link = pha_link(
        world, ca, server_cert, lambda r: asked.append((r.attempt, r.version)) or credential
    )
    assert asked == []
    assert link.server.peer_der() is None
    ask_after_handshake(link)
    assert link.client.read() == b"now show me"
    assert asked == [(1, "TLSv1.3")]
    link.move()
    link.exchange()
    assert link.server.peer_der() == client_der


@pytest.mark.parametrize("world", WORLDS)
def test_post_handshake_suspension_surfaces_from_read_and_resumes(
    world, ca, server_cert, credential, client_der
):
    attempts: list[int] = []

    def later(request: ccb.CertificateRequest) -> Any:
        attempts.append(request.attempt)
        if request.attempt < 3:
            raise ccb.WantX509Lookup()
        return credential

    link = pha_link(world, ca, server_cert, later)
    ask_after_handshake(link)
    for _ in range(2):
        with pytest.raises(suspension(world)):
            link.client.read()
    assert link.client.read() == b"now show me"
    assert attempts == [1, 2, 3]
    link.move()
    link.exchange()
    assert link.server.peer_der() == client_der


@pytest.mark.parametrize("world", WORLDS)
def test_post_handshake_exception_surfaces_from_read(world, ca, server_cert):
    link = pha_link(world, ca, server_cert, explode)
    ask_after_handshake(link)
    with pytest.raises(Boom) as info:
        link.client.read()
    assert_from_explode(info.value)
    assert_server_got_no_certificate(link, world)
    assert their_queue_is_empty(world)


def test_post_handshake_exception_surfaces_from_a_socket_recv(ca, server_cert):
    """The same through SSLSocket.recv, on a connected socket pair."""
    ctx = client_context("stdlib", ca, "TLSv1.3")
    ctx.post_handshake_auth = True
    ccb.set_client_cert_cb(ctx, explode)
    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)
    server = pha_server(ca, server_cert).wrap_socket(
        a, server_side=True, do_handshake_on_connect=False
    )
    client = ctx.wrap_socket(b, server_hostname="localhost", do_handshake_on_connect=False)
    with server, client:
        thread = threading.Thread(target=server.do_handshake)
        thread.start()
        client.do_handshake()
        thread.join(10)
        server.verify_client_post_handshake()
        server.sendall(b"now show me")
        with pytest.raises(Boom) as info:
            client.recv(64)
        assert_from_explode(info.value)
        assert server.getpeercert(binary_form=True) is None
