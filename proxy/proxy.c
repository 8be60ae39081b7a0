/* The proxy's event loop: listeners, legs, TLS engines, timers and signals. See proxy.h.
 *
 * Ownership: a conn embeds both legs' uv_tcp_t and its timer. Every libuv callback into a conn
 * ends with conn_settle(), which flushes what the session queued, applies backpressure, carries
 * out close requests and, once every handle of the conn has been closed (the last close
 * callback), frees the session and the conn. Nothing is freed from a read or write callback
 * directly. */
#include "proxy/proxy.h"

#include "filters/features.h"
#include "inspect/error.h"
#include "proxy/ca.h"
#include "proxy/file.h"
#include "proxy/tls.h"

#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#define READ_BUF 65536
/* Plaintext gathered for a TLS leg before it is encrypted anyway (four full TLS records). */
#define PLAIN_BATCH 65536

typedef struct proxy proxy;
typedef struct conn conn;

typedef struct outbuf {
    char *data;
    size_t len, cap;
} outbuf;

/* A stanza a rule delayed, and everything written to the same leg after it. */
typedef struct delayed {
    struct delayed *next;
    uint64_t at; /* uv_now() when it may go */
    size_t len;
    char data[];
} delayed;

typedef struct leg {
    uv_tcp_t tcp;
    conn *c;
    xs_side side;
    xs_tls *tls;
    bool tls_on;     /* bytes on the wire are TLS records */
    bool tls_up;     /* handshake finished */
    bool open;       /* tcp handle initialised: must be closed */
    bool connected;  /* the socket can be read and written */
    bool paused;     /* reading stopped by backpressure */
    bool want_close; /* the session asked to close this leg */
    bool shut;       /* our FIN was sent (uv_shutdown done) */
    bool eof;        /* the peer's FIN or an error was read */
    bool closing;    /* uv_close called */
    bool writing;
    bool tls_shut; /* close_notify queued */
    /* Its places in the proxy's lists of legs that may have memory to give back (see
     * quiet_touch()): it is trimmed at q[k].at unless it carries something before. */
    struct {
        struct leg *prev, *next;
        uint64_t at;
        bool listed;
    } q[2];
    bool shutting;   /* uv_shutdown requested */
    outbuf plain;    /* TLS legs: plaintext gathered during a callback, encrypted at its end */
    outbuf out;      /* queued for the socket */
    outbuf inflight; /* being written */
    /* The requests and the delay timer are allocated when first needed and given back when
     * done (the write request when the leg is trimmed): an idle session holds none of them. */
    uv_write_t *wreq;
    delayed *dq_head, *dq_tail; /* plaintext waiting for its time, in order */
    uv_timer_t *dtimer;         /* fires when the head of dq may go; NULL until a rule delays */
} leg;

typedef enum timer_kind { T_NONE, T_HANDSHAKE, T_CLOSE, T_LINGER } timer_kind;

struct conn {
    proxy *p;
    xs_session *s;
    leg leg[2];
    /* The session's deadline (handshake, close, linger): allocated when one is set and given
     * back when it is cleared, so a forwarding session holds none. */
    uv_timer_t *timer;
    timer_kind timer_kind;
    bool timer_open;  /* deadlines may still be set: false once every handle is closing */
    bool resolving;   /* a uv_getaddrinfo (allocated for it) is under way */
    unsigned handles; /* handles opened and not yet closed */
    bool dead;        /* every handle closed: free at the end of the callback */
    xs_tls_mode server_mode;
    conn *prev, *next;
};

typedef struct listener {
    uv_tcp_t tcp;
    proxy *p;
    xs_tls_mode client_mode;
    xs_session_cfg scfg; /* what every session of this listener is made with */
    bool open;
    char addr[64];
} listener;

struct proxy {
    const xs_proxy_config *cfg;
    uv_loop_t *loop;
    listener lst[2];
    uv_signal_t sigint, sigterm;
    uv_timer_t stop_timer;
    uv_timer_t idle_timer; /* when the first leg of a quiet list is due */
    uint64_t idle_due;     /* uv_now() it fires at, while active */
    /* Per kind of trim (Q_BUFFERS, Q_PARSER), the legs that carried something and were not
     * trimmed since, in the order they fall due: trimming never walks every session. */
    struct {
        leg *head, *tail;
    } quiet[2];
    unsigned heap_given;      /* trims that gave memory back since the last malloc_trim() */
    uint64_t heap_trimmed_at; /* uv_now() of the last malloc_trim() */
    uv_prepare_t flush;       /* before the loop waits: the buffered log goes out */
    bool log_failed;
    bool stopping;
    xs_ca *ca;
    xs_tls_ctx *server_ctx, *client_ctx;
    xs_printer *console, *log;
    /* The sessions' observers: the console, then the --write log (xs_session_cfg.observers). */
    xs_observer observers[2];
    size_t n_observers;
    FILE *log_file, *keylog;
    conn *conns;
    unsigned n_conns;
    unsigned next_id;
    char rbuf[READ_BUF]; /* every read lands here; processed before the next read */
    char pbuf[READ_BUF]; /* plaintext out of TLS */
    char up_host[256], up_port[16], upd_host[256], upd_port[16];
    int status;
    /* The built-in rewrites and --rules, swapped on SIGHUP; sessions read it at every stanza */
    xs_rules *rules;
    unsigned fd_sessions; /* sessions the open-files limit allows (two descriptors each) */
    unsigned long nofile; /* that limit */
    uv_signal_t sighup;
};

static void conn_settle(conn *c);
static void quiet_touch(leg *l, bool read);
static void quiet_unlink(proxy *p, leg *l, int k);

/* ---- small helpers -------------------------------------------------------------------------- */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Messages about the proxy itself (not a session) go to stderr, so stdout stays the traffic. */
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "xmppscope: ");
    /* Addresses, names and messages may come from a peer or a file: escaped. */
    xs_term_vprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static int out_reserve(outbuf *b, size_t n)
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

static void out_free(outbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Splits "HOST:PORT" or "[V6]:PORT". */
static int split_hostport(const char *s, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':')
            return XS_EINVAL;
        if ((size_t)(end - s - 1) >= hcap)
            return XS_EINVAL;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = 0;
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= hcap || colon == s)
            return XS_EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
    }
    char *end;
    long v = strtol(colon + 1, &end, 10);
    if (*end != 0 || v < 0 || v > 65535 || colon[1] == 0)
        return XS_EINVAL;
    snprintf(port, pcap, "%ld", v);
    return 0;
}

static size_t queued(const leg *l)
{
    return l->plain.len + l->out.len + l->inflight.len +
           (l->tls ? xs_tls_cipher_pending(l->tls) : 0);
}

/* ---- handles and closing -------------------------------------------------------------------- */

static void handle_gone(conn *c)
{
    if (--c->handles == 0)
        c->dead = true;
    conn_settle(c);
}

static void on_leg_closed(uv_handle_t *h)
{
    leg *l = h->data;
    handle_gone(l->c);
}

/* For the timers allocated on their own (the deadline, the delay timers): h->data is the conn. */
static void on_timer_closed(uv_handle_t *h)
{
    conn *c = h->data;
    free(h);
    handle_gone(c);
}

