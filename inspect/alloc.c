/* The allocator hook: see alloc.h. */
#include "inspect/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static xs_allocator current = {malloc, realloc, free};

void xs_alloc_set(const xs_allocator *a)
{
    if (a != NULL)
        current = *a;
    else
        current = (xs_allocator){malloc, realloc, free};
}

void *xs_malloc(size_t n)
{
    /* malloc(0) may return NULL, which callers would take for a failure. */
    return current.malloc(n != 0 ? n : 1);
}

void *xs_calloc(size_t n, size_t size)
{
    void *p;

    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    p = xs_malloc(n * size);
    if (p != NULL)
        memset(p, 0, n * size);
    return p;
}

void *xs_realloc(void *p, size_t n)
{
    return current.realloc(p, n != 0 ? n : 1);
}

char *xs_strdup(const char *s)
{
    return xs_strndup(s, strlen(s));
}

char *xs_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = xs_malloc(len + 1);

    if (d != NULL) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

void xs_free(void *p)
{
    current.free(p);
}
