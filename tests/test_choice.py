"""A Wallet chosen in C (core/choice.py, src/openssl_ccb_choice.c), and a
Python callback's answer handed over by C (core/trampoline.Prepaid).

The C rules are a copy of selection.fit's: every case here is decided both
ways, in C (the Wallet set itself) and in Python (a callable that calls
``wallet.choose``), through real handshakes in every world and version, and
both must send the certificate ``request.supports()`` says is the first that fits.
"""

from __future__ import annotations

import datetime
import gc
import ssl
import sys
import weakref
from typing import Any

import pytest
from certs import Issued, issue, new_key
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from tlsutil import in_threads, selecting_server
from worlds import WORLDS, Link, MemoryClient, MemoryServer
from worlds import client_context as world_context

import openssl_ccb as ccb
from openssl_ccb import lib, selection
from openssl_ccb.request import SIGNATURE_SCHEMES, CertificateRequest
from openssl_ccb.worlds import pyopenssl

DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def pki() -> dict[str, Issued]:
    root_a = issue("Choice root A", ca=True)
    root_b = issue("Choice root B", ca=True)
    inter = issue("Choice intermediate A1", root_a, ca=True)
    return {
        "root_a": root_a,
        "root_b": root_b,
        "inter": inter,
        "ec_a": issue("ec of A", root_a),
        "ec_b": issue("ec of B", root_b),
        "rsa_a": issue("rsa of A", root_a, key="rsa"),
        "p384_a": issue("p384 of A", root_a, key="p384"),
        "ed_a": issue("ed25519 of A", root_a, key="ed25519"),
        "via_inter": issue("leaf via A1", inter),
        "bare_via_inter": issue("chainless leaf via A1", inter),
        "expired_a": issue("expired of A", root_a, valid=(-2 * DAY, -DAY)),
        "future_a": issue("future of A", root_a, valid=(DAY, 2 * DAY)),
        "server_eku_a": issue("server-only of A", root_a, eku=[ExtendedKeyUsageOID.SERVER_AUTH]),
        "rsa1024_a": issue("rsa1024 of A", root_a, key="rsa1024"),
    }


def _credentials(pki: dict[str, Issued]) -> list[ccb.Credential]:
    """Every rule's case, in an order where each can be the first that fits."""
    return [
        pki["expired_a"].credential(),
        pki["future_a"].credential(),
        pki["server_eku_a"].credential(),
        pki["ec_b"].credential(),
        pki["bare_via_inter"].credential(),  # no chain: issued by A1, not A
        pki["via_inter"].credential(pki["inter"]),
        pki["rsa_a"].credential(),
        pki["p384_a"].credential(),
        pki["ed_a"].credential(),
        pki["ec_a"].credential(),
    ]


SERVERS: list[tuple[tuple[str, ...], str | None]] = [  # (CA names, signature algorithms)
    ((), None),
    (("root_a",), None),
    (("root_b",), None),
    (("inter",), None),
    (("root_a",), "ecdsa_secp384r1_sha384"),  # P-256 signs it under TLS 1.2 only
    ((), "rsa_pss_rsae_sha256"),
    ((), "rsa_pkcs1_sha256:ed25519"),  # PKCS#1 RSA under TLS 1.2 only
    (("root_a", "root_b"), "ed25519"),
    (("root_b",), "rsa_pss_rsae_sha256"),  # nothing fits
]


def _server(pki: dict[str, Issued], server_cert: Any, names: tuple[str, ...],
            sigalgs: str | None, version: str) -> ssl.SSLContext:  # fmt: skip
    return selecting_server(
        server_cert,
        trust=(pki["root_a"], pki["root_b"], pki["inter"]),  # so a chainless leaf verifies
        names=tuple(pki[n] for n in names),
        sigalgs=sigalgs,
        version=version,
        verify=ssl.CERT_OPTIONAL,
    )


def sent(world: str, ca: Any, version: str, server: ssl.SSLContext, callback: Any) -> Any:
    """The certificate the server received from a client of ``world`` running ``callback``."""
    ctx = world_context(world, ca, version)
    ccb.set_client_cert_cb(ctx, callback)
    link = Link(MemoryClient(world, ctx), MemoryServer(server))
    link.handshake()
    link.exchange()
    return link.server.peer_der()


