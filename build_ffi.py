"""CFFI builder for ``openssl_ccb._openssl``: out-of-line, API mode, system libssl.

The declarations are grouped as pyca/cryptography groups them: TYPES,
FUNCTIONS, then CUSTOMIZATIONS (the C trampoline and its ex_data plumbing).
Values come from the headers (``static const int X;``), never copied by hand.

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

INSTALL_HINT = (
    "install the OpenSSL development headers and a C compiler "
    "(Debian/Ubuntu: apt-get install libssl-dev gcc; "
    "Fedora: dnf install openssl-devel gcc; Homebrew: brew install openssl@3, "
    "then set OPENSSL_CCB_INCLUDE_DIR and OPENSSL_CCB_LIB_DIR)"
)

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

static const long OPENSSL_VERSION_NUMBER;

static const int SSL_ERROR_NONE;
static const int SSL_ERROR_SSL;
static const int SSL_ERROR_WANT_READ;
static const int SSL_ERROR_WANT_WRITE;
static const int SSL_ERROR_WANT_X509_LOOKUP;
static const int SSL_R_EE_KEY_TOO_SMALL;
static const int SSL_R_CA_MD_TOO_WEAK;
static const int SSL_ERROR_SYSCALL;
static const int SSL_ERROR_ZERO_RETURN;
static const int SSL_ERROR_WANT_CONNECT;
static const int SSL_ERROR_WANT_ACCEPT;

static const int SSL_VERIFY_NONE;
static const int SSL_VERIFY_PEER;
static const int SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
static const int SSL_VERIFY_CLIENT_ONCE;
static const int SSL_VERIFY_POST_HANDSHAKE;

static const int SSL_FILETYPE_PEM;
static const int SSL_FILETYPE_ASN1;
static const int TLSEXT_NAMETYPE_host_name;

static const int TLS1_2_VERSION;
static const int TLS1_3_VERSION;

static const long SSL_MODE_AUTO_RETRY;
static const long SSL_MODE_ENABLE_PARTIAL_WRITE;
static const long SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
static const long SSL_OP_NO_TICKET;
static const long SSL_OP_NO_RENEGOTIATION;

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
unsigned long OpenSSL_version_num(void);
const char *OpenSSL_version(int);
static const int OPENSSL_VERSION;

/* Contexts */
const SSL_METHOD *TLS_method(void);
const SSL_METHOD *TLS_client_method(void);
const SSL_METHOD *TLS_server_method(void);
SSL_CTX *SSL_CTX_new(const SSL_METHOD *);
void SSL_CTX_free(SSL_CTX *);
int SSL_CTX_up_ref(SSL_CTX *);
void SSL_CTX_set_client_cert_cb(SSL_CTX *, int (*)(SSL *, X509 **, EVP_PKEY **));
int (*SSL_CTX_get_client_cert_cb(SSL_CTX *))(SSL *, X509 **, EVP_PKEY **);
int SSL_CTX_use_certificate(SSL_CTX *, X509 *);
int SSL_CTX_use_PrivateKey(SSL_CTX *, EVP_PKEY *);
int SSL_CTX_use_certificate_file(SSL_CTX *, const char *, int);
int SSL_CTX_use_certificate_chain_file(SSL_CTX *, const char *);
int SSL_CTX_use_PrivateKey_file(SSL_CTX *, const char *, int);
int SSL_CTX_check_private_key(const SSL_CTX *);
int SSL_CTX_load_verify_locations(SSL_CTX *, const char *, const char *);
int SSL_CTX_set_default_verify_paths(SSL_CTX *);
void SSL_CTX_set_verify(SSL_CTX *, int, int (*)(int, X509_STORE_CTX *));
int SSL_CTX_get_verify_mode(const SSL_CTX *);
long SSL_CTX_set_min_proto_version(SSL_CTX *, int);
long SSL_CTX_set_max_proto_version(SSL_CTX *, int);
long SSL_CTX_get_min_proto_version(SSL_CTX *);
long SSL_CTX_get_max_proto_version(SSL_CTX *);
uint64_t SSL_CTX_get_options(const SSL_CTX *);
uint64_t SSL_CTX_set_options(SSL_CTX *, uint64_t);
long SSL_CTX_set_mode(SSL_CTX *, long);
int SSL_CTX_set_cipher_list(SSL_CTX *, const char *);
int SSL_CTX_set_ciphersuites(SSL_CTX *, const char *);
long SSL_CTX_set1_sigalgs_list(SSL_CTX *, const char *);
long SSL_CTX_set1_client_sigalgs_list(SSL_CTX *, const char *);
int SSL_CTX_add_client_CA(SSL_CTX *, X509 *);
void SSL_CTX_set_post_handshake_auth(SSL_CTX *, int);
void *SSL_CTX_get_ex_data(const SSL_CTX *, int);

/* Connections */
SSL *SSL_new(SSL_CTX *);
void SSL_free(SSL *);
SSL_CTX *SSL_get_SSL_CTX(const SSL *);
int SSL_set_fd(SSL *, int);
void SSL_set_bio(SSL *, BIO *, BIO *);
void SSL_set_connect_state(SSL *);
void SSL_set_accept_state(SSL *);
int SSL_do_handshake(SSL *);
int SSL_connect(SSL *);
int SSL_accept(SSL *);
int SSL_get_error(const SSL *, int);
int SSL_read(SSL *, void *, int);
int SSL_write(SSL *, const void *, int);
int SSL_pending(const SSL *);
int SSL_shutdown(SSL *);
int SSL_is_init_finished(const SSL *);
int SSL_in_init(const SSL *);
int SSL_is_server(const SSL *);
const char *SSL_get_version(const SSL *);
int SSL_version(const SSL *);
long SSL_set_tlsext_host_name(SSL *, const char *);
const char *SSL_get_servername(const SSL *, const int);
int SSL_set1_host(SSL *, const char *);
void SSL_set_verify(SSL *, int, int (*)(int, X509_STORE_CTX *));
long SSL_get_verify_result(const SSL *);
X509 *SSL_get_certificate(const SSL *);
openssl_ccb_X509_STACK *SSL_get_peer_cert_chain(const SSL *);
EVP_PKEY *SSL_get_privatekey(const SSL *);
int SSL_use_certificate(SSL *, X509 *);
int SSL_use_PrivateKey(SSL *, EVP_PKEY *);
openssl_ccb_X509_NAME_STACK *SSL_get_client_CA_list(const SSL *);
int SSL_get_sigalgs(SSL *, int, int *, int *, int *, unsigned char *, unsigned char *);
void SSL_set_post_handshake_auth(SSL *, int);
int SSL_verify_client_post_handshake(SSL *);
int SSL_renegotiate(SSL *);
void *SSL_get_ex_data(const SSL *, int);
int SSL_set_ex_data(SSL *, int, void *);

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
int EVP_PKEY_bits(const EVP_PKEY *);
int EVP_PKEY_base_id(const EVP_PKEY *);

PKCS12 *d2i_PKCS12_bio(BIO *, PKCS12 **);
int PKCS12_parse(PKCS12 *, const char *, EVP_PKEY **, X509 **, openssl_ccb_X509_STACK **);
void PKCS12_free(PKCS12 *);
void openssl_ccb_free_x509_stack(openssl_ccb_X509_STACK *);
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
int ERR_GET_LIB(unsigned long);
int ERR_GET_REASON(unsigned long);
"""

