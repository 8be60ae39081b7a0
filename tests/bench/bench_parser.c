/* Parser benchmark: xmppscope's stream parser against bare libxml2 push-SAX on the same data.
 *
 * Generates one XMPP stream of realistic stanzas (messages with bodies, presence with caps, IQs
 * with rosters and disco results; 100 B to 4 KiB each), then parses it in 64 KiB reads:
 *   libxml2   xmlParseChunk with SAX2 callbacks that do nothing: the floor for any libxml2 user;
 *   events    our parser, events with exact spans, no tree (what plain forwarding uses);
 *   tree      our parser building each stanza's tree (what printers and rules use);
 *   tree+raw  the same keeping each stanza's raw bytes (what inspect uses).
 * Each is run several times, interleaved; the median MB/s and its ratio to libxml2 are printed as
 * a table and as one JSON line. Speed is read here, never asserted in a test.
 *
 * usage: bench_parser [MiB] [repetitions]   (defaults: 64 MiB, 5)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxml/SAX2.h>
#include <libxml/parser.h>

#include "inspect/parser.h"

#define READ_SIZE 65536

static uint32_t rng = 12345;

static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

typedef struct gen {
    char *data;
    size_t len, cap;
} gen;

static void put(gen *g, const char *s, size_t n)
{
    if (g->len + n > g->cap) {
        g->cap = (g->len + n) * 2;
        g->data = realloc(g->data, g->cap);
        if (g->data == NULL) {
            perror("realloc");
            exit(1);
        }
    }
    memcpy(g->data + g->len, s, n);
    g->len += n;
}

static void puts_(gen *g, const char *s)
{
    put(g, s, strlen(s));
}

static void put_text(gen *g, size_t n)
{
    static const char words[] = "the quick brown fox jumps over lazy dog &amp; XMPP stanza "
                                "über café — 🚀 hello world proxy stream roster presence ";
    while (n > 0) {
        size_t at = next_rand() % (sizeof(words) - 40);
        size_t k = 20 < n ? 20 : n;
        /* Do not cut an entity or a multi-byte character. */
        while (k > 0 && (words[at + k - 1] & 0x80) && ((words[at + k] & 0xC0) == 0x80))
            k--;
        const char *amp = memchr(words + at, '&', k);
        if (amp != NULL && amp + 5 > words + at + k)
            k = (size_t)(amp - (words + at));
        if (k == 0 || (words[at] & 0xC0) == 0x80) {
            puts_(g, "x");
            n--;
            continue;
        }
        put(g, words + at, k);
        n -= k;
    }
}

