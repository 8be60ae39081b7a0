/* The load test's session driver. See bench_load_run.h. */
#include "bench_load_run.h"

#include "bench_conn.h"
#include "bench_server.h"
#include "bench_stream.h"
#include "bench_tls.h"
#include "bench_util.h"
#include "bench_xml.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_MAX 24           /* "s4294967295-4294967295" and its NUL */
#define BATCH (64u * 1024u) /* stanzas are built here and handed to TLS in one write */
#define SPREAD 40503u       /* session id -> where in the corpus its stanzas start */
#define EXCERPT 48          /* bytes of context shown around a difference */

typedef enum lstate {
    LS_CONNECT, /* TCP connect under way */
    LS_FEAT1,   /* plain stream opened: waiting for features with STARTTLS */
    LS_PROCEED, /* sent <starttls/> */
    LS_TLS,     /* in the handshake */
    LS_FEAT2,   /* secured stream opened: waiting for its features */
    LS_WAIT,    /* ready: waiting for the other sessions of the wave */
    LS_SENDING, /* sending stanzas, checking echoes */
    LS_CLOSING, /* sent </stream:stream>: the last echoes, the count and the server's close */
    LS_DONE,    /* both streams closed and every count checked */
} lstate;

static const char *const state_names[] = {"connect",       "features",   "proceed",
                                          "tls-handshake", "features-2", "waiting",
                                          "sending",       "closing",    "done"};

typedef struct phase phase;

typedef struct lsess {
    bn_conn conn; /* embedded: the session is freed in its on_closed */
    phase *ph;
    lstate state;
    unsigned id;
    int direct;
    bx scan;
    uint64_t base;  /* stream offset of conn.in's first byte */
    unsigned total; /* stanzas to send */
    unsigned sent, echoed;
    uint64_t sent_bytes, echoed_bytes;
    long long srv_stanzas, srv_bytes; /* the server's count; -1 until it came */
    uint64_t t_progress;              /* the last time anything came from the proxy */
    struct lsess *prev, *next;
} lsess;

struct phase {
    const bl_phase_cfg *cfg;
    bl_result *r;
    size_t *id_at, *id_len; /* per corpus stanza: where its id value starts, and its length */
    size_t max_stanza;      /* the largest stanza with the longest id */
    char *scratch;          /* the expected echo is rebuilt here */
    uv_timer_t tick;
    int tick_open;
    lsess *live;
    unsigned n_live, started, negotiating, ready, active, done;
    int stopping; /* rolling: no new sessions */
    int failed;
    uint64_t t_start, t_ready, t_end, t_last_tick;
    uint64_t stanzas, bytes;
};

static char batch[BATCH]; /* one thread: filled and handed to bn_conn_write before reuse */

static void sess_start(phase *ph);

/* ---- stanzas ---------------------------------------------------------------------------------
 */

/* Finds the id attribute's value in each corpus stanza's start tag. Returns 0, or -1 when a
 * stanza has none (the corpus always gives one) or memory runs out. */
static int index_ids(phase *ph)
{
    const bn_corpus *c = ph->cfg->corpus;
    ph->id_at = calloc(c->n, sizeof(*ph->id_at));
    ph->id_len = calloc(c->n, sizeof(*ph->id_len));
    if (ph->id_at == NULL || ph->id_len == NULL)
        return -1;
    for (size_t i = 0; i < c->n; i++) {
        const char *st = c->data + c->offs[i];
        size_t n = c->offs[i + 1] - c->offs[i];
        const char *gt = memchr(st, '>', n);
        const char *id = gt ? memmem(st, (size_t)(gt - st), " id='", 5) : NULL;
        const char *end = id ? memchr(id + 5, '\'', (size_t)(gt - id - 5)) : NULL;
        if (end == NULL)
            return -1;
        ph->id_at[i] = (size_t)(id + 5 - st);
        ph->id_len[i] = (size_t)(end - id - 5);
    }
    ph->max_stanza = c->max + ID_MAX;
    ph->scratch = malloc(ph->max_stanza);
    return ph->scratch == NULL ? -1 : 0;
}

