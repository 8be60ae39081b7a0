/* Unit tests of the explanations (inspect/explain*.c and the catalogs inspect/explain/en.txt,
 * zh.txt): both catalogs complete and consistent, each kind of event gets its line, no secret ever
 * appears in an explanation (with --show-secrets too), values from the wire are escaped by the
 * printers, and the language comes from the locale variables. Events come from the real parser, fed
 * whole and one byte at a time, through the real observer chain (masking, then annotate). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "inspect/b64.h"
#include "inspect/error.h"
#include "inspect/explain.h"
#include "inspect/observer.h"
#include "inspect/parser.h"
#include "inspect/print.h"

#define NS_STREAMS "http://etherx.jabber.org/streams"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define CLIENT_HEADER                                                                              \
    "<stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS "' to='example.test' "        \
    "version='1.0'>"
#define SERVER_HEADER                                                                              \
    "<stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS "' from='example.test' "      \
    "id='s1' version='1.0'>"

/* ---- fixture: a stream through the parser and the observers --------------------------------- */

/* Collects the explanation of every event, one event's lines after another, "|" between events. */
typedef struct run {
    xs_observer obs[3];
    size_t n_obs;
    xs_print_meta meta;
    int show_secrets;
    char out[32768];
    size_t len;
} run;

static int collect(void *ctx, const xs_obs_event *ev)
{
    run *r = ctx;
    if (ev->kind != XS_OBS_PARSED || ev->annot == NULL)
        return 0;
    int n = snprintf(r->out + r->len, sizeof(r->out) - r->len, "%s|", ev->annot->explain);
    assert_true(n >= 0 && (size_t)n < sizeof(r->out) - r->len);
    r->len += (size_t)n;
    return 0;
}

static int on_event(void *user, const xs_event *ev)
{
    run *r = user;
    assert_int_equal(xs_obs_emit_event(r->obs, r->n_obs, &r->meta, ev, r->show_secrets), 0);
    return 0;
}

/* Feeds `stream` whole, or one byte at a time, and returns what was explained (malloc'd). */
static char *explain_stream(xs_explainer *x, const char *dir, const char *stream, int bytewise,
                            int show_secrets)
{
    run *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->obs[r->n_obs++] = (xs_observer){.on_event = collect, .ctx = r, .name = "test"};
    r->obs[r->n_obs++] = xs_explainer_observer(x);
    r->meta = (xs_print_meta){.session = "t1", .direction = dir};
    r->show_secrets = show_secrets;
    xs_parser *p = NULL;
    assert_int_equal(xs_parser_new(NULL, XS_PARSER_TREE | XS_PARSER_RAW, on_event, r, &p), 0);
    size_t len = strlen(stream);
    /* A stream that ends in an error stops there (the error is an event too). */
    if (bytewise) {
        for (size_t i = 0; i < len; i++)
            if (xs_parser_feed(p, stream + i, 1, NULL) != 0)
                break;
    } else {
        (void)xs_parser_feed(p, stream, len, NULL);
    }
    xs_parser_free(p);
    /* The end of the session: what the explainer remembers of it is freed. */
    xs_obs_event end = {.kind = XS_OBS_CLOSED, .meta = &r->meta};
    assert_int_equal(xs_obs_emit_other(r->obs, r->n_obs, &end), 0);
    char *out = strdup(r->out);
    free(r);
    return out;
}

/* Explains one stanza (after a stream header of the side `dir`), checks that whole and byte by
 * byte agree, and returns the stanza's lines alone. */
static char *explain_one(xs_explainer *x, const char *dir, const char *stanza, int show_secrets)
{
    char *stream = NULL;
    const char *hdr = strcmp(dir, "s2c") == 0 ? SERVER_HEADER : CLIENT_HEADER;
    assert_true(asprintf(&stream, "%s%s", hdr, stanza) > 0);
    char *whole = explain_stream(x, dir, stream, 0, show_secrets);
    char *split = explain_stream(x, dir, stream, 1, show_secrets);
    assert_string_equal(whole, split);
    free(stream);
    free(split);
    /* Drop the header's lines: up to the first '|'. */
    char *bar = strchr(whole, '|');
    assert_non_null(bar);
    char *out = strdup(bar + 1);
    free(whole);
    return out;
}

