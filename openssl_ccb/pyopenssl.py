"""pyOpenSSL's ``Context``, on whichever OpenSSL pyOpenSSL runs.

Two routes, chosen by proof (``libssl_proof``), never by guess:

* **same-libssl** (Debian's python3-openssl: cryptography links the system
  libssl): the context's ``SSL_CTX *`` is ours to touch, so the real
  ``client_cert_cb`` trampoline is installed on it, exactly as for a raw
  context.
* **bundled** (pip's wheels: cryptography carries its own OpenSSL): the
  ``SSL_CTX *`` must never reach our libssl. The trampoline is installed
  through cryptography's own binding as ``SSL_CTX_set_cert_cb`` and
  reproduces ``client_cert_cb``: not called when a certificate is already
  set, None sends none, suspension is SSL_ERROR_WANT_X509_LOOKUP. Only
  encoded bytes cross between the two OpenSSLs. An exception stops the
  handshake with a fatal alert (cert_cb can, client_cert_cb cannot).

Either way pyOpenSSL raises ``WantX509LookupError`` for a suspension, and a
callback's exception is stored on its ``Connection`` and raised by
pyOpenSSL's ``_raise_ssl_error``, which every failing SSL call goes through.
"""

from __future__ import annotations

import functools
import sys
import threading
import weakref
from typing import Any, Callable

from . import driving
from ._binding import ffi, lib
from .credential import Credential
from .errors import Error, WantX509Lookup, drain_error_queue
from .libssl_proof import our_version, shares_our_libssl
from .request import CertificateRequest, _name_string
from .return_codes import SEND_NONE, SUSPEND, interpret
from .trampoline import REENTERED, _refusal, install, installed

SAME_LIBSSL = "same-libssl"
BUNDLED = "bundled"


def is_context(obj: object) -> bool:
    module = sys.modules.get("OpenSSL.SSL")  # never import pyOpenSSL ourselves
    # By the real type, never isinstance(), which believes a __class__ that a
    # Mock or a proxy reports: its pointer would then be read as a context.
    return module is not None and module.Context in type(obj).__mro__


@functools.cache
def _binding() -> tuple[Any, Any, str]:
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
    same, _ = shares_our_libssl(_binding()[2])
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


def _refuse_if_used(context: Any) -> None:
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
    their_ffi = _binding()[0]
    return ffi.cast("SSL_CTX *", int(their_ffi.cast("uintptr_t", context._context)))


def set_callback(context: Any, callback: Any) -> None:
    _refuse_if_used(context)
    _patch_connection()
    if route() == SAME_LIBSSL:
        driving.add_finder(_find_connection_call)
        install(ssl_ctx_of(context), callback, context)
    else:
        _set_bundled(context, callback)


def get_callback(context: Any) -> Any:
    if route() == SAME_LIBSSL:
        return installed(ssl_ctx_of(context))
    state = context.__dict__.get(_STATE)
    return None if state is None else state.callback


# --- where a callback's exception goes ------------------------------------------


def store(connection: Any, exc: BaseException) -> None:
    driving.ConnectionCall(connection).fail(exc)


def _connection_of(ssl_address: int) -> Any:
    their_ffi = _binding()[0]
    mapping = sys.modules["OpenSSL.SSL"].Connection._reverse_mapping  # no import per call
    return mapping.get(their_ffi.cast("SSL *", ssl_address))


def _find_connection_call(ssl: Any) -> driving.Call | None:
    connection = _connection_of(int(ffi.cast("uintptr_t", ssl)))
    return None if connection is None else driving.ConnectionCall(connection)


_patch_lock = threading.RLock()  # a finalizer may set a callback inside the patch


def _patch_connection() -> None:
    """Let Connection._raise_ssl_error raise what a callback stored first."""
    from OpenSSL.SSL import Connection

    with _patch_lock:
        original: Callable[..., Any] = Connection._raise_ssl_error
        if getattr(original, "_ccb_original", None) is not None:
            return

        @functools.wraps(original)
        def _raise_ssl_error(self: Any, ssl: Any, result: int) -> Any:
            exc = self.__dict__.pop("_ccb_error", None)
            if exc is not None:
                _binding()[1].ERR_clear_error()  # pyOpenSSL's queue: nobody reads it now
                drain_error_queue()
                raise exc
            return original(self, ssl, result)

        _raise_ssl_error._ccb_original = original  # type: ignore[attr-defined]
        Connection._raise_ssl_error = _raise_ssl_error  # type: ignore[method-assign]


