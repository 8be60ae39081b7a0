/* JID validation (RFC 7622). See jid.h. */
#include "inspect/jid.h"

#include "inspect/utf8.h"

#include <idn2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char **why, const char *reason)
{
    if (why != NULL)
        *why = reason;
    return 0;
}

static int is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

/* The space characters (Unicode general category Zs), which the IdentifierClass disallows. */
static int is_space(uint32_t cp)
{
    return cp == 0x20 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* The reason for a character the localpart may not hold (RFC 7622 §3.3.1), or NULL. */
static const char *local_forbidden(uint32_t cp)
{
    switch (cp) {
    case '"':
        return "the localpart contains '\"' (forbidden by RFC 7622 §3.3.1)";
    case '&':
        return "the localpart contains '&' (forbidden by RFC 7622 §3.3.1)";
    case '\'':
        return "the localpart contains \"'\" (forbidden by RFC 7622 §3.3.1)";
    case '/':
        return "the localpart contains '/' (forbidden by RFC 7622 §3.3.1)";
    case ':':
        return "the localpart contains ':' (forbidden by RFC 7622 §3.3.1)";
    case '<':
        return "the localpart contains '<' (forbidden by RFC 7622 §3.3.1)";
    case '>':
        return "the localpart contains '>' (forbidden by RFC 7622 §3.3.1)";
    case '@':
        return "the localpart contains '@' (forbidden by RFC 7622 §3.3.1)";
    }
    if (is_control(cp))
        return "the localpart contains a control character (PRECIS IdentifierClass)";
    if (is_space(cp))
        return "the localpart contains a space (PRECIS IdentifierClass)";
    return NULL;
}

/* ASCII characters a localpart may hold: printable, none of the eight RFC 7622 forbids. */
static int local_ascii_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7F && c != '"' && c != '&' && c != '\'' && c != '/' && c != ':' &&
           c != '<' && c != '>' && c != '@';
}

static int local_valid(const unsigned char *s, size_t len, const char **why)
{
    if (len == 0)
        return fail(why, "empty localpart before '@'");
    if (len > XS_JID_PART_MAX)
        return fail(why, "the localpart is longer than 1023 bytes");
    for (size_t i = 0; i < len;) {
        if (local_ascii_ok(s[i])) { /* the common case, without decoding */
            i++;
            continue;
        }
        uint32_t cp;
        size_t n = xs_utf8_next(s + i, len - i, &cp);
        if (n == 0)
            return fail(why, "the localpart is not valid UTF-8");
        const char *bad = local_forbidden(cp);
        if (bad != NULL)
            return fail(why, bad);
        i += n;
    }
    return 1;
}

static int resource_valid(const unsigned char *s, size_t len, const char **why)
{
    if (len == 0)
        return fail(why, "empty resourcepart after '/'");
    if (len > XS_JID_PART_MAX)
        return fail(why, "the resourcepart is longer than 1023 bytes");
    for (size_t i = 0; i < len;) {
        if (s[i] >= 0x20 && s[i] < 0x7F) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t n = xs_utf8_next(s + i, len - i, &cp);
        if (n == 0)
            return fail(why, "the resourcepart is not valid UTF-8");
        if (is_control(cp))
            return fail(why, "the resourcepart contains a control character (PRECIS "
                             "FreeformClass)");
        i += n;
    }
    return 1;
}

static int is_ldh(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* A dotted-quad IPv4 address. */
static int is_ipv4(const unsigned char *s, size_t len)
{
    unsigned parts = 0, val = 0, digits = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (digits == 0 || val > 255 || (digits > 1 && s[i - digits] == '0'))
                return 0;
            parts++;
            val = digits = 0;
        } else if (s[i] >= '0' && s[i] <= '9' && digits < 3) {
            val = val * 10 + (s[i] - '0');
            digits++;
        } else {
            return 0;
        }
    }
    return parts == 4;
}

/* "[...]" holding an IPv6 address: hex groups, colons, at most one "::", an IPv4 tail. */
static int is_ipv6_literal(const unsigned char *s, size_t len)
{
    if (len < 4 || s[0] != '[' || s[len - 1] != ']')
        return 0;
    s++;
    len -= 2;
    unsigned groups = 0, hex = 0;
    int dcolon = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (c == ':') {
            if (i + 1 < len && s[i + 1] == ':') {
                if (dcolon++)
                    return 0;
                if (hex)
                    groups++;
                hex = 0;
                i++;
                continue;
            }
            if (hex == 0 && i != 0)
                return 0;
            if (hex)
                groups++;
            hex = 0;
        } else if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) {
            if (++hex > 4)
                return 0;
        } else if (c == '.') {
            /* An IPv4 tail: from the start of this group to the end. */
            size_t start = i - hex;
            if (!is_ipv4(s + start, len - start))
                return 0;
            groups += 2;
            hex = 0;
            i = len;
            break;
        } else {
            return 0;
        }
    }
    if (hex)
        groups++;
    if (len > 0 && s[len - 1] == ':' && (len < 2 || s[len - 2] != ':'))
        return 0;
    return dcolon ? groups <= 7 : groups == 8;
}