static xs_explainer *new_explainer(xs_lang lang)
{
    xs_explainer *x = NULL;
    char err[256];
    assert_int_equal(xs_explainer_new(lang, &x, err, sizeof(err)), 0);
    return x;
}

/* ---- the catalogs ------------------------------------------------------------------------- */

/* Both catalogs parse, have the same keys, the same placeholders in each entry, and a reference
 * and link where the other has them; the English one names every key the code uses. */
static void test_explain_catalogs_complete(void **state)
{
    (void)state;
    xs_catalog *cat[XS_LANG_COUNT];
    char err[256];
    for (int l = 0; l < XS_LANG_COUNT; l++) {
        int rc = xs_catalog_builtin((xs_lang)l, &cat[l], err, sizeof(err));
        if (rc != 0)
            fail_msg("catalog %s: %s", xs_lang_name((xs_lang)l), err);
    }
    assert_true(xs_catalog_count(cat[0]) > 250);
    for (int l = 0; l < XS_LANG_COUNT; l++) {
        const xs_catalog *me = cat[l], *other = cat[1 - l];
        for (size_t i = 0; i < xs_catalog_count(me); i++) {
            const xs_catalog_entry *e = xs_catalog_at(me, i);
            const xs_catalog_entry *o = xs_catalog_find(other, e->key);
            if (o == NULL)
                fail_msg("key [%s] of %s.txt (line %u) is missing in %s.txt", e->key,
                         xs_lang_name((xs_lang)l), e->line, xs_lang_name((xs_lang)(1 - l)));
            char p1[512], p2[512];
            xs_catalog_placeholders(e->text, p1, sizeof(p1));
            xs_catalog_placeholders(o->text, p2, sizeof(p2));
            if (strcmp(p1, p2) != 0)
                fail_msg("[%s]: placeholders differ: %s.txt has '%s', %s.txt '%s'", e->key,
                         xs_lang_name((xs_lang)l), p1, xs_lang_name((xs_lang)(1 - l)), p2);
            assert_int_equal(e->ref == NULL, o->ref == NULL);
            assert_int_equal(e->link == NULL, o->link == NULL);
            if (e->link != NULL) {
                assert_string_equal(e->link, o->link);
                assert_true(strncmp(e->link, "https://", 8) == 0);
            }
        }
    }
    /* What the code asks for by name. */
    static const char *const used[] = {"format",
                                       "stream-open-client",
                                       "stream-open-server",
                                       "stream-restart",
                                       "stream-close",
                                       "keepalive",
                                       "parse-error",
                                       "features",
                                       "feature-unknown",
                                       "nonza-unknown",
                                       "mech-unknown",
                                       "sasl-plain",
                                       "sasl-plain-authzid",
                                       "sasl-plain-masked",
                                       "scram-what",
                                       "scram-client-first",
                                       "gs2-n",
                                       "gs2-y",
                                       "gs2-p",
                                       "scram-server-first",
                                       "scram-client-final",
                                       "scram-proof",
                                       "scram-server-final",
                                       "scram-error",
                                       "sasl-anonymous",
                                       "sasl-external",
                                       "sasl-failure-unknown",
                                       "stream-error-unknown",
                                       "stanza-error-unknown",
                                       "message-unknown-type",
                                       "presence-unknown-type",
                                       "iq-unknown-type",
                                       "roster-get",
                                       "roster-result",
                                       "roster-push",
                                       "roster-set",
                                       "roster-ask",
                                       "bind-request",
                                       "bind-request-server",
                                       "bind-result",
                                       "feature " NS_SASL " mechanisms"};
    for (size_t i = 0; i < sizeof(used) / sizeof(used[0]); i++)
        if (xs_catalog_find(cat[0], used[i]) == NULL)
            fail_msg("the code uses [%s], which en.txt lacks", used[i]);
    /* Every condition of RFC 6120 §8.3.3 (22) and §4.9.3 (25), and §6.5 (11). */
    size_t stanza_err = 0, stream_err = 0, sasl_fail = 0, ns = 0;
    for (size_t i = 0; i < xs_catalog_count(cat[0]); i++) {
        const char *k = xs_catalog_at(cat[0], i)->key;
        stanza_err += strncmp(k, "stanza-error ", 13) == 0;
        stream_err += strncmp(k, "stream-error ", 13) == 0;
        sasl_fail += strncmp(k, "sasl-failure ", 13) == 0;
        ns += strncmp(k, "ns ", 3) == 0 && strchr(k + 3, ' ') == NULL;
    }
    assert_int_equal(stanza_err, 22);
    assert_int_equal(stream_err, 25);
    assert_int_equal(sasl_fail, 11);
    assert_true(ns >= 80);
    for (int l = 0; l < XS_LANG_COUNT; l++)
        xs_catalog_free(cat[l]);
}

