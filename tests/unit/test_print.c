/* Unit tests of inspect/print.c: the pretty, compact and JSON Lines printers, and that no
 * secret reaches any of them. Events are built by hand like the parser makes them; one test runs
 * the real parser end to end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>
#include <libxml/parser.h>

#include "inspect/error.h"
#include "inspect/parser.h"
#include "inspect/print.h"
#include "inspect/redact.h"

#define NS_STREAMS "http://etherx.jabber.org/streams"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_XML "http://www.w3.org/XML/1998/namespace"
#define STREAM_HEADER                                                                              \
    "<stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS "' to='example.com' "         \
    "version='1.0' xml:lang='en'>"
#define STREAM_CLOSE "</stream:stream>"

/* "\0alice\0s3cr3t!" */
#define PLAIN_B64 "AGFsaWNlAHMzY3IzdCE="
/* "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=" */
#define SCRAM_FINAL_B64                                                                            \
    "Yz1iaXdzLHI9ZnlrbytkMmxiYkZnT05Sdjlxa3hkYXdMM3JmY05IWUpZMVpWdldWczdqLHA9djBYOHYzQnoy"         \
    "VDBDSkdiSlF5RjBYK0hJNFRzPQ=="

static const char *const secrets[] = {"s3cr3t",   PLAIN_B64,      "AGFsaWNl",
                                      "v0X8v3Bz", "djBYOHYzQnoy", "Calliope"};

/* ---- fixtures ------------------------------------------------------------------------------ */

/* A stanza event with its tree attached to the stream element, as the parser gives it. */
typedef struct stanza_fx {
    xmlDoc *doc;
    xs_event ev;
} stanza_fx;

static void stanza_init(stanza_fx *f, const char *stanza)
{
    char *doc = NULL;
    xmlNode *node;

    assert_true(asprintf(&doc, "%s%s%s", STREAM_HEADER, stanza, STREAM_CLOSE) > 0);
    memset(f, 0, sizeof(*f));
    f->doc = xmlReadMemory(doc, (int)strlen(doc), NULL, "UTF-8", XML_PARSE_NONET);
    free(doc);
    assert_non_null(f->doc);
    node = xmlDocGetRootElement(f->doc)->children;
    while (node != NULL && node->type != XML_ELEMENT_NODE)
        node = node->next;
    assert_non_null(node);
    f->ev.kind = XS_EV_STANZA;
    f->ev.offset = sizeof(STREAM_HEADER) - 1;
    f->ev.len = strlen(stanza);
    f->ev.line = 1;
    f->ev.column = (unsigned)f->ev.offset + 1;
    f->ev.stream_no = 1;
    f->ev.name = (const char *)node->name;
    f->ev.prefix = node->ns != NULL ? (const char *)node->ns->prefix : NULL;
    f->ev.ns = node->ns != NULL ? (const char *)node->ns->href : NULL;
    f->ev.node = node;
    f->ev.raw = stanza;
}

static void stanza_free(stanza_fx *f)
{
    xmlFreeDoc(f->doc);
}

static const xs_attr header_attrs[] = {
    {NULL, "to", NULL, "example.com"},
    {NULL, "version", NULL, "1.0"},
    {"xml", "lang", NS_XML, "en"},
};
static const xs_attr header_ns[] = {
    {NULL, NULL, "jabber:client", NULL},
    {"stream", NULL, NS_STREAMS, NULL},
};

static xs_event stream_open_event(void)
{
    xs_event ev = {0};

    ev.kind = XS_EV_STREAM_OPEN;
    ev.len = sizeof(STREAM_HEADER) - 1;
    ev.line = ev.column = 1;
    ev.stream_no = 1;
    ev.name = "stream";
    ev.prefix = "stream";
    ev.ns = NS_STREAMS;
    ev.attrs = header_attrs;
    ev.n_attrs = 3;
    ev.nsdecls = header_ns;
    ev.n_nsdecls = 2;
    ev.default_ns = "jabber:client";
    ev.raw = STREAM_HEADER;
    return ev;
}

static xs_event simple_event(xs_event_kind kind, uint64_t offset, const char *raw)
{
    xs_event ev = {0};

    ev.kind = kind;
    ev.offset = offset;
    ev.stream_no = 1;
    ev.raw = raw;
    ev.len = raw != NULL ? strlen(raw) : 0;
    return ev;
}

static xs_event error_event(void)
{
    xs_event ev = {0};

    ev.kind = XS_EV_ERROR;
    ev.offset = 120;
    ev.line = 3;
    ev.column = 14;
    ev.stream_no = 1;
    ev.error = XS_ENOTWF;
    ev.error_kind = XS_PERR_NOT_WELL_FORMED;
    ev.message = "mismatched end tag";
    return ev;
}

