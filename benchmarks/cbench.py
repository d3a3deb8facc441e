"""The benchmark's own C module, compiled with cffi (API mode) on first use.

It links the system libssl/libcrypto (the very ones ``ccb.lib`` runs on, which
``load()`` proves) and holds:

* ``bench_loop(cb, ssl, n)``: calls a ``client_cert_cb`` function pointer ``n``
  times, freeing whatever ownership it hands over; returns the sum of the codes;
* two plain C ``client_cert_cb`` functions: one answering 0 (the floor), one
  handing over new references to a credential set with ``bench_set_credential``;
* two ``extern "Python"`` ``client_cert_cb`` functions answering 0: one bare,
  one calling a Python function with one argument (the least a trampoline
  that calls the user's callable can do).

Addresses cross between FFIs (ours, ``ccb.ffi``, ctypes, cryptography's) as
``uintptr_t`` integers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import ssl
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import cffi  # type: ignore[import-untyped]

import openssl_ccb as ccb
from openssl_ccb.libssl_proof import shares_our_libssl

NAME = "_openssl_ccb_bench"

CDEF = """
long bench_loop(uintptr_t cb, uintptr_t ssl, long n);
void bench_set_credential(uintptr_t x509, uintptr_t pkey);
uintptr_t bench_none_cb_address(void);
uintptr_t bench_credential_cb_address(void);
uintptr_t bench_libssl(void);
void bench_time_target(uintptr_t cb);
uintptr_t bench_gated_cb_address(void);
extern "Python" int bench_extern(void *, void *, void *);
uintptr_t bench_extern_address(void);
extern "Python" int bench_extern_call(void *, void *, void *);
uintptr_t bench_extern_call_address(void);
uintptr_t bench_python_floor_cb_address(void);
extern "Python" int bench_foreign_floor(uintptr_t);
uintptr_t bench_foreign_floor_cb_address(void);
double bench_timed_ns(void);
long bench_timed_calls(void);
"""

SOURCE = r"""
#include <stdint.h>
#include <time.h>
#include <openssl/ssl.h>

typedef int (*client_cert_cb_t)(SSL *, X509 **, EVP_PKEY **);

static int bench_extern(void *, void *, void *);
static int bench_extern_call(void *, void *, void *);
static int bench_foreign_floor(uintptr_t);

static X509 *bench_x509;
static EVP_PKEY *bench_pkey;

static int bench_none_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
    return 0;
}

static int bench_credential_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
    X509_up_ref(bench_x509);
    EVP_PKEY_up_ref(bench_pkey);
    *x509 = bench_x509;
    *pkey = bench_pkey;
    return 1;
}

static void bench_set_credential(uintptr_t x509, uintptr_t pkey)
{
    X509_up_ref((X509 *)x509);
    EVP_PKEY_up_ref((EVP_PKEY *)pkey);
    X509_free(bench_x509);
    EVP_PKEY_free(bench_pkey);
    bench_x509 = (X509 *)x509;
    bench_pkey = (EVP_PKEY *)pkey;
}

static uintptr_t bench_none_cb_address(void) { return (uintptr_t)&bench_none_cb; }
static uintptr_t bench_credential_cb_address(void) { return (uintptr_t)&bench_credential_cb; }
/* A use of libssl, so that the linker keeps it (and the libssl proof can see it). */
static uintptr_t bench_libssl(void) { return (uintptr_t)&SSL_CTX_new; }

/* A client_cert_cb that times another one (set with bench_time_target) from
 * inside real handshakes: what a callback costs where OpenSSL calls it. */
static client_cert_cb_t bench_target;
static double bench_ns;
static long bench_calls;

static int bench_timed_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int ret = bench_target(ssl, x509, pkey);
    clock_gettime(CLOCK_MONOTONIC, &end);
    bench_ns += (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec);
    bench_calls++;
    return ret;
}

static void bench_time_target(uintptr_t cb)
{
    bench_target = (client_cert_cb_t)cb;
    bench_ns = 0;
    bench_calls = 0;
}

