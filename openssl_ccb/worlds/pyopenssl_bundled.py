"""pyOpenSSL's ``Context`` on the OpenSSL of pip's wheels (the bundled route).

The ``SSL_CTX *`` belongs to another OpenSSL and must never reach ours. The
callable is installed through cryptography's own binding as
``SSL_CTX_set_cert_cb`` (a static C function of ours, src/openssl_ccb.c) and
answers as ``client_cert_cb`` would, through the one dispatch
(``core.dispatch.answer``, the ``cert_cb`` row of its code table):

* not called when a certificate that OpenSSL would send is already set (its
  key too, and a key type the server's signature algorithms allow);
* None sends none, a suspension is SSL_ERROR_WANT_X509_LOOKUP, re-entry from
  the callback is refused;
* an exception stops the handshake with a fatal alert (cert_cb can,
  client_cert_cb cannot) and is stashed on the Connection (``core.channel``);
* a chain is refused: that binding has no per-connection chain, and the
  context's store would trust it for servers.

Only encoded bytes cross between the two OpenSSLs.

Lifetime: the same rule as ``core.state``, by another mechanism, since the
other OpenSSL's ex_data is not ours. The state lives in its Context's own
``__dict__``, exactly as long as the Context (a Connection keeps its
Context, and each SSL copied cert_cb's argument, the state's handle, when it
was made): a callable that refers to its Context is then a cycle the
collector sees. Clearing leaves the state in place, answering "no
certificate", until the Context goes.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any, Callable

from .._binding import ffi, lib
from ..core import channel
from ..core.dispatch import CODES, REENTERED, SUSPEND, answer, refusal
from ..credential import Credential, load_certificate
from ..errors import Error
from ..selection import schemes_for
from .pyopenssl import binding, patch_connection, refuse_if_used
from .pyopenssl_crossing import prepare, their_errors
from .pyopenssl_request import REQUEST_KEY, BundledCertificateRequest, offered_schemes


class _BundledState:
    """A callback on a context of pyOpenSSL's bundled OpenSSL."""

    __slots__ = (
        "__weakref__",
        "answering",
        "callback",
        "connections",
        "context",
        "handle",
        "ssl_type",
        "their_ffi",
        "their_lib",
    )

    def __init__(self, context: Any, callback: Any) -> None:
        self.context = weakref.ref(context)
        self.callback = callback
        self.answering: set[int] = set()  # SSLs whose callback is running: re-entry refused
        self.handle = ffi.new_handle(self)
        # What every handshake needs, looked up once (each lookup was measured).
        self.their_ffi, self.their_lib, _ = binding()
        self.ssl_type = self.their_ffi.typeof("SSL *")
        self.connections = _connection_lookup()


def _connection_lookup() -> Callable[[Any], Any]:
    """``SSL *`` -> weak reference to its pyOpenSSL Connection (``None`` if none).

    pyOpenSSL keeps them in a WeakValueDictionary, whose own ``get`` is a
    Python frame inside every handshake (measured): read its dict of weak
    references directly when it has the known shape.
    """
    mapping = sys.modules["OpenSSL.SSL"].Connection._reverse_mapping
    data = getattr(mapping, "data", None)
    if isinstance(mapping, weakref.WeakValueDictionary) and type(data) is dict:
        return data.get

    def lookup(ssl: Any) -> Any:  # another shape: the same answer, the slow way
        connection = mapping.get(ssl)
        return None if connection is None else weakref.ref(connection)

    return lookup


# The state lives in its Context's own __dict__, exactly as long as the
# Context (a Connection keeps its Context): a callable that refers to its
# Context is then a cycle the collector sees. _bundled only counts them.
_STATE = "_openssl_ccb_bundled"
_bundled: weakref.WeakSet[Any] = weakref.WeakSet()

_CERT_CB = lib.openssl_ccb_foreign_cert_cb_address()
_MSG_CB = lib.openssl_ccb_foreign_msg_cb_address()


def _refuse_if_connected(context: Any) -> None:
    """A Connection copied cert_cb when it was made: one set later never runs for it.

    pyOpenSSL 25 and later refuse through ``_used`` (``_refuse_if_used``);
    older ones have no such mark, so look for live Connections of the context.
    """
    mapping = sys.modules["OpenSSL.SSL"].Connection._reverse_mapping
    live = sum(
        1
        for connection in list(mapping.values())
        if getattr(connection, "_context", None) is context
    )
    if live:
        raise Error(
            f"this pyOpenSSL Context already has {live} live Connection(s), made before "
            "the callback: on pyOpenSSL's bundled OpenSSL each connection copies the "
            "callback when it is made, so theirs would never run; set the callback "
            "before creating Connections"
        )


