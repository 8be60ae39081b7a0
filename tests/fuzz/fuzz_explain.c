/* libFuzzer target for the explanations (inspect/explain*.c): the input is one direction of a
 * stream, or with bit 0x40 of the first byte clear, the text of a SASL or SASL2 element the first
 * byte chooses; it goes through the parser and the real observer chain (masking, then the
 * explainer) in either language, with or without --show-secrets, as client or server. Every
 * explanation must be valid UTF-8 of the length it claims, and the explainer must forget each
 * session at its end (LeakSanitizer). */
#include "fuzz_doc.h"
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inspect/explain.h"
#include "inspect/observer.h"
#include "inspect/parser.h"
#include "inspect/utf8.h"

static const char *const wrappers[][2] = {
    {"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>", "</auth>"},
    {"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>", "</auth>"},
    {"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>", "</response>"},
    {"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>", "</challenge>"},
    {"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>", "</success>"},
    {"<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-256'><initial-response>",
     "</initial-response></authenticate>"},
    {"<iq type='result'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>",
     "</jid></bind></iq>"},
    {"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>",
     "</mechanism></mechanisms></stream:features>"},
};

typedef struct ctx {
    xs_observer obs[2];
    xs_print_meta meta;
    int show;
} ctx;

static int check(void *user, const xs_obs_event *ev)
{
    (void)user;
    const xs_annot *a = ev->annot;
    if (a == NULL)
        return 0;
    if (strlen(a->explain) != a->explain_len || a->explain_len >= XS_ANNOT_EXPLAIN_MAX)
        __builtin_trap();
    const unsigned char *s = (const unsigned char *)a->explain;
    for (size_t i = 0; i < a->explain_len;) {
        uint32_t cp;
        size_t k = xs_utf8_next(s + i, a->explain_len - i, &cp);
        if (k == 0)
            __builtin_trap();
        i += k;
    }
    return 0;
}

static int on_event(void *user, const xs_event *ev)
{
    ctx *c = user;
    (void)xs_obs_emit_event(c->obs, 2, &c->meta, ev, c->show);
    return 0;
}

static void run(xs_explainer *x, const uint8_t flags, const char *doc, size_t len)
{
    ctx c = {.show = flags & 0x80};
    c.obs[0] = xs_explainer_observer(x);
    c.obs[1] = (xs_observer){.on_event = check, .name = "check"};
    c.meta = (xs_print_meta){.session = "f", .direction = (flags & 0x20) ? "s2c" : "c2s"};
    xs_parser *p = NULL;
    if (xs_parser_new(NULL, XS_PARSER_TREE | XS_PARSER_RAW | XS_PARSER_AUTO_RESTART, on_event, &c,
                      &p) == 0) {
        (void)xs_parser_feed(p, doc, len, NULL);
        xs_parser_free(p);
    }
    xs_obs_event end = {.kind = XS_OBS_CLOSED, .meta = &c.meta};
    (void)xs_obs_emit_other(c.obs, 2, &end);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static xs_explainer *x[XS_LANG_COUNT];
    if (size < 1 || size > 16384)
        return 0;
    xs_lang lang = (data[0] & 0x10) ? XS_LANG_ZH : XS_LANG_EN;
    if (x[lang] == NULL && xs_explainer_new(lang, &x[lang], NULL, 0) != 0)
        __builtin_trap(); /* the embedded catalogs always load */
    if (data[0] & 0x40) {
        run(x[lang], data[0], (const char *)data + 1, size - 1);
        return 0;
    }
    const char *const *w = wrappers[data[0] % (sizeof(wrappers) / sizeof(wrappers[0]))];
    static const char hdr[] = "<stream:stream xmlns='jabber:client' "
                              "xmlns:stream='http://etherx.jabber.org/streams' id='i'>";
    size_t n;
    char *doc = fuzz_doc(hdr, w[0], data + 1, size - 1, w[1], &n);
    if (doc == NULL)
        return 0;
    run(x[lang], data[0], doc, n);
    free(doc);
    return 0;
}
