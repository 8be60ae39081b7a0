/* The capped growable buffer and the XML escaper. See buf.h. */
#include "inspect/buf.h"

#include "inspect/error.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The first allocation; small buffers stay in one. */
#define BUF_FIRST 64

void xs_buf_init(xs_buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

int xs_buf_reserve(xs_buf *b, size_t n)
{
    if (b->err != 0)
        return b->err;
    if (b->max != 0 && (n > b->max || b->len > b->max - n)) {
        b->err = XS_ETOOBIG;
        return b->err;
    }
    if (n >= SIZE_MAX / 2 - b->len) {
        b->err = XS_ETOOBIG;
        return b->err;
    }
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    size_t ncap = b->cap != 0 ? b->cap : BUF_FIRST;
    while (ncap < need)
        ncap *= 2;
    /* Never allocate much beyond what the cap lets the content reach. */
    if (b->max != 0 && ncap > b->max + 1)
        ncap = b->max + 1;
    char *p = realloc(b->p, ncap);
    if (p == NULL) {
        b->err = XS_ENOMEM;
        return b->err;
    }
    b->p = p;
    b->cap = ncap;
    return 0;
}

void xs_buf_commit(xs_buf *b, size_t n)
{
    b->len += n;
    b->p[b->len] = '\0';
}

int xs_buf_add_slow(xs_buf *b, const void *s, size_t n)
{
    if (xs_buf_reserve(b, n) != 0)
        return b->err;
    if (n > 0)
        memcpy(b->p + b->len, s, n);
    xs_buf_commit(b, n);
    return 0;
}

int xs_buf_adds(xs_buf *b, const char *s)
{
    return xs_buf_add(b, s, strlen(s));
}

int xs_buf_addf(xs_buf *b, const char *fmt, ...)
{
    va_list ap;
    if (b->err != 0)
        return b->err;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->err = XS_EINVAL;
        return b->err;
    }
    if (xs_buf_reserve(b, (size_t)n) != 0)
        return b->err;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int xs_buf_add_xml_escaped(xs_buf *b, const char *s, size_t n, xs_xml_esc mode)
{
    int attr = mode == XS_XML_ATTR;
    size_t run = 0; /* bytes before i that need no escape, copied in one piece */

    if (n == 0)
        return xs_buf_add(b, "", 0);

    for (size_t i = 0; i < n; i++) {
        const char *e;
        switch (s[i]) {
        case '&':
            e = "&amp;";
            break;
        case '<':
            e = "&lt;";
            break;
        case '>':
            e = "&gt;";
            break;
        case '\r':
            e = "&#13;";
            break;
        case '\'':
            e = attr ? "&apos;" : NULL;
            break;
        case '"':
            e = attr ? "&quot;" : NULL;
            break;
        case '\t':
            e = attr ? "&#9;" : NULL;
            break;
        case '\n':
            e = attr ? "&#10;" : NULL;
            break;
        default:
            e = NULL;
            break;
        }
        if (e == NULL)
            continue;
        xs_buf_add(b, s + run, i - run);
        xs_buf_adds(b, e);
        run = i + 1;
    }
    return xs_buf_add(b, s + run, n - run);
}

void xs_buf_truncate(xs_buf *b, size_t len)
{
    if (len > b->len)
        return;
    b->len = len;
    b->err = 0;
    if (b->p != NULL)
        b->p[len] = '\0';
}

void xs_buf_reset(xs_buf *b)
{
    xs_buf_truncate(b, 0);
}

void xs_buf_free(xs_buf *b)
{
    size_t max = b->max;
    free(b->p);
    xs_buf_init(b, max);
}

char *xs_buf_take(xs_buf *b, size_t *len)
{
    /* An empty buffer gets its storage and terminating NUL here. */
    if (xs_buf_reserve(b, 0) != 0) {
        free(b->p);
        b->p = NULL;
        b->len = b->cap = 0;
        return NULL;
    }
    b->p[b->len] = '\0';
    char *s = b->p;
    if (len != NULL)
        *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return s;
}
