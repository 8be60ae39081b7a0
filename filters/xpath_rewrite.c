/* XPath for the rule engine: prefix rewriting. See rules_impl.h.
 *
 * The rewriter is a tokenizer of XPath 1.0 (section 3.7 of the recommendation) that copies its
 * input and changes only name tests. Its one subtle part is the recommendation's disambiguation:
 * after a token that can end an operand (a name test, `)`, `]`, `.`, `..`, a literal or a number),
 * `*` is multiplication and a name is an operator (and, or, div, mod); otherwise `*` and a name are
 * name tests, unless the name is followed by `(` (a function or node type) or by `::` (an axis).
 * Name tests on the attribute and namespace axes are attribute names and keep no prefix. */
#include "filters/rules_impl.h"

#include "inspect/error.h"

#include <libxml/xmlerror.h>
#include <libxml/xpathInternals.h>

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

/* The state of xs_xpath_rewrite() while it reads the expression token by token. */
typedef struct rwstate {
    const char *src;
    size_t len, i;
    xs_xpath_resolve resolve;
    void *user;
    xs_xpath_rw *rw;
    xs_buf out;
    enum prev prev;
    bool attr_axis; /* the next name test names an attribute or namespace */
    size_t start;   /* where the token being read starts */
    size_t tok;     /* its index among the tokens */
    /* Whether the expression is a location path `/NAME...` with no operator outside brackets
     * and parentheses (see xs_xpath_rw.root_local). */
    size_t ntok;
    unsigned depth;
    bool path, root_seen;
} rwstate;

/* A token handler copied and mapped its token itself. */
#define RW_DONE 1

/* An operator outside brackets and parentheses: the expression is no plain location path. */
static void not_path(rwstate *s)
{
    s->path = s->path && s->depth > 0;
}

/* Copies the token's source to the output and maps its end. */
static int copy_token(rwstate *s)
{
    xs_buf_add(&s->out, s->src + s->start, s->i - s->start);
    return map_add(s->rw, s->out.len, s->i) != 0 ? XS_ENOMEM : RW_DONE;
}

/* A string literal or a number. */
static int rw_literal(rwstate *s, unsigned char c)
{
    const char *src = s->src;
    size_t len = s->len, i = s->i;

    if (c == '"' || c == '\'') {
        const char *end = memchr(src + i + 1, c, len - i - 1);
        if (end == NULL)
            return fail(s->rw, i, "unterminated string literal");
        i = (size_t)(end - src) + 1;
    } else {
        while (i < len && xs_xp_digit((unsigned char)src[i]))
            i++;
        if (i < len && src[i] == '.') {
            i++;
            while (i < len && xs_xp_digit((unsigned char)src[i]))
                i++;
        }
    }
    s->i = i;
    s->prev = PREV_OPERAND;
    not_path(s);
    return 0;
}

