"""The ``openssl-ccb`` command: probe what a server asks of a client
certificate, or connect choosing one from a wallet.

Exit status 0 on success; otherwise 1 (or 2 for bad usage) with one line
on standard error that says why.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import sys
import unicodedata
from collections.abc import Sequence
from typing import Any

from . import __version__
from .api import set_client_cert_cb
from .credential import Credential
from .errors import Error
from .libssl_proof import our_version
from .request import CertificateRequest
from .selection import Wallet, _load_pem_file, fit

TIMEOUT = 15.0


class _Probed(Exception):
    """Raised by the probe's callback: it has read the request, no need to go on."""


# Controls (C0, DEL, C1 such as U+009B CSI), format characters (bidi overrides
# and isolates, marks, zero-width) and line/paragraph separators: what a name
# or a server could use to drive the terminal or reorder what it shows.
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp"})


def _unsafe(ch: str) -> bool:
    return not ch.isprintable() and unicodedata.category(ch) in _UNSAFE


def _shown(text: str) -> str:
    """Text for a terminal: each unsafe character as its UTF-8 bytes in ``\\XX``,
    the way OpenSSL already escapes C0 in names (RFC 4514)."""
    return "".join("".join(f"\\{b:02X}" for b in c.encode()) if _unsafe(c) else c for c in text)


def _json_text(report: dict[str, Any]) -> str:
    """JSON, readable UTF-8, but with every unsafe character as a ``\\uXXXX`` escape.

    json.dumps already escapes C0 inside strings, so the only raw controls
    left are its own line breaks; an escape of anything else is still valid
    JSON for the same string.
    """
    text = json.dumps(report, indent=2, ensure_ascii=False)
    return "".join(json.dumps(c)[1:-1] if c != "\n" and _unsafe(c) else c for c in text)