/* A broken catalog is refused with its line. */
static void test_explain_catalog_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *err;
    } bad[] = {
        {"text = x\n", "1: field before the first [key]"},
        {"[a]\ntext = x\n[a]\ntext = y\n", "key given twice"},
        {"[a]\nref = R\n", "1: entry without text"},
        {"[a]\ntext = x\ntext = y\n", "3: field given twice"},
        {"[a]\nwhat = x\n", "2: unknown field"},
        {"[a\ntext = x\n", "1: a key is written [key]"},
        {"[a]\ntext =\n", "2: empty value"},
        {"[a]\ntext x\n", "2: expected"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        xs_catalog *c = NULL;
        char err[128];
        assert_int_equal(xs_catalog_parse(bad[i].text, strlen(bad[i].text), &c, err, sizeof(err)),
                         XS_EPARSE);
        assert_null(c);
        if (strstr(err, bad[i].err) == NULL)
            fail_msg("case %zu: '%s' does not say '%s'", i, err, bad[i].err);
    }
    xs_catalog *c = NULL;
    const char *good =
        "# c\n\n[b]\ntext = B {x} {@y} {x}\nref = R\nlink = https://l\n[a]\ntext=A\n";
    assert_int_equal(xs_catalog_parse(good, strlen(good), &c, NULL, 0), 0);
    assert_int_equal(xs_catalog_count(c), 2);
    assert_string_equal(xs_catalog_at(c, 0)->key, "a");
    const xs_catalog_entry *b = xs_catalog_find(c, "b");
    assert_non_null(b);
    assert_string_equal(b->ref, "R");
    char ph[64];
    xs_catalog_placeholders(b->text, ph, sizeof(ph));
    assert_string_equal(ph, "{@y} {x}");
    xs_catalog_free(c);
}

/* --lang and the locale variables, in POSIX's order; nothing else decides. */
static void test_explain_lang(void **state)
{
    (void)state;
    xs_lang l;
    assert_int_equal(xs_lang_parse("zh", &l), 0);
    assert_int_equal(l, XS_LANG_ZH);
    assert_int_equal(xs_lang_parse("en", &l), 0);
    assert_int_equal(l, XS_LANG_EN);
    assert_int_equal(xs_lang_parse("fr", &l), XS_EINVAL);
    unsetenv("LC_ALL");
    unsetenv("LC_MESSAGES");
    setenv("LANG", "zh_CN.UTF-8", 1);
    assert_int_equal(xs_lang_from_env(), XS_LANG_ZH);
    setenv("LC_MESSAGES", "en_US.UTF-8", 1);
    assert_int_equal(xs_lang_from_env(), XS_LANG_EN);
    setenv("LC_ALL", "zh_TW.UTF-8", 1);
    assert_int_equal(xs_lang_from_env(), XS_LANG_ZH);
    setenv("LC_ALL", "", 1); /* empty: the next one */
    assert_int_equal(xs_lang_from_env(), XS_LANG_EN);
    unsetenv("LC_ALL");
    unsetenv("LC_MESSAGES");
    setenv("LANG", "C", 1);
    assert_int_equal(xs_lang_from_env(), XS_LANG_EN);
    unsetenv("LANG");
    assert_int_equal(xs_lang_from_env(), XS_LANG_EN);
}

/* ---- events ------------------------------------------------------------------------------- */

typedef struct expect {
    const char *dir;
    const char *stanza;
    const char *want[3]; /* each must be in the stanza's lines */
} expect;

