/* Unit tests of the TLS engine (proxy/tls.c): two engines back to back in memory, the proxy's
 * client-facing side (server role) against its server-facing side (client role), with a pump
 * moving ciphertext between them. No sockets.
 *
 * The group setup makes two CAs under $XS_TEST_TMP (or /tmp): `ca`, which the clients trust, and
 * `other`, which they do not, plus a fixed certificate and key for example.test in PEM files. */
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "inspect/error.h"
#include "proxy/ca.h"
#include "proxy/tls.h"

struct env {
    char dir[512];
    xs_ca *ca;
    xs_ca *other;
    char leaf_cert[600];
    char leaf_key[600];
};

static struct env env;

/* What the last xs_tls_*_ctx_new() of a test said. */
static xs_diag ctx_diag;
/* What the last xs_ca_*() call of a test said. */
static xs_diag diag;

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

static int write_fixed_pair(void)
{
    X509 *leaf = NULL;
    FILE *fp;
    int ok;

    if (xs_ca_forge(env.ca, "example.test", &leaf, &diag) != 0)
        return -1;
    snprintf(env.leaf_cert, sizeof(env.leaf_cert), "%s/leaf.crt", env.dir);
    snprintf(env.leaf_key, sizeof(env.leaf_key), "%s/leaf.key", env.dir);
    fp = fopen(env.leaf_cert, "w");
    ok = fp != NULL && PEM_write_X509(fp, leaf) == 1;
    if (fp != NULL)
        fclose(fp);
    X509_free(leaf);
    if (!ok)
        return -1;
    fp = fopen(env.leaf_key, "w");
    ok = fp != NULL &&
         PEM_write_PrivateKey(fp, xs_ca_leaf_key(env.ca), NULL, NULL, 0, NULL, NULL) == 1;
    if (fp != NULL)
        fclose(fp);
    return ok ? 0 : -1;
}

