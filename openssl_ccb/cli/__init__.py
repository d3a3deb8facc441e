"""The ``openssl-ccb`` command: probe what a server asks of a client
certificate, or connect choosing one from a wallet.

Exit status 0 on success; otherwise 1 (or 2 for bad usage) with one line
on standard error that says why.
"""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import Error
from . import pkcs11
from .common import _VERSIONS, TIMEOUT, _shown, _target, _timeout
from .connect import connect
from .probe import info, probe

_PROBE_HELP = """\
Connects, reads the certificate request the server sends during the
handshake, and stops there. Requests that come after the handshake are
outside what a probe can see: a TLS 1.2 renegotiation or a TLS 1.3
post-handshake request, which servers often make only for some paths
(use connect --get PATH for those)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openssl-ccb", description="What a TLS server asks of a client certificate."
    )
    parser.add_argument("--version", action="version", version=f"openssl-ccb {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "target", metavar="HOST[:PORT]", type=_target, help="the server (port 443 if omitted)"
        )
        sub.add_argument("--cafile", help="CA certificates to verify the server with (PEM)")
        sub.add_argument("--servername", help="the SNI and verified host name (default: HOST)")
        sub.add_argument(
            "--insecure", action="store_true", help="do not verify the server's certificate"
        )
        sub.add_argument(
            "--timeout",
            type=_timeout,
            default=TIMEOUT,
            metavar="SECONDS",
            help=f"for connecting and each read (default {TIMEOUT:g})",
        )
        versions = sub.add_mutually_exclusive_group()
        for version in _VERSIONS:
            versions.add_argument(
                f"--tls{version}",
                dest="tls",
                action="store_const",
                const=version,
                help=f"TLS {version} only",
            )

    p = commands.add_parser(
        "probe",
        help="print what the server asks of a client certificate",
        description=_PROBE_HELP,
    )
    common(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=probe)

    # allow_abbrev=False: "--pin 1234" must not be taken for "--pin-file 1234".
    c = commands.add_parser(
        "connect", help="connect, choosing a certificate from a wallet", allow_abbrev=False
    )
    common(c)
    c.add_argument(
        "--wallet",
        action="append",
        metavar="PATH",
        help="a directory, .p12/.pfx file, or PEM file (key inside or NAME.key beside);"
        " repeat for more",
    )
    passwords = c.add_mutually_exclusive_group()
    passwords.add_argument(
        "--password",
        help="for encrypted keys and PKCS#12 files (others can read it in ps and your"
        " shell history: prefer --password-file, or the prompt)",
    )
    passwords.add_argument(
        "--password-file",
        metavar="FILE",
        help="read the password from FILE's first line (on a terminal, without either,"
        " a wallet that needs a password asks for it)",
    )
    pkcs11.add_arguments(c, "its certificates that have their key there; repeat for more")
    c.add_argument(
        "--get", metavar="/PATH", help="send one HTTP GET; print the status line and the body"
    )
    c.add_argument(
        "--include", action="store_true", help="with --get, print the response headers too"
    )
    c.set_defaults(run=connect)

    i = commands.add_parser(
        "info",
        help="libssl, and the route each kind of context takes; or what a token holds",
        allow_abbrev=False,
    )
    pkcs11.add_arguments(i, "list its certificates, with their keys (instead)")
    i.set_defaults(run=info)
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        hint = ""
        if args.command == "connect" and not any(e.startswith("-") for e in extra):
            hint = " (give --wallet once for each path: --wallet A --wallet B)"
        parser.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    if args.command == "connect" and not (args.wallet or args.pkcs11):
        parser.error("connect needs --wallet PATH or --pkcs11 URI (or both)")
    if args.command == "connect" and args.include and not args.get:
        parser.error("--include goes with --get")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.command == "info" and args.pkcs11:
        args.run = pkcs11.show
    try:
        return int(args.run(args))
    except ssl.SSLCertVerificationError as exc:
        hint = "--servername NAME" if exc.verify_code == 62 else "--cafile FILE"  # hostname
        reason = f"{exc.verify_message or exc}: give {hint}, or --insecure to skip the check"
        print(f"openssl-ccb: {_shown(f'certificate verify failed: {reason}')}", file=sys.stderr)
        return 1
    except (Error, OSError, ssl.SSLError, ssl.CertificateError) as exc:
        reason = str(exc) or type(exc).__name__
        print(f"openssl-ccb: {_shown(reason)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
