"""The three worlds as clients of a real socket: the standard library, raw
``SSL *`` through ccb.lib, and pyOpenSSL. Each connects, handshakes (a
suspension raises the world's own exception, and ``handshake()`` resumes),
sends a request and reads the answer to the end."""

from __future__ import annotations

import socket
import ssl
from typing import Any

from tlsutil import VERSIONS, PyOpenSSLEnd, RawEnd, pump, raw_client_ctx

import openssl_ccb as ccb
from openssl_ccb import ffi, lib

WORLDS = ("stdlib", "raw", "pyopenssl")


def client_context(world: str, ca: Any, version: str | None = None) -> Any:
    """A client context of ``world`` that trusts ``ca``, pinned to ``version``."""
    if world == "stdlib":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ca.configure_trust(ctx)
        if version:
            ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
        return ctx
    if world == "raw":
        return raw_client_ctx(ca, version=version)
    from cryptography import x509
    from OpenSSL import SSL, crypto

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_PEER, lambda conn, cert, errno, depth, ok: bool(ok))
    store = ctx.get_cert_store()
    assert store is not None
    store.add_cert(
        crypto.X509.from_cryptography(x509.load_pem_x509_certificate(ca.cert_pem.bytes()))
    )
    if version:
        pinned = {"TLSv1.2": SSL.TLS1_2_VERSION, "TLSv1.3": SSL.TLS1_3_VERSION}[version]
        ctx.set_min_proto_version(pinned)
        ctx.set_max_proto_version(pinned)
    return ctx


def suspension(world: str) -> type[BaseException]:
    """What a suspended handshake raises in ``world``."""
    if world == "pyopenssl":
        from OpenSSL import SSL

        return SSL.WantX509LookupError
    return ccb.SSLWantX509Lookup if world == "stdlib" else ccb.WantX509Lookup


class Ops:
    """A client end of ``world``, one step at a time: ``read``/``write`` give None
    or False when the end wants bytes first, ``read`` gives b"" at the end of
    the stream; suspensions and callback exceptions propagate."""

    world: str
    tls: Any  # SSLSocket or SSLObject, pyOpenSSL Connection, or SSL *

    def handshake_step(self) -> bool:
        if self.world == "raw":
            try:
                ccb.do_handshake(self.tls)
            except ccb.WantRead:
                return False
            return True
        return self._want_read(self.tls.do_handshake) is not None

    def read(self) -> bytes | None:
        if self.world == "stdlib":
            return self._want_read(self.tls.read, 65536)  # type: ignore[no-any-return]
        if self.world == "pyopenssl":
            from OpenSSL import SSL

            try:
                return self._want_read(self.tls.recv, 65536)  # type: ignore[no-any-return]
            except (SSL.ZeroReturnError, SSL.SysCallError):
                return b""
            except SSL.Error as exc:
                if "unexpected eof" in str(exc):
                    return b""
                raise
        try:
            return ccb.read(self.tls, 65536)
        except ccb.WantRead:
            return None
        except ccb.WantX509Lookup:
            raise
        except ccb.Error as exc:
            if any(end in str(exc) for end in ("SYSCALL", "unexpected eof")):
                lib.ERR_clear_error()
                return b""  # the end of the stream without close_notify
            raise

    def write(self, data: bytes) -> bool:
        if self.world == "raw":
            try:
                return ccb.write(self.tls, data) == len(data)
            except ccb.WantRead:
                return False
        send = self.tls.write if self.world == "stdlib" else self.tls.send
        return self._want_read(send, data) is not None

    def _want_read(self, method: Any, *args: Any) -> Any:
        try:
            result = method(*args)
        except ssl.SSLWantReadError:
            return None
        except Exception as exc:
            if type(exc).__name__ == "WantReadError":  # pyOpenSSL's
                return None
            raise
        return True if result is None else result


