/* A dial: a domain's SRV targets (or one given host and port), each target's addresses, each
 * address connected in turn until one answers (RFC 6120 section 3.2, XEP-0368). See resolve.h.
 *
 * Ownership: the dial owns its targets, its addresses, the TCP handle of the attempt under way and
 * a timer bounding that attempt. Callbacks of the resolver and of libuv may still come after the
 * owner cancelled, so the dial counts them (`pending`) and frees itself with the last. */
#include "proxy/resolve.h"

#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ADDRS_MAX 16

struct xs_dial {
    xs_resolver *r;
    uv_loop_t *loop;
    xs_dial_cbs cbs;
    void *user;
    bool cancelled, finished, timed_out;
    unsigned kinds, timeout_ms;
    unsigned pending;  /* resolver queries, handles and requests whose callback is still due */
    unsigned srv_left; /* SRV queries not answered yet */
    bool srv_any;      /* some SRV record (even ".") was found: no fallback to the domain */
    char domain[XS_DNS_NAME_MAX + 1];
    xs_srv_target *t;
    size_t n, ti;
    struct sockaddr_storage addrs[ADDRS_MAX];
    size_t na, ai;
    uv_tcp_t *tcp; /* the attempt under way; NULL between attempts */
    uv_connect_t creq;
    uv_timer_t timer;
    char cause[600]; /* why the last attempt failed */
};

static void maybe_free(xs_dial *d)
{
    if (d->pending == 0 && (d->cancelled || d->finished)) {
        free(d->t);
        free(d);
    }
}

static void say(xs_dial *d, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(xs_dial *d, const char *level, const char *fmt, ...)
{
    if (d->cancelled || d->cbs.say == NULL)
        return;
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    d->cbs.say(d->user, level, text);
}

static void on_timer_closed(uv_handle_t *h)
{
    xs_dial *d = h->data;
    d->pending--;
    maybe_free(d);
}

/* The end: told once, then the timer closes and the dial goes with its last callback. */
static void finish(xs_dial *d, int status, int fd, bool direct, const char *target,
                   const char *cause)
{
    if (d->finished)
        return;
    d->finished = true;
    uv_close((uv_handle_t *)&d->timer, on_timer_closed);
    if (!d->cancelled)
        d->cbs.done(d->user, status, fd, direct, target, cause);
    else if (fd >= 0)
        close(fd);
}

static void next_target(xs_dial *d);

static const char *service_of(const xs_srv_target *t)
{
    return t->direct ? "_xmpps-client._tcp" : "_xmpp-client._tcp";
}

static void addr_name(const struct sockaddr_storage *a, char *out, size_t cap)
{
    char ip[64] = "?";
    if (a->ss_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)a, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, ntohs(((const struct sockaddr_in6 *)a)->sin6_port));
    } else {
        uv_ip4_name((const struct sockaddr_in *)a, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, ntohs(((const struct sockaddr_in *)a)->sin_port));
    }
}

/* ---- connecting to one address ---- */

static void next_addr(xs_dial *d);

static void on_tcp_closed(uv_handle_t *h)
{
    xs_dial *d = h->data;
    free(h);
    d->pending--;
    maybe_free(d);
}

static void on_connect(uv_connect_t *req, int status)
{
    xs_dial *d = req->data;
    uv_tcp_t *tcp = (uv_tcp_t *)req->handle;
    d->tcp = NULL;
    d->pending--;
    uv_timer_stop(&d->timer);
    const xs_srv_target *t = &d->t[d->ti];
    char where[80];
    addr_name(&d->addrs[d->ai], where, sizeof(where));
    int fd = -1;
    if (status == 0 && !d->cancelled) {
        /* The leg takes a descriptor of its own; this attempt's handle closes. */
        uv_os_fd_t ofd;
        if (uv_fileno((uv_handle_t *)tcp, &ofd) == 0)
            fd = dup(ofd);
        if (fd < 0)
            status = UV_EMFILE;
    }
    if (!uv_is_closing((uv_handle_t *)tcp)) /* else closed by the timer or a cancel */
        uv_close((uv_handle_t *)tcp, on_tcp_closed);
    if (d->cancelled) {
        maybe_free(d);
        return;
    }
    if (status == 0) {
        char target[XS_DNS_NAME_MAX + 16];
        snprintf(target, sizeof(target), "%s:%u", t->host, (unsigned)t->port);
        say(d, "info", "connected to %s (%s, %s)", where, target,
            t->direct ? "direct TLS" : "STARTTLS");
        finish(d, 0, fd, t->direct, target, NULL);
        maybe_free(d);
        return;
    }
    snprintf(d->cause, sizeof(d->cause), "%s:%u (%s): %s", t->host, (unsigned)t->port, where,
             d->timed_out ? "no answer in time" : uv_strerror(status));
    say(d, "warning", "cannot connect to %s (%s): %s; trying the next", where, t->host,
        d->timed_out ? "no answer in time" : uv_strerror(status));
    d->ai++;
    next_addr(d);
    maybe_free(d);
}

