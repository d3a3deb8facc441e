"""`make soak`: 100,000 handshakes with the callback; memory must stay flat.

Handshakes run over memory BIOs, in turn through the standard library, the
raw world and pyOpenSSL, TLS 1.2 and 1.3, and through every outcome: a
certificate sent, one with its chain, none, a suspension then a certificate,
and a callback that raises. Every 100th handshake uses a new context with a
new callback (so contexts are made and freed all along).

The resident set size and the number of Python objects are sampled every
``--every`` handshakes. After ``--warmup`` handshakes (allocator pools and
caches filled), neither may grow by more than ``--max-growth-mib`` /
``--max-object-growth``: the exit status says whether memory stayed flat.

    .venv/bin/python tools/soak.py [--handshakes 100000] [--every 10000]
"""

from __future__ import annotations

import argparse
import gc
import os
import ssl
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import trustme
from certs import issue
from worlds import WORLDS, Link, MemoryClient, MemoryServer, client_context, suspension

import openssl_ccb as ccb
from openssl_ccb import lib
from openssl_ccb.core.state import live_contexts
from openssl_ccb.worlds import pyopenssl_bundled

OUTCOMES = ("send", "chain", "none", "suspend", "raise")
VERSIONS = ("TLSv1.2", "TLSv1.3")


class Boom(Exception):
    pass


def bundled(world: str) -> bool:
    return world == "pyopenssl" and ccb.pyopenssl_route() == "bundled"


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Soak:
    def __init__(self) -> None:
        self.ca = trustme.CA()
        server_cert = self.ca.issue_cert("localhost")
        root = issue("Soak Client CA", ca=True)
        inter = issue("Soak Intermediate", root, ca=True)
        self.leaf = issue("soak client", root).credential()
        chained = issue("soak client via intermediate", inter)
        self.chained = chained.credential(inter)
        # pyOpenSSL's bundled route refuses a returned chain: there the
        # intermediate is set on the Context and the callback returns the leaf.
        self.inter, self.chained_alone = inter, chained.credential()
        self.servers = {}
        for version in VERSIONS:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server_cert.configure_cert(ctx)
            ctx.load_verify_locations(cadata=root.pem.decode())
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion[version.replace(".", "_")]
            self.servers[version] = ctx
        self.contexts = {(w, v): self.context(w, v) for w in WORLDS for v in VERSIONS}

    def callback(self, outcome: str, world: str) -> Any:
        chained = self.chained_alone if bundled(world) else self.chained

        def choose(request: ccb.CertificateRequest) -> Any:
            if outcome == "send":
                return self.leaf
            if outcome == "chain":
                return chained
            if outcome == "suspend":
                if request.attempt == 1:
                    raise ccb.WantX509Lookup()
                return self.leaf
            if outcome == "raise":
                raise Boom("soak")
            return None

        return choose

    def context(self, world: str, version: str, outcome: str = "") -> Any:
        ctx = client_context(world, self.ca, version)
        if outcome == "chain" and bundled(world):
            ctx.add_extra_chain_cert(self.inter.cert)
        return ctx

    def handshake(self, i: int) -> None:
        world = WORLDS[i % 3]
        version = VERSIONS[(i // 3) % 2]
        outcome = OUTCOMES[(i // 6) % len(OUTCOMES)]
        fresh = i % 100 == 99
        ctx = self.context(world, version, outcome) if fresh else self.contexts[world, version]
        if fresh or world != "pyopenssl":
            ccb.set_client_cert_cb(ctx, self.callback(outcome, world))
        else:  # pyOpenSSL 26 refuses to change a used Context: one per outcome
            key = (world, version, outcome)
            if key not in self.contexts:
                self.contexts[key] = self.context(world, version, outcome)
                ccb.set_client_cert_cb(self.contexts[key], self.callback(outcome, world))
            ctx = self.contexts[key]
        link = Link(MemoryClient(world, ctx), MemoryServer(self.servers[version]))
        try:
            for _ in range(20):
                try:
                    done = link.client.handshake_step()
                except suspension(world):
                    done = False
                server_done = link.server.handshake_step()
                link.move()
                if done and server_done:
                    link.exchange()
                    break
            else:
                raise AssertionError("handshake did not finish")
            expected = {
                "send": self.leaf.certificate,
                "chain": self.chained.certificate,
                "suspend": self.leaf.certificate,
                "none": None,
            }[outcome]
            assert link.server.peer_der() == expected, (i, world, version, outcome)
        except Boom:
            assert outcome == "raise", (i, world, version, outcome)
        assert lib.ERR_peek_error() == 0, (i, world, version, outcome)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--handshakes", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=10_000)
    parser.add_argument("--max-growth-mib", type=float, default=4.0)
    parser.add_argument("--max-object-growth", type=int, default=2_000)
    args = parser.parse_args()

    soak = Soak()
    print(
        f"soak: {args.handshakes} handshakes; Python {sys.version.split()[0]}; "
        f"{ssl.OPENSSL_VERSION}; pyOpenSSL route {ccb.pyopenssl_route()}"
    )
    print(f"{'handshakes':>10}  {'RSS MiB':>8}  {'objects':>8}  {'contexts':>8}  {'seconds':>7}")
    samples = []
    start = time.monotonic()
    for i in range(args.handshakes):
        soak.handshake(i)
        done = i + 1
        if done % args.every == 0 or done == args.handshakes:
            gc.collect()
            sample = (
                done,
                rss(),
                len(gc.get_objects()),
                live_contexts() + len(pyopenssl_bundled._bundled),
            )
            samples.append(sample)
            print(
                f"{done:>10}  {sample[1] / 2**20:>8.1f}  {sample[2]:>8}  {sample[3]:>8}  "
                f"{time.monotonic() - start:>7.0f}",
                flush=True,
            )
    base = next((s for s in samples if s[0] >= args.warmup), samples[0])
    last = samples[-1]
    growth = (last[1] - base[1]) / 2**20
    objects = last[2] - base[2]
    flat = growth <= args.max_growth_mib and objects <= args.max_object_growth
    print(
        f"from {base[0]} to {last[0]} handshakes: RSS {growth:+.1f} MiB, "
        f"Python objects {objects:+d}: {'flat' if flat else 'GROWING'}"
    )
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