def judged_in_c(world: str) -> bool:
    """Whether a Wallet set on a context of this world is chosen in C here."""
    return world != "pyopenssl" or pyopenssl.route() == pyopenssl.SAME_LIBSSL


@pytest.mark.parametrize("world", WORLDS)
def test_c_and_python_choose_the_same_in_every_case(world, ca, server_cert, pki, version):
    every = _credentials(pki)
    if not judged_in_c(world):  # pyOpenSSL's bundled route sends no chain (test_pyopenssl)
        every = [c for c in every if not c.chain]
    wallets = [every, every[::-1], every[3:4], [every[6], every[8]]]
    chosen = set()
    for names, sigalgs in SERVERS:
        server = _server(pki, server_cert, names, sigalgs, version)
        for credentials in wallets:
            wallet = ccb.Wallet(credentials)
            verdicts: list[bool] = []

            def in_python(
                request: ccb.CertificateRequest, wallet: Any = wallet, verdicts: Any = verdicts
            ) -> Any:
                verdicts[:] = [request.supports(c) for c in wallet]
                return wallet.choose(request)

            by_python = sent(world, ca, version, server, in_python)
            by_c = sent(world, ca, version, server, wallet)
            first = next((c.certificate for c, ok in zip(wallet, verdicts) if ok), None)
            case = (names, sigalgs, [c.subject for c in wallet])
            assert by_c == by_python == first, case
            chosen.add(first)
    # The matrix is not degenerate: nothing fits somewhere, and each kind of
    # leaf that can fit is chosen somewhere.
    expected = {pki[n].der for n in ("ec_b", "bare_via_inter", "via_inter", "rsa_a", "ed_a")}
    if version == "TLSv1.3":
        expected.add(pki["p384_a"].der)
    if not judged_in_c(world):
        expected.remove(pki["via_inter"].der)
    assert None in chosen
    assert expected <= chosen, chosen


