/* The load test's session driver: many XMPP client sessions at once on one libuv loop, each
 * sending its own numbered stanzas through the proxy to the benchmark's synthetic server
 * (bench_server.c), which echoes them, and checking every echo.
 *
 * A session: TCP connect; STARTTLS (or direct TLS, XEP-0368); the secured stream's features;
 * then `stanzas` stanzas from the corpus with at most `window` of them sent and not yet echoed;
 * </stream:stream> after the last one; the server's own count and its </stream:stream>; close.
 * Stanza `seq` of session `id` is corpus stanza (seq + id * K) mod n with its id attribute
 * replaced by 's{id}-{seq}', so sizes and kinds vary, and every stanza of the run is unique:
 * an echo that is lost, duplicated, reordered, sent to the wrong session or changed by one byte
 * is found at the first stanza it affects, and reported with the session, the sequence number
 * and what was expected against what came. At the close both ends must have counted the same:
 * the stanzas and bytes the client sent, the server received, and the client got back.
 *
 * One phase runs either as a wave (all sessions are opened, `parallel` setting up at a time,
 * and only when every one of them is ready do they all start sending, so they are all active
 * at once) or rolling (a population of `sessions` is kept up for `seconds`: each one that ends
 * is replaced by a new one; then the last ones finish). In a rolling phase the first
 * population sends from half the stanzas to all of them, spread evenly, so that sessions end
 * and start all the time rather than in generations; every later session sends all.
 */
#ifndef XS_BENCH_BENCH_LOAD_RUN_H
#define XS_BENCH_BENCH_LOAD_RUN_H

#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>
#include <uv.h>

#include "bench_corpus.h"

/* Where a session connects. */
typedef struct bl_target {
    struct sockaddr_in starttls; /* the proxy's --listen socket */
    struct sockaddr_in direct;   /* the proxy's --listen-tls socket */
} bl_target;

/* Progress so far, handed to the tick callback. */
typedef struct bl_progress {
    double elapsed_s;        /* since the phase started */
    unsigned live;           /* sessions open (setting up, sending or closing) */
    unsigned active;         /* sessions sending or waiting for their last echoes */
    unsigned done;           /* sessions completed and checked */
    uint64_t stanzas, bytes; /* echoes received and checked, over all sessions */
    int draining;            /* rolling: the time is up, the last sessions are finishing */
} bl_progress;

typedef struct bl_phase_cfg {
    uv_loop_t *loop;
    struct ssl_ctx_st *ctx; /* from bn_tls_client_ctx(): trusts the CA the proxy forges with */
    const char *domain;     /* the stream's `to`, the SNI and the certificate's name */
    const bn_corpus *corpus;
    const bl_target *target;
    unsigned sessions;   /* wave: the sessions; rolling: the population kept up */
    unsigned stanzas;    /* per session (see above for the first of a rolling phase) */
    unsigned window;     /* per session: stanzas sent and not echoed yet, at most */
    unsigned parallel;   /* sessions setting up at once, at most */
    unsigned direct_pct; /* this share of the sessions (0-100, spread evenly) uses direct TLS */
    unsigned first_id;   /* session numbers of the phase start here (unique over a run) */
    int rolling;         /* 0: one wave; 1: keep `sessions` going for `seconds` */
    double seconds;      /* rolling: how long new sessions are started */
    double timeout_s;    /* a wave, or the end of a rolling phase, that takes longer fails */
    double stall_s;      /* a session that receives nothing for this long fails */
    unsigned tick_ms;    /* on_tick is called this often (0: never) */
    /* Called on the loop thread every tick_ms while the phase runs, e.g. to sample memory. */
    void (*on_tick)(void *user, const bl_progress *p);
    void *user;
} bl_phase_cfg;

/* What a phase did. On failure `ok` is 0 and `err` says which session, which stanza, what was
 * expected and what came. */
typedef struct bl_result {
    int ok;
    char err[1200];
    double setup_s;           /* wave: until every session was ready to send */
    double seconds;           /* wave: from then until the last session closed; rolling: all */
    unsigned sessions;        /* completed and checked */
    unsigned direct_sessions; /* of which over direct TLS */
    uint64_t stanzas, bytes;  /* per direction: sent, received by the server, echoed back */
    unsigned next_id;         /* the first session number not used by the phase */
} bl_result;

/* Runs one phase on cfg->loop until all its sessions and timers are closed. The loop must have
 * no other active handles. Returns with r filled in; never exits. */
void bl_phase_run(const bl_phase_cfg *cfg, bl_result *r);

#endif