/* The same, but what the timed callback hands over is ignored: the credential
 * is then handed over in C. So any callback, even one answering 0, can be
 * timed inside handshakes that need a certificate. */
static int bench_gated_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    if (bench_timed_cb(ssl, &x, &k) == 1) {
        X509_free(x);
        EVP_PKEY_free(k);
    }
    return bench_credential_cb(ssl, x509, pkey);
}

/* The least a client_cert_cb written in Python can cost inside a handshake:
 * enter Python once (bench_extern_call: call a function with one argument),
 * then hand the credential over in C. */
static int bench_python_floor_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
    bench_extern_call(ssl, NULL, NULL);
    return bench_credential_cb(ssl, x509, pkey);
}

/* The same for an OpenSSL that is not this one (pyOpenSSL's bundled): a
 * cert_cb that never touches the SSL in C; Python installs the certificate
 * through that OpenSSL's own binding. */
static int bench_foreign_floor_cb(void *ssl, void *arg)
{
    return bench_foreign_floor((uintptr_t)ssl);
}

static uintptr_t bench_python_floor_cb_address(void) { return (uintptr_t)&bench_python_floor_cb; }
static uintptr_t bench_foreign_floor_cb_address(void) { return (uintptr_t)&bench_foreign_floor_cb; }
static uintptr_t bench_gated_cb_address(void) { return (uintptr_t)&bench_gated_cb; }
static uintptr_t bench_extern_address(void) { return (uintptr_t)&bench_extern; }
static uintptr_t bench_extern_call_address(void) { return (uintptr_t)&bench_extern_call; }
static double bench_timed_ns(void) { return bench_ns; }
static long bench_timed_calls(void) { return bench_calls; }

/* Call cb n times as OpenSSL would; on 1, ownership of both objects passes
 * to the caller, so free them. */
