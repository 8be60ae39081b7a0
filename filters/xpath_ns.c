/* XPath prefix rewriting for the rule engine. See rules_impl.h.
 *
 * This is a tokenizer of XPath 1.0 (section 3.7 of the recommendation) that copies its input and
 * changes only name tests. Its one subtle part is the recommendation's disambiguation: after a
 * token that can end an operand (a name test, `)`, `]`, `.`, `..`, a literal or a number), `*`
 * is multiplication and a name is an operator (and, or, div, mod); otherwise `*` and a name are
 * name tests, unless the name is followed by `(` (a function or node type) or by `::` (an axis).
 * Name tests on the attribute and namespace axes are attribute names and keep no prefix. */
#include "filters/rules_impl.h"

#include "inspect/error.h"

#include <libxml/xmlerror.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the previous token lets the next one be. */
enum prev { PREV_NONE, PREV_OPERATOR, PREV_OPERAND };

static const char *const functions[] = {
    "last",
    "position",
    "count",
    "id",
    "local-name",
    "namespace-uri",
    "name",
    "string",
    "concat",
    "starts-with",
    "contains",
    "substring-before",
    "substring-after",
    "substring",
    "string-length",
    "normalize-space",
    "translate",
    "boolean",
    "not",
    "true",
    "false",
    "lang",
    "number",
    "sum",
    "floor",
    "ceiling",
    "round",
    NULL,
};

static const char *const node_types[] = {"comment", "text", "processing-instruction", "node", NULL};

static const char *const axes[] = {
    "ancestor",   "ancestor-or-self",
    "attribute",  "child",
    "descendant", "descendant-or-self",
    "following",  "following-sibling",
    "namespace",  "parent",
    "preceding",  "preceding-sibling",
    "self",       NULL,
};

static bool in_list(const char *const *list, const char *s, size_t n)
{
    for (size_t i = 0; list[i] != NULL; i++)
        if (strlen(list[i]) == n && memcmp(list[i], s, n) == 0)
            return true;
    return false;
}