static const expect cases[] = {
    {"s2c",
     "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
     "</stream:features>",
     {"Stream features:", "STARTTLS: the server offers", "RFC 6120 §5.4.1"}},
    {"c2s", "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", {"asks to start TLS"}},
    {"s2c", "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", {"TLS handshake starts"}},
    {"s2c", "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", {"refuses or failed"}},
    {"s2c",
     "<stream:features><mechanisms xmlns='" NS_SASL "'><mechanism>SCRAM-SHA-1</mechanism>"
     "<mechanism>PLAIN</mechanism><mechanism>X-WEIRD</mechanism></mechanisms>"
     "<sm xmlns='urn:xmpp:sm:3'/><foo xmlns='urn:example:foo'/></stream:features>",
     {"mechanisms offered: SCRAM-SHA-1, PLAIN, X-WEIRD", "X-WEIRD: a SASL mechanism not in",
      "Feature <foo/> in urn:example:foo"}},
    {"c2s", "<auth xmlns='" NS_SASL "' mechanism='ANONYMOUS'/>", {"ANONYMOUS: no credentials"}},
    {"c2s",
     "<auth xmlns='" NS_SASL "' mechanism='EXTERNAL'>=</auth>",
     {"EXTERNAL: the server takes the identity from the TLS client certificate"}},
    {"s2c", "<success xmlns='" NS_SASL "'/>", {"restart the stream"}},
    {"s2c",
     "<failure xmlns='" NS_SASL "'><not-authorized/><text>no</text></failure>",
     {"Authentication failed", "<not-authorized/>: Wrong user name or password",
      "RFC 6120 §6.5.10"}},
    {"c2s", "<abort xmlns='" NS_SASL "'/>", {"gives up"}},
    {"c2s",
     "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>laptop"
     "</resource></bind></iq>",
     {"An IQ set", "asks for the resource laptop", "RFC 6120 §7.6"}},
    {"s2c",
     "<iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>a@example."
     "test/laptop</jid></bind></iq>",
     {"An IQ result", "full JID is a@example.test/laptop"}},
    {"c2s",
     "<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
     {"Session establishment"}},
    {"c2s",
     "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
     {"Roster get", "RFC 6121 §2.1.3"}},
    {"s2c",
     "<iq type='result' id='r1'><query xmlns='jabber:iq:roster'><item jid='b@example.test' "
     "subscription='both'/><item jid='c@example.test' ask='subscribe'/></query></iq>",
     {"2 item(s)", "Subscription state both", "a subscription request is pending"}},
    {"s2c",
     "<iq type='set' id='p1'><query xmlns='jabber:iq:roster'><item jid='b@example.test' "
     "subscription='remove'/></query></iq>",
     {"Roster push", "Subscription state remove"}},
    {"c2s",
     "<iq type='set' id='p2'><query xmlns='jabber:iq:roster'><item jid='d@example.test'/>"
     "</query></iq>",
     {"Roster set", "Subscription state none"}},
    {"c2s", "<presence/>", {"Available presence"}},
    {"c2s", "<presence type='unavailable'/>", {"Unavailable presence"}},
    {"c2s", "<presence type='subscribe' to='b@example.test'/>", {"Subscription request"}},
    {"c2s", "<presence type='subscribed' to='b@example.test'/>", {"Subscription approved"}},
    {"c2s", "<presence type='unsubscribe' to='b@example.test'/>", {"Unsubscribe:"}},
    {"c2s", "<presence type='unsubscribed' to='b@example.test'/>", {"denied or cancelled"}},
    {"s2c", "<presence type='probe' to='b@example.test'/>", {"Presence probe"}},
    {"c2s", "<presence type='bogus'/>", {"Presence of type bogus"}},
    {"c2s",
     "<message to='b@example.test' type='chat'><body>hi</body></message>",
     {"one-to-one chat message", "RFC 6121 §5.2.2"}},
    {"c2s",
     "<message to='r@muc.example.test' type='groupchat'><body>hi</body></message>",
     {"multi-user chat room"}},
    {"s2c", "<message type='headline'><body>news</body></message>", {"A headline"}},
    {"s2c", "<message><body>x</body></message>", {"A normal message"}},
    {"s2c",
     "<message type='error' id='m1'><error type='cancel'><service-unavailable xmlns='urn:ietf:"
     "params:xml:ns:xmpp-stanzas'/></error></message>",
     {"An error message", "Error type cancel", "<service-unavailable/>"}},
    {"s2c",
     "<iq type='error' id='q'><error type='wait'><resource-constraint xmlns='urn:ietf:params:"
     "xml:ns:xmpp-stanzas'/></error></iq>",
     {"An IQ error", "Error type wait", "RFC 6120 §8.3.3.18"}},
    {"s2c",
     "<iq type='error' id='q'><error type='modify'><x-cond xmlns='urn:ietf:params:"
     "xml:ns:xmpp-stanzas'/></error></iq>",
     {"<x-cond/>: a stanza error condition not in"}},
    {"c2s", "<iq type='bogus' id='q'/>", {"An IQ of type 'bogus'"}},
    {"s2c",
     "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
     {"A stream error", "<conflict/>: A new stream", "RFC 6120 §4.9.3.3"}},
    {"c2s", "<a xmlns='urn:xmpp:sm:3' h='42'/>", {"h=42 stanzas handled"}},
    {"c2s", "<enable xmlns='urn:xmpp:sm:3' resume='true'/>", {"resume=true"}},
    {"s2c",
     "<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'"
     "/></failed>",
     {"Stream management failed", "<item-not-found/>"}},
    {"c2s", "<inactive xmlns='urn:xmpp:csi:0'/>", {"Client state: inactive"}},
    {"s2c",
     "<message><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
     "<message type='chat'/></forwarded></received></message>",
     {"Carbon copy of a message this account received"}},
    {"c2s",
     "<iq type='set' id='m'><query xmlns='urn:xmpp:mam:2' queryid='q1'/></iq>",
     {"Message archive query"}},
    {"c2s",
     "<iq type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
     {"Service discovery info"}},
    {"s2c",
     "<message><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='urn:xmpp:"
     "avatar:metadata'/></event></message>",
     {"Pubsub event", "Avatar metadata (PEP)"}},
    {"c2s",
     "<message type='chat'><body>x</body><request xmlns='urn:xmpp:receipts'/><markable "
     "xmlns='urn:xmpp:chat-markers:0'/><origin-id xmlns='urn:xmpp:sid:0' id='o'/></message>",
     {"Delivery receipt: asking", "Chat marker markable", "Origin id"}},
    {"c2s", "<presence><x xmlns='http://jabber.org/protocol/muc'/></presence>", {"joining a room"}},
    {"s2c",
     "<presence from='r@muc.example.test/me'><show>dnd</show><x xmlns='http://jabber.org/"
     "protocol/muc#user'><item affiliation='owner' role='moderator'/><status code='110'/>"
     "<status code='201'/></x></presence>",
     {"<show>dnd</show>: do not disturb", "MUC status 110: this presence is about you",
      "MUC status 201: a new room was created"}},
    {"c2s",
     "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>"
     "AGJvYgBwdw==</initial-response><bind xmlns='urn:xmpp:bind:0'/></authenticate>",
     {"SASL2 authenticate", "log in as bob", "Bind2: bind a resource"}},
    {"c2s", "<foo xmlns='urn:example:foo'/>", {"Element <foo/> in urn:example:foo"}},
};

