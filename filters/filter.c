/* The filter language: the compiler and the normalised form. See filter.h; the evaluator is
 * filter_eval.c.
 *
 * A recursive descent over the bytes of the expression, one token looked ahead:
 *     or    := and ('or' and)*
 *     and   := unary (['and'] unary)*
 *     unary := 'not' unary | '(' or ')' | atom
 * Nodes go into one array (xs_filter.nodes); operators refer to their operands by index. Every
 * error says where (the column, in characters) and what was expected there. */
#include "filters/filter_impl.h"

#include "inspect/alloc.h"
#include "inspect/error.h"
#include "inspect/utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum tok_kind { T_END, T_LPAREN, T_RPAREN, T_WORD, T_KEYVAL } tok_kind;

typedef struct token {
    tok_kind kind;
    size_t off;     /* first byte */
    size_t key_len; /* T_WORD: the word; T_KEYVAL: the key before ':' */
    size_t val_off; /* T_KEYVAL: the value's first byte in the source (its quote if quoted) */
    size_t val_end; /* ... and the byte after it (after the closing quote) */
    bool quoted;
} token;

typedef struct pstate {
    const char *src;
    size_t len;
    size_t pos;
    token tok; /* the token looked ahead */
    xs_filter *f;
    xs_filter_error *err;
    int rc;
    unsigned depth;
    size_t atoms;
} pstate;

static const struct {
    const char *name;
    xs_fkind kind;
} keys[] = {
    {"type", XS_F_TYPE}, {"from", XS_F_FROM}, {"to", XS_F_TO},           {"jid", XS_F_JID},
    {"ns", XS_F_NS},     {"dir", XS_F_DIR},   {"session", XS_F_SESSION}, {"id", XS_F_ID},
    {"text", XS_F_TEXT}, {"tag", XS_F_TAG},   {"check", XS_F_CHECK},     {"xpath", XS_F_XPATH},
};

#define KEY_LIST "type, from, to, jid, ns, dir, session, id, text, tag, check or xpath"

const char *xs_filter_key_name(xs_fkind kind)
{
    switch (kind) {
    case XS_F_MESSAGE:
        return "message";
    case XS_F_PRESENCE:
        return "presence";
    case XS_F_IQ:
        return "iq";
    default:
        break;
    }
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (keys[i].kind == kind)
            return keys[i].name;
    return "?";
}

/* ---- errors ---------------------------------------------------------------------------------- */