static time_t fixed_time(void)
{
    struct tm tm = {0};

    tm.tm_year = 2026 - 1900;
    tm.tm_mon = 10;
    tm.tm_mday = 24;
    tm.tm_hour = 3;
    tm.tm_min = 40;
    return timegm(&tm);
}

static xs_print_meta meta_c2s(void)
{
    xs_print_meta m = {
        .time = {fixed_time(), 123456789}, .session = "1", .direction = "c2s", .phase = "tls"};
    return m;
}

/* ---- capture ------------------------------------------------------------------------------- */

typedef struct capture {
    FILE *f;
    char *buf;
    size_t len;
    xs_printer *p;
} capture;

static void capture_open(capture *c, xs_format format, int color, int show)
{
    xs_print_options o = {format, color, show};

    c->buf = NULL;
    c->len = 0;
    c->f = open_memstream(&c->buf, &c->len);
    assert_non_null(c->f);
    assert_int_equal(xs_printer_new(c->f, &o, &c->p), 0);
}

/* Closes the stream and returns what was printed; the caller frees it. */
static char *capture_close(capture *c)
{
    xs_printer_free(c->p);
    assert_int_equal(fclose(c->f), 0);
    return c->buf;
}

static size_t count_char(const char *s, char ch)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += *s == ch;
    return n;
}

static const xs_format formats[] = {XS_FORMAT_PRETTY, XS_FORMAT_COMPACT, XS_FORMAT_JSON};

/* ---- tests --------------------------------------------------------------------------------- */

static void test_print_format_parse(void **state)
{
    xs_format f = XS_FORMAT_NONE;
    xs_print_options o = {XS_FORMAT_JSON, 0, 0};
    xs_printer *p = NULL;

    assert_int_equal(xs_format_parse("pretty", &f), 0);
    assert_int_equal(f, XS_FORMAT_PRETTY);
    assert_int_equal(xs_format_parse("compact", &f), 0);
    assert_int_equal(f, XS_FORMAT_COMPACT);
    assert_int_equal(xs_format_parse("json", &f), 0);
    assert_int_equal(f, XS_FORMAT_JSON);
    assert_int_equal(xs_format_parse("none", &f), 0);
    assert_int_equal(f, XS_FORMAT_NONE);
    assert_int_equal(xs_format_parse("JSON", &f), XS_EINVAL);
    assert_int_equal(xs_format_parse("", &f), XS_EINVAL);
    assert_int_equal(xs_format_parse(NULL, &f), XS_EINVAL);
    assert_string_equal(xs_format_name(XS_FORMAT_COMPACT), "compact");
    assert_int_equal(xs_printer_new(NULL, &o, &p), XS_EINVAL);
    assert_null(p);
    assert_int_equal(xs_printer_new(stdout, NULL, &p), XS_EINVAL);
    o.format = (xs_format)42;
    assert_int_equal(xs_printer_new(stdout, &o, &p), XS_EINVAL);
}

static void test_print_color_wanted(void **state)
{
    FILE *f = tmpfile();

    assert_non_null(f);
    /* Not a terminal: never, whatever the environment says. */
    unsetenv("NO_COLOR");
    assert_int_equal(xs_color_wanted(fileno(f)), 0);
    fclose(f);
}

static void test_print_password_never_appears(void **state)
{
    static const char *const stanzas[] = {
        "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>" PLAIN_B64 "</auth>",
        "<response xmlns='" NS_SASL "'>" SCRAM_FINAL_B64 "</response>",
        "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>\n  " PLAIN_B64
        "\n</initial-response></authenticate>",
        ("<iq type='set' id='reg2'><query xmlns='jabber:iq:register'><username>bill</username>"
         "<password>Calliope</password></query></iq>"),
    };

    for (size_t fi = 0; fi < sizeof(formats) / sizeof(formats[0]); fi++) {
        for (int color = 0; color < 2; color++) {
            for (int tree = 0; tree < 2; tree++) {
                xs_print_meta m = meta_c2s();
                capture c;
                char *out;

                capture_open(&c, formats[fi], color, 0);
                for (size_t i = 0; i < sizeof(stanzas) / sizeof(stanzas[0]); i++) {
                    stanza_fx f;
                    stanza_init(&f, stanzas[i]);
                    if (!tree)
                        f.ev.node = NULL;
                    assert_int_equal(xs_printer_event(c.p, &m, &f.ev), 0);
                    stanza_free(&f);
                }
                out = capture_close(&c);
                assert_true(strlen(out) > 100);
                for (size_t s = 0; s < sizeof(secrets) / sizeof(secrets[0]); s++) {
                    if (strstr(out, secrets[s]) != NULL)
                        fail_msg("format %s color %d tree %d shows %s:\n%s",
                                 xs_format_name(formats[fi]), color, tree, secrets[s], out);
                }
                assert_non_null(strstr(out, "alice"));
                assert_non_null(strstr(out, "***"));
                free(out);
            }
        }
    }
}

