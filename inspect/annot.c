/* Annotations of an event. See annot.h. */
#include "inspect/annot.h"

#include <stdarg.h>
#include <stdio.h>

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
    if (n < 0) {
        h->text[0] = '\0';
    } else if ((size_t)n >= sizeof(h->text)) {
        /* Cut on a character boundary: a sequence that vsnprintf() split is dropped whole. */
        size_t end = sizeof(h->text) - 1, k = end;
        while (k > 0 && ((unsigned char)h->text[k - 1] & 0xC0) == 0x80)
            k--;
        if (k > 0 && (unsigned char)h->text[k - 1] >= 0xC0) {
            unsigned char lead = (unsigned char)h->text[k - 1];
            size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
            if (end - (k - 1) < want)
                h->text[k - 1] = '\0';
        }
    }
    return h;
}
