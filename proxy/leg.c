/* A leg: its socket, TLS engine, output queue, delayed chunks and close sequence. See leg.h. */
#include "proxy/leg.h"

#include "inspect/error.h"
#include "proxy/conn.h"
#include "proxy/proxy_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Plaintext gathered for a TLS leg before it is encrypted anyway (four full TLS records). */
#define PLAIN_BATCH 65536

static const char *const state_names[] = {
    [XS_LEG_IDLE] = "idle",         [XS_LEG_CONNECTING] = "connecting", [XS_LEG_OPEN] = "open",
    [XS_LEG_DRAINING] = "draining", [XS_LEG_SHUTTING] = "shutting",     [XS_LEG_SHUT] = "shut",
    [XS_LEG_CLOSING] = "closing",   [XS_LEG_CLOSED] = "closed",
};

/* Debug output is asked for with XMPPSCOPE_DEBUG=leg (or "all"); read once. */
static bool debug_legs(void)
{
    static int on = -1;
    if (on < 0) {
        const char *d = getenv("XMPPSCOPE_DEBUG");
        on = d != NULL && (strstr(d, "leg") != NULL || strcmp(d, "all") == 0);
    }
    return on != 0;
}

void xs_leg_set_state(xs_leg *l, xs_leg_state to)
{
    if (l->state == to)
        return;
    if (debug_legs())
        fprintf(stderr, "xmppscope: debug: session %s, %s leg: %s -> %s\n",
                l->c->s != NULL ? xs_session_id(l->c->s) : "-",
                l->side == XS_CLIENT ? "client" : "server", state_names[l->state], state_names[to]);
    l->state = to;
}

void xs_leg_init(xs_leg *l, xs_conn *c, xs_side side)
{
    memset(l, 0, sizeof(*l));
    l->c = c;
    l->side = side;
    l->state = XS_LEG_IDLE;
    l->tcp.data = l;
}

/* ---- buffers -------------------------------------------------------------------------------- */

static int bytes_reserve(xs_leg_bytes *b, size_t n)
{
    if (b->len + n <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap < b->len + n)
        ncap *= 2;
    char *nd = realloc(b->data, ncap);
    if (nd == NULL)
        return XS_ENOMEM;
    b->data = nd;
    b->cap = ncap;
    return 0;
}