/* Each kind of event gets its line, with its section. */
static void test_explain_events(void **state)
{
    (void)state;
    xs_explainer *x = new_explainer(XS_LANG_EN);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = explain_one(x, cases[i].dir, cases[i].stanza, 0);
        for (size_t k = 0; k < 3 && cases[i].want[k] != NULL; k++)
            if (strstr(out, cases[i].want[k]) == NULL)
                fail_msg("case %zu %s: no '%s' in:\n%s", i, cases[i].stanza, cases[i].want[k], out);
        free(out);
    }
    xs_explainer_free(x);
}

/* The stream header, restart, close, keepalive (once per session) and a parse error. */
static void test_explain_stream(void **state)
{
    (void)state;
    xs_explainer *x = new_explainer(XS_LANG_EN);
    char *out = explain_stream(x, "c2s", CLIENT_HEADER " \n <presence/> \n </stream:stream>", 0, 0);
    assert_non_null(strstr(out, "opens an XML stream to the domain example.test (version 1.0)"));
    assert_non_null(strstr(out, "|Whitespace between stanzas"));
    assert_non_null(strstr(out, "closes its XML stream"));
    /* Two keepalives around the presence, explained once. */
    const char *k = strstr(out, "keepalive");
    assert_non_null(k);
    assert_null(strstr(k + 1, "keepalive"));
    free(out);
    out = explain_stream(x, "s2c", SERVER_HEADER "<bad", 0, 0);
    assert_non_null(strstr(out, "stream header from example.test, stream id s1"));
    free(out);
    out = explain_stream(x, "c2s", CLIENT_HEADER "<a>text</b>", 0, 0);
    assert_non_null(strstr(out, "stream error <not-well-formed/>"));
    assert_non_null(strstr(out, "<not-well-formed/>: The XML was not well-formed."));
    free(out);
    /* Offline, without a direction, the server's header is told by its id. */
    out = explain_stream(x, NULL, SERVER_HEADER, 0, 0);
    assert_non_null(strstr(out, "The server answers with its own stream header"));
    free(out);
    out = explain_stream(x, NULL, CLIENT_HEADER, 0, 0);
    assert_non_null(strstr(out, "The client opens"));
    free(out);
    xs_explainer_free(x);
}

