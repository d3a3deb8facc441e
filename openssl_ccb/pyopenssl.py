"""pyOpenSSL's ``Context``, on whichever OpenSSL pyOpenSSL runs.

Two routes, chosen by proof (``libssl_proof``), never by guess:

* **same-libssl** (Debian's python3-openssl: cryptography links the system
  libssl): the context's ``SSL_CTX *`` is ours to touch, so the real
  ``client_cert_cb`` trampoline is installed on it, exactly as for a raw
  context.
* **bundled** (pip's wheels: cryptography carries its own OpenSSL): the
  ``SSL_CTX *`` must never reach our libssl. The trampoline is installed
  through cryptography's own binding as ``SSL_CTX_set_cert_cb`` and
  reproduces ``client_cert_cb``: not called when a certificate that OpenSSL
  would send is already set (its key too, and a key type the server's
  signature algorithms allow, read from the CertificateRequest by a C
  msg_callback), None sends none, suspension is SSL_ERROR_WANT_X509_LOOKUP,
  re-entry from the callback is refused. Only encoded bytes cross between
  the two OpenSSLs. An exception stops the handshake with a fatal alert
  (cert_cb can, client_cert_cb cannot). A chain is refused: that binding has
  no per-connection chain, and the context's store would trust it for servers.

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
from .credential import Credential, load_certificate
from .errors import Error, WantX509Lookup, drain_error_queue
from .libssl_proof import our_version, shares_our_libssl
from .request import SIGNATURE_SCHEMES, CertificateRequest, _name_string
from .return_codes import SEND_NONE, SUSPEND, interpret
from .selection import schemes_for
from .trampoline import REENTERED, _refusal, install, installed

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
    # the CertificateRequest itself (see _would_send).
    msg_cb = their_ffi.typeof(their_lib.SSL_CTX_set_msg_callback).args[1]
    their_lib.SSL_CTX_set_msg_callback_arg(context._context, arg)
    their_lib.SSL_CTX_set_msg_callback(context._context, their_ffi.cast(msg_cb, _MSG_CB))


class BundledCertificateRequest(CertificateRequest):
    """A CertificateRequest read through cryptography's binding; the server's
    signature algorithms, which that binding cannot read, from the message."""

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
        connection = self._connection
        received = None if connection is None else connection.__dict__.get(_REQUEST_KEY)
        return (None if received is None else _offered_schemes(*received)) or []

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
            raise Error("pyOpenSSL's OpenSSL could not parse the credential", _their_errors())
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


def _their_errors() -> list[tuple[str, str, str]]:
    """Read and empty the bundled OpenSSL's error queue, as ``Error.errors``."""
    their_ffi, their_lib, _ = _binding()
    errors: list[tuple[str, str, str]] = []
    while True:
        code = their_lib.ERR_get_error()
        if code == 0:
            return errors
        library = their_lib.ERR_lib_error_string(code)
        reason = their_lib.ERR_reason_error_string(code)
        library = "" if library == their_ffi.NULL else their_ffi.string(library).decode()
        reason = hex(code) if reason == their_ffi.NULL else their_ffi.string(reason).decode()
        errors.append((library, reason, f"{library}: {reason}" if library else reason))


# --- the server's signature algorithms, read from its CertificateRequest ----------

TLS1_2_VERSION = 0x0303
TLS1_3_VERSION = 0x0304
_REQUEST_KEY = "_ccb_certificate_request"  # in the Connection's __dict__: (message, version)


