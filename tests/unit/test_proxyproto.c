/* Unit tests for the PROXY protocol header parser (proxy/proxyproto.c). Every valid header is
 * also read the way the proxy reads a socket: no more bytes at a time than the parser allows,
 * which must never go past the header's end. */
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

#include "inspect/error.h"
#include "proxy/proxyproto.h"

static const unsigned char SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Feeds `in` (a header followed by client bytes) as the proxy reads it: first the parser's
 * first read, then what it wants. Returns the result; *used is where the header ended. */
static int read_like_the_proxy(const unsigned char *in, size_t len, size_t *used, xs_pp_info *info,
                               char *why, size_t cap)
{
    size_t have = 0, want = XS_PP_FIRST_READ;
    for (;;) {
        size_t take = want < len - have ? want : len - have;
        if (take == 0)
            return -1000; /* the input ended: the parser wanted more */
        have += take;
        size_t u;
        int rc = xs_pp_parse(in, have, &u, &want, info, why, cap);
        if (rc != 0) {
            *used = u;
            if (rc == 1)
                assert_int_equal(have, u); /* nothing after the header was read */
            return rc;
        }
        assert_true(want > 0);
    }
}

static void name_of(const struct sockaddr_storage *a, char *out)
{
    xs_pp_addr_name(a, out, 80);
}

static void test_proxyproto_v1_tcp4(void **state)
{
    (void)state;
    const char *h = "PROXY TCP4 192.0.2.1 198.51.100.7 56324 5222\r\n<stream:stream";
    size_t used;
    xs_pp_info info;
    char why[200], a[80];
    assert_int_equal(
        read_like_the_proxy((const unsigned char *)h, strlen(h), &used, &info, why, sizeof(why)),
        1);
    assert_int_equal(used, strlen(h) - strlen("<stream:stream"));
    assert_int_equal(info.version, 1);
    assert_true(info.has_addr);
    name_of(&info.src, a);
    assert_string_equal(a, "192.0.2.1:56324");
    name_of(&info.dst, a);
    assert_string_equal(a, "198.51.100.7:5222");
}

static void test_proxyproto_v1_tcp6_and_unknown(void **state)
{
    (void)state;
    const char *h = "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
    size_t used, want;
    xs_pp_info info;
    char why[200], a[80];
    assert_int_equal(
        xs_pp_parse((const unsigned char *)h, strlen(h), &used, &want, &info, why, sizeof(why)), 1);
    name_of(&info.src, a);
    assert_string_equal(a, "[2001:db8::1]:65535");
    name_of(&info.dst, a);
    assert_string_equal(a, "[::1]:0");
    const char *u = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    assert_int_equal(
        xs_pp_parse((const unsigned char *)u, strlen(u), &used, &want, &info, why, sizeof(why)), 1);
    assert_false(info.has_addr);
    assert_int_equal(xs_pp_parse((const unsigned char *)"PROXY UNKNOWN\r\n", 15, &used, &want,
                                 &info, why, sizeof(why)),
                     1);
    assert_int_equal(used, 15);
}

static void expect_bad(const char *h, const char *reason)
{
    size_t used, want;
    xs_pp_info info;
    char why[200] = "";
    int rc =
        xs_pp_parse((const unsigned char *)h, strlen(h), &used, &want, &info, why, sizeof(why));
    if (rc != XS_EPARSE)
        fail_msg("accepted (%d): %s", rc, h);
    if (strstr(why, reason) == NULL)
        fail_msg("'%s': reason '%s' lacks '%s'", h, why, reason);
}

