"""2. Dispatch: the cost of one call through a ``client_cert_cb`` pointer.

The benchmark's C loop (``cbench``) calls each pointer like OpenSSL would:

* ``C (floor)``: a plain C function answering 0; ``C, credential``: one handing
  over new references to a certificate and key (the loop frees them);
* ``ours, None`` / ``ours, Credential``: openssl-ccb's trampoline on a raw
  ``SSL_CTX``, the callable returning ``None`` or a ``ccb.Credential``;
* ``ffi.callback``: a cffi callback (``ccb.ffi``) returning 0; and the same
  handing over the credential by hand (``X509_up_ref``, ``EVP_PKEY_up_ref``);
* ``ctypes``: a ``ctypes.CFUNCTYPE`` callback returning 0;
* ``extern "Python"``: a bare cffi ``extern "Python"`` function returning 0, the
  mechanism the trampoline is built on; ``extern "Python" + a call``: the same
  calling a Python function with one argument, the least any trampoline that
  calls a user's callable can do (the contract's floor: one Python call more
  than ``ffi.callback``, which *is* the user's function).

As in a real handshake, the loop runs with the GIL released (cffi releases
it around ``bench_loop``), each Python callback takes it, and a driver's
``Call`` owns the ``SSL *`` (what ``ccb.do_handshake`` pushes).

The same callbacks are then timed *in situ*: from C, around the call OpenSSL
makes inside real handshakes (standard library, TLS 1.3, ECDSA), the
credential then handed over in C whatever the callback answered. A hot loop
flatters Python code; in a handshake it runs between OpenSSL's own work,
with cold caches, and costs several times more.
"""

from __future__ import annotations

import ctypes
import statistics
from typing import Any

import openssl_ccb as ccb
from openssl_ccb import ffi, lib

from . import cbench
from .pki import PKI
from .timing import Runner, interleave

CB_TYPE = "int (*)(SSL *, X509 **, EVP_PKEY **)"

# Each variant: its expected return code per call.
EXPECTED = {
    "C (floor)": 0,
    "C, credential": 1,
    "ours, None": 0,
    "ours, Credential": 1,
    "ffi.callback": 0,
    "ffi.callback, credential": 1,
    "ctypes": 0,
    'extern "Python"': 0,
    'extern "Python" + a call': 0,
}


def _raw_ssl(callback: Any) -> tuple[Any, Any]:
    """A raw client context with ``callback`` set through openssl-ccb, and an SSL of it."""
    ctx = ffi.gc(lib.SSL_CTX_new(lib.TLS_client_method()), lib.SSL_CTX_free)
    if callback is not None:
        ccb.set_client_cert_cb(ctx, callback)
    return ctx, ffi.gc(lib.SSL_new(ctx), lib.SSL_free)


