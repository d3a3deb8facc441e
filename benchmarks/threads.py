"""4. Threads: handshakes on one shared client context, one thread against two.

OpenSSL runs with the GIL released; the trampoline takes it only while the
Python callable runs. Reported: throughput (handshakes per second of wall
time) of two threads over one thread, with the callback; with the
certificate set statically (the harness's own ceiling); and for a workload
with no Python at all (SHA-256 of a buffer, GIL released), which shows how
much of a second CPU the machine really gives at that moment (other
processes may be using it). Each thread makes the same number of
handshakes; all six runs interleave, round after round.

Two transports:

* ``sockets`` (the target's measurement): TCP on 127.0.0.1, each client
  thread with a server thread of its own (``loopback.py``). The handshake is
  one blocking call with the GIL released, as in a real program, so what
  the callback holds the GIL for shows.
* ``memory BIO``: client and server in one thread over memory BIOs, Python
  moving the bytes between every step. It holds the GIL between OpenSSL
  calls, for the static certificate as much as for the callback: it
  measures the harness, and is shown for comparison only.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

from . import loopback
from .handshakes import WORLDS
from .pki import PKI
from .timing import Ratio, Runner, interleave

MODES = ("static", "Credential", "machine")
TRANSPORTS = ("sockets", "memory BIO")
_BLOCK = bytes(1 << 20)


def _hash() -> object:
    return hashlib.sha256(_BLOCK).digest()


def _timed(run_threads: Callable[[int], None], cpu: list[float]) -> Runner:
    """Notes process CPU time over wall time of each run."""

    def run(n: int) -> None:
        wall, used = time.perf_counter(), time.process_time()
        run_threads(n)
        cpu.append((time.process_time() - used) / (time.perf_counter() - wall))

    return run


def _in_threads(operations: list[Callable[[], object]]) -> Callable[[int], None]:
    """Runs ``n`` of each operation, each in a thread of its own, started together."""

    def run(n: int) -> None:
        start = threading.Barrier(len(operations), timeout=loopback.TIMEOUT)
        errors: list[BaseException] = []

        def work(operation: Callable[[], object]) -> None:
            try:
                start.wait()
                for _ in range(n):
                    operation()
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(op,)) for op in operations]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if errors:
            raise errors[0]

    return run


def _over_sockets(
    client: loopback.Client, listeners: list[loopback.Listener]
) -> Callable[[int], None]:
    clients = _in_threads([functools.partial(client, lst.address) for lst in listeners])

    def run(n: int) -> None:
        servers = [listener.start(n) for listener in listeners]
        try:
            clients(n)
        finally:
            # A refusal is the server's to explain: its error comes first (the
            # client's, if any, becomes its __context__).
            for server in servers:
                server.join(loopback.TIMEOUT * 2)
            for listener in listeners:
                if listener.errors:
                    raise listener.errors[0]
            if any(server.is_alive() for server in servers):
                raise RuntimeError("a server thread did not finish")

    return run


def _name(mode: str, threads: int) -> str:
    return f"{mode}, {threads} thread{'s' if threads > 1 else ''}"


def run(pki: PKI, rounds: int, per_thread: int, world: str, transport: str) -> dict[str, Any]:
    leaf = pki.clients["ECDSA-P256"]
    runners: dict[str, Runner] = {}
    cpu: dict[str, list[float]] = {}
    listeners: list[loopback.Listener] = []
    try:
        for mode in MODES:
            for threads in (1, 2):
                name = _name(mode, threads)
                if mode == "machine":
                    work = _in_threads([_hash] * threads)
                elif transport == "sockets":
                    client, serve = loopback.WORLDS[world](pki, leaf, mode)
                    mine = [loopback.Listener(serve) for _ in range(threads)]
                    listeners += mine
                    work = _over_sockets(client, mine)
                else:
                    make_server, make_client, make_handshake = WORLDS[world]
                    handshake = make_handshake(
                        make_server(pki, "TLSv1.3"), make_client(pki, "TLSv1.3", leaf, mode)
                    )
                    work = _in_threads([handshake] * threads)
                work(2)  # warm-up, and proof that it works
                runners[name] = _timed(work, cpu.setdefault(name, []))
        samples = interleave(runners, rounds, per_thread)
    finally:
        for listener in listeners:
            listener.close()

    def scaling(mode: str) -> Ratio:
        one, two = samples.ns[_name(mode, 1)], samples.ns[_name(mode, 2)]
        return Ratio.of([2 * a / b for a, b in zip(one, two)])  # same n per thread

    handshake_names = [name for name in runners if not name.startswith("machine")]
    cpu_2t = sorted(cpu[_name("Credential", 2)])
    return {
        "world": world,
        "transport": transport,
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