/* The 1-based column of byte `off`: characters before it, plus one. */
static unsigned column_of(const char *s, size_t off)
{
    unsigned col = 1;
    for (size_t i = 0; i < off; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            col++;
    return col;
}

static bool fail_at(pstate *ps, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail_at(pstate *ps, size_t off, const char *fmt, ...)
{
    if (ps->rc != 0)
        return false;
    ps->rc = XS_EPARSE;
    if (ps->err != NULL) {
        ps->err->column = column_of(ps->src, off);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ps->err->message, sizeof(ps->err->message), fmt, ap);
        va_end(ap);
    }
    return false;
}

static bool oom(pstate *ps)
{
    if (ps->rc == 0 || ps->rc == XS_EPARSE) {
        ps->rc = XS_ENOMEM;
        if (ps->err != NULL) {
            ps->err->column = 1;
            snprintf(ps->err->message, sizeof(ps->err->message), "out of memory");
        }
    }
    return false;
}

/* Shows at most 40 bytes of the source from `off` in a message, cut at a character boundary. */
static int shown_len(const char *s, size_t n)
{
    if (n <= 40)
        return (int)n;
    size_t k = 40;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
        k--;
    return (int)k;
}

/* ---- tokens ---------------------------------------------------------------------------------- */

static bool is_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_key_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* Reads the next token into ps->tok. */
static bool next(pstate *ps)
{
    const char *s = ps->src;
    size_t i = ps->pos, n = ps->len;
    while (i < n && is_blank((unsigned char)s[i]))
        i++;
    token *t = &ps->tok;
    memset(t, 0, sizeof(*t));
    t->off = i;
    if (i == n) {
        t->kind = T_END;
        ps->pos = i;
        return true;
    }
    if (s[i] == '(' || s[i] == ')') {
        t->kind = s[i] == '(' ? T_LPAREN : T_RPAREN;
        ps->pos = i + 1;
        return true;
    }
    if (s[i] == '"')
        return fail_at(ps, i,
                       "a quoted value needs a key before it (text:\"...\", "
                       "xpath:\"...\"): expected an atom");
    size_t k = i;
    while (k < n && is_key_char((unsigned char)s[k]))
        k++;
    if (k > i && k < n && s[k] == ':') {
        t->kind = T_KEYVAL;
        t->key_len = k - i;
        size_t v = k + 1;
        t->val_off = v;
        if (v < n && s[v] == '"') {
            t->quoted = true;
            size_t j = v + 1;
            while (j < n && s[j] != '"')
                j += s[j] == '\\' && j + 1 < n ? 2 : 1;
            if (j >= n)
                return fail_at(ps, n, "expected '\"' to close the value that starts at column %u",
                               column_of(s, v));
            t->val_end = j + 1;
        } else {
            /* A word: up to a blank or a ')' that closes no '(' of the word's own, so that
             * xpath:/message[not(body)] and (jid:bob@example.test) both read as meant. */
            unsigned open = 0;
            size_t j = v;
            for (; j < n && !is_blank((unsigned char)s[j]); j++) {
                if (s[j] == '(')
                    open++;
                else if (s[j] == ')' && open-- == 0)
                    break;
            }
            t->val_end = j;
        }
        ps->pos = t->val_end;
        return true;
    }
    /* A word without a key: up to a blank or a parenthesis. */
    while (k < n && !is_blank((unsigned char)s[k]) && s[k] != '(' && s[k] != ')')
        k++;
    t->kind = T_WORD;
    t->key_len = k - i;
    ps->pos = k;
    return true;
}

static bool word_is(const pstate *ps, const char *w)
{
    const token *t = &ps->tok;
    return t->kind == T_WORD && t->key_len == strlen(w) &&
           strncasecmp(ps->src + t->off, w, t->key_len) == 0;
}

/* ---- nodes ----------------------------------------------------------------------------------- */

static int add_node(pstate *ps, xs_fkind kind, int a, int b)
{
    xs_filter *f = ps->f;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        xs_fnode *nodes = xs_realloc(f->nodes, cap * sizeof(*nodes));
        if (nodes == NULL) {
            oom(ps);
            return -1;
        }
        f->nodes = nodes;
        f->cap = cap;
    }
    xs_fnode *node = &f->nodes[f->n];
    memset(node, 0, sizeof(*node));
    node->kind = kind;
    node->a = a;
    node->b = b;
    return (int)f->n++;
}

/* The value of a T_KEYVAL token, unescaped, as a new string (*len its length). */
static char *value_of(pstate *ps, const token *t, size_t *len)
{
    const char *s = ps->src + t->val_off;
    size_t n = t->val_end - t->val_off;
    if (t->quoted) {
        s++;
        n -= 2;
    }
    char *out = xs_malloc(n + 1);
    if (out == NULL) {
        oom(ps);
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (t->quoted && s[i] == '\\' && i + 1 < n && (s[i + 1] == '"' || s[i + 1] == '\\'))
            i++;
        out[o++] = s[i];
    }
    out[o] = 0;
    *len = o;
    return out;
}

/* The byte of the source where character `k` of a value starts (for an error inside it). */
static size_t source_offset(const pstate *ps, const token *t, size_t k)
{
    size_t i = t->val_off + (t->quoted ? 1 : 0), end = t->val_end - (t->quoted ? 1 : 0);
    const char *s = ps->src;
    for (size_t c = 0; i < end; i++) {
        if ((s[i] & 0xC0) == 0x80)
            continue;
        if (c++ == k)
            return i;
        if (t->quoted && s[i] == '\\' && i + 1 < end && (s[i + 1] == '"' || s[i + 1] == '\\'))
            i++;
    }
    return end;
}

