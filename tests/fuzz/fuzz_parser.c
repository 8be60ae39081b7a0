/* libFuzzer target for the stream parser.
 *
 * The first bytes choose the parser's options, its limits and a seed for the read sizes; the rest
 * is the stream. Reads of random size are fed; a pause is requested on some stanzas and followed
 * by a reset, as the proxy does at STARTTLS and SASL success. After an error the parser is reset
 * and fed the rest. Nothing may crash, leak, or report a span outside the input.
 *
 * Then a differential run, with or without trees: the same stream through a parser on the
 * fast path (the check and tree builder of inspect/wf.c first) and one giving every stanza to
 * libxml2 (XS_PARSER_LIBXML2_ONLY) must give the same events: kinds, spans, names, namespaces,
 * attributes, serialized trees, and the same error at the same position. A stanza the fast
 * check accepts and libxml2 refuses, or a tree built differently, traps. */
#include <stddef.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inspect/error.h"
#include "inspect/parser.h"

typedef struct fz {
    size_t total;
    uint32_t seed;
    unsigned pauses;
} fz;

static uint32_t step(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static int on_event(void *user, const xs_event *ev)
{
    fz *f = user;
    if (ev->kind != XS_EV_ERROR && ev->offset + ev->len > f->total)
        __builtin_trap();
    if (ev->raw != NULL && ev->len > 0) {
        /* Touch the span so ASan checks it is readable. */
        volatile char sink = ev->raw[0] ^ ev->raw[ev->len - 1];
        (void)sink;
    }
    if (ev->kind == XS_EV_STANZA && ev->node != NULL) {
        xmlDoc *d = xs_stanza_copy(ev->node);
        if (d != NULL)
            xmlFreeDoc(d);
    }
    if (ev->kind == XS_EV_STANZA && (step(&f->seed) & 7) == 0) {
        f->pauses++;
        return XS_PARSER_PAUSE;
    }
    return 0;
}

/* The differential run: each parser's events as text. */
typedef struct dlog {
    char buf[8192];
    size_t len;
    int truncated;
} dlog;

static void dlog_add(dlog *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void dlog_add(dlog *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(d->buf + d->len, sizeof(d->buf) - d->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(d->buf) - d->len)
        d->truncated = 1;
    else
        d->len += (size_t)n;
}

static int on_diff_event(void *user, const xs_event *ev)
{
    dlog *d = user;
    if (ev->kind == XS_EV_KEEPALIVE)
        return 0; /* cut differently by reads */
    dlog_add(d, "%d %llu+%zu %s|%s|%s", (int)ev->kind, (unsigned long long)ev->offset, ev->len,
             ev->name ? ev->name : "-", ev->prefix ? ev->prefix : "-", ev->ns ? ev->ns : "-");
    if (ev->kind == XS_EV_ERROR)
        dlog_add(d, " %d %d %u:%u", ev->error, (int)ev->error_kind, ev->line, ev->column);
    if (ev->kind == XS_EV_STANZA && ev->node != NULL) {
        /* The tree, as serialized: wf.c's builder and libxml2's SAX2 must agree. */
        xmlDoc *copy = xs_stanza_copy(ev->node);
        xmlChar *out = NULL;
        int n = 0;
        if (copy != NULL)
            xmlDocDumpMemory(copy, &out, &n);
        dlog_add(d, " tree=%.*s", n, out ? (const char *)out : "");
        xmlFree(out);
        xmlFreeDoc(copy);
    }
    if (ev->kind == XS_EV_STANZA)
        for (size_t i = 0; i < ev->n_attrs; i++)
            dlog_add(d, " %s|%s|%s=%s", ev->attrs[i].prefix ? ev->attrs[i].prefix : "-",
                     ev->attrs[i].uri ? ev->attrs[i].uri : "-", ev->attrs[i].name,
                     ev->attrs[i].value);
    dlog_add(d, "\n");
    return 0;
}

static void differential(const uint8_t *data, size_t size, uint32_t seed)
{
    static dlog a, b;
    xs_parser *pa = NULL, *pb = NULL;
    unsigned opts = XS_PARSER_RAW | XS_PARSER_AUTO_RESTART | ((seed & 1) ? XS_PARSER_TREE : 0);
    a.len = b.len = 0;
    a.truncated = b.truncated = 0;
    if (xs_parser_new(NULL, opts, on_diff_event, &a, &pa) != 0)
        return;
    if (xs_parser_new(NULL, opts | XS_PARSER_LIBXML2_ONLY, on_diff_event, &b, &pb) != 0) {
        xs_parser_free(pa);
        return;
    }
    /* The same reads for both: only the fast path differs. */
    int ra = 0, rb = 0;
    size_t at = 0;
    while (at < size && (ra == 0 || rb == 0)) {
        size_t n = 1 + step(&seed) % 97;
        if (n > size - at)
            n = size - at;
        if (ra == 0)
            ra = xs_parser_feed(pa, (const char *)data + at, n, NULL);
        if (rb == 0)
            rb = xs_parser_feed(pb, (const char *)data + at, n, NULL);
        at += n;
    }
    bool same = ra == rb && a.truncated == b.truncated && a.len == b.len &&
                memcmp(a.buf, b.buf, a.len) == 0;
    if (!same) {
        fprintf(stderr, "fast path and libxml2 differ (%d, %d)\n--- fast\n%.*s--- libxml2\n%.*s",
                ra, rb, (int)a.len, a.buf, (int)b.len, b.buf);
        __builtin_trap();
    }
    xs_parser_free(pa);
    xs_parser_free(pb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    unsigned opts = data[0] & (XS_PARSER_TREE | XS_PARSER_RAW | XS_PARSER_AUTO_RESTART);
    /* A third of the inputs get a small attribute cap (1 to 8), the rest the default. */
    xs_parser_limits lim = {.max_stanza = 64 + (size_t)data[1] * 64,
                            .max_depth = 1 + data[2] % 80,
                            .max_attrs = data[3] % 3 == 0 ? 1 + data[3] / 3 % 8 : 0};
    fz f = {.total = size - 4, .seed = data[3]};
    data += 4;
    size -= 4;

    xs_parser *p = NULL;
    if (xs_parser_new(&lim, opts, on_event, &f, &p) != 0)
        return 0;
    size_t at = 0;
    while (at < size) {
        size_t n = 1 + step(&f.seed) % 64;
        if (n > size - at)
            n = size - at;
        size_t used = 0;
        int rc = xs_parser_feed(p, (const char *)data + at, n, &used);
        if (used > n)
            __builtin_trap();
        /* After an error the rest of the read is dropped (a proxy closes the stream); after a
         * pause a new stream starts at the exact byte, as at STARTTLS. */
        at += rc < 0 ? n : used;
        if (rc < 0 || used < n) {
            if (xs_parser_reset(p) != 0)
                break;
        } else if ((step(&f.seed) & 3) == 0) {
            (void)xs_parser_trim(p); /* as the proxy does for a quiet direction */
        }
    }
    xs_parser_free(p);
    differential(data, size, f.seed);
    return 0;
}
