/* Unit tests for the SOCKS5 server dialogue (proxy/socks.c): RFC 1928 without authentication,
 * RFC 1929 username/password, CONNECT by name, IPv4 and IPv6, and every refusal. Each dialogue
 * is fed the way the proxy reads it: no more bytes at a time than the machine allows, which must
 * never go past the message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "proxy/socks.h"

/* Runs the client's bytes `in` through the machine as the proxy does, collecting every reply in
 * `out`. Returns the bytes consumed: all of them unless the machine stopped (CONNECT or FAILED)
 * before the end. */
static size_t run(xs_socks *s, const uint8_t *in, size_t len, uint8_t *out, size_t *olen, char *why)
{
    uint8_t buf[XS_SOCKS_MSG_MAX];
    size_t have = 0, pos = 0, want = 2;
    *olen = 0;
    while (s->state != XS_SOCKS_CONNECT && s->state != XS_SOCKS_FAILED) {
        size_t take = want < len - pos ? want : len - pos;
        if (take == 0)
            break;
        assert_true(have + take <= sizeof(buf));
        memcpy(buf + have, in + pos, take);
        have += take;
        pos += take;
        for (;;) {
            size_t used, rlen;
            uint8_t reply[XS_SOCKS_REPLY_MAX];
            int rc = xs_socks_feed(s, buf, have, &used, &want, reply, &rlen, why, 200);
            if (rc == 0) {
                assert_true(want > 0);
                break;
            }
            memcpy(out + *olen, reply, rlen);
            *olen += rlen;
            assert_true(used <= have);
            memmove(buf, buf + used, have - used);
            have -= used;
            if (s->state == XS_SOCKS_CONNECT || s->state == XS_SOCKS_FAILED)
                break;
        }
    }
    if (s->state == XS_SOCKS_CONNECT)
        assert_int_equal(have, 0); /* nothing read past the request */
    return pos;
}

static void test_socks_no_auth_connect_by_name(void **state)
{
    (void)state;
    xs_socks s;
    xs_socks_init(&s, NULL, NULL);
    const uint8_t in[] = {5,
                          2,
                          0,
                          2,
                          /* request */ 5,
                          1,
                          0,
                          3,
                          11,
                          'x',
                          'm',
                          'p',
                          'p',
                          '.',
                          'a',
                          '.',
                          't',
                          'e',
                          's',
                          't',
                          0x14,
                          0x66,
                          /* the client's first bytes after the reply */ '<',
                          '?'};
    uint8_t out[64];
    size_t olen;
    char why[200];
    size_t used = run(&s, in, sizeof(in), out, &olen, why);
    assert_int_equal(used, sizeof(in) - 2); /* the client's bytes stay unread */
    assert_int_equal(s.state, XS_SOCKS_CONNECT);
    assert_int_equal(olen, 2);
    assert_memory_equal(out, "\x05\x00", 2);
    assert_string_equal(s.host, "xmpp.a.test");
    assert_true(s.host_is_name);
    assert_int_equal(s.port, 5222);
    assert_false(s.used_auth);
}

static void test_socks_ipv4_and_ipv6(void **state)
{
    (void)state;
    xs_socks s;
    uint8_t out[64];
    size_t olen;
    char why[200];
    xs_socks_init(&s, NULL, NULL);
    const uint8_t v4[] = {5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0x14, 0x67};
    run(&s, v4, sizeof(v4), out, &olen, why);
    assert_int_equal(s.state, XS_SOCKS_CONNECT);
    assert_string_equal(s.host, "127.0.0.1");
    assert_false(s.host_is_name);
    assert_int_equal(s.port, 5223);
    xs_socks_init(&s, NULL, NULL);
    uint8_t v6[4 + 4 + 16 + 2] = {5, 1, 0, 5, 1, 0, 4};
    inet_pton(AF_INET6, "2001:db8::7", v6 + 7);
    v6[23] = 0x14, v6[24] = 0x66;
    run(&s, v6, 25, out, &olen, why);
    assert_int_equal(s.state, XS_SOCKS_CONNECT);
    assert_string_equal(s.host, "2001:db8::7");
}

