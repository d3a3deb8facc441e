"""Real TLS peers for the tests: memory-BIO pumps, raw OpenSSL ends, socket servers."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import openssl_ccb as ccb
from openssl_ccb import ffi, lib
from openssl_ccb.worlds.stdlib import ssl_ctx_of

VERSIONS = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


def server_context(
    ca: Any,
    server_cert: Any,
    *,
    version: str = "TLSv1.3",
    verify: ssl.VerifyMode = ssl.CERT_REQUIRED,
    client_cas: tuple[Any, ...] = (),
    trust: tuple[Any, ...] = (),
) -> ssl.SSLContext:
    """A standard-library server context; ``client_cas`` are sent as acceptable CAs."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(ctx)
    for trusted in (ca, *trust):
        trusted.configure_trust(ctx)
    ctx.verify_mode = verify
    ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
    for other in client_cas:
        # The standard library cannot send a CA list; the proven pointer can.
        x509 = ccb.credential.load_certificate(other.cert_pem.bytes())
        assert lib.SSL_CTX_add_client_CA(ssl_ctx_of(ctx), x509) == 1
    return ctx


def selecting_server(
    server_cert: Any,
    *,
    trust: tuple[Any, ...],
    names: tuple[Any, ...] = (),
    sigalgs: str | None = None,
    version: str = "TLSv1.3",
    verify: ssl.VerifyMode = ssl.CERT_REQUIRED,
) -> ssl.SSLContext:
    """A standard-library server; CA names and sigalgs set through its SSL_CTX *."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(ctx)
    ctx.verify_mode = verify
    ctx.load_verify_locations(cadata="".join(t.pem.decode() for t in trust))
    tls = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}[version]
    ctx.minimum_version = ctx.maximum_version = tls
    pointer = ccb.ssl_ctx(ctx)
    for ca in names:
        x509 = ccb.credential.load_certificate(ca.der)
        assert lib.SSL_CTX_add_client_CA(pointer, x509) == 1
    if sigalgs:
        assert lib.SSL_CTX_set1_client_sigalgs_list(pointer, sigalgs.encode()) == 1
    return ctx


def client_context(ca: Any, *, version: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(ctx)
    if version:
        ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
    return ctx


def pump(
    client_step: Callable[[], bool], server_step: Callable[[], bool], move: Callable[[], None]
) -> None:
    """Alternate two handshake steps (each True when done), moving bytes between."""
    done = [False, False]
    for _ in range(100):
        for i, step in enumerate((client_step, server_step)):
            if not done[i]:
                done[i] = step()
        move()
        if all(done):
            return
    raise AssertionError("handshake did not finish")


@dataclass
class MemoryPair:
    """A standard-library server ``SSLObject`` and any client over memory BIOs."""

    server_ctx: ssl.SSLContext
    client_in: ssl.MemoryBIO = field(default_factory=ssl.MemoryBIO)
    client_out: ssl.MemoryBIO = field(default_factory=ssl.MemoryBIO)
    server_in: ssl.MemoryBIO = field(default_factory=ssl.MemoryBIO)
    server_out: ssl.MemoryBIO = field(default_factory=ssl.MemoryBIO)

    def __post_init__(self) -> None:
        self.server = self.server_ctx.wrap_bio(self.server_in, self.server_out, server_side=True)

    def stdlib_client(
        self, ctx: ssl.SSLContext, hostname: str | None = "localhost"
    ) -> ssl.SSLObject:
        return ctx.wrap_bio(self.client_in, self.client_out, server_hostname=hostname)

    def move(self) -> None:
        self.server_in.write(self.client_out.read())
        self.client_in.write(self.server_out.read())

    def server_step(self) -> bool:
        try:
            self.server.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def handshake(self, client: ssl.SSLObject) -> None:
        """Run both ends; the client's exceptions propagate unchanged."""

        def client_step() -> bool:
            try:
                client.do_handshake()
            except ssl.SSLWantReadError:
                return False
            return True

        pump(client_step, self.server_step, self.move)
        # TLS 1.3: the server judges the client's certificate after the
        # client finished; one more exchange lets a refusal show.
        client.write(b"ping")
        self.move()
        assert self.server.read(4) == b"ping"

    def peer_der(self) -> bytes | None:
        return self.server.getpeercert(binary_form=True)


class RawEnd:
    """An ``SSL *`` over memory BIOs, built and driven only through ccb.ffi/ccb.lib."""

    def __init__(self, ctx: Any, *, server: bool = False, hostname: str | None = None) -> None:
        self.ssl = ffi.gc(lib.SSL_new(ctx), lib.SSL_free)
        self.rbio = lib.BIO_new(lib.BIO_s_mem())
        self.wbio = lib.BIO_new(lib.BIO_s_mem())
        lib.BIO_set_mem_eof_return(self.rbio, -1)
        lib.BIO_set_mem_eof_return(self.wbio, -1)
        lib.SSL_set_bio(self.ssl, self.rbio, self.wbio)  # the SSL owns both BIOs now
        if server:
            lib.SSL_set_accept_state(self.ssl)
        else:
            lib.SSL_set_connect_state(self.ssl)
        if hostname:
            lib.SSL_set_tlsext_host_name(self.ssl, hostname.encode())

    def outgoing(self) -> bytes:
        size = lib.BIO_ctrl_pending(self.wbio)
        if not size:
            return b""
        buf = ffi.new("char[]", size)
        n = lib.BIO_read(self.wbio, buf, size)
        return ffi.buffer(buf, n)[:]

    def incoming(self, data: bytes) -> None:
        if data:
            assert lib.BIO_write(self.rbio, data, len(data)) == len(data)

    def step(self) -> bool:
        try:
            ccb.do_handshake(self.ssl)
        except ccb.WantRead:
            return False
        return True

    def write(self, data: bytes) -> None:
        assert lib.SSL_write(self.ssl, data, len(data)) == len(data)

    def read(self, size: int) -> bytes:
        buf = ffi.new("char[]", size)
        n = lib.SSL_read(self.ssl, buf, size)
        assert n > 0, lib.SSL_get_error(self.ssl, n)
        return ffi.buffer(buf, n)[:]

    def peer_der(self) -> bytes | None:
        x509 = lib.openssl_ccb_get1_peer_certificate(self.ssl)
        if x509 == ffi.NULL:
            return None
        return ccb.credential._i2d_x509(ffi.gc(x509, lib.X509_free))


