"""The security level's verdict on a certificate the callback returns.

Without a chain, the trampoline does not install the certificate itself (OpenSSL
does, right after): it asks the SSL's security callback the question that
``SSL_use_certificate`` asks, as OpenSSL's ``ssl_security_cert`` does. These
tests hold that copy to the original, verdict by verdict, and then through
real handshakes in test_answers.py: a refused certificate fails the
handshake with OpenSSL's reason, never replaced silently by no certificate."""

from __future__ import annotations

from typing import Any

import pytest
from certs import Issued, issue

import openssl_ccb as ccb
from openssl_ccb import ffi, lib
from openssl_ccb.errors import drain_error_queue


def _leaves() -> dict[str, Issued]:
    root = issue("security-level root", ca=True, key="rsa")
    return {
        "ec": issue("ec leaf", root),
        "rsa1024": issue("rsa1024 leaf", root, key="rsa1024"),
        "rsa2048": issue("rsa2048 leaf", root, key="rsa"),
        "sha224-signed": issue("sha224-signed leaf", root, digest="sha224"),
        "self-signed sha224": issue("self-signed sha224", digest="sha224"),
        "self-signed rsa1024": issue("self-signed rsa1024", key="rsa1024"),
    }


LEAVES = _leaves()


def _ssl_at(level: int) -> Any:
    ctx = ffi.gc(lib.SSL_CTX_new(lib.TLS_client_method()), lib.SSL_CTX_free)
    assert lib.SSL_CTX_set_cipher_list(ctx, f"DEFAULT:@SECLEVEL={level}".encode()) == 1
    ssl = ffi.gc(lib.SSL_new(ctx), lib.SSL_free)
    return ssl


def _what_openssl_says(level: int, x509: Any) -> int:
    """0 if SSL_use_certificate takes the certificate, else its reason."""
    ssl = _ssl_at(level)
    if lib.SSL_use_certificate(ssl, x509) == 1:
        return 0
    queue = drain_error_queue()
    reasons = {
        "ee key too small": lib.SSL_R_EE_KEY_TOO_SMALL,
        "ca md too weak": lib.SSL_R_CA_MD_TOO_WEAK,
    }
    return reasons.get(queue[-1][1], -1)


@pytest.mark.parametrize("level", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("leaf", list(LEAVES))
def test_the_check_gives_ssl_use_certificates_verdict(leaf, level):
    x509 = ccb.Credential.load(LEAVES[leaf].cert, LEAVES[leaf].key)._x509
    ssl = _ssl_at(level)
    assert lib.openssl_ccb_security_refusal(ssl, x509) == _what_openssl_says(level, x509)


def test_the_matrix_holds_both_verdicts():
    """The cases above include refusals of both kinds, and acceptances."""
    verdicts = {
        _what_openssl_says(3, ccb.Credential.load(leaf.cert, leaf.key)._x509)
        for leaf in LEAVES.values()
    }
    assert verdicts == {0, lib.SSL_R_EE_KEY_TOO_SMALL, lib.SSL_R_CA_MD_TOO_WEAK}
