"""What a callback may return, each through a real handshake."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any, Callable

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tlsutil import MemoryPair, client_context, server_context

import openssl_ccb as ccb
from openssl_ccb import ffi, lib
from openssl_ccb._cache import coerce


def _forms(leaf: trustme.LeafCert, tmp: Path) -> dict[str, Callable[[], Any]]:
    cert_pem = leaf.cert_chain_pems[0].bytes()
    key_pem = leaf.private_key_pem.bytes()
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, None)
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    key_der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp / "c.pem").write_bytes(cert_pem)
    (tmp / "k.pem").write_bytes(key_pem)
    (tmp / "c.der").write_bytes(cert_der)
    (tmp / "k.der").write_bytes(key_der)

    def cdata() -> tuple[Any, Any]:
        c = ccb.credential.load_certificate(cert_der)
        k = ccb.credential.load_private_key(key_der)
        return c, k

    def pyopenssl() -> tuple[Any, Any]:
        from OpenSSL import crypto

        return crypto.X509.from_cryptography(cert), crypto.PKey.from_cryptography_key(key)

    return {
        "credential": lambda: ccb.Credential.load(cert_pem, key_pem),
        "cryptography": lambda: (cert, key),
        "pem-bytes": lambda: (cert_pem, key_pem),
        "der-bytes": lambda: (cert_der, key_der),
        "str-paths": lambda: (str(tmp / "c.pem"), str(tmp / "k.pem")),
        "pathlib-der": lambda: (tmp / "c.der", tmp / "k.der"),
        "cdata": cdata,
        "pyopenssl": pyopenssl,
        "with-empty-chain": lambda: (cert, key, ()),
    }


FORMS = [
    "credential",
    "cryptography",
    "pem-bytes",
    "der-bytes",
    "str-paths",
    "pathlib-der",
    "cdata",
    "pyopenssl",
    "with-empty-chain",
]


@pytest.mark.parametrize("form", FORMS)
def test_each_accepted_form_sends_that_certificate(
    ca, server_cert, client_cert, client_der, version, form, tmp_path
):
    value = _forms(client_cert, tmp_path)[form]()
    pair = MemoryPair(server_context(ca, server_cert, version=version))
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, lambda request: value)
    pair.handshake(pair.stdlib_client(ctx))
    assert pair.peer_der() == client_der


def test_password_protected_pem_key(ca, server_cert, client_cert, client_der):
    key = serialization.load_pem_private_key(client_cert.private_key_pem.bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    cert_pem = client_cert.cert_chain_pems[0].bytes()
    with pytest.raises(ccb.Error, match="password"):
        ccb.Credential.load(cert_pem, encrypted, password="wrong")
    with pytest.raises(ccb.Error, match="the private key is encrypted and needs a password"):
        ccb.Credential.load(cert_pem, encrypted)  # no password: refused, never prompted
    credential = ccb.Credential.load(cert_pem, encrypted, password="s3cret")
    pair = MemoryPair(server_context(ca, server_cert))
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, lambda request: credential)
    pair.handshake(pair.stdlib_client(ctx))
    assert pair.peer_der() == client_der


def _other_key_pem() -> bytes:
    return trustme.CA().issue_cert("other@example.org").private_key_pem.bytes()


BAD_RETURNS: dict[str, tuple[Callable[[trustme.LeafCert], Any], type[BaseException], str]] = {
    "wrong type": (lambda leaf: "a certificate", TypeError, "returned str"),
    "list, not tuple": (
        lambda leaf: [leaf.cert_chain_pems[0].bytes(), b""],
        TypeError,
        "returned list",
    ),
    "one-tuple": (lambda leaf: (leaf.cert_chain_pems[0].bytes(),), TypeError, "tuple of 1 items"),
    "four-tuple": (lambda leaf: (1, 2, 3, 4), TypeError, "tuple of 4 items"),
    "True": (lambda leaf: True, TypeError, "returned bool"),
    "positive int": (lambda leaf: 1, ValueError, "returned 1"),
    "key not matching": (
        lambda leaf: (leaf.cert_chain_pems[0].bytes(), _other_key_pem()),
        ccb.Error,
        "does not match",
    ),
    "garbage bytes": (
        lambda leaf: (b"garbage", b"garbage"),
        ccb.Error,
        "not a PEM or DER certificate",
    ),
    "garbage key": (
        lambda leaf: (leaf.cert_chain_pems[0].bytes(), b"\x30\x03junk"),
        ccb.Error,
        "private key",
    ),
    "None key": (lambda leaf: (leaf.cert_chain_pems[0].bytes(), None), TypeError, "private key"),
    "missing file": (
        lambda leaf: ("/nonexistent/cert.pem", "/nonexistent/key.pem"),
        ccb.Error,
        "cannot read",
    ),
    "chain as one item": (
        lambda leaf: (leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes(), b"x"),
        TypeError,
        "sequence",
    ),
    "chain item not a certificate": (
        lambda leaf: (leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes(), [b"junk"]),
        ccb.Error,
        "chain item 0",
    ),
}


@pytest.mark.parametrize("case", list(BAD_RETURNS))
def test_bad_return_fails_the_handshake_with_a_clear_error(
    ca, server_cert, client_cert, version, case
):
    make, kind, message = BAD_RETURNS[case]
    value = make(client_cert)
    # An optional-certificate server would accept no certificate: the failure
    # must come from the client, not from the server's refusal.
    pair = MemoryPair(server_context(ca, server_cert, version=version, verify=ssl.CERT_OPTIONAL))
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, lambda request: value)
    client = pair.stdlib_client(ctx)
    with pytest.raises(kind, match=message):
        pair.handshake(client)
    # The client stopped before its Certificate: the server never finished.
    with pytest.raises(ValueError, match="handshake not done"):
        pair.server.getpeercert(binary_form=True)
    assert lib.ERR_peek_error() == 0


def test_same_objects_are_parsed_once(client_cert):
    cert = x509.load_pem_x509_certificate(client_cert.cert_chain_pems[0].bytes())
    key = serialization.load_pem_private_key(client_cert.private_key_pem.bytes(), None)
    assert coerce(cert, key) is coerce(cert, key)
    pem = (client_cert.cert_chain_pems[0].bytes(), client_cert.private_key_pem.bytes())
    assert coerce(*pem) is coerce(*pem)


def test_a_changed_file_is_parsed_again(client_cert, tmp_path):
    other = trustme.CA().issue_cert("changed@example.org")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    client_cert.cert_chain_pems[0].write_to_path(str(cert))
    client_cert.private_key_pem.write_to_path(str(key))
    first = coerce(cert, key)
    other.cert_chain_pems[0].write_to_path(str(cert))
    other.private_key_pem.write_to_path(str(key))
    os.utime(cert, ns=(1, 1))  # a distinct mtime even on a coarse clock
    os.utime(key, ns=(1, 1))
    second = coerce(cert, key)
    assert second is not first
    assert second.certificate != first.certificate


def test_credential_exposes_der_and_names_but_never_the_key(client_cert, client_der):
    key_pem = client_cert.private_key_pem.bytes()
    credential = ccb.Credential.load(client_cert.cert_chain_pems[0].bytes(), key_pem)
    assert credential.certificate == client_der
    assert credential.chain == []
    parsed = x509.load_der_x509_certificate(client_der)
    assert credential.subject == parsed.subject.rfc4514_string()
    assert credential.issuer == parsed.issuer.rfc4514_string()
    text = repr(credential)
    assert "CN=client one" in text
    body = b"".join(key_pem.splitlines()[1:-1]).decode()
    assert body[:16] not in text
    assert "PRIVATE" not in text


def test_cdata_from_another_ffi_is_refused(client_cert):
    import cffi

    other = cffi.FFI()
    other.cdef("typedef struct x509_st X509;")
    foreign = other.cast("X509 *", 0x1000)
    with pytest.raises(TypeError, match=r"openssl_ccb\.ffi"):
        ccb.Credential.load(foreign, client_cert.private_key_pem.bytes())
    with pytest.raises(TypeError, match="X509"):
        ccb.Credential.load(ffi.cast("EVP_PKEY *", 0), client_cert.private_key_pem.bytes())


def test_pem_text_given_as_str_is_used_and_never_echoed(ca, server_cert, client_cert, client_der):
    cert_text = client_cert.cert_chain_pems[0].bytes().decode()
    key_text = client_cert.private_key_pem.bytes().decode()
    pair = MemoryPair(server_context(ca, server_cert))
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, lambda request: (cert_text, key_text))
    pair.handshake(pair.stdlib_client(ctx))
    assert pair.peer_der() == client_der
    broken = key_text.replace("\n", "\n!", 3)  # still "PEM", no longer a key
    with pytest.raises(ccb.Error) as info:
        ccb.Credential.load(cert_text, broken)
    assert "PRIVATE" not in str(info.value)
    assert key_text.splitlines()[1][:20] not in str(info.value)
