/* Unit tests of the analysers (inspect/check.h, iq.h, sm.h, jid.h): IQ pairing both ways,
 * restarts, timeouts, duplicates, unknown ids, memory caps, statistics; every check firing on bad
 * traffic and none on good traffic; JID validation; XEP-0198 counting and resumption.
 *
 * Traffic goes through the real parser (one per direction, as a session has) and the real
 * observer chain (xs_obs_emit_event), so the analyser sees events exactly as in the proxy or
 * `inspect`. Every scenario runs twice: with the parser's trees and without them (the
 * analyser then scans the stanzas' bytes), and must give the same annotations. */
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

static harness *cur;

static int record(void *ctx, const xs_obs_event *ev)
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

static void *count_malloc(size_t n)
{
    if (cur != NULL && cur->counting)
        cur->allocs++;
    return malloc(n);
}

static void *count_realloc(void *p, size_t n)
{
    if (cur != NULL && cur->counting)
        cur->allocs++;
    return realloc(p, n);
}

static void count_on(void *ctx, const xs_obs_event *ev, xs_annot *a)
{
    ((harness *)ctx)->counting = 1;
}

static void count_off(void *ctx, const xs_obs_event *ev, xs_annot *a)
{
    ((harness *)ctx)->counting = 0;
}

static xs_print_meta meta_now(harness *h, int dir)
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

static int on_parser_event(void *user, const xs_event *ev)
{
    harness *h = user;
    xs_print_meta m = meta_now(h, h->dir);
    if (ev->kind == XS_EV_STANZA)
        h->offsets[h->dir] = ev->offset;
    assert_int_equal(xs_obs_emit_event(h->obs, h->n_obs, &m, ev, 0), 0);
    return 0;
}

static bool with_tree;

static void h_open_cfg(harness *h, const xs_analysis_cfg *cfg)
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

static void h_open(harness *h)
{
    xs_analysis_cfg cfg = {.pairing = 1, .checks = 1};
    h_open_cfg(h, &cfg);
}

static void h_free(harness *h)
{
    xs_parser_free(h->p[0]);
    xs_parser_free(h->p[1]);
    xs_analysis_free(h->an);
    cur = NULL;
}

/* Feeds xml to the parser of direction dir (0 c2s, 1 s2c). */
static void feed(harness *h, int dir, const char *xml)
{
    h->dir = dir;
    assert_int_equal(xs_parser_feed(h->p[dir], xml, strlen(xml), NULL), 0);
}

#define C(h, xml) feed(h, 0, xml)
#define S(h, xml) feed(h, 1, xml)

/* Both stream headers. */
static void h_streams(harness *h)
{
    C(h, C2S_HEADER);
    S(h, S2C_HEADER);
}

/* Both streams, bound. */
static void h_bound(harness *h)
{
    h_streams(h);
    C(h, BIND_SET);
    S(h, BIND_RESULT);
}

static void h_other(harness *h, xs_obs_kind kind, const char *session)
{
    xs_print_meta m = meta_now(h, 0);
    m.direction = NULL;
    m.session = session;
    xs_obs_event e = {.kind = kind, .meta = &m, .level = "info", .text = "closed"};
    assert_int_equal(xs_obs_emit_other(h->obs, h->n_obs, &e), 0);
}

static const rec *last(const harness *h)
{
    assert_true(h->n_recs > 0);
    return &h->recs[h->n_recs - 1];
}

/* How many times check `id` was reported in records [from, n_recs). */
static unsigned count_from(const harness *h, size_t from, const char *id)
{
    unsigned n = 0;
    size_t len = strlen(id);
    for (size_t i = from; i < h->n_recs; i++)
        for (const char *p = h->recs[i].checks; (p = strstr(p, id)) != NULL; p += len)
            if ((p == h->recs[i].checks || p[-1] == ' ') && p[len] == ' ')
                n++;
    return n;
}

static unsigned count(const harness *h, const char *id)
{
    return count_from(h, 0, id);
}

static unsigned total_checks(const harness *h)
{
    unsigned n = 0;
    for (size_t i = 0; i < h->n_recs; i++)
        for (const char *p = h->recs[i].checks; *p; p++)
            n += *p == ' ';
    return n;
}

static void assert_no_checks(const harness *h)
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

/* ---- pairing --------------------------------------------------------------------------------- */

BOTH(test_iq_pair_client_request)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    C(&h, "<iq type='get' id='v1' to='example.test'><query xmlns='jabber:iq:version'/></iq>");
    uint64_t req = h.offsets[0];
    h.now_us += 12400;
    S(&h, "<iq type='result' id='v1' from='example.test'><query xmlns='jabber:iq:version'>"
          "<name>x</name></query></iq>");
    const rec *r = last(&h);
    assert_string_equal(r->pair_dir, "c2s");
    assert_int_equal(r->pair_offset, req);
    assert_float_equal(r->rtt_ms, 12.4, 0.001);
    assert_no_checks(&h);
    h_free(&h);
}

BOTH(test_iq_pair_server_request)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    /* The server pings the client: the answer goes c2s and pairs the other way. */
    S(&h, "<iq type='get' id='p1' from='example.test'><ping xmlns='urn:xmpp:ping'/></iq>");
    uint64_t req = h.offsets[1];
    h.now_us += 3000;
    C(&h, "<iq type='result' id='p1' to='example.test'/>");
    assert_string_equal(last(&h)->pair_dir, "s2c");
    assert_int_equal(last(&h)->pair_offset, req);
    assert_float_equal(last(&h)->rtt_ms, 3.0, 0.001);
    /* Same id both ways: two requests, each answered from the other side. */
    C(&h, "<iq type='get' id='same'><ping xmlns='urn:xmpp:ping'/></iq>");
    S(&h, "<iq type='get' id='same'><ping xmlns='urn:xmpp:ping'/></iq>");
    C(&h, "<iq type='result' id='same'/>");
    assert_string_equal(last(&h)->pair_dir, "s2c");
    S(&h, "<iq type='error' id='same'><error type='cancel'>"
          "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>");
    assert_string_equal(last(&h)->pair_dir, "c2s");
    assert_no_checks(&h);
    h_free(&h);
}

