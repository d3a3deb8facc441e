"""What a new user meets first (issue 13): fullchain PEMs, passwords, PKCS#12
messages, a chain given as one string, validity and extended key usage, each
through a real handshake."""

from __future__ import annotations

import datetime
import shutil
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from certs import Issued, issue
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from tlsutil import MemoryPair, client_context, selecting_server
from worlds import WORLDS, Link, MemoryClient, MemoryServer
from worlds import client_context as world_context

import openssl_ccb as ccb
from openssl_ccb import selection

DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def pki() -> dict[str, Issued]:
    root = issue("First Hour Root", ca=True)
    inter = issue("First Hour Intermediate", root, ca=True)
    return {
        "root": root,
        "inter": inter,
        "leaf": issue("leaf via the intermediate", inter),
        "direct": issue("leaf of the root", root),
        "expired": issue("expired leaf", root, valid=(-3 * DAY, -DAY)),
        "future": issue("not yet valid leaf", root, valid=(DAY, 3 * DAY)),
        "server_only": issue(
            "serverAuth-only leaf", root, eku=[x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
        ),
        "long": issue("leaf valid three days", root, valid=(-DAY, 3 * DAY)),
    }


@pytest.fixture
def shake(ca: Any, server_cert: Any, pki: dict[str, Issued]) -> Any:
    """``shake(callback, version)``: a handshake with a server that trusts only
    the root and requires a certificate; returns the server's view."""

    def run(callback: Any, version: str = "TLSv1.3") -> MemoryPair:
        server = selecting_server(server_cert, trust=(pki["root"],), version=version)
        pair = MemoryPair(server)
        ctx = client_context(ca)
        ccb.set_client_cert_cb(ctx, callback)
        pair.handshake(pair.stdlib_client(ctx))
        return pair

    return run


# --- 1. a fullchain PEM ------------------------------------------------------------


def test_a_fullchain_pem_sends_its_chain_to_a_server_that_trusts_only_the_root(
    pki, shake, tmp_path, version
):
    leaf, inter = pki["leaf"], pki["inter"]
    fullchain, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    fullchain.write_bytes(leaf.pem + inter.pem)
    key.write_bytes(leaf.key_pem)
    credential = ccb.Credential.load(fullchain, key)
    assert credential.chain == [inter.der]
    pair = shake(lambda request: credential, version)
    assert pair.peer_der() == leaf.der
    # The same file returned by a callback, and the same PEM as bytes.
    for cert in (str(fullchain), leaf.pem + inter.pem):
        answer = (cert, str(key))
        assert shake(lambda request, answer=answer: answer, version).peer_der() == leaf.der


def test_a_fullchain_pem_with_chain_given_too_is_refused(pki, tmp_path):
    leaf, inter = pki["leaf"], pki["inter"]
    with pytest.raises(ValueError, match="chain= was given too"):
        ccb.Credential.load(leaf.pem + inter.pem, leaf.key_pem, [inter.pem])


def test_a_broken_certificate_after_the_leaf_is_not_dropped_silently(pki):
    broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(ccb.Error, match=r"\(PEM certificate 2\)"):
        ccb.Credential.load(pki["leaf"].pem + broken, pki["leaf"].key_pem)


# --- 2, 3 and 8. passwords and PKCS#12 messages --------------------------------------


def _encrypted(key: Any, form: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, form, serialization.BestAvailableEncryption(b"s3cret")
    )


@pytest.mark.parametrize(
    "form", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
def test_an_encrypted_key_without_a_password_says_it_needs_one(pki, shake, form):
    leaf = pki["direct"]
    locked = _encrypted(leaf.key, form)
    with pytest.raises(ccb.Error, match=r"^the private key is encrypted and needs a password$"):
        shake(lambda request: (leaf.pem, locked))
    with pytest.raises(ccb.Error, match=r"^wrong password for the private key$"):
        ccb.Credential.load(leaf.pem, locked, password="wrong")
    credential = ccb.Credential.load(leaf.pem, locked, password="s3cret")
    assert shake(lambda request: credential).peer_der() == leaf.der


def _p12(leaf: Issued, password: bytes) -> bytes:
    return pkcs12.serialize_key_and_certificates(
        b"x", leaf.key, leaf.cert, None, serialization.BestAvailableEncryption(password)
    )


def test_a_pkcs12_that_needs_a_password_given_none_says_so(pki, shake, tmp_path):
    path = tmp_path / "locked.p12"
    path.write_bytes(_p12(pki["direct"], b"right"))
    with pytest.raises(ccb.Error, match=r"^PKCS#12 file '.*locked\.p12' needs a password$"):
        shake(lambda request: ccb.Credential.from_pkcs12(path))
    with pytest.raises(ccb.Error, match=r"^wrong password for PKCS#12 file '.*locked\.p12'$"):
        ccb.Credential.from_pkcs12(path, "wrong")
    credential = ccb.Credential.from_pkcs12(path, "right")
    assert shake(lambda request: credential).peer_der() == pki["direct"].der


def test_an_unreadable_pkcs12_file_is_named_once(tmp_path):
    missing = tmp_path / "nope.p12"
    with pytest.raises(ccb.Error) as caught:
        ccb.Credential.from_pkcs12(missing)
    assert str(caught.value) == (
        f"cannot read the PKCS#12 file {str(missing)!r}: No such file or directory"
    )


def _openssl() -> str:
    found = shutil.which("openssl") or "/usr/bin/openssl"
    assert Path(found).exists(), "the openssl command is missing: apt-get install openssl"
    return found


_LOAD_LEGACY = """
import sys
import openssl_ccb as ccb
assert "cryptography" not in sys.modules
try:
    ccb.Credential.from_pkcs12(sys.argv[1], "pw")
except ccb.Error as exc:
    print(exc)
"""


def test_a_legacy_pkcs12_names_the_workarounds_and_the_workaround_works(pki, shake, tmp_path):
    leaf = pki["direct"]
    (tmp_path / "c.pem").write_bytes(leaf.pem)
    (tmp_path / "k.pem").write_bytes(leaf.key_pem)
    legacy = tmp_path / "legacy.p12"
    subprocess.run(
        [
            *(_openssl(), "pkcs12", "-export", "-legacy", "-in", "c.pem", "-inkey", "k.pem"),
            *("-out", str(legacy), "-passout", "pass:pw"),
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    # In a process of its own: a cryptography on this very libssl (Debian's)
    # loads the legacy provider into it when imported, as this test's has.
    refused = subprocess.run(
        [sys.executable, "-c", _LOAD_LEGACY, str(legacy)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 0, refused.stderr
    message = refused.stdout
    assert message.startswith(f"PKCS#12 file {str(legacy)!r} is encrypted with a legacy algorithm")
    assert "legacy provider" in message
    assert "load_key_and_certificates" in message
    key, cert, _ = pkcs12.load_key_and_certificates(legacy.read_bytes(), b"pw")
    credential = ccb.Credential.load(cert, key)  # the workaround the message names
    assert shake(lambda request: credential).peer_der() == leaf.der


# --- 6. a chain given as one string ---------------------------------------------------


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("chain", ["intermediate.pem", b"chain", bytearray(b"chain")])
def test_a_chain_given_as_one_value_is_a_clean_type_error(ca, server_cert, pki, world, chain):
    from tlsutil import server_context

    leaf = pki["direct"]
    ctx = world_context(world, ca, "TLSv1.3")
    ccb.set_client_cert_cb(ctx, lambda request: (leaf.pem, leaf.key_pem, chain))
    link = Link(MemoryClient(world, ctx), MemoryServer(server_context(ca, server_cert)))
    with pytest.raises(TypeError, match=r"chain must be a sequence.*pass \[item, \.\.\.\]") as e:
        link.handshake()
    assert e.value.__cause__ is None
    assert e.value.__context__ is None  # no FileNotFoundError: 'i'


# --- validity and extended key usage --------------------------------------------------


def _aware(cert: x509.Certificate, field: str) -> datetime.datetime:
    # cryptography 38 (Debian 12) has only the naive property; later ones deprecate it.
    aware = getattr(cert, f"{field}_utc", None)
    return aware or getattr(cert, field).replace(tzinfo=datetime.timezone.utc)  # type: ignore[no-any-return]


def test_a_credential_tells_its_validity_as_aware_datetimes(pki):
    for label in ("leaf", "expired", "future"):
        issued = pki[label]
        credential = issued.credential()
        assert credential.not_valid_before == _aware(issued.cert, "not_valid_before")
        assert credential.not_valid_after == _aware(issued.cert, "not_valid_after")
        assert credential.not_valid_after.tzinfo is datetime.timezone.utc


@pytest.mark.parametrize("unusable", ["expired", "future", "server_only"])
def test_a_wallet_passes_over_what_the_server_would_refuse(pki, shake, version, unusable):
    bad, good = pki[unusable].credential(), pki["direct"].credential()
    seen: list[bool] = []
    wallet = ccb.Wallet([bad, good])

    def choose(request: ccb.CertificateRequest) -> Any:
        seen.append(request.supports(bad))
        return wallet(request)

    assert shake(choose, version).peer_der() == pki["direct"].der
    assert seen == [False]
    # And the server would indeed have refused it.
    with pytest.raises(ssl.SSLError):
        shake(lambda request: bad, version)


def test_the_reason_is_given_in_words(pki, ca, server_cert):
    reasons: dict[str, str] = {}
    server = selecting_server(server_cert, trust=(pki["root"],), verify=ssl.CERT_OPTIONAL)

    def explain(request: ccb.CertificateRequest) -> None:
        for label in ("expired", "future", "server_only", "direct"):
            c = pki[label].credential()
            reasons[label] = selection.fit(request, c._x509, c._key, c._chain)[1]

    pair = MemoryPair(server)
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, explain)
    pair.handshake(pair.stdlib_client(ctx))
    assert reasons["expired"].startswith("it expired on ")
    assert reasons["future"].startswith("it is not valid before ")
    assert reasons["server_only"] == (
        "its extended key usage does not include TLS client authentication"
    )
    assert reasons["direct"].startswith("the server named no CAs")


def test_the_clock_can_be_set(pki, shake, monkeypatch):
    short, long = pki["direct"].credential(), pki["long"].credential()
    wallet = ccb.Wallet([short, long])
    assert shake(wallet).peer_der() == pki["direct"].der
    two_days_on = datetime.datetime.now(datetime.timezone.utc) + 2 * DAY
    monkeypatch.setattr(selection, "now", lambda: two_days_on)
    assert shake(wallet).peer_der() == pki["long"].der


def test_the_command_line_says_why_an_expired_certificate_was_not_sent(
    ca, server_cert, pki, tmp_path, capsys
):
    from tlsutil import SocketServer

    from openssl_ccb.cli import main

    wallet = tmp_path / "wallet"
    wallet.mkdir()
    (wallet / "old.pem").write_bytes(pki["expired"].pem + pki["expired"].key_pem)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    server = selecting_server(server_cert, trust=(pki["root"],), verify=ssl.CERT_OPTIONAL)
    with SocketServer(server, reply=b"HTTP/1.0 200 OK\r\n\r\n") as running:
        argv = ["connect", f"localhost:{running.port}", "--cafile", str(cafile)]
        main([*argv, "--wallet", str(wallet)])
    out = capsys.readouterr().out
    assert "sent no certificate: nothing in the wallet fits (CN=expired leaf: it expired on " in out