# --- the bundled route -----------------------------------------------------------


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
        self.their_ffi, self.their_lib, _ = _binding()
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


def _set_bundled(context: Any, callback: Any) -> None:
    their_ffi, their_lib, _ = _binding()
    if isinstance(callback, ffi.CData):
        raise Error(
            "a C callback built for openssl-ccb's libssl cannot run on pyOpenSSL's "
            "bundled OpenSSL; give a Python callable"
        )
    state = context.__dict__.get(_STATE)
    if callback is None:
        their_lib.SSL_CTX_set_cert_cb(context._context, their_ffi.NULL, their_ffi.NULL)
        if state is not None:
            # Each SSL copied cert_cb and its argument when it was made: the
            # state stays (answering "no certificate") until the Context goes.
            state.callback = None
        return
    if state is None:
        state = context.__dict__[_STATE] = _BundledState(context, callback)
        _bundled.add(context)
    state.callback = callback
    their_lib.SSL_CTX_set_cert_cb(
        context._context,
        their_ffi.cast("int (*)(SSL *, void *)", _CERT_CB),
        their_ffi.cast("void *", int(ffi.cast("uintptr_t", state.handle))),
    )


class BundledCertificateRequest(CertificateRequest):
    """A CertificateRequest read through cryptography's binding.

    ``signature_algorithms`` is empty: that binding cannot read them.
    """

    __slots__ = ("_connection",)
    _connection: Any

    @property
    def connection(self) -> Any:
        """The pyOpenSSL ``Connection`` driving this handshake, or None."""
        self._their()  # raises: valid only during the call
        return self._connection

    def _their(self) -> tuple[Any, Any, Any]:
        their_ffi, their_lib, _ = _binding()
        return their_ffi, their_lib, self.ssl

    @property
    def acceptable_cas(self) -> list[bytes]:
        their_ffi, their_lib, ssl = self._their()
        stack = their_lib.SSL_get_client_CA_list(ssl)
        if stack == their_ffi.NULL:
            return []
        names = []
        for i in range(their_lib.sk_X509_NAME_num(stack)):
            name = their_lib.sk_X509_NAME_value(stack, i)
            size = their_lib.i2d_X509_NAME(name, their_ffi.NULL)
            buf = their_ffi.new("unsigned char[]", size)
            their_lib.i2d_X509_NAME(name, their_ffi.new("unsigned char **", buf))
            names.append(bytes(their_ffi.buffer(buf, size)))
        return names

    @property
    def acceptable_ca_names(self) -> list[str]:
        return [_name_string(der) for der in self.acceptable_cas]  # parsed here, from bytes

    @property
    def signature_algorithms(self) -> list[str]:
        self._their()
        return []

    @property
    def server_name(self) -> str | None:
        their_ffi, their_lib, ssl = self._their()
        name = their_lib.SSL_get_servername(ssl, their_lib.TLSEXT_NAMETYPE_host_name)
        return None if name == their_ffi.NULL else their_ffi.string(name).decode("ascii", "replace")

    @property
    def version(self) -> str:
        their_ffi, their_lib, ssl = self._their()
        return str(their_ffi.string(their_lib.SSL_get_version(ssl)).decode())

    @property
    def peer_certificate(self) -> bytes | None:
        self._their()
        connection = self.connection
        cert = None if connection is None else connection.get_peer_certificate()
        if cert is None:
            return None
        from cryptography.hazmat.primitives.serialization import Encoding

        return bytes(cert.to_cryptography().public_bytes(Encoding.DER))


def _foreign_objects(credential: Credential) -> tuple[Any, Any, list[Any], tuple[bytes, ...]]:
    """The credential parsed by the bundled OpenSSL, once (cached on it)."""
    cached = credential._foreign
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    their_ffi, their_lib, _ = _binding()

    def parse(der: bytes, d2i: Any, free: Any) -> Any:
        bio = their_ffi.gc(their_lib.BIO_new_mem_buf(der, len(der)), their_lib.BIO_free)
        obj = d2i(bio, their_ffi.NULL)
        if obj == their_ffi.NULL:
            their_lib.ERR_clear_error()
            raise Error("pyOpenSSL's OpenSSL could not parse the credential")
        return their_ffi.gc(obj, free)

    x509 = parse(credential.certificate, their_lib.d2i_X509_bio, their_lib.X509_free)
    key_der = credential._private_key_der()
    key = parse(key_der, their_lib.d2i_PrivateKey_bio, their_lib.EVP_PKEY_free)
    chain_der = tuple(credential.chain)
    chain = [parse(der, their_lib.d2i_X509_bio, their_lib.X509_free) for der in chain_der]
    credential._foreign = (x509, key, chain, chain_der)
    return credential._foreign  # type: ignore[no-any-return]


