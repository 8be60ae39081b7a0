/* The SOCKS5 server dialogue (RFC 1928, RFC 1929). See socks.h. */
#include "proxy/socks.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define VER 5
#define AUTH_VER 1
#define M_NONE 0x00
#define M_USERPASS 0x02
#define M_REFUSED 0xFF

void xs_socks_init(xs_socks *s, const char *user, const char *pass)
{
    memset(s, 0, sizeof(*s));
    s->state = XS_SOCKS_GREETING;
    s->user = user;
    s->pass = pass;
}

static int fail(xs_socks *s, char *why, size_t cap, const char *text)
{
    s->state = XS_SOCKS_FAILED;
    snprintf(why, cap, "%s", text);
    return 1;
}

/* Equal strings, in a time that does not depend on where they differ. */
static bool same_secret(const uint8_t *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    unsigned diff = (unsigned)(alen ^ blen);
    for (size_t i = 0; i < alen; i++)
        diff |= (unsigned)(a[i] ^ (uint8_t)(i < blen ? b[i] : 0));
    return diff == 0;
}

/* VER NMETHODS METHODS... -> VER METHOD */
static int greeting(xs_socks *s, const uint8_t *in, size_t len, size_t *used, size_t *want,
                    uint8_t *reply, size_t *rlen, char *why, size_t cap)
{
    if (len < 2) {
        *want = 2 - len;
        return 0;
    }
    if (in[0] != VER)
        return fail(s, why, cap,
                    in[0] == 4 ? "SOCKS4 is not supported: use SOCKS5"
                               : "not a SOCKS5 greeting (version byte)");
    size_t n = in[1];
    if (len < 2 + n) {
        *want = 2 + n - len;
        return 0;
    }
    bool none = memchr(in + 2, M_NONE, n) != NULL, up = memchr(in + 2, M_USERPASS, n) != NULL;
    *used = 2 + n;
    reply[0] = VER;
    *rlen = 2;
    /* With credentials set, only RFC 1929 will do; without, no authentication, or RFC 1929
     * with any name (the client was configured with one). */
    if (s->user != NULL ? up : (none || up)) {
        reply[1] = s->user == NULL && none ? M_NONE : M_USERPASS;
        s->state = reply[1] == M_NONE ? XS_SOCKS_REQUEST : XS_SOCKS_AUTH;
        return 1;
    }
    reply[1] = M_REFUSED;
    return fail(s, why, cap,
                s->user != NULL ? "the client offered no username/password authentication, "
                                  "which --socks-auth requires"
                                : "the client offered neither no authentication nor "
                                  "username/password");
}

/* VER ULEN UNAME PLEN PASSWD -> VER STATUS (RFC 1929) */
static int auth(xs_socks *s, const uint8_t *in, size_t len, size_t *used, size_t *want,
                uint8_t *reply, size_t *rlen, char *why, size_t cap)
{
    if (len < 2) {
        *want = 2 - len;
        return 0;
    }
    if (in[0] != AUTH_VER)
        return fail(s, why, cap, "not a username/password request (RFC 1929 version byte)");
    size_t ulen = in[1];
    if (len < 2 + ulen + 1) {
        *want = 2 + ulen + 1 - len;
        return 0;
    }
    size_t plen = in[2 + ulen];
    if (len < 3 + ulen + plen) {
        *want = 3 + ulen + plen - len;
        return 0;
    }
    *used = 3 + ulen + plen;
    const uint8_t *user = in + 2, *pass = in + 3 + ulen;
    memcpy(s->login, user, ulen);
    s->login[ulen] = 0;
    s->used_auth = true;
    /* Both compared whatever the first gave, so the time does not tell which was wrong. */
    bool user_ok = s->user == NULL || same_secret(user, ulen, s->user);
    bool pass_ok = s->user == NULL || same_secret(pass, plen, s->pass);
    bool ok = user_ok && pass_ok;
    reply[0] = AUTH_VER;
    reply[1] = ok ? 0 : 1;
    *rlen = 2;
    if (!ok)
        return fail(s, why, cap, "wrong SOCKS user name or password");
    s->state = XS_SOCKS_REQUEST;
    return 1;
}

