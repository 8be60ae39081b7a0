/* Unit tests for the pure parts of finding a server (proxy/resolve.c): the RFC 2782 order of SRV
 * targets, domain names and the --allow-domain patterns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/resolve.h"

/* A scripted random source: hands out `draws` in order and records the bounds asked for. */
typedef struct script {
    const uint32_t *draws;
    size_t n, used;
    uint32_t bounds[16];
} script;

static uint32_t scripted(void *ctx, uint32_t bound)
{
    script *s = ctx;
    assert_true(s->used < s->n);
    s->bounds[s->used] = bound;
    uint32_t v = s->draws[s->used++];
    assert_true(v <= bound);
    return v;
}

static uint32_t never(void *ctx, uint32_t bound)
{
    (void)ctx;
    (void)bound;
    fail_msg("no draw is needed for a priority with one target");
    return 0;
}

static xs_srv_target tgt(const char *host, uint16_t prio, uint16_t weight, bool direct)
{
    xs_srv_target t;
    memset(&t, 0, sizeof(t));
    snprintf(t.host, sizeof(t.host), "%s", host);
    t.port = 5222;
    t.prio = prio;
    t.weight = weight;
    t.direct = direct;
    return t;
}

static void test_resolve_priority_lowest_first(void **state)
{
    (void)state;
    xs_srv_target t[] = {tgt("c", 20, 5, false), tgt("a", 5, 0, true), tgt("b", 10, 100, false)};
    xs_srv_order(t, 3, never, NULL);
    assert_string_equal(t[0].host, "a");
    assert_true(t[0].direct);
    assert_string_equal(t[1].host, "b");
    assert_string_equal(t[2].host, "c");
}

static void test_resolve_weights_follow_running_sums(void **state)
{
    (void)state;
    /* Weight 0 goes first in the running sums: A 0, B 10, C 40. A draw of 25 picks C; of the
     * rest (A 0, B 10) a draw of 0 picks A, and B is last. */
    xs_srv_target t[] = {tgt("B", 1, 10, false), tgt("C", 1, 30, true), tgt("A", 1, 0, false)};
    const uint32_t draws[] = {25, 0};
    script s = {.draws = draws, .n = 2};
    xs_srv_order(t, 3, scripted, &s);
    assert_int_equal(s.used, 2);
    assert_int_equal(s.bounds[0], 40);
    assert_int_equal(s.bounds[1], 10);
    assert_string_equal(t[0].host, "C");
    assert_string_equal(t[1].host, "A");
    assert_string_equal(t[2].host, "B");
}

static void test_resolve_draw_at_boundary_picks_the_earlier(void **state)
{
    (void)state;
    /* A running sum equal to the draw selects that target: 10 >= 10 picks B, not C. */
    xs_srv_target t[] = {tgt("B", 1, 10, false), tgt("C", 1, 30, false)};
    const uint32_t draws[] = {10};
    script s = {.draws = draws, .n = 1};
    xs_srv_order(t, 2, scripted, &s);
    assert_string_equal(t[0].host, "B");
    assert_string_equal(t[1].host, "C");
    const uint32_t draws2[] = {11};
    xs_srv_target u[] = {tgt("B", 1, 10, false), tgt("C", 1, 30, false)};
    script s2 = {.draws = draws2, .n = 1};
    xs_srv_order(u, 2, scripted, &s2);
    assert_string_equal(u[0].host, "C");
}

static void test_resolve_groups_are_ordered_separately(void **state)
{
    (void)state;
    /* Two priorities of two targets: one draw per group, each bounded by its own weights. */
    xs_srv_target t[] = {tgt("y2", 2, 7, false), tgt("x1", 1, 1, false), tgt("y1", 2, 3, true),
                         tgt("x2", 1, 2, true)};
    const uint32_t draws[] = {3, 10};
    script s = {.draws = draws, .n = 2};
    xs_srv_order(t, 4, scripted, &s);
    assert_int_equal(s.bounds[0], 3);  /* x1 1 + x2 2 */
    assert_int_equal(s.bounds[1], 10); /* y2 7 + y1 3 */
    assert_string_equal(t[0].host, "x2");
    assert_string_equal(t[1].host, "x1");
    assert_string_equal(t[2].host, "y1");
    assert_string_equal(t[3].host, "y2");
}

