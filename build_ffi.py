"""CFFI builder for ``openssl_ccb._openssl``: out-of-line, API mode, system libssl.

The declarations come in the parts pyca/cryptography's ``_cffi_src`` modules
name: INCLUDES (the C the generated module starts with), TYPES (opaque types
and constants, values from the headers, never copied by hand) and FUNCTIONS
(libssl and libcrypto; macros declared as functions). What cryptography
calls CUSTOMIZATIONS, our own C, is a translation unit of its own,
``src/openssl_ccb.c``, compiled into the same module: OWN_FUNCTIONS declares
what it defines, EXTERN_PYTHON what it calls back (bodies in Python, under
``@ffi.def_extern``); ``src/openssl_ccb.h`` declares both for the C side.

The cdef holds only the names the package, its tests, docs, examples,
benchmarks and tools use: tests/test_binding_surface.py compares it with
``openssl_ccb/_openssl.pyi``.

Environment, for a libssl outside the compiler's default paths:
``OPENSSL_CCB_INCLUDE_DIR`` and ``OPENSSL_CCB_LIB_DIR``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from typing import NoReturn

from cffi import FFI

MODULE = "openssl_ccb._openssl"
# relative to the project root, as setuptools wants
C_SOURCES = ["src/openssl_ccb.c", "src/openssl_ccb_choice.c", "src/openssl_ccb_signer.c"]
C_HEADERS = ["src/openssl_ccb.h"]

INSTALL_HINT = (
    "install the OpenSSL development headers and a C compiler "
    "(Debian/Ubuntu: apt-get install libssl-dev gcc; "
    "Fedora: dnf install openssl-devel gcc; Homebrew: brew install openssl@3, "
    "then set OPENSSL_CCB_INCLUDE_DIR and OPENSSL_CCB_LIB_DIR)"
)

INCLUDES = """
#include "openssl_ccb.h"
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509v3.h>
"""

# Both translation units, the generated one too; tests/test_binding_surface.py
# compiles them with these and -Werror, so a warning fails the suite.
WARNINGS = ["-Wall", "-Wextra", "-Wconversion"]

TYPES = """
typedef ... SSL_CTX;
typedef ... SSL;
typedef ... SSL_METHOD;
typedef ... X509;
typedef ... X509_NAME;
typedef ... EVP_PKEY;
typedef ... BIO;
typedef ... BIO_METHOD;
typedef ... X509_STORE_CTX;
typedef int pem_password_cb(char *, int, int, void *);
typedef ... openssl_ccb_X509_NAME_STACK;
typedef ... openssl_ccb_X509_STACK;
typedef ... PKCS12;

/* int (*client_cert_cb)(SSL *ssl, X509 **x509, EVP_PKEY **pkey) */
typedef int (*openssl_ccb_client_cert_cb_t)(SSL *, X509 **, EVP_PKEY **);

static const int OPENSSL_VERSION;

static const int SSL_ERROR_SSL;
static const int SSL_ERROR_WANT_READ;
static const int SSL_ERROR_WANT_WRITE;
static const int SSL_ERROR_WANT_X509_LOOKUP;
static const int SSL_R_EE_KEY_TOO_SMALL;
static const int SSL_R_CA_MD_TOO_WEAK;
static const int SSL_ERROR_SYSCALL;
static const int SSL_ERROR_ZERO_RETURN;

static const int SSL_VERIFY_NONE;
static const int SSL_VERIFY_PEER;
static const int SSL_VERIFY_FAIL_IF_NO_PEER_CERT;

static const int SSL_FILETYPE_PEM;
static const int TLSEXT_NAMETYPE_host_name;

static const int TLS1_2_VERSION;
static const int TLS1_3_VERSION;

static const int X509_V_OK;

static const int EVP_PKEY_RSA;
static const int EVP_PKEY_RSA_PSS;
static const int EVP_PKEY_EC;
static const int EVP_PKEY_ED25519;
static const int EVP_PKEY_ED448;
static const int EVP_PKEY_DSA;
static const int NID_X9_62_prime256v1;
static const int NID_secp384r1;
static const int NID_secp521r1;
static const int NID_brainpoolP256r1;
static const int NID_brainpoolP384r1;
static const int NID_brainpoolP512r1;
static const unsigned long XN_FLAG_RFC2253;
static const unsigned long ASN1_STRFLGS_ESC_MSB;
"""

FUNCTIONS = """
const char *OpenSSL_version(int);