/* Writes stanza `seq` of session `id` to out (room for max_stanza bytes); returns its length. */
static size_t make_stanza(const phase *ph, unsigned id, unsigned seq, char *out)
{
    const bn_corpus *c = ph->cfg->corpus;
    size_t i = (size_t)(((uint64_t)id * SPREAD + seq) % c->n);
    const char *st = c->data + c->offs[i];
    size_t n = c->offs[i + 1] - c->offs[i];
    size_t at = ph->id_at[i], tail = at + ph->id_len[i];
    char idv[ID_MAX];
    size_t k = (size_t)snprintf(idv, sizeof(idv), "s%u-%u", id, seq);
    memcpy(out, st, at);
    memcpy(out + at, idv, k);
    memcpy(out + at + k, st + tail, n - tail);
    return n - ph->id_len[i] + k;
}

/* The value of the id attribute of the element's start tag, in either kind of quotes (a
 * stanza a proxy re-serialized may use the other kind), or "(none)". */
static void stanza_id(const char *el, size_t n, char *out, size_t cap)
{
    const char *gt = memchr(el, '>', n);
    size_t tag = gt ? (size_t)(gt - el) : n;
    const char *id = memmem(el, tag, " id=", 4);
    const char *end = NULL;
    if (id != NULL && id + 5 < el + tag && (id[4] == '\'' || id[4] == '"'))
        end = memchr(id + 5, id[4], (size_t)(el + tag - id - 5));
    if (end == NULL || (size_t)(end - id - 5) >= cap) {
        snprintf(out, cap, "(none)");
        return;
    }
    memcpy(out, id + 5, (size_t)(end - id - 5));
    out[end - id - 5] = 0;
}

/* Up to EXCERPT bytes of p from `at`, printable, for messages. */
static void excerpt(const char *p, size_t n, size_t at, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = at; i < n && i < at + EXCERPT && o + 5 < cap; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\')
            out[o++] = (char)ch;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", ch);
    }
    out[o] = 0;
}

/* ---- the phase -------------------------------------------------------------------------------
 */

static void tick_close(phase *ph)
{
    if (!ph->tick_open)
        return;
    ph->tick_open = 0;
    uv_close((uv_handle_t *)&ph->tick, NULL);
}

static void ph_fail(phase *ph, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The first failure is the one reported; every session is closed at once. */
static void ph_fail(phase *ph, const char *fmt, ...)
{
    if (ph->failed)
        return;
    ph->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ph->r->err, sizeof(ph->r->err), fmt, ap);
    va_end(ap);
    for (lsess *s = ph->live; s != NULL; s = s->next)
        bn_conn_close(&s->conn);
    tick_close(ph);
}

static const char *leg_name(const lsess *s)
{
    return s->direct ? "direct TLS" : "STARTTLS";
}

