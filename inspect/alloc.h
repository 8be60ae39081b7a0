/* The allocator hook.
 *
 * Every allocation of the parser and the rules goes through these functions, which call libc's
 * unless a test installed others with xs_alloc_set(). The tests use it to fail the Nth
 * allocation for every N (tests/unit/failalloc.h, which also routes libxml2's and OpenSSL's
 * allocations through the same counter) and check that each failure ends in XS_ENOMEM, without a
 * crash or a leak. Memory from xs_malloc() and its kin is given back with xs_free(); since the
 * hook only wraps libc, free() on it is not wrong, but xs_free() keeps the pairs readable. */
#ifndef XS_INSPECT_ALLOC_H
#define XS_INSPECT_ALLOC_H

#include <stddef.h>

typedef struct xs_allocator {
    void *(*malloc)(size_t n);
    void *(*realloc)(void *p, size_t n);
    void (*free)(void *p);
} xs_allocator;

/* Installs `a` (copied), or libc's allocator again when `a` is NULL. Not thread-safe: call it
 * before any other thread allocates. */
void xs_alloc_set(const xs_allocator *a);

void *xs_malloc(size_t n);
/* Zeroed; NULL when n * size overflows. */
void *xs_calloc(size_t n, size_t size);
void *xs_realloc(void *p, size_t n);
char *xs_strdup(const char *s);
char *xs_strndup(const char *s, size_t n);
void xs_free(void *p);

#endif
