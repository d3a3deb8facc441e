"""Certificates and keys, parsed once into this libssl's ``X509``/``EVP_PKEY``.

Ownership: a ``Credential`` owns one reference to its ``X509``, its
``EVP_PKEY`` and each chain ``X509`` (released by ``ffi.gc``). Handing one
to OpenSSL (``openssl_ccb_install``, in C) gives it *new* references,
because OpenSSL frees the two it is given; C may do it after the Credential
is gone, with references paid in advance (``core.trampoline.Prepaid``).

Objects from another OpenSSL (pip's ``cryptography`` and pyOpenSSL carry
their own) cross into this one only as encoded bytes, never as pointers.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from typing import Any, Callable

from . import _der, _pkcs12
from ._binding import ffi, lib
from ._parse import CertificateLike, KeyLike, Password, load_certificates
from ._parse import load_certificate as load_certificate
from ._parse import load_private_key as load_private_key
from .errors import Error, drain_error_queue, error_from_queue


class Credential:
    """A client certificate, its private key and (optionally) intermediates."""

    __slots__ = (
        "__weakref__",
        "_chain",
        "_chain_arg",
        "_chain_stack",
        "_facts",
        "_foreign",
        "_key",
        "_prepaid",
        "_signer",
        "_x509",
    )

    def __init__(self, x509: Any, key: Any, chain: list[Any]) -> None:
        # Private: use Credential.load. Takes ownership of gc-managed cdata.
        if lib.X509_check_private_key(x509, key) != 1:
            drain_error_queue()
            raise Error("the private key does not match the certificate")
        for i, (issuer, subject) in enumerate(zip(chain, [x509, *chain])):
            if lib.X509_check_issued(issuer, subject) != lib.X509_V_OK:
                drain_error_queue()
                what = "the certificate" if i == 0 else f"chain item {i - 1}"
                raise Error(f"chain item {i} did not issue {what}: the chain does not link")
        self._x509 = x509
        self._key = key
        self._chain = chain
        self._chain_stack = _stack_of(chain) if chain else None
        self._chain_arg = ffi.NULL if self._chain_stack is None else self._chain_stack
        self._foreign: Any = None  # the same, parsed by pyOpenSSL's bundled OpenSSL
        self._facts: _der.Facts | None = None  # read when first asked for
        self._signer: Any = None  # a core.signer.Signer when the key is one
        self._prepaid: Any = None  # a core.trampoline.Prepaid once first sent

    @classmethod
    def load(
        cls,
        cert: CertificateLike,
        key: KeyLike,
        chain: Any = (),
        password: Password = None,
    ) -> Credential:
        """Parse a certificate, its key and intermediates from any accepted form.

        A PEM ``cert`` holding more than one certificate (a "fullchain.pem")
        is the leaf followed by its chain, in file order, as
        ``ssl.SSLContext.load_cert_chain`` reads it; giving ``chain`` as well
        is then a ``ValueError``: the intermediates are given once. ``chain``
        is a list of certificates, never one path or one PEM.
        """
        leaf, rest = _leaf_and_chain(cert, chain)
        return cls(leaf, load_private_key(key, password), rest)

    @classmethod
    def from_signer(
        cls,
        certificate: CertificateLike,
        sign: Callable[[bytes, str], bytes],
        chain: Any = (),
        schemes: Iterable[str] | None = None,
    ) -> Credential:
        """A credential whose private key is never in this process: ``sign`` signs.

        ``sign(message, scheme)`` returns the signature of ``message`` (what
        TLS signs; the signer hashes it as the scheme says) under ``scheme``,
        a TLS SignatureScheme name such as ``"ecdsa_secp256r1_sha256"``,
        ``"rsa_pss_rsae_sha256"``, ``"rsa_pkcs1_sha256"`` or ``"ed25519"``:
        ECDSA as DER, RSA as many bytes as the modulus. It runs during the
        handshake, on its thread; what it raises reaches the code that drove
        the handshake. ``schemes``: the names it signs with (None: all that
        the certificate's key type allows); ``request.supports()`` and
        ``Wallet`` honour them, and a handshake in which OpenSSL chose
        another fails with ``ccb.Error``.

        Needs OpenSSL 3 (the key is one of openssl-ccb's own provider); not
        on pyOpenSSL's bundled route, whose OpenSSL is not this one.
        """
        from .core.signer import Signer, key_for

        if not callable(sign):
            raise TypeError(f"sign must be callable, got {type(sign).__name__}")
        allowed = None
        if schemes is not None:
            if isinstance(schemes, (str, bytes)):
                raise TypeError("schemes is a list of scheme names, not one string")
            allowed = frozenset(schemes)
            if not allowed:
                raise ValueError("schemes is empty: the signer could never sign")
        leaf, rest = _leaf_and_chain(certificate, chain)
        signer = Signer(sign, allowed)
        self = cls(leaf, key_for(leaf, signer), rest)
        self._signer = signer
        return self

    @classmethod
    def from_pkcs11(
        cls, uri: str, pin: str | None = None, module: str | os.PathLike[str] | None = None
    ) -> Credential:
        """The certificate a ``pkcs11:`` URI (RFC 7512) names on a token, whose
        key signs there and never leaves it.

        ``module``, else the URI's ``module-path``, else ``$PKCS11_MODULE``
        names the token's PKCS#11 library; the PIN is ``pin``, else the URI's
        ``pin-value``/``pin-source``. Needs ``openssl-ccb[pkcs11]``.
        """
        from . import pkcs11

        return cls._from_token(pkcs11.one(uri, pin, module))

    @classmethod
    def _from_token(cls, item: Any) -> Credential:
        """A ``pkcs11.Item`` that has its key on the token, as a signer credential."""
        signer = item.signer
        return cls.from_signer(item.certificate, signer, chain=item.chain, schemes=signer.schemes)

    @property
    def schemes(self) -> frozenset[str] | None:
        """The signature schemes a signer credential signs with; None: all its key allows."""
        return None if self._signer is None else self._signer.schemes

    @classmethod
    def from_pkcs12(cls, data_or_path: Any, password: Password = None) -> Credential:
        """A credential from a PKCS#12 (.p12/.pfx) file or its bytes, chain included.

        The chain is the path from the leaf up through the bundled CA
        certificates, without a self-signed root; unrelated extras are left out.
        """
        return cls(*_pkcs12.parse(data_or_path, password))

    @property
    def certificate(self) -> bytes:
        """The leaf certificate, DER."""
        return _i2d_x509(self._x509)

    @property
    def chain(self) -> list[bytes]:
        """The intermediates, DER, in the order they are sent."""
        return [_i2d_x509(x) for x in self._chain]

    @property
    def not_valid_before(self) -> datetime.datetime:
        """The start of the certificate's validity (an aware UTC datetime)."""
        return self._get_facts().not_before

    @property
    def not_valid_after(self) -> datetime.datetime:
        """The end of the certificate's validity (an aware UTC datetime)."""
        return self._get_facts().not_after

    def _get_facts(self) -> _der.Facts:
        if self._facts is None:
            self._facts = _der.facts(self.certificate)
        return self._facts

    @property
    def subject(self) -> str:
        return name_to_string(lib.X509_get_subject_name(self._x509))

    @property
    def issuer(self) -> str:
        return name_to_string(lib.X509_get_issuer_name(self._x509))

    def _private_key_der(self) -> bytes:
        """The key, DER: only to hand it to another OpenSSL, never to show."""
        if self._signer is not None:
            raise Error(
                "a signer credential cannot cross into another OpenSSL (its key is a signer "
                "of openssl-ccb's own provider, in this libssl): on pyOpenSSL, use the "
                "same-libssl route (pyOpenSSL on the system OpenSSL, e.g. Debian's), or an "
                "ssl.SSLContext"
            )
        size = lib.i2d_PrivateKey(self._key, ffi.NULL)
        if size <= 0:
            raise error_from_queue("could not encode the private key")
        buf = ffi.new("unsigned char[]", size)
        lib.i2d_PrivateKey(self._key, ffi.new("unsigned char **", buf))
        return bytes(ffi.buffer(buf, size))

    def __repr__(self) -> str:
        return (
            f"<Credential subject={self.subject!r} issuer={self.issuer!r} chain={len(self._chain)}>"
        )


def name_to_string(name: Any) -> str:
    """An ``X509_NAME *`` as an RFC 4514 string (UTF-8 kept, not escaped)."""
    bio = ffi.gc(lib.BIO_new(lib.BIO_s_mem()), lib.BIO_free)
    flags = lib.XN_FLAG_RFC2253 & ~lib.ASN1_STRFLGS_ESC_MSB
    if lib.X509_NAME_print_ex(bio, name, 0, flags) < 0:
        raise error_from_queue("could not print a distinguished name")
    return _read_bio(bio).decode("utf-8", errors="replace")


def _read_bio(bio: Any) -> bytes:
    size = lib.BIO_ctrl_pending(bio)
    buf = ffi.new("char[]", size)
    n = lib.BIO_read(bio, buf, size) if size else 0
    return bytes(ffi.buffer(buf, max(n, 0)))


def _i2d_x509(x509: Any) -> bytes:
    size = lib.i2d_X509(x509, ffi.NULL)
    if size <= 0:
        raise error_from_queue("could not encode a certificate")
    buf = ffi.new("unsigned char[]", size)
    lib.i2d_X509(x509, ffi.new("unsigned char **", buf))
    return bytes(ffi.buffer(buf, size))


def _leaf_and_chain(cert: CertificateLike, chain: Any) -> tuple[Any, list[Any]]:
    """The leaf and its chain: from a fullchain PEM, or from ``chain``, never both."""
    check_chain_type(chain)
    leaf, *rest = load_certificates(cert)
    if rest and chain:
        raise ValueError(
            f"the certificate holds {len(rest) + 1} certificates (a leaf and its chain) "
            "and chain= was given too: give the intermediates in one place"
        )
    return leaf, rest or [
        load_certificate(item, what=f"chain item {i}") for i, item in enumerate(chain)
    ]


def check_chain_type(chain: Any) -> None:
    """Refuse a chain that is one value, before anything iterates it."""
    if isinstance(chain, (bytes, bytearray, memoryview, str, os.PathLike)):
        raise TypeError(
            f"chain must be a sequence of certificates, not one {type(chain).__name__}: "
            "pass [item, ...], or put the intermediates after the leaf in the "
            "certificate's PEM file"
        )


def _stack_of(certs: list[Any]) -> Any:
    # The stack borrows: the Credential keeps every X509 alive.
    stack = ffi.gc(lib.sk_X509_new_null(), lib.sk_X509_free)
    for x509 in certs:
        if lib.sk_X509_push(stack, x509) <= 0:
            raise error_from_queue("could not build the certificate chain")
    return stack


def _i2d_name(name: Any) -> bytes:
    size = lib.i2d_X509_NAME(name, ffi.NULL)
    buf = ffi.new("unsigned char[]", max(size, 0))
    lib.i2d_X509_NAME(name, ffi.new("unsigned char **", buf))
    return bytes(ffi.buffer(buf, max(size, 0)))


def _d2i_name(der: bytes) -> Any:
    cursor = ffi.new("unsigned char **", ffi.from_buffer(der))
    name = lib.d2i_X509_NAME(ffi.NULL, cursor, len(der))
    if name == ffi.NULL:
        raise error_from_queue("the server sent a CA name that cannot be parsed")
    return ffi.gc(name, lib.X509_NAME_free)


def _name_string(der: bytes) -> str:
    """A DER-encoded name as an RFC 4514 string."""
    return name_to_string(_d2i_name(der))
