/* A Wallet chosen in C, without the GIL: the trampoline judges a Wallet's
 * credentials here by the rules of openssl_ccb/selection.py (fit), and hands
 * the first that fits over, never entering Python. Where C cannot judge (a
 * signer credential, a clock replaced in Python, an answer OpenSSL refuses),
 * it says so and the trampoline asks Python, which judges the whole Wallet
 * again with the same rules: tests/test_choice.py checks that both choose
 * the same certificate in every case of the selection tests.
 *
 * Three objects, each reference-counted under one mutex (never held while
 * OpenSSL or Python runs):
 * - a choice: a Wallet's credentials as they were when it was made, with
 *   their own X509/EVP_PKEY/chain references; never changed once made;
 * - a slot: one per Wallet, holding its current choice, replaced when the
 *   Wallet's list changes;
 * - each context a Wallet is set on points to the Wallet's slot (an ex_data
 *   slot, freed with the context), so a change reaches every context at once.
 * A handshake takes a reference to the choice it judges, so a choice replaced
 * meanwhile lives until the handshake is done with it. Nothing here calls
 * Python, so contexts freed at interpreter exit free their choices too. */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "openssl_ccb.h"

struct openssl_ccb_entry {
    X509 *x509;
    EVP_PKEY *pkey;
    STACK_OF(X509) *chain; /* NULL: none */
    int64_t not_before, not_after; /* seconds since the epoch, UTC */
    int client_auth; /* its extended key usage, if any, allows TLS clients */
    int python; /* C cannot judge it (a signer's): Python chooses */
};

struct openssl_ccb_choice {
    long refs;
    size_t count;
    struct openssl_ccb_entry entries[];
};

struct openssl_ccb_slot {
    long refs;
    openssl_ccb_choice *choice;
};

static pthread_mutex_t openssl_ccb_choice_lock = PTHREAD_MUTEX_INITIALIZER;
static int openssl_ccb_slot_index = -1;
/* 0 once Python replaced selection.now: validity is then judged by its clock. */
static int openssl_ccb_clock_ours = 1;

/* --- Building a choice (from Python, core/choice.py) ---------------------- */

openssl_ccb_choice *openssl_ccb_choice_new(size_t count)
{
    openssl_ccb_choice *choice
        = calloc(1, sizeof(*choice) + count * sizeof(struct openssl_ccb_entry));
    if (choice == NULL)
        return NULL;
    choice->refs = 1;
    choice->count = count;
    for (size_t i = 0; i < count; i++)
        choice->entries[i].python = 1; /* until set */
    return choice;
}

/* Entry i judged in C: takes references of its own. 1, or 0 (the entry then
 * stays one that Python judges). */
int openssl_ccb_choice_set(openssl_ccb_choice *choice, size_t i, X509 *x509, EVP_PKEY *pkey,
                           openssl_ccb_X509_STACK *chain, int64_t not_before,
                           int64_t not_after, int client_auth)
{
    struct openssl_ccb_entry *entry;
    STACK_OF(X509) *copy = NULL;

    if (i >= choice->count || !choice->entries[i].python)
        return 0;
    if (chain != NULL && (copy = X509_chain_up_ref(chain)) == NULL)
        return 0;
    if (!X509_up_ref(x509)) {
        sk_X509_pop_free(copy, X509_free);
        return 0;
    }
    if (!EVP_PKEY_up_ref(pkey)) {
        X509_free(x509);
        sk_X509_pop_free(copy, X509_free);
        return 0;
    }
    entry = &choice->entries[i];
    entry->x509 = x509;
    entry->pkey = pkey;
    entry->chain = copy;
    entry->not_before = not_before;
    entry->not_after = not_after;
    entry->client_auth = client_auth;
    entry->python = 0;
    return 1;
}

static void openssl_ccb_choice_drop(openssl_ccb_choice *choice)
{
    if (choice == NULL)
        return;
    pthread_mutex_lock(&openssl_ccb_choice_lock);
    long refs = --choice->refs;
    pthread_mutex_unlock(&openssl_ccb_choice_lock);
    if (refs > 0)
        return;
    for (size_t i = 0; i < choice->count; i++) {
        X509_free(choice->entries[i].x509);
        EVP_PKEY_free(choice->entries[i].pkey);
        sk_X509_pop_free(choice->entries[i].chain, X509_free);
    }
    free(choice);
}

