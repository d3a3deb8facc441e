"""``openssl-ccb probe``: what a server asks of a client certificate (and ``info``)."""

from __future__ import annotations

import argparse
import datetime
import ssl
from typing import Any

from .. import __version__
from .._binding import lib
from ..api import set_client_cert_cb
from ..credential import load_certificate, name_to_string
from ..errors import Error
from ..libssl_proof import our_version
from ..request import CertificateRequest
from .common import _connect, _context, _json_text, _Probed, _server_name, _shown, _sni


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


def info(args: argparse.Namespace) -> int:
    from ..worlds.stdlib import prove_same_libssl

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
        from ..worlds.pyopenssl import describe_route

        print(f"pyOpenSSL route: {describe_route()}")
    return 0