static void leg_close_handle(leg *l)
{
    if (!l->open || l->closing)
        return;
    l->closing = true;
    l->connected = false;
    l->tcp.data = l;
    uv_close((uv_handle_t *)&l->tcp, on_leg_closed);
}

static void timer_close(conn *c)
{
    if (c->timer == NULL)
        return;
    uv_close((uv_handle_t *)c->timer, on_timer_closed);
    c->timer = NULL;
}

static void timer_stop(conn *c)
{
    timer_close(c);
    c->timer_kind = T_NONE;
}

static void on_timer(uv_timer_t *t);

static void timer_start(conn *c, timer_kind kind, uint64_t ms)
{
    if (!c->timer_open)
        return;
    if (c->timer == NULL) {
        uv_timer_t *t = malloc(sizeof(*t));
        if (t == NULL || uv_timer_init(c->p->loop, t) < 0) {
            /* A session without a deadline could be held open for ever: it ends at once. */
            free(t);
            for (int i = 0; i < 2; i++)
                leg_close_handle(&c->leg[i]);
            return;
        }
        t->data = c;
        c->timer = t;
        c->handles++;
    }
    c->timer_kind = kind;
    uv_timer_start(c->timer, on_timer, ms, 0);
}

/* ---- writing -------------------------------------------------------------------------------- */

static void drain_cipher(leg *l)
{
    size_t n;
    while (l->tls != NULL && (n = xs_tls_cipher_pending(l->tls)) > 0) {
        size_t got = 0;
        if (out_reserve(&l->out, n) < 0)
            return;
        xs_tls_take_cipher(l->tls, l->out.data + l->out.len, n, &got);
        l->out.len += got;
        if (got == 0)
            return;
    }
}

static void on_write(uv_write_t *req, int status);

/* Encrypts the plaintext gathered for a TLS leg: the stanzas forwarded during one callback go
 * into as few TLS records as their size allows (one SSL_write, not one per stanza). */
static void leg_encrypt(leg *l)
{
    if (l->plain.len == 0)
        return;
    int rc = xs_tls_write_plain(l->tls, l->plain.data, l->plain.len);
    l->plain.len = 0;
    drain_cipher(l);
    if (rc < 0 && !xs_session_closing(l->c->s)) {
        char cause[400];
        snprintf(cause, sizeof(cause), "cannot send to the %s over TLS: %s",
                 l->side == XS_CLIENT ? "client" : "server", xs_strerror(rc));
        xs_session_on_closed(l->c->s, l->side, rc, cause);
    }
}

static void leg_flush(leg *l)
{
    leg_encrypt(l);
    if (l->writing || l->out.len == 0 || !l->connected || l->closing)
        return;
    if (l->wreq == NULL && (l->wreq = malloc(sizeof(*l->wreq))) == NULL)
        return; /* tried again at the end of the next callback */
    outbuf t = l->inflight;
    l->inflight = l->out;
    l->out = t;
    l->out.len = 0;
    uv_buf_t b = uv_buf_init(l->inflight.data, (unsigned)l->inflight.len);
    l->wreq->data = l;
    int rc = uv_write(l->wreq, (uv_stream_t *)&l->tcp, &b, 1, on_write);
    if (rc < 0) {
        l->inflight.len = 0;
        l->eof = true;
        if (!xs_session_closing(l->c->s))
            xs_session_on_closed(l->c->s, l->side, rc, uv_strerror(rc));
        return;
    }
    l->writing = true;
}

static void on_write(uv_write_t *req, int status)
{
    leg *l = req->data;
    conn *c = l->c;
    l->writing = false;
    l->inflight.len = 0;
    if (l->out.len == 0) {
        /* Nothing more to send: give the buffers back, idle sessions must stay small. */
        out_free(&l->inflight);
        out_free(&l->out);
        if (l->plain.len == 0)
            out_free(&l->plain);
    } else if (l->inflight.cap > 4 * READ_BUF) {
        out_free(&l->inflight);
    }
    if (status < 0 && status != UV_ECANCELED && !xs_session_closing(c->s))
        xs_session_on_closed(c->s, l->side, status, uv_strerror(status));
    conn_settle(c);
}

/* ---- reading -------------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    leg *l = h->data;
    buf->base = l->c->p->rbuf;
    buf->len = READ_BUF;
}

static void describe_tls(leg *l, char *out, size_t cap)
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

static void tls_failed(leg *l)
{
    char cause[400];
    snprintf(cause, sizeof(cause), "TLS with the %s failed: %s",
             l->side == XS_CLIENT ? "client" : "server", xs_tls_last_error(l->tls));
    drain_cipher(l); /* an alert for the peer, if any */
    if (!xs_session_closing(l->c->s))
        xs_session_on_closed(l->c->s, l->side, XS_ETLS, cause);
}

static void tls_input(leg *l, const char *data, size_t n)
{
    conn *c = l->c;
    proxy *p = c->p;
    int rc = xs_tls_feed_cipher(l->tls, data, n);
    if (rc < 0) {
        tls_failed(l);
        return;
    }
    for (;;) {
        if (l->want_close)
            return;
        if (!l->tls_up) {
            rc = xs_tls_handshake(l->tls);
            drain_cipher(l);
            if (rc < 0) {
                tls_failed(l);
                return;
            }
            if (!xs_tls_established(l->tls))
                return;
            l->tls_up = true;
            xs_tls_info info;
            xs_tls_get_info(l->tls, &info);
            char desc[400];
            describe_tls(l, desc, sizeof(desc));
            xs_session_on_tls_up(c->s, l->side, info.sni, desc);
        }
        /* Every record available, up to the buffer's size, goes to the parser in one piece:
         * fewer stanzas cut between reads (those take libxml2's slower path). */
        size_t got = 0, total = 0;
        do {
            rc = xs_tls_read_plain(l->tls, p->pbuf + total, sizeof(p->pbuf) - total, &got);
            total += rc == 0 ? got : 0;
        } while (rc == 0 && got > 0 && total < sizeof(p->pbuf));
        drain_cipher(l);
        if (total > 0) {
            (void)xs_session_on_data(c->s, l->side, p->pbuf, total);
            if (rc == 0)
                continue;
            if (l->want_close || xs_session_closing(c->s))
                return;
        }
        if (rc == XS_ECLOSED) {
            if (!xs_session_closing(c->s))
                xs_session_on_closed(c->s, l->side, 0, "TLS close_notify");
            return;
        }
        if (rc < 0) {
            tls_failed(l);
            return;
        }
        return; /* nothing more to read */
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    leg *l = stream->data;
    conn *c = l->c;
    if (nread > 0) {
        size_t n = (size_t)nread;
        quiet_touch(l, true);
        if (l->want_close || xs_session_closing(c->s)) {
            /* Closing: what the peer still sends is read and dropped, so that our last words
             * are not destroyed by a reset. */
        } else if (!l->tls_on || xs_session_before_tls(c->s, l->side)) {
            /* Plaintext, or what comes between STARTTLS and the first TLS record (whitespace
             * that ends the plaintext stream, or injected plaintext the session refuses). */
            size_t used = xs_session_on_data(c->s, l->side, buf->base, n);
            if (used < n && l->tls_on)
                tls_input(l, buf->base + used, n - used);
        } else {
            tls_input(l, buf->base, n);
        }
    } else if (nread < 0) {
        l->eof = true;
        uv_read_stop(stream);
        if (!l->want_close && !xs_session_closing(c->s)) {
            if (nread == UV_EOF)
                xs_session_on_closed(c->s, l->side, 0, "connection closed (EOF)");
            else
                xs_session_on_closed(c->s, l->side, (int)nread, uv_strerror((int)nread));
        }
    }
    conn_settle(c);
}

static void leg_start_reading(leg *l)
{
    if (!l->connected || l->eof || l->closing)
        return;
    l->tcp.data = l;
    uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_read);
}