CHAIN_REFUSED = (
    "pyOpenSSL's bundled OpenSSL offers openssl-ccb no per-connection chain: the only "
    "place a chain could go there is the context's certificate store, which also "
    "verifies servers, so a chain would widen the servers this context trusts. "
    "Send the leaf alone and set the intermediates once with "
    "Context.add_extra_chain_cert() (sent with the leaf, never trusted), or use an "
    "ssl.SSLContext, or pyOpenSSL built on the system OpenSSL (the same-libssl route)"
)


def _prepare_bundled(state: _BundledState, credential: Credential) -> tuple[Any, Any]:
    """The credential's certificate and key in the bundled OpenSSL; a chain is refused."""
    x509, key, chain, _ = credential._foreign or _foreign_objects(credential)
    if chain:
        raise Error(CHAIN_REFUSED)
    return x509, key


def _their_reasons(their_lib: Any, their_ffi: Any) -> str:
    """The bundled OpenSSL's error queue as reasons, drained."""
    reasons: list[str] = []
    while True:
        code = their_lib.ERR_get_error()
        if code == 0:
            return "; ".join(reasons) or "no reason given"
        text = their_lib.ERR_reason_error_string(code)
        reasons.append(their_ffi.string(text).decode() if text != their_ffi.NULL else hex(code))


_new = object.__new__


@ffi.def_extern(error=0)  # type: ignore[untyped-decorator]
def openssl_ccb_foreign_dispatch(handle: Any, address: int) -> int:
    # error=0: cert_cb's fatal alert, if anything escapes with nobody to take it.
    # Runs inside every handshake, so, as in the trampoline, nothing is looked
    # up or built that the success path does not need (each step measured).
    state: _BundledState = ffi.from_handle(handle)
    callback = state.callback
    their_lib = state.their_lib
    ssl = state.their_ffi.cast(state.ssl_type, address)
    # client_cert_cb runs only when no certificate is set; so does this (and a
    # server, which has its own certificate, is never asked).
    if callback is None or their_lib.SSL_get_certificate(ssl) != state.their_ffi.NULL:
        return 1
    ref = state.connections(ssl)
    connection = None if ref is None else ref()
    if address in state.answering:
        # The callback drove its own connection's handshake: refused as the
        # other worlds refuse it, by a suspension that raises ccb.Error there.
        if connection is None:
            return 0
        store(connection, _refusal(None, REENTERED))
        return -1
    attempt = 1 if connection is None else connection.__dict__.get("_ccb_attempts", 0) + 1
    request = _new(BundledCertificateRequest)  # no __init__ frame
    request._ssl = ssl
    request.attempt = attempt
    request._connection = connection
    try:
        state.answering.add(address)
        try:
            result = callback(request)
            outcome = result if type(result) is Credential else interpret(result)
        except WantX509Lookup:
            outcome = SUSPEND
        finally:
            request._ssl = None
            state.answering.discard(address)
        if attempt > 1 or outcome is SUSPEND:
            if connection is not None:
                connection._ccb_attempts = attempt if outcome is SUSPEND else 0
            if outcome is SUSPEND:
                return -1
        if outcome is SEND_NONE:
            return 1  # for cert_cb, 1 with nothing set means: send no certificate
        foreign = outcome._foreign  # type: ignore[union-attr]  # a Credential by now
        if foreign is None or foreign[2]:  # not parsed by that OpenSSL yet, or a chain
            foreign = _prepare_bundled(state, outcome)  # type: ignore[arg-type]
        if (
            their_lib.SSL_use_certificate(ssl, foreign[0]) != 1
            or their_lib.SSL_use_PrivateKey(ssl, foreign[1]) != 1
        ):
            reasons = _their_reasons(their_lib, state.their_ffi)
            raise Error(f"pyOpenSSL's OpenSSL refused the certificate or key: {reasons}")
        return 1
    except BaseException as exc:
        if connection is None:
            raise
        store(connection, exc)
        return 0
