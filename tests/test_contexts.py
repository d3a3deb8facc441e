"""Which contexts are accepted, and the refusals."""

from __future__ import annotations

import ssl

import cffi
import pytest

import openssl_ccb as ccb
from openssl_ccb import ffi, lib
from openssl_ccb.worlds import stdlib


def test_get_returns_the_very_object_that_was_set(ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert ccb.get_client_cert_cb(ctx) is None

    def choose(request: ccb.CertificateRequest) -> None:
        return None

    ccb.set_client_cert_cb(ctx, choose)
    assert ccb.get_client_cert_cb(ctx) is choose
    assert lib.SSL_CTX_get_client_cert_cb(stdlib.ssl_ctx_of(ctx)) != ffi.NULL


@pytest.mark.parametrize(
    "bad",
    [object(), "SSLContext", 42, None],
    ids=["object", "str", "int", "None"],
)
def test_non_contexts_are_refused(bad):
    with pytest.raises(TypeError, match="SSLContext"):
        ccb.set_client_cert_cb(bad, lambda request: None)


def test_ssl_ctx_from_another_ffi_is_refused():
    other = cffi.FFI()
    other.cdef("typedef struct ssl_ctx_st SSL_CTX;")
    with pytest.raises(TypeError, match=r"openssl_ccb\.ffi"):
        ccb.set_client_cert_cb(other.cast("SSL_CTX *", 0x1000), lambda request: None)


def test_wrong_cdata_and_null_are_refused():
    with pytest.raises(TypeError, match="SSL_CTX"):
        ccb.set_client_cert_cb(ffi.cast("SSL *", 0x1000), lambda request: None)
    with pytest.raises(ValueError, match="NULL"):
        ccb.set_client_cert_cb(ffi.cast("SSL_CTX *", 0), lambda request: None)


def test_non_callable_callback_is_refused():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with pytest.raises(TypeError, match="callable"):
        ccb.set_client_cert_cb(ctx, "not a function")
    assert ccb.get_client_cert_cb(ctx) is None


def test_stdlib_runs_on_the_same_libssl_here():
    stdlib.prove_same_libssl()  # this machine's Python links the system libssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    pointer = stdlib.ssl_ctx_of(ctx)
    ctx.options |= ssl.OP_NO_TICKET
    assert lib.SSL_CTX_get_options(pointer) == ctx.options  # the pointer is the context's


def test_a_library_without_libssl_is_refused():
    """_hashlib links libcrypto only: SSL_CTX_new cannot be found through it."""
    import _hashlib

    problem = stdlib._check_same_libssl(_hashlib.__file__)
    assert isinstance(problem, ccb.Error)
    assert "cannot be resolved" in str(problem)


def test_the_wrong_pointer_is_refused(monkeypatch):
    """If the SSL_CTX read from the object disagrees with Python, refuse."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    decoy = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    decoy.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
    decoy.verify_mode = ssl.CERT_NONE
    # Point the reader at another real context: settings differ, so refuse.
    real_reader = stdlib._pointer_field
    monkeypatch.setattr(stdlib, "_pointer_field", lambda context: real_reader(decoy))
    with pytest.raises(ccb.Error, match="does not match its settings"):
        stdlib.ssl_ctx_of(ctx)
