"""What openssl-ccb keeps for one ``SSL_CTX``, and the lifetime rule.

* A context's state is attached (atomically, in C) the first time a
  callback is set on it, as an ``ffi.new_handle`` in the context's ex_data,
  and kept in ``_live`` until OpenSSL frees the context, whose ex_data free
  hook calls ``openssl_ccb_release``. The state is never replaced while the
  context lives, so a handshake on another thread never sees a freed handle;
  a new context at a reused address starts with an empty slot and inherits
  nothing.
* The callable is not held by the state but by a ``Holder`` that the
  context's Python object keeps in its ``__dict__`` (``ssl.SSLContext``,
  pyOpenSSL ``Context``): a callable that refers back to its own context
  (``set_client_cert_cb(self.ctx, self.choose)``) is then an ordinary cycle
  that the garbage collector can free. The state sees the holder through a
  weak reference. A bare ``SSL_CTX *`` has no such object: its state holds
  the holder itself, until the context is freed.
* Every C function pointer installed on a context is kept until the context
  is freed: OpenSSL gives no way to know that no handshake is inside one.

pyOpenSSL's bundled route keeps the same rule by another mechanism (its
``SSL_CTX`` belongs to another OpenSSL, whose ex_data we cannot use): see
``worlds/pyopenssl_bundled.py``.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Optional

from .._binding import ffi, lib
from ..errors import error_from_queue

# How a world finds the connection object of an SSL * nobody drives through
# ccb.do_handshake (see channel.call_for): set on the state by the world.
Finder = Callable[[Any], Optional[Any]]


class Holder:
    """The callable set on one context, where the garbage collector can see it."""

    __slots__ = ("__weakref__", "callback")

    def __init__(self) -> None:
        self.callback: Callable[[Any], Any] | None = None


_NO_HOLDER = Holder()  # what a state sees before a callable is first bound
_OWNER_KEY = "_openssl_ccb_holder"


class ContextState:
    """What openssl-ccb keeps for one ``SSL_CTX``, as long as it lives."""

    __slots__ = ("__weakref__", "finder", "forward", "holder", "keep", "pointers")

    def __init__(self) -> None:
        self.finder: Finder | None = None  # the world's way to find a connection
        self.holder: Callable[[], Holder | None] = weakref.ref(_NO_HOLDER)
        self.keep: Holder | None = None  # the holder, when no Python object owns it
        self.forward: Any = None  # the C function pointer now installed, if any
        self.pointers: dict[int, Any] = {}  # every C pointer installed, by address


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
    handle = ffi.new_handle(state)
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


def holder_of(state: ContextState, owner: Any) -> Holder:
    """The state's holder, made now (and given to ``owner`` to keep) if it has none."""
    holder = state.holder()
    if holder is not None and holder is not _NO_HOLDER:
        return holder
    holder = Holder()
    slots = getattr(owner, "__dict__", None)
    if slots is not None:
        slots[_OWNER_KEY] = holder
    else:
        state.keep = holder
    state.holder = weakref.ref(holder)
    return holder


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
        state.keep = state.forward = state.finder = None
        state.pointers.clear()
