"""Wallet.from_directory forgives (issue 13): it keeps what it can use, says
what it skipped and why, and pairs keys with certificates by public key. Each
wallet then sends through a real handshake."""

from __future__ import annotations

import datetime
import warnings
from pathlib import Path
from typing import Any

import pytest
from certs import Issued, issue
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from tlsutil import MemoryPair, client_context, selecting_server

import openssl_ccb as ccb


@pytest.fixture(scope="module")
def pki() -> dict[str, Issued]:
    root = issue("Wallet Root", ca=True)
    inter = issue("Wallet Intermediate", root, ca=True)
    return {
        "root": root,
        "inter": inter,
        "via_inter": issue("certbot leaf", inter),
        "work": issue("work", root),
        "home": issue("home", root),
        "other": issue("other", root),
    }


@pytest.fixture
def sends(ca: Any, server_cert: Any, pki: dict[str, Issued]) -> Any:
    """``sends(wallet)``: the certificate a root-only server received from it."""

    def run(wallet: ccb.Wallet, version: str = "TLSv1.3") -> bytes | None:
        server = selecting_server(server_cert, trust=(pki["root"],), version=version)
        pair = MemoryPair(server)
        ctx = client_context(ca)
        ccb.set_client_cert_cb(ctx, wallet)
        pair.handshake(pair.stdlib_client(ctx))
        return pair.peer_der()

    return run


