"""Who drives a handshake, and how a callback's exception gets back to them.

OpenSSL calls the client-certificate callback synchronously, in the thread
that called ``SSL_do_handshake``/``SSL_read``/``SSL_write``. So:

1. ``do_handshake``/``read``/``write`` here push a ``Call`` on a
   thread-local stack before calling into OpenSSL.
2. Only when the callback fails does it look for where to report: the
   innermost ``Call`` of its thread that owns its ``SSL *``, else a
   registered *finder*, which maps the ``SSL *`` to the user's connection
   (standard library: through the SSL's app data, ``_ssl``'s own object;
   pyOpenSSL: ``Connection._reverse_mapping``) and stores on it.
3. The exception is stored there and OpenSSL is told to stop (suspend, or a
   fatal alert where the callback kind allows one): the handshake never goes
   on without a certificate.
4. When OpenSSL returns, the driver (or the wrapper of the connection's
   methods) re-raises the stored exception, with its original traceback, in
   place of OpenSSL's own error. Nothing is stored on a shared context, so
   connections and threads never see each other's errors. Nothing is
   recorded on the success path, which runs inside every handshake.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, NoReturn, Optional

from ._binding import ffi, lib
from .errors import Error, WantRead, WantWrite, WantX509Lookup, drain_error_queue, error_from_queue

_local = threading.local()


class Call:
    """One OpenSSL call in progress, as seen from the callback it triggers."""

    __slots__ = ("connection", "error", "ssl")

    def __init__(self, connection: object | None, ssl: Any = None) -> None:
        self.connection = connection  # the user's connection object, if any
        self.ssl = ssl  # the SSL * driven, where the driver knows it
        self.error: BaseException | None = None

    def owns(self, ssl: Any) -> bool:
        return self.ssl is not None and bool(self.ssl == ssl)

    def fail(self, exc: BaseException) -> None:
        # Keep the first problem: it is the cause of everything after it.
        if self.error is None:
            self.error = exc

    def raise_error(self) -> NoReturn:
        """Re-raise the stored exception, leaving OpenSSL's queue empty."""
        exc = self.error
        assert exc is not None
        self.error = None
        drain_error_queue()
        try:
            raise exc
        finally:
            del exc


class ConnectionCall(Call):
    """A Call found for a connection object: the exception waits on the connection,
    where its own wrapper (stdlib ``_Driven``, pyOpenSSL ``_raise_ssl_error``) takes it."""

    __slots__ = ()

    def fail(self, exc: BaseException) -> None:
        connection: Any = self.connection
        if "_ccb_error" not in connection.__dict__:  # the first problem is the cause
            connection._ccb_error = exc


def push(connection: object | None = None, ssl: Any = None) -> Call:
    call = Call(connection, ssl)
    try:
        _local.stack.append(call)
    except AttributeError:
        _local.stack = [call]
    return call


def pop(call: Call) -> None:
    stack: list[Call] = _local.stack
    # The innermost call is ours unless a callback leaked a push; find it anyway.
    if stack and stack[-1] is call:
        stack.pop()
    else:
        stack.remove(call)


Finder = Callable[[Any], Optional[Call]]
_finders: list[Finder] = []


def add_finder(finder: Finder) -> None:
    """Register a way to find the connection of an ``SSL *`` nobody wraps."""
    if finder not in _finders:
        _finders.append(finder)


def call_for(ssl: Any) -> Call | None:
    """Where the callback for ``ssl`` reports: the innermost owning Call."""
    stack: list[Call] | None = getattr(_local, "stack", None)
    if stack:
        for call in reversed(stack):
            if call.owns(ssl):
                return call
    for finder in _finders:
        found = finder(ssl)
        if found is not None:
            return found
    return None


def raise_for(ssl: Any, ret: int, call: Call, action: str) -> NoReturn:
    """Translate a failed ``SSL_*`` call into an exception."""
    if call.error is not None:
        call.raise_error()
    code = lib.SSL_get_error(ssl, ret)
    if code == lib.SSL_ERROR_WANT_X509_LOOKUP:
        raise WantX509Lookup("the client-certificate callback suspended the handshake")
    if code == lib.SSL_ERROR_WANT_READ:
        raise WantRead(f"{action} wants to read")
    if code == lib.SSL_ERROR_WANT_WRITE:
        raise WantWrite(f"{action} wants to write")
    names = {
        lib.SSL_ERROR_SSL: "SSL_ERROR_SSL",
        lib.SSL_ERROR_SYSCALL: "SSL_ERROR_SYSCALL",
        lib.SSL_ERROR_ZERO_RETURN: "SSL_ERROR_ZERO_RETURN",
    }
    raise error_from_queue(f"{action} failed ({names.get(code, code)})", Error)


def do_handshake(ssl: Any) -> None:
    """Run ``SSL_do_handshake`` on an ``SSL *`` and translate the outcome.

    Returns on success; raises ``WantX509Lookup`` when the callback suspended,
    ``WantRead``/``WantWrite`` on a non-blocking transport, the callback's own
    exception when it raised, and ``Error`` (with the drained queue) otherwise.
    """
    _check_ssl(ssl)
    call = push(None, ssl)
    try:
        ret = lib.SSL_do_handshake(ssl)
    finally:
        pop(call)
    if ret != 1:
        raise_for(ssl, ret, call, "SSL_do_handshake")


def read(ssl: Any, size: int) -> bytes:
    """``SSL_read`` up to ``size`` bytes, translated like ``do_handshake``.

    A certificate request that arrives after the handshake (TLS 1.3
    post-handshake authentication, TLS 1.2 renegotiation) runs the callback
    inside this call, so its outcome surfaces here.
    """
    _check_ssl(ssl)
    buf = ffi.new("char[]", size)
    call = push(None, ssl)
    try:
        ret = lib.SSL_read(ssl, buf, size)
    finally:
        pop(call)
    if ret <= 0:
        raise_for(ssl, ret, call, "SSL_read")
    return bytes(ffi.buffer(buf, ret))


def write(ssl: Any, data: bytes) -> int:
    """``SSL_write``, translated like ``do_handshake``; returns the bytes written."""
    _check_ssl(ssl)
    call = push(None, ssl)
    try:
        ret = lib.SSL_write(ssl, data, len(data))
    finally:
        pop(call)
    if ret <= 0:
        raise_for(ssl, ret, call, "SSL_write")
    return int(ret)


def _check_ssl(ssl: Any) -> None:
    if not isinstance(ssl, ffi.CData) or ffi.typeof(ssl) is not _SSL_P:
        raise TypeError(f"expected an SSL * from openssl_ccb.ffi, got {ssl!r}")
    if ssl == ffi.NULL:
        raise ValueError("SSL * is NULL")


_SSL_P = ffi.typeof("SSL *")
