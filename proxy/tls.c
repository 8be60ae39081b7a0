/* The TLS engine: OpenSSL driven through memory, no sockets.
 *
 * Each connection's SSL reads and writes through one BIO of ours (buffer_bio_method()): it reads
 * from `in` (what xs_tls_feed_cipher() was given) and writes to `out` (what xs_tls_take_cipher()
 * hands out), two buffers of the xs_tls. An empty `in` reads as "retry later", never as the end
 * of the stream. The peer's end of stream is its close_notify; a TCP close without one is the
 * caller's to judge. One BIO over our own buffers rather than two BIO_s_mem: each of those is a
 * BIO, a lock and three small blocks, which with thousands of idle connections adds up.
 *
 * Failures are sticky: after the first XS_ETLS every call returns XS_ETLS again, and
 * xs_tls_last_error() keeps the first reason.
 */
#include "proxy/tls.h"

#include <arpa/inet.h>
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

/* ALPN protocol list in wire format: a length byte, then the name (XEP-0368). */
static const unsigned char alpn_wire[] = "\x0bxmpp-client";
#define ALPN_WIRE_LEN (sizeof(alpn_wire) - 1)
#define ALPN_NAME "xmpp-client"

struct session_entry {
    char *key; /* "host:port" */
    SSL_SESSION *sess;
    uint64_t used;
};

struct xs_tls_ctx {
    SSL_CTX *ssl_ctx;
    int refs;
    int server;
    int insecure;
    int alpn;               /* client: offer ALPN by default */
    xs_ca *ca;              /* server: borrowed */
    BIO_METHOD *bio_method; /* the connections' BIO (see buffer_bio_method()) */
    void (*keylog)(void *user, const char *line);
    void *keylog_user;
    /* Client: the last session of each host:port, least recently used dropped first. */
    struct session_entry sessions[XS_TLS_SESSION_CACHE_SIZE];
    size_t n_sessions;
    uint64_t clock;
};

struct xs_tls {
    xs_tls_ctx *ctx;
    SSL *ssl;
    int started;        /* the handshake has been stepped at least once */
    int established;    /* the handshake finished */
    int failed;         /* sticky XS_ETLS */
    int shut;           /* our close_notify is queued (or the handshake was abandoned) */
    int peer_closed;    /* the peer's close_notify arrived */
    int err_set;        /* a callback wrote err; keep it over OpenSSL's more generic text */
    char *server_name;  /* client: the name to verify */
    char *default_name; /* server: the name to forge for when there is no SNI */
    char *local_ip;     /* server: the address the client connected to, a second SAN */
    char *sni;          /* server: what the client sent */
    char *cert_name;    /* server: what the forged certificate is for */
    char *resume_key;   /* client */
    char *peer_subject; /* client */
    /* Snapshots for xs_tls_info, allocated to their size (idle connections must stay small):
     * the ALPN protocol selected (the static ALPN_NAME, or a copy for anything else) and, client
     * role, the verification result. */
    const char *alpn;
    char *alpn_copy;
    char *verify;
    /* Ciphertext: `in` from the peer not yet read by OpenSSL (from in_off to in_len), `out`
     * from OpenSSL not yet taken (from out_off to out_len). Kept between uses, given back by
     * xs_tls_trim(). */
    unsigned char *in, *out;
    size_t in_off, in_len, in_cap;
    size_t out_off, out_len, out_cap;
    unsigned char *early; /* plaintext written before the handshake finished */
    size_t early_len;
    size_t early_cap;
    char *err;      /* why it failed (err_buf()); NULL until then */
    int err_static; /* err is the shared fallback buffer, not ours to free */
};

#define TLS_ERR_LEN 512

/* The buffer for the failure text, allocated when the first is written: most connections never
 * fail, and idle ones must stay small. Out of memory: a shared buffer (the text may then be
 * another connection's, never a crash). */
static char *err_buf(xs_tls *t)
{
    static char fallback[TLS_ERR_LEN];
    if (t->err == NULL) {
        t->err = xs_malloc(TLS_ERR_LEN);
        if (t->err == NULL) {
            t->err = fallback;
            t->err_static = 1;
        }
        t->err[0] = 0;
    }
    return t->err;
}

