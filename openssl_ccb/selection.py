"""Choosing a certificate: does a credential fit a request, and a Wallet of them.

A credential fits (Go's ``CertificateRequestInfo.SupportsCertificate``) when

1. its key can sign with one of the server's signature schemes, under the
   negotiated protocol's rules (TLS 1.3: no PKCS#1 v1.5 RSA, ECDSA only on
   the curve the scheme names), and
2. the server named no CAs, or the leaf or a chain certificate was issued by
   one it named;

and, before either, the certificate is within its validity now (``now()``,
replaceable for tests) and its extended key usage, if it has one, allows TLS
client authentication (as Java's PKIX key manager and OpenSSL's servers check).
"""

from __future__ import annotations

import datetime
import os
import sys
import types
import warnings
from collections.abc import Iterable, Iterator
from typing import Any, Callable

from . import _der
from ._binding import lib
from ._wallet_files import Passwords, read_directory
from .core import choice
from .credential import (
    Credential,
    _i2d_x509,
    _name_string,
    load_certificate,
    load_private_key,
)
from .errors import Error


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


# The clock validity is judged by: replace it (a function returning an aware
# datetime) to judge as of another time.
now: Callable[[], datetime.datetime] = _utc_now


class _Module(types.ModuleType):
    # Wallets judged in C read the real clock: replacing ``now`` tells C to
    # leave validity (so the whole choice) to Python while it is replaced.
    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "now":
            choice.clock_replaced(value is _utc_now)


sys.modules[__name__].__class__ = _Module

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
        return {"dsa_sha1", "dsa_sha224", "dsa_sha256", "dsa_sha384", "dsa_sha512"}
    return set()


def unusable(facts: _der.Facts) -> str | None:
    """Why a certificate cannot be sent now whoever asks, or None."""
    when = now()
    if when < facts.not_before:
        return f"it is not valid before {facts.not_before:%Y-%m-%d %H:%M:%S} UTC"
    if when > facts.not_after:
        return f"it expired on {facts.not_after:%Y-%m-%d %H:%M:%S} UTC"
    if not facts.client_auth:
        return "its extended key usage does not include TLS client authentication"
    return None


def fit(
    request: Any,
    x509: Any,
    key: Any,
    chain: list[Any],
    facts: _der.Facts | None = None,
    schemes: frozenset[str] | None = None,
) -> tuple[bool, str]:
    """Whether a certificate (and chain) fits the request, and why in words.

    ``facts``: the certificate's, if already read (a Credential keeps them);
    ``schemes``: what a signer credential's signer can do (None: all).
    """
    why = unusable(facts or _der.facts(_i2d_x509(x509)))
    if why is not None:
        return False, why
    offered = request.signature_algorithms
    if offered:  # empty only before TLS 1.2, where a request names none
        usable = schemes_for(key, request.version)
        if schemes is not None:
            # OpenSSL, not the signer, picks the scheme: the first of its order
            # that the key's type allows. The signer must do that one.
            order = request._openssl_order()
            chosen = next((s for s in order or offered if s in usable), None)
            if chosen is not None and chosen not in schemes:
                return False, f"OpenSSL would sign with {chosen}, which its signer does not do"
            usable &= schemes
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


def _fit(request: Any, c: Credential) -> tuple[bool, str]:
    return fit(request, c._x509, c._key, c._chain, c._get_facts(), c.schemes)


def supports(request: Any, credential_or_cert: Any, key: Any = None, chain: Any = ()) -> bool:
    if isinstance(credential_or_cert, Credential):
        c = credential_or_cert
        return _fit(request, c)[0]
    x509 = load_certificate(credential_or_cert)
    pkey = lib.X509_get0_pubkey(x509) if key is None else load_private_key(key)
    return fit(request, x509, pkey, [load_certificate(item) for item in chain])[0]


class Wallet:
    """Credentials to choose from: sends the first that the request supports, else none.

    A Wallet is a callback: ``ccb.set_client_cert_cb(ctx, wallet)``.
    """

    def __init__(self, credentials: Iterable[Credential]) -> None:
        self.credentials = list(credentials)
        self.skipped: list[tuple[str, str]] = []
        """``(path, reason)`` of each file ``from_directory`` could not use."""
        for item in self.credentials:
            if not isinstance(item, Credential):
                raise TypeError(f"a Wallet holds Credentials, not {type(item).__name__}")

    @property
    def credentials(self) -> list[Credential]:
        """The credentials, in the order they are tried; a list you may change."""
        return self._credentials

    @credentials.setter
    def credentials(self, credentials: Iterable[Credential]) -> None:
        self._credentials = choice.Credentials(self, credentials)
        choice.refresh(self)

    def choose(self, request: Any) -> Credential | None:
        for c in self.credentials:
            if _fit(request, c)[0]:
                return c
        return None

    __call__ = choose

    def explain(self, request: Any) -> list[tuple[Credential, bool, str]]:
        """Each credential, in order, whether it fits ``request`` and why in
        words: the reasoning behind ``choose``, for people (the CLI shows it)."""
        return [(c, *_fit(request, c)) for c in self]

    def __iter__(self) -> Iterator[Credential]:
        return iter(self.credentials)

    def __len__(self) -> int:
        return len(self.credentials)

    def __repr__(self) -> str:
        return f"<Wallet of {len(self.credentials)}: {[c.subject for c in self.credentials]!r}>"

    @classmethod
    def from_pkcs11(
        cls, uri: str, pin: str | None = None, module: str | os.PathLike[str] | None = None
    ) -> Wallet:
        """Every certificate on a token (a ``pkcs11:`` URI) that has its key
        there, in token order; each signs on the token. As
        ``Credential.from_pkcs11`` says for ``module`` and ``pin``."""
        from . import pkcs11

        return cls(Credential._from_token(item) for item in pkcs11.signing(uri, pin, module))

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str], password: Passwords = None) -> Wallet:
        """Every usable credential in a directory, in file name order.

        Reads ``.p12``/``.pfx`` files; PEM or DER certificates (``.pem``,
        ``.crt``, ``.cer``, ``.der``), the extra certificates of a PEM being
        its chain; and private keys, in a certificate's PEM or their own file
        (``.key``, or a ``.pem`` holding only a key). A certificate without
        its key is paired with the key of the directory that matches its
        public key (``NAME.key`` tried first). Extensions are matched in any
        case. ``password``: one for every file, a mapping from file name to
        password, or a callable taking the file's path.

        A file that gives no credential is left out, listed in
        ``wallet.skipped`` as ``(path, reason)`` and named in one warning;
        ``ccb.Error`` only when nothing is usable. A file of certificates that
        all belong to credentials found (certbot's ``cert.pem`` and
        ``chain.pem``) is not reported.
        """
        root = os.path.expanduser(os.fspath(path))
        try:
            names = sorted(os.listdir(root))
        except OSError as exc:
            raise Error(f"cannot read the wallet directory {root!r}: {exc.strerror}") from exc
        credentials, skipped = read_directory(root, names, password)
        said = "; ".join(f"{os.path.basename(file)}: {why}" for file, why in skipped)
        if not credentials:
            if not skipped:
                raise Error(f"the wallet directory {root!r} holds no credentials")
            raise Error(f"the wallet directory {root!r} holds no usable credentials: {said}")
        if skipped:
            warnings.warn(
                f"wallet directory {root!r}: skipped {len(skipped)} file(s): {said}",
                stacklevel=2,
            )
        wallet = cls(credentials)
        wallet.skipped = skipped
        return wallet
