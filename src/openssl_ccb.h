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
/* OpenSSL refused the certificate handed over: raise its reason. */
#define OPENSSL_CCB_REFUSED (-2)

/* What openssl_ccb_dispatch returns, besides client_cert_cb's own codes, to
 * have C hand `call->answer` over once Python is done. */
#define OPENSSL_CCB_SEND_PREPAID 2
/* What openssl_ccb_choose returns when Python must choose. */
#define OPENSSL_CCB_ASK_PYTHON (-2)

/* References to a Credential's certificate, key and chain, counted apart
 * from the Credential's own, so that C can hand them over after Python has
 * returned (and the Credential may be gone): Python holds one reference for
 * the Credential plus one per answer paid in advance (openssl_ccb.c). */
typedef struct openssl_ccb_prepaid openssl_ccb_prepaid;

/* A Wallet's credentials as C judges them, and its slot (openssl_ccb_choice.c). */
typedef struct openssl_ccb_choice openssl_ccb_choice;
typedef struct openssl_ccb_slot openssl_ccb_slot;

/* One call of the Python callback: what the request's attributes read (taken
 * from the SSL in C before Python runs, so that reading them costs Python no
 * call into C), and where Python leaves its answer. */
#define OPENSSL_CCB_MAX_SIGALGS 64
typedef struct {
    openssl_ccb_prepaid *answer;
    int version; /* SSL_version */
    const char *version_name; /* SSL_get_version */
    const char *server_name; /* NULL: none sent */
    const unsigned char *certificate_types;
    size_t certificate_types_len;
    /* -1 if more than OPENSSL_CCB_MAX_SIGALGS: the request asks OpenSSL */
    int sigalgs_len, shared_sigalgs_len;
    uint16_t sigalgs[OPENSSL_CCB_MAX_SIGALGS], shared_sigalgs[OPENSSL_CCB_MAX_SIGALGS];
    int ca_names_len;
    X509_NAME **ca_names; /* the SSL's own; NULL if none or out of memory */
    const unsigned char **ca_ders;
    size_t *ca_der_lens;
} openssl_ccb_call;

/* --- Defined in Python (@ffi.def_extern), called from openssl_ccb.c ------ */

/* The context's callback, for this SSL, answering as client_cert_cb does:
 * 1 (a certificate handed over), 0 (none), -1 (suspend; or failed, the
 * exception kept for the code that drove the handshake). */
OPENSSL_CCB_INTERNAL int openssl_ccb_dispatch(void *state, SSL *ssl, int attempt,
                                              openssl_ccb_call *call);
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
OPENSSL_CCB_INTERNAL openssl_ccb_prepaid *openssl_ccb_prepaid_new(
    X509 *x509, EVP_PKEY *pkey, openssl_ccb_X509_STACK *chain, long refs);
OPENSSL_CCB_INTERNAL void openssl_ccb_prepaid_add(openssl_ccb_prepaid *prepaid, long refs);
OPENSSL_CCB_INTERNAL void openssl_ccb_prepaid_release(openssl_ccb_prepaid *prepaid, long refs);
/* Set x509/pkey/chain on the SSL as client_cert_cb's answer (*out_x509,
 * *out_pkey: new references); 1, or 0/-1 with the error queue set if OpenSSL
 * refuses them (called by openssl_ccb_choice.c too). */
OPENSSL_CCB_INTERNAL int openssl_ccb_install(SSL *ssl, X509 *x509, EVP_PKEY *pkey,
                                             openssl_ccb_X509_STACK *chain, X509 **out_x509,
                                             EVP_PKEY **out_pkey);
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

/* Wallets chosen in C (openssl_ccb_choice.c) */
OPENSSL_CCB_INTERNAL int openssl_ccb_choice_init(void);
OPENSSL_CCB_INTERNAL openssl_ccb_choice *openssl_ccb_choice_new(size_t count);
OPENSSL_CCB_INTERNAL int openssl_ccb_choice_set(openssl_ccb_choice *choice, size_t i, X509 *x509,
                                                EVP_PKEY *pkey, openssl_ccb_X509_STACK *chain,
                                                int64_t not_before, int64_t not_after,
                                                int client_auth);
OPENSSL_CCB_INTERNAL openssl_ccb_slot *openssl_ccb_slot_new(void);
OPENSSL_CCB_INTERNAL void openssl_ccb_slot_free(openssl_ccb_slot *slot);
OPENSSL_CCB_INTERNAL void openssl_ccb_slot_put(openssl_ccb_slot *slot, openssl_ccb_choice *choice);
OPENSSL_CCB_INTERNAL int openssl_ccb_set_slot(SSL_CTX *ctx, openssl_ccb_slot *slot);
OPENSSL_CCB_INTERNAL void openssl_ccb_set_clock_ours(int ours);
OPENSSL_CCB_INTERNAL int openssl_ccb_key_signs(const EVP_PKEY *pkey, int tls13, int code);
OPENSSL_CCB_INTERNAL int openssl_ccb_choose(SSL *ssl, X509 **x509, EVP_PKEY **pkey);

/* Signers (openssl_ccb_signer.c): 1 if this OpenSSL has providers (3.0+); a
 * key for `x509`'s public key whose signing calls the Python signer `handle`
 * (released with openssl_ccb_signer_release when the key is freed), or NULL
 * with the error queue set. */
OPENSSL_CCB_INTERNAL int openssl_ccb_signers_available(void);
OPENSSL_CCB_INTERNAL EVP_PKEY *openssl_ccb_signer_key(X509 *x509, void *handle);

#endif
