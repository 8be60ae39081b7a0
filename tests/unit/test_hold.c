/* Unit tests of send and intercept (proxy/session_hold.c), driven without sockets as in
 * test_session.c: a fake xs_session_io records what the session writes to each side; the client
 * and server legs are plain, so a session forwards as soon as both stream headers went by.
 *
 * The intercept's hold callback holds the stanzas whose bytes contain "HOLD"; an observer keeps
 * the notes the session says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "inspect/error.h"
#include "proxy/session.h"
#include "proxy/web.h"

#define NS_STREAMS_DECL "xmlns:stream='http://etherx.jabber.org/streams'"
#define C_HDR                                                                                      \
    "<stream:stream to='example.test' xmlns='jabber:client' version='1.0' " NS_STREAMS_DECL ">"
#define S_HDR                                                                                      \
    "<stream:stream xmlns='jabber:client' " NS_STREAMS_DECL " from='example.test' id='s1' "        \
    "version='1.0'>"

typedef struct t {
    char out[2][8192];
    size_t len[2];
    char notes[8192];
    size_t notes_len;
    uint64_t ids[8]; /* the hold ids the callback was offered and took */
    size_t n_ids;
    unsigned server_asked; /* the callback is asked about the server's stanzas too */
    xs_observer obs;
    xs_session_cfg cfg;
    xs_session *s;
} t;

static int fake_write(void *ctx, xs_side side, const char *data, size_t len)
{
    t *x = ctx;
    assert_true(x->len[side] + len < sizeof(x->out[side]));
    memcpy(x->out[side] + x->len[side], data, len);
    x->len[side] += len;
    x->out[side][x->len[side]] = 0;
    return 0;
}

static int fake_start_tls(void *ctx, xs_side side, const char *name)
{
    (void)ctx, (void)side, (void)name;
    fail_msg("no TLS in these tests");
    return XS_ETLS;
}

static int fake_connect(void *ctx)
{
    (void)ctx;
    return 0;
}

static void fake_close(void *ctx, xs_side side)
{
    (void)ctx, (void)side;
}

static const xs_session_io io = {
    .write = fake_write, .start_tls = fake_start_tls, .connect = fake_connect, .close = fake_close};

static int on_note(void *ctx, const xs_obs_event *ev)
{
    t *x = ctx;
    if (ev->kind == XS_OBS_NOTE && ev->text != NULL) {
        int n =
            snprintf(x->notes + x->notes_len, sizeof(x->notes) - x->notes_len, "%s\n", ev->text);
        if (n > 0 && x->notes_len + (size_t)n < sizeof(x->notes))
            x->notes_len += (size_t)n;
    }
    return 0;
}

static int hold_cb(void *ctx, xs_session *s, xs_side from, const xs_obs_event *ev, uint64_t id)
{
    t *x = ctx;
    (void)s;
    assert_non_null(ev->ev);
    if (from != XS_CLIENT)
        x->server_asked++;
    if (ev->ev->raw == NULL || memmem(ev->ev->raw, ev->ev->len, "HOLD", 4) == NULL)
        return 0;
    assert_true(x->n_ids < 8);
    x->ids[x->n_ids++] = id;
    return 1;
}

static void feed(t *x, xs_side side, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(xs_session_on_data(x->s, side, s, n), n);
}

/* Feeds one byte at a time: the stanza boundaries must not depend on the reads. */
static void feed_bytes(t *x, xs_side side, const char *s)
{
    for (size_t i = 0; s[i] != 0; i++)
        assert_int_equal(xs_session_on_data(x->s, side, s + i, 1), 1);
}

static t *start(bool with_hold)
{
    t *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    x->obs = (xs_observer){.on_event = on_note, .ctx = x, .name = "notes"};
    x->cfg.client_mode = XS_TLSMODE_NONE;
    x->cfg.server_mode = XS_TLSMODE_NONE;
    x->cfg.observers = &x->obs;
    x->cfg.n_observers = 1;
    if (with_hold) {
        x->cfg.hold = hold_cb;
        x->cfg.hold_ctx = x;
    }
    assert_int_equal(xs_session_new(&x->cfg, &io, x, 3, "127.0.0.1:1", &x->s), 0);
    xs_session_start(x->s);
    return x;
}

