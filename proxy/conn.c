/* A conn: a session, its two legs and its deadline. See conn.h. */
#include "proxy/conn.h"

#include "inspect/error.h"
#include "proxy/proxy_impl.h"
#include "proxy/proxyproto.h"
#include "proxy/resolve.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the deadline --------------------------------------------------------------------------- */

void xs_conn_handle_gone(xs_conn *c)
{
    if (--c->handles == 0)
        c->dead = true;
    xs_conn_settle(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    xs_conn *c = h->data;
    free(h);
    xs_conn_handle_gone(c);
}

static void timer_close(xs_conn *c)
{
    if (c->timer == NULL)
        return;
    uv_close((uv_handle_t *)c->timer, on_timer_closed);
    c->timer = NULL;
}

static void timer_stop(xs_conn *c)
{
    timer_close(c);
    c->timer_kind = XS_TIMER_NONE;
}

void xs_conn_cut(xs_conn *c)
{
    for (int i = 0; i < 2; i++)
        xs_leg_close_handle(&c->leg[i]);
}

static void on_timer(uv_timer_t *t)
{
    xs_conn *c = t->data;
    xs_conn_timer k = c->timer_kind;
    c->timer_kind = XS_TIMER_NONE;
    if (k == XS_TIMER_HANDSHAKE && c->s != NULL && !xs_session_forwarding(c->s)) {
        char what[128];
        snprintf(what, sizeof(what), "the session was not set up within %u s",
                 c->p->cfg->handshake_timeout);
        xs_session_on_timeout(c->s, what);
    } else if (k == XS_TIMER_CLOSE && xs_session_lagging_side(c->s) >= 0) {
        xs_side lag = (xs_side)xs_session_lagging_side(c->s);
        char what[160];
        snprintf(what, sizeof(what), "the %s did not close its stream within %u s of the %s",
                 lag == XS_CLIENT ? "client" : "server", c->p->cfg->close_timeout,
                 lag == XS_CLIENT ? "server" : "client");
        xs_session_on_closed(c->s, lag, 0, what);
    } else if (k == XS_TIMER_LINGER) {
        xs_conn_cut(c);
    } else if (k == XS_TIMER_PREAMBLE) {
        xs_proxy_say("closing a connection on %s: its %s did not finish within %u s", c->ls->addr,
                     c->ls->kind == XS_LST_SOCKS         ? "SOCKS5 dialogue"
                     : c->ls->kind == XS_LST_TRANSPARENT ? "connection to its destination"
                                                         : "PROXY protocol header",
                     c->p->cfg->handshake_timeout);
        xs_socks_conn_free(c);
        xs_conn_abort(c);
    }
    xs_conn_settle(c);
}

void xs_conn_timer_start(xs_conn *c, xs_conn_timer kind, uint64_t ms)
{
    if (!c->timer_open)
        return;
    if (c->timer == NULL) {
        uv_timer_t *t = malloc(sizeof(*t));
        if (t == NULL || uv_timer_init(c->p->loop, t) < 0) {
            /* A session without a deadline could be held open for ever: it ends at once. */
            free(t);
            xs_conn_cut(c);
            return;
        }
        t->data = c;
        c->timer = t;
        c->handles++;
    }
    c->timer_kind = kind;
    uv_timer_start(c->timer, on_timer, ms, 0);
}

/* ---- the session's view of the legs (xs_session_io) ------------------------------------------ */

static int io_write(void *ctx, xs_side side, const char *data, size_t len)
{
    xs_conn *c = ctx;
    xs_leg *l = &c->leg[side];
    if (l->dq_tail != NULL) /* order within a direction: behind what a rule delayed */
        return xs_leg_delay(l, data, len, l->dq_tail->at);
    return xs_leg_write(l, data, len);
}

static int io_write_delayed(void *ctx, xs_side side, const char *data, size_t len, unsigned long ms)
{
    xs_conn *c = ctx;
    return xs_leg_delay(&c->leg[side], data, len, uv_now(c->p->loop) + ms);
}

/* Gives the client leg's TLS the address the client connected to, for the forged certificate's
 * IP address SAN: a client that dialled an address sends no SNI and checks that address. An
 * IPv4 client of a dual-stack listener is named by its IPv4 address, as it dialled it. When the
 * client dialled another address than this socket's (a PROXY protocol header names it, or the
 * kernel redirected the connection), that address is the one it checks. */
static int set_local_ip(xs_leg *cl)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN];

    if (cl->c->dialled_ip != NULL)
        return xs_tls_set_local_ip(cl->tls, cl->c->dialled_ip);
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