/* Contexts */
const SSL_METHOD *TLS_method(void);
const SSL_METHOD *TLS_client_method(void);
const SSL_METHOD *TLS_server_method(void);
SSL_CTX *SSL_CTX_new(const SSL_METHOD *);
void SSL_CTX_free(SSL_CTX *);
void SSL_CTX_set_client_cert_cb(SSL_CTX *, int (*)(SSL *, X509 **, EVP_PKEY **));
int (*SSL_CTX_get_client_cert_cb(SSL_CTX *))(SSL *, X509 **, EVP_PKEY **);
int SSL_CTX_use_certificate(SSL_CTX *, X509 *);
int SSL_CTX_use_PrivateKey(SSL_CTX *, EVP_PKEY *);
int SSL_CTX_use_certificate_file(SSL_CTX *, const char *, int);
int SSL_CTX_use_PrivateKey_file(SSL_CTX *, const char *, int);
int SSL_CTX_check_private_key(const SSL_CTX *);
int SSL_CTX_load_verify_locations(SSL_CTX *, const char *, const char *);
void SSL_CTX_set_verify(SSL_CTX *, int, int (*)(int, X509_STORE_CTX *));
int SSL_CTX_get_verify_mode(const SSL_CTX *);
long SSL_CTX_set_min_proto_version(SSL_CTX *, int);
long SSL_CTX_set_max_proto_version(SSL_CTX *, int);
long SSL_CTX_get_min_proto_version(SSL_CTX *);
long SSL_CTX_get_max_proto_version(SSL_CTX *);
uint64_t SSL_CTX_get_options(const SSL_CTX *);
int SSL_CTX_set_cipher_list(SSL_CTX *, const char *);
long SSL_CTX_set1_client_sigalgs_list(SSL_CTX *, const char *);
int SSL_CTX_add_client_CA(SSL_CTX *, X509 *);
void SSL_CTX_set_post_handshake_auth(SSL_CTX *, int);

/* Connections */
SSL *SSL_new(SSL_CTX *);
void SSL_free(SSL *);
SSL_CTX *SSL_get_SSL_CTX(const SSL *);
int SSL_set_fd(SSL *, int);
void SSL_set_bio(SSL *, BIO *, BIO *);
void SSL_set_connect_state(SSL *);
void SSL_set_accept_state(SSL *);
int SSL_do_handshake(SSL *);
int SSL_get_error(const SSL *, int);
int SSL_read(SSL *, void *, int);
int SSL_write(SSL *, const void *, int);
int SSL_shutdown(SSL *);
int SSL_is_init_finished(const SSL *);
const char *SSL_get_version(const SSL *);
long SSL_set_tlsext_host_name(SSL *, const char *);
const char *SSL_get_servername(const SSL *, const int);
int SSL_set1_host(SSL *, const char *);
long SSL_get_verify_result(const SSL *);
X509 *SSL_get_certificate(const SSL *);
openssl_ccb_X509_STACK *SSL_get_peer_cert_chain(const SSL *);
int SSL_use_certificate(SSL *, X509 *);
int SSL_use_PrivateKey(SSL *, EVP_PKEY *);
openssl_ccb_X509_NAME_STACK *SSL_get_client_CA_list(const SSL *);
long SSL_get0_certificate_types(SSL *, const unsigned char **);  /* a macro over SSL_ctrl */
int SSL_get_sigalgs(SSL *, int, int *, int *, int *, unsigned char *, unsigned char *);
int SSL_get_shared_sigalgs(SSL *, int, int *, int *, int *, unsigned char *, unsigned char *);
void SSL_set_post_handshake_auth(SSL *, int);
int SSL_set_ex_data(SSL *, int, void *);
void *SSL_get_app_data(const SSL *);

/* Memory and socket BIOs */
const BIO_METHOD *BIO_s_mem(void);
BIO *BIO_new(const BIO_METHOD *);
BIO *BIO_new_mem_buf(const void *, int);
int BIO_free(BIO *);
int BIO_read(BIO *, void *, int);
int BIO_write(BIO *, const void *, int);
size_t BIO_ctrl_pending(BIO *);
long BIO_set_mem_eof_return(BIO *, int);