class Client(Ops):
    """A connection of ``world`` to 127.0.0.1:``port``; it handshakes on ``handshake()``."""

    def __init__(self, world: str, ctx: Any, port: int, hostname: str = "localhost") -> None:
        self.world = world
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if world == "stdlib":
            self.tls = ctx.wrap_socket(
                self.sock, server_hostname=hostname, do_handshake_on_connect=False
            )
            self.sock = self.tls  # wrap_socket took over the file descriptor
        elif world == "raw":
            self.sock.settimeout(None)  # a blocking fd: OpenSSL reads it directly
            self.tls = ffi.gc(lib.SSL_new(ctx), lib.SSL_free)
            assert lib.SSL_set_fd(self.tls, self.sock.fileno()) == 1
            assert lib.SSL_set_tlsext_host_name(self.tls, hostname.encode()) == 1
            assert lib.SSL_set1_host(self.tls, hostname.encode()) == 1
            lib.SSL_set_connect_state(self.tls)
        else:
            from OpenSSL import SSL

            self.sock.settimeout(None)
            self.tls = SSL.Connection(ctx, self.sock)
            self.tls.set_tlsext_host_name(hostname.encode())
            self.tls.set_connect_state()

    def handshake(self) -> None:
        """The whole handshake on a blocking socket (or up to a suspension)."""
        assert self.handshake_step()

    def send(self, data: bytes) -> None:
        assert self.write(data)

    def read_all(self) -> bytes:
        """Everything the server sends until it closes (a close without
        close_notify, as s_server's is, counts as the end too)."""
        chunks = []
        while True:
            chunk = self.read()
            assert chunk is not None, "a blocking read wanted more"
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def get(world: str, ctx: Any, port: int, path: str = "/") -> bytes:
    """One HTTP/1.0 GET through ``world``; returns the whole response."""
    with Client(world, ctx, port) as client:
        client.handshake()
        client.send(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        return client.read_all()


# --- over memory: both ends in this process, bytes moved by hand ---------------------


class MemoryClient(Ops):
    """A client of ``world`` over memory BIOs."""

    def __init__(self, world: str, ctx: Any, hostname: str = "localhost") -> None:
        self.world = world
        if world == "stdlib":
            self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.tls = ctx.wrap_bio(self.inc, self.out, server_hostname=hostname)
        elif world == "raw":
            self.end: Any = RawEnd(ctx, hostname=hostname)
            self.tls = self.end.ssl
        else:
            self.end = PyOpenSSLEnd(ctx, hostname)
            self.tls = self.end.conn

    def outgoing(self) -> bytes:
        return self.out.read() if self.world == "stdlib" else bytes(self.end.outgoing())

    def incoming(self, data: bytes) -> None:
        if self.world == "stdlib":
            self.inc.write(data)
        else:
            self.end.incoming(data)


class MemoryServer:
    """A server over memory on a standard-library context: an ``SSLObject``, or
    with ``raw`` an ``SSL *`` made from the context's ``SSL_CTX *``, for what
    Python cannot do (renegotiate)."""

    def __init__(self, ctx: ssl.SSLContext, *, raw: bool = False) -> None:
        self.ctx = ctx  # keeps the SSL_CTX alive
        self.stdlib = not raw
        if self.stdlib:
            self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.tls: Any = ctx.wrap_bio(self.inc, self.out, server_side=True)
        else:
            self.end = RawEnd(ccb.ssl_ctx(ctx), server=True)
            self.tls = self.end.ssl

    def outgoing(self) -> bytes:
        return self.out.read() if self.stdlib else bytes(self.end.outgoing())

    def incoming(self, data: bytes) -> None:
        if self.stdlib:
            self.inc.write(data)
        else:
            self.end.incoming(data)

    def handshake_step(self) -> bool:
        if not self.stdlib:
            return bool(self.end.step())
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def read(self) -> bytes | None:
        if self.stdlib:
            try:
                return bytes(self.tls.read(65536))
            except ssl.SSLWantReadError:
                return None
        buf = ffi.new("char[]", 65536)
        n = lib.SSL_read(self.tls, buf, len(buf))
        if n > 0:
            return bytes(ffi.buffer(buf, n))
        code = lib.SSL_get_error(self.tls, n)
        if code == lib.SSL_ERROR_WANT_READ:
            return None
        raise ccb.errors.error_from_queue(f"server SSL_read failed ({code})")

    def write(self, data: bytes) -> None:
        if self.stdlib:
            self.tls.write(data)
        else:
            self.end.write(data)

    def peer_der(self) -> bytes | None:
        if self.stdlib:
            try:
                return self.tls.getpeercert(binary_form=True)  # type: ignore[no-any-return]
            except ValueError:  # "handshake not done": nothing was accepted
                return None
        return self.end.peer_der()  # type: ignore[no-any-return]


class Link:
    """A client and a server over memory, bytes moved between them by ``move``."""

    def __init__(self, client: MemoryClient, server: Any) -> None:
        self.client, self.server = client, server

    def move(self) -> int:
        """Deliver what each end wrote; returns how many bytes moved."""
        up, down = self.client.outgoing(), self.server.outgoing()
        self.server.incoming(up)
        self.client.incoming(down)
        return len(up) + len(down)

    def handshake(self) -> None:
        pump(self.client.handshake_step, self.server.handshake_step, self.move)

    def exchange(self, data: bytes = b"ping") -> None:
        """The client writes, the server reads it: the connection works."""
        for _ in range(10):
            if self.client.write(data):
                break
            self.move()
            self.server.read()
            self.move()
        self.move()
        assert self.server.read() == data
