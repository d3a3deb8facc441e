"""4. Threads: handshakes on one shared client context, one thread against two.

OpenSSL runs with the GIL released; the trampoline takes it only while the
Python callable runs. Reported: throughput (handshakes per second of wall
time) of two threads over one thread, with the callback; with the
certificate set statically (this harness's own ceiling); and for a workload
with no Python at all (SHA-256 of a buffer, GIL released), which shows how
much of a second CPU the machine really gives at that moment (other
processes may be using it). Each thread makes the same number of
handshakes; all six runs interleave, round after round.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

from .handshakes import WORLDS
from .pki import PKI
from .timing import Ratio, Runner, interleave

MODES = ("static", "Credential", "machine")
_BLOCK = bytes(1 << 20)


def _hash() -> object:
    return hashlib.sha256(_BLOCK).digest()


def _threaded(operation: Callable[[], object], threads: int, cpu: list[float]) -> Runner:
    """Runs ``n`` operations in each of ``threads`` threads; notes CPU time / wall time."""

    def run(n: int) -> None:
        start = threading.Barrier(threads)

        def work() -> None:
            start.wait()
            for _ in range(n):
                operation()

        workers = [threading.Thread(target=work) for _ in range(threads)]
        wall, used = time.perf_counter(), time.process_time()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        cpu.append((time.process_time() - used) / (time.perf_counter() - wall))

    return run


def _name(mode: str, threads: int) -> str:
    return f"{mode}, {threads} thread{'s' if threads > 1 else ''}"


def run(pki: PKI, rounds: int, per_thread: int, world: str = "ssl") -> dict[str, Any]:
    make_server, make_client, make_handshake = WORLDS[world]
    leaf = pki.clients["ECDSA-P256"]
    server_ctx = make_server(pki, "TLSv1.3")
    runners: dict[str, Runner] = {}
    cpu: dict[str, list[float]] = {}
    for mode in MODES:
        if mode == "machine":
            operation: Callable[[], object] = _hash
        else:
            operation = make_handshake(server_ctx, make_client(pki, "TLSv1.3", leaf, mode))
        operation()
        for threads in (1, 2):
            name = _name(mode, threads)
            runners[name] = _threaded(operation, threads, cpu.setdefault(name, []))
    samples = interleave(runners, rounds, per_thread)

    def scaling(mode: str) -> Ratio:
        one, two = samples.ns[_name(mode, 1)], samples.ns[_name(mode, 2)]
        return Ratio.of([2 * a / b for a, b in zip(one, two)])  # same n per thread

    handshake_names = [name for name in runners if not name.startswith("machine")]
    cpu_2t = sorted(cpu[_name("Credential", 2)])
    return {
        "world": world,
        "handshakes_per_thread_per_round": per_thread,
        "rounds": rounds,
        "us_per_handshake_wall": {
            name: round(samples.median(name) / 1000 / (2 if "2 threads" in name else 1), 1)
            for name in handshake_names
        },
        "scaling": {mode: scaling(mode).as_dict() for mode in ("static", "Credential")},
        "machine_scaling": scaling("machine").as_dict(),
        "cpu_use_2_threads": round(cpu_2t[len(cpu_2t) // 2], 2),
    }
