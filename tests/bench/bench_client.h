/* The benchmark's load generator: XMPP client sessions on a libuv loop, and one function per
 * scenario. Each scenario opens its sessions to one endpoint (the synthetic server directly, or
 * a proxy in front of it), runs to completion on the given loop, checks both ends (every stanza
 * echoed byte for byte, and the server's own count of stanzas and bytes), closes everything and
 * returns. A session: TCP connect; stream header; features; <starttls/>; <proceed/>; TLS
 * handshake (verifying the certificate for the domain against the test CA); new stream header;
 * features; stanzas; </stream:stream>; the server's count and </stream:stream>; close_notify and
 * FIN both ways. With direct TLS (XEP-0368) the handshake comes first.
 */
#ifndef XS_BENCH_BENCH_CLIENT_H
#define XS_BENCH_BENCH_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <uv.h>

#include "bench_corpus.h"

/* What every scenario needs; borrowed for the scenario's duration. */
typedef struct bn_client {
    uv_loop_t *loop;
    struct ssl_ctx_st *ctx; /* from bn_tls_client_ctx() */
    const char *domain;     /* the stream's `to`, the SNI and the certificate's name */
    const bn_corpus *corpus;
    double timeout_s; /* a scenario that takes longer fails */
    /* A session still setting up that received nothing for this long is abandoned, counted
     * in bn_result.stalled and replaced by a new one. 0: never. */
    double stall_s;
} bn_client;

/* Where the sessions go. */
typedef struct bn_endpoint {
    struct sockaddr_in addr;
    int direct_tls; /* TLS from the first byte instead of STARTTLS */
} bn_endpoint;

/* What a scenario measured. On failure `ok` is 0 and `err` says why. */
typedef struct bn_result {
    int ok;
    char err[700];
    double seconds;          /* the timed part */
    uint64_t stanzas, bytes; /* sent by the client(s), checked at both ends */
    double *lat_us;          /* interactive: each round trip in microseconds (caller frees) */
    size_t n_lat;
    unsigned sessions;          /* setup and idle: sessions completed or held */
    unsigned stalled;           /* sessions abandoned while setting up (see stall_s) */
    long rss_before, rss_after; /* idle: KiB of the measured process tree */
} bn_result;

/* One session pushes `bytes` (whole copies of the corpus) while keeping at most `window` bytes
 * not yet echoed (sink: not waiting for echoes at all), until every stanza came back. */
void bn_run_bulk(const bn_client *cl, const bn_endpoint *ep, uint64_t bytes, size_t window,
                 int sink, bn_result *r);

/* One session sends one stanza and waits for its echo, `rounds` times or until `max_s` seconds
 * passed (then n_lat < rounds). */
void bn_run_interactive(const bn_client *cl, const bn_endpoint *ep, unsigned rounds, double max_s,
                        bn_result *r);

/* `total` sessions, `parallel` at a time, each doing the whole set-up, one stanza echoed and
 * the close. */
void bn_run_setup(const bn_client *cl, const bn_endpoint *ep, unsigned total, unsigned parallel,
                  bn_result *r);

/* Opens `total` sessions (at most `parallel` negotiating at once), each exchanging `stanzas`
 * stanzas (each echoed before the next is sent) once its stream is secured, and holds them
 * idle; reads the RSS of `pid` and its children after a warm-up session (which does the same
 * exchange) and again once all are open and have been idle for `hold_s` seconds; then closes
 * them all. */
void bn_run_idle(const bn_client *cl, const bn_endpoint *ep, unsigned total, unsigned parallel,
                 unsigned stanzas, double hold_s, pid_t pid, bn_result *r);

#endif
