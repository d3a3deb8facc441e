"""The standard library's ``ssl.SSLContext``: proving its libssl, finding its
``SSL_CTX *``, and surfacing callback outcomes from its sockets.

An ``SSLContext``'s ``SSL_CTX *`` is handed to ``ccb.lib`` only after two proofs:

1. Same library: OpenSSL functions resolved through ``_ssl``'s own link map
   are at the very addresses ``ccb.lib`` calls (``libssl_proof``).
2. Right pointer: the pointer stored in the ``_ssl._SSLContext`` object (its
   first field, after the object header) reports the same options, verify
   mode and protocol bounds that Python reports for the context.

Connections made from the context then use subclasses of the context's
``sslsocket_class``/``sslobject_class`` (``stdlib_sockets``) that re-raise a
callback's exception, and turn a suspension into ``SSLWantX509Lookup``.
"""

from __future__ import annotations

import _ssl as _ssl_module
import contextlib
import ctypes
import platform
import ssl
import weakref
from typing import Any, NoReturn

from .._binding import ffi, lib
from .._locks import ForkSafeRLock
from ..core import channel
from ..core.trampoline import install, installed
from ..errors import Error
from ..libssl_proof import our_version, shares_our_libssl
from ._gevent import real_owner
from .stdlib_sockets import SURFACING, CCBSSLObject, CCBSSLSocket, Driven, DrivenSocket, derive

# --- proof 1: the same libssl --------------------------------------------------

# Re-entrant: a garbage-collector finalizer that sets a callback may run inside
# the first proof, on this very thread; fresh in a fork()'s child.
_proof_lock = ForkSafeRLock()
_proof: Error | bool | None = False  # False: not yet checked; None: proven


def _check_same_libssl(path: str | None) -> Error | None:
    """None if the module at ``path`` runs on our libssl (None, a built-in module: refused)."""
    same, why = shares_our_libssl(path)
    if same:
        return None
    return Error(
        f"Python's ssl module ({ssl.OPENSSL_VERSION}) does not provably run on openssl-ccb's "
        f"libssl ({our_version()}): {why}; refusing ssl.SSLContext"
    )


def prove_same_libssl() -> None:
    """Raise ``Error`` unless ``_ssl`` and ``ccb.lib`` share one libssl."""
    global _proof
    if _proof is False:
        with _proof_lock:
            if _proof is False:
                if platform.python_implementation() != "CPython":
                    _proof = Error(
                        f"{platform.python_implementation()}'s ssl module is not CPython's "
                        "_ssl: openssl-ccb cannot prove which libssl its contexts use"
                    )
                else:
                    import _ssl

                    _proof = _check_same_libssl(getattr(_ssl, "__file__", None))
    if isinstance(_proof, Error):
        raise Error(str(_proof))


# --- proof 2: the right pointer ------------------------------------------------

_VERIFY_MODES = {
    ssl.CERT_NONE: lib.SSL_VERIFY_NONE,
    ssl.CERT_OPTIONAL: lib.SSL_VERIFY_PEER,
    ssl.CERT_REQUIRED: lib.SSL_VERIFY_PEER | lib.SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
}
_VERIFY_MASK = lib.SSL_VERIFY_PEER | lib.SSL_VERIFY_FAIL_IF_NO_PEER_CERT


def _pointer_field(context: ssl.SSLContext) -> int:
    # CPython's PySSLContext: PyObject_HEAD, then SSL_CTX *ctx. (PyPy has no
    # object.__basicsize__; it never gets here: prove_same_libssl refuses it.)
    return ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value or 0


# type's own __mro__ slot: a metaclass cannot shadow it, and tp_mro's layout
# is checked by CPython (an mro() returning an unsuitable base is refused).
_mro_of: Any = type.__dict__["__mro__"].__get__


def is_ssl_context(obj: object) -> bool:
    """Whether ``obj`` really is an ``_ssl._SSLContext``, by its type: never by
    ``isinstance``, which honours ``__class__`` (a ``Mock(spec=...)``, a proxy)."""
    return _ssl_module._SSLContext in _mro_of(type(obj))


