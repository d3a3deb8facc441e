"""The openssl-ccb command, in-process and as a subprocess,
against local servers."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from certs import Issued, issue
from tlsutil import SocketServer, selecting_server

from openssl_ccb.cli import main


@pytest.fixture(scope="module")
def pki() -> dict[str, Issued]:
    root_a, root_b = issue("CLI Root A", ca=True), issue("CLI Root B", ca=True)
    return {
        "root_a": root_a,
        "root_b": root_b,
        "leaf_a": issue("cli leaf of A", root_a),
        "leaf_b": issue("cli leaf of B", root_b),
    }


@pytest.fixture
def cafile(ca: Any, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def wallet_dir(pki: dict[str, Issued], tmp_path: Path) -> Path:
    wallet = tmp_path / "wallet"
    wallet.mkdir()
    for label in ("leaf_b", "leaf_a"):
        (wallet / f"{label}.pem").write_bytes(pki[label].pem)
        (wallet / f"{label}.key").write_bytes(pki[label].key_pem)
    return wallet


def asking_server(server_cert: Any, pki: dict[str, Issued], **kw: Any) -> SocketServer:
    ctx = selecting_server(
        server_cert,
        trust=(pki["root_a"],),
        names=(pki["root_a"],),
        sigalgs="ecdsa_secp256r1_sha256",
        **kw,
    )
    return SocketServer(ctx, reply=b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi")


def test_probe_reports_what_the_server_asks(server_cert, pki, cafile, capsys):
    with asking_server(server_cert, pki) as server:
        code = main(["probe", f"localhost:{server.port}", "--cafile", cafile])
    out = capsys.readouterr().out
    assert code == 0
    assert "asks for a client certificate" in out
    assert "  CN=CLI Root A" in out
    assert "signature algorithms: ecdsa_secp256r1_sha256" in out
    assert server.received == []  # the probe sent nothing, and the server refused it


def test_probe_json(server_cert, pki, cafile, capsys):
    with asking_server(server_cert, pki, version="TLSv1.2") as server:
        code = main(
            [
                "probe",
                f"127.0.0.1:{server.port}",
                "--servername",
                "localhost",
                "--cafile",
                cafile,
                "--json",
            ]
        )
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["requests_certificate"] is True
    assert report["protocol"] == "TLSv1.2"
    assert report["server_name"] == "localhost"
    assert report["acceptable_cas"] == ["CN=CLI Root A"]
    assert (
        bytes.fromhex(report["acceptable_cas_der_hex"][0])
        == pki["root_a"].cert.subject.public_bytes()
    )
    assert report["signature_algorithms"] == ["ecdsa_secp256r1_sha256"]


def test_probe_of_a_server_that_asks_nothing(server_cert, pki, cafile, capsys):
    with asking_server(server_cert, pki, verify=ssl.CERT_NONE) as server:
        code = main(["probe", f"localhost:{server.port}", "--cafile", cafile, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["requests_certificate"] is False


def test_connect_chooses_from_the_wallet_and_gets(server_cert, pki, cafile, wallet_dir, capsys):
    with asking_server(server_cert, pki) as server:
        code = main(
            [
                "connect",
                f"localhost:{server.port}",
                "--cafile",
                cafile,
                "--wallet",
                str(wallet_dir),
                "--get",
                "/",
            ]
        )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "sent: CN=cli leaf of A" in out
    assert "issued by CN=CLI Root A, which the server accepts" in out
    assert "HTTP/1.0 200 OK" in out
    assert server.received == [pki["leaf_a"].der]


def test_connect_with_a_single_pem_file(server_cert, pki, cafile, wallet_dir, capsys):
    with asking_server(server_cert, pki) as server:
        code = main(
            [
                "connect",
                f"localhost:{server.port}",
                "--cafile",
                cafile,
                "--wallet",
                str(wallet_dir / "leaf_a.pem"),
            ]
        )
    assert code == 0
    assert server.received == [pki["leaf_a"].der]


def test_connect_when_nothing_fits_fails_with_one_line(server_cert, pki, cafile, tmp_path, capsys):
    wallet = tmp_path / "only-b"
    wallet.mkdir()
    (wallet / "b.pem").write_bytes(pki["leaf_b"].pem + pki["leaf_b"].key_pem)
    with asking_server(server_cert, pki) as server:
        code = main(
            [
                "connect",
                f"localhost:{server.port}",
                "--cafile",
                cafile,
                "--wallet",
                str(wallet),
                "--get",
                "/",
            ]
        )
    captured = capsys.readouterr()
    assert code == 1
    assert "sent no certificate: nothing in the wallet fits" in captured.out
    assert captured.err.startswith("openssl-ccb: ")
    assert captured.err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["probe", "127.0.0.1:1"], "refused"),
        (["connect", "127.0.0.1:1", "--wallet", "/nonexistent/wallet.pem"], "wallet file"),
        (["probe", "localhost:notaport"], "bad port"),
    ],
)
def test_failures_exit_non_zero_with_one_line(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err.lower()
    assert err.count("\n") == 1


def test_untrusted_server_is_refused_unless_insecure(server_cert, pki, capsys):
    with asking_server(server_cert, pki) as server:
        assert main(["probe", f"localhost:{server.port}"]) == 1
        assert "certificate verify failed" in capsys.readouterr().err
        assert main(["probe", f"localhost:{server.port}", "--insecure"]) == 0


def test_subprocess_entry_points(server_cert, pki, cafile, wallet_dir):
    with asking_server(server_cert, pki) as server:
        probe = subprocess.run(
            [
                sys.executable,
                "-m",
                "openssl_ccb",
                "probe",
                f"localhost:{server.port}",
                "--cafile",
                cafile,
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert probe.returncode == 0, probe.stderr
        assert json.loads(probe.stdout)["acceptable_cas"] == ["CN=CLI Root A"]
        connect = subprocess.run(
            [
                sys.executable,
                "-m",
                "openssl_ccb",
                "connect",
                f"localhost:{server.port}",
                "--cafile",
                cafile,
                "--wallet",
                str(wallet_dir),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert connect.returncode == 0, connect.stderr
        assert "sent: CN=cli leaf of A" in connect.stdout
        failing = subprocess.run(
            [sys.executable, "-m", "openssl_ccb", "probe", "127.0.0.1:1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert failing.returncode == 1
        assert failing.stderr.startswith("openssl-ccb: ")


HOSTILE = "Evil\u009b31m CA \u202egnp.exe \u2066x\u2069\u200f\u061c\x1b"


def hostile_server(server_cert: Any, pki: dict[str, Issued]) -> SocketServer:
    """A server naming a CA whose name carries terminal and bidi controls."""
    hostile = issue(HOSTILE, ca=True)
    ctx = selecting_server(
        server_cert, trust=(pki["root_a"],), names=(hostile,), sigalgs="ecdsa_secp256r1_sha256"
    )
    return SocketServer(ctx)


def test_probe_escapes_control_and_bidi_characters(server_cert, pki, cafile, capsys):
    with hostile_server(server_cert, pki) as server:
        code = main(["probe", f"localhost:{server.port}", "--cafile", cafile])
    out = capsys.readouterr().out
    assert code == 0
    raw = [c for c in out if c in "\u009b\u202e\u2066\u2069\u200f\u061c\x1b"]
    assert raw == [], out
    # Each escaped as RFC 4514 does C0 (OpenSSL's own \1B): its UTF-8 bytes as \XX.
    assert r"  CN=Evil\C2\9B31m CA \E2\80\AEgnp.exe \E2\81\A6x\E2\81\A9\E2\80\8F\D8\9C\1B" in out


def test_probe_json_keeps_the_hostile_name_and_escapes_it(server_cert, pki, cafile, capsys):
    with hostile_server(server_cert, pki) as server:
        code = main(["probe", f"localhost:{server.port}", "--cafile", cafile, "--json"])
    out = capsys.readouterr().out
    assert code == 0
    assert not any(c in out for c in "\u009b\u202e\u2066\u2069\u200f\u061c\x1b"), out
    assert r"\u009b" in out
    assert r"\u202e" in out
    # OpenSSL escapes C0 in names itself; everything else comes through intact.
    assert json.loads(out)["acceptable_cas"] == [f"CN={HOSTILE[:-1]}\\1B"]
