/* The PROXY protocol header (HAProxy's spec, versions 1 and 2) that a load balancer or a TLS
 * terminator (HAProxy, nginx stream, ...) sends before the client's bytes, so that the real
 * client's address can be shown and logged.
 *
 * A pure parser on bytes, strict and bounded: version 1 is one line of at most 107 bytes,
 * version 2 a 16-byte header and at most XS_PP_V2_MAX_LEN bytes of addresses and TLVs, whose
 * structure is checked and whose content is skipped. The caller reads the socket no further
 * than the parser says (`want`), so the bytes after the header stay in the socket for the
 * session. */
#ifndef XS_PROXY_PROXYPROTO_H
#define XS_PROXY_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#define XS_PP_V1_MAX 107      /* the whole line, CRLF included (the spec's bound) */
#define XS_PP_V2_HEAD 16      /* signature, version and command, family, length */
#define XS_PP_V2_MAX_LEN 1024 /* addresses and TLVs we accept after the 16 bytes */
#define XS_PP_FIRST_READ                                                                           \
    8 /* bytes that tell version 1 from version 2 (both headers are                                \
         longer, so reading them never goes past a header) */

typedef struct xs_pp_info {
    int version; /* 1 or 2 */
    /* false: the header names no client (v1 UNKNOWN, v2 LOCAL, or a family other than TCP over
     * IPv4 or IPv6): the connection's own addresses stand. */
    bool has_addr;
    struct sockaddr_storage src, dst; /* the client, and the address it connected to */
} xs_pp_info;

/* Reads a header at the start of buf[0..len).
 * Returns 1: a whole, valid header of *used bytes, described in *info;
 *         0: a valid beginning; at most *want more bytes may be read before calling again
 *            (never past the header's end);
 *         XS_EPARSE: not a PROXY protocol header, or a malformed one; `why` (cap bytes) says
 *            what is wrong in words. */
int xs_pp_parse(const unsigned char *buf, size_t len, size_t *used, size_t *want, xs_pp_info *info,
                char *why, size_t cap);

/* "IP:PORT" or "[IP6]:PORT" of an address of a header. */
void xs_pp_addr_name(const struct sockaddr_storage *a, char *out, size_t cap);

#endif
