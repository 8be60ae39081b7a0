/* Unit tests of inspect/redact.c: base64, the GS2 header, and the masking of SASL, SASL2, FAST,
 * XEP-0077 and XEP-0078 secrets. Events are built by hand the way the parser makes them: the
 * stanza's tree still attached to its stream element. The tests at the end run the real parser
 * with and without trees and compare. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libxml/parser.h>

#include "inspect/error.h"
#include "inspect/parser.h"
#include "inspect/b64.h"
#include "inspect/redact.h"

#define STREAM_OPEN                                                                                \
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
#define STREAM_CLOSE "</stream:stream>"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_STREAMS "http://etherx.jabber.org/streams"

/* A stanza event with its tree, as the parser hands it out. */
typedef struct fixture {
    xmlDoc *doc;
    char *raw;
    xs_event ev;
} fixture;

static void fixture_init(fixture *f, const char *stanza)
{
    size_t len = strlen(stanza);
    char *doc = malloc(sizeof(STREAM_OPEN) + len + sizeof(STREAM_CLOSE));
    xmlNode *root, *node;

    assert_non_null(doc);
    strcpy(doc, STREAM_OPEN);
    strcat(doc, stanza);
    strcat(doc, STREAM_CLOSE);
    memset(f, 0, sizeof(*f));
    f->doc = xmlReadMemory(doc, (int)strlen(doc), NULL, "UTF-8", XML_PARSE_NONET);
    free(doc);
    assert_non_null(f->doc);
    root = xmlDocGetRootElement(f->doc);
    for (node = root->children; node != NULL && node->type != XML_ELEMENT_NODE;)
        node = node->next;
    assert_non_null(node);
    f->raw = strdup(stanza);
    assert_non_null(f->raw);
    f->ev.kind = XS_EV_STANZA;
    f->ev.offset = sizeof(STREAM_OPEN) - 1;
    f->ev.len = len;
    f->ev.line = 1;
    f->ev.column = (unsigned)f->ev.offset + 1;
    f->ev.stream_no = 1;
    f->ev.name = (const char *)node->name;
    f->ev.ns = node->ns != NULL ? (const char *)node->ns->href : NULL;
    f->ev.prefix = node->ns != NULL ? (const char *)node->ns->prefix : NULL;
    f->ev.node = node;
    f->ev.raw = f->raw;
}

static void fixture_free(fixture *f)
{
    xmlFreeDoc(f->doc);
    free(f->raw);
}

/* base64 of n bytes, for building payloads. The caller frees. */
static char *b64(const void *data, size_t n)
{
    char *out;
    size_t len;

    assert_int_equal(xs_base64_encode(data, n, &out, &len), 0);
    return out;
}

/* `<el xmlns=ns attrs>base64(payload)</el>` */
static char *sasl_stanza(const char *el, const char *ns, const char *attrs, const void *payload,
                         size_t n)
{
    char *data = b64(payload, n), *s = NULL;

    assert_true(asprintf(&s, "<%s xmlns='%s'%s>%s</%s>", el, ns, attrs, data, el) > 0);
    free(data);
    return s;
}

/* Redacts `stanza`; the caller clears *r and frees the fixture. */
static void redact(fixture *f, const char *stanza, int show, xs_redaction *r)
{
    fixture_init(f, stanza);
    assert_int_equal(xs_redact_event(&f->ev, show, r), 0);
}

static const char plain_alice[] = "\0alice\0s3cr3t!";

static void test_redact_base64_roundtrip(void **state)
{
    unsigned char data[64];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 37 + 1);
    for (size_t n = 0; n <= sizeof(data); n++) {
        char *enc = NULL;
        unsigned char *dec = NULL;
        size_t elen, dlen;

        assert_int_equal(xs_base64_encode(data, n, &enc, &elen), 0);
        assert_int_equal(elen, (n + 2) / 3 * 4);
        assert_int_equal(xs_base64_decode(enc, elen, &dec, &dlen), 0);
        assert_int_equal(dlen, n);
        assert_memory_equal(dec, data, n);
        free(enc);
        free(dec);
    }
}

static void test_redact_base64_rules(void **state)
{
    static const char *const bad[] = {"abc", "ab=c", "a===", "QQ==QQ==", "****", "Q",
                                      "QQ=", "=QQ=", "==",   "Q\001==",  "QUJD="};
    unsigned char *dec;
    size_t len;

    assert_int_equal(xs_base64_decode("=", 1, &dec, &len), 0);
    assert_int_equal(len, 0);
    free(dec);
    assert_int_equal(xs_base64_decode(" \r\n=\t", 5, &dec, &len), 0);
    assert_int_equal(len, 0);
    free(dec);
    assert_int_equal(xs_base64_decode("", 0, &dec, &len), 0);
    assert_int_equal(len, 0);
    free(dec);
    assert_int_equal(xs_base64_decode(" QU\nJD\r\nRA= =", 13, &dec, &len), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(dec, "ABCD", 4);
    free(dec);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dec = (unsigned char *)"x";
        assert_int_equal(xs_base64_decode(bad[i], strlen(bad[i]), &dec, &len), XS_EPARSE);
        assert_null(dec);
    }
}