/* The server leg's TLS: verifies `name` (the host when there is none and --upstream-insecure). */
static int server_tls_new(xs_conn *c, xs_leg *l, const char *name)
{
    xs_proxy *p = c->p;
    const char *host = c->server_mode == XS_TLSMODE_DIRECT ? p->upd_host : p->up_host;
    const char *port = c->server_mode == XS_TLSMODE_DIRECT ? p->upd_port : p->up_port;
    if ((name == NULL || name[0] == 0) && !p->cfg->upstream_insecure) {
        xs_proxy_say("session %s: no server name to verify (the client sent no SNI and no stream "
                     "'to'); pass --server-name NAME",
                     xs_session_id(c->s));
        return XS_EINVAL;
    }
    int rc = xs_tls_new(p->client_ctx, name && name[0] ? name : host, &l->tls);
    if (rc == 0) {
        char key[300];
        if (c->up_key != NULL) /* a dialled server: the target it reached */
            snprintf(key, sizeof(key), "%s", c->up_key);
        else
            snprintf(key, sizeof(key), "%s:%s", host, port);
        xs_tls_set_resume_key(l->tls, key);
        xs_tls_set_alpn(l->tls, c->server_mode == XS_TLSMODE_DIRECT);
    }
    return rc;
}

static int io_start_tls(void *ctx, xs_side side, const char *name)
{
    xs_conn *c = ctx;
    xs_proxy *p = c->p;
    xs_leg *l = &c->leg[side];
    int rc;
    if (side == XS_CLIENT) {
        rc = xs_tls_new(p->server_ctx, name && name[0] ? name : NULL, &l->tls);
        if (rc == 0 && p->ca != NULL)
            rc = set_local_ip(l);
    } else {
        rc = server_tls_new(c, l, name);
    }
    if (rc < 0)
        return rc;
    l->tls_state = XS_LEG_TLS_HANDSHAKING;
    if (side == XS_SERVER) {
        rc = xs_tls_handshake(l->tls);
        xs_leg_drain_cipher(l);
        if (rc < 0)
            return XS_ETLS;
    }
    return 0;
}

static void peer_name(xs_leg *cl, char *peer, size_t cap);

static void on_connect(uv_connect_t *req, int status)
{
    xs_leg *l = req->data;
    xs_conn *c = l->c;
    free(req);
    if (status == UV_ECANCELED || !xs_leg_is_open(l)) {
        xs_conn_settle(c);
        return;
    }
    if (status < 0) {
        char cause[300];
        const char *hp =
            c->server_mode == XS_TLSMODE_DIRECT ? c->p->cfg->upstream_direct : c->p->cfg->upstream;
        snprintf(cause, sizeof(cause), "cannot connect to %s: %s", hp ? hp : c->p->cfg->upstream,
                 uv_strerror(status));
        xs_session_on_connected(c->s, status, cause);
        xs_conn_settle(c);
        return;
    }
    xs_leg_connected_now(l);
    xs_leg_start_reading(l);
    char addr[64];
    peer_name(l, addr, sizeof(addr));
    xs_session_set_server_addr(c->s, addr);
    xs_session_on_connected(c->s, 0, NULL);
    xs_conn_settle(c);
}

/* Starts connecting the server leg to addr. Returns 0 or a libuv error; the leg's handle may be
 * open either way, and the session's close path closes it. */
