/* Listeners whose destination comes with the connection (SOCKS5, transparent): the SOCKS
 * dialogue on an accepted conn, the connection to the destination before the session exists,
 * and the look at the client's first byte after it (a TLS record: direct TLS; else an XMPP
 * stream: STARTTLS), which decides how the client leg is secured. See conn.h.
 *
 * Ownership: the conn holds the dialogue's state (c->socks) until its session starts; the
 * socket connected to the destination (c->pre_fd) goes to the server leg when the session asks
 * to connect. The look at the first byte watches a duplicate of the client's descriptor with a
 * uv_poll of its own, which closes that duplicate in its close callback, whatever became of the
 * conn. */
#include "proxy/conn.h"
#include "proxy/proxy_impl.h"
#include "proxy/resolve.h"
#include "proxy/socks.h"
#include "proxy/transparent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct sniff {
    uv_poll_t poll; /* poll.data is this */
    int fd;         /* a duplicate of the client's descriptor, closed with the poll */
    xs_conn *c;     /* NULL once the conn no longer waits for it */
} sniff;

struct xs_socks_conn {
    xs_socks sm;
    size_t len, want;
    uint8_t buf[XS_SOCKS_MSG_MAX];
    char peer[64];
    char note[900]; /* said once the session exists */
    sniff *sn;
};

static void on_sniff_closed(uv_handle_t *h)
{
    sniff *sn = h->data;
    close(sn->fd);
    free(sn);
}

static void sniff_stop(xs_conn *c)
{
    struct xs_socks_conn *sc = c->socks;
    if (sc == NULL || sc->sn == NULL)
        return;
    sc->sn->c = NULL;
    uv_poll_stop(&sc->sn->poll);
    uv_close((uv_handle_t *)&sc->sn->poll, on_sniff_closed);
    sc->sn = NULL;
}

void xs_socks_conn_free(xs_conn *c)
{
    sniff_stop(c);
    free(c->socks);
    c->socks = NULL;
    if (c->pre_fd >= 0)
        close(c->pre_fd);
    c->pre_fd = -1;
}

/* Ends a conn that has no session yet: its handles close, and the conn with them. */
static void give_up(xs_conn *c)
{
    sniff_stop(c);
    xs_conn_abort(c);
    xs_conn_settle(c);
}

/* ---- the first byte ---- */

static void on_sniff(uv_poll_t *h, int status, int events)
{
    (void)events;
    sniff *sn = h->data;
    xs_conn *c = sn->c;
    if (c == NULL)
        return;
    struct xs_socks_conn *sc = c->socks;
    unsigned char b;
    ssize_t n = status < 0 ? -1 : recv(sn->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && status >= 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    sniff_stop(c);
    if (n <= 0) {
        xs_proxy_say("%s closed the connection before its first byte%s%s", sc->peer,
                     sc->note[0] ? " after " : "", sc->note);
        give_up(c);
        return;
    }
    /* A TLS handshake record begins with 0x16; an XMPP stream with '<' (or whitespace). */
    bool direct = b == 0x16;
    c->client_mode = direct ? XS_TLSMODE_DIRECT : XS_TLSMODE_STARTTLS;
    char note[1000], peer[64];
    snprintf(note, sizeof(note), "%s; the client speaks %s", sc->note,
             direct ? "TLS first (direct TLS)" : "XMPP first (STARTTLS)");
    snprintf(peer, sizeof(peer), "%s", sc->peer);
    free(c->socks);
    c->socks = NULL;
    xs_conn_begin(c, peer, note);
}

void xs_conn_sniff_start(xs_conn *c)
{
    struct xs_socks_conn *sc = c->socks;
    uv_os_fd_t fd;
    sniff *sn = calloc(1, sizeof(*sn));
    int rc = sn == NULL ? UV_ENOMEM : uv_fileno((uv_handle_t *)&c->leg[XS_CLIENT].tcp, &fd);
    if (rc == 0 && (sn->fd = dup(fd)) < 0)
        rc = UV_EMFILE;
    if (rc == 0 && (rc = uv_poll_init(c->p->loop, &sn->poll, sn->fd)) < 0)
        close(sn->fd);
    if (rc < 0) {
        free(sn);
        xs_proxy_say("%s: cannot watch the connection: %s", sc->peer, uv_strerror(rc));
        give_up(c);
        return;
    }
    sn->poll.data = sn;
    sn->c = c;
    sc->sn = sn;
    uv_poll_start(&sn->poll, UV_READABLE | UV_DISCONNECT, on_sniff);
}

/* ---- connecting to the destination ---- */

static void on_dial_say(void *user, const char *level, const char *text)
{
    xs_conn *c = user;
    (void)level;
    xs_proxy_say("%s: %s", c->socks ? c->socks->peer : "?", text);
}

static void reply_and(xs_conn *c, int rep, const struct sockaddr_storage *bound)
{
    uint8_t r[XS_SOCKS_REPLY_MAX];
    size_t n = xs_socks_reply(r, rep, bound);
    xs_leg_write(&c->leg[XS_CLIENT], (const char *)r, n);
}

static void on_dialled(void *user, int status, int fd, bool direct, const char *target,
                       const char *cause)
{
    (void)direct;
    xs_conn *c = user;
    struct xs_socks_conn *sc = c->socks;
    c->dial = NULL;
    if (c->ls->kind == XS_LST_TRANSPARENT) {
        if (status < 0) {
            xs_proxy_say("%s: cannot reach %s: %s", sc->note, sc->sm.host, cause);
            give_up(c);
            return;
        }
        c->pre_fd = fd;
        free(c->up_key);
        c->up_key = strdup(target);
        size_t used = strlen(sc->note);
        snprintf(sc->note + used, sizeof(sc->note) - used, ", connected to %s", target);
        xs_conn_sniff_start(c);
        return;
    }
    if (status < 0) {
        xs_proxy_say("%s: SOCKS5 CONNECT %s:%u refused: %s", sc->peer, sc->sm.host,
                     (unsigned)sc->sm.port, cause);
        reply_and(c, status == UV_ECONNREFUSED ? XS_SOCKS_REFUSED : XS_SOCKS_HOST_UNREACHABLE,
                  NULL);
        xs_leg_request_close(&c->leg[XS_CLIENT]); /* the reply goes out first */
        xs_conn_settle(c);
        return;
    }
    c->pre_fd = fd;
    free(c->up_key);
    c->up_key = strdup(target);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) != 0)
        bound.ss_family = AF_UNSPEC;
    reply_and(c, XS_SOCKS_OK, &bound);
    size_t used = strlen(sc->note);
    snprintf(sc->note + used, sizeof(sc->note) - used, ", connected to %s", target);
    xs_conn_settle(c); /* the reply goes out */
    if (!xs_leg_done(&c->leg[XS_CLIENT]))
        xs_conn_sniff_start(c);
}

