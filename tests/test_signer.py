"""Credential.from_signer: the private key never exists in this process; a
Python callable signs during the handshake, in every world and TLS version,
through renegotiation and post-handshake auth. Its exceptions and bad answers
reach the code that drove the handshake."""

from __future__ import annotations

import ssl
import threading
import traceback
from typing import Any

import certs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from peers import SServer, page_certificate
from test_peers import PEERS, Record, fingerprint, record, start  # noqa: F401 - start: a fixture
from test_post_handshake import (
    ask_after_handshake,
    finish,
    pha_link,
    renegotiate_asking,
    renegotiation_link,
)
from tlsutil import Boom, in_threads, server_context, their_queue_is_empty
from worlds import WORLDS, Link, MemoryClient, MemoryServer, client_context, get

import openssl_ccb as ccb
from openssl_ccb import ffi, lib
from openssl_ccb.worlds import pyopenssl

HASHES = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}
KEYS = ["ec", "p384", "rsa", "ed25519"]


class KeySigner:
    """A signer backed by a ``cryptography`` key object: the key signs, it is
    never exported. Records the schemes it was asked for."""

    def __init__(self, key: Any) -> None:
        self.key = key
        self.asked: list[str] = []
        self.threads: list[int] = []

    def __call__(self, message: bytes, scheme: str) -> bytes:
        self.asked.append(scheme)
        self.threads.append(threading.get_ident())
        if scheme == "ed25519":
            return bytes(self.key.sign(message))
        digest = HASHES[scheme.rsplit("_", 1)[1]]
        if scheme.startswith("ecdsa_"):
            return bytes(self.key.sign(message, ec.ECDSA(digest)))
        if scheme.startswith("rsa_pss_rsae_"):
            pss = padding.PSS(padding.MGF1(digest), digest.digest_size)
            return bytes(self.key.sign(message, pss, digest))
        return bytes(self.key.sign(message, padding.PKCS1v15(), digest))


def trustme_issuer(ca: Any) -> certs.Issued:
    return certs.Issued(
        x509.load_pem_x509_certificate(ca.cert_pem.bytes()),
        serialization.load_pem_private_key(ca.private_key_pem.bytes(), None),
    )


@pytest.fixture(scope="module")
def leaves(ca: Any) -> dict[str, certs.Issued]:
    issuer = trustme_issuer(ca)
    return {kind: certs.issue(f"signer {kind}", issuer, key=kind) for kind in KEYS}


def bundled(world: str) -> bool:
    return world == "pyopenssl" and ccb.pyopenssl_route() == pyopenssl.BUNDLED


def link_for(world: str, ca: Any, server_cert: Any, version: str, callback: Any) -> Link:
    ctx = client_context(world, ca, version)
    ccb.set_client_cert_cb(ctx, callback)
    return Link(
        MemoryClient(world, ctx), MemoryServer(server_context(ca, server_cert, version=version))
    )


EXPECTED = {
    ("ec", "TLSv1.3"): "ecdsa_secp256r1_sha256",
    ("p384", "TLSv1.3"): "ecdsa_secp384r1_sha384",
    ("ec", "TLSv1.2"): "ecdsa_secp256r1_sha256",
    ("p384", "TLSv1.2"): "ecdsa_secp256r1_sha256",  # TLS 1.2 ties no curve to a hash
    ("rsa", "TLSv1.3"): "rsa_pss_rsae_sha256",
    ("rsa", "TLSv1.2"): "rsa_pss_rsae_sha256",
    ("ed25519", "TLSv1.3"): "ed25519",
    ("ed25519", "TLSv1.2"): "ed25519",
}


@pytest.mark.parametrize("kind", KEYS)
@pytest.mark.parametrize("world", WORLDS)
def test_a_signer_credential_authenticates_in_every_world(
    world, kind, version, ca, server_cert, leaves
):
    leaf = leaves[kind]
    signer = KeySigner(leaf.key)
    credential = ccb.Credential.from_signer(leaf.pem, signer)
    link = link_for(world, ca, server_cert, version, lambda request: credential)
    if bundled(world):
        with pytest.raises(ccb.Error, match="same-libssl route"):
            link.handshake()
        assert signer.asked == []
        assert their_queue_is_empty(world)
        return
    link.handshake()
    link.exchange()
    assert link.server.peer_der() == leaf.der  # verified with the certificate's key
    assert signer.asked == [EXPECTED[kind, version]]
    assert signer.threads == [threading.get_ident()]  # on the handshake's thread


