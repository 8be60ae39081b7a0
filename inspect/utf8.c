/* UTF-8 decoding. See utf8.h. */
#include "inspect/utf8.h"

size_t xs_utf8_next(const unsigned char *s, size_t len, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t v, min;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        v = c & 0x1fu;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        v = c & 0x0fu;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        v = c & 0x07u;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3fu);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

/* Code points no output shows as they are, in any format: those a terminal would act on (C0,
 * DEL, C1: U+009B is the 8-bit CSI), those that break a line (U+2028, U+2029), the bidirectional
 * controls that reorder what follows (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) and
 * the invisible ones that hide or join text (U+200B-U+200D, U+2060-U+2064, U+FEFF). */

int xs_term_unsafe_cp(uint32_t cp)
{
    if (cp < 0x80)
        return cp < 0x20 || cp == 0x7f;
    return cp <= 0x9f || cp == 0x061c || (cp >= 0x200b && cp <= 0x200f) ||
           (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x2064) ||
           (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff;
}