/* ---- the connections' BIO ------------------------------------------------------------------ */

/* Makes room for `extra` more bytes after the bytes waiting in a buffer (from *off to *len),
 * moving those to the front first when that is enough or there are none. Returns 0 or
 * XS_ENOMEM. */
static int reserve(unsigned char **buf, size_t *off, size_t *len, size_t *cap, size_t extra)
{
    size_t waiting = *len - *off;
    if (*off > 0 && (waiting == 0 || *len + extra > *cap)) {
        if (waiting > 0)
            memmove(*buf, *buf + *off, waiting);
        *off = 0;
        *len = waiting;
    }
    if (*len + extra <= *cap)
        return 0;
    size_t ncap = *cap != 0 ? *cap : 4096;
    while (ncap < *len + extra)
        ncap *= 2;
    unsigned char *p = xs_realloc(*buf, ncap);
    if (p == NULL)
        return XS_ENOMEM;
    *buf = p;
    *cap = ncap;
    return 0;
}

/* OpenSSL writes records: they wait in `out` for xs_tls_take_cipher(). */
static int bio_write_cb(BIO *b, const char *data, int len)
{
    xs_tls *t = BIO_get_data(b);

    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (reserve(&t->out, &t->out_off, &t->out_len, &t->out_cap, (size_t)len) < 0)
        return -1; /* a failure, not a retry: the TLS call fails with XS_ETLS */
    memcpy(t->out + t->out_len, data, (size_t)len);
    t->out_len += (size_t)len;
    return len;
}

/* OpenSSL reads what xs_tls_feed_cipher() was given; nothing there means "retry later". */
static int bio_read_cb(BIO *b, char *buf, int len)
{
    xs_tls *t = BIO_get_data(b);
    size_t n = t->in_len - t->in_off;

    BIO_clear_retry_flags(b);
    if (n == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    if (len <= 0)
        return 0;
    if (n > (size_t)len)
        n = (size_t)len;
    memcpy(buf, t->in + t->in_off, n);
    t->in_off += n;
    if (t->in_off == t->in_len)
        t->in_off = t->in_len = 0;
    return (int)n;
}

static long bio_ctrl_cb(BIO *b, int cmd, long num, void *ptr)
{
    xs_tls *t = BIO_get_data(b);
    (void)num;
    (void)ptr;

    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* what was written is in `out` already */
    case BIO_CTRL_PENDING:
        return (long)(t->in_len - t->in_off);
    case BIO_CTRL_WPENDING:
        return (long)(t->out_len - t->out_off);
    default:
        return 0; /* no kTLS, no push/pop of our own, nothing else */
    }
}

