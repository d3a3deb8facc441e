/* openssl-ccb's C: the client_cert_cb trampoline and what it needs (ex_data
 * slots, the answers in progress, handing a certificate over), the callbacks
 * for another OpenSSL's contexts, the libssl proof's probes, and small
 * helpers for what OpenSSL offers only as macros. Python calls these through
 * the CFFI module that build_ffi.py declares; openssl_ccb.h says which.
 *
 * Built with the module (setup.py's cffi_modules), and on its own with
 * -Wall -Wextra -Wconversion -Werror by tests/test_binding_surface.py. */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>
#if OPENSSL_VERSION_NUMBER < 0x30000000L
#include <openssl/ec.h>
#endif

#include "openssl_ccb.h"

#if OPENSSL_VERSION_NUMBER < 0x30000000L
#define SSL_get1_peer_certificate SSL_get_peer_certificate
#endif

/* === ex_data slots and teardown ========================================== */

/* Per context, the Python state's handle; per connection, the number of
 * times the callback suspended this handshake (an integer in the pointer, so
 * nothing to free). */
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

void openssl_ccb_set_exiting(void)
{
    openssl_ccb_exiting = 1;
}

void openssl_ccb_set_finalizing_probe(uintptr_t probe)
{
    openssl_ccb_is_finalizing = (int (*)(void))probe;
}

int openssl_ccb_tearing_down(void)
{
    if (openssl_ccb_is_finalizing != NULL)
        return openssl_ccb_is_finalizing();
    return openssl_ccb_exiting;
}

/* Runs inside SSL_CTX_free: the context is gone, so its Python state goes. */
static void openssl_ccb_ctx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad,
                                 int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    if (ptr != NULL && !openssl_ccb_tearing_down())
        openssl_ccb_release(ptr);
}

/* Attach a context's state unless one is there, atomically: two threads
 * setting a callback on one new context must not both attach (the GIL is
 * released around every call into this module). */
static pthread_mutex_t openssl_ccb_state_lock = PTHREAD_MUTEX_INITIALIZER;

static void openssl_ccb_lock(void) { pthread_mutex_lock(&openssl_ccb_state_lock); }
static void openssl_ccb_unlock(void) { pthread_mutex_unlock(&openssl_ccb_state_lock); }

int openssl_ccb_init(void)
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
    return openssl_ccb_ctx_index >= 0 && openssl_ccb_ssl_index >= 0 && forks_handled
           && openssl_ccb_choice_init();
}

void *openssl_ccb_get_state(const SSL_CTX *ctx)
{
    return SSL_CTX_get_ex_data(ctx, openssl_ccb_ctx_index);
}

/* Returns the state attached, ours or the one that was there first; NULL if
 * none could be. */
void *openssl_ccb_attach_state(SSL_CTX *ctx, void *state)
{
    void *current;

    openssl_ccb_lock();
    current = SSL_CTX_get_ex_data(ctx, openssl_ccb_ctx_index);
    if (current == NULL && SSL_CTX_set_ex_data(ctx, openssl_ccb_ctx_index, state) == 1)
        current = state;
    openssl_ccb_unlock();
    return current;
}

static int openssl_ccb_attempts(const SSL *ssl)
{
    return (int)(intptr_t)SSL_get_ex_data(ssl, openssl_ccb_ssl_index);
}

/* An answer paid in advance (see "Answers paid in advance" below). */
struct openssl_ccb_prepaid {
    X509 *x509;
    EVP_PKEY *pkey;
    STACK_OF(X509) *chain;
    long refs;
};

/* === The trampoline ====================================================== */

/* The answers in progress on this thread, one per callback running: where
 * openssl_ccb_hand_over puts the certificate, and how a handshake that
 * re-enters its own callback is recognised. Heap nodes in a doubly linked
 * list, not a stack of frames: a callback may drive another connection's
 * handshake (nesting), and under gevent a callback may yield to another
 * greenlet on this thread whose callback then runs and ends first (no
 * nesting order), while the switched-out greenlet's C stack is copied away. */
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

/* What the request's attributes read, taken while the GIL is not held. The
 * CA names' arrays are the one allocation: freed by openssl_ccb_call_done. */