def _p12(leaf: Issued, password: bytes | None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return pkcs12.serialize_key_and_certificates(b"x", leaf.key, leaf.cert, None, encryption)


def _quiet(directory: Path, password: Any = None) -> ccb.Wallet:
    """A wallet read with warnings as errors: nothing may be skipped."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return ccb.Wallet.from_directory(directory, password)


def test_a_certbot_directory_pairs_by_public_key_and_sends_the_chain(pki, sends, tmp_path, version):
    leaf, inter = pki["via_inter"], pki["inter"]
    (tmp_path / "cert.pem").write_bytes(leaf.pem)
    (tmp_path / "chain.pem").write_bytes(inter.pem)
    (tmp_path / "fullchain.pem").write_bytes(leaf.pem + inter.pem)
    (tmp_path / "privkey.pem").write_bytes(leaf.key_pem)
    (tmp_path / "README").write_text("certbot's notes")
    wallet = _quiet(tmp_path)
    assert [c.certificate for c in wallet] == [leaf.der]  # one credential, not two
    assert wallet.credentials[0].chain == [inter.der]
    assert wallet.skipped == []
    assert sends(wallet, version) == leaf.der


def test_one_bad_file_does_not_spoil_the_wallet(pki, sends, tmp_path):
    (tmp_path / "a-ca-bundle.pem").write_bytes(pki["root"].pem + pki["inter"].pem)
    (tmp_path / "b-locked.p12").write_bytes(_p12(pki["home"], b"its own"))
    (tmp_path / "c-stray.key").write_bytes(pki["other"].key_pem)
    (tmp_path / "d-broken.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\nAA\n-----END")
    (tmp_path / "work.pem").write_bytes(pki["work"].pem)
    (tmp_path / "work.key").write_bytes(pki["work"].key_pem)
    (tmp_path / "z-dir.pem").mkdir()
    with pytest.warns(UserWarning, match=r"skipped 5 file\(s\): a-ca-bundle\.pem: ") as caught:
        wallet = ccb.Wallet.from_directory(tmp_path, password="pw")
    assert len(caught) == 1  # one warning for the directory
    assert [c.certificate for c in wallet] == [pki["work"].der]
    reasons = {Path(path).name: why for path, why in wallet.skipped}
    assert sorted(reasons) == [
        "a-ca-bundle.pem",
        "b-locked.p12",
        "c-stray.key",
        "d-broken.crt",
        "z-dir.pem",
    ]
    assert reasons["a-ca-bundle.pem"].startswith("no private key in it")
    assert reasons["b-locked.p12"].startswith("wrong password for PKCS#12 file")
    assert reasons["c-stray.key"] == "no certificate in the directory matches this private key"
    assert "not a PEM or DER certificate" in reasons["d-broken.crt"]
    assert reasons["z-dir.pem"].startswith("cannot read it: ")
    assert all(Path(path).parent == tmp_path for path, _ in wallet.skipped)
    assert sends(wallet) == pki["work"].der


def test_capital_extensions_der_certificates_and_keys_of_any_name(pki, sends, tmp_path):
    der_key = pki["home"].key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "A-WORK.P12").write_bytes(_p12(pki["work"], None))
    (tmp_path / "b-home.cer").write_bytes(pki["home"].der)  # DER certificate
    (tmp_path / "home-key.KEY").write_bytes(der_key)  # DER key, another name
    (tmp_path / "C-OTHER.PFX").write_bytes(_p12(pki["other"], None))
    (tmp_path / "d.der").write_bytes(pki["via_inter"].der)
    (tmp_path / "d.key").write_bytes(pki["via_inter"].key_pem)
    wallet = _quiet(tmp_path)
    assert [c.certificate for c in wallet] == [  # name order: capitals sort first
        pki["work"].der,
        pki["other"].der,
        pki["home"].der,
        pki["via_inter"].der,
    ]
    assert sends(ccb.Wallet(wallet.credentials[2:3])) == pki["home"].der


@pytest.mark.parametrize("kind", ["str", "bytes", "mapping", "callable"])
def test_passwords_for_every_file_or_each(pki, sends, tmp_path, kind):
    (tmp_path / "work.p12").write_bytes(_p12(pki["work"], b"work pw"))
    locked = pki["home"].key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"home pw" if kind != "str" else b"work pw"),
    )
    (tmp_path / "home.pem").write_bytes(pki["home"].pem + locked)
    per_file = {"work.p12": "work pw", "home.pem": b"home pw"}
    password: Any = {
        "str": "work pw",
        "bytes": b"work pw",
        "mapping": per_file,
        "callable": lambda path: per_file[Path(path).name],
    }[kind]
    if kind == "bytes":  # one password for all: home.pem's differs, and is reported
        with pytest.warns(UserWarning, match=r"home\.pem: wrong password for the private key"):
            wallet = ccb.Wallet.from_directory(tmp_path, password)
        assert [c.certificate for c in wallet] == [pki["work"].der]
    else:
        wallet = _quiet(tmp_path, password)
        assert [c.certificate for c in wallet] == [pki["home"].der, pki["work"].der]
    assert sends(wallet) == wallet.credentials[0].certificate


def test_a_locked_key_without_a_password_is_skipped_saying_so(pki, sends, tmp_path):
    locked = pki["home"].key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"pw"),
    )
    (tmp_path / "home.pem").write_bytes(pki["home"].pem)
    (tmp_path / "home.key").write_bytes(locked)
    (tmp_path / "work.pem").write_bytes(pki["work"].pem + pki["work"].key_pem)
    with pytest.warns(UserWarning, match=r"skipped 2 file\(s\)"):
        wallet = ccb.Wallet.from_directory(tmp_path)
    assert dict(wallet.skipped) == {
        str(tmp_path / "home.key"): "the private key is encrypted and needs a password",
        str(tmp_path / "home.pem"): (
            "no private key in it, and no private key in the directory matches it"
        ),
    }
    assert sends(wallet) == pki["work"].der


def test_nothing_usable_is_an_error_naming_what_was_skipped(pki, tmp_path):
    (tmp_path / "bundle.pem").write_bytes(pki["root"].pem)
    (tmp_path / "x.PFX").write_bytes(_p12(pki["work"], b"secret"))
    with pytest.raises(ccb.Error) as caught:
        ccb.Wallet.from_directory(tmp_path)
    message = str(caught.value)
    assert "holds no usable credentials" in message
    assert "bundle.pem: no private key in it" in message
    assert "x.PFX' needs a password" in message


def test_a_directory_wallet_passes_over_an_expired_certificate(pki, sends, tmp_path):
    """The validity check reaches wallets read from a directory too."""
    day = datetime.timedelta(days=1)
    expired = issue("expired", pki["root"], valid=(-3 * day, -day))
    (tmp_path / "a-expired.pem").write_bytes(expired.pem + expired.key_pem)
    (tmp_path / "b-work.pem").write_bytes(pki["work"].pem + pki["work"].key_pem)
    wallet = _quiet(tmp_path)
    assert len(wallet) == 2  # kept: validity is judged at each handshake
    assert sends(wallet) == pki["work"].der