static void test_redact_gs2_flag(void **state)
{
    char cb[32];

    assert_int_equal(xs_sasl_gs2_flag("n,,n=alice,r=abc", 16, cb, sizeof(cb)), 'n');
    assert_string_equal(cb, "");
    assert_int_equal(xs_sasl_gs2_flag("y,,n=alice,r=abc", 16, cb, sizeof(cb)), 'y');
    assert_int_equal(xs_sasl_gs2_flag("p=tls-unique,,n=alice,r=abc", 27, cb, sizeof(cb)), 'p');
    assert_string_equal(cb, "tls-unique");
    assert_int_equal(xs_sasl_gs2_flag("p=tls-exporter,a=admin,n=a,r=b", 30, NULL, 0), 'p');
    assert_int_equal(xs_sasl_gs2_flag("n,a=admin@example.com,", 22, cb, sizeof(cb)), 'n');
    /* The name does not fit: no answer rather than a wrong one. */
    assert_int_equal(xs_sasl_gs2_flag("p=tls-unique,,", 14, cb, 5), 0);
    static const char *const bad[] = {"",     "n",   "n,",      "x,,",  "p=,,",    "p=tls-unique",
                                      "n,b,", "n,a", "p=a b,,", "nn,,", "y,a=x\0,"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(xs_sasl_gs2_flag(bad[i], strlen(bad[i]), cb, sizeof(cb)), 0);
    assert_int_equal(xs_sasl_gs2_flag("y,a=x\0,", 7, cb, sizeof(cb)), 0);
    assert_int_equal(xs_sasl_gs2_flag(NULL, 3, cb, sizeof(cb)), 0);
}

static void test_redact_plain_auth_masked(void **state)
{
    fixture f;
    xs_redaction r;
    char *st =
        sasl_stanza("auth", NS_SASL, " mechanism='PLAIN'", plain_alice, sizeof(plain_alice) - 1);
    char *enc = b64(plain_alice, sizeof(plain_alice) - 1);

    redact(&f, st, 0, &r);
    assert_int_equal(r.masked, 1);
    assert_string_equal(r.note, "PLAIN authzid=\"\" authcid=\"alice\" password=***");
    assert_string_equal(r.xml, "<auth xmlns=\"" NS_SASL "\" mechanism=\"PLAIN\">***</auth>");
    assert_int_equal(r.xml_len, strlen(r.xml));
    assert_null(strstr(r.xml, enc));
    assert_non_null(r.node);
    assert_string_equal((const char *)r.node->name, "auth");
    /* The parser's tree is left as it was. */
    assert_non_null(strstr((const char *)f.ev.node->children->content, enc));
    xs_redaction_clear(&r);
    assert_null(r.xml);
    xs_redaction_clear(&r);
    fixture_free(&f);
    free(enc);
    free(st);
}

static void test_redact_plain_show_secrets(void **state)
{
    fixture f;
    xs_redaction r;
    char *st =
        sasl_stanza("auth", NS_SASL, " mechanism='PLAIN'", plain_alice, sizeof(plain_alice) - 1);

    redact(&f, st, 1, &r);
    assert_int_equal(r.masked, 0);
    assert_null(r.xml);
    assert_null(r.node);
    assert_string_equal(r.note, "PLAIN authzid=\"\" authcid=\"alice\" password=\"s3cr3t!\"");
    xs_redaction_clear(&r);
    fixture_free(&f);
    free(st);
}

/* <auth mechanism='PLAIN'/> without an initial response; the credentials follow in a
 * <response>, which names no mechanism: the content tells. */
static void test_redact_plain_response_after_empty_auth(void **state)
{
    static const char payload[] = "admin\0alice\0pw \"quoted\"";
    fixture f;
    xs_redaction r;
    char *st;

    redact(&f, "<auth xmlns='" NS_SASL "' mechanism='PLAIN'/>", 0, &r);
    assert_int_equal(r.masked, 0);
    assert_null(r.note);
    assert_null(r.xml);
    xs_redaction_clear(&r);
    fixture_free(&f);

    redact(&f, "<challenge xmlns='" NS_SASL "'>=</challenge>", 0, &r);
    assert_int_equal(r.masked, 0);
    assert_string_equal(r.note, "(empty)");
    xs_redaction_clear(&r);
    fixture_free(&f);

    st = sasl_stanza("response", NS_SASL, "", payload, sizeof(payload) - 1);
    redact(&f, st, 0, &r);
    assert_int_equal(r.masked, 1);
    assert_string_equal(r.note, "PLAIN authzid=\"admin\" authcid=\"alice\" password=***");
    assert_string_equal(r.xml, "<response xmlns=\"" NS_SASL "\">***</response>");
    xs_redaction_clear(&r);
    fixture_free(&f);

    redact(&f, st, 1, &r);
    assert_string_equal(r.note,
                        "PLAIN authzid=\"admin\" authcid=\"alice\" password=\"pw \\\"quoted\\\"\"");
    xs_redaction_clear(&r);
    fixture_free(&f);
    free(st);
}

static void scram_first(const char *msg, int flag, const char *cb)
{
    fixture f;
    xs_redaction r;
    char *st = sasl_stanza("auth", NS_SASL, " mechanism='SCRAM-SHA-1-PLUS'", msg, strlen(msg));

    redact(&f, st, 0, &r);
    assert_int_equal(r.masked, 0);
    assert_null(r.xml);
    assert_int_equal(r.gs2_flag, flag);
    assert_string_equal(r.cb_name, cb);
    assert_non_null(strstr(r.note, "SCRAM-SHA-1-PLUS client-first \""));
    assert_non_null(strstr(r.note, msg));
    assert_int_equal(xs_sasl_gs2_flag(msg, strlen(msg), NULL, 0), flag);
    xs_redaction_clear(&r);
    fixture_free(&f);
    free(st);
}

static void test_redact_scram_client_first_gs2(void **state)
{
    scram_first("n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL", 'n', "");
    scram_first("y,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL", 'y', "");
    scram_first("p=tls-unique,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL", 'p', "tls-unique");
    scram_first("p=tls-exporter,a=admin,m=ext,n=alice,r=x,e=1", 'p', "tls-exporter");
}

static void test_redact_scram_client_final_proof_masked(void **state)
{
    static const char msg[] =
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
    fixture f;
    xs_redaction r;
    char *st = sasl_stanza("response", NS_SASL, "", msg, strlen(msg));
    char *enc = b64(msg, strlen(msg));

    redact(&f, st, 0, &r);
    assert_int_equal(r.masked, 1);
    assert_string_equal(r.note,
                        "SCRAM client-final \"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                        "p=***\"");
    assert_null(strstr(r.xml, enc));
    assert_null(strstr(r.xml, "v0X8v3Bz"));
    xs_redaction_clear(&r);
    fixture_free(&f);

    redact(&f, st, 1, &r);
    assert_int_equal(r.masked, 0);
    assert_non_null(strstr(r.note, "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=\""));
    xs_redaction_clear(&r);
    fixture_free(&f);
    free(enc);
    free(st);
}

static void test_redact_scram_server_messages(void **state)
{
    static const char first[] =
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    static const char final[] = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";
    fixture f;
    xs_redaction r;
    char *st = sasl_stanza("challenge", NS_SASL, "", first, strlen(first));

    redact(&f, st, 0, &r);
    assert_int_equal(r.masked, 0);
    assert_string_equal(r.note, "SCRAM server-first \"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                                "s=QSXCR+Q6sek8bf92,i=4096\"");
    xs_redaction_clear(&r);
    fixture_free(&f);
    free(st);

    st = sasl_stanza("success", NS_SASL, "", final, strlen(final));
    redact(&f, st, 0, &r);
    assert_int_equal(r.masked, 1);
    assert_string_equal(r.note, "SCRAM server-final \"v=***\"");
    assert_null(strstr(r.xml, "cm1GOXBx"));
    xs_redaction_clear(&r);
    fixture_free(&f);
    free(st);

    st = sasl_stanza("failure", NS_SASL, "", final, strlen(final));
    redact(&f, st, 0, &r);
    assert_int_equal(r.masked, 0);
    assert_null(r.note);
    xs_redaction_clear(&r);
    fixture_free(&f);
    free(st);
}

static void test_redact_sasl2(void **state)
{
    static const char final[] = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";
    char *pw = b64(plain_alice, sizeof(plain_alice) - 1), *v = b64(final, strlen(final));
    char *st = NULL;
    fixture f;
    xs_redaction r;

    assert_true(asprintf(&st,
                         "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'>"
                         "<initial-response>%s</initial-response>"
                         "<user-agent id='d4565fa7'><software>Dino</software></user-agent>"
                         "</authenticate>",
                         pw) > 0);
    redact(&f, st, 0, &r);
    assert_int_equal(r.masked, 1);
    assert_string_equal(r.note, "PLAIN authzid=\"\" authcid=\"alice\" password=***");
    assert_null(strstr(r.xml, pw));
    assert_non_null(strstr(r.xml, "<initial-response>***</initial-response>"));
    assert_non_null(strstr(r.xml, "<software>Dino</software>"));
    xs_redaction_clear(&r);
    fixture_free(&f);
    free(st);

    assert_true(asprintf(&st,
                         "<success xmlns='urn:xmpp:sasl:2'>"
                         "<additional-data>%s</additional-data>"
                         "<authorization-identifier>alice@example.com/x</authorization-identifier>"
                         "<token xmlns='urn:xmpp:fast:0' expiry='2026-12-01T00:00:00Z' "
                         "token='WxPDeYsNqUh9kS2nOjpLfWBb4qDsE+G5QwrMcGc2hXU='/>"
                         "</success>",
                         v) > 0);
    redact(&f, st, 0, &r);
    assert_int_equal(r.masked, 2);
    assert_string_equal(r.note, "SCRAM server-final \"v=***\"; FAST token=***");
    assert_null(strstr(r.xml, v));
    assert_null(strstr(r.xml, "WxPDeYsNqUh9"));
    assert_non_null(strstr(r.xml, "alice@example.com/x"));
    xs_redaction_clear(&r);
    fixture_free(&f);
    free(st);
    free(pw);
    free(v);
}

static void test_redact_unknown_mechanisms_masked(void **state)
{
    static const char oauth[] = "n,a=alice@example.com,\001auth=Bearer vF9dft4qmT\001\001";
    static const char xoauth[] = "\0alice\0ya29.token";
    fixture f;
    xs_redaction r;
    char *st = sasl_stanza("auth", NS_SASL, " mechanism='X-OAUTH2'", xoauth, sizeof(xoauth) - 1);

    redact(&f, st, 0, &r);
    assert_int_equal(r.masked, 1);
    assert_string_equal(r.note, "X-OAUTH2 payload (17 bytes) masked");
    assert_null(strstr(r.xml, "ya29"));
    xs_redaction_clear(&r);
    fixture_free(&f);
    free(st);

    /* In a <response> with no mechanism: not PLAIN, not SCRAM, so all of it is hidden. */
    st = sasl_stanza("response", NS_SASL, "", oauth, sizeof(oauth) - 1);
    redact(&f, st, 0, &r);
    assert_int_equal(r.masked, 1);
    assert_string_equal(r.note, "SASL payload (47 bytes) masked");
    assert_int_equal(r.gs2_flag, 0);
    xs_redaction_clear(&r);
    fixture_free(&f);

    redact(&f, st, 1, &r);
    assert_int_equal(r.masked, 0);
    assert_string_equal(r.note, "SASL payload (47 bytes) \"n,a=alice@example.com,\\x01auth=Bearer "
                                "vF9dft4qmT\\x01\\x01\"");
    xs_redaction_clear(&r);
    fixture_free(&f);
    free(st);
}

static void test_redact_invalid_base64_masked(void **state)
{
    fixture f;
    xs_redaction r;

    redact(&f, "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA=*</auth>", 0, &r);
    assert_int_equal(r.masked, 1);
    assert_string_equal(r.note, "PLAIN invalid base64 (20 bytes) masked");
    assert_null(strstr(r.xml, "AGFsaWNl"));
    xs_redaction_clear(&r);
    fixture_free(&f);

    /* Elements inside a SASL element are not allowed; whatever they hold is hidden. */
    redact(&f, "<response xmlns='" NS_SASL "'>AGFs<x>secret</x></response>", 0, &r);
    assert_int_equal(r.masked, 1);
    assert_null(strstr(r.xml, "secret"));
    assert_null(strstr(r.xml, "AGFs"));
    xs_redaction_clear(&r);
    fixture_free(&f);
}

/* Every prefix of valid payloads, of their base64 and pseudo-random bytes: no crash, no leak,
 * and the password never shows when masking. */
static void test_redact_truncated_and_random_payloads(void **state)
{
    static const char *const payloads[] = {
        "\0alice\0s3cr3t!",
        "n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL",
        "p=tls-unique,,n=alice,r=abc",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    };
    static const size_t lens[] = {14, 37, 27, 83, 30};
    static const char *const wrappers[] = {"auth", "response", "challenge", "success"};
    uint32_t seed = 12345;

    for (size_t p = 0; p < sizeof(payloads) / sizeof(payloads[0]); p++) {
        char *full = b64(payloads[p], lens[p]);
        for (size_t n = 0; n <= lens[p]; n++) {
            for (size_t w = 0; w < 4; w++) {
                char *st = sasl_stanza(wrappers[w], NS_SASL, w == 0 ? " mechanism='PLAIN'" : "",
                                       payloads[p], n);
                fixture f;
                xs_redaction r;

                for (int show = 0; show < 2; show++) {
                    redact(&f, st, show, &r);
                    if (!show && r.xml != NULL)
                        assert_null(strstr(r.xml, "s3cr3t"));
                    if (!show && r.note != NULL)
                        assert_null(strstr(r.note, "s3cr3t"));
                    xs_redaction_clear(&r);
                    fixture_free(&f);
                }
                free(st);
            }
        }
        /* Truncated base64 text. */
        for (size_t n = 0; n <= strlen(full); n++) {
            char *st = NULL;
            fixture f;
            xs_redaction r;

            assert_true(
                asprintf(&st, "<response xmlns='" NS_SASL "'>%.*s</response>", (int)n, full) > 0);
            redact(&f, st, 0, &r);
            if (r.xml != NULL)
                assert_null(strstr(r.xml, full));
            xs_redaction_clear(&r);
            fixture_free(&f);
            free(st);
        }
        free(full);
    }
    for (int i = 0; i < 2000; i++) {
        unsigned char buf[48];
        size_t n = (size_t)i % sizeof(buf);
        char *st;
        fixture f;
        xs_redaction r;

        for (size_t k = 0; k < n; k++) {
            seed = seed * 1103515245u + 12345u;
            /* Mostly SCRAM-ish characters, some NULs and high bytes. */
            buf[k] = (unsigned char)("n,=rpcvyae\0\xff\x01"[(seed >> 16) % 14]);
        }
        st = sasl_stanza(i % 2 ? "response" : "success", NS_SASL, "", buf, n);
        redact(&f, st, i % 3 == 0, &r);
        if (r.note != NULL) {
            assert_true(strlen(r.note) <= XS_REDACT_NOTE_MAX);
            assert_null(strchr(r.note, '\n'));
        }
        xs_redaction_clear(&r);
        fixture_free(&f);
        free(st);
    }
}

static void test_redact_register_password_masked(void **state)
{
    fixture f;
    xs_redaction r;

    redact(&f,
           "<iq type='set' id='reg2' xml:lang='en'><query xmlns='jabber:iq:register'>"
           "<username>bill</username><password>Calliope</password>"
           "<email>bard@shakespeare.lit</email></query></iq>",
           0, &r);
    assert_int_equal(r.masked, 1);
    assert_string_equal(r.note, "jabber:iq:register password=***");
    assert_string_equal(r.xml, "<iq type=\"set\" id=\"reg2\" xml:lang=\"en\">"
                               "<query xmlns=\"jabber:iq:register\"><username>bill</username>"
                               "<password>***</password><email>bard@shakespeare.lit</email>"
                               "</query></iq>");
    /* The masked copy keeps its namespace, inherited from the stream, without declaring it. */
    assert_non_null(r.node->ns);
    assert_string_equal((const char *)r.node->ns->href, "jabber:client");
    assert_null(r.node->nsDef);
    xs_redaction_clear(&r);
    fixture_free(&f);

    redact(&f,
           "<iq type='set' id='reg2'><query xmlns='jabber:iq:register'>"
           "<username>bill</username><password>Calliope</password></query></iq>",
           1, &r);
    assert_int_equal(r.masked, 0);
    assert_null(r.xml);
    assert_string_equal(r.note, "jabber:iq:register password=\"Calliope\"");
    xs_redaction_clear(&r);
    fixture_free(&f);

    /* The server's empty form has nothing to hide. */
    redact(&f,
           "<iq type='result' id='reg1'><query xmlns='jabber:iq:register'>"
           "<instructions>Choose a username and password.</instructions>"
           "<username/><password/><email/></query></iq>",
           0, &r);
    assert_int_equal(r.masked, 0);
    assert_null(r.note);
    assert_null(r.xml);
    xs_redaction_clear(&r);
    fixture_free(&f);
}

static void test_redact_register_data_form_masked(void **state)
{
    fixture f;
    xs_redaction r;

    redact(&f,
           "<iq type='set' id='reg3'><query xmlns='jabber:iq:register'>"
           "<x xmlns='jabber:x:data' type='submit'>"
           "<field var='FORM_TYPE'><value>jabber:iq:register</value></field>"
           "<field var='username'><value>bill</value></field>"
           "<field var='password'><value>Calliope</value></field>"
           "<field var='pin' type='text-private'><value>4321</value></field>"
           "</x></query></iq>",
           0, &r);
    assert_int_equal(r.masked, 2);
    assert_null(strstr(r.xml, "Calliope"));
    assert_null(strstr(r.xml, "4321"));
    assert_non_null(strstr(r.xml, "<value>bill</value>"));
    assert_string_equal(r.note,
                        "jabber:iq:register form field=***; jabber:iq:register form field=***");
    xs_redaction_clear(&r);
    fixture_free(&f);
}

static void test_redact_iq_auth_masked(void **state)
{
    fixture f;
    xs_redaction r;

    redact(&f,
           "<iq type='set' id='auth2'><query xmlns='jabber:iq:auth'><username>bill</username>"
           "<password>Calliope</password><digest>48fc78be9ec8f86d8ce1c39c320c97c21d62334d"
           "</digest><resource>globe</resource></query></iq>",
           0, &r);
    assert_int_equal(r.masked, 2);
    assert_string_equal(r.note, "jabber:iq:auth password=***; jabber:iq:auth digest=***");
    assert_null(strstr(r.xml, "Calliope"));
    assert_null(strstr(r.xml, "48fc78be"));
    assert_non_null(strstr(r.xml, "<resource>globe</resource>"));
    xs_redaction_clear(&r);
    fixture_free(&f);
}

static void test_redact_other_events_untouched(void **state)
{
    fixture f;
    xs_redaction r;

    redact(&f, "<message to='a@b' type='chat'><body>password: hunter2</body></message>", 0, &r);
    assert_int_equal(r.masked, 0);
    assert_null(r.xml);
    assert_null(r.note);
    assert_null(r.doc);
    xs_redaction_clear(&r);
    f.ev.kind = XS_EV_KEEPALIVE;
    assert_int_equal(xs_redact_event(&f.ev, 0, &r), 0);
    assert_null(r.xml);
    fixture_free(&f);
    assert_int_equal(xs_redact_event(NULL, 0, &r), XS_EINVAL);
    assert_int_equal(xs_redact_event(&f.ev, 0, NULL), XS_EINVAL);
}

/* Without XS_PARSER_TREE the stanza is parsed from its raw bytes; what cannot be parsed is
 * hidden whole. */
static void test_redact_raw_without_tree(void **state)
{
    fixture f;
    xs_redaction r;
    char *st =
        sasl_stanza("auth", NS_SASL, " mechanism='PLAIN'", plain_alice, sizeof(plain_alice) - 1);

    fixture_init(&f, st);
    f.ev.node = NULL;
    assert_int_equal(xs_redact_event(&f.ev, 0, &r), 0);
    assert_int_equal(r.masked, 1);
    assert_string_equal(r.xml, "<auth xmlns=\"" NS_SASL "\" mechanism=\"PLAIN\">***</auth>");
    assert_string_equal(r.note, "PLAIN authzid=\"\" authcid=\"alice\" password=***");
    xs_redaction_clear(&r);

    f.ev.raw = "<message><body>hi</body></message>";
    f.ev.len = strlen(f.ev.raw);
    assert_int_equal(xs_redact_event(&f.ev, 0, &r), 0);
    assert_null(r.xml);
    assert_null(r.note);
    xs_redaction_clear(&r);

    /* An undeclared prefix, a truncated element, two elements, a DOCTYPE. */
    static const char *const bad[] = {"<sasl:auth mechanism='PLAIN'>AGFsaWNlAHM=</sasl:auth>",
                                      "<auth xmlns='" NS_SASL "'>AGFsaWNl", "<a/><b/>",
                                      "<!DOCTYPE x [<!ENTITY e 'x'>]><a>&e;</a>", "\xff<a/>"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        f.ev.raw = bad[i];
        f.ev.len = strlen(bad[i]);
        assert_int_equal(xs_redact_event(&f.ev, 0, &r), 0);
        assert_string_equal(r.xml, "***");
        assert_int_equal(r.masked, 1);
        assert_non_null(r.note);
        xs_redaction_clear(&r);
    }
    fixture_free(&f);
    free(st);
}

static void test_redact_binary_escaped(void **state)
{
    /* C0, an invalid byte, CSI (7- and 8-bit), RLO, and the invisible U+200B and U+FEFF. */
    static const char plain[] =
        "\0j\xc3\xbcrgen\x01\xff\x1b[2J\xc2\x9b\xe2\x80\xae\xe2\x80\x8b\xef\xbb\xbf\0pw";
    static const char other[] = "a\0b\x1b[31m";
    fixture f;
    xs_redaction r;
    char *st = sasl_stanza("response", NS_SASL, "", plain, sizeof(plain) - 1);

    redact(&f, st, 0, &r);
    assert_string_equal(r.note, "PLAIN authzid=\"\" authcid=\"j\xc3\xbcrgen\\x01\\xFF\\x1B[2J"
                                "\\xC2\\x9B\\xE2\\x80\\xAE\\xE2\\x80\\x8B\\xEF\\xBB\\xBF\" "
                                "password=***");
    xs_redaction_clear(&r);
    fixture_free(&f);
    free(st);

    /* The mechanism name comes from the wire too. */
    st = sasl_stanza("auth", NS_SASL, " mechanism='X-&quot;'", other, sizeof(other) - 1);
    redact(&f, st, 1, &r);
    assert_string_equal(r.note, "X-\\\" payload (8 bytes) \"a\\0b\\x1B[31m\"");
    xs_redaction_clear(&r);
    fixture_free(&f);
    free(st);
}

static void test_redact_note_is_bounded(void **state)
{
    size_t n = 20000;
    char *payload = malloc(n), *st;
    fixture f;
    xs_redaction r;

    assert_non_null(payload);
    memset(payload, '\x01', n);
    payload[0] = '\0';
    payload[10] = '\0';
    st = sasl_stanza("response", NS_SASL, "", payload, n);
    redact(&f, st, 1, &r);
    assert_true(strlen(r.note) <= XS_REDACT_NOTE_MAX);
    assert_true(strlen(r.note) > XS_REDACT_NOTE_MAX - 8);
    assert_string_equal(r.note + strlen(r.note) - 3, "...");
    xs_redaction_clear(&r);
    fixture_free(&f);
    free(st);
    free(payload);
}

/* Password fields of data forms anywhere (XEP-0133 admin commands, XEP-0045 room
 * configuration, any text-private field) and MUC room passwords (XEP-0045). */
static void test_redact_forms_and_muc_masked(void **state)
{
    static const struct {
        const char *stanza;
        unsigned masked;
        const char *note;
        const char *kept; /* what must stay visible */
    } cases[] = {
        /* XEP-0133 change-user-password: a submitted form repeats no field types. */
        {"<iq type='set' id='chg1'><command xmlns='http://jabber.org/protocol/commands' "
         "node='http://jabber.org/protocol/admin#change-user-password' sessionid='s1'>"
         "<x xmlns='jabber:x:data' type='submit'>"
         "<field type='hidden' var='FORM_TYPE'><value>http://jabber.org/protocol/admin</value>"
         "</field><field var='accountjid'><value>juliet@shakespeare.lit</value></field>"
         "<field var='password'><value>s3cr3t-133</value></field></x></command></iq>",
         1, "jabber:x:data form field=***", "juliet@shakespeare.lit"},
        /* XEP-0133 add-user: the password twice. */
        {"<iq type='set' id='add1'><command xmlns='http://jabber.org/protocol/commands' "
         "node='http://jabber.org/protocol/admin#add-user'><x xmlns='jabber:x:data' "
         "type='submit'><field var='accountjid'><value>romeo@montague.lit</value></field>"
         "<field var='password'><value>s3cr3t-a</value></field><field var='password-verify'>"
         "<value>s3cr3t-a</value></field></x></command></iq>",
         2, "jabber:x:data form field=***; jabber:x:data form field=***", "romeo@montague.lit"},
        /* Any text-private field, with a value, in a message too. */
        {"<message to='a@b' id='m2'><x xmlns='jabber:x:data' type='form'>"
         "<field var='pin' type='text-private'><value>s3cr3t-pin</value></field>"
         "<field var='color' type='text-single'><value>blue</value></field></x></message>",
         1, "jabber:x:data form field=***", "<value>blue</value>"},
        /* XEP-0045: joining a protected room. */
        {"<presence to='coven@chat.shakespeare.lit/thirdwitch'>"
         "<x xmlns='http://jabber.org/protocol/muc'><password>s3cr3t-muc</password></x>"
         "</presence>",
         1, "http://jabber.org/protocol/muc password=***", "thirdwitch"},
        /* XEP-0045: a mediated invitation carries the room's password. */
        {"<message from='coven@chat.shakespeare.lit' to='hecate@shakespeare.lit' id='i1'>"
         "<x xmlns='http://jabber.org/protocol/muc#user'><invite from='crone1@shakespeare.lit'>"
         "<reason>Hey Hecate</reason></invite><password>s3cr3t-inv</password></x></message>",
         1, "http://jabber.org/protocol/muc#user password=***", "Hey Hecate"},
        /* XEP-0045: the owner sets the room's password. */
        {"<iq type='set' id='cfg1' to='coven@chat.shakespeare.lit'>"
         "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' "
         "type='submit'><field var='muc#roomconfig_passwordprotectedroom'><value>1</value>"
         "</field><field var='muc#roomconfig_roomsecret'><value>s3cr3t-room</value></field>"
         "</x></query></iq>",
         1, "jabber:x:data form field=***", "<value>1</value>"},
        /* XEP-0249: a direct invitation carries the room's password in an attribute. */
        {"<message from='crone1@shakespeare.lit/desktop' to='hecate@shakespeare.lit'>"
         "<x xmlns='jabber:x:conference' jid='darkcave@macbeth.shakespeare.lit' "
         "password='s3cr3t-dir' reason='Hey Hecate, this is the place for all good witches!'/>"
         "</message>",
         1, "jabber:x:conference password=***", "jid=\"darkcave@macbeth.shakespeare.lit\""},
    };
    fixture f;
    xs_redaction r;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        redact(&f, cases[i].stanza, 0, &r);
        if (r.masked != cases[i].masked || r.xml == NULL)
            fail_msg("case %zu: masked %u, xml %s", i, r.masked, r.xml ? r.xml : "(none)");
        assert_null(strstr(r.xml, "s3cr3t"));
        assert_non_null(strstr(r.xml, cases[i].kept));
        assert_string_equal(r.note, cases[i].note);
        xs_redaction_clear(&r);
        fixture_free(&f);

        redact(&f, cases[i].stanza, 1, &r);
        assert_null(r.xml);
        assert_non_null(strstr(r.note, "s3cr3t"));
        xs_redaction_clear(&r);
        fixture_free(&f);
    }

    /* A room's form as the server sends it, with an empty password field: nothing to hide. */
    redact(&f,
           "<iq type='result' id='cfg0'><query xmlns='http://jabber.org/protocol/muc#owner'>"
           "<x xmlns='jabber:x:data' type='form'><field var='muc#roomconfig_roomsecret' "
           "type='text-private' label='Password'/></x></query></iq>",
           0, &r);
    assert_int_equal(r.masked, 0);
    assert_null(r.xml);
    xs_redaction_clear(&r);
    fixture_free(&f);

    /* A direct invitation to a room without a password, and a password attribute outside
     * XEP-0249: nothing to hide. */
    redact(&f,
           "<message to='hecate@shakespeare.lit'><x xmlns='jabber:x:conference' "
           "jid='darkcave@macbeth.shakespeare.lit' password=''/><x xmlns='urn:example' "
           "password='not-a-room-password'/></message>",
           0, &r);
    assert_int_equal(r.masked, 0);
    assert_null(r.xml);
    xs_redaction_clear(&r);
    fixture_free(&f);
}