BOTH(test_iq_untimed_pairs_without_rtt)
{
    harness h;
    h_open(&h);
    h.now_us = -1;
    h_bound(&h);
    assert_non_null(last(&h)->pair_dir);
    assert_true(last(&h)->rtt_ms < 0);
    h_free(&h);
}

BOTH(test_iq_unknown_and_duplicate)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    S(&h, "<iq type='result' id='nobody'/>");
    assert_string_equal(last(&h)->checks, "iq-unknown-id ");
    assert_null(last(&h)->pair_dir);
    assert_non_null(strstr(last(&h)->texts, "'nobody'"));
    C(&h, "<iq type='get' id='d'><query xmlns='jabber:iq:roster'/></iq>");
    size_t mark = h.n_recs;
    C(&h, "<iq type='get' id='d'><query xmlns='jabber:iq:roster'/></iq>");
    assert_int_equal(count_from(&h, mark, "iq-duplicate-id"), 1);
    S(&h, "<iq type='result' id='d'/>");
    assert_non_null(last(&h)->pair_dir);
    /* Answered: the id may be used again, and a second answer is unknown. */
    S(&h, "<iq type='result' id='d'/>");
    assert_string_equal(last(&h)->checks, "iq-unknown-id ");
    mark = h.n_recs;
    C(&h, "<iq type='get' id='d'><query xmlns='jabber:iq:roster'/></iq>");
    assert_int_equal(count_from(&h, mark, "iq-duplicate-id"), 0);
    /* A result from the same side as the request does not answer it. */
    C(&h, "<iq type='result' id='d'/>");
    assert_string_equal(last(&h)->checks, "iq-unknown-id ");
    h_free(&h);
}

BOTH(test_iq_restart_clears_ids)
{
    harness h;
    h_open(&h);
    h_streams(&h);
    C(&h, "<iq type='get' id='r1'><query xmlns='jabber:iq:register'/></iq>");
    size_t mark = h.n_recs;
    C(&h, C2S_HEADER); /* the client restarts its stream */
    assert_int_equal(count_from(&h, mark, "iq-unanswered"), 1);
    assert_non_null(strstr(last(&h)->texts, "restarted"));
    S(&h, S2C_HEADER);
    S(&h, "<iq type='result' id='r1'/>");
    assert_string_equal(last(&h)->checks, "iq-unknown-id ");
    h_free(&h);
}

BOTH(test_iq_timeout_at_tick)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    C(&h, "<iq type='get' id='t1'><query xmlns='jabber:iq:version'/></iq>");
    uint64_t req = h.offsets[0];
    h.now_us += 29 * 1000000;
    h_other(&h, XS_OBS_TICK, "1");
    assert_string_equal(last(&h)->checks, "");
    h.now_us += 1000000;
    h_other(&h, XS_OBS_TICK, "1");
    assert_string_equal(last(&h)->checks, "iq-unanswered ");
    assert_string_equal(last(&h)->pair_dir, "c2s");
    assert_int_equal(last(&h)->pair_offset, req);
    assert_non_null(strstr(last(&h)->texts, "within 30 s"));
    assert_non_null(strstr(last(&h)->texts, "jabber:iq:version"));
    /* Reported once: not again at the next tick nor at the end; a late answer is unknown. */
    h_other(&h, XS_OBS_TICK, "1");
    assert_string_equal(last(&h)->checks, "");
    S(&h, "<iq type='result' id='t1'/>");
    assert_string_equal(last(&h)->checks, "iq-unknown-id ");
    h_other(&h, XS_OBS_CLOSED, "1");
    assert_int_equal(count(&h, "iq-unanswered"), 1);
    assert_non_null(strstr(last(&h)->summary, "1 unanswered"));
    /* A tick of another session or none changes nothing. */
    h_other(&h, XS_OBS_TICK, "2");
    h_free(&h);
}

BOTH(test_iq_timeout_option_and_rule_drop)
{
    harness h;
    xs_analysis_cfg cfg = {.pairing = 1, .checks = 1, .iq_timeout = 0.5};
    h_open_cfg(&h, &cfg);
    h_bound(&h);
    h.verdict = "drop";
    C(&h, "<iq type='get' id='t2'><query xmlns='jabber:iq:version'/></iq>");
    h.verdict = NULL;
    h.now_us += 499999;
    h_other(&h, XS_OBS_TICK, "1");
    assert_string_equal(last(&h)->checks, "");
    h.now_us += 1;
    h_other(&h, XS_OBS_TICK, "1");
    assert_string_equal(last(&h)->checks, "iq-unanswered ");
    assert_non_null(strstr(last(&h)->texts, "a rule dropped it"));
    h_free(&h);
}

BOTH(test_iq_lazy_timeout_offline)
{
    harness h;
    xs_analysis_cfg cfg = {.pairing = 1, .checks = 1, .lazy_timeouts = 1};
    h_open_cfg(&h, &cfg);
    h_bound(&h);
    C(&h, "<iq type='get' id='z'><query xmlns='jabber:iq:version'/></iq>");
    h.now_us += 10 * 1000000;
    C(&h, "<presence/>");
    assert_string_equal(last(&h)->checks, "");
    h.now_us += 21 * 1000000;
    C(&h, "<presence/>");
    assert_string_equal(last(&h)->checks, "iq-unanswered ");
    assert_null(last(&h)->pair_dir); /* on a stanza of its own: no pair shown */
    h_free(&h);
}