static void test_print_show_secrets(void **state)
{
    xs_print_meta m = meta_c2s();
    stanza_fx f;
    capture c;
    char *out;

    stanza_init(&f, "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>" PLAIN_B64 "</auth>");
    for (size_t fi = 0; fi < sizeof(formats) / sizeof(formats[0]); fi++) {
        capture_open(&c, formats[fi], 0, 1);
        assert_int_equal(xs_printer_event(c.p, &m, &f.ev), 0);
        out = capture_close(&c);
        assert_non_null(strstr(out, "s3cr3t!"));
        if (formats[fi] != XS_FORMAT_PRETTY)
            assert_non_null(strstr(out, PLAIN_B64));
        free(out);
    }
    stanza_free(&f);
}

/* Prints the standard sequence of events; returns how many. */
static size_t print_session(xs_printer *p, const xs_print_meta *m)
{
    xs_event open = stream_open_event(), ka = simple_event(XS_EV_KEEPALIVE, 300, " \n"),
             close = simple_event(XS_EV_STREAM_CLOSE, 302, STREAM_CLOSE), err = error_event();
    stanza_fx msg, auth;

    stanza_init(
        &msg, "<message from='juliet@example.com/balcony' to='romeo@example.net' "
              "id='ktx72v49' type='chat' xml:lang='en'>\n  <body>Art thou not Romeo,\n"
              "and a Montague?</body>\n  <thread>e0ffe42b28561960c6b12b944a092794b9683a"
              "38</thread>\n  <active xmlns='http://jabber.org/protocol/chatstates'/>\n</message>");
    stanza_init(&auth, "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>" PLAIN_B64 "</auth>");
    assert_int_equal(xs_printer_event(p, m, &open), 0);
    assert_int_equal(xs_printer_event(p, m, &auth.ev), 0);
    assert_int_equal(xs_printer_event(p, m, &msg.ev), 0);
    assert_int_equal(xs_printer_event(p, m, &ka), 0);
    assert_int_equal(xs_printer_event(p, m, &close), 0);
    assert_int_equal(xs_printer_event(p, m, &err), 0);
    assert_int_equal(xs_printer_note(p, m, "warn", "client offered channel binding\nsecond line"),
                     0);
    stanza_free(&msg);
    stanza_free(&auth);
    return 7;
}

static json_t *json_line(char **cursor)
{
    char *nl = strchr(*cursor, '\n');
    json_error_t err;
    json_t *j;

    assert_non_null(nl);
    *nl = '\0';
    j = json_loads(*cursor, 0, &err);
    if (j == NULL)
        fail_msg("invalid JSON (%s): %s", err.text, *cursor);
    *cursor = nl + 1;
    assert_true(json_is_object(j));
    return j;
}

static void assert_jstr(const json_t *o, const char *key, const char *value)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        fail_msg("key %s missing or not a string", key);
    assert_string_equal(json_string_value(v), value);
}

static void assert_jint(const json_t *o, const char *key, json_int_t value)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("key %s missing or not an integer", key);
    assert_int_equal(json_integer_value(v), value);
}