static void gen_stanza(gen *g, unsigned i)
{
    char tmp[512];
    switch (next_rand() % 5) {
    case 0:
    case 1: { /* a chat message, 100 B .. 4 KiB */
        size_t body = 40 + next_rand() % 3900;
        snprintf(tmp, sizeof(tmp),
                 "<message from='alice@example.test/laptop' to='bob@example.test' type='chat' "
                 "id='m%u'><body>",
                 i);
        puts_(g, tmp);
        put_text(g, body);
        puts_(g, "</body><active xmlns='http://jabber.org/protocol/chatstates'/>"
                 "<request xmlns='urn:xmpp:receipts'/></message>");
        break;
    }
    case 2:
        snprintf(tmp, sizeof(tmp),
                 "<presence from='carol%u@example.test/phone'><show>away</show><status>out for "
                 "lunch</status><priority>5</priority><c xmlns='http://jabber.org/protocol/caps' "
                 "hash='sha-1' node='https://conversations.im' "
                 "ver='Y2Fwcy12ZXItc3RyaW5nLWhlcmU='/></presence>",
                 i);
        puts_(g, tmp);
        break;
    case 3: {
        snprintf(tmp, sizeof(tmp),
                 "<iq type='result' id='r%u' to='alice@example.test/laptop'><query "
                 "xmlns='jabber:iq:roster' ver='v%u'>",
                 i, i);
        puts_(g, tmp);
        unsigned n = 1 + next_rand() % 20;
        for (unsigned k = 0; k < n; k++) {
            snprintf(tmp, sizeof(tmp),
                     "<item jid='friend%u@example.test' name='Friend %u' "
                     "subscription='both'><group>Buddies</group></item>",
                     k, k);
            puts_(g, tmp);
        }
        puts_(g, "</query></iq>");
        break;
    }
    default:
        snprintf(tmp, sizeof(tmp),
                 "<iq type='result' id='d%u' from='example.test'><query "
                 "xmlns='http://jabber.org/protocol/disco#info'><identity category='server' "
                 "type='im' name='Prosody'/><feature var='urn:xmpp:ping'/><feature "
                 "var='jabber:iq:version'/><feature var='urn:xmpp:carbons:2'/><feature "
                 "var='http://jabber.org/protocol/disco#items'/></query></iq>",
                 i);
        puts_(g, tmp);
        break;
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- bare libxml2 ------------------------------------------------------------------------------
 */

static unsigned long bare_count;

static void bare_start(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                       const xmlChar *uri, int nb_ns, const xmlChar **ns, int nb_attrs,
                       int nb_defaulted, const xmlChar **attrs)
{
    (void)ctx, (void)localname, (void)prefix, (void)uri, (void)nb_ns, (void)ns, (void)nb_attrs,
        (void)nb_defaulted, (void)attrs;
}

static void bare_end(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri)
{
    (void)ctx, (void)localname, (void)prefix, (void)uri;
    bare_count++;
}

static void bare_chars(void *ctx, const xmlChar *ch, int len)
{
    (void)ctx, (void)ch, (void)len;
}

static double run_bare(const char *data, size_t len)
{
    xmlSAXHandler sax;
    memset(&sax, 0, sizeof(sax));
    sax.initialized = XML_SAX2_MAGIC;
    sax.startElementNs = bare_start;
    sax.endElementNs = bare_end;
    sax.characters = bare_chars;
    double t0 = now();
    xmlParserCtxtPtr ctxt = xmlCreatePushParserCtxt(&sax, NULL, NULL, 0, NULL);
    for (size_t at = 0; at < len; at += READ_SIZE) {
        size_t n = len - at < READ_SIZE ? len - at : READ_SIZE;
        if (xmlParseChunk(ctxt, data + at, (int)n, 0) != 0) {
            fprintf(stderr, "bench: libxml2 failed at %zu\n", at);
            exit(1);
        }
    }
    xmlFreeParserCtxt(ctxt);
    return now() - t0;
}

/* libxml2 building its own tree of the whole stream with its default SAX2 handlers: what a
 * tree costs in libxml2 itself, to read the "tree" rows against. */
static double run_bare_tree(const char *data, size_t len)
{
    xmlSAXHandler sax;
    xmlSAXVersion(&sax, 2);
    double t0 = now();
    xmlParserCtxtPtr ctxt = xmlCreatePushParserCtxt(&sax, NULL, NULL, 0, NULL);
    for (size_t at = 0; at < len; at += READ_SIZE) {
        size_t n = len - at < READ_SIZE ? len - at : READ_SIZE;
        if (xmlParseChunk(ctxt, data + at, (int)n, 0) != 0) {
            fprintf(stderr, "bench: libxml2 failed at %zu\n", at);
            exit(1);
        }
    }
    xmlFreeDoc(ctxt->myDoc);
    xmlFreeParserCtxt(ctxt);
    return now() - t0;
}

/* ---- ours --------------------------------------------------------------------------------------
 */

static unsigned long our_stanzas;

static int on_event(void *user, const xs_event *ev)
{
    (void)user;
    if (ev->kind == XS_EV_STANZA)
        our_stanzas++;
    else if (ev->kind == XS_EV_ERROR) {
        fprintf(stderr, "bench: our parser failed: %s at %u:%u\n", ev->message, ev->line,
                ev->column);
        exit(1);
    }
    return 0;
}

static double run_ours(const char *data, size_t len, unsigned opts)
{
    double t0 = now();
    xs_parser *p = NULL;
    if (xs_parser_new(NULL, opts, on_event, NULL, &p) != 0)
        exit(1);
    for (size_t at = 0; at < len; at += READ_SIZE) {
        size_t n = len - at < READ_SIZE ? len - at : READ_SIZE;
        if (xs_parser_feed(p, data + at, n, NULL) != 0)
            exit(1);
    }
    xs_parser_free(p);
    return now() - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 64;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (mib == 0 || reps <= 0 || reps > 100) {
        fprintf(stderr, "usage: bench_parser [MiB] [repetitions]\n");
        return 2;
    }
    gen g = {0};
    puts_(&g, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
              "xmlns:stream='http://etherx.jabber.org/streams' from='example.test' id='bench' "
              "version='1.0' xml:lang='en'>");
    unsigned n = 0;
    while (g.len < mib << 20)
        gen_stanza(&g, n++);

    enum { BARE, BARE_TREE, EVENTS, TREE, TREE_RAW, NCASES };
    static const char *names[NCASES] = {
        "libxml2 push-SAX (no-op callbacks)", "libxml2 push, its own tree builder",
        "xmppscope events (spans, no tree)", "xmppscope tree", "xmppscope tree+raw"};
    static const char *keys[NCASES] = {"libxml2", "libxml2_tree", "events", "tree", "tree_raw"};
    const unsigned opts[NCASES] = {0, 0, 0, XS_PARSER_TREE, XS_PARSER_TREE | XS_PARSER_RAW};
    double *t[NCASES];
    for (int c = 0; c < NCASES; c++)
        t[c] = calloc((size_t)reps, sizeof(double));
    for (int r = 0; r < reps; r++) {
        for (int c = 0; c < NCASES; c++) {
            bare_count = our_stanzas = 0;
            t[c][r] = c == BARE        ? run_bare(g.data, g.len)
                      : c == BARE_TREE ? run_bare_tree(g.data, g.len)
                                       : run_ours(g.data, g.len, opts[c]);
            if (c != BARE && c != BARE_TREE && our_stanzas != n) {
                fprintf(stderr, "bench: %lu stanzas parsed, %u generated\n", our_stanzas, n);
                return 1;
            }
        }
    }
    double mbs[NCASES];
    printf("parser benchmark: %.1f MiB, %u stanzas, %d runs each, %d KiB reads\n",
           (double)g.len / (1 << 20), n, reps, READ_SIZE / 1024);
    printf("%-38s %10s %12s\n", "parser", "MB/s", "vs libxml2");
    for (int c = 0; c < NCASES; c++) {
        qsort(t[c], (size_t)reps, sizeof(double), cmp_double);
        mbs[c] = (double)g.len / 1e6 / t[c][reps / 2];
        printf("%-38s %10.1f %11.2fx\n", names[c], mbs[c], mbs[c] / mbs[BARE]);
    }
    printf("{\"bench\":\"parser\",\"bytes\":%zu,\"stanzas\":%u,\"runs\":%d", g.len, n, reps);
    for (int c = 0; c < NCASES; c++)
        printf(",\"%s_mbps\":%.1f,\"%s_ratio\":%.3f", keys[c], mbs[c], keys[c], mbs[c] / mbs[BARE]);
    printf("}\n");
    for (int c = 0; c < NCASES; c++)
        free(t[c]);
    free(g.data);
    return 0;
}
