/* libFuzzer target for the rule language and engine.
 *
 * The input is a rules file. Whatever it holds, compiling it must not crash, leak or hang, and
 * must either give a set or at least one error with a position. When it compiles (with the
 * built-in rules, chosen by the input's length), the set is applied in both directions to a few
 * fixed stanzas that exercise every action: a chat message, a version request, a result, stream
 * features and SASL, all parsed by xs_parser as the proxy parses them. Rewritten output must parse
 * back inside its stream. Applying must leave the parser's tree as it was, and give what the slow
 * reference way gives (xs_rules.reference: a copy of every stanza, libxml2 for every XPath, every
 * regex tried), unless that one met a limit. A stanza whose regex budget ran out must come back
 * unchanged with nothing else decided. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/tree.h>

#include "filters/features.h"
#include "filters/rules.h"
#include "filters/rules_impl.h"
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
    "<message type='normal' xmlns:x='urn:x' x:a='1'><n> 5 </n><x:y x:a='2'>t<c><![CDATA[a<b]]>"
    "</c>u</x:y><body>\xd9\xa0\xd9\xa1\xd9\xa2\xd9\xa3 12</body></message>"
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

/* The parser's tree of a stanza, serialized, with the pointers that tie it to its stream. */
typedef struct tree_state {
    char *xml;
    const void *ptr[6];
} tree_state;

static bool take_state(const xmlNode *node, tree_state *t)
{
    xmlBuffer *b = xmlBufferCreate();
    t->xml = NULL;
    if (b != NULL && xmlNodeDump(b, node->doc, (xmlNode *)node, 0, 0) >= 0)
        t->xml = strdup((const char *)xmlBufferContent(b));
    if (b != NULL)
        xmlBufferFree(b);
    t->ptr[0] = node->parent;
    t->ptr[1] = node->prev;
    t->ptr[2] = node->next;
    t->ptr[3] = node->doc;
    t->ptr[4] = node->parent != NULL ? node->parent->children : NULL;
    t->ptr[5] = node->parent != NULL ? node->parent->last : NULL;
    return t->xml != NULL;
}

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void check_same(const xs_rule_result *a, const xs_rule_result *b)
{
    if (a->error != NULL || b->error != NULL)
        return; /* a limit may stop one way and not the other */
    if (a->verdict != b->verdict || !same(a->xml, b->xml) || !same(a->bounce, b->bounce) ||
        a->n_injects != b->n_injects || a->n_tags != b->n_tags || a->n_applied != b->n_applied ||
        a->rules_matched != b->rules_matched || a->delay_ms != b->delay_ms)
        __builtin_trap();
    for (size_t i = 0; i < a->n_injects; i++)
        if (!same(a->injects[i].xml, b->injects[i].xml))
            __builtin_trap();
    for (size_t i = 0; i < a->n_tags; i++)
        if (!same(a->tags[i], b->tags[i]))
            __builtin_trap();
    for (size_t i = 0; i < a->n_applied; i++)
        if (a->applied[i].nodes != b->applied[i].nodes ||
            !same(a->applied[i].detail, b->applied[i].detail) ||
            !same(a->applied[i].before, b->applied[i].before) ||
            !same(a->applied[i].after, b->applied[i].after))
            __builtin_trap();
}

static int on_event(void *user, const xs_event *ev)
{
    fz *f = user;
    if (ev->kind != XS_EV_STANZA)
        return 0;
    xs_rule_ctx ctx = {.direction = f->dir, .session = "fuzz{id}$1", .flags = f->flags};
    xs_rule_result res, ref;
    tree_state before, after;
    bool snap = take_state(ev->node, &before);
    int rc = xs_rules_apply(f->rules, &ctx, ev, &res);
    if (snap && take_state(ev->node, &after)) {
        if (strcmp(before.xml, after.xml) != 0 || memcmp(before.ptr, after.ptr, sizeof(before.ptr)))
            __builtin_trap();
        free(after.xml);
    }
    free(before.xml);
    f->rules->reference = true;
    int rc_ref = xs_rules_apply(f->rules, &ctx, ev, &ref);
    f->rules->reference = false;
    if (rc == 0 && rc_ref == 0)
        check_same(&res, &ref);
    xs_rule_result_clear(&ref);
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
        /* A stanza whose regex budget ran out passes as it came, with nothing else decided. */
        if (res.error != NULL && strstr(res.error, "the regex budget of this stanza") != NULL &&
            (res.verdict != XS_VERDICT_UNCHANGED || res.n_applied != 0 || res.n_injects != 0 ||
             res.n_tags != 0 || res.delay_ms != 0))
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
