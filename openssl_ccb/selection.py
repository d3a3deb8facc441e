"""Choosing a certificate: does a credential fit a request, and a Wallet of them.

A credential fits (Go's ``CertificateRequestInfo.SupportsCertificate``) when

1. its key can sign with one of the server's signature schemes, under the
   negotiated protocol's rules (TLS 1.3: no PKCS#1 v1.5 RSA, ECDSA only on
   the curve the scheme names), and
2. the server named no CAs, or the leaf or a chain certificate was issued by
   one it named.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from ._binding import ffi, lib
from .credential import Credential, load_certificate, load_private_key
from .errors import Error
from .request import _name_string

_RSA_PSS_RSAE = {"rsa_pss_rsae_sha256", "rsa_pss_rsae_sha384", "rsa_pss_rsae_sha512"}
_RSA_PKCS1 = {
    "rsa_pkcs1_sha1",
    "rsa_pkcs1_sha224",
    "rsa_pkcs1_sha256",
    "rsa_pkcs1_sha384",
    "rsa_pkcs1_sha512",
}
_ECDSA_ANY_CURVE = {
    "ecdsa_sha1",
    "ecdsa_sha224",
    "ecdsa_secp256r1_sha256",
    "ecdsa_secp384r1_sha384",
    "ecdsa_secp521r1_sha512",
}
_ECDSA_TLS13 = {
    lib.NID_X9_62_prime256v1: "ecdsa_secp256r1_sha256",
    lib.NID_secp384r1: "ecdsa_secp384r1_sha384",
    lib.NID_secp521r1: "ecdsa_secp521r1_sha512",
    lib.NID_brainpoolP256r1: "ecdsa_brainpoolP256r1tls13_sha256",
    lib.NID_brainpoolP384r1: "ecdsa_brainpoolP384r1tls13_sha384",
    lib.NID_brainpoolP512r1: "ecdsa_brainpoolP512r1tls13_sha512",
}


def schemes_for(key: Any, version: str) -> set[str]:
    """The signature schemes an ``EVP_PKEY *`` can sign with under ``version``."""
    kind = lib.EVP_PKEY_base_id(key)
    tls13 = version == "TLSv1.3"
    if kind == lib.EVP_PKEY_RSA:
        return set(_RSA_PSS_RSAE) if tls13 else _RSA_PSS_RSAE | _RSA_PKCS1
    if kind == lib.EVP_PKEY_RSA_PSS:
        return {"rsa_pss_pss_sha256", "rsa_pss_pss_sha384", "rsa_pss_pss_sha512"}
    if kind == lib.EVP_PKEY_EC:
        if not tls13:
            return set(_ECDSA_ANY_CURVE)
        scheme = _ECDSA_TLS13.get(lib.openssl_ccb_ec_curve(key))
        return {scheme} if scheme else set()
    if kind == lib.EVP_PKEY_ED25519:
        return {"ed25519"}
    if kind == lib.EVP_PKEY_ED448:
        return {"ed448"}
    if kind == lib.EVP_PKEY_DSA and not tls13:
        return {"dsa_sha1", "dsa_sha256", "dsa_sha384", "dsa_sha512"}
    return set()


def fit(request: Any, x509: Any, key: Any, chain: list[Any]) -> tuple[bool, str]:
    """Whether a certificate (and chain) fits the request, and why in words."""
    offered = request.signature_algorithms
    if offered:  # empty only before TLS 1.2, where a request names none
        usable = schemes_for(key, request.version)
        scheme = next((s for s in offered if s in usable), None)
        if scheme is None:
            return False, "its key signs with none of the server's signature algorithms"
        signs = f"its key signs with {scheme}"
    else:
        signs = "the server's signature algorithms are unknown here"
    acceptable = request._acceptable_names()
    if not acceptable:
        return True, f"the server named no CAs; {signs}"
    for cert in [x509, *chain]:
        issuer = lib.X509_get_issuer_name(cert)
        for der, name in acceptable:
            if lib.X509_NAME_cmp(issuer, name) == 0:
                return True, f"issued by {_name_string(der)}, which the server accepts; {signs}"
    return False, "no certificate of its chain was issued by a CA the server accepts"


def supports(request: Any, credential_or_cert: Any, key: Any = None, chain: Any = ()) -> bool:
    if isinstance(credential_or_cert, Credential):
        c = credential_or_cert
        return fit(request, c._x509, c._key, c._chain)[0]
    x509 = load_certificate(credential_or_cert)
    pkey = lib.X509_get0_pubkey(x509) if key is None else load_private_key(key)
    return fit(request, x509, pkey, [load_certificate(item) for item in chain])[0]


class Wallet:
    """Credentials to choose from: sends the first that the request supports, else none.

    A Wallet is a callback: ``ccb.set_client_cert_cb(ctx, wallet)``.
    """

    def __init__(self, credentials: Iterable[Credential]) -> None:
        self.credentials: list[Credential] = list(credentials)
        for item in self.credentials:
            if not isinstance(item, Credential):
                raise TypeError(f"a Wallet holds Credentials, not {type(item).__name__}")

    def choose(self, request: Any) -> Credential | None:
        for credential in self.credentials:
            if fit(request, credential._x509, credential._key, credential._chain)[0]:
                return credential
        return None

    __call__ = choose

    def __iter__(self) -> Iterator[Credential]:
        return iter(self.credentials)

    def __len__(self) -> int:
        return len(self.credentials)

    def __repr__(self) -> str:
        return f"<Wallet of {len(self.credentials)}: {[c.subject for c in self.credentials]!r}>"

    @classmethod
    def from_directory(
        cls, path: str | os.PathLike[str], password: str | bytes | None = None
    ) -> Wallet:
        """Read every credential in a directory.

        ``*.p12``/``*.pfx`` (with ``password``); a ``*.pem`` holding a key and
        its certificates; or a ``NAME.pem``/``NAME.crt`` beside ``NAME.key``.
        Files are read in name order; an unreadable or unmatched file raises
        ``ccb.Error`` naming it.
        """
        root = os.path.expanduser(os.fspath(path))
        try:
            names = sorted(os.listdir(root))
        except OSError as exc:
            raise Error(f"cannot read the wallet directory {root!r}: {exc.strerror}") from exc
        credentials = []
        keys = {n for n in names if n.endswith(".key")}
        for name in names:
            file = os.path.join(root, name)
            stem, ext = os.path.splitext(name)
            try:
                if ext in (".p12", ".pfx"):
                    credentials.append(Credential.from_pkcs12(file, password))
                elif ext in (".pem", ".crt", ".cer"):
                    credentials.append(_load_pem_file(file, keys, stem, password))
            except (Error, TypeError, ValueError) as exc:
                raise Error(f"wallet file {file!r}: {exc}") from exc
            except OSError as exc:
                raise Error(f"wallet file {file!r}: cannot read it: {exc.strerror}") from exc
        if not credentials:
            raise Error(f"the wallet directory {root!r} holds no credentials")
        return cls(credentials)


def _load_pem_file(
    file: str, keys: set[str], stem: str, password: str | bytes | None
) -> Credential:
    with open(file, "rb") as f:
        data = f.read()
    certs = load_certificates(data)
    if b"PRIVATE KEY-----" in data:
        key: Any = data
    elif f"{stem}.key" in keys:
        key = os.path.join(os.path.dirname(file), f"{stem}.key")
    else:
        raise Error(f"no private key in it, and no {stem}.key beside it")
    return Credential(certs[0], load_private_key(key, password), certs[1:])


def load_certificates(data: bytes) -> list[Any]:
    """Every certificate of a PEM bundle, in order (owned ``X509 *``)."""
    bio = ffi.gc(lib.BIO_new_mem_buf(data, len(data)), lib.BIO_free)
    certs = []
    lib.ERR_set_mark()
    while True:
        x509 = lib.PEM_read_bio_X509(bio, ffi.NULL, ffi.NULL, ffi.new("char[]", b""))
        if x509 == ffi.NULL:
            break
        certs.append(ffi.gc(x509, lib.X509_free))
    lib.ERR_pop_to_mark()  # the end of the bundle is reported as an error: not one
    if not certs:
        raise Error("no PEM certificate in it")
    return certs
