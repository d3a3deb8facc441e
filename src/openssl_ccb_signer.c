/* The signer: an EVP_PKEY whose private half is a Python callable.
 *
 * A small OpenSSL 3 provider, built in (OSSL_PROVIDER_add_builtin) and loaded
 * into a library context of its own, so that no fetch anyone else makes can
 * find it: its key managers carry OpenSSL's own key type names ("EC", "RSA",
 * "ED25519", "ED448"), which libssl needs to recognise the key, and would
 * shadow the default provider's in the default library context.
 *
 * A key holds the certificate's public key (a key of the default provider,
 * which answers every parameter libssl asks for: size, bits, group) and a
 * handle to the Python signer. Its one signature algorithm has a name only
 * this provider uses: EVP_DigestSignInit finds no such algorithm in the
 * caller's library context and falls back to the key's own provider (both
 * OpenSSL 3.0 and later do this), so the private operation always lands here.
 *
 * digest_sign hands the whole message to Python with the TLS SignatureScheme
 * OpenSSL chose (its IANA name, from the key type, the digest and the RSA
 * padding): the signer hashes it itself, as a token or a remote service does.
 * No ENGINE: deprecated in OpenSSL 3.0, gone in 4. */

#include <pthread.h>
#include <string.h>
#include "openssl_ccb.h"

#if OPENSSL_VERSION_NUMBER >= 0x30000000L

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rsa.h>

#define CCB_PROVIDER "openssl-ccb-signer"
#define CCB_SIGNATURE "OPENSSL-CCB-SIGNER" /* found in our library context only */
#define CCB_INIT_PARAM "openssl-ccb-signer" /* how our constructor reaches import */

enum ccb_kind { CCB_EC, CCB_RSA, CCB_ED25519, CCB_ED448 };
static const char *const ccb_kind_names[] = {"EC", "RSA", "ED25519", "ED448"};

struct ccb_key {
    enum ccb_kind kind;
    EVP_PKEY *pub;  /* the certificate's public key, default provider */
    void *handle;   /* the Python signer; NULL for a public key only */
};

struct ccb_init { /* what openssl_ccb_signer_key passes to import */
    EVP_PKEY *pub;
    void *handle;
};

/* --- Key management ------------------------------------------------------ */

static struct ccb_key *ccb_new(enum ccb_kind kind)
{
    struct ccb_key *key = OPENSSL_zalloc(sizeof(*key));
    if (key != NULL)
        key->kind = kind;
    return key;
}
static void *ccb_new_ec(void *provctx) { (void)provctx; return ccb_new(CCB_EC); }
static void *ccb_new_rsa(void *provctx) { (void)provctx; return ccb_new(CCB_RSA); }
static void *ccb_new_ed25519(void *provctx) { (void)provctx; return ccb_new(CCB_ED25519); }
static void *ccb_new_ed448(void *provctx) { (void)provctx; return ccb_new(CCB_ED448); }

static void ccb_free(void *keydata)
{
    struct ccb_key *key = keydata;
    if (key == NULL)
        return;
    EVP_PKEY_free(key->pub);
    if (key->handle != NULL && !openssl_ccb_tearing_down())
        openssl_ccb_signer_release(key->handle);
    OPENSSL_free(key);
}

static int ccb_has(const void *keydata, int selection)
{
    const struct ccb_key *key = keydata;
    if (key == NULL || key->pub == NULL)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 && key->handle == NULL)
        return 0;
    return 1;
}

static int ccb_match(const void *keydata1, const void *keydata2, int selection)
{
    const struct ccb_key *a = keydata1, *b = keydata2;
    (void)selection; /* the private halves are signers: only the public keys compare */
    return a->pub != NULL && b->pub != NULL && EVP_PKEY_eq(a->pub, b->pub) == 1;
}

/* Import: from our constructor (the public key and the signer), or a plain
 * public key, which EVP_PKEY_eq exports into us to compare with a
 * certificate's key (SSL_use_PrivateKey checks that the two match). */
static int ccb_import(void *keydata, int selection, const OSSL_PARAM params[])
{
    struct ccb_key *key = keydata;
    const OSSL_PARAM *init = OSSL_PARAM_locate_const(params, CCB_INIT_PARAM);
    EVP_PKEY_CTX *ctx;
    EVP_PKEY *pub = NULL;

    (void)selection;
    if (key == NULL || key->pub != NULL)
        return 0;
    if (init != NULL) {
        const struct ccb_init *given = init->data;
        if (init->data_type != OSSL_PARAM_OCTET_STRING || init->data_size != sizeof(*given)
            || !EVP_PKEY_up_ref(given->pub))
            return 0;
        key->pub = given->pub;
        key->handle = given->handle;
        return 1;
    }
    ctx = EVP_PKEY_CTX_new_from_name(NULL, ccb_kind_names[key->kind], NULL);
    if (ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1
        && EVP_PKEY_fromdata(ctx, &pub, EVP_PKEY_PUBLIC_KEY, (OSSL_PARAM *)params) == 1)
        key->pub = pub;
    EVP_PKEY_CTX_free(ctx);
    return key->pub != NULL;
}