/* The XML a rule forwarded instead of a stanza is masked as the stanza is, in its stream. */
static void test_redact_rewritten_masked(void **state)
{
    fixture f;
    xs_redaction r;
    char *auth =
        sasl_stanza("auth", NS_SASL, " mechanism='PLAIN'", plain_alice, sizeof(plain_alice) - 1);
    static const char rewritten_reg[] =
        "<iq type=\"set\" id=\"reg2\"><query xmlns=\"jabber:iq:register\"><username>bill"
        "</username><password>n3w-s3cr3t</password></query></iq>";

    /* A rule added an attribute to a SASL <auth/>: the payload is masked in what it made. */
    fixture_init(&f, auth);
    {
        char *rw = sasl_stanza("auth", NS_SASL, " mechanism='PLAIN' xs='1'", plain_alice,
                               sizeof(plain_alice) - 1);
        assert_int_equal(xs_redact_rewritten(&f.ev, rw, strlen(rw), 0, &r), 0);
        assert_int_equal(r.masked, 1);
        assert_string_equal(r.xml, "<auth xmlns=\"" NS_SASL "\" mechanism=\"PLAIN\" xs=\"1\">"
                                   "***</auth>");
        xs_redaction_clear(&r);
        assert_int_equal(xs_redact_rewritten(&f.ev, rw, strlen(rw), 1, &r), 0);
        assert_null(r.xml);
        xs_redaction_clear(&r);
        free(rw);
    }
    fixture_free(&f);

    /* A XEP-0077 registration whose password a rule changed: the event's namespace (the
     * stream's default, jabber:client) is the rewritten root's too. */
    fixture_init(&f, "<iq type='set' id='reg2'><query xmlns='jabber:iq:register'><username>bill"
                     "</username><password>s3cr3t</password></query></iq>");
    assert_int_equal(xs_redact_rewritten(&f.ev, rewritten_reg, strlen(rewritten_reg), 0, &r), 0);
    assert_int_equal(r.masked, 1);
    assert_null(strstr(r.xml, "s3cr3t"));
    assert_non_null(strstr(r.xml, "<password>***</password>"));
    assert_string_equal(r.note, "jabber:iq:register password=***");
    xs_redaction_clear(&r);

    /* What cannot be parsed on its own is masked whole; nothing, and other events, give
     * nothing. */
    assert_int_equal(
        xs_redact_rewritten(&f.ev, "<iq><reg:password>s3cr3t</reg:password></iq>", 44, 0, &r), 0);
    assert_string_equal(r.xml, "***");
    xs_redaction_clear(&r);
    assert_int_equal(xs_redact_rewritten(&f.ev, NULL, 0, 0, &r), 0);
    assert_null(r.xml);
    f.ev.kind = XS_EV_KEEPALIVE;
    assert_int_equal(xs_redact_rewritten(&f.ev, rewritten_reg, strlen(rewritten_reg), 0, &r), 0);
    assert_null(r.xml);
    assert_int_equal(xs_redact_rewritten(NULL, rewritten_reg, 1, 0, &r), XS_EINVAL);
    assert_int_equal(xs_redact_rewritten(&f.ev, rewritten_reg, 1, 0, NULL), XS_EINVAL);
    fixture_free(&f);
    free(auth);
}

