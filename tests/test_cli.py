"""The openssl-ccb command, in-process and as a subprocess,
against local servers."""

from __future__ import annotations

import datetime
import json
import os
import pty
import select
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from certs import Issued, issue
from peers import Nginx, SServer, page_certificate
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
    assert report["certificate_types"] == ["ecdsa_sign"]  # TLS 1.2's, as its sigalgs allow


def test_probe_shows_tls12_client_certificate_types(server_cert, pki, cafile, capsys):
    """Under TLS 1.2 the server's certificate types, as the callback reads them;
    TLS 1.3 has none, and the line is left out."""
    lines = {}
    for version in ("TLSv1.2", "TLSv1.3"):
        with asking_server(server_cert, pki, version=version) as server:
            assert main(["probe", f"localhost:{server.port}", "--cafile", cafile]) == 0
        out = capsys.readouterr().out
        lines[version] = [line for line in out.splitlines() if "certificate types" in line]
    assert lines["TLSv1.3"] == []
    assert lines["TLSv1.2"] == ["client certificate types: ecdsa_sign"]  # ECDSA sigalgs only


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
        (["probe", "127.0.0.1:1", "--cafile", "/nonexistent/ca.pem"], "'/nonexistent/ca.pem'"),
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


# The CLI's own processes run away from the checkout, so that ``-m`` finds the
# installed openssl_ccb (the same-libssl venv's), not the source tree.
AWAY = {"cwd": "/"}


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
            **AWAY,
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
            **AWAY,
        )
        assert connect.returncode == 0, connect.stderr
        assert "sent: CN=cli leaf of A" in connect.stdout
        failing = subprocess.run(
            [sys.executable, "-m", "openssl_ccb", "probe", "127.0.0.1:1"],
            capture_output=True,
            text=True,
            timeout=60,
            **AWAY,
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


# --- issue 13: usage -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("127.0.0.1:99999", "not in 1..65535"),
        ("127.0.0.1:0", "not in 1..65535"),
        ("[::1]:65536", "not in 1..65535"),
        ("localhost:notaport", "not a number"),
    ],
)
def test_a_bad_port_is_a_usage_error(target, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["probe", target])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"bad port in {target!r}: {message}" in err
    assert err.startswith("usage: openssl-ccb probe")


def test_the_wallet_may_come_before_the_host(server_cert, pki, cafile, wallet_dir, capsys):
    with asking_server(server_cert, pki) as server:
        code = main(
            ["connect", "--wallet", str(wallet_dir), f"localhost:{server.port}", "--cafile", cafile]
        )
    assert code == 0, capsys.readouterr()
    assert server.received == [pki["leaf_a"].der]


def test_wallet_is_repeated_not_given_many_paths(wallet_dir, capsys):
    a, b = str(wallet_dir / "leaf_a.pem"), str(wallet_dir / "leaf_b.pem")
    with pytest.raises(SystemExit) as exit_:
        main(["connect", "localhost:1", "--wallet", a, b])
    assert exit_.value.code == 2
    assert "give --wallet once for each path" in capsys.readouterr().err


def test_include_needs_get(capsys):
    with pytest.raises(SystemExit):
        main(["connect", "localhost:1", "--wallet", "w", "--include"])
    assert "--include goes with --get" in capsys.readouterr().err


# --- issue 13: the server's verdict under TLS 1.3 (s_server -Verify) --------------------


@pytest.fixture
def s_server_files(server_cert: Any, pki: dict[str, Issued], tmp_path: Path) -> dict[str, Path]:
    cert = tmp_path / "server.pem"
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(cert))
    trusted = tmp_path / "client-ca.pem"
    trusted.write_bytes(pki["root_a"].pem)
    return {"cert": cert, "trusted": trusted}


def s_server(files: dict[str, Path], *extra: str) -> SServer:
    """s_server that requires a certificate from CLI Root A, under TLS 1.3 unless told."""
    verify = ["-CAfile", str(files["trusted"]), "-Verify", "1", "-verify_return_error"]
    return SServer(files["cert"], *verify, *(extra or ("-tls1_3",)))


