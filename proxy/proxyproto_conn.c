/* Reading a PROXY protocol header from an accepted connection (see conn.h and proxyproto.h).
 *
 * The client leg reads into a small buffer of the conn's, asking libuv for no more bytes than
 * the parser allows (`want`), so that nothing after the header is read here: once it is whole,
 * reading stops and the session starts on the same socket as on any listener. A bad header, a
 * close or the deadline ends this connection only, with a line on stderr. */
#include "proxy/conn.h"
#include "proxy/proxy_impl.h"
#include "proxy/proxyproto.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct xs_pp_read {
    size_t len, want;
    unsigned char buf[XS_PP_V2_HEAD + XS_PP_V2_MAX_LEN];
};

void xs_pp_conn_free(xs_conn *c)
{
    free(c->pp);
    c->pp = NULL;
    free(c->pp_peer);
    c->pp_peer = NULL;
}

static void pp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    xs_leg *l = h->data;
    struct xs_pp_read *r = l->c->pp;
    size_t room = sizeof(r->buf) - r->len;
    b->base = (char *)r->buf + r->len;
    b->len = r->want < room ? r->want : room;
}

/* The address of a header's sockaddr in text, allocated. */
static char *ip_of(const struct sockaddr_storage *a)
{
    char ip[INET6_ADDRSTRLEN];
    if (a->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, ip, sizeof(ip));
    else
        inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, ip, sizeof(ip));
    return strdup(ip);
}

/* The header is whole: the session starts with the client it names. */
static void pp_done(xs_conn *c, const xs_pp_info *info)
{
    char client[80], to[80], note[300];
    const char *sender = c->pp_peer ? c->pp_peer : "?";
    if (info->has_addr) {
        xs_pp_addr_name(&info->src, client, sizeof(client));
        xs_pp_addr_name(&info->dst, to, sizeof(to));
        c->dialled_ip = ip_of(&info->dst); /* NULL out of memory: the socket's address then */
        snprintf(note, sizeof(note),
                 "PROXY protocol v%d from %s: the client is %s, it connected "
                 "to %s",
                 info->version, sender, client, to);
    } else {
        snprintf(client, sizeof(client), "%s", sender);
        snprintf(note, sizeof(note),
                 "PROXY protocol v%d from %s: no client address (%s): the "
                 "connection's own stands",
                 info->version, sender, info->version == 1 ? "UNKNOWN" : "LOCAL or not TCP");
    }
    xs_pp_conn_free(c);
    xs_conn_begin(c, client, note);
}

static void pp_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    xs_leg *l = st->data;
    xs_conn *c = l->c;
    const char *sender = c->pp_peer ? c->pp_peer : "?";
    if (n == 0)
        return;
    if (n < 0) {
        xs_proxy_say("connection of %s on %s closed before its PROXY protocol header: %s", sender,
                     c->ls->addr, uv_strerror((int)n));
        xs_conn_abort(c);
        xs_conn_settle(c);
        return;
    }
    struct xs_pp_read *r = c->pp;
    r->len += (size_t)n;
    size_t used, want;
    xs_pp_info info;
    char why[200];
    int rc = xs_pp_parse(r->buf, r->len, &used, &want, &info, why, sizeof(why));
    if (rc == 0 && want > 0 && r->len + want <= sizeof(r->buf)) {
        r->want = want;
        return;
    }
    uv_read_stop(st);
    if (rc == 1 && used == r->len) {
        pp_done(c, &info);
        return;
    }
    xs_proxy_say("refusing the connection of %s on %s: bad PROXY protocol header: %s", sender,
                 c->ls->addr, rc < 0 ? why : "it does not end where it should");
    xs_conn_abort(c);
    xs_conn_settle(c);
}

void xs_pp_conn_start(xs_conn *c, const char *peer)
{
    xs_leg *cl = &c->leg[XS_CLIENT];
    c->pp = malloc(sizeof(*c->pp));
    c->pp_peer = strdup(peer);
    if (c->pp == NULL || c->pp_peer == NULL) {
        xs_proxy_say("out of memory: refusing the connection of %s", peer);
        xs_conn_abort(c);
        xs_conn_settle(c);
        return;
    }
    c->pp->len = 0;
    c->pp->want = XS_PP_FIRST_READ;
    xs_conn_timer_start(c, XS_TIMER_PREAMBLE, (uint64_t)c->p->cfg->handshake_timeout * 1000);
    int rc = uv_read_start((uv_stream_t *)&cl->tcp, pp_alloc, pp_read);
    if (rc < 0) {
        xs_proxy_say("cannot read from %s: %s", peer, uv_strerror(rc));
        xs_conn_abort(c);
    }
    xs_conn_settle(c);
}
