/* libFuzzer target for the filter language (filters/filter*.c).
 *
 * The input is a filter expression. Whatever it holds, compiling it must not crash, leak or
 * hang, and must give either a filter or an error with a column inside the expression (or just
 * after it). A filter's normalised form must compile again to the same normalised form, and both
 * must give the same answers. The filter is then evaluated, through the filtering observer, on a
 * fixed session of two directions (a bind, messages, presence, an IQ, stream management), parsed
 * by xs_parser with and without trees: the two must pass the same events. The input after its
 * first NUL byte is the payload of the client's SASL <auth/>, which the observer reads for the
 * identity it claims (SCRAM when the payload starts with a gs2 flag, else PLAIN). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "filters/filter.h"
#include "filters/filter_obs.h"
#include "inspect/annot.h"
#include "inspect/b64.h"
#include "inspect/error.h"
#include "inspect/observer.h"
#include "inspect/parser.h"

#define HEADER_ATTRS                                                                               \
    "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'"

static const char c2s_header[] = "<stream:stream " HEADER_ATTRS " to='example.org'>";

/* After the client's <auth/>, made of the input. */
static const char c2s[] =
    "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource>"
    "</bind></iq>"
    "<message to='bob@example.org' id='m1' type='chat'><body>Hello &amp; caf\xc3\xa9 "
    "<![CDATA[a<b]]> end</body><composing xmlns='http://jabber.org/protocol/chatstates'/>"
    "</message>"
    "<presence id='p1'><show>away</show></presence>"
    "<iq type='get' id='v1' to='example.org'><query xmlns='jabber:iq:version'/></iq>"
    "<enable xmlns='urn:xmpp:sm:3'/><r xmlns='urn:xmpp:sm:3'/>"
    "<message xmlns:x='urn:x' to='carol@example.org/pc'><x:y x:a='1'>t</x:y></message>"
    "</stream:stream>";

static const char s2c[] =
    "<stream:stream " HEADER_ATTRS " from='example.org' id='s1'>"
    "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
    "<stream:features><sm xmlns='urn:xmpp:sm:3'/></stream:features>"
    "<iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    "<jid>alice@example.org/r</jid></bind></iq>"
    "<message from='bob@example.org/pc' to='alice@example.org/r' id='m2' type='chat'>"
    "<body>HELLO alice</body></message>"
    "<iq type='result' id='v1' from='example.org'><query xmlns='jabber:iq:version'>"
    "<name>x</name></query></iq>"
    "<presence from='bob@example.org/pc' type='unavailable'/>"
    "<a xmlns='urn:xmpp:sm:3' h='3'/>"
    "</stream:stream>";

/* The client's SASL <auth/>: the input after its first NUL, as the payload (base64), SCRAM-SHA-1
 * when it starts with a gs2 flag (n, y or p), else PLAIN; the server accepts it. */
static char auth[3 * XS_FILTER_MAX_LEN];

static void make_auth(const uint8_t *payload, size_t n)
{
    char *b64 = NULL;
    size_t b64_len = 0;
    if (xs_base64_encode(payload, n, &b64, &b64_len) != 0)
        abort();
    snprintf(auth, sizeof(auth),
             "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='%s'>%s</auth>",
             n > 0 && strchr("nyp", payload[0]) != NULL ? "SCRAM-SHA-1" : "PLAIN",
             n > 0 ? b64 : "=");
    free(b64);
}

typedef struct fz {
    xs_observer obs[3];
    const char *dir;
    char passed[64]; /* one character per event: '1' passed, '0' not */
    size_t n;
} fz;

static int on_passed(void *ctx, const xs_obs_event *ev)
{
    (void)ev;
    fz *z = ctx;
    if (z->n > 0 && z->n <= sizeof(z->passed))
        z->passed[z->n - 1] = '1';
    return 0;
}

/* Flags the message m1 with a check, so that check atoms have something to find. */
static void annotate(void *ctx, const xs_obs_event *ev, xs_annot *annot)
{
    fz *z = ctx;
    if (z->n < sizeof(z->passed))
        z->passed[z->n] = '0';
    z->n++;
    if (ev->kind == XS_OBS_PARSED && ev->ev->kind == XS_EV_STANZA && ev->ev->len > 30 &&
        memcmp(ev->ev->raw, "<message to='bob", 16) == 0)
        xs_annot_check(annot, "iq-no-id", "RFC 6120", "fuzz");
}