static void bytes_free(xs_leg_bytes *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

size_t xs_leg_queued(const xs_leg *l)
{
    return l->plain.len + l->out.len + l->inflight.len +
           (l->tls ? xs_tls_cipher_pending(l->tls) : 0);
}

/* ---- the handle ----------------------------------------------------------------------------- */

static void on_leg_closed(uv_handle_t *h)
{
    xs_leg *l = h->data;
    xs_leg_set_state(l, XS_LEG_CLOSED);
    xs_conn_handle_gone(l->c);
}

int xs_leg_open_handle(xs_leg *l, uv_loop_t *loop)
{
    int rc = uv_tcp_init(loop, &l->tcp);
    if (rc < 0)
        return rc;
    l->tcp.data = l;
    l->c->handles++;
    xs_leg_set_state(l, XS_LEG_CONNECTING);
    return 0;
}

void xs_leg_connected_now(xs_leg *l)
{
    xs_leg_set_state(l, XS_LEG_OPEN);
    uv_tcp_nodelay(&l->tcp, 1);
}

void xs_leg_close_handle(xs_leg *l)
{
    if (!xs_leg_is_open(l))
        return;
    xs_leg_set_state(l, XS_LEG_CLOSING);
    uv_close((uv_handle_t *)&l->tcp, on_leg_closed);
}

void xs_leg_request_close(xs_leg *l)
{
    if (l->state == XS_LEG_IDLE)
        xs_leg_set_state(l, XS_LEG_CLOSED); /* never opened: nothing to close */
    else if (l->state == XS_LEG_CONNECTING)
        xs_leg_close_handle(l); /* still connecting: nothing to say politely */
    else if (l->state == XS_LEG_OPEN)
        xs_leg_set_state(l, XS_LEG_DRAINING);
}

/* ---- writing -------------------------------------------------------------------------------- */

void xs_leg_drain_cipher(xs_leg *l)
{
    size_t n;
    while (l->tls != NULL && (n = xs_tls_cipher_pending(l->tls)) > 0) {
        size_t got = 0;
        if (bytes_reserve(&l->out, n) < 0)
            return;
        xs_tls_take_cipher(l->tls, l->out.data + l->out.len, n, &got);
        l->out.len += got;
        if (got == 0)
            return;
    }
}

/* Encrypts the plaintext gathered for a TLS leg: the stanzas forwarded during one callback go
 * into as few TLS records as their size allows (one SSL_write, not one per stanza). */
static void leg_encrypt(xs_leg *l)
{
    if (l->plain.len == 0)
        return;
    int rc = xs_tls_write_plain(l->tls, l->plain.data, l->plain.len);
    l->plain.len = 0;
    xs_leg_drain_cipher(l);
    if (rc < 0 && !xs_session_closing(l->c->s)) {
        char cause[400];
        snprintf(cause, sizeof(cause), "cannot send to the %s over TLS: %s",
                 l->side == XS_CLIENT ? "client" : "server", xs_strerror(rc));
        xs_session_on_closed(l->c->s, l->side, rc, cause);
    }
}

static void on_write(uv_write_t *req, int status)
{
    xs_leg *l = req->data;
    xs_conn *c = l->c;
    l->flags &= ~XS_LEG_WRITING;
    l->inflight.len = 0;
    if (l->out.len == 0) {
        /* Nothing more to send: give the buffers back, idle sessions must stay small. */
        bytes_free(&l->inflight);
        bytes_free(&l->out);
        if (l->plain.len == 0)
            bytes_free(&l->plain);
    } else if (l->inflight.cap > 4 * XS_LEG_READ_BUF) {
        bytes_free(&l->inflight);
    }
    if (status < 0 && status != UV_ECANCELED && !xs_session_closing(c->s))
        xs_session_on_closed(c->s, l->side, status, uv_strerror(status));
    xs_conn_settle(c);
}

void xs_leg_flush(xs_leg *l)
{
    leg_encrypt(l);
    if ((l->flags & XS_LEG_WRITING) || l->out.len == 0 || !xs_leg_connected(l))
        return;
    if (l->wreq == NULL && (l->wreq = malloc(sizeof(*l->wreq))) == NULL)
        return; /* tried again at the end of the next callback */
    xs_leg_bytes t = l->inflight;
    l->inflight = l->out;
    l->out = t;
    l->out.len = 0;
    uv_buf_t b = uv_buf_init(l->inflight.data, (unsigned)l->inflight.len);
    l->wreq->data = l;
    int rc = uv_write(l->wreq, (uv_stream_t *)&l->tcp, &b, 1, on_write);
    if (rc < 0) {
        l->inflight.len = 0;
        l->flags |= XS_LEG_EOF;
        if (!xs_session_closing(l->c->s))
            xs_session_on_closed(l->c->s, l->side, rc, uv_strerror(rc));
        return;
    }
    l->flags |= XS_LEG_WRITING;
}

int xs_leg_write(xs_leg *l, const char *data, size_t len)
{
    if (l->state >= XS_LEG_SHUT)
        return 0; /* nothing more goes out on a closed leg */
    xs_trim_touch(l, false);
    if (xs_leg_tls_on(l)) {
        /* Gathered until the end of the callback (xs_leg_flush()), up to a bound. */
        if (l->plain.len + len > PLAIN_BATCH)
            leg_encrypt(l);
        if (len >= PLAIN_BATCH) {
            int rc = xs_tls_write_plain(l->tls, data, len);
            xs_leg_drain_cipher(l);
            return rc;
        }
        if (bytes_reserve(&l->plain, len) < 0)
            return XS_ENOMEM;
        memcpy(l->plain.data + l->plain.len, data, len);
        l->plain.len += len;
        return 0;
    }
    if (bytes_reserve(&l->out, len) < 0)
        return XS_ENOMEM;
    memcpy(l->out.data + l->out.len, data, len);
    l->out.len += len;
    return 0;
}

/* ---- delayed chunks ------------------------------------------------------------------------- */

/* Writes every delayed chunk whose time has come (all of them when `all`). */
static void delay_release(xs_leg *l, bool all)
{
    uint64_t now = uv_now(l->c->p->loop);
    while (l->dq_head != NULL && (all || l->dq_head->at <= now)) {
        xs_leg_delayed *d = l->dq_head;
        l->dq_head = d->next;
        if (l->dq_head == NULL)
            l->dq_tail = NULL;
        (void)xs_leg_write(l, d->data, d->len);
        free(d);
    }
}

static void on_delay_timer(uv_timer_t *t)
{
    xs_leg *l = t->data;
    delay_release(l, false);
    if (l->dq_head != NULL) {
        uint64_t now = uv_now(l->c->p->loop);
        uv_timer_start(l->dtimer, on_delay_timer, l->dq_head->at > now ? l->dq_head->at - now : 0,
                       0);
    }
    xs_conn_settle(l->c);
}

int xs_leg_delay(xs_leg *l, const char *data, size_t len, uint64_t at)
{
    if (l->state >= XS_LEG_SHUT)
        return 0;
    xs_leg_delayed *d = malloc(sizeof(*d) + len);
    if (d == NULL)
        return XS_ENOMEM;
    d->next = NULL;
    d->at = l->dq_tail != NULL && l->dq_tail->at > at ? l->dq_tail->at : at;
    d->len = len;
    memcpy(d->data, data, len);
    if (l->dtimer == NULL) {
        uv_timer_t *t = malloc(sizeof(*t));
        if (t == NULL || uv_timer_init(l->c->p->loop, t) < 0) {
            free(t);
            free(d);
            return XS_ENOMEM;
        }
        t->data = l;
        l->dtimer = t;
        l->c->handles++;
    }
    bool was_empty = l->dq_head == NULL;
    if (l->dq_tail != NULL)
        l->dq_tail->next = d;
    else
        l->dq_head = d;
    l->dq_tail = d;
    if (was_empty) {
        uint64_t now = uv_now(l->c->p->loop);
        uv_timer_start(l->dtimer, on_delay_timer, d->at > now ? d->at - now : 0, 0);
    }
    return 0;
}

static void on_delay_timer_closed(uv_handle_t *h)
{
    xs_leg *l = h->data;
    free(h);
    xs_conn_handle_gone(l->c);
}

void xs_leg_close_delay_timer(xs_leg *l)
{
    if (l->dtimer == NULL)
        return;
    uv_close((uv_handle_t *)l->dtimer, on_delay_timer_closed);
    l->dtimer = NULL;
}

/* ---- reading -------------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    xs_leg *l = h->data;
    buf->base = l->c->p->rbuf;
    buf->len = XS_LEG_READ_BUF;
}

static void describe_tls(xs_leg *l, char *out, size_t cap)
{
    xs_tls_info info;
    xs_tls_get_info(l->tls, &info);
    if (l->side == XS_CLIENT)
        snprintf(out, cap, "%s %s, SNI %s, certificate for %s%s%s%s", info.version, info.cipher,
                 info.sni ? info.sni : "(none)", info.cert_name ? info.cert_name : "(fixed --cert)",
                 info.alpn ? ", ALPN " : "", info.alpn ? info.alpn : "",
                 info.resumed ? ", resumed" : "");
    else
        snprintf(out, cap, "%s %s, server certificate %s (%s)%s", info.version, info.cipher,
                 info.peer_subject ? info.peer_subject : "?", info.verify ? info.verify : "?",
                 info.resumed ? ", session resumed" : "");
}

static void tls_failed(xs_leg *l)
{
    char cause[400];
    snprintf(cause, sizeof(cause), "TLS with the %s failed: %s",
             l->side == XS_CLIENT ? "client" : "server", xs_tls_last_error(l->tls));
    xs_leg_drain_cipher(l); /* an alert for the peer, if any */
    if (!xs_session_closing(l->c->s))
        xs_session_on_closed(l->c->s, l->side, XS_ETLS, cause);
}