static int ccb_export(void *keydata, int selection, OSSL_CALLBACK *cb, void *cbarg)
{
    const struct ccb_key *key = keydata;
    selection &= ~OSSL_KEYMGMT_SELECT_PRIVATE_KEY; /* there is none to give */
    return key->pub != NULL && EVP_PKEY_export(key->pub, selection, cb, cbarg) == 1;
}

static int ccb_get_params(void *keydata, OSSL_PARAM params[])
{
    const struct ccb_key *key = keydata;
    return key->pub != NULL && EVP_PKEY_get_params(key->pub, params) == 1;
}

static const OSSL_PARAM ccb_gettable[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_MANDATORY_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *ccb_gettable_params(void *provctx)
{
    (void)provctx;
    return ccb_gettable;
}

/* OpenSSL 3.0 wants the types with import and export; these are what they
 * read, as far as anyone asks (the public key is the default provider's). */
static const OSSL_PARAM ccb_io_types[] = {
    OSSL_PARAM_octet_string(CCB_INIT_PARAM, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *ccb_io_types_of(int selection)
{
    (void)selection;
    return ccb_io_types;
}

static const char *ccb_operation_name(int operation_id)
{
    return operation_id == OSSL_OP_SIGNATURE ? CCB_SIGNATURE : NULL;
}

#define CCB_KEYMGMT(kind)                                                               \
    static const OSSL_DISPATCH ccb_keymgmt_##kind[] = {                                 \
        {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))ccb_new_##kind},                        \
        {OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))ccb_free},                             \
        {OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))ccb_has},                               \
        {OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))ccb_match},                           \
        {OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))ccb_import},                         \
        {OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))ccb_export},                         \
        {OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))ccb_io_types_of},              \
        {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))ccb_io_types_of},              \
        {OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))ccb_get_params},                 \
        {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))ccb_gettable_params},       \
        {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))ccb_operation_name},   \
        {0, NULL}}
CCB_KEYMGMT(ec);
CCB_KEYMGMT(rsa);
CCB_KEYMGMT(ed25519);
CCB_KEYMGMT(ed448);

/* --- The signature ------------------------------------------------------- */

struct ccb_sign {
    struct ccb_key *key; /* owned by the EVP_PKEY the operation holds */
    int md;              /* NID of the digest, NID_undef for EdDSA */
    int pad;             /* RSA_PKCS1_PADDING or RSA_PKCS1_PSS_PADDING */
    int saltlen;         /* RSA_PSS_SALTLEN_DIGEST, or a length */
    int mgf1;            /* NID of the MGF1 digest, NID_undef for "the same" */
    unsigned char *buf;  /* the message so far (digest_sign_update) */
    size_t len;
};

static void *ccb_sign_newctx(void *provctx, const char *propq)
{
    (void)provctx, (void)propq;
    return OPENSSL_zalloc(sizeof(struct ccb_sign));
}

static void ccb_sign_freectx(void *ctx)
{
    struct ccb_sign *s = ctx;
    if (s != NULL)
        OPENSSL_free(s->buf);
    OPENSSL_free(s);
}

static void *ccb_sign_dupctx(void *ctx)
{
    const struct ccb_sign *s = ctx;
    struct ccb_sign *dup = OPENSSL_memdup(s, sizeof(*s));
    if (dup != NULL && s->buf != NULL && (dup->buf = OPENSSL_memdup(s->buf, s->len)) == NULL) {
        OPENSSL_free(dup);
        return NULL;
    }
    return dup;
}

static int ccb_md_nid(const char *name)
{
    const EVP_MD *md = name == NULL || *name == '\0' ? NULL : EVP_get_digestbyname(name);
    return md == NULL ? NID_undef : EVP_MD_get_type(md);
}

