"""The trampoline: one static C ``client_cert_cb`` for every context, and its
Python half.

OpenSSL calls ``openssl_ccb_client_cert_cb`` (C, in src/openssl_ccb.c), which
finds the context's ``ContextState`` in the context's ex_data slot and calls
``openssl_ccb_dispatch`` (cffi's ``extern "Python+C"``, never ``ffi.callback``) with
it. ``install``/``installed`` set and read what a context runs.

A ``ccb.Wallet`` is chosen in C first, without the GIL (``choice``). A Python
callable's ``Credential`` is handed over by C after Python has returned, from
references paid in advance (``Prepaid``), so that the callable's success path
costs one entry into Python and no call back into C: each such call releases
the GIL and, on a busy process, waits to take it back.

Swapping is atomic for a concurrent handshake: it sees the old or the new
callback, never neither (a handshake that entered the trampoline just as a C
pointer replaced the Python callable is forwarded to the pointer).
"""

from __future__ import annotations

from typing import Any

from .._binding import CLIENT_CERT_CB, TRAMPOLINE, ffi, lib
from ..credential import Credential
from ..errors import Error, error_from_queue
from ..foreign import ForeignCallback
from ..request import CertificateRequest
from ..selection import Wallet
from . import channel, choice
from .dispatch import CODES, SEND_NONE, answer, refusal
from .state import Finder, ensure_state, holder_of, state_of

# A request finds where its callback reports through the channel; set here so
# that the request, a value, imports no core.
CertificateRequest._locate = staticmethod(channel.call_for)


def install(pointer: Any, callback: Any, owner: Any = None, finder: Finder | None = None) -> None:
    """Set ``callback`` on an ``SSL_CTX *`` of our own libssl.

    ``owner``: the Python object that owns the context (an ``ssl.SSLContext``
    or pyOpenSSL ``Context``), which then keeps the callable; None for a bare
    ``SSL_CTX *``. ``finder``: the world's way to find a connection object
    (see ``channel.call_for``).
    """
    if type(callback) is not Wallet:
        # Before the callable is replaced, so that a handshake meanwhile sees
        # the old Wallet or the new callable, never a Wallet that is gone.
        choice.set_slot(pointer, ffi.NULL)
    if callback is None:
        state = state_of(pointer)
        if state is not None:
            state.forward = None
            holder = state.holder()
            if holder is not None:
                holder.callback = None
        lib.SSL_CTX_set_client_cert_cb(pointer, ffi.NULL)
        return
    if isinstance(callback, ffi.CData) and (
        ffi.typeof(callback) is not CLIENT_CERT_CB or callback == ffi.NULL
    ):
        raise TypeError(
            "a C callback must be a non-NULL int (*)(SSL *, X509 **, EVP_PKEY **), "
            f"got {ffi.typeof(callback).cname}"
        )
    state = ensure_state(pointer)
    if finder is not None:
        state.finder = finder
    if isinstance(callback, ffi.CData):
        state.pointers[int(ffi.cast("uintptr_t", callback))] = callback
        state.forward = callback
        lib.SSL_CTX_set_client_cert_cb(pointer, callback)
        holder_of(state, owner).callback = None
        return
    holder_of(state, owner).callback = callback
    state.forward = None
    lib.SSL_CTX_set_client_cert_cb(pointer, TRAMPOLINE)
    if type(callback) is Wallet:
        choice.set_slot(pointer, choice.slot_of(callback))


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


class Prepaid:
    """References to a Credential's certificate, key and chain that C hands over
    after Python returns (src/openssl_ccb.c says how they are counted)."""

    __slots__ = ("pointer", "tokens")
    BATCH = 32

    def __init__(self, credential: Credential) -> None:
        pointer = lib.openssl_ccb_prepaid_new(
            credential._x509, credential._key, credential._chain_arg, 1 + self.BATCH
        )
        if pointer == ffi.NULL:
            raise error_from_queue("could not hand the certificate over to the connection")
        self.pointer = pointer
        # One per answer paid for; list.pop is atomic, so two threads never take one.
        self.tokens = [None] * self.BATCH

    def take(self) -> Any:
        """The pointer, with one answer's references, for C to hand over."""
        try:
            self.tokens.pop()
        except IndexError:
            lib.openssl_ccb_prepaid_add(self.pointer, self.BATCH)  # one is this answer's
            self.tokens.extend([None] * (self.BATCH - 1))
        return self.pointer

    def __del__(self, _release: Any = lib.openssl_ccb_prepaid_release) -> None:
        # The Credential's reference and the answers not taken; those taken are C's.
        _release(self.pointer, 1 + len(self.tokens))


def prepaid(credential: Credential) -> Prepaid:
    kept = credential._prepaid
    if kept is None:  # two threads may both make one: each counts its own
        kept = credential._prepaid = Prepaid(credential)
    return kept  # type: ignore[no-any-return]


# Bound once: attribute lookups inside every handshake are measurable.
_new = object.__new__
_from_handle = ffi.from_handle
_SEND, _NONE, _SUSPEND, _FAIL = CODES["client_cert_cb"]
_SEND_PREPAID = lib.OPENSSL_CCB_SEND_PREPAID


@ffi.def_extern(error=_FAIL)  # type: ignore[untyped-decorator]
def openssl_ccb_dispatch(handle: Any, ssl: Any, attempt: int, call: Any) -> int:
    # error=_FAIL: if anything escapes (only when no driver is there to take
    # it), cffi reports it as unraisable and the handshake stays suspended
    # rather than going on without a certificate.
    # The success path does the least it can, and calls nothing in C: the
    # channel is looked up only when something went wrong (or the callable
    # asks for .connection), the request reads what C read for it (call),
    # and C hands a Credential over once this returns (Prepaid).
    try:
        if attempt < 1 or not handle:
            raise refusal(attempt)
        state = _from_handle(handle)
        holder = state.holder()
        if holder is None:
            raise Error("the Python object of the context this callback was set on is gone")
        callback = holder.callback
        if callback is None:  # replaced or cleared between OpenSSL's check and now
            forward = state.forward
            return _NONE if forward is None else int(lib.openssl_ccb_forward(ssl, forward))
        request = _new(CertificateRequest)  # CertificateRequest(ssl, attempt), frameless
        request._ssl = ssl
        request._facts = call
        request.attempt = attempt
        try:
            outcome = answer(callback, request)
        finally:
            request._ssl = request._facts = None
        if type(outcome) is not Credential:
            return _NONE if outcome == SEND_NONE else _SUSPEND
        kept = outcome._prepaid
        call.answer = (prepaid(outcome) if kept is None else kept).take()
        return _SEND_PREPAID
    except BaseException as exc:
        driver = channel.call_for(ssl)
        if driver is None:
            raise
        driver.fail(exc)
        return _FAIL