/* Certificates, names, keys */
X509 *d2i_X509(X509 **, const unsigned char **, long);
int i2d_X509(X509 *, unsigned char **);
X509 *PEM_read_bio_X509(BIO *, X509 **, pem_password_cb *, void *);
void X509_free(X509 *);
int X509_up_ref(X509 *);
X509_NAME *X509_get_subject_name(const X509 *);
X509_NAME *X509_get_issuer_name(const X509 *);
int X509_check_private_key(const X509 *, const EVP_PKEY *);
EVP_PKEY *X509_get0_pubkey(const X509 *);
int X509_check_issued(X509 *, X509 *);
int i2d_X509_NAME(X509_NAME *, unsigned char **);
X509_NAME *d2i_X509_NAME(X509_NAME **, const unsigned char **, long);
void X509_NAME_free(X509_NAME *);
int X509_NAME_cmp(const X509_NAME *, const X509_NAME *);
int X509_NAME_print_ex(BIO *, const X509_NAME *, int, unsigned long);
int sk_X509_NAME_num(openssl_ccb_X509_NAME_STACK *);
X509_NAME *sk_X509_NAME_value(openssl_ccb_X509_NAME_STACK *, int);
openssl_ccb_X509_STACK *sk_X509_new_null(void);
int sk_X509_push(openssl_ccb_X509_STACK *, X509 *);
int sk_X509_num(openssl_ccb_X509_STACK *);
X509 *sk_X509_value(openssl_ccb_X509_STACK *, int);
void sk_X509_free(openssl_ccb_X509_STACK *);

EVP_PKEY *d2i_AutoPrivateKey(EVP_PKEY **, const unsigned char **, long);
EVP_PKEY *PEM_read_bio_PrivateKey(BIO *, EVP_PKEY **, pem_password_cb *, void *);
void EVP_PKEY_free(EVP_PKEY *);
int EVP_PKEY_up_ref(EVP_PKEY *);
int EVP_PKEY_base_id(const EVP_PKEY *);

PKCS12 *d2i_PKCS12_bio(BIO *, PKCS12 **);
int PKCS12_parse(PKCS12 *, const char *, EVP_PKEY **, X509 **, openssl_ccb_X509_STACK **);
void PKCS12_free(PKCS12 *);
int i2d_PrivateKey(const EVP_PKEY *, unsigned char **);

/* The error queue */
unsigned long ERR_get_error(void);
unsigned long ERR_peek_error(void);
void ERR_clear_error(void);
int ERR_set_mark(void);
int ERR_pop_to_mark(void);
void ERR_error_string_n(unsigned long, char *, size_t);
const char *ERR_lib_error_string(unsigned long);
const char *ERR_reason_error_string(unsigned long);
"""

OWN_FUNCTIONS = """
/* The attempt openssl_ccb_dispatch is given when it must raise instead. */
static const int OPENSSL_CCB_REENTERED;
static const int OPENSSL_CCB_NO_MEMORY;
static const int OPENSSL_CCB_REFUSED;
static const int OPENSSL_CCB_SEND_PREPAID;

/* One call of the Python callback (openssl_ccb.h) */
typedef struct openssl_ccb_prepaid openssl_ccb_prepaid;
typedef struct {
    openssl_ccb_prepaid *answer;
    int version;
    const char *version_name;
    const char *server_name;
    const unsigned char *certificate_types;
    size_t certificate_types_len;
    int sigalgs_len, shared_sigalgs_len;
    uint16_t sigalgs[...];
    uint16_t shared_sigalgs[...];
    int ca_names_len;
    X509_NAME **ca_names;
    const unsigned char **ca_ders;
    size_t *ca_der_lens;
    ...;
} openssl_ccb_call;

int openssl_ccb_init(void);
void openssl_ccb_set_exiting(void);
void openssl_ccb_set_finalizing_probe(uintptr_t);

/* A context's state; the trampoline and its answers */
void *openssl_ccb_get_state(const SSL_CTX *);
void *openssl_ccb_attach_state(SSL_CTX *, void *);
openssl_ccb_client_cert_cb_t openssl_ccb_trampoline(void);
openssl_ccb_prepaid *openssl_ccb_prepaid_new(X509 *, EVP_PKEY *, openssl_ccb_X509_STACK *, long);
void openssl_ccb_prepaid_add(openssl_ccb_prepaid *, long);
void openssl_ccb_prepaid_release(openssl_ccb_prepaid *, long);
int openssl_ccb_security_refusal(const SSL *, X509 *);
int openssl_ccb_forward(SSL *, openssl_ccb_client_cert_cb_t);
void openssl_ccb_raise_callback_failed(void);

/* Another OpenSSL's callbacks (pip's bundled one) */
uintptr_t openssl_ccb_foreign_cert_cb_address(void);
uintptr_t openssl_ccb_foreign_msg_cb_address(void);

/* The libssl proof's probes */
const char *openssl_ccb_probe_name(size_t);
uintptr_t openssl_ccb_probe_address(size_t);

/* Certificates and keys */
X509 *openssl_ccb_get1_peer_certificate(const SSL *);
int openssl_ccb_ec_curve(const EVP_PKEY *);
void openssl_ccb_free_x509_stack(openssl_ccb_X509_STACK *);
int openssl_ccb_password_cb(char *, int, int, void *);

