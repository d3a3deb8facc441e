"""Real peers: openssl s_server and nginx, through the standard
library, the raw world and pyOpenSSL, with TLS 1.2 and 1.3. Each test checks
the peer's own record of the certificate it received and verified."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from certs import Issued, issue
from peers import Nginx, SServer, nginx_record, page_certificate, page_verify_code
from worlds import WORLDS, Client, client_context, get, suspension

import openssl_ccb as ccb

PEERS = ("s_server", "nginx")


@pytest.fixture(scope="module")
def wallet_pki() -> dict[str, Issued]:
    """Three client CAs and a leaf from each, as a user's wallet would hold."""
    roots = {name: issue(f"{name} Root CA", ca=True) for name in ("Acme", "Globex", "Initech")}
    leaves = {name: issue(f"alice at {name}", root) for name, root in roots.items()}
    return {**{f"{n} root": r for n, r in roots.items()}, **leaves}


def wallet(pki: dict[str, Issued]) -> ccb.Wallet:
    """Acme first, Initech before Globex: the order decides among credentials that fit."""
    return ccb.Wallet(pki[name].credential() for name in ("Acme", "Initech", "Globex"))


@dataclass
class Record:
    """What the peer says it received: certificate fingerprint, verified, protocol."""

    fingerprint: str | None
    verified: bool
    protocol: str


def fingerprint(der: bytes) -> str:
    return hashlib.sha1(der).hexdigest()


def record(kind: str, response: bytes) -> Record:
    if kind == "s_server":
        der = page_certificate(response)
        protocol = re.search(rb"Protocol\s*: (\S+)", response)
        assert protocol, response[-500:]
        return Record(
            None if der is None else fingerprint(der),
            der is not None and page_verify_code(response) == 0,
            protocol.group(1).decode(),
        )
    seen = nginx_record(response)
    return Record(
        seen["fingerprint"].lower() or None, seen["verify"] == "SUCCESS", seen["protocol"]
    )


@pytest.fixture
def start(tmp_path: Path, server_cert: Any) -> Callable[..., Any]:
    """Start a peer that asks for a certificate from ``cas`` (or asks for none)."""
    cert = tmp_path / "server.pem"
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(cert))

    def start(kind: str, *, cas: tuple[Issued, ...] = (), ask: bool = True, extra=()) -> Any:
        cafile = tmp_path / "client-cas.pem"
        cafile.write_bytes(b"".join(ca.pem for ca in cas))
        if kind == "s_server":
            asks = ["-CAfile", str(cafile), "-Verify", "1", "-verify_return_error"]
            return SServer(cert, *(asks if ask else ()), *extra)
        return Nginx(
            tmp_path, cert, verify="on" if ask else "off", client_cas=cafile if ask else None
        )

    return start


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("kind", PEERS)
def test_wallet_sends_what_the_peer_ca_list_names_and_the_peer_verifies_it(
    start, ca, wallet_pki, kind, world, version
):
    """The peer names Globex and Initech: of Acme, Initech, Globex the wallet
    sends Initech's (the first that fits), and the peer verified exactly that."""
    ctx = client_context(world, ca, version)
    ccb.set_client_cert_cb(ctx, wallet(wallet_pki))
    with start(kind, cas=(wallet_pki["Globex root"], wallet_pki["Initech root"])) as peer:
        seen = record(kind, get(world, ctx, peer.port))
    assert seen == Record(fingerprint(wallet_pki["Initech"].der), True, version), peer.log


@pytest.mark.parametrize("world", WORLDS)
def test_request_reports_s_server_ca_list_and_client_sigalgs(start, ca, wallet_pki, world, version):
    """-CAfile's names in its order; -client_sigalgs as IANA names, in its
    order (on pyOpenSSL's bundled route read from the CertificateRequest)."""
    ctx = client_context(world, ca, version)
    asked: list[tuple[list[str], list[str], str]] = []

    def look(request: ccb.CertificateRequest) -> Any:
        asked.append((request.acceptable_ca_names, request.signature_algorithms, request.version))
        return wallet(wallet_pki)(request)

    ccb.set_client_cert_cb(ctx, look)
    cas = (wallet_pki["Initech root"], wallet_pki["Acme root"])
    sigalgs = ("-client_sigalgs", "ECDSA+SHA384:ECDSA+SHA256:RSA-PSS+SHA256")
    with start("s_server", cas=cas, extra=sigalgs) as peer:
        seen = record("s_server", get(world, ctx, peer.port))
    expected = ["ecdsa_secp384r1_sha384", "ecdsa_secp256r1_sha256", "rsa_pss_rsae_sha256"]
    assert asked == [(["CN=Initech Root CA", "CN=Acme Root CA"], expected, version)]
    assert seen == Record(fingerprint(wallet_pki["Acme"].der), True, version)


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("kind", PEERS)
def test_suspended_handshake_resumes_against_the_peer(start, ca, wallet_pki, kind, world):
    """Suspend twice, then answer: the resumed handshake sends the certificate."""
    ctx = client_context(world, ca)
    chosen = wallet_pki["Globex"].credential()
    attempts: list[int] = []

    def later(request: ccb.CertificateRequest) -> Any:
        attempts.append(request.attempt)
        if request.attempt < 3:
            raise ccb.WantX509Lookup()
        return chosen

    ccb.set_client_cert_cb(ctx, later)
    with start(kind, cas=(wallet_pki["Globex root"],)) as peer, Client(world, ctx, peer.port) as c:
        for _ in range(2):
            with pytest.raises(suspension(world)):
                c.handshake()
        c.handshake()
        c.send(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        seen = record(kind, c.read_all())
    assert attempts == [1, 2, 3]
    assert seen.fingerprint == fingerprint(chosen.certificate)
    assert seen.verified


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("kind", PEERS)
def test_callback_never_called_when_the_peer_does_not_ask(
    start, ca, wallet_pki, kind, world, version
):
    ctx = client_context(world, ca, version)
    calls: list[int] = []
    ccb.set_client_cert_cb(ctx, lambda request: calls.append(1) or wallet_pki["Acme"].credential())
    with start(kind, ask=False) as peer:
        seen = record(kind, get(world, ctx, peer.port))
    assert calls == []
    assert seen.fingerprint is None
    assert seen.protocol == version