static int group_setup(void **state)
{
    const char *base = getenv("XS_TEST_TMP");
    char path[600];
    (void)state;

    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    mkdir(base, 0700);
    snprintf(env.dir, sizeof(env.dir), "%s/test_tls.XXXXXX", base);
    if (mkdtemp(env.dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/ca", env.dir);
    if (xs_ca_open(path, 1, &env.ca, &diag) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/other", env.dir);
    if (xs_ca_open(path, 1, &env.other, &diag) != 0)
        return -1;
    return write_fixed_pair();
}

static int group_teardown(void **state)
{
    (void)state;
    xs_ca_free(env.ca);
    xs_ca_free(env.other);
    nftw(env.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* Contexts: a server forging with `ca` (or the fixed pair), a client trusting `ca_file`. */
static xs_tls_ctx *server_ctx(xs_ca *ca, int max_version)
{
    xs_tls_server_opts o = {.max_version = max_version};
    xs_tls_ctx *ctx = NULL;
    if (ca != NULL) {
        o.ca = ca;
    } else {
        o.cert_file = env.leaf_cert;
        o.key_file = env.leaf_key;
    }
    assert_int_equal(xs_tls_server_ctx_new(&o, &ctx, &ctx_diag), 0);
    return ctx;
}

static xs_tls_ctx *client_ctx(const char *ca_file, int insecure, int alpn, int max_version)
{
    xs_tls_client_opts o = {
        .ca_file = ca_file, .insecure = insecure, .alpn = alpn, .max_version = max_version};
    xs_tls_ctx *ctx = NULL;
    int rc = xs_tls_client_ctx_new(&o, &ctx, &ctx_diag);
    if (rc != 0)
        fail_msg("client ctx: %s", ctx_diag.text);
    return ctx;
}

/* Moves all waiting ciphertext from `from` to `to` in pieces of at most `piece` bytes, and
 * returns how much moved. A receiver that has failed may refuse it. */
static size_t move_pieces(xs_tls *from, xs_tls *to, size_t piece)
{
    unsigned char buf[8192];
    size_t got, total = 0;

    assert_true(piece <= sizeof(buf));
    for (;;) {
        assert_int_equal(xs_tls_take_cipher(from, buf, piece, &got), 0);
        if (got == 0)
            break;
        int rc = xs_tls_feed_cipher(to, buf, got);
        if (rc != 0)
            assert_int_equal(rc, XS_ETLS);
        total += got;
    }
    assert_int_equal(xs_tls_cipher_pending(from), 0);
    return total;
}

static size_t move(xs_tls *from, xs_tls *to)
{
    return move_pieces(from, to, 8192);
}

/* Runs the handshake until nothing moves; returns each side's result. */
static void handshake(xs_tls *c, xs_tls *s, int *rc_c, int *rc_s)
{
    *rc_c = xs_tls_handshake(c);
    *rc_s = 0;
    for (int i = 0; i < 32; i++) {
        size_t moved = move(c, s);
        if (*rc_s == 0)
            *rc_s = xs_tls_handshake(s);
        moved += move(s, c);
        if (*rc_c == 0)
            *rc_c = xs_tls_handshake(c);
        if (moved == 0)
            break;
    }
}

static void handshake_ok(xs_tls *c, xs_tls *s)
{
    int rc_c, rc_s;
    handshake(c, s, &rc_c, &rc_s);
    if (rc_c != 0 || rc_s != 0)
        fail_msg("handshake: client %d (%s), server %d (%s)", rc_c, xs_tls_last_error(c), rc_s,
                 xs_tls_last_error(s));
    assert_true(xs_tls_established(c));
    assert_true(xs_tls_established(s));
}

/* Reads everything `t` can decrypt now into buf; returns the byte count. */
static size_t read_all(xs_tls *t, unsigned char *buf, size_t cap, size_t piece)
{
    size_t total = 0, got;
    do {
        size_t want = cap - total < piece ? cap - total : piece;
        assert_int_equal(xs_tls_read_plain(t, buf + total, want, &got), 0);
        total += got;
    } while (got > 0 && total < cap);
    return total;
}

/* Sends `len` bytes from `from` to `to` and checks they arrive unchanged. */
static void send_and_check(xs_tls *from, xs_tls *to, const char *text)
{
    unsigned char buf[4096];
    size_t len = strlen(text);
    assert_int_equal(xs_tls_write_plain(from, text, len), 0);
    move(from, to);
    assert_int_equal(read_all(to, buf, sizeof(buf), sizeof(buf)), len);
    assert_memory_equal(buf, text, len);
}

struct pair {
    xs_tls_ctx *cctx, *sctx;
    xs_tls *c, *s;
};

static void pair_new(struct pair *p, xs_tls_ctx *cctx, xs_tls_ctx *sctx, const char *name)
{
    p->cctx = cctx;
    p->sctx = sctx;
    assert_int_equal(xs_tls_new(cctx, name, &p->c), 0);
    assert_int_equal(xs_tls_new(sctx, NULL, &p->s), 0);
}

static void pair_free(struct pair *p)
{
    xs_tls_free(p->c);
    xs_tls_free(p->s);
    xs_tls_ctx_free(p->cctx);
    xs_tls_ctx_free(p->sctx);
}

static void test_tls_handshake_tls13(void **state)
{
    struct pair p;
    xs_tls_info ci, si;
    (void)state;

    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0), server_ctx(env.ca, 0),
             "example.test");
    handshake_ok(p.c, p.s);
    xs_tls_get_info(p.c, &ci);
    xs_tls_get_info(p.s, &si);
    assert_string_equal(ci.version, "TLSv1.3");
    assert_string_equal(si.version, "TLSv1.3");
    assert_string_equal(ci.cipher, si.cipher);
    assert_string_equal(ci.verify, "ok");
    assert_string_equal(ci.sni, "example.test");
    assert_non_null(strstr(ci.peer_subject, "CN=example.test"));
    assert_string_equal(si.sni, "example.test");
    assert_string_equal(si.cert_name, "example.test");
    assert_null(ci.alpn);
    assert_null(si.alpn);
    assert_int_equal(ci.resumed, 0);
    assert_string_equal(xs_tls_last_error(p.c), "");
    send_and_check(p.c, p.s, "<stream:stream to='example.test'>");
    send_and_check(p.s, p.c, "<stream:stream from='example.test'>");
    pair_free(&p);
}

static void test_tls_handshake_tls12(void **state)
{
    struct pair p;
    xs_tls_info ci, si;
    (void)state;

    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0), server_ctx(env.ca, XS_TLS_1_2),
             "example.test");
    handshake_ok(p.c, p.s);
    xs_tls_get_info(p.c, &ci);
    xs_tls_get_info(p.s, &si);
    assert_string_equal(ci.version, "TLSv1.2");
    assert_string_equal(si.version, "TLSv1.2");
    assert_string_equal(ci.verify, "ok");
    assert_string_equal(si.sni, "example.test");
    send_and_check(p.c, p.s, "<presence/>");
    send_and_check(p.s, p.c, "<presence/>");
    pair_free(&p);
}

static void test_tls_fixed_certificate(void **state)
{
    struct pair p;
    xs_tls_info ci;
    (void)state;

    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0), server_ctx(NULL, 0), "example.test");
    handshake_ok(p.c, p.s);
    xs_tls_get_info(p.c, &ci);
    assert_string_equal(ci.verify, "ok");
    pair_free(&p);
}

