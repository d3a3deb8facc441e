"""Certificates and keys in any accepted form, parsed into this libssl's objects."""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Union

from ._binding import ffi, lib
from .errors import Error, drain_error_queue, error_from_queue

CertificateLike = Any  # bytes, str, os.PathLike, cryptography, pyOpenSSL or cdata
KeyLike = Any
Password = Union[bytes, str, None]

_X509_P = ffi.typeof("X509 *")
_PASSWORD_CB = ffi.addressof(lib, "openssl_ccb_password_cb")
_EVP_PKEY_P = ffi.typeof("EVP_PKEY *")


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _encoded(obj: Any, what: str) -> bytes | None:
    """The bytes of a certificate or key given in any non-cdata form, or None."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, str) and "-----BEGIN" in obj:
        # PEM text given as str: take it as such, and never echo it as a
        # "path" in an error message (it may be a private key).
        return obj.encode("ascii", "replace")
    if isinstance(obj, (str, os.PathLike)):
        try:
            with open(obj, "rb") as f:
                return f.read()
        except OSError as exc:
            raise Error(f"cannot read the {what} file {os.fspath(obj)!r}: {exc.strerror}") from exc
    # pyOpenSSL objects: take their cryptography form.
    for method in ("to_cryptography", "to_cryptography_key"):
        if hasattr(obj, method) and type(obj).__module__.startswith("OpenSSL"):
            obj = getattr(obj, method)()
            break
    if "cryptography" in sys.modules:  # only a cryptography user can pass its objects
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        if isinstance(obj, x509.Certificate):
            return bytes(obj.public_bytes(serialization.Encoding.DER))
        if isinstance(obj, _private_key_types()):
            key: Any = obj
            return bytes(
                key.private_bytes(
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
    return None


def _private_key_types() -> tuple[type, ...]:
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    return (
        rsa.RSAPrivateKey,
        ec.EllipticCurvePrivateKey,
        ed25519.Ed25519PrivateKey,
        ed448.Ed448PrivateKey,
        dsa.DSAPrivateKey,
    )


def load_certificate(obj: CertificateLike, what: str = "certificate") -> Any:
    """An owned ``X509 *`` from any accepted certificate form (a PEM's first)."""
    return load_certificates(obj, what)[0]


# The blocks PEM_read_bio_X509 reads (it skips others, such as keys).
_PEM_CERTIFICATE = re.compile(rb"^-----BEGIN (?:X509 )?CERTIFICATE-----", re.MULTILINE)


def load_certificates(obj: CertificateLike, what: str = "certificate") -> list[Any]:
    """Owned ``X509 *``: every certificate of a PEM, in order, or the one given."""
    if isinstance(obj, ffi.CData):
        if ffi.typeof(obj) is not _X509_P or obj == ffi.NULL:
            raise TypeError(f"{what}: expected an X509 * from openssl_ccb.ffi, got {obj!r}")
        lib.X509_up_ref(obj)
        return [ffi.gc(obj, lib.X509_free)]
    data = _encoded(obj, what)
    if data is None:
        raise TypeError(
            f"{what}: cannot use {type(obj).__name__}; give PEM/DER bytes, a path, "
            "a cryptography Certificate, a pyOpenSSL X509 or an X509 * cdata"
        )
    lib.ERR_set_mark()
    certs: list[Any] = []
    if b"-----BEGIN" in data:
        bio = ffi.gc(lib.BIO_new_mem_buf(data, len(data)), lib.BIO_free)
        for _ in _PEM_CERTIFICATE.finditer(data):
            x509 = lib.PEM_read_bio_X509(bio, ffi.NULL, _PASSWORD_CB, ffi.NULL)
            if x509 == ffi.NULL:
                ordinal = f" (PEM certificate {len(certs) + 1})" if certs else ""
                raise error_from_queue(f"{what} is not a PEM or DER certificate{ordinal}")
            certs.append(ffi.gc(x509, lib.X509_free))
    else:
        x509 = lib.d2i_X509(ffi.NULL, ffi.new("unsigned char **", ffi.from_buffer(data)), len(data))
        if x509 != ffi.NULL:
            certs.append(ffi.gc(x509, lib.X509_free))
    if not certs:
        raise error_from_queue(f"{what} is not a PEM or DER certificate")
    lib.ERR_pop_to_mark()  # decoders may leave notes behind even on success
    return certs


def load_private_key(obj: KeyLike, password: Password = None) -> Any:
    """An owned ``EVP_PKEY *`` from any accepted key form."""
    if isinstance(obj, ffi.CData):
        if ffi.typeof(obj) is not _EVP_PKEY_P or obj == ffi.NULL:
            raise TypeError(
                f"private key: expected an EVP_PKEY * from openssl_ccb.ffi, got {obj!r}"
            )
        lib.EVP_PKEY_up_ref(obj)
        return ffi.gc(obj, lib.EVP_PKEY_free)
    data = _encoded(obj, "private key")
    if data is None:
        raise TypeError(
            f"private key: cannot use {type(obj).__name__}; give PEM/DER bytes, a path, "
            "a cryptography private key, a pyOpenSSL PKey or an EVP_PKEY * cdata"
        )
    lib.ERR_set_mark()
    if b"-----BEGIN" in data:
        phrase = ffi.NULL
        if password is not None:
            phrase = ffi.new("char[]", _bytes(password))
        bio = ffi.gc(lib.BIO_new_mem_buf(data, len(data)), lib.BIO_free)
        key = lib.PEM_read_bio_PrivateKey(bio, ffi.NULL, _PASSWORD_CB, phrase)
    else:
        buf = ffi.new("unsigned char **", ffi.from_buffer(data))
        key = lib.d2i_AutoPrivateKey(ffi.NULL, buf, len(data))
    if key == ffi.NULL:
        if b"ENCRYPTED" in data and b"-----BEGIN" in data:  # PKCS#8 or legacy PEM encryption
            drain_error_queue()
            if password is None:
                raise Error("the private key is encrypted and needs a password")
            raise Error("wrong password for the private key")
        hint = "" if password is None else " (or the password is wrong)"
        raise error_from_queue(f"private key is not a PEM or DER private key{hint}")
    lib.ERR_pop_to_mark()
    return ffi.gc(key, lib.EVP_PKEY_free)