def ssl_ctx_of(context: ssl.SSLContext) -> Any:
    """The ``SSL_CTX *`` behind an ``ssl.SSLContext``, once proven."""
    if not is_ssl_context(context):
        raise TypeError(
            f"expected an ssl.SSLContext, got {type(context).__name__}"
            + (
                " (which claims to be one: a proxy or mock has no SSL_CTX to read)"
                if isinstance(context, ssl.SSLContext)
                else ""
            )
        )
    prove_same_libssl()
    address = _pointer_field(context)
    if not address or address % ctypes.alignment(ctypes.c_void_p):
        raise Error("ssl.SSLContext holds no usable SSL_CTX pointer")
    ctx = ffi.cast("SSL_CTX *", address)
    observed = (
        int(lib.SSL_CTX_get_options(ctx)),
        lib.SSL_CTX_get_verify_mode(ctx) & _VERIFY_MASK,
        lib.SSL_CTX_get_min_proto_version(ctx) or ssl.TLSVersion.MINIMUM_SUPPORTED,
        lib.SSL_CTX_get_max_proto_version(ctx) or ssl.TLSVersion.MAXIMUM_SUPPORTED,
    )
    expected = (
        int(context.options),
        _VERIFY_MODES[context.verify_mode],
        int(context.minimum_version),
        int(context.maximum_version),
    )
    if observed != expected:
        raise Error(
            "the SSL_CTX found in this ssl.SSLContext does not match its settings "
            "(an unknown CPython layout?): refusing to use it"
        )
    return ctx


# --- connections -----------------------------------------------------------------


# How a failing callback finds its connection: CPython's _ssl sets each SSL's
# app data to the connection's _ssl._SSLSocket, whose owner is the user's
# socket or SSLObject. But any SSL under the context (a raw SSL_new on
# ccb.ssl_ctx(context), with app data of its own) reaches the callback too,
# so an app-data address is believed only if it is the id() of an
# _ssl._SSLSocket that we saw created for a live owner: adopt() shadows the
# context's _wrap_socket/_wrap_bio, which record, once per connection,
# id(the _SSLSocket) -> weakref(owner). Nothing unknown is ever read:
# the address is only compared, and the object is reached through its owner.
_SSLSocket: Any = getattr(_ssl_module, "_SSLSocket", None)  # (PyPy: refused anyway)
_connections: dict[int, _OwnerRef] = {}

# PySSLSocket: PyObject_HEAD, PyObject *Socket, then SSL *ssl. Read only inside
# a live _SSLSocket, to prove that it is the very SSL being answered for.
# (PyPy has no __basicsize__, nor an _SSLSocket: nothing is ever found there.)
_SSL_FIELD = getattr(object, "__basicsize__", 0) + ctypes.sizeof(ctypes.c_void_p)
_SSL_FIELD_FITS = getattr(_SSLSocket, "__basicsize__", 0) >= _SSL_FIELD + ctypes.sizeof(
    ctypes.c_void_p
)


