"""PKCS#11 tokens (SoftHSM2): URIs, sessions, PINs, signatures made on the token."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import PyKCS11 as P
import pytest
import softhsm
import trustme
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from peers import Nginx, SServer, nginx_record, page_certificate, page_verify_code
from tlsutil import in_threads, server_context
from worlds import WORLDS, Link, MemoryClient, MemoryServer, client_context, get

import openssl_ccb as ccb
from openssl_ccb import pkcs11
from openssl_ccb.pkcs11 import parse_uri

PIN = "pin-8a1f-secret"
_labels = itertools.count()


@pytest.fixture(scope="session")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return softhsm.start(tmp_path_factory.mktemp("softhsm"))


@pytest.fixture
def token(hsm: Any) -> softhsm.Token:
    """A fresh token; SoftHSM sees it at once (it was initialised in this process)."""
    return softhsm.Token(hsm, f"test-token-{next(_labels)}", PIN)


@pytest.fixture(scope="session")
def filled(hsm: Any, ca: trustme.CA) -> softhsm.Token:
    """One token with an EC P-256, an EC P-384 and an RSA 2048 key, shared by tests."""
    t = softhsm.Token(hsm, "shared-token", PIN)
    for kind in ("p256", "p384", "rsa"):
        t.add_key(f"key-{kind}", kind, ca)
    return t


def verify(public: Any, signature: bytes, message: bytes, scheme: str) -> None:
    """Verify with cryptography, as a TLS peer would: raises InvalidSignature if wrong."""
    digest = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[
        scheme.rsplit("_", 1)[1]
    ]
    if scheme.startswith("ecdsa_"):
        public.verify(signature, message, ec.ECDSA(digest))
    elif scheme.startswith("rsa_pkcs1_"):
        public.verify(signature, message, padding.PKCS1v15(), digest)
    else:
        public.verify(
            signature, message, padding.PSS(padding.MGF1(digest), digest.digest_size), digest
        )


# --- RFC 7512 URIs -------------------------------------------------------------------


def test_parse_uri_path_and_query_attributes() -> None:
    uri = parse_uri(
        "pkcs11:token=My%20Token;object=client%20cert;id=%01%02%ff;type=private;"
        "serial=0042;slot-id=3?pin-value=1234&module-path=/usr/lib/x.so"
    )
    assert uri.token == "My Token"
    assert uri.object == "client cert"
    assert uri.id == b"\x01\x02\xff"
    assert uri.type == "private"
    assert uri.serial == "0042"
    assert uri.slot_id == 3
    assert uri.pin_value == "1234"
    assert uri.module_path == "/usr/lib/x.so"
    assert "1234" not in repr(uri)


def test_parse_uri_empty_and_case_insensitive_scheme() -> None:
    assert parse_uri("pkcs11:") == pkcs11.Pkcs11Uri()
    assert parse_uri("PKCS11:token=a").token == "a"
    assert parse_uri("pkcs11:token=caf%C3%A9").token == "café"
    assert parse_uri("pkcs11:x-vendor=1;token=a?foo=bar").other == {"x-vendor": "1", "foo": "bar"}


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("https://example.org/", "must start with 'pkcs11:'"),
        ("token=a", "must start with 'pkcs11:'"),
        ("pkcs11:token=a;token=b", "given twice"),
        ("pkcs11:token", "is not name=value"),
        ("pkcs11:id=%zz", "two hex digits"),
        ("pkcs11:id=%1", "two hex digits"),
        ("pkcs11:token=%ff", "not UTF-8"),
        ("pkcs11:colour=blue", "unknown path attribute 'colour'"),
        ("pkcs11:slot-id=one", "not a number"),
        ("pkcs11:type=key", "'type' is not one of"),
        ("pkcs11:token=a#frag", "no fragment"),
        ("pkcs11:token=a?pin-value=1&pin-source=file:/x", "both pin-value and pin-source"),
    ],
)
def test_parse_uri_refuses(uri: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_uri(uri)


# --- the key stays on the token --------------------------------------------------------


def test_key_cannot_be_read_off_the_token(filled: softhsm.Token) -> None:
    lib = filled.module.lib
    session = lib.openSession(filled.slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
    try:
        filled.module.token(parse_uri(filled.uri), PIN)  # logged in (login is per token)
        keys = session.findObjects([(P.CKA_CLASS, P.CKO_PRIVATE_KEY)])
        assert len(keys) == 3
        for key in keys:
            sensitive, extractable, never = session.getAttributeValue(
                key, [P.CKA_SENSITIVE, P.CKA_EXTRACTABLE, P.CKA_NEVER_EXTRACTABLE]
            )
            assert (sensitive, extractable, never) == (True, False, True)
            kind = session.getAttributeValue(key, [P.CKA_KEY_TYPE])[0]
            secret = P.CKA_VALUE if kind == P.CKK_EC else P.CKA_PRIVATE_EXPONENT
            # C_GetAttributeValue itself, not PyKCS11's wrapper (which answers None).
            template = P.LowLevel.ckattrlist(1)
            template[0].SetType(secret)
            rv = session.lib.C_GetAttributeValue(session.session, key, template)
            assert rv == P.CKR_ATTRIBUTE_SENSITIVE
            assert session.getAttributeValue(key, [secret], True) == [None]
            with pytest.raises(P.PyKCS11Error):  # and it cannot be made exportable
                session.setAttributeValue(key, [(P.CKA_EXTRACTABLE, True)])
            wrapping = session.generateKey(
                [(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES),
                 (P.CKA_VALUE_LEN, 32), (P.CKA_WRAP, True), (P.CKA_TOKEN, False)],
                P.Mechanism(P.CKM_AES_KEY_GEN, None),
            )  # fmt: skip
            with pytest.raises(P.PyKCS11Error):  # nor wrapped out under a key of ours
                session.wrapKey(wrapping, key, P.Mechanism(P.CKM_AES_KEY_WRAP_PAD, None))
    finally:
        session.closeSession()


# --- the signer ------------------------------------------------------------------------


def test_every_declared_scheme_signs_and_verifies(filled: softhsm.Token) -> None:
    items = {item.label: item for item in pkcs11.contents(filled.uri, pin=PIN)}
    # Any hash on any curve (TLS 1.2 allows it; TLS 1.3 takes the curve's own, listed first).
    ecdsa = ["ecdsa_secp256r1_sha256", "ecdsa_secp384r1_sha384", "ecdsa_secp521r1_sha512"]
    assert items["key-p256"].signer.schemes == ecdsa  # type: ignore[union-attr]
    assert items["key-p384"].signer.schemes == [ecdsa[1], ecdsa[0], ecdsa[2]]  # type: ignore[union-attr]
    assert set(items["key-rsa"].signer.schemes) == {  # type: ignore[union-attr]
        f"rsa_{pad}_{h}" for pad in ("pkcs1", "pss_rsae") for h in ("sha256", "sha384", "sha512")
    }
    for key in filled.keys:
        item = items[key.label]
        assert item.key_type == ("RSA" if key.kind == "rsa" else "EC")
        assert item.id == key.id
        assert item.signer is not None
        for scheme in item.signer.schemes:
            message = b"TLS 1.3, client CertificateVerify" + os.urandom(64)
            verify(key.public, item.signer(message, scheme), message, scheme)


def test_ed25519_on_the_token(token: softhsm.Token, ca: trustme.CA) -> None:
    key = token.add_key("ed", "ed25519", ca)
    (item,) = pkcs11.contents(token.uri, pin=PIN)
    assert item.key_type == "EC_EDWARDS"
    assert item.signer is not None
    assert item.signer.schemes == ["ed25519"]  # CKM_EDDSA, on the whole message
    message = os.urandom(300)
    key.public.verify(item.signer(message, "ed25519"), message)


def test_a_certificate_pairs_by_id_else_by_label(token: softhsm.Token, ca: trustme.CA) -> None:
    by_id = token.add_key("by id", "p256", ca)
    by_label = token.add_key("by label", "p256", ca, store_cert=False)
    lone = token.add_key("lone", "p256", ca, store_cert=False)
    other = softhsm.certificate_for(by_label.public, "by label", ca)
    token.store_certificate(other, "by label", b"\x01another id")  # the key's label, not its id
    nameless = softhsm.certificate_for(lone.public, "nameless", ca)
    token.store_certificate(nameless, "", b"")  # neither: no key is guessed for it
    items = {item.label: item for item in pkcs11.contents(token.uri, pin=PIN)}
    assert set(items) == {"by id", "by label", ""}
    assert items["by id"].signer is not None
    assert items["by id"].signer.key_id == by_id.id
    assert items["by label"].signer is not None
    message = b"paired by label"
    signature = items["by label"].signer(message, "ecdsa_secp256r1_sha256")
    verify(by_label.public, signature, message, "ecdsa_secp256r1_sha256")
    assert items[""].signer is None
    assert len(ccb.Wallet.from_pkcs11(token.uri, pin=PIN)) == 2


def test_a_scheme_the_key_cannot_do_is_refused(filled: softhsm.Token) -> None:
    (item,) = pkcs11.contents(f"pkcs11:token={filled.label};object=key-p256", PIN, softhsm.MODULE)
    assert item.signer is not None
    with pytest.raises(ccb.Error, match="cannot sign rsa_pss_rsae_sha256"):
        item.signer(b"x", "rsa_pss_rsae_sha256")


def test_ecdsa_der_from_raw() -> None:
    # r with its high bit set takes a leading zero; leading zeros of s are dropped.
    raw = b"\x80" + b"\x01" * 31 + b"\x00\x00" + b"\x02" * 30
    assert pkcs11.ecdsa_der(raw) == (
        b"\x30\x43\x02\x21\x00\x80" + b"\x01" * 31 + b"\x02\x1e" + b"\x02" * 30
    )
    long = pkcs11.ecdsa_der(b"\xff" * 132)  # P-521: the SEQUENCE takes a long length
    assert long[:3] == b"\x30\x81\x8a"
    with pytest.raises(ccb.Error, match="odd length"):
        pkcs11.ecdsa_der(b"\x01" * 3)


def test_many_threads_share_one_token_session(filled: softhsm.Token) -> None:
    items = pkcs11.contents(filled.uri, pin=PIN)
    token = items[0].signer.token  # type: ignore[union-attr]
    assert all(item.signer.token is token for item in items)  # type: ignore[union-attr]
    assert pkcs11.contents(filled.uri, pin=PIN)[0].signer.token is token  # type: ignore[union-attr]
    publics = {key.id: key.public for key in filled.keys}

    def work(n: int) -> None:
        for i in range(20):
            item = items[(n + i) % len(items)]
            assert item.signer is not None
            scheme = item.signer.schemes[i % len(item.signer.schemes)]
            message = f"thread {n} round {i}".encode()
            verify(publics[item.id], item.signer(message, scheme), message, scheme)

    assert in_threads(work) == []


def test_a_closed_session_is_reopened_and_logged_in_again(
    token: softhsm.Token, ca: trustme.CA
) -> None:
    key = token.add_key("k", "p256", ca)
    (item,) = pkcs11.contents(token.uri, pin=PIN)
    assert item.signer is not None
    generation = item.signer.token.generation
    verify(
        key.public, item.signer(b"one", "ecdsa_secp256r1_sha256"), b"one", "ecdsa_secp256r1_sha256"
    )
    # C_CloseAllSessions, as another part of the application might: the login ends too.
    token.module.lib.closeAllSessions(token.slot)
    verify(
        key.public, item.signer(b"two", "ecdsa_secp256r1_sha256"), b"two", "ecdsa_secp256r1_sha256"
    )
    assert item.signer.token.generation == generation + 1


# --- PINs, tokens and modules that are not there ----------------------------------------


def test_wrong_pin_names_the_token_never_the_pin(token: softhsm.Token, ca: trustme.CA) -> None:
    token.add_key("k", "p256", ca)
    wrong = "wrong-pin-77c3"
    for call in (ccb.Credential.from_pkcs11, ccb.Wallet.from_pkcs11, pkcs11.contents):
        with pytest.raises(ccb.Error) as caught:
            call(token.uri, pin=wrong)
        text = str(caught.value)
        assert f"PKCS#11 token {token.label!r} refused the PIN" in text
        assert wrong not in text
        assert wrong not in repr(caught.value)
        assert caught.value.__cause__ is None
        assert wrong not in repr(caught.value.__context__)
    # The URI's pin-value is refused the same way, and shown nowhere.
    with pytest.raises(ccb.Error, match="refused the PIN") as caught:
        pkcs11.contents(f"{token.uri}&pin-value={wrong}")
    assert wrong not in str(caught.value)
    # The right PIN then works, and nothing that holds it shows it.
    (item,) = pkcs11.contents(token.uri, pin=PIN)
    assert item.signer is not None
    for thing in (item, item.signer, item.signer.token, parse_uri(f"{token.uri}&pin-value={PIN}")):
        assert PIN not in repr(thing)


def test_no_pin_for_a_token_that_needs_one(token: softhsm.Token, ca: trustme.CA) -> None:
    token.add_key("k", "p256", ca)
    with pytest.raises(ccb.Error, match=f"token {token.label!r} needs a PIN"):
        pkcs11.contents(token.uri)


def test_pin_from_the_uri_pin_source(token: softhsm.Token, ca: trustme.CA, tmp_path: Path) -> None:
    token.add_key("k", "p256", ca)
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    (item,) = pkcs11.contents(f"{token.uri}&pin-source=file:{pin_file}")
    assert item.signer is not None
    with pytest.raises(ccb.Error, match="cannot read the pkcs11: URI's pin-source"):
        pkcs11.contents(f"{token.uri}&pin-source=file:{tmp_path / 'none'}")


def test_a_token_that_is_not_there(hsm: Any, filled: softhsm.Token) -> None:
    with pytest.raises(
        ccb.Error, match=r"no token in PKCS#11 module .* token='no-such-token'"
    ) as e:
        ccb.Credential.from_pkcs11(
            f"pkcs11:token=no-such-token?module-path={softhsm.MODULE}", pin=PIN
        )
    assert "'shared-token'" in str(e.value)  # the tokens that are there, to choose from


def test_a_token_removed_after_login(tmp_path: Path) -> None:
    """Its directory deleted under a live session: the next handshake fails with a
    ccb.Error naming the token, raised where the handshake was driven, the error
    queue empty. In a child process: SoftHSM breaks for the whole process then."""
    script = textwrap.dedent(f"""
        import shutil, sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import softhsm, trustme
        import openssl_ccb as ccb
        from openssl_ccb import pkcs11
        from tlsutil import server_context
        from worlds import Link, MemoryClient, MemoryServer, client_context
        root = Path({str(tmp_path)!r})
        ca = trustme.CA()
        token = softhsm.Token(softhsm.start(root), "removable", {PIN!r})
        token.add_key("k", "p256", ca)
        credential = ccb.Credential.from_pkcs11(token.uri, pin={PIN!r})
        server_ctx = server_context(ca, ca.issue_cert("localhost"))

        def handshake():
            ctx = client_context("stdlib", ca, "TLSv1.3")
            ccb.set_client_cert_cb(ctx, lambda request: credential)
            link = Link(MemoryClient("stdlib", ctx), MemoryServer(server_ctx))
            link.handshake()
            link.exchange()

        handshake()
        shutil.rmtree(root / "tokens")
        try:
            handshake()
        except ccb.Error as exc:
            print("ERROR", exc)
        print("QUEUE", ccb.errors.drain_error_queue())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ERROR PKCS#11 token 'removable': the key 'k' is gone"), out.stdout
    assert out.stdout.endswith("QUEUE []\n"), out.stdout
    assert PIN not in out.stdout + out.stderr


