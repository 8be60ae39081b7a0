/* The benchmark's stream framer. See bench_xml.h. */
#include "bench_xml.h"

#include <string.h>

enum {
    S_TEXT,   /* between tags: skip to the next '<' */
    S_LT,     /* just after '<' */
    S_START,  /* inside a start tag */
    S_END,    /* inside an end tag */
    S_PI,     /* inside <? ... ?> */
    S_BROKEN, /* after an error: nothing more is accepted */
};

void bx_reset(bx *s)
{
    memset(s, 0, sizeof(*s));
    s->state = S_TEXT;
}

size_t bx_scan(bx *s, const char *data, size_t len, bx_event *ev)
{
    size_t i = 0;
    ev->kind = BX_NONE;
    while (i < len) {
        switch (s->state) {
        case S_TEXT: {
            const char *lt = memchr(data + i, '<', len - i);
            if (lt == NULL) {
                i = len;
                break;
            }
            i = (size_t)(lt - data);
            s->tag_start = s->pos + i;
            s->state = S_LT;
            i++;
            break;
        }
        case S_LT: {
            char c = data[i++];
            if (c == '/') {
                s->state = S_END;
            } else if (c == '?' && s->depth == 0) {
                s->state = S_PI;
                s->last = 0;
            } else if (c == '!' || c == '<' || c == '>') {
                s->state = S_BROKEN;
                ev->kind = BX_ERROR;
                ev->start = ev->end = s->tag_start;
                s->pos += i;
                return i;
            } else {
                s->state = S_START;
                s->last = c;
                if (s->depth == 1)
                    s->el_start = s->tag_start;
            }
            break;
        }
        case S_START: {
            /* The benchmark's traffic never has '>' inside an attribute value (the corpus,
             * the server and the proxy's own elements escape it), so the tag ends at the next
             * '>'; what matters is whether a '/' comes just before it. */
            const char *gt = memchr(data + i, '>', len - i);
            if (gt == NULL) {
                s->last = data[len - 1];
                i = len;
                break;
            }
            size_t at = (size_t)(gt - data);
            if (at > i)
                s->last = data[at - 1];
            i = at + 1; /* past the '>' */
            s->state = S_TEXT;
            int empty = s->last == '/';
            if (s->depth == 0) {
                if (empty) {
                    s->state = S_BROKEN;
                    ev->kind = BX_ERROR;
                    ev->start = ev->end = s->tag_start;
                } else {
                    s->depth = 1;
                    ev->kind = BX_OPEN;
                    ev->start = s->tag_start;
                    ev->end = s->pos + i;
                }
                s->pos += i;
                return i;
            }
            if (!empty) {
                s->depth++;
            } else if (s->depth == 1) {
                ev->kind = BX_ELEMENT;
                ev->start = s->el_start;
                ev->end = s->pos + i;
                s->pos += i;
                return i;
            }
            break;
        }
        case S_END: {
            const char *gt = memchr(data + i, '>', len - i);
            if (gt == NULL) {
                i = len;
                break;
            }
            i = (size_t)(gt - data) + 1;
            s->state = S_TEXT;
            if (s->depth == 0) {
                s->state = S_BROKEN;
                ev->kind = BX_ERROR;
                ev->start = ev->end = s->tag_start;
            } else if (--s->depth == 1) {
                ev->kind = BX_ELEMENT;
                ev->start = s->el_start;
                ev->end = s->pos + i;
            } else if (s->depth == 0) {
                ev->kind = BX_CLOSE;
                ev->start = s->tag_start;
                ev->end = s->pos + i;
            } else {
                break;
            }
            s->pos += i;
            return i;
        }
        case S_PI:
            for (; i < len; i++) {
                if (data[i] == '>' && s->last == '?')
                    break;
                s->last = data[i];
            }
            if (i < len) {
                i++;
                s->state = S_TEXT;
            }
            break;
        default:
            ev->kind = BX_ERROR;
            ev->start = ev->end = s->pos;
            return 0;
        }
    }
    s->pos += i;
    return i;
}

uint64_t bx_complete_end(const bx *s)
{
    if (s->depth >= 2)
        return s->el_start;
    if (s->state != S_TEXT)
        return s->tag_start;
    return s->pos;
}
