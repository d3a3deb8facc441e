"""PKCS#11 tokens on the command line: ``connect --pkcs11 URI`` and ``info --pkcs11 URI``.

The PIN comes from ``--pin-file``, else the URI's ``pin-value``/``pin-source``,
else a prompt on the terminal: never from an argument of its own, which
anyone could read in ``ps``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any, Callable, TypeVar

from .._binding import lib
from .._der import facts
from .._pkcs11_token import PinRequired
from .._pkcs11_uri import parse_uri
from ..credential import load_certificate, name_to_string
from ..errors import Error
from ..selection import Wallet
from .common import _shown

T = TypeVar("T")


def _uri(text: str) -> str:
    """A pkcs11: URI for argparse: a malformed one is a usage error (exit 2)."""
    try:
        parse_uri(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--pkcs11",
        action="append",
        type=_uri,
        metavar="URI",
        help=f"a PKCS#11 token (RFC 7512 pkcs11: URI, such as 'pkcs11:token=NAME'): {what}",
    )
    parser.add_argument(
        "--pin-file",
        metavar="FILE",
        help="read the token's PIN from FILE's first line (else the URI's pin-value,"
        " else a prompt on the terminal)",
    )
    parser.add_argument(
        "--module",
        metavar="PATH",
        help="the PKCS#11 module (default: the URI's module-path, else $PKCS11_MODULE)",
    )


def _pin(args: argparse.Namespace) -> str | None:
    if args.pin_file is None:
        return None
    with open(args.pin_file, encoding="utf-8") as f:
        lines = f.read().splitlines()
    return lines[0] if lines else ""


def with_pin(args: argparse.Namespace, uri: str, call: Callable[..., T]) -> T:
    """``call(uri, pin, module)``; asks for the PIN on the terminal when the token needs one."""
    if not (args.module or parse_uri(uri).module_path or os.environ.get("PKCS11_MODULE")):
        raise Error(
            "no PKCS#11 module: give --module PATH, put module-path= in the URI or set "
            "PKCS11_MODULE (for example /usr/lib/softhsm/libsofthsm2.so)"
        )
    pin = _pin(args)
    try:
        return call(uri, pin, args.module)
    except PinRequired:
        if pin is not None or not sys.stdin.isatty():
            raise
    try:
        pin = getpass.getpass(f"PIN for {uri.split('?')[0]}: ")
    except EOFError:
        raise Error("the token needs a PIN, and none was typed") from None
    return call(uri, pin, args.module)


def token_credentials(args: argparse.Namespace) -> list[Any]:

    credentials: list[Any] = []
    for uri in args.pkcs11 or ():
        credentials.extend(with_pin(args, uri, Wallet.from_pkcs11))
    return credentials


def _hex(data: bytes) -> str:
    return data.hex() or "(none)"


def show(args: argparse.Namespace) -> int:
    """``info --pkcs11 URI``: each certificate on the token, and whether its key is there."""
    from .. import pkcs11

    for uri in args.pkcs11:
        items = with_pin(args, uri, pkcs11.contents)
        print(_shown(f"{uri.split('?')[0]}: {len(items)} certificate(s)"))
        for item in items:
            x509 = load_certificate(item.certificate)
            dates = facts(item.certificate)
            print(_shown(f"  {item.label!r} (id {_hex(item.id)})"))
            print(_shown(f"    subject: {name_to_string(lib.X509_get_subject_name(x509))}"))
            print(_shown(f"    issuer: {name_to_string(lib.X509_get_issuer_name(x509))}"))
            start, end = (f"{t:%Y-%m-%d %H:%M:%S}" for t in (dates.not_before, dates.not_after))
            print(f"    valid: {start} to {end} UTC")
            if item.signer is None:
                print("    private key: not on the token")
            else:
                schemes = ", ".join(item.signer.schemes) or "none this token can make"
                print(f"    private key: {item.key_type} on the token; signs {schemes}")
            if item.chain:
                print(f"    chain: {len(item.chain)} certificate(s) from the token")
    return 0