static int connect_to(xs_conn *c, const struct sockaddr *addr)
{
    xs_leg *l = &c->leg[XS_SERVER];
    if (l->state != XS_LEG_IDLE)
        return UV_ECANCELED; /* closed before it was connected */
    int rc = xs_leg_open_handle(l, c->p->loop);
    if (rc < 0)
        return rc;
    /* Listed from the start: its parser holds a libxml2 context already. */
    xs_trim_touch(l, true);
    uv_connect_t *creq = malloc(sizeof(*creq)); /* freed by on_connect */
    if (creq == NULL)
        return UV_ENOMEM;
    creq->data = l;
    rc = uv_tcp_connect(creq, &l->tcp, addr, on_connect);
    if (rc < 0)
        free(creq);
    return rc;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    xs_conn *c = req->data;
    free(req); /* libuv is done with it once the callback runs */
    c->resolving = false;
    if (xs_session_closing(c->s) || c->p->stopping) {
        uv_freeaddrinfo(res);
        xs_conn_settle(c);
        return;
    }
    if (status < 0) {
        char cause[400];
        snprintf(cause, sizeof(cause), "cannot resolve %s: %s",
                 c->server_mode == XS_TLSMODE_DIRECT ? c->p->upd_host : c->p->up_host,
                 uv_strerror(status));
        xs_session_on_connected(c->s, status, cause);
        xs_conn_settle(c);
        return;
    }
    int rc = connect_to(c, res->ai_addr);
    uv_freeaddrinfo(res);
    if (rc < 0) {
        char cause[300];
        snprintf(cause, sizeof(cause), "cannot connect: %s", uv_strerror(rc));
        xs_session_on_connected(c->s, rc, cause);
    }
    xs_conn_settle(c);
}

/* ---- a server found by its domain (proxy/resolve.h) ---- */

static void on_dial_say(void *user, const char *level, const char *text)
{
    xs_conn *c = user;
    xs_session_say(c->s, level, text);
}

/* The dial connected a socket: the server leg takes it over, secured as its target says. */
static int adopt_socket(xs_conn *c, int fd, bool direct)
{
    xs_leg *l = &c->leg[XS_SERVER];
    if (l->state != XS_LEG_IDLE) {
        close(fd);
        return UV_ECANCELED;
    }
    int rc = xs_leg_open_handle(l, c->p->loop);
    if (rc == 0)
        rc = uv_tcp_open(&l->tcp, fd);
    if (rc < 0) {
        close(fd); /* the handle, if open, closes with the session */
        return rc;
    }
    xs_trim_touch(l, true);
    xs_tls_mode want = c->p->cfg->upstream_tls;
    c->server_mode = direct                    ? XS_TLSMODE_DIRECT
                     : want == XS_TLSMODE_NONE ? XS_TLSMODE_NONE
                                               : XS_TLSMODE_STARTTLS;
    xs_session_set_server_mode(c->s, c->server_mode);
    xs_leg_connected_now(l);
    xs_leg_start_reading(l);
    return 0;
}

static void on_dialled(void *user, int status, int fd, bool direct, const char *target,
                       const char *cause)
{
    xs_conn *c = user;
    c->dial = NULL; /* it frees itself */
    if (xs_session_closing(c->s) || c->p->stopping) {
        if (fd >= 0)
            close(fd);
        xs_conn_settle(c);
        return;
    }
    if (status == 0) {
        free(c->up_key);
        c->up_key = strdup(target);
        status = adopt_socket(c, fd, direct);
        cause = status < 0 ? uv_strerror(status) : NULL;
    }
    xs_session_on_connected(c->s, status, cause);
    xs_conn_settle(c);
}

/* Says why an auto upstream may not go to `domain`, or returns 0 when it may. */
static int refuse_domain(xs_conn *c, const char *domain)
{
    const xs_proxy_config *cfg = c->p->cfg;
    char why[400];
    if (domain[0] == 0)
        snprintf(why, sizeof(why),
                 "the client named no domain (no SNI, no stream 'to'): "
                 "--upstream auto cannot know where to go");
    else if (!xs_dns_name_ok(domain))
        snprintf(why, sizeof(why), "'%.260s' is not a domain name", domain);
    else {
        for (size_t i = 0; i < cfg->n_allow_domains; i++)
            if (xs_domain_match(cfg->allow_domains[i], domain))
                return 0;
        if (cfg->n_allow_domains == 0)
            return 0;
        snprintf(why, sizeof(why), "%.260s is not allowed by --allow-domain: refused", domain);
    }
    xs_session_on_connected(c->s, XS_EINVAL, why);
    return XS_EINVAL;
}