static void test_print_json_schema(void **state)
{
    xs_print_meta m = meta_c2s();
    capture c;
    char *out, *cur;
    json_t *j;
    const json_t *o;

    capture_open(&c, XS_FORMAT_JSON, 1, 0);
    print_session(c.p, &m);
    out = capture_close(&c);
    cur = out;
    assert_null(strchr(out, '\033'));

    j = json_line(&cur);
    assert_jstr(j, "time", "2026-11-24T03:40:00.123456Z");
    assert_jstr(j, "session", "1");
    assert_jstr(j, "dir", "c2s");
    assert_jstr(j, "phase", "tls");
    assert_jstr(j, "event", "stream-open");
    assert_jint(j, "stream", 1);
    assert_jint(j, "offset", 0);
    assert_jint(j, "size", (json_int_t)strlen(STREAM_HEADER));
    assert_jstr(j, "name", "stream");
    assert_jstr(j, "prefix", "stream");
    assert_jstr(j, "ns", NS_STREAMS);
    assert_jstr(j, "to", "example.com");
    assert_null(json_object_get(j, "from"));
    assert_jstr(j, "raw", STREAM_HEADER);
    o = json_object_get(j, "attrs");
    assert_int_equal(json_object_size(o), 3);
    assert_jstr(o, "to", "example.com");
    assert_jstr(o, "version", "1.0");
    assert_jstr(o, "xml:lang", "en");
    o = json_object_get(j, "namespaces");
    assert_int_equal(json_object_size(o), 2);
    assert_jstr(o, "", "jabber:client");
    assert_jstr(o, "stream", NS_STREAMS);
    json_decref(j);

    j = json_line(&cur);
    assert_jstr(j, "event", "stanza");
    assert_jstr(j, "name", "auth");
    assert_jstr(j, "ns", NS_SASL);
    assert_jstr(j, "raw", "<auth xmlns=\"" NS_SASL "\" mechanism=\"PLAIN\">***</auth>");
    assert_true(json_is_true(json_object_get(j, "redacted")));
    assert_jstr(j, "sasl", "PLAIN authzid=\"\" authcid=\"alice\" password=***");
    json_decref(j);

    j = json_line(&cur);
    assert_jstr(j, "event", "stanza");
    assert_jstr(j, "name", "message");
    assert_jstr(j, "ns", "jabber:client");
    assert_null(json_object_get(j, "prefix"));
    assert_jstr(j, "from", "juliet@example.com/balcony");
    assert_jstr(j, "to", "romeo@example.net");
    assert_jstr(j, "id", "ktx72v49");
    assert_jstr(j, "type", "chat");
    assert_jint(j, "offset", (json_int_t)strlen(STREAM_HEADER));
    assert_non_null(strstr(json_string_value(json_object_get(j, "raw")), "Art thou not Romeo,\n"));
    assert_null(json_object_get(j, "redacted"));
    assert_null(json_object_get(j, "sasl"));
    json_decref(j);

    j = json_line(&cur);
    assert_jstr(j, "event", "keepalive");
    assert_jint(j, "offset", 300);
    assert_jint(j, "size", 2);
    assert_jstr(j, "raw", " \n");
    json_decref(j);

    j = json_line(&cur);
    assert_jstr(j, "event", "stream-close");
    assert_jstr(j, "raw", STREAM_CLOSE);
    json_decref(j);

    j = json_line(&cur);
    assert_jstr(j, "event", "error");
    assert_jstr(j, "error", "XS_ENOTWF");
    assert_jstr(j, "condition", xs_parse_error_condition(XS_PERR_NOT_WELL_FORMED));
    assert_jstr(j, "message", "mismatched end tag");
    assert_jint(j, "line", 3);
    assert_jint(j, "column", 14);
    assert_jint(j, "offset", 120);
    assert_jint(j, "size", 0);
    assert_null(json_object_get(j, "raw"));
    json_decref(j);

    j = json_line(&cur);
    assert_jstr(j, "event", "note");
    assert_jstr(j, "level", "warn");
    assert_jstr(j, "message", "client offered channel binding\nsecond line");
    assert_jstr(j, "dir", "c2s");
    json_decref(j);
    assert_string_equal(cur, "");
    free(out);

    /* Offline: no direction, no phase, the file as the session. */
    {
        xs_print_meta off = {.time = {fixed_time(), 5000}, .session = "capture.xml"};
        xs_event ev = stream_open_event();

        capture_open(&c, XS_FORMAT_JSON, 0, 0);
        assert_int_equal(xs_printer_event(c.p, &off, &ev), 0);
        out = capture_close(&c);
        cur = out;
        j = json_line(&cur);
        assert_jstr(j, "time", "2026-11-24T03:40:00.000005Z");
        assert_jstr(j, "session", "capture.xml");
        assert_null(json_object_get(j, "dir"));
        assert_null(json_object_get(j, "phase"));
        json_decref(j);
        free(out);
    }
}

static void test_print_json_gs2(void **state)
{
    /* "p=tls-exporter,,n=alice,r=abc" */
    stanza_fx f;
    capture c;
    char *out, *cur;
    json_t *j;

    stanza_init(&f, "<auth xmlns='" NS_SASL "' mechanism='SCRAM-SHA-256-PLUS'>"
                    "cD10bHMtZXhwb3J0ZXIsLG49YWxpY2Uscj1hYmM=</auth>");
    capture_open(&c, XS_FORMAT_JSON, 0, 0);
    assert_int_equal(xs_printer_event(c.p, NULL, &f.ev), 0);
    out = capture_close(&c);
    cur = out;
    j = json_line(&cur);
    assert_jstr(j, "gs2", "p=tls-exporter");
    assert_null(json_object_get(j, "redacted"));
    assert_null(json_object_get(j, "session"));
    assert_non_null(strstr(json_string_value(json_object_get(j, "sasl")), "client-first"));
    json_decref(j);
    free(out);
    stanza_free(&f);
}

