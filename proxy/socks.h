/* SOCKS5 (RFC 1928) with no authentication or username/password (RFC 1929), CONNECT only: the
 * server side of the dialogue, as a pure state machine on bytes (no socket), so that it is
 * tested with plain buffers.
 *
 * The caller reads the client's bytes into one buffer, never more than xs_socks_feed() says it
 * may (`want`), so that nothing after the request is read here; it writes the replies the
 * machine produces. Once the request is read (XS_SOCKS_CONNECT), the caller connects to the
 * destination and answers with xs_socks_reply(). */
#ifndef XS_PROXY_SOCKS_H
#define XS_PROXY_SOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#define XS_SOCKS_MSG_MAX 513  /* the longest message: RFC 1929's, 1 + 1 + 255 + 1 + 255 */
#define XS_SOCKS_REPLY_MAX 22 /* a reply with an IPv6 address */

typedef enum xs_socks_state {
    XS_SOCKS_GREETING, /* the client's version and methods */
    XS_SOCKS_AUTH,     /* RFC 1929 username and password */
    XS_SOCKS_REQUEST,  /* the request */
    XS_SOCKS_CONNECT,  /* the request is read: the caller connects, then xs_socks_reply() */
    XS_SOCKS_FAILED,   /* refused: write the reply produced, if any, then close */
} xs_socks_state;

/* The reply codes of RFC 1928 section 6 that we send. */
enum {
    XS_SOCKS_OK = 0,
    XS_SOCKS_FAILURE = 1,
    XS_SOCKS_NOT_ALLOWED = 2,
    XS_SOCKS_HOST_UNREACHABLE = 4,
    XS_SOCKS_REFUSED = 5,
    XS_SOCKS_CMD_UNSUPPORTED = 7,
    XS_SOCKS_ATYP_UNSUPPORTED = 8,
};

typedef struct xs_socks {
    xs_socks_state state;
    const char *user, *pass; /* required credentials (--socks-auth); NULL: none required */
    bool used_auth;          /* the client logged in with RFC 1929 */
    char login[256];         /* the user name it gave, if any */
    char host[256];          /* the destination: a domain name or an IP address in text */
    bool host_is_name;
    uint16_t port;
} xs_socks;

/* Starts the dialogue. `user` and `pass` (both or neither) are borrowed. */
void xs_socks_init(xs_socks *s, const char *user, const char *pass);

/* Reads the message at the start of in[0..len) for the current state.
 * Returns 1 when it was whole: *used bytes consumed, the state moved on, and `reply`
 *   (XS_SOCKS_REPLY_MAX bytes at least) holds *rlen bytes for the client (maybe 0);
 *   in XS_SOCKS_FAILED, `why` says what was wrong;
 * 0 when more is needed: at most *want more bytes may be read (never past this message). */
int xs_socks_feed(xs_socks *s, const uint8_t *in, size_t len, size_t *used, size_t *want,
                  uint8_t *reply, size_t *rlen, char *why, size_t cap);

/* The reply to a request: `rep` (XS_SOCKS_OK or an error) and the address the connection is
 * bound to (`bound` NULL: 0.0.0.0:0). Returns its length in out (XS_SOCKS_REPLY_MAX bytes). */
size_t xs_socks_reply(uint8_t *out, int rep, const struct sockaddr_storage *bound);

#endif