int xs_filter_jid_ok(const char *s, size_t len)
{
    if (len == 0 || len > XS_FILTER_MAX_JID)
        return 0;
    size_t slash = len, at = len;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == 0x7F)
            return 0;
        if (c == '/' && slash == len)
            slash = i;
        if (c == '@' && at == len && i < slash)
            at = i;
    }
    size_t dom = at == len ? 0 : at + 1;
    if (at == 0 || dom >= slash || slash + 1 == len)
        return 0;
    return 1;
}

/* ---- atoms ----------------------------------------------------------------------------------- */

static bool compile_text(pstate *ps, xs_fnode *node)
{
    size_t m = node->len;
    for (size_t i = 0; i < m; i++)
        if (node->value[i] >= 'A' && node->value[i] <= 'Z')
            node->value[i] = (char)(node->value[i] + 32);
    node->kmp = xs_calloc(m, sizeof(*node->kmp));
    if (node->kmp == NULL)
        return oom(ps);
    /* kmp[i]: the length of the longest proper prefix of value[0..i] that is also its suffix. */
    for (size_t i = 1, k = 0; i < m; i++) {
        while (k > 0 && node->value[i] != node->value[k])
            k = node->kmp[k - 1];
        if (node->value[i] == node->value[k])
            k++;
        node->kmp[i] = k;
    }
    ps->f->needs_tree = true;
    return true;
}

static bool compile_xpath(pstate *ps, const token *t, xs_fnode *node)
{
    if (ps->f->n_xpath == XS_FILTER_MAX_XPATHS)
        return fail_at(ps, t->off, "too many xpath: atoms (at most %u)", XS_FILTER_MAX_XPATHS);
    /* The rules file reads a match to the end of its line, and a '#' after a blank outside
     * literals as a comment: neither may cut what was written here. */
    char quote = 0;
    for (size_t i = 0; i < node->len; i++) {
        char c = node->value[i];
        if (c == '\n' || c == '\r')
            return fail_at(ps, source_offset(ps, t, i),
                           "an XPath is one line: expected no "
                           "line break in it");
        if (quote != 0 && c == quote)
            quote = 0;
        else if (quote == 0 && (c == '"' || c == '\''))
            quote = c;
        else if (quote == 0 && c == '#')
            return fail_at(ps, source_offset(ps, t, i),
                           "unexpected '#' in the XPath (only inside a string literal)");
    }
    static const char head[] = "rule \"xpath\"\n    match ";
    static const char tail[] = "\n    then pass\nend\n";
    size_t n = sizeof(head) - 1 + node->len + sizeof(tail) - 1;
    char *text = xs_malloc(n + 1);
    if (text == NULL)
        return oom(ps);
    snprintf(text, n + 1, "%s%s%s", head, node->value, tail);
    xs_rule_diag diag = {0};
    int rc = xs_rules_parse(text, n, "xpath", 0, &node->rules, &diag);
    xs_free(text);
    if (rc == XS_ENOMEM) {
        xs_rule_diag_clear(&diag);
        return oom(ps);
    }
    if (rc < 0) {
        /* The first error, at its column of the match line (the value starts after "match "). */
        size_t k = 0;
        const char *msg = "the XPath is not valid";
        if (diag.n > 0) {
            if (diag.errors[0].line == 2 && diag.errors[0].column >= 11)
                k = diag.errors[0].column - 11;
            if (diag.errors[0].text != NULL)
                msg = diag.errors[0].text;
            while (*msg == ' ')
                msg++;
            if (strncmp(msg, "match: ", 7) == 0)
                msg += 7;
        }
        /* The rules' advice to declare a prefix in the file does not apply here. */
        const char *cut = strstr(msg, " (declare it with");
        int shown = cut != NULL ? (int)(cut - msg) : (int)strlen(msg);
        fail_at(ps, source_offset(ps, t, k), "in the XPath: %.*s%s", shown, msg,
                cut != NULL ? " (the prefixes are those of 'xmppscope rules namespaces')" : "");
        xs_rule_diag_clear(&diag);
        return false;
    }
    xs_rule_diag_clear(&diag);
    ps->f->n_xpath++;
    ps->f->needs_tree = true;
    return true;
}