static void test_print_json_invalid_utf8(void **state)
{
    static const char raw[] = "<message><body>caf\xc3\xa9 \xff\xfe \xed\xa0\x80 \xc0\xaf \0 "
                              "\xe2\x82</body></message>";
    xs_print_meta m = meta_c2s();
    xs_event open = stream_open_event();
    xs_attr bad_attr[] = {{NULL, "to", NULL, "ex\xffmple"}, {NULL, "b\xc3", NULL, "x"}};
    stanza_fx f;
    capture c;
    char *out, *cur;
    json_t *j;
    const char *s;

    /* The tree is well-formed; raw is not what it was parsed from, to reach the sanitizer. */
    stanza_init(&f, "<message><body>hi</body></message>");
    f.ev.raw = raw;
    f.ev.len = sizeof(raw) - 1;
    m.session = "caf\xe9.xml";
    open.attrs = bad_attr;
    open.n_attrs = 2;
    capture_open(&c, XS_FORMAT_JSON, 0, 0);
    assert_int_equal(xs_printer_event(c.p, &m, &f.ev), 0);
    assert_int_equal(xs_printer_event(c.p, &m, &open), 0);
    assert_int_equal(xs_printer_note(c.p, &m, "error", "bad \xff byte"), 0);
    out = capture_close(&c);
    assert_int_equal(count_char(out, '\n'), 3);
    cur = out;
    j = json_line(&cur);
    s = json_string_value(json_object_get(j, "raw"));
    assert_non_null(s);
    assert_non_null(strstr(s, "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd "));
    assert_non_null(strstr(s, "</body></message>"));
    assert_int_equal(strlen(s), json_string_length(json_object_get(j, "raw")));
    assert_jstr(j, "session", "caf\xef\xbf\xbd.xml");
    json_decref(j);
    j = json_line(&cur);
    assert_jstr(j, "to", "ex\xef\xbf\xbdmple");
    assert_jstr(json_object_get(j, "attrs"), "b\xef\xbf\xbd", "x");
    json_decref(j);
    j = json_line(&cur);
    assert_jstr(j, "message", "bad \xef\xbf\xbd byte");
    json_decref(j);
    free(out);
    stanza_free(&f);
}

static void test_print_compact_one_line_per_event(void **state)
{
    xs_print_meta m = meta_c2s();
    stanza_fx big;
    capture c;
    char *out, *line, *save = NULL, *longxml;
    size_t n = 0, events;

    capture_open(&c, XS_FORMAT_COMPACT, 0, 0);
    events = print_session(c.p, &m);
    longxml = malloc(2100);
    assert_non_null(longxml);
    strcpy(longxml, "<message to='a@b'>\n  <body>");
    for (int i = 0; i < 200; i++)
        strcat(longxml, "0123456789");
    strcat(longxml, "</body>\n</message>");
    stanza_init(&big, longxml);
    assert_int_equal(xs_printer_event(c.p, &m, &big.ev), 0);
    events++;
    stanza_free(&big);
    out = capture_close(&c);
    assert_int_equal(count_char(out, '\n'), events);
    assert_null(strchr(out, '\r'));
    assert_null(strchr(out, '\033'));
    for (line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        n++;
        assert_true(strncmp(line, "03:40:00.123 1 C→S [tls] ", 27) == 0);
    }
    assert_int_equal(n, events);
    free(out);

    /* Check the content of some lines again on a fresh capture. */
    capture_open(&c, XS_FORMAT_COMPACT, 0, 0);
    print_session(c.p, &m);
    stanza_init(&big, longxml);
    assert_int_equal(xs_printer_event(c.p, &m, &big.ev), 0);
    stanza_free(&big);
    out = capture_close(&c);
    assert_non_null(strstr(out, " message from=juliet@example.com/balcony to=romeo@example.net "
                                "id=ktx72v49 type=chat "));
    assert_non_null(strstr(out, "<message from='juliet@example.com/balcony' to='romeo@example.net' "
                                "id='ktx72v49' type='chat' xml:lang='en'><body>Art thou not Romeo,"
                                "\\nand a Montague?</body><thread>"));
    assert_non_null(strstr(out, " auth "));
    assert_non_null(strstr(out, "[PLAIN authzid=\"\" authcid=\"alice\" password=***]"));
    assert_non_null(strstr(out, " error XS_ENOTWF <not-well-formed/> at 3:14 (offset 120): "
                                "mismatched end tag\n"));
    assert_non_null(strstr(out, " warn: client offered channel binding\\nsecond line\n"));
    assert_non_null(strstr(out, " keepalive 2B\n"));
    assert_non_null(strstr(out, " stream-close 16B </stream:stream>\n"));
    assert_non_null(strstr(out, "…(+"));
    free(out);
    free(longxml);
}