static void openssl_ccb_call_read(SSL *ssl, openssl_ccb_call *call)
{
    STACK_OF(X509_NAME) *names = SSL_get_client_CA_list(ssl);
    int (*const getters[2])(SSL *, int, int *, int *, int *, unsigned char *, unsigned char *)
        = {SSL_get_sigalgs, SSL_get_shared_sigalgs};
    int *lens[2] = {&call->sigalgs_len, &call->shared_sigalgs_len};
    uint16_t *codes[2] = {call->sigalgs, call->shared_sigalgs};
    const unsigned char *types = NULL;
    long ntypes;

    memset(call, 0, sizeof(*call));
    call->version = SSL_version(ssl);
    call->version_name = SSL_get_version(ssl);
    call->server_name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    ntypes = SSL_get0_certificate_types(ssl, &types);
    if (ntypes > 0 && types != NULL) {
        call->certificate_types = types;
        call->certificate_types_len = (size_t)ntypes;
    }
    for (int g = 0; g < 2; g++) {
        int count = getters[g](ssl, -1, NULL, NULL, NULL, NULL, NULL);
        if (count > OPENSSL_CCB_MAX_SIGALGS) {
            *lens[g] = -1;
            continue;
        }
        for (int i = 0; i < count; i++) {
            unsigned char rsig = 0, rhash = 0;
            getters[g](ssl, i, NULL, NULL, NULL, &rsig, &rhash);
            codes[g][i] = (uint16_t)((rhash << 8) | rsig);
        }
        *lens[g] = count > 0 ? count : 0;
    }
    call->ca_names_len = names == NULL ? 0 : sk_X509_NAME_num(names);
    if (call->ca_names_len <= 0) {
        call->ca_names_len = 0;
        return;
    }
    call->ca_names = malloc((size_t)call->ca_names_len
                            * (sizeof(X509_NAME *) + sizeof(unsigned char *) + sizeof(size_t)));
    if (call->ca_names == NULL) {
        call->ca_names_len = -1; /* the request asks OpenSSL */
        return;
    }
    call->ca_ders = (const unsigned char **)(call->ca_names + call->ca_names_len);
    call->ca_der_lens = (size_t *)(call->ca_ders + call->ca_names_len);
    for (int i = 0; i < call->ca_names_len; i++) {
        call->ca_names[i] = sk_X509_NAME_value(names, i);
        if (!X509_NAME_get0_der(call->ca_names[i], &call->ca_ders[i], &call->ca_der_lens[i])) {
            free(call->ca_names);
            call->ca_names = NULL;
            call->ca_names_len = -1;
            return;
        }
    }
}

/* The one client_cert_cb OpenSSL calls, for every context openssl-ccb manages. */
static int openssl_ccb_client_cert_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
    void *state = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), openssl_ccb_ctx_index);
    struct openssl_ccb_answer *answer;
    openssl_ccb_call call;
    int attempt, ret;

    *x509 = NULL;
    *pkey = NULL;
    /* The callback drove its own connection's handshake: OpenSSL cannot
     * re-enter a handshake from inside its callback (under TLS 1.3 it reads
     * freed state). The inner call fails, with an error raised there. */
    if (openssl_ccb_answer_for(ssl) != NULL)
        return openssl_ccb_dispatch(state, ssl, OPENSSL_CCB_REENTERED, NULL);
    /* A Wallet is judged in C, and Python never entered, where C can. */
    ret = openssl_ccb_choose(ssl, x509, pkey);
    if (ret != OPENSSL_CCB_ASK_PYTHON) {
        if (openssl_ccb_attempts(ssl) != 0)
            SSL_set_ex_data(ssl, openssl_ccb_ssl_index, NULL);
        return ret;
    }
    answer = malloc(sizeof(*answer));
    if (answer == NULL)
        return openssl_ccb_dispatch(state, ssl, OPENSSL_CCB_NO_MEMORY, NULL);
    answer->ssl = ssl;
    answer->x509 = x509;
    answer->pkey = pkey;
    answer->prev = NULL;
    answer->next = openssl_ccb_answers;
    if (answer->next != NULL)
        answer->next->prev = answer;
    openssl_ccb_answers = answer;

    attempt = openssl_ccb_attempts(ssl) + 1;
    openssl_ccb_call_read(ssl, &call);
    ret = openssl_ccb_dispatch(state, ssl, attempt, &call);
    free(call.ca_names);
    if (ret == OPENSSL_CCB_SEND_PREPAID) {
        /* Python has returned (and the Credential may be gone): the answer's
         * references are the prepaid ones. A refusal is Python's to raise. */
        openssl_ccb_prepaid *prepaid = call.answer;
        ret = prepaid == NULL ? 0
                              : openssl_ccb_install(ssl, prepaid->x509, prepaid->pkey,
                                                    prepaid->chain, x509, pkey);
        openssl_ccb_prepaid_release(prepaid, 1);
        if (ret != 1)
            ret = openssl_ccb_dispatch(state, ssl, OPENSSL_CCB_REFUSED, NULL);
    }

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