/* Punctuation: dots, brackets, operators, '@', '::' and '*'. */
static int rw_symbol(rwstate *s, unsigned char c)
{
    const char *src = s->src;
    size_t len = s->len, i = s->i;

    if (c == '.') {
        s->i += (i + 1 < len && src[i + 1] == '.') ? 2 : 1;
        s->prev = PREV_OPERAND;
    } else if (c == ')' || c == ']') {
        s->i++;
        s->prev = PREV_OPERAND;
        s->depth -= s->depth > 0;
    } else if (c == '(' || c == '[' || c == ',' || c == '|' || c == '+' || c == '=' || c == '-') {
        s->i++;
        s->prev = PREV_OPERATOR;
        if (c == '(' || c == '[')
            s->depth++;
        else
            not_path(s);
    } else if (c == '@') {
        s->i++;
        s->prev = PREV_OPERATOR;
        s->attr_axis = true;
    } else if (c == '!') {
        if (i + 1 >= len || src[i + 1] != '=')
            return fail(s->rw, i, "'!' must be followed by '=' (XPath has no other use for it)");
        s->i += 2;
        s->prev = PREV_OPERATOR;
        not_path(s);
    } else if (c == '<' || c == '>' || c == '/') {
        s->i++;
        if (s->i < len && ((c == '/' && src[s->i] == '/') || (c != '/' && src[s->i] == '=')))
            s->i++;
        s->prev = PREV_OPERATOR;
        if (c != '/')
            not_path(s);
    } else if (c == ':') {
        if (i + 1 >= len || src[i + 1] != ':')
            return fail(s->rw, i, "unexpected ':'");
        s->i += 2;
        s->prev = PREV_OPERATOR;
    } else if (c == '*') {
        s->i++;
        if (s->prev == PREV_OPERAND) {
            s->prev = PREV_OPERATOR; /* multiplication */
            not_path(s);
        } else {
            s->prev = PREV_OPERAND; /* any element (or attribute after @) */
            s->attr_axis = false;
        }
    } else if (c == '$') {
        return fail(s->rw, i, "XPath variables are not supported");
    } else {
        return fail(s->rw, i, "unexpected character '%c' in XPath", c < 0x20 || c > 0x7e ? '?' : c);
    }
    return 0;
}

/* A name test, NAME or PREFIX:NAME or PREFIX:*, from n1 (n1_len bytes before the colon); its
 * prefix becomes the one the rule engine declares for the namespace. */
static int rw_name_test(rwstate *s, const char *n1, size_t n1_len, const char *local,
                        size_t local_len)
{
    xs_xpath_rw *rw = s->rw;
    bool prefixed = local != NULL;

    if (s->tok == 1 && !s->attr_axis && (!prefixed || *local != '*')) {
        s->root_seen = true;
        rw->root_ns = -1;
        rw->root_local = prefixed ? local : n1;
        rw->root_local_len = prefixed ? local_len : n1_len;
    }
    if (prefixed) {
        int idx = s->resolve(s->user, n1, n1_len);
        if (s->tok == 1)
            rw->root_ns = idx;
        if (idx == -1)
            return fail(rw, s->start,
                        "unknown namespace prefix '%.*s' (declare it with "
                        "`namespace %.*s URI`)",
                        SHOW(n1_len), n1, SHOW(n1_len), n1);
        if (idx >= 0) {
            xs_buf_addf(&s->out, XS_XPATH_NS_PREFIX "%d:", idx);
            xs_buf_add(&s->out, local, local_len);
        } else {
            xs_buf_add(&s->out, s->src + s->start, s->i - s->start);
        }
    } else if (s->attr_axis) {
        xs_buf_add(&s->out, s->src + s->start, s->i - s->start);
    } else {
        xs_buf_adds(&s->out, XS_XPATH_STANZA_PREFIX ":");
        xs_buf_add(&s->out, s->src + s->start, s->i - s->start);
    }
    s->attr_axis = false;
    s->prev = PREV_OPERAND;
    return map_add(rw, s->out.len, s->i) != 0 ? XS_ENOMEM : RW_DONE;
}

