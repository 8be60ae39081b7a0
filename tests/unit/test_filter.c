/* Unit tests of the filter language (filters/filter*.c) and of `xmppscope filter check`.
 *
 * Evaluation runs on real parser events: two sessions (bob's and alice's) are fed to xs_parser,
 * both directions, and every event goes through xs_obs_emit_event() to the filtering observer
 * wrapped around a recorder, exactly as the proxy and inspect do. Each scenario runs four ways:
 * with and without the parser's trees (without, text: and xpath: parse the stanza's bytes and ns:
 * scans them), and with the streams fed whole and one byte at a time; all four must record the
 * same events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <libxml/parser.h>

#include "failalloc.h"
#include "filters/filter.h"
#include "filters/filter_obs.h"
#include "inspect/annot.h"
#include "inspect/error.h"
#include "inspect/observer.h"
#include "inspect/parser.h"
#include "proxy/cmd/filter_cmd.h"

#define NS_STREAM "xmlns:stream='http://etherx.jabber.org/streams'"
#define C2S_HEADER                                                                                 \
    "<stream:stream xmlns='jabber:client' " NS_STREAM " to='example.test' version='1.0'>"
#define S2C_HEADER                                                                                 \
    "<stream:stream xmlns='jabber:client' " NS_STREAM " from='example.test' id='s1' "              \
    "version='1.0'>"
#define BIND_SET(id)                                                                               \
    "<iq type='set' id='" id "'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"                   \
    "<resource>r</resource></bind></iq>"
#define BIND_RESULT(id, jid)                                                                       \
    "<iq type='result' id='" id "'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>" jid       \
    "</jid></bind></iq>"

/* ---- parsing --------------------------------------------------------------------------------- */

static xs_filter *compile(const char *expr)
{
    xs_filter *f = NULL;
    xs_filter_error err;
    int rc = xs_filter_parse(expr, &f, &err);
    if (rc != 0)
        print_message("unexpected error in '%s': column %u: %s\n", expr, err.column, err.message);
    assert_int_equal(rc, 0);
    assert_non_null(f);
    return f;
}

static char *normalised(const char *expr)
{
    xs_filter *f = compile(expr);
    xs_buf b;
    xs_buf_init(&b, 0);
    assert_int_equal(xs_filter_format(f, &b), 0);
    xs_filter_free(f);
    return xs_buf_take(&b, NULL);
}

static void test_filter_normalised_form(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"message", "message"},
        {"  MESSAGE  ", "message"},
        {"jid:bob@example.test message", "jid:bob@example.test and message"},
        {"message or iq and not type:result", "message or iq and not type:result"},
        {"(message or iq) and type:get", "(message or iq) and type:get"},
        {"not (message or presence)", "not (message or presence)"},
        {"not not iq", "not not iq"},
        {"a:b", NULL}, /* unknown key: below */
        {"(((message)))", "message"},
        {"message and (iq and presence)", "message and (iq and presence)"},
        {"message or (iq or presence)", "message or (iq or presence)"},
        {"(message or iq) or presence", "message or iq or presence"},
        {"ns:sm", "ns:urn:xmpp:sm:3"},
        {"ns:roster", "ns:jabber:iq:roster"},
        {"ns:urn:x:y", "ns:urn:x:y"},
        {"text:\"Good  Morning\"", "text:\"good  morning\""},
        {"text:\"say \\\"hi\\\" \\\\o/\"", "text:\"say \\\"hi\\\" \\\\o/\""},
        {"xpath:/message[not(body)] or (jid:a@b/c)", "xpath:\"/message[not(body)]\" or jid:a@b/c"},
        {"xpath:\"/iq[@type='get']\"", "xpath:/iq[@type='get']"},
        {"check check:iq-unanswered", "check and check:iq-unanswered"},
        {"dir:c2s session:7 id:x tag:spam from:a@b to:b", "dir:c2s and session:7 and id:x and "
                                                          "tag:spam and from:a@b and to:b"},
        {"Type:error AND NOT From:x@y", "type:error and not from:x@y"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cases[i][1] == NULL)
            continue;
        char *n = normalised(cases[i][0]);
        if (strcmp(n, cases[i][1]) != 0)
            print_message("'%s' gave '%s', not '%s'\n", cases[i][0], n, cases[i][1]);
        assert_string_equal(n, cases[i][1]);
        /* The normalised form reads back to itself. */
        char *again = normalised(n);
        assert_string_equal(again, n);
        free(again);
        free(n);
    }
}

static void expect_error(const char *expr, unsigned column, const char *part)
{
    xs_filter *f = (xs_filter *)1;
    xs_filter_error err;
    int rc = xs_filter_parse(expr, &f, &err);
    if (rc != XS_EPARSE || err.column != column || strstr(err.message, part) == NULL)
        print_message("'%s': rc %d column %u '%s'; expected column %u with '%s'\n", expr, rc,
                      err.column, err.message, column, part);
    assert_int_equal(rc, XS_EPARSE);
    assert_null(f);
    assert_int_equal(err.column, column);
    assert_non_null(strstr(err.message, part));
}