def raw_client_ctx(ca: Any, *, version: str | None = None) -> Any:
    """A raw client context that verifies the server against ``ca``."""
    ctx = ffi.gc(lib.SSL_CTX_new(lib.TLS_client_method()), lib.SSL_CTX_free)
    with ca.cert_pem.tempfile() as path:
        assert lib.SSL_CTX_load_verify_locations(ctx, path.encode(), ffi.NULL) == 1
    lib.SSL_CTX_set_verify(ctx, lib.SSL_VERIFY_PEER, ffi.NULL)
    if version:
        v = {"TLSv1.2": lib.TLS1_2_VERSION, "TLSv1.3": lib.TLS1_3_VERSION}[version]
        lib.SSL_CTX_set_min_proto_version(ctx, v)
        lib.SSL_CTX_set_max_proto_version(ctx, v)
    return ctx


class PyOpenSSLEnd:
    """A pyOpenSSL client Connection over memory BIOs."""

    def __init__(self, context: Any, hostname: str | None = "localhost") -> None:
        from OpenSSL import SSL

        self.conn = SSL.Connection(context, None)
        self.conn.set_connect_state()
        if hostname:
            self.conn.set_tlsext_host_name(hostname.encode())

    def outgoing(self) -> bytes:
        from OpenSSL import SSL

        try:
            return bytes(self.conn.bio_read(65536))
        except SSL.WantReadError:
            return b""

    def incoming(self, data: bytes) -> None:
        if data:
            self.conn.bio_write(data)

    def step(self) -> bool:
        from OpenSSL import SSL

        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            return False
        return True

    def write(self, data: bytes) -> None:
        assert self.conn.send(data) == len(data)


def raw_pair_handshake(client: RawEnd | PyOpenSSLEnd, pair: MemoryPair) -> None:
    """A raw or pyOpenSSL client against a standard-library server, over memory BIOs."""

    def move() -> None:
        pair.server_in.write(client.outgoing())
        client.incoming(pair.server_out.read())

    pump(client.step, pair.server_step, move)
    client.write(b"ping")
    move()
    assert pair.server.read(4) == b"ping"


class SocketServer:
    """A loopback TLS server thread that records what each client presented."""

    def __init__(self, ctx: ssl.SSLContext, reply: bytes = b"hello\n") -> None:
        self.ctx = ctx
        self.reply = reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes | None] = []
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self._stop = False

    def __enter__(self) -> SocketServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        self.thread.join(10)
        self.listener.close()

    def _serve(self) -> None:
        while not self._stop:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            if self._stop:
                sock.close()
                return
            with sock:
                sock.settimeout(10)
                try:
                    with self.ctx.wrap_socket(sock, server_side=True) as tls:
                        self.received.append(tls.getpeercert(binary_form=True))
                        tls.sendall(self.reply)
                        tls.recv(1)
                except (OSError, ssl.SSLError) as exc:
                    self.errors.append(exc)


# --- one copy of what many tests need ------------------------------------------


def in_threads(work: Any, count: int = 8) -> list[BaseException]:
    """Run ``work(n)`` for n in range(count), one thread each, released
    together; what they raised (an empty list: all passed)."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            start.wait()
            work(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


class Boom(Exception):
    """What a test's callback raises; nothing else raises it."""


def explode(request: Any) -> Any:
    """A callback that raises ``Boom("chosen badly")``."""
    raise Boom("chosen badly")


def assert_from_explode(exc: BaseException) -> None:
    """``exc`` is explode()'s own exception, its traceback reaching into the callback."""
    frames = [frame.name for frame in traceback.extract_tb(exc.__traceback__)]
    assert "explode" in frames, frames
    assert (type(exc), str(exc)) == (Boom, "chosen badly")


def their_queue_is_empty(world: str = "pyopenssl") -> bool:
    """pyOpenSSL's own error queue (another OpenSSL's on the bundled route) is empty."""
    if world != "pyopenssl":
        return True
    from OpenSSL._util import lib as their_lib

    return bool(their_lib.ERR_peek_error() == 0)


def finish(pair: MemoryPair, client: Any) -> bytes | None:
    """Finish ``client``'s (an ssl.SSLObject's) handshake over ``pair`` (which
    proves the connection carries data) and give the certificate the server received."""
    pair.handshake(client)
    return pair.peer_der()
