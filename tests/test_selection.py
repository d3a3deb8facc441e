"""Choosing the right certificate (docs/selection.md): the whole
CertificateRequest, supports(), per-connection chains, Credential and Wallet."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from certs import Issued, issue, name
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from tlsutil import (
    MemoryPair,
    RawEnd,
    client_context,
    pump,
    raw_client_ctx,
    selecting_server,
    server_context,
)
from worlds import WORLDS, Link, MemoryClient, MemoryServer
from worlds import client_context as world_context

import openssl_ccb as ccb
from openssl_ccb import ffi, lib


@pytest.fixture(scope="module")
def pki() -> dict[str, Issued]:
    """Two roots; an intermediate under root A; EC and RSA leaves."""
    root_a = issue("Root A", ca=True)
    root_b = issue("Root B", ca=True)
    inter = issue("Intermediate A1", root_a, ca=True)
    inter2 = issue("Intermediate A2", root_a, ca=True)
    return {
        "root_a": root_a,
        "root_b": root_b,
        "inter": inter,
        "inter2": inter2,
        "ec_a": issue("ec leaf of A", root_a),
        "rsa_a": issue("rsa leaf of A", root_a, key="rsa"),
        "ec_b": issue("ec leaf of B", root_b),
        "via_inter": issue("leaf via A1", inter),
        "via_inter2": issue("leaf via A2", inter2),
    }


def handshake_with(server: ssl.SSLContext, ca: Any, callback: Any, **wrap: Any) -> MemoryPair:
    pair = MemoryPair(server)
    ctx = client_context(ca)
    if wrap.get("server_hostname", "localhost") is None:
        ctx.check_hostname = False
    ccb.set_client_cert_cb(ctx, callback)
    client = ctx.wrap_bio(
        pair.client_in, pair.client_out, **{"server_hostname": "localhost", **wrap}
    )
    pair.handshake(client)
    return pair


# --- the request, against what the server was configured to send -------------------


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("ecdsa_secp256r1_sha256", ["ecdsa_secp256r1_sha256"]),
        (
            "rsa_pss_rsae_sha256:ecdsa_secp384r1_sha384:ed25519",
            ["rsa_pss_rsae_sha256", "ecdsa_secp384r1_sha384", "ed25519"],
        ),
    ],
)
def test_signature_algorithms_are_the_servers(ca, server_cert, pki, version, configured, expected):
    seen: list[list[str]] = []
    server = selecting_server(
        server_cert,
        trust=(pki["root_a"],),
        sigalgs=configured,
        version=version,
        verify=ssl.CERT_OPTIONAL,
    )
    handshake_with(server, ca, lambda r: seen.append(r.signature_algorithms))
    assert seen == [expected]


def test_legacy_tls12_signature_schemes_have_their_names(ca, server_cert, pki):
    """A default nginx sends dsa_sha224 (0x0302) under TLS 1.2: named, not a number."""
    seen: list[list[str]] = []
    configured = "DSA+SHA224:RSA+SHA224:ECDSA+SHA224:DSA+SHA256:ECDSA+SHA256"  # no SHA-1: level 1+
    server = selecting_server(
        server_cert,
        trust=(pki["root_a"],),
        sigalgs=configured,
        version="TLSv1.2",
        verify=ssl.CERT_OPTIONAL,
    )
    handshake_with(server, ca, lambda r: seen.append(r.signature_algorithms))
    assert seen == [
        [
            "dsa_sha224",
            "rsa_pkcs1_sha224",
            "ecdsa_sha224",
            "dsa_sha256",
            "ecdsa_secp256r1_sha256",
        ]
    ]


def test_a_default_servers_signature_schemes_all_have_names(ca, server_cert, pki, version):
    seen: list[list[str]] = []
    server = selecting_server(
        server_cert, trust=(pki["root_a"],), version=version, verify=ssl.CERT_OPTIONAL
    )
    handshake_with(server, ca, lambda r: seen.append(r.signature_algorithms))
    assert seen[0]
    assert [s for s in seen[0] if s.startswith("0x")] == []


def test_no_acceptable_cas_gives_an_empty_list(ca, server_cert, pki):
    seen: list[Any] = []
    server = selecting_server(server_cert, trust=(pki["root_a"],))
    credential = pki["ec_a"].credential()
    handshake_with(
        server, ca, lambda r: seen.append((r.acceptable_cas, r.acceptable_ca_names)) or credential
    )
    assert seen == [([], [])]


def test_long_and_non_ascii_ca_names_are_reported_exactly(ca, server_cert, pki, version):
    odd = issue(
        name(
            (NameOID.COUNTRY_NAME, "FR"),
            (NameOID.ORGANIZATION_NAME, "Société Générale d'Émission ✓"),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, "x" * 64),
            (NameOID.COMMON_NAME, "Ünïcödé CA, with a comma+plus"),
        ),
        ca=True,
    )
    names = (odd, pki["root_a"], pki["root_b"])
    server = selecting_server(server_cert, trust=(pki["root_a"],), names=names, version=version)
    seen: list[Any] = []
    credential = pki["ec_a"].credential()
    handshake_with(
        server, ca, lambda r: seen.append((r.acceptable_cas, r.acceptable_ca_names)) or credential
    )
    ders, strings = seen[0]
    assert ders == [n.cert.subject.public_bytes() for n in names]
    assert strings == [n.cert.subject.rfc4514_string() for n in names]


@pytest.mark.parametrize("sni", [True, False])
def test_server_name_is_the_sni_sent(ca, server_cert, pki, sni):
    seen: list[Any] = []
    server = selecting_server(server_cert, trust=(pki["root_a"],))
    credential = pki["ec_a"].credential()
    wrap = {} if sni else {"server_hostname": None}
    handshake_with(server, ca, lambda r: seen.append(r.server_name) or credential, **wrap)
    assert seen == (["localhost"] if sni else [None])


# --- supports() -------------------------------------------------------------------


def test_supports_follows_ca_names_and_signature_algorithms(ca, server_cert, pki, version):
    verdicts: dict[str, bool] = {}
    server = selecting_server(
        server_cert,
        trust=(pki["root_a"], pki["root_b"]),
        names=(pki["root_a"],),
        sigalgs="ecdsa_secp256r1_sha256:rsa_pss_rsae_sha256",
        version=version,
    )

    def judge(request: ccb.CertificateRequest) -> Any:
        verdicts["ec of A"] = request.supports(pki["ec_a"].credential())
        verdicts["rsa of A"] = request.supports(pki["rsa_a"].cert, pki["rsa_a"].key)
        verdicts["ec of B"] = request.supports(pki["ec_b"].pem)  # public key only
        verdicts["leaf via A1, no chain"] = request.supports(pki["via_inter"].credential())
        verdicts["leaf via A1, chain"] = request.supports(pki["via_inter"].credential(pki["inter"]))
        verdicts["chain as args"] = request.supports(
            pki["via_inter"].cert, pki["via_inter"].key, [pki["inter"].pem]
        )
        return pki["ec_a"].credential()

    handshake_with(server, ca, judge)
    assert verdicts == {
        "ec of A": True,
        "rsa of A": True,
        "ec of B": False,
        "leaf via A1, no chain": False,
        "leaf via A1, chain": True,
        "chain as args": True,
    }


@pytest.mark.parametrize(
    ("sigalgs", "ec", "rsa"),
    [
        ("rsa_pss_rsae_sha256", False, True),
        ("ecdsa_secp256r1_sha256", True, False),
        ("ecdsa_secp384r1_sha384", "TLSv1.2", False),  # P-256 with SHA-384: 1.2 only
    ],
)
def test_supports_knows_which_key_signs_what(ca, server_cert, pki, version, sigalgs, ec, rsa):
    verdicts: list[bool] = []
    server = selecting_server(
        server_cert,
        trust=(pki["root_a"],),
        sigalgs=sigalgs,
        version=version,
        verify=ssl.CERT_OPTIONAL,
    )

    def judge(request: ccb.CertificateRequest) -> None:
        verdicts.append(request.supports(pki["ec_a"].credential()))
        verdicts.append(request.supports(pki["rsa_a"].credential()))

    handshake_with(server, ca, judge)
    expect_ec = ec if isinstance(ec, bool) else version == ec
    assert verdicts == [expect_ec, rsa]


def test_rsa_pkcs1_is_not_usable_under_tls13(ca, server_cert, pki, version):
    verdicts: list[bool] = []
    server = selecting_server(
        server_cert,
        trust=(pki["root_a"],),
        sigalgs="rsa_pkcs1_sha256:rsa_pss_rsae_sha256"
        if version == "TLSv1.2"
        else "rsa_pkcs1_sha256:ecdsa_secp256r1_sha256",
        version=version,
        verify=ssl.CERT_OPTIONAL,
    )
    handshake_with(server, ca, lambda r: verdicts.append(r.supports(pki["rsa_a"].credential())))
    assert verdicts == [version == "TLSv1.2"]


# --- chains on the wire, per connection --------------------------------------------


def raw_server_ctx(server_cert: Any, root: Issued) -> Any:
    """A raw server trusting ``root`` only, so that we can read the chain it got."""
    ctx = ffi.gc(lib.SSL_CTX_new(lib.TLS_server_method()), lib.SSL_CTX_free)
    key = ccb.credential.load_private_key(server_cert.private_key_pem.bytes())
    cert = ccb.credential.load_certificate(server_cert.cert_chain_pems[0].bytes())
    assert lib.SSL_CTX_use_certificate(ctx, cert) == 1
    assert lib.SSL_CTX_use_PrivateKey(ctx, key) == 1
    with _tempfile(root.pem) as path:
        assert lib.SSL_CTX_load_verify_locations(ctx, path, ffi.NULL) == 1
    lib.SSL_CTX_set_verify(ctx, lib.SSL_VERIFY_PEER | lib.SSL_VERIFY_FAIL_IF_NO_PEER_CERT, ffi.NULL)
    return ctx


class _tempfile:
    def __init__(self, data: bytes) -> None:
        import tempfile

        self.file = tempfile.NamedTemporaryFile(suffix=".pem")  # noqa: SIM115
        self.file.write(data)
        self.file.flush()

    def __enter__(self) -> bytes:
        return self.file.name.encode()

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def _raw_handshake(client: RawEnd, server: RawEnd) -> None:
    def move() -> None:
        server.incoming(client.outgoing())
        client.incoming(server.outgoing())

    pump(client.step, server.step, move)
    client.write(b"ok")
    move()
    assert server.read(2) == b"ok"


def _received_chain(server: RawEnd) -> list[bytes]:
    """What the client sent after its leaf (a server's peer chain omits the leaf)."""
    stack = lib.SSL_get_peer_cert_chain(server.ssl)
    return [
        ccb.credential._i2d_x509(lib.sk_X509_value(stack, i)) for i in range(lib.sk_X509_num(stack))
    ]


def test_chain_is_sent_and_verifies_against_root_only_trust(ca, server_cert, pki, version):
    server_ctx = raw_server_ctx(server_cert, pki["root_a"])
    client_ctx = raw_client_ctx(ca, version=version)
    leaf, inter = pki["via_inter"], pki["inter"]

    ccb.set_client_cert_cb(client_ctx, lambda r: (leaf.cert, leaf.key))
    with pytest.raises(ccb.Error):
        _raw_handshake(RawEnd(client_ctx), RawEnd(server_ctx, server=True))

    ccb.set_client_cert_cb(client_ctx, lambda r: (leaf.cert, leaf.key, [inter.cert]))
    server = RawEnd(server_ctx, server=True)
    _raw_handshake(RawEnd(client_ctx), server)
    assert server.peer_der() == leaf.der
    assert _received_chain(server) == [inter.der]
    assert lib.SSL_get_verify_result(server.ssl) == lib.X509_V_OK


def test_two_connections_of_one_context_send_their_own_chains(ca, server_cert, pki, version):
    """Interleaved handshakes: each connection gets exactly its own chain, and a
    third one that returns no chain sends none (nothing leaks to the context)."""
    server_ctx = raw_server_ctx(server_cert, pki["root_a"])
    client_ctx = raw_client_ctx(ca, version=version)
    plans = {
        "one": pki["via_inter"].credential(pki["inter"]),
        "two": pki["via_inter2"].credential(pki["inter2"]),
        "bare": pki["ec_a"].credential(),
    }
    ccb.set_client_cert_cb(client_ctx, lambda r: plans[r.server_name])
    ends = {
        label: (RawEnd(client_ctx, hostname=label), RawEnd(server_ctx, server=True))
        for label in plans
    }
    done = {label: [False, False] for label in plans}
    for _ in range(50):  # step all three handshakes in lockstep
        for label, (client, server) in ends.items():
            for i, end in enumerate((client, server)):
                if not done[label][i]:
                    done[label][i] = end.step()
            server.incoming(client.outgoing())
            client.incoming(server.outgoing())
        if all(all(d) for d in done.values()):
            break
    for client, server in ends.values():
        client.write(b"!")
        server.incoming(client.outgoing())
        assert server.read(1) == b"!"
    for label, leaf, chain in [
        ("one", "via_inter", ["inter"]),
        ("two", "via_inter2", ["inter2"]),
        ("bare", "ec_a", []),
    ]:
        server = ends[label][1]
        assert server.peer_der() == pki[leaf].der
        assert _received_chain(server) == [pki[c].der for c in chain]


def test_a_chain_that_does_not_link_is_refused(pki):
    with pytest.raises(ccb.Error, match="chain item 0 did not issue the certificate"):
        pki["via_inter"].credential(pki["inter2"])
    with pytest.raises(ccb.Error, match="chain item 1 did not issue chain item 0"):
        pki["via_inter"].credential(pki["inter"], pki["root_b"])


# --- Credential and PKCS#12 --------------------------------------------------------


def _p12(leaf: Issued, *cas: Issued, password: bytes | None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return pkcs12.serialize_key_and_certificates(
        b"friendly", leaf.key, leaf.cert, [c.cert for c in cas] or None, encryption
    )


@pytest.mark.parametrize("password", [None, b"p12 secret"])
def test_credential_from_pkcs12_with_its_chain(pki, tmp_path, password):
    data = _p12(pki["via_inter"], pki["root_a"], pki["inter"], password=password)
    path = tmp_path / "client.p12"
    path.write_bytes(data)
    for source in (data, path, str(path)):
        credential = ccb.Credential.from_pkcs12(source, password)
        assert credential.certificate == pki["via_inter"].der
        assert credential.chain == [pki["inter"].der]  # the path up, without the root
        assert credential.subject == "CN=leaf via A1"
        assert credential.issuer == "CN=Intermediate A1"
        assert "PRIVATE" not in repr(credential)


def test_pkcs12_wrong_password_is_a_clear_error(pki, tmp_path):
    path = tmp_path / "client.p12"
    path.write_bytes(_p12(pki["ec_a"], password=b"right"))
    with pytest.raises(ccb.Error, match=r"wrong password for PKCS#12 file '.*client\.p12'"):
        ccb.Credential.from_pkcs12(path, "wrong")
    with pytest.raises(ccb.Error, match="is not PKCS#12"):
        ccb.Credential.from_pkcs12(b"not a p12 at all")


# --- the Wallet --------------------------------------------------------------------


def test_wallet_sends_the_first_credential_the_server_accepts(ca, server_cert, pki, version):
    wallet = ccb.Wallet([pki["ec_b"].credential(), pki["ec_a"].credential()])
    server = selecting_server(
        server_cert, trust=(pki["root_a"], pki["root_b"]), names=(pki["root_a"],), version=version
    )
    pair = handshake_with(server, ca, wallet)
    assert pair.peer_der() == pki["ec_a"].der
    assert ccb.get_client_cert_cb(pair.server_ctx) is None


def test_wallet_sends_the_first_when_no_cas_are_named(ca, server_cert, pki):
    wallet = ccb.Wallet([pki["ec_b"].credential(), pki["ec_a"].credential()])
    server = selecting_server(server_cert, trust=(pki["root_a"], pki["root_b"]))
    assert handshake_with(server, ca, wallet).peer_der() == pki["ec_b"].der


def test_wallet_sends_nothing_when_nothing_fits(ca, server_cert, pki):
    wallet = ccb.Wallet([pki["ec_b"].credential()])
    server = selecting_server(
        server_cert, trust=(pki["root_a"],), names=(pki["root_a"],), verify=ssl.CERT_OPTIONAL
    )
    assert handshake_with(server, ca, wallet).peer_der() is None


def test_wallet_from_directory(pki, tmp_path):
    (tmp_path / "a.pem").write_bytes(pki["ec_a"].pem)
    (tmp_path / "a.key").write_bytes(pki["ec_a"].key_pem)
    (tmp_path / "b.pem").write_bytes(
        pki["via_inter"].pem + pki["inter"].pem + pki["via_inter"].key_pem
    )
    (tmp_path / "c.p12").write_bytes(_p12(pki["ec_b"], password=b"pw"))
    (tmp_path / "notes.txt").write_text("ignored")
    wallet = ccb.Wallet.from_directory(tmp_path, password="pw")
    assert [c.certificate for c in wallet] == [
        pki["ec_a"].der,
        pki["via_inter"].der,
        pki["ec_b"].der,
    ]
    assert wallet.credentials[1].chain == [pki["inter"].der]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"lonely.pem": "ec_a"}, r"lonely\.pem.*no private key"),
        (
            {"bad.pem": b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"},
            r"bad\.pem",
        ),
        ({"x.p12": "p12-wrong-password"}, r"x\.p12.*wrong password"),
        ({"mismatch.pem": "ec_a", "mismatch.key": "ec_b-key"}, r"mismatch\.pem.*does not match"),
    ],
)
def test_wallet_directory_errors_name_the_file(pki, tmp_path, files, message):
    for filename, content in files.items():
        if content == "ec_a":
            content = pki["ec_a"].pem
        elif content == "ec_b-key":
            content = pki["ec_b"].key_pem
        elif content == "p12-wrong-password":
            content = _p12(pki["ec_a"], password=b"other")
        (tmp_path / filename).write_bytes(content)
    with pytest.raises(ccb.Error, match=message):
        ccb.Wallet.from_directory(tmp_path, password="pw")