static int ccb_sign_set_ctx_params(void *ctx, const OSSL_PARAM params[])
{
    struct ccb_sign *s = ctx;
    const OSSL_PARAM *p;
    const char *name = NULL;

    if (params == NULL)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL) {
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || (s->md = ccb_md_nid(name)) == NID_undef)
            return 0;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL) {
        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            if (!OSSL_PARAM_get_utf8_string_ptr(p, &name))
                return 0;
            s->pad = strcmp(name, OSSL_PKEY_RSA_PAD_MODE_PSS) == 0 ? RSA_PKCS1_PSS_PADDING
                     : strcmp(name, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0 ? RSA_PKCS1_PADDING
                                                                         : -1;
        } else if (!OSSL_PARAM_get_int(p, &s->pad)) {
            return 0;
        }
        if (s->pad != RSA_PKCS1_PADDING && s->pad != RSA_PKCS1_PSS_PADDING)
            return 0;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL) {
        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            if (!OSSL_PARAM_get_utf8_string_ptr(p, &name))
                return 0;
            /* TLS signs with the salt as long as the digest; nothing else is offered */
            if (strcmp(name, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) != 0)
                return 0;
            s->saltlen = RSA_PSS_SALTLEN_DIGEST;
        } else if (!OSSL_PARAM_get_int(p, &s->saltlen)) {
            return 0;
        }
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) != NULL) {
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || (s->mgf1 = ccb_md_nid(name)) == NID_undef)
            return 0;
    }
    return 1;
}

static const OSSL_PARAM ccb_settable[] = {
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *ccb_sign_settable_ctx_params(void *ctx, void *provctx)
{
    (void)ctx, (void)provctx;
    return ccb_settable;
}

static int ccb_digest_sign_init(void *ctx, const char *mdname, void *keydata,
                                const OSSL_PARAM params[])
{
    struct ccb_sign *s = ctx;
    struct ccb_key *key = keydata;

    if (key == NULL || key->handle == NULL)
        return 0; /* a public key only: nothing signs for it */
    s->key = key;
    s->md = ccb_md_nid(mdname);
    s->pad = RSA_PKCS1_PADDING;
    s->saltlen = RSA_PSS_SALTLEN_DIGEST;
    s->mgf1 = NID_undef;
    OPENSSL_free(s->buf);
    s->buf = NULL;
    s->len = 0;
    if (mdname != NULL && *mdname != '\0' && s->md == NID_undef)
        return 0;
    return ccb_sign_set_ctx_params(ctx, params);
}

static int ccb_digest_sign_update(void *ctx, const unsigned char *data, size_t len)
{
    struct ccb_sign *s = ctx;
    unsigned char *grown;

    if (len == 0)
        return 1;
    if ((grown = OPENSSL_realloc(s->buf, s->len + len)) == NULL)
        return 0;
    memcpy(grown + s->len, data, len);
    s->buf = grown;
    s->len += len;
    return 1;
}

/* The TLS SignatureScheme (IANA code point) for this operation, 0 if TLS has none. */
static int ccb_scheme(const struct ccb_sign *s)
{
    int high;

    switch (s->md) {
    case NID_sha1: high = 0x02; break;
    case NID_sha224: high = 0x03; break;
    case NID_sha256: high = 0x04; break;
    case NID_sha384: high = 0x05; break;
    case NID_sha512: high = 0x06; break;
    default: high = 0;
    }
    switch (s->key->kind) {
    case CCB_ED25519: return s->md == NID_undef ? 0x0807 : 0;
    case CCB_ED448: return s->md == NID_undef ? 0x0808 : 0;
    case CCB_EC: return high ? high << 8 | 0x03 : 0;
    case CCB_RSA:
        if (s->pad == RSA_PKCS1_PADDING)
            return high ? high << 8 | 0x01 : 0;
        if ((s->mgf1 != NID_undef && s->mgf1 != s->md)
            || (s->saltlen != RSA_PSS_SALTLEN_DIGEST
                && s->saltlen != EVP_MD_get_size(EVP_get_digestbynid(s->md))))
            return 0;
        return high >= 0x04 ? 0x0800 | high : 0; /* rsa_pss_rsae_sha256/384/512 */
    }
    return 0;
}

static int ccb_do_sign(struct ccb_sign *s, unsigned char *sig, size_t *siglen, size_t sigsize,
                       const unsigned char *tbs, size_t tbslen)
{
    int size = EVP_PKEY_get_size(s->key->pub);
    int scheme;

    if (size <= 0)
        return 0;
    if (sig == NULL) {
        *siglen = (size_t)size;
        return 1;
    }
    if ((scheme = ccb_scheme(s)) == 0) {
        ERR_raise_data(ERR_LIB_USER, ERR_R_UNSUPPORTED,
                       "openssl-ccb: the signer was asked for a signature TLS has no scheme for");
        return 0;
    }
    *siglen = sigsize;
    if (openssl_ccb_sign(s->key->handle, scheme, tbs, tbslen, sig, siglen) != 1) {
        ERR_raise_data(ERR_LIB_USER, ERR_R_OPERATION_FAIL, "openssl-ccb: the signer failed");
        return 0;
    }
    return 1;
}

static int ccb_digest_sign(void *ctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                           const unsigned char *tbs, size_t tbslen)
{
    return ccb_do_sign(ctx, sig, siglen, sigsize, tbs, tbslen);
}

static int ccb_digest_sign_final(void *ctx, unsigned char *sig, size_t *siglen, size_t sigsize)
{
    struct ccb_sign *s = ctx;
    return ccb_do_sign(s, sig, siglen, sigsize, s->buf, s->len);
}

static const OSSL_DISPATCH ccb_signature[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))ccb_sign_newctx},
    {OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))ccb_sign_freectx},
    {OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))ccb_sign_dupctx},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))ccb_digest_sign_init},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (void (*)(void))ccb_digest_sign_update},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (void (*)(void))ccb_digest_sign_final},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void))ccb_digest_sign},
    {OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void))ccb_sign_set_ctx_params},
    {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))ccb_sign_settable_ctx_params},
    {0, NULL}};

