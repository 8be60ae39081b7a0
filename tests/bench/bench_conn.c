/* A connection of the benchmark's peers. See bench_conn.h. */
#include "bench_conn.h"

#include <stdio.h>
#include <string.h>

#define READ_BUF (256u * 1024u)
#define RECORD 16384u
#define IN_MAX (4u << 20)
#define OUT_MAX (256u << 20)
#define KEEP_MAX (64u << 10) /* emptied buffers up to this size are freed: idle stays small */

/* Every read lands here and is handed on before the next read: one thread per process. */
static char rbuf[READ_BUF];

static void flush(bn_conn *c);
static void maybe_shutdown(bn_conn *c);

static void on_close_cb(uv_handle_t *h)
{
    bn_conn *c = h->data;
    bn_tls_free(c->tls);
    c->tls = NULL;
    bn_buf_free(&c->in);
    bn_buf_free(&c->out);
    bn_buf_free(&c->inflight);
    c->ops->on_closed(c);
}

void bn_conn_close(bn_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, on_close_cb);
}

/* The connection failed: the owner hears of it once, unless it is already closing. */
static void fail(bn_conn *c, int status, const char *what)
{
    if (c->closing)
        return;
    if (c->err[0] == 0)
        snprintf(c->err, sizeof(c->err), "%s", what);
    c->eof = 1;
    if (c->want_shut) {
        bn_conn_close(c);
        return;
    }
    c->ops->on_eof(c, status);
}

int bn_conn_init(uv_loop_t *loop, bn_conn *c, const bn_conn_ops *ops, void *user)
{
    memset(c, 0, sizeof(*c));
    c->ops = ops;
    c->user = user;
    bn_buf_init(&c->in, IN_MAX);
    bn_buf_init(&c->out, OUT_MAX);
    bn_buf_init(&c->inflight, OUT_MAX);
    int rc = uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    return rc;
}

/* Moves the ciphertext OpenSSL produced to the write queue. */
static int take_cipher(bn_conn *c)
{
    size_t n;
    while (c->tls != NULL && (n = bn_tls_pending(c->tls)) > 0) {
        int rc = bn_buf_reserve(&c->out, n);
        if (rc < 0)
            return rc;
        c->out.len += bn_tls_take(c->tls, c->out.data + c->out.len, n);
    }
    return 0;
}

static void on_write(uv_write_t *req, int status)
{
    bn_conn *c = req->data;
    c->writing = 0;
    c->inflight.len = 0;
    if (c->inflight.cap <= KEEP_MAX)
        bn_buf_free(&c->inflight);
    if (status < 0) {
        if (status != UV_ECANCELED) {
            char m[128];
            snprintf(m, sizeof(m), "write failed: %s", uv_strerror(status));
            fail(c, status, m);
        }
        return;
    }
    flush(c);
    maybe_shutdown(c);
    if (!c->closing && c->ops->on_drain != NULL)
        c->ops->on_drain(c);
}

static void flush(bn_conn *c)
{
    if (c->writing || c->out.len == 0 || c->closing)
        return;
    bn_buf t = c->inflight;
    c->inflight = c->out;
    c->out = t;
    c->out.len = 0;
    uv_buf_t b = uv_buf_init(c->inflight.data, (unsigned)c->inflight.len);
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        c->inflight.len = 0;
        char m[128];
        snprintf(m, sizeof(m), "write failed: %s", uv_strerror(rc));
        fail(c, rc, m);
        return;
    }
    c->writing = 1;
}

int bn_conn_write(bn_conn *c, const void *p, size_t n)
{
    int rc;
    if (c->closing || c->want_shut)
        return BN_ECLOSED;
    if (c->tls_on) {
        rc = bn_tls_write(c->tls, p, n);
        if (rc == 0)
            rc = take_cipher(c);
    } else {
        rc = bn_buf_append(&c->out, p, n);
    }
    if (rc < 0)
        return rc;
    flush(c);
    return 0;
}

size_t bn_conn_queued(const bn_conn *c)
{
    return c->out.len + c->inflight.len;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    bn_conn *c = req->data;
    if (status < 0 || c->eof)
        bn_conn_close(c);
}

static void maybe_shutdown(bn_conn *c)
{
    if (!c->want_shut || c->shut_sent || c->closing || c->writing || c->out.len > 0)
        return;
    c->shut_sent = 1;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        bn_conn_close(c);
}

void bn_conn_finish(bn_conn *c)
{
    if (c->want_shut || c->closing)
        return;
    c->want_shut = 1;
    if (c->eof && !c->writing && c->out.len == 0) {
        bn_conn_close(c);
        return;
    }
    if (c->tls_up) {
        bn_tls_shutdown(c->tls);
        (void)take_cipher(c);
        flush(c);
    }
    maybe_shutdown(c);
}