static int bio_create_cb(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* The BIO type of ours: an index OpenSSL hands out once per process (it has few of them). */
static int bio_type(void)
{
    static int type;
    if (type == 0) {
        int index = BIO_get_new_index();
        type = index > 0 ? index | BIO_TYPE_SOURCE_SINK : BIO_TYPE_SOURCE_SINK;
    }
    return type;
}

/* The connection an SSL belongs to, for OpenSSL's callbacks: the data of its BIO (rather than
 * SSL_set_app_data(), whose ex_data costs three allocations per connection). */
static xs_tls *tls_of(const SSL *ssl)
{
    BIO *b = SSL_get_rbio(ssl);
    return b != NULL ? BIO_get_data(b) : NULL;
}

static BIO_METHOD *buffer_bio_method(void)
{
    BIO_METHOD *m = BIO_meth_new(bio_type(), "xmppscope buffers");
    if (m == NULL || !BIO_meth_set_write(m, bio_write_cb) || !BIO_meth_set_read(m, bio_read_cb) ||
        !BIO_meth_set_ctrl(m, bio_ctrl_cb) || !BIO_meth_set_create(m, bio_create_cb)) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

/* Appends the reasons drained from OpenSSL's error queue (oldest, usually the cause, first) to
 * the string in buf. Returns 1 if there were any. */
static int append_openssl_errors(char *buf, size_t cap)
{
    size_t len = strlen(buf);
    const char *sep = ": ";
    const char *data = NULL;
    int flags = 0;
    int any = 0;
    unsigned long e;

    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        const char *reason = ERR_reason_error_string(e);
        char code[32];
        int text = (flags & ERR_TXT_STRING) && data != NULL && data[0] != '\0';
        if (reason == NULL) {
            snprintf(code, sizeof(code), "error %d", ERR_GET_REASON(e));
            reason = code;
        }
        if (len + 1 < cap) {
            snprintf(buf + len, cap - len, "%s%s%s%s", sep, reason, text ? " " : "",
                     text ? data : "");
            len = strlen(buf);
        }
        sep = "; ";
        any = 1;
    }
    return any;
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
    append_openssl_errors(text, sizeof(text));
    (void)xs_diag_set(diag, 0, "%s", text);
}

static int is_ip_literal(const char *name)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
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
    ctx->bio_method = buffer_bio_method();
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

static void ctx_unref(xs_tls_ctx *ctx)
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
    ctx_unref(ctx);
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
        snprintf(err_buf(t), TLS_ERR_LEN, "the client sent an invalid server name (SNI)");
        t->err_set = 1;
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    xs_free(t->sni);
    t->sni = xs_strdup(name);
    if (t->sni == NULL) {
        snprintf(err_buf(t), TLS_ERR_LEN, "out of memory");
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
        snprintf(err_buf(t), TLS_ERR_LEN,
                 "the client sent no server name (SNI) and no default name was set, so there is "
                 "no name to make a certificate for; pass --server-name NAME (the XMPP domain "
                 "the client logs in to)");
        t->err_set = 1;
        return 0;
    }
    xs_diag diag;
    if (xs_ca_forge_ip(ctx->ca, name, t->local_ip, &cert, &diag) != 0) {
        /* The diagnostic is longer than the connection's error text may be: cut it. */
        snprintf(err_buf(t), TLS_ERR_LEN, "%.*s", TLS_ERR_LEN - 1, diag.text);
        t->err_set = 1;
        return 0;
    }
    ok = SSL_use_certificate(ssl, cert) == 1 &&
         SSL_use_PrivateKey(ssl, xs_ca_leaf_key(ctx->ca)) == 1;
    X509_free(cert);
    if (!ok) {
        snprintf(err_buf(t), TLS_ERR_LEN, "cannot use the certificate forged for %s", name);
        append_openssl_errors(err_buf(t), TLS_ERR_LEN);
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
    ctx_unref(ctx);
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

static void forget_session(xs_tls_ctx *ctx, const char *key)
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
    ctx_unref(ctx);
    return rc;
}

int xs_tls_new(xs_tls_ctx *ctx, const char *server_name, xs_tls **out)
{
    xs_tls *t = NULL;
    BIO *bio = NULL;
    int rc = XS_ENOMEM;

    *out = NULL;
    if (ctx == NULL)
        return XS_EINVAL;
    if (!ctx->server && server_name == NULL && !ctx->insecure)
        return XS_EINVAL; /* nothing to verify the certificate against */
    ERR_clear_error();
    t = xs_calloc(1, sizeof(*t));
    if (t == NULL)
        return XS_ENOMEM;
    t->ctx = ctx;
    ctx->refs++;
    t->ssl = SSL_new(ctx->ssl_ctx);
    bio = BIO_new(ctx->bio_method);
    if (t->ssl == NULL || bio == NULL)
        goto fail;
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio); /* the same BIO both ways: one reference is taken */
    bio = NULL;

    if (ctx->server) {
        SSL_set_accept_state(t->ssl);
        if (server_name != NULL && (rc = xs_tls_set_default_name(t, server_name)) != 0)
            goto fail;
    } else {
        SSL_set_connect_state(t->ssl);
        if (server_name != NULL) {
            t->server_name = xs_strdup(server_name);
            if (t->server_name == NULL)
                goto fail;
            rc = XS_EINVAL;
            if (is_ip_literal(server_name)) {
                /* RFC 6066 forbids IP addresses in SNI; the certificate must carry it as an
                 * IP address SAN. */
                if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), server_name))
                    goto fail;
            } else {
                if (!SSL_set_tlsext_host_name(t->ssl, server_name) ||
                    !SSL_set1_host(t->ssl, server_name))
                    goto fail;
                SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            }
        }
        rc = XS_ENOMEM;
        /* SSL_set_alpn_protos() returns 0 on success. */
        if (ctx->alpn && SSL_set_alpn_protos(t->ssl, alpn_wire, ALPN_WIRE_LEN) != 0)
            goto fail;
    }
    *out = t;
    return 0;