def _offered_schemes(message: bytes, version: int) -> list[str] | None:
    """The signature schemes a CertificateRequest message offers, IANA names in
    the server's order; None where it offers none (before TLS 1.2) or cannot be read (OpenSSL then
    refuses the message itself). Lengths are read byte by byte, not with
    int.from_bytes, which valgrind misreports on some CPython builds."""
    body = message[4:]  # after the type and the length
    if version == TLS1_3_VERSION:  # context<0..2^8-1>, extensions<2..2^16-1>
        context = _vector(body, 0, 1)
        extensions = None if context is None else _vector(body, context[1], 2)
        data = b"" if extensions is None else extensions[0]
        at = 0
        while at + 4 <= len(data):
            size = data[at + 2] << 8 | data[at + 3]
            if data[at] == 0 and data[at + 1] == 13:  # signature_algorithms
                found = _vector(data[at + 4 : at + 4 + size], 0, 2)
                return None if found is None else _scheme_names(found[0])
            at += 4 + size
        return None
    if version == TLS1_2_VERSION:  # certificate_types<1..2^8-1>, then the schemes
        types = _vector(body, 0, 1)
        found = None if types is None else _vector(body, types[1], 2)
        return None if found is None else _scheme_names(found[0])
    return None


def _vector(data: bytes, at: int, width: int) -> tuple[bytes, int] | None:
    """The TLS vector at ``at`` (a ``width``-byte length, then the bytes) and
    where it ends, or None when it runs past the data."""
    if at + width > len(data):
        return None
    size = data[at] if width == 1 else data[at] << 8 | data[at + 1]
    end = at + width + size
    return None if end > len(data) else (data[at + width : end], end)


def _scheme_names(codes: bytes) -> list[str]:
    pairs = (codes[i] << 8 | codes[i + 1] for i in range(0, len(codes) - 1, 2))
    return [SIGNATURE_SCHEMES.get(code, f"0x{code:04x}") for code in pairs]


@ffi.def_extern()  # type: ignore[untyped-decorator]
def openssl_ccb_foreign_certificate_request(
    handle: Any, address: int, version: int, message: Any, size: int
) -> None:
    # Only a CertificateRequest the peer sent reaches here (the C msg_callback
    # filters): kept on its Connection, as it came, until the next one. Read
    # only where a certificate is already set (_would_send): parsing it costs
    # more than everything else here (measured).
    state: _BundledState = ffi.from_handle(handle)
    ref = state.connections(state.their_ffi.cast(state.ssl_type, address))
    connection = None if ref is None else ref()
    if connection is not None:
        connection.__dict__[_REQUEST_KEY] = (bytes(ffi.buffer(message, size)), version)


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
        raise Error("pyOpenSSL's OpenSSL could not make an SSL", _their_errors())
    try:
        own = their_lib.SSL_get_certificate(probe) == cert
    finally:
        their_lib.SSL_free(probe)
    if own and their_lib.SSL_CTX_check_private_key(context) != 1:
        _their_errors()  # "no private key assigned": the answer, not a failure
        return False
    received = connection.__dict__.get(_REQUEST_KEY)
    offered = None if received is None else _offered_schemes(*received)
    if not offered:
        return True  # none offered or read: OpenSSL's defaults accept any key
    x509 = connection.get_certificate().to_cryptography()
    from cryptography.hazmat.primitives.serialization import Encoding

    ours = load_certificate(x509.public_bytes(Encoding.DER))
    version = their_ffi.string(their_lib.SSL_get_version(ssl)).decode()
    return not schemes_for(lib.X509_get0_pubkey(ours), version).isdisjoint(offered)


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
    if callback is None:
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
    try:
        # client_cert_cb runs unless a certificate that OpenSSL would send is
        # set; so does this (and a server, with its own certificate, is not asked).
        cert = their_lib.SSL_get_certificate(ssl)
        if cert != state.their_ffi.NULL and _would_send(state, ssl, cert, connection):
            return 1
        attempt = 1 if connection is None else connection.__dict__.get("_ccb_attempts", 0) + 1
        request = _new(BundledCertificateRequest)  # no __init__ frame
        request._ssl = ssl
        request.attempt = attempt
        request._connection = connection
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
            # The security level, for one: OpenSSL's reason says which.
            raise Error("pyOpenSSL's OpenSSL refused the certificate or key", _their_errors())
        return 1
    except BaseException as exc:
        if connection is None:
            raise
        store(connection, exc)
        return 0