static void expect_verify_failure(struct pair *p, const char *reason)
{
    int rc_c, rc_s;
    handshake(p->c, p->s, &rc_c, &rc_s);
    assert_int_equal(rc_c, XS_ETLS);
    assert_false(xs_tls_established(p->c));
    assert_non_null(strstr(xs_tls_last_error(p->c), "certificate verify failed"));
    assert_non_null(strstr(xs_tls_last_error(p->c), reason));
    /* The client's alert makes the server fail too. */
    assert_int_equal(rc_s, XS_ETLS);
    assert_true(strlen(xs_tls_last_error(p->s)) > 0);
    /* Failures are sticky. */
    assert_int_equal(xs_tls_handshake(p->c), XS_ETLS);
    assert_int_equal(xs_tls_write_plain(p->c, "x", 1), XS_ETLS);
}

static void test_tls_verify_fails_for_other_hostname(void **state)
{
    struct pair p;
    (void)state;

    /* The server's certificate is fixed for example.test; the client wants other.test. */
    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0), server_ctx(NULL, 0), "other.test");
    expect_verify_failure(&p, "hostname mismatch");
    pair_free(&p);
}

static void test_tls_verify_fails_for_untrusted_ca(void **state)
{
    struct pair p;
    (void)state;

    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0), server_ctx(env.other, 0),
             "example.test");
    expect_verify_failure(&p, "unable to get local issuer certificate");
    pair_free(&p);

    /* Nor does the system store know our CA. */
    pair_new(&p, client_ctx(NULL, 0, 0, 0), server_ctx(env.ca, 0), "example.test");
    expect_verify_failure(&p, "unable to get local issuer certificate");
    pair_free(&p);
}

static void test_tls_insecure_reports_problem(void **state)
{
    struct pair p;
    xs_tls_info ci;
    (void)state;

    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 1, 0, 0), server_ctx(env.other, 0),
             "example.test");
    handshake_ok(p.c, p.s);
    xs_tls_get_info(p.c, &ci);
    assert_non_null(ci.verify);
    assert_memory_equal(ci.verify, "insecure: ", 10);
    pair_free(&p);

    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 1, 0, 0), server_ctx(NULL, 0), "other.test");
    handshake_ok(p.c, p.s);
    xs_tls_get_info(p.c, &ci);
    assert_string_equal(ci.verify, "insecure: hostname mismatch");
    pair_free(&p);
}

static void test_tls_no_sni_gets_default_name(void **state)
{
    struct pair p;
    xs_tls_info ci, si;
    (void)state;

    /* An insecure client without a name sends no SNI. */
    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 1, 0, 0), server_ctx(env.ca, 0), NULL);
    assert_int_equal(xs_tls_set_default_name(p.s, "example.test"), 0);
    handshake_ok(p.c, p.s);
    xs_tls_get_info(p.c, &ci);
    xs_tls_get_info(p.s, &si);
    assert_null(ci.sni);
    assert_null(si.sni);
    assert_string_equal(si.cert_name, "example.test");
    assert_non_null(strstr(ci.peer_subject, "CN=example.test"));
    assert_string_equal(ci.verify, "ok"); /* the chain is good; no name was asked for */
    pair_free(&p);

    /* A client connecting to an IP literal sends no SNI either, and verifies the address. The
     * server's default name comes through xs_tls_new() this time. */
    xs_tls_ctx *cctx = client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0);
    xs_tls_ctx *sctx = server_ctx(env.ca, 0);
    p.cctx = cctx;
    p.sctx = sctx;
    assert_int_equal(xs_tls_new(cctx, "127.0.0.1", &p.c), 0);
    assert_int_equal(xs_tls_new(sctx, "127.0.0.1", &p.s), 0);
    handshake_ok(p.c, p.s);
    xs_tls_get_info(p.c, &ci);
    xs_tls_get_info(p.s, &si);
    assert_null(si.sni);
    assert_string_equal(si.cert_name, "127.0.0.1");
    assert_string_equal(ci.verify, "ok");
    pair_free(&p);
}

/* A client that dialled an address sends no SNI and verifies that address; the forged
 * certificate for the default name carries it because the server leg was told the address the
 * client connected to. Without it the same client refuses the certificate. */
static void test_tls_local_ip_is_in_forged_certificate(void **state)
{
    struct pair p;
    xs_tls_info ci;
    int rc_c, rc_s;
    (void)state;

    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0), server_ctx(env.ca, 0), "127.0.0.1");
    assert_int_equal(xs_tls_set_default_name(p.s, "example.test"), 0);
    assert_int_equal(xs_tls_set_local_ip(p.s, "127.0.0.1"), 0);
    handshake_ok(p.c, p.s);
    xs_tls_get_info(p.c, &ci);
    assert_string_equal(ci.verify, "ok");
    assert_int_equal(xs_tls_set_local_ip(p.s, "127.0.0.1"), XS_EINVAL); /* too late */
    assert_int_equal(xs_tls_set_local_ip(p.c, "127.0.0.1"), XS_EINVAL); /* client role */
    pair_free(&p);

    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0), server_ctx(env.ca, 0), "127.0.0.1");
    assert_int_equal(xs_tls_set_default_name(p.s, "example.test"), 0);
    assert_int_equal(xs_tls_set_local_ip(p.s, "example.test"), XS_EINVAL);
    handshake(p.c, p.s, &rc_c, &rc_s);
    assert_int_equal(rc_c, XS_ETLS);
    pair_free(&p);
}

