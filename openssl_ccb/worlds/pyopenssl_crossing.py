"""What crosses between openssl-ccb's OpenSSL and pyOpenSSL's bundled one:
a Credential as encoded bytes, parsed there once; that OpenSSL's errors."""

from __future__ import annotations

from typing import Any

from ..credential import Credential
from ..errors import Error
from .pyopenssl import binding


def foreign_objects(credential: Credential) -> tuple[Any, Any]:
    """The credential's certificate and key parsed by the bundled OpenSSL (the
    caller caches them on the credential)."""
    their_ffi, their_lib, _ = binding()

    def parse(der: bytes, d2i: Any, free: Any) -> Any:
        bio = their_ffi.gc(their_lib.BIO_new_mem_buf(der, len(der)), their_lib.BIO_free)
        obj = d2i(bio, their_ffi.NULL)
        if obj == their_ffi.NULL:
            raise Error("pyOpenSSL's OpenSSL could not parse the credential", their_errors())
        return their_ffi.gc(obj, free)

    x509 = parse(credential.certificate, their_lib.d2i_X509_bio, their_lib.X509_free)
    key_der = credential._private_key_der()
    return x509, parse(key_der, their_lib.d2i_PrivateKey_bio, their_lib.EVP_PKEY_free)


CHAIN_REFUSED = (
    "pyOpenSSL's bundled OpenSSL offers openssl-ccb no per-connection chain: the only "
    "place a chain could go there is the context's certificate store, which also "
    "verifies servers, so a chain would widen the servers this context trusts. "
    "Send the leaf alone and set the intermediates once with "
    "Context.add_extra_chain_cert() (sent with the leaf, never trusted), or use an "
    "ssl.SSLContext, or pyOpenSSL built on the system OpenSSL (the same-libssl route)"
)


def prepare(credential: Credential) -> tuple[Any, Any]:
    """The credential's certificate and key in the bundled OpenSSL, parsed once
    (kept on the credential); a chain is refused before anything is parsed."""
    if credential._chain:
        raise Error(CHAIN_REFUSED)
    credential._foreign = foreign_objects(credential)
    return credential._foreign  # type: ignore[no-any-return]


def their_errors() -> list[tuple[str, str, str]]:
    """Read and empty the bundled OpenSSL's error queue, as ``Error.errors``."""
    their_ffi, their_lib, _ = binding()
    errors: list[tuple[str, str, str]] = []
    while True:
        code = their_lib.ERR_get_error()
        if code == 0:
            return errors
        library = their_lib.ERR_lib_error_string(code)
        reason = their_lib.ERR_reason_error_string(code)
        library = "" if library == their_ffi.NULL else their_ffi.string(library).decode()
        reason = hex(code) if reason == their_ffi.NULL else their_ffi.string(reason).decode()
        errors.append((library, reason, f"{library}: {reason}" if library else reason))