static bool name_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static bool name_char(unsigned char c)
{
    return name_start(c) || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

static bool digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int fail(xs_xpath_rw *rw, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(xs_xpath_rw *rw, size_t at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rw->err, sizeof(rw->err), fmt, ap);
    va_end(ap);
    rw->err_offset = at;
    return XS_EPARSE;
}

static int map_add(xs_xpath_rw *rw, size_t new_off, size_t old_off)
{
    if (rw->n_map == rw->cap_map) {
        size_t ncap = rw->cap_map ? rw->cap_map * 2 : 16;
        size_t *a = realloc(rw->map_new, ncap * sizeof(*a));
        if (a == NULL)
            return XS_ENOMEM;
        rw->map_new = a;
        size_t *b = realloc(rw->map_old, ncap * sizeof(*b));
        if (b == NULL)
            return XS_ENOMEM;
        rw->map_old = b;
        rw->cap_map = ncap;
    }
    rw->map_new[rw->n_map] = new_off;
    rw->map_old[rw->n_map] = old_off;
    rw->n_map++;
    return 0;
}

/* Shows at most 40 bytes of a name in a message. */
#define SHOW(n) (int)((n) > 40 ? 40 : (n))

int xs_xpath_rewrite(const char *src, size_t len, xs_xpath_resolve resolve, void *user,
                     xs_xpath_rw *rw)
{
    memset(rw, 0, sizeof(*rw));
    xs_sbuf out;
    /* A prefix becomes at most "xs-" and ten digits; that bounds the growth. */
    xs_sbuf_init(&out, len * 8 + 64);
    enum prev prev = PREV_NONE;
    bool attr_axis = false; /* the next name test names an attribute or namespace */
    int rc = 0;
    size_t i = 0;
    /* Whether the expression is a location path `/NAME...` with no operator outside brackets
     * and parentheses (see xs_xpath_rw.root_local). */
    size_t ntok = 0;
    unsigned depth = 0;
    bool path = true, root_seen = false;

    while (i < len) {
        unsigned char c = (unsigned char)src[i];
        if (blank(c)) {
            xs_sbuf_add(&out, src + i, 1);
            i++;
            continue;
        }
        if (map_add(rw, out.len, i) != 0) {
            rc = XS_ENOMEM;
            goto out;
        }
        size_t start = i, tok = ntok++;
        if (tok == 0 && (c != '/' || (i + 1 < len && src[i + 1] == '/')))
            path = false;
        if (tok == 2 && !root_seen)
            path = false;
        if (c == '"' || c == '\'') {
            const char *end = memchr(src + i + 1, c, len - i - 1);
            if (end == NULL) {
                rc = fail(rw, i, "unterminated string literal");
                goto out;
            }
            i = (size_t)(end - src) + 1;
            prev = PREV_OPERAND;
            path = path && depth > 0;
        } else if (digit(c) || (c == '.' && i + 1 < len && digit((unsigned char)src[i + 1]))) {
            while (i < len && digit((unsigned char)src[i]))
                i++;
            if (i < len && src[i] == '.') {
                i++;
                while (i < len && digit((unsigned char)src[i]))
                    i++;
            }
            prev = PREV_OPERAND;
            path = path && depth > 0;
        } else if (c == '.') {
            i += (i + 1 < len && src[i + 1] == '.') ? 2 : 1;
            prev = PREV_OPERAND;
        } else if (c == ')' || c == ']') {
            i++;
            prev = PREV_OPERAND;
            depth -= depth > 0;
        } else if (c == '(' || c == '[' || c == ',' || c == '|' || c == '+' || c == '=' ||
                   c == '-') {
            i++;
            prev = PREV_OPERATOR;
            if (c == '(' || c == '[')
                depth++;
            else
                path = path && depth > 0;
        } else if (c == '@') {
            i++;
            prev = PREV_OPERATOR;
            attr_axis = true;
        } else if (c == '!') {
            if (i + 1 >= len || src[i + 1] != '=') {
                rc = fail(rw, i, "'!' must be followed by '=' (XPath has no other use for it)");
                goto out;
            }
            i += 2;
            prev = PREV_OPERATOR;
            path = path && depth > 0;
        } else if (c == '<' || c == '>' || c == '/') {
            i++;
            if (i < len && ((c == '/' && src[i] == '/') || (c != '/' && src[i] == '=')))
                i++;
            prev = PREV_OPERATOR;
            if (c != '/')
                path = path && depth > 0;
        } else if (c == ':') {
            if (i + 1 >= len || src[i + 1] != ':') {
                rc = fail(rw, i, "unexpected ':'");
                goto out;
            }
            i += 2;
            prev = PREV_OPERATOR;
        } else if (c == '*') {
            i++;
            if (prev == PREV_OPERAND) {
                prev = PREV_OPERATOR; /* multiplication */
                path = path && depth > 0;
            } else {
                prev = PREV_OPERAND; /* any element (or attribute after @) */
                attr_axis = false;
            }
        } else if (c == '$') {
            rc = fail(rw, i, "XPath variables are not supported");
            goto out;
        } else if (name_start(c)) {
            size_t n1 = i;
            while (i < len && name_char((unsigned char)src[i]))
                i++;
            size_t n1_len = i - n1;
            const char *local = NULL;
            size_t local_len = 0;
            bool prefixed = false;
            if (i + 1 < len && src[i] == ':' && src[i + 1] != ':') {
                prefixed = true;
                i++;
                local = src + i;
                if (src[i] == '*') {
                    i++;
                } else if (name_start((unsigned char)src[i])) {
                    while (i < len && name_char((unsigned char)src[i]))
                        i++;
                } else {
                    rc =
                        fail(rw, i, "expected a name or '*' after '%.*s:'", SHOW(n1_len), src + n1);
                    goto out;
                }
                local_len = (size_t)(src + i - local);
            }
            if (prev == PREV_OPERAND) {
                static const char *const ops[] = {"and", "or", "div", "mod", NULL};
                if (prefixed || !in_list(ops, src + n1, n1_len)) {
                    rc = fail(rw, start, "expected an operator (and, or, =, |, ...) before '%.*s'",
                              SHOW(i - start), src + start);
                    goto out;
                }
                prev = PREV_OPERATOR;
                path = path && depth > 0;
                xs_sbuf_add(&out, src + start, i - start);
                if (map_add(rw, out.len, i) != 0) {
                    rc = XS_ENOMEM;
                    goto out;
                }
                continue;
            }
            size_t m = i;
            while (m < len && blank((unsigned char)src[m]))
                m++;
            if (m < len && src[m] == '(') {
                if (prefixed || (!in_list(functions, src + n1, n1_len) &&
                                 !in_list(node_types, src + n1, n1_len))) {
                    rc = fail(rw, start, "unknown XPath function '%.*s'", SHOW(i - start),
                              src + start);
                    goto out;
                }
                if (in_list(node_types, src + n1, n1_len))
                    attr_axis = false;
                prev = PREV_OPERAND; /* the '(' that follows makes it an operator context */
            } else if (!prefixed && m + 1 < len && src[m] == ':' && src[m + 1] == ':') {
                if (!in_list(axes, src + n1, n1_len)) {
                    rc = fail(rw, start, "unknown XPath axis '%.*s'", SHOW(n1_len), src + n1);
                    goto out;
                }
                attr_axis = (n1_len == 9 && memcmp(src + n1, "attribute", 9) == 0) ||
                            (n1_len == 9 && memcmp(src + n1, "namespace", 9) == 0);
                prev = PREV_OPERATOR;
            } else {
                /* A name test. */
                if (tok == 1 && !attr_axis && (!prefixed || *local != '*')) {
                    root_seen = true;
                    rw->root_ns = -1;
                    rw->root_local = prefixed ? local : src + n1;
                    rw->root_local_len = prefixed ? local_len : n1_len;
                }
                if (prefixed) {
                    int idx = resolve(user, src + n1, n1_len);
                    if (tok == 1)
                        rw->root_ns = idx;
                    if (idx == -1) {
                        rc = fail(rw, start,
                                  "unknown namespace prefix '%.*s' (declare it with "
                                  "`namespace %.*s URI`)",
                                  SHOW(n1_len), src + n1, SHOW(n1_len), src + n1);
                        goto out;
                    }
                    if (idx >= 0) {
                        xs_sbuf_addf(&out, XS_XPATH_NS_PREFIX "%d:", idx);
                        xs_sbuf_add(&out, local, local_len);
                    } else {
                        xs_sbuf_add(&out, src + start, i - start);
                    }
                } else if (attr_axis) {
                    xs_sbuf_add(&out, src + start, i - start);
                } else {
                    xs_sbuf_adds(&out, XS_XPATH_STANZA_PREFIX ":");
                    xs_sbuf_add(&out, src + start, i - start);
                }
                attr_axis = false;
                prev = PREV_OPERAND;
                if (map_add(rw, out.len, i) != 0) {
                    rc = XS_ENOMEM;
                    goto out;
                }
                continue;
            }
        } else {
            rc = fail(rw, i, "unexpected character '%c' in XPath", c < 0x20 || c > 0x7e ? '?' : c);
            goto out;
        }
        xs_sbuf_add(&out, src + start, i - start);
        if (map_add(rw, out.len, i) != 0) {
            rc = XS_ENOMEM;
            goto out;
        }
    }
    if (ntok < 2 || !root_seen || rw->root_ns < -1)
        path = false;
    if (!path) {
        rw->root_local = NULL;
        rw->root_local_len = 0;
    }
    rw->expr = xs_sbuf_take(&out, NULL);
    if (rw->expr == NULL)
        rc = out.err == XS_ETOOBIG ? fail(rw, 0, "XPath too long") : XS_ENOMEM;
out:
    xs_sbuf_free(&out);
    return rc;
}

size_t xs_xpath_map_offset(const xs_xpath_rw *rw, size_t offset)
{
    /* The map has an entry at the start and at the end of every token. Between two entries the
     * text was copied unchanged, except inside a rewritten name test, which is longer than its
     * source: an offset in there is clamped to the token's end. */
    size_t old = 0, at = 0, limit = (size_t)-1;
    for (size_t i = 0; i < rw->n_map; i++) {
        if (rw->map_new[i] > offset) {
            limit = rw->map_old[i];
            break;
        }
        old = rw->map_old[i];
        at = rw->map_new[i];
    }
    size_t mapped = old + (offset - at);
    return mapped > limit ? limit : mapped;
}

const char *xs_xpath_error_text(int code)
{
    /* libxml2 leaves the message out when the context has an error handler; these are its
     * texts, indexed by code - XML_XPATH_EXPRESSION_OK. */
    static const char *const texts[] = {
        "ok",
        "number encoding",
        "unfinished literal",
        "start of literal",
        "expected $ for variable reference",
        "undefined variable",
        "invalid predicate",
        "invalid expression",
        "missing closing curly brace",
        "unregistered function",
        "invalid operand",
        "invalid type",
        "invalid number of arguments",
        "invalid context size",
        "invalid context position",
        "memory allocation error",
        "syntax error",
        "resource error",
        "sub resource error",
        "undefined namespace prefix",
        "encoding error",
        "character out of XML range",
        "invalid or incomplete context",
        "stack usage error",
        "forbidden variable",
        "operation limit exceeded",
        "recursion limit exceeded",
    };
    int i = code - XML_XPATH_EXPRESSION_OK;
    if (i >= 0 && (size_t)i < sizeof(texts) / sizeof(texts[0]))
        return texts[i];
    return "error";
}

void xs_xpath_rw_clear(xs_xpath_rw *rw)
{
    free(rw->expr);
    free(rw->map_new);
    free(rw->map_old);
    memset(rw, 0, sizeof(*rw));
}
