"""The suite as any user runs it (issue 13): the peers' programs are found where
Debian puts them, even off a normal user's PATH, or a test fails saying which
package to install. ``.ci/run`` runs this file, test_peers.py and test_cli.py
as a non-root user too."""

from __future__ import annotations

import os
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