static void test_print_pretty_layout(void **state)
{
    xs_print_meta m = meta_c2s();
    xs_print_meta off = {.time = {fixed_time(), 0}, .session = "capture.xml"};
    xs_event open = stream_open_event();
    capture c;
    char *out;

    capture_open(&c, XS_FORMAT_PRETTY, 0, 0);
    print_session(c.p, &m);
    assert_int_equal(xs_printer_event(c.p, &off, &open), 0);
    out = capture_close(&c);
    assert_non_null(strstr(out, "03:40:00.123 1 C→S [tls] stream-open #1 "));
    assert_non_null(strstr(out, "\n  <stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS
                                "' to='example.com' version='1.0' xml:lang='en'>\n"));
    assert_non_null(strstr(out, "03:40:00.123 1 C→S [tls] message "));
    /* The stream's xmlns is not repeated on the stanza. */
    assert_non_null(strstr(out, "\n  <message from='juliet@example.com/balcony' "
                                "to='romeo@example.net' id='ktx72v49' type='chat' "
                                "xml:lang='en'>\n    <body>\n      Art thou not Romeo,\n"
                                "      and a Montague?\n    </body>\n    <thread>e0ffe42b"));
    assert_non_null(strstr(out, "</thread>\n    <active xmlns='http://jabber.org/protocol/"
                                "chatstates'/>\n  </message>\n"));
    assert_non_null(strstr(out, "\n  <auth xmlns='" NS_SASL "' mechanism='PLAIN'>***</auth>\n"
                                "  # PLAIN authzid=\"\" authcid=\"alice\" password=***\n"));
    assert_non_null(strstr(out, " keepalive 2 B\n"));
    assert_non_null(strstr(out, " error\n  XS_ENOTWF <not-well-formed/> at 3:14 (offset 120): "
                                "mismatched end tag\n"));
    assert_non_null(strstr(out, " capture.xml     stream-open #1 "));
    assert_null(strstr(out, "jabber:client'>\n    <"));
    free(out);
}

static void test_print_pretty_color(void **state)
{
    xs_print_meta m = meta_c2s(), s2c = meta_c2s();
    xs_event close = simple_event(XS_EV_STREAM_CLOSE, 0, "</stream:stream\x1b[2J>");
    stanza_fx f;
    capture c;
    char *out;

    s2c.direction = "s2c";
    /* U+009B is the 8-bit CSI; U+202E reverses the line. */
    stanza_init(&f, "<message><body>a\xc2\x9b"
                    "31mb\xe2\x80\xae</body></message>");
    for (int color = 0; color < 2; color++) {
        capture_open(&c, XS_FORMAT_PRETTY, color, 0);
        print_session(c.p, &m);
        assert_int_equal(xs_printer_event(c.p, &s2c, &f.ev), 0);
        assert_int_equal(xs_printer_event(c.p, &m, &close), 0);
        out = capture_close(&c);
        assert_null(strstr(out, "\xc2\x9b"));
        assert_null(strstr(out, "\xe2\x80\xae"));
        assert_non_null(strstr(out, "a&#x9B;31mb&#x202E;"));
        assert_non_null(strstr(out, "</stream:stream\\x1B[2J>"));
        if (color) {
            assert_non_null(strstr(out, "\033[36mC→S\033[0m"));
            assert_non_null(strstr(out, "\033[35mS→C\033[0m"));
            assert_non_null(strstr(out, "\033[1;31merror"));
        } else {
            assert_null(strchr(out, '\033'));
        }
        free(out);
    }
    /* Compact colours the header only. */
    capture_open(&c, XS_FORMAT_COMPACT, 1, 0);
    print_session(c.p, &m);
    out = capture_close(&c);
    assert_non_null(strchr(out, '\033'));
    assert_int_equal(count_char(out, '\n'), 7);
    free(out);
    stanza_free(&f);
}