/* Unknown payload namespaces add nothing: only the stanza's own line. */
static void test_explain_unknown_payload(void **state)
{
    (void)state;
    xs_explainer *x = new_explainer(XS_LANG_EN);
    char *out = explain_one(
        x, "c2s", "<message type='chat'><body>x</body><q xmlns='urn:example:nothing'/></message>",
        0);
    assert_null(strchr(out, '\n')); /* one line */
    assert_null(strstr(out, "urn:example:nothing"));
    free(out);
    xs_explainer_free(x);
}

/* PLAIN and SCRAM: the user name and nonces, never the password, the proof or the signature,
 * with or without --show-secrets. */
static void test_explain_no_secrets(void **state)
{
    (void)state;
    /* "authz\0alice\0s3cretPW", "\0alice\0s3cretPW" */
    char *b1 = NULL, *b2 = NULL;
    size_t n;
    assert_int_equal(xs_base64_encode("authz\0alice\0s3cretPW", 20, &b1, &n), 0);
    assert_int_equal(xs_base64_encode("\0alice\0s3cretPW", 15, &b2, &n), 0);
    const char *proof = "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
    const char *cfinal = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                         "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
    const char *sfinal = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";
    char *bf = NULL, *bs = NULL, *bc = NULL;
    assert_int_equal(xs_base64_encode(cfinal, strlen(cfinal), &bf, &n), 0);
    assert_int_equal(xs_base64_encode(sfinal, strlen(sfinal), &bs, &n), 0);
    const char *cfirst = "n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL";
    assert_int_equal(xs_base64_encode(cfirst, strlen(cfirst), &bc, &n), 0);

    xs_explainer *x = new_explainer(XS_LANG_EN);
    for (int show = 0; show <= 1; show++) {
        char *st = NULL, *out;
        assert_true(asprintf(&st, "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>%s</auth>", b1) > 0);
        out = explain_one(x, "c2s", st, show);
        assert_non_null(strstr(out, "authenticate as alice and act as authz"));
        assert_null(strstr(out, "s3cretPW"));
        free(out);
        free(st);
        assert_true(asprintf(&st, "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>%s</auth>", b2) > 0);
        out = explain_one(x, "c2s", st, show);
        assert_non_null(strstr(out, "log in as alice "));
        assert_null(strstr(out, "s3cretPW"));
        free(out);
        free(st);

        /* A whole SCRAM exchange in one session (the mechanism is remembered). */
        char *stream = NULL;
        assert_true(asprintf(&stream,
                             CLIENT_HEADER "<auth xmlns='" NS_SASL "' mechanism='SCRAM-SHA-1'>%s"
                                           "</auth><response xmlns='" NS_SASL "'>%s</response>",
                             bc, bf) > 0);
        out = explain_stream(x, "c2s", stream, 0, show);
        assert_non_null(strstr(out, "SCRAM (Salted Challenge Response"));
        assert_non_null(strstr(out, "user name alice and a fresh random client nonce "
                                    "fyko+d2lbbFgONRv9qkxdawL,"));
        assert_non_null(strstr(out, "GS2 flag n"));
        assert_non_null(strstr(out, "channel binding \"n,,\""));
        assert_non_null(strstr(out, "The proof shows"));
        assert_null(strstr(out, proof));
        assert_null(strstr(out, "v0X8v3Bz"));
        free(out);
        free(stream);
        assert_true(asprintf(&st, "<success xmlns='" NS_SASL "'>%s</success>", bs) > 0);
        out = explain_one(x, "s2c", st, show);
        assert_non_null(strstr(out, "server signature"));
        assert_null(strstr(out, "rmF9pqV8"));
        free(out);
        free(st);
    }
    xs_explainer_free(x);
    free(b1);
    free(b2);
    free(bf);
    free(bs);
    free(bc);
}

