/* UTF-8 decoding, shared by the masking and the printers. */
#ifndef XS_INSPECT_UTF8_H
#define XS_INSPECT_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decodes one UTF-8 character at s (len > 0 bytes available). Returns its length (1 to 4) and
 * sets *cp, or 0 when s does not start a valid, shortest-form sequence of a Unicode scalar value
 * (no surrogates, nothing above U+10FFFF). Shared with the printers, which must hand jansson
 * valid UTF-8 and must not pass terminal controls through. */
size_t xs_utf8_next(const unsigned char *s, size_t len, uint32_t *cp);

#endif