def _refuse_python(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Make the Wallet's Python choice fail loudly; returns where calls are noted."""
    calls: list[Any] = []

    def python_chose(self: ccb.Wallet, request: Any) -> Any:
        calls.append(request)
        raise AssertionError("the Wallet was chosen in Python")

    monkeypatch.setattr(ccb.Wallet, "choose", python_chose)
    monkeypatch.setattr(ccb.Wallet, "__call__", python_chose)
    return calls


def _spy_python(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Note every time a Wallet is chosen in Python (then choose as it does)."""
    calls: list[Any] = []
    original = ccb.Wallet.choose

    def choose(self: ccb.Wallet, request: Any) -> Any:
        calls.append(request)
        return original(self, request)

    monkeypatch.setattr(ccb.Wallet, "choose", choose)
    monkeypatch.setattr(ccb.Wallet, "__call__", choose)
    return calls


@pytest.mark.parametrize("world", WORLDS)
def test_a_wallet_is_chosen_without_entering_python(
    world, ca, server_cert, pki, version, monkeypatch
):
    calls = _refuse_python(monkeypatch)
    wallet = ccb.Wallet(_credentials(pki))
    server = _server(pki, server_cert, ("root_a",), None, version)
    if not judged_in_c(world):
        # pyOpenSSL's bundled route: its OpenSSL is not ours; Python chooses.
        with pytest.raises(AssertionError, match="chosen in Python"):
            sent(world, ca, version, server, wallet)
        assert len(calls) == 1
        return
    assert sent(world, ca, version, server, wallet) == pki["via_inter"].der
    assert calls == []


def test_a_change_to_the_wallet_reaches_every_context_it_is_set_on(
    ca, server_cert, pki, monkeypatch
):
    calls = _refuse_python(monkeypatch)
    wallet = ccb.Wallet([pki["ec_b"].credential()])
    server = _server(pki, server_cert, ("root_a",), None, "TLSv1.3")
    contexts = [world_context(w, ca, "TLSv1.3") for w in ("stdlib", "raw")]
    for ctx in contexts:
        ccb.set_client_cert_cb(ctx, wallet)

    def received() -> list[Any]:
        out = []
        for world, ctx in zip(("stdlib", "raw"), contexts):
            link = Link(MemoryClient(world, ctx), MemoryServer(server))
            link.handshake()
            out.append(link.server.peer_der())
        return out

    ec_a, rsa_a = pki["ec_a"].credential(), pki["rsa_a"].credential()
    assert received() == [None, None]
    wallet.credentials.append(ec_a)
    assert received() == [pki["ec_a"].der] * 2
    wallet.credentials.insert(0, rsa_a)
    assert received() == [pki["rsa_a"].der] * 2
    wallet.credentials[0] = pki["ed_a"].credential()
    assert received() == [pki["ed_a"].der] * 2
    del wallet.credentials[0]
    assert received() == [pki["ec_a"].der] * 2
    wallet.credentials.sort(key=lambda c: c.subject)  # "ec of A" < "ec of B"
    assert received() == [pki["ec_a"].der] * 2
    wallet.credentials.remove(ec_a)
    assert received() == [None, None]
    wallet.credentials = [rsa_a]
    assert received() == [pki["rsa_a"].der] * 2
    wallet.credentials += [ec_a]
    wallet.credentials.pop(0)
    assert received() == [pki["ec_a"].der] * 2
    wallet.credentials.clear()
    assert received() == [None, None]
    assert calls == []


@pytest.mark.parametrize("world", ["stdlib", "raw"])
def test_replacing_a_wallet_leaves_nothing_of_it_in_c(world, ca, server_cert, pki):
    server = _server(pki, server_cert, (), None, "TLSv1.3")
    ctx = world_context(world, ca, "TLSv1.3")
    ccb.set_client_cert_cb(ctx, ccb.Wallet([pki["ec_a"].credential()]))
    rsa = pki["rsa_a"].credential()
    for callback, expected in [
        (lambda request: rsa, pki["rsa_a"].der),
        (None, None),
        (ccb.Wallet([pki["ed_a"].credential()]), pki["ed_a"].der),
        (lambda request: None, None),
    ]:
        ccb.set_client_cert_cb(ctx, callback)
        link = Link(MemoryClient(world, ctx), MemoryServer(server))
        link.handshake()
        assert link.server.peer_der() == expected


def test_a_replaced_clock_is_python_s_to_read(ca, server_cert, pki, monkeypatch):
    """C reads the real clock: with ``selection.now`` replaced, Python chooses."""
    calls = _spy_python(monkeypatch)
    wallet = ccb.Wallet([pki["ec_a"].credential(), pki["ec_b"].credential()])
    server = _server(pki, server_cert, (), None, "TLSv1.3")
    assert sent("stdlib", ca, "TLSv1.3", server, wallet) == pki["ec_a"].der
    assert calls == []
    later = datetime.datetime.now(datetime.timezone.utc) + 3 * DAY
    monkeypatch.setattr(selection, "now", lambda: later)  # ec_a has expired by then
    fresh = issue("fresh of B", pki["root_b"], valid=(-DAY, 5 * DAY))
    wallet.credentials.append(fresh.credential())
    assert sent("stdlib", ca, "TLSv1.3", server, wallet) == fresh.der
    assert len(calls) == 1
    monkeypatch.undo()
    assert sent("stdlib", ca, "TLSv1.3", server, wallet) == pki["ec_a"].der


def _signer(issued: Issued) -> ccb.Credential:
    key = issued.key

    def sign(message: bytes, scheme: str) -> bytes:
        return bytes(key.sign(message, ec.ECDSA(hashes.SHA256())))

    return ccb.Credential.from_signer(issued.cert, sign, schemes=["ecdsa_secp256r1_sha256"])


def test_c_asks_python_when_it_reaches_a_signer(ca, server_cert, pki, monkeypatch):
    calls = _spy_python(monkeypatch)
    server = _server(pki, server_cert, ("root_a",), None, "TLSv1.3")
    before = ccb.Wallet([pki["ec_a"].credential(), _signer(pki["ec_a"])])
    assert sent("stdlib", ca, "TLSv1.3", server, before) == pki["ec_a"].der
    assert calls == []  # chosen before C reached the signer
    signer_of_a = issue("signed elsewhere, of A", pki["root_a"])
    after = ccb.Wallet([pki["ec_b"].credential(), _signer(signer_of_a)])
    assert sent("stdlib", ca, "TLSv1.3", server, after) == signer_of_a.der
    assert len(calls) == 1


def test_a_wallet_subclass_is_chosen_in_python(ca, server_cert, pki):
    class Mine(ccb.Wallet):
        def choose(self, request: Any) -> Any:
            return self.credentials[-1]

        __call__ = choose

    server = _server(pki, server_cert, (), None, "TLSv1.3")
    mine = Mine([pki["ec_a"].credential(), pki["ec_b"].credential()])
    assert sent("stdlib", ca, "TLSv1.3", server, mine) == pki["ec_b"].der


@pytest.mark.parametrize("world", ["stdlib", "raw"])
def test_a_certificate_openssl_refuses_fails_the_handshake_with_its_reason(
    world, ca, server_cert, pki
):
    """C leaves a refusal (here the security level's) to Python, which raises it."""
    server = _server(pki, server_cert, (), None, "TLSv1.3")
    wallet = ccb.Wallet([pki["rsa1024_a"].credential()])
    messages = []
    for callback in (wallet, lambda request: wallet.choose(request)):
        with pytest.raises(ccb.Error, match="ee key too small") as raised:
            sent(world, ca, "TLSv1.3", server, callback)
        messages.append(str(raised.value))
    assert messages[0] == messages[1]


# --- the copies of the rules, held to the originals ---------------------------------


@pytest.mark.parametrize("kind", ["ec", "p384", "rsa", "ed25519"])
def test_the_c_schemes_of_a_key_are_selection_schemes_for(kind, version):
    from cryptography.hazmat.primitives import serialization

    der = new_key(kind).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key = ccb.credential.load_private_key(der)
    python = selection.schemes_for(key, version)
    assert python, kind
    for code, scheme in SIGNATURE_SCHEMES.items():
        in_c = lib.openssl_ccb_key_signs(key, version == "TLSv1.3", code) == 1
        assert in_c == (scheme in python), (kind, scheme)


_ATTRIBUTES = (
    "acceptable_cas",
    "acceptable_ca_names",
    "signature_algorithms",
    "_openssl_order",
    "certificate_types",
    "server_name",
    "version",
)


@pytest.mark.parametrize("sni", [True, False])
def test_what_c_reads_for_the_request_is_what_the_ssl_says(ca, server_cert, pki, version, sni):
    """The request's attributes from what C read before Python ran, against the
    same attributes read from the SSL * directly."""
    server = _server(pki, server_cert, ("root_a", "inter", "root_b"), None, version)
    seen: dict[str, tuple[Any, Any]] = {}

    def callback(request: ccb.CertificateRequest) -> Any:
        direct = object.__new__(CertificateRequest)
        direct._ssl, direct.attempt = request.ssl, request.attempt
        assert request._facts is not None
        for name in _ATTRIBUTES:
            got = getattr(request, name)
            seen[name] = (got() if callable(got) else got, None)
            want = getattr(direct, name)
            seen[name] = (seen[name][0], want() if callable(want) else want)
        return None

    ctx = world_context("stdlib", ca, version)
    if not sni:
        ctx.check_hostname = False
    ccb.set_client_cert_cb(ctx, callback)
    client = MemoryClient.__new__(MemoryClient)
    client.world = "stdlib"
    client.inc, client.out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client.tls = ctx.wrap_bio(client.inc, client.out, server_hostname="localhost" if sni else None)
    Link(client, MemoryServer(server)).handshake()
    assert set(seen) == set(_ATTRIBUTES)
    for name, (from_c, from_ssl) in seen.items():
        assert from_c == from_ssl, name
    assert len(seen["acceptable_cas"][0]) == 3
    assert seen["signature_algorithms"][0]
    assert seen["server_name"][0] == ("localhost" if sni else None)
    assert bool(seen["certificate_types"][0]) == (version == "TLSv1.2")


# --- answers C hands over after Python returns ---------------------------------------


@pytest.mark.parametrize("world", ["stdlib", "raw"])
def test_a_credential_dropped_as_the_callback_returns_is_still_sent(world, ca, server_cert, pki):
    """Each handshake's Credential is new and the callback's only reference:
    C sends it from its own references, and every one is then freed."""
    server = _server(pki, server_cert, (), None, "TLSv1.3")
    returned: list[weakref.ref[ccb.Credential]] = []

    def fresh(request: ccb.CertificateRequest) -> ccb.Credential:
        credential = ccb.Credential.load(pki["ec_a"].pem, pki["ec_a"].key_pem)
        returned.append(weakref.ref(credential))
        return credential

    for _ in range(3):
        assert sent(world, ca, "TLSv1.3", server, fresh) == pki["ec_a"].der
    gc.collect()
    assert len(returned) == 3
    assert [r() for r in returned] == [None] * 3


def test_one_credential_answers_many_handshakes_on_many_threads(ca, server_cert, pki):
    """More answers than one batch paid in advance, taken by threads at once."""
    server = _server(pki, server_cert, (), None, "TLSv1.3")
    credential = pki["via_inter"].credential(pki["inter"])
    ctx = world_context("stdlib", ca, "TLSv1.3")
    ccb.set_client_cert_cb(ctx, lambda request: credential)
    received: list[Any] = []

    def work(n: int) -> None:
        for _ in range(12):
            link = Link(MemoryClient("stdlib", ctx), MemoryServer(server))
            link.handshake()
            received.append(link.server.peer_der())

    assert in_threads(work, count=8) == []
    assert received == [pki["via_inter"].der] * 96


def _calls_into_c_inside_the_callback(world: str, version: str, ca: Any, server: Any,
                                      callback: Any) -> list[str]:  # fmt: skip
    """The openssl-ccb C functions Python called while the trampoline's Python
    half ran (each call releases the GIL and must take it back)."""
    from openssl_ccb.core import trampoline

    dispatch = trampoline.openssl_ccb_dispatch.__code__
    inside: list[Any] = []
    called: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if frame.f_code is dispatch and event in ("call", "return"):
            if event == "call":
                inside.append(frame)
            elif inside and inside[-1] is frame:
                inside.pop()
        elif inside and event == "c_call" and getattr(arg, "__self__", None) is lib:
            called.append(arg.__name__)

    ctx = world_context(world, ca, version)
    ccb.set_client_cert_cb(ctx, callback)
    link = Link(MemoryClient(world, ctx), MemoryServer(server))
    sys.setprofile(profile)
    try:
        link.handshake()
    finally:
        sys.setprofile(None)
    link.exchange()
    return called


@pytest.mark.parametrize("world", ["stdlib", "raw"])
def test_a_callback_answering_from_the_request_calls_nothing_in_c(
    world, ca, server_cert, pki, version
):
    """Python callbacks take the GIL once: reading the request's attributes and
    returning a Credential makes no call into C (each would release the GIL
    and, on a busy process, wait to take it back), but once per batch of
    answers. peer_certificate still asks the SSL: the profile sees such calls."""
    server = _server(pki, server_cert, ("root_a",), None, version)
    credential = pki["ec_a"].credential()
    seen: list[tuple[Any, ...]] = []

    def reading(request: ccb.CertificateRequest) -> ccb.Credential:
        seen.append(
            (
                request.version,
                request.server_name,
                request.signature_algorithms,
                request.certificate_types,
                request.acceptable_cas,
            )
        )
        return credential

    def reading_the_peer(request: ccb.CertificateRequest) -> ccb.Credential:
        assert request.peer_certificate is not None
        return reading(request)

    # The first answer pays C for a batch of answers in advance (Prepaid.BATCH).
    assert _calls_into_c_inside_the_callback(world, version, ca, server, reading) == [
        "openssl_ccb_prepaid_new"
    ]
    assert _calls_into_c_inside_the_callback(world, version, ca, server, reading) == []
    calls = _calls_into_c_inside_the_callback(world, version, ca, server, reading_the_peer)
    assert "openssl_ccb_get1_peer_certificate" in calls
    assert len(seen) == 3
    assert seen[0] == seen[1] == seen[2]
    names = [pki["root_a"].cert.subject.public_bytes()]
    assert seen[0][0] == version
    assert seen[0][4] == names
    assert bool(seen[0][3]) == (version == "TLSv1.2")  # TLS 1.3 has no certificate types