static void on_attempt_timer(uv_timer_t *tm)
{
    xs_dial *d = tm->data;
    if (d->tcp != NULL && !uv_is_closing((uv_handle_t *)d->tcp)) {
        d->timed_out = true; /* the connect callback comes with UV_ECANCELED */
        uv_close((uv_handle_t *)d->tcp, on_tcp_closed);
    }
}

static void next_addr(xs_dial *d)
{
    if (d->cancelled)
        return;
    if (d->ai >= d->na) {
        d->ti++;
        next_target(d);
        return;
    }
    d->timed_out = false;
    uv_tcp_t *tcp = malloc(sizeof(*tcp));
    if (tcp == NULL || uv_tcp_init(d->loop, tcp) < 0) {
        free(tcp);
        finish(d, UV_ENOMEM, -1, false, NULL, "out of memory");
        return;
    }
    tcp->data = d;
    d->pending++; /* the handle's close */
    d->creq.data = d;
    int rc = uv_tcp_connect(&d->creq, tcp, (const struct sockaddr *)&d->addrs[d->ai], on_connect);
    if (rc < 0) {
        uv_close((uv_handle_t *)tcp, on_tcp_closed);
        char where[80];
        addr_name(&d->addrs[d->ai], where, sizeof(where));
        snprintf(d->cause, sizeof(d->cause), "%s: %s", where, uv_strerror(rc));
        say(d, "warning", "cannot connect to %s: %s; trying the next", where, uv_strerror(rc));
        d->ai++;
        next_addr(d);
        return;
    }
    d->pending++; /* the connect request */
    d->tcp = tcp;
    uv_timer_start(&d->timer, on_attempt_timer, d->timeout_ms, 0);
}

/* ---- one target ---- */

static void on_addrs(void *user, int status, const char *cause, const struct sockaddr_storage *a,
                     size_t n)
{
    xs_dial *d = user;
    d->pending--;
    if (d->cancelled || d->finished) {
        maybe_free(d);
        return;
    }
    const xs_srv_target *t = &d->t[d->ti];
    if (status < 0) {
        snprintf(d->cause, sizeof(d->cause), "%s: no address (%s)", t->host, cause);
        say(d, "warning", "%s has no address (%s); trying the next", t->host, cause);
        d->ti++;
        next_target(d);
        maybe_free(d);
        return;
    }
    d->na = n < ADDRS_MAX ? n : ADDRS_MAX;
    memcpy(d->addrs, a, d->na * sizeof(*a));
    d->ai = 0;
    char list[400] = "";
    size_t used = 0;
    for (size_t i = 0; i < d->na && used < sizeof(list); i++) {
        char one[80];
        addr_name(&d->addrs[i], one, sizeof(one));
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", one);
    }
    say(d, "info", "%s → %s", t->host, list);
    next_addr(d);
    maybe_free(d);
}

static void next_target(xs_dial *d)
{
    if (d->cancelled || d->finished)
        return;
    if (d->ti >= d->n) {
        char why[600];
        snprintf(why, sizeof(why), "every server of %.253s failed (last: %.300s)", d->domain,
                 d->cause[0] ? d->cause : "none");
        finish(d, UV_ECONNREFUSED, -1, false, NULL, why);
        return;
    }
    d->pending++;
    xs_resolver_addr(d->r, d->t[d->ti].host, d->t[d->ti].port, on_addrs, d);
}

/* ---- the SRV look-ups ---- */

/* Both answers are in: the targets in order, or the domain itself on 5222 when there is no
 * record at all (RFC 6120 section 3.2.2). */
