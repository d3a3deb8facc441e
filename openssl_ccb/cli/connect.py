"""``openssl-ccb connect``: a connection that chooses from a wallet, and the server's verdict."""

from __future__ import annotations

import argparse
import getpass
import http.client
import os
import socket
import ssl
import sys
from collections.abc import Sequence
from typing import Any

from ..api import set_client_cert_cb
from ..credential import Credential
from ..errors import Error
from ..request import CertificateRequest
from ..selection import Wallet
from . import pkcs11
from .common import VERDICT_WAIT, _connect, _context, _server_name, _shown


def _wallet(paths: Sequence[str], password: str | None) -> Wallet:
    credentials: list[Credential] = []
    for path in paths:
        if os.path.isdir(path):
            credentials.extend(Wallet.from_directory(path, password))
        elif path.lower().endswith((".p12", ".pfx")):
            credentials.append(Credential.from_pkcs12(path, password))
        else:
            try:
                with open(path, "rb") as f:
                    holds_key = b"PRIVATE KEY-----" in f.read()
                key = path if holds_key else f"{os.path.splitext(path)[0]}.key"
                if not holds_key and not os.path.exists(key):
                    raise Error(f"no private key in it, and no {os.path.basename(key)} beside it")
                credentials.append(Credential.load(path, key, password=password))
            except (Error, OSError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else exc
                raise Error(f"wallet file {path!r}: {reason}") from exc
    return Wallet(credentials)


def _locked(paths: Sequence[str]) -> bool:
    """Whether any wallet file may want a password: a PKCS#12 or an encrypted PEM."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            files += [os.path.join(path, name) for name in sorted(os.listdir(path))]
        else:
            files.append(path)
    for file in files:
        if file.lower().endswith((".p12", ".pfx")):
            return True
        try:
            with open(file, "rb") as f:
                if b"ENCRYPTED" in f.read(1 << 20):
                    return True
        except OSError:
            continue
    return False


def _password(args: argparse.Namespace) -> str | None:
    if args.password_file is None:
        return args.password  # type: ignore[no-any-return]
    with open(args.password_file, encoding="utf-8") as f:
        lines = f.read().splitlines()
    return lines[0] if lines else ""


def _load_wallet(args: argparse.Namespace) -> Wallet:
    """The wallet; when it will not open without a password and none was given,
    ask for one on the terminal (never echoed, never on the command line)."""
    password = _password(args)
    try:
        return _wallet(args.wallet, password)
    except Error:
        if password is not None or not sys.stdin.isatty() or not _locked(args.wallet):
            raise
    try:
        password = getpass.getpass("wallet password: ")
    except EOFError:
        raise Error("the wallet needs a password, and none was typed") from None
    return _wallet(args.wallet, password)


def _reason(exc: BaseException) -> str:
    """An SSL error as its reason alone ("tlsv13 alert certificate required")."""
    reason = getattr(exc, "reason", None)
    return reason.lower().replace("_", " ") if reason else str(exc) or type(exc).__name__


def _refused(outcome: dict[str, Any], exc: BaseException) -> Error:
    what = "the connection with no certificate"
    if outcome.get("credential") is not None:
        what = "the certificate"
    elif not outcome:
        what = "the connection"
    return Error(f"the server refused {what}: {_reason(exc)}")


def _await_verdict(tls: ssl.SSLSocket, outcome: dict[str, Any], timeout: float) -> None:
    """Read until the server says what it made of the certificate (TLS 1.3)."""
    wait = min(VERDICT_WAIT, timeout)
    tls.settimeout(wait)
    try:
        data = tls.recv(1)
    except socket.timeout:
        # Silent: it accepted, and waits for a request. Some servers (nginx)
        # only judge the certificate when a request comes: say so.
        print(
            f"the server sent no alert within {wait:g} s; some servers (nginx) judge"
            " the certificate only at the first request: --get PATH sends one"
        )
        return
    except (ssl.SSLError, ConnectionError) as exc:
        raise _refused(outcome, exc) from exc
    if not data:
        raise Error("the server closed the connection right after the handshake")


def _write_body(body: bytes) -> None:
    """The server's body: as it is into a pipe, made safe for a terminal."""
    if sys.stdout.isatty():
        print(_shown(body.decode("utf-8", errors="replace"), keep="\n\t"), end="")
        return
    sys.stdout.flush()
    sys.stdout.buffer.write(body)
    sys.stdout.buffer.flush()


def _get(args: argparse.Namespace, tls: ssl.SSLSocket, outcome: dict[str, Any]) -> None:
    host = _server_name(args)
    request = f"GET {args.get} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    tls.settimeout(args.timeout)
    try:
        tls.sendall(request.encode())
        response = http.client.HTTPResponse(tls)
        response.begin()
        status = f"HTTP/{'1.0' if response.version == 10 else '1.1'} "
        print(_shown(f"{status}{response.status} {response.reason}"))  # the server's own words
        if args.include:
            for name, value in response.getheaders():
                print(_shown(f"{name}: {value}"))
        body = response.read()
    except (ssl.SSLError, ConnectionError) as exc:
        raise _refused(outcome, exc) from exc
    except http.client.HTTPException as exc:
        if isinstance(exc, http.client.RemoteDisconnected):
            raise Error("the server closed the connection without an HTTP response") from exc
        raise Error(f"not an HTTP response: {exc!r}") from exc
    if body:
        print()
        _write_body(body)
    if not 200 <= response.status < 300:
        raise Error(f"the server answered {response.status} {response.reason}")


def connect(args: argparse.Namespace) -> int:
    wallet = Wallet([*(_load_wallet(args) if args.wallet else ()), *pkcs11.token_credentials(args)])
    ctx = _context(args)
    outcome: dict[str, Any] = {}

    def choose(request: CertificateRequest) -> Credential | None:
        reasons = []
        for credential, ok, why in wallet.explain(request):
            if ok:
                outcome.update(credential=credential, why=why)
                return credential
            reasons.append(f"{credential.subject}: {why}")
        outcome.update(credential=None, why="; ".join(reasons) or "the wallet is empty")
        return None

    set_client_cert_cb(ctx, choose)
    try:
        tls = _connect(args, ctx)
    except ssl.SSLCertVerificationError:
        raise
    except ssl.SSLError as exc:
        if outcome and not isinstance(exc, ssl.SSLZeroReturnError):
            raise _refused(outcome, exc) from exc  # TLS 1.2: the verdict is in the handshake
        raise
    with tls:
        print(f"connected to {args.target.text} ({tls.version()})")
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
            _get(args, tls, outcome)
        elif outcome and tls.version() == "TLSv1.3":
            _await_verdict(tls, outcome, args.timeout)
    return 0