/* Hands the plaintext in c->in to the owner. When the owner switched to TLS meanwhile, what it
 * left is the start of the handshake. */
static void deliver(bn_conn *c)
{
    int was_tls = c->tls_on;
    size_t used = c->ops->on_data(c, c->in.data, c->in.len);
    if (c->closing)
        return;
    bn_buf_consume(&c->in, used);
    if (!was_tls && c->tls_on && c->in.len > 0) {
        (void)bn_tls_feed(c->tls, c->in.data, c->in.len);
        c->in.len = 0;
    }
    if (c->in.len == 0 && c->in.cap <= KEEP_MAX)
        bn_buf_free(&c->in);
}

static void tls_input(bn_conn *c, const char *p, size_t n)
{
    if (bn_tls_feed(c->tls, p, n) < 0) {
        fail(c, BN_ENOMEM, "out of memory");
        return;
    }
    if (!c->tls_up) {
        int rc = bn_tls_handshake(c->tls);
        if (take_cipher(c) < 0) {
            fail(c, BN_ENOMEM, "out of memory");
            return;
        }
        flush(c);
        if (rc < 0) {
            fail(c, rc, bn_tls_error(c->tls));
            return;
        }
        if (rc == 0)
            return;
        c->tls_up = 1;
        c->ops->on_tls_up(c);
        if (c->closing)
            return;
    }
    size_t before = c->in.len;
    for (;;) {
        size_t got = 0;
        int rc = bn_buf_reserve(&c->in, RECORD);
        if (rc < 0) {
            fail(c, rc, "input buffer full");
            return;
        }
        rc = bn_tls_read(c->tls, c->in.data + c->in.len, RECORD, &got);
        c->in.len += got;
        if (rc == BN_ECLOSED)
            break; /* close_notify: the TCP FIN follows */
        if (rc < 0) {
            fail(c, rc, bn_tls_error(c->tls));
            return;
        }
        if (got == 0)
            break;
    }
    /* Session tickets and alerts may need to go out. */
    if (bn_tls_pending(c->tls) > 0 && take_cipher(c) == 0)
        flush(c);
    if (c->in.len > before)
        deliver(c);
    else if (c->in.len == 0 && c->in.cap <= KEEP_MAX)
        bn_buf_free(&c->in);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h, (void)suggested;
    buf->base = rbuf;
    buf->len = READ_BUF;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    bn_conn *c = s->data;
    if (c->closing)
        return;
    if (nread > 0) {
        if (c->tls_on) {
            tls_input(c, buf->base, (size_t)nread);
        } else if (bn_buf_append(&c->in, buf->base, (size_t)nread) < 0) {
            fail(c, BN_ETOOBIG, "input buffer full");
        } else {
            deliver(c);
        }
        return;
    }
    if (nread == 0)
        return;
    uv_read_stop(s);
    c->reading = 0;
    c->eof = 1;
    if (c->want_shut) {
        if (c->shut_sent || !c->writing)
            bn_conn_close(c);
        return;
    }
    if (nread == UV_EOF) {
        c->ops->on_eof(c, 0);
    } else {
        char m[128];
        snprintf(m, sizeof(m), "read failed: %s", uv_strerror((int)nread));
        fail(c, (int)nread, m);
    }
}

static int start_reading(bn_conn *c)
{
    c->reading = 1;
    return uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_connect_cb(uv_connect_t *req, int status)
{
    bn_conn *c = req->data;
    if (c->closing)
        return;
    if (status == 0) {
        uv_tcp_nodelay(&c->tcp, 1);
        status = start_reading(c);
    }
    if (status < 0)
        snprintf(c->err, sizeof(c->err), "connect failed: %s", uv_strerror(status));
    c->ops->on_connect(c, status);
    if (status < 0)
        bn_conn_close(c);
}

int bn_conn_connect(bn_conn *c, const struct sockaddr *addr)
{
    c->creq.data = c;
    return uv_tcp_connect(&c->creq, &c->tcp, addr, on_connect_cb);
}

int bn_conn_accept(uv_stream_t *server, bn_conn *c)
{
    int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc < 0)
        return rc;
    uv_tcp_nodelay(&c->tcp, 1);
    return start_reading(c);
}

int bn_conn_start_tls(bn_conn *c, struct ssl_ctx_st *ctx, int server, const char *name)
{
    c->tls = bn_tls_new(ctx, server, name);
    if (c->tls == NULL)
        return BN_ENOMEM;
    c->tls_on = 1;
    if (!server) {
        if (bn_tls_handshake(c->tls) < 0)
            return BN_ETLS;
        int rc = take_cipher(c);
        if (rc < 0)
            return rc;
        flush(c);
    }
    return 0;
}
