"""The compiled module, initialised once: ``ffi`` and ``lib`` as users see them."""

from __future__ import annotations

import atexit

from ._openssl import ffi, lib

if not lib.openssl_ccb_init():
    raise ImportError("openssl-ccb could not reserve its OpenSSL ex_data slots")

# Contexts still alive at exit are freed during the interpreter's teardown,
# when cffi can no longer call Python: from exit on, their release is skipped.
atexit.register(lib.openssl_ccb_set_exiting)

# The C trampoline that OpenSSL calls: its address is how a context is
# recognised as ours (SSL_CTX_get_client_cert_cb compares equal to it).
TRAMPOLINE = lib.openssl_ccb_trampoline()
CLIENT_CERT_CB = ffi.typeof("int(*)(SSL *, X509 **, EVP_PKEY **)")

__all__ = ["CLIENT_CERT_CB", "TRAMPOLINE", "ffi", "lib"]
