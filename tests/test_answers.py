"""How an answer reaches OpenSSL: a handshake re-entered from its own callback
is refused, and a certificate OpenSSL refuses fails the handshake (never sent
silently without one). Real handshakes over memory BIOs, in every world."""

from __future__ import annotations

from typing import Any

import pytest
from certs import issue
from tlsutil import server_context
from worlds import WORLDS, Link, MemoryClient, MemoryServer, client_context

import openssl_ccb as ccb
from openssl_ccb import lib

REENTRY = "drove its own connection's handshake"

OURS = WORLDS  # pyOpenSSL's bundled route included


def _drive_own_handshake(world: str, request: ccb.CertificateRequest) -> None:
    if world == "raw":
        ccb.do_handshake(request.ssl)
    else:
        request.connection.do_handshake()


def _link(world: str, ctx: Any, ca: Any, server_cert: Any, version: str) -> Link:
    server = MemoryServer(server_context(ca, server_cert, version=version))
    return Link(MemoryClient(world, ctx), server)


@pytest.mark.parametrize("world", OURS)
def test_driving_its_own_handshake_raises_inside_the_callback(
    world, version, ca, server_cert, credential, client_der
):
    """The inner call raises ccb.Error; a callback that catches it still answers."""
    raised: list[BaseException] = []

    def choose(request: ccb.CertificateRequest) -> ccb.Credential:
        try:
            _drive_own_handshake(world, request)
        except ccb.Error as exc:
            raised.append(exc)
        return credential

    ctx = client_context(world, ca, version)
    ccb.set_client_cert_cb(ctx, choose)
    link = _link(world, ctx, ca, server_cert, version)
    link.handshake()
    link.exchange()
    assert [REENTRY in str(exc) for exc in raised] == [True]
    assert link.server.peer_der() == client_der


@pytest.mark.parametrize("world", OURS)
def test_driving_its_own_handshake_fails_the_handshake_it_is_inside(
    world, version, ca, server_cert
):
    """Uncaught, the refusal reaches the caller of the outer handshake."""
    ctx = client_context(world, ca, version)
    ccb.set_client_cert_cb(ctx, lambda request: _drive_own_handshake(world, request))
    link = _link(world, ctx, ca, server_cert, version)
    with pytest.raises(ccb.Error, match=REENTRY) as info:
        link.handshake()
    assert "_drive_own_handshake" in "".join(str(entry.name) for entry in info.traceback), (
        "the original traceback"
    )


def _at_security_level_2(world: str, ctx: Any) -> None:
    if world == "stdlib":
        ctx.set_ciphers("DEFAULT:@SECLEVEL=2")
    elif world == "raw":
        assert lib.SSL_CTX_set_cipher_list(ctx, b"DEFAULT:@SECLEVEL=2") == 1
    else:
        ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=2")


@pytest.mark.parametrize("with_chain", [False, True], ids=["leaf", "with chain"])
@pytest.mark.parametrize("world", OURS)
def test_a_certificate_the_security_level_refuses_fails_the_handshake(
    world, version, with_chain, ca, server_cert
):
    """Never sent silently without a certificate: the handshake fails with
    OpenSSL's reason, and the error queue is drained (checked by conftest)."""
    root = issue("weak-key root", ca=True)
    middle = issue("weak-key intermediate", root, ca=True)
    leaf = issue("weak-key client", middle if with_chain else root, key="rsa1024")
    weak = ccb.Credential.load(leaf.cert, leaf.key, [middle.cert] if with_chain else [])
    ctx = client_context(world, ca, version)
    _at_security_level_2(world, ctx)
    ccb.set_client_cert_cb(ctx, lambda request: weak)
    link = _link(world, ctx, ca, server_cert, version)
    bundled = world == "pyopenssl" and ccb.pyopenssl_route() == "bundled"
    reason = "no per-connection chain" if bundled and with_chain else "key too small"
    with pytest.raises(ccb.Error, match=reason):  # chains are refused on the bundled route
        link.handshake()
    assert link.server.peer_der() is None