static int reach_connect(xs_conn *c)
{
    xs_proxy *p = c->p;
    const char *domain = p->up_kind == XS_UP_DOMAIN ? p->up_host : xs_session_domain(c->s);
    if (p->up_kind == XS_UP_AUTO && refuse_domain(c, domain) < 0)
        return 0; /* the session was told */
    unsigned kinds = p->cfg->upstream_tls == XS_TLSMODE_MIRROR   ? XS_DIAL_STARTTLS | XS_DIAL_DIRECT
                     : p->cfg->upstream_tls == XS_TLSMODE_DIRECT ? XS_DIAL_DIRECT
                                                                 : XS_DIAL_STARTTLS;
    static const xs_dial_cbs cbs = {.say = on_dial_say, .done = on_dialled};
    unsigned timeout = p->cfg->handshake_timeout < 10 ? p->cfg->handshake_timeout : 10;
    return xs_dial_start(p->resolver, p->loop, domain, 0, kinds, timeout * 1000u, &cbs, c,
                         &c->dial);
}

/* The destination was connected before the session (SOCKS5, transparent): the server leg takes
 * that socket, secured as the client leg is (mirror) or as --upstream-tls says. */
static int connect_pre(xs_conn *c)
{
    xs_tls_mode want = c->p->cfg->upstream_tls;
    bool direct =
        want == XS_TLSMODE_MIRROR ? c->client_mode == XS_TLSMODE_DIRECT : want == XS_TLSMODE_DIRECT;
    int fd = c->pre_fd;
    c->pre_fd = -1;
    int rc = adopt_socket(c, fd, direct);
    xs_session_on_connected(c->s, rc, rc < 0 ? uv_strerror(rc) : NULL);
    return 0;
}

