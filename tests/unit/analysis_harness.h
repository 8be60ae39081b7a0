/* The harness of the analysers' unit tests (test_iq.c, test_check.c): two parsers (one per
 * direction, as a session has), the analyser, and an observer that records what each event
 * carried, all through the real observer chain (xs_obs_emit_event). Every scenario written with
 * BOTH() runs twice: with the parser's trees and without them (the analyser then scans the
 * stanzas' bytes), and must give the same annotations. */
#ifndef XS_TESTS_ANALYSIS_HARNESS_H
#define XS_TESTS_ANALYSIS_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "inspect/alloc.h"
#include "inspect/check.h"
#include "inspect/error.h"
#include "inspect/jid.h"
#include "inspect/observer.h"
#include "inspect/parser.h"
#include "inspect/print.h"

#define NS_STREAMS "http://etherx.jabber.org/streams"
#define C2S_HEADER                                                                                 \
    "<stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS "' to='example.test' "        \
    "version='1.0'>"
#define S2C_HEADER                                                                                 \
    "<stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS "' from='example.test' "      \
    "id='s1' version='1.0'>"
#define BIND_SET "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
#define BIND_RESULT                                                                                \
    "<iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"                 \
    "<jid>alice@example.test/r</jid></bind></iq>"

/* ---- the harness: two parsers, the analyser, and an observer that records ------------------- */

#define MAX_RECS 256

/* What one event carried. */
typedef struct rec {
    xs_obs_kind kind;
    char checks[512]; /* the check ids, space-separated */
    char texts[4096]; /* their texts, '\n'-separated */
    const char *pair_dir;
    uint64_t pair_offset;
    double rtt_ms;
    char summary[2048];
} rec;

typedef struct harness {
    xs_analysis *an;
    xs_parser *p[2];
    xs_observer obs[8];
    size_t n_obs;
    const char *session;
    int64_t now_us; /* the time of the next event; < 0: untimed */
    const char *verdict;
    const char *rewritten;
    int dir; /* of the parser feeding */
    rec recs[MAX_RECS];
    size_t n_recs;
    uint64_t offsets[2]; /* offset of the last stanza of each direction */
    int counting;        /* allocations counted (analyser only) */
    unsigned long allocs;
} harness;

static __attribute__((unused)) harness *cur;

static __attribute__((unused)) int record(void *ctx, const xs_obs_event *ev)
{
    harness *h = ctx;
    if (h->n_recs == MAX_RECS)
        return 0;
    rec *r = &h->recs[h->n_recs++];
    memset(r, 0, sizeof(*r));
    r->kind = ev->kind;
    const xs_annot *a = ev->annot;
    for (size_t i = 0; i < a->n_checks; i++) {
        strncat(r->checks, a->checks[i].id, sizeof(r->checks) - strlen(r->checks) - 2);
        strcat(r->checks, " ");
        strncat(r->texts, a->checks[i].text, sizeof(r->texts) - strlen(r->texts) - 2);
        strcat(r->texts, "\n");
        assert_non_null(a->checks[i].ref);
    }
    r->pair_dir = a->pair_dir;
    r->pair_offset = a->pair_offset;
    r->rtt_ms = a->rtt_ms;
    if (a->summary != NULL)
        snprintf(r->summary, sizeof(r->summary), "%s", a->summary);
    return 0;
}

static __attribute__((unused)) void *count_malloc(size_t n)
{
    if (cur != NULL && cur->counting)
        cur->allocs++;
    return malloc(n);
}

static __attribute__((unused)) void *count_realloc(void *p, size_t n)
{
    if (cur != NULL && cur->counting)
        cur->allocs++;
    return realloc(p, n);
}

static __attribute__((unused)) void count_on(void *ctx, const xs_obs_event *ev, xs_annot *a)
{
    ((harness *)ctx)->counting = 1;
}

static __attribute__((unused)) void count_off(void *ctx, const xs_obs_event *ev, xs_annot *a)
{
    ((harness *)ctx)->counting = 0;
}

static __attribute__((unused)) xs_print_meta meta_now(harness *h, int dir)
{
    xs_print_meta m = {.session = h->session, .direction = dir == 0 ? "c2s" : "s2c"};
    if (h->now_us < 0) {
        m.untimed = 1;
    } else {
        m.time.tv_sec = (time_t)(h->now_us / 1000000);
        m.time.tv_nsec = (long)(h->now_us % 1000000) * 1000;
    }
    m.verdict = h->verdict;
    m.rewritten = h->rewritten;
    return m;
}

