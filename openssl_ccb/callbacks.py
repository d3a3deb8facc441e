"""``set_client_cert_cb`` and ``get_client_cert_cb`` for every kind of context."""

from __future__ import annotations

import ssl
from typing import Any, Callable, Union

from . import pyopenssl, stdlib
from ._binding import ffi
from .foreign import ForeignCallback
from .request import CertificateRequest
from .trampoline import install, installed

Callback = Callable[[CertificateRequest], Any]
ContextLike = Any  # ssl.SSLContext | OpenSSL.SSL.Context | SSL_CTX * cdata
CallbackLike = Union[Callback, ForeignCallback, Any, None]

_SSL_CTX_P = ffi.typeof("SSL_CTX *")


def _ssl_ctx(ctx: ContextLike, *, adopt: bool = False) -> Any:
    """The ``SSL_CTX *`` of any supported context, after proving it is ours to touch."""
    if isinstance(ctx, ffi.CData):
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
    if isinstance(ctx, ssl.SSLContext):  # ssl_ctx_of checks the real type, not __class__
        pointer = stdlib.ssl_ctx_of(ctx)
        if adopt:
            stdlib.adopt(ctx, pointer)
        return pointer
    if pyopenssl.is_context(ctx):
        return pyopenssl.ssl_ctx_of(ctx)
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
    if isinstance(callback, ForeignCallback):
        callback = callback.pointer
    if callback is not None and not isinstance(callback, ffi.CData) and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    if pyopenssl.is_context(ctx):
        pyopenssl.set_callback(ctx, callback)
        return
    owner = None if isinstance(ctx, ffi.CData) else ctx  # keeps the callable (trampoline)
    install(_ssl_ctx(ctx, adopt=True), callback, owner)


def get_client_cert_cb(ctx: ContextLike) -> Any:
    """The object that was set, None, or a ``ForeignCallback`` for one set in C."""
    if pyopenssl.is_context(ctx):
        return pyopenssl.get_callback(ctx)
    return installed(_ssl_ctx(ctx))