/* A stream header with thousands of namespace declarations must not make the copy of every
 * stanza declare them all again: the copy declares the namespaces the stanza uses, so its cost
 * follows the stanza, not the header times the stanzas. */
static void test_redact_header_namespaces_not_copied(void **state)
{
    enum { DECLS = 12000, STANZAS = 40 };
    static const char st[] = "<iq type='set' id='r'><query xmlns='jabber:iq:register'>"
                             "<username>bill</username><password>s3cr3t</password></query></iq>";
    char *doc = NULL, *decls = malloc((size_t)DECLS * 32), *stanzas = NULL;
    size_t at = 0;
    xmlDoc *d;
    unsigned n = 0;

    assert_non_null(decls);
    for (unsigned i = 0; i < DECLS; i++)
        at += (size_t)sprintf(decls + at, " xmlns:n%u='urn:n:%u'", i, i);
    stanzas = malloc(sizeof(st) * STANZAS);
    assert_non_null(stanzas);
    stanzas[0] = '\0';
    for (unsigned i = 0; i < STANZAS; i++)
        strcat(stanzas, st);
    assert_true(asprintf(&doc,
                         "<stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS
                         "'%s>%s" STREAM_CLOSE,
                         decls, stanzas) > 0);
    d = xmlReadMemory(doc, (int)strlen(doc), NULL, "UTF-8", XML_PARSE_NONET | XML_PARSE_HUGE);
    assert_non_null(d);
    for (xmlNode *k = xmlDocGetRootElement(d)->children; k != NULL; k = k->next) {
        xs_event ev = {.kind = XS_EV_STANZA, .len = sizeof(st) - 1, .stream_no = 1};
        xs_redaction r;
        size_t wdecls = 0;

        if (k->type != XML_ELEMENT_NODE)
            continue;
        ev.name = (const char *)k->name;
        ev.ns = (const char *)k->ns->href;
        ev.node = k;
        ev.raw = st;
        assert_int_equal(xs_redact_event(&ev, 0, &r), 0);
        assert_int_equal(r.masked, 1);
        assert_null(strstr(r.xml, "s3cr3t"));
        /* The wrapper declares the one namespace the stanza takes from the stream. */
        for (const xmlNs *ns = xmlDocGetRootElement(r.doc)->nsDef; ns != NULL; ns = ns->next)
            wdecls++;
        assert_int_equal(wdecls, 1);
        assert_string_equal((const char *)r.node->ns->href, "jabber:client");
        xs_redaction_clear(&r);
        n++;
    }
    assert_int_equal(n, STANZAS);
    xmlFreeDoc(d);
    free(doc);
    free(decls);
    free(stanzas);
}

