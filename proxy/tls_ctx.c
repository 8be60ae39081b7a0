/* The TLS contexts: the server's (a fixed certificate, or one forged with the CA for each
 * connection's SNI), the client's (verification, ALPN, a cache of one session per host:port), both
 * with the same version limits and options, and the key log. The connections themselves are
 * tls.c's.
 */

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "inspect/alloc.h"
#include "inspect/error.h"
#include "proxy/tls_impl.h"

/* The connection an SSL belongs to, for OpenSSL's callbacks: the data of its BIO (rather than
 * SSL_set_app_data(), whose ex_data costs three allocations per connection). */
static xs_tls *tls_of(const SSL *ssl)
{
    BIO *b = SSL_get_rbio(ssl);
    return b != NULL ? BIO_get_data(b) : NULL;
}

/* Says in *diag why a context could not be made, with OpenSSL's errors after it (in 512 bytes,
 * as these messages always were). */
__attribute__((format(printf, 2, 3))) static void set_ctx_error(xs_diag *diag, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    xs_tls_append_openssl_errors(text, sizeof(text));
    (void)xs_diag_set(diag, 0, "%s", text);
}

/* A server name as RFC 6066 allows it in SNI: a DNS host name, at most 253 characters. */
static int sni_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_'))
            return 0;
    }
    return 1;
}

/* A password callback that refuses: an encrypted key is an error, never a prompt. */
static int no_password(char *buf, int size, int rwflag, void *user)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)user;
    return -1;
}

static int to_openssl_version(int v, int *out)
{
    switch (v) {
    case XS_TLS_DEFAULT:
        *out = 0;
        return 0;
    case XS_TLS_1_2:
        *out = TLS1_2_VERSION;
        return 0;
    case XS_TLS_1_3:
        *out = TLS1_3_VERSION;
        return 0;
    default:
        return XS_EINVAL;
    }
}

static void keylog_cb(const SSL *ssl, const char *line)
{
    xs_tls_ctx *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (ctx != NULL && ctx->keylog != NULL)
        ctx->keylog(ctx->keylog_user, line);
}

/* Allocates the context and applies what both roles share. */
static int ctx_new(const SSL_METHOD *method, int min_version, int max_version, xs_tls_ctx **out,
                   xs_diag *diag)
{
    xs_tls_ctx *ctx;
    int minv, maxv;

    *out = NULL;
    if (to_openssl_version(min_version, &minv) != 0 || to_openssl_version(max_version, &maxv)) {
        (void)xs_diag_set(diag, 0, "unsupported TLS version (1.2 and 1.3 are)");
        return XS_EINVAL;
    }
    if (minv == 0)
        minv = TLS1_2_VERSION;
    if (maxv != 0 && maxv < minv) {
        (void)xs_diag_set(diag, 0, "the highest TLS version is below the lowest one");
        return XS_EINVAL;
    }
    ctx = xs_calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        (void)xs_diag_set(diag, 0, "out of memory");
        return XS_ENOMEM;
    }
    ctx->refs = 1;
    ctx->ssl_ctx = SSL_CTX_new(method);
    ctx->bio_method = xs_tls_buffer_bio_method();
    if (ctx->ssl_ctx == NULL || ctx->bio_method == NULL ||
        !SSL_CTX_set_min_proto_version(ctx->ssl_ctx, minv) ||
        !SSL_CTX_set_max_proto_version(ctx->ssl_ctx, maxv) ||
        !SSL_CTX_set_app_data(ctx->ssl_ctx, ctx)) {
        set_ctx_error(diag, "cannot create the TLS context");
        SSL_CTX_free(ctx->ssl_ctx);
        BIO_meth_free(ctx->bio_method);
        xs_free(ctx);
        return XS_ETLS;
    }
    /* Renegotiation has no use in XMPP and a history of attacks; compression leaks plaintext
     * (CRIME). Release the record buffers of idle connections. */
    SSL_CTX_set_options(ctx->ssl_ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* No SSL_MODE_RELEASE_BUFFERS: it frees (and wipes) the record buffers after every record,
     * which costs a busy connection dearly; xs_tls_trim() frees them once a connection is idle. */
    *out = ctx;
    return 0;
}

void xs_tls_ctx_unref(xs_tls_ctx *ctx)
{
    if (ctx == NULL || --ctx->refs > 0)
        return;
    for (size_t i = 0; i < ctx->n_sessions; i++) {
        xs_free(ctx->sessions[i].key);
        SSL_SESSION_free(ctx->sessions[i].sess);
    }
    SSL_CTX_free(ctx->ssl_ctx);
    BIO_meth_free(ctx->bio_method); /* after the last connection, whose BIO used it */
    xs_free(ctx);
}

