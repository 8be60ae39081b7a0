#include "inspect/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    int code;
    const char *name;
    const char *text;
} table[] = {
    {XS_ENOMEM, "XS_ENOMEM", "out of memory"},
    {XS_EINVAL, "XS_EINVAL", "invalid argument"},
    {XS_ENOTWF, "XS_ENOTWF", "XML not well-formed"},
    {XS_ERESTRICTED, "XS_ERESTRICTED", "restricted XML (RFC 6120 section 11)"},
    {XS_ETOOBIG, "XS_ETOOBIG", "size limit exceeded"},
    {XS_ETOODEEP, "XS_ETOODEEP", "nesting depth limit exceeded"},
    {XS_EBADFORMAT, "XS_EBADFORMAT", "not an XMPP stream"},
    {XS_ESTATE, "XS_ESTATE", "operation not valid in this state"},
    {XS_ETLS, "XS_ETLS", "TLS failure"},
    {XS_EIO, "XS_EIO", "input/output error"},
    {XS_ECLOSED, "XS_ECLOSED", "stream closed"},
    {XS_EPARSE, "XS_EPARSE", "malformed input"},
};

const char *xs_strerror(int err)
{
    if (err == 0)
        return "success";
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (table[i].code == err)
            return table[i].text;
    if (err < 0 && err > -4096)
        return strerror(-err);
    return "unknown error";
}

const char *xs_errname(int err)
{
    if (err == 0)
        return "OK";
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (table[i].code == err)
            return table[i].name;
    if (err < 0 && err > -4096) {
#ifdef __GLIBC__
        const char *n = strerrorname_np(-err);
        if (n != NULL)
            return n;
#endif
    }
    return "EUNKNOWN";
}

void xs_quote_bytes(char *out, size_t cap, const char *s, size_t n, size_t max)
{
    size_t o = strlen(out);

    for (size_t i = 0; i < n && i < max && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02X", c);
    }
    if (n > max && o + 4 < cap) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = 0;
}

int xs_diag_set(xs_diag *d, int err, const char *fmt, ...)
{
    if (d == NULL)
        return err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->text, sizeof(d->text), fmt, ap);
    va_end(ap);
    return err;
}
