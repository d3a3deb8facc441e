"""``openssl-ccb probe``: what a server asks of a client certificate (and ``info``)."""

from __future__ import annotations

import argparse
import ssl
from typing import Any

from .. import __version__, _der
from .._binding import lib
from ..api import set_client_cert_cb
from ..credential import load_certificate, name_to_string
from ..errors import Error
from ..libssl_proof import our_version
from ..request import CertificateRequest
from .common import _connect, _context, _json_text, _Probed, _server_name, _shown, _sni


def _certificate(der: bytes | None) -> dict[str, Any] | None:
    if der is None:
        return None
    x509 = load_certificate(der, "the server's certificate")
    try:
        read = _der.facts(der)
        not_before, not_after = read.not_before.isoformat(), read.not_after.isoformat()
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
        "certificate_types": request.certificate_types,  # TLS 1.2 only
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
    if report["certificate_types"]:  # TLS 1.3 has none
        print(_shown(f"client certificate types: {', '.join(report['certificate_types'])}"))
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