def test_the_key_is_not_in_the_process(leaves):
    """What OpenSSL holds for a signer credential cannot be encoded: it has
    no private half, only the certificate's public key."""
    credential = ccb.Credential.from_signer(leaves["ec"].pem, KeySigner(leaves["ec"].key))
    assert lib.i2d_PrivateKey(credential._key, ffi.NULL) <= 0
    ccb.errors.drain_error_queue()
    with pytest.raises(ccb.Error, match="cannot cross into another OpenSSL"):
        credential._private_key_der()


def test_a_certificate_for_another_key_is_refused_at_once(leaves):
    """The certificate must be the signer's: OpenSSL's own key check runs."""
    with pytest.raises(ccb.Error, match="does not match"):
        ccb.Credential(
            ccb.credential.load_certificate(leaves["rsa"].pem),
            ccb.Credential.from_signer(leaves["ec"].pem, KeySigner(leaves["ec"].key))._key,
            [],
        )


def raising_signer(message: bytes, scheme: str) -> bytes:
    raise Boom("the token is unplugged")


@pytest.mark.parametrize("world", WORLDS)
def test_an_exception_in_the_signer_reaches_the_handshake(world, version, ca, server_cert, leaves):
    credential = ccb.Credential.from_signer(leaves["ec"].pem, raising_signer)
    link = link_for(world, ca, server_cert, version, lambda request: credential)
    expected = (ccb.Error, "same-libssl") if bundled(world) else (Boom, "unplugged")
    with pytest.raises(expected[0], match=expected[1]) as info:
        link.handshake()
    if not bundled(world):
        frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
        assert "raising_signer" in frames  # the original traceback, into the signer
    link.move()
    assert link.server.peer_der() is None
    assert their_queue_is_empty(world)


def raw_ecdsa(key: Any) -> Any:
    def sign(message: bytes, scheme: str) -> bytes:
        r, s = utils.decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


@pytest.mark.parametrize(
    ("kind", "make", "error", "match"),
    [
        ("ec", lambda key: lambda m, s: "a signature", TypeError, "returned str"),
        ("ec", lambda key: lambda m, s: None, TypeError, "returned NoneType"),
        ("ec", raw_ecdsa, ccb.Error, "DER"),
        ("rsa", lambda key: lambda m, s: b"\x01" * 255, ccb.Error, "256 bytes"),
        ("ed25519", lambda key: lambda m, s: b"\x00" * 63, ccb.Error, "64 bytes"),
    ],
    ids=["str", "None", "raw-r-s", "rsa-short", "ed25519-short"],
)
@pytest.mark.parametrize("world", ["stdlib", "raw"])
def test_an_answer_that_is_no_signature_fails_the_handshake(
    world, kind, make, error, match, ca, server_cert, leaves
):
    credential = ccb.Credential.from_signer(leaves[kind].pem, make(leaves[kind].key))
    link = link_for(world, ca, server_cert, "TLSv1.3", lambda request: credential)
    with pytest.raises(error, match=match):
        link.handshake()
    link.move()
    assert link.server.peer_der() is None


def test_a_wrong_signature_of_the_right_form_is_the_servers_to_refuse(ca, server_cert, leaves):
    """The form is checked here; the value only the server can check, and does."""
    other = certs.new_key("ec")
    credential = ccb.Credential.from_signer(leaves["ec"].pem, KeySigner(other))
    link = link_for("stdlib", ca, server_cert, "TLSv1.3", lambda request: credential)
    with pytest.raises(Exception, match=r"(?i)decrypt error|bad signature"):
        link.handshake()


