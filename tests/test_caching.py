"""What a callback's returns are parsed once by, and what that cache must not do
must not do: send stale contents, or keep the caller's key alive."""

from __future__ import annotations

import gc
import os
import weakref
from typing import Any, Callable

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tlsutil import MemoryPair, client_context, server_context

import openssl_ccb as ccb
from openssl_ccb._cache import coerce


def same_size_pair(ca: trustme.CA) -> tuple[trustme.LeafCert, trustme.LeafCert]:
    """Two client certificates whose PEM certificate and key are the same length:
    a rewrite with the other keeps a file's size."""
    first = ca.issue_cert("same-size@example.org")
    for _ in range(100):
        other = ca.issue_cert("same-size@example.org")
        if len(other.cert_chain_pems[0].bytes()) == len(first.cert_chain_pems[0].bytes()) and len(
            other.private_key_pem.bytes()
        ) == len(first.private_key_pem.bytes()):
            return first, other
    raise AssertionError("no two certificates of the same size in 100 tries")


def der(leaf: trustme.LeafCert) -> bytes:
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    return cert.public_bytes(serialization.Encoding.DER)


def sent(ca: Any, server_cert: Any, answer: Callable[[], Any]) -> bytes | None:
    """The certificate a server receives when the callback returns ``answer()``."""
    pair = MemoryPair(server_context(ca, server_cert))
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, lambda request: answer())
    pair.handshake(pair.stdlib_client(ctx))
    return pair.peer_der()


def test_a_bytearray_rewritten_in_place_sends_its_new_contents(ca, server_cert):
    first, second = same_size_pair(ca)
    cert = bytearray(first.cert_chain_pems[0].bytes())
    key = bytearray(first.private_key_pem.bytes())
    assert sent(ca, server_cert, lambda: (cert, key)) == der(first)
    cert[:] = second.cert_chain_pems[0].bytes()
    key[:] = second.private_key_pem.bytes()
    assert sent(ca, server_cert, lambda: (cert, key)) == der(second)


def test_a_memoryview_over_a_rewritten_buffer_sends_its_new_contents(ca, server_cert):
    first, second = same_size_pair(ca)
    cert_buf = bytearray(first.cert_chain_pems[0].bytes())
    key_buf = bytearray(first.private_key_pem.bytes())
    cert, key = memoryview(cert_buf), memoryview(key_buf)
    assert sent(ca, server_cert, lambda: (cert, key)) == der(first)
    cert[:] = second.cert_chain_pems[0].bytes()  # same size: a view allows no resize
    key[:] = second.private_key_pem.bytes()
    assert sent(ca, server_cert, lambda: (cert, key)) == der(second)


def test_a_file_rewritten_with_its_stat_kept_sends_its_new_contents(ca, server_cert, tmp_path):
    first, second = same_size_pair(ca)
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_bytes(first.cert_chain_pems[0].bytes())
    key.write_bytes(first.private_key_pem.bytes())
    assert sent(ca, server_cert, lambda: (cert, key)) == der(first)
    for path, data in (
        (cert, second.cert_chain_pems[0].bytes()),
        (key, second.private_key_pem.bytes()),
    ):
        before = os.stat(path)
        with open(path, "r+b") as f:  # in place: the same inode, the same size
            f.write(data)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = os.stat(path)
        assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
            before.st_ino,
            before.st_size,
            before.st_mtime_ns,
        )
    assert sent(ca, server_cert, lambda: (cert, key)) == der(second)


def _returned_once(ca: Any, server_cert: Any, make: Callable[[], tuple[Any, Any]]) -> Any:
    """Hand ``make()``'s pair to a real handshake, then drop every reference of
    ours; return a weak reference to ``make()``'s key and to the Credential."""
    held = list(make())
    leaf = sent(ca, server_cert, lambda: tuple(held))
    assert leaf is not None
    parsed = weakref.ref(coerce(*held))  # the Credential the handshake built
    key = held[1]
    key_ref = weakref.ref(key) if type(key).__weakrefoffset__ else None
    del key
    held.clear()
    gc.collect()
    return key_ref, parsed


def test_a_pyopenssl_key_dies_with_the_callers_last_reference(ca, server_cert, client_cert):
    from OpenSSL import crypto

    def make() -> tuple[Any, Any]:
        cert = x509.load_pem_x509_certificate(client_cert.cert_chain_pems[0].bytes())
        key = serialization.load_pem_private_key(client_cert.private_key_pem.bytes(), None)
        return crypto.X509.from_cryptography(cert), crypto.PKey.from_cryptography_key(key)

    key_ref, parsed = _returned_once(ca, server_cert, make)
    assert key_ref() is None
    assert parsed() is None  # nor does the key parsed from it outlive it


def test_a_cryptography_key_and_its_parsed_copy_die_with_the_last_reference(
    ca, server_cert, client_cert
):
    # cryptography's Rust key objects take no weak reference: what shows that the
    # cache lets go of one is that the Credential parsed from it, which the
    # cache keeps exactly as long as it keeps the key, dies.
    def make() -> tuple[Any, Any]:
        cert = x509.load_pem_x509_certificate(client_cert.cert_chain_pems[0].bytes())
        key = serialization.load_pem_private_key(client_cert.private_key_pem.bytes(), None)
        return cert, key

    key_ref, parsed = _returned_once(ca, server_cert, make)
    if key_ref is not None:  # older cryptography (Debian's 38) has Python key objects
        assert key_ref() is None
    assert parsed() is None


@pytest.mark.parametrize("form", [str, bytearray])
def test_pem_key_data_is_not_kept(ca, server_cert, client_cert, form):
    # Subclasses, because only they take weak references (bytes' never do).
    holder = type("Pem", (form,), {})

    def make() -> tuple[Any, Any]:
        key_pem = client_cert.private_key_pem.bytes()
        key = holder(key_pem.decode()) if form is str else holder(key_pem)
        return client_cert.cert_chain_pems[0].bytes(), key

    key_ref, _ = _returned_once(ca, server_cert, make)
    assert key_ref() is None


def test_a_pair_returned_again_is_the_same_credential_while_it_lives(ca, server_cert, client_cert):
    cert = x509.load_pem_x509_certificate(client_cert.cert_chain_pems[0].bytes())
    key = serialization.load_pem_private_key(client_cert.private_key_pem.bytes(), None)
    assert sent(ca, server_cert, lambda: (cert, key)) == der(client_cert)
    first = coerce(cert, key)
    gc.collect()  # the caller still holds both: the cache keeps them
    assert coerce(cert, key) is first
    pem = (client_cert.cert_chain_pems[0].bytes(), client_cert.private_key_pem.bytes())
    assert coerce(*pem) is coerce(bytes(pem[0]), bytearray(pem[1]))  # by content
