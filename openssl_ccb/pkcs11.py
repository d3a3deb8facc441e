"""Client certificates whose keys stay on a PKCS#11 token (smart card, YubiKey, HSM).

``ccb.Credential.from_pkcs11`` and ``ccb.Wallet.from_pkcs11`` (through ``one`` and
``signing``) read the token's certificates and pair each with
the private key of the same ``CKA_ID`` (else the same label); the handshake's
signature is made on the token through ``Credential.from_signer``.

Built on PyKCS11 (the ``openssl-ccb[pkcs11]`` extra), not python-pkcs11: Debian
packages it (``python3-pykcs11``), so the same-libssl route needs no pip; it
has manylinux wheels for CPython 3.9 to 3.13; it is a thin SWIG layer over the
whole PKCS#11 API (PSS parameters, CKM_EDDSA), with no policy of its own.
Neither library has PyPy wheels (PyKCS11 builds there from its sdist with swig).
The price: PyKCS11 keeps the GIL during C_Sign (SWIG without -threads), so a
slow token (a smart card: ~100 ms) stalls the process's other Python threads.

One session per token, logged in once and shared by every credential of that
token; all calls into a module are serialised by its lock (PKCS#11 sessions
are single-threaded). Signing hashes in Python and uses CKM_ECDSA for EC
keys (which every token has); RSA uses CKM_SHA*_RSA_PKCS(_PSS) when the token
lists them, else CKM_RSA_PKCS(_PSS) on the digest.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from typing import Any

from ._parse import load_certificate
from ._pkcs11_token import Module, Token, pykcs11
from ._pkcs11_uri import Pkcs11Uri, parse_uri
from ._pkcs12 import _path_from
from .errors import Error

__all__ = ["Item", "Pkcs11Uri", "contents", "one", "parse_uri", "signing"]

_CURVES = {  # CKA_EC_PARAMS (the named curve's OID, DER) -> the TLS scheme
    bytes.fromhex("06082a8648ce3d030107"): "ecdsa_secp256r1_sha256",
    bytes.fromhex("06052b81040022"): "ecdsa_secp384r1_sha384",
    bytes.fromhex("06052b81040023"): "ecdsa_secp521r1_sha512",
}
_ED25519 = (bytes.fromhex("06032b6570"), b"\x13\x0cedwards25519")  # OID, or PrintableString
_DIGEST_INFO = {  # RFC 8017 section 9.2 note 1: DER DigestInfo prefixes, for CKM_RSA_PKCS
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
_HASHES = ("sha256", "sha384", "sha512")


def _der_int(value: bytes) -> bytes:
    value = value.lstrip(b"\0") or b"\0"
    if value[0] & 0x80:
        value = b"\0" + value
    return b"\x02" + bytes([len(value)]) + value


def ecdsa_der(raw: bytes) -> bytes:
    """PKCS#11's r||s as the DER ECDSA-Sig-Value that TLS sends."""
    if not raw or len(raw) % 2:
        raise Error(f"the token's ECDSA signature has an odd length ({len(raw)} bytes)")
    half = len(raw) // 2
    body = _der_int(raw[:half]) + _der_int(raw[half:])
    length = bytes([len(body)]) if len(body) < 128 else b"\x81" + bytes([len(body)])
    return b"\x30" + length + body


