/* The benchmark's load generator. See bench_client.h. */
#include "bench_client.h"

#include "bench_conn.h"
#include "bench_server.h"
#include "bench_stream.h"
#include "bench_tls.h"
#include "bench_xml.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK (64u * 1024u)         /* bulk: bytes handed to TLS per write */
#define QUEUE_TARGET (512u * 1024u) /* bulk: bytes kept queued for the socket */
#define MAX_STALLS 5000u            /* stalled sessions replaced before a run fails */

typedef enum kind { K_BULK, K_INTER, K_SETUP, K_IDLE } kind;

typedef enum cstate {
    CS_CONNECT, /* TCP connect under way */
    CS_FEAT1,   /* plain stream opened: waiting for features with STARTTLS */
    CS_PROCEED, /* sent <starttls/> */
    CS_TLS,     /* in the handshake */
    CS_FEAT2,   /* secured stream opened: waiting for its features */
    CS_READY,   /* sending stanzas */
    CS_CLOSING, /* sent </stream:stream>: waiting for the server's count and close */
    CS_DONE,    /* both streams closed and checked */
} cstate;

static const char *const state_names[] = {"connect",    "features", "proceed", "tls-handshake",
                                          "features-2", "ready",    "closing", "done"};

typedef enum idle_phase { IP_WARMUP, IP_OPENING, IP_HOLDING, IP_CLOSING } idle_phase;

typedef struct crun crun;

typedef struct csess {
    bn_conn conn;
    crun *run;
    cstate state;
    bx scan;
    uint64_t base; /* stream offset of conn.in's first byte */
    uint64_t sent_stanzas, sent_bytes, recv_stanzas, recv_bytes;
    long long srv_stanzas, srv_bytes; /* the server's count; -1 until it came */
    size_t corpus_off;                /* bulk: the next byte of the corpus to send */
    unsigned next_stanza;             /* one at a time: the next stanza of the corpus */
    uint64_t t_sent;
    uint64_t t_progress; /* the last time anything came from the peer */
    int stalled;
    struct csess *prev, *next;
} csess;

struct crun {
    const bn_client *cl;
    const bn_endpoint *ep;
    kind k;
    bn_result *r;
    uv_timer_t timer, settle, stall;
    int timers_open;
    csess *live;
    unsigned n_live, started, done, ready, negotiating;
    unsigned total, parallel;
    int failed, ended;
    uint64_t t0, t1;
    uint64_t bulk_bytes;
    size_t window;
    int sink;
    unsigned rounds;
    uint64_t deadline;
    pid_t pid;
    idle_phase phase;
    unsigned idle_stanzas; /* idle: stanzas each session exchanges before it idles */
    double hold_s;         /* idle: how long every session is held before measuring */
};

static void sess_start(crun *run);
static void idle_warm(uv_timer_t *t);
static void idle_settled(uv_timer_t *t);
static void idle_exchanged(csess *s);

/* ---- the run ---------------------------------------------------------------------------------
 */

static void run_end(crun *run)
{
    if (run->ended)
        return;
    run->ended = 1;
    if (run->timers_open) {
        run->timers_open = 0;
        uv_close((uv_handle_t *)&run->timer, NULL);
        uv_close((uv_handle_t *)&run->settle, NULL);
        uv_close((uv_handle_t *)&run->stall, NULL);
    }
}

