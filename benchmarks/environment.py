"""What the figures were measured on."""

from __future__ import annotations

import os
import platform
import ssl
import sys
from typing import Any

import cffi  # type: ignore[import-untyped]
import cryptography

import openssl_ccb as ccb
from openssl_ccb.libssl_proof import our_version


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float:
    return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30), 1)


def describe() -> dict[str, Any]:
    from OpenSSL import SSL
    from OpenSSL import __version__ as pyopenssl_version

    return {
        "cpu": _cpu(),
        "cpus": len(os.sched_getaffinity(0)),
        "memory_gib": _memory_gib(),
        "system": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "executable": os.path.realpath(sys.executable),
        "openssl_ccb": f"{ccb.__version__} from {os.path.dirname(ccb.__file__)}",
        "libssl": our_version(),
        "ssl_module": ssl.OPENSSL_VERSION,
        "cffi": cffi.__version__,
        "cryptography": cryptography.__version__,
        "pyopenssl": pyopenssl_version,
        "pyopenssl_openssl": SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode(),
        "pyopenssl_route": ccb.pyopenssl_route(),
    }
