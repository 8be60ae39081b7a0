/* One capped growable byte buffer for the whole program, with a sticky error.
 *
 * The idea is curl's dynbuf: every buffer has a hard cap set when it is made, appends never
 * report their own failure to the caller one by one, and the first failure (out of memory, or
 * the cap passed) sticks: later appends do nothing and the caller asks once, at the end, with
 * xs_buf_error(). The content is always NUL-terminated (the NUL is not counted in len), so a
 * buffer of text can be handed out as a C string. Growth doubles, so appending n bytes one piece
 * at a time costs O(n) copying and O(log n) allocations.
 *
 * A buffer is a plain struct the owner embeds; it owns `p` until xs_buf_take() hands it over. */
#ifndef XS_INSPECT_BUF_H
#define XS_INSPECT_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct xs_buf {
    char *p;    /* the content, NUL-terminated once anything was reserved; NULL before */
    size_t len; /* bytes of content, without the NUL */
    size_t cap; /* bytes allocated at p */
    size_t max; /* len may not pass it; 0 means no cap (only for buffers whose callers bound it) */
    int err;    /* the first failure (XS_ENOMEM, XS_ETOOBIG, XS_EINVAL); later appends do nothing */
} xs_buf;

/* Empties *b with the cap `max` (0: none). Allocates nothing. */
void xs_buf_init(xs_buf *b, size_t max);

/* Makes room for n more bytes of content (and the NUL). Returns 0, or the sticky error: the
 * error already set, XS_ETOOBIG when len + n would pass max, XS_ENOMEM. */
int xs_buf_reserve(xs_buf *b, size_t n);

/* Counts n bytes written at p + len after a successful xs_buf_reserve(b, n) and NUL-terminates. */
void xs_buf_commit(xs_buf *b, size_t n);

/* Appends n bytes (s may be NULL when n is 0). Returns 0 or the sticky error. */
int xs_buf_add_slow(xs_buf *b, const void *s, size_t n);
static inline int xs_buf_add(xs_buf *b, const void *s, size_t n)
{
    /* The common case, room already there, costs one test and one copy. */
    if (b->err == 0 && n < b->cap - b->len && (b->max == 0 || n <= b->max - b->len)) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
        return 0;
    }
    return xs_buf_add_slow(b, s, n);
}

/* Appends a NUL-terminated string. */
int xs_buf_adds(xs_buf *b, const char *s);

/* Appends printf-style formatted text, whole or not at all. A formatting failure sets
 * XS_EINVAL. */
int xs_buf_addf(xs_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Where escaped text goes: character data, or an attribute value between single or double
 * quotes. */
typedef enum xs_xml_esc {
    XS_XML_TEXT, /* & < > escaped, and CR (which a parser would turn into LF) */
    XS_XML_ATTR, /* also both quotes, and TAB, LF and CR, which attribute-value normalization
                  * would turn into spaces: the value reads back exactly as given */
} xs_xml_esc;

/* Appends n bytes of s escaped for XML (the one XML escaper of the program). Bytes are copied as
 * they are otherwise: the caller gives text that is valid in XML. */
int xs_buf_add_xml_escaped(xs_buf *b, const char *s, size_t n, xs_xml_esc mode);

/* Cuts the content back to len bytes (len <= b->len) and forgets the error: for a caller that
 * undoes a piece it could not finish. */
void xs_buf_truncate(xs_buf *b, size_t len);

/* Empties the content and forgets the error, keeping the storage for reuse. */
void xs_buf_reset(xs_buf *b);

/* Frees the storage and empties *b; the cap stays. Safe on an empty buffer. */
void xs_buf_free(xs_buf *b);

/* Hands the NUL-terminated content over to the caller, who frees it with free(), and empties
 * *b (the cap stays). Returns NULL when an append failed (b->err still says why; the content is
 * freed) or out of memory. *len (when len is not NULL) gets the length without the NUL. */
char *xs_buf_take(xs_buf *b, size_t *len);

static inline const char *xs_buf_ptr(const xs_buf *b)
{
    return b->p != NULL ? b->p : "";
}

static inline size_t xs_buf_len(const xs_buf *b)
{
    return b->len;
}

static inline int xs_buf_error(const xs_buf *b)
{
    return b->err;
}

#endif