static long bench_loop(uintptr_t cb_address, uintptr_t ssl_address, long n)
{
    client_cert_cb_t cb = (client_cert_cb_t)cb_address;
    SSL *ssl = (SSL *)ssl_address;
    long sum = 0;
    for (long i = 0; i < n; i++) {
        X509 *x509 = NULL;
        EVP_PKEY *pkey = NULL;
        int ret = cb(ssl, &x509, &pkey);
        if (ret == 1) {
            X509_free(x509);
            EVP_PKEY_free(pkey);
        }
        sum += ret;
    }
    return sum;
}
"""


def _cache_dir() -> Path:
    key = "\n".join(
        (
            SOURCE,
            CDEF,
            cffi.__version__,
            sys.version,
            sys.implementation.cache_tag or "",
            ssl.OPENSSL_VERSION,
        )
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"openssl-ccb-bench-{os.getuid()}-{digest}"


def _compile(directory: Path) -> Path:
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.set_source(NAME, SOURCE, libraries=["ssl", "crypto"])
    with tempfile.TemporaryDirectory(prefix="openssl-ccb-bench-build-") as build:
        built = Path(ffi.compile(tmpdir=build))
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / built.name
        os.replace(built, target)  # atomic: a concurrent run sees all of it or nothing
    return target


_module: ModuleType | None = None


def load() -> ModuleType:
    """The compiled module (``.ffi``, ``.lib``), built once per machine and Python."""
    global _module
    if _module is not None:
        return _module
    directory = _cache_dir()
    found = sorted(directory.glob(f"{NAME}.*")) if directory.is_dir() else []
    path = found[0] if found else _compile(directory)
    spec = importlib.util.spec_from_file_location(NAME, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    same, why = shares_our_libssl(str(path))
    if not same:
        raise RuntimeError(f"the benchmark's C module does not run on openssl-ccb's libssl: {why}")

    @module.ffi.def_extern()  # type: ignore[untyped-decorator]
    def bench_extern(ssl: object, x509_out: object, pkey_out: object) -> int:
        return 0  # the bare cost of cffi's extern "Python", as the trampoline uses it

    def answer(request: object) -> None:
        return None

    @module.ffi.def_extern()  # type: ignore[untyped-decorator]
    def bench_extern_call(ssl: object, x509_out: object, pkey_out: object) -> int:
        # The least any trampoline honouring the contract can do: enter Python
        # and call the user's callable with one argument (here not even a
        # request object: the SSL itself).
        answer(ssl)
        return 0

    @module.ffi.def_extern()  # type: ignore[untyped-decorator]
    def bench_foreign_floor(address: int) -> int:
        their_ffi, their_lib, ssl_type, x509, key = _foreign[:5]
        ssl = their_ffi.cast(ssl_type, address)
        answer(ssl)
        their_lib.SSL_use_certificate(ssl, x509)
        their_lib.SSL_use_PrivateKey(ssl, key)
        return 1

    _module = module
    return module


def address(pointer: object) -> int:
    """A ``ccb.ffi`` pointer as an integer."""
    return int(ccb.ffi.cast("uintptr_t", pointer))


def c_callback(kind: str) -> Any:
    """A plain C ``client_cert_cb`` as ``ccb.ffi`` cdata: ``"none"`` or ``"credential"``."""
    lib = load().lib
    where = lib.bench_none_cb_address() if kind == "none" else lib.bench_credential_cb_address()
    return ccb.ffi.cast("int (*)(SSL *, X509 **, EVP_PKEY **)", where)


def python_floor_callback() -> Any:
    """The Python floor as a ``client_cert_cb`` (``ccb.ffi`` cdata); hands over
    the credential given to ``set_credential``."""
    where = load().lib.bench_python_floor_cb_address()
    return ccb.ffi.cast("int (*)(SSL *, X509 **, EVP_PKEY **)", where)


_foreign: tuple[Any, ...] = ()


def set_foreign_floor(context: Any, cert_path: str, key_path: str) -> None:
    """Set the Python floor as the cert_cb of a pyOpenSSL Context on its bundled
    OpenSSL: pyOpenSSL's own binding and objects, none of openssl-ccb's."""
    global _foreign
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from OpenSSL import crypto
    from OpenSSL._util import ffi as their_ffi
    from OpenSSL._util import lib as their_lib

    with open(cert_path, "rb") as f:
        cert = crypto.X509.from_cryptography(x509.load_pem_x509_certificate(f.read()))
    with open(key_path, "rb") as f:
        key = crypto.PKey.from_cryptography_key(load_pem_private_key(f.read(), None))  # type: ignore[arg-type]
    # The floor hands these over; the pyOpenSSL objects keep them alive.
    _foreign = (their_ffi, their_lib, their_ffi.typeof("SSL *"), cert._x509, key._pkey, cert, key)
    their_lib.SSL_CTX_set_cert_cb(
        context._context,
        their_ffi.cast("int (*)(SSL *, void *)", load().lib.bench_foreign_floor_cb_address()),
        their_ffi.NULL,
    )


def load_pair(cert_path: str, key_path: str) -> tuple[Any, Any]:
    """A PEM certificate and key as ``ccb.ffi`` ``X509 *``/``EVP_PKEY *``, through
    ccb.lib (the public raw API), freed with their cdata."""
    ffi, lib = ccb.ffi, ccb.lib

    def read(path: str, reader: Any, free: Any) -> Any:
        with open(path, "rb") as f:
            pem = f.read()
        bio = ffi.gc(lib.BIO_new_mem_buf(pem, len(pem)), lib.BIO_free)
        obj = reader(bio, ffi.NULL, ffi.NULL, ffi.NULL)
        if obj == ffi.NULL:
            raise RuntimeError(f"cannot read {path}")
        return ffi.gc(obj, free)

    x509 = read(cert_path, lib.PEM_read_bio_X509, lib.X509_free)
    return x509, read(key_path, lib.PEM_read_bio_PrivateKey, lib.EVP_PKEY_free)


def set_credential(x509: Any, pkey: Any) -> None:
    """What the C credential callback hands over (new references each call):
    ``ccb.ffi`` ``X509 *`` and ``EVP_PKEY *`` (``load_pair``); C takes its own references."""
    load().lib.bench_set_credential(address(x509), address(pkey))