/* --- Slots: a Wallet's current choice, seen by its contexts --------------- */

openssl_ccb_slot *openssl_ccb_slot_new(void)
{
    openssl_ccb_slot *slot = calloc(1, sizeof(*slot));
    if (slot != NULL)
        slot->refs = 1;
    return slot;
}

static void openssl_ccb_slot_drop(openssl_ccb_slot *slot)
{
    openssl_ccb_choice *choice = NULL;

    if (slot == NULL)
        return;
    pthread_mutex_lock(&openssl_ccb_choice_lock);
    if (--slot->refs == 0)
        choice = slot->choice;
    else
        slot = NULL;
    pthread_mutex_unlock(&openssl_ccb_choice_lock);
    if (slot != NULL) {
        openssl_ccb_choice_drop(choice);
        free(slot);
    }
}

/* The Wallet's reference (ffi.gc). */
void openssl_ccb_slot_free(openssl_ccb_slot *slot)
{
    openssl_ccb_slot_drop(slot);
}

/* The slot's choice is now `choice` (whose reference it takes; NULL: none). */
void openssl_ccb_slot_put(openssl_ccb_slot *slot, openssl_ccb_choice *choice)
{
    openssl_ccb_choice *old;

    pthread_mutex_lock(&openssl_ccb_choice_lock);
    old = slot->choice;
    slot->choice = choice;
    pthread_mutex_unlock(&openssl_ccb_choice_lock);
    openssl_ccb_choice_drop(old);
}

/* Runs inside SSL_CTX_free. */
static void openssl_ccb_ctx_slot_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                                      long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    openssl_ccb_slot_drop(ptr);
}

int openssl_ccb_choice_init(void)
{
    if (openssl_ccb_slot_index < 0)
        openssl_ccb_slot_index
            = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, openssl_ccb_ctx_slot_free);
    return openssl_ccb_slot_index >= 0;
}

/* The context chooses with `slot` from now on (NULL: in Python). 1, or 0
 * with the error queue set. */
int openssl_ccb_set_slot(SSL_CTX *ctx, openssl_ccb_slot *slot)
{
    openssl_ccb_slot *old;
    int ok;

    pthread_mutex_lock(&openssl_ccb_choice_lock);
    old = SSL_CTX_get_ex_data(ctx, openssl_ccb_slot_index);
    ok = old == slot || SSL_CTX_set_ex_data(ctx, openssl_ccb_slot_index, slot) == 1;
    if (ok && old != slot && slot != NULL)
        slot->refs++;
    pthread_mutex_unlock(&openssl_ccb_choice_lock);
    if (ok && old != slot)
        openssl_ccb_slot_drop(old);
    return ok;
}

void openssl_ccb_set_clock_ours(int ours)
{
    pthread_mutex_lock(&openssl_ccb_choice_lock);
    openssl_ccb_clock_ours = ours;
    pthread_mutex_unlock(&openssl_ccb_choice_lock);
}

/* --- The rules (selection.py's schemes_for and fit) ----------------------- */

/* Whether a key can sign with the TLS SignatureScheme `code` under TLS 1.3
 * (tls13) or 1.2: selection.schemes_for, by code point. */
int openssl_ccb_key_signs(const EVP_PKEY *pkey, int tls13, int code)
{
    int hash = code >> 8, sig = code & 0xff;

    switch (EVP_PKEY_base_id(pkey)) {
    case EVP_PKEY_RSA:
        if (code == 0x0804 || code == 0x0805 || code == 0x0806)
            return 1; /* rsa_pss_rsae_sha256/384/512 */
        return !tls13 && sig == 0x01 && hash >= 0x02 && hash <= 0x06; /* rsa_pkcs1_* */
    case EVP_PKEY_RSA_PSS:
        return code == 0x0809 || code == 0x080a || code == 0x080b;
    case EVP_PKEY_EC:
        if (!tls13) /* ecdsa_sha1, _sha224, secp256r1/384r1/521r1 (any curve) */
            return sig == 0x03 && hash >= 0x02 && hash <= 0x06;
        switch (openssl_ccb_ec_curve(pkey)) {
        case NID_X9_62_prime256v1: return code == 0x0403;
        case NID_secp384r1: return code == 0x0503;
        case NID_secp521r1: return code == 0x0603;
        case NID_brainpoolP256r1: return code == 0x081a;
        case NID_brainpoolP384r1: return code == 0x081b;
        case NID_brainpoolP512r1: return code == 0x081c;
        default: return 0;
        }
    case EVP_PKEY_ED25519:
        return code == 0x0807;
    case EVP_PKEY_ED448:
        return code == 0x0808;
    case EVP_PKEY_DSA:
        return !tls13 && sig == 0x02 && hash >= 0x02 && hash <= 0x06;
    default:
        return 0;
    }
}