/* ---- without the stanza's tree -------------------------------------------------------------- */

/* What xs_redact_event() said about each stanza of a stream, one line each. */
typedef struct outcome {
    char *text;
    size_t len;
    FILE *f;
    unsigned parsed; /* stanzas whose raw bytes were parsed */
    int show;
} outcome;

static int outcome_cb(void *user, const xs_event *ev)
{
    outcome *o = user;
    xs_redaction r;

    if (ev->kind != XS_EV_STANZA)
        return 0;
    assert_int_equal(xs_redact_event(ev, o->show, &r), 0);
    o->parsed += (unsigned)r.parsed;
    if (ev->node != NULL)
        assert_int_equal(r.parsed, 0);
    fprintf(o->f, "%s masked=%u gs2=%c cb=%s note=%s xml=%s\n", ev->name, r.masked,
            r.gs2_flag != 0 ? r.gs2_flag : '-', r.cb_name, r.note != NULL ? r.note : "-",
            r.xml != NULL ? r.xml : "-");
    xs_redaction_clear(&r);
    return 0;
}

/* Parses `stream` with the parser options `opts` and redacts every stanza. The caller frees
 * o->text. */
static void outcome_run(const char *stream, unsigned opts, int show, outcome *o)
{
    xs_parser *p;
    size_t used;

    memset(o, 0, sizeof(*o));
    o->show = show;
    o->f = open_memstream(&o->text, &o->len);
    assert_non_null(o->f);
    assert_int_equal(xs_parser_new(NULL, opts, outcome_cb, o, &p), 0);
    assert_int_equal(xs_parser_feed(p, stream, strlen(stream), &used), 0);
    xs_parser_free(p);
    assert_int_equal(fclose(o->f), 0);
}

