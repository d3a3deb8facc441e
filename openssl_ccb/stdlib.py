"""The standard library's ``ssl.SSLContext``: proving its libssl, finding its
``SSL_CTX *``, and surfacing callback outcomes from its sockets.

An ``SSLContext``'s ``SSL_CTX *`` is handed to ``ccb.lib`` only after two proofs:

1. Same library: OpenSSL functions resolved through ``_ssl``'s own link map
   are at the very addresses ``ccb.lib`` calls (``libssl_proof``).
2. Right pointer: the pointer stored in the ``_ssl._SSLContext`` object (its
   first field, after the object header) reports the same options, verify
   mode and protocol bounds that Python reports for the context.

Connections made from the context then use subclasses of the context's
``sslsocket_class``/``sslobject_class`` that re-raise a callback's exception,
and turn a suspension into ``SSLWantX509Lookup``.
"""

from __future__ import annotations

import _ssl as _ssl_module
import contextlib
import ctypes
import platform
import ssl
import threading
import weakref
from typing import Any, Callable, NoReturn

from . import driving
from ._binding import ffi, lib
from ._gevent import real_owner
from .errors import Error, WantX509Lookup, drain_error_queue
from .libssl_proof import our_version, shares_our_libssl
from .trampoline import ensure_state, state_of


class SSLWantX509Lookup(WantX509Lookup, ssl.SSLError):
    """A suspended handshake on a standard-library socket or object.

    Both ``ccb.WantX509Lookup`` and ``ssl.SSLError`` with
    ``errno == ssl.SSL_ERROR_WANT_X509_LOOKUP``.
    """

    def __init__(self, message: str = "the client-certificate callback suspended the handshake"):
        ssl.SSLError.__init__(self, ssl.SSL_ERROR_WANT_X509_LOOKUP, message)
        self.errors = []


# --- proof 1: the same libssl --------------------------------------------------

# Re-entrant: a garbage-collector finalizer that sets a callback may run inside
# the first proof, on this very thread.
_proof_lock = threading.RLock()
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


def _pointer_field_of(context: ssl.SSLContext) -> int:
    # CPython's PySSLContext: PyObject_HEAD, then SSL_CTX *ctx. (PyPy has no
    # object.__basicsize__; it never gets here: prove_same_libssl refuses it.)
    return ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value or 0


_pointer_field = _pointer_field_of  # the one reader of CPython's layout


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


def _find_call(ssl_ptr: Any) -> driving.Call | None:
    state = state_of(lib.SSL_get_SSL_CTX(ssl_ptr))
    if state is None or not state.stdlib:
        return None
    connection = _recorded_owner(ssl_ptr)
    if connection is None or not issubclass(type(connection), _SURFACING):
        return _Unreported(connection)
    return driving.ConnectionCall(connection)


class _Unreported(driving.Call):
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


def _outcome(error: BaseException | None, exc: BaseException) -> BaseException | None:
    """After a failed call: what to raise instead of ``exc``, if anything.

    ``error`` is what the callback stored on the connection, popped by the
    caller in its argument list (so a KeyboardInterrupt from a signal handler
    run as this function is entered cannot leave it behind). Only an
    ``SSLError`` can be the failure the callback caused; anything else (a
    KeyboardInterrupt raised on the way out, a user subclass's own exception)
    supersedes it, and it is dropped: it must never surface from a later,
    unrelated failure. A suspension raises ``SSLWantX509Lookup``.
    """
    if not isinstance(exc, ssl.SSLError):
        return None
    if error is None and exc.errno == ssl.SSL_ERROR_WANT_X509_LOOKUP:
        raise SSLWantX509Lookup() from None
    return error


def _reraise(error: BaseException) -> NoReturn:
    drain_error_queue()
    try:
        raise error  # outside any except block: the user's exception unchanged
    finally:
        del error


