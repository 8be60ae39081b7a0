/* libFuzzer target for the rule language and engine.
 *
 * The input is a rules file. Whatever it holds, compiling it must not crash, leak or hang, and
 * must either give a set or at least one error with a position. When it compiles (with the
 * built-in rules, chosen by the input's length), the set is applied in both directions to a few
 * fixed stanzas that exercise every action: a chat message, a version request, a result, stream
 * features and SASL, all parsed by xs_parser as the proxy parses them. Rewritten output must parse
 * back inside its stream. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/features.h"
#include "filters/rules.h"
#include "inspect/error.h"
#include "inspect/parser.h"

static const char c2s[] =
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
    "to='example.org' version='1.0'>"
    "<message to='bob@example.org' id='m1' type='chat' xml:lang='en'><body>card 4111 1111 1111 "
    "1111, caf\xc3\xa9 &amp; more</body><composing xmlns='http://jabber.org/protocol/chatstates'/>"
    "<x:e xmlns:x='urn:x' x:a='1'>t<y/>u</x:e></message>"
    "<iq type='get' id='v1' to='example.org'><query xmlns='jabber:iq:version'/></iq>"
    "<iq type='result' id='r1'/>"
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>"
    "<presence/>";

static const char s2c[] =
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
    "from='example.org' id='s1' version='1.0'>"
    "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1-PLUS</mechanism>"
    "<mechanism>PLAIN</mechanism></mechanisms><sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>"
    "<channel-binding type='tls-exporter'/></sasl-channel-binding>"
    "<compression xmlns='http://jabber.org/features/compress'><method>zlib</method></compression>"
    "<sm xmlns='urn:xmpp:sm:3'/></stream:features>"
    "<message from='bob@example.org/pc' to='alice@example.org' id='m2'><body>hi</body>"
    "<delay xmlns='urn:xmpp:delay' stamp='2020-01-01T00:00:00Z'/></message>"
    "<iq type='error' id='e1'><error type='cancel'><item-not-found "
    "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>";

typedef struct fz {
    xs_rules *rules;
    xs_rule_dir dir;
    unsigned flags;
    const char *header;
    size_t header_len;
} fz;

/* The rewritten bytes must be one well-formed stanza inside the stream they came from. */
static int check_event(void *user, const xs_event *ev)
{
    int *stanzas = user;
    if (ev->kind == XS_EV_ERROR)
        __builtin_trap();
    if (ev->kind == XS_EV_STANZA)
        (*stanzas)++;
    return 0;
}

static void check_reparses(const char *header, size_t header_len, const char *xml, size_t len)
{
    int stanzas = 0;
    xs_parser *p = NULL;
    if (xs_parser_new(NULL, 0, check_event, &stanzas, &p) != 0)
        return;
    if (xs_parser_feed(p, header, header_len, NULL) == 0 &&
        xs_parser_feed(p, xml, len, NULL) == 0 && stanzas != 1)
        __builtin_trap();
    xs_parser_free(p);
}

static int on_event(void *user, const xs_event *ev)
{
    fz *f = user;
    if (ev->kind != XS_EV_STANZA)
        return 0;
    xs_rule_ctx ctx = {.direction = f->dir, .session = "fuzz{id}$1", .flags = f->flags};
    xs_rule_result res;
    int rc = xs_rules_apply(f->rules, &ctx, ev, &res);
    if (rc == 0) {
        if (res.verdict == XS_VERDICT_REWRITTEN) {
            if (res.xml == NULL || strlen(res.xml) != res.len)
                __builtin_trap();
            check_reparses(f->header, f->header_len, res.xml, res.len);
        }
        if (res.verdict == XS_VERDICT_BOUNCE && res.bounce == NULL)
            __builtin_trap();
        if (res.verdict != XS_VERDICT_REWRITTEN && res.xml != NULL)
            __builtin_trap();
        for (size_t i = 0; i < res.n_injects; i++)
            if (res.injects[i].xml == NULL || strlen(res.injects[i].xml) != res.injects[i].len)
                __builtin_trap();
    } else if (rc != XS_ENOMEM) {
        __builtin_trap();
    }
    xs_rule_result_clear(&res);
    return 0;
}

static void run_stream(xs_rules *rules, xs_rule_dir dir, unsigned flags, const char *stream,
                       size_t len)
{
    fz f = {.rules = rules, .dir = dir, .flags = flags, .header = stream};
    f.header_len = (size_t)(strchr(stream, '>') - stream) + 1;
    xs_parser *p = NULL;
    if (xs_parser_new(NULL, XS_PARSER_TREE | XS_PARSER_RAW, on_event, &f, &p) != 0)
        return;
    if (xs_parser_feed(p, stream, len, NULL) != 0)
        __builtin_trap();
    xs_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xs_rules *rules = NULL;
    xs_rule_diag diag = {0};
    unsigned builtin = (size & 1) ? XS_REWRITE_DEFAULT | XS_REWRITE_STARTTLS : 0;
    int rc = xs_rules_parse((const char *)data, size, "fuzz.rules", builtin, &rules, &diag);
    if (rc == 0) {
        if (rules == NULL || diag.n != 0)
            __builtin_trap();
        for (size_t i = 0; i < xs_rules_count(rules); i++) {
            xs_rule_info info;
            if (xs_rules_info(rules, i, &info) != 0 || info.name == NULL)
                __builtin_trap();
        }
        unsigned flags = (size & 2) ? XS_RULE_EXPLAIN : 0;
        run_stream(rules, XS_RULE_C2S, flags, c2s, sizeof(c2s) - 1);
        run_stream(rules, XS_RULE_S2C, flags, s2c, sizeof(s2c) - 1);
        xs_rules_unref(rules);
    } else if (rc == XS_EPARSE || rc == XS_ETOOBIG) {
        if (rules != NULL || diag.n == 0)
            __builtin_trap();
        for (size_t i = 0; i < diag.n; i++)
            if (diag.errors[i].message == NULL ||
                strncmp(diag.errors[i].message, "fuzz.rules:", 11) != 0)
                __builtin_trap();
    } else if (rc != XS_ENOMEM) {
        __builtin_trap();
    }
    xs_rule_diag_clear(&diag);
    return 0;
}
