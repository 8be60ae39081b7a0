/* The TLS engine: OpenSSL driven through memory, no sockets. This file is each connection's side;
 * the contexts it is made from (certificates, verification, the session cache) are tls_ctx.c's.
 *
 * Each connection's SSL reads and writes through one BIO of ours (xs_tls_buffer_bio_method()): it
 * reads from `in` (what xs_tls_feed_cipher() was given) and writes to `out` (what
 * xs_tls_take_cipher() hands out), two buffers of the xs_tls. An empty `in` reads as "retry later",
 * never as the end of the stream. The peer's end of stream is its close_notify; a TCP close without
 * one is the caller's to judge. One BIO over our own buffers rather than two BIO_s_mem: each of
 * those is a BIO, a lock and three small blocks, which with thousands of idle connections adds up.
 *
 * Failures are sticky: after the first XS_ETLS every call returns XS_ETLS again, and
 * xs_tls_last_error() keeps the first reason.
 */

#include "proxy/tls.h"

#include <arpa/inet.h>
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

/* ALPN protocol list in wire format: a length byte, then the name (XEP-0368). */
static const unsigned char alpn_wire[] = "\x0bxmpp-client";
#define ALPN_WIRE_LEN (sizeof(alpn_wire) - 1)

/* The buffer for the failure text, allocated when the first is written: most connections never
 * fail, and idle ones must stay small. Out of memory: a shared buffer (the text may then be
 * another connection's, never a crash). */
char *xs_tls_err_buf(xs_tls *t)
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

BIO_METHOD *xs_tls_buffer_bio_method(void)
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
int xs_tls_append_openssl_errors(char *buf, size_t cap)
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
static int is_ip_literal(const char *name)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
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
    xs_tls_ctx_unref(t->ctx);
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
        snprintf(xs_tls_err_buf(t), TLS_ERR_LEN, "%s", what);
        if (!xs_tls_append_openssl_errors(xs_tls_err_buf(t), TLS_ERR_LEN))
            snprintf(t->err + strlen(t->err), TLS_ERR_LEN - strlen(t->err),
                     ": no details from OpenSSL");
    }
    if (!t->ctx->server) {
        long v = SSL_get_verify_result(t->ssl);
        if (v != X509_V_OK) {
            size_t len = strlen(xs_tls_err_buf(t));
            snprintf(t->err + len, TLS_ERR_LEN - len, " (%s)", X509_verify_cert_error_string(v));
        }
    }
    if (t->resume_key != NULL)
        xs_tls_forget_session(t->ctx, t->resume_key);
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
