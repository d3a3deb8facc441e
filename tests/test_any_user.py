"""The suite as any user runs it (issue 13): the peers' programs are found where
Debian puts them, even off a normal user's PATH, or a test fails saying which
package to install. ``.ci/run`` runs this file, test_peers.py and test_cli.py
as a non-root user too."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import peers
import pytest
from certs import issue
from peers import Nginx, SServer, nginx_record, page_certificate
from worlds import client_context, get

import openssl_ccb as ccb

USER_PATH = "/usr/local/bin:/usr/bin:/bin"  # Debian's default PATH for a non-root user


def test_nginx_and_openssl_are_found_off_a_users_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server_cert: Any, ca: Any
) -> None:
    monkeypatch.setenv("PATH", USER_PATH)
    assert peers.tool("nginx") in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/sbin/nginx")
    assert os.access(peers.tool("openssl"), os.X_OK)
    cert = tmp_path / "server.pem"
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(cert))
    root = issue("Any User Root", ca=True)
    cas = tmp_path / "cas.pem"
    cas.write_bytes(root.pem)
    leaf = issue("any user", root)
    ctx = client_context("stdlib", ca)
    ccb.set_client_cert_cb(ctx, lambda request: leaf.credential())
    with Nginx(tmp_path, cert, verify="on", client_cas=cas) as nginx:
        assert nginx_record(get("stdlib", ctx, nginx.port))["subject"] == "CN=any user"
    with SServer(cert, "-CAfile", str(cas), "-Verify", "1") as s_server:
        assert page_certificate(get("stdlib", ctx, s_server.port)) == leaf.der


@pytest.mark.parametrize(("name", "package"), [("nginx", "nginx"), ("openssl", "openssl")])
def test_a_missing_program_fails_in_one_line_naming_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, package: str
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(peers, "_SBIN", str(tmp_path))
    with pytest.raises(pytest.fail.Exception) as failed:
        peers.tool(name)
    message = str(failed.value)
    assert message.count("\n") == 0
    assert f"{name} is not on PATH" in message
    assert f"apt-get install {package}" in message


ROOT = Path(__file__).resolve().parent.parent


def debian_packages() -> list[str]:
    lines = (ROOT / ".ci" / "debian-packages").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def test_one_list_of_debian_packages_for_make_deps_ci_and_readme() -> None:
    packages = debian_packages()
    # What the build, the peers and the same-libssl venv need, at least.
    assert {"gcc", "libssl-dev", "python3-venv", "openssl", "nginx", "python3-openssl"} <= set(
        packages
    )
    assert "\t.ci/deps\n" in (ROOT / "Makefile").read_text()
    assert "\n.ci/deps" in (ROOT / ".ci" / "run").read_text()
    assert "debian-packages" in (ROOT / ".ci" / "deps").read_text()
    assert "make deps" in (ROOT / "README.md").read_text()
    assert "apt-get install -y" not in (ROOT / ".ci" / "run").read_text()  # no second list


def test_every_listed_package_is_a_debian_package_installed_here() -> None:
    """The suite runs on this machine, so each package it lists is installed
    (a misspelt name would fail .ci/deps on a fresh machine)."""
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${Status}\\n", *debian_packages()],
        capture_output=True,
        text=True,
    )
    lines = status.stdout.splitlines()
    assert status.returncode == 0, status.stderr
    assert all(line.endswith("install ok installed") for line in lines), lines