def run(pki: PKI, rounds: int, calls: int) -> dict[str, Any]:
    bench = cbench.load().lib
    leaf = pki.clients["ECDSA-P256"]
    credential = ccb.Credential.load(leaf.cert_path, leaf.key_path)
    x509, pkey = cbench.load_pair(leaf.cert_path, leaf.key_path)
    cbench.set_credential(x509, pkey)

    def returns_none(request: ccb.CertificateRequest) -> None:
        return None

    def returns_credential(request: ccb.CertificateRequest) -> ccb.Credential:
        return credential

    def by_hand(ssl: Any, x509_out: Any, pkey_out: Any) -> int:
        lib.X509_up_ref(x509)
        lib.EVP_PKEY_up_ref(pkey)
        x509_out[0] = x509
        pkey_out[0] = pkey
        return 1

    keep: list[Any] = []  # everything the pointers need alive

    def pointer_of(callback: Any) -> int:
        keep.append(callback)
        return cbench.address(callback)

    plain_ctx, plain_ssl = _raw_ssl(None)
    none_ctx, none_ssl = _raw_ssl(returns_none)
    cred_ctx, cred_ssl = _raw_ssl(returns_credential)
    keep += [plain_ctx, none_ctx, cred_ctx]
    # The trampoline, as any caller of the public API can see it installed.
    trampoline = cbench.address(lib.SSL_CTX_get_client_cert_cb(none_ctx))
    c_types = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
    ctypes_cb = c_types(lambda ssl, x509_out, pkey_out: 0)
    keep.append(ctypes_cb)
    targets = {
        "C (floor)": (bench.bench_none_cb_address(), plain_ssl),
        "C, credential": (bench.bench_credential_cb_address(), plain_ssl),
        "ours, None": (trampoline, none_ssl),
        "ours, Credential": (trampoline, cred_ssl),
        "ffi.callback": (pointer_of(ffi.callback(CB_TYPE, lambda s, x, k: 0)), plain_ssl),
        "ffi.callback, credential": (pointer_of(ffi.callback(CB_TYPE, by_hand)), plain_ssl),
        "ctypes": (ctypes.cast(ctypes_cb, ctypes.c_void_p).value or 0, plain_ssl),
        'extern "Python"': (bench.bench_extern_address(), plain_ssl),
        'extern "Python" + a call': (bench.bench_extern_call_address(), plain_ssl),
    }

    def loop(name: str) -> Runner:
        cb, ssl = targets[name]
        ssl_address = cbench.address(ssl)
        expected = EXPECTED[name]

        def run_loop(n: int) -> None:
            # (ccb.do_handshake's bookkeeping is consulted only on failure.)
            total = bench.bench_loop(cb, ssl_address, n)
            if total != expected * n:
                raise RuntimeError(f"{name}: the callback answered {total / n} on average")

        return run_loop

    runners = {name: loop(name) for name in EXPECTED}
    for runner in runners.values():
        runner(1000)  # warm-up and check
    samples = interleave(runners, rounds, calls)
    ns = {name: samples.median(name) for name in EXPECTED}
    targets_in_situ = {name: target for name, (target, _) in targets.items()}
    situ_batch = max(calls // 2000, 5)
    situ = in_situ(
        pki,
        targets_in_situ,
        {"ours, None": returns_none, "ours, Credential": returns_credential},
        rounds,
        situ_batch,
    )
    ours = {"ours, None": "C (floor)", "ours, Credential": "C, credential"}
    return {
        "calls_per_variant": rounds * calls,
        "ns_per_call": {name: round(value, 1) for name, value in ns.items()},
        "ratios": {
            f"{mine} / {other}": samples.ratio(mine, other).as_dict()
            for mine, others in (
                ("ours, None", ("C (floor)", "ffi.callback", "ctypes", 'extern "Python" + a call')),
                ('extern "Python" + a call', ("ffi.callback", "ctypes")),
                ("ours, Credential", ("C, credential", "ffi.callback, credential")),
            )
            for other in others
        },
        # What the layer adds per call over a C function doing the same.
        "layer_ns": {mine: round(ns[mine] - ns[floor], 1) for mine, floor in ours.items()},
        "in_situ_ns_per_call": situ,
        "in_situ_handshakes_per_variant": rounds * situ_batch,
    }


def in_situ(
    pki: PKI, targets: dict[str, int], ours: dict[str, Any], rounds: int, batch: int
) -> dict[str, float]:
    """Median ns per call of each callback, timed in C inside real handshakes."""
    from .handshakes import stdlib_client, stdlib_handshake, stdlib_server

    bench = cbench.load().lib
    leaf = pki.clients["ECDSA-P256"]
    server_ctx = stdlib_server(pki, "TLSv1.3")
    gated = ffi.cast(CB_TYPE, bench.bench_gated_cb_address())
    handshakes = {}
    for name in targets:
        ctx = stdlib_client(pki, "TLSv1.3", leaf, "C callback")
        if name in ours:  # the trampoline finds its state on the handshake's context
            ccb.set_client_cert_cb(ctx, ours[name])
        lib.SSL_CTX_set_client_cert_cb(ccb.ssl_ctx(ctx), gated)
        handshakes[name] = stdlib_handshake(server_ctx, ctx)
    per_call: dict[str, list[float]] = {name: [] for name in targets}
    names = list(targets)
    for r in range(-1, rounds):  # round -1: warm-up
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            bench.bench_time_target(targets[name])
            for _ in range(batch):
                handshakes[name]()
            if r >= 0:
                per_call[name].append(bench.bench_timed_ns() / bench.bench_timed_calls())
    return {name: round(statistics.median(values), 1) for name, values in per_call.items()}
