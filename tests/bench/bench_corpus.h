/* The stanzas the load generator sends: chat messages with bodies, presence with entity
 * capabilities, roster and disco IQs, 100 B to 4 KiB each (most small, as in real chat traffic),
 * deterministic for a given seed, back to back with no whitespace between them.
 */
#ifndef XS_BENCH_BENCH_CORPUS_H
#define XS_BENCH_BENCH_CORPUS_H

#include <stddef.h>

typedef struct bn_corpus {
    char *data;      /* every stanza, back to back */
    size_t len;      /* bytes in data; the corpus ends at a stanza boundary */
    size_t *offs;    /* offs[i] is where stanza i starts; offs[n] == len */
    size_t n;        /* stanzas */
    size_t min, max; /* the smallest and the largest stanza */
} bn_corpus;

/* Generates stanzas until at least `bytes` bytes. Returns 0 or BN_ENOMEM; the caller frees the
 * corpus with bn_corpus_free(). */
int bn_corpus_make(bn_corpus *c, size_t bytes, unsigned seed);
void bn_corpus_free(bn_corpus *c);

#endif
