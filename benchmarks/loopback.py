"""Handshakes over real TCP sockets on 127.0.0.1, for the thread section.

Over sockets the whole handshake is one blocking ``do_handshake`` with the
GIL released, as in a real program; the GIL is taken only by the
callback, and by the few Python calls around each connection. (Over memory
BIOs, Python drives every step, holding the GIL between OpenSSL calls.)

Each client thread has a server thread of its own, on its own listener:
accept, handshake (requiring the client certificate), send one byte, close.
The client connects, handshakes, reads that byte (so the server accepted its
certificate) and closes.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from .handshakes import pyopenssl_client, pyopenssl_server, stdlib_client, stdlib_server
from .pki import PKI

Client = Callable[[tuple[str, int]], None]  # one handshake against a listener
Serve = Callable[[socket.socket], None]  # one accepted connection


TIMEOUT = 30  # seconds: a stuck peer fails the run instead of hanging it

# SO_RCVTIMEO/SO_SNDTIMEO keep the socket blocking (one do_handshake, GIL
# released), unlike settimeout(), which would change the measured path.
_TIMEVAL = struct.pack("ll", TIMEOUT, 0)


def _tune(sock: socket.socket) -> socket.socket:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle stalls between records
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _TIMEVAL)
    return sock


def _connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=TIMEOUT)
    sock.settimeout(None)  # blocking again: the timeouts are the kernel's now
    return _tune(sock)


def stdlib(pki: PKI, leaf: Any, mode: str) -> tuple[Client, Serve]:
    server_ctx = stdlib_server(pki, "TLSv1.3")
    client_ctx = stdlib_client(pki, "TLSv1.3", leaf, mode)

    def client(address: tuple[str, int]) -> None:
        with client_ctx.wrap_socket(_connect(address), server_hostname="localhost") as tls:
            if tls.recv(1) != b"!":
                raise RuntimeError("the server did not answer")

    def serve(conn: socket.socket) -> None:
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"!")

    return client, serve


def pyopenssl(pki: PKI, leaf: Any, mode: str) -> tuple[Client, Serve]:
    from OpenSSL import SSL

    server_ctx = pyopenssl_server(pki, "TLSv1.3")
    client_ctx = pyopenssl_client(pki, "TLSv1.3", leaf, mode)

    def client(address: tuple[str, int]) -> None:
        with _connect(address) as sock:
            tls = SSL.Connection(client_ctx, sock)
            tls.set_connect_state()
            tls.set_tlsext_host_name(b"localhost")
            tls.do_handshake()
            if tls.recv(1) != b"!":
                raise RuntimeError("the server did not answer")

    def serve(conn: socket.socket) -> None:
        with conn:
            tls = SSL.Connection(server_ctx, conn)
            tls.set_accept_state()
            tls.do_handshake()
            tls.sendall(b"!")

    return client, serve


WORLDS: dict[str, Callable[[PKI, Any, str], tuple[Client, Serve]]] = {
    "ssl": stdlib,
    "pyOpenSSL": pyopenssl,
}


class Listener:
    """A listening socket on 127.0.0.1 and the thread that serves it, per run."""

    def __init__(self, serve: Serve) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.sock.settimeout(TIMEOUT)  # accept() only; accepted sockets are blocking
        self.address: tuple[str, int] = self.sock.getsockname()[:2]
        self._serve = serve
        self.errors: list[BaseException] = []

    def start(self, n: int) -> threading.Thread:
        self.errors.clear()

        def run() -> None:
            try:
                for _ in range(n):
                    conn, _ = self.sock.accept()
                    self._serve(_tune(conn))
            except BaseException as exc:  # reported by the caller, not lost in a thread
                self.errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.sock.close()