static void test_tls_no_name_at_all_fails(void **state)
{
    struct pair p;
    int rc_c, rc_s;
    (void)state;

    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 1, 0, 0), server_ctx(env.ca, 0), NULL);
    handshake(p.c, p.s, &rc_c, &rc_s);
    assert_int_equal(rc_s, XS_ETLS);
    assert_non_null(strstr(xs_tls_last_error(p.s), "no server name (SNI)"));
    assert_non_null(strstr(xs_tls_last_error(p.s), "pass --server-name NAME"));
    assert_int_equal(rc_c, XS_ETLS);
    pair_free(&p);
}

/* Deterministic test data. */
static void fill(unsigned char *buf, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = (unsigned char)(seed >> 16);
    }
}

/* Sends `len` bytes from `from` to `to` in writes of `wpiece`, ciphertext in pieces of `cpiece`
 * (small TCP segments), reads of `rpiece`; checks every byte. */
static void stream_and_check(xs_tls *from, xs_tls *to, size_t len, size_t wpiece, size_t cpiece,
                             size_t rpiece, uint32_t seed)
{
    unsigned char *sent = malloc(len);
    unsigned char *recv = malloc(len);
    size_t off = 0, got_total = 0;

    assert_non_null(sent);
    assert_non_null(recv);
    fill(sent, len, seed);
    while (off < len || xs_tls_cipher_pending(from) > 0) {
        if (off < len) {
            size_t n = len - off < wpiece ? len - off : wpiece;
            assert_int_equal(xs_tls_write_plain(from, sent + off, n), 0);
            off += n;
        }
        /* Move one segment at a time and read after each, as the proxy does per uv read. */
        unsigned char seg[8192];
        size_t got;
        for (;;) {
            assert_int_equal(xs_tls_take_cipher(from, seg, cpiece, &got), 0);
            if (got == 0)
                break;
            assert_int_equal(xs_tls_feed_cipher(to, seg, got), 0);
            got_total += read_all(to, recv + got_total, len - got_total, rpiece);
        }
    }
    assert_int_equal(got_total, len);
    assert_memory_equal(sent, recv, len);
    free(sent);
    free(recv);
}

static void test_tls_data_both_ways_1mib(void **state)
{
    struct pair p;
    (void)state;

    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0), server_ctx(env.ca, 0),
             "example.test");
    handshake_ok(p.c, p.s);
    stream_and_check(p.c, p.s, 1024 * 1024, 1000, 1460, 777, 1);
    stream_and_check(p.s, p.c, 1024 * 1024, 4093, 536, 2048, 2);
    stream_and_check(p.c, p.s, 100, 1, 1, 1, 3); /* byte by byte */
    pair_free(&p);
}

/* A burst grows the memory buffers well past what an idle connection keeps; once idle they are
 * given back (xs_tls_trim), and the connection must carry on as if nothing happened. */
static void test_tls_burst_then_idle(void **state)
{
    struct pair p;
    const size_t len = 300 * 1024;
    unsigned char *sent = malloc(len), *cipher = malloc(2 * len), *recv = malloc(len);
    size_t clen = 0, got;
    (void)state;

    assert_true(sent != NULL && cipher != NULL && recv != NULL);
    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0), server_ctx(env.ca, 0),
             "example.test");
    handshake_ok(p.c, p.s);
    for (int round = 0; round < 3; round++) {
        fill(sent, len, (uint32_t)round);
        assert_int_equal(xs_tls_write_plain(p.c, sent, len), 0);
        clen = 0;
        do {
            assert_int_equal(xs_tls_take_cipher(p.c, cipher + clen, 2 * len - clen, &got), 0);
            clen += got;
        } while (got > 0);
        assert_true(clen > len);
        assert_int_equal(xs_tls_feed_cipher(p.s, cipher, clen), 0);
        assert_int_equal(read_all(p.s, recv, len, 16384), len);
        assert_memory_equal(sent, recv, len);
        send_and_check(p.c, p.s, "<r/>");
        send_and_check(p.s, p.c, "<a h='1'/>");
        /* Idle now: both ends give back their buffers, and carry on. */
        assert_int_equal(xs_tls_trim(p.c), 1);
        assert_int_equal(xs_tls_trim(p.s), 1);
        send_and_check(p.c, p.s, "<after-trim/>");
    }
    free(sent);
    free(cipher);
    free(recv);
    pair_free(&p);
}