/* Wallets chosen in C */
typedef struct openssl_ccb_choice openssl_ccb_choice;
typedef struct openssl_ccb_slot openssl_ccb_slot;
openssl_ccb_choice *openssl_ccb_choice_new(size_t);
int openssl_ccb_choice_set(openssl_ccb_choice *, size_t, X509 *, EVP_PKEY *,
                           openssl_ccb_X509_STACK *, int64_t, int64_t, int);
openssl_ccb_slot *openssl_ccb_slot_new(void);
void openssl_ccb_slot_free(openssl_ccb_slot *);
void openssl_ccb_slot_put(openssl_ccb_slot *, openssl_ccb_choice *);
int openssl_ccb_set_slot(SSL_CTX *, openssl_ccb_slot *);
void openssl_ccb_set_clock_ours(int);
int openssl_ccb_key_signs(const EVP_PKEY *, int, int);

/* Signers: keys whose private half is a Python callable */
int openssl_ccb_signers_available(void);
EVP_PKEY *openssl_ccb_signer_key(X509 *, void *);
"""

# "Python+C": cffi defines them without ``static``, so that openssl_ccb.c (the
# other translation unit) can call them, as openssl_ccb.h declares them.
EXTERN_PYTHON = """
extern "Python+C" int openssl_ccb_dispatch(void *, SSL *, int, openssl_ccb_call *);
extern "Python+C" void openssl_ccb_release(void *);
extern "Python+C" int openssl_ccb_foreign_dispatch(void *, uintptr_t);
extern "Python+C" void openssl_ccb_foreign_certificate_request(
    void *, uintptr_t, int, const unsigned char *, size_t);
extern "Python+C" int openssl_ccb_sign(
    void *, int, const unsigned char *, size_t, unsigned char *, size_t *);
extern "Python+C" void openssl_ccb_signer_release(void *);
"""


def _dirs(name: str) -> list[str]:
    value = os.environ.get(name)
    return [value] if value else []


INCLUDE_DIRS = _dirs("OPENSSL_CCB_INCLUDE_DIR")
LIBRARY_DIRS = _dirs("OPENSSL_CCB_LIB_DIR")


def preflight() -> None:
    """Stop the build with one sentence if headers or a compiler are missing.

    The compiler's own output is kept, not printed: pip shows a failed build's
    output in a box, and the sentence should be all there is in it.
    """
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    def stop(reason: str) -> NoReturn:
        sys.exit(f"openssl-ccb cannot build ({reason}): {INSTALL_HINT}.")

    for include in INCLUDE_DIRS:  # a directory given must hold the headers: no fallback
        if not os.path.isfile(os.path.join(include, "openssl", "ssl.h")):
            stop(f"OPENSSL_CCB_INCLUDE_DIR={include} holds no openssl/ssl.h")
    compiler = new_compiler()
    customize_compiler(compiler)
    command = list(compiler.compiler_so)
    if shutil.which(command[0]) is None:
        stop(f"no C compiler: {command[0]} not found")
    with tempfile.TemporaryDirectory() as tmp:
        probe = os.path.join(tmp, "probe.c")
        with open(probe, "w") as f:
            f.write(
                "#include <openssl/ssl.h>\n"
                "#if OPENSSL_VERSION_NUMBER < 0x10101000L\n"
                '#error "OpenSSL older than 1.1.1"\n'
                "#endif\n"
                "int main(void) { return 0; }\n"
            )
        flags = [f"-I{d}" for d in INCLUDE_DIRS]
        out = os.path.join(tmp, "probe.o")
        result = subprocess.run(
            [*command, *flags, "-c", probe, "-o", out], capture_output=True, text=True
        )
    if result.returncode != 0:
        errors = [line.strip() for line in result.stderr.splitlines() if "error" in line]
        stop(errors[0].replace(probe, "probe.c") if errors else f"{command[0]} failed")


ffi = FFI()
ffi.cdef(TYPES + FUNCTIONS + OWN_FUNCTIONS + EXTERN_PYTHON)
ffi.set_source(
    MODULE,
    INCLUDES,
    sources=C_SOURCES,
    depends=C_HEADERS,
    libraries=["ssl", "crypto"],
    include_dirs=[*INCLUDE_DIRS, "src"],
    library_dirs=LIBRARY_DIRS,
    runtime_library_dirs=LIBRARY_DIRS,
    extra_compile_args=WARNINGS,
)

if os.environ.get("OPENSSL_CCB_SKIP_PREFLIGHT") != "1" and "sdist" not in sys.argv:
    preflight()

if __name__ == "__main__":
    ffi.compile(verbose=True)