def set_callback(context: Any, callback: Any) -> None:
    refuse_if_used(context)
    patch_connection()
    their_ffi, their_lib, _ = binding()
    if isinstance(callback, ffi.CData):
        raise Error(
            "a C callback built for openssl-ccb's libssl cannot run on pyOpenSSL's "
            "bundled OpenSSL; give a Python callable"
        )
    state = context.__dict__.get(_STATE)
    if callback is None:
        their_lib.SSL_CTX_set_cert_cb(context._context, their_ffi.NULL, their_ffi.NULL)
        their_lib.SSL_CTX_set_msg_callback(context._context, their_ffi.NULL)
        if state is not None:
            # Each SSL copied cert_cb and its argument when it was made: the
            # state stays (answering "no certificate") until the Context goes.
            state.callback = None
        return
    if state is None or state.callback is None:
        _refuse_if_connected(context)  # else each one has this state's cert_cb
    if state is None:
        state = context.__dict__[_STATE] = _BundledState(context, callback)
        _bundled.add(context)
    state.callback = callback
    arg = their_ffi.cast("void *", int(ffi.cast("uintptr_t", state.handle)))
    their_lib.SSL_CTX_set_cert_cb(
        context._context, their_ffi.cast("int (*)(SSL *, void *)", _CERT_CB), arg
    )
    # The server's signature algorithms, which that binding cannot read: from
    # the CertificateRequest itself (pyopenssl_request; see _would_send).
    msg_cb = their_ffi.typeof(their_lib.SSL_CTX_set_msg_callback).args[1]
    their_lib.SSL_CTX_set_msg_callback_arg(context._context, arg)
    their_lib.SSL_CTX_set_msg_callback(context._context, their_ffi.cast(msg_cb, _MSG_CB))


def get_callback(context: Any) -> Any:
    state = context.__dict__.get(_STATE)
    return None if state is None else state.callback


def _would_send(state: _BundledState, ssl: Any, cert: Any, connection: Any) -> bool:
    """Whether OpenSSL would send the certificate already set on ``ssl`` without
    asking client_cert_cb: its key is set, and it can sign with one of the
    server's signature algorithms (ssl3_check_client_certificate)."""
    if connection is None:
        return True  # nothing to tell by: the certificate is taken as set with its key
    their_ffi, their_lib = state.their_ffi, state.their_lib
    context = connection.get_context()._context
    # No SSL_get_privatekey in that binding: when the certificate is the
    # context's own (an SSL made from it now has the same one), ask the context.
    # One set on the Connection itself is taken as set with its key.
    probe = their_lib.SSL_new(context)
    if probe == their_ffi.NULL:
        raise Error("pyOpenSSL's OpenSSL could not make an SSL", their_errors())
    try:
        own = their_lib.SSL_get_certificate(probe) == cert
    finally:
        their_lib.SSL_free(probe)
    if own and their_lib.SSL_CTX_check_private_key(context) != 1:
        their_errors()  # "no private key assigned": the answer, not a failure
        return False
    received = connection.__dict__.get(REQUEST_KEY)
    offered = None if received is None else offered_schemes(*received)
    if not offered:
        return True  # none offered or read: OpenSSL's defaults accept any key
    x509 = connection.get_certificate().to_cryptography()
    from cryptography.hazmat.primitives.serialization import Encoding

    ours = load_certificate(x509.public_bytes(Encoding.DER))
    version = their_ffi.string(their_lib.SSL_get_version(ssl)).decode()
    return not schemes_for(lib.X509_get0_pubkey(ours), version).isdisjoint(offered)


_new = object.__new__
_SEND, _NONE, _SUSPEND, _FAIL = CODES["cert_cb"]
_ATTEMPTS = "_ccb_attempts"  # on the Connection: that OpenSSL's SSL ex_data is not ours


@ffi.def_extern(error=_FAIL)  # type: ignore[untyped-decorator]
def openssl_ccb_foreign_dispatch(handle: Any, address: int) -> int:
    # error=_FAIL: cert_cb's fatal alert, if anything escapes with nobody to take it.
    # Runs inside every handshake, so, as in the trampoline, nothing is looked
    # up or built that the success path does not need (each step measured).
    state: _BundledState = ffi.from_handle(handle)
    callback = state.callback
    their_lib = state.their_lib
    ssl = state.their_ffi.cast(state.ssl_type, address)
    if callback is None:
        return _NONE
    ref = state.connections(ssl)
    connection = None if ref is None else ref()
    if address in state.answering:
        # The callback drove its own connection's handshake: refused as the
        # other worlds refuse it, by a suspension that raises ccb.Error there.
        if connection is None:
            return _FAIL
        channel.stash(connection, refusal(REENTERED))
        return _SUSPEND
    try:
        # client_cert_cb runs unless a certificate that OpenSSL would send is
        # set; so does this (and a server, with its own certificate, is not asked).
        cert = their_lib.SSL_get_certificate(ssl)
        if cert != state.their_ffi.NULL and _would_send(state, ssl, cert, connection):
            return _SEND
        attempt = 1 if connection is None else connection.__dict__.get(_ATTEMPTS, 0) + 1
        request = _new(BundledCertificateRequest)  # no __init__ frame
        request._ssl = ssl
        request.attempt = attempt
        request._connection = connection
        state.answering.add(address)
        try:
            outcome = answer(callback, request)
        finally:
            request._ssl = None
            state.answering.discard(address)
        if type(outcome) is not Credential:
            suspended = outcome == SUSPEND
            if connection is not None and (attempt > 1 or suspended):
                connection.__dict__[_ATTEMPTS] = attempt if suspended else 0
            return _SUSPEND if suspended else _NONE
        if attempt > 1 and connection is not None:
            connection.__dict__[_ATTEMPTS] = 0
        foreign = outcome._foreign or prepare(outcome)  # parsed there once; never a chain
        if (
            their_lib.SSL_use_certificate(ssl, foreign[0]) != 1
            or their_lib.SSL_use_PrivateKey(ssl, foreign[1]) != 1
        ):
            # The security level, for one: OpenSSL's reason says which.
            raise Error("pyOpenSSL's OpenSSL refused the certificate or key", their_errors())
        return _SEND
    except BaseException as exc:
        if connection is None:
            raise
        channel.stash(connection, exc)
        return _FAIL
