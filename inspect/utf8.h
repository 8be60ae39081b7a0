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

/* Whether no output shows the code point as it is: C0 controls, DEL, C1 controls, U+061C,
 * U+200B-U+200F, U+2028-U+202E, U+2060-U+2064, U+2066-U+2069, U+FEFF: what a terminal would act
 * on, or what would hide or reorder text (print.h). The printers and the masking's notes escape
 * them. */
int xs_term_unsafe_cp(uint32_t cp);

#endif
