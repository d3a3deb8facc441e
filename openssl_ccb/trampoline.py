"""The trampoline, and the lifetime rule.

OpenSSL calls one static C function, ``openssl_ccb_client_cert_cb``, for
every context. It finds the context's ``ContextState`` in the context's own
ex_data slot and calls ``openssl_ccb_dispatch`` (``extern "Python"``, never
``ffi.callback``) with it.

Lifetime: a context's state is created the first time a Python callback is
set on it and stored, as an ``ffi.new_handle``, in the context's ex_data.
The handle is kept in ``_live`` until OpenSSL frees the context, whose
ex_data free hook calls ``openssl_ccb_release``: the callable then loses its
last reference from us. The state is never replaced while the context lives
(setting again only swaps ``callback``), so a handshake running on another
thread never sees a freed handle; a new context at a reused address starts
with an empty slot, so it never inherits an old callback.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from . import driving
from ._binding import CLIENT_CERT_CB, TRAMPOLINE, ffi, lib
from .credential import Credential, by_objects
from .errors import Error, WantX509Lookup, error_from_queue
from .foreign import ForeignCallback
from .request import CertificateRequest
from .return_codes import SUSPEND, interpret


class ContextState:
    """What openssl-ccb keeps for one ``SSL_CTX``."""

    __slots__ = ("__weakref__", "callback", "handle", "pointer", "stdlib")

    def __init__(self) -> None:
        self.stdlib = False  # an ssl.SSLContext's: its SSLs' app data is _ssl's object
        self.callback: Callable[[CertificateRequest], Any] | None = None
        self.pointer: Any = None  # a C function pointer set through us, as given
        self.handle: Any = None


_live: dict[int, Any] = {}
_live_lock = threading.Lock()


def state_of(ctx: Any) -> ContextState | None:
    handle = lib.openssl_ccb_get_state(ctx)
    if handle == ffi.NULL:
        return None
    state: ContextState = ffi.from_handle(handle)
    return state


def ensure_state(ctx: Any) -> ContextState:
    with _live_lock:  # two threads must not both attach a state
        state = state_of(ctx)
        if state is not None:
            return state
        state = ContextState()
        handle = ffi.new_handle(state)
        if lib.openssl_ccb_set_state(ctx, handle) != 1:
            raise error_from_queue("could not attach openssl-ccb state to the SSL_CTX")
        state.handle = handle
        _live[int(ffi.cast("uintptr_t", handle))] = handle
        return state


def install(pointer: Any, callback: Any) -> None:
    """Set ``callback`` on an ``SSL_CTX *`` of our own libssl."""
    if callback is None:
        lib.SSL_CTX_set_client_cert_cb(pointer, ffi.NULL)
        state = state_of(pointer)
        if state is not None:
            state.callback = state.pointer = None
        return
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
    state = ensure_state(pointer)
    state.callback, state.pointer = callback, None
    lib.SSL_CTX_set_client_cert_cb(pointer, TRAMPOLINE)


def installed(pointer: Any) -> Any:
    """What is set on an ``SSL_CTX *`` of our own libssl (see get_client_cert_cb)."""
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


# Bound once: attribute lookups inside every handshake are measurable.
_new = object.__new__
_from_handle = ffi.from_handle
_hand_over = lib.openssl_ccb_hand_over


def live_contexts() -> int:
    """How many contexts openssl-ccb currently keeps state for."""
    return len(_live)


@ffi.def_extern()  # type: ignore[untyped-decorator]
def openssl_ccb_release(handle: Any, _live: dict[int, Any] = _live, _ffi: Any = ffi) -> None:
    # Called by SSL_CTX_free, possibly late in interpreter shutdown when module
    # globals are gone: touch nothing but the default arguments.
    kept = _live.pop(int(_ffi.cast("uintptr_t", handle)), None)
    if kept is not None:
        state = _ffi.from_handle(kept)
        state.callback = state.pointer = None


@ffi.def_extern(error=SUSPEND)  # type: ignore[untyped-decorator]
def openssl_ccb_dispatch(handle: Any, ssl: Any, attempt: int) -> int:
    # error=SUSPEND: if anything escapes (only when no driver is there to take
    # it), cffi reports it as unraisable and the handshake stays suspended
    # rather than going on without a certificate.
    # The success path does the least it can: the driver's Call is looked up
    # only when something went wrong (or the callable asks for .connection),
    # and a Credential is handed over without a method call.
    try:
        if not handle:
            raise Error("the openssl-ccb trampoline was installed on a context it does not manage")
        callback = _from_handle(handle).callback
        if callback is None:  # cleared between OpenSSL's check and now
            return 0
        request = _new(CertificateRequest)  # CertificateRequest(ssl, attempt), frameless
        request._ssl = ssl
        request.attempt = attempt
        try:
            result = callback(request)
        finally:
            request._ssl = None
        if result is None:
            return 0
        if type(result) is not Credential:
            # The same (cert, key) objects as before: coerce()'s first lookup,
            # inlined, as two calls fewer inside every handshake measured.
            pinned = (
                by_objects.get((id(result[0]), id(result[1])))
                if type(result) is tuple and len(result) == 2
                else None
            )
            if pinned is not None:
                result = pinned[2]
            else:
                result = interpret(result)
                if isinstance(result, int):
                    return result
        # C sets the chain and takes OpenSSL's new references while the
        # Credential is certainly alive.
        if _hand_over(ssl, result._x509, result._key, result._chain_arg) != 1:
            raise error_from_queue("could not hand the certificate over to the connection")
        return 1
    except WantX509Lookup:
        return SUSPEND
    except BaseException as exc:
        call = driving.call_for(ssl)
        if call is None:
            raise
        call.fail(exc)
        return SUSPEND
