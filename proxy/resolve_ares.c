/* A DNS resolver on the proxy's loop: c-ares asks for its sockets to be watched (sock_state_cb),
 * libuv watches them (one uv_poll each) and hands readiness back (ares_process_fd); one uv_timer
 * stands for c-ares's next time-out. No thread, no blocking call. See resolve.h. */
#include "proxy/resolve.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADDR_MAX 16 /* addresses of one host tried; more are ignored */

typedef struct poll_ent {
    uv_poll_t poll; /* poll.data is this entry */
    ares_socket_t fd;
    struct xs_resolver *r;
    struct poll_ent *next;
} poll_ent;

struct xs_resolver {
    uv_loop_t *loop;
    ares_channel ch;
    bool ch_open;
    uv_timer_t timer; /* timer.data is the resolver */
    poll_ent *polls;
    unsigned handles; /* open handles (the timer and the polls); freed when 0 after free */
    bool freeing;
};

static void maybe_free(xs_resolver *r)
{
    if (r->freeing && r->handles == 0) {
        free(r);
        ares_library_cleanup();
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    xs_resolver *r;
    if (h->type == UV_POLL) {
        poll_ent *e = h->data;
        r = e->r;
        free(e);
    } else {
        r = h->data;
    }
    r->handles--;
    maybe_free(r);
}

/* c-ares's next time-out, or none: the timer follows it after every call into c-ares. */
static void on_timer(uv_timer_t *t);
static void rearm(xs_resolver *r)
{
    if (!r->ch_open)
        return;
    struct timeval tv;
    if (ares_timeout(r->ch, NULL, &tv) == NULL) {
        uv_timer_stop(&r->timer);
        return;
    }
    uint64_t ms = (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
    uv_timer_start(&r->timer, on_timer, ms, 0);
}

static void on_timer(uv_timer_t *t)
{
    xs_resolver *r = t->data;
    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm(r);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    poll_ent *e = h->data;
    xs_resolver *r = e->r;
    ares_socket_t fd = e->fd;
    /* An error on the socket: c-ares finds it when it reads or writes. */
    bool rd = status < 0 || (events & UV_READABLE), wr = status < 0 || (events & UV_WRITABLE);
    ares_process_fd(r->ch, rd ? fd : ARES_SOCKET_BAD, wr ? fd : ARES_SOCKET_BAD);
    rearm(r);
}

/* c-ares opened, changed or is about to close one of its sockets. */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    xs_resolver *r = data;
    poll_ent **pp = &r->polls, *e;
    while ((e = *pp) != NULL && e->fd != fd)
        pp = &e->next;
    if (!readable && !writable) {
        if (e != NULL) {
            *pp = e->next;
            uv_poll_stop(&e->poll);
            uv_close((uv_handle_t *)&e->poll, on_handle_closed);
        }
        return;
    }
    if (e == NULL) {
        e = calloc(1, sizeof(*e));
        if (e == NULL || uv_poll_init_socket(r->loop, &e->poll, fd) < 0) {
            /* Unwatched, the query times out and its caller hears of it. */
            free(e);
            return;
        }
        e->fd = fd;
        e->r = r;
        e->poll.data = e;
        e->next = r->polls;
        r->polls = e;
        r->handles++;
    }
    uv_poll_start(&e->poll, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0), on_poll);
}

int xs_resolver_new(uv_loop_t *loop, const char *servers, xs_resolver **out, xs_diag *diag)
{
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
        return xs_diag_set(diag, XS_ENOMEM, "cannot start the DNS resolver (c-ares)");
    xs_resolver *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        ares_library_cleanup();
        return xs_diag_set(diag, XS_ENOMEM, "out of memory");
    }
    r->loop = loop;
    struct ares_options o;
    memset(&o, 0, sizeof(o));
    o.sock_state_cb = sock_state;
    o.sock_state_cb_data = r;
    o.timeout = 2000; /* ms per try, with ARES_OPT_TIMEOUTMS */
    o.tries = 2;
    int st =
        ares_init_options(&r->ch, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (st != ARES_SUCCESS) {
        free(r);
        ares_library_cleanup();
        return xs_diag_set(diag, st == ARES_ENOMEM ? XS_ENOMEM : XS_EINVAL,
                           "cannot start the DNS resolver: %s", ares_strerror(st));
    }
    r->ch_open = true;
    if (servers != NULL && (st = ares_set_servers_ports_csv(r->ch, servers)) != ARES_SUCCESS) {
        ares_destroy(r->ch);
        free(r);
        ares_library_cleanup();
        return xs_diag_set(diag, XS_EINVAL,
                           "cannot read --dns '%s' (%s): expected ADDR:PORT, e.g. 127.0.0.1:53 or "
                           "[::1]:53",
                           servers, ares_strerror(st));
    }
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    r->handles = 1;
    uv_unref((uv_handle_t *)&r->timer); /* an idle resolver does not keep the loop running */
    *out = r;
    return 0;
}

