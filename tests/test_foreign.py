"""C function pointers: installed as they are, and read back as ForeignCallback."""

from __future__ import annotations

import re
import ssl
from typing import Any

import cffi
import pytest
from tlsutil import (
    MemoryPair,
    RawEnd,
    client_context,
    raw_client_ctx,
    raw_pair_handshake,
    server_context,
)

import openssl_ccb as ccb
from openssl_ccb import ffi, lib

C_SOURCE = r"""
#include <stdint.h>
#include <openssl/ssl.h>

static X509 *fixture_cert;
static EVP_PKEY *fixture_key;
static int fixture_answer;
static int fixture_calls;

/* A client_cert_cb written in C, as another library would set it. */
static int fixture_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
    fixture_calls++;
    if (fixture_answer == 1) {
        X509_up_ref(fixture_cert);
        EVP_PKEY_up_ref(fixture_key);
        *x509 = fixture_cert;
        *pkey = fixture_key;
    }
    return fixture_answer;
}

static void fixture_set(uintptr_t cert, uintptr_t key, int answer)
{
    fixture_cert = (X509 *)cert;
    fixture_key = (EVP_PKEY *)key;
    fixture_answer = answer;
    fixture_calls = 0;
}

static int fixture_count(void) { return fixture_calls; }
static uintptr_t fixture_address(void) { return (uintptr_t)&fixture_cb; }
"""


@pytest.fixture(scope="session")
def c_callback(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Compile the C callback once; returns its module's lib."""
    builder = cffi.FFI()
    builder.cdef(
        "void fixture_set(uintptr_t, uintptr_t, int);"
        "int fixture_count(void);"
        "uintptr_t fixture_address(void);"
    )
    builder.set_source("_ccb_test_fixture", C_SOURCE, libraries=["ssl", "crypto"])
    out = tmp_path_factory.mktemp("cfixture")
    path = builder.compile(tmpdir=str(out))
    import importlib.util

    spec = importlib.util.spec_from_file_location("_ccb_test_fixture", path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lib


@pytest.fixture
def pointer(c_callback: Any, credential: ccb.Credential) -> Any:
    c_callback.fixture_set(
        int(ffi.cast("uintptr_t", credential._x509)), int(ffi.cast("uintptr_t", credential._key)), 1
    )
    return ffi.cast("int (*)(SSL *, X509 **, EVP_PKEY **)", c_callback.fixture_address())


def test_c_pointer_is_installed_as_it_is(ca, server_cert, client_der, c_callback, pointer):
    ctx = raw_client_ctx(ca)
    ccb.set_client_cert_cb(ctx, pointer)
    assert lib.SSL_CTX_get_client_cert_cb(ctx) == pointer
    assert ccb.get_client_cert_cb(ctx) is pointer  # the very object that was set
    pair = MemoryPair(server_context(ca, server_cert))
    raw_pair_handshake(RawEnd(ctx), pair)
    assert pair.peer_der() == client_der
    assert c_callback.fixture_count() == 1


def test_pointer_set_in_c_reads_back_as_foreign_callback(ca, pointer):
    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, lambda request: None)  # ours first, then C's
    lib.SSL_CTX_set_client_cert_cb(ccb.ssl_ctx(ctx), pointer)
    foreign = ccb.get_client_cert_cb(ctx)
    assert isinstance(foreign, ccb.ForeignCallback)
    assert foreign.pointer == pointer
    assert foreign == ccb.ForeignCallback(pointer)


def _ssl_for_call(ctx: Any) -> Any:
    return ffi.gc(lib.SSL_new(ctx), lib.SSL_free)


def test_foreign_callback_translates_return_codes(ca, credential, client_der, c_callback, pointer):
    ctx = raw_client_ctx(ca)
    lib.SSL_CTX_set_client_cert_cb(ctx, pointer)
    foreign = ccb.get_client_cert_cb(ctx)
    assert isinstance(foreign, ccb.ForeignCallback)
    conn = _ssl_for_call(ctx)

    cert, key = foreign(conn)  # 1: a certificate and key that Python owns
    assert ffi.typeof(cert) is ffi.typeof("X509 *")
    assert ffi.typeof(key) is ffi.typeof("EVP_PKEY *")
    assert ccb.Credential.load(cert, key).certificate == client_der

    addresses = (
        int(ffi.cast("uintptr_t", credential._x509)),
        int(ffi.cast("uintptr_t", credential._key)),
    )
    c_callback.fixture_set(*addresses, 0)
    assert foreign(conn) is None  # 0: none
    c_callback.fixture_set(*addresses, -1)
    with pytest.raises(ccb.WantX509Lookup):  # negative: suspend
        foreign(conn)
    assert c_callback.fixture_count() == 1


def test_foreign_callback_can_be_set_on_another_context(ca, server_cert, client_der, pointer):
    source = raw_client_ctx(ca)
    lib.SSL_CTX_set_client_cert_cb(source, pointer)
    foreign = ccb.get_client_cert_cb(source)
    target = client_context(ca)
    ccb.set_client_cert_cb(target, foreign)
    pair = MemoryPair(server_context(ca, server_cert))
    pair.handshake(pair.stdlib_client(target))
    assert pair.peer_der() == client_der


def test_c_pointer_of_the_wrong_type_is_refused(ca):
    ctx = raw_client_ctx(ca)
    with pytest.raises(TypeError, match=re.escape("int (*)(SSL *, X509 **, EVP_PKEY **)")):
        ccb.set_client_cert_cb(ctx, ffi.cast("void *", 1))
    with pytest.raises(TypeError):
        ccb.set_client_cert_cb(ctx, ffi.cast("int (*)(SSL *, X509 **, EVP_PKEY **)", 0))
    assert ccb.get_client_cert_cb(ctx) is None


def test_suspending_c_callback_surfaces_on_stdlib(ca, server_cert, c_callback, credential):
    c_callback.fixture_set(
        int(ffi.cast("uintptr_t", credential._x509)),
        int(ffi.cast("uintptr_t", credential._key)),
        -1,
    )
    ctx = client_context(ca)
    ccb.set_client_cert_cb(
        ctx, ffi.cast("int (*)(SSL *, X509 **, EVP_PKEY **)", c_callback.fixture_address())
    )
    pair = MemoryPair(server_context(ca, server_cert))
    with pytest.raises(ssl.SSLError) as info:
        pair.handshake(pair.stdlib_client(ctx))
    assert isinstance(info.value, ccb.WantX509Lookup)