/* Redaction gives the same result with the stanza's tree and from its raw bytes alone, and
 * parses exactly the stanzas that may carry a secret. */
static void test_redact_same_without_tree(void **state)
{
    static const struct {
        const char *stanza;
        int parsed; /* without a tree */
    } cases[] = {
        {"<auth xmlns='" NS_SASL "' mechanism='PLAIN'>AGFsaWNlAHMzY3IzdCE=</auth>", 1},
        {"<auth xmlns='" NS_SASL "' mechanism='SCRAM-SHA-1-PLUS'>"
         "cD10bHMtZXhwb3J0ZXIsLG49YWxpY2Uscj1meWtvK2QybGJiRmdPTlJ2OXFreGRhd0w=</auth>",
         1},
        {"<response xmlns='" NS_SASL
         "'>Yz1iaXdzLHI9ZnlrbyxwPXYwWDh2M0J6MlQwQ0pHYkpReUYwWCtISTRUcz0="
         "</response>",
         1},
        {"<success xmlns='" NS_SASL "'/>", 1},
        {"<p:challenge xmlns:p='" NS_SASL "' xml:lang='en'>=</p:challenge>", 1},
        {"<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>"
         "AGFsaWNlAHMzY3IzdCE=</initial-response></authenticate>",
         1},
        {"<success xmlns='urn:xmpp:sasl:2'><token xmlns='urn:xmpp:fast:0' token='s3cr3t-fast'/>"
         "</success>",
         1},
        {"<iq type='set' id='r1'><query xmlns='jabber:iq:register'><username>bill</username>"
         "<password>s3cr3t-reg</password></query></iq>",
         1},
        {"<iq type='set' id='a1'><query xmlns='jabber:iq:auth'><username>bill</username>"
         "<password>s3cr3t-auth</password></query></iq>",
         1},
        {"<iq type='set' id='r2'><q:query xmlns:q='jabber&#x3a;iq:register'><q:password>"
         "s3cr3t-ref</q:password></q:query></iq>",
         1},
        {"<iq type='get' id='q&amp;1'><query xmlns='jabber:iq:roster'/></iq>", 1},
        {"<iq type='get' id='x1'><x:query xmlns:x='jabber:iq:roster'/></iq>", 1},
        {"<iq type='result' id='x2'><query xmlns='jabber:iq:private'><note>see "
         "jabber:iq:auth</note></query></iq>",
         1},
        {"<message to='a@b' type='chat' id='m1'><body>password: hunter2 jabber:iq:register "
         "&amp; " NS_SASL "</body></message>",
         0},
        {"<message xmlns='" NS_SASL "x' to='a@b'/>", 0},
        {"<presence from='a@b/c' xml:lang='en'><status>&lt;query&gt;</status></presence>", 0},
        {"<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>", 0},
        {"<iq type='result' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'>"
         "<feature var='jabber:iq:version'/></query></iq>",
         0},
        {"<iq type='result' id='r1'><query xmlns='jabber:iq:roster'><item jid='a@b' name='A'/>"
         "</query></iq>",
         0},
        {"<iq type='set' id='v1'><register xmlns='jabber:iq:register'/></iq>", 0},
        {"<stream:features><mechanisms xmlns='" NS_SASL "'><mechanism>PLAIN</mechanism>"
         "</mechanisms><register xmlns='http://jabber.org/features/iq-register'/>"
         "</stream:features>",
         0},
        {"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", 0},
        {"<presence to='r@c/n'><x xmlns='http://jabber.org/protocol/muc'><password>s3cr3t-m"
         "</password></x></presence>",
         1},
        {"<iq type='set' id='c1'><command xmlns='http://jabber.org/protocol/commands'><x "
         "xmlns='jabber:x:data' type='submit'><field var='password'><value>s3cr3t-c</value>"
         "</field></x></command></iq>",
         1},
        {"<message id='t1'><x xmlns='jabber:x:data'><field var='p' type='text&#x2d;private'>"
         "<value>s3cr3t-t</value></field></x></message>",
         1},
        {"<iq type='set' id='c2'><query xmlns='http://jabber.org/protocol/muc#owner'><x "
         "xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_roomsecret'><value>"
         "s3cr3t-r</value></field></x></query></iq>",
         1},
        {"<message id='f1'><x xmlns='jabber:x:data'><field var='color'><value>blue</value>"
         "</field></x></message>",
         0},
        {"<message to='h@s'><x xmlns='jabber:x:conference' jid='r@c' password='s3cr3t-d'/>"
         "</message>",
         1},
        {"<message to='h@s'><c:x xmlns:c='jabber&#x3a;x:conference' jid='r@c' "
         "password='s3cr3t&#x2d;ref'/></message>",
         1},
        {"<message to='h@s'><x xmlns='jabber:x:conference' jid='r@c'/><body>password?</body>"
         "</message>",
         1},
        {"<message to='h@s'><x xmlns='jabber:x:oob'><url>http://a/b</url></x></message>", 0},
        {"<message to='h@s'><body>the password is in the x</body></message>", 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int show = 0; show < 2; show++) {
            char *stream = NULL;
            outcome with, without;

            assert_true(asprintf(&stream, "%s%s%s", STREAM_OPEN, cases[i].stanza, STREAM_CLOSE) >
                        0);
            outcome_run(stream, XS_PARSER_RAW | XS_PARSER_TREE, show, &with);
            outcome_run(stream, XS_PARSER_RAW, show, &without);
            if (strcmp(with.text, without.text) != 0)
                fail_msg("%s (show %d): with a tree\n%swithout\n%s", cases[i].stanza, show,
                         with.text, without.text);
            if (without.parsed != (unsigned)cases[i].parsed)
                fail_msg("%s: parsed %u", cases[i].stanza, without.parsed);
            assert_int_equal(with.parsed, 0);
            if (!show)
                assert_null(strstr(without.text, "s3cr3t"));
            free(with.text);
            free(without.text);
            free(stream);
        }
    }
}