CUSTOMIZATIONS = """
/* The C trampoline OpenSSL calls; it routes to openssl_ccb_dispatch. */
int openssl_ccb_client_cert_cb(SSL *, X509 **, EVP_PKEY **);

extern "Python" int openssl_ccb_dispatch(void *, SSL *, int);
/* The attempt openssl_ccb_dispatch is given when it must raise instead. */
static const int OPENSSL_CCB_REENTERED;
static const int OPENSSL_CCB_NO_MEMORY;
extern "Python" void openssl_ccb_release(void *);

/* For an SSL_CTX of another OpenSSL (pip's bundled one): a cert_cb that
 * never touches the SSL itself, only hands it to Python as an address. */
extern "Python" int openssl_ccb_foreign_dispatch(void *, uintptr_t);
uintptr_t openssl_ccb_foreign_cert_cb_address(void);
/* ...and a msg_callback that hands Python only a CertificateRequest the peer
 * sent (to read the server's signature algorithms, which that binding cannot). */
extern "Python" void openssl_ccb_foreign_certificate_request(
    void *, uintptr_t, int, const unsigned char *, size_t);
uintptr_t openssl_ccb_foreign_msg_cb_address(void);

int openssl_ccb_init(void);
void openssl_ccb_set_exiting(void);
void openssl_ccb_set_finalizing_probe(uintptr_t);
void *openssl_ccb_get_state(const SSL_CTX *);
void *openssl_ccb_attach_state(SSL_CTX *, void *);
int openssl_ccb_attempts(const SSL *);
X509 *openssl_ccb_get1_peer_certificate(const SSL *);
int openssl_ccb_hand_over(SSL *, X509 *, EVP_PKEY *, openssl_ccb_X509_STACK *);
int openssl_ccb_security_refusal(const SSL *, X509 *);
int openssl_ccb_forward(SSL *, openssl_ccb_client_cert_cb_t);
int openssl_ccb_password_cb(char *, int, int, void *);
int openssl_ccb_ec_curve(const EVP_PKEY *);
openssl_ccb_client_cert_cb_t openssl_ccb_trampoline(void);
void *openssl_ccb_address(const char *);
void *SSL_get_app_data(const SSL *);
void openssl_ccb_raise_callback_failed(void);
"""