static void test_resolve_weights_share_first_place(void **state)
{
    (void)state;
    /* With random(): weight 3 against weight 1, as the rule is written. */
    srandom(12345);
    int heavy_first = 0;
    for (int i = 0; i < 20000; i++) {
        xs_srv_target t[] = {tgt("light", 0, 1, false), tgt("heavy", 0, 3, false)};
        xs_srv_order(t, 2, NULL, NULL);
        heavy_first += strcmp(t[0].host, "heavy") == 0;
    }
    /* RFC 2782 draws in [0, sum]: the running sums are 1 and 4, so draws 0 and 1 pick the light
     * one and 2 to 4 the heavy one: 3 in 5, 12000 of 20000. */
    assert_in_range(heavy_first, 11400, 12600);
}

static void test_resolve_empty_and_single(void **state)
{
    (void)state;
    xs_srv_order(NULL, 0, never, NULL);
    xs_srv_target t[] = {tgt("only", 9, 0, false)};
    xs_srv_order(t, 1, never, NULL);
    assert_string_equal(t[0].host, "only");
}

static void test_resolve_dns_names(void **state)
{
    (void)state;
    assert_true(xs_dns_name_ok("example.org"));
    assert_true(xs_dns_name_ok("example.org."));
    assert_true(xs_dns_name_ok("a-b.c_d.example"));
    assert_true(xs_dns_name_ok("localhost"));
    assert_false(xs_dns_name_ok(""));
    assert_false(xs_dns_name_ok("."));
    assert_false(xs_dns_name_ok("a..b"));
    assert_false(xs_dns_name_ok(".a"));
    assert_false(xs_dns_name_ok("-a.b"));
    assert_false(xs_dns_name_ok("a-.b"));
    assert_false(xs_dns_name_ok("a b"));
    assert_false(xs_dns_name_ok("a:5222"));
    assert_false(xs_dns_name_ok("ex\xc3\xa4mple.org"));
    assert_false(xs_dns_name_ok("a/b"));
    char label[70];
    memset(label, 'x', 63);
    label[63] = 0;
    assert_true(xs_dns_name_ok(label));
    memset(label, 'x', 64);
    label[64] = 0;
    assert_false(xs_dns_name_ok(label));
    char longname[300];
    size_t n = 0;
    while (n + 4 <= 252) {
        memcpy(longname + n, "abc.", 4);
        n += 4;
    }
    longname[n] = 'z';
    longname[n + 1] = 0; /* 253 characters */
    assert_true(xs_dns_name_ok(longname));
    longname[n + 1] = 'z';
    longname[n + 2] = 0; /* 254 */
    assert_false(xs_dns_name_ok(longname));
}

static void test_resolve_allow_patterns(void **state)
{
    (void)state;
    assert_true(xs_domain_match("example.test", "example.test"));
    assert_true(xs_domain_match("example.test", "EXAMPLE.test."));
    assert_false(xs_domain_match("example.test", "a.example.test"));
    assert_true(xs_domain_match("*.example.test", "a.example.test"));
    assert_true(xs_domain_match("*.example.test", "x.y.example.test"));
    assert_false(xs_domain_match("*.example.test", "example.test"));
    assert_false(xs_domain_match("*.example.test", "badexample.test"));
    assert_false(xs_domain_match("*.example.test", ".example.test"));
    assert_false(xs_domain_match("example.test", "example.tes"));
    assert_false(xs_domain_match("", ""));
    assert_false(xs_domain_match("*.", "a"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve_priority_lowest_first),
        cmocka_unit_test(test_resolve_weights_follow_running_sums),
        cmocka_unit_test(test_resolve_draw_at_boundary_picks_the_earlier),
        cmocka_unit_test(test_resolve_groups_are_ordered_separately),
        cmocka_unit_test(test_resolve_weights_share_first_place),
        cmocka_unit_test(test_resolve_empty_and_single),
        cmocka_unit_test(test_resolve_dns_names),
        cmocka_unit_test(test_resolve_allow_patterns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
