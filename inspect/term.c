/* The one display escaper: everything from the wire that the printers show, and the messages
 * printed outside a printer (xs_term_printf()), goes through xs_term_esc(), which knows the
 * output's context: XML text, XML attribute value, one line, or a block of lines. Terminal
 * controls and invalid UTF-8 never reach a FILE as they are: neither do bidirectional controls and
 * invisible characters (xs_term_unsafe_cp()), which JSON strings carry as \u escapes
 * (print_json.c). See print.h. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inspect/error.h"
#include "inspect/print_impl.h"
#include "inspect/utf8.h"

/* ---- formatted pieces ---------------------------------------------------------------------- */

/* For short formatted pieces (numbers, times); longer output is cut, which never happens with
 * the formats used here. */
void xs_print_fmt(xs_buf *b, const char *fmt, ...)
{
    char tmp[160];
    va_list ap;
    int k;

    va_start(ap, fmt);
    k = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (k > 0)
        xs_buf_add(b, tmp, (size_t)k < sizeof(tmp) ? (size_t)k : sizeof(tmp) - 1);
}

void xs_print_indent(xs_buf *b, unsigned n)
{
    static const char spaces[] = "                                ";
    while (n > 0) {
        unsigned k = n < sizeof(spaces) - 1 ? n : (unsigned)sizeof(spaces) - 1;
        xs_buf_add(b, spaces, k);
        n -= k;
    }
}

/* ---- escaping ------------------------------------------------------------------------------ */

void xs_term_esc(xs_buf *b, const char *str, size_t n, xs_esc_mode m, unsigned block_indent)
{
    const unsigned char *s = (const unsigned char *)str;
    int xml = m == XS_ESC_TEXT || m == XS_ESC_ATTR;
    size_t i = 0;

    while (i < n && b->err == 0) {
        uint32_t cp;
        size_t k = xs_utf8_next(s + i, n - i, &cp);
        const char *rep = NULL;

        if (k == 0) {
            if (xml)
                xs_print_str(b, UTF8_REPLACEMENT);
            else
                xs_print_fmt(b, "\\x%02X", s[i]);
            i++;
            continue;
        }
        switch (cp) {
        case '&':
            rep = xml ? "&amp;" : NULL;
            break;
        case '<':
            rep = xml ? "&lt;" : NULL;
            break;
        case '>':
            rep = xml ? "&gt;" : NULL;
            break;
        case '\'':
            rep = m == XS_ESC_ATTR ? "&apos;" : NULL;
            break;
        case '\t':
            rep = m == XS_ESC_ATTR ? "&#x9;" : m == XS_ESC_LINE ? "\\t" : "\t";
            break;
        case '\r':
            rep = xml ? "&#xD;" : "\\r";
            break;
        case '\0':
            rep = xml ? "&#xFFFD;" : "\\0";
            break;
        case '\n':
            if (m == XS_ESC_BLOCK) {
                xs_print_str(b, "\n");
                xs_print_indent(b, block_indent);
                i++;
                continue;
            }
            rep = xml ? "&#xA;" : "\\n";
            break;
        default:
            break;
        }
        if (rep != NULL)
            xs_print_str(b, rep);
        else if (!xs_term_unsafe_cp(cp))
            xs_buf_add(b, s + i, k);
        else if (xml)
            xs_print_fmt(b, "&#x%X;", (unsigned)cp);
        else if (k == 1)
            xs_print_fmt(b, "\\x%02X", (unsigned)cp);
        else
            xs_print_fmt(b, "\\u%04X", (unsigned)cp);
        i += k;
    }
}

void xs_term_esc_str(xs_buf *b, const char *s, xs_esc_mode m)
{
    if (s != NULL)
        xs_term_esc(b, s, strlen(s), m, 0);
}

int xs_term_vprintf(FILE *f, const char *fmt, va_list ap)
{
    xs_buf raw, b;
    va_list copy;
    int n, rc = 0;

    /* The formatted text and its NUL within OUT_MAX, the escaped text within OUT_MAX. */
    xs_buf_init(&raw, OUT_MAX - 1);
    xs_buf_init(&b, OUT_MAX);
    va_copy(copy, ap);
    n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0 || xs_buf_reserve(&raw, (size_t)n) != 0) {
        rc = XS_ENOMEM;
        goto out;
    }
    vsnprintf(raw.p, (size_t)n + 1, fmt, ap);
    xs_buf_commit(&raw, (size_t)n);
    /* One newline at the end is the caller's; any other is escaped with the rest. */
    int nl = raw.len > 0 && raw.p[raw.len - 1] == '\n';
    xs_term_esc(&b, raw.p, raw.len - nl, XS_ESC_LINE, 0);
    if (nl)
        xs_buf_add(&b, "\n", 1);
    if (xs_buf_error(&b) != 0) {
        rc = xs_buf_error(&b);
        goto out;
    }
    if (xs_buf_len(&b) > 0 && fwrite(xs_buf_ptr(&b), 1, xs_buf_len(&b), f) != xs_buf_len(&b))
        rc = XS_EIO;
out:
    xs_buf_free(&raw);
    xs_buf_free(&b);
    return rc;
}

int xs_term_printf(FILE *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = xs_term_vprintf(f, fmt, ap);
    va_end(ap);
    return rc;
}