static int on_event(void *user, const xs_event *ev)
{
    fz *z = user;
    xs_print_rule rule = {.rule = "r", .action = "tag", .detail = "t"};
    xs_print_meta meta = {.session = "1", .direction = z->dir, .rules = &rule, .n_rules = 1};
    xs_obs_emit_event(z->obs, 3, &meta, ev, 0);
    return 0;
}

/* Runs the session through filter f; returns what passed, one character per event. */
static void run(xs_filter *f, unsigned opts, char *out, size_t cap)
{
    fz z = {0};
    xs_observer inner = {.on_event = on_passed, .ctx = &z, .name = "fuzz"};
    xs_filter_obs *fo = NULL;
    if (xs_filter_obs_new(&inner, f, 0, &fo) != 0)
        abort();
    z.obs[0] = (xs_observer){.annotate = annotate, .ctx = &z, .name = "analyser"};
    z.obs[1] = xs_filter_observer(fo);
    z.obs[2] = (xs_observer){.name = "nothing"};
    xs_parser *p[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++)
        if (xs_parser_new(NULL, opts, on_event, &z, &p[i]) != 0)
            abort();
    /* The client's header and SASL, the server's success and bind result before the client's
     * stanzas that need them; the rest after. */
    z.dir = "c2s";
    xs_parser_feed(p[0], c2s_header, strlen(c2s_header), NULL);
    xs_parser_feed(p[0], auth, strlen(auth), NULL);
    size_t cut = (size_t)(strstr(s2c, "<message") - s2c);
    z.dir = "s2c";
    xs_parser_feed(p[1], s2c, cut, NULL);
    z.dir = "c2s";
    xs_parser_feed(p[0], c2s, strlen(c2s), NULL);
    z.dir = "s2c";
    xs_parser_feed(p[1], s2c + cut, strlen(s2c) - cut, NULL);
    xs_print_meta meta = {.session = "1"};
    xs_obs_event note = {.kind = XS_OBS_NOTE, .meta = &meta, .level = "info", .text = "n"};
    xs_obs_emit_other(z.obs, 3, &note);
    xs_obs_event closed = {.kind = XS_OBS_CLOSED, .meta = &meta};
    xs_obs_emit_other(z.obs, 3, &closed);
    if (xs_filter_obs_sessions(fo) != 0)
        abort();
    for (int i = 0; i < 2; i++)
        xs_parser_free(p[i]);
    xs_filter_obs_free(fo);
    size_t n = z.n < sizeof(z.passed) ? z.n : sizeof(z.passed);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, z.passed, n);
    out[n] = 0;
}

static char *normalised(const xs_filter *f)
{
    xs_buf b;
    xs_buf_init(&b, 0);
    if (xs_filter_format(f, &b) != 0)
        abort();
    return xs_buf_take(&b, NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    xmlInitParser();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * XS_FILTER_MAX_LEN)
        return 0;
    char *expr = malloc(size + 1);
    if (expr == NULL)
        return 0;
    memcpy(expr, data, size);
    expr[size] = 0;
    size_t len = strlen(expr);
    make_auth(data + (len < size ? len + 1 : size), len < size ? size - len - 1 : 0);
    xs_filter *f = NULL;
    xs_filter_error err;
    int rc = xs_filter_parse(expr, &f, &err);
    if (rc != 0) {
        /* An error says where: a column within the expression, or just after it. */
        if (rc != XS_EPARSE || f != NULL || err.column < 1 || err.column > len + 1 ||
            err.message[0] == 0)
            abort();
        free(expr);
        return 0;
    }
    char *norm = normalised(f);
    xs_filter *g = NULL;
    if (xs_filter_parse(norm, &g, &err) != 0) {
        fprintf(stderr, "the normalised form '%s' of '%s' does not compile: column %u: %s\n", norm,
                expr, err.column, err.message);
        abort();
    }
    char *again = normalised(g);
    if (strcmp(again, norm) != 0) {
        fprintf(stderr, "'%s' normalised twice: '%s' then '%s'\n", expr, norm, again);
        abort();
    }
    char a[80], b[80], c[80];
    run(f, XS_PARSER_RAW | XS_PARSER_TREE, a, sizeof(a));
    run(f, XS_PARSER_RAW, b, sizeof(b));
    run(g, XS_PARSER_RAW | XS_PARSER_TREE, c, sizeof(c));
    if (strcmp(a, b) != 0 || strcmp(a, c) != 0) {
        fprintf(stderr, "'%s': with trees %s, without %s, normalised %s\n", expr, a, b, c);
        abort();
    }
    free(again);
    free(norm);
    xs_filter_free(g);
    xs_filter_free(f);
    free(expr);
    return 0;
}