static void srv_done(xs_dial *d)
{
    if (d->n == 0 && !d->srv_any && (d->kinds & XS_DIAL_STARTTLS)) {
        say(d, "info", "no SRV record for %s: trying %s:%u (RFC 6120 3.2.2)", d->domain, d->domain,
            XS_DEFAULT_CLIENT_PORT);
        snprintf(d->t[0].host, sizeof(d->t[0].host), "%s", d->domain);
        d->t[0].port = XS_DEFAULT_CLIENT_PORT;
        d->t[0].direct = false;
        d->n = 1;
    }
    if (d->n == 0) {
        char why[400];
        snprintf(why, sizeof(why), "%s offers no XMPP client service (%s)", d->domain,
                 d->srv_any ? "its SRV records say '.': none"
                            : "no _xmpps-client._tcp SRV record, and direct TLS was asked for");
        finish(d, UV_EAI_NONAME, -1, false, NULL, why);
        return;
    }
    xs_srv_order(d->t, d->n, NULL, NULL);
    for (size_t i = 0; d->srv_any && i < d->n; i++)
        say(d, "info", "SRV %s.%s → %s:%u (prio %u, weight %u)", service_of(&d->t[i]), d->domain,
            d->t[i].host, (unsigned)d->t[i].port, (unsigned)d->t[i].prio, (unsigned)d->t[i].weight);
    d->ti = 0;
    next_target(d);
}

static void on_srv(void *user, int status, const char *cause, const xs_srv_target *t, size_t n)
{
    xs_dial *d = user;
    d->pending--;
    d->srv_left--;
    if (d->cancelled || d->finished) {
        maybe_free(d);
        return;
    }
    if (status < 0) {
        say(d, "warning", "SRV look-up for %s failed (%s): treated as no record", d->domain, cause);
    }
    for (size_t i = 0; i < n; i++) {
        d->srv_any = true;
        /* "." as the only target: the service is decidedly not offered (RFC 2782). */
        if (t[i].host[0] == 0 || strcmp(t[i].host, ".") == 0) {
            say(d, "info", "SRV %s.%s → '.': not offered", service_of(&t[i]), d->domain);
            continue;
        }
        if (d->n < 2 * XS_SRV_MAX_TARGETS)
            d->t[d->n++] = t[i];
    }
    if (d->srv_left == 0)
        srv_done(d);
    maybe_free(d);
}

int xs_dial_start(xs_resolver *r, uv_loop_t *loop, const char *domain, uint16_t port,
                  unsigned kinds, unsigned timeout_ms, const xs_dial_cbs *cbs, void *user,
                  xs_dial **out)
{
    xs_dial *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return XS_ENOMEM;
    d->t = calloc(2 * XS_SRV_MAX_TARGETS, sizeof(*d->t));
    if (d->t == NULL) {
        free(d);
        return XS_ENOMEM;
    }
    d->r = r;
    d->loop = loop;
    d->cbs = *cbs;
    d->user = user;
    d->kinds = kinds;
    d->timeout_ms = timeout_ms;
    snprintf(d->domain, sizeof(d->domain), "%s", domain);
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    d->pending = 1; /* the timer's close */
    *out = d;
    if (port != 0) {
        snprintf(d->t[0].host, sizeof(d->t[0].host), "%s", domain);
        d->t[0].port = port;
        d->t[0].direct = kinds == XS_DIAL_DIRECT;
        d->n = 1;
        next_target(d);
        return 0;
    }
    char name[XS_DNS_NAME_MAX + 32];
    d->srv_left = (kinds & XS_DIAL_STARTTLS ? 1u : 0u) + (kinds & XS_DIAL_DIRECT ? 1u : 0u);
    if (kinds & XS_DIAL_STARTTLS) {
        snprintf(name, sizeof(name), "_xmpp-client._tcp.%s", domain);
        d->pending++;
        xs_resolver_srv(r, name, false, on_srv, d);
    }
    if (kinds & XS_DIAL_DIRECT) {
        snprintf(name, sizeof(name), "_xmpps-client._tcp.%s", domain);
        d->pending++;
        xs_resolver_srv(r, name, true, on_srv, d);
    }
    return 0;
}

void xs_dial_cancel(xs_dial *d)
{
    if (d == NULL)
        return;
    d->cancelled = true;
    if (d->tcp != NULL && !uv_is_closing((uv_handle_t *)d->tcp))
        uv_close((uv_handle_t *)d->tcp, on_tcp_closed); /* its connect callback comes first */
    if (!d->finished) {
        d->finished = true;
        uv_close((uv_handle_t *)&d->timer, on_timer_closed);
    }
    maybe_free(d);
}
