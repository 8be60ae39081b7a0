/* Unit tests of IQ pairing and timing (inspect/iq.h, through the analyser of inspect/check.h):
 * pairing both ways, restarts, timeouts at ticks and offline, duplicates, unknown ids, memory
 * caps, statistics and the session summary. The harness is in analysis_harness.h. */
#include "analysis_harness.h"

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
    assert_non_null(strstr(last(&h)->texts, "before the input ended (session "));
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
        cmocka_unit_test(test_check_summary_printed),
        cmocka_unit_test(test_check_parse_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
