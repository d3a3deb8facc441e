"""3. Memory: many handshakes, and many contexts, with the callback.

After a warm-up, each workload runs twice: once plain, measuring resident
memory (``/proc/self/statm``) and the number of objects the garbage collector
tracks; once under ``tracemalloc``, measuring the net growth of memory
allocated by Python (which only a leak of Python objects makes grow).
"""

from __future__ import annotations

import gc
import os
import ssl
import tracemalloc
import weakref
from collections.abc import Callable
from typing import Any

import openssl_ccb as ccb
from openssl_ccb import ffi, lib

from .handshakes import WORLDS, returning
from .pki import PKI

RSS_LIMIT = 1 << 20  # bytes, over the whole run
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _settled() -> None:
    gc.collect()
    gc.collect()


def measure(workload: Callable[[int], object], n: int, warmup: int) -> dict[str, Any]:
    """Run ``workload(n)`` after ``workload(warmup)``: RSS, gc objects, tracemalloc."""
    workload(warmup)
    _settled()
    rss_before, objects_before = rss(), len(gc.get_objects())
    workload(n)
    _settled()
    rss_growth, object_growth = rss() - rss_before, len(gc.get_objects()) - objects_before
    tracemalloc.start()
    try:
        workload(warmup // 10 or 1)
        _settled()
        before = tracemalloc.take_snapshot()
        workload(n)
        _settled()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ignore = (tracemalloc.Filter(False, tracemalloc.__file__),)
    stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno")
    growth = [s for s in stats if s.size_diff > 0]
    return {
        "n": n,
        "rss_growth_bytes": rss_growth,
        "gc_objects_growth": object_growth,
        "traced_growth_bytes": sum(s.size_diff for s in stats),
        "traced_growth_blocks": sum(s.count_diff for s in stats),
        "largest_growth": [f"{s.traceback[0]}: {s.size_diff:+d} B" for s in growth[:3]],
        "rss_ok": rss_growth <= RSS_LIMIT,
        # "No growth": under one byte per operation, i.e. nothing kept per operation.
        "objects_ok": sum(s.size_diff for s in stats) < n and object_growth < n // 100,
    }


def handshakes(pki: PKI, world: str, n: int, warmup: int) -> dict[str, Any]:
    make_server, make_client, make_handshake = WORLDS[world]
    leaf = pki.clients["ECDSA-P256"]
    handshake = make_handshake(
        make_server(pki, "TLSv1.3"), make_client(pki, "TLSv1.3", leaf, "Credential")
    )

    def workload(count: int) -> None:
        for _ in range(count):
            handshake()

    return {"workload": f"{world} handshakes, TLSv1.3, Credential"} | measure(workload, n, warmup)


def _context_factory(world: str) -> Callable[[], Any]:
    if world == "raw":
        return lambda: ffi.gc(lib.SSL_CTX_new(lib.TLS_client_method()), lib.SSL_CTX_free)
    if world == "ssl":
        return lambda: ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    from OpenSSL import SSL

    return lambda: SSL.Context(SSL.TLS_CLIENT_METHOD)


def contexts(pki: PKI, world: str, n: int, warmup: int) -> dict[str, Any]:
    new_context = _context_factory(world)
    leaf = pki.clients["ECDSA-P256"]
    callbacks: weakref.WeakSet[Any] = weakref.WeakSet()

    def workload(count: int) -> None:
        for _ in range(count):
            ctx = new_context()
            callback = returning(leaf, "cryptography")  # a new callable per context
            callbacks.add(callback)
            ccb.set_client_cert_cb(ctx, callback)
            del ctx, callback

    result = {"workload": f"{world} contexts created and dropped"} | measure(workload, n, warmup)
    _settled()
    result["callables_alive"] = len(callbacks)  # each must die with its context
    result["objects_ok"] = result["objects_ok"] and not callbacks
    return result


def run(
    pki: PKI, handshake_n: int, context_n: int, worlds: tuple[str, ...]
) -> list[dict[str, Any]]:
    warm_h, warm_c = max(handshake_n // 10, 100), max(context_n // 10, 100)
    results = [handshakes(pki, world, handshake_n, warm_h) for world in worlds]
    results += [contexts(pki, world, context_n, warm_c) for world in ("raw", "ssl", *worlds[1:])]
    return results
