/* Annotations of an event. See annot.h. */
#include "inspect/annot.h"

#include <stdarg.h>
#include <stdio.h>

/* Cuts the text of buf (cap bytes, vsnprintf() said it wanted n) on a character boundary: a
 * sequence that vsnprintf() split is dropped whole. Returns the length kept. */
static size_t cut_utf8(char *buf, size_t cap, int n)
{
    if (n < 0) {
        buf[0] = '\0';
        return 0;
    }
    if ((size_t)n < cap)
        return (size_t)n;
    size_t end = cap - 1, k = end;
    while (k > 0 && ((unsigned char)buf[k - 1] & 0xC0) == 0x80)
        k--;
    if (k > 0 && (unsigned char)buf[k - 1] >= 0xC0) {
        unsigned char lead = (unsigned char)buf[k - 1];
        size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
        if (end - (k - 1) < want) {
            buf[k - 1] = '\0';
            return k - 1;
        }
    }
    return end;
}

xs_check_hit *xs_annot_check(xs_annot *a, const char *id, const char *ref, const char *fmt, ...)
{
    if (a->n_checks == XS_ANNOT_MAX_CHECKS) {
        a->more_checks++;
        return NULL;
    }
    xs_check_hit *h = &a->checks[a->n_checks++];
    h->id = id;
    h->ref = ref;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(h->text, sizeof(h->text), fmt, ap);
    va_end(ap);
    (void)cut_utf8(h->text, sizeof(h->text), n);
    return h;
}

void xs_annot_explain(xs_annot *a, const char *fmt, ...)
{
    size_t at = a->explain_len;
    if (at > 0) {
        if (at + 2 >= sizeof(a->explain))
            return;
        a->explain[at++] = '\n';
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(a->explain + at, sizeof(a->explain) - at, fmt, ap);
    va_end(ap);
    a->explain_len = at + cut_utf8(a->explain + at, sizeof(a->explain) - at, n);
    if (a->explain_len == at && at > 0) /* nothing fitted: no dangling newline */
        a->explain[--a->explain_len] = '\0';
}
