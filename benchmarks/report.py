"""Targets and the readable table."""

from __future__ import annotations

from typing import Any

HANDSHAKE_LIMIT = 1.02
LAYER_LIMIT_NS = 2000.0
SCALING_LIMIT = 1.6
WALLET_IDLE_LIMIT = 1.005  # idle Wallet / C callback (section 1)
BUSY_LIMITS = {"Wallet": 1.05, "Credential": 1.10}  # p50 / static with 4 busy threads
CALLBACK_MODES = ("Credential", "cryptography")
FLOOR = 'extern "Python" + a call'  # the least a trampoline calling a Python callable does


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: what it asks, what was measured, met or not."""
    out: list[dict[str, Any]] = []

    def target(name: str, measured: str, met: bool) -> None:
        out.append({"target": name, "measured": measured, "met": met})

    for cell in results.get("handshakes", []):
        for mode in CALLBACK_MODES:
            ratio = cell["ratio_to_static"][mode]["median"]
            target(
                f"handshake {cell['world']} {cell['version']} {cell['key']} {mode}/static"
                f" <= {HANDSHAKE_LIMIT}",
                f"{ratio:.4f}",
                ratio <= HANDSHAKE_LIMIT,
            )
    if "dispatch" in results:
        d = results["dispatch"]
        ns = d["ns_per_call"]
        for other in ("ffi.callback", "ctypes"):
            target(
                f"dispatch: ours (None) no slower than {other}",
                f"{ns['ours, None']:.0f} ns vs {ns[other]:.0f} ns"
                f" (the contract's floor, {FLOOR}: {ns[FLOOR]:.0f} ns)",
                ns["ours, None"] <= ns[other],
            )
        layer = d["layer_ns"]["ours, Credential"]
        target(
            f"dispatch: layer's own work with a Credential < {LAYER_LIMIT_NS:.0f} ns",
            f"{layer:.0f} ns",
            layer < LAYER_LIMIT_NS,
        )
    for m in results.get("memory", []):
        target(
            f"memory: {m['workload']} ({m['n']}): RSS growth <= 1 MiB",
            f"{m['rss_growth_bytes'] / 1024:.0f} KiB",
            m["rss_ok"],
        )
        target(
            f"memory: {m['workload']} ({m['n']}): no Python object growth",
            f"{m['traced_growth_bytes']:+d} B traced, {m['gc_objects_growth']:+d} gc objects",
            m["objects_ok"],
        )
    for t in results.get("threads", []):
        if t["transport"] != "sockets":
            continue  # memory BIOs measure the harness's own GIL use: shown, not judged
        scaling = t["scaling"]["Credential"]["median"]
        target(
            f"threads: {t['world']} over sockets, 2 threads / 1 thread >= {SCALING_LIMIT}"
            " (callback)",
            f"{scaling:.2f} (static: {t['scaling']['static']['median']:.2f}, "
            f"machine: {t['machine_scaling']['median']:.2f})",
            scaling >= SCALING_LIMIT,
        )
    for cell in results.get("handshakes", []):
        wallet = cell.get("wallet_to_c_callback")
        if wallet is not None:
            target(
                f"handshake {cell['world']} {cell['version']} {cell['key']} Wallet/C callback"
                f" <= {WALLET_IDLE_LIMIT}",
                f"{wallet['median']:.4f}",
                wallet["median"] <= WALLET_IDLE_LIMIT,
            )
    for b in results.get("busy", []):
        if b["busy_threads"] != 4:
            continue
        for mode, limit in BUSY_LIMITS.items():
            ratio = b["p50_to_static"][mode]
            target(
                f"busy: 4 threads, {mode} p50 / static <= {limit}", f"{ratio:.3f}", ratio <= limit
            )
    for c in results.get("signer", []):
        signer, floor = c["signer_to_static"], c["floor_to_c_callback"]
        target(
            f"signer {c['world']} {c['version']} {c['key']}: signer/static key - 1"
            " <= Python floor/C callback - 1 (one Python entry)",
            f"{signer['median'] - 1:+.4f} vs {floor['median'] - 1:+.4f}",
            signer["median"] <= floor["median"],
        )
    return out


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _ratio(r: dict[str, Any] | None) -> str:
    if r is None:
        return "n/a"
    return f"{r['median']:.4f} [{r['ci95_low']:.3f}, {r['ci95_high']:.3f}]"


def render(results: dict[str, Any]) -> str:
    env = results["environment"]
    parts = [
        "openssl-ccb benchmarks",
        f"machine: {env['cpu']}, {env['cpus']} CPUs, {env['memory_gib']} GiB, {env['system']}",
        f"python: {env['python']} ({env['executable']}); libssl: {env['libssl']}",
        f"openssl-ccb {env['openssl_ccb']}",
        f"pyOpenSSL {env['pyopenssl']} on {env['pyopenssl_openssl']}: "
        f"route {env['pyopenssl_route']!r}; cryptography {env['cryptography']}, cffi {env['cffi']}",
        f"mode: {results['mode']}; every figure is a median over interleaved rounds; ratios are"
        " medians of per-round paired ratios [95% interval]",
    ]
    if "handshakes" in results:
        rows = []
        for c in results["handshakes"]:
            r = c["ratio_to_static"]
            rows.append(
                [
                    c["world"],
                    c["version"],
                    c["key"],
                    f"{c['us_median']['static']:.0f}",
                    _ratio(r.get("C callback")),
                    _ratio(r["Python floor"]),
                    _ratio(r["Credential"]),
                    _ratio(r["Wallet"]),
                    _ratio(r["cryptography"]),
                ]
            )
        n = results["handshakes"][0]["handshakes_per_mode"]
        parts += [
            "",
            f"1. Handshake overhead: callback / static, full in-memory handshakes"
            f" ({n} per mode per cell; target <= {HANDSHAKE_LIMIT})",
            _table(
                [
                    "world",
                    "version",
                    "client key",
                    "static µs",
                    "C callback",
                    "Python floor",
                    "Credential",
                    "Wallet",
                    "cryptography objects",
                ],
                rows,
            ),
        ]
    if "dispatch" in results:
        d = results["dispatch"]
        situ = d["in_situ_ns_per_call"]
        rows = [[name, f"{ns:.1f}", f"{situ[name]:.0f}"] for name, ns in d["ns_per_call"].items()]
        ratio_rows = [[name, _ratio(r)] for name, r in d["ratios"].items()]
        layer = d["layer_ns"]
        parts += [
            "",
            f"2. Dispatch: one call through the client_cert_cb pointer from a C loop"
            f" ({d['calls_per_variant']} calls per variant)",
            _table(
                [
                    "variant",
                    "ns per call (C loop)",
                    f"ns per call in situ ({d['in_situ_handshakes_per_variant']} handshakes)",
                ],
                rows,
            ),
            "",
            _table(["ratio", "median [95%]"], ratio_rows),
            f"layer's own work per call (ours - C doing the same): None {layer['ours, None']:.0f}"
            f" ns, Credential {layer['ours, Credential']:.0f} ns (target < {LAYER_LIMIT_NS:.0f})",
        ]
    if "memory" in results:
        rows = [
            [
                m["workload"],
                str(m["n"]),
                f"{m['rss_growth_bytes'] / 1024:.0f} KiB",
                f"{m['gc_objects_growth']:+d}",
                f"{m['traced_growth_bytes']:+d} B / {m['traced_growth_blocks']:+d}",
                "" if "callables_alive" not in m else str(m["callables_alive"]),
            ]
            for m in results["memory"]
        ]
        parts += [
            "",
            "3. Memory: growth after a warm-up (target: RSS <= 1 MiB, no Python object growth)",
            _table(
                ["workload", "n", "RSS growth", "gc objects", "tracemalloc net", "callables alive"],
                rows,
            ),
        ]
    if "threads" in results:
        rows = []
        for t in results["threads"]:
            us = t["us_per_handshake_wall"]
            rows.append(
                [
                    t["world"],
                    t["transport"],
                    f"{us['static, 1 thread']:.0f} / {us['static, 2 threads']:.0f}",
                    f"{us['Credential, 1 thread']:.0f} / {us['Credential, 2 threads']:.0f}",
                    _ratio(t["scaling"]["static"]),
                    _ratio(t["scaling"]["Credential"]),
                    _ratio(t["machine_scaling"]),
                    f"{t['cpu_use_2_threads']:.2f}",
                ]
            )
        parts += [
            "",
            "4. Threads: throughput of 2 threads / 1 thread, one shared client context"
            f" (target >= {SCALING_LIMIT} with the callback, over sockets; memory BIOs for"
            " comparison)",
            _table(
                [
                    "world",
                    "transport",
                    "static µs/hs 1T / 2T",
                    "callback µs/hs 1T / 2T",
                    "static scaling",
                    "callback scaling",
                    "machine scaling",
                    "CPUs used (2T)",
                ],
                rows,
            ),
        ]
    if "signer" in results:
        rows = [
            [
                c["world"],
                c["version"],
                c["key"],
                f"{c['us_median']['static key']:.0f}",
                f"{c['us_median']['signer']:.0f}",
                _ratio(c["signer_to_static"]),
                _ratio(c["floor_to_c_callback"]),
                _ratio(c["static_to_c_callback"]),
            ]
            for c in results["signer"]
        ]
        n = results["signer"][0]["handshakes_per_mode"]
        parts += [
            "",
            "5. Signers: Credential.from_signer (an in-process cryptography key signs) against"
            f" Credential.load of the same key ({n} per mode per cell; target: the signer adds"
            " no more than one Python entry, Python floor / C callback)",
            _table(
                [
                    "world",
                    "version",
                    "client key",
                    "static key µs",
                    "signer µs",
                    "signer / static key",
                    "Python floor / C callback",
                    "static key / C callback",
                ],
                rows,
            ),
        ]
    if "busy" in results:
        from .busy import MODES as BUSY_MODES

        rows = [
            [str(b["busy_threads"])]
            + [
                f"{b['p50_ms'][m]:.1f} / {b['p99_ms'][m]:.1f} ({b['p50_to_static'][m]:.2f})"
                for m in BUSY_MODES
            ]
            for b in results["busy"]
        ]
        n = results["busy"][0]["handshakes_per_mode"]
        parts += [
            "",
            "6. Busy threads: p50 / p99 ms (p50 / static), TLS 1.3 over sockets against"
            f" openssl s_server ({n} per client per row)",
            _table(["busy threads", *BUSY_MODES], rows),
        ]
    verdicts_ = results["targets"]
    missed = [v for v in verdicts_ if not v["met"]]
    parts += ["", f"Targets: {len(verdicts_) - len(missed)} of {len(verdicts_)} met"]
    parts += [f"  MISSED  {v['target']}: {v['measured']}" for v in missed]
    parts.append(f"({results['seconds']} s)")
    return "\n".join(parts)