/* The server-first message: salt and iteration count. */
static void test_explain_scram_server_first(void **state)
{
    (void)state;
    const char *sf = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    char *b = NULL, *st = NULL;
    size_t n;
    assert_int_equal(xs_base64_encode(sf, strlen(sf), &b, &n), 0);
    assert_true(asprintf(&st, "<challenge xmlns='" NS_SASL "'>%s</challenge>", b) > 0);
    xs_explainer *x = new_explainer(XS_LANG_EN);
    char *out = explain_one(x, "s2c", st, 0);
    assert_non_null(strstr(out, "the salt QSXCR+Q6sek8bf92 and the iteration count 4096"));
    free(out);
    xs_explainer *z = new_explainer(XS_LANG_ZH);
    out = explain_one(z, "s2c", st, 0);
    assert_non_null(strstr(out, "盐值 QSXCR+Q6sek8bf92"));
    assert_non_null(strstr(out, "迭代次数 4096"));
    free(out);
    xs_explainer_free(x);
    xs_explainer_free(z);
    free(b);
    free(st);
}

/* A log read back keeps SCRAM payloads masked: the step is still named from the session's
 * mechanism. A client-final whose channel binding decodes to bytes that are not text shows them
 * as \xNN (every line stays UTF-8: found by fuzz_explain). */
static void test_explain_scram_masked_and_binary(void **state)
{
    (void)state;
    xs_explainer *x = new_explainer(XS_LANG_EN);
    char *out = explain_stream(x, "c2s",
                               CLIENT_HEADER "<auth xmlns='" NS_SASL "' mechanism='SCRAM-SHA-1'>"
                                             "***</auth><response xmlns='" NS_SASL "'>***"
                                             "</response>",
                               0, 0);
    assert_non_null(strstr(out, "SCRAM client-final (masked in this log)"));
    assert_non_null(strstr(out, "The proof shows"));
    free(out);
    /* PLAIN masked before we saw it: said so, no user. */
    out = explain_one(x, "c2s", "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>***</auth>", 0);
    assert_non_null(strstr(out, "PLAIN: user name and password in one message; masked here"));
    free(out);
    /* c= is base64 of "n\xCE\xA2,," (not a GS2 header a client sends). */
    const char *cf = "c=bs6iLCw=,r=abc,p=AAAA";
    char *b = NULL, *st = NULL;
    size_t n;
    assert_int_equal(xs_base64_encode(cf, strlen(cf), &b, &n), 0);
    assert_true(asprintf(&st, "<response xmlns='" NS_SASL "'>%s</response>", b) > 0);
    out = explain_one(x, "c2s", st, 0);
    assert_non_null(strstr(out, "channel binding \"n\\xCE\\xA2,,\""));
    assert_null(strstr(out, "AAAA"));
    free(out);
    free(st);
    free(b);
    xs_explainer_free(x);
}