def test_module_from_argument_uri_or_environment(
    filled: softhsm.Token, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = f"pkcs11:token={filled.label};object=key-rsa"
    monkeypatch.delenv("PKCS11_MODULE", raising=False)
    with pytest.raises(ccb.Error, match=r"no PKCS#11 module: pass module=.*PKCS11_MODULE"):
        pkcs11.contents(bare, pin=PIN)
    assert len(pkcs11.contents(bare, pin=PIN, module=softhsm.MODULE)) == 1
    monkeypatch.setenv("PKCS11_MODULE", softhsm.MODULE)
    assert len(pkcs11.contents(bare, pin=PIN)) == 1
    with pytest.raises(ccb.Error, match=r"cannot load the PKCS#11 module '/nonexistent/p11\.so'"):
        pkcs11.contents(bare, pin=PIN, module="/nonexistent/p11.so")


def test_without_pykcs11_the_error_names_the_extra() -> None:
    script = (
        "import sys; sys.modules['PyKCS11'] = None\n"
        "import openssl_ccb as ccb\nfrom openssl_ccb import pkcs11\n"
        "try:\n    ccb.Credential.from_pkcs11('pkcs11:token=a', module='/x.so')\n"
        "except ccb.Error as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "PKCS#11 needs PyKCS11: pip install 'openssl-ccb[pkcs11]'", out


# --- real handshakes: the token signs CertificateVerify ---------------------------------


def token_credential(filled: softhsm.Token, kind: str) -> ccb.Credential:
    return ccb.Credential.from_pkcs11(
        f"pkcs11:token={filled.label};object=key-{kind}?module-path={softhsm.MODULE}", pin=PIN
    )


def der_of(key: softhsm.Key) -> bytes:
    assert key.cert is not None
    return key.cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
@pytest.mark.parametrize("kind", ["p256", "p384", "rsa"])
def test_handshake_signed_on_the_token(
    filled: softhsm.Token, ca: trustme.CA, server_cert: Any, world: str, version: str, kind: str
) -> None:
    credential = token_credential(filled, kind)
    key = next(k for k in filled.keys if k.kind == kind)
    assert credential.certificate == der_of(key)
    ctx = client_context(world, ca, version)
    ccb.set_client_cert_cb(ctx, lambda request: credential)
    server = MemoryServer(server_context(ca, server_cert, version=version))
    link = Link(MemoryClient(world, ctx), server)
    if world == "pyopenssl" and ccb.pyopenssl_route() == "bundled":
        # pip's pyOpenSSL has its own OpenSSL: the token's key cannot cross into it.
        with pytest.raises(ccb.Error, match="a signer credential cannot cross into another"):
            link.handshake()
        return
    link.handshake()
    link.exchange()  # TLS 1.3: the server has read (and verified) CertificateVerify
    assert server.peer_der() == der_of(key)


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_handshake_with_an_ed25519_key_on_the_token(
    token: softhsm.Token, ca: trustme.CA, server_cert: Any, version: str
) -> None:
    key = token.add_key("ed", "ed25519", ca)
    credential = ccb.Credential.from_pkcs11(token.uri, pin=PIN)
    ctx = client_context("raw", ca, version)
    ccb.set_client_cert_cb(ctx, lambda request: credential)
    server = MemoryServer(server_context(ca, server_cert, version=version))
    link = Link(MemoryClient("raw", ctx), server)
    link.handshake()
    link.exchange()
    assert server.peer_der() == der_of(key)


def test_many_threads_handshake_with_one_token_credential(
    filled: softhsm.Token, ca: trustme.CA, server_cert: Any
) -> None:
    credential = token_credential(filled, "p256")
    server_ctx = server_context(ca, server_cert)

    def work(n: int) -> None:
        for _ in range(5):
            ctx = client_context(WORLDS[n % 2], ca, "TLSv1.3")  # stdlib and raw
            ccb.set_client_cert_cb(ctx, lambda request: credential)
            server = MemoryServer(server_ctx)
            link = Link(MemoryClient(WORLDS[n % 2], ctx), server)
            link.handshake()
            link.exchange()
            assert server.peer_der() == credential.certificate

    assert in_threads(work) == []


def test_wallet_from_pkcs11_picks_by_the_servers_ca(
    token: softhsm.Token, ca: trustme.CA, other_ca: trustme.CA, server_cert: Any
) -> None:
    mine = token.add_key("from ca", "p256", ca)
    theirs = token.add_key("from other ca", "rsa", other_ca)
    wallet = ccb.Wallet.from_pkcs11(token.uri, pin=PIN)
    assert len(wallet) == 2
    for named, expected in ((ca, mine), (other_ca, theirs)):
        ctx = client_context("stdlib", ca, "TLSv1.3")
        ccb.set_client_cert_cb(ctx, wallet)
        server_ctx = server_context(ca, server_cert, client_cas=(named,), trust=(other_ca,))
        server = MemoryServer(server_ctx)
        link = Link(MemoryClient("stdlib", ctx), server)
        link.handshake()
        link.exchange()
        assert server.peer_der() == der_of(expected)


def test_credential_from_pkcs11_with_two_keys_asks_which(filled: softhsm.Token) -> None:
    with pytest.raises(ccb.Error, match=r"3 certificates .* name one with object="):
        ccb.Credential.from_pkcs11(filled.uri, pin=PIN)


@pytest.mark.parametrize("peer", ["s_server", "nginx"])
@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
@pytest.mark.parametrize("kind", ["p256", "rsa"])
def test_real_peers_accept_the_token_signature(
    filled: softhsm.Token, ca: trustme.CA, server_cert: Any, tmp_path: Path,
    peer: str, version: str, kind: str,
) -> None:  # fmt: skip
    credential = token_credential(filled, kind)
    key = next(k for k in filled.keys if k.kind == kind)
    cert = tmp_path / "server.pem"
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(cert))
    cafile = tmp_path / "client-ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    if peer == "s_server":
        server: Any = SServer(cert, "-CAfile", str(cafile), "-Verify", "1", "-verify_return_error")
    else:
        server = Nginx(tmp_path, cert, verify="on", client_cas=cafile)
    ctx = client_context("stdlib", ca, version)
    ccb.set_client_cert_cb(ctx, lambda request: credential)
    with server:
        response = get("stdlib", ctx, server.port)
    if peer == "s_server":
        assert page_certificate(response) == der_of(key)
        assert page_verify_code(response) == 0
    else:
        seen = nginx_record(response)
        assert seen["verify"] == "SUCCESS", server.log
        assert seen["protocol"] == version
        assert seen["fingerprint"].lower() == hashlib.sha1(der_of(key)).hexdigest()