static int io_connect(void *ctx)
{
    xs_conn *c = ctx;
    xs_proxy *p = c->p;
    if (c->pre_fd >= 0)
        return connect_pre(c);
    if (p->up_kind != XS_UP_HOSTPORT)
        return reach_connect(c);
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
    xs_conn *c = ctx;
    xs_leg_request_close(&c->leg[side]);
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
    xs_proxy_say("%s", text);
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

/* ---- the end of every callback -------------------------------------------------------------- */

static void conn_free(xs_conn *c)
{
    xs_proxy *p = c->p;
    for (int i = 0; i < 2; i++)
        xs_trim_forget(p, &c->leg[i]);
    xs_session_free(c->s);
    for (int i = 0; i < 2; i++)
        xs_leg_free(&c->leg[i]);
    xs_dial_cancel(c->dial);
    free(c->up_key);
    xs_pp_conn_free(c);
    xs_socks_conn_free(c);
    free(c->dialled_ip);
    bool listed = c->listed;
    if (listed) {
        if (c->prev)
            c->prev->next = c->next;
        else
            p->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        p->n_conns--;
    }
    free(c);
    if (listed)
        xs_proxy_conn_gone(p);
}

/* Backpressure: a leg with too much queued stops the other from reading. */
static void backpressure(xs_conn *c)
{
    for (int i = 0; i < 2; i++) {
        xs_leg *l = &c->leg[i], *o = &c->leg[1 - i];
        size_t q = xs_leg_queued(l);
        if (q > XS_PROXY_HIGH_WATER && !(o->flags & XS_LEG_PAUSED) && xs_leg_connected(o)) {
            uv_read_stop((uv_stream_t *)&o->tcp);
            o->flags |= XS_LEG_PAUSED;
        } else if (q <= XS_PROXY_LOW_WATER && (o->flags & XS_LEG_PAUSED)) {
            o->flags &= ~XS_LEG_PAUSED;
            xs_leg_start_reading(o);
        }
    }
}

/* Once both legs are closing, no deadline may be set any more and the timers close. */
static void close_timers(xs_conn *c)
{
    bool all = xs_leg_done(&c->leg[0]) && xs_leg_done(&c->leg[1]);
    if (all && c->timer_open) {
        c->timer_open = false;
        timer_close(c);
    }
    for (int i = 0; all && i < 2; i++)
        xs_leg_close_delay_timer(&c->leg[i]);
}

void xs_conn_settle(xs_conn *c)
{
    if (c->dead) {
        if (!c->resolving)
            conn_free(c);
        return;
    }
    bool closing = c->s != NULL && xs_session_closing(c->s);
    for (int i = 0; i < 2; i++) {
        xs_leg *l = &c->leg[i];
        if (closing)
            xs_leg_request_close(l);
        xs_leg_settle_close(l);
        xs_leg_flush(l);
    }
    if (c->s == NULL) {
        /* Refused before it had a session (or before its PROXY header): its handle is closing,
         * and so is its deadline once the leg is done. */
        if (xs_leg_done(&c->leg[XS_CLIENT]))
            close_timers(c);
        return;
    }
    backpressure(c);
    if (xs_session_forwarding(c->s) && c->timer_kind == XS_TIMER_HANDSHAKE)
        timer_stop(c);
    /* One side closed its stream: the other gets a deadline to close its own. */
    if (xs_session_lagging_side(c->s) >= 0 && c->timer_kind != XS_TIMER_CLOSE &&
        c->timer_kind != XS_TIMER_LINGER)
        xs_conn_timer_start(c, XS_TIMER_CLOSE, (uint64_t)c->p->cfg->close_timeout * 1000);
    if (closing)
        close_timers(c);
}

/* ---- accepting ------------------------------------------------------------------------------ */

/* Says why a connection is refused, or returns false when it may be accepted. */
static bool refuse(xs_listener *ls, int rc)
{
    xs_proxy *p = ls->p;
    bool over_fds = p->n_conns >= p->fd_sessions;
    if (rc < 0)
        xs_proxy_say("accept on %s failed: %s", ls->addr, uv_strerror(rc));
    else if (over_fds)
        xs_proxy_say("refusing a connection on %s: %u sessions open, the most the open-files limit "
                     "(%lu) allows; raise it (ulimit -n) for more",
                     ls->addr, p->n_conns, p->nofile);
    else if (p->cfg->max_sessions && p->n_conns >= p->cfg->max_sessions && !p->stopping)
        xs_proxy_say("refusing a connection on %s: %u sessions open (--max-sessions)", ls->addr,
                     p->n_conns);
    else
        return p->stopping;
    return true;
}

/* The address of a leg's peer (the client, or the server), "IP:PORT" or "[IP6]:PORT", into peer
 * ("?" when unknown). */
static void peer_name(xs_leg *cl, char *peer, size_t cap)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    snprintf(peer, cap, "?");
    if (uv_tcp_getpeername(&cl->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    char ip[48];
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
    if (ss.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
        /* An IPv4 client of a dual-stack listener is named as it is: by its IPv4 address. */
        inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip, sizeof(ip));
        snprintf(peer, cap, "%s:%u", ip, ntohs(s6->sin6_port));
    } else if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
        snprintf(peer, cap, "[%s]:%u", ip, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
        snprintf(peer, cap, "%s:%u", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
}

/* A direct TLS listener's client leg speaks TLS from the first byte. A client that sends no SNI
 * gets a certificate for --server-name, else for the server's host name when it is a name. */
static int client_direct_tls(xs_conn *c)
{
    xs_proxy *p = c->p;
    xs_leg *cl = &c->leg[XS_CLIENT];
    struct in6_addr ip;
    const char *defname = p->cfg->server_name;
    if (defname == NULL && p->upd_host[0] && inet_pton(AF_INET, p->upd_host, &ip) != 1 &&
        inet_pton(AF_INET6, p->upd_host, &ip) != 1)
        defname = p->upd_host;
    int rc = xs_tls_new(p->server_ctx, defname, &cl->tls);
    if (rc == 0 && p->ca != NULL)
        rc = set_local_ip(cl);
    if (rc == 0)
        cl->tls_state = XS_LEG_TLS_HANDSHAKING;
    return rc;
}

/* Puts the conn at the head of the proxy's list. */
static void conn_list(xs_conn *c)
{
    xs_proxy *p = c->p;
    c->next = p->conns;
    if (p->conns)
        p->conns->prev = c;
    p->conns = c;
    p->n_conns++;
    c->listed = true;
}

/* The client is known (its address, after a PROXY protocol header if the listener wants one): its
 * session starts. `note`, when not NULL, is told right after the session's first line. */
void xs_conn_begin(xs_conn *c, const char *peer, const char *note)
{
    xs_proxy *p = c->p;
    xs_listener *ls = c->ls;
    xs_leg *cl = &c->leg[XS_CLIENT];
    c->server_mode =
        p->cfg->upstream_tls == XS_TLSMODE_MIRROR ? c->client_mode : p->cfg->upstream_tls;
    const xs_session_cfg *scfg = c->client_mode == ls->client_mode ? &ls->scfg : &ls->scfg_tls;
    int rc = xs_session_new(scfg, &session_io, c, ++p->next_id, peer, &c->s);
    if (rc < 0) {
        xs_proxy_say("refusing %s: cannot create a session: %s", peer, xs_strerror(rc));
        xs_conn_abort(c);
        xs_conn_settle(c);
        return;
    }
    if (!c->listed)
        conn_list(c);
    xs_trim_touch(cl, true); /* its parser holds a libxml2 context already */
    if (c->client_mode == XS_TLSMODE_DIRECT && (rc = client_direct_tls(c)) < 0) {
        xs_session_on_closed(c->s, XS_CLIENT, rc, "cannot create a TLS connection");
        xs_conn_settle(c);
        return;
    }
    xs_conn_timer_start(c, XS_TIMER_HANDSHAKE, (uint64_t)p->cfg->handshake_timeout * 1000);
    xs_session_start(c->s);
    if (note != NULL)
        xs_session_say(c->s, "info", note);
    xs_leg_start_reading(cl);
    xs_conn_settle(c);
}

void xs_conn_abort(xs_conn *c)
{
    xs_conn_cut(c);
    c->timer_open = false;
    timer_close(c);
}

void xs_conn_accept(xs_listener *ls, uv_stream_t *server)
{
    xs_proxy *p = ls->p;
    xs_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        xs_proxy_say("out of memory: refusing a connection on %s", ls->addr);
        return;
    }
    c->p = p;
    c->pre_fd = -1;
    for (int i = 0; i < 2; i++)
        xs_leg_init(&c->leg[i], c, (xs_side)i);
    xs_leg *cl = &c->leg[XS_CLIENT];
    if (xs_leg_open_handle(cl, p->loop) < 0) {
        free(c);
        return;
    }
    /* Until it has a session, a conn is freed by its client leg's close callback (dead, with no
     * session and not listed: xs_conn_settle() frees it). */
    if (refuse(ls, uv_accept(server, (uv_stream_t *)&cl->tcp))) {
        xs_leg_close_handle(cl);
        return;
    }
    xs_leg_connected_now(cl);
    c->timer_open = true; /* the handshake deadline is set below */
    c->ls = ls;
    c->client_mode = ls->client_mode;
    char peer[64];
    peer_name(cl, peer, sizeof(peer));
    if (ls->proxy_protocol) {
        /* Listed at once, so that a stop cuts it; the session comes with the header. */
        conn_list(c);
        xs_pp_conn_start(c, peer);
        return;
    }
    if (ls->kind == XS_LST_SOCKS) {
        conn_list(c);
        xs_socks_conn_start(c, peer);
        return;
    }
    if (ls->kind == XS_LST_TRANSPARENT) {
        conn_list(c);
        xs_transparent_conn_start(c, peer);
        return;
    }
    xs_conn_begin(c, peer, NULL);
}