/* Chinese: the same events, in Chinese, with the same references. */
static void test_explain_chinese(void **state)
{
    (void)state;
    xs_explainer *z = new_explainer(XS_LANG_ZH);
    char *out = explain_one(z, "c2s",
                            "<message to='b@example.test' type='chat'><body>hi</body>"
                            "<composing xmlns='http://jabber.org/protocol/chatstates'/>"
                            "</message>",
                            0);
    assert_non_null(strstr(out, "一对一聊天消息"));
    assert_non_null(strstr(out, "RFC 6121 §5.2.2"));
    assert_non_null(strstr(out, "聊天状态 composing"));
    free(out);
    xs_explainer_free(z);
}

/* A value from the wire with a bidi override and a line break reaches the explanation as it is
 * (one line: the break becomes a space), and the printers escape it. */
static void test_explain_hostile_values_escaped(void **state)
{
    (void)state;
    xs_explainer *x = new_explainer(XS_LANG_EN);
    const char *stream = "<stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS
                         "' to='evil&#x202E;moc.&#10;x' version='1.0'>";
    for (int f = 0; f < 3; f++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&buf, &len);
        assert_non_null(mem);
        xs_printer *p = NULL;
        xs_print_options po = {.format = f == 0   ? XS_FORMAT_PRETTY
                                         : f == 1 ? XS_FORMAT_COMPACT
                                                  : XS_FORMAT_JSON};
        assert_int_equal(xs_printer_new(mem, &po, &p), 0);
        run *r = calloc(1, sizeof(*r));
        assert_non_null(r);
        r->obs[r->n_obs++] = xs_printer_observer(p, XS_OBS_BEST_EFFORT, 0, "out");
        r->obs[r->n_obs++] = xs_explainer_observer(x);
        r->meta = (xs_print_meta){.session = "t", .direction = "c2s", .untimed = 1};
        xs_parser *ps = NULL;
        assert_int_equal(xs_parser_new(NULL, XS_PARSER_TREE | XS_PARSER_RAW, on_event, r, &ps), 0);
        assert_int_equal(xs_parser_feed(ps, stream, strlen(stream), NULL), 0);
        xs_parser_free(ps);
        xs_printer_free(p);
        fclose(mem);
        /* U+202E never raw in the explanation (JSON: the "explain" member; the printers own
         * the rest of the line). */
        const char *ex = f == 2 ? strstr(buf, "\"explain\":") : buf;
        assert_non_null(ex);
        const char *ex_end = f == 2 ? strstr(ex, "\",\"") : buf + len;
        assert_non_null(ex_end);
        const char *raw = strstr(ex, "\xE2\x80\xAE");
        if (raw != NULL && raw < ex_end)
            fail_msg("raw U+202E in:\n%s", buf);
        if (f == 2)
            assert_non_null(strstr(buf, "domain evil\\u202Emoc. x (version"));
        else
            assert_non_null(strstr(buf, "? The client opens an XML stream to the domain "
                                        "evil\\u202Emoc. x (version"));
        free(buf);
        free(r);
    }
    xs_explainer_free(x);
}

/* A long value is cut on a character boundary, with "…". */
static void test_explain_long_value_cut(void **state)
{
    (void)state;
    char res[400] = "";
    for (int i = 0; i < 100; i++)
        strcat(res, "é");
    char *st = NULL;
    assert_true(asprintf(&st,
                         "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                         "<resource>%s</resource></bind></iq>",
                         res) > 0);
    xs_explainer *x = new_explainer(XS_LANG_EN);
    char *out = explain_one(x, "c2s", st, 0);
    assert_non_null(strstr(out, "éé…, the last part"));
    free(out);
    free(st);
    xs_explainer_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_explain_catalogs_complete),
        cmocka_unit_test(test_explain_catalog_errors),
        cmocka_unit_test(test_explain_lang),
        cmocka_unit_test(test_explain_events),
        cmocka_unit_test(test_explain_stream),
        cmocka_unit_test(test_explain_unknown_payload),
        cmocka_unit_test(test_explain_no_secrets),
        cmocka_unit_test(test_explain_scram_server_first),
        cmocka_unit_test(test_explain_scram_masked_and_binary),
        cmocka_unit_test(test_explain_chinese),
        cmocka_unit_test(test_explain_hostile_values_escaped),
        cmocka_unit_test(test_explain_long_value_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