static void run_fail(crun *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The first failure is the one reported; every session is closed at once. */
static void run_fail(crun *run, const char *fmt, ...)
{
    if (run->failed)
        return;
    run->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(run->r->err, sizeof(run->r->err), fmt, ap);
    va_end(ap);
    for (csess *s = run->live; s != NULL; s = s->next)
        bn_conn_close(&s->conn);
    run_end(run);
}

static void on_timeout(uv_timer_t *t)
{
    crun *run = t->data;
    const csess *s = run->live;
    run_fail(run,
             "timeout after %.0f s: %u of %u sessions done, %u live (the first in state %s, "
             "sent %llu stanzas, received %llu)",
             run->cl->timeout_s, run->done, run->total, run->n_live,
             s ? state_names[s->state] : "-", s ? (unsigned long long)s->sent_stanzas : 0,
             s ? (unsigned long long)s->recv_stanzas : 0);
}

/* ---- sending ---------------------------------------------------------------------------------
 */

static int send_bytes(csess *s, const char *p, size_t n)
{
    int rc = bn_conn_write(&s->conn, p, n);
    if (rc < 0)
        run_fail(s->run, "cannot write: %s", bn_strerror(rc));
    return rc;
}

static void send_header(csess *s)
{
    char hdr[512];
    size_t n =
        bn_stream_header(hdr, sizeof(hdr), s->run->cl->domain,
                         s->run->sink ? " xmlns:bench='" BN_NS_BENCH "' bench:mode='sink'" : "");
    send_bytes(s, hdr, n);
}

static void send_close(csess *s)
{
    s->state = CS_CLOSING;
    send_bytes(s, "</stream:stream>", 16);
}

/* One stanza of the corpus, in order, so that the echo can be compared with the corpus. */
static void send_next(csess *s)
{
    const bn_corpus *c = s->run->cl->corpus;
    size_t i = s->next_stanza++ % c->n;
    size_t n = c->offs[i + 1] - c->offs[i];
    s->t_sent = bn_now_ns();
    s->sent_stanzas++;
    s->sent_bytes += n;
    send_bytes(s, c->data + c->offs[i], n);
}

/* Bulk: keeps the socket busy while the window of unechoed bytes allows. The total is a whole
 * number of corpus copies, so the stream ends at a stanza boundary. */
static void pump(csess *s)
{
    crun *run = s->run;
    const bn_corpus *c = run->cl->corpus;
    while (s->state == CS_READY && !s->conn.closing) {
        if (s->sent_bytes >= run->bulk_bytes) {
            s->sent_stanzas = s->sent_bytes / c->len * c->n;
            send_close(s);
            return;
        }
        if (bn_conn_queued(&s->conn) >= QUEUE_TARGET)
            return;
        size_t n = c->len - s->corpus_off;
        if (n > CHUNK)
            n = CHUNK;
        if (!run->sink) {
            /* Wait for a useful amount of room rather than sending slivers. */
            size_t room = s->sent_bytes - s->recv_bytes >= run->window
                              ? 0
                              : run->window - (size_t)(s->sent_bytes - s->recv_bytes);
            if (room == 0 || (room < n && room < CHUNK / 4 && s->sent_bytes > s->recv_bytes))
                return;
            if (n > room)
                n = room;
        }
        if (send_bytes(s, c->data + s->corpus_off, n) < 0)
            return;
        s->corpus_off = (s->corpus_off + n) % c->len;
        s->sent_bytes += n;
    }
}

/* ---- scenario hooks --------------------------------------------------------------------------
 */

static void idle_fill(crun *run)
{
    while (!run->failed && run->phase == IP_OPENING && run->started < run->total &&
           run->negotiating < run->parallel)
        sess_start(run);
}

static void on_ready(csess *s)
{
    crun *run = s->run;
    run->negotiating--;
    switch (run->k) {
    case K_BULK:
        run->t0 = bn_now_ns();
        pump(s);
        break;
    case K_INTER:
        run->t0 = bn_now_ns();
        send_next(s);
        break;
    case K_SETUP:
        send_next(s);
        break;
    case K_IDLE:
        /* It still counts as negotiating until its exchange is done. */
        run->negotiating++;
        if (run->idle_stanzas > 0)
            send_next(s);
        else
            idle_exchanged(s);
        break;
    }
}

/* An idle session finished its exchange: the warm-up session closes, the others idle. */
static void idle_exchanged(csess *s)
{
    crun *run = s->run;
    run->negotiating--;
    if (run->phase == IP_WARMUP) {
        send_close(s);
        return;
    }
    run->ready++;
    if (run->ready == run->total) {
        run->t1 = bn_now_ns();
        run->phase = IP_HOLDING;
        /* Let the proxy finish what it does after a handshake and a quiet spell (tickets,
         * buffers given back). */
        uv_timer_start(&run->settle, idle_settled, (uint64_t)(run->hold_s * 1000), 0);
    }
    idle_fill(run);
}

static void on_stanza(csess *s)
{
    crun *run = s->run;
    switch (run->k) {
    case K_BULK:
        pump(s);
        break;
    case K_INTER:
        if (s->recv_stanzas != s->sent_stanzas || s->state != CS_READY)
            break;
        run->r->lat_us[run->r->n_lat++] = (double)(bn_now_ns() - s->t_sent) / 1e3;
        if (run->r->n_lat >= run->rounds || bn_now_ns() >= run->deadline)
            send_close(s);
        else
            send_next(s);
        break;
    case K_SETUP:
        if (s->recv_stanzas == s->sent_stanzas && s->state == CS_READY)
            send_close(s);
        break;
    case K_IDLE:
        if (s->recv_stanzas != s->sent_stanzas || s->state != CS_READY)
            break;
        if (s->sent_stanzas < run->idle_stanzas)
            send_next(s);
        else
            idle_exchanged(s);
        break;
    }
}

/* Both streams are closed: check both ends. */
static void on_stream_closed(csess *s)
{
    crun *run = s->run;
    uint64_t want_stanzas = run->sink ? 0 : s->sent_stanzas;
    uint64_t want_bytes = run->sink ? 0 : s->sent_bytes;
    if (s->state != CS_CLOSING) {
        run_fail(run, "the server closed its stream in state %s", state_names[s->state]);
        return;
    }
    if (s->srv_stanzas < 0) {
        run_fail(run, "the server closed its stream without its count");
        return;
    }
    if ((uint64_t)s->srv_stanzas != s->sent_stanzas || (uint64_t)s->srv_bytes != s->sent_bytes ||
        s->recv_stanzas != want_stanzas || s->recv_bytes != want_bytes) {
        run_fail(run,
                 "count mismatch: sent %llu stanzas / %llu bytes; the server received %lld / "
                 "%lld; echoed back %llu / %llu",
                 (unsigned long long)s->sent_stanzas, (unsigned long long)s->sent_bytes,
                 s->srv_stanzas, s->srv_bytes, (unsigned long long)s->recv_stanzas,
                 (unsigned long long)s->recv_bytes);
        return;
    }
    s->state = CS_DONE;
    if (run->k == K_BULK || run->k == K_INTER)
        run->t1 = bn_now_ns();
    run->r->stanzas += s->sent_stanzas;
    run->r->bytes += s->sent_bytes;
    bn_conn_finish(&s->conn);
}

/* ---- the session -----------------------------------------------------------------------------
 */

/* A stanza came back: it must be the next stanza of the corpus, byte for byte. */
static void got_stanza(csess *s, const char *el, size_t n)
{
    crun *run = s->run;
    const bn_corpus *c = run->cl->corpus;
    if (bn_el_is_count(el, n)) {
        char tmp[256];
        if (bn_count_read(el, n, &s->srv_stanzas, &s->srv_bytes, tmp, sizeof(tmp)) < 0)
            run_fail(run, "unreadable count from the server: %s", tmp);
        return;
    }
    size_t at = (size_t)(s->recv_bytes % c->len);
    if (n > c->len - at || memcmp(el, c->data + at, n) != 0) {
        run_fail(run, "stanza %llu came back changed (%zu bytes): %.80s",
                 (unsigned long long)s->recv_stanzas, n, el);
        return;
    }
    s->recv_stanzas++;
    s->recv_bytes += n;
    on_stanza(s);
}

static size_t on_data(bn_conn *c, const char *data, size_t len)
{
    csess *s = c->user;
    crun *run = s->run;
    size_t keep = 0;
    bx_event ev;

    s->t_progress = bn_now_ns();

    while (!c->closing && s->state != CS_DONE) {
        size_t off = (size_t)(s->scan.pos - s->base);
        bx_scan(&s->scan, data + off, len - off, &ev);
        if (ev.kind == BX_NONE)
            break;
        if (ev.kind == BX_ERROR) {
            run_fail(run, "unexpected XML from the server in state %s at byte %llu: %.60s",
                     state_names[s->state], (unsigned long long)ev.start,
                     data + (ev.start - s->base));
            return len;
        }
        const char *el = data + (ev.start - s->base);
        size_t n = (size_t)(ev.end - ev.start);
        if (ev.kind == BX_CLOSE) {
            on_stream_closed(s);
            return len;
        }
        if (ev.kind == BX_OPEN) {
            keep = (size_t)(ev.end - s->base);
            continue;
        }
        if (bn_el_is(el, n, "stream:error")) {
            run_fail(run, "stream error from the server in state %s: %.*s", state_names[s->state],
                     (int)(n > 400 ? 400 : n), el);
            return len;
        }
        switch (s->state) {
        case CS_FEAT1:
            if (!bn_el_is(el, n, "stream:features"))
                break;
            if (memmem(el, n, BN_NS_TLS, strlen(BN_NS_TLS)) == NULL) {
                run_fail(run, "the server offers no STARTTLS: %.*s", (int)n, el);
                return len;
            }
            send_bytes(s, BN_STARTTLS, strlen(BN_STARTTLS));
            s->state = CS_PROCEED;
            break;
        case CS_PROCEED: {
            if (!bn_el_is(el, n, "proceed")) {
                run_fail(run, "expected <proceed/>, got %.*s", (int)n, el);
                return len;
            }
            size_t used = (size_t)(ev.end - s->base);
            s->state = CS_TLS;
            int rc = bn_stream_starttls(c, &s->scan, &s->base, run->cl->ctx, run->cl->domain);
            if (rc < 0)
                run_fail(run, "cannot start TLS: %s", bn_strerror(rc));
            return used;
        }
        case CS_FEAT2:
            if (!bn_el_is(el, n, "stream:features"))
                break;
            s->state = CS_READY;
            on_ready(s);
            break;
        case CS_READY:
        case CS_CLOSING:
            got_stanza(s, el, n);
            break;
        default:
            run_fail(run, "unexpected element in state %s: %.60s", state_names[s->state], el);
            return len;
        }
        keep = (size_t)(ev.end - s->base);
    }
    if (c->closing)
        return len;
    s->base += keep;
    return keep;
}

static void on_connect(bn_conn *c, int status)
{
    csess *s = c->user;
    crun *run = s->run;
    if (status < 0) {
        run_fail(run, "cannot connect to port %u: %s", ntohs(run->ep->addr.sin_port),
                 uv_strerror(status));
        return;
    }
    s->t_progress = bn_now_ns();
    if (run->ep->direct_tls) {
        s->state = CS_TLS;
        int rc = bn_conn_start_tls(c, run->cl->ctx, 0, run->cl->domain);
        if (rc < 0)
            run_fail(run, "cannot start TLS: %s", bn_strerror(rc));
        return;
    }
    s->state = CS_FEAT1;
    send_header(s);
}

static void on_tls_up(bn_conn *c)
{
    csess *s = c->user;
    s->t_progress = bn_now_ns();
    s->state = CS_FEAT2;
    send_header(s);
}

static void on_drain(bn_conn *c)
{
    csess *s = c->user;
    if (s->run->k == K_BULK)
        pump(s);
}

static void on_eof(bn_conn *c, int status)
{
    csess *s = c->user;
    run_fail(s->run, "the %s closed the connection in state %s%s%s",
             status < 0 ? "connection failed" : "peer", state_names[s->state],
             c->err[0] ? ": " : "", c->err);
    bn_conn_close(c);
}

static void on_closed(bn_conn *c)
{
    csess *s = c->user;
    crun *run = s->run;
    int ok = s->state == CS_DONE, stalled = s->stalled;
    if (s->prev)
        s->prev->next = s->next;
    else
        run->live = s->next;
    if (s->next)
        s->next->prev = s->prev;
    run->n_live--;
    free(s);
    if (run->failed)
        return;
    if (stalled) {
        /* Its place goes to a new session. */
        run->started--;
        if (run->k != K_IDLE || run->phase == IP_WARMUP)
            sess_start(run);
        else if (run->k == K_IDLE)
            idle_fill(run);
        return;
    }
    if (!ok) {
        run_fail(run, "a session was closed before its streams were");
        return;
    }
    run->done++;
    switch (run->k) {
    case K_BULK:
    case K_INTER:
        run_end(run);
        break;
    case K_SETUP:
        if (run->started < run->total)
            sess_start(run);
        else if (run->n_live == 0) {
            run->t1 = bn_now_ns();
            run_end(run);
        }
        break;
    case K_IDLE:
        if (run->phase == IP_WARMUP) {
            run->done = 0;
            run->started = 0;
            uv_timer_start(&run->settle, idle_warm, 300, 0);
        } else if (run->phase == IP_CLOSING && run->n_live == 0) {
            run_end(run);
        }
        break;
    }
}

static const bn_conn_ops client_ops = {
    .on_connect = on_connect,
    .on_tls_up = on_tls_up,
    .on_data = on_data,
    .on_drain = on_drain,
    .on_eof = on_eof,
    .on_closed = on_closed,
};

static void sess_start(crun *run)
{
    csess *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        run_fail(run, "out of memory");
        return;
    }
    int rc = bn_conn_init(run->cl->loop, &s->conn, &client_ops, s);
    if (rc < 0) {
        free(s);
        run_fail(run, "cannot make a socket: %s", uv_strerror(rc));
        return;
    }
    s->run = run;
    s->srv_stanzas = s->srv_bytes = -1;
    bx_reset(&s->scan);
    s->next = run->live;
    if (run->live)
        run->live->prev = s;
    run->live = s;
    run->n_live++;
    run->started++;
    run->negotiating++;
    s->t_progress = bn_now_ns();
    rc = bn_conn_connect(&s->conn, (const struct sockaddr *)&run->ep->addr);
    if (rc < 0) {
        bn_conn_close(&s->conn);
        run_fail(run, "cannot connect: %s (open files: raise the limit)", uv_strerror(rc));
    }
}