static bool compile_ns(pstate *ps, const token *t, xs_fnode *node)
{
    if (strchr(node->value, ':') != NULL || strchr(node->value, '/') != NULL)
        return true;
    for (const xs_rules_ns *b = xs_rules_builtin_namespaces(); b->prefix != NULL; b++) {
        if (strcmp(b->prefix, node->value) != 0)
            continue;
        char *uri = xs_strdup(b->uri);
        if (uri == NULL)
            return oom(ps);
        xs_free(node->value);
        node->value = uri;
        node->len = strlen(uri);
        return true;
    }
    return fail_at(ps, t->val_off,
                   "unknown namespace prefix '%.*s': expected a namespace URI or a prefix of "
                   "the built-in table (xmppscope rules namespaces)",
                   shown_len(node->value, node->len), node->value);
}

/* Checks and compiles the value of a key:value atom. */
static bool compile_value(pstate *ps, const token *t, xs_fnode *node)
{
    const char *v = node->value;
    switch (node->kind) {
    case XS_F_FROM:
    case XS_F_TO:
    case XS_F_JID:
        if (!xs_filter_jid_ok(v, node->len))
            return fail_at(ps, t->val_off,
                           "'%.*s' is not a JID: expected localpart@domain, domain, or either "
                           "with /resource",
                           shown_len(v, node->len), v);
        node->full = strchr(v, '/') != NULL;
        node->bare_len = node->full ? (size_t)(strchr(v, '/') - v) : node->len;
        return true;
    case XS_F_DIR:
        if (strcmp(v, "c2s") == 0 || strcmp(v, "s2c") == 0) {
            node->dir = v[0] == 'c' ? 1 : 2;
            return true;
        }
        return fail_at(ps, t->val_off, "expected c2s or s2c after 'dir:', not '%.*s'",
                       shown_len(v, node->len), v);
    case XS_F_NS:
        return compile_ns(ps, t, node);
    case XS_F_TEXT:
        return compile_text(ps, node);
    case XS_F_XPATH:
        return compile_xpath(ps, t, node);
    case XS_F_CHECK:
        for (size_t i = 0; i < node->len; i++)
            if (!is_key_char((unsigned char)v[i]))
                return fail_at(ps, source_offset(ps, t, i),
                               "expected a check id (letters, digits and '-': iq-unanswered)");
        return true;
    default:
        return true;
    }
}

static int parse_keyval(pstate *ps)
{
    token t = ps->tok;
    const char *key = ps->src + t.off;
    xs_fkind kind = XS_F_AND;
    bool found = false;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && !found; i++) {
        if (strlen(keys[i].name) == t.key_len && strncasecmp(keys[i].name, key, t.key_len) == 0) {
            kind = keys[i].kind;
            found = true;
        }
    }
    if (!found) {
        fail_at(ps, t.off, "unknown key '%.*s:': expected " KEY_LIST, shown_len(key, t.key_len),
                key);
        return -1;
    }
    if (t.val_end == t.val_off || (t.quoted && t.val_end - t.val_off == 2)) {
        fail_at(ps, t.val_off, "expected a value after '%.*s:'", (int)t.key_len, key);
        return -1;
    }
    int i = add_node(ps, kind, -1, -1);
    if (i < 0)
        return -1;
    xs_fnode *node = &ps->f->nodes[i];
    node->value = value_of(ps, &t, &node->len);
    if (node->value == NULL || !compile_value(ps, &t, node))
        return -1;
    return next(ps) ? i : -1;
}

static int parse_word(pstate *ps)
{
    static const struct {
        const char *name;
        xs_fkind kind;
    } words[] = {{"message", XS_F_MESSAGE},
                 {"presence", XS_F_PRESENCE},
                 {"iq", XS_F_IQ},
                 {"check", XS_F_CHECK}};
    for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++) {
        if (!word_is(ps, words[k].name))
            continue;
        int i = add_node(ps, words[k].kind, -1, -1);
        return i >= 0 && next(ps) ? i : -1;
    }
    const token *t = &ps->tok;
    const char *w = ps->src + t->off;
    if (memchr(w, '@', t->key_len) != NULL)
        fail_at(ps, t->off,
                "unknown word '%.*s': a JID needs a key (jid:, from: or to:); expected message, "
                "presence, iq, check, not, '(' or KEY:VALUE",
                shown_len(w, t->key_len), w);
    else
        fail_at(ps, t->off,
                "unknown word '%.*s': expected message, presence, iq, check, not, '(' or "
                "KEY:VALUE with KEY one of " KEY_LIST,
                shown_len(w, t->key_len), w);
    return -1;
}

