/* For the fuzz targets that feed a stanza inside a stream: the document
 * header + before + data + after, in one allocation. */
#ifndef XS_FUZZ_DOC_H
#define XS_FUZZ_DOC_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Returns the document (free() it) and its length in *n, or NULL when out of memory. */
static inline char *fuzz_doc(const char *header, const char *before, const uint8_t *data,
                             size_t size, const char *after, size_t *n)
{
    size_t lh = strlen(header), lb = strlen(before), la = strlen(after);
    *n = lh + lb + size + la;
    char *doc = malloc(*n > 0 ? *n : 1);
    if (doc == NULL)
        return NULL;
    memcpy(doc, header, lh);
    memcpy(doc + lh, before, lb);
    if (size > 0)
        memcpy(doc + lh + lb, data, size);
    memcpy(doc + lh + lb + size, after, la);
    return doc;
}

#endif