static void forwarding(t *x)
{
    feed(x, XS_CLIENT, C_HDR);
    xs_session_on_connected(x->s, 0, NULL);
    feed(x, XS_SERVER, S_HDR);
    assert_true(xs_session_forwarding(x->s));
    x->len[0] = x->len[1] = 0;
    x->out[0][0] = x->out[1][0] = 0;
}

static void finish(t *x)
{
    xs_session_free(x->s);
    free(x);
}

static const char MSG_A[] = "<message to='bob@example.test' id='a'><body>HOLD a</body></message>";
static const char MSG_B[] = "<message to='bob@example.test' id='b'><body>b</body></message>";
static const char MSG_C[] = "<message to='bob@example.test' id='c'><body>HOLD c</body></message>";

static void test_hold_inject_checks_and_sends(void **state)
{
    (void)state;
    t *x = start(false);
    xs_diag d;
    static const char ping[] = "<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>";
    /* Before both legs forward there is no stream to put it in. */
    assert_int_equal(xs_session_inject(x->s, XS_SERVER, ping, strlen(ping), &d), XS_ESTATE);
    forwarding(x);
    assert_int_equal(xs_session_inject(x->s, XS_SERVER, ping, strlen(ping), &d), 0);
    assert_string_equal(x->out[XS_SERVER], ping);
    assert_non_null(strstr(x->notes, "injected by the web inspector into the c2s stream"));
    assert_int_equal(xs_session_inject(x->s, XS_CLIENT, MSG_B, strlen(MSG_B), &d), 0);
    assert_string_equal(x->out[XS_CLIENT], MSG_B);
    /* Not well-formed, two elements, text, a comment: refused, nothing written. */
    static const char *const bad[] = {"<message><body>x</message>",    "<a/><b/>", "just text",
                                      "<message><!-- c --></message>", "<p:x/>",   ""};
    static const int want[] = {XS_ENOTWF,      XS_EBADFORMAT, XS_EBADFORMAT,
                               XS_ERESTRICTED, XS_ENOTWF,     XS_EBADFORMAT};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t before = x->len[XS_SERVER];
        int rc = xs_session_inject(x->s, XS_SERVER, bad[i], strlen(bad[i]), &d);
        assert_int_equal(rc, want[i]);
        assert_true(d.text[0] != 0);
        assert_int_equal(x->len[XS_SERVER], before);
    }
    /* A stanza the client is half-way through does not split: the injected one goes after it. */
    feed(x, XS_CLIENT, "<message id='half'><bo");
    assert_int_equal(xs_session_inject(x->s, XS_SERVER, ping, strlen(ping), &d), 0);
    feed(x, XS_CLIENT, "dy>x</body></message>");
    assert_non_null(strstr(x->out[XS_SERVER], "</iq><message id='half'><body>x</body></message>"));
    /* After the client closed its stream nothing goes in toward the server. */
    feed(x, XS_CLIENT, "</stream:stream>");
    assert_int_equal(xs_session_inject(x->s, XS_SERVER, ping, strlen(ping), &d), XS_ESTATE);
    finish(x);
}

static void test_hold_keeps_order_and_edits(void **state)
{
    (void)state;
    t *x = start(true);
    forwarding(x);
    feed_bytes(x, XS_CLIENT, MSG_A);
    feed_bytes(x, XS_CLIENT, MSG_B);
    /* A is held, B waits behind it: nothing reached the server. */
    assert_int_equal(x->len[XS_SERVER], 0);
    assert_int_equal(xs_session_held(x->s, XS_CLIENT), 2);
    assert_int_equal(x->n_ids, 1);
    /* The other direction is not paused. */
    feed(x, XS_SERVER, "<presence from='bob@example.test/r'/>");
    assert_string_equal(x->out[XS_CLIENT], "<presence from='bob@example.test/r'/>");
    assert_int_equal(x->server_asked, 1);
    /* An edit that is not well-formed is refused and A stays held. */
    xs_diag d;
    assert_int_equal(
        xs_session_hold_release(x->s, XS_CLIENT, x->ids[0], "<message>", 9, 0, "by the user", &d),
        XS_ENOTWF);
    assert_int_equal(xs_session_held(x->s, XS_CLIENT), 2);
    /* Unknown ids are refused. */
    assert_int_equal(xs_session_hold_release(x->s, XS_CLIENT, 99, NULL, 0, 0, "x", &d), XS_EINVAL);
    assert_int_equal(xs_session_hold_release(x->s, XS_SERVER, x->ids[0], NULL, 0, 0, "x", &d),
                     XS_EINVAL);
    static const char edited[] =
        "<message to='bob@example.test' id='a'><body>edited</body></message>";
    assert_int_equal(xs_session_hold_release(x->s, XS_CLIENT, x->ids[0], edited, strlen(edited), 0,
                                             "by the user", &d),
                     0);
    char want[512];
    snprintf(want, sizeof(want), "%s%s", edited, MSG_B);
    assert_string_equal(x->out[XS_SERVER], want);
    assert_int_equal(xs_session_held(x->s, XS_CLIENT), 0);
    assert_non_null(strstr(x->notes, "edited and forwarded by the user"));
    /* Released twice: it is gone. */
    assert_int_equal(xs_session_hold_release(x->s, XS_CLIENT, x->ids[0], NULL, 0, 0, "x", &d),
                     XS_EINVAL);
    /* Now nothing is held: stanzas flow again at once. */
    feed(x, XS_CLIENT, MSG_B);
    snprintf(want, sizeof(want), "%s%s%s", edited, MSG_B, MSG_B);
    assert_string_equal(x->out[XS_SERVER], want);
    finish(x);
}