BOTH(test_iq_unanswered_at_end)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    C(&h, "<iq type='set' id='e1'><query xmlns='jabber:iq:roster'/></iq>");
    h_other(&h, XS_OBS_CLOSED, "1");
    assert_string_equal(last(&h)->checks, "iq-unanswered ");
    assert_non_null(strstr(last(&h)->texts, "before the session ended"));
    assert_non_null(strstr(last(&h)->summary, "IQ: 2 requests, 1 answered (0 errors), 1 "
                                              "unanswered"));
    assert_non_null(strstr(last(&h)->summary, "IQ jabber:iq:roster: 1 request"));
    /* The state is gone: the same session name starts afresh. */
    xs_analysis_counts c;
    xs_analysis_get_counts(h.an, &c);
    assert_int_equal(c.sessions, 0);
    h_free(&h);
}

BOTH(test_iq_end_of_input_all_sessions)
{
    harness h;
    h_open(&h);
    for (int i = 0; i < 12; i++) {
        char s[8], xml[128];
        snprintf(s, sizeof(s), "%d", i);
        h.session = i < 3 ? s : "many";
        if (i < 3)
            h_bound(&h);
        snprintf(xml, sizeof(xml), "<iq type='get' id='q%d'><ping xmlns='urn:xmpp:ping'/></iq>", i);
        if (i == 3) {
            h_bound(&h);
        }
        C(&h, xml);
        /* new parsers for the next session */
        if (i < 3) {
            xs_parser_free(h.p[0]);
            xs_parser_free(h.p[1]);
            unsigned opts =
                XS_PARSER_RAW | XS_PARSER_AUTO_RESTART | (with_tree ? XS_PARSER_TREE : 0);
            for (int k = 0; k < 2; k++)
                assert_int_equal(xs_parser_new(NULL, opts, on_parser_event, &h, &h.p[k]), 0);
        }
    }
    h_other(&h, XS_OBS_CLOSED, NULL);
    /* 12 waiting, 8 lines at most: some said one by one, then one line for the others. */
    assert_int_equal(count_from(&h, h.n_recs - 1, "iq-unanswered"), XS_ANNOT_MAX_CHECKS);
    assert_non_null(strstr(last(&h)->texts, "more IQs got no answer"));
    xs_iq_stat st[4];
    size_t n = xs_analysis_iq_stats(h.an, st, 4);
    assert_true(n >= 1);
    int found = 0;
    for (size_t i = 0; i < n && i < 4; i++)
        if (strcmp(st[i].ns, "urn:xmpp:ping") == 0) {
            assert_int_equal(st[i].requests, 12);
            assert_int_equal(st[i].unanswered, 12);
            found = 1;
        }
    assert_true(found);
    h_free(&h);
}

BOTH(test_iq_cap_in_flight)
{
    harness h;
    xs_analysis_cfg cfg = {.pairing = 1, .checks = 1, .max_inflight = 4};
    h_open_cfg(&h, &cfg);
    h_bound(&h);
    for (int i = 0; i < 6; i++) {
        char xml[128];
        snprintf(xml, sizeof(xml), "<iq type='get' id='c%d'><ping xmlns='urn:xmpp:ping'/></iq>", i);
        C(&h, xml);
    }
    assert_int_equal(count(&h, "iq-limit"), 1); /* said once */
    xs_analysis_counts c;
    xs_analysis_get_counts(h.an, &c);
    assert_int_equal(c.iq_evicted, 2);
    /* The 4 newest are still paired; the oldest two are forgotten. */
    S(&h, "<iq type='result' id='c5'/>");
    assert_non_null(last(&h)->pair_dir);
    S(&h, "<iq type='result' id='c2'/>");
    assert_non_null(last(&h)->pair_dir);
    S(&h, "<iq type='result' id='c0'/>");
    assert_string_equal(last(&h)->checks, "iq-unknown-id ");
    h_free(&h);
}

BOTH(test_iq_long_id)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    char id[400], xml[600];
    memset(id, 'x', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    snprintf(xml, sizeof(xml), "<iq type='get' id='%s'><ping xmlns='urn:xmpp:ping'/></iq>", id);
    C(&h, xml);
    /* Same first 47 bytes, another end: not the same request. */
    id[300] = 'y';
    snprintf(xml, sizeof(xml), "<iq type='result' id='%s'/>", id);
    S(&h, xml);
    assert_string_equal(last(&h)->checks, "iq-unknown-id ");
    id[300] = 'x';
    snprintf(xml, sizeof(xml), "<iq type='result' id='%s'/>", id);
    S(&h, xml);
    assert_non_null(last(&h)->pair_dir);
    h_free(&h);
}

BOTH(test_iq_stats_percentiles)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    for (int i = 1; i <= 20; i++) {
        char xml[128];
        snprintf(xml, sizeof(xml), "<iq type='get' id='s%d'><query xmlns='jabber:iq:last'/></iq>",
                 i);
        C(&h, xml);
        h.now_us += i * 1000; /* round trips 1..20 ms */
        snprintf(xml, sizeof(xml), "<iq type='%s' id='s%d'/>", i == 20 ? "error" : "result", i);
        if (i == 20)
            S(&h, "<iq type='error' id='s20'><error type='cancel'><item-not-found "
                  "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>");
        else
            S(&h, xml);
    }
    xs_iq_stat st[8];
    size_t n = xs_analysis_iq_stats(h.an, st, 8);
    assert_int_equal(n, 2); /* bind, last */
    assert_string_equal(st[0].ns, "jabber:iq:last");
    assert_int_equal(st[0].requests, 20);
    assert_int_equal(st[0].answered, 20);
    assert_int_equal(st[0].errors, 1);
    assert_float_equal(st[0].p50, 10.0, 0.001);
    assert_float_equal(st[0].p95, 19.0, 0.001);
    assert_float_equal(st[0].max, 20.0, 0.001);
    h_other(&h, XS_OBS_CLOSED, "1");
    assert_non_null(
        strstr(last(&h)->summary,
               "IQ jabber:iq:last: 20 requests, p50 10.0 ms, p95 19.0 ms, max 20.0 ms"));
    h_free(&h);
}

