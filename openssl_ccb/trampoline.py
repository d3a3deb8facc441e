"""The trampoline, and the lifetime rule.

OpenSSL calls one static C function, ``openssl_ccb_client_cert_cb``, for
every context. It finds the context's ``ContextState`` in the context's own
ex_data slot and calls ``openssl_ccb_dispatch`` (``extern "Python"``, never
``ffi.callback``) with it.

Lifetime:

* A context's state is attached (atomically, in C) the first time a
  callback is set on it, as an ``ffi.new_handle`` in the context's ex_data,
  and kept in ``_live`` until OpenSSL frees the context, whose ex_data free
  hook calls ``openssl_ccb_release``. The state is never replaced while the
  context lives, so a handshake on another thread never sees a freed handle;
  a new context at a reused address starts with an empty slot and inherits
  nothing.
* The callable is not held by the state but by a ``_Holder`` that the
  context's Python object keeps in its ``__dict__`` (``ssl.SSLContext``,
  pyOpenSSL ``Context``): a callable that refers back to its own context
  (``set_client_cert_cb(self.ctx, self.choose)``) is then an ordinary cycle
  that the garbage collector can free. The state sees the holder through a
  weak reference. A bare ``SSL_CTX *`` has no such object: its state holds
  the holder itself, until the context is freed.
* Every C function pointer installed on a context is kept until the context
  is freed: OpenSSL gives no way to know that no handshake is inside one.
* Swapping is atomic for a concurrent handshake: it sees the old or the new
  callback, never neither (a handshake that entered the trampoline just as
  a C pointer replaced the Python callable is forwarded to the pointer).
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

from . import driving
from ._binding import CLIENT_CERT_CB, TRAMPOLINE, ffi, lib
from .credential import Credential, by_objects
from .errors import Error, WantX509Lookup, error_from_queue
from .foreign import ForeignCallback
from .request import CertificateRequest
from .return_codes import SUSPEND, interpret


class _Holder:
    """The callable set on one context, where the garbage collector can see it."""

    __slots__ = ("__weakref__", "callback")

    def __init__(self) -> None:
        self.callback: Callable[[CertificateRequest], Any] | None = None


_NO_HOLDER = _Holder()  # what a state sees before a callable is first bound
_OWNER_KEY = "_openssl_ccb_holder"


class ContextState:
    """What openssl-ccb keeps for one ``SSL_CTX``, as long as it lives."""

    __slots__ = ("__weakref__", "forward", "handle", "holder", "keep", "pointers", "stdlib")

    def __init__(self) -> None:
        self.stdlib = False  # an ssl.SSLContext's: its SSLs' app data is _ssl's object
        self.holder: Callable[[], _Holder | None] = weakref.ref(_NO_HOLDER)
        self.keep: _Holder | None = None  # the holder, when no Python object owns it
        self.forward: Any = None  # the C function pointer now installed, if any
        self.pointers: dict[int, Any] = {}  # every C pointer installed, by address
        self.handle: Any = None


_live: dict[int, Any] = {}


def state_of(ctx: Any) -> ContextState | None:
    handle = lib.openssl_ccb_get_state(ctx)
    if handle == ffi.NULL:
        return None
    state: ContextState = ffi.from_handle(handle)
    return state


def ensure_state(ctx: Any) -> ContextState:
    """The context's state, attached now if it has none.

    No Python lock: the attach is atomic in C, so threads, a garbage
    collector finalizer setting a callback, and fork() cannot deadlock here.
    """
    state = state_of(ctx)
    if state is not None:
        return state
    state = ContextState()
    handle = state.handle = ffi.new_handle(state)
    key = int(ffi.cast("uintptr_t", handle))
    _live[key] = handle  # before C can see it, so a release always finds it
    attached = lib.openssl_ccb_attach_state(ctx, handle)
    if attached == handle:
        return state
    del _live[key]
    if attached == ffi.NULL:
        raise error_from_queue("could not attach openssl-ccb state to the SSL_CTX")
    winner: ContextState = ffi.from_handle(attached)  # another thread was first
    return winner


def _holder_of(state: ContextState, owner: Any) -> _Holder:
    holder = state.holder()
    if holder is not None and holder is not _NO_HOLDER:
        return holder
    holder = _Holder()
    slots = getattr(owner, "__dict__", None)
    if slots is not None:
        slots[_OWNER_KEY] = holder
    else:
        state.keep = holder
    state.holder = weakref.ref(holder)
    return holder


def install(pointer: Any, callback: Any, owner: Any = None) -> None:
    """Set ``callback`` on an ``SSL_CTX *`` of our own libssl.

    ``owner``: the Python object that owns the context (an ``ssl.SSLContext``
    or pyOpenSSL ``Context``), which then keeps the callable; None for a bare
    ``SSL_CTX *``.
    """
    if callback is None:
        state = state_of(pointer)
        if state is not None:
            state.forward = None
            holder = state.holder()
            if holder is not None:
                holder.callback = None
        lib.SSL_CTX_set_client_cert_cb(pointer, ffi.NULL)
        return
    if isinstance(callback, ffi.CData):
        if ffi.typeof(callback) is not CLIENT_CERT_CB or callback == ffi.NULL:
            raise TypeError(
                "a C callback must be a non-NULL int (*)(SSL *, X509 **, EVP_PKEY **), "
                f"got {ffi.typeof(callback).cname}"
            )
        state = ensure_state(pointer)
        state.pointers[int(ffi.cast("uintptr_t", callback))] = callback
        state.forward = callback
        lib.SSL_CTX_set_client_cert_cb(pointer, callback)
        _holder_of(state, owner).callback = None
        return
    state = ensure_state(pointer)
    _holder_of(state, owner).callback = callback
    state.forward = None
    lib.SSL_CTX_set_client_cert_cb(pointer, TRAMPOLINE)


def installed(pointer: Any) -> Any:
    """What is set on an ``SSL_CTX *`` of our own libssl (see get_client_cert_cb)."""
    current = lib.SSL_CTX_get_client_cert_cb(pointer)
    if current == ffi.NULL:
        return None
    state = state_of(pointer)
    if current == TRAMPOLINE:
        holder = None if state is None else state.holder()
        if holder is None or holder.callback is None:
            raise Error("the openssl-ccb trampoline is installed without a callback")
        return holder.callback
    if state is not None and state.forward is not None and state.forward == current:
        return state.forward
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
        holder = state.holder()
        if holder is not None:
            holder.callback = None
        state.keep = state.forward = None
        state.pointers.clear()


@ffi.def_extern(error=SUSPEND)  # type: ignore[untyped-decorator]
def openssl_ccb_dispatch(handle: Any, ssl: Any, attempt: int) -> int:
    # error=SUSPEND: if anything escapes (only when no driver is there to take
    # it), cffi reports it as unraisable and the handshake stays suspended
    # rather than going on without a certificate.
    # The success path does the least it can: the driver's Call is looked up
    # only when something went wrong (or the callable asks for .connection),
    # and a Credential is handed over without a method call.
    try:
        if attempt < 1 or not handle:
            raise _refusal(handle, attempt)
        state = _from_handle(handle)
        holder = state.holder()
        if holder is None:
            raise Error("the Python object of the context this callback was set on is gone")
        callback = holder.callback
        if callback is None:  # replaced or cleared between OpenSSL's check and now
            forward = state.forward
            return 0 if forward is None else int(lib.openssl_ccb_forward(ssl, forward))
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


def _refusal(handle: Any, attempt: int) -> Error:
    if attempt == REENTERED:
        return Error(
            "the client-certificate callback drove its own connection's handshake "
            "(do_handshake, read or write on the connection it is answering for): "
            "OpenSSL cannot re-enter a handshake from inside its callback; "
            "return the answer instead"
        )
    if attempt == NO_MEMORY:
        return Error("out of memory entering the client-certificate callback")
    return Error("the openssl-ccb trampoline was installed on a context it does not manage")


# What openssl_ccb_client_cert_cb passes as the attempt when it must not call
# the callback.
REENTERED = lib.OPENSSL_CCB_REENTERED
NO_MEMORY = lib.OPENSSL_CCB_NO_MEMORY