/* ---- idle phases -----------------------------------------------------------------------------
 */

/* The warm-up session is gone and its memory settled: measure, then open them all. */
static void idle_warm(uv_timer_t *t)
{
    crun *run = t->data;
    run->r->rss_before = bn_rss_tree_kib(run->pid);
    run->phase = IP_OPENING;
    run->t0 = bn_now_ns();
    idle_fill(run);
}

/* Every session is open and has settled: measure, then close them all. */
static void idle_settled(uv_timer_t *t)
{
    crun *run = t->data;
    run->r->rss_after = bn_rss_tree_kib(run->pid);
    run->r->sessions = run->ready;
    run->phase = IP_CLOSING;
    for (csess *s = run->live; s != NULL; s = s->next)
        if (s->state == CS_READY)
            send_close(s);
}

/* Abandons sessions that stopped making progress while setting up. */
static void on_stall_check(uv_timer_t *t)
{
    crun *run = t->data;
    uint64_t now = bn_now_ns(), limit = (uint64_t)(run->cl->stall_s * 1e9);
    for (csess *s = run->live; s != NULL && !run->failed; s = s->next) {
        if (s->state >= CS_READY || s->stalled || s->conn.closing || now - s->t_progress < limit)
            continue;
        if (run->r->stalled >= MAX_STALLS) {
            run_fail(run,
                     "%u sessions stalled in set-up (the last in state %s: nothing "
                     "received for %.1f s)",
                     run->r->stalled + 1, state_names[s->state], run->cl->stall_s);
            return;
        }
        s->stalled = 1;
        run->r->stalled++;
        run->negotiating--;
        bn_conn_close(&s->conn);
    }
}

