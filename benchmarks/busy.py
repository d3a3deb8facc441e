"""6. Busy threads: handshake latency while other Python threads compute.

A standard-library client over TCP on 127.0.0.1 against ``openssl s_server``
in another process (so the busy threads cannot slow the server), which
requires and verifies a client certificate; TLS 1.3, ECDSA P-256. Each
handshake is timed from ``connect`` to the end of ``do_handshake`` plus one
application-data round trip (so the server has accepted the certificate).
Meanwhile 0, 2 or 4 threads of this process run pure-Python loops (a busy
web app, a crawler, a test runner). Four clients, handshake by handshake in
rotating order:

* ``static``: ``load_cert_chain``;
* ``C callback``: a plain C ``client_cert_cb`` (OpenSSL's own cost);
* ``Credential``: a Python callback returning a ``ccb.Credential``;
* ``Wallet``: ``ccb.Wallet([that credential])`` set as the callback.

While ``_ssl`` runs the handshake the GIL is released; whatever enters
Python inside it must take the GIL back, and on a busy process each take
waits behind the other threads' switch interval (5 ms by default).
Reported: p50 and p99 per client, and p50 over static's.
"""

from __future__ import annotations

import socket
import ssl
import statistics
import subprocess
import threading
import time
from typing import Any

import openssl_ccb as ccb

from .handshakes import set_c_callback
from .pki import PKI

MODES = ("static", "C callback", "Credential", "Wallet")
BUSY = (0, 2, 4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server(pki: PKI) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    command = ["openssl", "s_server", "-quiet", "-rev", "-accept", f"127.0.0.1:{port}"]
    command += ["-cert", pki.server.cert_path, "-key", pki.server.key_path, "-tls1_3"]
    command += ["-CAfile", pki.ca_path, "-Verify", "1", "-verify_return_error"]
    server = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, port
        except OSError:
            time.sleep(0.02)
    server.kill()
    raise RuntimeError("openssl s_server did not start")


def _client(pki: PKI, mode: str) -> ssl.SSLContext:
    leaf = pki.clients["ECDSA-P256"]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.ca_path)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if mode == "static":
        ctx.load_cert_chain(leaf.cert_path, leaf.key_path)
    elif mode == "C callback":
        set_c_callback(ccb.ssl_ctx(ctx), leaf)
    else:
        credential = ccb.Credential.load(leaf.cert_path, leaf.key_path)
        if mode == "Wallet":
            ccb.set_client_cert_cb(ctx, ccb.Wallet([credential]))
        else:
            ccb.set_client_cert_cb(ctx, lambda request: credential)
    return ctx


def _handshake(ctx: ssl.SSLContext, port: int) -> float:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"ping\n")  # -rev answers once it accepted the certificate
            if not tls.recv(64).startswith(b"gnip"):
                raise RuntimeError("the server did not answer")
            return time.perf_counter() - started


def _busy(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(200))


def _percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def run(pki: PKI, per_mode: int) -> list[dict[str, Any]]:
    server, port = _server(pki)
    try:
        clients = {mode: _client(pki, mode) for mode in MODES}
        for ctx in clients.values():  # each really authenticates (and warms up)
            _handshake(ctx, port)
        out = []
        for busy in BUSY:
            stop = threading.Event()
            threads = [threading.Thread(target=_busy, args=(stop,)) for _ in range(busy)]
            for thread in threads:
                thread.start()
            times: dict[str, list[float]] = {mode: [] for mode in MODES}
            try:
                for i in range(per_mode):
                    for j in range(len(MODES)):
                        mode = MODES[(i + j) % len(MODES)]
                        times[mode].append(_handshake(clients[mode], port))
            finally:
                stop.set()
                for thread in threads:
                    thread.join()
            p50 = {m: statistics.median(t) * 1000 for m, t in times.items()}
            out.append(
                {
                    "busy_threads": busy,
                    "handshakes_per_mode": per_mode,
                    "p50_ms": {m: round(v, 2) for m, v in p50.items()},
                    "p99_ms": {m: round(_percentile(t, 0.99) * 1000, 2) for m, t in times.items()},
                    "p50_to_static": {m: round(p50[m] / p50["static"], 3) for m in MODES},
                }
            )
        return out
    finally:
        server.kill()
        server.wait()
