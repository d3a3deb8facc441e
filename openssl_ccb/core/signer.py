"""The signer's Python half: keys whose private operation is a Python callable.

``src/openssl_ccb_signer.c`` is a small OpenSSL 3 provider: its keys hold a
certificate's public key and a handle to a ``Signer``, and OpenSSL's signing
call lands in ``openssl_ccb_sign`` below, on the handshake's thread, with the
GIL taken for that call only (cffi takes it for an ``extern "Python"``).

Lifetime: the key (``EVP_PKEY``, shared by the Credential and by every SSL it
was handed to) owns one entry of ``_live``, dropped when OpenSSL frees the key
(``openssl_ccb_signer_release``); so the callable lives exactly as long as any
connection can still sign with it.

Failure: an exception from the callable, or an answer that is not a signature
of the right form, fails the signing, so the handshake stops (OpenSSL sends
an alert); the exception waits in the channel (``signer_failed``) for the
driver of that handshake call, which raises it with its traceback.
"""

from __future__ import annotations

from typing import Any, Callable

from .._binding import ffi, lib
from .._schemes import SIGNATURE_SCHEMES
from ..errors import Error, error_from_queue
from . import channel

Sign = Callable[[bytes, str], Any]

_live: dict[int, Any] = {}  # handle address -> handle, one per signer key


class Signer:
    """A signing callable and the schemes it can sign with (None: any)."""

    __slots__ = ("schemes", "sign")

    def __init__(self, sign: Sign, schemes: frozenset[str] | None) -> None:
        self.sign = sign
        self.schemes = schemes


def key_for(x509: Any, signer: Signer) -> Any:
    """An ``EVP_PKEY *`` (gc-managed) for ``x509``'s public key that signs through ``signer``."""
    if not lib.openssl_ccb_signers_available():
        raise Error("signers need OpenSSL 3.0 or newer (its providers); this libssl is older")
    handle = ffi.new_handle(signer)
    address = int(ffi.cast("uintptr_t", handle))
    _live[address] = handle
    pkey = lib.openssl_ccb_signer_key(x509, handle)
    if pkey == ffi.NULL:
        _live.pop(address, None)  # freed with the half-made key, or never taken
        raise error_from_queue("could not make a signer key for the certificate")
    return ffi.gc(pkey, lib.EVP_PKEY_free)


def _check_form(scheme: str, signature: bytes, size: int) -> str | None:
    """Why ``signature`` cannot be one for ``scheme`` (``size``: the key's
    maximum), or None. Its form only: the server checks the value."""
    if scheme.startswith("rsa_"):
        if len(signature) != size:
            return f"an RSA signature is {size} bytes (the modulus), got {len(signature)}"
        return None
    if scheme in ("ed25519", "ed448"):
        want = 64 if scheme == "ed25519" else 114
        return (
            None if len(signature) == want else f"{scheme} gives {want} bytes, got {len(signature)}"
        )
    # ECDSA: a DER SEQUENCE of two INTEGERs, as TLS sends it (not raw r||s).
    if len(signature) > size or len(signature) < 8 or signature[0] != 0x30:
        return "an ECDSA signature is DER (SEQUENCE of r and s), not raw r||s"
    length, at = signature[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, at = 0, 2 + count
        for byte in signature[2:at]:
            length = length << 8 | byte
    if at + length != len(signature):
        return "its DER length does not match its size"
    for _ in range(2):
        if at + 2 > len(signature) or signature[at] != 0x02:
            return "an ECDSA signature is DER (SEQUENCE of r and s), not raw r||s"
        at += 2 + signature[at + 1]
    return None if at == len(signature) else "its DER holds more than r and s"


@ffi.def_extern()  # type: ignore[untyped-decorator]
def openssl_ccb_sign(handle: Any, code: int, tbs: Any, tbslen: int, sig: Any, siglen: Any) -> int:
    try:
        signer: Signer = ffi.from_handle(handle)
        scheme = SIGNATURE_SCHEMES.get(code, f"0x{code:04x}")
        if signer.schemes is not None and scheme not in signer.schemes:
            raise Error(
                f"OpenSSL chose {scheme} from the server's signature algorithms, which this "
                f"signer does not sign with (it signs with {', '.join(sorted(signer.schemes))})"
            )
        signature = signer.sign(bytes(ffi.buffer(tbs, tbslen)), scheme)
        if not isinstance(signature, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"the signer returned {type(signature).__name__}; expected the signature as bytes"
            )
        signature = bytes(signature)
        why = _check_form(scheme, signature, siglen[0])
        if why is not None:
            raise Error(f"the signer's answer is no {scheme} signature: {why}")
        ffi.buffer(sig, len(signature))[:] = signature
        siglen[0] = len(signature)
        return 1
    except BaseException as exc:
        channel.signer_failed(exc)
        return 0


@ffi.def_extern()  # type: ignore[untyped-decorator]
def openssl_ccb_signer_release(handle: Any, _live: dict[int, Any] = _live, _ffi: Any = ffi) -> None:
    # Called when OpenSSL frees the key, possibly late in interpreter shutdown
    # when module globals are gone: touch nothing but the default arguments.
    _live.pop(int(_ffi.cast("uintptr_t", handle)), None)