# Only a plain SSLError (want X509 lookup, or a failure) can carry the
# callback's outcome; these are passed on untouched.
_ROUTINE = (ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _surfacing(cls: type, name: str) -> Callable[..., Any]:
    """``cls``'s override of ``name``: the base's method, its outcome surfaced.

    A call that succeeds pays one frame and a try; nothing is recorded.
    """

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:  # gevent: send(..., timeout=)
        try:
            return getattr(super(cls, self), name)(*args, **kwargs)
        except _ROUTINE:
            raise
        except BaseException as exc:
            error = _outcome(self.__dict__.pop("_ccb_error", None), exc)
            if error is None:
                raise
        _reraise(error)

    method.__name__ = method.__qualname__ = name
    return method


class _Driven:
    """Entry points that can run the callback, wrapped so its outcome surfaces
    (below). ``unwrap`` is one though OpenSSL 3.0 ignores a certificate request
    that arrives after close_notify was sent (tested): the wrapper costs a
    frame per shutdown, and would carry the outcome if that ever changed."""

    _sslobj: Any


for _name in ("do_handshake", "read", "write", "unwrap"):
    setattr(_Driven, _name, _surfacing(_Driven, _name))


_creating = threading.local()


class _DrivenSocket(_Driven):
    def do_handshake(self, *args: Any) -> None:
        depth = getattr(_creating, "depth", 0)
        if not depth:
            return super().do_handshake(*args)  # type: ignore[misc,no-any-return]
        # Inside wrap_socket(). A handshake that the callback drives from in
        # here (and that is refused) is not wrap_socket's: it must not close
        # the socket that the outer handshake is still using.
        _creating.depth = 0
        try:
            super().do_handshake(*args)  # type: ignore[misc]
        except BaseException as exc:
            # wrap_socket() closes its new socket when the handshake raises
            # OSError or ValueError; close it for a callback's exception too,
            # or nobody could (the caller never gets the socket).
            if not isinstance(exc, (OSError, ValueError)):
                self.close()  # type: ignore[attr-defined]
            raise
        finally:
            _creating.depth = depth

    @classmethod
    def _create(cls, *args: Any, **kwargs: Any) -> Any:
        _creating.depth = getattr(_creating, "depth", 0) + 1
        try:
            return super()._create(*args, **kwargs)  # type: ignore[misc]
        finally:
            _creating.depth -= 1


_DrivenSocket.send = _surfacing(_DrivenSocket, "send")  # type: ignore[attr-defined]  # bypasses write


class CCBSSLSocket(_DrivenSocket, ssl.SSLSocket):
    """``ssl.SSLSocket`` whose handshakes report the callback's outcome."""


class CCBSSLObject(ssl.SSLObject):
    """``ssl.SSLObject`` whose handshakes report the callback's outcome.

    The methods are ``ssl.SSLObject``'s own bodies (the same in CPython 3.9
    to 3.13) inside a try, not a call to them: a memory-BIO handshake, as
    asyncio drives it, calls these several times, and an extra frame on
    each (with an SSLWantReadError passing through it) was measured at
    0.5% of a handshake. A user's own subclass gets ``_Driven`` instead.
    """

    _sslobj: Any

    def do_handshake(self) -> None:
        try:
            return self._sslobj.do_handshake()  # type: ignore[no-any-return]
        except _ROUTINE:
            raise
        except BaseException as exc:
            error = _outcome(self.__dict__.pop("_ccb_error", None), exc)
            if error is None:
                raise
        _reraise(error)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        try:
            if buffer is not None:
                return self._sslobj.read(len, buffer)
            return self._sslobj.read(len)
        except _ROUTINE:
            raise
        except BaseException as exc:
            error = _outcome(self.__dict__.pop("_ccb_error", None), exc)
            if error is None:
                raise
        _reraise(error)

    def write(self, data: Any) -> int:
        try:
            return self._sslobj.write(data)  # type: ignore[no-any-return]
        except _ROUTINE:
            raise
        except BaseException as exc:
            error = _outcome(self.__dict__.pop("_ccb_error", None), exc)
            if error is None:
                raise
        _reraise(error)

    def unwrap(self) -> Any:
        try:
            return self._sslobj.shutdown()
        except _ROUTINE:
            raise
        except BaseException as exc:
            error = _outcome(self.__dict__.pop("_ccb_error", None), exc)
            if error is None:
                raise
        _reraise(error)


_SURFACING = (_Driven, CCBSSLObject)  # the classes whose calls re-raise a stored exception

# base -> weakref(derived): the derived class refers to its base, so a strong
# value would keep the key alive; the contexts that use it keep it alive.
_derived: weakref.WeakKeyDictionary[type, weakref.ref[type]] = weakref.WeakKeyDictionary()


def _derive(base: type, ours: type, mixin: type) -> type:
    # Keep a user's own sslsocket_class/sslobject_class, with ours on top.
    if issubclass(base, _SURFACING):
        return base
    if base in (ssl.SSLSocket, ssl.SSLObject):
        return ours
    ref = _derived.get(base)
    cls = None if ref is None else ref()
    if cls is None:
        cls = type(f"CCB{base.__name__}", (mixin, base), {})
        _derived[base] = weakref.ref(cls)
    return cls


def adopt(context: ssl.SSLContext, pointer: Any) -> None:
    """Make the context's connections surface callback outcomes."""
    ensure_state(pointer).stdlib = True
    driving.add_finder(_find_call)
    _shadow_wrappers(context)
    context.sslsocket_class = _derive(context.sslsocket_class, CCBSSLSocket, _DrivenSocket)
    context.sslobject_class = _derive(context.sslobject_class, CCBSSLObject, _Driven)
