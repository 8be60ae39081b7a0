/* Unit tests of inspect/print.c: the pretty, compact and JSON Lines printers, and that no
 * secret reaches any of them. Events are built by hand like the parser makes them; the tests at
 * the end run the real parser, end to end and with and without the stanzas' trees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <libxml/parser.h>

#include "inspect/error.h"
#include "inspect/parser.h"
#include "inspect/annot.h"
#include "inspect/print.h"
#include "inspect/redact.h"
#include "inspect/utf8.h"

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
    xs_print_options o = {.format = format, .color = color, .show_secrets = show};

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
    xs_print_options o = {.format = XS_FORMAT_JSON};
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

/* A rule rewrote a stanza carrying a secret: the XML forwarded instead (pretty's "=> rewritten:",
 * JSON's "rewritten") is masked as the stanza is, in every format, with and without trees. */
static void test_print_rewritten_masked(void **state)
{
    static const struct {
        const char *stanza, *rewritten;
    } cases[] = {
        {"<auth xmlns='" NS_SASL "' mechanism='PLAIN'>" PLAIN_B64 "</auth>",
         "<auth xmlns=\"" NS_SASL "\" mechanism=\"PLAIN\" x=\"1\">" PLAIN_B64 "</auth>"},
        {"<response xmlns='" NS_SASL "'>" SCRAM_FINAL_B64 "</response>",
         "<response xmlns=\"" NS_SASL "\" x=\"1\">" SCRAM_FINAL_B64 "</response>"},
        {"<iq type='set' id='reg2'><query xmlns='jabber:iq:register'><username>bill</username>"
         "<password>Calliope</password></query></iq>",
         "<iq type=\"set\" id=\"reg3\"><query xmlns=\"jabber:iq:register\"><username>bill"
         "</username><password>s3cr3t-new</password></query></iq>"},
        {"<iq type='set' id='auth1'><query xmlns='jabber:iq:auth'><username>bill</username>"
         "<password>Calliope</password><resource>globe</resource></query></iq>",
         "<iq type=\"set\" id=\"auth1\"><query xmlns=\"jabber:iq:auth\"><username>bill"
         "</username><password>Calliope</password><resource>x</resource></query></iq>"},
        {"<presence to='r@c/n'><x xmlns='http://jabber.org/protocol/muc'><password>s3cr3t-m"
         "</password></x></presence>",
         "<presence to=\"r@c/m\"><x xmlns=\"http://jabber.org/protocol/muc\"><password>"
         "s3cr3t-m</password></x></presence>"},
        {"<message to='h@s'><x xmlns='jabber:x:conference' jid='r@c' password='s3cr3t-d'/>"
         "</message>",
         "<message to=\"h@t\"><x xmlns=\"jabber:x:conference\" jid=\"r@c\" "
         "password=\"s3cr3t-d\"/></message>"},
    };
    const xs_print_rule rule = {"r1", "set-attr", "1 node"};

    for (size_t fi = 0; fi < sizeof(formats) / sizeof(formats[0]); fi++) {
        for (int tree = 0; tree < 2; tree++) {
            for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                xs_print_meta m = meta_c2s();
                stanza_fx f;
                capture c;
                char *out;

                m.rules = &rule;
                m.n_rules = 1;
                m.verdict = "rewritten";
                m.rewritten = cases[i].rewritten;
                capture_open(&c, formats[fi], 0, 0);
                stanza_init(&f, cases[i].stanza);
                if (!tree)
                    f.ev.node = NULL;
                assert_int_equal(xs_printer_event(c.p, &m, &f.ev), 0);
                stanza_free(&f);
                out = capture_close(&c);
                for (size_t k = 0; k < sizeof(secrets) / sizeof(secrets[0]); k++)
                    if (strstr(out, secrets[k]) != NULL)
                        fail_msg("format %s tree %d case %zu shows %s:\n%s",
                                 xs_format_name(formats[fi]), tree, i, secrets[k], out);
                if (formats[fi] == XS_FORMAT_PRETTY)
                    assert_non_null(strstr(out, "=> rewritten: <"));
                if (formats[fi] == XS_FORMAT_JSON)
                    assert_non_null(strstr(out, "\"rewritten\":\"<"));
                free(out);

                /* --show-secrets shows what was forwarded as it was. */
                capture_open(&c, formats[fi], 0, 1);
                stanza_init(&f, cases[i].stanza);
                assert_int_equal(xs_printer_event(c.p, &m, &f.ev), 0);
                stanza_free(&f);
                out = capture_close(&c);
                if (formats[fi] == XS_FORMAT_PRETTY)
                    assert_non_null(strstr(out, cases[i].rewritten));
                free(out);
            }
        }
    }
}

/* XEP-0133 change-password forms, text-private fields, MUC passwords and the room password of a
 * XEP-0249 direct invitation, in every format. */