/* More round trips than are kept: the percentiles come from a sample, the max is exact. */
static void test_iq_stats_sampled(void **state)
{
    harness h;
    with_tree = false;
    h_open(&h);
    h_bound(&h);
    for (int i = 1; i <= 3000; i++) {
        char xml[128];
        snprintf(xml, sizeof(xml), "<iq type='get' id='s%d'><ping xmlns='urn:xmpp:ping'/></iq>", i);
        C(&h, xml);
        h.now_us += (i % 100 + 1) * 1000; /* 1..100 ms, uniform */
        snprintf(xml, sizeof(xml), "<iq type='result' id='s%d'/>", i);
        S(&h, xml);
        h.n_recs = 0;
    }
    xs_iq_stat st[4];
    assert_int_equal(xs_analysis_iq_stats(h.an, st, 4), 2);
    assert_int_equal(st[0].answered, 3000);
    assert_float_equal(st[0].max, 100.0, 0.001);
    assert_float_equal(st[0].p50, 50.0, 8.0);
    assert_float_equal(st[0].p95, 95.0, 4.0);
    h_free(&h);
}

BOTH(test_iq_bounced_not_tracked)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    /* A rule bounced it: the proxy answered the client itself, nothing waits. */
    h.verdict = "bounce";
    C(&h, "<iq type='get' id='bo'><query xmlns='jabber:iq:version'/></iq>");
    h.verdict = NULL;
    h_other(&h, XS_OBS_CLOSED, "1");
    assert_no_checks(&h);
    h_free(&h);
}

/* The payload namespace of a request, from a prefix, deep trees skipped, '>' in values. */
BOTH(test_iq_outline_namespaces)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    C(&h, "<iq type='get' id='n1' xmlns:v='jabber:iq:version'><v:query/></iq>");
    C(&h, "<iq type='set' id='n2'><p:pubsub xmlns:p='http://jabber.org/protocol/pubsub'>"
          "<p:publish node='a&gt;b'><p:item id=\"x>y\"><entry xmlns='urn:x' t='/>'><a><b><c/>"
          "</b></a><![CDATA[</iq>]]></entry></p:item></p:publish></p:pubsub></iq>");
    assert_string_equal(last(&h)->checks, "");
    S(&h, "<iq type='result' id='n1'/><iq type='result' id='n2'/>");
    assert_no_checks(&h);
    xs_iq_stat st[8];
    size_t n = xs_analysis_iq_stats(h.an, st, 8);
    assert_int_equal(n, 3);
    int seen = 0;
    for (size_t i = 0; i < n; i++)
        seen |= (strcmp(st[i].ns, "jabber:iq:version") == 0) |
                (strcmp(st[i].ns, "http://jabber.org/protocol/pubsub") == 0) << 1;
    assert_int_equal(seen, 3);
    h_free(&h);
}

/* Namespaces per session are capped: the rest is "(other)". */
BOTH(test_iq_namespace_cap)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    for (unsigned i = 0; i < XS_IQ_MAX_NS + 10; i++) {
        char xml[160];
        snprintf(xml, sizeof(xml), "<iq type='get' id='k%u'><q xmlns='urn:ns:%u'/></iq>", i, i);
        C(&h, xml);
        snprintf(xml, sizeof(xml), "<iq type='result' id='k%u'/>", i);
        S(&h, xml);
    }
    h_other(&h, XS_OBS_CLOSED, "1");
    const char *sum = last(&h)->summary;
    unsigned lines = 0;
    for (const char *p = sum; *p; p++)
        lines += *p == '\n';
    /* The first line, then XS_IQ_MAX_NS rows: bind, 30 of urn:ns, and the other 12. */
    assert_int_equal(lines, XS_IQ_MAX_NS);
    assert_non_null(strstr(sum, "IQ (other): 12 requests"));
    h_free(&h);
}

/* ---- checks ---------------------------------------------------------------------------------- */