/* --- The provider -------------------------------------------------------- */

#define CCB_PROPERTIES "provider=" CCB_PROVIDER

static const OSSL_ALGORITHM ccb_keymgmts[] = {
    {"EC:id-ecPublicKey:1.2.840.10045.2.1", CCB_PROPERTIES, ccb_keymgmt_ec, NULL},
    {"RSA:rsaEncryption:1.2.840.113549.1.1.1", CCB_PROPERTIES, ccb_keymgmt_rsa, NULL},
    {"ED25519:1.3.101.112", CCB_PROPERTIES, ccb_keymgmt_ed25519, NULL},
    {"ED448:1.3.101.113", CCB_PROPERTIES, ccb_keymgmt_ed448, NULL},
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM ccb_signatures[] = {
    {CCB_SIGNATURE, CCB_PROPERTIES, ccb_signature, NULL}, {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM *ccb_query(void *provctx, int operation_id, int *no_cache)
{
    (void)provctx;
    *no_cache = 0;
    switch (operation_id) {
    case OSSL_OP_KEYMGMT: return ccb_keymgmts;
    case OSSL_OP_SIGNATURE: return ccb_signatures;
    default: return NULL;
    }
}

static const OSSL_DISPATCH ccb_provider[] = {
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))ccb_query}, {0, NULL}};

static int ccb_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                             const OSSL_DISPATCH **out, void **provctx)
{
    (void)in;
    *out = ccb_provider;
    *provctx = (void *)handle;
    return 1;
}

static OSSL_LIB_CTX *ccb_libctx = NULL;
static pthread_once_t ccb_once = PTHREAD_ONCE_INIT;

static void ccb_load(void)
{
    OSSL_LIB_CTX *libctx = OSSL_LIB_CTX_new();
    if (libctx == NULL)
        return;
    if (OSSL_PROVIDER_add_builtin(libctx, CCB_PROVIDER, ccb_provider_init) != 1
        || OSSL_PROVIDER_load(libctx, CCB_PROVIDER) == NULL) {
        OSSL_LIB_CTX_free(libctx);
        return;
    }
    ccb_libctx = libctx; /* kept for the life of the process, as the provider is */
}

int openssl_ccb_signers_available(void)
{
    return 1;
}

EVP_PKEY *openssl_ccb_signer_key(X509 *x509, void *handle)
{
    struct ccb_init init;
    OSSL_PARAM params[2];
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    const char *kind;

    if (pthread_once(&ccb_once, ccb_load) != 0 || ccb_libctx == NULL) {
        ERR_raise_data(ERR_LIB_USER, ERR_R_INIT_FAIL, "openssl-ccb: the signer provider did not load");
        return NULL;
    }
    if ((init.pub = X509_get0_pubkey(x509)) == NULL)
        return NULL;
    init.handle = handle;
    kind = EVP_PKEY_is_a(init.pub, "EC")        ? "EC"
           : EVP_PKEY_is_a(init.pub, "RSA")     ? "RSA"
           : EVP_PKEY_is_a(init.pub, "ED25519") ? "ED25519"
           : EVP_PKEY_is_a(init.pub, "ED448")   ? "ED448"
                                                : NULL;
    if (kind == NULL) {
        ERR_raise_data(ERR_LIB_USER, ERR_R_UNSUPPORTED,
                       "openssl-ccb: a signer needs an EC, RSA, Ed25519 or Ed448 certificate");
        return NULL;
    }
    params[0] = OSSL_PARAM_construct_octet_string(CCB_INIT_PARAM, &init, sizeof(init));
    params[1] = OSSL_PARAM_construct_end();
    ctx = EVP_PKEY_CTX_new_from_name(ccb_libctx, kind, NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

#else /* OpenSSL 1.1.1: no providers, no signers */

int openssl_ccb_signers_available(void)
{
    return 0;
}

EVP_PKEY *openssl_ccb_signer_key(X509 *x509, void *handle)
{
    (void)x509, (void)handle;
    return NULL;
}

#endif