class Signer:
    """``sign(message, scheme)`` for one private key on a token; ``schemes``: what it does."""

    def __init__(self, token: Token, key_id: bytes, label: str, key: dict[str, Any]) -> None:
        self.token = token
        self.key_id = key_id
        self.label = label
        self.key_type: str = key["type"]
        self._handle: tuple[int, Any] = (token.generation, key["handle"])
        mechanisms = set(token.run(lambda s: token.module.lib.getMechanismList(token.slot)))
        self._mechanisms = mechanisms
        self._plans: dict[str, tuple[Any, str | None, bytes]] = {}
        self.schemes: list[str] = []
        if self.key_type == "EC" and "CKM_ECDSA" in mechanisms and key["params"] in _CURVES:
            # The key's own curve first (TLS 1.3 binds the hash to it); TLS 1.2 may pick
            # any hash, and CKM_ECDSA signs the digest we make, whichever it is.
            own = _CURVES[key["params"]]
            self.schemes = [own, *(s for s in _CURVES.values() if s != own)]
        elif self.key_type == "EC_EDWARDS" and "CKM_EDDSA" in mechanisms:
            self.schemes = ["ed25519"] if key["params"] in _ED25519 else []
        elif self.key_type == "RSA":
            for h in _HASHES:
                if {f"CKM_{h.upper()}_RSA_PKCS", "CKM_RSA_PKCS"} & mechanisms:
                    self.schemes.append(f"rsa_pkcs1_{h}")
            for h in _HASHES:
                if {f"CKM_{h.upper()}_RSA_PKCS_PSS", "CKM_RSA_PKCS_PSS"} & mechanisms:
                    self.schemes.append(f"rsa_pss_rsae_{h}")

    def __repr__(self) -> str:
        return f"<PKCS#11 {self.key_type} key {self.label!r} on {self.token!r}>"

    def _plan(self, scheme: str) -> tuple[Any, str | None, bytes]:
        """(mechanism, hash to apply in Python or None, prefix of that digest)."""
        p = pykcs11()
        if scheme not in self.schemes:
            raise Error(f"{self!r} cannot sign {scheme} (it can: {self.schemes})")
        if scheme == "ed25519":
            return p.Mechanism(p.CKM_EDDSA, None), None, b""
        h = scheme.rsplit("_", 1)[1]
        if scheme.startswith("ecdsa_"):
            return p.Mechanism(p.CKM_ECDSA, None), h, b""
        name = f"CKM_{h.upper()}_RSA_PKCS"
        if scheme.startswith("rsa_pkcs1_"):
            if name in self._mechanisms:
                return p.Mechanism(p.CKM[name], None), None, b""
            return p.Mechanism(p.CKM_RSA_PKCS, None), h, _DIGEST_INFO[h]
        size = hashlib.new(h).digest_size  # TLS: PSS salt length = hash length
        hash_mech, mgf = p.CKM[f"CKM_{h.upper()}"], p.CKG[f"CKG_MGF1_{h.upper()}"]
        if name + "_PSS" in self._mechanisms:
            return p.RSA_PSS_Mechanism(p.CKM[name + "_PSS"], hash_mech, mgf, size), None, b""
        return p.RSA_PSS_Mechanism(p.CKM_RSA_PKCS_PSS, hash_mech, mgf, size), h, b""

    def __call__(self, message: bytes, scheme: str) -> bytes:
        plan = self._plans.get(scheme)
        if plan is None:
            plan = self._plans[scheme] = self._plan(scheme)
        mechanism, h, prefix = plan
        data = message if h is None else prefix + hashlib.new(h, message).digest()

        def sign(session: Any) -> bytes:
            generation, handle = self._handle
            if generation != self.token.generation:  # a new session: find the key again
                found = _keys(self.token, session, self.key_id, self.label)
                if not found:
                    raise Error(
                        f"PKCS#11 token {self.token.label!r}: the key {self.label!r} is gone "
                        "(the token was removed, or the key deleted)"
                    )
                handle = found[0]["handle"]
                self._handle = (self.token.generation, handle)
            return bytes(session.sign(handle, data, mechanism))

        signature = self.token.run(sign)
        return ecdsa_der(signature) if scheme.startswith("ecdsa_") else signature


def _attrs(session: Any, handle: Any, names: list[str]) -> list[bytes]:
    p = pykcs11()
    return [bytes(v) for v in session.getAttributeValue(handle, [p.CKA[n] for n in names], True)]


