"""What the server asked for, as the callback sees it.

The trampoline reads what the attributes need from the ``SSL *`` in C before
Python runs (``openssl_ccb_call``, src/openssl_ccb.h), so that reading them
makes no call into C, each of which would release the GIL and wait to take
it back; a request made otherwise reads the ``SSL *`` when asked. The request
is valid only while the callback runs: the ``SSL *`` may be freed after.
"""

from __future__ import annotations

from typing import Any, Callable

from ._binding import ffi, lib
from ._schemes import SIGNATURE_SCHEMES as SIGNATURE_SCHEMES
from .credential import _d2i_name, _i2d_name, _i2d_x509, name_to_string
from .errors import Error

# TLS 1.2 ClientCertificateType values (RFC 5246 7.4.4, RFC 8422 5.5) to their names.
CERTIFICATE_TYPES = {
    1: "rsa_sign",
    2: "dss_sign",
    3: "rsa_fixed_dh",
    4: "dss_fixed_dh",
    64: "ecdsa_sign",
    65: "rsa_fixed_ecdh",
    66: "ecdsa_fixed_ecdh",
}


def certificate_type_names(codes: bytes) -> list[str]:
    return [CERTIFICATE_TYPES.get(code, f"0x{code:02x}") for code in codes]


class CertificateRequest:
    """The server's certificate request, read lazily from the connection."""

    __slots__ = ("_call", "_facts", "_parsed_cas", "_ssl", "attempt")

    # The trampoline builds requests with object.__new__ and sets only _ssl,
    # _facts and attempt (an __init__ frame, inside every handshake, was
    # measured): _call (the driver's Call) and _parsed_cas stay unset until
    # first needed.
    _ssl: Any  # the SSL *, None once the callback has returned
    _facts: Any  # the openssl_ccb_call * C filled, or unset/None: ask the SSL *
    _call: Any
    _parsed_cas: list[tuple[bytes, Any]]
    # How .connection finds its driver: the core's exception channel sets it
    # (core.channel.call_for), so that this value module imports no core.
    _locate: Callable[[Any], Any] = staticmethod(lambda ssl: None)

    attempt: int
    """1 on the first call for this certificate request, 2 after one suspension, ..."""

    @property
    def ssl(self) -> Any:
        """The raw ``SSL *`` (``openssl_ccb.ffi`` cdata)."""
        if self._ssl is None:
            raise Error("a CertificateRequest is valid only while the callback runs")
        return self._ssl

    def _read(self) -> Any:
        """What C read for this call, or None (then ask the ``SSL *``)."""
        self.ssl  # noqa: B018 - raises once the callback has returned
        try:
            return self._facts
        except AttributeError:
            return None

    def _peer_ca_names(self) -> list[Any]:
        facts = self._read()
        if facts is not None and facts.ca_names_len >= 0:
            return [facts.ca_names[i] for i in range(facts.ca_names_len)]
        stack = lib.SSL_get_client_CA_list(self.ssl)
        if stack == ffi.NULL:
            return []
        return [lib.sk_X509_NAME_value(stack, i) for i in range(lib.sk_X509_NAME_num(stack))]

    @property
    def acceptable_cas(self) -> list[bytes]:
        """DER-encoded names of the CAs the server accepts, in its order."""
        facts = self._read()
        if facts is not None and facts.ca_names_len >= 0:
            ders, lens = facts.ca_ders, facts.ca_der_lens
            return [ffi.buffer(ders[i], lens[i])[:] for i in range(facts.ca_names_len)]
        return [_i2d_name(name) for name in self._peer_ca_names()]

    @property
    def acceptable_ca_names(self) -> list[str]:
        """The acceptable CAs as RFC 4514 strings."""
        return [name_to_string(name) for name in self._peer_ca_names()]

    @property
    def signature_algorithms(self) -> list[str]:
        """The server's signature schemes, IANA names, in its order."""
        facts = self._read()
        if facts is not None and facts.sigalgs_len >= 0:
            return _names(facts.sigalgs[0 : facts.sigalgs_len])
        return _schemes(lib.SSL_get_sigalgs, self.ssl)

    def _openssl_order(self) -> list[str] | None:
        """The schemes both ends allow, in the order OpenSSL picks from: its
        choice for a key is the first its type can sign with. None where
        OpenSSL's state is not ours to read."""
        facts = self._read()
        if facts is not None and facts.shared_sigalgs_len >= 0:
            return _names(facts.shared_sigalgs[0 : facts.shared_sigalgs_len])
        return _schemes(lib.SSL_get_shared_sigalgs, self.ssl)

    @property
    def certificate_types(self) -> list[str]:
        """TLS 1.2's client certificate types the server accepts, in its order
        (``"rsa_sign"``, ``"ecdsa_sign"``, ...); empty under TLS 1.3, which has none."""
        facts = self._read()
        if facts is not None:
            if not facts.certificate_types_len:
                return []
            return certificate_type_names(
                ffi.buffer(facts.certificate_types, facts.certificate_types_len)[:]
            )
        types = ffi.new("const unsigned char **")
        count = lib.SSL_get0_certificate_types(self.ssl, types)
        if count <= 0 or types[0] == ffi.NULL:
            return []
        return certificate_type_names(bytes(ffi.buffer(types[0], count)))

    @property
    def server_name(self) -> str | None:
        """The SNI host name this client sent, or None."""
        facts = self._read()
        if facts is not None:
            name = facts.server_name
        else:
            name = lib.SSL_get_servername(self.ssl, lib.TLSEXT_NAMETYPE_host_name)
        return None if name == ffi.NULL else ffi.string(name).decode("ascii", "replace")

    @property
    def version(self) -> str:
        """The negotiated protocol, spelled as ``ssl.SSLSocket.version()`` does."""
        facts = self._read()
        name = lib.SSL_get_version(self.ssl) if facts is None else facts.version_name
        return str(ffi.string(name).decode())

    @property
    def peer_certificate(self) -> bytes | None:
        """The server's leaf certificate, DER, or None if not yet seen."""
        x509 = lib.openssl_ccb_get1_peer_certificate(self.ssl)
        if x509 == ffi.NULL:
            return None
        x509 = ffi.gc(x509, lib.X509_free)
        return _i2d_x509(x509)

    @property
    def connection(self) -> Any:
        """The user's connection object driving this handshake, or None."""
        ssl = self.ssl  # raises: valid only during the call
        try:
            call = self._call
        except AttributeError:
            call = self._call = self._locate(ssl)
        return None if call is None else call.connection

    def supports(self, credential_or_cert: Any, key: Any = None, chain: Any = ()) -> bool:
        """Whether the server could accept this certificate.

        True when its key can sign with one of ``signature_algorithms`` and, if
        the server named acceptable CAs, the certificate or one of its chain
        was issued by one of them. Takes a ``Credential``, or a certificate
        (with its key, or its public key is used) in any accepted form.
        """
        from .selection import supports

        return supports(self, credential_or_cert, key, chain)

    def _acceptable_names(self) -> list[tuple[bytes, Any]]:
        """The acceptable CAs as (DER, X509_NAME *), once per request: the SSL's
        own names where C read them (valid while the callback runs, as the
        request is), else parsed from their DER."""
        try:
            return self._parsed_cas
        except AttributeError:
            facts = self._read()
            if facts is not None and facts.ca_names_len >= 0:
                self._parsed_cas = list(zip(self.acceptable_cas, self._peer_ca_names()))
            else:
                self._parsed_cas = [(der, _d2i_name(der)) for der in self.acceptable_cas]
            return self._parsed_cas

    def __repr__(self) -> str:
        if self._ssl is None:
            return f"<CertificateRequest attempt={self.attempt} (expired)>"
        return (
            f"<CertificateRequest {self.version} server_name={self.server_name!r} "
            f"acceptable_ca_names={self.acceptable_ca_names!r} attempt={self.attempt}>"
        )


def _names(codes: list[int]) -> list[str]:
    return [SIGNATURE_SCHEMES.get(code, f"0x{code:04x}") for code in codes]


def _schemes(getter: Callable[..., int], ssl: Any) -> list[str]:
    rsig = ffi.new("unsigned char *")
    rhash = ffi.new("unsigned char *")
    count = getter(ssl, -1, ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL)
    schemes = []
    for i in range(max(count, 0)):
        getter(ssl, i, ffi.NULL, ffi.NULL, ffi.NULL, rsig, rhash)
        code = (rhash[0] << 8) | rsig[0]
        schemes.append(SIGNATURE_SCHEMES.get(code, f"0x{code:04x}"))
    return schemes
