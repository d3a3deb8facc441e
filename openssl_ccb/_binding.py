"""The compiled module, initialised once: ``ffi`` and ``lib`` as users see them."""

from __future__ import annotations

import atexit
import ctypes
import platform

from ._openssl import ffi, lib


def _refuse_subinterpreters() -> None:
    # The compiled module's state (ex_data slots, extern "Python" entries) is
    # one per process, while each subinterpreter would run its own copy of
    # this package: a context made in one could call into another's objects.
    if platform.python_implementation() != "CPython":
        return
    api = ctypes.pythonapi
    current, main = api.PyInterpreterState_Get, api.PyInterpreterState_Main
    current.restype = main.restype = ctypes.c_void_p
    if current() != main():
        raise ImportError("openssl-ccb runs only in the main interpreter, not in a subinterpreter")


_refuse_subinterpreters()

if not lib.openssl_ccb_init():
    raise ImportError("openssl-ccb could not reserve its OpenSSL ex_data slots")


def _finalizing_probe() -> int:
    """The address of CPython's own "is finalizing" flag reader, or 0."""
    if platform.python_implementation() != "CPython":
        return 0
    for name in ("Py_IsFinalizing", "_Py_IsFinalizing"):  # 3.13+, 3.9-3.12
        function = getattr(ctypes.pythonapi, name, None)
        if function is not None:
            return ctypes.cast(function, ctypes.c_void_p).value or 0
    return 0


# Contexts still alive at exit are freed during the interpreter's teardown,
# when cffi can no longer call Python: from then on, their release is skipped.
# CPython says when teardown starts (after every atexit handler); elsewhere an
# atexit handler of ours stands in, which runs before those registered earlier.
_probe = _finalizing_probe()
if _probe:
    lib.openssl_ccb_set_finalizing_probe(_probe)
else:
    atexit.register(lib.openssl_ccb_set_exiting)

# The C trampoline that OpenSSL calls: its address is how a context is
# recognised as ours (SSL_CTX_get_client_cert_cb compares equal to it).
TRAMPOLINE = lib.openssl_ccb_trampoline()
CLIENT_CERT_CB = ffi.typeof("int(*)(SSL *, X509 **, EVP_PKEY **)")

__all__ = ["CLIENT_CERT_CB", "TRAMPOLINE", "ffi", "lib"]
