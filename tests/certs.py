"""Certificates made to order (key types, names, intermediates) with cryptography."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

import openssl_ccb as ccb


@dataclass
class Issued:
    cert: x509.Certificate
    key: Any

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def credential(self, *chain: Issued) -> ccb.Credential:
        return ccb.Credential.load(self.cert, self.key, [c.cert for c in chain])


def new_key(kind: str) -> Any:
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind in ("rsa", "rsa1024"):
        size = 1024 if kind == "rsa1024" else 2048  # 1024: below security level 2
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    return ec.generate_private_key({"ec": ec.SECP256R1(), "p384": ec.SECP384R1()}[kind])


def name(*parts: tuple[Any, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in parts])


def issue(
    subject: x509.Name | str,
    issuer: Issued | None = None,
    *,
    ca: bool = False,
    key: str = "ec",
    digest: str = "sha256",
    valid: tuple[datetime.timedelta, datetime.timedelta] | None = None,
    eku: list[x509.ObjectIdentifier] | None = None,
) -> Issued:
    """A CA (``ca=True``) or leaf certificate; self-signed when ``issuer`` is None.

    ``valid``: its validity, as offsets from now (default: an hour ago to a
    day on); ``eku``: a leaf's extended key usage (default: clientAuth).
    """
    if isinstance(subject, str):
        subject = name((NameOID.COMMON_NAME, subject))
    private = new_key(key)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = valid or (datetime.timedelta(hours=-1), datetime.timedelta(days=1))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + start)
        .not_valid_after(now + end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = dict(key_cert_sign=True, crl_sign=True, digital_signature=True)
    else:
        usage = dict(key_cert_sign=False, crl_sign=False, digital_signature=True)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(eku or [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    builder = builder.add_extension(
        x509.KeyUsage(
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            encipher_only=False,
            decipher_only=False,
            **usage,
        ),
        critical=True,
    )
    signer = issuer.key if issuer else private
    algorithm = {"sha256": hashes.SHA256(), "sha224": hashes.SHA224()}[digest]
    return Issued(builder.sign(signer, algorithm), private)
