"""A raw ``SSL_CTX *`` of ``ccb.ffi``, and the driver of a raw ``SSL *``.

``do_handshake``/``read``/``write`` push a ``channel.Call`` before calling
into OpenSSL, so a callback's exception comes back as itself.
"""

from __future__ import annotations

from typing import Any, NoReturn

from .._binding import ffi, lib
from ..core import channel
from ..errors import Error, WantRead, WantWrite, WantX509Lookup, error_from_queue

_SSL_CTX_P = ffi.typeof("SSL_CTX *")
_SSL_P = ffi.typeof("SSL *")


def accepts(ctx: object) -> bool:
    return isinstance(ctx, ffi.CData)


def ssl_ctx(ctx: Any) -> Any:
    """The ``SSL_CTX *`` itself, once it is proven to be ``ccb.ffi``'s."""
    if ffi.typeof(ctx) is not _SSL_CTX_P:
        cname = ffi.typeof(ctx).cname
        if cname == _SSL_CTX_P.cname:  # same name, another FFI's type
            raise TypeError(
                "this SSL_CTX * comes from another FFI (perhaps another libssl); "
                "only openssl_ccb.ffi SSL_CTX * pointers are accepted"
            )
        raise TypeError(f"expected an SSL_CTX * from openssl_ccb.ffi, got {cname}")
    if ctx == ffi.NULL:
        raise ValueError("SSL_CTX * is NULL")
    return ctx


def refuse_foreign_cdata(ctx: object) -> None:
    """A TypeError for cdata of another FFI, which ``accepts`` cannot recognise."""
    kind = type(ctx)
    if kind.__module__ == "_cffi_backend" or "CData" in kind.__name__:
        raise TypeError(
            "this cdata comes from another FFI (perhaps another libssl); "
            "only openssl_ccb.ffi SSL_CTX * pointers are accepted"
        )


def raise_for(ssl: Any, ret: int, call: channel.Call, action: str) -> NoReturn:
    """Translate a failed ``SSL_*`` call into an exception."""
    if call.failure() is not None:
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
    call = channel.push(None, ssl)
    try:
        ret = lib.SSL_do_handshake(ssl)
    finally:
        channel.pop(call)
    if ret != 1:
        raise_for(ssl, ret, call, "SSL_do_handshake")


def read(ssl: Any, size: int) -> bytes:
    """``SSL_read`` up to ``size`` bytes, translated like ``do_handshake``.

    A certificate request that arrives after the handshake (TLS 1.3
    post-handshake authentication, TLS 1.2 renegotiation) runs the callback
    inside this call, so its outcome surfaces here. The peer's close_notify
    gives ``b""``, as ``ssl.SSLSocket.recv`` does; an end without one raises.
    """
    _check_ssl(ssl)
    buf = ffi.new("char[]", size)
    call = channel.push(None, ssl)
    try:
        ret = lib.SSL_read(ssl, buf, size)
    finally:
        channel.pop(call)
    if ret <= 0:
        if call.failure() is None and lib.SSL_get_error(ssl, ret) == lib.SSL_ERROR_ZERO_RETURN:
            return b""  # a clean close: nothing queued (SSL_get_error only reads it)
        raise_for(ssl, ret, call, "SSL_read")
    return bytes(ffi.buffer(buf, ret))


def write(ssl: Any, data: bytes) -> int:
    """``SSL_write``, translated like ``do_handshake``; returns the bytes written."""
    _check_ssl(ssl)
    call = channel.push(None, ssl)
    try:
        ret = lib.SSL_write(ssl, data, len(data))
    finally:
        channel.pop(call)
    if ret <= 0:
        raise_for(ssl, ret, call, "SSL_write")
    return int(ret)


def _check_ssl(ssl: Any) -> None:
    if not isinstance(ssl, ffi.CData) or ffi.typeof(ssl) is not _SSL_P:
        raise TypeError(f"expected an SSL * from openssl_ccb.ffi, got {ssl!r}")
    if ssl == ffi.NULL:
        raise ValueError("SSL * is NULL")