/* Drives the handshake on. Returns 1 when it is done (or was), 0 when it needs more bytes, -1
 * when it failed (said to the session). */
static int tls_handshake(xs_leg *l)
{
    if (l->tls_state >= XS_LEG_TLS_UP)
        return 1;
    int rc = xs_tls_handshake(l->tls);
    xs_leg_drain_cipher(l);
    if (rc < 0) {
        tls_failed(l);
        return -1;
    }
    if (!xs_tls_established(l->tls))
        return 0;
    l->tls_state = XS_LEG_TLS_UP;
    xs_tls_info info;
    xs_tls_get_info(l->tls, &info);
    char desc[400];
    describe_tls(l, desc, sizeof(desc));
    xs_session_on_tls_up(l->c->s, l->side, info.sni, desc);
    return 1;
}

static void tls_input(xs_leg *l, const char *data, size_t n)
{
    xs_conn *c = l->c;
    char *pbuf = c->p->pbuf;
    int rc = xs_tls_feed_cipher(l->tls, data, n);
    if (rc < 0) {
        tls_failed(l);
        return;
    }
    for (;;) {
        if (xs_leg_close_asked(l) || tls_handshake(l) <= 0)
            return;
        /* Every record available, up to the buffer's size, goes to the parser in one piece:
         * fewer stanzas cut between reads (those take libxml2's slower path). */
        size_t got = 0, total = 0;
        do {
            rc = xs_tls_read_plain(l->tls, pbuf + total, XS_LEG_READ_BUF - total, &got);
            total += rc == 0 ? got : 0;
        } while (rc == 0 && got > 0 && total < XS_LEG_READ_BUF);
        xs_leg_drain_cipher(l);
        if (total > 0) {
            (void)xs_session_on_data(c->s, l->side, pbuf, total);
            if (rc == 0)
                continue;
            if (xs_leg_close_asked(l) || xs_session_closing(c->s))
                return;
        }
        if (rc == XS_ECLOSED) {
            if (!xs_session_closing(c->s))
                xs_session_on_closed(c->s, l->side, 0, "TLS close_notify");
            return;
        }
        if (rc < 0)
            tls_failed(l);
        return; /* nothing more to read */
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    xs_leg *l = stream->data;
    xs_conn *c = l->c;
    if (nread > 0) {
        size_t n = (size_t)nread;
        xs_trim_touch(l, true);
        if (xs_leg_close_asked(l) || xs_session_closing(c->s)) {
            /* Closing: what the peer still sends is read and dropped, so that our last words
             * are not destroyed by a reset. */
        } else if (!xs_leg_tls_on(l) || xs_session_before_tls(c->s, l->side)) {
            /* Plaintext, or what comes between STARTTLS and the first TLS record (whitespace
             * that ends the plaintext stream, or injected plaintext the session refuses). */
            size_t used = xs_session_on_data(c->s, l->side, buf->base, n);
            if (used < n && xs_leg_tls_on(l))
                tls_input(l, buf->base + used, n - used);
        } else {
            tls_input(l, buf->base, n);
        }
    } else if (nread < 0) {
        l->flags |= XS_LEG_EOF;
        uv_read_stop(stream);
        if (!xs_leg_close_asked(l) && !xs_session_closing(c->s)) {
            if (nread == UV_EOF)
                xs_session_on_closed(c->s, l->side, 0, "connection closed (EOF)");
            else
                xs_session_on_closed(c->s, l->side, (int)nread, uv_strerror((int)nread));
        }
    }
    xs_conn_settle(c);
}

void xs_leg_start_reading(xs_leg *l)
{
    if (!xs_leg_connected(l) || (l->flags & XS_LEG_EOF))
        return;
    uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_read);
}