/* VER CMD RSV ATYP DST.ADDR DST.PORT */
static int request(xs_socks *s, const uint8_t *in, size_t len, size_t *used, size_t *want,
                   uint8_t *reply, size_t *rlen, char *why, size_t cap)
{
    if (len < 5) {
        *want = 5 - len;
        return 0;
    }
    if (in[0] != VER || in[2] != 0)
        return fail(s, why, cap, "not a SOCKS5 request (version or reserved byte)");
    size_t alen = in[3] == 1 ? 4 : in[3] == 4 ? 16 : in[3] == 3 ? 1u + in[4] : 0;
    if (alen == 0) {
        *rlen = xs_socks_reply(reply, XS_SOCKS_ATYP_UNSUPPORTED, NULL);
        return fail(s, why, cap, "an unknown address type in the SOCKS request");
    }
    if (len < 4 + alen + 2) {
        *want = 4 + alen + 2 - len;
        return 0;
    }
    *used = 4 + alen + 2;
    if (in[1] != 1) {
        *rlen = xs_socks_reply(reply, XS_SOCKS_CMD_UNSUPPORTED, NULL);
        return fail(s, why, cap, "only CONNECT is supported (not BIND or UDP ASSOCIATE)");
    }
    const uint8_t *a = in + 4;
    s->host_is_name = in[3] == 3;
    if (in[3] == 1) {
        inet_ntop(AF_INET, a, s->host, sizeof(s->host));
    } else if (in[3] == 4) {
        inet_ntop(AF_INET6, a, s->host, sizeof(s->host));
    } else {
        size_t n = a[0];
        if (n == 0 || memchr(a + 1, 0, n) != NULL) {
            *rlen = xs_socks_reply(reply, XS_SOCKS_HOST_UNREACHABLE, NULL);
            return fail(s, why, cap, "an empty domain name, or one with a NUL byte");
        }
        memcpy(s->host, a + 1, n);
        s->host[n] = 0;
    }
    s->port = (uint16_t)((in[4 + alen] << 8) | in[5 + alen]);
    if (s->port == 0) {
        *rlen = xs_socks_reply(reply, XS_SOCKS_HOST_UNREACHABLE, NULL);
        return fail(s, why, cap, "port 0 in the SOCKS request");
    }
    s->state = XS_SOCKS_CONNECT;
    return 1;
}

int xs_socks_feed(xs_socks *s, const uint8_t *in, size_t len, size_t *used, size_t *want,
                  uint8_t *reply, size_t *rlen, char *why, size_t cap)
{
    *used = 0;
    *want = 0;
    *rlen = 0;
    switch (s->state) {
    case XS_SOCKS_GREETING:
        return greeting(s, in, len, used, want, reply, rlen, why, cap);
    case XS_SOCKS_AUTH:
        return auth(s, in, len, used, want, reply, rlen, why, cap);
    case XS_SOCKS_REQUEST:
        return request(s, in, len, used, want, reply, rlen, why, cap);
    default:
        return fail(s, why, cap, "bytes after the SOCKS request before its reply");
    }
}

size_t xs_socks_reply(uint8_t *out, int rep, const struct sockaddr_storage *bound)
{
    out[0] = VER;
    out[1] = (uint8_t)rep;
    out[2] = 0;
    if (bound != NULL && bound->ss_family == AF_INET6) {
        const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)bound;
        out[3] = 4;
        memcpy(out + 4, &b->sin6_addr, 16);
        memcpy(out + 20, &b->sin6_port, 2);
        return 22;
    }
    out[3] = 1;
    if (bound != NULL && bound->ss_family == AF_INET) {
        const struct sockaddr_in *b = (const struct sockaddr_in *)bound;
        memcpy(out + 4, &b->sin_addr, 4);
        memcpy(out + 8, &b->sin_port, 2);
    } else {
        memset(out + 4, 0, 6);
    }
    return 10;
}
