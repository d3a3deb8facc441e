/* openssl-ccb's own C: what src/openssl_ccb.c defines and the CFFI module
 * (generated from build_ffi.py) calls, and what the CFFI module defines (the
 * extern "Python+C" functions, bodies in Python) and openssl_ccb.c calls.
 * Every prototype here is also declared in build_ffi.py's cdef, which the
 * compiler checks against this file: the module includes it first.
 *
 * Hidden visibility: the names are shared between the two translation units
 * of one shared object, and exported by neither. */

#ifndef OPENSSL_CCB_H
#define OPENSSL_CCB_H

#if defined(_WIN32)
#error "openssl-ccb supports POSIX systems only"
#endif

#include <stddef.h>
#include <stdint.h>
#include <openssl/opensslv.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#if OPENSSL_VERSION_NUMBER < 0x10101000L || defined(LIBRESSL_VERSION_NUMBER)
#error "openssl-ccb needs OpenSSL 1.1.1 or newer"
#endif

#define OPENSSL_CCB_INTERNAL __attribute__((visibility("hidden")))

typedef STACK_OF(X509_NAME) openssl_ccb_X509_NAME_STACK;
typedef STACK_OF(X509) openssl_ccb_X509_STACK;
/* int (*client_cert_cb)(SSL *ssl, X509 **x509, EVP_PKEY **pkey) */
typedef int (*openssl_ccb_client_cert_cb_t)(SSL *, X509 **, EVP_PKEY **);

/* attempt, as openssl_ccb_dispatch receives it: 1, 2, ... for a call of the
 * callback; these instead tell Python to raise, without calling it. */
#define OPENSSL_CCB_REENTERED 0
#define OPENSSL_CCB_NO_MEMORY (-1)

/* --- Defined in Python (@ffi.def_extern), called from openssl_ccb.c ------ */

/* The context's callback, for this SSL, answering as client_cert_cb does:
 * 1 (a certificate handed over), 0 (none), -1 (suspend; or failed, the
 * exception kept for the code that drove the handshake). */
OPENSSL_CCB_INTERNAL int openssl_ccb_dispatch(void *state, SSL *ssl, int attempt);
/* A context is freed: its state (a handle from ffi.new_handle) goes. */
OPENSSL_CCB_INTERNAL void openssl_ccb_release(void *state);
/* cert_cb, for an SSL of another OpenSSL, given only as an address. */
OPENSSL_CCB_INTERNAL int openssl_ccb_foreign_dispatch(void *state, uintptr_t ssl);
/* A CertificateRequest the peer sent on an SSL of another OpenSSL. */
OPENSSL_CCB_INTERNAL void openssl_ccb_foreign_certificate_request(
    void *state, uintptr_t ssl, int version, const unsigned char *message, size_t len);

/* The signer (openssl_ccb_signer.c) signs `tbs` with the TLS SignatureScheme
 * `scheme` (its IANA code point) into `sig`, at most *siglen bytes; 1 with
 * *siglen set, or 0 (the exception kept for the code that drove the handshake). */
OPENSSL_CCB_INTERNAL int openssl_ccb_sign(void *signer, int scheme, const unsigned char *tbs,
                                          size_t tbslen, unsigned char *sig, size_t *siglen);
/* A signer's key is freed: its Python signer (a handle) goes. */
OPENSSL_CCB_INTERNAL void openssl_ccb_signer_release(void *signer);

/* --- Defined in openssl_ccb.c, called from Python -------------------------- */

/* Set-up, once per process (ex_data indexes, the fork handler); 1 if done. */
OPENSSL_CCB_INTERNAL int openssl_ccb_init(void);
OPENSSL_CCB_INTERNAL void openssl_ccb_set_exiting(void);
OPENSSL_CCB_INTERNAL void openssl_ccb_set_finalizing_probe(uintptr_t probe);

/* 1 while the interpreter is going away: no Python may run (openssl_ccb.c) */
OPENSSL_CCB_INTERNAL int openssl_ccb_tearing_down(void);

/* A context's state */
OPENSSL_CCB_INTERNAL void *openssl_ccb_get_state(const SSL_CTX *ctx);
OPENSSL_CCB_INTERNAL void *openssl_ccb_attach_state(SSL_CTX *ctx, void *state);

/* The trampoline and its answers */
OPENSSL_CCB_INTERNAL openssl_ccb_client_cert_cb_t openssl_ccb_trampoline(void);
OPENSSL_CCB_INTERNAL int openssl_ccb_hand_over(SSL *ssl, X509 *x509, EVP_PKEY *pkey,
                                               openssl_ccb_X509_STACK *chain);
OPENSSL_CCB_INTERNAL int openssl_ccb_security_refusal(const SSL *ssl, X509 *x509);
OPENSSL_CCB_INTERNAL int openssl_ccb_forward(SSL *ssl, openssl_ccb_client_cert_cb_t callback);
OPENSSL_CCB_INTERNAL void openssl_ccb_raise_callback_failed(void);

/* Another OpenSSL's callbacks (pip's bundled one) */
OPENSSL_CCB_INTERNAL uintptr_t openssl_ccb_foreign_cert_cb_address(void);
OPENSSL_CCB_INTERNAL uintptr_t openssl_ccb_foreign_msg_cb_address(void);

/* The libssl proof: the i-th probe's name (NULL past the last) and address */
OPENSSL_CCB_INTERNAL const char *openssl_ccb_probe_name(size_t i);
OPENSSL_CCB_INTERNAL uintptr_t openssl_ccb_probe_address(size_t i);

/* Certificates and keys */
OPENSSL_CCB_INTERNAL X509 *openssl_ccb_get1_peer_certificate(const SSL *ssl);
OPENSSL_CCB_INTERNAL int openssl_ccb_ec_curve(const EVP_PKEY *pkey);
OPENSSL_CCB_INTERNAL void openssl_ccb_free_x509_stack(openssl_ccb_X509_STACK *stack);
OPENSSL_CCB_INTERNAL int openssl_ccb_password_cb(char *buf, int size, int rwflag, void *userdata);

/* Signers (openssl_ccb_signer.c): 1 if this OpenSSL has providers (3.0+); a
 * key for `x509`'s public key whose signing calls the Python signer `handle`
 * (released with openssl_ccb_signer_release when the key is freed), or NULL
 * with the error queue set. */
OPENSSL_CCB_INTERNAL int openssl_ccb_signers_available(void);
OPENSSL_CCB_INTERNAL EVP_PKEY *openssl_ccb_signer_key(X509 *x509, void *handle);

#endif