def test_wallet_directory_unreadable_or_empty(tmp_path):
    with pytest.raises(ccb.Error, match="cannot read the wallet directory"):
        ccb.Wallet.from_directory(tmp_path / "missing")
    with pytest.raises(ccb.Error, match="holds no credentials"):
        ccb.Wallet.from_directory(tmp_path)


def test_wallet_holds_only_credentials(pki):
    with pytest.raises(TypeError, match="holds Credentials"):
        ccb.Wallet([pki["ec_a"].pem])  # type: ignore[list-item]
    assert "ec leaf of A" in repr(ccb.Wallet([pki["ec_a"].credential()]))


def test_unreadable_wallet_file(tmp_path):
    path = tmp_path / "secret.pem"
    path.mkdir()  # unreadable as a file, even for root
    with pytest.raises(ccb.Error, match=r"secret\.pem"):
        ccb.Wallet.from_directory(tmp_path)


def test_a_wallet_explains_each_choice_in_words(ca, server_cert, pki, version):
    """Wallet.explain: choose's reasoning for every credential, in order (what
    `openssl-ccb connect` prints), and it agrees with what choose sends."""
    wallet = ccb.Wallet([pki["ec_b"].credential(), pki["rsa_a"].credential()])
    explained: list[list[tuple[str, bool, str]]] = []

    def choose(request: ccb.CertificateRequest) -> Any:
        explained.append([(c.subject, ok, why) for c, ok, why in wallet.explain(request)])
        return wallet.choose(request)

    server = selecting_server(
        server_cert,
        trust=(pki["root_a"], pki["root_b"]),
        names=(pki["root_a"],),
        sigalgs="ecdsa_secp256r1_sha256:rsa_pss_rsae_sha256",
        version=version,
    )
    assert handshake_with(server, ca, choose).peer_der() == pki["rsa_a"].der
    [(b_subject, b_ok, b_why), (a_subject, a_ok, a_why)] = explained[0]
    assert (b_subject, b_ok, a_subject, a_ok) == (
        "CN=ec leaf of B",
        False,
        "CN=rsa leaf of A",
        True,
    )
    assert b_why == "no certificate of its chain was issued by a CA the server accepts"
    assert "CN=Root A" in a_why
    assert "rsa_pss_rsae_sha256" in a_why


def test_certificate_types_are_the_servers_in_every_world(ca, server_cert, credential, version):
    """TLS 1.2's client certificate types as the server sent them, the same in
    every world (read with SSL_get0_certificate_types, or on pyOpenSSL's
    bundled route from the CertificateRequest itself); TLS 1.3 has none."""
    seen = {}
    for world in WORLDS:
        ctx = world_context(world, ca, version)
        asked: list[list[str]] = []
        ccb.set_client_cert_cb(
            ctx, lambda r, asked=asked: asked.append(r.certificate_types) or credential
        )
        server = server_context(ca, server_cert, version=version)
        link = Link(MemoryClient(world, ctx), MemoryServer(server))
        link.handshake()
        link.exchange()
        seen[world] = asked
    expected = [] if version == "TLSv1.3" else seen["stdlib"][0]
    assert seen == {world: [expected] for world in WORLDS}
    if version == "TLSv1.2":
        assert {"rsa_sign", "ecdsa_sign"} <= set(expected)  # what OpenSSL's server offers
