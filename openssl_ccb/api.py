"""``set_client_cert_cb``, ``get_client_cert_cb`` and ``ssl_ctx``: each picks the
world (``openssl_ccb.worlds``) of the context it is given."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, Union

from ._binding import ffi
from .core.trampoline import install, installed
from .foreign import ForeignCallback
from .request import CertificateRequest
from .worlds import pyopenssl, pyopenssl_bundled, raw, stdlib


class PyOpenSSLContext(Protocol):
    """What a type checker knows of pyOpenSSL's ``Context`` (which may not be
    installed); at run time only the real class is accepted."""

    def set_verify(self, mode: int, callback: Any = ..., /) -> None: ...
    def get_cert_store(self) -> Any: ...


if TYPE_CHECKING:
    import ssl

    from ._openssl import _CDataBase

    # What set_client_cert_cb takes: a context of any world...
    ContextLike = Union[ssl.SSLContext, PyOpenSSLContext, _CDataBase]
    # ...and a callable answering a CertificateRequest (a Wallet is one), a C
    # function pointer, a ForeignCallback, or None to clear.
    Callback = Callable[[CertificateRequest], object]
    CallbackLike = Union[Callback, ForeignCallback, _CDataBase, None]


def ssl_ctx(ctx: ContextLike) -> Any:
    """The ``SSL_CTX *`` (``ccb.ffi`` cdata) behind any supported context.

    For raw control of what Python cannot configure, such as the list of
    acceptable CAs a server sends. Refused, like ``set_client_cert_cb``, where
    the context's libssl cannot be proven to be ``ccb.lib``'s.
    """
    if raw.accepts(ctx):
        return raw.ssl_ctx(ctx)
    if stdlib.accepts(ctx):  # ssl_ctx_of checks the real type, not __class__
        return stdlib.ssl_ctx_of(ctx)  # type: ignore[arg-type]
    if pyopenssl.is_context(ctx):
        return pyopenssl.ssl_ctx_of(ctx)
    raise _not_a_context(ctx)


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
    if raw.accepts(ctx):
        install(raw.ssl_ctx(ctx), callback)
    elif stdlib.accepts(ctx):
        stdlib.set_callback(ctx, callback)  # type: ignore[arg-type]
    elif pyopenssl.is_context(ctx):
        _pyopenssl_world().set_callback(ctx, callback)
    else:
        raise _not_a_context(ctx)


def get_client_cert_cb(ctx: ContextLike) -> Any:
    """The object that was set, None, or a ``ForeignCallback`` for one set in C."""
    if raw.accepts(ctx):
        return installed(raw.ssl_ctx(ctx))
    if stdlib.accepts(ctx):
        return stdlib.get_callback(ctx)  # type: ignore[arg-type]
    if pyopenssl.is_context(ctx):
        return _pyopenssl_world().get_callback(ctx)
    raise _not_a_context(ctx)


def _pyopenssl_world() -> Any:
    return pyopenssl if pyopenssl.route() == pyopenssl.SAME_LIBSSL else pyopenssl_bundled


def _not_a_context(ctx: object) -> TypeError:
    raw.refuse_foreign_cdata(ctx)
    return TypeError(
        "expected ssl.SSLContext, OpenSSL.SSL.Context or an SSL_CTX * cdata, "
        f"got {type(ctx).__name__}"
    )