static void test_tls_write_before_established_is_delivered(void **state)
{
    struct pair p;
    unsigned char buf[256];
    static const char hello[] = "<?xml version='1.0'?><stream:stream to='example.test'>";
    (void)state;

    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0), server_ctx(env.ca, 0),
             "example.test");
    assert_int_equal(xs_tls_write_plain(p.c, hello, 20), 0);
    assert_int_equal(xs_tls_write_plain(p.c, hello + 20, sizeof(hello) - 1 - 20), 0);
    assert_int_equal(xs_tls_write_plain(p.s, "early", 5), 0);
    handshake_ok(p.c, p.s);
    move(p.c, p.s);
    move(p.s, p.c);
    assert_int_equal(read_all(p.s, buf, sizeof(buf), sizeof(buf)), sizeof(hello) - 1);
    assert_memory_equal(buf, hello, sizeof(hello) - 1);
    assert_int_equal(read_all(p.c, buf, sizeof(buf), sizeof(buf)), 5);
    assert_memory_equal(buf, "early", 5);

    /* The amount held is bounded. */
    xs_tls *t = NULL;
    unsigned char *big = calloc(1, XS_TLS_MAX_EARLY_PLAIN + 1);
    assert_non_null(big);
    assert_int_equal(xs_tls_new(p.cctx, "example.test", &t), 0);
    assert_int_equal(xs_tls_write_plain(t, big, XS_TLS_MAX_EARLY_PLAIN), 0);
    assert_int_equal(xs_tls_write_plain(t, big, 1), XS_ETOOBIG);
    free(big);
    xs_tls_free(t);
    pair_free(&p);
}

static void test_tls_close_notify_gives_eclosed(void **state)
{
    struct pair p;
    unsigned char buf[64];
    size_t got = 1;
    (void)state;

    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0), server_ctx(env.ca, 0),
             "example.test");
    handshake_ok(p.c, p.s);
    send_and_check(p.c, p.s, "<message/>");
    assert_int_equal(xs_tls_write_plain(p.c, "</stream:stream>", 16), 0);
    assert_int_equal(xs_tls_shutdown(p.c), 0);
    assert_int_equal(xs_tls_shutdown(p.c), 0); /* once is enough */
    assert_int_equal(xs_tls_write_plain(p.c, "x", 1), XS_ECLOSED);
    assert_true(move(p.c, p.s) > 0);
    /* Data sent before close_notify comes first. */
    assert_int_equal(xs_tls_read_plain(p.s, buf, sizeof(buf), &got), 0);
    assert_int_equal(got, 16);
    assert_int_equal(xs_tls_read_plain(p.s, buf, sizeof(buf), &got), XS_ECLOSED);
    assert_int_equal(got, 0);
    assert_int_equal(xs_tls_read_plain(p.s, buf, sizeof(buf), &got), XS_ECLOSED);

    /* The other direction stays open until the server closes it too. */
    send_and_check(p.s, p.c, "</stream:stream>");
    assert_int_equal(xs_tls_shutdown(p.s), 0);
    move(p.s, p.c);
    assert_int_equal(xs_tls_read_plain(p.c, buf, sizeof(buf), &got), XS_ECLOSED);
    pair_free(&p);
}

static void test_tls_shutdown_before_handshake(void **state)
{
    struct pair p;
    unsigned char buf[16];
    size_t got;
    (void)state;

    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0), server_ctx(env.ca, 0),
             "example.test");
    assert_int_equal(xs_tls_shutdown(p.c), 0);
    assert_int_equal(xs_tls_cipher_pending(p.c), 0);
    assert_int_equal(xs_tls_handshake(p.c), XS_ECLOSED);
    assert_int_equal(xs_tls_read_plain(p.c, buf, sizeof(buf), &got), XS_ECLOSED);
    assert_int_equal(xs_tls_write_plain(p.c, "x", 1), XS_ECLOSED);
    pair_free(&p);
}

static void expect_garbage_refused(const void *garbage, size_t len)
{
    xs_tls_ctx *sctx = server_ctx(env.ca, 0);
    xs_tls *s = NULL;
    unsigned char buf[256];
    size_t got = 1;

    assert_int_equal(xs_tls_new(sctx, "example.test", &s), 0);
    assert_int_equal(xs_tls_feed_cipher(s, garbage, len), 0);
    assert_int_equal(xs_tls_read_plain(s, buf, sizeof(buf), &got), XS_ETLS);
    assert_int_equal(got, 0);
    assert_non_null(strstr(xs_tls_last_error(s), "TLS handshake failed: "));
    assert_true(strlen(xs_tls_last_error(s)) > strlen("TLS handshake failed: "));
    assert_null(strchr(xs_tls_last_error(s), '\n'));
    /* Sticky, and no crash on anything that follows. */
    assert_int_equal(xs_tls_read_plain(s, buf, sizeof(buf), &got), XS_ETLS);
    assert_int_equal(xs_tls_feed_cipher(s, garbage, len), XS_ETLS);
    assert_int_equal(xs_tls_handshake(s), XS_ETLS);
    while (xs_tls_cipher_pending(s) > 0) /* maybe an alert */
        assert_int_equal(xs_tls_take_cipher(s, buf, sizeof(buf), &got), 0);
    xs_tls_free(s);
    xs_tls_ctx_free(sctx);
}