/* ---- scenarios -------------------------------------------------------------------------------
 */

static void run_init(crun *run, const bn_client *cl, const bn_endpoint *ep, kind k, bn_result *r)
{
    memset(run, 0, sizeof(*run));
    memset(r, 0, sizeof(*r));
    run->cl = cl;
    run->ep = ep;
    run->k = k;
    run->r = r;
    run->total = 1;
    run->parallel = 1;
    uv_timer_init(cl->loop, &run->timer);
    uv_timer_init(cl->loop, &run->settle);
    uv_timer_init(cl->loop, &run->stall);
    run->timer.data = run->settle.data = run->stall.data = run;
    run->timers_open = 1;
    uv_timer_start(&run->timer, on_timeout, (uint64_t)(cl->timeout_s * 1000), 0);
    if (cl->stall_s > 0)
        uv_timer_start(&run->stall, on_stall_check, 100, 100);
}

/* Runs the loop until every session and timer of the run is closed. */
static void run_go(crun *run)
{
    uv_run(run->cl->loop, UV_RUN_DEFAULT);
    run->r->ok = !run->failed;
    if (run->r->ok)
        run->r->seconds = (double)(run->t1 - run->t0) / 1e9;
}

void bn_run_bulk(const bn_client *cl, const bn_endpoint *ep, uint64_t bytes, size_t window,
                 int sink, bn_result *r)
{
    crun run;
    run_init(&run, cl, ep, K_BULK, r);
    uint64_t copies = (bytes + cl->corpus->len - 1) / cl->corpus->len;
    run.bulk_bytes = (copies ? copies : 1) * cl->corpus->len;
    run.window = window;
    run.sink = sink;
    sess_start(&run);
    run_go(&run);
    r->sessions = run.done;
}