static void test_print_no_tree_prints_raw(void **state)
{
    xs_print_meta m = meta_c2s();
    stanza_fx f;
    capture c;
    char *out;

    stanza_init(&f, "<message to='a@b'>\n  <body>hi</body>\n</message>\n");
    f.ev.node = NULL;
    capture_open(&c, XS_FORMAT_PRETTY, 0, 0);
    assert_int_equal(xs_printer_event(c.p, &m, &f.ev), 0);
    out = capture_close(&c);
    assert_non_null(strstr(out, " message "));
    assert_non_null(strstr(out, "\n  <message to='a@b'>\n    <body>hi</body>\n  </message>\n"));
    free(out);
    stanza_free(&f);

    /* Neither raw nor tree: the header alone. */
    stanza_init(&f, "<message/>");
    f.ev.node = NULL;
    f.ev.raw = NULL;
    for (size_t fi = 0; fi < sizeof(formats) / sizeof(formats[0]); fi++) {
        capture_open(&c, formats[fi], 0, 0);
        assert_int_equal(xs_printer_event(c.p, &m, &f.ev), 0);
        out = capture_close(&c);
        assert_int_equal(count_char(out, '\n'), 1);
        assert_non_null(strstr(out, "message"));
        free(out);
    }
    stanza_free(&f);
}

static void test_print_none_prints_nothing(void **state)
{
    xs_print_meta m = meta_c2s();
    capture c;
    char *out;

    capture_open(&c, XS_FORMAT_NONE, 1, 1);
    print_session(c.p, &m);
    out = capture_close(&c);
    assert_int_equal(c.len, 0);
    assert_string_equal(out, "");
    free(out);
}

static void test_print_write_error_is_eio(void **state)
{
    xs_print_options o = {XS_FORMAT_PRETTY, 0, 0};
    xs_print_meta m = meta_c2s();
    xs_event open = stream_open_event();
    xs_printer *p;
    FILE *f = fopen("/dev/full", "w");

    if (f == NULL)
        skip();
    for (size_t fi = 0; fi < sizeof(formats) / sizeof(formats[0]); fi++) {
        o.format = formats[fi];
        assert_int_equal(xs_printer_new(f, &o, &p), 0);
        assert_int_equal(xs_printer_event(p, &m, &open), XS_EIO);
        assert_int_equal(xs_printer_note(p, &m, "info", "x"), XS_EIO);
        xs_printer_free(p);
        clearerr(f);
    }
    fclose(f);
}

/* Random bytes as the raw text of events without a tree: every format copes, JSON stays valid
 * and compact stays on one line. */
static void test_print_hostile_raw(void **state)
{
    static const xs_event_kind kinds[] = {XS_EV_STANZA, XS_EV_STREAM_CLOSE, XS_EV_KEEPALIVE,
                                          XS_EV_STREAM_OPEN};
    static const char alphabet[] = "<>/='\" \n\r\t&;ab:\x1b\x7f\x80\x9b\xc2\xe2\xed\xf4\xff";
    uint32_t seed = 42;

    for (size_t fi = 0; fi < sizeof(formats) / sizeof(formats[0]); fi++) {
        xs_print_meta m = meta_c2s();
        capture c;
        char *out, *cur;
        int n = 0;

        capture_open(&c, formats[fi], (int)fi % 2, 0);
        for (int i = 0; i < 400; i++) {
            char raw[300];
            size_t len = (size_t)i % sizeof(raw);
            xs_event ev = simple_event(kinds[i % 4], (uint64_t)i, NULL);

            for (size_t k = 0; k < len; k++) {
                seed = seed * 1103515245u + 12345u;
                raw[k] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
            }
            ev.raw = raw;
            ev.len = len;
            ev.name = i % 3 ? "message" : NULL;
            assert_int_equal(xs_printer_event(c.p, &m, &ev), 0);
            n++;
        }
        out = capture_close(&c);
        if (formats[fi] == XS_FORMAT_COMPACT)
            assert_int_equal(count_char(out, '\n'), (size_t)n);
        if (formats[fi] == XS_FORMAT_JSON) {
            cur = out;
            for (int i = 0; i < n; i++)
                json_decref(json_line(&cur));
        }
        if (fi % 2 == 0) /* without colour, not one ESC byte */
            assert_null(strchr(out, '\033'));
        free(out);
    }
}

/* ---- end to end through the parser --------------------------------------------------------- */

typedef struct e2e {
    xs_printer *p;
    xs_print_meta m;
    int events;
} e2e;

static int e2e_cb(void *user, const xs_event *ev)
{
    e2e *e = user;

    e->events++;
    return xs_printer_event(e->p, &e->m, ev);
}

/* Feeds `input` in pieces of `step` bytes (0: all at once), the first piece `first` bytes long
 * when not 0, and returns the JSON printed. */