/* Without a tree, a stanza's names may depend on declarations of the stream element that the
 * event does not carry. Where the event tells them (the root's own prefix and namespace), the
 * result is the same as with the tree; where it does not, the stanza is masked whole. Never is a
 * secret shown that the tree would have hidden. */
static void test_redact_stream_context_without_tree(void **state)
{
    static const struct {
        const char *stream;
        int same; /* the same result as with the tree */
    } cases[] = {
        /* The root's prefix is declared on the stream element. */
        {"<stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS "' xmlns:sasl='" NS_SASL
         "'><sasl:auth mechanism='PLAIN'>AGFsaWNlAHMzY3IzdCE=</sasl:auth>" STREAM_CLOSE,
         1},
        /* The stream's default namespace is SASL's, or XEP-0077's, and the root takes it. */
        {"<stream:stream xmlns='" NS_SASL "' xmlns:stream='" NS_STREAMS "'>"
         "<auth mechanism='PLAIN'>AGFsaWNlAHMzY3IzdCE=</auth>" STREAM_CLOSE,
         1},
        {"<stream:stream xmlns='jabber:iq:register' xmlns:stream='" NS_STREAMS "'>"
         "<iq type='set'><query><password>s3cr3t-dflt</password></query></iq>" STREAM_CLOSE,
         1},
        /* The same namespace declared twice on the stream element: the masked copy keeps the
         * stanza's prefixes. */
        {"<stream:stream xmlns='" NS_SASL "' xmlns:stream='" NS_STREAMS "' xmlns:s='" NS_SASL "'>"
         "<auth mechanism='PLAIN'>AGFsaWNlAHMzY3IzdCE=</auth>"
         "<s:auth mechanism='PLAIN'>AGFsaWNlAHMzY3IzdCE=</s:auth>" STREAM_CLOSE,
         1},
        /* Prefixes of the root's attributes declared on the stream element: a few are
         * declared for the parse, more than RAW_MAX_ATTR_PREFIXES (8) are not. */
        {"<stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS "' xmlns:a='urn:a' "
         "xmlns:b='urn:b'><auth xmlns='" NS_SASL "' mechanism='PLAIN' a:x='1' b:x='2' a:y='3'>"
         "AGFsaWNlAHMzY3IzdCE=</auth>" STREAM_CLOSE,
         1},
        {"<stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS "' xmlns:a0='urn:0' "
         "xmlns:a1='urn:1' xmlns:a2='urn:2' xmlns:a3='urn:3' xmlns:a4='urn:4' xmlns:a5='urn:5' "
         "xmlns:a6='urn:6' xmlns:a7='urn:7' xmlns:a8='urn:8'><auth xmlns='" NS_SASL
         "' mechanism='PLAIN' a0:x='' a1:x='' a2:x='' a3:x='' a4:x='' a5:x='' a6:x='' a7:x='' "
         "a8:x=''>AGFsaWNlAHMzY3IzdCE=</auth>" STREAM_CLOSE,
         0},
        /* A descendant's prefix is declared on the stream element. */
        {"<stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS
         "' xmlns:reg='jabber:iq:register'><iq type='set' id='p1'><reg:query><reg:password>"
         "s3cr3t-pfx</reg:password></reg:query></iq>" STREAM_CLOSE,
         0},
        /* Under a prefixed root, a descendant takes the stream's default namespace. */
        {"<stream:stream xmlns='jabber:iq:register' xmlns:stream='" NS_STREAMS
         "' xmlns:cl='jabber:client'><cl:iq type='set' id='p2'><query><password>s3cr3t-under"
         "</password></query></cl:iq>" STREAM_CLOSE,
         0},
        {"<stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS "' xmlns:s2='"
         "urn:xmpp:sasl:2'><s2:authenticate mechanism='PLAIN'><initial-response>"
         "AGFsaWNlAHMzY3IzdCE=</initial-response></s2:authenticate>" STREAM_CLOSE,
         0},
        /* A direct invitation (XEP-0249) whose namespace is the stream's default, the root's
         * too, or is bound to a prefix on the stream element. */
        {"<stream:stream xmlns='jabber:x:conference' xmlns:stream='" NS_STREAMS "'>"
         "<message><x jid='r@c' password='s3cr3t-dflt'/></message>" STREAM_CLOSE,
         1},
        {"<stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS
         "' xmlns:conf='jabber:x:conference'><message><conf:x jid='r@c' password='s3cr3t-pfx'/>"
         "</message>" STREAM_CLOSE,
         0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        outcome with, without;

        outcome_run(cases[i].stream, XS_PARSER_RAW | XS_PARSER_TREE, 0, &with);
        outcome_run(cases[i].stream, XS_PARSER_RAW, 0, &without);
        assert_true(without.parsed > 0);
        if (cases[i].same && strcmp(with.text, without.text) != 0)
            fail_msg("case %zu: with a tree\n%swithout\n%s", i, with.text, without.text);
        if (!cases[i].same) {
            assert_non_null(strstr(without.text, "masked whole"));
            assert_non_null(strstr(without.text, "xml=***\n"));
        }
        assert_null(strstr(without.text, "s3cr3t"));
        assert_null(strstr(without.text, "AGFsaWNl"));
        free(with.text);
        free(without.text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redact_base64_roundtrip),
        cmocka_unit_test(test_redact_base64_rules),
        cmocka_unit_test(test_redact_gs2_flag),
        cmocka_unit_test(test_redact_plain_auth_masked),
        cmocka_unit_test(test_redact_plain_show_secrets),
        cmocka_unit_test(test_redact_plain_response_after_empty_auth),
        cmocka_unit_test(test_redact_scram_client_first_gs2),
        cmocka_unit_test(test_redact_scram_client_final_proof_masked),
        cmocka_unit_test(test_redact_scram_server_messages),
        cmocka_unit_test(test_redact_sasl2),
        cmocka_unit_test(test_redact_unknown_mechanisms_masked),
        cmocka_unit_test(test_redact_invalid_base64_masked),
        cmocka_unit_test(test_redact_truncated_and_random_payloads),
        cmocka_unit_test(test_redact_register_password_masked),
        cmocka_unit_test(test_redact_register_data_form_masked),
        cmocka_unit_test(test_redact_iq_auth_masked),
        cmocka_unit_test(test_redact_forms_and_muc_masked),
        cmocka_unit_test(test_redact_rewritten_masked),
        cmocka_unit_test(test_redact_header_namespaces_not_copied),
        cmocka_unit_test(test_redact_other_events_untouched),
        cmocka_unit_test(test_redact_raw_without_tree),
        cmocka_unit_test(test_redact_binary_escaped),
        cmocka_unit_test(test_redact_note_is_bounded),
        cmocka_unit_test(test_redact_same_without_tree),
        cmocka_unit_test(test_redact_stream_context_without_tree),
    };
    int rc;

    xmlInitParser();
    rc = cmocka_run_group_tests_name("redact", tests, NULL, NULL);
    xmlCleanupParser();
    return rc;
}