/* The trampoline's own address (ffi.addressof would give a cffi wrapper). */
openssl_ccb_client_cert_cb_t openssl_ccb_trampoline(void)
{
    return openssl_ccb_client_cert_cb;
}

/* === Handing a certificate over ========================================== */

/* The one question SSL_use_certificate asks that the Credential has not
 * already answered (its key matches, the key is of a kind OpenSSL installs):
 * does the SSL's security level accept this end-entity certificate? Asked as
 * ssl_security_cert() in ssl/t1_lib.c asks it, through the SSL's own security
 * callback, without installing anything. 0 if accepted, else OpenSSL's
 * reason code. test_answers.py checks every verdict against
 * SSL_use_certificate's own. */
int openssl_ccb_security_refusal(const SSL *ssl, X509 *x509)
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

/* The answer "send this": the certificate, key and chain set on this
 * connection first (the chain because client_cert_cb cannot carry one; all
 * three because only then does OpenSSL report a certificate its security
 * level refuses, which it would otherwise drop silently and go on without
 * one), then new references for OpenSSL, which frees the two it is given.
 * 1 on success; 0 if already answered; -1 with the error queue set if
 * OpenSSL refused the certificate, the key or the chain. */
int openssl_ccb_install(SSL *ssl, X509 *x509, EVP_PKEY *pkey, openssl_ccb_X509_STACK *chain,
                        X509 **out_x509, EVP_PKEY **out_pkey)
{
    if (*out_x509 != NULL)
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
    *out_x509 = x509;
    *out_pkey = pkey;
    return 1;
}

/* --- Answers paid in advance ------------------------------------------------
 * A Python callback's Credential is handed over by C after Python returns,
 * so that the callback's success path costs Python no call into C (each
 * would release the GIL and wait to take it back). The Credential may be
 * freed by then, so C uses references of its own: `refs` counts the
 * Credential's one (released when it dies) plus one per answer Python has
 * paid for in advance (core/trampoline.py takes one per answer, and adds a
 * batch when it has none left); C releases one per answer it hands over. */
openssl_ccb_prepaid *openssl_ccb_prepaid_new(X509 *x509, EVP_PKEY *pkey,
                                             openssl_ccb_X509_STACK *chain, long refs)
{
    openssl_ccb_prepaid *prepaid = calloc(1, sizeof(*prepaid));

    if (prepaid == NULL)
        return NULL;
    if (chain != NULL && (prepaid->chain = X509_chain_up_ref(chain)) == NULL) {
        free(prepaid);
        return NULL;
    }
    if (!X509_up_ref(x509)) {
        sk_X509_pop_free(prepaid->chain, X509_free);
        free(prepaid);
        return NULL;
    }
    if (!EVP_PKEY_up_ref(pkey)) {
        X509_free(x509);
        sk_X509_pop_free(prepaid->chain, X509_free);
        free(prepaid);
        return NULL;
    }
    prepaid->x509 = x509;
    prepaid->pkey = pkey;
    prepaid->refs = refs;
    return prepaid;
}

void openssl_ccb_prepaid_add(openssl_ccb_prepaid *prepaid, long refs)
{
    __atomic_add_fetch(&prepaid->refs, refs, __ATOMIC_RELAXED);
}

void openssl_ccb_prepaid_release(openssl_ccb_prepaid *prepaid, long refs)
{
    if (prepaid == NULL || __atomic_sub_fetch(&prepaid->refs, refs, __ATOMIC_ACQ_REL) > 0)
        return;
    X509_free(prepaid->x509);
    EVP_PKEY_free(prepaid->pkey);
    sk_X509_pop_free(prepaid->chain, X509_free);
    free(prepaid);
}

/* Answer with a C callback, for a handshake that entered the trampoline just
 * as a C function pointer replaced the Python callback on its context. */
int openssl_ccb_forward(SSL *ssl, openssl_ccb_client_cert_cb_t callback)
{
    struct openssl_ccb_answer *answer = openssl_ccb_answer_for(ssl);

    if (answer == NULL || callback == NULL)
        return 0;
    return callback(ssl, answer->x509, answer->pkey);
}