/* A whole valid session: nothing to say. */
BOTH(test_check_valid_session_silent)
{
    harness h;
    h_open(&h);
    C(&h, C2S_HEADER);
    S(&h, S2C_HEADER);
    S(&h, "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
          "<mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms>"
          "</stream:features>");
    C(&h, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA=="
          "</auth>");
    S(&h, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    C(&h, C2S_HEADER);
    S(&h, S2C_HEADER);
    S(&h, "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
          "<sm xmlns='urn:xmpp:sm:3'/></stream:features>");
    C(&h, BIND_SET);
    S(&h, BIND_RESULT);
    C(&h, "<iq type='get' id='ro'><query xmlns='jabber:iq:roster'/></iq>");
    S(&h, "<iq type='result' id='ro' to='alice@example.test/r'><query xmlns='jabber:iq:roster'>"
          "<item jid='bob@example.test'/></query></iq>");
    C(&h, "<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    S(&h, "<enabled xmlns='urn:xmpp:sm:3' id='sm-1' resume='true'/>");
    C(&h, "<presence><show>away</show></presence>");
    C(&h, "<presence type='subscribe' to='bob@example.test'/>");
    C(&h, "<message to='bob@example.test/phone' type='chat' id='m1'><body>hi</body></message>");
    C(&h, "<message to='room@conference.example.test' type='groupchat'><body>x</body></message>");
    C(&h, "<message to='café.example.test'><body>IDN</body></message>");
    C(&h, "<message to='[::1]' type='headline'/><message to='127.0.0.1' type='normal'/>");
    C(&h, "<r xmlns='urn:xmpp:sm:3'/>");
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='7'/>");
    S(&h, "<message from='bob@example.test/x' to='alice@example.test/r' type='error'>"
          "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
          "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no</text></error></message>");
    S(&h, "<iq type='set' id='push' to='alice@example.test/r'><query xmlns='jabber:iq:roster'>"
          "<item jid='carol@example.test'/></query></iq>");
    C(&h, "<iq type='result' id='push'/>");
    S(&h, "<r xmlns='urn:xmpp:sm:3'/>");
    C(&h, "<a xmlns='urn:xmpp:sm:3' h='2'/>");
    C(&h, "</stream:stream>");
    S(&h, "</stream:stream>");
    h_other(&h, XS_OBS_CLOSED, "1");
    assert_no_checks(&h);
    assert_true(h.n_recs > 30);
    h_free(&h);
}

BOTH(test_check_iq_shape)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    C(&h, "<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert_string_equal(last(&h)->checks, "iq-no-id ");
    C(&h, "<iq id='nt'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert_string_equal(last(&h)->checks, "iq-bad-type ");
    C(&h, "<iq id='bt' type='fetch'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert_string_equal(last(&h)->checks, "iq-bad-type ");
    assert_non_null(strstr(last(&h)->texts, "'fetch'"));
    C(&h, "<iq id='p0' type='get'/>");
    assert_string_equal(last(&h)->checks, "iq-payload-count ");
    C(&h, "<iq id='p2' type='set'><a xmlns='urn:x'/><b xmlns='urn:x'/></iq>");
    assert_string_equal(last(&h)->checks, "iq-payload-count ");
    assert_non_null(strstr(last(&h)->texts, "holds 2"));
    S(&h, "<iq id='p2' type='result'><a xmlns='urn:x'/><b xmlns='urn:x'/></iq>");
    assert_string_equal(last(&h)->checks, "iq-payload-count ");
    /* Text and comments-free whitespace are not children; CDATA is not an element. */
    C(&h, "<iq id='ok' type='get'>\n  <q xmlns='urn:x'><![CDATA[<fake/>]]></q>\n</iq>");
    assert_string_equal(last(&h)->checks, "");
    h_free(&h);
}

BOTH(test_check_error_condition)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    C(&h, "<iq type='get' id='e1'><ping xmlns='urn:xmpp:ping'/></iq>");
    S(&h, "<iq type='error' id='e1'/>");
    assert_string_equal(last(&h)->checks, "error-no-condition ");
    S(&h, "<message type='error'><error type='cancel'><text "
          "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>only text</text></error></message>");
    assert_string_equal(last(&h)->checks, "error-no-condition ");
    S(&h, "<presence type='error'><error type='cancel'><gone xmlns='urn:other'/></error>"
          "</presence>");
    assert_string_equal(last(&h)->checks, "error-no-condition ");
    /* Prefixed condition, declared on the stanza: fine. */
    S(&h, "<presence type='error' xmlns:s='urn:ietf:params:xml:ns:xmpp-stanzas'><error "
          "type='auth'><s:forbidden/></error></presence>");
    assert_string_equal(last(&h)->checks, "");
    h_free(&h);
}

BOTH(test_check_stanza_types)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    C(&h, "<presence type='available'/>");
    assert_string_equal(last(&h)->checks, "presence-bad-type ");
    C(&h, "<message type='private'/>");
    assert_string_equal(last(&h)->checks, "message-bad-type ");
    C(&h, "<presence type='unavailable'/><message type='chat'/>");
    assert_string_equal(last(&h)->checks, "");
    h_free(&h);
}

BOTH(test_check_before_bind)
{
    harness h;
    h_open(&h);
    h_streams(&h);
    /* In-band registration is allowed before binding (XEP-0077). */
    C(&h, "<iq type='get' id='reg'><query xmlns='jabber:iq:register'/></iq>");
    S(&h, "<iq type='result' id='reg'><query xmlns='jabber:iq:register'/></iq>");
    assert_int_equal(count(&h, "stanza-before-bind"), 0);
    C(&h, "<message to='bob@example.test'><body>too early</body></message>");
    assert_string_equal(last(&h)->checks, "stanza-before-bind ");
    C(&h, "<presence/>");
    assert_int_equal(count(&h, "stanza-before-bind"), 1); /* once per stream */
    C(&h, BIND_SET);
    S(&h, BIND_RESULT);
    C(&h, "<presence/>");
    assert_int_equal(count(&h, "stanza-before-bind"), 1);
    h_free(&h);

    /* SASL2 with Bind2: bound by the success. */
    h_open(&h);
    h_streams(&h);
    S(&h, "<success xmlns='urn:xmpp:sasl:2'><authorization-identifier>alice@example.test/r"
          "</authorization-identifier><bound xmlns='urn:xmpp:bind:0'/></success>");
    C(&h, "<presence/>");
    assert_no_checks(&h);
    h_free(&h);

    /* A component stream has no binding. */
    h_open(&h);
    C(&h, "<stream:stream xmlns='jabber:component:accept' xmlns:stream='" NS_STREAMS
          "' to='c.example.test'>");
    C(&h, "<message from='x@c.example.test' to='a@example.test'/>");
    assert_no_checks(&h);
    h_free(&h);
}

BOTH(test_check_jid_in_stanza)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    C(&h, "<message to='a b@example.test'/>");
    assert_string_equal(last(&h)->checks, "jid-invalid ");
    assert_non_null(strstr(last(&h)->texts, "'to' JID"));
    assert_non_null(strstr(last(&h)->texts, "space"));
    S(&h, "<presence from='alice@exa_mple.test'/>");
    assert_string_equal(last(&h)->checks, "jid-invalid ");
    C(&h, "<message to='bob@ex&amp;ample.test' from='@example.test'/>");
    assert_string_equal(last(&h)->checks, "jid-invalid jid-invalid ");
    C(&h, "<message to='bob@bücher.example'/><message to='bob@bücher.example'/>");
    assert_string_equal(last(&h)->checks, "");
    h_free(&h);
}

static void test_jid_valid(void **state)
{
    static const char *const good[] = {
        "example.test",
        "alice@example.test",
        "alice@example.test/phone",
        "juliet@example.com/foo@bar",
        "juliet@example.com/foo/bar",
        "juliet@example.com/a resource with spaces",
        "example.test.",
        "EXAMPLE.test",
        "[::1]",
        "[2001:db8::1]",
        "[::ffff:192.0.2.1]",
        "[2001:db8:0:0:0:0:0:1]",
        "192.0.2.1",
        "bücher.example",
        "élise@bücher.example/résumé",
        "xn--bcher-kva.example",
        "fußball.example",
        "a-b.c-d.example",
        "1.2.3.example",
    };
    static const char *const bad[] = {
        "",
        "@example.test",
        "alice@",
        "alice@example.test/",
        "/res",
        "a\"b@example.test",
        "a&b@example.test",
        "a'b@example.test",
        "a:b@example.test",
        "a<b@example.test",
        "a>b@example.test",
        "a b@example.test",
        "a\tb@example.test",
        ("a\xc2\xa0"
         "b@example.test"), /* no-break space */
        "a\x7f@example.test",
        "alice@example.test/a\x01z",
        "alice@example.test/a\xc2\x85z", /* C1 */
        "a\xff@example.test",
        "alice@exa_mple.test",
        "alice@-example.test",
        "alice@example-.test",
        "alice@example..test",
        "alice@.example.test",
        "[::g]",
        "[1:2:3:4:5:6:7:8:9]",
        "[::1",
        "xn--zz.example",
        "bad\xe2\x80\x83space.example", /* em space in a domain */
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *why = "unset";
        if (!xs_jid_valid(good[i], strlen(good[i]), &why))
            fail_msg("'%s' refused: %s", good[i], why);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = NULL;
        if (xs_jid_valid(bad[i], strlen(bad[i]), &why))
            fail_msg("'%s' accepted", bad[i]);
        assert_non_null(why);
    }
    /* Lengths: each part up to 1023 bytes; a label up to 63. */
    char *j = malloc(3000);
    memset(j, 'a', 1023);
    strcpy(j + 1023, "@example.test");
    assert_true(xs_jid_valid(j, strlen(j), NULL));
    memset(j, 'a', 1024);
    strcpy(j + 1024, "@example.test");
    assert_false(xs_jid_valid(j, strlen(j), NULL));
    strcpy(j, "a@example.test/");
    memset(j + 15, 'r', 1023);
    j[15 + 1023] = '\0';
    assert_true(xs_jid_valid(j, strlen(j), NULL));
    strcat(j, "r");
    assert_false(xs_jid_valid(j, strlen(j), NULL));
    memset(j, 'd', 63);
    strcpy(j + 63, ".example");
    assert_true(xs_jid_valid(j, strlen(j), NULL));
    memset(j, 'd', 64);
    strcpy(j + 64, ".example");
    assert_false(xs_jid_valid(j, strlen(j), NULL));
    /* A domain over 1023 bytes of short labels. */
    size_t n = 0;
    while (n < 1030) {
        memcpy(j + n, "abc.", 4);
        n += 4;
    }
    memcpy(j + n, "example", 8);
    assert_false(xs_jid_valid(j, strlen(j), NULL));
    /* Not NUL-terminated: only len bytes count. */
    assert_true(xs_jid_valid("alice@example.test/xx", 18, NULL));
    free(j);
}

/* ---- stream management ----------------------------------------------------------------------- */

static void sm_enable(harness *h, const char *id)
{
    char xml[128];
    C(h, "<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    snprintf(xml, sizeof(xml), "<enabled xmlns='urn:xmpp:sm:3' id='%s' resume='true'/>", id);
    S(h, xml);
}

BOTH(test_sm_h_counts)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    C(&h, "<presence/>"); /* before <enable/>: not counted */
    sm_enable(&h, "s1");
    C(&h, "<message type='chat'/><message type='chat'/><presence/>");
    C(&h, "<r xmlns='urn:xmpp:sm:3'/>");
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='3'/>");
    assert_no_checks(&h);
    /* A rule drops the fifth: the server counts one less than the client sent. */
    C(&h, "<message type='chat'/>");
    h.verdict = "drop";
    C(&h, "<message type='chat'/>");
    h.verdict = NULL;
    C(&h, "<r xmlns='urn:xmpp:sm:3'/>");
    C(&h, "<message type='chat'/>"); /* after the <r/>: may be counted or not */
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='4'/>");
    assert_string_equal(last(&h)->checks, "sm-h-mismatch ");
    assert_non_null(strstr(last(&h)->texts, "had sent 5 stanzas before its <r/>: 1 stanza would "
                                            "be lost"));
    assert_non_null(strstr(last(&h)->texts, "a rule dropped 1"));
    /* Still one short at the next <r/>: the same loss, not said again. */
    C(&h, "<r xmlns='urn:xmpp:sm:3'/>");
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='5'/>");
    assert_string_equal(last(&h)->checks, "");
    /* More than sent. */
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='9'/>");
    assert_string_equal(last(&h)->checks, "sm-h-mismatch ");
    assert_non_null(strstr(last(&h)->texts, "sent only 6"));
    /* Going back. */
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='4'/>");
    assert_string_equal(last(&h)->checks, "sm-h-mismatch ");
    assert_non_null(strstr(last(&h)->texts, "went back"));
    /* The client's acks of the server's stanzas: counted after <enabled/>. */
    S(&h, "<message type='chat' to='alice@example.test/r'/><iq type='get' id='sp'>"
          "<ping xmlns='urn:xmpp:ping'/></iq>");
    S(&h, "<r xmlns='urn:xmpp:sm:3'/>");
    C(&h, "<a xmlns='urn:xmpp:sm:3' h='2'/>");
    assert_string_equal(last(&h)->checks, "");
    C(&h, "<a xmlns='urn:xmpp:sm:3' h='not-a-number'/>");
    assert_string_equal(last(&h)->checks, "");
    h_free(&h);
}

BOTH(test_sm_h_wraps)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    C(&h, "<enable xmlns='urn:xmpp:sm:3'/>");
    /* h counts mod 2^32: an ack of 4294967295 then 0 goes forward. */
    S(&h, "<enabled xmlns='urn:xmpp:sm:3'/>");
    C(&h, "<presence/>");
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='1'/>");
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='4294967296'/>"); /* out of range: ignored */
    assert_no_checks(&h);
    h_free(&h);
}