static __attribute__((unused)) int on_parser_event(void *user, const xs_event *ev)
{
    harness *h = user;
    xs_print_meta m = meta_now(h, h->dir);
    if (ev->kind == XS_EV_STANZA)
        h->offsets[h->dir] = ev->offset;
    assert_int_equal(xs_obs_emit_event(h->obs, h->n_obs, &m, ev, 0), 0);
    return 0;
}

static __attribute__((unused)) bool with_tree;

static __attribute__((unused)) void h_open_cfg(harness *h, const xs_analysis_cfg *cfg)
{
    memset(h, 0, sizeof(*h));
    cur = h;
    h->session = "1";
    h->now_us = 1000000000000; /* some time in 2001 */
    assert_int_equal(xs_analysis_new(cfg, &h->an), 0);
    h->obs[h->n_obs++] = (xs_observer){.annotate = count_on, .ctx = h};
    h->obs[h->n_obs++] = xs_analysis_observer(h->an);
    h->obs[h->n_obs++] = (xs_observer){.annotate = count_off, .ctx = h};
    h->obs[h->n_obs++] = (xs_observer){.on_event = record, .ctx = h};
    unsigned opts = XS_PARSER_RAW | XS_PARSER_AUTO_RESTART | (with_tree ? XS_PARSER_TREE : 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(xs_parser_new(NULL, opts, on_parser_event, h, &h->p[i]), 0);
}

static __attribute__((unused)) void h_open(harness *h)
{
    xs_analysis_cfg cfg = {.pairing = 1, .checks = 1};
    h_open_cfg(h, &cfg);
}

static __attribute__((unused)) void h_free(harness *h)
{
    xs_parser_free(h->p[0]);
    xs_parser_free(h->p[1]);
    xs_analysis_free(h->an);
    cur = NULL;
}

/* Feeds xml to the parser of direction dir (0 c2s, 1 s2c). */
static __attribute__((unused)) void feed(harness *h, int dir, const char *xml)
{
    h->dir = dir;
    assert_int_equal(xs_parser_feed(h->p[dir], xml, strlen(xml), NULL), 0);
}

#define C(h, xml) feed(h, 0, xml)
#define S(h, xml) feed(h, 1, xml)

/* Both stream headers. */
static __attribute__((unused)) void h_streams(harness *h)
{
    C(h, C2S_HEADER);
    S(h, S2C_HEADER);
}

/* Both streams, bound. */
static __attribute__((unused)) void h_bound(harness *h)
{
    h_streams(h);
    C(h, BIND_SET);
    S(h, BIND_RESULT);
}

static __attribute__((unused)) void h_other(harness *h, xs_obs_kind kind, const char *session)
{
    xs_print_meta m = meta_now(h, 0);
    m.direction = NULL;
    m.session = session;
    xs_obs_event e = {.kind = kind, .meta = &m, .level = "info", .text = "closed"};
    assert_int_equal(xs_obs_emit_other(h->obs, h->n_obs, &e), 0);
}

static __attribute__((unused)) const rec *last(const harness *h)
{
    assert_true(h->n_recs > 0);
    return &h->recs[h->n_recs - 1];
}

/* How many times check `id` was reported in records [from, n_recs). */
static __attribute__((unused)) unsigned count_from(const harness *h, size_t from, const char *id)
{
    unsigned n = 0;
    size_t len = strlen(id);
    for (size_t i = from; i < h->n_recs; i++)
        for (const char *p = h->recs[i].checks; (p = strstr(p, id)) != NULL; p += len)
            if ((p == h->recs[i].checks || p[-1] == ' ') && p[len] == ' ')
                n++;
    return n;
}

static __attribute__((unused)) unsigned count(const harness *h, const char *id)
{
    return count_from(h, 0, id);
}

static __attribute__((unused)) unsigned total_checks(const harness *h)
{
    unsigned n = 0;
    for (size_t i = 0; i < h->n_recs; i++)
        for (const char *p = h->recs[i].checks; *p; p++)
            n += *p == ' ';
    return n;
}

static __attribute__((unused)) void assert_no_checks(const harness *h)
{
    for (size_t i = 0; i < h->n_recs; i++)
        if (h->recs[i].checks[0] != '\0')
            fail_msg("event %zu has checks: %s(%s)", i, h->recs[i].checks, h->recs[i].texts);
}

/* Runs a scenario with trees and without. */
#define BOTH(name)                                                                                 \
    static void name##_body(void);                                                                 \
    static void name(void **state)                                                                 \
    {                                                                                              \
        (void)state;                                                                               \
        with_tree = true;                                                                          \
        name##_body();                                                                             \
        with_tree = false;                                                                         \
        name##_body();                                                                             \
    }                                                                                              \
    static void name##_body(void)

#endif