/* ---- the session's view of the legs (xs_session_io) ------------------------------------------ */

static int leg_write(leg *l, const char *data, size_t len);
static int delay_push(leg *l, const char *data, size_t len, uint64_t at);

static int io_write(void *ctx, xs_side side, const char *data, size_t len)
{
    conn *c = ctx;
    leg *l = &c->leg[side];
    if (l->dq_tail != NULL) /* order within a direction: behind what a rule delayed */
        return delay_push(l, data, len, l->dq_tail->at);
    return leg_write(l, data, len);
}

static int leg_write(leg *l, const char *data, size_t len)
{
    if (l->shut || l->closing)
        return 0; /* nothing more goes out on a closed leg */
    quiet_touch(l, false);
    if (l->tls_on) {
        /* Gathered until the end of the callback (leg_flush()), up to a bound. */
        if (l->plain.len + len > PLAIN_BATCH)
            leg_encrypt(l);
        if (len >= PLAIN_BATCH) {
            int rc = xs_tls_write_plain(l->tls, data, len);
            drain_cipher(l);
            return rc;
        }
        if (out_reserve(&l->plain, len) < 0)
            return XS_ENOMEM;
        memcpy(l->plain.data + l->plain.len, data, len);
        l->plain.len += len;
        return 0;
    }
    if (out_reserve(&l->out, len) < 0)
        return XS_ENOMEM;
    memcpy(l->out.data + l->out.len, data, len);
    l->out.len += len;
    return 0;
}

/* Writes every delayed chunk whose time has come (all of them when `all`). */
static void delay_release(leg *l, bool all)
{
    uint64_t now = uv_now(l->c->p->loop);
    while (l->dq_head != NULL && (all || l->dq_head->at <= now)) {
        delayed *d = l->dq_head;
        l->dq_head = d->next;
        if (l->dq_head == NULL)
            l->dq_tail = NULL;
        (void)leg_write(l, d->data, d->len);
        free(d);
    }
}

static void on_delay_timer(uv_timer_t *t)
{
    leg *l = t->data;
    delay_release(l, false);
    if (l->dq_head != NULL) {
        uint64_t now = uv_now(l->c->p->loop);
        uv_timer_start(l->dtimer, on_delay_timer, l->dq_head->at > now ? l->dq_head->at - now : 0,
                       0);
    }
    conn_settle(l->c);
}

static int delay_push(leg *l, const char *data, size_t len, uint64_t at)
{
    if (l->shut || l->closing)
        return 0;
    delayed *d = malloc(sizeof(*d) + len);
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

static int io_write_delayed(void *ctx, xs_side side, const char *data, size_t len, unsigned long ms)
{
    conn *c = ctx;
    leg *l = &c->leg[side];
    return delay_push(l, data, len, uv_now(c->p->loop) + ms);
}

/* Gives the client leg's TLS the address the client connected to, for the forged certificate's
 * IP address SAN: a client that dialled an address sends no SNI and checks that address. An
 * IPv4 client of a dual-stack listener is named by its IPv4 address, as it dialled it. */
static int set_local_ip(leg *cl)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN];

    if (uv_tcp_getsockname(&cl->tcp, (struct sockaddr *)&ss, &len) != 0)
        return 0; /* no address: the certificate carries the name only */
    if (ss.ss_family == AF_INET6) {
        const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            inet_ntop(AF_INET, &a->s6_addr[12], ip, sizeof(ip));
        else
            inet_ntop(AF_INET6, a, ip, sizeof(ip));
    } else if (ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
    } else {
        return 0;
    }
    return xs_tls_set_local_ip(cl->tls, ip);
}

static int io_start_tls(void *ctx, xs_side side, const char *name)
{
    conn *c = ctx;
    proxy *p = c->p;
    leg *l = &c->leg[side];
    int rc;
    if (side == XS_CLIENT) {
        rc = xs_tls_new(p->server_ctx, name && name[0] ? name : NULL, &l->tls);
        if (rc == 0 && p->ca != NULL)
            rc = set_local_ip(l);
    } else {
        const char *host = c->server_mode == XS_TLSMODE_DIRECT ? p->upd_host : p->up_host;
        const char *port = c->server_mode == XS_TLSMODE_DIRECT ? p->upd_port : p->up_port;
        if ((name == NULL || name[0] == 0) && !p->cfg->upstream_insecure) {
            say("session %s: no server name to verify (the client sent no SNI and no stream "
                "'to'); pass --server-name NAME",
                xs_session_id(c->s));
            return XS_EINVAL;
        }
        rc = xs_tls_new(p->client_ctx, name && name[0] ? name : host, &l->tls);
        if (rc == 0) {
            char key[300];
            snprintf(key, sizeof(key), "%s:%s", host, port);
            xs_tls_set_resume_key(l->tls, key);
            xs_tls_set_alpn(l->tls, c->server_mode == XS_TLSMODE_DIRECT);
        }
    }
    if (rc < 0)
        return rc;
    l->tls_on = true;
    if (side == XS_SERVER) {
        rc = xs_tls_handshake(l->tls);
        drain_cipher(l);
        if (rc < 0)
            return XS_ETLS;
    }
    return 0;
}

static void on_connect(uv_connect_t *req, int status)
{
    conn *c = req->data;
    leg *l = &c->leg[XS_SERVER];
    free(req);
    if (status == UV_ECANCELED || l->closing) {
        conn_settle(c);
        return;
    }
    if (status < 0) {
        char cause[300];
        const char *hp =
            c->server_mode == XS_TLSMODE_DIRECT ? c->p->cfg->upstream_direct : c->p->cfg->upstream;
        snprintf(cause, sizeof(cause), "cannot connect to %s: %s", hp ? hp : c->p->cfg->upstream,
                 uv_strerror(status));
        xs_session_on_connected(c->s, status, cause);
        conn_settle(c);
        return;
    }
    l->connected = true;
    uv_tcp_nodelay(&l->tcp, 1);
    leg_start_reading(l);
    xs_session_on_connected(c->s, 0, NULL);
    conn_settle(c);
}

/* Starts connecting the server leg to addr. Returns 0 or a libuv error; the leg's handle may be
 * open either way, and the session's close path closes it. */
