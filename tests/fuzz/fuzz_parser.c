/* libFuzzer target for the stream parser.
 *
 * The first bytes choose the parser's options, its limits and a seed for the read sizes; the rest
 * is the stream. Reads of random size are fed; a pause is requested on some stanzas and followed
 * by a reset, as the proxy does at STARTTLS and SASL success. After an error the parser is reset
 * and fed the rest. Nothing may crash, leak, or report a span outside the input. */
#include <stddef.h>
#include <stdint.h>
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    unsigned opts = data[0] & (XS_PARSER_TREE | XS_PARSER_RAW | XS_PARSER_AUTO_RESTART);
    xs_parser_limits lim = {.max_stanza = 64 + (size_t)data[1] * 64, .max_depth = 1 + data[2] % 80};
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
    return 0;
}
