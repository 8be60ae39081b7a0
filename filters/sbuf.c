/* A string buffer with a hard cap, for the rule engine. See rules_impl.h. */
#include "filters/rules_impl.h"

#include "inspect/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void xs_sbuf_init(xs_sbuf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

static int reserve(xs_sbuf *b, size_t n)
{
    if (b->err != 0)
        return b->err;
    if (b->max != 0 && (n > b->max || b->len > b->max - n)) {
        b->err = XS_ETOOBIG;
        return b->err;
    }
    if (b->len + n + 1 <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < b->len + n + 1)
        ncap *= 2;
    char *s = realloc(b->s, ncap);
    if (s == NULL) {
        b->err = XS_ENOMEM;
        return b->err;
    }
    b->s = s;
    b->cap = ncap;
    return 0;
}

void xs_sbuf_add(xs_sbuf *b, const char *s, size_t n)
{
    if (reserve(b, n) != 0)
        return;
    if (n > 0)
        memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void xs_sbuf_adds(xs_sbuf *b, const char *s)
{
    xs_sbuf_add(b, s, strlen(s));
}

void xs_sbuf_addf(xs_sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        if (b->err == 0)
            b->err = XS_EINVAL;
        return;
    }
    if (reserve(b, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *xs_sbuf_take(xs_sbuf *b, size_t *len)
{
    /* An empty buffer gets its storage and terminating NUL here. */
    if (reserve(b, 0) == 0)
        b->s[b->len] = 0;
    if (b->err != 0) {
        free(b->s);
        b->s = NULL;
        b->len = b->cap = 0;
        return NULL;
    }
    char *s = b->s;
    if (len != NULL)
        *len = b->len;
    b->s = NULL;
    b->len = b->cap = 0;
    return s;
}

void xs_sbuf_free(xs_sbuf *b)
{
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}
