"""Which libssl does another module run on? Proof by function address.

A context may be handed to ``ccb.lib`` only if the module that created it
calls the very same libssl and libcrypto. The proof: resolve a few OpenSSL
functions through that module's own link map (``dlopen`` of the loaded
module with ``RTLD_NOLOAD``, then ``dlsym``, which searches the module and
its dependencies only) and compare with the addresses ``ccb.lib`` calls.
A statically linked, bundled OpenSSL either hides those symbols or exports
them at other addresses: both fail the proof.
"""

from __future__ import annotations

import ctypes
import os

from ._binding import ffi, lib


def _our_probes() -> dict[str, int]:
    """The probes' names and addresses, from the C table (one list, in C)."""
    probes = {}
    i = 0
    while (name := lib.openssl_ccb_probe_name(i)) != ffi.NULL:
        probes[ffi.string(name).decode()] = int(lib.openssl_ccb_probe_address(i))
        i += 1
    return probes


# Where this module's own calls to these functions land.
OURS = _our_probes()
PROBES = tuple(OURS)


def shares_our_libssl(path: str | None) -> tuple[bool, str]:
    """Whether the loaded module at ``path`` uses our libssl.

    Returns ``(True, "")`` when proven, else ``(False, reason)``. Without a
    path (a module built into the interpreter, ``_ssl.__file__`` None) there
    is no link map of the module's own to search: ``dlsym`` on the program
    searches the global namespace, which may hold another libssl than the
    one the module was linked with, so that is refused, not guessed.
    """
    if not path:
        return False, (
            "it is built into the interpreter (no module file), so its own link map "
            "cannot be searched"
        )
    try:
        handle = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        theirs = {n: ctypes.cast(getattr(handle, n), ctypes.c_void_p).value for n in PROBES}
    except (OSError, AttributeError) as exc:
        return False, f"its OpenSSL functions cannot be resolved ({exc})"
    if theirs != OURS:
        return False, "its OpenSSL functions are at other addresses than openssl-ccb's"
    return True, ""


def our_version() -> str:
    return str(ffi.string(lib.OpenSSL_version(lib.OPENSSL_VERSION)).decode())