BOTH(test_sm_resume_mismatch)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    sm_enable(&h, "prev-1");
    C(&h, "<message type='chat'/><message type='chat'/><message type='chat'/>");
    S(&h, "<message type='chat'/><message type='chat'/><message type='chat'/>"
          "<message type='chat'/><message type='chat'/>");
    h_other(&h, XS_OBS_CLOSED, "1");
    /* Session 2 resumes: the client got 4 of the server's 5, the server 3 of the client's 3. */
    h.session = "2";
    xs_parser_free(h.p[0]);
    xs_parser_free(h.p[1]);
    unsigned opts = XS_PARSER_RAW | XS_PARSER_AUTO_RESTART | (with_tree ? XS_PARSER_TREE : 0);
    for (int k = 0; k < 2; k++)
        assert_int_equal(xs_parser_new(NULL, opts, on_parser_event, &h, &h.p[k]), 0);
    h_streams(&h);
    C(&h, "<resume xmlns='urn:xmpp:sm:3' previd='prev-1' h='4'/>");
    assert_string_equal(last(&h)->checks, "sm-resume-mismatch ");
    assert_non_null(strstr(last(&h)->texts, "server sent 5 stanzas in session 1: 1 will be sent "
                                            "again"));
    S(&h, "<resumed xmlns='urn:xmpp:sm:3' previd='prev-1' h='3'/>");
    assert_string_equal(last(&h)->checks, "");
    /* Resumed: bound, and the counters go on from the old ones. */
    C(&h, "<message type='chat'/>");
    assert_string_equal(last(&h)->checks, "");
    C(&h, "<r xmlns='urn:xmpp:sm:3'/>");
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='4'/>");
    assert_string_equal(last(&h)->checks, "");
    h_other(&h, XS_OBS_CLOSED, "2");

    /* Session 3 resumes session 2's id while the server says it handled too many. */
    h.session = "3";
    xs_parser_free(h.p[0]);
    xs_parser_free(h.p[1]);
    for (int k = 0; k < 2; k++)
        assert_int_equal(xs_parser_new(NULL, opts, on_parser_event, &h, &h.p[k]), 0);
    h_streams(&h);
    C(&h, "<resume xmlns='urn:xmpp:sm:3' previd='prev-1' h='4'/>");
    assert_string_equal(last(&h)->checks, "");
    S(&h, "<resumed xmlns='urn:xmpp:sm:3' previd='prev-1' h='6'/>");
    assert_string_equal(last(&h)->checks, "sm-resume-mismatch ");
    assert_non_null(strstr(last(&h)->texts, "sent only 4 stanzas in session 2"));
    /* An id never seen: nothing to compare. */
    C(&h, "<resume xmlns='urn:xmpp:sm:3' previd='other' h='5'/>");
    assert_string_equal(last(&h)->checks, "");
    h_free(&h);
}