/* ---- closing -------------------------------------------------------------------------------- */

static void on_shutdown(uv_shutdown_t *req, int status)
{
    xs_leg *l = req->data;
    xs_conn *c = l->c;
    free(req);
    if (l->state == XS_LEG_SHUTTING)
        xs_leg_set_state(l, XS_LEG_SHUT);
    if ((l->flags & XS_LEG_EOF) || status < 0)
        xs_leg_close_handle(l);
    else if (c->timer_kind != XS_TIMER_LINGER)
        xs_conn_timer_start(c, XS_TIMER_LINGER, XS_PROXY_LINGER_MS);
    xs_conn_settle(c);
}

/* Carries out a close request once everything queued for the leg has been written: TLS
 * close_notify, our FIN, then the handle once the peer's FIN came (or the linger timer fired). */
void xs_leg_settle_close(xs_leg *l)
{
    if (!xs_leg_close_asked(l) || !xs_leg_is_open(l))
        return;
    /* What a rule delayed was accepted: it goes out before the leg closes. */
    delay_release(l, true);
    if (l->state >= XS_LEG_SHUTTING) {
        if (l->state == XS_LEG_SHUT && (l->flags & XS_LEG_EOF))
            xs_leg_close_handle(l);
        return;
    }
    leg_encrypt(l); /* what was gathered goes before close_notify */
    if (l->tls_state == XS_LEG_TLS_UP) {
        l->tls_state = XS_LEG_TLS_SHUT;
        xs_tls_shutdown(l->tls);
        xs_leg_drain_cipher(l);
    }
    xs_leg_flush(l);
    if ((l->flags & XS_LEG_WRITING) || l->out.len > 0)
        return;
    if (l->flags & XS_LEG_EOF) {
        xs_leg_close_handle(l);
        return;
    }
    uv_shutdown_t *sreq = malloc(sizeof(*sreq)); /* freed by on_shutdown */
    if (sreq == NULL) {
        xs_leg_close_handle(l); /* no memory to say goodbye politely: close at once */
        return;
    }
    sreq->data = l;
    xs_leg_set_state(l, XS_LEG_SHUTTING);
    if (uv_shutdown(sreq, (uv_stream_t *)&l->tcp, on_shutdown) < 0) {
        free(sreq);
        xs_leg_close_handle(l);
    }
}

/* ---- memory --------------------------------------------------------------------------------- */

int xs_leg_trim(xs_leg *l)
{
    if ((l->flags & XS_LEG_WRITING) ||
        (l->tls != NULL && (l->plain.len > 0 || xs_tls_cipher_pending(l->tls))))
        return -1;
    free(l->wreq);
    l->wreq = NULL;
    return l->tls != NULL ? xs_tls_trim(l->tls) : 0;
}

void xs_leg_free(xs_leg *l)
{
    for (xs_leg_delayed *d = l->dq_head, *n; d != NULL; d = n) {
        n = d->next;
        free(d);
    }
    l->dq_head = l->dq_tail = NULL;
    xs_tls_free(l->tls);
    l->tls = NULL;
    bytes_free(&l->plain);
    bytes_free(&l->out);
    bytes_free(&l->inflight);
    free(l->wreq); /* every write finished before the handle closed */
    l->wreq = NULL;
}