/* ---- grammar --------------------------------------------------------------------------------- */

static int parse_or(pstate *ps);

static bool deeper(pstate *ps)
{
    if (++ps->depth <= XS_FILTER_MAX_DEPTH)
        return true;
    return fail_at(ps, ps->tok.off, "nested too deeply (at most %u levels of '(' and 'not')",
                   XS_FILTER_MAX_DEPTH);
}

static int parse_unary(pstate *ps, const char *after)
{
    token t = ps->tok;
    if (t.kind == T_WORD && word_is(ps, "not")) {
        if (!deeper(ps) || !next(ps))
            return -1;
        int a = parse_unary(ps, "after 'not'");
        ps->depth--;
        return a < 0 ? -1 : add_node(ps, XS_F_NOT, a, -1);
    }
    if (t.kind == T_LPAREN) {
        if (!deeper(ps) || !next(ps))
            return -1;
        int a = parse_or(ps);
        if (a < 0)
            return -1;
        if (ps->tok.kind != T_RPAREN) {
            fail_at(ps, ps->tok.off, "expected ')' to close the '(' at column %u",
                    column_of(ps->src, t.off));
            return -1;
        }
        ps->depth--;
        return next(ps) ? a : -1;
    }
    if ((t.kind == T_KEYVAL || t.kind == T_WORD) && ++ps->atoms > XS_FILTER_MAX_ATOMS) {
        fail_at(ps, t.off, "too many atoms (at most %u)", XS_FILTER_MAX_ATOMS);
        return -1;
    }
    if (t.kind == T_KEYVAL)
        return parse_keyval(ps);
    if (t.kind == T_WORD && !word_is(ps, "and") && !word_is(ps, "or"))
        return parse_word(ps);
    const char *found = t.kind == T_END      ? "the end"
                        : t.kind == T_RPAREN ? "')'"
                        : word_is(ps, "and") ? "'and'"
                                             : "'or'";
    fail_at(ps, t.off,
            "expected an atom (message, jid:JID, type:error, ...), 'not' or '(' %s, "
            "not %s",
            after, found);
    return -1;
}

static int parse_and(pstate *ps, const char *after)
{
    int a = parse_unary(ps, after);
    while (a >= 0) {
        const token *t = &ps->tok;
        if (t->kind == T_END || t->kind == T_RPAREN || word_is(ps, "or"))
            break;
        const char *what = "here";
        if (word_is(ps, "and")) {
            if (!next(ps))
                return -1;
            what = "after 'and'";
        }
        int b = parse_unary(ps, what);
        a = b < 0 ? -1 : add_node(ps, XS_F_AND, a, b);
    }
    return a;
}

static int parse_or(pstate *ps)
{
    const char *after = ps->depth > 0 ? "after '('" : "at the start";
    int a = parse_and(ps, after);
    while (a >= 0 && word_is(ps, "or")) {
        if (!next(ps))
            return -1;
        int b = parse_and(ps, "after 'or'");
        a = b < 0 ? -1 : add_node(ps, XS_F_OR, a, b);
    }
    return a;
}

/* Refuses what no expression may hold: more than the limit, invalid UTF-8, control characters. */
static bool check_chars(pstate *ps)
{
    if (ps->len > XS_FILTER_MAX_LEN) {
        size_t at = XS_FILTER_MAX_LEN;
        while (at > 0 && ((unsigned char)ps->src[at] & 0xC0) == 0x80)
            at--;
        return fail_at(ps, at, "the filter is longer than %u bytes", XS_FILTER_MAX_LEN);
    }
    for (size_t i = 0; i < ps->len;) {
        uint32_t cp;
        size_t k = xs_utf8_next((const unsigned char *)ps->src + i, ps->len - i, &cp);
        if (k == 0)
            return fail_at(ps, i, "invalid UTF-8: expected text");
        if ((cp < 0x20 && !is_blank((unsigned char)cp)) || cp == 0x7F || (cp >= 0x80 && cp < 0xA0))
            return fail_at(ps, i, "a control character (U+%04X) cannot appear in a filter",
                           (unsigned)cp);
        i += k;
    }
    return true;
}

