"""The ``openssl-ccb`` command: probe what a server asks of a client
certificate, or connect choosing one from a wallet.

Exit status 0 on success; otherwise 1 (or 2 for bad usage) with one line
on standard error that says why.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import http.client
import ipaddress
import json
import os
import socket
import ssl
import sys
import unicodedata
from collections.abc import Sequence
from typing import Any, NamedTuple

from . import __version__
from ._binding import lib
from .api import set_client_cert_cb
from .credential import Credential, load_certificate, name_to_string
from .errors import Error
from .libssl_proof import our_version
from .request import CertificateRequest
from .selection import Wallet, _load_pem_file, fit

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


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """One DER element at ``pos``: its tag, where its content starts and ends."""
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4 or pos + size > len(der):
            raise ValueError("bad DER length")
        length, pos = int.from_bytes(der[pos : pos + size], "big"), pos + size
    if pos + length > len(der):
        raise ValueError("DER element overruns its certificate")
    return tag, pos, pos + length


def _time(der: bytes, tag: int, start: int, end: int) -> str:
    text = der[start:end].decode("ascii")
    if tag == 0x17:  # UTCTime, YYMMDDHHMMSSZ; RFC 5280: YY < 50 is 20YY
        text = ("20" if int(text[:2]) < 50 else "19") + text
    elif tag != 0x18:  # GeneralizedTime, YYYYMMDDHHMMSSZ
        raise ValueError("not a time")
    when = datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ")
    return when.replace(tzinfo=datetime.timezone.utc).isoformat()


def _validity(der: bytes) -> tuple[str, str]:
    """notBefore and notAfter of a DER certificate (RFC 5280 4.1), as ISO 8601."""
    _, pos, _ = _tlv(der, 0)  # Certificate
    _, pos, _ = _tlv(der, pos)  # tbsCertificate
    if der[pos] == 0xA0:  # [0] version
        pos = _tlv(der, pos)[2]
    for _field in ("serialNumber", "signature", "issuer"):
        pos = _tlv(der, pos)[2]
    _, pos, _ = _tlv(der, pos)  # validity
    before = _tlv(der, pos)
    after = _tlv(der, before[2])
    return _time(der, *before), _time(der, *after)


def _certificate(der: bytes | None) -> dict[str, Any] | None:
    if der is None:
        return None
    x509 = load_certificate(der, "the server's certificate")
    try:
        not_before, not_after = _validity(der)
    except (IndexError, ValueError):  # OpenSSL parsed it: only an odd time gets here
        not_before = not_after = "unreadable"
    return {
        "subject": name_to_string(lib.X509_get_subject_name(x509)),
        "issuer": name_to_string(lib.X509_get_issuer_name(x509)),
        "not_before": not_before,
        "not_after": not_after,
    }


# --- probe ----------------------------------------------------------------------------


def _describe(request: CertificateRequest) -> dict[str, Any]:
    return {
        "protocol": request.version,
        "server_name": request.server_name,
        "server_certificate": _certificate(request.peer_certificate),
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
    report: dict[str, Any] = {"server": args.target.text}
    try:
        with _connect(args, ctx) as tls:
            report.update(
                requests_certificate=False,
                protocol=tls.version(),
                server_name=_sni(_server_name(args)),
                server_certificate=_certificate(tls.getpeercert(binary_form=True)),
            )
    except _Probed:
        report.update(requests_certificate=True, **seen)
    if args.json:
        print(_json_text(report))
        return 0
    print(_shown(f"server: {args.target.text} ({report['protocol']})"))
    print(_shown(f"server name sent (SNI): {report['server_name'] or 'none'}"))
    cert = report["server_certificate"]
    if cert is not None:
        print(_shown(f"server certificate: {cert['subject']}"))
        print(_shown(f"  issued by {cert['issuer']}"))
        print(_shown(f"  valid from {cert['not_before']} to {cert['not_after']}"))
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


# --- connect --------------------------------------------------------------------------


def _wallet(paths: Sequence[str], password: str | None) -> Wallet:
    credentials: list[Credential] = []
    for path in paths:
        if os.path.isdir(path):
            credentials.extend(Wallet.from_directory(path, password))
        elif path.lower().endswith((".p12", ".pfx")):
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
    wallet = _load_wallet(args)
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

    c = commands.add_parser("connect", help="connect, choosing a certificate from a wallet")
    common(c)
    c.add_argument(
        "--wallet",
        action="append",
        required=True,
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
    c.add_argument(
        "--get", metavar="/PATH", help="send one HTTP GET; print the status line and the body"
    )
    c.add_argument(
        "--include", action="store_true", help="with --get, print the response headers too"
    )
    c.set_defaults(run=connect)

    i = commands.add_parser("info", help="libssl, and the route each kind of context takes")
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
    if args.command == "connect" and args.include and not args.get:
        parser.error("--include goes with --get")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
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