static void test_tls_garbage_clienthello_fails(void **state)
{
    static const char http[] = "GET / HTTP/1.1\r\nHost: example.test\r\n\r\n";
    static const char xml[] = "<?xml version='1.0'?><stream:stream to='example.test'>";
    unsigned char noise[600];
    /* A handshake record header announcing a ClientHello, then nonsense. */
    unsigned char bad_hello[64] = {0x16, 0x03, 0x01, 0x00, 0x3b, 0x01, 0x00, 0x00, 0x37, 0x03};
    (void)state;

    expect_garbage_refused(http, sizeof(http) - 1);
    expect_garbage_refused(xml, sizeof(xml) - 1);
    fill(noise, sizeof(noise), 42);
    expect_garbage_refused(noise, sizeof(noise));
    fill(bad_hello + 10, sizeof(bad_hello) - 10, 7);
    expect_garbage_refused(bad_hello, sizeof(bad_hello));
}

static void test_tls_corrupt_record_fails(void **state)
{
    struct pair p;
    unsigned char buf[256];
    size_t got;
    (void)state;

    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0), server_ctx(env.ca, 0),
             "example.test");
    handshake_ok(p.c, p.s);
    assert_int_equal(xs_tls_write_plain(p.c, "<iq type='get'/>", 16), 0);
    assert_int_equal(xs_tls_take_cipher(p.c, buf, sizeof(buf), &got), 0);
    assert_true(got > 20);
    buf[got - 3] ^= 0x01; /* in the authentication tag */
    assert_int_equal(xs_tls_feed_cipher(p.s, buf, got), 0);
    assert_int_equal(xs_tls_read_plain(p.s, buf, sizeof(buf), &got), XS_ETLS);
    assert_non_null(strstr(xs_tls_last_error(p.s), "TLS read failed: "));
    pair_free(&p);
}

struct keylog {
    char text[8192];
    int lines;
};

static void keylog_cb(void *user, const char *line)
{
    struct keylog *k = user;
    size_t len = strlen(k->text);
    assert_null(strchr(line, '\n'));
    snprintf(k->text + len, sizeof(k->text) - len, "%s\n", line);
    k->lines++;
}

static void test_tls_keylog_tls13(void **state)
{
    struct pair p;
    struct keylog k = {.lines = 0};
    (void)state;

    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0), server_ctx(env.ca, 0),
             "example.test");
    xs_tls_free(p.c);
    xs_tls_ctx_set_keylog(p.cctx, keylog_cb, &k);
    assert_int_equal(xs_tls_new(p.cctx, "example.test", &p.c), 0);
    handshake_ok(p.c, p.s);
    assert_non_null(strstr(k.text, "CLIENT_HANDSHAKE_TRAFFIC_SECRET "));
    assert_non_null(strstr(k.text, "SERVER_HANDSHAKE_TRAFFIC_SECRET "));
    assert_non_null(strstr(k.text, "CLIENT_TRAFFIC_SECRET_0 "));
    assert_non_null(strstr(k.text, "SERVER_TRAFFIC_SECRET_0 "));
    assert_null(strstr(k.text, "CLIENT_RANDOM "));
    /* LABEL <64 hex digits of client random> <secret> */
    const char *r = strchr(k.text, ' ');
    assert_non_null(r);
    assert_int_equal(strspn(r + 1, "0123456789abcdef"), 64);
    assert_int_equal(r[65], ' ');

    /* Turned off, nothing more comes. */
    int before = k.lines;
    xs_tls_ctx_set_keylog(p.cctx, NULL, NULL);
    xs_tls *c2 = NULL, *s2 = NULL;
    assert_int_equal(xs_tls_new(p.cctx, "example.test", &c2), 0);
    assert_int_equal(xs_tls_new(p.sctx, NULL, &s2), 0);
    handshake_ok(c2, s2);
    assert_int_equal(k.lines, before);
    xs_tls_free(c2);
    xs_tls_free(s2);
    pair_free(&p);
}

static void test_tls_keylog_tls12(void **state)
{
    struct pair p;
    struct keylog k = {.lines = 0};
    (void)state;

    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0), server_ctx(env.ca, XS_TLS_1_2),
             "example.test");
    xs_tls_free(p.s);
    xs_tls_ctx_set_keylog(p.sctx, keylog_cb, &k); /* the server side logs as well */
    assert_int_equal(xs_tls_new(p.sctx, NULL, &p.s), 0);
    handshake_ok(p.c, p.s);
    assert_int_equal(k.lines, 1);
    assert_memory_equal(k.text, "CLIENT_RANDOM ", 14);
    assert_int_equal(strspn(k.text + 14, "0123456789abcdef"), 64);
    pair_free(&p);
}