/* The old session still open when the client resumes (the server has not noticed it died). */
BOTH(test_sm_resume_live_session)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    sm_enable(&h, "live");
    S(&h, "<message type='chat'/><message type='chat'/>");
    xs_parser *old[2] = {h.p[0], h.p[1]};
    unsigned opts = XS_PARSER_RAW | XS_PARSER_AUTO_RESTART | (with_tree ? XS_PARSER_TREE : 0);
    for (int k = 0; k < 2; k++)
        assert_int_equal(xs_parser_new(NULL, opts, on_parser_event, &h, &h.p[k]), 0);
    h.session = "2";
    h_streams(&h);
    C(&h, "<resume xmlns='urn:xmpp:sm:3' previd='live' h='2'/>");
    S(&h, "<resumed xmlns='urn:xmpp:sm:3' previd='live' h='0'/>");
    assert_no_checks(&h);
    h_other(&h, XS_OBS_CLOSED, "1");
    h_other(&h, XS_OBS_CLOSED, "2");
    xs_parser_free(old[0]);
    xs_parser_free(old[1]);
    h_free(&h);
}

/* ---- SASL downgrade -------------------------------------------------------------------------- */

/* base64 of "y,,n=alice,r=abcdef" and "n,,n=alice,r=abcdef" */
#define SCRAM_Y "eSwsbj1hbGljZSxyPWFiY2RlZg=="
#define SCRAM_N "biwsbj1hbGljZSxyPWFiY2RlZg=="
#define FEATURES_PLUS                                                                              \
    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"                       \
    "<mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-1</mechanism></mechanisms>"       \
    "</stream:features>"
#define AUTH(b64)                                                                                  \
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>" b64 "</auth>"

BOTH(test_check_sasl_downgrade)
{
    harness h;
    h_open(&h);
    h_streams(&h);
    h.rewritten = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                  "<mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>";
    S(&h, FEATURES_PLUS);
    h.rewritten = NULL;
    C(&h, AUTH(SCRAM_Y));
    assert_string_equal(last(&h)->checks, "sasl-downgrade ");
    assert_non_null(strstr(last(&h)->texts, "SCRAM-SHA-1-PLUS"));
    assert_non_null(strstr(last(&h)->texts, "sasl-plus rewrite"));
    h_free(&h);

    /* Flag 'n': no downgrade. */
    h_open(&h);
    h_streams(&h);
    S(&h, FEATURES_PLUS);
    C(&h, AUTH(SCRAM_N));
    assert_no_checks(&h);
    h_free(&h);

    /* 'y' without -PLUS on offer: what 'y' is for. */
    h_open(&h);
    h_streams(&h);
    S(&h, "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
          "<mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>");
    C(&h, AUTH(SCRAM_Y));
    assert_no_checks(&h);
    h_free(&h);
}

/* ---- options, costs, output ------------------------------------------------------------------ */