static char *e2e_run(const char *input, size_t first, size_t step, int *events)
{
    size_t len = strlen(input), off = 0;
    xs_parser *parser;
    capture c;
    e2e e;

    capture_open(&c, XS_FORMAT_JSON, 0, 0);
    e.p = c.p;
    e.m = meta_c2s();
    e.events = 0;
    assert_int_equal(xs_parser_new(NULL, XS_PARSER_TREE | XS_PARSER_RAW, e2e_cb, &e, &parser), 0);
    while (off < len) {
        size_t want = off == 0 && first != 0 ? first : step;
        size_t n = want == 0 || want > len - off ? len - off : want, used = 0;
        assert_int_equal(xs_parser_feed(parser, input + off, n, &used), 0);
        assert_int_equal(used, n);
        off += n;
    }
    xs_parser_free(parser);
    *events = e.events;
    return capture_close(&c);
}

static void test_print_parser_end_to_end(void **state)
{
    static const char input[] =
        "<?xml version='1.0'?>" STREAM_HEADER "<auth xmlns='" NS_SASL
        "' mechanism='PLAIN'>" PLAIN_B64 "</auth> "
        "<iq type='set' id='reg2'><query xmlns='jabber:iq:register'><username>bill</username>"
        "<password>Calliope</password></query></iq>"
        "<message to='romeo@example.net' id='m1'><body>caf\xc3\xa9</body></message>" STREAM_CLOSE;
    char *whole, *out, *cur;
    int events, n;
    json_t *j;

    whole = e2e_run(input, 0, 0, &events);
    assert_true(events >= 5);
    assert_int_equal(count_char(whole, '\n'), (size_t)events);
    for (size_t s = 0; s < sizeof(secrets) / sizeof(secrets[0]); s++)
        assert_null(strstr(whole, secrets[s]));
    out = strdup(whole);
    assert_non_null(out);
    cur = out;
    for (int i = 0; i < events; i++) {
        const char *ev;

        j = json_line(&cur);
        ev = json_string_value(json_object_get(j, "event"));
        assert_non_null(ev);
        if (strcmp(ev, "stanza") == 0 &&
            strcmp(json_string_value(json_object_get(j, "name")), "auth") == 0) {
            assert_true(json_is_true(json_object_get(j, "redacted")));
            assert_jstr(j, "sasl", "PLAIN authzid=\"\" authcid=\"alice\" password=***");
        }
        if (strcmp(ev, "stanza") == 0 &&
            strcmp(json_string_value(json_object_get(j, "name")), "message") == 0) {
            assert_jstr(j, "raw",
                        "<message to='romeo@example.net' id='m1'><body>caf\xc3\xa9"
                        "</body></message>");
            assert_jstr(j, "to", "romeo@example.net");
        }
        if (strcmp(ev, "stream-open") == 0)
            assert_jstr(json_object_get(j, "namespaces"), "stream", NS_STREAMS);
        json_decref(j);
    }
    free(out);

    /* Every split of the input into reads prints the same thing. */
    for (size_t step = 1; step < 8; step++) {
        out = e2e_run(input, 0, step, &n);
        assert_int_equal(n, events);
        assert_string_equal(out, whole);
        free(out);
    }
    for (size_t at = 1; at < sizeof(input) - 1; at++) {
        out = e2e_run(input, at, 0, &n);
        assert_int_equal(n, events);
        assert_string_equal(out, whole);
        free(out);
    }
    free(whole);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_print_format_parse),
        cmocka_unit_test(test_print_color_wanted),
        cmocka_unit_test(test_print_password_never_appears),
        cmocka_unit_test(test_print_show_secrets),
        cmocka_unit_test(test_print_json_schema),
        cmocka_unit_test(test_print_json_gs2),
        cmocka_unit_test(test_print_json_invalid_utf8),
        cmocka_unit_test(test_print_compact_one_line_per_event),
        cmocka_unit_test(test_print_pretty_layout),
        cmocka_unit_test(test_print_pretty_color),
        cmocka_unit_test(test_print_no_tree_prints_raw),
        cmocka_unit_test(test_print_none_prints_nothing),
        cmocka_unit_test(test_print_write_error_is_eio),
        cmocka_unit_test(test_print_hostile_raw),
        cmocka_unit_test(test_print_parser_end_to_end),
    };
    int rc;

    /* Local time must not depend on the machine for the header checks. */
    setenv("TZ", "UTC", 1);
    tzset();
    xmlInitParser();
    rc = cmocka_run_group_tests_name("print", tests, NULL, NULL);
    xmlCleanupParser();
    return rc;
}