#define OPENSSL_CCB_FITS 1
#define OPENSSL_CCB_DOES_NOT_FIT 0

/* selection.fit's verdict for one entry, or OPENSSL_CCB_ASK_PYTHON. */
static int openssl_ccb_entry_fits(SSL *ssl, const struct openssl_ccb_entry *entry, int64_t now,
                                  int tls13)
{
    STACK_OF(X509_NAME) *names;
    int count, n;

    if (entry->python)
        return OPENSSL_CCB_ASK_PYTHON;
    if (now < entry->not_before || now > entry->not_after || !entry->client_auth)
        return OPENSSL_CCB_DOES_NOT_FIT;
    count = SSL_get_sigalgs(ssl, -1, NULL, NULL, NULL, NULL, NULL);
    if (count > 0) { /* none only before TLS 1.2, where a request names none */
        int signs = 0;
        for (int i = 0; i < count && !signs; i++) {
            unsigned char rsig = 0, rhash = 0;
            SSL_get_sigalgs(ssl, i, NULL, NULL, NULL, &rsig, &rhash);
            signs = openssl_ccb_key_signs(entry->pkey, tls13, (rhash << 8) | rsig);
        }
        if (!signs)
            return OPENSSL_CCB_DOES_NOT_FIT;
    }
    names = SSL_get_client_CA_list(ssl);
    n = names == NULL ? 0 : sk_X509_NAME_num(names);
    if (n <= 0)
        return OPENSSL_CCB_FITS;
    for (int c = -1; c < (entry->chain == NULL ? 0 : sk_X509_num(entry->chain)); c++) {
        X509 *cert = c < 0 ? entry->x509 : sk_X509_value(entry->chain, c);
        const X509_NAME *issuer = X509_get_issuer_name(cert);
        for (int i = 0; i < n; i++)
            if (X509_NAME_cmp(issuer, sk_X509_NAME_value(names, i)) == 0)
                return OPENSSL_CCB_FITS;
    }
    return OPENSSL_CCB_DOES_NOT_FIT;
}

/* The trampoline's first question, without the GIL: the context's Wallet's
 * answer. 1 with *x509 and *pkey set (new references for OpenSSL), 0 when
 * nothing fits (send none), or OPENSSL_CCB_ASK_PYTHON (no Wallet is set, or
 * C cannot judge: Python chooses, and reports any refusal with its reason). */
int openssl_ccb_choose(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
    openssl_ccb_slot *slot;
    openssl_ccb_choice *choice = NULL;
    int ret = 0, tls13 = SSL_version(ssl) == TLS1_3_VERSION;
    int64_t now = (int64_t)time(NULL);

    pthread_mutex_lock(&openssl_ccb_choice_lock);
    slot = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), openssl_ccb_slot_index);
    if (slot != NULL && openssl_ccb_clock_ours && (choice = slot->choice) != NULL)
        choice->refs++;
    pthread_mutex_unlock(&openssl_ccb_choice_lock);
    if (choice == NULL)
        return OPENSSL_CCB_ASK_PYTHON;
    for (size_t i = 0; i < choice->count; i++) {
        const struct openssl_ccb_entry *entry = &choice->entries[i];
        ret = openssl_ccb_entry_fits(ssl, entry, now, tls13);
        if (ret == OPENSSL_CCB_DOES_NOT_FIT)
            continue;
        if (ret == OPENSSL_CCB_FITS) {
            /* A refusal (the security level) is Python's to report. */
            ERR_set_mark();
            ret = openssl_ccb_install(ssl, entry->x509, entry->pkey, entry->chain, x509, pkey);
            ERR_pop_to_mark(); /* nothing above it on success */
            if (ret != 1)
                ret = OPENSSL_CCB_ASK_PYTHON;
        }
        break;
    }
    openssl_ccb_choice_drop(choice);
    return ret;
}