static void test_print_forms_and_muc_masked(void **state)
{
    static const char *const stanzas[] = {
        "<iq type='set' id='chg1'><command xmlns='http://jabber.org/protocol/commands' "
        "node='http://jabber.org/protocol/admin#change-user-password'><x xmlns='jabber:x:data' "
        "type='submit'><field var='accountjid'><value>alice@example.com</value></field>"
        "<field var='password'><value>s3cr3t-133</value></field></x></command></iq>",
        "<message id='m2'><x xmlns='jabber:x:data' type='form'><field var='pin' "
        "type='text-private'><value>s3cr3t-pin</value></field></x></message>",
        "<presence to='r@c/alice'><x xmlns='http://jabber.org/protocol/muc'><password>"
        "s3cr3t-muc</password></x></presence>",
        "<iq type='set' id='cfg1'><query xmlns='http://jabber.org/protocol/muc#owner'><x "
        "xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_roomsecret'><value>"
        "s3cr3t-room</value></field></x></query></iq>",
        "<message to='alice@example.com'><x xmlns='jabber:x:conference' jid='r@c' "
        "password='s3cr3t-dir'/></message>",
    };

    for (size_t fi = 0; fi < sizeof(formats) / sizeof(formats[0]); fi++) {
        for (int tree = 0; tree < 2; tree++) {
            xs_print_meta m = meta_c2s();
            capture c;
            char *out;

            capture_open(&c, formats[fi], 0, 0);
            for (size_t i = 0; i < sizeof(stanzas) / sizeof(stanzas[0]); i++) {
                stanza_fx f;
                stanza_init(&f, stanzas[i]);
                if (!tree)
                    f.ev.node = NULL;
                assert_int_equal(xs_printer_event(c.p, &m, &f.ev), 0);
                stanza_free(&f);
            }
            out = capture_close(&c);
            if (strstr(out, "s3cr3t") != NULL)
                fail_msg("format %s tree %d:\n%s", xs_format_name(formats[fi]), tree, out);
            assert_non_null(strstr(out, "alice"));
            assert_non_null(strstr(out, "***"));
            if (strstr(out, "jabber:x:conference password=***") == NULL)
                fail_msg("format %s tree %d:\n%s", xs_format_name(formats[fi]), tree, out);
            free(out);

            /* --show-secrets shows the direct invitation's password. */
            capture_open(&c, formats[fi], 0, 1);
            {
                stanza_fx f;
                stanza_init(&f, stanzas[sizeof(stanzas) / sizeof(stanzas[0]) - 1]);
                if (!tree)
                    f.ev.node = NULL;
                assert_int_equal(xs_printer_event(c.p, &m, &f.ev), 0);
                stanza_free(&f);
            }
            out = capture_close(&c);
            assert_non_null(strstr(out, "s3cr3t-dir"));
            assert_null(strstr(out, "***"));
            free(out);
        }
    }
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

/* Annotations (annot.h): an answer's round trip on its line, checks and explanations under the
 * event in pretty and compact, and "pair", "rtt_ms", "checks", "explain" in JSON; checks on their
 * own with xs_printer_checks(). Text from the wire in a check is escaped. */
static void test_print_annotations(void **state)
{
    (void)state;
    xs_print_meta m = meta_c2s();
    xs_annot a;
    xs_annot_init(&a);
    a.pair_dir = "s2c";
    a.pair_offset = 1234;
    a.pair_stream = 2;
    a.rtt_ms = 12.4375;
    xs_annot_check(&a, "iq-payload-count", "RFC 6120 §8.2.3", "a get has %d children", 2);
    xs_annot_check(&a, "jid-invalid", "RFC 7622 §3", "bad jid 'a\033[2Jb'");
    xs_annot_explain(&a, "line one (RFC 6120 §8.2.3)");
    xs_annot_explain(&a, "line two");
    m.annot = &a;
    for (size_t f = 0; f < sizeof(formats) / sizeof(formats[0]); f++) {
        stanza_fx st;
        capture c;
        capture_open(&c, formats[f], 0, 0);
        stanza_init(&st, "<iq type='result' id='q1'/>");
        assert_int_equal(xs_printer_event(c.p, &m, &st.ev), 0);
        stanza_free(&st);
        char *out = capture_close(&c);
        assert_null(strchr(out, '\033'));
        if (formats[f] == XS_FORMAT_JSON) {
            assert_non_null(strstr(out, "\"pair\":{\"dir\":\"s2c\",\"offset\":1234,"
                                        "\"stream\":2},\"rtt_ms\":12.438"));
            assert_non_null(strstr(out,
                                   "\"checks\":[{\"check\":\"iq-payload-count\",\"ref\":"
                                   "\"RFC 6120 §8.2.3\",\"message\":\"a get has 2 children\"},"));
            assert_non_null(strstr(out, "\"explain\":\"line one (RFC 6120 §8.2.3)\\nline two\""));
            assert_int_equal(count_char(out, '\n'), 1);
        } else {
            assert_non_null(strstr(out, " ↩ 12.4 ms"));
            assert_non_null(
                strstr(out, "\n  ! iq-payload-count: a get has 2 children (RFC 6120 §8.2.3)\n"));
            assert_non_null(strstr(out, "! jid-invalid: bad jid 'a\\x1B[2Jb' (RFC 7622 §3)\n"));
            assert_non_null(strstr(out, "\n  ? line one (RFC 6120 §8.2.3)\n  ? line two\n"));
        }
        free(out);

        /* On their own (a tick): one line each, nothing without checks. */
        capture_open(&c, formats[f], 0, 0);
        assert_int_equal(xs_printer_checks(c.p, &m), 0);
        xs_annot none;
        xs_annot_init(&none);
        xs_print_meta m2 = m;
        m2.annot = &none;
        assert_int_equal(xs_printer_checks(c.p, &m2), 0);
        out = capture_close(&c);
        assert_int_equal(count_char(out, '\n'), 2);
        assert_non_null(strstr(out, formats[f] == XS_FORMAT_JSON ? "\"event\":\"check\""
                                                                 : " check iq-payload-count: "));
        free(out);
    }
}

/* A check's text and the explanation are cut on a character boundary. */
static void test_print_annot_cut(void **state)
{
    (void)state;
    xs_annot a;
    xs_annot_init(&a);
    char big[4000];
    for (size_t i = 0; i + 2 < sizeof(big); i += 2)
        memcpy(big + i, "é", 2);
    big[sizeof(big) - 2] = '\0';
    xs_check_hit *h = xs_annot_check(&a, "x", NULL, "a%s", big);
    assert_non_null(h);
    assert_true(strlen(h->text) < XS_ANNOT_TEXT_MAX);
    assert_int_equal(strlen(h->text) % 2, 1); /* "a" and whole "é"s */
    for (int i = 0; i < 12; i++)
        xs_annot_explain(&a, "a%s", big);
    assert_true(a.explain_len < XS_ANNOT_EXPLAIN_MAX);
    assert_int_equal(strlen(a.explain), a.explain_len);
    assert_int_equal(a.explain_len % 2, 1);
    for (int i = 0; i < 20; i++)
        xs_annot_check(&a, "y", NULL, "z");
    assert_int_equal(a.n_checks, XS_ANNOT_MAX_CHECKS);
    assert_int_equal(a.more_checks, 21 - XS_ANNOT_MAX_CHECKS);
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

/* One character of each class no output shows as it is (print.h), with its escapes. */
typedef struct unsafe_char {
    const char *utf8;
    unsigned cp;
    bool in_xml; /* XML 1.0 allows it in text and attribute values */
} unsafe_char;

static const unsafe_char unsafe_chars[] = {
    {"\x1b", 0x1b, false},          /* C0: ESC */
    {"\x7f", 0x7f, true},           /* DEL */
    {"\xc2\x80", 0x80, true},       /* C1 */
    {"\xc2\x9b", 0x9b, true},       /* C1: the 8-bit CSI */
    {"\xc2\x9f", 0x9f, true},       /* C1 */
    {"\xd8\x9c", 0x061c, true},     /* bidi: arabic letter mark */
    {"\xe2\x80\x8b", 0x200b, true}, /* invisible: zero width space */
    {"\xe2\x80\x8c", 0x200c, true}, /* invisible: zero width non-joiner */
    {"\xe2\x80\x8d", 0x200d, true}, /* invisible: zero width joiner */
    {"\xe2\x80\x8e", 0x200e, true}, /* bidi: left-to-right mark */
    {"\xe2\x80\x8f", 0x200f, true}, /* bidi: right-to-left mark */
    {"\xe2\x80\xa8", 0x2028, true}, /* line separator */
    {"\xe2\x80\xaa", 0x202a, true}, /* bidi: embedding */
    {"\xe2\x80\xae", 0x202e, true}, /* bidi: right-to-left override */
    {"\xe2\x81\xa0", 0x2060, true}, /* invisible: word joiner */
    {"\xe2\x81\xa6", 0x2066, true}, /* bidi: isolate */
    {"\xe2\x81\xa9", 0x2069, true}, /* bidi: pop isolate */
    {"\xef\xbb\xbf", 0xfeff, true}, /* invisible: zero width no-break space (BOM) */
};

/* Nothing from the wire reaches the output as it is when a terminal would act on it or it hides
 * or reorders text: in a text, an attribute value, a namespace URI and a note, in every format.
 * JSON carries each as \uXXXX, and the line reads back to the same string. */
static void test_print_unsafe_characters_every_format(void **state)
{
    xs_print_meta m = meta_c2s();
    for (size_t i = 0; i < sizeof(unsafe_chars) / sizeof(unsafe_chars[0]); i++) {
        const unsafe_char *u = &unsafe_chars[i];
        char *stanza = NULL, *note = NULL, xml_esc[16], line_esc[16], json_esc[16];
        stanza_fx f;
        snprintf(xml_esc, sizeof(xml_esc), "&#x%X;", u->cp);
        snprintf(line_esc, sizeof(line_esc), u->cp < 0x80 ? "\\x%02X" : "\\u%04X", u->cp);
        snprintf(json_esc, sizeof(json_esc), "\\u%04X", u->cp);
        assert_true(asprintf(&note, "peer said a%sb", u->utf8) > 0);
        if (u->in_xml) {
            assert_true(asprintf(&stanza,
                                 "<message to='a%sb'><body>c%sd</body><x xmlns='urn:e%sf'/>"
                                 "</message>",
                                 u->utf8, u->utf8, u->utf8) > 0);
            stanza_init(&f, stanza);
        }
        for (size_t k = 0; k < sizeof(formats) / sizeof(formats[0]); k++) {
            capture c;
            capture_open(&c, formats[k], 0, 0);
            if (u->in_xml)
                assert_int_equal(xs_printer_event(c.p, &m, &f.ev), 0);
            assert_int_equal(xs_printer_note(c.p, &m, "warn", note), 0);
            /* A stream header whose attribute carries it (JSON: the "attrs" map, which jansson
             * dumps). */
            xs_event hev = stream_open_event();
            xs_attr hattrs[3];
            memcpy(hattrs, header_attrs, sizeof(hattrs));
            hattrs[0].value = strstr(note, " a") + 1;
            hev.attrs = hattrs;
            hev.raw = NULL;
            assert_int_equal(xs_printer_event(c.p, &m, &hev), 0);
            char *out = capture_close(&c);
            if (strstr(out, u->utf8) != NULL)
                fail_msg("U+%04X printed as it is in format %s:\n%s", u->cp,
                         xs_format_name(formats[k]), out);
            if (formats[k] == XS_FORMAT_JSON) {
                assert_non_null(strstr(out, json_esc));
                char *cur = out;
                json_t *j;
                if (u->in_xml) {
                    j = json_line(&cur);
                    assert_jstr(j, "to", strstr(note, " a") + 1);
                    assert_true(strstr(json_string_value(json_object_get(j, "raw")), u->utf8));
                    json_decref(j);
                }
                j = json_line(&cur);
                assert_jstr(j, "message", note);
                json_decref(j);
                j = json_line(&cur);
                assert_jstr(json_object_get(j, "attrs"), header_attrs[0].name,
                            strstr(note, " a") + 1);
                json_decref(j);
            } else {
                /* Pretty shows the tree as XML: the character reference; compact the XML text on
                 * one line, and the note the C-style escape. */
                if (u->in_xml && formats[k] == XS_FORMAT_PRETTY)
                    assert_non_null(strstr(out, xml_esc));
                assert_non_null(strstr(out, line_esc));
            }
            free(out);
        }
        if (u->in_xml)
            stanza_free(&f);
        free(stanza);
        free(note);
    }
}

/* xs_term_printf(): messages printed outside a printer are escaped as one line, but for the
 * newline that ends them. */
static void test_print_term_printf_escapes(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(xs_term_printf(f, "x: %s: near '%s'\n", "urn:\xc2\x9b\xe2\x80\xae",
                                    "\x1b[2J\n\xff\xe2\x80\x8b"),
                     0);
    assert_int_equal(xs_term_printf(f, "%d %s", 7, "no newline"), 0);
    assert_int_equal(fclose(f), 0);
    assert_string_equal(buf, "x: urn:\\u009B\\u202E: near '\\x1B[2J\\n\\xFF\\u200B'\n7 no newline");
    free(buf);
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
    xs_print_options o = {.format = XS_FORMAT_PRETTY};
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

/* The characters no output shows as they are (print.h), by their own list here: C0, DEL, C1,
 * line breaks, bidirectional controls, invisible characters. */
static bool term_unsafe(uint32_t cp)
{
    static const uint32_t ranges[][2] = {
        {0x00, 0x1f},     {0x7f, 0x9f},     {0x061c, 0x061c}, {0x200b, 0x200f},
        {0x2028, 0x202e}, {0x2060, 0x2064}, {0x2066, 0x2069}, {0xfeff, 0xfeff},
    };
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
        if (cp >= ranges[i][0] && cp <= ranges[i][1])
            return true;
    return false;
}

/* What jansson dumped, with the characters jansson leaves as they are but the printer escapes
 * (term_unsafe() above U+001F) as \uXXXX: the reference of the JSON printer. Takes `text`. */
static char *ref_escape(char *text)
{
    size_t n = strlen(text);
    char *out = malloc(n * 3 + 1), *o = out;
    assert_non_null(out);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = xs_utf8_next((const unsigned char *)text + i, n - i, &cp);
        assert_true(k > 0);
        if (cp >= 0x20 && term_unsafe(cp))
            o += sprintf(o, "\\u%04X", (unsigned)cp);
        else
            memcpy(o, text + i, k), o += k;
        i += k;
    }
    *o = 0;
    free(text);
    return out;
}

/* ---- the jansson reference ----------------------------------------------------------------- */

/* The JSON printer as it was built on jansson: a tree per event, dumped with JSON_COMPACT. The
 * printer now writes its lines by hand; they must stay byte for byte what this makes, which is
 * also what inspect/jsonl.c reads back. */

/* n bytes made valid UTF-8 without NUL: invalid sequences and NUL become U+FFFD, one per byte. */
static json_t *ref_str(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    char *t = malloc(3 * n + 1);
    size_t i = 0, k = 0;
    json_t *j;

    assert_non_null(t);
    while (i < n) {
        uint32_t cp;
        size_t c = xs_utf8_next(u + i, n - i, &cp);
        if (c == 0 || cp == 0) {
            memcpy(t + k, "\xef\xbf\xbd", 3);
            k += 3;
            i++;
        } else {
            memcpy(t + k, s + i, c);
            k += c;
            i += c;
        }
    }
    t[k] = '\0';
    j = json_stringn(t, k);
    assert_non_null(j);
    free(t);
    return j;
}

static json_t *ref_cstr(const char *s)
{
    return ref_str(s, strlen(s));
}

static void ref_set(json_t *o, const char *key, json_t *v)
{
    assert_non_null(v);
    assert_int_equal(json_object_set_new(o, key, v), 0);
}

/* o[prefix:name] = v, the key made valid like a string. */
static void ref_set_key(json_t *o, const char *prefix, const char *name, json_t *v)
{
    char *key = NULL;
    json_t *k;

    assert_true(asprintf(&key, "%s%s%s", prefix != NULL ? prefix : "", prefix != NULL ? ":" : "",
                         name) >= 0);
    k = ref_cstr(key);
    ref_set(o, json_string_value(k), v);
    json_decref(k);
    free(key);
}

static json_t *ref_int(uint64_t v)
{
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static json_t *ref_head(const xs_print_meta *m, const char *event)
{
    json_t *o = json_object();
    char when[80];

    assert_non_null(o);
    /* The reference needs a fixed time: the printer reads the clock itself otherwise. */
    assert_non_null(m);
    if (!m->untimed) {
        struct tm tm;
        long ns = m->time.tv_nsec >= 0 && m->time.tv_nsec < 1000000000L ? m->time.tv_nsec : 0;

        assert_true(m->time.tv_sec != 0 || m->time.tv_nsec != 0);
        assert_non_null(gmtime_r(&m->time.tv_sec, &tm));
        snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ns / 1000L);
        ref_set(o, "time", json_string(when));
    }
    if (m->session != NULL)
        ref_set(o, "session", ref_cstr(m->session));
    if (m->direction != NULL)
        ref_set(o, "dir", ref_cstr(m->direction));
    if (m->phase != NULL)
        ref_set(o, "phase", ref_cstr(m->phase));
    ref_set(o, "event", json_string(event));
    return o;
}

/* An attribute without a namespace of the stanza's tree, as the printer reads it. */
static json_t *ref_tree_attr(const xmlNode *n, const char *name)
{
    for (const xmlAttr *a = n->properties; a != NULL; a = a->next) {
        char *v = NULL;
        json_t *j;

        if (a->ns != NULL || strcmp((const char *)a->name, name) != 0)
            continue;
        v = strdup("");
        assert_non_null(v);
        for (const xmlNode *k = a->children; k != NULL; k = k->next) {
            char *w = NULL;
            if (k->type == XML_TEXT_NODE && k->content != NULL)
                assert_true(asprintf(&w, "%s%s", v, (const char *)k->content) >= 0);
            else if (k->type == XML_ENTITY_REF_NODE)
                assert_true(asprintf(&w, "%s&%s;", v, (const char *)k->name) >= 0);
            if (w != NULL) {
                free(v);
                v = w;
            }
        }
        j = ref_cstr(v);
        free(v);
        return j;
    }
    return NULL;
}

static json_t *ref_key_attr(const xs_event *ev, const xs_redaction *red, const char *name)
{
    const xmlNode *n = ev->node != NULL ? ev->node : red->node;

    if (ev->kind == XS_EV_STREAM_OPEN) {
        for (size_t i = 0; ev->attrs != NULL && i < ev->n_attrs; i++) {
            const xs_attr *a = &ev->attrs[i];
            if (a->prefix == NULL && a->name != NULL && strcmp(a->name, name) == 0)
                return ref_cstr(a->value != NULL ? a->value : "");
        }
        return NULL;
    }
    return ev->kind == XS_EV_STANZA && n != NULL ? ref_tree_attr(n, name) : NULL;
}

/* The line the jansson printer made for one event, newline included; the caller frees it. */
static char *ref_event(const xs_print_meta *m, const xs_event *ev, int show_secrets)
{
    static const char *const keys[] = {"from", "to", "id", "type"};
    json_t *o = ref_head(m, xs_event_kind_name(ev->kind));
    xs_redaction red;
    char *text, *line = NULL;

    assert_int_equal(xs_redact_event(ev, show_secrets, &red), 0);
    ref_set(o, "stream", json_integer(ev->stream_no));
    ref_set(o, "offset", ref_int(ev->offset));
    ref_set(o, "size", ref_int(ev->len));
    if (ev->kind == XS_EV_STREAM_OPEN || ev->kind == XS_EV_STANZA) {
        const xmlNode *n = ev->node != NULL ? ev->node : red.node;
        const char *name = ev->name, *prefix = ev->prefix, *ns = ev->ns;

        if (name == NULL && n != NULL) {
            name = (const char *)n->name;
            prefix = n->ns != NULL ? (const char *)n->ns->prefix : NULL;
            ns = n->ns != NULL ? (const char *)n->ns->href : NULL;
        }
        if (name != NULL)
            ref_set(o, "name", ref_cstr(name));
        if (prefix != NULL)
            ref_set(o, "prefix", ref_cstr(prefix));
        if (ns != NULL)
            ref_set(o, "ns", ref_cstr(ns));
        for (size_t i = 0; i < 4; i++) {
            json_t *v = ref_key_attr(ev, &red, keys[i]);
            if (v != NULL)
                ref_set(o, keys[i], v);
        }
    }
    if (red.xml != NULL) {
        ref_set(o, "raw", ref_str(red.xml, red.xml_len));
        ref_set(o, "redacted", json_true());
    } else if (ev->raw != NULL && ev->kind != XS_EV_ERROR) {
        ref_set(o, "raw", ref_str(ev->raw, ev->len));
    }
    if (red.note != NULL)
        ref_set(o, "sasl", ref_cstr(red.note));
    if (red.gs2_flag == 'p')
        ref_set(o, "gs2", json_sprintf("p=%s", red.cb_name));
    else if (red.gs2_flag != 0)
        ref_set(o, "gs2", json_string(red.gs2_flag == 'y' ? "y" : "n"));
    if (m->n_rules > 0) {
        json_t *arr = json_array();
        for (size_t i = 0; i < m->n_rules; i++) {
            json_t *r = json_object();
            ref_set(r, "rule", ref_cstr(m->rules[i].rule));
            ref_set(r, "action", ref_cstr(m->rules[i].action));
            if (m->rules[i].detail != NULL)
                ref_set(r, "detail", ref_cstr(m->rules[i].detail));
            assert_int_equal(json_array_append_new(arr, r), 0);
        }
        ref_set(o, "rules", arr);
        if (m->verdict != NULL)
            ref_set(o, "verdict", ref_cstr(m->verdict));
        if (m->rewritten != NULL) {
            xs_redaction rew;
            assert_int_equal(
                xs_redact_rewritten(ev, m->rewritten, strlen(m->rewritten), show_secrets, &rew), 0);
            ref_set(o, "rewritten", ref_cstr(rew.xml != NULL ? rew.xml : m->rewritten));
            xs_redaction_clear(&rew);
        }
    }
    if (ev->kind == XS_EV_STREAM_OPEN) {
        json_t *attrs = json_object(), *nss = json_object();
        for (size_t i = 0; ev->attrs != NULL && i < ev->n_attrs; i++) {
            const xs_attr *a = &ev->attrs[i];
            if (a->name != NULL)
                ref_set_key(attrs, a->prefix, a->name, ref_cstr(a->value != NULL ? a->value : ""));
        }
        for (size_t i = 0; ev->nsdecls != NULL && i < ev->n_nsdecls; i++) {
            const xs_attr *d = &ev->nsdecls[i];
            ref_set_key(nss, NULL, d->prefix != NULL ? d->prefix : "",
                        ref_cstr(d->uri != NULL ? d->uri : ""));
        }
        ref_set(o, "attrs", attrs);
        ref_set(o, "namespaces", nss);
    }
    if (ev->kind == XS_EV_ERROR) {
        const char *cond = xs_parse_error_condition(ev->error_kind);
        ref_set(o, "error", json_string(xs_errname(ev->error)));
        if (cond != NULL)
            ref_set(o, "condition", ref_cstr(cond));
        if (ev->message != NULL)
            ref_set(o, "message", ref_cstr(ev->message));
        ref_set(o, "line", json_integer(ev->line));
        ref_set(o, "column", json_integer(ev->column));
    }
    text = json_dumps(o, JSON_COMPACT);
    assert_non_null(text);
    text = ref_escape(text);
    assert_true(asprintf(&line, "%s\n", text) > 0);
    free(text);
    json_decref(o);
    xs_redaction_clear(&red);
    return line;
}

static char *ref_note(const xs_print_meta *m, const char *level, const char *msg)
{
    json_t *o = ref_head(m, "note");
    char *text, *line = NULL;

    ref_set(o, "level", ref_cstr(level));
    ref_set(o, "message", ref_cstr(msg));
    text = json_dumps(o, JSON_COMPACT);
    assert_non_null(text);
    text = ref_escape(text);
    assert_true(asprintf(&line, "%s\n", text) > 0);
    free(text);
    json_decref(o);
    return line;
}

/* What the JSON printer prints for one event, alone; the caller frees it. */
static char *print_one(const xs_print_meta *m, const xs_event *ev, int show_secrets)
{
    capture c;

    capture_open(&c, XS_FORMAT_JSON, 0, show_secrets);
    assert_int_equal(xs_printer_event(c.p, m, ev), 0);
    return capture_close(&c);
}

/* Prints events on one printer, so that state kept between events (the time of the last second,
 * the buffer) is exercised, and keeps the reference's lines for them. */
typedef struct seq {
    capture c;
    char *want;
    size_t want_len, want_cap;
    int show_secrets;
} seq;

static void seq_open(seq *q, int show_secrets)
{
    capture_open(&q->c, XS_FORMAT_JSON, 0, show_secrets);
    q->want = NULL;
    q->want_len = q->want_cap = 0;
    q->show_secrets = show_secrets;
}

static void seq_append(seq *q, char *line)
{
    size_t n = strlen(line);

    if (q->want_len + n + 1 > q->want_cap) {
        q->want_cap = 2 * (q->want_len + n + 1);
        q->want = realloc(q->want, q->want_cap);
        assert_non_null(q->want);
    }
    memcpy(q->want + q->want_len, line, n + 1);
    q->want_len += n;
    free(line);
}

static void seq_event(seq *q, const xs_print_meta *m, const xs_event *ev)
{
    assert_int_equal(xs_printer_event(q->c.p, m, ev), 0);
    seq_append(q, ref_event(m, ev, q->show_secrets));
}

static void seq_note(seq *q, const xs_print_meta *m, const char *level, const char *text)
{
    assert_int_equal(xs_printer_note(q->c.p, m, level, text), 0);
    seq_append(q, ref_note(m, level, text));
}

/* Everything printed is the reference, byte for byte, and every line reads back. */
static void seq_check(seq *q)
{
    char *got = capture_close(&q->c), *cur = got;
    size_t lines = count_char(got, '\n');

    if (strcmp(got, q->want) != 0) {
        size_t i = 0;
        while (got[i] != '\0' && got[i] == q->want[i])
            i++;
        fail_msg("differs from the reference at byte %zu:\nprinted:   %.300s\nreference: %.300s", i,
                 got + (i > 60 ? i - 60 : 0), q->want + (i > 60 ? i - 60 : 0));
    }
    for (size_t i = 0; i < lines; i++)
        json_decref(json_line(&cur));
    free(got);
    free(q->want);
}

static void test_print_json_matches_reference(void **state)
{
    /* "n,,n=alice,r=abc", "y,,n=alice,r=abc", "p=tls-exporter,,n=alice,r=abc" */
    static const char *const stanzas[] = {
        "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>" PLAIN_B64 "</auth>",
        "<response xmlns='" NS_SASL "'>" SCRAM_FINAL_B64 "</response>",
        "<auth xmlns='" NS_SASL "' mechanism='SCRAM-SHA-1'>biwsbj1hbGljZSxyPWFiYw==</auth>",
        "<auth xmlns='" NS_SASL "' mechanism='SCRAM-SHA-1'>eSwsbj1hbGljZSxyPWFiYw==</auth>",
        "<auth xmlns='" NS_SASL "' mechanism='SCRAM-SHA-1-PLUS'>"
        "cD10bHMtZXhwb3J0ZXIsLG49YWxpY2Uscj1hYmM=</auth>",
        "<iq type='set' id='reg2'><query xmlns='jabber:iq:register'><username>bill</username>"
        "<password>Calliope</password></query></iq>",
        "<message from='a&amp;b@example.com/\"q\"' to='c\\\\d@example.com' id='x&#x9;y' "
        "type='chat'><body>tab\there &lt;b&gt; \xc3\xa9\xe2\x80\xa8 "
        "\xf0\x9f\x98\x80</body></message>",
        "<presence xmlns:p='urn:x' p:from='not-this' from=''/>",
        "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>",
    };
    static const xs_print_rule rules[] = {
        {"strip-\"receipts\"", "drop", NULL},
        {"rename", "set-attr", "to=\"x\\y\"\n\x01"},
    };
    static const xs_attr dup_attrs[] = {
        {NULL, "b\xc3", NULL, "first"},  {NULL, "to", NULL, "x\x01y"},
        {NULL, "b\xc4", NULL, "second"}, {"xml", "lang", NS_XML, "en\""},
        {NULL, "nameless", NULL, NULL},
    };
    static const xs_attr dup_ns[] = {
        {NULL, NULL, "jabber:client", NULL},
        {"", NULL, "jabber:server", NULL},
        {"s\"t", NULL, NULL, NULL},
    };
    xs_print_meta metas[6];
    xs_event open = stream_open_event(), odd_open = stream_open_event(), err = error_event();
    xs_event ka = simple_event(XS_EV_KEEPALIVE, 300, " \n"),
             none = simple_event(XS_EV_KEEPALIVE, 0, NULL);
    xs_event close = simple_event(XS_EV_STREAM_CLOSE, 302, STREAM_CLOSE);

    metas[0] = meta_c2s();
    metas[1] = (xs_print_meta){.time = {fixed_time(), 5000}, .session = "capture.xml"};
    metas[2] = (xs_print_meta){.untimed = 1};
    metas[3] = meta_c2s();
    metas[3].direction = "s2c";
    metas[3].phase = "au\"th\x1b";
    metas[3].rules = rules;
    metas[3].n_rules = 2;
    metas[3].verdict = "rewritten";
    metas[3].rewritten = "<message to='x\\y'>\n\t<body/></message>";
    metas[4] = meta_c2s();
    metas[4].rules = rules;
    metas[4].n_rules = 1;
    metas[5] = (xs_print_meta){.time = {-1, 999999999}, .session = "caf\xe9\0"};

    odd_open.name = NULL;
    odd_open.prefix = NULL;
    odd_open.attrs = dup_attrs;
    odd_open.n_attrs = sizeof(dup_attrs) / sizeof(dup_attrs[0]);
    odd_open.nsdecls = dup_ns;
    odd_open.n_nsdecls = sizeof(dup_ns) / sizeof(dup_ns[0]);
    none.len = SIZE_MAX;
    none.offset = UINT64_MAX;
    none.stream_no = UINT_MAX;
    err.line = err.column = UINT_MAX;
    err.message = "bad \"byte\" \x01\xff\n";

    for (int show = 0; show < 2; show++) {
        for (size_t mi = 0; mi < sizeof(metas) / sizeof(metas[0]); mi++) {
            const xs_print_meta *m = &metas[mi];
            seq q;

            seq_open(&q, show);
            seq_event(&q, m, &open);
            seq_event(&q, m, &odd_open);
            for (size_t i = 0; i < sizeof(stanzas) / sizeof(stanzas[0]); i++) {
                for (int tree = 0; tree < 2; tree++) {
                    stanza_fx f;
                    stanza_init(&f, stanzas[i]);
                    if (!tree)
                        f.ev.node = NULL;
                    seq_event(&q, m, &f.ev);
                    /* Neither a name nor raw text: what the tree says, or nothing. */
                    f.ev.name = f.ev.prefix = f.ev.ns = NULL;
                    f.ev.raw = NULL;
                    seq_event(&q, m, &f.ev);
                    stanza_free(&f);
                }
            }
            seq_event(&q, m, &ka);
            seq_event(&q, m, &none);
            seq_event(&q, m, &close);
            seq_event(&q, m, &err);
            err.error = -9999;
            err.error_kind = (xs_parse_error_kind)0;
            err.message = NULL;
            seq_event(&q, m, &err);
            err = error_event();
            seq_note(&q, m, "warn", "client offered channel binding\nsecond line");
            seq_note(&q, m, "error", "bad \xff\0");
            seq_check(&q);
        }
    }
}

/* Times: the date is formatted once per second by the printer, the microseconds every time. */
static void test_print_json_times(void **state)
{
    static const struct timespec times[] = {
        {1, 0},
        {1, 1},
        {1, 999999999},
        {2, 0},
        {2, 1000},
        {1, 5},
        {-1, 0},
        {-1, 999000},
        {0, 1},
        {86399, 999999000},
        {86400, 0},
        {2, -5},
        {2, 1000000000},
        {253402300799, 0},
        {253402300800, 7},
        {4102444800, 0},
        {4102444800, 0},
    };
    seq q;
    xs_event ka = simple_event(XS_EV_KEEPALIVE, 0, " ");

    seq_open(&q, 0);
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        xs_print_meta m = {.time = times[i]};
        seq_event(&q, &m, &ka);
        seq_note(&q, &m, "info", "x");
    }
    seq_check(&q);

    /* Without a time the printer reads the clock: a well-formed time of today. */
    {
        capture c;
        char *out, *cur;
        json_t *j;
        const char *t;

        capture_open(&c, XS_FORMAT_JSON, 0, 0);
        assert_int_equal(xs_printer_event(c.p, NULL, &ka), 0);
        out = capture_close(&c);
        cur = out;
        j = json_line(&cur);
        t = json_string_value(json_object_get(j, "time"));
        assert_non_null(t);
        assert_int_equal(strlen(t), strlen("2026-11-24T03:40:00.123456Z"));
        assert_true(t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[26] == 'Z');
        json_decref(j);
        free(out);
    }
}

/* A line with only the raw text: the JSON string of raw as printed. */
static char *raw_value(const char *raw, size_t len)
{
    xs_print_meta m = {.untimed = 1};
    xs_event ev = simple_event(XS_EV_KEEPALIVE, 0, NULL);
    char *out, *value, *end;
    const char *head = "{\"event\":\"keepalive\",\"stream\":1,\"offset\":0,\"size\":";

    ev.raw = raw;
    ev.len = len;
    out = print_one(&m, &ev, 0);
    assert_true(strncmp(out, head, strlen(head)) == 0);
    value = strstr(out, ",\"raw\":");
    assert_non_null(value);
    value += strlen(",\"raw\":");
    end = out + strlen(out);
    assert_true(end - value >= 3);
    assert_memory_equal(end - 2, "}\n", 2);
    end[-2] = '\0';
    memmove(out, value, strlen(value) + 1);
    return out;
}

static void assert_raw_value(const char *raw, size_t len, const char *want)
{
    char *got = raw_value(raw, len);

    if (strcmp(got, want) != 0)
        fail_msg("printed %s, want %s", got, want);
    free(got);
}

#define RAW(s) s, sizeof(s) - 1
#define FFFD "\xef\xbf\xbd"

static void test_print_json_escapes(void **state)
{
    char ctl[32];

    /* Every control character: the short escapes where JSON has them, \u00XX otherwise. */
    for (int c = 1; c < 32; c++)
        ctl[c - 1] = (char)c;
    assert_raw_value(ctl, 31,
                     "\"\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000B\\f\\r"
                     "\\u000E\\u000F\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017"
                     "\\u0018\\u0019\\u001A\\u001B\\u001C\\u001D\\u001E\\u001F\"");
    /* Quotes and backslashes escaped; DEL, U+2028 and U+0080 as \uXXXX (print.h); '/' and other
     * characters as they are. */
    assert_raw_value(RAW("\"a\\\"b\\\\/'<>&\x7f\xe2\x80\xa8\xc2\x80\xf4\x8f\xbf\xbf"),
                     "\"\\\"a\\\\\\\"b\\\\\\\\/'<>&\\u007F\\u2028\\u0080\xf4\x8f\xbf\xbf\"");
    assert_raw_value(RAW(""), "\"\"");
    /* NUL and invalid UTF-8: one U+FFFD per byte. */
    assert_raw_value(RAW("a\0b"), "\"a" FFFD "b\"");
    assert_raw_value(RAW("\0\0"), "\"" FFFD FFFD "\"");
    assert_raw_value(RAW("\xc0\xaf"), "\"" FFFD FFFD "\"");                   /* overlong '/' */
    assert_raw_value(RAW("\xe0\x80\xaf"), "\"" FFFD FFFD FFFD "\"");          /* overlong */
    assert_raw_value(RAW("\xed\xa0\x80"), "\"" FFFD FFFD FFFD "\"");          /* surrogate */
    assert_raw_value(RAW("\xf4\x90\x80\x80"), "\"" FFFD FFFD FFFD FFFD "\""); /* > U+10FFFF */
    assert_raw_value(RAW("\xf8\x88\x80\x80\x80"), "\"" FFFD FFFD FFFD FFFD FFFD "\"");
    assert_raw_value(RAW("x\xe2\x82"), "\"x" FFFD FFFD "\"");       /* cut at the end */
    assert_raw_value(RAW("\xe2\x82x\""), "\"" FFFD FFFD "x\\\"\""); /* cut inside */
    assert_raw_value(RAW("\x80\xbf"), "\"" FFFD FFFD "\"");         /* continuations */
    assert_raw_value(RAW("\xff\xfe\xc1\xf5"), "\"" FFFD FFFD FFFD FFFD "\"");
    assert_raw_value(RAW("\xf0\x9f\x98\x80\xf0\x9f\x98"), "\"\xf0\x9f\x98\x80" FFFD FFFD FFFD "\"");

    /* Every byte on its own, and each at every place of an eight-byte word, against jansson. */
    for (int c = 0; c < 256; c++) {
        char one = (char)c, *ref;
        xs_print_meta m = {.untimed = 1};
        xs_event ev = simple_event(XS_EV_STREAM_CLOSE, 0, NULL);
        char *got;

        ev.raw = &one;
        ev.len = 1;
        got = print_one(&m, &ev, 0);
        ref = ref_event(&m, &ev, 0);
        assert_string_equal(got, ref);
        free(got);
        free(ref);
    }
}

/* Special bytes at every offset of strings around the eight-byte word the escaper reads at once,
 * and long values: the same as jansson's output. */
static void test_print_json_word_boundaries(void **state)
{
    static const char *const specials[] = {
        "\0",   "\x01", "\x1f", "\"", "\\", "\x7f",         "\xc3\xa9",         "\xff",
        "\xe2", "\x80", "\n",   "/",  " ",  "\xe2\x80\xa8", "\xf0\x9f\x98\x80", "\xed\xbf\xbf",
    };
    xs_print_meta m = {.time = {fixed_time(), 1}, .session = "1"};
    seq q;

    seq_open(&q, 0);
    for (size_t len = 0; len <= 25; len++) {
        for (size_t pos = 0; pos <= len; pos++) {
            for (size_t si = 0; si < sizeof(specials) / sizeof(specials[0]); si++) {
                char buf[64];
                size_t sl = si == 0 ? 1 : strlen(specials[si]);
                xs_event ev = simple_event(XS_EV_STREAM_CLOSE, 0, NULL);

                memset(buf, 'a', sizeof(buf));
                memcpy(buf + pos, specials[si], sl);
                ev.raw = buf;
                ev.len = len + sl;
                seq_event(&q, &m, &ev);
            }
        }
    }
    seq_check(&q);
}

static void test_print_json_long_values(void **state)
{
    static const char alphabet[] = "abcdefghijklmnop <>/='&;\"\\\n\t\r\x01\x7f\xc3\xa9\xe2\x82\xac"
                                   "\xf0\x9f\x98\x80\xff\x80";
    size_t big = (size_t)1 << 20;
    char *raw = malloc(big), *attr = malloc(300001), *xml = NULL;
    xs_print_meta m = meta_c2s();
    uint32_t seed = 7;
    stanza_fx f;
    seq q;

    assert_non_null(raw);
    assert_non_null(attr);
    seq_open(&q, 0);
    /* Mostly plain text with something to escape now and then, and all of it to escape. */
    for (int round = 0; round < 3; round++) {
        xs_event ev = simple_event(XS_EV_STANZA, 0, NULL);
        for (size_t i = 0; i < big; i++) {
            seed = seed * 1103515245u + 12345u;
            if (round == 0)
                raw[i] = (seed >> 16) % 64 == 0 ? alphabet[(seed >> 8) % (sizeof(alphabet) - 1)]
                                                : (char)('a' + (seed >> 16) % 26);
            else if (round == 1)
                raw[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
            else
                raw[i] = (char)(seed >> 16);
        }
        ev.raw = raw;
        ev.len = big;
        ev.name = "message";
        seq_event(&q, &m, &ev);
    }
    /* A long attribute value read from the tree, and long meta strings. */
    for (size_t i = 0; i < 300000; i++)
        attr[i] = "ab\"c\\d\xc3\xa9"[i % 8];
    attr[300000] = '\0';
    assert_true(asprintf(&xml, "<message to='%s' id='long'><body>x</body></message>", attr) > 0);
    stanza_init(&f, xml);
    seq_event(&q, &m, &f.ev);
    stanza_free(&f);
    m.session = attr;
    seq_note(&q, &m, attr, attr);
    seq_check(&q);
    free(xml);
    free(attr);
    free(raw);
}

/* The keys of every kind of line, in the order print.h gives. */
static void test_print_json_key_order(void **state)
{
    static const xs_print_rule rules[] = {{"r1", "drop", NULL}, {"r2", "set-attr", "to=x"}};
    xs_print_meta m = meta_c2s();
    xs_event open = stream_open_event(), err = error_event();
    stanza_fx msg, auth;
    capture c;
    char *out;

    stanza_init(&msg,
                "<message from='a@b/c' to='d@e' id='m1' type='chat'><body>hi</body></message>");
    stanza_init(&auth, "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>" PLAIN_B64 "</auth>");
    capture_open(&c, XS_FORMAT_JSON, 0, 0);
    assert_int_equal(xs_printer_event(c.p, &m, &open), 0);
    assert_int_equal(xs_printer_event(c.p, &m, &auth.ev), 0);
    m.rules = rules;
    m.n_rules = 2;
    m.verdict = "rewritten";
    m.rewritten = "<message to='x'/>";
    assert_int_equal(xs_printer_event(c.p, &m, &msg.ev), 0);
    m = meta_c2s();
    assert_int_equal(xs_printer_event(c.p, &m, &err), 0);
    assert_int_equal(xs_printer_note(c.p, &m, "info", "hello"), 0);
    out = capture_close(&c);
    assert_string_equal(
        out,
        "{\"time\":\"2026-11-24T03:40:00.123456Z\",\"session\":\"1\",\"dir\":\"c2s\","
        "\"phase\":\"tls\",\"event\":\"stream-open\",\"stream\":1,\"offset\":0,\"size\":130,"
        "\"name\":\"stream\",\"prefix\":\"stream\",\"ns\":\"" NS_STREAMS
        "\",\"to\":\"example.com\","
        "\"raw\":\"" STREAM_HEADER "\",\"attrs\":{\"to\":\"example.com\",\"version\":\"1.0\","
        "\"xml:lang\":\"en\"},\"namespaces\":{\"\":\"jabber:client\",\"stream\":\"" NS_STREAMS
        "\"}}\n"
        "{\"time\":\"2026-11-24T03:40:00.123456Z\",\"session\":\"1\",\"dir\":\"c2s\","
        "\"phase\":\"tls\",\"event\":\"stanza\",\"stream\":1,\"offset\":130,\"size\":92,"
        "\"name\":\"auth\",\"ns\":\"" NS_SASL "\",\"raw\":\"<auth xmlns=\\\"" NS_SASL
        "\\\" mechanism=\\\"PLAIN\\\">***</auth>\",\"redacted\":true,"
        "\"sasl\":\"PLAIN authzid=\\\"\\\" authcid=\\\"alice\\\" password=***\"}\n"
        "{\"time\":\"2026-11-24T03:40:00.123456Z\",\"session\":\"1\",\"dir\":\"c2s\","
        "\"phase\":\"tls\",\"event\":\"stanza\",\"stream\":1,\"offset\":130,\"size\":76,"
        "\"name\":\"message\",\"ns\":\"jabber:client\",\"from\":\"a@b/c\",\"to\":\"d@e\","
        "\"id\":\"m1\",\"type\":\"chat\",\"raw\":\"<message from='a@b/c' to='d@e' id='m1' "
        "type='chat'><body>hi</body></message>\",\"rules\":[{\"rule\":\"r1\",\"action\":\"drop\"},"
        "{\"rule\":\"r2\",\"action\":\"set-attr\",\"detail\":\"to=x\"}],\"verdict\":\"rewritten\","
        "\"rewritten\":\"<message to='x'/>\"}\n"
        "{\"time\":\"2026-11-24T03:40:00.123456Z\",\"session\":\"1\",\"dir\":\"c2s\","
        "\"phase\":\"tls\",\"event\":\"error\",\"stream\":1,\"offset\":120,\"size\":0,"
        "\"error\":\"XS_ENOTWF\",\"condition\":\"not-well-formed\",\"message\":\"mismatched end "
        "tag\",\"line\":3,\"column\":14}\n"
        "{\"time\":\"2026-11-24T03:40:00.123456Z\",\"session\":\"1\",\"dir\":\"c2s\","
        "\"phase\":\"tls\",\"event\":\"note\",\"level\":\"info\",\"message\":\"hello\"}\n");
    free(out);
    stanza_free(&msg);
    stanza_free(&auth);
}

/* ---- buffered printers --------------------------------------------------------------------- */

/* The size of the file behind f, and its last byte (0 when empty), without touching the FILE. */
static size_t file_size(FILE *f, char *last)
{
    struct stat st;

    assert_int_equal(fstat(fileno(f), &st), 0);
    *last = 0;
    if (st.st_size > 0)
        assert_int_equal(pread(fileno(f), last, 1, st.st_size - 1), 1);
    return (size_t)st.st_size;
}

/* What the file behind f holds, read without touching the FILE; the caller frees it. */
static char *file_text(FILE *f, size_t *len)
{
    struct stat st;
    char *s;

    assert_int_equal(fstat(fileno(f), &st), 0);
    s = malloc((size_t)st.st_size + 1);
    assert_non_null(s);
    assert_int_equal(pread(fileno(f), s, (size_t)st.st_size, 0), st.st_size);
    s[st.st_size] = '\0';
    *len = (size_t)st.st_size;
    return s;
}

static void test_print_buffered(void **state)
{
    xs_print_options o = {.format = XS_FORMAT_JSON, .buffered = 1};
    xs_print_meta m = meta_c2s();
    FILE *f = tmpfile();
    xs_printer *p, *plain;
    capture c;
    char *want, *got;
    size_t len, events = 0, writes = 0, last = 0;
    char end;
    stanza_fx msg;

    assert_non_null(f);
    assert_int_equal(xs_printer_flush(NULL), XS_EINVAL);
    assert_int_equal(xs_printer_new(f, &o, &p), 0);
    /* An unbuffered printer holds nothing: flushing it does nothing. */
    capture_open(&c, XS_FORMAT_JSON, 0, 0);
    plain = c.p;
    assert_int_equal(xs_printer_flush(plain), 0);
    assert_int_equal(xs_printer_flush(p), 0);

    /* Nothing reaches the file before a flush, then everything, as an unbuffered printer. */
    print_session(p, &m);
    print_session(plain, &m);
    got = file_text(f, &len);
    assert_int_equal(len, 0);
    free(got);
    assert_int_equal(xs_printer_flush(p), 0);
    assert_int_equal(xs_printer_flush(p), 0);
    assert_int_equal(fflush(c.f), 0);
    got = file_text(f, &len);
    assert_int_equal(len, c.len);
    assert_memory_equal(got, c.buf, len);
    free(got);
    last = len;

    /* Without flushes, it writes by itself once it holds XS_PRINT_BUFFER_MAX bytes, whole lines
     * only, with one write. */
    stanza_init(&msg, "<message to='romeo@example.net' id='m'><body>0123456789012345678901234567"
                      "8901234567890123456789</body></message>");
    while (writes < 3) {
        assert_int_equal(xs_printer_event(p, &m, &msg.ev), 0);
        assert_int_equal(xs_printer_event(plain, &m, &msg.ev), 0);
        events++;
        len = file_size(f, &end);
        assert_true(len >= last);
        if (len > last) {
            writes++;
            assert_int_equal(end, '\n');
            assert_true(len - last >= XS_PRINT_BUFFER_MAX);
            assert_true(len - last < XS_PRINT_BUFFER_MAX + 1000);
            last = len;
        }
    }
    assert_true(events > 3 * XS_PRINT_BUFFER_MAX / 1000);
    /* A note goes in the same buffer, in order; freeing writes what is left. */
    assert_int_equal(xs_printer_note(p, &m, "info", "last"), 0);
    assert_int_equal(xs_printer_note(plain, &m, "info", "last"), 0);
    xs_printer_free(p);
    want = capture_close(&c);
    got = file_text(f, &len);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(got, want, len);
    free(got);
    free(want);
    stanza_free(&msg);
    fclose(f);

    /* Pretty and compact buffer the same way. */
    for (size_t fi = 0; fi < 2; fi++) {
        f = tmpfile();
        assert_non_null(f);
        o.format = formats[fi];
        assert_int_equal(xs_printer_new(f, &o, &p), 0);
        capture_open(&c, formats[fi], 0, 0);
        print_session(p, &m);
        print_session(c.p, &m);
        got = file_text(f, &len);
        assert_int_equal(len, 0);
        free(got);
        assert_int_equal(xs_printer_flush(p), 0);
        want = capture_close(&c);
        got = file_text(f, &len);
        assert_string_equal(got, want);
        free(got);
        free(want);
        xs_printer_free(p);
        fclose(f);
    }
}

/* A FILE that fails: the flush says so, drops what was held, and the printer goes on. */
static void test_print_buffered_write_error(void **state)
{
    xs_print_options o = {.format = XS_FORMAT_JSON, .buffered = 1};
    xs_print_meta m = meta_c2s();
    xs_event open = stream_open_event();
    xs_printer *p;
    FILE *f = fopen("/dev/full", "w");
    int rc = 0;
    size_t n = 0;

    if (f == NULL)
        skip();
    assert_int_equal(xs_printer_new(f, &o, &p), 0);
    assert_int_equal(xs_printer_event(p, &m, &open), 0);
    assert_int_equal(xs_printer_note(p, &m, "info", "x"), 0);
    assert_int_equal(xs_printer_flush(p), XS_EIO);
    assert_int_equal(xs_printer_flush(p), 0);
    clearerr(f);
    /* The write it makes by itself when it holds enough fails the event that made it. */
    while (rc == 0 && n < 100000) {
        rc = xs_printer_event(p, &m, &open);
        n++;
    }
    assert_int_equal(rc, XS_EIO);
    assert_true(n > 100 && n < 100000);
    assert_int_equal(xs_printer_flush(p), 0);
    clearerr(f);
    assert_int_equal(xs_printer_event(p, &m, &open), 0);
    xs_printer_free(p); /* the failure of its last write is not seen here */
    fclose(f);
}

/* An event that cannot be printed leaves nothing of itself and keeps the lines held before. */
static void test_print_event_error_writes_nothing(void **state)
{
    size_t big = (size_t)11 << 20; /* \u0001 for every byte: over the 64 MiB of one event */
    xs_print_meta m = meta_c2s();
    xs_event ka = simple_event(XS_EV_KEEPALIVE, 0, " ");
    xs_event huge = simple_event(XS_EV_STREAM_CLOSE, 0, NULL);
    char *raw = malloc(big), *got, *want;
    size_t len;

    assert_non_null(raw);
    memset(raw, 1, big);
    huge.raw = raw;
    huge.len = big;
    want = ref_event(&m, &ka, 0);
    for (int buffered = 0; buffered < 2; buffered++) {
        xs_print_options o = {.format = XS_FORMAT_JSON, .buffered = buffered};
        FILE *f = tmpfile();
        xs_printer *p;

        assert_non_null(f);
        assert_int_equal(xs_printer_new(f, &o, &p), 0);
        assert_int_equal(xs_printer_event(p, &m, &ka), 0);
        assert_int_equal(xs_printer_event(p, &m, &huge), XS_ETOOBIG);
        assert_int_equal(xs_printer_flush(p), 0);
        got = file_text(f, &len);
        assert_string_equal(got, want);
        free(got);
        /* And the printer goes on. */
        assert_int_equal(xs_printer_event(p, &m, &ka), 0);
        xs_printer_free(p);
        got = file_text(f, &len);
        assert_int_equal(len, 2 * strlen(want));
        free(got);
        fclose(f);
    }
    free(want);
    free(raw);
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

/* ---- with and without the stanza's tree ---------------------------------------------------- */

/* Payloads of the hand-written streams below. */
#define SCRAM_FIRST_B64 "biwsbj1hbGljZSxyPWZ5a28rZDJsYmJGZ09OUnY5cWt4ZGF3TA=="
#define SCRAM_SERVER_FIRST_B64                                                                     \
    "cj1meWtvK2QybGJiRmdPTlJ2OXFreGRhd0wzcmZjTkhZSlkxWlZ2V1ZzN2oscz1RU1hDUitRNnNlazhiZjkyLGk9"     \
    "NDA5Ng=="
#define SCRAM_SERVER_FINAL_B64 "dj1ybUY5cHFWOFM3c3VBb1pXamE0ZEpSa0ZzS1E9"
/* "user=alice\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01" */
#define OAUTH_B64                                                                                  \
    "dXNlcj1hbGljZQFhdXRoPUJlYXJlciB2RjlkZnQ0cW1UYzJOdmIzUmxja0JoYkhSaGRtbHpkR0V1WTI5dENnPT0B"     \
    "AQ=="

/* A client's stream with every kind of stanza the printer and the redaction tell apart: secrets
 * of every family, attributes with references, whitespace, prefixes and none, prefixed roots. */
static const char twin_client[] =
    "<?xml version='1.0'?>" STREAM_HEADER "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>" PLAIN_B64
    "</auth>\n"
    "<auth xmlns='" NS_SASL "' mechanism='SCRAM-SHA-1'>" SCRAM_FIRST_B64 "</auth>"
    "<challenge xmlns='" NS_SASL "'>" SCRAM_SERVER_FIRST_B64 "</challenge>"
    "<response xmlns='" NS_SASL "'>" SCRAM_FINAL_B64 "</response>"
    "<success xmlns='" NS_SASL "'>" SCRAM_SERVER_FINAL_B64 "</success>"
    "<auth xmlns='" NS_SASL "' mechanism='X-&quot;OAUTH2&#233;'>" OAUTH_B64 "</auth>"
    "<response xmlns='" NS_SASL "'><![CDATA[" PLAIN_B64 "]]></response>"
    "<failure xmlns='" NS_SASL "'><not-authorized/><text xml:lang='en'>no</text></failure>"
    "<s:auth xmlns:s='" NS_SASL "' mechanism='PLAIN'>" PLAIN_B64 "</s:auth>"
    "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>" PLAIN_B64
    "</initial-response><user-agent id='d4565fa7-4d72-4749-b3d3-740edbf87770'><software>xs"
    "</software></user-agent></authenticate>"
    "<s2:authenticate xmlns:s2='urn:xmpp:sasl:2' mechanism='PLAIN'><s2:initial-response>" PLAIN_B64
    "</s2:initial-response></s2:authenticate>"
    "<success xmlns='urn:xmpp:sasl:2'><additional-data>" SCRAM_SERVER_FINAL_B64
    "</additional-data><authorization-identifier>alice@example.com/r</authorization-identifier>"
    "<token xmlns='urn:xmpp:fast:0' expiry='2026-12-01T00:00:00Z' token='WXZzciBwYmFmdmZnZiBq'/>"
    "</success>\n \n"
    "<iq type='set' id='reg2'><query xmlns='jabber:iq:register'><username>bill</username>"
    "<password>Calliope</password><email>bard@example.lit</email></query></iq>"
    "<iq type='set' id='reg3'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' "
    "type='submit'><field var='username'><value>juliet</value></field><field var='password' "
    "type='text-private'><value>s3cr3t-form</value></field></x></query></iq>"
    "<iq type='result' id='reg0'><query xmlns='jabber:iq:register'><instructions>Choose"
    "</instructions><username/><password/></query></iq>"
    "<iq type='set' id='auth1'><query xmlns='jabber:iq:auth'><username>bill</username>"
    "<password>Calliope</password><resource>globe</resource></query></iq>"
    "<iq type='set' id='auth2'><query xmlns='jabber:iq:auth'><username>bill</username>"
    "<digest>48fc78be9ec8f86d8ce1c39c320c97c21d62334d</digest></query></iq>"
    "<iq type='set' id='reg4'><query xmlns='jabber&#x3A;iq&#58;register'><username>u</username>"
    "<password>s3cr3t-ref</password></query></iq>"
    "<iq type='set' id='r&amp;1'><query xmlns='jabber:iq:roster'><item jid='a@example.com' "
    "name='A &amp; B'/></query></iq>"
    "<iq type='get' id='' to='example.com' xml:lang='en'><ping xmlns='urn:xmpp:ping'/></iq>"
    "<iq type='get' id='ver1'><query xmlns='jabber:iq:version'/></iq>"
    "<message to='a&amp;b@example.com' from='&lt;x&gt;@example.com/&#233;' "
    "id='&#x1F600;&quot;&apos;' type='chat' xml:lang='fr'><body>caf&#233; &lt;3</body></message>"
    "<message to='a\tb\nc\r\nd' id='x&#9;y&#10;z&#13;w' type=' chat '><body/></message>"
    "<message xmlns:p='urn:example:p' p:to='evil' to='good@example.com' p:id='pid' "
    "xml:lang='en'><body>hi</body></message>"
    "<presence xmlns:p='urn:example:p' p:from='evil' p:type='unavailable'/>"
    "<presence/>"
    "<presence from='j\xc3\xbcrgen@example.com' to=\"double@example.com\"><show>away</show>"
    "</presence>"
    "<cl:message xmlns:cl='jabber:client' to='pfx@example.com' type='normal'><cl:body>x"
    "</cl:body></cl:message>"
    "<stream:features><mechanisms xmlns='" NS_SASL "'><mechanism>PLAIN</mechanism></mechanisms>"
    "</stream:features>" STREAM_CLOSE;

/* A server-to-server stream: a prefix declared on the stream element and used by stanzas. */
static const char twin_server[] =
    "<stream:stream xmlns='jabber:server' xmlns:stream='" NS_STREAMS "' "
    "xmlns:db='jabber:server:dialback' from='a.example' to='b.example' version='1.0'>"
    "<db:result from='a.example' to='b.example'>b4835385f37fe2895af6c196b59097b1</db:result>"
    "<db:verify from='a.example' to='b.example' id='417GAF25'>b4835385f37fe28</db:verify>"
    "<message from='a@a.example' to='b@b.example' type='chat'><body>s2s</body></message>"
    "<iq type='get' id='v1' from='a.example' to='b.example'><query xmlns='jabber:iq:version'/>"
    "</iq>" STREAM_CLOSE;

/* Names that resolve only with the stream element's declarations: the default namespace is
 * SASL's, and a prefix bound to it. */
static const char twin_context[] =
    "<stream:stream xmlns='" NS_SASL "' xmlns:stream='" NS_STREAMS "' xmlns:sasl='" NS_SASL
    "' to='example.com'>"
    "<auth mechanism='PLAIN'>" PLAIN_B64 "</auth>"
    "<response>" SCRAM_FINAL_B64 "</response>"
    "<sasl:auth mechanism='PLAIN'>" PLAIN_B64 "</sasl:auth>" STREAM_CLOSE;

typedef struct twin {
    xs_printer *p;
    xs_print_meta m;
    int events, trees;
} twin;

static int twin_cb(void *user, const xs_event *ev)
{
    twin *t = user;

    t->events++;
    t->trees += ev->node != NULL;
    return xs_printer_event(t->p, &t->m, ev);
}

/* Parses `len` bytes of `input` with the parser options `opts` (fed in two reads split at
 * `split`, or in one when 0) and returns what a printer of `format` printed of the events. */
static char *twin_print(const char *input, size_t len, unsigned opts, xs_format format, int show,
                        size_t split)
{
    xs_parser *parser;
    capture c;
    twin t = {0};
    size_t used;

    capture_open(&c, format, 0, show);
    t.p = c.p;
    t.m = meta_c2s();
    assert_int_equal(xs_parser_new(NULL, opts | XS_PARSER_AUTO_RESTART, twin_cb, &t, &parser), 0);
    if (split > 0) {
        assert_int_equal(xs_parser_feed(parser, input, split, &used), 0);
        assert_int_equal(used, split);
    }
    assert_int_equal(xs_parser_feed(parser, input + split, len - split, &used), 0);
    assert_int_equal(used, len - split);
    xs_parser_free(parser);
    assert_true(t.events > 0);
    if (opts & XS_PARSER_TREE)
        assert_true(t.trees > 0);
    else
        assert_int_equal(t.trees, 0);
    return capture_close(&c);
}

/* Fails, showing the first line that differs, unless the two outputs are the same. */
static void assert_same_lines(const char *what, const char *with, const char *without)
{
    const char *a = with, *b = without;

    if (strcmp(with, without) == 0)
        return;
    while (*a != '\0' && *a == *b) {
        a++;
        b++;
    }
    while (a > with && a[-1] != '\n') {
        a--;
        b--;
    }
    fail_msg("%s: with a tree\n%.*s\nwithout\n%.*s", what, (int)strcspn(a, "\n"), a,
             (int)strcspn(b, "\n"), b);
}

/* Prints `input` parsed with and without trees and compares. */
static void assert_twins(const char *what, const char *input, size_t len, xs_format format,
                         int show)
{
    char *with = twin_print(input, len, XS_PARSER_RAW | XS_PARSER_TREE, format, show, 0);
    char *without = twin_print(input, len, XS_PARSER_RAW, format, show, 0);
    char label[256];

    snprintf(label, sizeof(label), "%s (%s, show_secrets %d)", what, xs_format_name(format), show);
    assert_same_lines(label, with, without);
    free(with);
    free(without);
}

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *s;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return s;
}

/* JSON Lines and compact lines are the same byte for byte whether the parser built trees or not:
 * the key attributes come from the event, redaction parses only what may carry a secret and
 * masks it the same. The captures shipped in examples/ and streams written for the cases that
 * differ in how they are looked at. */
static void test_print_same_without_tree(void **state)
{
    static const char *const captures[] = {"c2s-plain.xml", "s2c-plain.xml", "scram-both.xml"};
    static const struct {
        const char *name, *text;
        size_t len;
    } streams[] = {
        {"client", twin_client, sizeof(twin_client) - 1},
        {"server", twin_server, sizeof(twin_server) - 1},
        {"context", twin_context, sizeof(twin_context) - 1},
    };
    static const xs_format twin_formats[] = {XS_FORMAT_JSON, XS_FORMAT_COMPACT};

    for (size_t i = 0; i < sizeof(captures) / sizeof(captures[0]); i++) {
        char path[4096];
        size_t len;
        char *text;

        snprintf(path, sizeof(path), "%s/examples/captures/%s", XS_SOURCE_DIR, captures[i]);
        text = read_text(path, &len);
        for (size_t fi = 0; fi < sizeof(twin_formats) / sizeof(twin_formats[0]); fi++)
            for (int show = 0; show < 2; show++)
                assert_twins(captures[i], text, len, twin_formats[fi], show);
        free(text);
    }
    for (size_t i = 0; i < sizeof(streams) / sizeof(streams[0]); i++)
        for (size_t fi = 0; fi < sizeof(twin_formats) / sizeof(twin_formats[0]); fi++)
            for (int show = 0; show < 2; show++)
                assert_twins(streams[i].name, streams[i].text, streams[i].len, twin_formats[fi],
                             show);
}

/* The same at every split of the client's stream into two reads: a stanza cut in two goes
 * through libxml2 instead of the parser's fast check, and its attributes come from SAX. (The
 * events themselves may differ from split to split: whitespace between stanzas is reported read
 * by read.) */
static void test_print_same_without_tree_split(void **state)
{
    size_t len = sizeof(twin_client) - 1;

    for (size_t at = 1; at < len; at++) {
        char *with =
            twin_print(twin_client, len, XS_PARSER_RAW | XS_PARSER_TREE, XS_FORMAT_JSON, 0, at);
        char *without = twin_print(twin_client, len, XS_PARSER_RAW, XS_FORMAT_JSON, 0, at);
        char label[64];

        for (size_t k = 0; k < sizeof(secrets) / sizeof(secrets[0]); k++)
            if (strstr(without, secrets[k]) != NULL)
                fail_msg("split at %zu: secret %s printed", at, secrets[k]);
        snprintf(label, sizeof(label), "split at %zu", at);
        assert_same_lines(label, with, without);
        free(with);
        free(without);
    }
}

/* Only the pretty format, which indents the XML from the tree, asks the parser for trees. */
static void test_print_needs_tree(void **state)
{
    static const struct {
        xs_format format;
        int needs;
    } cases[] = {
        {XS_FORMAT_PRETTY, 1},
        {XS_FORMAT_COMPACT, 0},
        {XS_FORMAT_JSON, 0},
        {XS_FORMAT_NONE, 0},
    };

    assert_int_equal(xs_printer_needs_tree(NULL), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        capture c;
        capture_open(&c, cases[i].format, 0, 0);
        assert_int_equal(xs_printer_needs_tree(c.p), cases[i].needs);
        free(capture_close(&c));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_print_format_parse),
        cmocka_unit_test(test_print_color_wanted),
        cmocka_unit_test(test_print_password_never_appears),
        cmocka_unit_test(test_print_show_secrets),
        cmocka_unit_test(test_print_rewritten_masked),
        cmocka_unit_test(test_print_forms_and_muc_masked),
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
        cmocka_unit_test(test_print_json_matches_reference),
        cmocka_unit_test(test_print_unsafe_characters_every_format),
        cmocka_unit_test(test_print_term_printf_escapes),
        cmocka_unit_test(test_print_json_times),
        cmocka_unit_test(test_print_json_escapes),
        cmocka_unit_test(test_print_json_word_boundaries),
        cmocka_unit_test(test_print_json_long_values),
        cmocka_unit_test(test_print_json_key_order),
        cmocka_unit_test(test_print_buffered),
        cmocka_unit_test(test_print_buffered_write_error),
        cmocka_unit_test(test_print_event_error_writes_nothing),
        cmocka_unit_test(test_print_same_without_tree),
        cmocka_unit_test(test_print_same_without_tree_split),
        cmocka_unit_test(test_print_needs_tree),
        cmocka_unit_test(test_print_annotations),
        cmocka_unit_test(test_print_annot_cut),
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
