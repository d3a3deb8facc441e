"""What the commands share: targets, contexts, connections, safe output."""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import ssl
import unicodedata
from typing import Any, NamedTuple

from ..errors import Error

TIMEOUT = 15.0
# Under TLS 1.3 the client's handshake ends before the server has read its
# certificate: the server's verdict (an alert, or nothing) comes after. A
# server that accepted waits for a request, so silence this long is a yes.
VERDICT_WAIT = 1.0
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class _Probed(Exception):
    """Raised by the probe's callback: it has read the request, no need to go on."""


class _Target(NamedTuple):
    text: str
    host: str
    port: int


# Controls (C0, DEL, C1 such as U+009B CSI), format characters (bidi overrides
# and isolates, marks, zero-width) and line/paragraph separators: what a name
# or a server could use to drive the terminal or reorder what it shows.
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp"})


def _unsafe(ch: str) -> bool:
    return not ch.isprintable() and unicodedata.category(ch) in _UNSAFE


def _shown(text: str, keep: str = "") -> str:
    """Text for a terminal: each unsafe character (but those in ``keep``) as its
    UTF-8 bytes in ``\\XX``, the way OpenSSL already escapes C0 in names (RFC 4514)."""
    return "".join(
        "".join(f"\\{b:02X}" for b in c.encode()) if c not in keep and _unsafe(c) else c
        for c in text
    )


def _json_text(report: dict[str, Any]) -> str:
    """JSON, readable UTF-8, but with every unsafe character as a ``\\uXXXX`` escape.

    json.dumps already escapes C0 inside strings, so the only raw controls
    left are its own line breaks; an escape of anything else is still valid
    JSON for the same string.
    """
    text = json.dumps(report, indent=2, ensure_ascii=False)
    return "".join(json.dumps(c)[1:-1] if c != "\n" and _unsafe(c) else c for c in text)


def _target(text: str) -> _Target:
    """HOST[:PORT] for argparse: a bad port is a usage error (exit 2)."""
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port or (host.count(":") and not host.startswith("[")):
        host, port = text, "443"  # no port, or a bare IPv6 address
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}: not a number") from None
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}: not in 1..65535")
    return _Target(text, host.strip("[]"), number)


def _timeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds above 0: {text!r}")
    return seconds


def _context(args: argparse.Namespace) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=args.cafile)
    except OSError as exc:  # ssl.create_default_context does not name the file
        raise Error(f"cannot use --cafile {args.cafile!r}: {exc.strerror or exc}") from exc
    if args.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if args.tls:
        ctx.minimum_version = ctx.maximum_version = _VERSIONS[args.tls]
    return ctx


def _server_name(args: argparse.Namespace) -> str:
    return str(args.servername or args.target.host)


def _sni(name: str) -> str | None:
    """What ssl sends as SNI for this name: nothing for an IP address."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    return None


def _connect(args: argparse.Namespace, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    target = args.target
    sock = socket.create_connection((target.host, target.port), timeout=args.timeout)
    try:
        return ctx.wrap_socket(sock, server_hostname=_server_name(args))
    except BaseException:
        sock.close()
        raise


# --- the server's certificate, read without cryptography ------------------------
