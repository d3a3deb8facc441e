"""A client-certificate callback set in C by someone else, made callable."""

from __future__ import annotations

from typing import Any

from ._binding import ffi, lib
from .errors import Error, WantX509Lookup


class ForeignCallback:
    """A ``client_cert_cb`` function pointer that openssl-ccb did not install.

    Calling it with an ``SSL *`` translates its return code: 1 gives
    ``(X509 *, EVP_PKEY *)`` cdata owned by Python, 0 gives None, a negative
    value raises ``WantX509Lookup``.
    """

    __slots__ = ("pointer",)

    def __init__(self, pointer: Any) -> None:
        self.pointer = pointer

    def __call__(self, ssl: Any) -> tuple[Any, Any] | None:
        x509 = ffi.new("X509 **")
        pkey = ffi.new("EVP_PKEY **")
        ret = self.pointer(ssl, x509, pkey)
        if ret < 0:
            # OpenSSL frees nothing after a negative answer; neither do we.
            raise WantX509Lookup(f"the C callback returned {ret}: suspend")
        # Otherwise OpenSSL would free whatever was handed over: we own it.
        cert = ffi.gc(x509[0], lib.X509_free) if x509[0] != ffi.NULL else None
        key = ffi.gc(pkey[0], lib.EVP_PKEY_free) if pkey[0] != ffi.NULL else None
        if ret == 0:
            return None
        if cert is None or key is None:
            raise Error(f"the C callback returned {ret} without both a certificate and a key")
        return cert, key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ForeignCallback) and other.pointer == self.pointer

    def __hash__(self) -> int:
        return hash(int(ffi.cast("uintptr_t", self.pointer)))

    def __repr__(self) -> str:
        return f"<ForeignCallback at 0x{int(ffi.cast('uintptr_t', self.pointer)):x}>"