static int connect_to(conn *c, const struct sockaddr *addr)
{
    leg *l = &c->leg[XS_SERVER];
    int rc = uv_tcp_init(c->p->loop, &l->tcp);
    if (rc < 0)
        return rc;
    l->open = true;
    c->handles++;
    l->tcp.data = l;
    /* Listed from the start: its parser holds a libxml2 context already. */
    quiet_touch(l, true);
    uv_connect_t *creq = malloc(sizeof(*creq)); /* freed by on_connect */
    if (creq == NULL)
        return UV_ENOMEM;
    creq->data = c;
    rc = uv_tcp_connect(creq, &l->tcp, addr, on_connect);
    if (rc < 0)
        free(creq);
    return rc;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    conn *c = req->data;
    free(req); /* libuv is done with it once the callback runs */
    c->resolving = false;
    if (xs_session_closing(c->s) || c->p->stopping) {
        uv_freeaddrinfo(res);
        conn_settle(c);
        return;
    }
    if (status < 0) {
        char cause[400];
        snprintf(cause, sizeof(cause), "cannot resolve %s: %s",
                 c->server_mode == XS_TLSMODE_DIRECT ? c->p->upd_host : c->p->up_host,
                 uv_strerror(status));
        xs_session_on_connected(c->s, status, cause);
        conn_settle(c);
        return;
    }
    int rc = connect_to(c, res->ai_addr);
    uv_freeaddrinfo(res);
    if (rc < 0) {
        char cause[300];
        snprintf(cause, sizeof(cause), "cannot connect: %s", uv_strerror(rc));
        xs_session_on_connected(c->s, rc, cause);
    }
    conn_settle(c);
}

static int io_connect(void *ctx)
{
    conn *c = ctx;
    proxy *p = c->p;
    bool direct = c->server_mode == XS_TLSMODE_DIRECT;
    const char *host = direct ? p->upd_host : p->up_host, *port = direct ? p->upd_port : p->up_port;
    /* An address needs no resolver: going through libuv's thread pool for it cost every
     * session set-up two thread hand-offs. */
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } addr;
    char *end;
    unsigned long num = strtoul(port, &end, 10);
    if (port[0] >= '0' && port[0] <= '9' && *end == 0 && num > 0 && num <= 65535 &&
        (uv_ip4_addr(host, (int)num, &addr.in4) == 0 ||
         uv_ip6_addr(host, (int)num, &addr.in6) == 0))
        return connect_to(c, &addr.sa);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    uv_getaddrinfo_t *gai = malloc(sizeof(*gai)); /* freed by on_resolved */
    if (gai == NULL)
        return UV_ENOMEM;
    gai->data = c;
    int rc = uv_getaddrinfo(p->loop, gai, on_resolved, host, port, &hints);
    if (rc == 0)
        c->resolving = true;
    else
        free(gai);
    return rc;
}

static void io_close(void *ctx, xs_side side)
{
    conn *c = ctx;
    c->leg[side].want_close = true;
}