/* The labels of an ASCII name. Sets *idn when one is an A-label ("xn--"), for libidn2. */
static int ascii_labels_valid(const unsigned char *s, size_t len, int *idn, const char **why)
{
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.')
            continue;
        size_t n = i - start;
        if (n == 0)
            return fail(why, "the domainpart has an empty label");
        if (n > 63)
            return fail(why, "a label of the domainpart is longer than 63 bytes");
        for (size_t k = start; k < i; k++)
            if (!is_ldh(s[k]))
                return fail(why, "the domainpart contains a character that is not a letter, "
                                 "digit, hyphen or dot");
        if (s[start] == '-' || s[i - 1] == '-')
            return fail(why, "a label of the domainpart starts or ends with a hyphen");
        if (n >= 4 && (s[start] == 'x' || s[start] == 'X') &&
            (s[start + 1] == 'n' || s[start + 1] == 'N') && s[start + 2] == '-' &&
            s[start + 3] == '-')
            *idn = 1;
        start = i + 1;
    }
    return 1;
}

/* An internationalized name, through libidn2 (it allocates). */
static int idn_valid(const unsigned char *s, size_t len, const char **why)
{
    char stack[256];
    char *z = len < sizeof(stack) ? stack : malloc(len + 1);
    if (z == NULL)
        return 1; /* out of memory: say nothing rather than something false */
    memcpy(z, s, len);
    z[len] = '\0';
    uint8_t *out = NULL;
    int rc = idn2_lookup_u8((const uint8_t *)z, &out, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
    if (z != stack)
        free(z);
    idn2_free(out);
    if (rc == IDN2_MALLOC)
        return 1;
    if (rc != IDN2_OK)
        return fail(why, "the domainpart is not a valid internationalized domain name "
                         "(IDNA2008)");
    return 1;
}

int xs_jid_domain_valid(const char *str, size_t len, const char **why)
{
    const unsigned char *s = (const unsigned char *)str;
    if (len > 0 && s[len - 1] == '.') /* a final dot is removed (RFC 7622 §3.2) */
        len--;
    if (len == 0)
        return fail(why, "empty domainpart");
    if (len > XS_JID_PART_MAX)
        return fail(why, "the domainpart is longer than 1023 bytes");
    if (s[0] == '[')
        return is_ipv6_literal(s, len) ? 1
                                       : fail(why, "the domainpart is not a valid IPv6 "
                                                   "address in brackets");
    int ascii = 1, idn = 0;
    for (size_t i = 0; i < len && ascii; i++)
        ascii = s[i] < 0x80;
    if (ascii) {
        if (is_ipv4(s, len))
            return 1;
        if (!ascii_labels_valid(s, len, &idn, why))
            return 0;
        if (!idn)
            return 1;
    } else {
        for (size_t i = 0; i < len;) {
            uint32_t cp;
            size_t n = xs_utf8_next(s + i, len - i, &cp);
            if (n == 0)
                return fail(why, "the domainpart is not valid UTF-8");
            if (is_control(cp) || is_space(cp))
                return fail(why, "the domainpart contains a control or space character");
            i += n;
        }
    }
    return idn_valid(s, len, why);
}

int xs_jid_valid(const char *str, size_t len, const char **why)
{
    const unsigned char *s = (const unsigned char *)str;
    if (len == 0)
        return fail(why, "empty JID");
    const unsigned char *slash = memchr(s, '/', len);
    size_t bare = slash != NULL ? (size_t)(slash - s) : len;
    const unsigned char *at = memchr(s, '@', bare);
    const unsigned char *dom = s;
    size_t dlen = bare;
    if (at != NULL) {
        if (!local_valid(s, (size_t)(at - s), why))
            return 0;
        dom = at + 1;
        dlen = bare - (size_t)(dom - s);
    }
    if (dlen == 0)
        return fail(why, "empty domainpart");
    if (!xs_jid_domain_valid((const char *)dom, dlen, why))
        return 0;
    if (slash != NULL && !resource_valid(slash + 1, len - bare - 1, why))
        return 0;
    return 1;
}
