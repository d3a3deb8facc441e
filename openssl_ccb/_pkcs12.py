"""PKCS#12 (.p12/.pfx) files read into this libssl's objects, for Credential.from_pkcs12."""

from __future__ import annotations

import os
from typing import Any

from ._binding import ffi, lib
from ._parse import Password, _bytes, _encoded
from .errors import Error, drain_error_queue, error_from_queue


def parse(data_or_path: Any, password: Password) -> tuple[Any, Any, list[Any]]:
    """The leaf, its key and its chain (gc-managed) from a PKCS#12 file or its bytes."""
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
    return leaf, ffi.gc(key[0], lib.EVP_PKEY_free), _path_from(leaf, extras)


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
