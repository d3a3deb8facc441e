"""Certificates and keys, parsed once into this libssl's ``X509``/``EVP_PKEY``.

Ownership: a ``Credential`` owns one reference to its ``X509``, its
``EVP_PKEY`` and each chain ``X509`` (released by ``ffi.gc``). Handing one
to OpenSSL (``openssl_ccb_hand_over``, in C) gives it *new* references,
because OpenSSL frees the two it is given.

Objects from another OpenSSL (pip's ``cryptography`` and pyOpenSSL carry
their own) cross into this one only as encoded bytes, never as pointers.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

from . import _der
from ._binding import ffi, lib
from ._parse import CertificateLike, KeyLike, Password, _bytes, _encoded, load_certificates
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
        check_chain_type(chain)
        leaf, *rest = load_certificates(cert)
        if rest and chain:
            raise ValueError(
                f"the certificate holds {len(rest) + 1} certificates (a leaf and its chain) "
                "and chain= was given too: give the intermediates in one place"
            )
        return cls(
            leaf,
            load_private_key(key, password),
            rest
            or [load_certificate(item, what=f"chain item {i}") for i, item in enumerate(chain)],
        )

    @classmethod
    def from_pkcs12(cls, data_or_path: Any, password: Password = None) -> Credential:
        """A credential from a PKCS#12 (.p12/.pfx) file or its bytes, chain included.

        The chain is the path from the leaf up through the bundled CA
        certificates, without a self-signed root; unrelated extras are left out.
        """
        what = "PKCS#12"
        data = _encoded(data_or_path, what)  # "cannot read the PKCS#12 file '...'"
        if isinstance(data_or_path, (str, os.PathLike)):
            what = f"PKCS#12 file {os.fspath(data_or_path)!r}"
        if data is None:
            raise TypeError(f"{what}: expected bytes or a path, got {type(data_or_path).__name__}")
        bio = ffi.gc(lib.BIO_new_mem_buf(data, len(data)), lib.BIO_free)
        p12 = lib.d2i_PKCS12_bio(bio, ffi.NULL)
        if p12 == ffi.NULL:
            raise error_from_queue(f"{what} is not PKCS#12")
        p12 = ffi.gc(p12, lib.PKCS12_free)
        key = ffi.new("EVP_PKEY **")
        cert = ffi.new("X509 **")
        cas = ffi.new("openssl_ccb_X509_STACK **")
        phrase = ffi.NULL if password is None else ffi.new("char[]", _bytes(password))
        if lib.PKCS12_parse(p12, phrase, key, cert, cas) != 1:
            exc = error_from_queue(f"cannot open {what}")
            reasons = " ".join(reason for _, reason, _ in exc.errors)
            if "mac verify failure" in reasons:
                if password is None:
                    raise Error(f"{what} needs a password") from None
                raise Error(f"wrong password for {what}") from None
            if "unsupported" in reasons:
                raise Error(f"{what} {_LEGACY_PKCS12}") from None
            raise exc
        # PKCS12_parse hands us one reference to each; ffi.gc owns them now.
        extras = []
        if cas[0] != ffi.NULL:
            for i in range(lib.sk_X509_num(cas[0])):
                item = lib.sk_X509_value(cas[0], i)
                lib.X509_up_ref(item)
                extras.append(ffi.gc(item, lib.X509_free))
            lib.openssl_ccb_free_x509_stack(cas[0])
        if cert[0] == ffi.NULL or key[0] == ffi.NULL:
            if cert[0] != ffi.NULL:
                lib.X509_free(cert[0])
            if key[0] != ffi.NULL:
                lib.EVP_PKEY_free(key[0])
            raise Error(f"{what} holds no certificate with its private key")
        leaf = ffi.gc(cert[0], lib.X509_free)
        return cls(leaf, ffi.gc(key[0], lib.EVP_PKEY_free), _path_from(leaf, extras))

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


def _path_from(leaf: Any, pool: list[Any]) -> list[Any]:
    """The chain from ``leaf`` up through ``pool``, stopping before a self-signed root."""
    chain: list[Any] = []
    current = leaf
    while True:
        issuer = next(
            (
                c
                for c in pool
                if c not in chain and lib.X509_check_issued(c, current) == lib.X509_V_OK
            ),
            None,
        )
        if issuer is None or lib.X509_check_issued(issuer, issuer) == lib.X509_V_OK:
            drain_error_queue()
            return chain
        chain.append(issuer)
        current = issuer


_LEGACY_PKCS12 = (
    "is encrypted with a legacy algorithm (such as RC2) that this OpenSSL does not "
    "enable: load OpenSSL's legacy provider (openssl.cnf), convert the file "
    "(openssl pkcs12 -legacy, then -export without it), or read it with "
    "cryptography's pkcs12.load_key_and_certificates and pass the objects"
)


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