void xs_resolver_free(xs_resolver *r)
{
    if (r == NULL)
        return;
    r->freeing = true;
    /* Every query's callback runs with ARES_EDESTRUCTION; the sockets' callbacks close the
     * polls. */
    ares_destroy(r->ch);
    r->ch_open = false;
    for (poll_ent *e = r->polls, *next; e != NULL; e = next) {
        next = e->next;
        uv_close((uv_handle_t *)&e->poll, on_handle_closed);
    }
    r->polls = NULL;
    uv_close((uv_handle_t *)&r->timer, on_handle_closed);
}

/* c-ares's status as a libuv code (they pass through the proxy unchanged). */
static int status_code(int st)
{
    switch (st) {
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
        return UV_ECANCELED;
    case ARES_ENOMEM:
        return UV_ENOMEM;
    case ARES_ETIMEOUT:
        return UV_EAI_AGAIN;
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
        return UV_EAI_NONAME;
    default:
        return UV_EAI_FAIL;
    }
}

/* ---- SRV ---- */

typedef struct srv_req {
    xs_srv_cb cb;
    void *user;
    bool direct;
} srv_req;

static void on_srv(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    srv_req *q = arg;
    srv_req req = *q;
    free(q);
    if (status == ARES_ENODATA || status == ARES_ENOTFOUND) {
        req.cb(req.user, 0, NULL, NULL, 0); /* no such record: the caller falls back */
        return;
    }
    if (status != ARES_SUCCESS) {
        req.cb(req.user, status_code(status), ares_strerror(status), NULL, 0);
        return;
    }
    struct ares_srv_reply *srv = NULL;
    int st = ares_parse_srv_reply(abuf, alen, &srv);
    if (st == ARES_ENODATA) {
        req.cb(req.user, 0, NULL, NULL, 0);
        return;
    }
    if (st != ARES_SUCCESS) {
        req.cb(req.user, UV_EAI_FAIL, ares_strerror(st), NULL, 0);
        return;
    }
    xs_srv_target *t = calloc(XS_SRV_MAX_TARGETS, sizeof(*t));
    size_t n = 0;
    for (struct ares_srv_reply *s = srv; t != NULL && s != NULL && n < XS_SRV_MAX_TARGETS;
         s = s->next) {
        if (strlen(s->host) > XS_DNS_NAME_MAX)
            continue;
        snprintf(t[n].host, sizeof(t[n].host), "%s", s->host);
        t[n].port = s->port;
        t[n].prio = s->priority;
        t[n].weight = s->weight;
        t[n].direct = req.direct;
        n++;
    }
    ares_free_data(srv);
    if (t == NULL)
        req.cb(req.user, UV_ENOMEM, "out of memory", NULL, 0);
    else
        req.cb(req.user, 0, NULL, t, n);
    free(t);
}

void xs_resolver_srv(xs_resolver *r, const char *name, bool direct, xs_srv_cb cb, void *user)
{
    srv_req *q = malloc(sizeof(*q));
    if (q == NULL) {
        cb(user, UV_ENOMEM, "out of memory", NULL, 0);
        return;
    }
    *q = (srv_req){.cb = cb, .user = user, .direct = direct};
    ares_query(r->ch, name, ns_c_in, ns_t_srv, on_srv, q);
    rearm(r);
}

/* ---- addresses ---- */

typedef struct addr_req {
    xs_addr_cb cb;
    void *user;
} addr_req;

static void on_addr(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    addr_req req = *(addr_req *)arg;
    free(arg);
    if (status != ARES_SUCCESS) {
        req.cb(req.user, status_code(status), ares_strerror(status), NULL, 0);
        ares_freeaddrinfo(res);
        return;
    }
    struct sockaddr_storage a[ADDR_MAX];
    size_t n = 0;
    for (struct ares_addrinfo_node *nd = res ? res->nodes : NULL; nd != NULL && n < ADDR_MAX;
         nd = nd->ai_next) {
        if ((nd->ai_family != AF_INET && nd->ai_family != AF_INET6) ||
            (size_t)nd->ai_addrlen > sizeof(a[0]))
            continue;
        memset(&a[n], 0, sizeof(a[n]));
        memcpy(&a[n], nd->ai_addr, (size_t)nd->ai_addrlen);
        n++;
    }
    ares_freeaddrinfo(res);
    if (n == 0)
        req.cb(req.user, UV_EAI_NONAME, "no address", NULL, 0);
    else
        req.cb(req.user, 0, NULL, a, n);
}

void xs_resolver_addr(xs_resolver *r, const char *host, uint16_t port, xs_addr_cb cb, void *user)
{
    addr_req *q = malloc(sizeof(*q));
    if (q == NULL) {
        cb(user, UV_ENOMEM, "out of memory", NULL, 0);
        return;
    }
    *q = (addr_req){.cb = cb, .user = user};
    char service[8];
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = ARES_AI_NUMERICSERV;
    ares_getaddrinfo(r->ch, host, service, &hints, on_addr, q);
    rearm(r);
}
