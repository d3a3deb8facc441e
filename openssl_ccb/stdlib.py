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
import ctypes
import platform
import ssl
import threading
from typing import Any, NoReturn

from . import driving
from ._binding import ffi, lib
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
    """None if the module at ``path`` (None: the program) runs on our libssl."""
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


def ssl_ctx_of(context: ssl.SSLContext) -> Any:
    """The ``SSL_CTX *`` behind an ``ssl.SSLContext``, once proven."""
    import _ssl

    if not isinstance(context, _ssl._SSLContext):
        raise TypeError(f"expected an ssl.SSLContext, got {type(context).__name__}")
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


# Nothing is recorded per call: a call that succeeds pays one frame and a
# try. Only a failing callback looks for its connection, through its SSL's
# app data, which CPython's _ssl sets to the connection's _ssl._SSLSocket
# (checked by type before it is used), whose owner is the connection.
# CPython's type of _ssl's connection object (PyPy's _ssl has none: refused anyway).
_SSLSOCKET_TYPE = id(getattr(_ssl_module, "_SSLSocket", None))


def _type_offset() -> int:
    """Where a PyObject keeps its ob_type: found on a live object, not assumed."""
    probe = _ConnectionProbe()
    for offset in range(0, object.__basicsize__, ctypes.sizeof(ctypes.c_void_p)):
        if ctypes.c_void_p.from_address(id(probe) + offset).value == id(_ConnectionProbe):
            return offset
    return -1  # unknown layout: connections are then never looked up this way


class _ConnectionProbe:
    pass


# Elsewhere than CPython id() is no address, and ssl.SSLContext is refused anyway.
_TYPE_OFFSET = _type_offset() if platform.python_implementation() == "CPython" else -1


def _find_call(ssl_ptr: Any) -> driving.Call | None:
    # Only an SSL of a context adopted here has _ssl's object as its app data.
    state = state_of(lib.SSL_get_SSL_CTX(ssl_ptr))
    if state is None or not state.stdlib:
        return None
    address = int(ffi.cast("uintptr_t", lib.SSL_get_app_data(ssl_ptr)))
    if not address or _TYPE_OFFSET < 0:
        return None
    if ctypes.c_void_p.from_address(address + _TYPE_OFFSET).value != _SSLSOCKET_TYPE:
        return None
    connection = ctypes.cast(address, ctypes.py_object).value.owner
    if not isinstance(connection, _SURFACING):
        # A class set on the context after set_client_cert_cb (not wrapped by
        # adopt): nothing would take a stored exception, so let it go to
        # sys.unraisablehook, with its traceback, instead of hiding it.
        return None
    return driving.ConnectionCall(connection)


def _stored(connection: Any, exc: ssl.SSLError) -> BaseException | None:
    """After a failed call: the callback's exception, if it left one; a suspension raises."""
    error: BaseException | None = connection.__dict__.pop("_ccb_error", None)
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


class _Driven:
    """Entry points that can run the callback, wrapped so its outcome surfaces.

    A call that succeeds pays one frame and a try; nothing is recorded.
    """

    _sslobj: Any

    def do_handshake(self, *args: Any) -> None:
        try:
            return super().do_handshake(*args)  # type: ignore[misc,no-any-return]
        except _ROUTINE:
            raise
        except ssl.SSLError as exc:
            error = _stored(self, exc)
            if error is None:
                raise
        _reraise(error)

    def read(self, *args: Any) -> Any:
        try:
            return super().read(*args)  # type: ignore[misc]
        except _ROUTINE:
            raise
        except ssl.SSLError as exc:
            error = _stored(self, exc)
            if error is None:
                raise
        _reraise(error)

    def write(self, *args: Any) -> Any:
        try:
            return super().write(*args)  # type: ignore[misc]
        except _ROUTINE:
            raise
        except ssl.SSLError as exc:
            error = _stored(self, exc)
            if error is None:
                raise
        _reraise(error)


_creating = threading.local()


class _DrivenSocket(_Driven):
    def send(self, *args: Any) -> Any:  # SSLSocket.send bypasses self.write
        try:
            return super().send(*args)  # type: ignore[misc]
        except _ROUTINE:
            raise
        except ssl.SSLError as exc:
            error = _stored(self, exc)
            if error is None:
                raise
        _reraise(error)

    def do_handshake(self, *args: Any) -> None:
        try:
            super().do_handshake(*args)
        except BaseException as exc:
            # wrap_socket() closes its new socket when the handshake raises
            # OSError or ValueError; close it for a callback's exception too,
            # or nobody could (the caller never gets the socket).
            if getattr(_creating, "depth", 0) and not isinstance(exc, (OSError, ValueError)):
                self.close()  # type: ignore[attr-defined]
            raise

    @classmethod
    def _create(cls, *args: Any, **kwargs: Any) -> Any:
        _creating.depth = getattr(_creating, "depth", 0) + 1
        try:
            return super()._create(*args, **kwargs)  # type: ignore[misc]
        finally:
            _creating.depth -= 1


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
        except ssl.SSLError as exc:
            error = _stored(self, exc)
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
        except ssl.SSLError as exc:
            error = _stored(self, exc)
            if error is None:
                raise
        _reraise(error)

    def write(self, data: Any) -> int:
        try:
            return self._sslobj.write(data)  # type: ignore[no-any-return]
        except _ROUTINE:
            raise
        except ssl.SSLError as exc:
            error = _stored(self, exc)
            if error is None:
                raise
        _reraise(error)


_SURFACING = (_Driven, CCBSSLObject)  # the classes whose calls re-raise a stored exception

_derived: dict[type, type] = {}


def _derive(base: type, ours: type, mixin: type) -> type:
    # Keep a user's own sslsocket_class/sslobject_class, with ours on top.
    if issubclass(base, _SURFACING):
        return base
    if base in (ssl.SSLSocket, ssl.SSLObject):
        return ours
    cls = _derived.get(base)
    if cls is None:
        cls = _derived[base] = type(f"CCB{base.__name__}", (mixin, base), {})
    return cls


def adopt(context: ssl.SSLContext, pointer: Any) -> None:
    """Make the context's connections surface callback outcomes."""
    ensure_state(pointer).stdlib = True
    driving.add_finder(_find_call)
    context.sslsocket_class = _derive(context.sslsocket_class, CCBSSLSocket, _DrivenSocket)
    context.sslobject_class = _derive(context.sslobject_class, CCBSSLObject, _Driven)
