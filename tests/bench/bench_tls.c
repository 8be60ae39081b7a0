/* The benchmark's test PKI and TLS engine. See bench_tls.h. */
#include "bench_tls.h"

#include "bench_util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct bn_tls {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    char err[512];
};

/* Moves OpenSSL's error queue into `out` after `what`. */
static void take_errors(char *out, size_t cap, const char *what)
{
    unsigned long e;
    size_t used = (size_t)snprintf(out, cap, "%s", what);
    while ((e = ERR_get_error()) != 0) {
        if (used + 3 >= cap)
            continue;
        char one[256];
        ERR_error_string_n(e, one, sizeof(one));
        used += (size_t)snprintf(out + used, cap - used, ": %s", one);
    }
}

/* ---- the test PKI ----------------------------------------------------------------------------
 */

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return 0;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* A certificate for `key` named `cn`, signed by (issuer, issuer_key), or self-signed when
 * issuer is NULL (then it is a CA). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key)
{
    X509 *x = X509_new();
    unsigned char serial[16];
    char san[300];
    if (x == NULL || RAND_bytes(serial, sizeof(serial)) != 1)
        goto fail;
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    int ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    if (!ok)
        goto fail;
    X509_NAME *n = X509_get_subject_name(x);
    if (!X509_set_version(x, X509_VERSION_3) ||
        !X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"xmppscope bench",
                                    -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) ||
        !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 7L * 86400) || !X509_set_pubkey(x, key))
        goto fail;
    X509 *iss = issuer ? issuer : x;
    if (issuer == NULL) {
        if (!add_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE") ||
            !add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign") ||
            !add_ext(x, iss, NID_subject_key_identifier, "hash"))
            goto fail;
    } else {
        snprintf(san, sizeof(san), "DNS:%s", cn);
        if (!add_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE") ||
            !add_ext(x, iss, NID_key_usage, "critical,digitalSignature") ||
            !add_ext(x, iss, NID_ext_key_usage, "serverAuth") ||
            !add_ext(x, iss, NID_subject_alt_name, san) ||
            !add_ext(x, iss, NID_authority_key_identifier, "keyid:always"))
            goto fail;
    }
    if (!X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()))
        goto fail;
    return x;
fail:
    X509_free(x);
    return NULL;
}

/* Writes a PEM file; keys with mode 0600 from the first byte. */
static int write_pem(const char *dir, const char *name, X509 *cert, EVP_PKEY *key)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, key ? 0600 : 0644);
    if (fd < 0)
        return 0;
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        return 0;
    }
    int ok = cert ? PEM_write_X509(f, cert) : PEM_write_PrivateKey(f, key, NULL, NULL, 0, 0, 0);
    return fclose(f) == 0 && ok;
}

int bn_pki_make(const char *dir, const char *name, char *err, size_t errcap)
{
    EVP_PKEY *ca_key = EVP_EC_gen("P-256");
    EVP_PKEY *srv_key = EVP_EC_gen("P-256");
    EVP_PKEY *leaf_key = EVP_EC_gen("P-256");
    X509 *ca = NULL, *srv = NULL;
    int rc = -1;
    ERR_clear_error();
    if (ca_key == NULL || srv_key == NULL || leaf_key == NULL) {
        take_errors(err, errcap, "cannot make EC keys");
        goto out;
    }
    ca = make_cert(ca_key, "xmppscope bench CA", NULL, NULL);
    srv = ca ? make_cert(srv_key, name, ca, ca_key) : NULL;
    if (srv == NULL) {
        take_errors(err, errcap, "cannot make the test certificates");
        goto out;
    }
    if (!write_pem(dir, "ca.crt", ca, NULL) || !write_pem(dir, "ca.key", NULL, ca_key) ||
        !write_pem(dir, "server.crt", srv, NULL) || !write_pem(dir, "server.key", NULL, srv_key) ||
        !write_pem(dir, "leaf.key", NULL, leaf_key)) {
        snprintf(err, errcap, "cannot write the test PKI into %s", dir);
        goto out;
    }
    rc = 0;
out:
    X509_free(ca);
    X509_free(srv);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(srv_key);
    EVP_PKEY_free(leaf_key);
    return rc;
}

/* ---- contexts --------------------------------------------------------------------------------
 */

SSL_CTX *bn_tls_server_ctx(const char *dir, char *err, size_t errcap)
{
    char crt[1024], key[1024];
    snprintf(crt, sizeof(crt), "%s/server.crt", dir);
    snprintf(key, sizeof(key), "%s/server.key", dir);
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        SSL_CTX_use_certificate_chain_file(ctx, crt) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        take_errors(err, errcap, "server TLS context");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    return ctx;
}

SSL_CTX *bn_tls_client_ctx(const char *ca_file, char *err, size_t errcap)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        take_errors(err, errcap, "client TLS context");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

void bn_tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}

/* ---- connections -----------------------------------------------------------------------------
 */

bn_tls *bn_tls_new(SSL_CTX *ctx, int server, const char *name)
{
    bn_tls *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        SSL_free(t->ssl);
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        free(t);
        return NULL;
    }
    /* An empty memory BIO means "try again later", not end of file. */
    BIO_set_mem_eof_return(t->rbio, -1);
    BIO_set_mem_eof_return(t->wbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    if (server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (name != NULL) {
            SSL_set_tlsext_host_name(t->ssl, name);
            SSL_set1_host(t->ssl, name);
        }
    }
    return t;
}

void bn_tls_free(bn_tls *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    free(t);
}

int bn_tls_feed(bn_tls *t, const void *p, size_t n)
{
    return BIO_write(t->rbio, p, (int)n) == (int)n ? 0 : BN_ENOMEM;
}

static int failed(bn_tls *t, int r, const char *what)
{
    char msg[128];
    int e = SSL_get_error(t->ssl, r);
    long v = SSL_get_verify_result(t->ssl);
    snprintf(msg, sizeof(msg), "%s (SSL error %d%s%s)", what, e, v != X509_V_OK ? ", verify: " : "",
             v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
    take_errors(t->err, sizeof(t->err), msg);
    return BN_ETLS;
}

int bn_tls_handshake(bn_tls *t)
{
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1)
        return 1;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    return failed(t, r, "handshake failed");
}

int bn_tls_read(bn_tls *t, void *buf, size_t cap, size_t *got)
{
    size_t n = 0;
    *got = 0;
    ERR_clear_error();
    int r = SSL_read_ex(t->ssl, buf, cap, &n);
    if (r == 1) {
        *got = n;
        return 0;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN)
        return BN_ECLOSED;
    return failed(t, r, "read failed");
}

int bn_tls_write(bn_tls *t, const void *p, size_t n)
{
    size_t done = 0;
    ERR_clear_error();
    /* Memory BIOs take everything, so one call writes all of it. */
    if (n == 0 || SSL_write_ex(t->ssl, p, n, &done) == 1)
        return 0;
    return failed(t, 0, "write failed");
}

void bn_tls_shutdown(bn_tls *t)
{
    ERR_clear_error();
    (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
}

size_t bn_tls_pending(const bn_tls *t)
{
    return BIO_ctrl_pending(t->wbio);
}

size_t bn_tls_take(bn_tls *t, void *buf, size_t cap)
{
    int r = BIO_read(t->wbio, buf, (int)(cap > 0x40000000 ? 0x40000000 : cap));
    return r > 0 ? (size_t)r : 0;
}

const char *bn_tls_version(const bn_tls *t)
{
    return SSL_is_init_finished(t->ssl) ? SSL_get_version(t->ssl) : "";
}

const char *bn_tls_error(const bn_tls *t)
{
    return t->err;
}