static void test_filter_errors_and_columns(void **state)
{
    (void)state;
    expect_error("", 1, "empty");
    expect_error("   ", 1, "empty");
    expect_error("message and", 12, "after 'and'");
    expect_error("message or", 11, "after 'or'");
    expect_error("not", 4, "after 'not'");
    expect_error("(message", 9, "close the '(' at column 1");
    expect_error("jid:bob@example.test and (message", 34, "close the '(' at column 26");
    expect_error("message )", 9, "unexpected ')'");
    expect_error("()", 2, "after '('");
    expect_error("and message", 1, "at the start");
    expect_error("foo", 1, "unknown word 'foo'");
    expect_error("message bob@example.test", 9, "a JID needs a key");
    expect_error("color:red", 1, "unknown key 'color:'");
    expect_error("jid:", 5, "expected a value after 'jid:'");
    expect_error("text:\"\"", 6, "expected a value after 'text:'");
    expect_error("text:\"open", 11, "expected '\"' to close the value that starts at column 6");
    expect_error("\"quoted\"", 1, "needs a key");
    expect_error("dir:up", 5, "expected c2s or s2c");
    expect_error("jid:@example.test", 5, "not a JID");
    expect_error("jid:bob@", 5, "not a JID");
    expect_error("to:bob@example.test/", 4, "not a JID");
    expect_error("ns:nosuchprefix", 4, "unknown namespace prefix 'nosuchprefix'");
    expect_error("check:Bad!", 10, "check id");
    /* Columns count characters, not bytes. */
    expect_error("text:\xc3\xa9t\xc3\xa9 fo", 10, "unknown word 'fo'");
    expect_error("message \xff", 9, "invalid UTF-8");
    expect_error("message \x01", 9, "control character");
    /* XPath errors point into the XPath. */
    expect_error("iq xpath:\"/message[foo:bar]\"", 20, "unknown namespace prefix 'foo'");
    expect_error("xpath:\"/message[[\"", 18, "in the XPath");
    expect_error("xpath:\"/message #x\"", 17, "'#'");
    expect_error("xpath:\"/message\\\\ \"", 16, "in the XPath");
}

/* The limits: at the limit accepted, one past it refused with the column where it was passed. */
static void test_filter_limits(void **state)
{
    (void)state;
    char buf[XS_FILTER_MAX_LEN + 64];

    /* Nesting: XS_FILTER_MAX_DEPTH levels of '(' (or 'not'). */
    size_t n = 0;
    for (unsigned i = 0; i < XS_FILTER_MAX_DEPTH; i++)
        buf[n++] = '(';
    n += (size_t)sprintf(buf + n, "iq");
    for (unsigned i = 0; i < XS_FILTER_MAX_DEPTH; i++)
        buf[n++] = ')';
    buf[n] = 0;
    xs_filter_free(compile(buf));
    memmove(buf + 1, buf, n + 1);
    buf[0] = '(';
    strcat(buf, ")");
    expect_error(buf, XS_FILTER_MAX_DEPTH + 1, "nested too deeply");
    n = 0;
    for (unsigned i = 0; i <= XS_FILTER_MAX_DEPTH; i++)
        n += (size_t)sprintf(buf + n, "not ");
    sprintf(buf + n, "iq");
    expect_error(buf, 4 * XS_FILTER_MAX_DEPTH + 1, "nested too deeply");

    /* Length: XS_FILTER_MAX_LEN bytes. */
    memset(buf, ' ', XS_FILTER_MAX_LEN);
    memcpy(buf, "iq", 2);
    buf[XS_FILTER_MAX_LEN] = 0;
    xs_filter_free(compile(buf));
    buf[XS_FILTER_MAX_LEN] = ' ';
    buf[XS_FILTER_MAX_LEN + 1] = 0;
    expect_error(buf, XS_FILTER_MAX_LEN + 1, "longer than");

    /* Atoms. */
    n = 0;
    for (unsigned i = 0; i < XS_FILTER_MAX_ATOMS; i++)
        n += (size_t)sprintf(buf + n, "iq ");
    buf[n] = 0;
    xs_filter_free(compile(buf));
    sprintf(buf + n, "message");
    expect_error(buf, (unsigned)n + 1, "too many atoms");

    /* xpath: atoms. */
    n = 0;
    for (unsigned i = 0; i < XS_FILTER_MAX_XPATHS; i++)
        n += (size_t)sprintf(buf + n, "xpath:/iq ");
    buf[n] = 0;
    xs_filter_free(compile(buf));
    sprintf(buf + n, "xpath:/iq");
    expect_error(buf, (unsigned)n + 1, "too many xpath");
}

/* ---- evaluation on parser events ------------------------------------------------------------- */

typedef enum step_kind { S_BYTES, S_NOTE, S_CLOSED, S_TLS, S_END } step_kind;

typedef struct step {
    step_kind kind;
    const char *session;
    const char *dir;  /* "c2s" / "s2c" (S_BYTES, S_TLS) */
    const char *text; /* the bytes, or the note's text */
    const char *level;
    const char *tag; /* a rule tagged every stanza of these bytes with it */
} step;

#define BYTES(s, d, x)                                                                             \
    {                                                                                              \
        S_BYTES, s, d, x, NULL, NULL                                                               \
    }
#define TAGGED(s, d, x, t)                                                                         \
    {                                                                                              \
        S_BYTES, s, d, x, NULL, t                                                                  \
    }

