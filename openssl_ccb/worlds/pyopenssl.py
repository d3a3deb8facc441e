"""pyOpenSSL's ``Context``, on whichever OpenSSL pyOpenSSL runs.

Two routes, chosen by proof (``libssl_proof``), never by guess:

* **same-libssl** (Debian's python3-openssl: cryptography links the system
  libssl): the context's ``SSL_CTX *`` is ours to touch, so the real
  ``client_cert_cb`` trampoline is installed on it, exactly as for a raw
  context.
* **bundled** (pip's wheels: cryptography carries its own OpenSSL): the
  ``SSL_CTX *`` must never reach our libssl; see ``pyopenssl_bundled``.

Either way pyOpenSSL raises ``WantX509LookupError`` for a suspension, and a
callback's exception is stashed on its ``Connection`` (``core.channel``) and
raised by pyOpenSSL's ``_raise_ssl_error``, which every failing SSL call goes
through (``patch_connection``).
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

from .._binding import ffi
from .._locks import ForkSafeRLock
from ..core import channel
from ..core.trampoline import install, installed
from ..errors import Error
from ..libssl_proof import our_version, shares_our_libssl

SAME_LIBSSL = "same-libssl"
BUNDLED = "bundled"


def is_context(obj: object) -> bool:
    """Whether ``obj`` is a pyOpenSSL ``Context`` (or a subclass), by its type.

    By ``type()``, never ``isinstance``, which believes ``__class__``: a mock or
    proxy that claims to be a Context is refused before its pointer is read.
    """
    module = sys.modules.get("OpenSSL.SSL")  # never import pyOpenSSL ourselves
    if module is None:
        return False
    if module.Context in type(obj).__mro__:
        return True
    if isinstance(obj, module.Context):
        raise TypeError(
            f"expected an OpenSSL.SSL.Context, got {type(obj).__name__} (which claims "
            "to be one: a proxy or mock has no SSL_CTX to read)"
        )
    return False


@functools.cache
def binding() -> tuple[Any, Any, str]:
    """pyOpenSSL's ffi and lib, and the path of the module that holds them."""
    from OpenSSL._util import ffi as their_ffi
    from OpenSSL._util import lib as their_lib

    for name in ("cryptography.hazmat.bindings._openssl", "cryptography.hazmat.bindings._rust"):
        try:
            module = __import__(name, fromlist=["_"])
        except ImportError:
            continue
        path = getattr(module, "__file__", None)
        if path:
            return their_ffi, their_lib, path
    raise Error("cannot locate the compiled module of cryptography's OpenSSL binding")


@functools.cache
def route() -> str:
    """Which route pyOpenSSL contexts take here: ``"same-libssl"`` or ``"bundled"``."""
    same, _ = shares_our_libssl(binding()[2])
    return SAME_LIBSSL if same else BUNDLED


def describe_route() -> str:
    """One sentence on the route and why, for people."""
    from OpenSSL import SSL

    theirs = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
    if route() == SAME_LIBSSL:
        return f"same-libssl: pyOpenSSL and openssl-ccb share one libssl ({theirs})"
    return (
        f"bundled: pyOpenSSL runs on its own {theirs}, openssl-ccb on {our_version()}; "
        "the callback is installed through cryptography's binding as cert_cb"
    )


def refuse_if_used(context: Any) -> None:
    # pyOpenSSL 26 refuses to change a Context once a Connection exists.
    if getattr(context, "_used", False):
        raise ValueError(
            "Context has already been used to create a Connection, it cannot be mutated again"
        )


def ssl_ctx_of(context: Any) -> Any:
    """The context's ``SSL_CTX *`` as ``ccb.ffi`` cdata: same-libssl route only."""
    if route() != SAME_LIBSSL:
        raise Error(
            "this pyOpenSSL runs on a bundled OpenSSL, not openssl-ccb's libssl "
            f"({our_version()}): its SSL_CTX cannot be used with ccb.lib"
        )
    their_ffi = binding()[0]
    return ffi.cast("SSL_CTX *", int(their_ffi.cast("uintptr_t", context._context)))


def set_callback(context: Any, callback: Any) -> None:
    """The same-libssl route: the real trampoline on the context's SSL_CTX."""
    refuse_if_used(context)
    patch_connection()
    install(ssl_ctx_of(context), callback, context, _find_connection_call)


def get_callback(context: Any) -> Any:
    return installed(ssl_ctx_of(context))


# --- where a callback's exception goes ------------------------------------------


def _connection_of(ssl_address: int) -> Any:
    their_ffi = binding()[0]
    mapping = sys.modules["OpenSSL.SSL"].Connection._reverse_mapping  # no import per call
    return mapping.get(their_ffi.cast("SSL *", ssl_address))


def _find_connection_call(ssl: Any) -> channel.Call | None:
    connection = _connection_of(int(ffi.cast("uintptr_t", ssl)))
    return None if connection is None else channel.ConnectionCall(connection)


_patch_lock = ForkSafeRLock()  # a finalizer may set a callback inside the patch


def patch_connection() -> None:
    """Let Connection._raise_ssl_error raise what a callback stored first."""
    from OpenSSL.SSL import Connection

    with _patch_lock:
        original: Callable[..., Any] = Connection._raise_ssl_error
        if getattr(original, "_ccb_original", None) is not None:
            return

        @functools.wraps(original)
        def _raise_ssl_error(self: Any, ssl: Any, result: int) -> Any:
            exc = channel.take(self)
            if exc is not None:  # pyOpenSSL's queue too: nobody reads it now
                channel.reraise(exc, binding()[1].ERR_clear_error)
            return original(self, ssl, result)

        _raise_ssl_error._ccb_original = original  # type: ignore[attr-defined]
        Connection._raise_ssl_error = _raise_ssl_error  # type: ignore[method-assign]
