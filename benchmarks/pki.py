"""A throwaway PKI for the benchmarks: one CA, a server and two client credentials.

Made with ``cryptography`` alone (trustme's key types differ between the two
environments): the CA and server are ECDSA P-256, the clients ECDSA P-256
and RSA-2048.
"""

from __future__ import annotations

import datetime
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

KEY_TYPES = ("ECDSA-P256", "RSA-2048")


@dataclass
class Leaf:
    """A certificate and key, as cryptography objects and as PEM files."""

    cert: Any  # x509.Certificate
    key: Any  # a cryptography private key
    cert_path: str
    key_path: str


@dataclass
class PKI:
    directory: tempfile.TemporaryDirectory[str]
    ca: Leaf
    server: Leaf
    clients: dict[str, Leaf]  # by KEY_TYPES

    @property
    def ca_path(self) -> str:
        return self.ca.cert_path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "openssl-ccb benchmarks"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _new_key(kind: str) -> Any:
    if kind == "RSA-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _issue(directory: Path, stem: str, kind: str, issuer: Leaf | None, *, ca: bool = False) -> Leaf:
    key = _new_key(kind)
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = _name(stem)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if stem == "server":
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    cert = builder.sign(key if issuer is None else issuer.key, hashes.SHA256())
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Leaf(cert, key, str(cert_path), str(key_path))


def make_pki() -> PKI:
    directory = tempfile.TemporaryDirectory(prefix="openssl-ccb-bench-")
    path = Path(directory.name)
    ca = _issue(path, "ca", "ECDSA-P256", None, ca=True)
    server = _issue(path, "server", "ECDSA-P256", ca)
    clients = {kind: _issue(path, f"client-{kind}", kind, ca) for kind in KEY_TYPES}
    return PKI(directory, ca, server, clients)
