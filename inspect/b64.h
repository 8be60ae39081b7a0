/* base64 (RFC 4648 section 4), as SASL payloads use it in XMPP. */
#ifndef XS_INSPECT_B64_H
#define XS_INSPECT_B64_H

#include <stddef.h>

/* Decodes base64 (RFC 4648 section 4, padding required) as used by SASL in XMPP: whitespace is
 * skipped, and a lone "=" is the empty payload (RFC 6120 section 6.4.2). Sets *out to a malloc'd
 * buffer of *out_len bytes (NUL-terminated for convenience, not counted; the payload may contain
 * NULs itself) that the caller frees. Returns 0, XS_EPARSE for invalid base64 or XS_ENOMEM. */
int xs_base64_decode(const char *in, size_t len, unsigned char **out, size_t *out_len);

/* Encodes `len` bytes as padded base64. Sets *out to a malloc'd NUL-terminated string of
 * *out_len characters that the caller frees; an empty input gives "" (not "="). Returns 0 or
 * XS_ENOMEM (XS_ETOOBIG when the result would not fit in a size_t). */
int xs_base64_encode(const void *in, size_t len, char **out, size_t *out_len);
/* Whether c is whitespace that a base64 payload may hold and decoding skips. */
int xs_base64_space(unsigned char c);

#endif