def wallet_of(tmp_path: Path, *issued: Issued) -> str:
    wallet = tmp_path / "wallet-of"
    wallet.mkdir(parents=True)
    for i, leaf in enumerate(issued):
        (wallet / f"{i}.pem").write_bytes(leaf.pem + leaf.key_pem)
    return str(wallet)


def connect_as_a_user(
    server: SServer | Nginx, cafile: str, wallet: str, *more: str
) -> subprocess.CompletedProcess[str]:
    """``openssl-ccb connect`` in its own process, as a user runs it."""
    argv = ["connect", f"localhost:{server.port}", "--cafile", cafile, "--wallet", wallet, *more]
    return subprocess.run(
        [sys.executable, "-m", "openssl_ccb", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        **AWAY,
    )


def test_connect_tls13_fails_when_the_server_refuses_the_certificate(
    s_server_files, pki, cafile, tmp_path
):
    # -no_ca_names: the server names no CA, so the wallet sends B's leaf, which it distrusts.
    with s_server(s_server_files, "-tls1_3", "-no_ca_names") as server:
        result = connect_as_a_user(server, cafile, wallet_of(tmp_path, pki["leaf_b"]))
    assert result.returncode == 1, result
    assert "(TLSv1.3)" in result.stdout
    assert "sent: CN=cli leaf of B" in result.stdout
    assert (
        result.stderr == "openssl-ccb: the server refused the certificate: tlsv1 alert unknown ca\n"
    )


def test_connect_tls13_fails_when_the_server_wanted_a_certificate(
    s_server_files, pki, cafile, tmp_path
):
    with s_server(s_server_files) as server:
        result = connect_as_a_user(server, cafile, wallet_of(tmp_path, pki["leaf_b"]))
    assert result.returncode == 1, result
    assert "sent no certificate: nothing in the wallet fits" in result.stdout
    assert result.stderr == (
        "openssl-ccb: the server refused the connection with no certificate:"
        " tlsv13 alert certificate required\n"
    )


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_connect_succeeds_when_the_server_accepts(s_server_files, pki, cafile, tmp_path, version):
    with s_server(s_server_files, version) as server:
        result = connect_as_a_user(
            server, cafile, wallet_of(tmp_path, pki["leaf_b"], pki["leaf_a"])
        )
    assert result.returncode == 0, result
    assert "sent: CN=cli leaf of A" in result.stdout
    assert result.stderr == ""


def test_connect_to_nginx_learns_its_verdict_from_get(s_server_files, pki, cafile, tmp_path):
    """nginx sends no alert under TLS 1.3 for a missing certificate: it answers
    the first request with 400. connect says so, and --get fails on the 400."""
    wallet = {
        "a": wallet_of(tmp_path / "a", pki["leaf_a"]),
        "b": wallet_of(tmp_path, pki["leaf_b"]),
    }
    trusted = s_server_files["trusted"]
    (tmp_path / "nginx").mkdir()
    with Nginx(
        tmp_path / "nginx", s_server_files["cert"], verify="on", client_cas=trusted
    ) as nginx:
        silent = connect_as_a_user(nginx, cafile, wallet["b"])
        refused = connect_as_a_user(nginx, cafile, wallet["b"], "--get", "/")
        accepted = connect_as_a_user(nginx, cafile, wallet["a"], "--get", "/")
    assert silent.returncode == 0, silent
    assert "(TLSv1.3)" in silent.stdout
    assert "judge the certificate only at the first request: --get PATH" in silent.stdout
    assert refused.returncode == 1, refused
    assert "HTTP/1.1 400 Bad Request" in refused.stdout
    assert "No required SSL certificate was sent" in refused.stdout
    assert refused.stderr == "openssl-ccb: the server answered 400 Bad Request\n"
    assert accepted.returncode == 0, accepted
    assert "CN=cli leaf of A|CN=CLI Root A|SUCCESS|" in accepted.stdout


def test_connect_tls12_refusal_names_the_alert(s_server_files, pki, cafile, tmp_path):
    with s_server(s_server_files, "-tls1_2", "-no_ca_names") as server:
        result = connect_as_a_user(server, cafile, wallet_of(tmp_path, pki["leaf_b"]))
    assert result.returncode == 1, result
    assert (
        result.stderr == "openssl-ccb: the server refused the certificate: tlsv1 alert unknown ca\n"
    )


def test_get_prints_the_body_and_include_the_headers(s_server_files, pki, cafile, tmp_path, capsys):
    wallet = wallet_of(tmp_path, pki["leaf_a"])
    with s_server(s_server_files) as server:
        argv = ["connect", f"localhost:{server.port}", "--cafile", cafile, "--wallet", wallet]
        assert main([*argv, "--get", "/"]) == 0
        plain = capsys.readouterr().out
        assert main([*argv, "--get", "/", "--include"]) == 0
        included = capsys.readouterr().out
    assert "HTTP/1.0 200 ok\n" in plain
    assert "Content-type" not in plain
    body = plain.split("HTTP/1.0 200 ok\n\n", 1)[1].encode()
    assert page_certificate(body) == pki["leaf_a"].der  # s_server's page: what it received
    assert "HTTP/1.0 200 ok\nContent-type: text/html\n\n<HTML>" in included


def test_get_fails_on_a_status_that_is_not_2xx(server_cert, pki, cafile, wallet_dir, capsys):
    ctx = selecting_server(server_cert, trust=(pki["root_a"],), names=(pki["root_a"],))
    reply = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope\n"
    with SocketServer(ctx, reply=reply) as server:
        code = main(
            [
                *("connect", f"localhost:{server.port}", "--cafile", cafile),
                *("--wallet", str(wallet_dir), "--get", "/"),
            ]
        )
    captured = capsys.readouterr()
    assert code == 1
    assert "HTTP/1.1 403 Forbidden\n\nnope\n" in captured.out
    assert captured.err == "openssl-ccb: the server answered 403 Forbidden\n"


# --- issue 13: timeouts, versions, verification hints --------------------------------


def test_timeout_bounds_a_silent_server(capsys):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never speaks TLS
        port = silent.getsockname()[1]
        started = time.monotonic()
        code = main(["probe", f"127.0.0.1:{port}", "--insecure", "--timeout", "0.5"])
        elapsed = time.monotonic() - started
    assert code == 1
    assert "timed out" in capsys.readouterr().err
    assert elapsed < 5


@pytest.mark.parametrize(("flag", "version"), [("--tls1.2", "TLSv1.2"), ("--tls1.3", "TLSv1.3")])
def test_tls_version_flags(s_server_files, cafile, flag, version, capsys):
    with SServer(s_server_files["cert"]) as server:  # s_server offers both
        assert main(["probe", f"localhost:{server.port}", "--cafile", cafile, flag, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["protocol"] == version


def test_verify_failures_say_what_to_do(server_cert, pki, cafile, capsys):
    with asking_server(server_cert, pki) as server:
        assert main(["probe", f"localhost:{server.port}"]) == 1
        err = capsys.readouterr().err
        assert "certificate verify failed: unable to get local issuer certificate" in err
        assert "give --cafile FILE, or --insecure to skip the check" in err
        argv = ["probe", f"127.0.0.1:{server.port}", "--cafile", cafile]
        assert main([*argv, "--servername", "wrong.example"]) == 1
        assert "give --servername NAME, or --insecure" in capsys.readouterr().err


# --- issue 13: passwords ------------------------------------------------------------------


@pytest.fixture
def locked_wallet(pki: dict[str, Issued], tmp_path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization

    wallet = tmp_path / "locked"
    wallet.mkdir()
    (wallet / "leaf_a.pem").write_bytes(pki["leaf_a"].pem)
    (wallet / "leaf_a.key").write_bytes(
        pki["leaf_a"].key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret pass"),
        )
    )
    return wallet


def test_password_file(server_cert, pki, cafile, locked_wallet, tmp_path, capsys):
    secret = tmp_path / "password"
    secret.write_text("s3cret pass\n")
    with asking_server(server_cert, pki) as server:
        argv = ["connect", f"localhost:{server.port}", "--cafile", cafile]
        argv += ["--wallet", str(locked_wallet)]
        assert main(argv) == 1  # no password, no terminal: no prompt either
        assert main([*argv, "--password-file", str(secret)]) == 0
    assert server.received == [pki["leaf_a"].der]


def test_a_terminal_is_asked_for_the_password(server_cert, pki, cafile, locked_wallet):
    with asking_server(server_cert, pki) as server:
        argv = [sys.executable, "-m", "openssl_ccb", "connect", f"localhost:{server.port}"]
        argv += ["--cafile", cafile, "--wallet", str(locked_wallet)]
        code, before, after = answer_on_a_terminal(argv, b"wallet password: ", b"s3cret pass")
    assert code == 0, before + after
    assert b"s3cret" not in after  # getpass does not echo
    assert b"sent: CN=cli leaf of A" in after
    assert server.received == [pki["leaf_a"].der]


def answer_on_a_terminal(argv: list[str], prompt: bytes, typed: bytes) -> tuple[int, bytes, bytes]:
    """Run ``argv`` with a pty as its terminal, type ``typed`` at ``prompt``:
    its exit code, what it showed before the prompt's answer and after."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its terminal
        try:
            os.chdir(AWAY["cwd"])
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    try:
        before = read_until(fd, prompt)
        os.write(fd, typed + b"\n")
        after = read_until(fd, None)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), before, after


def read_until(fd: int, marker: bytes | None, timeout: float = 30) -> bytes:
    """What the pty shows until ``marker`` (or its end, when the child exits)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while marker is None or marker not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"timed out waiting for {marker!r}: {seen!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child has closed its terminal
            chunk = b""
        if not chunk:
            assert marker is None, seen
            return seen
        seen += chunk
    return seen


# --- issue 13: what probe shows ---------------------------------------------------------


def test_probe_shows_the_sni_and_the_server_certificate(server_cert, pki, cafile, capsys):
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(server_cert.cert_chain_pems[0].bytes())
    with asking_server(server_cert, pki) as server:
        assert main(["probe", f"localhost:{server.port}", "--cafile", cafile]) == 0
        text = capsys.readouterr().out
        argv = ["probe", f"127.0.0.1:{server.port}", "--cafile", cafile, "--json"]
        assert main([*argv, "--servername", "localhost"]) == 0
        named = json.loads(capsys.readouterr().out)
        assert main([*argv, "--insecure"]) == 0
        unnamed = json.loads(capsys.readouterr().out)
    # not_valid_*_utc from cryptography 42; Debian 12 has 38, whose naive datetimes are UTC.
    before, after = (
        getattr(cert, f"{field}_utc", None)
        or getattr(cert, field).replace(tzinfo=datetime.timezone.utc)
        for field in ("not_valid_before", "not_valid_after")
    )
    assert "server name sent (SNI): localhost\n" in text
    assert f"server certificate: {cert.subject.rfc4514_string()}\n" in text
    assert f"  issued by {cert.issuer.rfc4514_string()}\n" in text
    before, after = before.isoformat(), after.isoformat()
    assert f"  valid from {before} to {after}\n" in text
    assert named["server_name"] == "localhost"
    assert named["server_certificate"] == {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": before,
        "not_after": after,
    }
    assert unnamed["server_name"] is None  # no SNI for an IP address
    assert unnamed["server_certificate"] == named["server_certificate"]


def test_probe_of_a_server_that_asks_nothing_shows_its_certificate(
    server_cert, pki, cafile, capsys
):
    with asking_server(server_cert, pki, verify=ssl.CERT_NONE) as server:
        assert main(["probe", f"localhost:{server.port}", "--cafile", cafile, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["requests_certificate"] is False
    assert report["server_name"] == "localhost"
    assert report["server_certificate"]["issuer"].endswith("O=openssl-ccb tests")


def test_probe_help_says_what_it_cannot_see(capsys):
    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "renegotiation" in out
    assert "post-handshake request" in out