SOURCE = r"""
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/opensslv.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/ec.h>
#include <openssl/objects.h>

#if OPENSSL_VERSION_NUMBER < 0x10101000L || defined(LIBRESSL_VERSION_NUMBER)
#error "openssl-ccb needs OpenSSL 1.1.1 or newer"
#endif

#if OPENSSL_VERSION_NUMBER < 0x30000000L
#define SSL_get1_peer_certificate SSL_get_peer_certificate
#endif

typedef STACK_OF(X509_NAME) openssl_ccb_X509_NAME_STACK;
typedef STACK_OF(X509) openssl_ccb_X509_STACK;
typedef int (*openssl_ccb_client_cert_cb_t)(SSL *, X509 **, EVP_PKEY **);

static int openssl_ccb_dispatch(void *, SSL *, int);
static void openssl_ccb_release(void *);
static int openssl_ccb_foreign_dispatch(void *, uintptr_t);

/* int (*cert_cb)(SSL *ssl, void *arg), for an OpenSSL that is not ours: the
 * SSL is opaque here, so no function of this module's libssl is called. */
static int openssl_ccb_foreign_cert_cb(void *ssl, void *arg)
{
    return openssl_ccb_foreign_dispatch(arg, (uintptr_t)ssl);
}

static uintptr_t openssl_ccb_foreign_cert_cb_address(void)
{
    return (uintptr_t)&openssl_ccb_foreign_cert_cb;
}

static void openssl_ccb_foreign_certificate_request(
    void *, uintptr_t, int, const unsigned char *, size_t);

/* void (*msg_callback)(int write_p, int version, int content_type,
 * const void *buf, size_t len, SSL *ssl, void *arg), for the same OpenSSL:
 * every other record and message returns here, without entering Python. */
static void openssl_ccb_foreign_msg_cb(int write_p, int version, int content_type,
                                       const void *buf, size_t len, void *ssl, void *arg)
{
    const unsigned char *message = buf;
    if (!write_p && content_type == 22 /* handshake */ && len >= 4
        && message[0] == 13 /* certificate_request */ && arg != NULL)
        openssl_ccb_foreign_certificate_request(arg, (uintptr_t)ssl, version, message, len);
}

static uintptr_t openssl_ccb_foreign_msg_cb_address(void)
{
    return (uintptr_t)&openssl_ccb_foreign_msg_cb;
}

/* ex_data slots: per context, the Python state's handle; per connection, the
 * number of times the callback suspended this handshake (an integer in the
 * pointer, so nothing to free). */
static int openssl_ccb_ctx_index = -1;
static int openssl_ccb_ssl_index = -1;

/* Contexts freed during the interpreter's own teardown must not call into
 * Python, which cffi can no longer reach then: their state goes with the
 * process. The interpreter's own "finalizing" flag says when that starts
 * (after every atexit handler, so contexts freed by one still release their
 * callables); where it cannot be read (PyPy), a flag set by the last atexit
 * handler to run stands in. */
static int openssl_ccb_exiting = 0;
static int (*openssl_ccb_is_finalizing)(void) = NULL;

static void openssl_ccb_set_exiting(void)
{
    openssl_ccb_exiting = 1;
}

static void openssl_ccb_set_finalizing_probe(uintptr_t probe)
{
    openssl_ccb_is_finalizing = (int (*)(void))probe;
}

static int openssl_ccb_tearing_down(void)
{
    if (openssl_ccb_is_finalizing != NULL)
        return openssl_ccb_is_finalizing();
    return openssl_ccb_exiting;
}

/* Runs inside SSL_CTX_free: the context is gone, so its Python state goes. */
static void openssl_ccb_ctx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad,
                                 int idx, long argl, void *argp)
{
    if (ptr != NULL && !openssl_ccb_tearing_down())
        openssl_ccb_release(ptr);
}

static void openssl_ccb_lock(void);
static void openssl_ccb_unlock(void);

static int openssl_ccb_init(void)
{
    static int forks_handled = 0;

    if (openssl_ccb_ctx_index < 0)
        openssl_ccb_ctx_index = SSL_CTX_get_ex_new_index(
            0, NULL, NULL, NULL, openssl_ccb_ctx_free);
    if (openssl_ccb_ssl_index < 0)
        openssl_ccb_ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    /* A fork() while another thread attaches a state must not leave the lock
     * held in the child: fork waits for it, and both sides release it. */
    if (!forks_handled && pthread_atfork(openssl_ccb_lock, openssl_ccb_unlock,
                                         openssl_ccb_unlock) == 0)
        forks_handled = 1;
    return openssl_ccb_ctx_index >= 0 && openssl_ccb_ssl_index >= 0 && forks_handled;
}

static void *openssl_ccb_get_state(const SSL_CTX *ctx)
{
    return SSL_CTX_get_ex_data(ctx, openssl_ccb_ctx_index);
}

static int openssl_ccb_attempts(const SSL *ssl)
{
    return (int)(intptr_t)SSL_get_ex_data(ssl, openssl_ccb_ssl_index);
}

/* The answers in progress on this thread, one per callback running: where
 * openssl_ccb_hand_over puts the certificate, and how a handshake that
 * re-enters its own callback is recognised. Heap nodes in a doubly linked
 * list, not a stack of frames: a callback may drive another connection's
 * handshake (nesting), and under gevent a callback may yield to another
 * greenlet on this thread whose callback then runs and ends first (no
 * nesting order), while the switched-out greenlet's C stack is copied away. */
#if defined(_WIN32)
#error "openssl-ccb supports POSIX systems only"
#endif

struct openssl_ccb_answer {
    SSL *ssl;
    X509 **x509;
    EVP_PKEY **pkey;
    struct openssl_ccb_answer *prev, *next;
};

static __thread struct openssl_ccb_answer *openssl_ccb_answers = NULL;

static struct openssl_ccb_answer *openssl_ccb_answer_for(const SSL *ssl)
{
    struct openssl_ccb_answer *answer;
    for (answer = openssl_ccb_answers; answer != NULL; answer = answer->next)
        if (answer->ssl == ssl)
            return answer;
    return NULL;
}

/* attempt, as openssl_ccb_dispatch receives it: 1, 2, ... for a call of the
 * callback; these instead tell Python to raise, without calling it. */
#define OPENSSL_CCB_REENTERED 0
#define OPENSSL_CCB_NO_MEMORY (-1)

static int openssl_ccb_client_cert_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
    void *state = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), openssl_ccb_ctx_index);
    struct openssl_ccb_answer *answer;
    int attempt, ret;

    *x509 = NULL;
    *pkey = NULL;
    /* The callback drove its own connection's handshake: OpenSSL cannot
     * re-enter a handshake from inside its callback (under TLS 1.3 it reads
     * freed state). The inner call fails, with an error raised there. */
    if (openssl_ccb_answer_for(ssl) != NULL)
        return openssl_ccb_dispatch(state, ssl, OPENSSL_CCB_REENTERED);
    answer = malloc(sizeof(*answer));
    if (answer == NULL)
        return openssl_ccb_dispatch(state, ssl, OPENSSL_CCB_NO_MEMORY);
    answer->ssl = ssl;
    answer->x509 = x509;
    answer->pkey = pkey;
    answer->prev = NULL;
    answer->next = openssl_ccb_answers;
    if (answer->next != NULL)
        answer->next->prev = answer;
    openssl_ccb_answers = answer;

    attempt = openssl_ccb_attempts(ssl) + 1;
    ret = openssl_ccb_dispatch(state, ssl, attempt);

    if (answer->prev != NULL)
        answer->prev->next = answer->next;
    else
        openssl_ccb_answers = answer->next;
    if (answer->next != NULL)
        answer->next->prev = answer->prev;
    free(answer);

    /* Count suspensions so a retry knows it is one; reset once answered.
     * A first attempt that is answered stores nothing: setting a slot on a
     * new SSL allocates, inside every handshake. */
    if (ret < 0 || attempt > 1)
        SSL_set_ex_data(ssl, openssl_ccb_ssl_index,
                        (void *)(intptr_t)(ret < 0 ? attempt : 0));
    if (ret < 0) {
        /* OpenSSL frees nothing on this path: leave nothing to leak. */
        X509_free(*x509);
        EVP_PKEY_free(*pkey);
        *x509 = NULL;
        *pkey = NULL;
    }
    return ret;
}

/* The answer "send this", under the GIL while the Python objects are alive:
 * the certificate, key and chain set on this connection first (the chain
 * because client_cert_cb cannot carry one; all three because only then does
 * OpenSSL report a certificate its security level refuses, which it would
 * otherwise drop silently and go on without one), then new references for
 * OpenSSL, which frees the two it is given. 1 on success; 0 outside this
 * SSL's callback or if already answered; -1 with the error queue set if
 * OpenSSL refused the certificate, the key or the chain. */
/* The one question SSL_use_certificate asks that the Credential has not
 * already answered (its key matches, the key is of a kind OpenSSL installs):
 * does the SSL's security level accept this end-entity certificate? Asked as
 * ssl_security_cert() in ssl/t1_lib.c asks it, through the SSL's own security
 * callback, without installing anything. 0 if accepted, else OpenSSL's
 * reason code. test_answers.py checks every verdict against
 * SSL_use_certificate's own. */
static int openssl_ccb_security_refusal(const SSL *ssl, X509 *x509)
{
    int (*check)(const SSL *, const SSL_CTX *, int, int, int, void *, void *)
        = SSL_get_security_callback(ssl);
    void *ex = SSL_get0_security_ex_data(ssl);
    EVP_PKEY *public_key = X509_get0_pubkey(x509);
    int bits = -1, nid = NID_undef, pknid = NID_undef;

    if (check == NULL)
        return 0;
    if (public_key != NULL)
        bits = EVP_PKEY_security_bits(public_key);
    if (!check(ssl, NULL, SSL_SECOP_EE_KEY, bits, 0, x509, ex))
        return SSL_R_EE_KEY_TOO_SMALL;
    if ((X509_get_extension_flags(x509) & EXFLAG_SS) != 0)
        return 0;  /* a self-signed certificate's signature is not checked */
    if (!X509_get_signature_info(x509, &nid, &pknid, &bits, NULL))
        bits = -1;
    if (nid == NID_undef)
        nid = pknid;
    if (!check(ssl, NULL, SSL_SECOP_CA_MD, bits, nid, x509, ex))
        return SSL_R_CA_MD_TOO_WEAK;
    return 0;
}

/* Key kinds for which SSL_use_certificate/SSL_use_PrivateKey can refuse
 * nothing but the security level, once the key is known to match. */
static int openssl_ccb_installs_alike(const EVP_PKEY *pkey)
{
    switch (EVP_PKEY_base_id(pkey)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
    case EVP_PKEY_EC:
    case EVP_PKEY_ED25519:
    case EVP_PKEY_ED448:
        return 1;
    default:
        return 0;
    }
}

static void openssl_ccb_raise(int reason)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    ERR_raise(ERR_LIB_SSL, reason);
#else
    SSLerr(SSL_F_SSL_USE_CERTIFICATE, reason);
#endif
}

static int openssl_ccb_hand_over(SSL *ssl, X509 *x509, EVP_PKEY *pkey,
                                 openssl_ccb_X509_STACK *chain)
{
    struct openssl_ccb_answer *answer = openssl_ccb_answer_for(ssl);

    if (answer == NULL || *answer->x509 != NULL)
        return 0;
    if (chain != NULL || !openssl_ccb_installs_alike(pkey)) {
        /* Installed here, so that every refusal surfaces (a chain must follow
         * its certificate); OpenSSL installs the pair once more after us. */
        if (SSL_use_certificate(ssl, x509) != 1 || SSL_use_PrivateKey(ssl, pkey) != 1
            || (chain != NULL && SSL_set1_chain(ssl, chain) != 1))
            return -1;
    } else {
        /* OpenSSL installs the pair after we return, but ignores a refusal
         * (it goes on with no certificate): ask its question first. */
        int reason = openssl_ccb_security_refusal(ssl, x509);
        if (reason != 0) {
            openssl_ccb_raise(reason);
            return -1;
        }
    }
    if (!X509_up_ref(x509))
        return -1;
    if (!EVP_PKEY_up_ref(pkey)) {
        X509_free(x509);
        return -1;
    }
    *answer->x509 = x509;
    *answer->pkey = pkey;
    return 1;
}

/* Answer with a C callback, for a handshake that entered the trampoline just
 * as a C function pointer replaced the Python callback on its context. */
static int openssl_ccb_forward(SSL *ssl, openssl_ccb_client_cert_cb_t callback)
{
    struct openssl_ccb_answer *answer = openssl_ccb_answer_for(ssl);

    if (answer == NULL || callback == NULL)
        return 0;
    return callback(ssl, answer->x509, answer->pkey);
}

/* Attach a context's state unless one is there, atomically: two threads
 * setting a callback on one new context must not both attach (the GIL is
 * released around every call into this module). Returns the state attached,
 * ours or the one that was there first; NULL if none could be. */
static pthread_mutex_t openssl_ccb_state_lock = PTHREAD_MUTEX_INITIALIZER;

static void openssl_ccb_lock(void) { pthread_mutex_lock(&openssl_ccb_state_lock); }
static void openssl_ccb_unlock(void) { pthread_mutex_unlock(&openssl_ccb_state_lock); }

static void *openssl_ccb_attach_state(SSL_CTX *ctx, void *state)
{
    void *current;

    openssl_ccb_lock();
    current = SSL_CTX_get_ex_data(ctx, openssl_ccb_ctx_index);
    if (current == NULL && SSL_CTX_set_ex_data(ctx, openssl_ccb_ctx_index, state) == 1)
        current = state;
    openssl_ccb_unlock();
    return current;
}

static X509 *openssl_ccb_get1_peer_certificate(const SSL *ssl)
{
    return SSL_get1_peer_certificate(ssl);
}

/* The trampoline's own address (ffi.addressof would give a cffi wrapper). */
static openssl_ccb_client_cert_cb_t openssl_ccb_trampoline(void)
{
    return openssl_ccb_client_cert_cb;
}

/* Queue SSL_R_CALLBACK_FAILED: SSL_get_error then says SSL_ERROR_SSL, so a
 * caller that cannot be handed the callback's exception sees the handshake
 * fail, and why (ERR_raise is a macro in 3.0). */
static void openssl_ccb_raise_callback_failed(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    ERR_raise(ERR_LIB_SSL, SSL_R_CALLBACK_FAILED);
#else
    ERR_put_error(ERR_LIB_SSL, 0, SSL_R_CALLBACK_FAILED, __FILE__, __LINE__);
#endif
}

/* Where this module's libssl/libcrypto functions really are: compared with
 * another module's link map to prove that both run on one library. */
static void *openssl_ccb_address(const char *name)
{
    if (strcmp(name, "SSL_CTX_new") == 0)
        return (void *)&SSL_CTX_new;
    if (strcmp(name, "SSL_CTX_get_options") == 0)
        return (void *)&SSL_CTX_get_options;
    if (strcmp(name, "SSL_get_error") == 0)
        return (void *)&SSL_get_error;
    if (strcmp(name, "X509_free") == 0)
        return (void *)&X509_free;
    if (strcmp(name, "EVP_PKEY_free") == 0)
        return (void *)&EVP_PKEY_free;
    return NULL;
}

/* The curve of an EC key as a NID, or NID_undef. */
static int openssl_ccb_ec_curve(const EVP_PKEY *pkey)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    char name[80];
    size_t len = 0;
    if (EVP_PKEY_get_group_name(pkey, name, sizeof(name), &len) != 1)
        return NID_undef;
    return OBJ_txt2nid(name);
#else
    const EC_KEY *ec = EVP_PKEY_get0_EC_KEY((EVP_PKEY *)pkey);
    return ec == NULL ? NID_undef : EC_GROUP_get_curve_name(EC_KEY_get0_group(ec));
#endif
}

static void openssl_ccb_free_x509_stack(openssl_ccb_X509_STACK *stack)
{
    sk_X509_pop_free(stack, X509_free);
}

/* A PEM pass phrase from userdata (a NUL-terminated string), never from the
 * terminal: OpenSSL's default callback would prompt when userdata is NULL. */
static int openssl_ccb_password_cb(char *buf, int size, int rwflag, void *userdata)
{
    size_t len;
    if (userdata == NULL)
        return -1;
    len = strlen((const char *)userdata);
    if (len > (size_t)size)
        return -1;
    memcpy(buf, userdata, len);
    return (int)len;
}

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
ffi.cdef(TYPES + FUNCTIONS + CUSTOMIZATIONS)
ffi.set_source(
    MODULE,
    SOURCE,
    libraries=["ssl", "crypto"],
    include_dirs=INCLUDE_DIRS,
    library_dirs=LIBRARY_DIRS,
    runtime_library_dirs=LIBRARY_DIRS,
)

if os.environ.get("OPENSSL_CCB_SKIP_PREFLIGHT") != "1" and "sdist" not in sys.argv:
    preflight()

if __name__ == "__main__":
    ffi.compile(verbose=True)