def test_a_scheme_the_signer_does_not_do_is_not_chosen_and_fails_if_forced(ca, server_cert, leaves):
    """An RSA signer without PSS: under TLS 1.3 (PSS only) supports() says no,
    a Wallet sends none, and returning it anyway fails with why."""
    pkcs1 = ccb.Credential.from_signer(
        leaves["rsa"].pem, KeySigner(leaves["rsa"].key), schemes=["rsa_pkcs1_sha256"]
    )
    assert pkcs1.schemes == frozenset({"rsa_pkcs1_sha256"})
    seen: list[bool] = []

    def forced(request: ccb.CertificateRequest) -> Any:
        seen.append(request.supports(pkcs1))
        return pkcs1

    link = link_for("stdlib", ca, server_cert, "TLSv1.3", forced)
    with pytest.raises(ccb.Error, match=r"chose rsa_pss_rsae_sha256.*does not sign with"):
        link.handshake()
    assert seen == [False]
    wallet = ccb.Wallet([pkcs1])
    explained: list[Any] = []
    link = link_for(
        "stdlib",
        ca,
        server_cert,
        "TLSv1.3",
        lambda r: explained.extend(wallet.explain(r)) or wallet(r),
    )
    with pytest.raises(ssl.SSLError, match=r"(?i)certificate"):  # the server requires one
        link.handshake()
    assert [why for _, ok, why in explained if not ok] == [
        "OpenSSL would sign with rsa_pss_rsae_sha256, which its signer does not do"
    ]


def test_schemes_are_a_list_of_names(leaves):
    with pytest.raises(TypeError, match="not one string"):
        ccb.Credential.from_signer(leaves["ec"].pem, KeySigner(leaves["ec"].key), schemes="ed25519")
    with pytest.raises(ValueError, match="empty"):
        ccb.Credential.from_signer(leaves["ec"].pem, KeySigner(leaves["ec"].key), schemes=[])
    with pytest.raises(TypeError, match="callable"):
        ccb.Credential.from_signer(leaves["ec"].pem, b"not a signer")  # type: ignore[arg-type]


@pytest.mark.parametrize("world", WORLDS)
def test_a_signer_answers_a_renegotiation(world, ca, server_cert, leaves):
    signer = KeySigner(leaves["rsa"].key)
    credential = ccb.Credential.from_signer(leaves["rsa"].pem, signer)
    link = renegotiation_link(world, ca, server_cert, lambda request: credential)
    renegotiate_asking(link)
    if bundled(world):
        with pytest.raises(ccb.Error, match="same-libssl"):
            finish(link)
        return
    finish(link)
    link.exchange()
    assert link.server.peer_der() == leaves["rsa"].der
    assert signer.asked == ["rsa_pss_rsae_sha256"]


@pytest.mark.parametrize("world", WORLDS)
def test_a_signer_answers_post_handshake_auth(world, ca, server_cert, leaves):
    signer = KeySigner(leaves["ec"].key)
    credential = ccb.Credential.from_signer(leaves["ec"].pem, signer)
    link = pha_link(world, ca, server_cert, lambda request: credential)
    ask_after_handshake(link)
    if bundled(world):
        with pytest.raises(ccb.Error, match="same-libssl"):
            link.client.read()
        return
    assert link.client.read() == b"now show me"
    link.move()
    link.exchange()
    assert link.server.peer_der() == leaves["ec"].der
    assert signer.asked == ["ecdsa_secp256r1_sha256"]


@pytest.mark.parametrize("world", WORLDS)
def test_a_failing_signer_after_the_handshake_surfaces_from_read(world, ca, server_cert, leaves):
    credential = ccb.Credential.from_signer(leaves["ec"].pem, raising_signer)
    link = pha_link(world, ca, server_cert, lambda request: credential)
    ask_after_handshake(link)
    with pytest.raises(ccb.Error if bundled(world) else Boom):
        link.client.read()
    link.move()
    # A failed signature is fatal (not a certificate withheld): OpenSSL alerts.
    with pytest.raises(Exception, match=r"(?i)alert internal error"):
        link.server.read()
    assert link.server.peer_der() is None
    assert their_queue_is_empty(world)


def test_many_threads_sign_with_one_credential(ca, server_cert, leaves):
    signer = KeySigner(leaves["ec"].key)
    credential = ccb.Credential.from_signer(leaves["ec"].pem, signer)

    def run(n: int) -> None:
        for _ in range(5):
            link = link_for("stdlib", ca, server_cert, "TLSv1.3", lambda r: credential)
            link.handshake()
            link.exchange()
            assert link.server.peer_der() == leaves["ec"].der

    assert in_threads(run) == []
    assert len(signer.asked) == 40
    assert len(set(signer.threads)) == 8