static void test_tls_alpn_negotiated_when_offered(void **state)
{
    struct pair p;
    xs_tls_info ci, si;
    (void)state;

    pair_new(&p, client_ctx(xs_ca_cert_path(env.ca), 0, 1, 0), server_ctx(env.ca, 0),
             "example.test");
    handshake_ok(p.c, p.s);
    xs_tls_get_info(p.c, &ci);
    xs_tls_get_info(p.s, &si);
    assert_string_equal(ci.alpn, "xmpp-client");
    assert_string_equal(si.alpn, "xmpp-client");
    xs_tls_free(p.c);
    xs_tls_free(p.s);

    /* Turned off for one connection (STARTTLS): no ALPN, and no failure. */
    assert_int_equal(xs_tls_new(p.cctx, "example.test", &p.c), 0);
    assert_int_equal(xs_tls_new(p.sctx, NULL, &p.s), 0);
    assert_int_equal(xs_tls_set_alpn(p.c, 0), 0);
    assert_int_equal(xs_tls_set_alpn(p.s, 1), XS_EINVAL); /* server role */
    handshake_ok(p.c, p.s);
    xs_tls_get_info(p.c, &ci);
    assert_null(ci.alpn);
    assert_int_equal(xs_tls_set_alpn(p.c, 1), XS_EINVAL); /* too late */
    pair_free(&p);
}

/* A handshake under `key`, with some data so that TLS 1.3 tickets reach the client, closed with
 * close_notify if `clean`. Returns whether the session was resumed. */
static int connect_with_key(xs_tls_ctx *cctx, xs_tls_ctx *sctx, const char *key, int clean)
{
    xs_tls *c = NULL, *s = NULL;
    xs_tls_info ci;
    assert_int_equal(xs_tls_new(cctx, "example.test", &c), 0);
    assert_int_equal(xs_tls_new(sctx, NULL, &s), 0);
    assert_int_equal(xs_tls_set_resume_key(c, key), 0);
    handshake_ok(c, s);
    send_and_check(s, c, "<stream:features/>");
    send_and_check(c, s, "<auth/>");
    xs_tls_get_info(c, &ci);
    assert_string_equal(ci.verify, "ok");
    if (clean)
        assert_int_equal(xs_tls_shutdown(c), 0);
    xs_tls_free(c);
    xs_tls_free(s);
    return ci.resumed;
}

static void test_tls_session_resumed(void **state)
{
    (void)state;
    static const int versions[] = {XS_TLS_1_2, XS_TLS_1_3};
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        int max = versions[i];
        xs_tls_ctx *cctx = client_ctx(xs_ca_cert_path(env.ca), 0, 0, max);
        xs_tls_ctx *sctx = server_ctx(env.ca, 0);
        assert_int_equal(connect_with_key(cctx, sctx, "example.test:5222", 1), 0);
        assert_int_equal(connect_with_key(cctx, sctx, "example.test:5222", 1), 1);
        assert_int_equal(connect_with_key(cctx, sctx, "example.test:5223", 1), 0);
        assert_int_equal(connect_with_key(cctx, sctx, "example.test:5222", 1), 1);
        /* A connection that ends without close_notify spoils its session. */
        assert_int_equal(connect_with_key(cctx, sctx, "example.test:5222", 0), 1);
        assert_int_equal(connect_with_key(cctx, sctx, "example.test:5222", 1), 0);
        assert_int_equal(connect_with_key(cctx, sctx, "example.test:5222", 1), 1);
        xs_tls_ctx_free(cctx);
        xs_tls_ctx_free(sctx);
    }
}

static void test_tls_connection_outlives_ctx_free(void **state)
{
    xs_tls_ctx *cctx = client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0);
    xs_tls_ctx *sctx = server_ctx(env.ca, 0);
    xs_tls *c = NULL, *s = NULL;
    (void)state;

    assert_int_equal(xs_tls_new(cctx, "example.test", &c), 0);
    assert_int_equal(xs_tls_new(sctx, NULL, &s), 0);
    xs_tls_ctx_free(cctx);
    xs_tls_ctx_free(sctx);
    handshake_ok(c, s);
    send_and_check(c, s, "<r xmlns='urn:xmpp:sm:3'/>");
    xs_tls_free(c);
    xs_tls_free(s);
}

