"""``openssl-ccb info --pkcs11`` and ``connect --pkcs11``, run as a user runs them."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import softhsm
import trustme
from cryptography.hazmat.primitives.serialization import Encoding
from peers import SServer, page_certificate
from test_cli import answer_on_a_terminal

PIN = "cli-pin-5150"
AWAY = {"cwd": "/"}  # not the source tree: the installed package runs
_labels = itertools.count()


@pytest.fixture(scope="session")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return softhsm.start(tmp_path_factory.mktemp("softhsm"))


@pytest.fixture
def token(hsm: Any, ca: trustme.CA, other_ca: trustme.CA) -> softhsm.Token:
    """An EC key and an RSA key with certificates from two CAs, and a certificate
    whose key is not on the token."""
    t = softhsm.Token(hsm, f"cli-token-{next(_labels)}", PIN)
    t.add_key("ec key", "p256", ca, subject="token client ec")
    t.add_key("rsa key", "rsa", other_ca, subject="token client rsa")
    lone = softhsm.certificate_for(t.keys[0].public, "keyless", other_ca)
    t.store_certificate(lone, "no key", b"\x99\x98")
    return t


@pytest.fixture
def pin_file(tmp_path: Path) -> Path:
    path = tmp_path / "pin"
    path.write_text(PIN + "\n")
    return path


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openssl_ccb", *argv],
        capture_output=True, text=True, timeout=60, **AWAY,
    )  # fmt: skip


def test_info_lists_what_the_token_holds(token: softhsm.Token, pin_file: Path) -> None:
    result = run("info", "--pkcs11", token.uri, "--pin-file", str(pin_file))
    assert result.returncode == 0, result
    assert result.stderr == ""
    out = result.stdout
    assert f"pkcs11:token={token.label}: 3 certificate(s)" in out
    ec_id, rsa_id = (key.id.hex() for key in token.keys)
    assert f"'ec key' (id {ec_id})\n    subject: CN=token client ec\n" in out
    assert f"'rsa key' (id {rsa_id})\n    subject: CN=token client rsa\n" in out
    blocks = {b.split("'")[0]: b for b in out.split("\n  '")[1:]}  # label -> its lines
    assert "\n    issuer: " in blocks["ec key"]
    assert "O=openssl-ccb tests" in blocks["ec key"]
    assert "O=another CA" in blocks["rsa key"]
    assert "O=another CA" in blocks["no key"]
    assert "private key: EC on the token; signs ecdsa_secp256r1_sha256, ecdsa_secp384r1" in out
    assert "private key: RSA on the token; signs rsa_pkcs1_sha256, " in out
    assert "'no key' (id 9998)\n    subject: CN=keyless\n" in out
    assert "private key: not on the token" in out
    cert = token.keys[0].cert
    assert cert is not None
    # not_valid_before_utc from cryptography 42; Debian's 38 has the naive UTC one only.
    start = getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before
    assert f"valid: {start:%Y-%m-%d %H:%M:%S} to " in out
    assert PIN not in out


def test_info_object_narrows_the_list(token: softhsm.Token, pin_file: Path) -> None:
    result = run("info", "--pkcs11", f"{token.uri.replace('?', ';object=no%20key?')}",
                 "--pin-file", str(pin_file))  # fmt: skip
    assert result.returncode == 0, result
    assert ": 1 certificate(s)" in result.stdout
    assert "'no key'" in result.stdout


def test_info_pin_from_the_uri(token: softhsm.Token) -> None:
    result = run("info", "--pkcs11", f"{token.uri}&pin-value={PIN}")
    assert result.returncode == 0, result
    assert "3 certificate(s)" in result.stdout


def test_info_wrong_pin_is_one_line_without_the_pin(token: softhsm.Token, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-pin-42\n")
    result = run("info", "--pkcs11", token.uri, "--pin-file", str(wrong))
    assert result.returncode == 1, result
    assert result.stderr == (
        f"openssl-ccb: PKCS#11 token {token.label!r} refused the PIN (CKR_PIN_INCORRECT)\n"
    )
    assert "not-the-pin-42" not in result.stdout + result.stderr


def test_without_a_terminal_no_pin_is_an_error(token: softhsm.Token) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "openssl_ccb", "info", "--pkcs11", token.uri],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, **AWAY,
    )  # fmt: skip
    assert result.returncode == 1, result
    assert f"PKCS#11 token {token.label!r} needs a PIN" in result.stderr


def test_a_terminal_is_asked_for_the_pin(token: softhsm.Token) -> None:
    argv = [sys.executable, "-m", "openssl_ccb", "info", "--pkcs11", token.uri]
    prompt = f"PIN for pkcs11:token={token.label}: ".encode()
    code, before, after = answer_on_a_terminal(argv, prompt, PIN.encode())
    assert code == 0, before + after
    assert PIN.encode() not in after  # getpass does not echo
    assert b"3 certificate(s)" in after


def test_there_is_no_pin_argument(token: softhsm.Token) -> None:
    for command in (["info"], ["connect", "localhost:1"]):
        result = run(*command, "--pkcs11", token.uri, "--pin", PIN)
        assert result.returncode == 2
        assert "unrecognized arguments: --pin" in result.stderr  # not an abbreviated --pin-file


def test_no_module_is_one_line(token: softhsm.Token, pin_file: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PKCS11_MODULE"}
    result = subprocess.run(
        [sys.executable, "-m", "openssl_ccb", "info", "--pkcs11", f"pkcs11:token={token.label}",
         "--pin-file", str(pin_file)],
        capture_output=True, text=True, timeout=60, env=env, **AWAY,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("openssl-ccb: no PKCS#11 module: give --module PATH, put")
    with_module = run("info", "--pkcs11", f"pkcs11:token={token.label}",
                      "--module", softhsm.MODULE, "--pin-file", str(pin_file))  # fmt: skip
    assert with_module.returncode == 0, with_module


def test_connect_needs_a_wallet_or_a_token() -> None:
    result = run("connect", "localhost:1")
    assert result.returncode == 2
    assert "connect needs --wallet PATH or --pkcs11 URI (or both)" in result.stderr


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
@pytest.mark.parametrize("named", ["ca", "other_ca"])
def test_connect_signs_on_the_token(
    token: softhsm.Token, pin_file: Path, server_cert: Any, tmp_path: Path,
    request: pytest.FixtureRequest, version: str, named: str,
) -> None:  # fmt: skip
    """s_server names one CA: the token's certificate from that CA is sent, signed there."""
    cert = tmp_path / "server.pem"
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(cert))
    trusted = tmp_path / "client-ca.pem"
    request.getfixturevalue(named).cert_pem.write_to_path(str(trusted))
    cafile = tmp_path / "ca.pem"
    request.getfixturevalue("ca").cert_pem.write_to_path(str(cafile))
    verify = ["-CAfile", str(trusted), "-Verify", "1", "-verify_return_error", version]
    with SServer(cert, *verify) as server:
        result = run("connect", f"localhost:{server.port}", "--cafile", str(cafile),
                     "--pkcs11", token.uri, "--pin-file", str(pin_file), "--get", "/")  # fmt: skip
    assert result.returncode == 0, result
    expected = "token client ec" if named == "ca" else "token client rsa"
    assert f"sent: CN={expected}\n" in result.stdout
    sent = next(
        k for k in token.keys if k.cert and k.cert.subject.rfc4514_string().endswith(expected)
    )
    assert sent.cert is not None
    assert page_certificate(result.stdout.encode()) == sent.cert.public_bytes(Encoding.DER)
    assert PIN not in result.stdout + result.stderr


def test_a_malformed_uri_is_a_usage_error() -> None:
    for command in (["info"], ["connect", "localhost:1"]):
        result = run(*command, "--pkcs11", "pkcs11:token=a;token=b")
        assert result.returncode == 2, result
        assert "argument --pkcs11: pkcs11: URI attribute 'token' is given twice" in result.stderr
        assert "Traceback" not in result.stderr