def _keys(
    token: Token, session: Any, key_id: bytes | None, label: str | None
) -> list[dict[str, Any]]:
    """The private keys with the certificate's CKA_ID, else with its label (never
    every key, for a certificate that has neither)."""
    p = pykcs11()
    handles: list[Any] = []
    for attribute, wanted in ((p.CKA_ID, key_id), (p.CKA_LABEL, label)):
        if wanted and not handles:
            handles = session.findObjects([(p.CKA_CLASS, p.CKO_PRIVATE_KEY), (attribute, wanted)])
    keys = []
    for handle in handles:
        kid, klabel, ktype = _attrs(session, handle, ["CKA_ID", "CKA_LABEL", "CKA_KEY_TYPE"])
        value = int.from_bytes(ktype, sys.byteorder)  # a CK_ULONG, as the host stores it
        kinds = {p.CKK_RSA: "RSA", p.CKK_EC: "EC", p.CKK_EC_EDWARDS: "EC_EDWARDS"}
        kind = kinds.get(value) or str(p.CKK.get(value, f"0x{value:x}")).replace("CKK_", "")
        params = _attrs(session, handle, ["CKA_EC_PARAMS"])[0] if kind.startswith("EC") else b""
        keys.append({"handle": handle, "id": kid, "label": klabel.decode("utf-8", "replace"),
                     "type": kind, "params": params})  # fmt: skip
    return keys


@dataclass
class Item:
    """A certificate on a token, and its private key if the token holds it."""

    label: str
    id: bytes
    certificate: bytes  # DER
    key_type: str | None  # "EC", "RSA", "EC_EDWARDS"; None: no private key on the token
    signer: Signer | None
    chain: list[bytes]  # DER: the token's key-less certificates that issued it


def contents(
    uri: str, pin: str | None = None, module: str | os.PathLike[str] | None = None
) -> list[Item]:
    """Every certificate on the token that ``uri`` names (``object=``/``id=`` narrow it)."""
    parsed = parse_uri(uri)
    token = Module.get(module, parsed).token(parsed, _pin(parsed, pin))
    p = pykcs11()

    def read(session: Any) -> list[tuple[bytes, str, bytes, list[dict[str, Any]]]]:
        certs = []
        for handle in session.findObjects([(p.CKA_CLASS, p.CKO_CERTIFICATE)]):
            cid, clabel, value = _attrs(session, handle, ["CKA_ID", "CKA_LABEL", "CKA_VALUE"])
            text = clabel.decode("utf-8", "replace")
            certs.append((cid, text, value, _keys(token, session, cid, text)))
        return certs

    certs = token.run(read)
    pool = [(load_certificate(value), value) for *_, value, keys in certs if not keys]
    items = []
    for cid, label, value, keys in certs:
        if parsed.object not in (None, label) or parsed.id not in (None, cid):
            continue
        key = keys[0] if keys else None
        chain = _path_from(load_certificate(value), [x for x, _ in pool])
        items.append(Item(
            label, cid, value, key["type"] if key else None,
            Signer(token, cid, label, key) if key else None,
            [next(der for x, der in pool if x is c) for c in chain],
        ))  # fmt: skip
    return items


def _pin(uri: Pkcs11Uri, pin: str | None) -> str | None:
    if pin is not None:
        return pin
    if uri.pin_value is not None:
        return uri.pin_value
    if uri.pin_source and uri.pin_source.startswith(("file:", "/")):
        path = uri.pin_source[5:] if uri.pin_source.startswith("file:") else uri.pin_source
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().rstrip("\r\n")
        except OSError as exc:
            raise Error(
                f"cannot read the pkcs11: URI's pin-source {path!r}: {exc.strerror}"
            ) from None
    return None


def signing(
    uri: str, pin: str | None = None, module: str | os.PathLike[str] | None = None
) -> list[Item]:
    """Every certificate on the token that has its private key there, in token
    order (``ccb.Wallet.from_pkcs11``)."""
    items = _with_keys(contents(uri, pin, module))
    if not items:
        raise Error(f"no certificate with a private key on the token {uri.split('?')[0]!r}")
    return items


def one(uri: str, pin: str | None = None, module: str | os.PathLike[str] | None = None) -> Item:
    """The one certificate of the token that has its private key there
    (``ccb.Credential.from_pkcs11``). Name it with the URI's ``object=``
    (label) or ``id=`` when the token holds more."""
    items = _with_keys(contents(uri, pin, module))
    if len(items) != 1:
        what = "no certificate" if not items else f"{len(items)} certificates"
        raise Error(
            f"{what} with a private key on the token match {uri.split('?')[0]!r}"
            + (f": name one with object= ({[i.label for i in items]})" if items else "")
        )
    return items[0]


def _with_keys(items: list[Item]) -> list[Item]:
    return [item for item in items if item.signer is not None]
