"""SoftHSM2 tokens for the PKCS#11 tests: keys made on the token, never extractable.

SoftHSM reads ``SOFTHSM2_CONF`` and lists its tokens once, at C_Initialize:
``SoftHSM.start`` points it at a scratch directory before the module is
first loaded, and tokens are then initialised from inside this process
(C_InitToken on the free slot), so the loaded module sees each new one.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import PyKCS11 as P
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from openssl_ccb._pkcs11_token import Module
from openssl_ccb._pkcs11_uri import parse_uri

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
SO_PIN = "so-secret-4711"
CURVES = {
    "p256": ("06082a8648ce3d030107", ec.SECP256R1()),
    "p384": ("06052b81040022", ec.SECP384R1()),
}


def start(root: Path) -> Module:
    """Point SoftHSM at ``root`` (once per process, before its first load) and load it."""
    if Module._loaded.get(MODULE) is not None:
        return Module._loaded[MODULE]
    (root / "tokens").mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    return Module.get(MODULE, parse_uri("pkcs11:"))


@dataclass
class Key:
    label: str
    id: bytes
    kind: str
    public: Any  # the cryptography public key, read from the token
    cert: x509.Certificate | None = None


@dataclass
class Token:
    """One initialised token: ``add_key`` makes a key pair on it and stores a certificate."""

    module: Module
    label: str
    pin: str
    slot: int = -1
    keys: list[Key] = field(default_factory=list)

    def __post_init__(self) -> None:
        lib = self.module.lib
        with self.module.lock:
            free = [
                s
                for s in lib.getSlotList(True)
                if not lib.getTokenInfo(s).flags & P.CKF_TOKEN_INITIALIZED
            ]
            lib.initToken(free[0], SO_PIN, self.label.ljust(32))  # blank-padded, as PKCS#11 says
            self.slot = next(
                s for s in lib.getSlotList(True) if lib.getTokenInfo(s).label.rstrip() == self.label
            )
            session = lib.openSession(self.slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
            session.login(SO_PIN, P.CKU_SO)
            session.initPin(self.pin)
            session.logout()
            session.closeSession()

    @property
    def uri(self) -> str:
        return f"pkcs11:token={self.label}?module-path={MODULE}"

    def _session(self) -> Any:
        session = self.module.lib.openSession(self.slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
        try:
            session.login(self.pin)
        except P.PyKCS11Error as exc:
            if exc.value != P.CKR_USER_ALREADY_LOGGED_IN:
                raise
        return session

    def add_key(self, label: str, kind: str, issuer: Any, key_id: bytes | None = None,
                store_cert: bool = True, subject: str | None = None) -> Key:  # fmt: skip
        """A ``kind`` ("p256", "p384", "rsa") key pair made on the token; its
        certificate issued by ``issuer`` (a trustme.CA or tests.certs.Issued)."""
        key_id = key_id if key_id is not None else os.urandom(8)
        private = [
            (P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_TOKEN, True), (P.CKA_PRIVATE, True),
            (P.CKA_SENSITIVE, True), (P.CKA_EXTRACTABLE, False), (P.CKA_SIGN, True),
            (P.CKA_ID, key_id), (P.CKA_LABEL, label),
        ]  # fmt: skip
        public = [(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_TOKEN, True), (P.CKA_VERIFY, True),
                  (P.CKA_ID, key_id), (P.CKA_LABEL, label)]  # fmt: skip
        with self.module.lock:
            session = self._session()
            try:
                if kind == "rsa":
                    public += [(P.CKA_MODULUS_BITS, 2048), (P.CKA_PUBLIC_EXPONENT, (1, 0, 1))]
                    mech = P.Mechanism(P.CKM_RSA_PKCS_KEY_PAIR_GEN, None)
                elif kind == "ed25519":
                    public.append((P.CKA_EC_PARAMS, bytes.fromhex("06032b6570")))  # id-Ed25519
                    mech = P.Mechanism(P.CKM_EC_EDWARDS_KEY_PAIR_GEN, None)
                else:
                    public.append((P.CKA_EC_PARAMS, bytes.fromhex(CURVES[kind][0])))
                    mech = P.Mechanism(P.CKM_EC_KEY_PAIR_GEN, None)
                pub, _ = session.generateKeyPair(public, private, mech)
                if kind == "rsa":
                    n, e = session.getAttributeValue(
                        pub, [P.CKA_MODULUS, P.CKA_PUBLIC_EXPONENT], True
                    )
                    key = rsa.RSAPublicNumbers(
                        int.from_bytes(bytes(e), "big"), int.from_bytes(bytes(n), "big")
                    ).public_key()
                else:
                    (point,) = session.getAttributeValue(pub, [P.CKA_EC_POINT], True)
                    raw = (
                        bytes(point)[2:] if bytes(point)[1] < 0x80 else bytes(point)[3:]
                    )  # DER OCTET STRING
                    if kind == "ed25519":
                        key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
                    else:
                        key = ec.EllipticCurvePublicKey.from_encoded_point(CURVES[kind][1], raw)
                item = Key(label, key_id, kind, key)
                if store_cert:
                    item.cert = certificate_for(key, subject or label, issuer)
                    self.store_certificate(item.cert, label, key_id, session)
            finally:
                session.closeSession()
        self.keys.append(item)
        return item

    def store_certificate(
        self, cert: x509.Certificate, label: str, key_id: bytes, session: Any = None
    ) -> None:
        own = session is None
        with self.module.lock:
            session = session or self._session()
            try:
                session.createObject([
                    (P.CKA_CLASS, P.CKO_CERTIFICATE), (P.CKA_CERTIFICATE_TYPE, P.CKC_X_509),
                    (P.CKA_TOKEN, True), (P.CKA_ID, key_id), (P.CKA_LABEL, label),
                    (P.CKA_SUBJECT, cert.subject.public_bytes()),
                    (P.CKA_VALUE, cert.public_bytes(serialization.Encoding.DER)),
                ])  # fmt: skip
            finally:
                if own:
                    session.closeSession()


def _issuer_parts(issuer: Any) -> tuple[x509.Name, Any]:
    if hasattr(issuer, "_private_key"):  # trustme.CA
        return issuer._certificate.subject, issuer._private_key
    return issuer.cert.subject, issuer.key  # tests.certs.Issued


def certificate_for(public: Any, common_name: str, issuer: Any) -> x509.Certificate:
    """A client certificate for ``public``, signed by ``issuer``'s key."""
    issuer_name, issuer_key = _issuer_parts(issuer)
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
