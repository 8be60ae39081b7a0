/* A minimal XMPP stream framer for the benchmark's server and load generator.
 *
 * It finds the stream header, each top-level element (stanza) and the stream's end tag by
 * tracking tag nesting, without parsing names, attributes or text: fast enough that the peers of
 * the proxy are never the bottleneck. It knows the shape of the traffic the benchmark makes
 * (tags, attribute values without '>', text, an XML declaration) and rejects comments, CDATA
 * and DTDs. It works on bytes only, across any split of the input. The real parsing is the
 * proxy's.
 */
#ifndef XS_BENCH_BENCH_XML_H
#define XS_BENCH_BENCH_XML_H

#include <stddef.h>
#include <stdint.h>

typedef enum bx_kind {
    BX_NONE,    /* the input ran out before the next event */
    BX_OPEN,    /* the stream header's start tag ended at `end` */
    BX_ELEMENT, /* a top-level element spans [start, end) */
    BX_CLOSE,   /* the stream's end tag spans [start, end) */
    BX_ERROR,   /* input the framer does not accept at `start` */
} bx_kind;

typedef struct bx_event {
    bx_kind kind;
    uint64_t start, end; /* offsets in the stream since the last bx_reset() */
} bx_event;

/* The framer's state; the owner embeds it. Zero it with bx_reset() at each stream start. */
typedef struct bx {
    uint64_t pos;       /* stream offset of the next byte to scan */
    uint64_t tag_start; /* offset of the '<' of the tag being read */
    uint64_t el_start;  /* offset of the '<' of the current top-level element */
    unsigned depth;
    int state;
    char last; /* the last byte of the tag so far, to see "/>" and "?>" */
} bx;

void bx_reset(bx *s);

/* Scans `len` bytes of the stream which begin at offset s->pos (the caller passes the bytes
 * from there on) and stops after the first event. Returns how many bytes it scanned; s->pos
 * advances by that much. With ev->kind == BX_NONE all of them were scanned. */
size_t bx_scan(bx *s, const char *data, size_t len, bx_event *ev);

/* The stream offset up to which every byte is a complete top-level element or text between
 * them: the start of the element or tag still being read, else s->pos. */
uint64_t bx_complete_end(const bx *s);

#endif