fail:
    ERR_clear_error();
    BIO_free(bio);
    xs_tls_free(t);
    return rc;
}

void xs_tls_free(xs_tls *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    xs_free(t->server_name);
    xs_free(t->default_name);
    xs_free(t->local_ip);
    xs_free(t->sni);
    xs_free(t->cert_name);
    xs_free(t->resume_key);
    xs_free(t->peer_subject);
    xs_free(t->alpn_copy);
    xs_free(t->verify);
    xs_free(t->in);
    xs_free(t->out);
    if (!t->err_static)
        xs_free(t->err);
    if (t->early != NULL) {
        OPENSSL_cleanse(t->early, t->early_cap);
        xs_free(t->early);
    }
    ctx_unref(t->ctx);
    xs_free(t);
}

int xs_tls_set_default_name(xs_tls *t, const char *name)
{
    char *copy;

    if (!t->ctx->server || t->established || name == NULL)
        return XS_EINVAL;
    copy = xs_strdup(name);
    if (copy == NULL)
        return XS_ENOMEM;
    xs_free(t->default_name);
    t->default_name = copy;
    return 0;
}

int xs_tls_set_local_ip(xs_tls *t, const char *ip)
{
    unsigned char buf[16];
    char *copy;

    if (!t->ctx->server || t->started || ip == NULL ||
        (inet_pton(AF_INET, ip, buf) != 1 && inet_pton(AF_INET6, ip, buf) != 1))
        return XS_EINVAL;
    copy = xs_strdup(ip);
    if (copy == NULL)
        return XS_ENOMEM;
    xs_free(t->local_ip);
    t->local_ip = copy;
    return 0;
}

int xs_tls_set_alpn(xs_tls *t, int on)
{
    if (t->ctx->server || t->started)
        return XS_EINVAL;
    if (SSL_set_alpn_protos(t->ssl, on ? alpn_wire : NULL, on ? ALPN_WIRE_LEN : 0) != 0) {
        ERR_clear_error();
        return XS_ENOMEM;
    }
    return 0;
}

int xs_tls_set_resume_key(xs_tls *t, const char *key)
{
    xs_tls_ctx *ctx = t->ctx;
    char *copy;

    if (ctx->server || t->started || key == NULL)
        return XS_EINVAL;
    copy = xs_strdup(key);
    if (copy == NULL)
        return XS_ENOMEM;
    xs_free(t->resume_key);
    t->resume_key = copy;
    for (size_t i = 0; i < ctx->n_sessions; i++) {
        if (strcmp(ctx->sessions[i].key, key) != 0)
            continue;
        ctx->sessions[i].used = ++ctx->clock;
        if (SSL_set_session(t->ssl, ctx->sessions[i].sess) != 1) {
            ERR_clear_error(); /* a full handshake will do */
        }
        break;
    }
    return 0;
}

/* Records why the connection failed and makes the failure sticky. Returns XS_ETLS. */
static int fail(xs_tls *t, const char *what)
{
    t->failed = 1;
    if (t->err_set) {
        ERR_clear_error();
    } else {
        snprintf(err_buf(t), TLS_ERR_LEN, "%s", what);
        if (!append_openssl_errors(err_buf(t), TLS_ERR_LEN))
            snprintf(t->err + strlen(t->err), TLS_ERR_LEN - strlen(t->err),
                     ": no details from OpenSSL");
    }
    if (!t->ctx->server) {
        long v = SSL_get_verify_result(t->ssl);
        if (v != X509_V_OK) {
            size_t len = strlen(err_buf(t));
            snprintf(t->err + len, TLS_ERR_LEN - len, " (%s)", X509_verify_cert_error_string(v));
        }
    }
    if (t->resume_key != NULL)
        forget_session(t->ctx, t->resume_key);
    t->err_set = 1;
    return XS_ETLS;
}

/* Encrypts everything or fails. With our buffer as sink, SSL_write_ex() never stops half-way
 * for lack of room. */