static void test_proxyproto_v1_strict(void **state)
{
    (void)state;
    expect_bad("PROXY TCP4 192.0.2.1 198.51.100.7 56324 5222\n", "CRLF");
    expect_bad("PROXY TCP4  192.0.2.1 198.51.100.7 56324 5222\r\n", "single spaces");
    expect_bad("PROXY TCP4 192.0.2.1 198.51.100.7 56324 5222 \r\n", "single spaces");
    expect_bad("PROXY TCP4 192.0.2.1 198.51.100.7 56324\r\n", "single spaces");
    expect_bad("PROXY TCP4 192.0.2.1 198.51.100.7 56324 5222 9\r\n", "single spaces");
    expect_bad("PROXY TCP4 192.0.2.1 198.51.100.7 65536 5222\r\n", "port");
    expect_bad("PROXY TCP4 192.0.2.1 198.51.100.7 05222 5222\r\n", "port");
    expect_bad("PROXY TCP4 192.0.2.1 198.51.100.7 -1 5222\r\n", "port");
    expect_bad("PROXY TCP4 2001:db8::1 198.51.100.7 1 2\r\n", "family");
    expect_bad("PROXY TCP6 192.0.2.1 ::1 1 2\r\n", "family");
    expect_bad("PROXY TCP4 192.0.2.256 198.51.100.7 1 2\r\n", "address");
    expect_bad("PROXY UDP4 192.0.2.1 198.51.100.7 1 2\r\n", "TCP4, TCP6 or UNKNOWN");
    expect_bad("PROXY \r\n", "no protocol");
    expect_bad("PROXY TCP4 192.0.2.1\r198.51.100.7 1 2\r\n", "CR not followed by LF");
    expect_bad("PROXY TCP4 192.0.2.1 198.51.100.7 1 \x01\r\n", "printable");
    expect_bad("proxy TCP4 192.0.2.1 198.51.100.7 1 2\r\n", "no PROXY protocol header");
    expect_bad("<stream:stream to='example.test'>", "no PROXY protocol header");
    expect_bad("\x16\x03\x01\x02\x00\x01", "no PROXY protocol header");
    /* 107 bytes without a line end: refused, never read further. */
    char longline[200];
    memset(longline, 'x', sizeof(longline));
    memcpy(longline, "PROXY UNKNOWN ", 14);
    longline[107] = 0;
    expect_bad(longline, "107");
    /* A line end that comes only after 107 bytes, all of them at once (found by
     * fuzz_proxyproto): refused too. */
    memset(longline + 14, ' ', 120);
    memcpy(longline + 134, "\r\n", 3);
    expect_bad(longline, "107");
    longline[106] = 0;
    size_t used, want;
    xs_pp_info info;
    char why[200];
    assert_int_equal(
        xs_pp_parse((unsigned char *)longline, 106, &used, &want, &info, why, sizeof(why)), 0);
    assert_int_equal(want, 1);
}

/* A v2 header: 16 bytes, then `body` of `blen` bytes. */
static size_t v2(unsigned char *out, unsigned char vercmd, unsigned char fam,
                 const unsigned char *body, size_t blen)
{
    memcpy(out, SIG, 12);
    out[12] = vercmd;
    out[13] = fam;
    out[14] = (unsigned char)(blen >> 8);
    out[15] = (unsigned char)blen;
    if (blen > 0)
        memcpy(out + 16, body, blen);
    return 16 + blen;
}

static void test_proxyproto_v2_tcp4_with_tlvs(void **state)
{
    (void)state;
    unsigned char body[12 + 3 + 5 + 3] = {192,
                                          0,
                                          2,
                                          1,
                                          198,
                                          51,
                                          100,
                                          7,
                                          0xDC,
                                          0x04,
                                          0x14,
                                          0x66,
                                          /* TLV ALPN "xmpp" */ 0x01,
                                          0x00,
                                          0x05,
                                          'x',
                                          'm',
                                          'p',
                                          'p',
                                          '!',
                                          /* an empty NOOP TLV */ 0x04,
                                          0x00,
                                          0x00};
    unsigned char in[200];
    size_t n = v2(in, 0x21, 0x11, body, sizeof(body));
    memcpy(in + n, "\x16\x03\x01", 3); /* the client's TLS record follows */
    size_t used;
    xs_pp_info info;
    char why[200], a[80];
    assert_int_equal(read_like_the_proxy(in, n + 3, &used, &info, why, sizeof(why)), 1);
    assert_int_equal(used, n);
    assert_int_equal(info.version, 2);
    assert_true(info.has_addr);
    name_of(&info.src, a);
    assert_string_equal(a, "192.0.2.1:56324");
    name_of(&info.dst, a);
    assert_string_equal(a, "198.51.100.7:5222");
}

