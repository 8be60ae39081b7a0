/* base64 as SASL uses it in XMPP. See b64.h. */
#include "inspect/b64.h"

#include "inspect/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int xs_base64_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int xs_base64_decode(const char *in, size_t len, unsigned char **out, size_t *out_len)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t sig = 0, o = 0;
    unsigned char *buf;
    uint32_t acc = 0;
    unsigned nacc = 0, pad = 0;
    int rc = 0;

    *out = NULL;
    *out_len = 0;
    for (size_t i = 0; i < len; i++)
        if (!xs_base64_space(s[i]))
            sig++;
    /* Every 4 characters give at most 3 bytes; one more for the NUL we add. */
    buf = malloc(sig / 4 * 3 + 1);
    if (buf == NULL)
        return XS_ENOMEM;
    if (sig == 1) {
        /* The lone "=" of RFC 6120 is the only valid input of one character. */
        for (size_t i = 0; i < len; i++)
            if (!xs_base64_space(s[i]) && s[i] != '=')
                rc = XS_EPARSE;
        goto out;
    }
    if (sig % 4 != 0) {
        rc = XS_EPARSE;
        goto out;
    }
    for (size_t i = 0; i < len; i++) {
        int v;

        if (xs_base64_space(s[i]))
            continue;
        if (s[i] == '=') {
            if (++pad > 2) {
                rc = XS_EPARSE;
                goto out;
            }
            continue;
        }
        v = b64_value(s[i]);
        if (v < 0 || pad > 0) {
            rc = XS_EPARSE;
            goto out;
        }
        acc = (acc << 6) | (uint32_t)v;
        if (++nacc == 4) {
            buf[o++] = (unsigned char)(acc >> 16);
            buf[o++] = (unsigned char)(acc >> 8);
            buf[o++] = (unsigned char)acc;
            acc = 0;
            nacc = 0;
        }
    }
    /* sig % 4 == 0, so the padding completes the last quantum or there is none. */
    if (nacc == 2 && pad == 2) {
        buf[o++] = (unsigned char)(acc >> 4);
    } else if (nacc == 3 && pad == 1) {
        buf[o++] = (unsigned char)(acc >> 10);
        buf[o++] = (unsigned char)(acc >> 2);
    } else if (nacc != 0 || pad != 0) {
        rc = XS_EPARSE;
    }
out:
    if (rc != 0) {
        free(buf);
        return rc;
    }
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return 0;
}

int xs_base64_encode(const void *in, size_t len, char **out, size_t *out_len)
{
    const unsigned char *s = in;
    size_t o = 0, i = 0;
    char *buf;

    *out = NULL;
    *out_len = 0;
    if (len / 3 >= (SIZE_MAX - 1) / 4 - 1)
        return XS_ETOOBIG;
    buf = malloc((len + 2) / 3 * 4 + 1);
    if (buf == NULL)
        return XS_ENOMEM;
    for (; len - i >= 3; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        buf[o++] = b64_alphabet[v >> 18];
        buf[o++] = b64_alphabet[(v >> 12) & 63];
        buf[o++] = b64_alphabet[(v >> 6) & 63];
        buf[o++] = b64_alphabet[v & 63];
    }
    if (len - i > 0) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (len - i == 2)
            v |= (uint32_t)s[i + 1] << 8;
        buf[o++] = b64_alphabet[v >> 18];
        buf[o++] = b64_alphabet[(v >> 12) & 63];
        buf[o++] = len - i == 2 ? b64_alphabet[(v >> 6) & 63] : '=';
        buf[o++] = '=';
    }
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return 0;
}
