/* libFuzzer target for the SASL and password decoding used for display and redaction
 * (inspect/redact.c): the input becomes the text of SASL, SASL2 and registration elements, the
 * first byte choosing which and whether secrets are shown. With bit 0x40 of the first byte the
 * rest is a whole stream instead (its own header, with as many namespace declarations as it
 * likes, then stanzas). Every stanza is also redacted without its tree, and as the rewritten XML
 * of itself (xs_redact_rewritten). */
#include "fuzz_doc.h"
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inspect/parser.h"
#include "inspect/b64.h"
#include "inspect/redact.h"

static const char *const wrappers[][2] = {
    {"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>", "</auth>"},
    {"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>", "</auth>"},
    {"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>", "</response>"},
    {"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>", "</challenge>"},
    {"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>", "</success>"},
    {"<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>",
     "</initial-response></authenticate>"},
    {"<iq type='set'><query xmlns='jabber:iq:register'><password>", "</password></query></iq>"},
    {"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-OTHER'>", "</auth>"},
};

typedef struct ctx {
    int show;
} ctx;

static int on_event(void *user, const xs_event *ev)
{
    ctx *c = user;
    if (ev->kind != XS_EV_STANZA)
        return 0;
    xs_redaction r = {0};
    if (xs_redact_event(ev, c->show, &r) == 0) {
        if (r.xml != NULL && strlen(r.xml) != r.xml_len)
            __builtin_trap();
        xs_redaction_clear(&r);
    }
    /* The same stanza without its tree: redaction parses the raw bytes itself. */
    xs_event raw_only = *ev;
    raw_only.node = NULL;
    if (xs_redact_event(&raw_only, c->show, &r) == 0)
        xs_redaction_clear(&r);
    if (ev->raw != NULL && xs_redact_rewritten(ev, ev->raw, ev->len, c->show, &r) == 0) {
        if (r.xml != NULL && strlen(r.xml) != r.xml_len)
            __builtin_trap();
        xs_redaction_clear(&r);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 16384)
        return 0;
    ctx c = {.show = data[0] & 0x80};
    if (data[0] & 0x40) {
        xs_parser *p = NULL;
        if (xs_parser_new(NULL, XS_PARSER_TREE | XS_PARSER_RAW, on_event, &c, &p) == 0) {
            (void)xs_parser_feed(p, (const char *)data + 1, size - 1, NULL);
            xs_parser_free(p);
        }
        return 0;
    }
    const char *const *w = wrappers[data[0] % (sizeof(wrappers) / sizeof(wrappers[0]))];
    static const char hdr[] = "<stream:stream xmlns='jabber:client' "
                              "xmlns:stream='http://etherx.jabber.org/streams'>";
    size_t n;
    char *doc = fuzz_doc(hdr, w[0], data + 1, size - 1, w[1], &n);
    if (doc == NULL)
        return 0;
    xs_parser *p = NULL;
    if (xs_parser_new(NULL, XS_PARSER_TREE | XS_PARSER_RAW, on_event, &c, &p) == 0) {
        (void)xs_parser_feed(p, doc, n, NULL);
        xs_parser_free(p);
    }
    /* The decoders directly, on the raw input. */
    unsigned char *dec = NULL;
    size_t dlen = 0;
    if (xs_base64_decode((const char *)data + 1, size - 1, &dec, &dlen) == 0) {
        char cb[32];
        (void)xs_sasl_gs2_flag((const char *)dec, dlen, cb, sizeof(cb));
        char *enc = NULL;
        size_t elen = 0;
        if (xs_base64_encode(dec, dlen, &enc, &elen) == 0)
            free(enc);
        free(dec);
    }
    free(doc);
    return 0;
}