/* Bob (session 1) and alice (session 2) log in and chat; carol is not connected. */
static const step chat[] = {
    BYTES("1", "c2s", C2S_HEADER),
    BYTES("1", "s2c", S2C_HEADER),
    {S_NOTE, "1", NULL, "session 1 from 127.0.0.1", "info", NULL},
    BYTES("1", "c2s", BIND_SET("b1")),
    BYTES("1", "s2c", BIND_RESULT("b1", "bob@example.test/phone")),
    BYTES("2", "c2s", C2S_HEADER),
    BYTES("2", "s2c", S2C_HEADER),
    BYTES("2", "c2s", BIND_SET("b2")),
    BYTES("2", "s2c", BIND_RESULT("b2", "Alice@Example.test/pc")),
    {S_NOTE, "1", NULL, "bob is bound", "info", NULL},
    {S_NOTE, "2", NULL, "alice's log is slow", "warn", NULL},
    BYTES("1", "c2s",
          "<message to='alice@example.test' id='m1' type='chat'><body>Hello Alice</body>"
          "</message>"),
    BYTES("2", "s2c",
          "<message from='bob@example.test/phone' to='alice@example.test/pc' id='m1d' "
          "type='chat'><body>Hello Alice</body></message>"),
    BYTES("2", "c2s",
          "<message to='carol@example.test' id='m3'><body>secret plans</body>"
          "<x:data xmlns:x='urn:example:data' x:k='v'>a &amp; b</x:data></message>"),
    BYTES("2", "c2s",
          "<message to='bob@example.test' id='m4' type='chat'><body>hello bob</body></message>"),
    BYTES("1", "s2c",
          "<message from='alice@example.test/pc' to='bob@example.test/phone' id='m4d' "
          "type='chat'><body>hello bob, caf\xc3\xa9 <![CDATA[1<2]]> AAAB</body></message>"),
    BYTES("1", "c2s", "<presence id='p1'/>"),
    BYTES("1", "s2c", "<presence from='alice@example.test/pc' id='p2' type='unavailable'/>"),
    BYTES("1", "c2s", "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>"),
    BYTES("1", "s2c", "<iq type='result' id='r1'><query xmlns='jabber:iq:roster'/></iq>"),
    TAGGED("2", "c2s",
           "<message to='bob@example.test' id='m5'><body>buy now</body>"
           "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
           "spam"),
    BYTES("2", "c2s", "<r xmlns='urn:xmpp:sm:3'/>"),
    BYTES("1", "c2s",
          "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
          "AGJvYgBzZWNyZXRwYXNz</auth>"),
    {S_TLS, "1", NULL, NULL, NULL, NULL},
    BYTES("1", "c2s", "</stream:stream>"),
    {S_CLOSED, "1", NULL, "bob left", "info", NULL},
    {S_END, NULL, NULL, NULL, NULL, NULL},
};

typedef struct recorder {
    char out[4096];
    size_t len;
    const char *flag_id; /* the analyser flags the stanza with this id */
} recorder;