static void test_tls_bad_options(void **state)
{
    xs_tls_server_opts so = {0};
    xs_tls_client_opts co = {0};
    xs_tls_ctx *ctx = (xs_tls_ctx *)1;
    xs_tls *t = NULL;
    char missing[700];
    (void)state;

    snprintf(missing, sizeof(missing), "%s/does-not-exist.pem", env.dir);
    assert_int_equal(xs_tls_server_ctx_new(&so, &ctx, &ctx_diag), XS_EINVAL);
    assert_null(ctx);
    assert_non_null(strstr(ctx_diag.text, "--cert"));
    so.ca = env.ca;
    so.cert_file = env.leaf_cert;
    so.key_file = env.leaf_key;
    assert_int_equal(xs_tls_server_ctx_new(&so, &ctx, &ctx_diag), XS_EINVAL);
    so.ca = NULL;
    so.key_file = NULL;
    assert_int_equal(xs_tls_server_ctx_new(&so, &ctx, &ctx_diag), XS_EINVAL);
    so.cert_file = missing;
    so.key_file = env.leaf_key;
    assert_int_equal(xs_tls_server_ctx_new(&so, &ctx, &ctx_diag), XS_ETLS);
    assert_non_null(strstr(ctx_diag.text, missing));
    so.cert_file = env.leaf_cert;
    so.key_file = env.leaf_cert; /* a certificate is not a key */
    assert_int_equal(xs_tls_server_ctx_new(&so, &ctx, &ctx_diag), XS_ETLS);
    assert_non_null(strstr(ctx_diag.text, "private key"));
    so.key_file = env.leaf_key;
    so.min_version = XS_TLS_1_3;
    so.max_version = XS_TLS_1_2;
    assert_int_equal(xs_tls_server_ctx_new(&so, &ctx, &ctx_diag), XS_EINVAL);
    so.min_version = 10;
    so.max_version = 0;
    assert_int_equal(xs_tls_server_ctx_new(&so, &ctx, &ctx_diag), XS_EINVAL);

    co.ca_file = missing;
    assert_int_equal(xs_tls_client_ctx_new(&co, &ctx, &ctx_diag), XS_ETLS);
    assert_non_null(strstr(ctx_diag.text, missing));

    /* A verifying client needs a name to verify. */
    ctx = client_ctx(xs_ca_cert_path(env.ca), 0, 0, 0);
    assert_int_equal(xs_tls_new(ctx, NULL, &t), XS_EINVAL);
    assert_null(t);
    assert_int_equal(xs_tls_new(ctx, "example.test", &t), 0);
    assert_int_equal(xs_tls_set_default_name(t, "example.test"), XS_EINVAL); /* client role */
    xs_tls_free(t);
    xs_tls_ctx_free(ctx);
}

static void test_tls_feed_is_bounded(void **state)
{
    xs_tls_ctx *sctx = server_ctx(env.ca, 0);
    xs_tls *s = NULL;
    unsigned char *big = calloc(1, XS_TLS_MAX_CIPHER_IN);
    (void)state;

    assert_non_null(big);
    assert_int_equal(xs_tls_new(sctx, NULL, &s), 0);
    assert_int_equal(xs_tls_feed_cipher(s, big, XS_TLS_MAX_CIPHER_IN - 1), 0);
    assert_int_equal(xs_tls_feed_cipher(s, big, 2), XS_ETOOBIG);
    assert_int_equal(xs_tls_feed_cipher(s, big, 1), 0);
    free(big);
    xs_tls_free(s);
    xs_tls_ctx_free(sctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_handshake_tls13),
        cmocka_unit_test(test_tls_handshake_tls12),
        cmocka_unit_test(test_tls_fixed_certificate),
        cmocka_unit_test(test_tls_verify_fails_for_other_hostname),
        cmocka_unit_test(test_tls_verify_fails_for_untrusted_ca),
        cmocka_unit_test(test_tls_insecure_reports_problem),
        cmocka_unit_test(test_tls_no_sni_gets_default_name),
        cmocka_unit_test(test_tls_local_ip_is_in_forged_certificate),
        cmocka_unit_test(test_tls_no_name_at_all_fails),
        cmocka_unit_test(test_tls_data_both_ways_1mib),
        cmocka_unit_test(test_tls_burst_then_idle),
        cmocka_unit_test(test_tls_write_before_established_is_delivered),
        cmocka_unit_test(test_tls_close_notify_gives_eclosed),
        cmocka_unit_test(test_tls_shutdown_before_handshake),
        cmocka_unit_test(test_tls_garbage_clienthello_fails),
        cmocka_unit_test(test_tls_corrupt_record_fails),
        cmocka_unit_test(test_tls_keylog_tls13),
        cmocka_unit_test(test_tls_keylog_tls12),
        cmocka_unit_test(test_tls_alpn_negotiated_when_offered),
        cmocka_unit_test(test_tls_session_resumed),
        cmocka_unit_test(test_tls_connection_outlives_ctx_free),
        cmocka_unit_test(test_tls_bad_options),
        cmocka_unit_test(test_tls_feed_is_bounded),
    };
    return cmocka_run_group_tests_name("tls", tests, group_setup, group_teardown);
}