/* The request is read: to the destination, if it is allowed. */
static void socks_connect(xs_conn *c)
{
    xs_proxy *p = c->p;
    struct xs_socks_conn *sc = c->socks;
    const xs_socks *s = &sc->sm;
    snprintf(sc->note, sizeof(sc->note), "SOCKS5 from %s: CONNECT %s:%u%s%s%s", sc->peer, s->host,
             (unsigned)s->port, s->used_auth ? " (user '" : "", s->used_auth ? s->login : "",
             s->used_auth ? "')" : "");
    bool allowed = p->cfg->n_allow_domains == 0;
    for (size_t i = 0; !allowed && i < p->cfg->n_allow_domains; i++)
        allowed = xs_domain_match(p->cfg->allow_domains[i], s->host);
    if (!allowed) {
        xs_proxy_say("%s: refused: %s is not allowed by --allow-domain", sc->note, s->host);
        reply_and(c, XS_SOCKS_NOT_ALLOWED, NULL);
        xs_leg_request_close(&c->leg[XS_CLIENT]);
        return;
    }
    static const xs_dial_cbs cbs = {.say = on_dial_say, .done = on_dialled};
    unsigned t = p->cfg->handshake_timeout < 10 ? p->cfg->handshake_timeout : 10;
    if (xs_dial_start(p->resolver, p->loop, s->host, s->port, XS_DIAL_STARTTLS, t * 1000u, &cbs, c,
                      &c->dial) < 0) {
        reply_and(c, XS_SOCKS_FAILURE, NULL);
        xs_leg_request_close(&c->leg[XS_CLIENT]);
    }
}

/* ---- the dialogue ---- */

static void socks_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    xs_leg *l = h->data;
    struct xs_socks_conn *sc = l->c->socks;
    b->base = (char *)sc->buf + sc->len;
    b->len = sc->want;
}

