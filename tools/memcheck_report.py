"""Judge valgrind memcheck XML reports for `make memcheck`.

Fails (exit 1) on
- any invalid read, write or free, use of uninitialised memory, or bad
  syscall argument whose stack passes through openssl-ccb's compiled module
  or the system libssl/libcrypto; with --strict, on any such error at all;
- any definitely lost block allocated through openssl-ccb's compiled module.

Everything else (leaks of the interpreter, cffi or cryptography, errors inside
the interpreter when not --strict) is counted and summarised, not failed.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

OURS = "_openssl.abi3.so"
OPENSSL = ("libssl.so", "libcrypto.so")
LEAKS = ("Leak_DefinitelyLost",)  # indirect losses hang off a definite one
SHOWN = 10  # failures printed in full; the rest are counted


def frames(error: ET.Element) -> list[str]:
    stack = error.find("stack")
    if stack is None:
        return []
    return [
        f"{frame.findtext('fn') or '?'} ({Path(frame.findtext('obj') or '?').name})"
        for frame in stack.iter("frame")
    ]


def describe(error: ET.Element) -> str:
    what = error.findtext("what") or error.findtext("xwhat/text") or ""
    return f"{error.findtext('kind')}: {what}\n      " + "\n      ".join(frames(error)[:14])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--strict", action="store_true", help="fail on any memory error")
    args = parser.parse_args()

    failures: list[str] = []
    outside: Counter[str] = Counter()
    leaked_elsewhere = 0
    checked = 0
    for report in args.reports:
        try:
            root = ET.parse(report).getroot()
        except ET.ParseError:
            sys.exit(f"memcheck: {report} is incomplete: did valgrind die?")
        checked += 1
        for error in root.iter("error"):
            kind = error.findtext("kind") or "?"
            stack = " ".join(frames(error))
            ours = OURS in stack
            openssl = any(lib in stack for lib in OPENSSL)
            if kind in LEAKS:
                if ours:
                    failures.append(describe(error))
                else:
                    leaked_elsewhere += int(error.findtext("xwhat/leakedbytes") or 0)
            elif kind.startswith("Leak_"):
                continue
            elif args.strict or ours or openssl:
                failures.append(describe(error))
            else:
                outside[kind] += 1

    print(f"memcheck: {checked} process report(s)")
    print(
        f"  definitely lost outside openssl-ccb (interpreter, cffi, cryptography): "
        f"{leaked_elsewhere} bytes"
    )
    if outside:
        print(
            "  errors inside the interpreter only (not ours, not OpenSSL): "
            + ", ".join(f"{n} {kind}" for kind, n in sorted(outside.items()))
        )
    if failures:
        print(f"  FAILED: {len(failures)} error(s) attributed to openssl-ccb or OpenSSL:")
        for failure in failures[:SHOWN]:
            print("  " + failure)
        if len(failures) > SHOWN:
            print(f"  ... and {len(failures) - SHOWN} more (reports in {args.reports[0].parent})")
        return 1
    print("  no invalid access and no leak attributed to openssl-ccb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
