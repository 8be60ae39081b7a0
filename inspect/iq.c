/* IQ pairing and timing. See iq.h and check.h. */
#include "inspect/iq.h"

#include "inspect/alloc.h"
#include "inspect/check_impl.h"

#include <stdlib.h>
#include <string.h>

#define REF_IQ "RFC 6120 §8.2.3"
#define REF_ID "RFC 6120 §8.1.3"

static const char *dir_name(int d)
{
    return d == 0 ? "c2s" : "s2c";
}

static const char *side_name(int d)
{
    return d == 0 ? "the client" : "the server";
}

/* ---- namespace statistics -------------------------------------------------------------------- */

static xs_iq_nsrow *row_find(xs_iq_nstab *t, const char *ns, size_t n)
{
    for (size_t i = 0; i < t->n; i++)
        if (strlen(t->rows[i].ns) == n && memcmp(t->rows[i].ns, ns, n) == 0)
            return &t->rows[i];
    return NULL;
}

/* The row of namespace ns (n bytes), made when new; past the cap, "(other)". NULL: no memory. */
static xs_iq_nsrow *row_get(xs_iq_nstab *t, const char *ns, size_t n)
{
    xs_iq_nsrow *r = row_find(t, ns, n);
    if (r != NULL)
        return r;
    if (t->n + 1 >= t->max) {
        ns = "(other)";
        n = strlen(ns);
        if ((r = row_find(t, ns, n)) != NULL)
            return r;
        if (t->n >= t->max)
            return NULL;
    }
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 4;
        xs_iq_nsrow *rows = xs_realloc(t->rows, ncap * sizeof(*rows));
        if (rows == NULL)
            return NULL;
        t->rows = rows;
        t->cap = ncap;
    }
    char *k = xs_malloc(n + 1);
    if (k == NULL)
        return NULL;
    memcpy(k, ns, n);
    k[n] = '\0';
    r = &t->rows[t->n++];
    memset(r, 0, sizeof(*r));
    r->ns = k;
    r->max_ms = -1;
    return r;
}

