/* The PROXY protocol header, versions 1 and 2. See proxyproto.h. */
#include "proxy/proxyproto.h"

#include "inspect/error.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[] = "PROXY ";

static int bad(char *why, size_t cap, const char *text)
{
    snprintf(why, cap, "%s", text);
    return XS_EPARSE;
}

void xs_pp_addr_name(const struct sockaddr_storage *a, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)a;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else if (a->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)a;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, ntohs(s4->sin_port));
    } else {
        snprintf(out, cap, "?");
    }
}

/* ---- version 1: "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n" ---- */

/* Copies the next space-separated field of line[*pos..end) into out; 0 or -1. */
static int v1_field(const char *line, size_t end, size_t *pos, char *out, size_t cap)
{
    size_t start = *pos, i = start;
    while (i < end && line[i] != ' ')
        i++;
    if (i == start || i - start >= cap)
        return -1;
    memcpy(out, line + start, i - start);
    out[i - start] = 0;
    *pos = i < end ? i + 1 : i; /* past one space */
    if (i < end && *pos == end)
        return -1; /* a space at the end of the line */
    return 0;
}

/* A port: 1 to 5 decimal digits, no leading zero, at most 65535. */
static int v1_port(const char *s, uint16_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5 || (s[0] == '0' && n > 1))
        return -1;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static int v1_addr(int family, const char *ip, const char *port, struct sockaddr_storage *out)
{
    uint16_t p;
    if (v1_port(port, &p) < 0)
        return -1;
    memset(out, 0, sizeof(*out));
    if (family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)out;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(p);
        return inet_pton(AF_INET, ip, &s4->sin_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(p);
    return inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1 ? 0 : -1;
}

/* The line line[0..end) without its CRLF. */
static int v1_line(const char *line, size_t end, xs_pp_info *info, char *why, size_t cap)
{
    char proto[8], src[48], dst[48], sport[8], dport[8];
    size_t pos = sizeof(v1_sig) - 1;
    info->version = 1;
    if (v1_field(line, end, &pos, proto, sizeof(proto)) < 0)
        return bad(why, cap, "v1: no protocol after 'PROXY '");
    if (strcmp(proto, "UNKNOWN") == 0) {
        info->has_addr = false; /* the rest of the line is to be ignored (the spec) */
        return 1;
    }
    int family = strcmp(proto, "TCP4") == 0 ? AF_INET : strcmp(proto, "TCP6") == 0 ? AF_INET6 : 0;
    if (family == 0)
        return bad(why, cap, "v1: the protocol must be TCP4, TCP6 or UNKNOWN");
    if (v1_field(line, end, &pos, src, sizeof(src)) < 0 ||
        v1_field(line, end, &pos, dst, sizeof(dst)) < 0 ||
        v1_field(line, end, &pos, sport, sizeof(sport)) < 0 ||
        v1_field(line, end, &pos, dport, sizeof(dport)) < 0 || pos != end)
        return bad(why, cap,
                   "v1: expected 'PROXY TCP4|TCP6 SRC DST SPORT DPORT' with single "
                   "spaces");
    if (v1_addr(family, src, sport, &info->src) < 0 || v1_addr(family, dst, dport, &info->dst) < 0)
        return bad(why, cap, "v1: an address or a port cannot be read (or is not of the family)");
    info->has_addr = true;
    return 1;
}

static int parse_v1(const unsigned char *buf, size_t len, size_t *used, size_t *want,
                    xs_pp_info *info, char *why, size_t cap)
{
    /* The whole line, CRLF included, is at most XS_PP_V1_MAX bytes: nothing after that is
     * looked at. */
    size_t scan = len < XS_PP_V1_MAX ? len : XS_PP_V1_MAX;
    for (size_t i = 0; i < scan; i++) {
        unsigned char ch = buf[i];
        if (ch == '\n') {
            if (i == 0 || buf[i - 1] != '\r')
                return bad(why, cap, "v1: the line must end with CRLF");
            *used = i + 1;
            return v1_line((const char *)buf, i - 1, info, why, cap);
        }
        if (ch == '\r' && i + 1 < len && buf[i + 1] != '\n')
            return bad(why, cap, "v1: a CR not followed by LF");
        if (ch != '\r' && (ch < 0x20 || ch > 0x7e))
            return bad(why, cap, "v1: a byte that is not printable ASCII");
    }
    if (len >= XS_PP_V1_MAX)
        return bad(why, cap, "v1: no CRLF within 107 bytes");
    *want = 1; /* the end of the line is not known: one byte at a time */
    return 0;
}

/* ---- version 2: binary ---- */

static int v2_tlvs(const unsigned char *p, size_t n, char *why, size_t cap)
{
    while (n > 0) {
        if (n < 3)
            return bad(why, cap, "v2: a truncated TLV");
        size_t l = ((size_t)p[1] << 8) | p[2];
        if (l > n - 3)
            return bad(why, cap, "v2: a TLV longer than the header");
        p += 3 + l;
        n -= 3 + l;
    }
    return 0;
}

static int parse_v2(const unsigned char *buf, size_t len, size_t *used, size_t *want,
                    xs_pp_info *info, char *why, size_t cap)
{
    if (len < XS_PP_V2_HEAD) {
        *want = XS_PP_V2_HEAD - len;
        return 0;
    }
    unsigned ver = buf[12] >> 4, cmd = buf[12] & 0x0f, fam = buf[13];
    size_t body = ((size_t)buf[14] << 8) | buf[15];
    if (ver != 2)
        return bad(why, cap, "v2: the version must be 2");
    if (cmd > 1)
        return bad(why, cap, "v2: the command must be LOCAL or PROXY");
    static const unsigned char known[] = {0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32};
    if (memchr(known, fam, sizeof(known)) == NULL)
        return bad(why, cap, "v2: an unknown address family or transport");
    if (body > XS_PP_V2_MAX_LEN)
        return bad(why, cap, "v2: longer than 1024 bytes after the header");
    size_t need = fam == 0x11 ? 12 : fam == 0x21 ? 36 : fam == 0x31 || fam == 0x32 ? 216 : 0;
    if (fam == 0x12 || fam == 0x22)
        need = fam == 0x12 ? 12 : 36;
    if (body < need)
        return bad(why, cap, "v2: shorter than the addresses of its family");
    if (len < XS_PP_V2_HEAD + body) {
        *want = XS_PP_V2_HEAD + body - len;
        return 0;
    }
    const unsigned char *a = buf + XS_PP_V2_HEAD;
    if (v2_tlvs(a + need, body - need, why, cap) < 0)
        return XS_EPARSE;
    *used = XS_PP_V2_HEAD + body;
    info->version = 2;
    /* LOCAL (a health check of the sender's own) and families other than TCP name no client. */
    info->has_addr = cmd == 1 && (fam == 0x11 || fam == 0x21);
    if (!info->has_addr)
        return 1;
    memset(&info->src, 0, sizeof(info->src));
    memset(&info->dst, 0, sizeof(info->dst));
    if (fam == 0x11) {
        struct sockaddr_in *s = (struct sockaddr_in *)&info->src,
                           *d = (struct sockaddr_in *)&info->dst;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2);
        memcpy(&d->sin_port, a + 10, 2);
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&info->src,
                            *d = (struct sockaddr_in6 *)&info->dst;
        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&d->sin6_addr, a + 16, 16);
        memcpy(&s->sin6_port, a + 32, 2);
        memcpy(&d->sin6_port, a + 34, 2);
    }
    return 1;
}

int xs_pp_parse(const unsigned char *buf, size_t len, size_t *used, size_t *want, xs_pp_info *info,
                char *why, size_t cap)
{
    *used = 0;
    *want = 0;
    memset(info, 0, sizeof(*info));
    /* The beginning must match one of the two signatures, byte for byte. */
    size_t n1 = len < sizeof(v1_sig) - 1 ? len : sizeof(v1_sig) - 1;
    size_t n2 = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
    bool is1 = memcmp(buf, v1_sig, n1) == 0, is2 = memcmp(buf, v2_sig, n2) == 0;
    if (!is1 && !is2)
        return bad(why, cap,
                   "no PROXY protocol header (neither 'PROXY ' nor the v2 signature); "
                   "is the sender configured to send one?");
    if (is1 && len >= sizeof(v1_sig) - 1)
        return parse_v1(buf, len, used, want, info, why, cap);
    if (is2 && len >= sizeof(v2_sig))
        return parse_v2(buf, len, used, want, info, why, cap);
    /* Both headers are at least 15 bytes long: reading up to 8, then up to v2's 16, is safe. */
    *want = len < XS_PP_FIRST_READ ? XS_PP_FIRST_READ - len : XS_PP_V2_HEAD - len;
    return 0;
}
