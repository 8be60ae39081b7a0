/* The load generator's stanzas. See bench_corpus.h. */
#include "bench_corpus.h"

#include "bench_util.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gen {
    bn_buf b;
    uint32_t rng;
    int failed;
} gen;

static uint32_t rnd(gen *g)
{
    /* xorshift32: fast and deterministic; quality does not matter here. */
    g->rng ^= g->rng << 13;
    g->rng ^= g->rng >> 17;
    g->rng ^= g->rng << 5;
    return g->rng;
}

static void put(gen *g, const char *s)
{
    if (bn_buf_append(&g->b, s, strlen(s)) < 0)
        g->failed = 1;
}

static void putf(gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void putf(gen *g, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    put(g, tmp);
}

/* Appends about `n` bytes of chat text: words, punctuation, an entity now and then, and
 * multi-byte UTF-8, never cut inside a token. */
static void put_text(gen *g, size_t n)
{
    static const char *const words[] = {
        "hello", "world",   "the",  "meeting", "is",        "at",     "noon", "café",
        "über",  "—",       "🚀",    "&amp;",   "&lt;3",     "see",    "you",  "there",
        "ok",    "thanks!", "what", "about",   "tomorrow?", "send",   "me",   "the",
        "file",  "please",  "😀",    "naïve",   "proxy",     "stanza",
    };
    size_t start = g->b.len;
    while (g->b.len - start < n && !g->failed) {
        const char *w = words[rnd(g) % (sizeof(words) / sizeof(words[0]))];
        if (g->b.len - start + strlen(w) + 1 > n && g->b.len > start)
            break;
        put(g, w);
        put(g, " ");
    }
}

/* A target size: half of the stanzas 100-400 B, a third up to 1.5 KiB, the rest up to 4 KiB. */
static size_t pick_size(gen *g)
{
    uint32_t r = rnd(g) % 100;
    if (r < 50)
        return 100 + rnd(g) % 300;
    if (r < 85)
        return 400 + rnd(g) % 1100;
    return 1500 + rnd(g) % 2500;
}

static void gen_message(gen *g, unsigned i, size_t target)
{
    size_t at = g->b.len;
    if (target < 300) {
        putf(g, "<message to='bob@bench.test' type='chat' id='m%u'><body>", i);
        size_t used = g->b.len - at + 17;
        put_text(g, target > used + 8 ? target - used : 8);
        put(g, "</body></message>");
        return;
    }
    putf(g,
         "<message from='alice@bench.test/laptop' to='bob@bench.test' type='chat' id='m%u' "
         "xml:lang='en'><body>",
         i);
    static const char tail[] = "</body><active xmlns='http://jabber.org/protocol/chatstates'/>"
                               "<request xmlns='urn:xmpp:receipts'/>"
                               "<origin-id xmlns='urn:xmpp:sid:0' id='0f1e2d3c4b5a'/></message>";
    size_t used = g->b.len - at + sizeof(tail) - 1;
    put_text(g, target > used + 8 ? target - used : 8);
    put(g, tail);
}

static void gen_presence(gen *g, unsigned i, size_t target)
{
    size_t at = g->b.len;
    putf(g, "<presence from='carol%u@bench.test/phone' id='p%u'><show>away</show><status>", i % 97,
         i);
    static const char tail[] = "</status><priority>5</priority><c "
                               "xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
                               "node='https://conversations.im' "
                               "ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/></presence>";
    size_t used = g->b.len - at + sizeof(tail) - 1;
    /* Presence stays small: a status line of at most a few hundred bytes. */
    size_t want = target > used + 8 ? target - used : 8;
    put_text(g, want > 300 ? 300 : want);
    put(g, tail);
}

static void gen_iq(gen *g, unsigned i, size_t target)
{
    size_t at = g->b.len;
    if (target < 250) {
        putf(g, "<iq type='get' id='ping%u' to='bench.test'><ping xmlns='urn:xmpp:ping'/></iq>", i);
        return;
    }
    if (target < 600) {
        putf(g,
             "<iq type='result' id='d%u' from='bench.test' to='alice@bench.test/laptop'><query "
             "xmlns='http://jabber.org/protocol/disco#info'><identity category='server' "
             "type='im' name='bench'/><feature var='urn:xmpp:ping'/><feature "
             "var='jabber:iq:version'/><feature var='urn:xmpp:carbons:2'/><feature "
             "var='http://jabber.org/protocol/disco#items'/></query></iq>",
             i);
        return;
    }
    putf(g,
         "<iq type='result' id='r%u' to='alice@bench.test/laptop'><query xmlns='jabber:iq:roster' "
         "ver='v%u'>",
         i, i);
    for (unsigned k = 0; g->b.len - at + 110 < target && !g->failed; k++)
        putf(g,
             "<item jid='friend%u@bench.test' name='Friend %u' "
             "subscription='both'><group>Buddies</group></item>",
             k, k);
    put(g, "</query></iq>");
}

int bn_corpus_make(bn_corpus *c, size_t bytes, unsigned seed)
{
    gen g = {.rng = seed ? seed : 1};
    size_t cap = 1024, n = 0;
    size_t *offs = malloc(cap * sizeof(*offs));
    bn_buf_init(&g.b, bytes + (1u << 20));
    memset(c, 0, sizeof(*c));
    if (offs == NULL)
        return BN_ENOMEM;
    c->min = SIZE_MAX;
    while (g.b.len < bytes && !g.failed) {
        if (n + 2 > cap) {
            size_t *no = realloc(offs, cap * 2 * sizeof(*offs));
            if (no == NULL) {
                g.failed = 1;
                break;
            }
            offs = no;
            cap *= 2;
        }
        size_t at = g.b.len;
        offs[n] = at;
        size_t target = pick_size(&g);
        uint32_t kind = rnd(&g) % 20;
        if (kind < 11)
            gen_message(&g, (unsigned)n, target);
        else if (kind < 15)
            gen_presence(&g, (unsigned)n, target);
        else
            gen_iq(&g, (unsigned)n, target);
        size_t sz = g.b.len - at;
        if (sz < c->min)
            c->min = sz;
        if (sz > c->max)
            c->max = sz;
        n++;
    }
    if (g.failed) {
        free(offs);
        bn_buf_free(&g.b);
        return BN_ENOMEM;
    }
    offs[n] = g.b.len;
    c->data = g.b.data;
    c->len = g.b.len;
    c->offs = offs;
    c->n = n;
    return 0;
}

void bn_corpus_free(bn_corpus *c)
{
    free(c->data);
    free(c->offs);
    memset(c, 0, sizeof(*c));
}
