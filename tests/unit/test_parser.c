/* Unit tests of the incremental stream parser (inspect/parser.c).
 *
 * Every input is fed whole, split at every byte offset into two reads, one byte at a time, and in
 * pseudo-random reads; the events, printed to a text log, must be identical in every case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "inspect/error.h"
#include "inspect/parser.h"
#include "inspect/reference.h"
#include "inspect/wf.h"

#include <libxml/tree.h>

/* ---- recording events ---------------------------------------------------------------------------
 */

typedef struct rec {
    char *log; /* one line per event */
    size_t len, cap;
    int pause_on_stanza; /* pause after a stanza named like this (0 = never) */
    const char *pause_name;
    int n_stanza, n_keepalive, n_open, n_close, n_error;
    int last_error;
    xs_parse_error_kind last_error_kind;
    char last_message[256];
    unsigned err_line, err_col;
    uint64_t err_offset;
    char *last_tree; /* serialization of the last stanza copied out with xs_stanza_copy */
    char last_default_ns[64];
} rec;

static void rec_printf(rec *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void rec_printf(rec *r, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    if ((size_t)n >= sizeof(tmp))
        n = sizeof(tmp) - 1;
    if (r->len + (size_t)n + 1 > r->cap) {
        r->cap = (r->cap + (size_t)n + 1) * 2;
        r->log = realloc(r->log, r->cap);
        assert_non_null(r->log);
    }
    memcpy(r->log + r->len, tmp, (size_t)n + 1);
    r->len += (size_t)n;
}

static void rec_free(rec *r)
{
    free(r->log);
    free(r->last_tree);
    memset(r, 0, sizeof(*r));
}

static int on_event(void *user, const xs_event *ev)
{
    rec *r = user;
    switch (ev->kind) {
    case XS_EV_STREAM_OPEN:
        r->n_open++;
        rec_printf(r, "open #%u @%llu+%zu %s|%s|%s dns=%s raw=[%.*s]", ev->stream_no,
                   (unsigned long long)ev->offset, ev->len, ev->prefix ? ev->prefix : "-", ev->name,
                   ev->ns ? ev->ns : "-", ev->default_ns ? ev->default_ns : "-", (int)ev->len,
                   ev->raw ? ev->raw : "");
        for (size_t i = 0; i < ev->n_attrs; i++)
            rec_printf(r, " %s%s%s=%s", ev->attrs[i].prefix ? ev->attrs[i].prefix : "",
                       ev->attrs[i].prefix ? ":" : "", ev->attrs[i].name, ev->attrs[i].value);
        for (size_t i = 0; i < ev->n_nsdecls; i++)
            rec_printf(r, " xmlns:%s=%s", ev->nsdecls[i].prefix ? ev->nsdecls[i].prefix : "",
                       ev->nsdecls[i].uri);
        rec_printf(r, "\n");
        snprintf(r->last_default_ns, sizeof(r->last_default_ns), "%s",
                 ev->default_ns ? ev->default_ns : "");
        break;
    case XS_EV_STANZA:
        r->n_stanza++;
        rec_printf(r, "stanza #%u @%llu+%zu L%u:%u %s|%s|%s raw=[%.*s]", ev->stream_no,
                   (unsigned long long)ev->offset, ev->len, ev->line, ev->column,
                   ev->prefix ? ev->prefix : "-", ev->name, ev->ns ? ev->ns : "-", (int)ev->len,
                   ev->raw ? ev->raw : "");
        for (size_t i = 0; i < ev->n_attrs; i++)
            rec_printf(r, " attr:%s|%s|%s=[%s]", ev->attrs[i].prefix ? ev->attrs[i].prefix : "-",
                       ev->attrs[i].uri ? ev->attrs[i].uri : "-", ev->attrs[i].name,
                       ev->attrs[i].value);
        if (ev->node != NULL) {
            /* The tree must agree with the event and serialize with its namespaces. */
            assert_string_equal((const char *)ev->node->name, ev->name);
            xmlDoc *doc = xs_stanza_copy(ev->node);
            assert_non_null(doc);
            xmlChar *out = NULL;
            int n = 0;
            xmlDocDumpMemory(doc, &out, &n);
            free(r->last_tree);
            r->last_tree = strdup((const char *)out);
            /* The serialized copy goes in the log: runs that built the tree differently (the
             * fast path of wf.c or libxml2's SAX2) must agree on it. */
            rec_printf(r, " tree=[%s]", (const char *)out);
            xmlFree(out);
            xmlFreeDoc(doc);
            xmlChar *text = xmlNodeGetContent(ev->node);
            rec_printf(r, " text=[%s]", text ? (const char *)text : "");
            xmlFree(text);
        }
        rec_printf(r, "\n");
        if (r->pause_name != NULL && strcmp(ev->name, r->pause_name) == 0)
            return XS_PARSER_PAUSE;
        break;
    case XS_EV_KEEPALIVE:
        /* Keepalives may be cut differently by reads; log only their bytes. */
        r->n_keepalive++;
        break;
    case XS_EV_STREAM_CLOSE:
        r->n_close++;
        rec_printf(r, "close #%u @%llu+%zu raw=[%.*s]\n", ev->stream_no,
                   (unsigned long long)ev->offset, ev->len, (int)ev->len, ev->raw ? ev->raw : "");
        break;
    case XS_EV_ERROR:
        r->n_error++;
        r->last_error = ev->error;
        r->last_error_kind = ev->error_kind;
        r->err_line = ev->line;
        r->err_col = ev->column;
        r->err_offset = ev->offset;
        snprintf(r->last_message, sizeof(r->last_message), "%s", ev->message);
        rec_printf(r, "error %s %s\n", xs_errname(ev->error),
                   xs_parse_error_condition(ev->error_kind));
        break;
    }
    return 0;
}

/* When set, feed_with() calls xs_parser_trim() after every read, as the proxy does for a quiet
 * direction; the events must not change. trims counts the times it gave memory back. */
static bool trim_after_feed;
static unsigned trims;

/* Feeds `in` in reads whose sizes come from `next_size`; returns the first nonzero feed result. */
static int feed_with(xs_parser *p, const char *in, size_t len, size_t (*next_size)(size_t, void *),
                     void *arg)
{
    size_t at = 0;
    while (at < len) {
        size_t n = next_size(at, arg);
        if (n == 0 || n > len - at)
            n = len - at;
        size_t used = 0;
        int rc = xs_parser_feed(p, in + at, n, &used);
        if (rc != 0)
            return rc;
        assert_int_equal(used, n);
        at += n;
        if (trim_after_feed)
            trims += (unsigned)xs_parser_trim(p);
    }
    return 0;
}

static size_t size_whole(size_t at, void *arg)
{
    return 0;
}

static size_t size_split(size_t at, void *arg)
{
    size_t k = *(size_t *)arg;
    return at < k ? k - at : 0;
}

static size_t size_one(size_t at, void *arg)
{
    return 1;
}

static size_t size_random(size_t at, void *arg)
{
    uint32_t *s = arg;
    *s = *s * 1103515245u + 12345u;
    return 1 + (*s >> 16) % 17;
}

typedef struct run_result {
    char *log;
    int rc;
    int n_keepalive_bytes;
} run_result;

static run_result run_one(const char *in, size_t len, unsigned opts, const xs_parser_limits *lim,
                          size_t (*next_size)(size_t, void *), void *arg)
{
    rec r = {0};
    xs_parser *p = NULL;
    assert_int_equal(xs_parser_new(lim, opts, on_event, &r, &p), 0);
    int rc = feed_with(p, in, len, next_size, arg);
    xs_parser_free(p);
    run_result res = {.log = r.log ? strdup(r.log) : strdup(""), .rc = rc};
    rec_free(&r);
    return res;
}

/* Runs `in` whole, split at every offset, byte by byte and randomly, with and without a tree,
 * and checks that every run gives the same events. Returns the log of the whole run. */
static char *check_all_splits(const char *in, size_t len, unsigned opts,
                              const xs_parser_limits *lim, int *rc_out)
{
    run_result whole = run_one(in, len, opts | XS_PARSER_RAW, lim, size_whole, NULL);
    for (size_t k = 1; k < len; k++) {
        run_result s = run_one(in, len, opts | XS_PARSER_RAW, lim, size_split, &k);
        if (strcmp(s.log, whole.log) != 0 || s.rc != whole.rc) {
            fprintf(stderr, "split at %zu differs:\n--- whole\n%s--- split\n%s", k, whole.log,
                    s.log);
            fail();
        }
        free(s.log);
    }
    run_result one = run_one(in, len, opts | XS_PARSER_RAW, lim, size_one, NULL);
    assert_string_equal(one.log, whole.log);
    assert_int_equal(one.rc, whole.rc);
    free(one.log);
    for (uint32_t seed = 1; seed < 20; seed++) {
        uint32_t s = seed;
        run_result rr = run_one(in, len, opts | XS_PARSER_RAW, lim, size_random, &s);
        assert_string_equal(rr.log, whole.log);
        free(rr.log);
    }
    /* The same with the parser trimmed after every read (libxml2's context given back and
     * rebuilt from the stream header), with and without trees. */
    trim_after_feed = true;
    for (int tree = 0; tree < 2; tree++) {
        unsigned o = (opts | XS_PARSER_RAW) & ~(unsigned)XS_PARSER_TREE;
        if (tree)
            o |= XS_PARSER_TREE;
        run_result ref = run_one(in, len, o, lim, size_whole, NULL);
        run_result t1 = run_one(in, len, o, lim, size_one, NULL);
        assert_string_equal(t1.log, ref.log);
        assert_int_equal(t1.rc, ref.rc);
        free(t1.log);
        for (uint32_t seed = 1; seed < 6; seed++) {
            uint32_t s = seed;
            run_result rr = run_one(in, len, o, lim, size_random, &s);
            assert_string_equal(rr.log, ref.log);
            free(rr.log);
        }
        free(ref.log);
    }
    trim_after_feed = false;
    if (rc_out != NULL)
        *rc_out = whole.rc;
    return whole.log;
}

static char *read_file(const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", XS_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int count_lines(const char *log, const char *prefix)
{
    int n = 0;
    size_t pl = strlen(prefix);
    for (const char *l = log; *l;) {
        if (strncmp(l, prefix, pl) == 0)
            n++;
        const char *nl = strchr(l, '\n');
        if (nl == NULL)
            break;
        l = nl + 1;
    }
    return n;
}

/* ---- tests
 * --------------------------------------------------------------------------------------- */

#define HDR                                                                                        \
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "        \
    "to='example.test' version='1.0'>"

static void test_parser_c2s_session_capture(void **state)
{
    size_t len;
    char *in = read_file("examples/captures/c2s-plain.xml", &len);
    int rc = -1;
    char *log = check_all_splits(in, len, XS_PARSER_AUTO_RESTART | XS_PARSER_TREE, NULL, &rc);
    assert_int_equal(rc, 0);
    /* Three streams (initial, after STARTTLS, after SASL), each opened; one close. */
    assert_int_equal(count_lines(log, "open "), 3);
    assert_int_equal(count_lines(log, "open #3 "), 1);
    assert_int_equal(count_lines(log, "close #3 "), 1);
    /* starttls, auth, iq bind, iq roster, presence, two messages, iq ping. */
    assert_int_equal(count_lines(log, "stanza "), 8);
    assert_non_null(strstr(log, "stanza #1 @"));
    assert_non_null(strstr(log, "-|starttls|urn:ietf:params:xml:ns:xmpp-tls"));
    assert_non_null(strstr(log, "-|auth|urn:ietf:params:xml:ns:xmpp-sasl"));
    assert_non_null(strstr(log, "-|message|jabber:client"));
    /* The XML declaration belongs to the stream header's span. */
    assert_non_null(strstr(log, "raw=[<?xml version='1.0'?><stream:stream xmlns='jabber:client'"));
    /* Entities are decoded in the tree, kept verbatim in the raw bytes. */
    assert_non_null(strstr(log, "text=[Hi Bob — did the proxy show this? <3 & ünïcödé 🚀"));
    assert_non_null(strstr(log, "this? &lt;3 &amp; ünïcödé"));
    free(log);
    free(in);
}

static void test_parser_s2c_session_capture(void **state)
{
    size_t len;
    char *in = read_file("examples/captures/s2c-plain.xml", &len);
    int rc = -1;
    char *log = check_all_splits(in, len, XS_PARSER_AUTO_RESTART | XS_PARSER_TREE, NULL, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(count_lines(log, "open "), 3);
    assert_non_null(strstr(log, "stream|features|http://etherx.jabber.org/streams"));
    assert_non_null(strstr(log, "stream|error|http://etherx.jabber.org/streams"));
    assert_non_null(strstr(log, "-|proceed|urn:ietf:params:xml:ns:xmpp-tls"));
    assert_non_null(strstr(log, "-|success|urn:ietf:params:xml:ns:xmpp-sasl"));
    free(log);
    free(in);
}

static void test_parser_byte_spans_are_exact(void **state)
{
    size_t len;
    char *in = read_file("examples/captures/c2s-plain.xml", &len);
    /* Each stanza's raw bytes must be exactly the input at its offset. */
    rec r = {0};
    xs_parser *p = NULL;
    assert_int_equal(xs_parser_new(NULL, XS_PARSER_AUTO_RESTART | XS_PARSER_RAW, on_event, &r, &p),
                     0);
    uint32_t s = 7;
    assert_int_equal(feed_with(p, in, len, size_random, &s), 0);
    const char *l = r.log;
    int checked = 0;
    while ((l = strstr(l, " @")) != NULL) {
        unsigned long long off;
        size_t n;
        assert_int_equal(sscanf(l, " @%llu+%zu", &off, &n), 2);
        const char *raw = strstr(l, "raw=[");
        assert_non_null(raw);
        assert_memory_equal(raw + 5, in + off, n);
        l = raw;
        checked++;
    }
    assert_int_equal(checked, 3 + 8 + 1);
    xs_parser_free(p);
    rec_free(&r);
    free(in);
}

static void test_parser_namespaces_resolved(void **state)
{
    const char in[] = HDR "<message xmlns:x='urn:x'><x:body>a</x:body><body>b</body></message>"
                          "<stream:features><sm xmlns='urn:xmpp:sm:3'/></stream:features>";
    rec r = {0};
    xs_parser *p = NULL;
    assert_int_equal(xs_parser_new(NULL, XS_PARSER_TREE, on_event, &r, &p), 0);
    assert_int_equal(xs_parser_feed(p, in, sizeof(in) - 1, NULL), 0);
    assert_string_equal(r.last_default_ns, "jabber:client");
    assert_non_null(strstr(r.log, "open #1 @0+"));
    assert_non_null(strstr(r.log, "stream|stream|http://etherx.jabber.org/streams"));
    assert_non_null(strstr(r.log, "-|message|jabber:client"));
    assert_non_null(strstr(r.log, "stream|features|http://etherx.jabber.org/streams"));
    /* The copy of the features element declares the inherited stream prefix. */
    assert_non_null(r.last_tree);
    assert_non_null(strstr(r.last_tree, "xmlns:stream=\"http://etherx.jabber.org/streams\""));
    assert_non_null(strstr(r.last_tree, "<sm xmlns=\"urn:xmpp:sm:3\"/>"));
    xs_parser_free(p);
    rec_free(&r);
}

static void test_parser_copy_declares_default_namespace(void **state)
{
    const char in[] = HDR "<message to='b@example.test'><body>hi</body></message>";
    rec r = {0};
    xs_parser *p = NULL;
    assert_int_equal(xs_parser_new(NULL, XS_PARSER_TREE, on_event, &r, &p), 0);
    assert_int_equal(xs_parser_feed(p, in, sizeof(in) - 1, NULL), 0);
    assert_non_null(strstr(r.last_tree, "<message xmlns=\"jabber:client\" to=\"b@example.test\">"));
    xs_parser_free(p);
    rec_free(&r);
}

static void test_parser_utf8_split_across_reads(void **state)
{
    /* 🚀 is four bytes; é two; ☕ three. Every split point cuts one of them somewhere. */
    const char in[] = HDR "<message><body>é☕🚀x</body></message>"
                          "<presence><status a='ü☕'>🚀🚀</status></presence>";
    int rc = -1;
    char *log = check_all_splits(in, sizeof(in) - 1, XS_PARSER_TREE, NULL, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(log, "text=[é☕🚀x]"));
    assert_non_null(strstr(log, "text=[🚀🚀]"));
    free(log);
}

static void test_parser_gt_in_attribute_and_cdata(void **state)
{
    const char in[] = HDR "<message id='a>b' to=\"x'>y\"><body><![CDATA[</body> <x> ]] ]]]]></body>"
                          "</message><iq id='/>'/>";
    int rc = -1;
    char *log = check_all_splits(in, sizeof(in) - 1, XS_PARSER_TREE, NULL, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(count_lines(log, "stanza "), 2);
    assert_non_null(strstr(log, "text=[</body> <x> ]] ]]]"));
    free(log);
}

static void test_parser_keepalive_passes_at_once(void **state)
{
    rec r = {0};
    xs_parser *p = NULL;
    assert_int_equal(xs_parser_new(NULL, XS_PARSER_RAW, on_event, &r, &p), 0);
    assert_int_equal(xs_parser_feed(p, HDR, strlen(HDR), NULL), 0);
    assert_int_equal(r.n_open, 1);
    /* A lone space after the header is reported within the same feed call. */
    assert_int_equal(xs_parser_feed(p, " ", 1, NULL), 0);
    assert_int_equal(r.n_keepalive, 1);
    assert_int_equal(xs_parser_feed(p, "\n\n", 2, NULL), 0);
    assert_int_equal(r.n_keepalive, 2);
    assert_int_equal(xs_parser_feed(p, "  <iq id='1'/>", 14, NULL), 0);
    assert_int_equal(r.n_keepalive, 3);
    assert_int_equal(r.n_stanza, 1);
    /* A million spaces cost nothing: they are not buffered anywhere. */
    char *sp = malloc(1 << 20);
    memset(sp, ' ', 1 << 20);
    for (int i = 0; i < 8; i++)
        assert_int_equal(xs_parser_feed(p, sp, 1 << 20, NULL), 0);
    free(sp);
    assert_int_equal(xs_parser_feed(p, "<iq id='2'/>", 12, NULL), 0);
    assert_int_equal(r.n_stanza, 2);
    xs_parser_free(p);
    rec_free(&r);
}

static void test_parser_pause_and_reset_at_exact_byte(void **state)
{
    /* Server side of STARTTLS: after <proceed/> come TLS bytes that must not be parsed. */
    const char first[] = HDR "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
                             "</stream:features><proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
    char in[sizeof(first) + 16];
    memcpy(in, first, sizeof(first) - 1);
    memcpy(in + sizeof(first) - 1, "\x16\x03\x01\x02\x00\x01\x00", 7);
    size_t len = sizeof(first) - 1 + 7;

    for (size_t k = 1; k <= len; k++) {
        rec r = {.pause_name = "proceed"};
        xs_parser *p = NULL;
        assert_int_equal(xs_parser_new(NULL, XS_PARSER_TREE, on_event, &r, &p), 0);
        size_t at = 0, used = 0;
        /* Two reads split at k; the proceed may fall in either. */
        int paused = 0;
        while (at < len && !paused) {
            size_t n = at < k ? k - at : len - at;
            assert_int_equal(xs_parser_feed(p, in + at, n, &used), 0);
            if (used < n || (r.n_stanza == 2 && at + used == sizeof(first) - 1))
                paused = 1;
            at += used;
        }
        assert_int_equal(r.n_stanza, 2);
        assert_int_equal(at, sizeof(first) - 1);
        assert_int_equal(xs_parser_offset(p), sizeof(first) - 1);
        assert_int_equal(r.n_error, 0);
        /* The TLS layer takes over; later a new stream starts on the decrypted bytes. */
        assert_int_equal(xs_parser_reset(p), 0);
        assert_int_equal(xs_parser_feed(p, HDR, strlen(HDR), NULL), 0);
        assert_int_equal(r.n_open, 2);
        assert_non_null(strstr(r.log, "open #2 "));
        xs_parser_free(p);
        rec_free(&r);
    }
}

static void test_parser_stream_close_and_after(void **state)
{
    const char in[] = HDR "<iq id='1'/></stream:stream>";
    int rc = 0;
    char *log = check_all_splits(in, sizeof(in) - 1, 0, NULL, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(log, "close #1 "));
    assert_non_null(strstr(log, "raw=[</stream:stream>]"));
    free(log);

    /* Without auto-restart, anything but whitespace after the close is an error. */
    const char more[] = HDR "</stream:stream>\n<iq/>";
    log = check_all_splits(more, sizeof(more) - 1, 0, NULL, &rc);
    assert_int_equal(rc, XS_ENOTWF);
    free(log);
}

/* Feeds `in` whole, split at every offset, and one byte at a time, with and without trees
 * (libxml2 only: whole and byte by byte); each run must end with `want_rc` and, when want_msg is
 * set, an error message equal to it. Returns the error offset of the whole run. */
static uint64_t check_error_all_splits(const char *in, size_t len, unsigned opts,
                                       const xs_parser_limits *lim, int want_rc,
                                       const char *want_msg)
{
    static const unsigned variants[] = {0, XS_PARSER_TREE, XS_PARSER_LIBXML2_ONLY,
                                        XS_PARSER_TREE | XS_PARSER_LIBXML2_ONLY};
    uint64_t offset = 0;
    for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
        for (size_t k = 0; k <= len; k++) {
            /* libxml2 alone: whole and byte by byte (every cut with the fast path). */
            if ((variants[v] & XS_PARSER_LIBXML2_ONLY) && k > 0 && k < len)
                k = len;
            rec r = {0};
            xs_parser *p = NULL;
            assert_int_equal(xs_parser_new(lim, opts | variants[v], on_event, &r, &p), 0);
            int rc = k == len ? feed_with(p, in, len, size_one, NULL)
                              : feed_with(p, in, len, size_split, &k);
            if (rc != want_rc || (want_msg != NULL && strcmp(r.last_message, want_msg) != 0) ||
                (k > 0 && r.err_offset != offset)) {
                fprintf(stderr, "variant %zu split %zu: rc %s at %llu, message '%s'\n%s", v, k,
                        xs_errname(rc), (unsigned long long)r.err_offset, r.last_message,
                        r.log ? r.log : "");
                fail();
            }
            offset = r.err_offset;
            xs_parser_free(p);
            rec_free(&r);
        }
    }
    return offset;
}

static void test_parser_data_after_stream_close(void **state)
{
    /* xmpp.js sends an XEP-0198 ack after its </stream:stream>: what came before is delivered,
     * then the ack is refused as not well-formed, and the message says what came after what. */
    const char in[] = HDR "<iq id='1'/></stream:stream><a xmlns='urn:xmpp:sm:3' h='3'/>";
    const char *want = "'<a xmlns='urn:xmpp:sm:3' h='3'/>' arrived after the stream was closed "
                       "with </stream:stream> (XML allows only whitespace after the stream's end)";
    for (int restart = 0; restart < 2; restart++) {
        unsigned opts = restart ? XS_PARSER_AUTO_RESTART : 0;
        int rc = 0;
        char *log = check_all_splits(in, sizeof(in) - 1, opts, NULL, &rc);
        assert_int_equal(rc, XS_ENOTWF);
        assert_non_null(strstr(log, "stanza #1 "));
        assert_non_null(strstr(log, "close #1 "));
        assert_non_null(strstr(log, "error XS_ENOTWF not-well-formed\n"));
        assert_int_equal(count_lines(log, "open "), 1);
        free(log);
        uint64_t at = check_error_all_splits(in, sizeof(in) - 1, opts, NULL, XS_ENOTWF, want);
        assert_int_equal(at, sizeof(in) - 1 - strlen("<a xmlns='urn:xmpp:sm:3' h='3'/>"));
    }
    /* Text after the end, and wire bytes quoted escaped. */
    const char text[] = HDR "</stream:stream> x";
    check_error_all_splits(text, sizeof(text) - 1, XS_PARSER_AUTO_RESTART, NULL, XS_ENOTWF,
                           "text arrived after the stream was closed with </stream:stream> (XML "
                           "allows only whitespace after the stream's end)");
    const char ctl[] = HDR "</stream:stream><b a='\x1b[2J\xc2\x9b'>";
    check_error_all_splits(ctl, sizeof(ctl) - 1, XS_PARSER_AUTO_RESTART, NULL, XS_ENOTWF,
                           "'<b a='\\x1B[2J\\xC2\\x9B'>' arrived after the stream was closed "
                           "with </stream:stream> (XML allows only whitespace after the stream's "
                           "end)");
    /* A new stream header after the end still starts a new stream in a capture. */
    const char again[] = HDR "</stream:stream>" HDR "<iq/>";
    int rc = 0;
    char *log = check_all_splits(again, sizeof(again) - 1, XS_PARSER_AUTO_RESTART, NULL, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(log, "stanza #2 "));
    free(log);
}

typedef struct bad_case {
    const char *name;
    const char *input;
    int code;
    xs_parse_error_kind kind;
} bad_case;

static void test_parser_refuses_restricted_and_malformed(void **state)
{
    static const bad_case cases[] = {
        {"doctype", "<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY a 'b'>]>" HDR, XS_ERESTRICTED,
         XS_PERR_RESTRICTED},
        {"comment", HDR "<!-- hi --><iq/>", XS_ERESTRICTED, XS_PERR_RESTRICTED},
        {"comment in stanza", HDR "<iq><!-- hi --></iq>", XS_ERESTRICTED, XS_PERR_RESTRICTED},
        {"pi", HDR "<?php echo 1; ?>", XS_ERESTRICTED, XS_PERR_RESTRICTED},
        {"pi in stanza", HDR "<iq><?x y?></iq>", XS_ERESTRICTED, XS_PERR_RESTRICTED},
        {"xml decl mid stream", HDR "<iq/><?xml version='1.0'?>", XS_ERESTRICTED,
         XS_PERR_RESTRICTED},
        {"entity", HDR "<message><body>&foo;</body></message>", XS_ERESTRICTED, XS_PERR_RESTRICTED},
        {"entity in attr", HDR "<message to='&foo;'/>", XS_ERESTRICTED, XS_PERR_RESTRICTED},
        {"text at depth 1", HDR "hello<iq/>", XS_EBADFORMAT, XS_PERR_BAD_FORMAT},
        {"cdata at depth 1", HDR "<![CDATA[x]]>", XS_EBADFORMAT, XS_PERR_BAD_FORMAT},
        {"mismatched tags", HDR "<message><body></message></body>", XS_ENOTWF,
         XS_PERR_NOT_WELL_FORMED},
        {"bad attr", HDR "<message to=bob/>", XS_ENOTWF, XS_PERR_NOT_WELL_FORMED},
        {"undeclared prefix", HDR "<x:message/>", XS_ENOTWF, XS_PERR_NOT_WELL_FORMED},
        {"invalid utf8", HDR "<message><body>\xff\xfe</body></message>", XS_ENOTWF,
         XS_PERR_NOT_WELL_FORMED},
        {"overlong utf8", HDR "<message><body>\xc0\xaf</body></message>", XS_ENOTWF,
         XS_PERR_NOT_WELL_FORMED},
        {"end without start", "</stream:stream>", XS_ENOTWF, XS_PERR_NOT_WELL_FORMED},
        {"text before header", "hello", XS_ENOTWF, XS_PERR_NOT_WELL_FORMED},
        {"empty stream", "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>",
         XS_EBADFORMAT, XS_PERR_BAD_FORMAT},
        {"lt in attr", HDR "<message to='a<b'/>", XS_ENOTWF, XS_PERR_NOT_WELL_FORMED},
        {"control char", HDR "<message><body>\x01</body></message>", XS_ENOTWF,
         XS_PERR_NOT_WELL_FORMED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = 0;
        char *log = check_all_splits(cases[i].input, strlen(cases[i].input), 0, NULL, &rc);
        if (rc != cases[i].code) {
            fprintf(stderr, "case '%s': got %s, want %s\n%s", cases[i].name, xs_errname(rc),
                    xs_errname(cases[i].code), log);
            fail();
        }
        char want[64];
        snprintf(want, sizeof(want), "error %s %s\n", xs_errname(cases[i].code),
                 xs_parse_error_condition(cases[i].kind));
        if (strstr(log, want) == NULL) {
            fprintf(stderr, "case '%s': no '%s' in\n%s", cases[i].name, want, log);
            fail();
        }
        free(log);
    }
}

static void test_parser_nul_byte_refused(void **state)
{
    const char in[] = HDR "<message><body>a\0b</body></message>";
    int rc = 0;
    char *log = check_all_splits(in, sizeof(in) - 1, 0, NULL, &rc);
    assert_int_equal(rc, XS_ENOTWF);
    free(log);
}

static void test_parser_billion_laughs_refused_at_once(void **state)
{
    /* The DTD is refused at its third byte: nothing of it is buffered or expanded. */
    const char in[] = "<?xml version='1.0'?>\n<!DOCTYPE lolz [\n<!ENTITY lol 'lol'>\n"
                      "<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>\n"
                      "<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>\n"
                      "]>\n<stream:stream>&lol3;</stream:stream>";
    rec r = {0};
    xs_parser *p = NULL;
    assert_int_equal(xs_parser_new(NULL, 0, on_event, &r, &p), 0);
    size_t used = 0;
    assert_int_equal(xs_parser_feed(p, in, sizeof(in) - 1, &used), XS_ERESTRICTED);
    assert_int_equal(r.n_error, 1);
    assert_int_equal(r.err_offset, 22);
    assert_int_equal(r.err_line, 2);
    assert_int_equal(r.err_col, 1);
    assert_non_null(strstr(r.last_message, "DTD"));
    /* A dead parser refuses more input until reset. */
    assert_int_equal(xs_parser_feed(p, "x", 1, NULL), XS_ESTATE);
    assert_int_equal(xs_parser_reset(p), 0);
    assert_int_equal(xs_parser_feed(p, HDR, strlen(HDR), NULL), 0);
    assert_int_equal(r.n_open, 1);
    xs_parser_free(p);
    rec_free(&r);
}

/* A short stream header followed by one <message> of exactly `size` bytes. */
static char *stanza_of_size(size_t size)
{
    static const char hdr[] = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>";
    size_t body = size - strlen("<message><body></body></message>");
    char *s = malloc(sizeof(hdr) + size);
    strcpy(s, hdr);
    strcat(s, "<message><body>");
    memset(s + strlen(s), 'x', body);
    strcpy(s + strlen(hdr) + 15 + body, "</body></message>");
    assert_int_equal(strlen(s), strlen(hdr) + size);
    return s;
}

static void test_parser_stanza_size_limit(void **state)
{
    xs_parser_limits lim = {.max_stanza = 100};
    static const size_t sizes[] = {57, 100, 101, 500};
    static const int want[] = {0, 0, XS_ETOOBIG, XS_ETOOBIG};
    for (size_t i = 0; i < 4; i++) {
        char *in = stanza_of_size(sizes[i]);
        int rc = 0;
        char *log = check_all_splits(in, strlen(in), 0, &lim, &rc);
        assert_int_equal(rc, want[i]);
        if (want[i] != 0)
            assert_non_null(strstr(log, "policy-violation"));
        free(log);
        free(in);
    }
    /* A header or start tag that never ends is bounded too. */
    char huge[4096];
    memset(huge, 'a', sizeof(huge));
    memcpy(huge, "<stream:stream ", 15);
    int rc = 0;
    char *log = check_all_splits(huge, 300, 0, &lim, &rc);
    assert_int_equal(rc, XS_ETOOBIG);
    free(log);
}

static void test_parser_default_stanza_limit_is_bounded(void **state)
{
    /* 100 MB of one stanza, fed 64 KiB at a time, is refused after the default 262144 bytes. */
    rec r = {0};
    xs_parser *p = NULL;
    assert_int_equal(xs_parser_new(NULL, XS_PARSER_RAW | XS_PARSER_TREE, on_event, &r, &p), 0);
    assert_int_equal(xs_parser_feed(p, HDR "<message><body>", strlen(HDR) + 15, NULL), 0);
    char *chunk = malloc(65536);
    memset(chunk, 'x', 65536);
    int rc = 0;
    size_t fed = 0;
    for (int i = 0; i < 1600 && rc == 0; i++) {
        rc = xs_parser_feed(p, chunk, 65536, NULL);
        fed += 65536;
    }
    assert_int_equal(rc, XS_ETOOBIG);
    assert_true(fed <= XS_PARSER_DEFAULT_MAX_STANZA + 65536);
    assert_non_null(strstr(r.last_message, "262144"));
    free(chunk);
    xs_parser_free(p);
    rec_free(&r);
}

static void test_parser_depth_limit(void **state)
{
    xs_parser_limits lim = {.max_depth = 4};
    int rc = 0;
    char *log = check_all_splits(HDR "<a><b><c><d/></c></b></a>", strlen(HDR) + 25, 0, &lim, &rc);
    assert_int_equal(rc, 0);
    free(log);
    log = check_all_splits(HDR "<a><b><c><d><e/></d></c></b></a>", strlen(HDR) + 32, 0, &lim, &rc);
    assert_int_equal(rc, XS_ETOODEEP);
    free(log);

    /* 10,000 levels with the default limit: refused at depth 65, no recursion blow-up. */
    size_t n = 10000;
    char *deep = malloc(strlen(HDR) + 3 * n + 1);
    strcpy(deep, HDR);
    for (size_t i = 0; i < n; i++)
        strcat(deep + strlen(HDR) + 3 * i, "<a>");
    rec r = {0};
    xs_parser *p = NULL;
    assert_int_equal(xs_parser_new(NULL, XS_PARSER_TREE, on_event, &r, &p), 0);
    assert_int_equal(xs_parser_feed(p, deep, strlen(deep), NULL), XS_ETOODEEP);
    assert_non_null(strstr(r.last_message, "64"));
    xs_parser_free(p);
    rec_free(&r);
    free(deep);
}

/* The scanner counts a stanza's direct children and finds the first one, in every way the bytes
 * are cut, with and without trees, on the fast path and libxml2's. */
typedef struct kids {
    unsigned n[8];
    size_t first[8];
    size_t count;
} kids;

static int on_kids(void *user, const xs_event *ev)
{
    kids *k = user;
    if (ev->kind == XS_EV_STANZA && k->count < 8) {
        k->n[k->count] = ev->n_children;
        k->first[k->count] = ev->first_child;
        k->count++;
    }
    return 0;
}

static void test_parser_counts_children(void **state)
{
    (void)state;
    static const char body[] =
        "<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>"
        "<message><body>a<b>c</b></body><x xmlns='u:x'><y/><z/></x><t/></message>"
        "<presence/>"
        "<iq type='result' id='2'>\n  text <a/>\n<b>more</b></iq>";
    static const unsigned want_n[] = {1, 3, 0, 2};
    static const size_t want_first[] = {22, 9, 0, 33};
    char in[1024];
    snprintf(in, sizeof(in), "%s%s", HDR, body);
    size_t len = strlen(in);
    for (int v = 0; v < 4; v++) {
        unsigned opts = (v & 1 ? XS_PARSER_TREE : 0) | (v & 2 ? XS_PARSER_LIBXML2_ONLY : 0);
        for (size_t cut = 0; cut <= len; cut += (cut < 200 ? 1 : 7)) {
            kids k = {0};
            xs_parser *p = NULL;
            assert_int_equal(xs_parser_new(NULL, opts, on_kids, &k, &p), 0);
            assert_int_equal(xs_parser_feed(p, in, cut, NULL), 0);
            assert_int_equal(xs_parser_feed(p, in + cut, len - cut, NULL), 0);
            xs_parser_free(p);
            assert_int_equal(k.count, 4);
            for (size_t i = 0; i < 4; i++) {
                assert_int_equal(k.n[i], want_n[i]);
                assert_int_equal(k.first[i], want_first[i]);
            }
        }
    }
}

/* Appends `n` attributes (decl: namespace declarations) of the form NAMEk='v' to s. */
static void add_attrs(char *s, size_t n, const char *name, bool decl)
{
    for (size_t k = 0; k < n; k++)
        sprintf(s + strlen(s), decl ? " %s%zu='u:%zu'" : " %s%zu='v'", name, k, k);
}

static void test_parser_attribute_limit(void **state)
{
    static const char hdr_start[] =
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'";
    char *in = malloc(16384);
    assert_non_null(in);
    for (size_t n = 64; n <= 65; n++) {
        int want = n <= 64 ? 0 : XS_ETOOBIG;
        const char *msg =
            n <= 64 ? "" : "an element has more than 64 attributes (limit --max-attrs)";
        /* Attributes on a stanza, on a child, on an empty child. */
        static const char *const shapes[][2] = {{"<message", "/>"},
                                                {"<message><body", ">x</body></message>"},
                                                {"<iq><x xmlns='urn:y'", "/></iq>"}};
        for (size_t sh = 0; sh < 3; sh++) {
            sprintf(in, "%s%s", HDR, shapes[sh][0]);
            add_attrs(in, n, "a", false); /* xmlns= is no attribute */
            strcat(in, shapes[sh][1]);
            check_error_all_splits(in, strlen(in), 0, NULL, want, n <= 64 ? NULL : msg);
        }
        /* Namespace declarations on one element, and in scope in a stanza (nested and
         * siblings: only the open elements' count). */
        sprintf(in, "%s<iq", HDR);
        add_attrs(in, n, "xmlns:p", true);
        strcat(in, "/>");
        const char *nmsg =
            "a stanza has more than 64 namespace declarations in scope (limit --max-attrs)";
        check_error_all_splits(in, strlen(in), 0, NULL, want, n <= 64 ? NULL : nmsg);
        sprintf(in, "%s<iq", HDR);
        add_attrs(in, 40, "xmlns:p", true);
        strcat(in, "><query");
        add_attrs(in, n - 41, "xmlns:q", true);
        strcat(in, " xmlns = 'urn:q'/></iq>");
        check_error_all_splits(in, strlen(in), 0, NULL, want, n <= 64 ? NULL : nmsg);
        sprintf(in, "%s<iq><a", HDR);
        add_attrs(in, 40, "xmlns:p", true);
        strcat(in, "/><b");
        add_attrs(in, 40, "xmlns:p", true);
        strcat(in, "></b><c");
        add_attrs(in, n - 40, "xmlns:p", true);
        strcat(in, "/></iq>");
        check_error_all_splits(in, strlen(in), 0, NULL, 0, NULL);
        /* The stream header: attributes, then declarations. */
        sprintf(in, "%s", hdr_start);
        add_attrs(in, n, "a", false);
        strcat(in, "><iq/>");
        check_error_all_splits(
            in, strlen(in), 0, NULL, want,
            n <= 64 ? NULL : "the stream header has more than 64 attributes (limit --max-attrs)");
        sprintf(in, "%s", hdr_start);
        add_attrs(in, n - 2, "xmlns:p", true);
        strcat(in, "><iq/>");
        check_error_all_splits(in, strlen(in), XS_PARSER_AUTO_RESTART, NULL, want,
                               n <= 64 ? NULL
                                       : "the stream header has more than 64 namespace "
                                         "declarations (limit --max-attrs)");
    }
    /* What looks like a declaration but is not, and quotes inside values. */
    xs_parser_limits lim = {.max_attrs = 2};
    const char *ok[] = {
        HDR "<iq xmlnsx='1' xmlns:a='urn:a' xmlns='urn:b' xmlx='\"'/>",
        HDR "<iq a='\"b=\"c\"' xml:lang='en'><q\nxmlns\n=\n'urn:q'\nb\n=\n'>'/></iq>",
    };
    for (size_t i = 0; i < 2; i++)
        check_error_all_splits(ok[i], strlen(ok[i]), 0, &lim, 0, NULL);
    const char *bad[] = {
        HDR "<iq xmlnsx='1' a='2' x='3'/>",
        HDR "<iq xmlns:a='urn:a'><q xmlns='urn:b'><r xmlns:c='urn:c'/></q></iq>",
    };
    for (size_t i = 0; i < 2; i++)
        check_error_all_splits(bad[i], strlen(bad[i]), 0, &lim, XS_ETOOBIG, NULL);
    free(in);
}

/* 26,000 attributes in one start tag (about 200 KB, within the stanza limit): libxml2 2.9
 * checks them pairwise, seconds of CPU each. The scanner refuses the element at the 65th
 * attribute's quote, before its '>' is read, in every way the bytes are cut. */
static void test_parser_many_attributes_refused_early(void **state)
{
    size_t n = 26000;
    char *in = malloc(strlen(HDR) + 16 + 8 * n + 32);
    assert_non_null(in);
    strcpy(in, HDR "<message");
    size_t at = strlen(in), quote65 = 0;
    for (size_t k = 0; k < n; k++) {
        at +=
            (size_t)sprintf(in + at, " %c%c%c%c=''", 'a' + (int)(k % 26), 'a' + (int)(k / 26 % 26),
                            'a' + (int)(k / 676 % 26), 'a' + (int)(k / 17576 % 26));
        if (k == 64)
            quote65 = at - 2;
    }
    strcpy(in + at, "><body>x</body></message>");
    size_t len = strlen(in);
    for (int v = 0; v < 4; v++) {
        unsigned opts = (v & 1 ? XS_PARSER_TREE : 0) | (v & 2 ? XS_PARSER_LIBXML2_ONLY : 0);
        rec r = {0};
        xs_parser *p = NULL;
        assert_int_equal(xs_parser_new(NULL, opts | XS_PARSER_RAW, on_event, &r, &p), 0);
        size_t used = 0;
        assert_int_equal(xs_parser_feed(p, in, len, &used), XS_ETOOBIG);
        assert_int_equal(r.err_offset, quote65);
        assert_int_equal(r.n_stanza, 0);
        assert_int_equal(r.last_error_kind, XS_PERR_POLICY);
        xs_parser_free(p);
        rec_free(&r);
    }
    /* Cut anywhere in its first 1,000 bytes (the 65th attribute is within them). */
    uint64_t off = check_error_all_splits(in, 1000, 0, NULL, XS_ETOOBIG,
                                          "an element has more than 64 attributes (limit "
                                          "--max-attrs)");
    assert_int_equal(off, quote65);
    free(in);
}

static void test_parser_error_position(void **state)
{
    const char in[] = HDR "\n<iq/>\n  <message><body>&bogus;</body></message>";
    rec r = {0};
    xs_parser *p = NULL;
    assert_int_equal(xs_parser_new(NULL, 0, on_event, &r, &p), 0);
    assert_int_equal(xs_parser_feed(p, in, sizeof(in) - 1, NULL), XS_ERESTRICTED);
    assert_int_equal(r.err_line, 3);
    assert_true(r.err_col >= 3);
    assert_non_null(strstr(r.last_message, "bogus"));
    xs_parser_free(p);
    rec_free(&r);

    const char cm[] = HDR "<iq/>\n\n   <!-- x -->";
    rec r2 = {0};
    assert_int_equal(xs_parser_new(NULL, 0, on_event, &r2, &p), 0);
    assert_int_equal(xs_parser_feed(p, cm, sizeof(cm) - 1, NULL), XS_ERESTRICTED);
    assert_int_equal(r2.err_line, 3);
    assert_int_equal(r2.err_col, 4);
    assert_int_equal(r2.err_offset, strlen(HDR) + 5 + 2 + 3);
    xs_parser_free(p);
    rec_free(&r2);
}

/* A trimmed parser gives libxml2's context back between stanzas and rebuilds it for the next
 * one: trees keep their inherited namespaces, errors keep their positions, and memory drops. */
static void test_parser_trim_between_stanzas(void **state)
{
    static const char hdr[] = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                              "xmlns:stream='http://etherx.jabber.org/streams' "
                              "xmlns:x='urn:example:x' to='example.test' version='1.0'>";
    rec r = {0};
    xs_parser *p = NULL;
    assert_int_equal(xs_parser_new(NULL, XS_PARSER_TREE | XS_PARSER_RAW, on_event, &r, &p), 0);
    assert_int_equal(xs_parser_trim(p), 0); /* before the header: nothing to rebuild from */
    assert_int_equal(xs_parser_feed(p, hdr, strlen(hdr), NULL), 0);
    assert_int_equal(xs_parser_feed(p, "<message id='1'><x:y/>", 22, NULL), 0);
    assert_int_equal(xs_parser_trim(p), 0); /* inside a stanza */
    assert_int_equal(xs_parser_feed(p, "</message>\n", 11, NULL), 0);
    assert_int_equal(xs_parser_trim(p), 1);
    assert_int_equal(xs_parser_trim(p), 0); /* already */
    const char st[] = "<message id='2'><x:y>t</x:y></message>";
    assert_int_equal(xs_parser_feed(p, st, sizeof(st) - 1, NULL), 0);
    assert_int_equal(r.n_stanza, 2);
    assert_int_equal(r.n_open, 1); /* the rebuild emits nothing */
    /* The copy declares the namespaces the stanza inherited from the rebuilt stream element. */
    assert_non_null(strstr(r.last_tree, "xmlns=\"jabber:client\""));
    assert_non_null(strstr(r.last_tree, "xmlns:x=\"urn:example:x\""));
    assert_non_null(strstr(r.log, "text=[t]"));
    /* An error after a trim is placed as without one (r2 below). */
    assert_int_equal(xs_parser_trim(p), 1);
    assert_int_equal(xs_parser_feed(p, "\n  <iq><x:z>&bogus;</x:z></iq>", 29, NULL),
                     XS_ERESTRICTED);
    xs_parser_free(p);

    rec r2 = {0};
    assert_int_equal(xs_parser_new(NULL, XS_PARSER_TREE | XS_PARSER_RAW, on_event, &r2, &p), 0);
    assert_int_equal(xs_parser_feed(p, hdr, strlen(hdr), NULL), 0);
    assert_int_equal(xs_parser_feed(p, "<message id='1'><x:y/></message>\n", 33, NULL), 0);
    assert_int_equal(xs_parser_feed(p, st, sizeof(st) - 1, NULL), 0);
    assert_int_equal(xs_parser_feed(p, "\n  <iq><x:z>&bogus;</x:z></iq>", 29, NULL),
                     XS_ERESTRICTED);
    assert_int_equal(r.err_line, 3);
    assert_int_equal(r.err_line, r2.err_line);
    assert_int_equal(r.err_col, r2.err_col);
    assert_int_equal(r.err_offset, r2.err_offset);
    assert_string_equal(r.last_message, r2.last_message);
    xs_parser_free(p);
    rec_free(&r);
    rec_free(&r2);

    /* check_all_splits() compares runs trimmed after every read with the plain run; make sure
     * those trims happen. */
    char in[512];
    snprintf(in, sizeof(in), "%s%s %s\n<x:q/>%s</stream:stream>", hdr, st, st, st);
    trims = 0;
    int rc = -1;
    char *log = check_all_splits(in, strlen(in), XS_PARSER_AUTO_RESTART, NULL, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(count_lines(log, "stanza #1 "), 4);
    /* At least after each of the 4 stanzas in the two byte-by-byte runs. */
    assert_true(trims >= 8);
    free(log);
}

/* xs_wf_decode() against the rules written out one byte at a time, on random strings of
 * references (valid and not), line ends, tabs and multi-byte characters, short (copied as they
 * are checked) and long (copied in runs found sixteen bytes at a time). */
static size_t decode_reference(char *out, const char *s, size_t n, xs_wf_decode_mode mode)
{
    static const struct {
        const char *ref, *to;
    } refs[] = {{"&amp;", "&"},   {"&lt;", "<"},   {"&gt;", ">"},
                {"&#65;", "A"},   {"&#x41;", "A"}, {"&#xe9;", "\xc3\xa9"},
                {"&quot;", "\""}, {"&apos;", "'"}, {"&#x1F680;", "\xf0\x9f\x9a\x80"}};
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t r;
        for (r = 0; r < sizeof(refs) / sizeof(refs[0]); r++)
            if (strncmp(s + i, refs[r].ref, strlen(refs[r].ref)) == 0 &&
                strlen(refs[r].ref) <= n - i)
                break;
        if (s[i] == '&' && r < sizeof(refs) / sizeof(refs[0])) {
            strcpy(out + k, refs[r].to);
            k += strlen(refs[r].to);
            i += strlen(refs[r].ref);
        } else if (s[i] == '\r' && mode != XS_WF_REFS) {
            out[k++] = mode == XS_WF_VALUE ? ' ' : '\n';
            i += i + 1 < n && s[i + 1] == '\n' ? 2 : 1;
        } else if ((s[i] == '\t' || s[i] == '\n') && mode == XS_WF_VALUE) {
            out[k++] = ' ';
            i++;
        } else {
            out[k++] = s[i++];
        }
    }
    out[k] = 0;
    return k;
}

static void test_parser_decode(void **state)
{
    static const char *const pieces[] = {
        "a",        "bc",      "&amp;",     "&lt;", "&#65;", "&#x41;", "&#xe9;",
        "&quot;",   "&apos;",  "&#x1F680;", "\r\n", "\r",    "\t",     "\n",
        "\xc3\xa9", "&bogus;", "&",         "&#;",  "&#x;",  "&amp",   "0123456789abcdef"};
    uint32_t seed = 7;
    for (int round = 0; round < 20000; round++) {
        char in[300], want[300], got[301];
        size_t n = 0;
        seed = seed * 1103515245u + 12345u;
        size_t target = (seed >> 16) % (round < 10000 ? 40 : 200);
        while (n < target) {
            seed = seed * 1103515245u + 12345u;
            const char *pc = pieces[(seed >> 16) % (sizeof(pieces) / sizeof(pieces[0]))];
            memcpy(in + n, pc, strlen(pc));
            n += strlen(pc);
        }
        for (int m = 0; m < 3; m++) {
            xs_wf_decode_mode mode = m == 0 ? XS_WF_TEXT : m == 1 ? XS_WF_VALUE : XS_WF_REFS;
            size_t wn = decode_reference(want, in, n, mode);
            memset(got, 'Z', sizeof(got));
            size_t gn = xs_wf_decode(got, in, n, mode);
            if (gn != wn || memcmp(got, want, wn + 1) != 0)
                print_message("mode %d: %.*s\n", m, (int)n, in);
            assert_int_equal(gn, wn);
            assert_memory_equal(got, want, wn + 1);
        }
    }
}

/* Two parsers with the same options, one on the fast path and one giving every stanza to
 * libxml2, for tests that compare them. */
static void parser_pair(unsigned opts, rec *a, rec *b, xs_parser **pa, xs_parser **pb)
{
    *a = (rec){0};
    *b = (rec){0};
    assert_int_equal(xs_parser_new(NULL, opts, on_event, a, pa), 0);
    assert_int_equal(xs_parser_new(NULL, opts | XS_PARSER_LIBXML2_ONLY, on_event, b, pb), 0);
}

/* How many stanzas the first parser of a pair should have taken the fast path for: `n`, or 0 on
 * the reference libraries (XS_REFERENCE), where there is no fast path. Only this count is a
 * fast-path property; every other check of a pair holds both ways. */
static uint64_t fast_expected(uint64_t n)
{
    return xs_reference_mode() ? 0 : n;
}

static void parser_pair_free(rec *a, rec *b, xs_parser *pa, xs_parser *pb)
{
    xs_parser_free(pa);
    xs_parser_free(pb);
    rec_free(a);
    rec_free(b);
}

/* The fast check of wf.c against libxml2: for each stanza, whether the fast check is sure, and
 * that the parser gives the same events and errors (kind and position) with the fast path as
 * with libxml2 alone. */
static void test_parser_fast_path_agrees_with_libxml2(void **state)
{
    static const struct {
        int fast; /* xs_wf_element() is sure */
        const char *xml;
    } cases[] = {
        {1, "<message to='a@b/c' id='1' type='chat'><body>hi</body></message>"},
        {1, "<presence/>"},
        {1, "<iq type='get' id=\"q\"><query xmlns='jabber:iq:roster'/></iq>"},
        {1, "<message xml:lang='en'><body>&lt;&gt;&amp;&quot;&apos; &#65;&#x1F600; ]] ></body>"
            "</message>"},
        {1, "<message><body>caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \t\r\n</body></message>"},
        {1, "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
            "<mechanism>PLAIN</mechanism></mechanisms></stream:features>"},
        {1, "<message><x:y xmlns:x='urn:x' x:a='1' b='2'><x:z/></x:y ></message>"},
        {1, "<message><a p:b='1' xmlns:p='urn:p'/></message>"},
        {1, "<iq\n type='set'\tid='1' ><c xmlns='urn:xmpp:carbons:2'/></iq>"},
        {1, "<message><body a='&#x3c;'>x&gt;y</body></message>"},
        {1, "<message id='&lt;&amp;&#233;&#x1F600;&quot;&apos;&gt;' xml:lang='de' "
            "xmlns:q='urn:q' q:x=\"a'b\" to='\xc3\xa9'/>"},
        {1, "<message id='a\tb\r\nc\rd&#10;e&#9;f\n'/>"},
        /* not sure: libxml2 decides (some are fine, most are errors) */
        {0, "<message><undeclared:x/></message>"},
        {0, "<message><a x='1' x='2'/></message>"},
        {0, "<message><a p:x='1' q:x='2' xmlns:p='urn:a' xmlns:q='urn:a'/></message>"},
        {0, "<message><a x='1'y='2'/></message>"},
        {0, "<message><a x='<'/></message>"},
        {0, "<message><body>&bogus;</body></message>"},
        {0, "<message><body>&#0;</body></message>"},
        {0, "<message><body>&#xD800;</body></message>"},
        {0, "<message><body>a]]>b</body></message>"},
        {0, "<message><body>\xc3\x28</body></message>"},
        {0, "<message><body>\xef\xbf\xbe</body></message>"},
        {0, "<message><body>\xe0\x80\xaf</body></message>"},
        {0, "<message><body>\x01</body></message>"},
        {0, "<message><b></c></message>"},
        {0, "<message><![CDATA[x]]></message>"},
        {0, "<message><caf\xc3\xa9/></message>"},
        {0, "<message><a xmlns:p=''/></message>"},
        {0, "<message><a xmlns:p='has space'/></message>"},
        {0, "<message><a xmlns:p='http://www.w3.org/2000/xmlns/'/></message>"},
        {0, "<message><xmlfoo/></message>"},
        {0, "<message xml:space='preserve'/>"},
        {0, "<message><a x=1/></message>"},
        {0, "<message><a x/></message>"},
        {0, "<message><a:b:c xmlns:a='urn:a'/></message>"},
        {0, "<message><a xmlns='http://a.b:2147483648/x'/></message>"},
        {1, "<message><a xmlns='http://a.b:999999999/x'/></message>"},
    };
    char hdr_buf[512];
    snprintf(hdr_buf, sizeof(hdr_buf), "%s", HDR);
    const xs_attr decls[] = {
        {.prefix = NULL, .uri = "jabber:client"},
        {.prefix = "stream", .uri = "http://etherx.jabber.org/streams"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *x = cases[i].xml;
        xs_wf_root root;
        int got = xs_wf_element(x, strlen(x), decls, 2, "jabber:client", &root);
        if (got != cases[i].fast) {
            fprintf(stderr, "case %zu: fast check says %d: %s\n", i, got, x);
            fail();
        }
        char in[1024];
        snprintf(in, sizeof(in), "%s%s<iq id='after'/>", hdr_buf, x);
        for (unsigned tree = 0; tree <= XS_PARSER_TREE; tree += XS_PARSER_TREE) {
            rec a, b;
            xs_parser *pa = NULL, *pb = NULL;
            parser_pair(XS_PARSER_RAW | tree, &a, &b, &pa, &pb);
            /* In one read: the fast path is for stanzas that arrive whole. */
            int ra = feed_with(pa, in, strlen(in), size_whole, NULL);
            int rb = feed_with(pb, in, strlen(in), size_whole, NULL);
            assert_int_equal(xs_parser_fast_stanzas(pb), 0);
            if (cases[i].fast)
                assert_int_equal(xs_parser_fast_stanzas(pa),
                                 fast_expected(2)); /* the case and the <iq/> after */
            assert_true(xs_parser_fast_stanzas(pa) <= 2);
            if (ra != rb || strcmp(a.log ? a.log : "", b.log ? b.log : "") != 0 ||
                a.err_line != b.err_line || a.err_col != b.err_col) {
                fprintf(stderr,
                        "case %zu differs: %s\n--- fast\n%s(%u:%u)\n--- libxml2\n%s(%u:%u)\n", i, x,
                        a.log, a.err_line, a.err_col, b.log, b.err_line, b.err_col);
                fail();
            }
            parser_pair_free(&a, &b, pa, pb);
        }
    }
}

/* A stanza cut between two reads: when every tag and text of its first part is surely fine (a
 * tag cut at the end is not looked at), it waits for its end and takes the fast path; the events
 * are those of libxml2 alone at every cut, with and without trees. A fault in the first part is
 * reported in that read already. */
static void test_parser_split_stanza_waits(void **state)
{
    static const char *const stanzas[] = {
        "<message to='a@b' type='chat'><body>hello &amp; caf\xc3\xa9 &#x1F680;</body>"
        "<active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        "<iq type='result' id='r1'><query xmlns='jabber:iq:roster'><item jid='x@y' name='X'>"
        "<group>G &gt; H</group></item></query></iq>",
        "<message><b></c></message>",
        "<message><body>a ]]> b</body></message>",
        "<message><a x='1>2' y=\"'\"/></message>",
        "<message><body>x\r\ny</body><![CDATA[z]]></message>",
        "<message><ource>\x7fMf\r\xd8U<seostamud/></ource></message>",
        "<message>ok<x/>bad\x01<y/></message>",
    };
    for (size_t i = 0; i < sizeof(stanzas) / sizeof(stanzas[0]); i++) {
        char in[1024];
        int hl = snprintf(in, sizeof(in), "%s", HDR);
        snprintf(in + hl, sizeof(in) - (size_t)hl, "%s<iq id='after'/>", stanzas[i]);
        size_t sl = strlen(stanzas[i]);
        for (size_t cut = 1; cut < sl; cut++) {
            for (unsigned tree = 0; tree <= XS_PARSER_TREE; tree += XS_PARSER_TREE) {
                rec a, b;
                xs_parser *pa = NULL, *pb = NULL;
                parser_pair(XS_PARSER_RAW | tree, &a, &b, &pa, &pb);
                size_t first = (size_t)hl + cut;
                int ra = xs_parser_feed(pa, in, first, NULL);
                int rb = xs_parser_feed(pb, in, first, NULL);
                int errors_a = a.n_error, errors_b = b.n_error;
                if (ra == 0)
                    ra = xs_parser_feed(pa, in + first, strlen(in) - first, NULL);
                if (rb == 0)
                    rb = xs_parser_feed(pb, in + first, strlen(in) - first, NULL);
                if (ra != rb || strcmp(a.log ? a.log : "", b.log ? b.log : "") != 0 ||
                    a.err_line != b.err_line || a.err_col != b.err_col || errors_a < errors_b) {
                    fprintf(stderr, "stanza %zu cut at %zu differs\n--- fast\n%s--- libxml2\n%s", i,
                            cut, a.log, b.log);
                    fail();
                }
                /* The well-formed ones wait unless cut inside a character or a reference
                 * (then the check is not sure of the text's end and libxml2 takes it). */
                const char *st = stanzas[i];
                const char *amp = NULL;
                for (size_t k = 0; k < cut; k++)
                    amp = st[k] == '&' ? st + k : st[k] == ';' ? NULL : amp;
                bool clean = (st[cut] & 0xC0) != 0x80 && amp == NULL;
                if (i < 2 && clean)
                    assert_int_equal(xs_parser_fast_stanzas(pa), fast_expected(2));
                parser_pair_free(&a, &b, pa, pb);
            }
        }
    }
}

/* A stream header that declares the default namespace empty (xmlns=''): its stanzas are in no
 * namespace, in the fast path's trees as in libxml2's. */
static void test_parser_fast_path_empty_default_ns(void **state)
{
    static const char in[] =
        "<stream:stream xmlns='' xmlns:stream='http://etherx.jabber.org/streams' to='x'>"
        "<message a='1'><body>hi</body><c xmlns='urn:c'><d/></c></message><iq/>";
    for (unsigned tree = 0; tree <= XS_PARSER_TREE; tree += XS_PARSER_TREE) {
        rec a, b;
        xs_parser *pa = NULL, *pb = NULL;
        parser_pair(XS_PARSER_RAW | tree, &a, &b, &pa, &pb);
        assert_int_equal(xs_parser_feed(pa, in, sizeof(in) - 1, NULL), 0);
        assert_int_equal(xs_parser_feed(pb, in, sizeof(in) - 1, NULL), 0);
        assert_int_equal(xs_parser_fast_stanzas(pa), fast_expected(2));
        if (strcmp(a.log, b.log) != 0)
            fprintf(stderr, "--- fast\n%s--- libxml2\n%s", a.log, b.log);
        assert_string_equal(a.log, b.log);
        parser_pair_free(&a, &b, pa, pb);
    }
}

static void test_parser_sasl2_does_not_restart(void **state)
{
    /* XEP-0388: authentication without a stream restart; stanzas continue in the same stream. */
    const char in[] = HDR "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'>"
                          "<initial-response>AGFsaWNlAHB3</initial-response></authenticate>"
                          "<message><body>x</body></message>";
    int rc = 0;
    char *log = check_all_splits(in, sizeof(in) - 1, XS_PARSER_AUTO_RESTART, NULL, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(count_lines(log, "open "), 1);
    assert_int_equal(count_lines(log, "stanza #1 "), 2);
    free(log);
}

static void test_parser_restart_without_declaration(void **state)
{
    const char in[] =
        HDR "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AA==</auth>" HDR
            "<iq type='set' id='b'/>";
    int rc = 0;
    char *log =
        check_all_splits(in, sizeof(in) - 1, XS_PARSER_AUTO_RESTART | XS_PARSER_TREE, NULL, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(count_lines(log, "open "), 2);
    assert_non_null(strstr(log, "stanza #2 "));
    free(log);
    /* Without auto-restart a second header inside the stream is just an unknown stanza
     * that never closes: the stream goes on until the caller resets it. */
}

static void test_parser_many_unique_names_bounded(void **state)
{
    /* A peer inventing element names forever: bounded by libxml2's dictionary limit. (The fast
     * path of wf.c keeps no names: nothing grows there.) */
    rec r = {0};
    xs_parser *p = NULL;
    assert_int_equal(xs_parser_new(NULL, XS_PARSER_LIBXML2_ONLY, on_event, &r, &p), 0);
    assert_int_equal(xs_parser_feed(p, HDR, strlen(HDR), NULL), 0);
    char st[128];
    int rc = 0;
    for (int i = 0; i < 200000 && rc == 0; i++) {
        int n = snprintf(st, sizeof(st), "<x%08dxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx/>", i);
        rc = xs_parser_feed(p, st, (size_t)n, NULL);
    }
    assert_int_not_equal(rc, 0);
    xs_parser_free(p);
    rec_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser_c2s_session_capture),
        cmocka_unit_test(test_parser_s2c_session_capture),
        cmocka_unit_test(test_parser_byte_spans_are_exact),
        cmocka_unit_test(test_parser_namespaces_resolved),
        cmocka_unit_test(test_parser_copy_declares_default_namespace),
        cmocka_unit_test(test_parser_utf8_split_across_reads),
        cmocka_unit_test(test_parser_gt_in_attribute_and_cdata),
        cmocka_unit_test(test_parser_keepalive_passes_at_once),
        cmocka_unit_test(test_parser_pause_and_reset_at_exact_byte),
        cmocka_unit_test(test_parser_stream_close_and_after),
        cmocka_unit_test(test_parser_data_after_stream_close),
        cmocka_unit_test(test_parser_refuses_restricted_and_malformed),
        cmocka_unit_test(test_parser_nul_byte_refused),
        cmocka_unit_test(test_parser_billion_laughs_refused_at_once),
        cmocka_unit_test(test_parser_stanza_size_limit),
        cmocka_unit_test(test_parser_default_stanza_limit_is_bounded),
        cmocka_unit_test(test_parser_depth_limit),
        cmocka_unit_test(test_parser_attribute_limit),
        cmocka_unit_test(test_parser_counts_children),
        cmocka_unit_test(test_parser_many_attributes_refused_early),
        cmocka_unit_test(test_parser_error_position),
        cmocka_unit_test(test_parser_trim_between_stanzas),
        cmocka_unit_test(test_parser_fast_path_agrees_with_libxml2),
        cmocka_unit_test(test_parser_decode),
        cmocka_unit_test(test_parser_split_stanza_waits),
        cmocka_unit_test(test_parser_fast_path_empty_default_ns),
        cmocka_unit_test(test_parser_sasl2_does_not_restart),
        cmocka_unit_test(test_parser_restart_without_declaration),
        cmocka_unit_test(test_parser_many_unique_names_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
