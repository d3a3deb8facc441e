"""The server's CertificateRequest on pyOpenSSL's bundled route.

That binding can read the acceptable CAs, the server name and the version,
but not the server's signature algorithms (no ``SSL_get_sigalgs``): a C
``msg_callback`` (src/openssl_ccb.c) hands Python only a CertificateRequest the
peer sent, which is kept on its Connection as it came and parsed only when
asked for.
"""

from __future__ import annotations

from typing import Any

from .._binding import ffi
from ..credential import _name_string
from ..request import SIGNATURE_SCHEMES, CertificateRequest, certificate_type_names
from .pyopenssl import binding

TLS1_2_VERSION = 0x0303
TLS1_3_VERSION = 0x0304
REQUEST_KEY = "_ccb_certificate_request"  # in the Connection's __dict__: (message, version)


def offered_schemes(message: bytes, version: int) -> list[str] | None:
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
    state = ffi.from_handle(handle)  # pyopenssl_bundled's _BundledState
    ref = state.connections(state.their_ffi.cast(state.ssl_type, address))
    connection = None if ref is None else ref()
    if connection is not None:
        connection.__dict__[REQUEST_KEY] = (bytes(ffi.buffer(message, size)), version)


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
        their_ffi, their_lib, _ = binding()
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

    def _openssl_order(self) -> list[str] | None:
        return None  # the other OpenSSL's state: not ours to read

    @property
    def signature_algorithms(self) -> list[str]:
        self._their()
        connection = self._connection
        received = None if connection is None else connection.__dict__.get(REQUEST_KEY)
        return (None if received is None else offered_schemes(*received)) or []

    @property
    def certificate_types(self) -> list[str]:
        self._their()
        connection = self._connection
        received = None if connection is None else connection.__dict__.get(REQUEST_KEY)
        if received is None or received[1] != TLS1_2_VERSION:
            return []
        types = _vector(received[0][4:], 0, 1)  # the first field after type and length
        return [] if types is None else certificate_type_names(types[0])

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