/* The session reads no clock itself: its time stamps and its duration come from here. */
static uint64_t io_now_us(void *ctx, int wall)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(wall ? CLOCK_REALTIME : CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* What a session has to say that no observer can take goes to stderr, as the proxy's own
 * messages do. */
static void io_diag(void *ctx, const char *text)
{
    (void)ctx;
    say("%s", text);
}

static const xs_session_io session_io = {
    .write = io_write,
    .start_tls = io_start_tls,
    .connect = io_connect,
    .close = io_close,
    .write_delayed = io_write_delayed,
    .now_us = io_now_us,
    .diag = io_diag,
};

/* ---- the end of every callback -----------------------------------------------------------------
 */

static void on_shutdown(uv_shutdown_t *req, int status)
{
    leg *l = req->data;
    conn *c = l->c;
    free(req);
    l->shut = true;
    if (l->eof || status < 0)
        leg_close_handle(l);
    else if (c->timer_kind != T_LINGER)
        timer_start(c, T_LINGER, XS_PROXY_LINGER_MS);
    conn_settle(c);
}

/* Carries out a close request once everything queued for the leg has been written: TLS
 * close_notify, our FIN, then the handle once the peer's FIN came (or the linger timer fired). */
static void leg_settle_close(leg *l)
{
    if (!l->want_close || l->closing || !l->open)
        return;
    /* What a rule delayed was accepted: it goes out before the leg closes. */
    delay_release(l, true);
    if (!l->connected) {
        /* Still connecting (or never connected): nothing to say politely. */
        leg_close_handle(l);
        return;
    }
    if (l->shutting) {
        if (l->shut && l->eof)
            leg_close_handle(l);
        return;
    }
    leg_encrypt(l); /* what was gathered goes before close_notify */
    if (l->tls_up && !l->tls_shut) {
        l->tls_shut = true;
        xs_tls_shutdown(l->tls);
        drain_cipher(l);
    }
    leg_flush(l);
    if (l->writing || l->out.len > 0)
        return;
    if (l->eof) {
        leg_close_handle(l);
        return;
    }
    uv_shutdown_t *sreq = malloc(sizeof(*sreq)); /* freed by on_shutdown */
    if (sreq == NULL) {
        leg_close_handle(l); /* no memory to say goodbye politely: close at once */
        return;
    }
    sreq->data = l;
    l->shutting = true;
    if (uv_shutdown(sreq, (uv_stream_t *)&l->tcp, on_shutdown) < 0) {
        free(sreq);
        leg_close_handle(l);
    }
}

static void close_signals(proxy *p)
{
    uv_close((uv_handle_t *)&p->sigint, NULL);
    uv_close((uv_handle_t *)&p->sigterm, NULL);
    uv_close((uv_handle_t *)&p->stop_timer, NULL);
    uv_close((uv_handle_t *)&p->idle_timer, NULL);
    uv_close((uv_handle_t *)&p->flush, NULL);
    if (p->cfg->rules_path != NULL)
        uv_close((uv_handle_t *)&p->sighup, NULL);
}

static void conn_free(conn *c)
{
    proxy *p = c->p;
    for (int k = 0; k < 2; k++) {
        quiet_unlink(p, &c->leg[XS_CLIENT], k);
        quiet_unlink(p, &c->leg[XS_SERVER], k);
    }
    xs_session_free(c->s);
    for (int i = 0; i < 2; i++) {
        for (delayed *d = c->leg[i].dq_head, *n; d != NULL; d = n) {
            n = d->next;
            free(d);
        }
        xs_tls_free(c->leg[i].tls);
        out_free(&c->leg[i].plain);
        out_free(&c->leg[i].out);
        out_free(&c->leg[i].inflight);
        free(c->leg[i].wreq); /* every write finished before the handle closed */
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    p->n_conns--;
    free(c);
    /* The last session gone: what the sessions used goes back to the system, so that an idle
     * proxy is as small as it started (glibc keeps freed pages otherwise). */
    if (p->n_conns == 0)
        malloc_trim(0);
    if (p->stopping && p->n_conns == 0)
        close_signals(p);
}

static void conn_settle(conn *c)
{
    if (c->dead) {
        if (!c->resolving)
            conn_free(c);
        return;
    }
    bool closing = xs_session_closing(c->s);
    for (int i = 0; i < 2; i++) {
        leg *l = &c->leg[i];
        if (closing)
            l->want_close = true;
        leg_settle_close(l);
        leg_flush(l);
    }
    /* Backpressure: a leg with too much queued stops the other from reading. */
    for (int i = 0; i < 2; i++) {
        leg *l = &c->leg[i], *o = &c->leg[1 - i];
        size_t q = queued(l);
        if (q > XS_PROXY_HIGH_WATER && !o->paused && o->connected) {
            uv_read_stop((uv_stream_t *)&o->tcp);
            o->paused = true;
        } else if (q <= XS_PROXY_LOW_WATER && o->paused) {
            o->paused = false;
            leg_start_reading(o);
        }
    }
    if (xs_session_forwarding(c->s) && c->timer_kind == T_HANDSHAKE)
        timer_stop(c);
    /* One side closed its stream: the other gets a deadline to close its own. */
    if (xs_session_lagging_side(c->s) >= 0 && c->timer_kind != T_CLOSE && c->timer_kind != T_LINGER)
        timer_start(c, T_CLOSE, (uint64_t)c->p->cfg->close_timeout * 1000);
    if (closing) {
        bool all = true;
        for (int i = 0; i < 2; i++)
            all = all && (!c->leg[i].open || c->leg[i].closing);
        if (all && c->timer_open) {
            c->timer_open = false;
            timer_close(c);
        }
        for (int i = 0; all && i < 2; i++) {
            leg *l = &c->leg[i];
            if (l->dtimer != NULL) {
                l->dtimer->data = c;
                uv_close((uv_handle_t *)l->dtimer, on_timer_closed);
                l->dtimer = NULL;
            }
        }
    }
}

static void on_timer(uv_timer_t *t)
{
    conn *c = t->data;
    timer_kind k = c->timer_kind;
    c->timer_kind = T_NONE;
    if (k == T_HANDSHAKE && !xs_session_forwarding(c->s)) {
        char what[128];
        snprintf(what, sizeof(what), "the session was not set up within %u s",
                 c->p->cfg->handshake_timeout);
        xs_session_on_timeout(c->s, what);
    } else if (k == T_CLOSE && xs_session_lagging_side(c->s) >= 0) {
        xs_side lag = (xs_side)xs_session_lagging_side(c->s);
        char what[160];
        snprintf(what, sizeof(what), "the %s did not close its stream within %u s of the %s",
                 lag == XS_CLIENT ? "client" : "server", c->p->cfg->close_timeout,
                 lag == XS_CLIENT ? "server" : "client");
        xs_session_on_closed(c->s, lag, 0, what);
    } else if (k == T_LINGER) {
        for (int i = 0; i < 2; i++)
            leg_close_handle(&c->leg[i]);
    }
    conn_settle(c);
}

/* ---- accepting --------------------------------------------------------------------------------
 */

/* Close callback for a conn that never got a session: the last handle frees it. */
static void on_early_close(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->handles == 0)
        free(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    listener *ls = server->data;
    proxy *p = ls->p;
    if (status < 0) {
        say("accept on %s failed: %s", ls->addr, uv_strerror(status));
        return;
    }
    conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        say("out of memory: refusing a connection on %s", ls->addr);
        return;
    }
    c->p = p;
    for (int i = 0; i < 2; i++) {
        c->leg[i].c = c;
        c->leg[i].side = (xs_side)i;
    }
    leg *cl = &c->leg[XS_CLIENT];
    if (uv_tcp_init(p->loop, &cl->tcp) < 0) {
        free(c);
        return;
    }
    cl->open = true;
    cl->tcp.data = cl;
    c->handles = 1;
    int rc = uv_accept(server, (uv_stream_t *)&cl->tcp);
    bool over_fds = p->n_conns >= p->fd_sessions;
    if (rc < 0 || (p->cfg->max_sessions && p->n_conns >= p->cfg->max_sessions) || over_fds ||
        p->stopping) {
        if (rc < 0)
            say("accept on %s failed: %s", ls->addr, uv_strerror(rc));
        else if (over_fds)
            say("refusing a connection on %s: %u sessions open, the most the open-files limit "
                "(%lu) allows; raise it (ulimit -n) for more",
                ls->addr, p->n_conns, p->nofile);
        else if (!p->stopping)
            say("refusing a connection on %s: %u sessions open (--max-sessions)", ls->addr,
                p->n_conns);
        cl->tcp.data = c; /* the close callback frees the conn, which embeds the handle */
        uv_close((uv_handle_t *)&cl->tcp, on_early_close);
        return;
    }
    cl->connected = true;
    uv_tcp_nodelay(&cl->tcp, 1);
    c->timer_open = true; /* the handshake deadline is set below */
    cl->tcp.data = c;     /* for on_early_close; leg_start_reading points it at the leg */

    char peer[64] = "?";
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&cl->tcp, (struct sockaddr *)&ss, &len) == 0) {
        char ip[48];
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
            snprintf(peer, sizeof(peer), "[%s]:%u", ip,
                     ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
            snprintf(peer, sizeof(peer), "%s:%u", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
        }
    }
    c->server_mode =
        p->cfg->upstream_tls == XS_TLSMODE_MIRROR ? ls->client_mode : p->cfg->upstream_tls;
    rc = xs_session_new(&ls->scfg, &session_io, c, ++p->next_id, peer, &c->s);
    if (rc < 0) {
        say("refusing %s: cannot create a session: %s", peer, xs_strerror(rc));
        uv_close((uv_handle_t *)&cl->tcp, on_early_close);
        return;
    }
    c->next = p->conns;
    if (p->conns)
        p->conns->prev = c;
    p->conns = c;
    p->n_conns++;
    quiet_touch(cl, true); /* its parser holds a libxml2 context already */

    if (ls->client_mode == XS_TLSMODE_DIRECT) {
        /* A client that sends no SNI gets a certificate for --server-name, else for the
         * server's host name when it is a name. */
        struct in6_addr ip;
        const char *defname = p->cfg->server_name;
        if (defname == NULL && inet_pton(AF_INET, p->upd_host, &ip) != 1 &&
            inet_pton(AF_INET6, p->upd_host, &ip) != 1)
            defname = p->upd_host;
        rc = xs_tls_new(p->server_ctx, defname, &cl->tls);
        if (rc == 0 && p->ca != NULL)
            rc = set_local_ip(cl);
        if (rc < 0) {
            xs_session_on_closed(c->s, XS_CLIENT, rc, "cannot create a TLS connection");
            conn_settle(c);
            return;
        }
        cl->tls_on = true;
    }
    timer_start(c, T_HANDSHAKE, (uint64_t)p->cfg->handshake_timeout * 1000);
    xs_session_start(c->s);
    leg_start_reading(cl);
    conn_settle(c);
}