static void sess_fail(lsess *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A failure of one session: the message starts with which one and how far it got. */
static void sess_fail(lsess *s, const char *fmt, ...)
{
    char what[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    ph_fail(s->ph, "session %u (%s, state %s, %u stanzas sent, %u echoed): %s", s->id, leg_name(s),
            state_names[s->state], s->sent, s->echoed, what);
}

static void fill(phase *ph)
{
    const bl_phase_cfg *cfg = ph->cfg;
    while (!ph->failed && !ph->stopping && ph->negotiating < cfg->parallel &&
           (cfg->rolling ? ph->n_live < cfg->sessions : ph->started < cfg->sessions))
        sess_start(ph);
}

static void progress(const phase *ph, bl_progress *p)
{
    p->elapsed_s = (double)(bn_now_ns() - ph->t_start) / 1e9;
    p->live = ph->n_live;
    p->active = ph->active;
    p->done = ph->done;
    p->stanzas = ph->stanzas;
    p->bytes = ph->bytes;
    p->draining = ph->stopping;
}

/* Every tick: the caller's sampling, the end of a rolling phase, stalls and the deadline. */
static void on_tick(uv_timer_t *t)
{
    phase *ph = t->data;
    const bl_phase_cfg *cfg = ph->cfg;
    uint64_t now = bn_now_ns();
    double elapsed = (double)(now - ph->t_start) / 1e9;

    if (cfg->on_tick != NULL && cfg->tick_ms > 0 &&
        now - ph->t_last_tick >= (uint64_t)cfg->tick_ms * 1000000u) {
        bl_progress p;
        ph->t_last_tick = now;
        progress(ph, &p);
        cfg->on_tick(cfg->user, &p);
    }
    if (cfg->rolling && !ph->stopping && elapsed >= cfg->seconds) {
        ph->stopping = 1;
        if (ph->n_live == 0)
            tick_close(ph);
    }
    double limit = cfg->timeout_s + (cfg->rolling ? cfg->seconds : 0);
    if (elapsed > limit) {
        const lsess *s = ph->live;
        ph_fail(ph,
                "timeout after %.0f s: %u sessions done, %u open (session %u in state %s, "
                "%u stanzas sent, %u echoed)",
                elapsed, ph->done, ph->n_live, s ? s->id : 0, s ? state_names[s->state] : "-",
                s ? s->sent : 0, s ? s->echoed : 0);
        return;
    }
    uint64_t stall = (uint64_t)(cfg->stall_s * 1e9);
    for (lsess *s = ph->live; s != NULL && !ph->failed; s = s->next) {
        if (s->state == LS_WAIT || s->conn.closing || now - s->t_progress < stall)
            continue;
        if (s->state == LS_DONE)
            sess_fail(s, "the proxy did not close the connection within %.0f s of the streams' end",
                      cfg->stall_s);
        else
            sess_fail(s, "nothing received from the proxy for %.0f s", cfg->stall_s);
    }
}

/* ---- sending ---------------------------------------------------------------------------------
 */

static int send_bytes(lsess *s, const char *p, size_t n)
{
    int rc = bn_conn_write(&s->conn, p, n);
    if (rc < 0)
        sess_fail(s, "cannot write: %s", bn_strerror(rc));
    return rc;
}

static void send_header(lsess *s)
{
    char hdr[400];
    send_bytes(s, hdr, bn_stream_header(hdr, sizeof(hdr), s->ph->cfg->domain, ""));
}

/* Sends what the window allows, in one write; after the last stanza, the stream's end. */
static void pump(lsess *s)
{
    phase *ph = s->ph;
    const bl_phase_cfg *cfg = ph->cfg;
    size_t used = 0;
    if (s->state != LS_SENDING || s->conn.closing)
        return;
    while (s->sent < s->total && s->sent - s->echoed < cfg->window) {
        if (used + ph->max_stanza > sizeof(batch)) {
            if (send_bytes(s, batch, used) < 0)
                return;
            used = 0;
        }
        size_t n = make_stanza(ph, s->id, s->sent, batch + used);
        used += n;
        s->sent++;
        s->sent_bytes += n;
    }
    if (used > 0 && send_bytes(s, batch, used) < 0)
        return;
    if (s->sent == s->total) {
        s->state = LS_CLOSING;
        send_bytes(s, "</stream:stream>", 16);
    }
}

static void start_sending(lsess *s)
{
    s->state = LS_SENDING;
    s->t_progress = bn_now_ns();
    s->ph->active++;
    pump(s);
}

/* A session is ready: in a wave it waits for the others, then they all start at once. */
static void on_ready(lsess *s)
{
    phase *ph = s->ph;
    ph->negotiating--;
    if (ph->cfg->rolling) {
        start_sending(s);
        fill(ph);
        return;
    }
    s->state = LS_WAIT;
    ph->ready++;
    fill(ph);
    if (ph->ready < ph->cfg->sessions)
        return;
    ph->t_ready = bn_now_ns();
    for (lsess *t = ph->live; t != NULL && !ph->failed; t = t->next)
        if (t->state == LS_WAIT)
            start_sending(t);
    if (ph->cfg->on_tick != NULL && !ph->failed) {
        /* Every session is open and active: the caller samples now too, however short the
         * wave turns out to be. */
        bl_progress p;
        progress(ph, &p);
        ph->cfg->on_tick(ph->cfg->user, &p);
    }
}

/* ---- receiving -------------------------------------------------------------------------------
 */

/* An echo differs from what was expected next: says how. */
static void mismatch(lsess *s, const char *got, size_t gn, const char *want, size_t wn)
{
    char gid[64], wid[64];
    stanza_id(got, gn, gid, sizeof(gid));
    stanza_id(want, wn, wid, sizeof(wid));
    if (strcmp(gid, wid) == 0) {
        size_t at = 0;
        while (at < gn && at < wn && got[at] == want[at])
            at++;
        size_t from = at > EXCERPT / 2 ? at - EXCERPT / 2 : 0;
        char e1[EXCERPT * 4 + 8], e2[EXCERPT * 4 + 8];
        excerpt(want, wn, from, e1, sizeof(e1));
        excerpt(got, gn, from, e2, sizeof(e2));
        sess_fail(s,
                  "stanza %u (id='%s') came back changed: %zu bytes sent, %zu echoed, first "
                  "difference at byte %zu; expected \"%s\", got \"%s\" (from byte %zu)",
                  s->echoed, wid, wn, gn, at, e1, e2, from);
        return;
    }
    unsigned gs, gq;
    char why[160], tail;
    if (sscanf(gid, "s%u-%u%c", &gs, &gq, &tail) != 2)
        snprintf(why, sizeof(why), "not a stanza that was sent");
    else if (gs != s->id)
        snprintf(why, sizeof(why), "a stanza of session %u (sessions crossed)", gs);
    else if (gq < s->echoed)
        snprintf(why, sizeof(why), "stanza %u again (duplicated or reordered)", gq);
    else if (gq == s->echoed + 1)
        snprintf(why, sizeof(why), "stanza %u missing or reordered", s->echoed);
    else
        snprintf(why, sizeof(why), "stanzas %u to %u missing or reordered", s->echoed, gq - 1);
    sess_fail(s, "expected stanza %u (id='%s', %zu bytes), got id='%s' (%zu bytes): %s", s->echoed,
              wid, wn, gid, gn, why);
}

static void got_count(lsess *s, const char *el, size_t n)
{
    char tmp[256];
    if (bn_count_read(el, n, &s->srv_stanzas, &s->srv_bytes, tmp, sizeof(tmp)) < 0)
        sess_fail(s, "unreadable count from the server: %s", tmp);
}

/* An echo: it must be the next stanza of this session, byte for byte. */
static void got_stanza(lsess *s, const char *el, size_t n)
{
    phase *ph = s->ph;
    if (bn_el_is_count(el, n)) {
        got_count(s, el, n);
        return;
    }
    if (s->srv_stanzas >= 0) {
        char gid[64];
        stanza_id(el, n, gid, sizeof(gid));
        sess_fail(s, "a stanza (id='%s', %zu bytes) after the server's count", gid, n);
        return;
    }
    if (s->echoed >= s->sent) {
        char gid[64];
        stanza_id(el, n, gid, sizeof(gid));
        sess_fail(s,
                  "an echo (id='%s', %zu bytes) beyond the %u stanzas sent: duplicated, or "
                  "not ours",
                  gid, n, s->sent);
        return;
    }
    size_t wn = make_stanza(ph, s->id, s->echoed, ph->scratch);
    if (wn != n || memcmp(el, ph->scratch, n) != 0) {
        mismatch(s, el, n, ph->scratch, wn);
        return;
    }
    s->echoed++;
    s->echoed_bytes += n;
    ph->stanzas++;
    ph->bytes += n;
}

/* Both streams are closed: both ends must have counted what was sent. */
static void on_stream_closed(lsess *s)
{
    phase *ph = s->ph;
    if (s->state != LS_CLOSING) {
        sess_fail(s, "the server's stream closed before ours");
        return;
    }
    if (s->srv_stanzas < 0) {
        sess_fail(s, "the server's stream closed without its count");
        return;
    }
    if ((uint64_t)s->srv_stanzas != s->sent || (uint64_t)s->srv_bytes != s->sent_bytes ||
        s->echoed != s->sent || s->echoed_bytes != s->sent_bytes) {
        sess_fail(s,
                  "counts differ: sent %u stanzas / %llu bytes; the server received %lld / "
                  "%lld; echoed back %u / %llu",
                  s->sent, (unsigned long long)s->sent_bytes, s->srv_stanzas, s->srv_bytes,
                  s->echoed, (unsigned long long)s->echoed_bytes);
        return;
    }
    s->state = LS_DONE;
    ph->active--;
    ph->r->stanzas += s->sent;
    ph->r->bytes += s->sent_bytes;
    ph->r->sessions++;
    ph->r->direct_sessions += s->direct != 0;
    bn_conn_finish(&s->conn);
}

/* One element of the stream in the current state. Returns how many bytes of data (which begins
 * at stream offset s->base) are consumed when the stream switches to TLS, else 0. */
static size_t on_element(lsess *s, const char *data, const bx_event *ev)
{
    phase *ph = s->ph;
    const char *el = data + (ev->start - s->base);
    size_t n = (size_t)(ev->end - ev->start);
    if (bn_el_is(el, n, "stream:error")) {
        sess_fail(s, "stream error from the proxy: %.*s", (int)(n > 400 ? 400 : n), el);
        return 0;
    }
    switch (s->state) {
    case LS_FEAT1:
        if (!bn_el_is(el, n, "stream:features"))
            break;
        if (memmem(el, n, BN_NS_TLS, strlen(BN_NS_TLS)) == NULL) {
            sess_fail(s, "no STARTTLS offered: %.*s", (int)(n > 400 ? 400 : n), el);
            return 0;
        }
        send_bytes(s, BN_STARTTLS, strlen(BN_STARTTLS));
        s->state = LS_PROCEED;
        break;
    case LS_PROCEED: {
        if (!bn_el_is(el, n, "proceed")) {
            sess_fail(s, "expected <proceed/>, got %.*s", (int)(n > 400 ? 400 : n), el);
            return 0;
        }
        size_t used = (size_t)(ev->end - s->base);
        s->state = LS_TLS;
        int rc = bn_stream_starttls(&s->conn, &s->scan, &s->base, ph->cfg->ctx, ph->cfg->domain);
        if (rc < 0)
            sess_fail(s, "cannot start TLS: %s", bn_strerror(rc));
        return used;
    }
    case LS_FEAT2:
        if (bn_el_is(el, n, "stream:features"))
            on_ready(s);
        break;
    case LS_SENDING:
    case LS_CLOSING:
        got_stanza(s, el, n);
        break;
    default:
        sess_fail(s, "unexpected element: %.*s", (int)(n > 200 ? 200 : n), el);
        break;
    }
    return 0;
}

static size_t on_data(bn_conn *c, const char *data, size_t len)
{
    lsess *s = c->user;
    size_t keep = 0;
    bx_event ev;

    s->t_progress = bn_now_ns();
    while (!c->closing && s->state != LS_DONE) {
        size_t off = (size_t)(s->scan.pos - s->base);
        bx_scan(&s->scan, data + off, len - off, &ev);
        if (ev.kind == BX_NONE)
            break;
        if (ev.kind == BX_ERROR) {
            sess_fail(s, "unexpected XML at byte %llu of the stream: %.60s",
                      (unsigned long long)ev.start, data + (ev.start - s->base));
            return len;
        }
        if (ev.kind == BX_CLOSE) {
            on_stream_closed(s);
            return len;
        }
        if (ev.kind == BX_ELEMENT) {
            size_t used = on_element(s, data, &ev);
            if (used > 0)
                return used; /* the rest is the TLS handshake: bn_conn feeds it on */
        }
        keep = (size_t)(ev.end - s->base);
    }
    if (c->closing)
        return len;
    /* The window moved by every echo of this read: the next stanzas go out in one write. */
    pump(s);
    s->base += keep;
    return keep;
}

static void on_connect(bn_conn *c, int status)
{
    lsess *s = c->user;
    if (status < 0) {
        const struct sockaddr_in *a =
            s->direct ? &s->ph->cfg->target->direct : &s->ph->cfg->target->starttls;
        sess_fail(s, "cannot connect to 127.0.0.1:%u: %s", ntohs(a->sin_port), uv_strerror(status));
        return;
    }
    s->t_progress = bn_now_ns();
    if (s->direct) {
        s->state = LS_TLS;
        int rc = bn_conn_start_tls(c, s->ph->cfg->ctx, 0, s->ph->cfg->domain);
        if (rc < 0)
            sess_fail(s, "cannot start TLS: %s", bn_strerror(rc));
        return;
    }
    s->state = LS_FEAT1;
    send_header(s);
}

static void on_tls_up(bn_conn *c)
{
    lsess *s = c->user;
    s->t_progress = bn_now_ns();
    s->state = LS_FEAT2;
    send_header(s);
}

static void on_drain(bn_conn *c)
{
    (void)c; /* the window, not the socket, paces the sender */
}

static void on_eof(bn_conn *c, int status)
{
    lsess *s = c->user;
    sess_fail(s, "the %s%s%s", status < 0 ? "connection failed" : "proxy closed the connection",
              c->err[0] ? ": " : "", c->err);
    bn_conn_close(c);
}

static void on_closed(bn_conn *c)
{
    lsess *s = c->user;
    phase *ph = s->ph;
    int ok = s->state == LS_DONE;
    if (s->prev)
        s->prev->next = s->next;
    else
        ph->live = s->next;
    if (s->next)
        s->next->prev = s->prev;
    ph->n_live--;
    if (!ok && !ph->failed)
        sess_fail(s, "closed before both streams were");
    free(s);
    if (ph->failed)
        return;
    ph->done++;
    fill(ph);
    if (ph->n_live == 0 && (ph->cfg->rolling ? ph->stopping : ph->started == ph->cfg->sessions)) {
        ph->t_end = bn_now_ns();
        tick_close(ph);
    }
}

static const bn_conn_ops sess_ops = {
    .on_connect = on_connect,
    .on_tls_up = on_tls_up,
    .on_data = on_data,
    .on_drain = on_drain,
    .on_eof = on_eof,
    .on_closed = on_closed,
};

/* The k-th session of the phase goes over direct TLS when the share of direct sessions among
 * the first k+1 rises to the next whole one: evenly spread. */
static int is_direct(unsigned k, unsigned pct)
{
    return (uint64_t)(k + 1) * pct / 100 > (uint64_t)k * pct / 100;
}

static void sess_start(phase *ph)
{
    const bl_phase_cfg *cfg = ph->cfg;
    lsess *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        ph_fail(ph, "out of memory");
        return;
    }
    int rc = bn_conn_init(cfg->loop, &s->conn, &sess_ops, s);
    if (rc < 0) {
        free(s);
        ph_fail(ph, "cannot make a socket: %s (open files: raise the limit)", uv_strerror(rc));
        return;
    }
    s->ph = ph;
    s->id = cfg->first_id + ph->started;
    s->direct = is_direct(ph->started, cfg->direct_pct);
    s->total = cfg->stanzas;
    if (cfg->rolling && ph->started < cfg->sessions) {
        /* The first of a rolling population end at different times, from half the stanzas to
         * all of them, so that their successors are spread out rather than in generations. */
        s->total -= (unsigned)((uint64_t)(cfg->stanzas / 2) * ph->started / cfg->sessions);
    }
    s->srv_stanzas = s->srv_bytes = -1;
    s->t_progress = bn_now_ns();
    bx_reset(&s->scan);
    s->next = ph->live;
    if (ph->live)
        ph->live->prev = s;
    ph->live = s;
    ph->n_live++;
    ph->started++;
    ph->negotiating++;
    const struct sockaddr_in *a = s->direct ? &cfg->target->direct : &cfg->target->starttls;
    rc = bn_conn_connect(&s->conn, (const struct sockaddr *)a);
    if (rc < 0) {
        sess_fail(s, "cannot connect: %s (open files: raise the limit)", uv_strerror(rc));
        bn_conn_close(&s->conn);
    }
}

void bl_phase_run(const bl_phase_cfg *cfg, bl_result *r)
{
    phase ph;
    memset(&ph, 0, sizeof(ph));
    memset(r, 0, sizeof(*r));
    ph.cfg = cfg;
    ph.r = r;
    ph.t_start = ph.t_last_tick = bn_now_ns();
    if (index_ids(&ph) < 0 || ph.max_stanza > BATCH) {
        snprintf(r->err, sizeof(r->err), "out of memory, or a corpus stanza without an id");
        goto out;
    }
    uv_timer_init(cfg->loop, &ph.tick);
    ph.tick.data = &ph;
    ph.tick_open = 1;
    uv_timer_start(&ph.tick, on_tick, 50, 50);
    fill(&ph);
    uv_run(cfg->loop, UV_RUN_DEFAULT);
    r->ok = !ph.failed;
    if (ph.t_ready == 0)
        ph.t_ready = ph.t_start;
    if (ph.t_end == 0)
        ph.t_end = bn_now_ns();
    r->setup_s = cfg->rolling ? 0 : (double)(ph.t_ready - ph.t_start) / 1e9;
    r->seconds = (double)(ph.t_end - (cfg->rolling ? ph.t_start : ph.t_ready)) / 1e9;
out:
    r->next_id = cfg->first_id + ph.started;
    free(ph.id_at);
    free(ph.id_len);
    free(ph.scratch);
}