BOTH(test_check_off)
{
    harness h;
    xs_analysis_cfg cfg = {0};
    h_open_cfg(&h, &cfg);
    h_bound(&h);
    C(&h, "<iq type='get'/><message to='a b@x' type='bad'/>");
    S(&h, "<iq type='result' id='zz'/>");
    h_other(&h, XS_OBS_CLOSED, "1");
    for (size_t i = 0; i < h.n_recs; i++) {
        assert_string_equal(h.recs[i].checks, "");
        assert_null(h.recs[i].pair_dir);
        assert_string_equal(h.recs[i].summary, "");
    }
    h_free(&h);

    /* Pairing alone. */
    xs_analysis_cfg pairing = {.pairing = 1};
    h_open_cfg(&h, &pairing);
    h_bound(&h);
    assert_non_null(last(&h)->pair_dir);
    C(&h, "<message to='a b@x' type='bad'/>");
    S(&h, "<iq type='result' id='zz'/>");
    assert_int_equal(total_checks(&h), 1);
    assert_int_equal(count(&h, "iq-unknown-id"), 1);
    h_free(&h);
}

/* Messages and presences in bulk cost the analyser no allocation. */
BOTH(test_check_bulk_no_allocation)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    sm_enable(&h, "bulk");
    C(&h, "<message to='bob@example.test' type='chat'><body>warm up</body></message>");
    S(&h, "<message from='bob@example.test/x' to='alice@example.test/r' type='chat'>"
          "<body>warm up</body></message>");
    h.allocs = 0;
    for (int i = 0; i < 500; i++) {
        C(&h, "<message to='bob@example.test' type='chat' id='b'><body>hello</body></message>");
        S(&h, "<message from='bob@bücher.example/x' to='alice@example.test/r' type='chat'>"
              "<body>hi</body></message>");
        C(&h, "<presence><show>dnd</show></presence>");
        h.n_recs = 0;
    }
    assert_int_equal(h.allocs, 0);
    h_free(&h);
}

/* The session summary as the printers show it. */
static void test_check_summary_printed(void **state)
{
    harness h;
    with_tree = false;
    h_open(&h);
    h_bound(&h);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    xs_printer *pj, *pt;
    xs_print_options oj = {.format = XS_FORMAT_JSON}, ot = {.format = XS_FORMAT_PRETTY};
    assert_int_equal(xs_printer_new(f, &oj, &pj), 0);
    assert_int_equal(xs_printer_new(f, &ot, &pt), 0);
    h.obs[h.n_obs++] = xs_printer_observer(pj, XS_OBS_BEST_EFFORT, 0, "json");
    h.obs[h.n_obs++] = xs_printer_observer(pt, XS_OBS_BEST_EFFORT, 0, "text");
    C(&h, "<iq type='get' id='x'><query xmlns='jabber:iq:version'/></iq>");
    h_other(&h, XS_OBS_CLOSED, "1");
    xs_printer_free(pj);
    xs_printer_free(pt);
    fclose(f);
    assert_non_null(strstr(buf, "\"summary\":[\"IQ: 2 requests, 1 answered (0 errors), 1 "
                                "unanswered\",\"IQ urn:ietf:params:xml:ns:xmpp-bind: 1 request"));
    assert_non_null(strstr(buf, "\"event\":\"check\""));
    assert_non_null(strstr(buf, "\"check\":\"iq-unanswered\",\"ref\":\"RFC 6120 §8.2.3\""));
    assert_non_null(strstr(buf, "\n  = IQ jabber:iq:version: 1 request, p50 -, p95 -, max -, 1 "
                                "unanswered\n"));
    free(buf);
    h_free(&h);
}

static void test_check_parse_timeout(void **state)
{
    double v = 0;
    assert_int_equal(xs_analysis_parse_timeout("30", &v), 0);
    assert_float_equal(v, 30, 0);
    assert_int_equal(xs_analysis_parse_timeout("0.5", &v), 0);
    assert_float_equal(v, 0.5, 0);
    const char *bad[] = {"", "0", "-1", "abc", "1e9", "5s", " 5", "nan", "inf", "86401"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(xs_analysis_parse_timeout(bad[i], &v), XS_EINVAL);
}

int main(void)
{
    static const xs_allocator counting = {count_malloc, count_realloc, free};
    xs_alloc_set(&counting);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iq_pair_client_request),
        cmocka_unit_test(test_iq_pair_server_request),
        cmocka_unit_test(test_iq_untimed_pairs_without_rtt),
        cmocka_unit_test(test_iq_unknown_and_duplicate),
        cmocka_unit_test(test_iq_restart_clears_ids),
        cmocka_unit_test(test_iq_timeout_at_tick),
        cmocka_unit_test(test_iq_timeout_option_and_rule_drop),
        cmocka_unit_test(test_iq_lazy_timeout_offline),
        cmocka_unit_test(test_iq_unanswered_at_end),
        cmocka_unit_test(test_iq_end_of_input_all_sessions),
        cmocka_unit_test(test_iq_cap_in_flight),
        cmocka_unit_test(test_iq_long_id),
        cmocka_unit_test(test_iq_stats_percentiles),
        cmocka_unit_test(test_iq_stats_sampled),
        cmocka_unit_test(test_iq_bounced_not_tracked),
        cmocka_unit_test(test_iq_outline_namespaces),
        cmocka_unit_test(test_iq_namespace_cap),
        cmocka_unit_test(test_check_valid_session_silent),
        cmocka_unit_test(test_check_iq_shape),
        cmocka_unit_test(test_check_error_condition),
        cmocka_unit_test(test_check_stanza_types),
        cmocka_unit_test(test_check_before_bind),
        cmocka_unit_test(test_check_jid_in_stanza),
        cmocka_unit_test(test_jid_valid),
        cmocka_unit_test(test_sm_h_counts),
        cmocka_unit_test(test_sm_h_wraps),
        cmocka_unit_test(test_sm_resume_mismatch),
        cmocka_unit_test(test_sm_resume_live_session),
        cmocka_unit_test(test_check_sasl_downgrade),
        cmocka_unit_test(test_check_off),
        cmocka_unit_test(test_check_bulk_no_allocation),
        cmocka_unit_test(test_check_summary_printed),
        cmocka_unit_test(test_check_parse_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