static void test_socks_username_password(void **state)
{
    (void)state;
    xs_socks s;
    uint8_t out[64];
    size_t olen;
    char why[200];
    const uint8_t good[] = {5,   2,   0,   2, 1, 3, 'b', 'o', 'b', 6, 's', 'e', 'c',
                            'r', 'e', 't', 5, 1, 0, 1,   10,  0,   0, 1,   0,   80};
    xs_socks_init(&s, "bob", "secret");
    run(&s, good, sizeof(good), out, &olen, why);
    assert_int_equal(s.state, XS_SOCKS_CONNECT);
    assert_int_equal(olen, 4);
    assert_memory_equal(out, "\x05\x02\x01\x00", 4); /* method 2, then auth ok */
    assert_true(s.used_auth);
    assert_string_equal(s.login, "bob");
    /* A wrong password, a wrong user, a longer password: refused with status 1. */
    const char *bad_pass[] = {"secreT", "secret!", "secre", ""};
    for (size_t i = 0; i < 4; i++) {
        uint8_t in[64] = {5, 1, 2, 1, 3, 'b', 'o', 'b'};
        size_t pl = strlen(bad_pass[i]);
        in[8] = (uint8_t)pl;
        memcpy(in + 9, bad_pass[i], pl);
        xs_socks_init(&s, "bob", "secret");
        run(&s, in, 9 + pl, out, &olen, why);
        assert_int_equal(s.state, XS_SOCKS_FAILED);
        assert_memory_equal(out, "\x05\x02\x01\x01", 4);
        assert_non_null(strstr(why, "wrong SOCKS user name or password"));
    }
    /* Credentials required, the client offers only "no authentication". */
    const uint8_t none[] = {5, 1, 0};
    xs_socks_init(&s, "bob", "secret");
    run(&s, none, sizeof(none), out, &olen, why);
    assert_int_equal(s.state, XS_SOCKS_FAILED);
    assert_memory_equal(out, "\x05\xff", 2);
    /* No credentials required, a client configured with some: let in, its name kept. */
    const uint8_t any[] = {5, 1, 2, 1, 1, 'x', 0, 5, 1, 0, 1, 10, 0, 0, 1, 0, 80};
    xs_socks_init(&s, NULL, NULL);
    run(&s, any, sizeof(any), out, &olen, why);
    assert_int_equal(s.state, XS_SOCKS_CONNECT);
    assert_string_equal(s.login, "x");
}

static void expect_refused(const uint8_t *in, size_t len, const char *reply, size_t rlen,
                           const char *reason)
{
    xs_socks s;
    uint8_t out[64];
    size_t olen;
    char why[200] = "";
    xs_socks_init(&s, NULL, NULL);
    run(&s, in, len, out, &olen, why);
    assert_int_equal(s.state, XS_SOCKS_FAILED);
    if (strstr(why, reason) == NULL)
        fail_msg("reason '%s' lacks '%s'", why, reason);
    /* The greeting's answer (when the greeting was good), then the refusal, which begins with
     * `reply`. */
    size_t skip = olen >= 2 && out[0] == 5 && (out[1] == 0 || out[1] == 2) ? 2 : 0;
    if (rlen == 0)
        assert_int_equal(olen, skip);
    else
        assert_true(olen >= skip + rlen);
    if (rlen > 0)
        assert_memory_equal(out + skip, reply, rlen);
}