static void test_hold_release_out_of_order_and_drop(void **state)
{
    (void)state;
    t *x = start(true);
    forwarding(x);
    feed(x, XS_CLIENT, MSG_A);
    feed(x, XS_CLIENT, MSG_B);
    feed(x, XS_CLIENT, MSG_C);
    assert_int_equal(x->n_ids, 2);
    assert_true(x->ids[0] != x->ids[1]);
    assert_int_equal(xs_session_held(x->s, XS_CLIENT), 3);
    xs_diag d;
    /* C decided first: it must wait for A. */
    assert_int_equal(
        xs_session_hold_release(x->s, XS_CLIENT, x->ids[1], NULL, 0, 0, "by the user", &d), 0);
    assert_int_equal(x->len[XS_SERVER], 0);
    /* A dropped: B and C go, in order. */
    assert_int_equal(
        xs_session_hold_release(x->s, XS_CLIENT, x->ids[0], NULL, 0, 1, "by the user", &d), 0);
    char want[512];
    snprintf(want, sizeof(want), "%s%s", MSG_B, MSG_C);
    assert_string_equal(x->out[XS_SERVER], want);
    assert_non_null(strstr(x->notes, "dropped by the user"));
    finish(x);
}

static void test_hold_stream_close_lets_everything_go(void **state)
{
    (void)state;
    t *x = start(true);
    forwarding(x);
    feed(x, XS_CLIENT, MSG_A);
    feed(x, XS_CLIENT, MSG_B);
    assert_int_equal(x->len[XS_SERVER], 0);
    feed(x, XS_CLIENT, "</stream:stream>");
    char want[512];
    snprintf(want, sizeof(want), "%s%s</stream:stream>", MSG_A, MSG_B);
    assert_string_equal(x->out[XS_SERVER], want);
    assert_non_null(strstr(x->notes, "forwarded as they were"));
    finish(x);
}

static void test_hold_freed_with_the_session(void **state)
{
    (void)state;
    /* Held stanzas are freed with the session (the sanitizer checks that nothing leaks). */
    t *x = start(true);
    forwarding(x);
    feed(x, XS_CLIENT, MSG_A);
    feed(x, XS_CLIENT, MSG_B);
    assert_int_equal(xs_session_held(x->s, XS_CLIENT), 2);
    finish(x);
}

static void test_web_history_size(void **state)
{
    (void)state;
    size_t v = 0;
    assert_int_equal(xs_web_parse_size("64M", &v), 0);
    assert_int_equal(v, (size_t)64 << 20);
    assert_int_equal(xs_web_parse_size("2g", &v), 0);
    assert_int_equal(v, (size_t)2 << 30);
    assert_int_equal(xs_web_parse_size("1048576", &v), 0);
    assert_int_equal(v, (size_t)1 << 20);
    static const char *const bad[] = {
        "", "M", "-1M", "1", "1023K", "65G", "1MB", "99999999999999G", NULL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(xs_web_parse_size(bad[i], &v), XS_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hold_inject_checks_and_sends),
        cmocka_unit_test(test_hold_keeps_order_and_edits),
        cmocka_unit_test(test_hold_release_out_of_order_and_drop),
        cmocka_unit_test(test_hold_stream_close_lets_everything_go),
        cmocka_unit_test(test_hold_freed_with_the_session),
        cmocka_unit_test(test_web_history_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
