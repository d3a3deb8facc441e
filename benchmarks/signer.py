"""5. Signers: a key that never leaves its holder, against the same key loaded.

Full in-memory handshakes, as in section 1 (the server requires and verifies
a client certificate), the clients timed side by side in rotating order:

* ``C callback`` / ``Python floor``: section 1's baselines, measured again in
  this run: their ratio is what one entry into Python costs inside a
  handshake, the yardstick of the target;
* ``static key``: a callback returning ``ccb.Credential.load(cert, key)``
  (OpenSSL signs with the key it holds);
* ``signer``: a callback returning ``ccb.Credential.from_signer(cert, sign)``,
  where ``sign`` signs with an in-process ``cryptography`` key object (never
  exported): OpenSSL calls our provider, which enters Python once per
  handshake to sign.

Target: ``signer / static key`` adds no more than ``Python floor / C
callback`` does, i.e. one more Python entry (the signature itself is
computed in both). The signer's signature goes through cryptography's
OpenSSL (pip's, on ``.venv``), the static key's through ours: a different
library doing the same arithmetic, which is part of what is measured.
Only worlds where signers work: the standard library, and pyOpenSSL on its
same-libssl route (on the bundled route ``from_signer`` is refused).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openssl_ccb as ccb

from .handshakes import VERSIONS, WORLDS, side_by_side
from .pki import KEY_TYPES, PKI, Leaf

MODES = ("C callback", "Python floor", "static key", "signer")
SCHEMES = (
    "ecdsa_secp256r1_sha256",
    "ecdsa_secp384r1_sha384",
    "ecdsa_secp521r1_sha512",
    "rsa_pss_rsae_sha256",
    "rsa_pss_rsae_sha384",
    "rsa_pss_rsae_sha512",
    "rsa_pkcs1_sha256",
    "rsa_pkcs1_sha384",
    "rsa_pkcs1_sha512",
)


def sign_with(key: Any) -> Callable[[bytes, str], bytes]:
    """``sign(message, scheme)`` over a cryptography private key object, as a
    KMS or token client would do remotely."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding

    digests = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}

    def sign(message: bytes, scheme: str) -> bytes:
        digest = digests[scheme.rsplit("_", 1)[1]]
        if scheme.startswith("ecdsa_"):
            return bytes(key.sign(message, ec.ECDSA(digest)))
        if scheme.startswith("rsa_pss_"):
            pss = padding.PSS(padding.MGF1(digest), padding.PSS.DIGEST_LENGTH)
            return bytes(key.sign(message, pss, digest))
        return bytes(key.sign(message, padding.PKCS1v15(), digest))

    return sign


def _schemes(key_type: str) -> tuple[str, ...]:
    prefix = "ecdsa_" if key_type.startswith("ECDSA") else "rsa_"
    return tuple(s for s in SCHEMES if s.startswith(prefix))


def _client(pki: PKI, world: str, version: str, leaf: Leaf, key_type: str, mode: str) -> Any:
    """A client context of ``world`` for ``mode``, built with section 1's harness."""
    make_client = WORLDS[world][1]
    if mode in ("C callback", "Python floor"):
        return make_client(pki, version, leaf, mode)
    if mode == "static key":
        credential = ccb.Credential.load(leaf.cert_path, leaf.key_path)
    else:
        credential = ccb.Credential.from_signer(
            leaf.cert, sign_with(leaf.key), schemes=_schemes(key_type)
        )
    ctx = make_client(pki, version, leaf, "Credential")  # sets a callback; replaced below
    ccb.set_client_cert_cb(ctx, lambda request: credential)
    return ctx


def cell(
    pki: PKI, world: str, version: str, key_type: str, rounds: int, batch: int
) -> dict[str, Any]:
    make_server, _, make_handshake = WORLDS[world]
    leaf = pki.clients[key_type]
    server_ctx = make_server(pki, version)
    clients = {mode: _client(pki, world, version, leaf, key_type, mode) for mode in MODES}
    label = f"{world} {version} {key_type}"
    samples = side_by_side(make_handshake, server_ctx, clients, leaf, label, rounds, batch)
    return {
        "world": world,
        "version": version,
        "key": key_type,
        "handshakes_per_mode": rounds * batch,
        "us_median": {mode: round(samples.median(mode) / 1000, 1) for mode in MODES},
        "signer_to_static": samples.ratio("signer", "static key").as_dict(),
        "static_to_c_callback": samples.ratio("static key", "C callback").as_dict(),
        "floor_to_c_callback": samples.ratio("Python floor", "C callback").as_dict(),
    }


def worlds() -> tuple[str, ...]:
    """The worlds in which a signer credential can be used in this environment."""
    return ("ssl", "pyOpenSSL") if ccb.pyopenssl_route() == "same-libssl" else ("ssl",)


def run(pki: PKI, rounds: int, batch: int) -> list[dict[str, Any]]:
    return [
        cell(pki, world, version, key_type, rounds, batch)
        for world in worlds()
        for version in VERSIONS
        for key_type in KEY_TYPES
    ]