static void test_socks_refusals(void **state)
{
    (void)state;
    static const char rep7[] = "\x05\x07\x00\x01\x00\x00\x00\x00\x00\x00";
    const uint8_t socks4[] = {4, 1, 0, 80, 127, 0, 0, 1, 0};
    expect_refused(socks4, sizeof(socks4), "", 0, "SOCKS4 is not supported");
    const uint8_t gssapi_only[] = {5, 1, 1};
    expect_refused(gssapi_only, sizeof(gssapi_only), "\x05\xff", 2, "offered neither");
    const uint8_t bind[] = {5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80};
    expect_refused(bind, sizeof(bind), rep7, 10, "only CONNECT");
    const uint8_t atyp[] = {5, 1, 0, 5, 1, 0, 9, 0, 0};
    expect_refused(atyp, sizeof(atyp), "\x05\x08\x00\x01\x00\x00\x00\x00\x00\x00", 10,
                   "unknown address type");
    const uint8_t emptyname[] = {5, 1, 0, 5, 1, 0, 3, 0, 0, 80};
    expect_refused(emptyname, sizeof(emptyname), "\x05\x04", 2, "empty domain name");
    const uint8_t nul[] = {5, 1, 0, 5, 1, 0, 3, 3, 'a', 0, 'b', 0, 80};
    expect_refused(nul, sizeof(nul), "\x05\x04", 2, "NUL byte");
    const uint8_t port0[] = {5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 0};
    expect_refused(port0, sizeof(port0), "\x05\x04", 2, "port 0");
    const uint8_t badver[] = {5, 1, 0, 4, 1, 0, 1, 127, 0, 0, 1, 0, 80};
    expect_refused(badver, sizeof(badver), "", 0, "not a SOCKS5 request");
    const uint8_t badauthver[] = {5, 1, 2, 2, 1, 'a', 1, 'b'};
    expect_refused(badauthver, sizeof(badauthver), "", 0, "RFC 1929 version");
}

static void test_socks_reply_encoding(void **state)
{
    (void)state;
    uint8_t out[XS_SOCKS_REPLY_MAX];
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(40000);
    inet_pton(AF_INET, "192.0.2.9", &s4->sin_addr);
    assert_int_equal(xs_socks_reply(out, XS_SOCKS_OK, &ss), 10);
    assert_memory_equal(out, "\x05\x00\x00\x01\xc0\x00\x02\x09\x9c\x40", 10);
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(5222);
    inet_pton(AF_INET6, "::1", &s6->sin6_addr);
    assert_int_equal(xs_socks_reply(out, XS_SOCKS_REFUSED, &ss), 22);
    assert_memory_equal(out, "\x05\x05\x00\x04", 4);
    assert_int_equal(out[19], 1);
    assert_memory_equal(out + 20, "\x14\x66", 2);
    assert_int_equal(xs_socks_reply(out, XS_SOCKS_FAILURE, NULL), 10);
    assert_memory_equal(out, "\x05\x01\x00\x01\0\0\0\0\0\0", 10);
}

static void test_socks_every_prefix_is_incomplete(void **state)
{
    (void)state;
    /* The longest messages, cut anywhere: never a result, never a want past their end. */
    uint8_t auth[513] = {1, 255};
    memset(auth + 2, 'u', 255);
    auth[257] = 255;
    memset(auth + 258, 'p', 255);
    for (size_t len = 0; len < sizeof(auth); len++) {
        xs_socks s;
        xs_socks_init(&s, "u", "p");
        s.state = XS_SOCKS_AUTH;
        size_t used, want, rlen;
        uint8_t reply[XS_SOCKS_REPLY_MAX];
        char why[200];
        assert_int_equal(xs_socks_feed(&s, auth, len, &used, &want, reply, &rlen, why, 200), 0);
        assert_true(want >= 1 && len + want <= sizeof(auth));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_socks_no_auth_connect_by_name),
        cmocka_unit_test(test_socks_ipv4_and_ipv6),
        cmocka_unit_test(test_socks_username_password),
        cmocka_unit_test(test_socks_refusals),
        cmocka_unit_test(test_socks_reply_encoding),
        cmocka_unit_test(test_socks_every_prefix_is_incomplete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
