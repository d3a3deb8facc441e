"""The command line: ``python -m benchmarks [--quick] [--json] [--only SECTION ...]``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from . import busy, dispatch, environment, handshakes, memory, report, signer, threads
from .pki import make_pki

# (rounds, batch) and counts per section, full and quick.
CONFIG: dict[str, dict[str, Any]] = {
    "full": {
        "handshakes": {"rounds": 160, "batch": 15},
        "dispatch": {"rounds": 20, "calls": 50_000},
        "memory": {"handshakes": 20_000, "contexts": 10_000},
        "threads": {"rounds": 12, "per_thread": 250},
        "signer": {"rounds": 160, "batch": 15},
        "busy": {"per_mode": 300},
    },
    "quick": {
        "handshakes": {"rounds": 20, "batch": 5},
        "dispatch": {"rounds": 5, "calls": 20_000},
        "memory": {"handshakes": 1_000, "contexts": 1_000},
        "threads": {"rounds": 3, "per_thread": 100},
        "signer": {"rounds": 20, "batch": 5},
        "busy": {"per_mode": 40},
    },
}
SECTIONS = ("handshakes", "dispatch", "memory", "threads", "signer", "busy")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=SECTIONS)
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    config = CONFIG[mode]
    worlds = ("ssl", "pyOpenSSL")
    started = time.monotonic()
    pki = make_pki()
    results: dict[str, Any] = {
        "environment": environment.describe(),
        "mode": mode,
        "config": {section: config[section] for section in args.only},
    }

    def progress(section: str) -> None:
        if not args.json:
            print(f"... {section} ({time.monotonic() - started:.0f} s)", file=sys.stderr)

    if "handshakes" in args.only:
        progress("handshakes")
        c = config["handshakes"]
        results["handshakes"] = handshakes.run(pki, c["rounds"], c["batch"], worlds)
    if "dispatch" in args.only:
        progress("dispatch")
        c = config["dispatch"]
        results["dispatch"] = dispatch.run(pki, c["rounds"], c["calls"])
    if "memory" in args.only:
        progress("memory")
        c = config["memory"]
        results["memory"] = memory.run(pki, c["handshakes"], c["contexts"], worlds)
    if "threads" in args.only:
        progress("threads")
        c = config["threads"]
        results["threads"] = [
            threads.run(pki, c["rounds"], c["per_thread"], w, t)
            for t in threads.TRANSPORTS
            for w in worlds
        ]
    if "signer" in args.only:
        progress("signer")
        c = config["signer"]
        results["signer"] = signer.run(pki, c["rounds"], c["batch"])
    if "busy" in args.only:
        progress("busy")
        results["busy"] = busy.run(pki, config["busy"]["per_mode"])
    results["targets"] = report.verdicts(results)
    results["seconds"] = round(time.monotonic() - started, 1)
    pki.directory.cleanup()
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        print(report.render(results))
    return 0