static void socks_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    xs_leg *l = st->data;
    xs_conn *c = l->c;
    struct xs_socks_conn *sc = c->socks;
    if (n == 0)
        return;
    if (n < 0) {
        xs_proxy_say("%s closed the connection during the SOCKS5 dialogue", sc->peer);
        give_up(c);
        return;
    }
    sc->len += (size_t)n;
    for (;;) {
        size_t used, want, rlen;
        uint8_t reply[XS_SOCKS_REPLY_MAX];
        char why[200];
        int rc =
            xs_socks_feed(&sc->sm, sc->buf, sc->len, &used, &want, reply, &rlen, why, sizeof(why));
        if (rc == 0) {
            sc->want = want < sizeof(sc->buf) - sc->len ? want : sizeof(sc->buf) - sc->len;
            break;
        }
        if (rlen > 0)
            xs_leg_write(l, (const char *)reply, rlen);
        memmove(sc->buf, sc->buf + used, sc->len - used);
        sc->len -= used;
        if (sc->sm.state == XS_SOCKS_FAILED) {
            uv_read_stop(st);
            xs_proxy_say("refusing the SOCKS5 client %s: %s", sc->peer, why);
            xs_leg_request_close(l); /* its reply goes out first */
            break;
        }
        if (sc->sm.state == XS_SOCKS_CONNECT) {
            uv_read_stop(st); /* what follows is the client's, after our reply */
            socks_connect(c);
            break;
        }
    }
    xs_conn_settle(c);
}

/* The state of a connection whose destination is not known yet, for c->socks; NULL (and the
 * connection given up) when out of memory. */
static struct xs_socks_conn *preamble_new(xs_conn *c, const char *peer)
{
    struct xs_socks_conn *sc = calloc(1, sizeof(*sc));
    if (sc == NULL) {
        xs_proxy_say("out of memory: refusing the connection of %s", peer);
        give_up(c);
        return NULL;
    }
    c->socks = sc;
    snprintf(sc->peer, sizeof(sc->peer), "%s", peer);
    return sc;
}

void xs_socks_conn_start(xs_conn *c, const char *peer)
{
    struct xs_socks_conn *sc = preamble_new(c, peer);
    if (sc == NULL)
        return;
    xs_socks_init(&sc->sm, c->p->cfg->socks_user, c->p->cfg->socks_pass);
    sc->want = 2;
    xs_conn_timer_start(c, XS_TIMER_PREAMBLE, (uint64_t)c->p->cfg->handshake_timeout * 1000);
    int rc = uv_read_start((uv_stream_t *)&c->leg[XS_CLIENT].tcp, socks_alloc, socks_read);
    if (rc < 0) {
        xs_proxy_say("cannot read from %s: %s", peer, uv_strerror(rc));
        give_up(c);
        return;
    }
    xs_conn_settle(c);
}

/* ---- transparent ---- */

void xs_transparent_conn_start(xs_conn *c, const char *peer)
{
    xs_proxy *p = c->p;
    struct xs_socks_conn *sc = preamble_new(c, peer);
    if (sc == NULL)
        return;
    uv_os_fd_t fd;
    struct sockaddr_storage dst;
    bool redirected = false;
    int rc = uv_fileno((uv_handle_t *)&c->leg[XS_CLIENT].tcp, &fd);
    if (rc == 0)
        rc = xs_transparent_dst(fd, &dst, &redirected);
    if (rc < 0 || !redirected) {
        xs_proxy_say("refusing %s on %s: %s", peer, c->ls->addr,
                     rc < 0 ? uv_strerror(rc)
                            : "it connected to the transparent listener itself, not through a "
                              "redirection (see README: nftables/iptables REDIRECT)");
        give_up(c);
        return;
    }
    /* The destination in text, with its port, for the dial and the console. */
    char ip[64] = "?";
    uint16_t port;
    if (dst.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&dst, ip, sizeof(ip));
        port = ntohs(((struct sockaddr_in6 *)&dst)->sin6_port);
    } else {
        uv_ip4_name((struct sockaddr_in *)&dst, ip, sizeof(ip));
        port = ntohs(((struct sockaddr_in *)&dst)->sin_port);
    }
    snprintf(sc->sm.host, sizeof(sc->sm.host), "%s", ip);
    sc->sm.port = port;
    c->dialled_ip = strdup(ip); /* NULL out of memory: the socket's address then */
    snprintf(sc->note, sizeof(sc->note), "transparent: %s dialled %s%s%s:%u", peer,
             dst.ss_family == AF_INET6 ? "[" : "", ip, dst.ss_family == AF_INET6 ? "]" : "",
             (unsigned)port);
    xs_conn_timer_start(c, XS_TIMER_PREAMBLE, (uint64_t)p->cfg->handshake_timeout * 1000);
    static const xs_dial_cbs cbs = {.say = on_dial_say, .done = on_dialled};
    unsigned t = p->cfg->handshake_timeout < 10 ? p->cfg->handshake_timeout : 10;
    if (xs_dial_start(p->resolver, p->loop, ip, port, XS_DIAL_STARTTLS, t * 1000u, &cbs, c,
                      &c->dial) < 0) {
        xs_proxy_say("out of memory: refusing the connection of %s", peer);
        give_up(c);
        return;
    }
    xs_conn_settle(c);
}