void bn_run_interactive(const bn_client *cl, const bn_endpoint *ep, unsigned rounds, double max_s,
                        bn_result *r)
{
    crun run;
    run_init(&run, cl, ep, K_INTER, r);
    r->lat_us = malloc((rounds ? rounds : 1) * sizeof(*r->lat_us));
    if (r->lat_us == NULL) {
        run_fail(&run, "out of memory");
        run_go(&run);
        return;
    }
    run.rounds = rounds;
    run.deadline = bn_now_ns() + (uint64_t)(max_s * 1e9);
    sess_start(&run);
    run_go(&run);
    r->sessions = run.done;
}

void bn_run_setup(const bn_client *cl, const bn_endpoint *ep, unsigned total, unsigned parallel,
                  bn_result *r)
{
    crun run;
    run_init(&run, cl, ep, K_SETUP, r);
    run.total = total;
    run.parallel = parallel;
    run.t0 = bn_now_ns();
    for (unsigned i = 0; i < parallel && i < total; i++)
        sess_start(&run);
    run_go(&run);
    r->sessions = run.done;
}

void bn_run_idle(const bn_client *cl, const bn_endpoint *ep, unsigned total, unsigned parallel,
                 unsigned stanzas, double hold_s, pid_t pid, bn_result *r)
{
    crun run;
    run_init(&run, cl, ep, K_IDLE, r);
    run.total = total;
    run.parallel = parallel;
    run.idle_stanzas = stanzas;
    run.hold_s = hold_s;
    run.pid = pid;
    run.phase = IP_WARMUP;
    sess_start(&run);
    run_go(&run);
}
