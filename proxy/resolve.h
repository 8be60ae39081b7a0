/* Finding an XMPP server the way a client does (RFC 6120 section 3.2, XEP-0368).
 *
 * Three parts, one concern each:
 *   resolve.c       pure functions: the order of SRV targets (RFC 2782), domain names and the
 *                   --allow-domain patterns; tested without a network
 *   resolve_ares.c  a DNS resolver (c-ares) driven by the proxy's libuv loop: its sockets are
 *                   watched with uv_poll and its timeouts with one uv_timer, no thread
 *   resolve_dial.c  a dial: SRV look-ups for a domain, then each target's addresses, connected in
 *                   turn until one answers; every step is told to the caller in words
 */
#ifndef XS_PROXY_RESOLVE_H
#define XS_PROXY_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>
#include <uv.h>

#include "inspect/error.h"

#define XS_DNS_NAME_MAX 253   /* a domain name's text, without the final dot */
#define XS_SRV_MAX_TARGETS 32 /* of each service; more are ignored (said once) */
#define XS_DEFAULT_CLIENT_PORT 5222

/* One SRV target (RFC 2782) of _xmpp-client._tcp (STARTTLS) or _xmpps-client._tcp (direct TLS). */
typedef struct xs_srv_target {
    char host[XS_DNS_NAME_MAX + 1];
    uint16_t port, prio, weight;
    bool direct; /* from _xmpps-client: TLS from the first byte (XEP-0368) */
} xs_srv_target;

/* A random number source for the weighted order: returns a value in [0, bound]. */
typedef uint32_t (*xs_srv_random)(void *ctx, uint32_t bound);

/* Puts targets in the order to try them (RFC 2782): by priority, lowest first; within one
 * priority a weighted random order, each next target picked with a chance proportional to its
 * weight (weight 0 goes first in the running sums, so it is picked only when its draw is 0).
 * `rnd` NULL uses random(). Works in place; costs O(n^2), n being capped by the caller. */
void xs_srv_order(xs_srv_target *t, size_t n, xs_srv_random rnd, void *ctx);

/* 1 when `name` is a domain a server may have: 1 to 253 characters, labels of 1 to 63 letters,
 * digits, '-' and '_' (not starting or ending with '-'), separated by single dots (one final dot
 * allowed). Not an IP address literal check: "127.0.0.1" passes. */
int xs_dns_name_ok(const char *name);

/* 1 when `domain` matches the --allow-domain `pattern`, without regard to case: the same name,
 * or "*.example.test", which matches any name ending in ".example.test" (not example.test itself:
 * give both). A final dot on either is ignored. */
int xs_domain_match(const char *pattern, const char *domain);

/* ---- the resolver on the loop (resolve_ares.c) ---- */

typedef struct xs_resolver xs_resolver;

/* Makes a resolver on `loop`. `servers` NULL uses the system's (/etc/resolv.conf), else
 * "ADDR:PORT" or "ADDR" (port 53), "[V6]:PORT" for IPv6, several separated by commas. Returns 0 or
 * XS_EINVAL (servers that cannot be read) or XS_ENOMEM, with the cause in *diag. */
int xs_resolver_new(uv_loop_t *loop, const char *servers, xs_resolver **out, xs_diag *diag);

/* Cancels what is under way (every callback is called with UV_ECANCELED), closes the resolver's
 * handles; the memory goes when the last close callback ran (run the loop once more). */
void xs_resolver_free(xs_resolver *r);

/* The SRV records of `name` (e.g. "_xmpp-client._tcp.example.org"). `cb` gets status 0 with
 * the targets (n may be 0: the name has no such record, or NXDOMAIN), or a negative code with a
 * cause in words (a failing server, a time-out). The targets are borrowed for the callback only.
 * Each target's `direct` is set to `direct`. */
typedef void (*xs_srv_cb)(void *user, int status, const char *cause, const xs_srv_target *t,
                          size_t n);
void xs_resolver_srv(xs_resolver *r, const char *name, bool direct, xs_srv_cb cb, void *user);

/* The IPv4 and IPv6 addresses of `host`, each with `port`. `cb` gets 0 and the addresses (IPv6
 * first when the system prefers it, as c-ares sorts them), or a negative code and a cause. */
typedef void (*xs_addr_cb)(void *user, int status, const char *cause,
                           const struct sockaddr_storage *a, size_t n);
void xs_resolver_addr(xs_resolver *r, const char *host, uint16_t port, xs_addr_cb cb, void *user);

/* ---- a dial (resolve_dial.c) ---- */

typedef struct xs_dial xs_dial;

/* Which records a dial follows. */
typedef enum xs_dial_kinds {
    XS_DIAL_STARTTLS = 1, /* _xmpp-client._tcp, and the domain on 5222 when there is no record */
    XS_DIAL_DIRECT = 2,   /* _xmpps-client._tcp (XEP-0368) */
} xs_dial_kinds;

/* What a dial tells its owner. `say` gets each step in words ("SRV _xmpps-client._tcp.example.org
 * -> xmpp.example.org:5223 (prio 5)", "connecting to 192.0.2.1:5223 ...", "... failed: ..."). */
typedef struct xs_dial_cbs {
    void (*say)(void *user, const char *level, const char *text);
    /* The end: status 0 with a connected TCP handle's descriptor `fd` (the callee owns it from
     * then on), whether that target is direct TLS, and "host:port" of the target; or a negative
     * code with the cause in words (every target failed, no record, ...). The dial is freed
     * after this returns. */
    void (*done)(void *user, int status, int fd, bool direct, const char *target,
                 const char *cause);
} xs_dial_cbs;

/* Starts dialling `domain` (its SRV records of `kinds`), or `host`:`port` directly when port is
 * not 0 (a destination given by the client: SOCKS5, transparent). Every callback comes later,
 * from the loop. `timeout_ms` bounds each TCP connect. Returns 0 with *out, or XS_ENOMEM. */
int xs_dial_start(xs_resolver *r, uv_loop_t *loop, const char *domain, uint16_t port,
                  unsigned kinds, unsigned timeout_ms, const xs_dial_cbs *cbs, void *user,
                  xs_dial **out);

/* The owner goes away: no callback is made any more; what is under way is stopped and the dial
 * frees itself. */
void xs_dial_cancel(xs_dial *d);

#endif