class _OwnerRef(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to a connection's owner that knows its own key."""

    __slots__ = ("key",)
    key: int


def _forget(ref: _OwnerRef) -> None:
    # Only our own entry: the key may already name a newer connection. (A
    # record by another thread between these two lines would be lost; that
    # connection's failures then end as CALLBACK_FAILED: clear, never unsafe.)
    if _connections.get(ref.key) is ref:
        del _connections[ref.key]


def _record(sslobj: Any, owner: Any) -> None:
    """Remember that ``sslobj`` (new from ``_wrap_socket``/``_wrap_bio``) serves ``owner``."""
    if type(sslobj) is _SSLSocket:
        owner = real_owner(owner)  # gevent's SSLSocket, not the raw socket it passes
        with contextlib.suppress(TypeError):  # an owner without weak references: never found
            ref = _OwnerRef(owner, _forget)
            ref.key = id(sslobj)
            _connections[ref.key] = ref


def _recorded_owner(ssl_ptr: Any) -> Any:
    """The owner recorded for ``ssl_ptr``'s app data, if that is provably its live _SSLSocket."""
    address = int(ffi.cast("uintptr_t", lib.SSL_get_app_data(ssl_ptr)))
    ref = _connections.get(address) if address else None
    owner = None if ref is None else ref()
    if owner is None:
        return None
    sslobj = getattr(owner, "_sslobj", None)  # held: alive while we look
    if type(sslobj) is not _SSLSocket or id(sslobj) != address or not _SSL_FIELD_FITS:
        return None  # the owner moved on (unwrap, a failed connect): the address is stale
    if ctypes.c_void_p.from_address(address + _SSL_FIELD).value != int(
        ffi.cast("uintptr_t", ssl_ptr)
    ):
        return None  # another SSL whose app data names this connection's object
    return owner


class _ContextWrapper:
    """A context's ``_wrap_socket``/``_wrap_bio``, shadowed per instance to record
    each new connection. Holds the context weakly: no cycle keeps it alive."""

    __slots__ = ("context", "method")

    def __init__(self, context: ssl.SSLContext, name: str) -> None:
        self.context = weakref.ref(context)
        self.method = getattr(type(context), name)  # the class's own (a subclass may override)

    def __call__(self, *args: Any, owner: Any = None, **kwargs: Any) -> Any:
        sslobj = self.method(self.context(), *args, owner=owner, **kwargs)
        if owner is not None:
            _record(sslobj, owner)
        return sslobj


def _shadow_wrappers(context: ssl.SSLContext) -> None:
    for name in ("_wrap_socket", "_wrap_bio"):
        if not isinstance(context.__dict__.get(name), _ContextWrapper):
            setattr(context, name, _ContextWrapper(context, name))


def connection_of(ssl_ptr: Any) -> channel.Call:
    """The finder of adopted contexts (``ContextState.finder``)."""
    connection = _recorded_owner(ssl_ptr)
    if connection is None or not issubclass(type(connection), SURFACING):
        return _Unreported(connection)
    return channel.ConnectionCall(connection)


class _Unreported(channel.Call):
    """An SSL under an adopted context whose driver cannot be handed the
    callback's exception: a connection created before set_client_cert_cb, one
    of a class set on the context after it, or a raw SSL driven by bare
    ``ccb.lib`` calls. The handshake fails with OpenSSL's CALLBACK_FAILED
    (``ssl.SSLError``, ``reason == "CALLBACK_FAILED"``), and the exception,
    with its traceback, goes to ``sys.unraisablehook`` under a ``ccb.Error``
    that says why."""

    __slots__ = ()

    def fail(self, exc: BaseException) -> NoReturn:
        lib.openssl_ccb_raise_callback_failed()  # SSL_get_error: SSL_ERROR_SSL, not a suspension
        raise Error(
            "the client-certificate callback raised on a connection that openssl-ccb cannot "
            "report to (created before set_client_cert_cb, its class set on the context after "
            "it, or a raw SSL * driven without ccb.do_handshake): the handshake fails with "
            "CALLBACK_FAILED"
        ) from exc


def accepts(ctx: object) -> bool:
    # A lookalike passes too, to be refused by ssl_ctx_of (by the real type) with why.
    return isinstance(ctx, ssl.SSLContext)


def set_callback(context: ssl.SSLContext, callback: Any) -> None:
    """Install ``callback``, and make the context's connections surface its outcome."""
    pointer = ssl_ctx_of(context)
    _shadow_wrappers(context)
    context.sslsocket_class = derive(context.sslsocket_class, CCBSSLSocket, DrivenSocket)
    context.sslobject_class = derive(context.sslobject_class, CCBSSLObject, Driven)
    install(pointer, callback, context, connection_of)


def get_callback(context: ssl.SSLContext) -> Any:
    return installed(ssl_ctx_of(context))