/* Queue SSL_R_CALLBACK_FAILED: SSL_get_error then says SSL_ERROR_SSL, so a
 * caller that cannot be handed the callback's exception sees the handshake
 * fail, and why (ERR_raise is a macro in 3.0). */
void openssl_ccb_raise_callback_failed(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    ERR_raise(ERR_LIB_SSL, SSL_R_CALLBACK_FAILED);
#else
    ERR_put_error(ERR_LIB_SSL, 0, SSL_R_CALLBACK_FAILED, __FILE__, __LINE__);
#endif
}

/* === Another OpenSSL's contexts (pip's bundled one) ====================== */

/* int (*cert_cb)(SSL *ssl, void *arg), for an OpenSSL that is not ours: the
 * SSL is opaque here, so no function of this module's libssl is called. */
static int openssl_ccb_foreign_cert_cb(void *ssl, void *arg)
{
    return openssl_ccb_foreign_dispatch(arg, (uintptr_t)ssl);
}

uintptr_t openssl_ccb_foreign_cert_cb_address(void)
{
    return (uintptr_t)&openssl_ccb_foreign_cert_cb;
}

/* void (*msg_callback)(int write_p, int version, int content_type,
 * const void *buf, size_t len, SSL *ssl, void *arg), for the same OpenSSL:
 * every other record and message returns here, without entering Python (to
 * read the server's signature algorithms, which that binding cannot). */
static void openssl_ccb_foreign_msg_cb(int write_p, int version, int content_type,
                                       const void *buf, size_t len, void *ssl, void *arg)
{
    const unsigned char *message = buf;
    if (!write_p && content_type == 22 /* handshake */ && len >= 4
        && message[0] == 13 /* certificate_request */ && arg != NULL)
        openssl_ccb_foreign_certificate_request(arg, (uintptr_t)ssl, version, message, len);
}

uintptr_t openssl_ccb_foreign_msg_cb_address(void)
{
    return (uintptr_t)&openssl_ccb_foreign_msg_cb;
}

/* === The libssl proof ==================================================== */

/* Where this module's calls into libssl and libcrypto land, compared with
 * another module's link map to prove that both run on one library
 * (openssl_ccb/libssl_proof.py reads its list of names from here). Taken in
 * this shared object, whose two translation units resolve each function
 * through the same dynamic-linker entry. */
static const struct {
    const char *name;
    uintptr_t address;
} openssl_ccb_probes[] = {
    {"SSL_CTX_new", (uintptr_t)&SSL_CTX_new},
    {"SSL_CTX_get_options", (uintptr_t)&SSL_CTX_get_options},
    {"SSL_get_error", (uintptr_t)&SSL_get_error},
    {"X509_free", (uintptr_t)&X509_free},
    {"EVP_PKEY_free", (uintptr_t)&EVP_PKEY_free},
};

#define OPENSSL_CCB_PROBES (sizeof(openssl_ccb_probes) / sizeof(openssl_ccb_probes[0]))

const char *openssl_ccb_probe_name(size_t i)
{
    return i < OPENSSL_CCB_PROBES ? openssl_ccb_probes[i].name : NULL;
}

uintptr_t openssl_ccb_probe_address(size_t i)
{
    return i < OPENSSL_CCB_PROBES ? openssl_ccb_probes[i].address : 0;
}

/* === Certificates and keys =============================================== */

X509 *openssl_ccb_get1_peer_certificate(const SSL *ssl)
{
    return SSL_get1_peer_certificate(ssl);
}

/* The curve of an EC key as a NID, or NID_undef. */
int openssl_ccb_ec_curve(const EVP_PKEY *pkey)
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

void openssl_ccb_free_x509_stack(openssl_ccb_X509_STACK *stack)
{
    sk_X509_pop_free(stack, X509_free);
}

/* A PEM pass phrase from userdata (a NUL-terminated string), never from the
 * terminal: OpenSSL's default callback would prompt when userdata is NULL. */
int openssl_ccb_password_cb(char *buf, int size, int rwflag, void *userdata)
{
    size_t len;

    (void)rwflag;
    if (userdata == NULL || size < 0)
        return -1;
    len = strlen((const char *)userdata);
    if (len > (size_t)size)
        return -1;
    memcpy(buf, userdata, len);
    return (int)len;
}