static void row_sample(xs_analysis *an, xs_iq_nsrow *r, double ms)
{
    r->timed++;
    if (ms > r->max_ms)
        r->max_ms = ms;
    if (r->n_samples < XS_IQ_MAX_SAMPLES) {
        if (r->n_samples == r->cap_samples) {
            uint32_t ncap = r->cap_samples ? r->cap_samples * 2 : 8;
            float *s = xs_realloc(r->samples, ncap * sizeof(*s));
            if (s == NULL)
                return; /* the percentiles are best effort without memory */
            r->samples = s;
            r->cap_samples = ncap;
        }
        r->samples[r->n_samples++] = (float)ms;
        return;
    }
    /* A uniform sample of all the round trips (reservoir sampling), xorshift for the choice. */
    an->rng ^= an->rng << 13;
    an->rng ^= an->rng >> 7;
    an->rng ^= an->rng << 17;
    uint64_t j = an->rng % r->timed;
    if (j < XS_IQ_MAX_SAMPLES)
        r->samples[j] = (float)ms;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

void xs_iq_row_quantiles(const xs_iq_nsrow *r, double *p50, double *p95, double *max)
{
    *p50 = *p95 = *max = -1;
    if (r->n_samples == 0)
        return;
    float sorted[XS_IQ_MAX_SAMPLES];
    memcpy(sorted, r->samples, r->n_samples * sizeof(float));
    qsort(sorted, r->n_samples, sizeof(float), cmp_float);
    /* Nearest rank: the smallest value with at least p of the samples at or below it. */
    size_t n = r->n_samples;
    size_t i50 = (n * 50 + 99) / 100, i95 = (n * 95 + 99) / 100;
    *p50 = sorted[i50 > 0 ? i50 - 1 : 0];
    *p95 = sorted[i95 > 0 ? i95 - 1 : 0];
    *max = r->max_ms;
}

void xs_iq_nstab_free(xs_iq_nstab *t)
{
    for (size_t i = 0; i < t->n; i++) {
        xs_free(t->rows[i].ns);
        xs_free(t->rows[i].samples);
    }
    xs_free(t->rows);
    t->rows = NULL;
    t->n = t->cap = 0;
}

/* ---- the table of requests waiting ----------------------------------------------------------- */

static uint64_t key_hash(int dir, const char *id, size_t len)
{
    return xs_an_hash(id, len) ^ (uint64_t)(dir + 1) * 0x9E3779B97F4A7C15ull;
}

static int32_t find(const xs_iq_sess *q, int dir, uint64_t h, const char *id, size_t len)
{
    if (q->bucket == NULL)
        return -1;
    size_t shown = len < XS_IQ_ID_SHOWN - 1 ? len : XS_IQ_ID_SHOWN - 1;
    for (int32_t i = q->bucket[h % XS_IQ_BUCKETS]; i >= 0; i = q->e[i].hnext) {
        const xs_iq_entry *e = &q->e[i];
        if (e->hash == h && e->dir == dir && e->id_len == len && memcmp(e->id, id, shown) == 0)
            return i;
    }
    return -1;
}

static void unlink_entry(xs_iq_sess *q, int32_t i)
{
    xs_iq_entry *e = &q->e[i];
    int32_t *pp = &q->bucket[e->hash % XS_IQ_BUCKETS];
    while (*pp != i)
        pp = &q->e[*pp].hnext;
    *pp = e->hnext;
    if (e->prev >= 0)
        q->e[e->prev].next = e->next;
    else
        q->head = e->next;
    if (e->next >= 0)
        q->e[e->next].prev = e->prev;
    else
        q->tail = e->prev;
    e->hnext = q->free;
    q->free = i;
    q->n--;
}

/* A free entry, the table grown when needed; -1 when full or out of memory. */
static int32_t take_entry(xs_iq_sess *q, size_t max)
{
    if (q->bucket == NULL) {
        q->bucket = xs_malloc(XS_IQ_BUCKETS * sizeof(int32_t));
        if (q->bucket == NULL)
            return -1;
        for (size_t i = 0; i < XS_IQ_BUCKETS; i++)
            q->bucket[i] = -1;
        q->head = q->tail = q->free = -1;
    }
    if (q->free < 0) {
        if (q->cap >= max)
            return -1;
        size_t ncap = q->cap ? q->cap * 2 : 16;
        if (ncap > max)
            ncap = max;
        xs_iq_entry *e = xs_realloc(q->e, ncap * sizeof(*e));
        if (e == NULL)
            return -1;
        q->e = e;
        for (size_t i = ncap; i > q->cap; i--) {
            e[i - 1].hnext = q->free;
            q->free = (int32_t)(i - 1);
        }
        q->cap = ncap;
    }
    int32_t i = q->free;
    q->free = q->e[i].hnext;
    return i;
}

/* Copies at most XS_IQ_ID_SHOWN - 1 bytes of the id, cut on a character boundary. */
static void copy_id(char *to, const char *id, size_t len)
{
    size_t n = len < XS_IQ_ID_SHOWN - 1 ? len : XS_IQ_ID_SHOWN - 1;
    memcpy(to, id, n);
    to[n] = '\0';
    if (n < len) { /* cut: drop a split UTF-8 sequence (its tail is in the bytes left out) */
        size_t k = n;
        while (k > 0 && ((unsigned char)to[k - 1] & 0xC0) == 0x80)
            k--;
        if (k > 0 && (unsigned char)to[k - 1] >= 0xC0)
            to[k - 1] = '\0';
    }
}

static const char *shown_id(const xs_iq_entry *e)
{
    return e->id_len >= XS_IQ_ID_SHOWN ? "…" : "";
}

/* Counts an unanswered request in the statistics. */
static void count_unanswered(xs_analysis *an, xs_an_sess *s, const xs_iq_entry *e)
{
    s->iq.unanswered++;
    if (e->row >= 0) {
        xs_iq_nsrow *r = &s->iq.ns.rows[e->row];
        r->unanswered++;
        xs_iq_nsrow *t = row_get(&an->total, r->ns, strlen(r->ns));
        if (t != NULL)
            t->unanswered++;
    }
}

static const char *row_ns(const xs_an_sess *s, const xs_iq_entry *e)
{
    return e->row >= 0 ? s->iq.ns.rows[e->row].ns : "no payload";
}

/* Reports the oldest wait as unanswered (`why`: " within 30 s") and forgets it. With
 * set_pair, the annotation points at it (a tick or the end: no stanza of its own). */
static void report_oldest(xs_analysis *an, xs_an_sess *s, xs_annot *a, const char *why,
                          int set_pair)
{
    xs_iq_sess *q = &s->iq;
    int32_t i = q->head;
    xs_iq_entry *e = &q->e[i];
    xs_an_check(an, a, XS_CHECK_IQ_UNANSWERED, REF_IQ,
                "the %s (%s) id '%s%s' that %s sent (%s offset %llu) got no answer%s%s",
                e->flags & XS_IQE_SET ? "set" : "get", row_ns(s, e), e->id, shown_id(e),
                side_name(e->dir), dir_name(e->dir), (unsigned long long)e->offset, why,
                e->flags & XS_IQE_DROPPED ? " (a rule dropped it)" : "");
    if (set_pair && a->pair_dir == NULL) {
        a->pair_dir = dir_name(e->dir);
        a->pair_offset = e->offset;
        a->pair_stream = e->stream;
    }
    count_unanswered(an, s, e);
    unlink_entry(q, i);
}

/* Reports every wait (the end of a stream or session): individually while there is room, then
 * one line for the rest. */
static void report_all(xs_analysis *an, xs_an_sess *s, xs_annot *a, const char *why, int set_pair)
{
    xs_iq_sess *q = &s->iq;
    while (q->n > 0) {
        size_t room = XS_ANNOT_MAX_CHECKS -
                      (a->n_checks < XS_ANNOT_MAX_CHECKS ? a->n_checks : XS_ANNOT_MAX_CHECKS);
        if (room > 1 || (room == 1 && q->n == 1)) {
            report_oldest(an, s, a, why, set_pair);
            continue;
        }
        /* No room for each: one line for the rest (counted in more_checks when even that does
         * not fit). */
        size_t rest = q->n;
        while (q->n > 0) {
            count_unanswered(an, s, &q->e[q->head]);
            unlink_entry(q, q->head);
        }
        xs_an_check(an, a, XS_CHECK_IQ_UNANSWERED, REF_IQ, "and %zu more IQs got no answer%s", rest,
                    why);
    }
}

void xs_iq_restart(xs_analysis *an, xs_an_sess *s, int dir, xs_annot *a)
{
    (void)dir;
    report_all(an, s, a, " before the stream restarted (ids are scoped to a stream)", 0);
}

void xs_iq_end(xs_analysis *an, xs_an_sess *s, xs_annot *a, int input)
{
    char why[96];
    /* At the end of an offline input, sessions end together: each line names its own. */
    if (input)
        snprintf(why, sizeof(why), " before the input ended (session %.40s)", s->key);
    report_all(an, s, a, input ? why : " before the session ended", 1);
}

void xs_iq_expire(xs_analysis *an, xs_an_sess *s, int64_t now_us, xs_annot *a)
{
    xs_iq_sess *q = &s->iq;
    char why[64];
    snprintf(why, sizeof(why), " within %.0f s", (double)an->timeout_us / 1e6);
    while (q->n > 0 && a->n_checks < XS_ANNOT_MAX_CHECKS) {
        const xs_iq_entry *e = &q->e[q->head];
        if (e->t_us == INT64_MIN || now_us == INT64_MIN || now_us - e->t_us < an->timeout_us)
            break;
        report_oldest(an, s, a, why, !an->cfg.lazy_timeouts);
    }
}

/* ---- requests and answers -------------------------------------------------------------------- */

int xs_iq_exempt_ns(xs_span ns, int *bind)
{
    *bind = xs_span_eq(ns, "urn:ietf:params:xml:ns:xmpp-bind");
    return *bind || xs_span_eq(ns, "urn:ietf:params:xml:ns:xmpp-session") ||
           xs_span_eq(ns, "jabber:iq:register") || xs_span_eq(ns, "jabber:iq:auth");
}

static void request(xs_analysis *an, xs_an_sess *s, int dir, const xs_event *ev,
                    const xs_print_meta *m, int set, const char *id, const xs_outline *o,
                    xs_annot *a, xs_iq_result *res)
{
    xs_iq_sess *q = &s->iq;
    size_t len = strlen(id);
    uint64_t h = key_hash(dir, id, len);
    int bind = 0;
    xs_span ns = o->n_children > 0 ? o->ns[0] : (xs_span){NULL, 0};
    if (o->n_children > 0 && xs_iq_exempt_ns(ns, &bind))
        res->exempt = 1;
    /* A request the proxy answered itself never reaches the other side. */
    if (xs_an_bounced(m->verdict))
        return;
    int32_t old = find(q, dir, h, id, len);
    if (old >= 0) {
        xs_an_check(an, a, XS_CHECK_IQ_DUPLICATE_ID, REF_ID,
                    "id '%s%s' is already waiting for an answer (the %s at %s offset %llu): "
                    "its answer cannot be told apart",
                    q->e[old].id, shown_id(&q->e[old]),
                    q->e[old].flags & XS_IQE_SET ? "set" : "get", dir_name(dir),
                    (unsigned long long)q->e[old].offset);
        return;
    }
    int32_t i = take_entry(q, an->cfg.max_inflight);
    if (i < 0 && q->n > 0) {
        /* Full: forget the oldest, and say so once per session. */
        if (!q->limit_said) {
            q->limit_said = 1;
            xs_an_check(an, a, XS_CHECK_IQ_LIMIT, "xmppscope",
                        "more than %zu IQs wait for an answer in this session: the oldest are "
                        "no longer tracked (an answer to one shows as iq-unknown-id)",
                        an->cfg.max_inflight);
        }
        an->evicted++;
        unlink_entry(q, q->head);
        i = take_entry(q, an->cfg.max_inflight);
    }
    q->requests++;
    xs_iq_nsrow *row = ns.p != NULL ? row_get(&q->ns, ns.p, ns.n) : row_get(&q->ns, "(none)", 6);
    xs_iq_nsrow *tot = row != NULL ? row_get(&an->total, row->ns, strlen(row->ns)) : NULL;
    if (row != NULL)
        row->requests++;
    if (tot != NULL)
        tot->requests++;
    if (i < 0)
        return; /* out of memory: this one is not tracked */
    xs_iq_entry *e = &q->e[i];
    e->hash = h;
    e->t_us = xs_an_time_us(m);
    e->offset = ev->offset;
    e->stream = ev->stream_no;
    e->id_len = (uint32_t)(len > UINT32_MAX ? UINT32_MAX : len);
    copy_id(e->id, id, len);
    e->row = row != NULL ? (int16_t)(row - q->ns.rows) : -1;
    e->dir = (uint8_t)dir;
    e->flags = (uint8_t)((set ? XS_IQE_SET : 0) | (res->exempt ? XS_IQE_EXEMPT : 0) |
                         (bind ? XS_IQE_BIND : 0));
    if (xs_an_dropped(m->verdict))
        e->flags |= XS_IQE_DROPPED;
    e->hnext = q->bucket[h % XS_IQ_BUCKETS];
    q->bucket[h % XS_IQ_BUCKETS] = i;
    e->next = -1;
    e->prev = q->tail;
    if (q->tail >= 0)
        q->e[q->tail].next = i;
    else
        q->head = i;
    q->tail = i;
    q->n++;
}

static void answer(xs_analysis *an, xs_an_sess *s, int dir, const xs_event *ev,
                   const xs_print_meta *m, int error, const char *id, xs_annot *a,
                   xs_iq_result *res)
{
    xs_iq_sess *q = &s->iq;
    size_t len = strlen(id);
    int rdir = !dir;
    int32_t i = find(q, rdir, key_hash(rdir, id, len), id, len);
    if (i < 0) {
        char shown[XS_IQ_ID_SHOWN];
        copy_id(shown, id, len);
        xs_an_check(an, a, XS_CHECK_IQ_UNKNOWN_ID, REF_IQ,
                    "no get or set with id '%s%s' from %s waits for this %s (never sent, "
                    "answered already, or its stream restarted)",
                    shown, len >= XS_IQ_ID_SHOWN ? "…" : "", side_name(rdir),
                    error ? "error" : "result");
        return;
    }
    xs_iq_entry *e = &q->e[i];
    res->paired = 1;
    res->exempt = (e->flags & XS_IQE_EXEMPT) != 0;
    res->bind_reply = !error && (e->flags & XS_IQE_BIND) != 0;
    a->pair_dir = dir_name(rdir);
    a->pair_offset = e->offset;
    a->pair_stream = e->stream;
    int64_t t = xs_an_time_us(m);
    double ms = -1;
    if (t != INT64_MIN && e->t_us != INT64_MIN && t >= e->t_us)
        ms = (double)(t - e->t_us) / 1000.0;
    a->rtt_ms = ms;
    q->answered++;
    q->errors += error != 0;
    if (e->row >= 0) {
        xs_iq_nsrow *r = &q->ns.rows[e->row];
        xs_iq_nsrow *tot = row_get(&an->total, r->ns, strlen(r->ns));
        r->answered++;
        r->errors += error != 0;
        if (ms >= 0)
            row_sample(an, r, ms);
        if (tot != NULL) {
            tot->answered++;
            tot->errors += error != 0;
            if (ms >= 0)
                row_sample(an, tot, ms);
        }
    }
    (void)ev;
    unlink_entry(q, i);
}

void xs_iq_stanza(xs_analysis *an, xs_an_sess *s, int dir, const xs_event *ev,
                  const xs_print_meta *m, const char *type, const char *id, const xs_outline *o,
                  xs_annot *a, xs_iq_result *res)
{
    memset(res, 0, sizeof(*res));
    if (type == NULL)
        return;
    int get = strcmp(type, "get") == 0, set = strcmp(type, "set") == 0;
    int result = strcmp(type, "result") == 0, error = strcmp(type, "error") == 0;
    res->request = get || set;
    res->answer = result || error;
    if (id == NULL || (!res->request && !res->answer))
        return;
    if (res->request)
        request(an, s, dir, ev, m, set, id, o, a, res);
    else
        answer(an, s, dir, ev, m, error, id, a, res);
}

/* ---- summary --------------------------------------------------------------------------------- */

static void fmt_ms(xs_buf *b, double ms)
{
    if (ms < 0)
        xs_buf_adds(b, "-");
    else
        xs_buf_addf(b, "%.1f ms", ms);
}

void xs_iq_summary(const xs_an_sess *s, xs_buf *b)
{
    const xs_iq_sess *q = &s->iq;
    if (q->requests == 0 && q->answered == 0)
        return;
    xs_buf_addf(b, "IQ: %llu request%s, %llu answered (%llu error%s), %llu unanswered",
                (unsigned long long)q->requests, q->requests == 1 ? "" : "s",
                (unsigned long long)q->answered, (unsigned long long)q->errors,
                q->errors == 1 ? "" : "s", (unsigned long long)q->unanswered);
    for (size_t i = 0; i < q->ns.n; i++) {
        const xs_iq_nsrow *r = &q->ns.rows[i];
        double p50, p95, max;
        xs_iq_row_quantiles(r, &p50, &p95, &max);
        xs_buf_addf(b, "\nIQ %s: %llu request%s, p50 ", r->ns, (unsigned long long)r->requests,
                    r->requests == 1 ? "" : "s");
        fmt_ms(b, p50);
        xs_buf_adds(b, ", p95 ");
        fmt_ms(b, p95);
        xs_buf_adds(b, ", max ");
        fmt_ms(b, max);
        if (r->unanswered > 0)
            xs_buf_addf(b, ", %llu unanswered", (unsigned long long)r->unanswered);
    }
}

void xs_iq_sess_free(xs_iq_sess *q)
{
    xs_free(q->e);
    xs_free(q->bucket);
    xs_iq_nstab_free(&q->ns);
    memset(q, 0, sizeof(*q));
}