static int write_all(xs_tls *t, const unsigned char *p, size_t len)
{
    ERR_clear_error();
    while (len > 0) {
        size_t n = 0;
        if (SSL_write_ex(t->ssl, p, len, &n) != 1)
            return fail(t, "TLS write failed");
        p += n;
        len -= n;
    }
    return 0;
}

/* Frees an empty ciphertext buffer. */
static void release_buffer(unsigned char **buf, size_t *off, size_t *len, size_t *cap)
{
    if (*off != *len)
        return;
    xs_free(*buf);
    *buf = NULL;
    *off = *len = *cap = 0;
}

/* Out of memory a snapshot is left out: the logs then say less, nothing else changes. */
static void snapshot_info(xs_tls *t)
{
    const unsigned char *alpn = NULL;
    unsigned int alpn_len = 0;

    SSL_get0_alpn_selected(t->ssl, &alpn, &alpn_len);
    if (alpn != NULL && alpn_len == sizeof(ALPN_NAME) - 1 &&
        memcmp(alpn, ALPN_NAME, alpn_len) == 0) {
        t->alpn = ALPN_NAME; /* the only protocol either role negotiates */
    } else if (alpn != NULL && alpn_len < 32) {
        t->alpn_copy = xs_strndup((const char *)alpn, alpn_len);
        t->alpn = t->alpn_copy;
    }
    if (!t->ctx->server) {
        long v = SSL_get_verify_result(t->ssl);
        X509 *peer = SSL_get0_peer_certificate(t->ssl);
        char verify[160];
        if (v == X509_V_OK)
            snprintf(verify, sizeof(verify), "ok");
        else
            snprintf(verify, sizeof(verify), "%s%s", t->ctx->insecure ? "insecure: " : "",
                     X509_verify_cert_error_string(v));
        t->verify = xs_strdup(verify);
        if (peer != NULL) {
            BIO *bio = BIO_new(BIO_s_mem());
            char *data = NULL;
            long len;
            if (bio != NULL &&
                X509_NAME_print_ex(bio, X509_get_subject_name(peer), 0,
                                   XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0 &&
                (len = BIO_get_mem_data(bio, &data)) >= 0 &&
                (t->peer_subject = xs_malloc((size_t)len + 1)) != NULL) {
                /* The BIO's data is not NUL-terminated: copy exactly len bytes. */
                memcpy(t->peer_subject, data, (size_t)len);
                t->peer_subject[len] = '\0';
            }
            BIO_free(bio);
        }
    }
}

static int on_established(xs_tls *t)
{
    int rc = 0;

    t->established = 1;
    snapshot_info(t);
    /* Only the certificate needed it; idle connections must stay small. */
    xs_free(t->local_ip);
    t->local_ip = NULL;
    if (t->early_len > 0 && !t->shut)
        rc = write_all(t, t->early, t->early_len);
    if (t->early != NULL) {
        OPENSSL_cleanse(t->early, t->early_cap);
        xs_free(t->early);
        t->early = NULL;
        t->early_len = 0;
        t->early_cap = 0;
    }
    ERR_clear_error();
    return rc;
}

int xs_tls_handshake(xs_tls *t)
{
    int r;

    if (t->failed)
        return XS_ETLS;
    if (t->established)
        return 0;
    if (t->shut)
        return XS_ECLOSED;
    t->started = 1;
    ERR_clear_error();
    r = SSL_do_handshake(t->ssl);
    if (r == 1)
        return on_established(t);
    switch (SSL_get_error(t->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return 0;
    default:
        return fail(t, "TLS handshake failed");
    }
}

int xs_tls_established(const xs_tls *t)
{
    return t->established;
}

int xs_tls_feed_cipher(xs_tls *t, const void *buf, size_t len)
{
    if (t->failed)
        return XS_ETLS;
    if (len > XS_TLS_MAX_CIPHER_IN || t->in_len - t->in_off > XS_TLS_MAX_CIPHER_IN - len)
        return XS_ETOOBIG;
    if (len == 0)
        return 0;
    if (reserve(&t->in, &t->in_off, &t->in_len, &t->in_cap, len) < 0)
        return XS_ENOMEM;
    memcpy(t->in + t->in_len, buf, len);
    t->in_len += len;
    return 0;
}

int xs_tls_read_plain(xs_tls *t, void *buf, size_t cap, size_t *got)
{
    size_t n = 0;
    int r;
    int rc;

    *got = 0;
    if (t->failed)
        return XS_ETLS;
    if (t->peer_closed)
        return XS_ECLOSED;
    if (!t->established) {
        rc = xs_tls_handshake(t);
        if (rc != 0 || !t->established)
            return rc;
    }
    if (cap == 0)
        return 0;
    ERR_clear_error();
    r = SSL_read_ex(t->ssl, buf, cap, &n);
    if (r == 1) {
        *got = n;
        return 0;
    }
    switch (SSL_get_error(t->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        t->peer_closed = 1;
        return XS_ECLOSED;
    default:
        return fail(t, "TLS read failed");
    }
}

int xs_tls_write_plain(xs_tls *t, const void *buf, size_t len)
{
    if (t->failed)
        return XS_ETLS;
    if (t->shut)
        return XS_ECLOSED;
    if (len == 0)
        return 0;
    if (t->established)
        return write_all(t, buf, len);

    /* Held until the handshake finishes; see on_established(). */
    if (len > XS_TLS_MAX_EARLY_PLAIN - t->early_len)
        return XS_ETOOBIG;
    if (t->early_len + len > t->early_cap) {
        size_t cap = t->early_cap != 0 ? t->early_cap : 4096;
        unsigned char *p;
        while (cap < t->early_len + len)
            cap *= 2;
        if (cap > XS_TLS_MAX_EARLY_PLAIN)
            cap = XS_TLS_MAX_EARLY_PLAIN;
        p = xs_malloc(cap);
        if (p == NULL)
            return XS_ENOMEM;
        if (t->early != NULL) {
            memcpy(p, t->early, t->early_len);
            OPENSSL_cleanse(t->early, t->early_cap);
            xs_free(t->early);
        }
        t->early = p;
        t->early_cap = cap;
    }
    memcpy(t->early + t->early_len, buf, len);
    t->early_len += len;
    return 0;
}

size_t xs_tls_cipher_pending(const xs_tls *t)
{
    return t->out_len - t->out_off;
}

int xs_tls_take_cipher(xs_tls *t, void *buf, size_t cap, size_t *got)
{
    size_t n = t->out_len - t->out_off;

    if (n > cap)
        n = cap;
    *got = n;
    if (n == 0)
        return 0;
    memcpy(buf, t->out + t->out_off, n);
    t->out_off += n;
    if (t->out_off == t->out_len)
        t->out_off = t->out_len = 0;
    return 0;
}

int xs_tls_trim(xs_tls *t)
{
    if (t == NULL || !t->established || t->failed)
        return 0;
    release_buffer(&t->in, &t->in_off, &t->in_len, &t->in_cap);
    release_buffer(&t->out, &t->out_off, &t->out_len, &t->out_cap);
    return SSL_free_buffers(t->ssl);
}

int xs_tls_shutdown(xs_tls *t)
{
    int r;

    if (t->failed)
        return XS_ETLS;
    if (t->shut)
        return 0;
    t->shut = 1;
    if (!t->established)
        return 0;
    ERR_clear_error();
    r = SSL_shutdown(t->ssl);
    if (r >= 0)
        return 0;
    switch (SSL_get_error(t->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return 0;
    default:
        return fail(t, "TLS shutdown failed");
    }
}

void xs_tls_get_info(const xs_tls *t, xs_tls_info *info)
{
    memset(info, 0, sizeof(*info));
    if (t->established) {
        info->version = SSL_get_version(t->ssl);
        info->cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(t->ssl));
        info->resumed = SSL_session_reused(t->ssl) == 1;
    }
    if (t->ctx->server) {
        info->sni = t->sni;
        info->cert_name = t->cert_name;
    } else {
        if (t->server_name != NULL && !is_ip_literal(t->server_name))
            info->sni = t->server_name;
        if (t->established)
            info->verify = t->verify;
        info->peer_subject = t->peer_subject;
    }
    info->alpn = t->alpn;
}

const char *xs_tls_last_error(const xs_tls *t)
{
    return t->err != NULL ? t->err : "";
}