/* A name: an operator keyword, a function, an axis or a name test. */
static int rw_name(rwstate *s)
{
    const char *src = s->src;
    size_t len = s->len, i = s->i, n1 = i;
    const char *local = NULL;
    size_t local_len = 0;

    while (i < len && xs_xp_name_char((unsigned char)src[i]))
        i++;
    size_t n1_len = i - n1;
    if (i + 1 < len && src[i] == ':' && src[i + 1] != ':') {
        i++;
        local = src + i;
        if (src[i] == '*') {
            i++;
        } else if (xs_xp_name_start((unsigned char)src[i])) {
            while (i < len && xs_xp_name_char((unsigned char)src[i]))
                i++;
        } else {
            return fail(s->rw, i, "expected a name or '*' after '%.*s:'", SHOW(n1_len), src + n1);
        }
        local_len = (size_t)(src + i - local);
    }
    bool prefixed = local != NULL;
    s->i = i;
    if (s->prev == PREV_OPERAND) {
        static const char *const ops[] = {"and", "or", "div", "mod", NULL};
        if (prefixed || !in_list(ops, src + n1, n1_len))
            return fail(s->rw, s->start, "expected an operator (and, or, =, |, ...) before '%.*s'",
                        SHOW(i - s->start), src + s->start);
        s->prev = PREV_OPERATOR;
        not_path(s);
        return copy_token(s);
    }
    size_t m = i;
    while (m < len && xs_xp_blank((unsigned char)src[m]))
        m++;
    if (m < len && src[m] == '(') {
        if (prefixed ||
            (!in_list(functions, src + n1, n1_len) && !in_list(node_types, src + n1, n1_len)))
            return fail(s->rw, s->start, "unknown XPath function '%.*s'", SHOW(i - s->start),
                        src + s->start);
        if (in_list(node_types, src + n1, n1_len))
            s->attr_axis = false;
        if (n1_len == 2 && memcmp(src + n1, "id", 2) == 0)
            s->rw->own_doc = true;
        s->prev = PREV_OPERAND; /* the '(' that follows makes it an operator context */
    } else if (!prefixed && m + 1 < len && src[m] == ':' && src[m + 1] == ':') {
        if (!in_list(axes, src + n1, n1_len))
            return fail(s->rw, s->start, "unknown XPath axis '%.*s'", SHOW(n1_len), src + n1);
        bool ns_axis = n1_len == 9 && memcmp(src + n1, "namespace", 9) == 0;
        s->attr_axis = ns_axis || (n1_len == 9 && memcmp(src + n1, "attribute", 9) == 0);
        s->rw->own_doc |= ns_axis;
        s->prev = PREV_OPERATOR;
    } else {
        return rw_name_test(s, src + n1, n1_len, local, local_len);
    }
    return 0;
}

int xs_xpath_rewrite(const char *src, size_t len, xs_xpath_resolve resolve, void *user,
                     xs_xpath_rw *rw)
{
    rwstate s = {.src = src, .len = len, .resolve = resolve, .user = user, .rw = rw, .path = true};
    int rc = 0;

    memset(rw, 0, sizeof(*rw));
    /* A prefix becomes at most "xs-" and ten digits; that bounds the growth. */
    xs_buf_init(&s.out, len * 8 + 64);
    while (s.i < len) {
        unsigned char c = (unsigned char)src[s.i];
        if (xs_xp_blank(c)) {
            xs_buf_add(&s.out, src + s.i, 1);
            s.i++;
            continue;
        }
        if (map_add(rw, s.out.len, s.i) != 0) {
            rc = XS_ENOMEM;
            goto out;
        }
        s.start = s.i;
        s.tok = s.ntok++;
        if (s.tok == 0 && (c != '/' || (s.i + 1 < len && src[s.i + 1] == '/')))
            s.path = false;
        if (s.tok == 2 && !s.root_seen)
            s.path = false;
        if (c == '"' || c == '\'' || xs_xp_digit(c) ||
            (c == '.' && s.i + 1 < len && xs_xp_digit((unsigned char)src[s.i + 1])))
            rc = rw_literal(&s, c);
        else if (xs_xp_name_start(c))
            rc = rw_name(&s);
        else
            rc = rw_symbol(&s, c);
        if (rc == 0)
            rc = copy_token(&s);
        if (rc < 0)
            goto out;
        rc = 0;
    }
    if (s.ntok < 2 || !s.root_seen || rw->root_ns < -1)
        s.path = false;
    if (!s.path) {
        rw->root_local = NULL;
        rw->root_local_len = 0;
    }
    rw->expr = xs_buf_take(&s.out, NULL);
    if (rw->expr == NULL)
        rc = s.out.err == XS_ETOOBIG ? fail(rw, 0, "XPath too long") : XS_ENOMEM;
out:
    xs_buf_free(&s.out);
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