static int listen_on(proxy *p, listener *ls, const char *spec, xs_tls_mode mode)
{
    char host[256], port[16];
    struct sockaddr_storage addr;
    if (split_hostport(spec, host, sizeof(host), port, sizeof(port)) < 0) {
        say("cannot read the listen address '%s': expected ADDR:PORT, e.g. 127.0.0.1:5222", spec);
        return 2;
    }
    if (uv_ip4_addr(host, atoi(port), (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, atoi(port), (struct sockaddr_in6 *)&addr) != 0) {
        say("the listen address must be an IP address, not '%s' (e.g. 127.0.0.1)", host);
        return 2;
    }
    ls->p = p;
    ls->client_mode = mode;
    /* The same for every session of the listener: one copy here rather than one per session.
     * The printers exist by now; the rules are read through &p->rules at every stanza. */
    ls->scfg = (xs_session_cfg){
        .client_mode = mode,
        .server_mode = p->cfg->upstream_tls,
        .rewrites = p->cfg->rewrites,
        .limits = p->cfg->limits,
        .observers = p->observers,
        .n_observers = p->n_observers,
        .show_secrets = p->cfg->console.show_secrets,
        .server_name = p->cfg->server_name,
        .rules = &p->rules,
        .user_rules = p->cfg->rules_path != NULL,
    };
    uv_tcp_init(p->loop, &ls->tcp);
    ls->tcp.data = ls;
    ls->open = true;
    int rc = uv_tcp_bind(&ls->tcp, (struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ls->tcp, 511, on_connection);
    if (rc < 0) {
        say("cannot listen on %s: %s%s", spec, uv_strerror(rc),
            rc == UV_EADDRINUSE ? " (another program uses it: pick another port)"
            : rc == UV_EACCES   ? " (ports below 1024 need privileges)"
                                : "");
        return 1;
    }
    int len = sizeof(addr);
    uv_tcp_getsockname(&ls->tcp, (struct sockaddr *)&addr, &len);
    char ip[48];
    unsigned bound;
    if (addr.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&addr, ip, sizeof(ip));
        bound = ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
        snprintf(ls->addr, sizeof(ls->addr), "[%s]:%u", ip, bound);
    } else {
        uv_ip4_name((struct sockaddr_in *)&addr, ip, sizeof(ip));
        bound = ntohs(((struct sockaddr_in *)&addr)->sin_port);
        snprintf(ls->addr, sizeof(ls->addr), "%s:%u", ip, bound);
    }
    if (strcmp(ip, "127.0.0.1") != 0 && strcmp(ip, "::1") != 0)
        say("warning: listening on %s, which is not loopback: anyone who can reach it can use "
            "this proxy",
            ls->addr);
    return 0;
}

/* ---- giving memory back ----------------------------------------------------------------------
 *
 * Idle sessions must cost their TLS state and little else, so a quiet leg gives back what it
 * holds for traffic, in two steps. Quiet for QUIET_BUFFERS_MS (nothing read or written): its TLS
 * record buffers and ciphertext buffers (about 40 KiB; getting them back when traffic resumes is
 * a malloc) and its write request. Quiet for XS_PROXY_IDLE_MS (nothing read): its parser's
 * libxml2 context (about 17 KiB; rebuilt from the saved stream header when the next stanza comes,
 * which costs more, hence the longer wait). Not much longer: what a leg holds for traffic lies
 * between the lasting allocations of the sessions set up after it, and once freed leaves holes
 * that pin their pages; with a second's wait, 3,000 sessions opened at 400-540/s and then idle
 * cost 40-42 KiB each (up to 45 at 900/s), with 250 ms 38-39. For each step the legs that may have
 * something to give back are kept in a list in the order they fall due, traffic moves a leg to the
 * end, and one timer fires for the first due: nothing walks all the sessions. It fires on
 * QUIET_GRAIN_MS boundaries, so that legs falling due together are trimmed in one go. */
#define QUIET_BUFFERS_MS 100
#define QUIET_GRAIN_MS 100
/* malloc_trim() walks the whole heap: at most once per this long. */
#define HEAP_TRIM_MS 1000
enum { Q_BUFFERS, Q_PARSER };
static const uint64_t quiet_ms[2] = {QUIET_BUFFERS_MS, XS_PROXY_IDLE_MS};

static void on_idle_timer(uv_timer_t *t);

/* Makes the timer fire at `at` (rounded up to the grain) unless it fires earlier already. */
static void quiet_arm(proxy *p, uint64_t at)
{
    if (uv_is_closing((uv_handle_t *)&p->idle_timer))
        return;
    at = (at + QUIET_GRAIN_MS - 1) / QUIET_GRAIN_MS * QUIET_GRAIN_MS;
    if (uv_is_active((uv_handle_t *)&p->idle_timer) && p->idle_due <= at)
        return;
    uint64_t now = uv_now(p->loop);
    p->idle_due = at;
    uv_timer_start(&p->idle_timer, on_idle_timer, at > now ? at - now : 0, 0);
}

static void quiet_unlink(proxy *p, leg *l, int k)
{
    if (!l->q[k].listed)
        return;
    if (l->q[k].prev != NULL)
        l->q[k].prev->q[k].next = l->q[k].next;
    else
        p->quiet[k].head = l->q[k].next;
    if (l->q[k].next != NULL)
        l->q[k].next->q[k].prev = l->q[k].prev;
    else
        p->quiet[k].tail = l->q[k].prev;
    l->q[k].prev = l->q[k].next = NULL;
    l->q[k].listed = false;
}

/* Puts the leg at the end of list k, due quiet_ms[k] from now. Every entry of a list is due a
 * fixed delay after it was put there, so the list stays in order. */
static void quiet_push(proxy *p, leg *l, int k, uint64_t now)
{
    l->q[k].at = now + quiet_ms[k];
    if (!l->q[k].listed || p->quiet[k].tail != l) { /* a busy leg is already last */
        quiet_unlink(p, l, k);
        l->q[k].prev = p->quiet[k].tail;
        if (p->quiet[k].tail != NULL)
            p->quiet[k].tail->q[k].next = l;
        else
            p->quiet[k].head = l;
        p->quiet[k].tail = l;
        l->q[k].listed = true;
    }
    quiet_arm(p, p->quiet[k].head->q[k].at);
}

/* The leg carried something: a read (`read`) or a write. Only reads feed its parser. */
static void quiet_touch(leg *l, bool read)
{
    proxy *p = l->c->p;
    uint64_t now = uv_now(p->loop);
    quiet_push(p, l, Q_BUFFERS, now);
    if (read)
        quiet_push(p, l, Q_PARSER, now);
}

static void on_idle_timer(uv_timer_t *t)
{
    proxy *p = t->data;
    uint64_t now = uv_now(p->loop);
    leg *l;
    while ((l = p->quiet[Q_BUFFERS].head) != NULL && l->q[Q_BUFFERS].at <= now) {
        quiet_unlink(p, l, Q_BUFFERS);
        if (!l->open || l->c->dead)
            continue;
        if (l->writing || (l->tls != NULL && (l->plain.len > 0 || xs_tls_cipher_pending(l->tls)))) {
            quiet_push(p, l, Q_BUFFERS, now); /* tried again later, once written out */
            continue;
        }
        free(l->wreq);
        l->wreq = NULL;
        if (l->tls != NULL)
            p->heap_given += (unsigned)xs_tls_trim(l->tls);
    }
    while ((l = p->quiet[Q_PARSER].head) != NULL && l->q[Q_PARSER].at <= now) {
        quiet_unlink(p, l, Q_PARSER);
        if (l->open && !l->c->dead)
            p->heap_given += (unsigned)xs_session_trim(l->c->s, l->side);
    }
    /* What was given back lies between live allocations; hand its pages to the system when it
     * is worth a walk of the heap (a few milliseconds for thousands of sessions), at most once
     * per HEAP_TRIM_MS. */
    bool heap_due = p->heap_given >= 64;
    if (heap_due && now >= p->heap_trimmed_at + HEAP_TRIM_MS) {
        malloc_trim(0);
        p->heap_given = 0;
        p->heap_trimmed_at = now;
        heap_due = false;
    }
    for (int k = 0; k < 2; k++)
        if (p->quiet[k].head != NULL)
            quiet_arm(p, p->quiet[k].head->q[k].at);
    if (heap_due)
        quiet_arm(p, p->heap_trimmed_at + HEAP_TRIM_MS);
}

/* ---- signals ----------------------------------------------------------------------------------
 */

/* Once per loop iteration, before it waits: what the sessions logged during it goes out in one
 * write. A failure is said once (forwarding goes on, as for a log write error in a session). */
static void on_prepare(uv_prepare_t *h)
{
    proxy *p = h->data;
    if (p->log == NULL)
        return;
    int rc = xs_printer_flush(p->log);
    if (rc < 0 && !p->log_failed) {
        p->log_failed = true;
        char text[512];
        snprintf(text, sizeof(text),
                 "cannot write the --write log %s (%s): sessions go on, what they do is lost "
                 "from the log (said once)",
                 p->cfg->write_path, xs_strerror(rc));
        if (p->console != NULL)
            (void)xs_printer_note(p->console, NULL, "error", text);
        else
            say("%s", text);
    }
}

static void on_stop_timer(uv_timer_t *t)
{
    proxy *p = t->data;
    /* Sessions that did not close in time are cut. */
    for (conn *c = p->conns; c != NULL; c = c->next)
        for (int i = 0; i < 2; i++)
            leg_close_handle(&c->leg[i]);
}

static void on_signal(uv_signal_t *h, int signum)
{
    proxy *p = h->data;
    if (p->stopping) {
        say("second signal: exiting at once");
        exit(1);
    }
    p->stopping = true;
    say("%s: closing %u session%s, then exiting", signum == SIGINT ? "SIGINT" : "SIGTERM",
        p->n_conns, p->n_conns == 1 ? "" : "s");
    for (int i = 0; i < 2; i++)
        if (p->lst[i].open && !uv_is_closing((uv_handle_t *)&p->lst[i].tcp))
            uv_close((uv_handle_t *)&p->lst[i].tcp, NULL);
    if (p->n_conns == 0) {
        close_signals(p);
        return;
    }
    uv_timer_start(&p->stop_timer, on_stop_timer, 5000, 0);
    conn *next;
    for (conn *c = p->conns; c != NULL; c = next) {
        next = c->next;
        xs_session_shutdown(c->s);
        conn_settle(c);
    }
}

/* ---- rules: loading and SIGHUP ---- */

/* The built-in rewrites the sessions may use. */
static unsigned builtin_bits(const proxy *p)
{
    return p->cfg->rewrites | XS_REWRITE_STARTTLS;
}

/* Loads the built-in rewrites and --rules after them. On failure every error is reported and
 * *out is left alone. */
static int load_rules(proxy *p, xs_rules **out)
{
    xs_rule_diag diag = {0};
    xs_rules *r = NULL;
    if (p->cfg->rules_path == NULL) {
        int rc = xs_rules_builtin(builtin_bits(p), &r);
        if (rc < 0) {
            say("cannot compile the built-in rewrites: %s", xs_strerror(rc));
            return rc;
        }
        *out = r;
        return 0;
    }
    int rc = xs_rules_load(p->cfg->rules_path, builtin_bits(p), &r, &diag);
    size_t reported = diag.n;
    for (size_t i = 0; i < diag.n; i++)
        say("%s", diag.errors[i].message);
    if (diag.omitted > 0)
        say("%s: %zu more errors not shown", p->cfg->rules_path, diag.omitted);
    xs_rule_diag_clear(&diag);
    if (rc < 0) {
        if (reported == 0)
            say("cannot load the rules %s: %s", p->cfg->rules_path, xs_strerror(rc));
        return rc;
    }
    *out = r;
    return 0;
}

static void on_sighup(uv_signal_t *h, int signum)
{
    proxy *p = h->data;
    xs_rules *r = NULL;
    if (load_rules(p, &r) < 0) {
        say("SIGHUP: %s has errors; keeping the %zu rules in use", p->cfg->rules_path,
            p->rules ? xs_rules_count_file(p->rules) : (size_t)0);
        return;
    }
    /* Sessions read the set at every stanza; results own their data, so the old set can go. */
    xs_rules_unref(p->rules);
    p->rules = r;
    say("SIGHUP: reloaded %s: %zu rules, in effect for every session from its next stanza",
        p->cfg->rules_path, xs_rules_count_file(r));
}

static void print_rule_hits(proxy *p)
{
    if (p->rules == NULL || p->cfg->rules_path == NULL)
        return;
    char builtin[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < xs_rules_count(p->rules); i++) {
        xs_rule_info info;
        if (xs_rules_info(p->rules, i, &info) == 0 && info.builtin != 0 && used < sizeof(builtin))
            used += (size_t)snprintf(builtin + used, sizeof(builtin) - used, "%s%s %lu",
                                     used ? ", " : "", info.name, info.hits);
    }
    say("built-in rewrite hits: %s", builtin);
    say("rule hits:");
    for (size_t i = 0; i < xs_rules_count(p->rules); i++) {
        xs_rule_info info;
        if (xs_rules_info(p->rules, i, &info) == 0 && info.builtin == 0)
            xs_term_printf(stderr, "  %8lu  %s\n", info.hits, info.name);
    }
}

/* ---- set-up -----------------------------------------------------------------------------------
 */

static void keylog_line(void *user, const char *line)
{
    FILE *f = user;
    fprintf(f, "%s\n", line);
    fflush(f);
}

/* Opens a file that will hold secrets (the log, the key log) to append to it: never through a
 * link, never a FIFO, only a file of ours that others cannot write (proxy/file.h). `what` names
 * it as the user gave it. Returns NULL with the reason said, and *status the exit status: 2 for
 * a refused file (configuration), 1 for one that cannot be opened. */
static FILE *open_private(const char *path, const char *what, int *status)
{
    int fd, others_read;
    int rc = xs_file_open_append(path, what, &fd, &others_read);
    if (rc != 0) {
        say("%s", xs_file_error());
        *status = rc == XS_EINVAL ? 2 : 1;
        return NULL;
    }
    if (others_read)
        say("warning: %s %s is readable by others; it holds secrets: chmod 600 %s", what, path,
            path);
    FILE *f = fdopen(fd, "a");
    if (f == NULL) {
        say("cannot open %s %s: %s", what, path, strerror(errno));
        close(fd);
        *status = 1;
    }
    return f;
}

static int setup_tls(proxy *p)
{
    const xs_proxy_config *cfg = p->cfg;
    xs_tls_server_opts so = {0};
    if (cfg->cert_file != NULL) {
        so.cert_file = cfg->cert_file;
        so.key_file = cfg->key_file;
    } else {
        char dir[1024];
        const char *d = cfg->ca_dir;
        if (d == NULL) {
            if (xs_ca_default_dir(dir, sizeof(dir)) < 0) {
                say("no CA directory: set HOME or XDG_CONFIG_HOME, or pass --ca-dir DIR");
                return 1;
            }
            d = dir;
        }
        int rc = xs_ca_open(d, 1, &p->ca);
        if (rc < 0) {
            say("%s", xs_ca_error());
            return rc == XS_EINVAL ? 2 : 1; /* a refused directory or file: configuration */
        }
        char fp[XS_CA_FINGERPRINT_LEN];
        xs_ca_fingerprint(p->ca, fp, sizeof(fp));
        say("%s CA %s (SHA-256 %s): clients must trust it (see 'xmppscope ca show')",
            xs_ca_created(p->ca) ? "created the" : "using the", xs_ca_cert_path(p->ca), fp);
        so.ca = p->ca;
    }
    if (xs_tls_server_ctx_new(&so, &p->server_ctx) < 0) {
        say("TLS for clients: %s", xs_tls_ctx_error());
        return 1;
    }
    xs_tls_client_opts co = {.ca_file = cfg->upstream_ca, .insecure = cfg->upstream_insecure};
    if (xs_tls_client_ctx_new(&co, &p->client_ctx) < 0) {
        say("TLS for the server: %s", xs_tls_ctx_error());
        return 1;
    }
    if (cfg->upstream_insecure)
        say("WARNING: --upstream-insecure: the server's certificate is NOT verified; anyone on "
            "the path to it can read and change this traffic");
    const char *kl = cfg->keylog_path ? cfg->keylog_path : getenv("SSLKEYLOGFILE");
    if (kl != NULL && kl[0]) {
        int status = 1;
        p->keylog = open_private(kl, cfg->keylog_path ? "--keylog" : "SSLKEYLOGFILE", &status);
        if (p->keylog == NULL)
            return status;
        xs_tls_ctx_set_keylog(p->server_ctx, keylog_line, p->keylog);
        xs_tls_ctx_set_keylog(p->client_ctx, keylog_line, p->keylog);
        say("writing TLS secrets of both legs to %s (NSS key log format, for Wireshark)", kl);
    }
    return 0;
}

int xs_proxy_run(const xs_proxy_config *cfg)
{
    proxy *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return 1;
    p->cfg = cfg;
    p->loop = uv_default_loop();
    int status = 1;

    if (split_hostport(cfg->upstream, p->up_host, sizeof(p->up_host), p->up_port,
                       sizeof(p->up_port)) < 0) {
        say("cannot read --upstream '%s': expected HOST:PORT", cfg->upstream);
        status = 2;
        goto out;
    }
    const char *ud = cfg->upstream_direct ? cfg->upstream_direct : cfg->upstream;
    if (split_hostport(ud, p->upd_host, sizeof(p->upd_host), p->upd_port, sizeof(p->upd_port)) <
        0) {
        say("cannot read --upstream-direct '%s': expected HOST:PORT", ud);
        status = 2;
        goto out;
    }
    /* Each session needs two descriptors: raise the soft open-files limit to the hard one and
     * refuse sessions beyond what it allows, with a log line, rather than fail at random. */
    struct rlimit rl;
    p->fd_sessions = UINT_MAX;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                getrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur != RLIM_INFINITY) {
            p->nofile = (unsigned long)rl.rlim_cur;
            p->fd_sessions = rl.rlim_cur > 48 ? (unsigned)((rl.rlim_cur - 32) / 2) : 8;
        }
    }
    status = setup_tls(p);
    if (status != 0)
        goto out;
    status = 1;
    if (load_rules(p, &p->rules) < 0) {
        status = 2;
        goto out;
    }
    if (cfg->rules_path != NULL)
        say("rules: %zu from %s after the built-in rewrites (SIGHUP reloads them)",
            xs_rules_count_file(p->rules), cfg->rules_path);
    if (cfg->write_path != NULL) {
        status = 1;
        p->log_file = open_private(cfg->write_path, "--write", &status);
        if (p->log_file == NULL)
            goto out;
        /* Buffered: lines go out once per loop iteration (on_prepare), unless every line
         * must be on disk before what it logs is forwarded (--on-log-error stop). */
        xs_print_options lo = {.format = XS_FORMAT_JSON,
                               .show_secrets = cfg->console.show_secrets,
                               .buffered = !cfg->log_stop};
        if (xs_printer_new(p->log_file, &lo, &p->log) < 0)
            goto out;
    }
    if (cfg->console.format != XS_FORMAT_NONE &&
        xs_printer_new(stdout, &cfg->console, &p->console) < 0)
        goto out;
    /* The console shows what a person needs (no state changes), and its failures are ignored;
     * the log takes everything, and its failure is said once or ends the session
     * (--on-log-error). */
    if (p->console != NULL)
        p->observers[p->n_observers++] =
            xs_printer_observer(p->console, XS_OBS_BEST_EFFORT, 0, "the console");
    if (p->log != NULL)
        p->observers[p->n_observers++] = xs_printer_observer(
            p->log, cfg->log_stop ? XS_OBS_REQUIRED : XS_OBS_WARN, 1, "the --write log");

    if (cfg->listen != NULL) {
        status = listen_on(p, &p->lst[0], cfg->listen, cfg->client_tls);
        if (status != 0)
            goto out;
    }
    if (cfg->listen_tls != NULL) {
        status = listen_on(p, &p->lst[1], cfg->listen_tls, XS_TLSMODE_DIRECT);
        if (status != 0)
            goto out;
    }
    status = 1;
    uv_signal_init(p->loop, &p->sigint);
    uv_signal_init(p->loop, &p->sigterm);
    p->sigint.data = p->sigterm.data = p;
    uv_signal_start(&p->sigint, on_signal, SIGINT);
    uv_signal_start(&p->sigterm, on_signal, SIGTERM);
    uv_timer_init(p->loop, &p->stop_timer);
    p->stop_timer.data = p;
    uv_prepare_init(p->loop, &p->flush);
    p->flush.data = p;
    uv_prepare_start(&p->flush, on_prepare);
    uv_unref((uv_handle_t *)&p->flush);
    uv_timer_init(p->loop, &p->idle_timer); /* started by the first leg that carries something */
    p->idle_timer.data = p;
    if (cfg->rules_path != NULL) {
        uv_signal_init(p->loop, &p->sighup);
        p->sighup.data = p;
        uv_signal_start(&p->sighup, on_sighup, SIGHUP);
    }
    signal(SIGPIPE, SIG_IGN);

    for (int i = 0; i < 2; i++)
        if (p->lst[i].open)
            say("listening on %s (client TLS: %s), upstream %s (server TLS: %s)", p->lst[i].addr,
                xs_tls_mode_name(p->lst[i].client_mode),
                p->lst[i].client_mode == XS_TLSMODE_DIRECT || cfg->upstream_tls == XS_TLSMODE_DIRECT
                    ? ud
                    : cfg->upstream,
                xs_tls_mode_name(cfg->upstream_tls));
    fflush(stderr);
    uv_run(p->loop, UV_RUN_DEFAULT);
    status = 0;
    print_rule_hits(p);
    say("stopped");

out:
    for (int i = 0; i < 2; i++)
        if (p->lst[i].open && !uv_is_closing((uv_handle_t *)&p->lst[i].tcp))
            uv_close((uv_handle_t *)&p->lst[i].tcp, NULL);
    uv_run(p->loop, UV_RUN_NOWAIT);
    if (p->log != NULL && xs_printer_flush(p->log) < 0 && status == 0 && !p->log_failed) {
        say("cannot finish writing %s: %s", cfg->write_path, strerror(errno));
        status = 1;
    }
    xs_printer_free(p->console);
    xs_printer_free(p->log);
    if (p->log_file != NULL && fclose(p->log_file) != 0 && status == 0 && !p->log_failed) {
        say("cannot finish writing %s: %s", cfg->write_path, strerror(errno));
        status = 1;
    }
    if (p->keylog != NULL)
        fclose(p->keylog);
    xs_rules_unref(p->rules);
    xs_tls_ctx_free(p->server_ctx);
    xs_tls_ctx_free(p->client_ctx);
    xs_ca_free(p->ca);
    uv_loop_close(p->loop);
    fflush(stdout);
    free(p);
    return status;
}