def _address(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or "]" in port or (host.count(":") and not host.startswith("[")):
        host, port = target, "443"  # no port, or a bare IPv6 address
    host = host.strip("[]")
    try:
        return host, int(port)
    except ValueError:
        raise Error(f"bad port in {target!r}") from None


def _context(args: argparse.Namespace) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=args.cafile)
    if args.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _connect(args: argparse.Namespace, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    host, port = _address(args.target)
    server_name = args.servername or host
    sock = socket.create_connection((host, port), timeout=TIMEOUT)
    try:
        return ctx.wrap_socket(sock, server_hostname=server_name)
    except BaseException:
        sock.close()
        raise


def _describe(request: CertificateRequest) -> dict[str, Any]:
    return {
        "protocol": request.version,
        "server_name": request.server_name,
        "acceptable_cas": request.acceptable_ca_names,
        "acceptable_cas_der_hex": [der.hex() for der in request.acceptable_cas],
        "signature_algorithms": request.signature_algorithms,
    }


def probe(args: argparse.Namespace) -> int:
    ctx = _context(args)
    seen: dict[str, Any] = {}

    def look(request: CertificateRequest) -> None:
        seen.update(_describe(request))
        raise _Probed

    set_client_cert_cb(ctx, look)
    report: dict[str, Any] = {"server": args.target}
    try:
        with _connect(args, ctx) as tls:
            report.update(requests_certificate=False, protocol=tls.version())
    except _Probed:
        report.update(requests_certificate=True, **seen)
    if args.json:
        print(_json_text(report))
        return 0
    print(_shown(f"server: {args.target} ({report['protocol']})"))
    if not report["requests_certificate"]:
        print("asks for no client certificate")
        return 0
    print("asks for a client certificate")
    cas = report["acceptable_cas"]
    print(f"acceptable CAs: {len(cas) or 'any (none named)'}")
    for name in cas:
        print(f"  {_shown(name)}")
    print(_shown(f"signature algorithms: {', '.join(report['signature_algorithms']) or 'unknown'}"))
    return 0


def _wallet(paths: Sequence[str], password: str | None) -> Wallet:
    credentials: list[Credential] = []
    for path in paths:
        if os.path.isdir(path):
            credentials.extend(Wallet.from_directory(path, password))
        elif path.endswith((".p12", ".pfx")):
            credentials.append(Credential.from_pkcs12(path, password))
        else:
            directory, name = os.path.split(path)
            stem = os.path.splitext(name)[0]
            try:
                keys = {n for n in os.listdir(directory or ".") if n == f"{stem}.key"}
                credentials.append(_load_pem_file(path, keys, stem, password))
            except (Error, OSError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else exc
                raise Error(f"wallet file {path!r}: {reason}") from exc
    return Wallet(credentials)


def connect(args: argparse.Namespace) -> int:
    wallet = _wallet(args.wallet, args.password)
    ctx = _context(args)
    outcome: dict[str, Any] = {}

    def choose(request: CertificateRequest) -> Credential | None:
        reasons = []
        for credential in wallet:
            ok, why = fit(request, credential._x509, credential._key, credential._chain)
            if ok:
                outcome.update(credential=credential, why=why)
                return credential
            reasons.append(f"{credential.subject}: {why}")
        outcome.update(credential=None, why="; ".join(reasons) or "the wallet is empty")
        return None

    set_client_cert_cb(ctx, choose)
    with _connect(args, ctx) as tls:
        print(f"connected to {args.target} ({tls.version()})")
        if not outcome:
            print("the server asked for no client certificate")
        elif outcome["credential"] is None:
            print(_shown(f"sent no certificate: nothing in the wallet fits ({outcome['why']})"))
        else:
            chosen: Credential = outcome["credential"]
            print(_shown(f"sent: {chosen.subject}"))
            print(_shown(f"  issued by {chosen.issuer}"))
            print(_shown(f"  because {outcome['why']}"))
        if args.get:
            host = args.servername or _address(args.target)[0]
            tls.sendall(
                f"GET {args.get} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            status = tls.makefile("rb").readline().decode("latin-1").strip()
            if not status:
                raise Error("the server closed the connection without an HTTP response")
            print(_shown(status))  # the server's own words
    return 0


def info(args: argparse.Namespace) -> int:
    from .worlds.stdlib import prove_same_libssl

    print(f"openssl-ccb {__version__} on {our_version()}")
    try:
        prove_same_libssl()
        print(f"ssl.SSLContext: supported ({ssl.OPENSSL_VERSION}, the same libssl)")
    except Error as exc:
        print(f"ssl.SSLContext: refused: {exc}")
    try:
        import OpenSSL.SSL  # noqa: F401
    except ImportError:
        print("pyOpenSSL: not installed")
    else:
        from .worlds.pyopenssl import describe_route

        print(f"pyOpenSSL route: {describe_route()}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openssl-ccb", description="What a TLS server asks of a client certificate."
    )
    parser.add_argument("--version", action="version", version=f"openssl-ccb {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("target", metavar="HOST[:PORT]", help="the server (port 443 if omitted)")
        sub.add_argument("--cafile", help="CA certificates to verify the server with (PEM)")
        sub.add_argument("--servername", help="the SNI and verified host name (default: HOST)")
        sub.add_argument(
            "--insecure", action="store_true", help="do not verify the server's certificate"
        )

    p = commands.add_parser("probe", help="print what the server asks of a client certificate")
    common(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=probe)

    c = commands.add_parser("connect", help="connect, choosing a certificate from a wallet")
    common(c)
    c.add_argument(
        "--wallet",
        nargs="+",
        required=True,
        metavar="PATH",
        help="directories, .p12/.pfx files, or PEM files (key inside or NAME.key beside)",
    )
    c.add_argument("--password", help="for encrypted keys and PKCS#12 files")
    c.add_argument("--get", metavar="/PATH", help="send one HTTP GET and print the status line")
    c.set_defaults(run=connect)

    i = commands.add_parser("info", help="libssl, and the route each kind of context takes")
    i.set_defaults(run=info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (Error, OSError, ssl.SSLError, ssl.CertificateError) as exc:
        reason = str(exc) or type(exc).__name__
        print(f"openssl-ccb: {_shown(reason)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