def test_the_signer_lives_as_long_as_a_connection_can_sign(ca, server_cert, leaves):
    """The Credential may go; the key OpenSSL holds keeps the signer."""
    import gc
    import weakref

    signer = KeySigner(leaves["ec"].key)
    alive = weakref.ref(signer)
    credential = ccb.Credential.from_signer(leaves["ec"].pem, signer)
    ctx = client_context("raw", ca, "TLSv1.3")
    assert lib.SSL_CTX_use_certificate(ctx, credential._x509) == 1
    assert lib.SSL_CTX_use_PrivateKey(ctx, credential._key) == 1
    del credential, signer
    gc.collect()
    assert alive() is not None
    link = Link(MemoryClient("raw", ctx), MemoryServer(server_context(ca, server_cert)))
    link.handshake()
    link.exchange()
    assert link.server.peer_der() == leaves["ec"].der
    del link, ctx
    gc.collect()
    assert alive() is None  # freed with the last key OpenSSL held


# --- real peers: openssl s_server and nginx, in another process ------------------


@pytest.mark.parametrize("kind", ["ec", "rsa"])
@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("peer", PEERS)
def test_a_signer_credential_is_verified_by_real_peers(
    start,  # noqa: F811 - the fixture imported from test_peers
    ca,
    leaves,
    peer,
    world,
    kind,
    version,
):
    signer = KeySigner(leaves[kind].key)
    credential = ccb.Credential.from_signer(leaves[kind].pem, signer)
    ctx = client_context(world, ca, version)
    ccb.set_client_cert_cb(ctx, lambda request: credential)
    with start(peer, cas=(trustme_issuer(ca),)) as server:
        if bundled(world):
            with pytest.raises(ccb.Error, match="same-libssl"):
                get(world, ctx, server.port)
            return
        seen = record(peer, get(world, ctx, server.port))
    assert seen == Record(fingerprint(leaves[kind].der), True, version), server.log
    assert len(signer.asked) == 1


def test_openssl_picks_the_scheme_and_the_signer_must_do_it(tmp_path, ca, server_cert, leaves):
    """TLS 1.2, an RSA signer without PSS: where the server allows PSS, OpenSSL
    would choose it, so supports() says no; where it allows only PKCS#1,
    supports() says yes and OpenSSL signs with PKCS#1."""
    cert = tmp_path / "server.pem"
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(cert))
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(trustme_issuer(ca).pem)
    signer = KeySigner(leaves["rsa"].key)
    pkcs1 = ccb.Credential.from_signer(leaves["rsa"].pem, signer, schemes=["rsa_pkcs1_sha256"])
    verdicts: list[tuple[bool, str]] = []

    def choose(request: ccb.CertificateRequest) -> Any:
        verdicts.extend((ok, why) for _, ok, why in ccb.Wallet([pkcs1]).explain(request))
        return pkcs1 if request.supports(pkcs1) else None

    results = []
    for allowed in ("rsa_pss_rsae_sha256:rsa_pkcs1_sha256", "rsa_pkcs1_sha256"):
        ctx = client_context("stdlib", ca, "TLSv1.2")
        ccb.set_client_cert_cb(ctx, choose)
        args = ["-CAfile", str(cafile), "-verify", "1", "-client_sigalgs", allowed, "-tls1_2"]
        with SServer(cert, *args) as server:
            results.append(page_certificate(get("stdlib", ctx, server.port)))
    assert results == [None, leaves["rsa"].der]
    assert [ok for ok, _ in verdicts] == [False, True]
    assert "OpenSSL would sign with rsa_pss_rsae_sha256" in verdicts[0][1]
    assert signer.asked == ["rsa_pkcs1_sha256"]


@pytest.mark.parametrize("world", ["stdlib", "raw"])
def test_a_signer_credential_sends_its_chain(world, version, ca, server_cert):
    """A server that trusts only the root verifies the leaf through the
    intermediate the signer credential sends with it."""
    root = certs.issue("Signer root", ca=True)
    intermediate = certs.issue("Signer intermediate", root, ca=True)
    leaf = certs.issue("signer behind an intermediate", intermediate, key="ec")
    credential = ccb.Credential.from_signer(leaf.pem, KeySigner(leaf.key), chain=[intermediate.pem])
    assert credential.chain == [intermediate.der]
    ctx = client_context(world, ca, version)
    ccb.set_client_cert_cb(ctx, lambda request: credential)
    server_ctx = server_context(ca, server_cert, version=version)
    server_ctx.load_verify_locations(cadata=root.pem.decode())
    link = Link(MemoryClient(world, ctx), MemoryServer(server_ctx))
    link.handshake()
    link.exchange()
    assert link.server.peer_der() == leaf.der  # verified: the chain reached the server