void xs_tls_ctx_free(xs_tls_ctx *ctx)
{
    xs_tls_ctx_unref(ctx);
}

void xs_tls_ctx_set_keylog(xs_tls_ctx *ctx, void (*cb)(void *user, const char *line), void *user)
{
    ctx->keylog = cb;
    ctx->keylog_user = user;
    SSL_CTX_set_keylog_callback(ctx->ssl_ctx, cb != NULL ? keylog_cb : NULL);
}

/* Server: remembers the SNI and refuses one that no certificate could carry. */
static int servername_cb(SSL *ssl, int *alert, void *arg)
{
    xs_tls *t = tls_of(ssl);
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    (void)arg;

    if (name == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    if (!sni_ok(name)) {
        snprintf(xs_tls_err_buf(t), TLS_ERR_LEN, "the client sent an invalid server name (SNI)");
        t->err_set = 1;
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    xs_free(t->sni);
    t->sni = xs_strdup(name);
    if (t->sni == NULL) {
        snprintf(xs_tls_err_buf(t), TLS_ERR_LEN, "out of memory");
        t->err_set = 1;
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* Server with a CA: installs the certificate forged for the SNI or the default name. OpenSSL calls
 * it after the ClientHello's extensions, in every version, before the certificate is sent. */
static int cert_cb(SSL *ssl, void *arg)
{
    xs_tls_ctx *ctx = arg;
    xs_tls *t = tls_of(ssl);
    const char *name = t->sni != NULL ? t->sni : t->default_name;
    X509 *cert = NULL;
    int ok;

    if (name == NULL) {
        snprintf(xs_tls_err_buf(t), TLS_ERR_LEN,
                 "the client sent no server name (SNI) and no default name was set, so there is "
                 "no name to make a certificate for; pass --server-name NAME (the XMPP domain "
                 "the client logs in to)");
        t->err_set = 1;
        return 0;
    }
    xs_diag diag;
    if (xs_ca_forge_ip(ctx->ca, name, t->local_ip, &cert, &diag) != 0) {
        /* The diagnostic is longer than the connection's error text may be: cut it. */
        snprintf(xs_tls_err_buf(t), TLS_ERR_LEN, "%.*s", TLS_ERR_LEN - 1, diag.text);
        t->err_set = 1;
        return 0;
    }
    ok = SSL_use_certificate(ssl, cert) == 1 &&
         SSL_use_PrivateKey(ssl, xs_ca_leaf_key(ctx->ca)) == 1;
    X509_free(cert);
    if (!ok) {
        snprintf(xs_tls_err_buf(t), TLS_ERR_LEN, "cannot use the certificate forged for %s", name);
        xs_tls_append_openssl_errors(xs_tls_err_buf(t), TLS_ERR_LEN);
        t->err_set = 1;
        return 0;
    }
    xs_free(t->cert_name);
    t->cert_name = xs_strdup(name); /* for the logs only: losing it to ENOMEM is harmless */
    return 1;
}

/* Server: selects "xmpp-client" when the client offers it; anything else is not acknowledged,
 * which lets the handshake go on without ALPN. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    for (unsigned int i = 0; i < inlen;) {
        unsigned int len = in[i];
        if (i + 1 + len > inlen)
            break;
        if (len == sizeof(ALPN_NAME) - 1 && memcmp(in + i + 1, ALPN_NAME, len) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)len;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + len;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

int xs_tls_server_ctx_new(const xs_tls_server_opts *o, xs_tls_ctx **out, xs_diag *diag)
{
    static const unsigned char sid_ctx[] = "xmppscope";
    xs_tls_ctx *ctx = NULL;
    SSL_CTX *c;
    int have_files;
    int rc;

    *out = NULL;
    if (o == NULL) {
        (void)xs_diag_set(diag, 0, "no TLS server options given");
        return XS_EINVAL;
    }
    have_files = o->cert_file != NULL || o->key_file != NULL;
    if ((o->ca != NULL) == have_files || (have_files && (!o->cert_file || !o->key_file))) {
        (void)xs_diag_set(
            diag, 0, "give either a CA to forge certificates or both --cert FILE and --key FILE");
        return XS_EINVAL;
    }
    ERR_clear_error();
    rc = ctx_new(TLS_server_method(), o->min_version, o->max_version, &ctx, diag);
    if (rc != 0)
        return rc;
    c = ctx->ssl_ctx;
    ctx->server = 1;
    ctx->ca = o->ca;
    rc = XS_ETLS;
    if (!SSL_CTX_set_session_id_context(c, sid_ctx, sizeof(sid_ctx) - 1)) {
        set_ctx_error(diag, "cannot set up the TLS server context");
        goto fail;
    }
    SSL_CTX_set_tlsext_servername_callback(c, servername_cb);
    SSL_CTX_set_alpn_select_cb(c, alpn_select_cb, NULL);
    if (o->ca != NULL) {
        SSL_CTX_set_cert_cb(c, cert_cb, ctx);
    } else {
        SSL_CTX_set_default_passwd_cb(c, no_password);
        if (SSL_CTX_use_certificate_chain_file(c, o->cert_file) != 1) {
            set_ctx_error(diag, "cannot load the certificate chain %s (PEM expected)",
                          o->cert_file);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(c, o->key_file, SSL_FILETYPE_PEM) != 1) {
            set_ctx_error(diag, "cannot load the private key %s (unencrypted PEM expected)",
                          o->key_file);
            goto fail;
        }
        if (SSL_CTX_check_private_key(c) != 1) {
            set_ctx_error(diag, "the key %s does not match the certificate %s", o->key_file,
                          o->cert_file);
            goto fail;
        }
    }
    *out = ctx;
    return 0;
fail:
    xs_tls_ctx_unref(ctx);
    return rc;
}

/* Client: keeps the newest session of the connection's resume key. Returns 1 when the cache
 * took the reference. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    xs_tls *t = tls_of(ssl);
    xs_tls_ctx *ctx;
    struct session_entry *e = NULL;

    if (t == NULL || t->resume_key == NULL || !SSL_SESSION_is_resumable(sess))
        return 0;
    ctx = t->ctx;
    for (size_t i = 0; i < ctx->n_sessions && e == NULL; i++)
        if (strcmp(ctx->sessions[i].key, t->resume_key) == 0)
            e = &ctx->sessions[i];
    if (e == NULL) {
        char *key = xs_strdup(t->resume_key);
        if (key == NULL)
            return 0;
        if (ctx->n_sessions < XS_TLS_SESSION_CACHE_SIZE) {
            e = &ctx->sessions[ctx->n_sessions++];
        } else {
            e = &ctx->sessions[0];
            for (size_t i = 1; i < ctx->n_sessions; i++)
                if (ctx->sessions[i].used < e->used)
                    e = &ctx->sessions[i];
            xs_free(e->key);
        }
        e->key = key;
    }
    SSL_SESSION_free(e->sess);
    e->sess = sess;
    e->used = ++ctx->clock;
    return 1;
}

void xs_tls_forget_session(xs_tls_ctx *ctx, const char *key)
{
    for (size_t i = 0; i < ctx->n_sessions; i++) {
        if (strcmp(ctx->sessions[i].key, key) != 0)
            continue;
        xs_free(ctx->sessions[i].key);
        SSL_SESSION_free(ctx->sessions[i].sess);
        ctx->sessions[i] = ctx->sessions[--ctx->n_sessions];
        return;
    }
}

int xs_tls_client_ctx_new(const xs_tls_client_opts *o, xs_tls_ctx **out, xs_diag *diag)
{
    xs_tls_ctx *ctx = NULL;
    SSL_CTX *c;
    int rc;

    *out = NULL;
    if (o == NULL) {
        (void)xs_diag_set(diag, 0, "no TLS client options given");
        return XS_EINVAL;
    }
    ERR_clear_error();
    rc = ctx_new(TLS_client_method(), o->min_version, o->max_version, &ctx, diag);
    if (rc != 0)
        return rc;
    c = ctx->ssl_ctx;
    ctx->insecure = o->insecure != 0;
    ctx->alpn = o->alpn != 0;
    /* Even when insecure, the chain and the name are checked so that the logs can tell. */
    SSL_CTX_set_verify(c, ctx->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    if (o->ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(c, o->ca_file, NULL) != 1) {
            set_ctx_error(diag, "cannot load CA certificates from %s (PEM expected)", o->ca_file);
            rc = XS_ETLS;
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(c) != 1) {
        set_ctx_error(diag,
                      "cannot load the system's trusted certificates; pass --upstream-ca FILE");
        rc = XS_ETLS;
        goto fail;
    }
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c, new_session_cb);
    *out = ctx;
    return 0;
fail:
    xs_tls_ctx_unref(ctx);
    return rc;
}