int xs_filter_parse(const char *expr, xs_filter **out, xs_filter_error *err)
{
    *out = NULL;
    if (err != NULL) {
        err->column = 0;
        err->message[0] = 0;
    }
    pstate ps = {.src = expr, .len = strlen(expr), .err = err};
    ps.f = xs_calloc(1, sizeof(*ps.f));
    if (ps.f == NULL) {
        oom(&ps);
        return ps.rc;
    }
    if (check_chars(&ps) && next(&ps)) {
        if (ps.tok.kind == T_END) {
            fail_at(&ps, 0,
                    "the filter is empty: expected an atom such as message, "
                    "jid:alice@example.org or type:error");
        } else {
            int root = parse_or(&ps);
            if (root >= 0 && ps.tok.kind == T_RPAREN)
                fail_at(&ps, ps.tok.off,
                        "unexpected ')': no '(' is open; expected and, or, "
                        "not, an atom or the end");
            ps.f->root = root;
        }
    }
    if (ps.rc != 0) {
        xs_filter_free(ps.f);
        return ps.rc;
    }
    *out = ps.f;
    return 0;
}

void xs_filter_free(xs_filter *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n; i++) {
        xs_free(f->nodes[i].value);
        xs_free(f->nodes[i].kmp);
        xs_rules_unref(f->nodes[i].rules);
    }
    xs_free(f->nodes);
    xs_free(f);
}

int xs_filter_needs_tree(const xs_filter *f)
{
    return f != NULL && f->needs_tree;
}

/* ---- the normalised form --------------------------------------------------------------------- */

static int prec(xs_fkind k)
{
    return k == XS_F_OR ? 0 : k == XS_F_AND ? 1 : k == XS_F_NOT ? 2 : 3;
}

static void format_value(const xs_fnode *n, xs_buf *out)
{
    bool quote = n->len == 0;
    for (size_t i = 0; i < n->len && !quote; i++) {
        char c = n->value[i];
        quote = is_blank((unsigned char)c) || c == '(' || c == ')' || c == '"' || c == '\\';
    }
    if (!quote) {
        xs_buf_add(out, n->value, n->len);
        return;
    }
    xs_buf_adds(out, "\"");
    for (size_t i = 0; i < n->len; i++) {
        if (n->value[i] == '"' || n->value[i] == '\\')
            xs_buf_adds(out, "\\");
        xs_buf_add(out, &n->value[i], 1);
    }
    xs_buf_adds(out, "\"");
}

static void format_node(const xs_filter *f, int i, int min_prec, xs_buf *out)
{
    const xs_fnode *n = &f->nodes[i];
    bool paren = prec(n->kind) < min_prec;
    if (paren)
        xs_buf_adds(out, "(");
    switch (n->kind) {
    case XS_F_AND:
    case XS_F_OR:
        format_node(f, n->a, prec(n->kind), out);
        xs_buf_adds(out, n->kind == XS_F_AND ? " and " : " or ");
        format_node(f, n->b, prec(n->kind) + 1, out);
        break;
    case XS_F_NOT:
        xs_buf_adds(out, "not ");
        format_node(f, n->a, prec(XS_F_NOT), out);
        break;
    default:
        xs_buf_adds(out, xs_filter_key_name(n->kind));
        if (n->value != NULL) {
            xs_buf_adds(out, ":");
            /* text: shows its value lowered, as it is searched (without regard to case). */
            format_value(n, out);
        }
        break;
    }
    if (paren)
        xs_buf_adds(out, ")");
}

int xs_filter_format(const xs_filter *f, xs_buf *out)
{
    format_node(f, f->root, 0, out);
    return xs_buf_error(out);
}
