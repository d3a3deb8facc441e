"""``set_client_cert_cb`` and ``get_client_cert_cb`` for every kind of context."""

from __future__ import annotations

import ssl
from typing import Any, Callable, Union

from . import stdlib
from ._binding import CLIENT_CERT_CB, TRAMPOLINE, ffi, lib
from .errors import Error
from .foreign import ForeignCallback
from .request import CertificateRequest
from .trampoline import ensure_state, state_of

Callback = Callable[[CertificateRequest], Any]
ContextLike = Any  # ssl.SSLContext | OpenSSL.SSL.Context | SSL_CTX * cdata
CallbackLike = Union[Callback, ForeignCallback, Any, None]

_SSL_CTX_P = ffi.typeof("SSL_CTX *")


def _ssl_ctx(ctx: ContextLike, *, adopt: bool = False) -> Any:
    """The ``SSL_CTX *`` of any supported context, after proving it is ours to touch."""
    if isinstance(ctx, ffi.CData):
        if ffi.typeof(ctx) is not _SSL_CTX_P:
            raise TypeError(
                f"expected an SSL_CTX * from openssl_ccb.ffi, got {ffi.typeof(ctx).cname}"
            )
        if ctx == ffi.NULL:
            raise ValueError("SSL_CTX * is NULL")
        return ctx
    if isinstance(ctx, ssl.SSLContext):
        pointer = stdlib.ssl_ctx_of(ctx)
        if adopt:
            stdlib.adopt(ctx)
        return pointer
    if type(ctx).__module__ == "OpenSSL.SSL" and type(ctx).__name__ == "Context":
        raise Error("pyOpenSSL contexts are not supported yet")
    kind = type(ctx)
    if kind.__module__ == "_cffi_backend" or "CData" in kind.__name__:
        raise TypeError(
            "this cdata comes from another FFI (perhaps another libssl); "
            "only openssl_ccb.ffi SSL_CTX * pointers are accepted"
        )
    raise TypeError(
        f"expected ssl.SSLContext, OpenSSL.SSL.Context or an SSL_CTX * cdata, got {kind.__name__}"
    )


def ssl_ctx(ctx: ContextLike) -> Any:
    """The ``SSL_CTX *`` (``ccb.ffi`` cdata) behind any supported context.

    For raw control of what Python cannot configure, such as the list of
    acceptable CAs a server sends. Refused, like ``set_client_cert_cb``, where
    the context's libssl cannot be proven to be ``ccb.lib``'s.
    """
    return _ssl_ctx(ctx)


def set_client_cert_cb(ctx: ContextLike, callback: CallbackLike) -> None:
    """Install ``callback`` as the context's client-certificate callback.

    ``callback``: a callable taking a ``CertificateRequest`` (or a ``Wallet``),
    a C function pointer of type ``int (*)(SSL *, X509 **, EVP_PKEY **)``
    installed as it is, a ``ForeignCallback``, or None to clear.
    """
    pointer = _ssl_ctx(ctx, adopt=True)
    if callback is None:
        lib.SSL_CTX_set_client_cert_cb(pointer, ffi.NULL)
        state = state_of(pointer)
        if state is not None:
            state.callback = state.pointer = None
        return
    if isinstance(callback, ForeignCallback):
        callback = callback.pointer
    if isinstance(callback, ffi.CData):
        if ffi.typeof(callback) is not CLIENT_CERT_CB or callback == ffi.NULL:
            raise TypeError(
                "a C callback must be a non-NULL int (*)(SSL *, X509 **, EVP_PKEY **), "
                f"got {ffi.typeof(callback).cname}"
            )
        state = ensure_state(pointer)
        state.callback, state.pointer = None, callback
        lib.SSL_CTX_set_client_cert_cb(pointer, callback)
        return
    if not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    state = ensure_state(pointer)
    state.callback, state.pointer = callback, None
    lib.SSL_CTX_set_client_cert_cb(pointer, TRAMPOLINE)


def get_client_cert_cb(ctx: ContextLike) -> Any:
    """The object that was set, None, or a ``ForeignCallback`` for one set in C."""
    pointer = _ssl_ctx(ctx)
    current = lib.SSL_CTX_get_client_cert_cb(pointer)
    if current == ffi.NULL:
        return None
    state = state_of(pointer)
    if current == TRAMPOLINE:
        if state is None or state.callback is None:
            raise Error("the openssl-ccb trampoline is installed without a callback")
        return state.callback
    if state is not None and state.pointer is not None and state.pointer == current:
        return state.pointer
    return ForeignCallback(current)
