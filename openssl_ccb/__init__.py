"""openssl-ccb: OpenSSL's client-certificate callback, for Python.

``set_client_cert_cb(ctx, callback)`` works on ``ssl.SSLContext``,
``OpenSSL.SSL.Context`` and raw ``SSL_CTX *``; the callback receives a
``CertificateRequest`` and chooses the certificate at handshake time.
"""

from ._binding import ffi, lib
from .api import get_client_cert_cb, set_client_cert_cb, ssl_ctx
from .credential import Credential
from .errors import Error, WantRead, WantWrite, WantX509Lookup
from .foreign import ForeignCallback
from .request import CertificateRequest
from .selection import Wallet
from .worlds import pyopenssl as pyopenssl  # ccb.pyopenssl.describe_route(), documented
from .worlds.pyopenssl import route as pyopenssl_route
from .worlds.raw import do_handshake, read, write
from .worlds.stdlib_sockets import SSLWantX509Lookup

__version__ = "0.1.0"

__all__ = [
    "CertificateRequest",
    "Credential",
    "Error",
    "ForeignCallback",
    "SSLWantX509Lookup",
    "Wallet",
    "WantRead",
    "WantWrite",
    "WantX509Lookup",
    "do_handshake",
    "ffi",
    "get_client_cert_cb",
    "lib",
    "pyopenssl_route",
    "read",
    "set_client_cert_cb",
    "ssl_ctx",
    "write",
]