static void record(recorder *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void record(recorder *r, const char *fmt, ...)
{
    if (r->len > 0 && r->len < sizeof(r->out) - 1)
        r->out[r->len++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->out + r->len, sizeof(r->out) - r->len, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof(r->out) - r->len);
    r->len += (size_t)n;
}

static const char *id_of(const xs_event *ev)
{
    for (size_t i = 0; i < ev->n_attrs; i++)
        if (ev->attrs[i].prefix == NULL && strcmp(ev->attrs[i].name, "id") == 0)
            return ev->attrs[i].value;
    return NULL;
}

/* What passed, one word each: "1>m1" (session 1, c2s, the stanza of id m1), "2<open" (a stream
 * header of session 2, s2c), "1:note", "1:tls", "1:closed", "end". */
static int rec_event(void *ctx, const xs_obs_event *oe)
{
    recorder *r = ctx;
    const char *s = oe->meta != NULL && oe->meta->session != NULL ? oe->meta->session : "-";
    const char *d = oe->meta != NULL && oe->meta->direction != NULL
                        ? (strcmp(oe->meta->direction, "c2s") == 0 ? ">" : "<")
                        : "?";
    switch (oe->kind) {
    case XS_OBS_PARSED: {
        const xs_event *ev = oe->ev;
        const char *id = ev->kind == XS_EV_STANZA ? id_of(ev) : NULL;
        const char *what = ev->kind == XS_EV_STREAM_OPEN    ? "open"
                           : ev->kind == XS_EV_STREAM_CLOSE ? "close"
                           : ev->kind == XS_EV_KEEPALIVE    ? "ka"
                           : ev->kind == XS_EV_ERROR        ? "error"
                           : id != NULL                     ? id
                                                            : ev->name;
        record(r, "%s%s%s", s, d, what);
        break;
    }
    case XS_OBS_NOTE:
        record(r, "%s:%s", s, oe->level);
        break;
    case XS_OBS_TLS_UP:
        record(r, "%s:tls", s);
        break;
    case XS_OBS_CLOSED:
        record(r, oe->meta != NULL && oe->meta->session != NULL ? "%s:closed" : "end", s);
        break;
    case XS_OBS_TICK:
        record(r, "%s:tick", s);
        break;
    }
    return 0;
}

/* An analyser: flags the stanza whose id is r->flag_id with the check "test-flag". */
static void rec_annotate(void *ctx, const xs_obs_event *oe, xs_annot *annot)
{
    recorder *r = ctx;
    if (r->flag_id == NULL || oe->kind != XS_OBS_PARSED || oe->ev->kind != XS_EV_STANZA)
        return;
    const char *id = id_of(oe->ev);
    if (id != NULL && strcmp(id, r->flag_id) == 0)
        xs_annot_check(annot, "test-flag", "RFC 0000", "flagged for the test");
}

typedef struct feeder {
    xs_observer obs[2];
    const char *session, *dir;
    const char *tag;
} feeder;

static int on_parsed(void *user, const xs_event *ev)
{
    feeder *fd = user;
    xs_print_rule rule = {.rule = "t", .action = "tag", .detail = fd->tag};
    xs_print_meta meta = {.session = fd->session, .direction = fd->dir};
    if (fd->tag != NULL && ev->kind == XS_EV_STANZA) {
        meta.rules = &rule;
        meta.n_rules = 1;
    }
    assert_int_equal(xs_obs_emit_event(fd->obs, 2, &meta, ev, 0), 0);
    return 0;
}

/* Runs the steps through a filtering observer; returns what passed (malloc'd). */
static char *run_steps(const step *steps, const char *expr, unsigned flags, bool tree, size_t chunk,
                       const char *flag_id)
{
    xs_filter *f = compile(expr);
    recorder rec = {.flag_id = flag_id};
    xs_observer inner = {.on_event = rec_event, .ctx = &rec, .name = "recorder"};
    xs_filter_obs *fo = NULL;
    assert_int_equal(xs_filter_obs_new(&inner, f, flags, &fo), 0);
    feeder fd = {0};
    fd.obs[0] = (xs_observer){.annotate = rec_annotate, .ctx = &rec, .name = "analyser"};
    fd.obs[1] = xs_filter_observer(fo);
    assert_true(fd.obs[1].needs_tree == 0);
    xs_parser *parsers[4] = {0}; /* session 1 c2s, s2c, session 2 c2s, s2c */
    unsigned opts = XS_PARSER_RAW | (tree ? XS_PARSER_TREE : 0);
    for (const step *s = steps; s->kind != S_END; s++) {
        xs_print_meta meta = {.session = s->session, .direction = s->dir};
        xs_obs_event oe = {.meta = &meta, .level = s->level, .text = s->text};
        if (s->kind == S_BYTES) {
            size_t k = (size_t)(s->session[0] - '1') * 2 + (strcmp(s->dir, "s2c") == 0);
            if (parsers[k] == NULL)
                assert_int_equal(xs_parser_new(NULL, opts, on_parsed, &fd, &parsers[k]), 0);
            fd.session = s->session;
            fd.dir = s->dir;
            fd.tag = s->tag;
            size_t len = strlen(s->text), piece = chunk ? chunk : len;
            for (size_t at = 0; at < len; at += piece)
                assert_int_equal(xs_parser_feed(parsers[k], s->text + at,
                                                len - at < piece ? len - at : piece, NULL),
                                 0);
            continue;
        }
        oe.kind = s->kind == S_NOTE  ? XS_OBS_NOTE
                  : s->kind == S_TLS ? XS_OBS_TLS_UP
                                     : XS_OBS_CLOSED;
        assert_int_equal(xs_obs_emit_other(fd.obs, 2, &oe), 0);
    }
    xs_print_meta endm = {.untimed = 1};
    xs_obs_event end = {.kind = XS_OBS_CLOSED, .meta = &endm};
    assert_int_equal(xs_obs_emit_other(fd.obs, 2, &end), 0);
    assert_int_equal(xs_filter_obs_sessions(fo), 0);
    for (int i = 0; i < 4; i++)
        xs_parser_free(parsers[i]);
    xs_filter_obs_free(fo);
    xs_filter_free(f);
    return strdup(rec.out);
}

/* What passes the filter `expr`, the same four ways (trees or not, whole or byte by byte). */
static void expect_passes(const char *expr, const char *expected)
{
    char *first = NULL;
    for (int way = 0; way < 4; way++) {
        char *got = run_steps(chat, expr, 0, way & 1, way & 2 ? 1 : 0, "m3");
        if (strcmp(got, expected) != 0)
            print_message("filter '%s' (%s, %s):\n  got      %s\n  expected %s\n", expr,
                          way & 1 ? "trees" : "no trees", way & 2 ? "byte by byte" : "whole", got,
                          expected);
        assert_string_equal(got, expected);
        if (first == NULL)
            first = got;
        else
            free(got);
    }
    free(first);
}

/* Every atom on the chat. Warnings (2:warn) and the end of the input always pass. */
static void test_filter_atoms(void **state)
{
    (void)state;
    expect_passes("message", "2:warn 1>m1 2<m1d 2>m3 2>m4 1<m4d 2>m5 end");
    expect_passes("presence", "2:warn 1>p1 1<p2 end");
    expect_passes("iq", "1>b1 1<b1 2>b2 2<b2 2:warn 1>r1 1<r1 end");
    expect_passes("type:chat", "2:warn 1>m1 2<m1d 2>m4 1<m4d end");
    expect_passes("type:normal", "2:warn 2>m3 2>m5 end");
    expect_passes("type:available", "2:warn 1>p1 end");
    expect_passes("type:unavailable or type:result", "1<b1 2<b2 2:warn 1<p2 1<r1 end");
    expect_passes("id:m4", "2:warn 2>m4 end");
    expect_passes("from:alice@example.test", "2<b2 2:warn 2>m3 2>m4 1<m4d 1<p2 2>m5 2>r end");
    expect_passes("from:alice@example.test/pc", "2:warn 2>m3 2>m4 1<m4d 1<p2 2>m5 2>r end");
    expect_passes("from:alice@example.test/PC", "2:warn end");
    expect_passes("to:CAROL@example.test", "2:warn 2>m3 end");
    expect_passes("to:example.test", "2:warn end");
    expect_passes("ns:roster", "2:warn 1>r1 1<r1 end");
    expect_passes("ns:urn:example:data", "2:warn 2>m3 end");
    expect_passes("ns:cs", "2:warn 2>m5 end");
    expect_passes("ns:sm", "2:warn 2>r end");
    expect_passes("ns:sasl", "2:warn 1>auth end");
    expect_passes("dir:s2c and message", "2:warn 2<m1d 1<m4d end");
    expect_passes("session:2 and message", "2:warn 2<m1d 2>m3 2>m4 2>m5 end");
    expect_passes("text:hello", "2:warn 1>m1 2<m1d 2>m4 1<m4d end");
    expect_passes("text:\"HELLO ALICE\"", "2:warn 1>m1 2<m1d end");
    expect_passes("text:caf\xc3\xa9", "2:warn 1<m4d end");
    expect_passes("text:\"1<2\"", "2:warn 1<m4d end");      /* in a CDATA section */
    expect_passes("text:\"1<2 aaab\"", "2:warn 1<m4d end"); /* text then CDATA then text */
    expect_passes("text:aab", "2:warn 1<m4d end");          /* KMP: after "aa" comes "aab" */
    expect_passes("text:\"a & b\"", "2:warn 2>m3 end");
    expect_passes("text:plansa", "2:warn end"); /* not across elements */
    /* The SASL payload is masked before any observer sees it: no text of it matches. */
    expect_passes("text:AGJvYgBzZWNyZXRwYXNz", "2:warn end");
    expect_passes("tag:spam", "2:warn 2>m5 end");
    expect_passes("check", "2:warn 2>m3 end");
    expect_passes("check:test-flag", "2:warn 2>m3 end");
    expect_passes("check:other", "2:warn end");
    expect_passes("xpath:\"/message[body='hello bob']\"", "2:warn 2>m4 end");
    expect_passes("xpath:\"/message/cs:composing\"", "2:warn 2>m5 end");
    /* Unprefixed names are the stream's content namespace, with a tree or from the bytes: the
     * stream management <r/> is no jabber:client r (found by fuzz_filter). */
    expect_passes("xpath:/r", "2:warn end");
    expect_passes("xpath:\"/iq/bind:bind/bind:jid\"", "1<b1 2<b2 2:warn end");
    expect_passes("xpath:\"count(/message/*) > 1\"", "2:warn 2>m3 2>m5 end");
}

/* A client's stanza carries no `from`: the JID its session was bound to stands for it. */
static void test_filter_bound_jid(void **state)
{
    (void)state;
    /* Bob's messages, both ways, on both sessions; not alice's message to carol. */
    expect_passes("jid:bob@example.test and message", "2:warn 1>m1 2<m1d 2>m4 1<m4d 2>m5 end");
    expect_passes("jid:bob@example.test message", "2:warn 1>m1 2<m1d 2>m4 1<m4d 2>m5 end");
    /* Alice's account, bound as Alice@Example.test (case does not matter in the bare part). */
    expect_passes("from:alice@example.test and message", "2:warn 2>m3 2>m4 1<m4d 2>m5 end");
    /* A client's stanza without `to` goes to its own account; the server's without `to` goes to
     * the client. */
    expect_passes("to:bob@example.test and iq", "1<b1 2:warn 1>r1 1<r1 end");
    expect_passes("to:bob@example.test/phone and iq", "1<b1 2:warn 1<r1 end");
    /* Events other than stanzas of bob's session once it is bound: the info note after the bind,
     * not the one before; its TLS, its stream close and its end. */
    expect_passes("jid:bob@example.test and not message",
                  "1<b1 1:info 2:warn 1>p1 1<p2 1>r1 1<r1 1>auth 1:tls 1>close 1:closed end");
}

/* Events other than stanzas: facts where an atom asks for one, the unknown where it cannot. */
static void test_filter_other_events(void **state)
{
    (void)state;
    expect_passes("session:1 and not iq and not message",
                  "1>open 1<open 1:info 1:info 2:warn 1>p1 1<p2 1>auth 1:tls 1>close 1:closed end");
    expect_passes("dir:c2s and not message and not iq",
                  "1>open 2>open 2:warn 1>p1 2>r 1>auth 1>close end");
    /* "not message" says yes to every event that is not a message, even before any bind. */
    expect_passes("not (message or iq or presence)",
                  "1>open 1<open 1:info 2>open 2<open 1:info 2:warn 2>r 1>auth 1:tls 1>close "
                  "1:closed end");
    /* Unknown before the bind: the first note of session 1 and the stream headers do not
     * pass "not jid:alice@...", later events of bob's session do. */
    expect_passes("not jid:alice@example.test and not message and not iq",
                  "1:info 2:warn 1>p1 1>auth 1:tls 1>close 1:closed end");
    /* A log keeps every stream header, whatever the filter (XS_FILTER_OBS_STREAMS). */
    char *got = run_steps(chat, "id:m4", XS_FILTER_OBS_STREAMS, true, 0, NULL);
    assert_string_equal(got, "1>open 1<open 2>open 2<open 2:warn 2>m4 end");
    free(got);
}

/* Before the bind, the identity a SASL exchange claimed stands for the session once the server
 * said <success/>: PLAIN's or SCRAM's authzid, or its authcid at the stream's domain. `jid` is
 * the account expected to be adopted (adopted) or not (!adopted). */
static void expect_identity(const char *mech, const char *auth, const char *outcome,
                            const char *jid, bool adopted)
{
    char c2s[512], filter[128];
    snprintf(c2s, sizeof(c2s),
             "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='%s'>%s</auth>", mech, auth);
    const step steps[] = {
        BYTES("1", "c2s", C2S_HEADER),
        BYTES("1", "s2c", S2C_HEADER),
        BYTES("1", "c2s", c2s),
        BYTES("1", "s2c", outcome),
        {S_NOTE, "1", NULL, "after SASL", "info", NULL},
        BYTES("1", "c2s", "</stream:stream>"),
        {S_END, NULL, NULL, NULL, NULL, NULL},
    };
    snprintf(filter, sizeof(filter), "jid:%s", jid);
    char *got = run_steps(steps, filter, 0, false, 0, NULL);
    /* The success itself is the first event that knows the account (it has no `to`: it goes to
     * the client), then the note and the stream's end. */
    if (strcmp(got, adopted ? "1<success 1:info 1>close end" : "end") != 0)
        print_message("%s %s: %s\n", mech, auth, got);
    assert_string_equal(got, adopted ? "1<success 1:info 1>close end" : "end");
    free(got);
}

static void test_filter_sasl_identity(void **state)
{
    (void)state;
    static const char success[] = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";
    static const char failure[] =
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>";
    static const char bob_plain[] = "AGJvYgBzZWNyZXRwYXNz"; /* \0bob\0secretpass */
    expect_identity("PLAIN", bob_plain, success, "bob@example.test", true);
    expect_identity("PLAIN", bob_plain, success, "alice@example.test", false);
    /* SCRAM's n=carol. */
    expect_identity("SCRAM-SHA-1", "biwsbj1jYXJvbCxyPXh5eg==", success, "carol@example.test", true);
    /* PLAIN with an authzid: the account it acts for, not the one that logs in. */
    expect_identity("PLAIN", "ZGF2ZUBleGFtcGxlLnRlc3QAYWRtaW4AcHc=", success, "dave@example.test",
                    true);
    expect_identity("PLAIN", "ZGF2ZUBleGFtcGxlLnRlc3QAYWRtaW4AcHc=", success, "admin@example.test",
                    false);
    /* SCRAM with a=, its '=' escaped as =3D. */
    expect_identity("SCRAM-SHA-1", "eSxhPWI9M0R4QGV4YW1wbGUudGVzdCxuPWlnbm9yZWQscj0x", success,
                    "b=x@example.test", true);
    /* A claim the server refused counts for nothing; so does what is not base64, or another
     * mechanism. */
    expect_identity("PLAIN", bob_plain, failure, "bob@example.test", false);
    expect_identity("PLAIN", "!!!", success, "bob@example.test", false);
    expect_identity("EXTERNAL", bob_plain, success, "bob@example.test", false);
}

/* The session table: one entry per bound session, freed at its end, bounded. */
static void test_filter_session_table(void **state)
{
    (void)state;
    xs_filter *f = compile("message");
    recorder rec = {0};
    xs_observer inner = {.on_event = rec_event, .ctx = &rec, .name = "recorder"};
    xs_filter_obs *fo = NULL;
    assert_int_equal(xs_filter_obs_new(&inner, f, 0, &fo), 0);
    feeder fd = {0};
    fd.obs[0] = (xs_observer){.ctx = &rec, .name = "nothing"};
    fd.obs[1] = xs_filter_observer(fo);
    xs_parser *p = NULL;
    assert_int_equal(xs_parser_new(NULL, XS_PARSER_RAW, on_parsed, &fd, &p), 0);
    assert_int_equal(xs_parser_feed(p, S2C_HEADER, strlen(S2C_HEADER), NULL), 0);
    fd.dir = "s2c";
    char session[16], xml[256];
    for (int i = 0; i < 100; i++) {
        snprintf(session, sizeof(session), "%d", i);
        fd.session = session;
        int n = snprintf(xml, sizeof(xml), BIND_RESULT("b", "u%d@example.test/r"), i);
        assert_int_equal(xs_parser_feed(p, xml, (size_t)n, NULL), 0);
    }
    assert_int_equal(xs_filter_obs_sessions(fo), 100);
    assert_string_equal(xs_filter_obs_account(fo, "42"), "u42@example.test/r");
    /* A second bind (a SASL2 success) replaces the JID; a bad JID is not learnt. */
    fd.session = "42";
    static const char sasl2[] = "<success xmlns='urn:xmpp:sasl:2'><authorization-identifier>"
                                "v@example.test/s</authorization-identifier></success>";
    assert_int_equal(xs_parser_feed(p, sasl2, strlen(sasl2), NULL), 0);
    assert_string_equal(xs_filter_obs_account(fo, "42"), "v@example.test/s");
    fd.session = "x";
    static const char bad[] = BIND_RESULT("b", "not a jid");
    assert_int_equal(xs_parser_feed(p, bad, strlen(bad), NULL), 0);
    assert_null(xs_filter_obs_account(fo, "x"));
    /* A c2s bind result is not the server's word. */
    fd.dir = "c2s";
    static const char forged[] = BIND_RESULT("b", "mallory@example.test/m");
    assert_int_equal(xs_parser_feed(p, forged, strlen(forged), NULL), 0);
    assert_null(xs_filter_obs_account(fo, "x"));
    xs_print_meta meta = {.session = "42"};
    xs_obs_event closed = {.kind = XS_OBS_CLOSED, .meta = &meta};
    assert_int_equal(xs_obs_emit_other(fd.obs, 2, &closed), 0);
    assert_int_equal(xs_filter_obs_sessions(fo), 99);
    assert_null(xs_filter_obs_account(fo, "42"));
    xs_parser_free(p);
    xs_filter_obs_free(fo); /* frees the 99 left */
    xs_filter_free(f);
}

/* The wrapper hands on the inner observer's policy, debug wish and name, and the annotate pass. */
static void test_filter_observer_fields(void **state)
{
    (void)state;
    xs_filter *f = compile("text:x");
    recorder rec = {0};
    xs_observer inner = {.on_event = rec_event,
                         .annotate = rec_annotate,
                         .ctx = &rec,
                         .policy = XS_OBS_REQUIRED,
                         .debug = 1,
                         .needs_tree = 1,
                         .name = "the log"};
    xs_filter_obs *fo = NULL;
    assert_int_equal(xs_filter_obs_new(&inner, f, 0, &fo), 0);
    xs_observer o = xs_filter_observer(fo);
    assert_int_equal(o.policy, XS_OBS_REQUIRED);
    assert_int_equal(o.debug, 1);
    assert_int_equal(o.needs_tree, 1);
    assert_string_equal(o.name, "the log");
    assert_non_null(o.annotate);
    assert_ptr_equal(o.ctx, fo);
    assert_true(xs_filter_needs_tree(f));
    xs_filter_obs_free(fo);
    xs_filter_free(f);
    f = compile("jid:a@b message");
    assert_false(xs_filter_needs_tree(f));
    xs_filter_free(f);
}

/* ---- cost and allocation failure ------------------------------------------------------------- */

typedef struct cost {
    xs_filter *f;
    const char *account;
    unsigned long allocs; /* ours and libxml2's, during the evaluations */
    unsigned stanzas, yes;
} cost;

static int cost_event(void *user, const xs_event *ev)
{
    cost *c = user;
    if (ev->kind != XS_EV_STANZA)
        return 0;
    xs_annot annot;
    xs_annot_init(&annot);
    xs_print_meta meta = {.session = "1", .direction = "s2c", .annot = &annot};
    xs_obs_event oe = {.kind = XS_OBS_PARSED, .meta = &meta, .ev = ev, .annot = &annot};
    fa_arm(0, false);
    fa.paused = false;
    xs_filter_answer a = xs_filter_eval(c->f, &oe, c->account);
    fa.paused = true;
    c->allocs += fa.count;
    c->stanzas++;
    c->yes += a == XS_FILTER_YES;
    assert_true(a == XS_FILTER_YES || a == XS_FILTER_NO);
    return 0;
}

static const char cost_stream[] =
    S2C_HEADER "<message from='alice@example.test/pc' id='m1' type='chat'><body>hello</body>"
               "<active xmlns='http://jabber.org/protocol/chatstates'/></message>"
               "<presence from='alice@example.test/pc'/>"
               "<iq type='result' id='r1'><query xmlns='jabber:iq:roster'/></iq>"
               "<message from='carol@example.test/x' to='bob@example.test' type='chat'>"
               "<body>Hello</body></message>";

/* Evaluates expr on every stanza of cost_stream (with or without trees); returns the counts. */
static cost measure(const char *expr, bool tree)
{
    cost c = {.f = compile(expr), .account = "bob@example.test/phone"};
    xs_parser *p = NULL;
    fa.paused = true;
    assert_int_equal(
        xs_parser_new(NULL, XS_PARSER_RAW | (tree ? XS_PARSER_TREE : 0), cost_event, &c, &p), 0);
    assert_int_equal(xs_parser_feed(p, cost_stream, strlen(cost_stream), NULL), 0);
    xs_parser_free(p);
    xs_filter_free(c.f);
    c.f = NULL;
    fa.paused = false;
    fa_arm(0, false);
    return c;
}

/* The common atoms allocate nothing, even on stanzas that came without a tree; text: parses the
 * stanza's bytes only when there is no tree. */
static void test_filter_common_atoms_allocate_nothing(void **state)
{
    (void)state;
    static const char common[] =
        "jid:bob@example.test and message and type:chat and ns:cs and dir:s2c and session:1 "
        "and not id:x and not check and not tag:y and not from:carol@example.test or presence";
    cost c = measure(common, false);
    assert_int_equal(c.stanzas, 4);
    assert_int_equal(c.yes, 2); /* m1 (to bob: no `to`, his session) and the presence */
    assert_int_equal(c.allocs, 0);
    c = measure("text:HELLO", true);
    assert_int_equal(c.yes, 2);
    assert_int_equal(c.allocs, 0);
    c = measure("text:HELLO", false);
    assert_int_equal(c.yes, 2);
    assert_true(c.allocs > 0);
}

/* Compiles expr with the nth allocation failing, for every n (of ours alone with ours_only, else
 * libxml2's too): XS_ENOMEM and nothing, or a filter when the failure was not needed. */
static void parse_out_of_memory(const char *expr, bool ours_only)
{
    bool done = false;
    for (unsigned long n = 1; !done && n < 100000; n++) {
        xs_filter *f = NULL;
        xs_filter_error err;
        fa_arm(n, ours_only);
        int rc = xs_filter_parse(expr, &f, &err);
        bool failed = fa.failed;
        fa_arm(0, false);
        if (!failed) {
            assert_int_equal(rc, 0);
            done = true;
        } else if (rc != 0) {
            if (rc != XS_ENOMEM)
                print_message("allocation %lu: %d %s\n", n, rc, err.message);
            assert_int_equal(rc, XS_ENOMEM);
            assert_null(f);
            assert_string_equal(err.message, "out of memory");
        }
        xs_filter_free(f);
    }
    assert_true(done);
}

/* Every allocation of compiling and of the observer may fail: XS_ENOMEM, never a crash or a leak.
 * Only our allocations fail where the rules engine compiles an xpath: atom: it reports some of
 * libxml2's failures as a bad XPath. (Evaluating text: without a tree allocates only in libxml2,
 * whose 2.9.14 parser can crash on its own allocation failures under xs_fragment_parse: not
 * injected here.) */
static void test_filter_out_of_memory(void **state)
{
    (void)state;
    parse_out_of_memory("jid:a@b message or text:\"x y\" or ns:sm or (not check:iq-no-id)", false);
    parse_out_of_memory("message or xpath:\"/iq[@type='get']\" or xpath:/message/body", true);

    xs_filter *f = compile("message");
    xs_observer inner = {.name = "x"};
    xs_filter_obs *fo = NULL;
    fa_arm(1, false);
    assert_int_equal(xs_filter_obs_new(&inner, f, 0, &fo), XS_ENOMEM);
    assert_null(fo);
    fa_arm(0, false);
    xs_filter_free(f);
}

/* ---- the command ----------------------------------------------------------------------------- */

/* Runs `xmppscope filter ARGS...` with stdout and stderr captured. */
static int run_cmd(char *out, size_t outcap, char *err, size_t errcap, int argc,
                   const char *const *args)
{
    char *argv[8];
    for (int i = 0; i <= argc && i < 8; i++)
        argv[i] = (char *)args[i];
    FILE *o = tmpfile(), *e = tmpfile();
    assert_non_null(o);
    assert_non_null(e);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    dup2(fileno(o), 1);
    dup2(fileno(e), 2);
    int rc = xs_filter_cmd_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    rewind(o);
    rewind(e);
    size_t n = fread(out, 1, outcap - 1, o);
    out[n] = 0;
    n = fread(err, 1, errcap - 1, e);
    err[n] = 0;
    fclose(o);
    fclose(e);
    return rc;
}

static void test_filter_check_command(void **state)
{
    (void)state;
    char out[2048], err[2048];
    const char *const ok[] = {"filter", "check", "jid:bob@example.test", "message", NULL};
    assert_int_equal(run_cmd(out, sizeof(out), err, sizeof(err), 4, ok), 0);
    assert_string_equal(out, "jid:bob@example.test and message\n");
    assert_string_equal(err, "");

    const char *const bad[] = {"filter", "check", "jid:bob and (message", NULL};
    assert_int_equal(run_cmd(out, sizeof(out), err, sizeof(err), 3, bad), 2);
    assert_string_equal(out, "");
    assert_string_equal(err, "xmppscope filter: column 21: expected ')' to close the '(' at "
                             "column 13\n"
                             "  jid:bob and (message\n"
                             "                      ^\n");

    /* Under wide characters and escapes the caret stays under its character. */
    const char *const wide[] = {"filter", "check", "text:\"\xe4\xbd\xa0\xe5\xa5\xbd\" x", NULL};
    assert_int_equal(run_cmd(out, sizeof(out), err, sizeof(err), 3, wide), 2);
    assert_non_null(strstr(err, "\n  text:\"\xe4\xbd\xa0\xe5\xa5\xbd\" x\n"
                                "              ^\n"));
    const char *const esc[] = {"filter", "check", "text:\"a\xe2\x80\x8b\" x", NULL};
    assert_int_equal(run_cmd(out, sizeof(out), err, sizeof(err), 3, esc), 2);
    assert_non_null(strstr(err, "\n  text:\"a\\u200B\" x\n"
                                "                 ^\n"));

    const char *const none[] = {"filter", "check", NULL};
    assert_int_equal(run_cmd(out, sizeof(out), err, sizeof(err), 2, none), 2);
    const char *const other[] = {"filter", "lint", "x", NULL};
    assert_int_equal(run_cmd(out, sizeof(out), err, sizeof(err), 3, other), 2);
    assert_non_null(strstr(err, "unknown command 'lint'"));
    const char *const help[] = {"filter", "--help", NULL};
    assert_int_equal(run_cmd(out, sizeof(out), err, sizeof(err), 2, help), 0);
    assert_non_null(strstr(out, "usage: xmppscope filter check EXPR"));
}

int main(void)
{
    if (fa_install() != 0)
        return 1;
    xmlInitParser();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filter_normalised_form),
        cmocka_unit_test(test_filter_errors_and_columns),
        cmocka_unit_test(test_filter_limits),
        cmocka_unit_test(test_filter_atoms),
        cmocka_unit_test(test_filter_bound_jid),
        cmocka_unit_test(test_filter_other_events),
        cmocka_unit_test(test_filter_session_table),
        cmocka_unit_test(test_filter_sasl_identity),
        cmocka_unit_test(test_filter_observer_fields),
        cmocka_unit_test(test_filter_common_atoms_allocate_nothing),
        cmocka_unit_test(test_filter_out_of_memory),
        cmocka_unit_test(test_filter_check_command),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    xmlCleanupParser();
    return rc;
}