static void test_proxyproto_v2_tcp6_local_and_unix(void **state)
{
    (void)state;
    unsigned char body[216];
    memset(body, 0, sizeof(body));
    inet_pton(AF_INET6, "2001:db8::5", body);
    inet_pton(AF_INET6, "::1", body + 16);
    body[32] = 0x30, body[33] = 0x39; /* 12345 */
    body[34] = 0x14, body[35] = 0x66; /* 5222 */
    unsigned char in[300];
    size_t n = v2(in, 0x21, 0x21, body, 36), used, want;
    xs_pp_info info;
    char why[200], a[80];
    assert_int_equal(xs_pp_parse(in, n, &used, &want, &info, why, sizeof(why)), 1);
    name_of(&info.src, a);
    assert_string_equal(a, "[2001:db8::5]:12345");
    /* LOCAL: the sender's own health check; no address even with a TCP family. */
    n = v2(in, 0x20, 0x11, body, 12);
    assert_int_equal(xs_pp_parse(in, n, &used, &want, &info, why, sizeof(why)), 1);
    assert_false(info.has_addr);
    n = v2(in, 0x20, 0x00, NULL, 0);
    assert_int_equal(xs_pp_parse(in, n, &used, &want, &info, why, sizeof(why)), 1);
    assert_int_equal(used, 16);
    /* UNIX stream: accepted, no client address. */
    n = v2(in, 0x21, 0x31, body, 216);
    assert_int_equal(xs_pp_parse(in, n, &used, &want, &info, why, sizeof(why)), 1);
    assert_false(info.has_addr);
}

static void expect_bad_v2(const unsigned char *in, size_t n, const char *reason)
{
    size_t used, want;
    xs_pp_info info;
    char why[200] = "";
    int rc = xs_pp_parse(in, n, &used, &want, &info, why, sizeof(why));
    if (rc != XS_EPARSE)
        fail_msg("accepted (%d, want %zu), expected '%s'", rc, want, reason);
    if (strstr(why, reason) == NULL)
        fail_msg("reason '%s' lacks '%s'", why, reason);
}

static void test_proxyproto_v2_strict(void **state)
{
    (void)state;
    unsigned char body[1100];
    memset(body, 0, sizeof(body));
    unsigned char in[1200];
    expect_bad_v2(in, v2(in, 0x11, 0x11, body, 12), "version must be 2");
    expect_bad_v2(in, v2(in, 0x22, 0x11, body, 12), "LOCAL or PROXY");
    expect_bad_v2(in, v2(in, 0x21, 0x13, body, 12), "unknown address family");
    expect_bad_v2(in, v2(in, 0x21, 0x41, body, 12), "unknown address family");
    expect_bad_v2(in, v2(in, 0x21, 0x11, body, 11), "shorter than the addresses");
    expect_bad_v2(in, v2(in, 0x21, 0x21, body, 35), "shorter than the addresses");
    expect_bad_v2(in, v2(in, 0x21, 0x11, body, 1025), "longer than 1024");
    /* TLVs: one truncated, one longer than what is left. */
    unsigned char t[16] = {0};
    t[12] = 0x01, t[13] = 0x00;
    expect_bad_v2(in, v2(in, 0x21, 0x11, t, 14), "truncated TLV");
    t[13] = 0x00, t[14] = 0x09;
    expect_bad_v2(in, v2(in, 0x21, 0x11, t, 16), "TLV longer");
    /* A wrong signature byte anywhere. */
    for (size_t i = 0; i < 12; i++) {
        size_t n = v2(in, 0x21, 0x11, body, 12);
        in[i] ^= 0x40;
        expect_bad_v2(in, n, "no PROXY protocol header");
    }
}

static void test_proxyproto_v2_never_reads_past_the_end(void **state)
{
    (void)state;
    unsigned char body[1024];
    memset(body, 7, sizeof(body));
    /* After the addresses, one TLV fills the rest: type 0x04 (NOOP), length 1024 - 12 - 3. */
    body[12] = 0x04;
    body[13] = (unsigned char)((1024 - 15) >> 8);
    body[14] = (unsigned char)(1024 - 15);
    unsigned char in[1100];
    size_t n = v2(in, 0x21, 0x11, body, 1024);
    memset(in + n, 'z', 20);
    size_t used;
    xs_pp_info info;
    char why[200];
    assert_int_equal(read_like_the_proxy(in, n + 20, &used, &info, why, sizeof(why)), 1);
    assert_int_equal(used, n);
    /* Every prefix is either incomplete (wanting no more than what is left) or refused. */
    for (size_t len = 1; len < n; len++) {
        size_t u, want;
        int rc = xs_pp_parse(in, len, &u, &want, &info, why, sizeof(why));
        assert_int_equal(rc, 0);
        assert_true(want >= 1 && want <= n - len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proxyproto_v1_tcp4),
        cmocka_unit_test(test_proxyproto_v1_tcp6_and_unknown),
        cmocka_unit_test(test_proxyproto_v1_strict),
        cmocka_unit_test(test_proxyproto_v2_tcp4_with_tlvs),
        cmocka_unit_test(test_proxyproto_v2_tcp6_local_and_unix),
        cmocka_unit_test(test_proxyproto_v2_strict),
        cmocka_unit_test(test_proxyproto_v2_never_reads_past_the_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
