/* XPath for the rule engine: the quick evaluator's compiler. See rules_impl.h; the evaluator is
 * xpath_ns.c and the prefix rewriter xpath_rewrite.c.
 *
 * The quick evaluator parses a rewritten expression a second time, by recursive descent over the
 * subset it handles, into a small tree (xpath_quick.h) that xpath_ns.c evaluates. Anything
 * outside the subset leaves the expression to libxml2. */
#include "filters/rules_impl.h"
#include "filters/xpath_quick.h"

#include "inspect/error.h"

#include <libxml/xmlerror.h>
#include <libxml/xpathInternals.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void qnode_free(xs_qnode *q)
{
    if (q == NULL)
        return;
    qnode_free(q->a);
    qnode_free(q->b);
    for (size_t i = 0; i < q->n_steps; i++) {
        free(q->steps[i].local);
        for (size_t k = 0; k < q->steps[i].n_preds; k++)
            qnode_free(q->steps[i].preds[k]);
        free(q->steps[i].preds);
    }
    free(q->steps);
    free(q->str);
    free(q);
}

void xs_qx_free(xs_qx *q)
{
    if (q == NULL)
        return;
    qnode_free(q->top);
    free(q);
}

/* ---- compiling: a recursive-descent parser of the subset ---- */

typedef struct qparser {
    const char *s;
    size_t i;
    bool out; /* outside the subset */
    bool oom;
    unsigned depth, nodes;
} qparser;

/* Parentheses, predicates and calls nest at most this deep in the quick form, and it has at most
 * this many nodes and steps: so the recursion of compiling and evaluating it is bounded; a larger
 * expression is left to libxml2. */
#define QX_MAX_DEPTH 32
#define QX_MAX_NODES 256

static xs_qnode *parse_or(qparser *qp);

static void skip_blanks(qparser *qp)
{
    while (xs_xp_blank((unsigned char)qp->s[qp->i]))
        qp->i++;
}

/* Takes `tok` when it comes next (after blanks). A word must not be followed by a name
 * character. */
static bool take(qparser *qp, const char *tok)
{
    skip_blanks(qp);
    size_t n = strlen(tok);
    if (strncmp(qp->s + qp->i, tok, n) != 0)
        return false;
    if (xs_xp_name_start((unsigned char)tok[0]) && xs_xp_name_char((unsigned char)qp->s[qp->i + n]))
        return false;
    qp->i += n;
    return true;
}

static bool peek(qparser *qp, char c)
{
    skip_blanks(qp);
    return qp->s[qp->i] == c;
}

static xs_qnode *outside(qparser *qp)
{
    qp->out = true;
    return NULL;
}

static xs_qnode *new_node(qparser *qp, xs_qkind kind, xs_qtype type)
{
    if (++qp->nodes > QX_MAX_NODES)
        return outside(qp);
    xs_qnode *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        qp->oom = true;
        return NULL;
    }
    q->kind = kind;
    q->type = type;
    return q;
}

/* An NCName at the cursor: its length, 0 when none. */
static size_t ncname(const qparser *qp, size_t at)
{
    size_t i = at;
    if (!xs_xp_name_start((unsigned char)qp->s[i]))
        return 0;
    while (xs_xp_name_char((unsigned char)qp->s[i]))
        i++;
    return i - at;
}

/* The namespace of a rewritten prefix: xs-s or xs-N; -4 for any other (xml). */
static int prefix_ns(const char *p, size_t n)
{
    size_t pl = strlen(XS_XPATH_NS_PREFIX);
    if (n == strlen(XS_XPATH_STANZA_PREFIX) && memcmp(p, XS_XPATH_STANZA_PREFIX, n) == 0)
        return XS_QNS_STANZA;
    if (n <= pl || n > pl + 6 || memcmp(p, XS_XPATH_NS_PREFIX, pl) != 0)
        return -4;
    int idx = 0;
    for (size_t i = pl; i < n; i++) {
        if (!xs_xp_digit((unsigned char)p[i]))
            return -4;
        idx = idx * 10 + (p[i] - '0');
    }
    return idx;
}

/* A name test at the cursor: `*`, `NAME`, `PFX:NAME` or `PFX:*`, not followed by `(` or `::`.
 * Sets st->ns and st->local; an unprefixed name gets `plain_ns`. */
static bool name_test(qparser *qp, xs_qstep *st, int plain_ns)
{
    skip_blanks(qp);
    const char *s = qp->s;
    if (s[qp->i] == '*') {
        qp->i++;
        st->ns = XS_QNS_ANY;
        return true;
    }
    size_t n1 = ncname(qp, qp->i);
    if (n1 == 0)
        return false;
    size_t start = qp->i, local = start, local_len = n1;
    st->ns = plain_ns;
    qp->i += n1;
    if (s[qp->i] == ':' && s[qp->i + 1] != ':') {
        st->ns = prefix_ns(s + start, n1);
        if (st->ns < XS_QNS_STANZA)
            return false;
        qp->i++;
        local = qp->i;
        if (s[qp->i] == '*') {
            qp->i++;
            local_len = 0;
        } else if ((local_len = ncname(qp, qp->i)) == 0) {
            return false;
        }
        qp->i += local_len;
    }
    size_t m = qp->i;
    while (xs_xp_blank((unsigned char)s[m]))
        m++;
    if (s[m] == '(' || (s[m] == ':' && s[m + 1] == ':'))
        return false;
    if (local_len > 0 && (st->local = strndup(s + local, local_len)) == NULL)
        qp->oom = true;
    return !qp->oom;
}

static bool parse_preds(qparser *qp, xs_qstep *st)
{
    while (!qp->out && !qp->oom && peek(qp, '[')) {
        qp->i++;
        if (++qp->depth > QX_MAX_DEPTH)
            return outside(qp), false;
        xs_qnode *p = parse_or(qp);
        qp->depth--;
        if (p == NULL)
            return false;
        xs_qnode **np = realloc(st->preds, (st->n_preds + 1) * sizeof(*np));
        if (np == NULL) {
            qnode_free(p);
            qp->oom = true;
            return false;
        }
        st->preds = np;
        st->preds[st->n_preds++] = p;
        /* A number is a position: not in the subset. */
        if (p->type == XS_QT_NUMBER || !take(qp, "]"))
            return outside(qp), false;
    }
    return !qp->out && !qp->oom;
}

static bool parse_step(qparser *qp, xs_qstep *st)
{
    memset(st, 0, sizeof(*st));
    skip_blanks(qp);
    const char *s = qp->s + qp->i;
    if (s[0] == '.') {
        if (s[1] == '.')
            return outside(qp), false;
        qp->i++;
        st->kind = XS_ST_SELF;
        return true;
    }
    if (s[0] == '@') {
        qp->i++;
        st->kind = XS_ST_ATTRIBUTE;
        if (!name_test(qp, st, XS_QNS_NONE))
            return outside(qp), false;
        if (st->ns == XS_QNS_STANZA)
            return outside(qp), false;
    } else if (take(qp, "text")) {
        if (!take(qp, "(") || !take(qp, ")"))
            return outside(qp), false;
        st->kind = XS_ST_TEXT;
    } else {
        st->kind = XS_ST_ELEMENT;
        /* Element names are all prefixed once rewritten: an unprefixed one is not a name. */
        if (!name_test(qp, st, -4) || st->ns == -4)
            return outside(qp), false;
    }
    return parse_preds(qp, st);
}

static xs_qnode *parse_path(qparser *qp)
{
    xs_qnode *q = new_node(qp, XS_Q_PATH, XS_QT_NODES);
    if (q == NULL)
        return NULL;
    skip_blanks(qp);
    if (qp->s[qp->i] == '/') {
        if (qp->s[qp->i + 1] == '/')
            goto out;
        qp->i++;
        q->absolute = true;
    }
    for (;;) {
        if (++qp->nodes > QX_MAX_NODES)
            goto out;
        xs_qstep *ns = realloc(q->steps, (q->n_steps + 1) * sizeof(*ns));
        if (ns == NULL) {
            qp->oom = true;
            goto fail;
        }
        q->steps = ns;
        bool ok = parse_step(qp, &q->steps[q->n_steps]);
        q->n_steps++;
        if (!ok)
            goto fail;
        /* Only an element has children: an attribute or text step ends the path. */
        if (q->steps[q->n_steps - 1].kind == XS_ST_ATTRIBUTE ||
            q->steps[q->n_steps - 1].kind == XS_ST_TEXT || !peek(qp, '/'))
            break;
        qp->i++;
        if (qp->s[qp->i] == '/')
            goto out;
    }
    if (peek(qp, '/'))
        goto out;
    /* The document has one child, the stanza, and no text or attributes. */
    if (q->absolute && q->steps[0].kind != XS_ST_ELEMENT)
        goto out;
    return q;
out:
    qp->out = true;
fail:
    qnode_free(q);
    return NULL;
}

static const struct qfunc {
    const char *name;
    xs_qkind kind;
    xs_qtype type;
    unsigned min, max; /* arguments */
} qfuncs[] = {
    {"not", XS_Q_NOT, XS_QT_BOOLEAN, 1, 1},
    {"true", XS_Q_TRUE, XS_QT_BOOLEAN, 0, 0},
    {"false", XS_Q_FALSE, XS_QT_BOOLEAN, 0, 0},
    {"boolean", XS_Q_BOOLEAN, XS_QT_BOOLEAN, 1, 1},
    {"contains", XS_Q_CONTAINS, XS_QT_BOOLEAN, 2, 2},
    {"starts-with", XS_Q_STARTS_WITH, XS_QT_BOOLEAN, 2, 2},
    {"string-length", XS_Q_STRING_LENGTH, XS_QT_NUMBER, 0, 1},
    {"string", XS_Q_STRING, XS_QT_STRING, 0, 1},
    {"number", XS_Q_TO_NUMBER, XS_QT_NUMBER, 0, 1},
    {"count", XS_Q_COUNT, XS_QT_NUMBER, 1, 1},
    {"local-name", XS_Q_LOCAL_NAME, XS_QT_STRING, 0, 1},
    {"namespace-uri", XS_Q_NAMESPACE_URI, XS_QT_STRING, 0, 1},
};

/* Whether a function of `kind` takes an argument of `type` without a conversion the subset
 * leaves out (a number or boolean made a string). */
static bool arg_ok(xs_qkind kind, xs_qtype type)
{
    switch (kind) {
    case XS_Q_NOT:
    case XS_Q_BOOLEAN:
    case XS_Q_TO_NUMBER:
        return true;
    case XS_Q_COUNT:
    case XS_Q_LOCAL_NAME:
    case XS_Q_NAMESPACE_URI:
        return type == XS_QT_NODES;
    default:
        return type == XS_QT_NODES || type == XS_QT_STRING;
    }
}

static xs_qnode *parse_call(qparser *qp, const struct qfunc *f)
{
    xs_qnode *q = new_node(qp, f->kind, f->type);
    if (q == NULL)
        return NULL;
    take(qp, "(");
    unsigned n = 0;
    if (++qp->depth > QX_MAX_DEPTH)
        goto out;
    if (!take(qp, ")")) {
        for (;;) {
            xs_qnode *arg = parse_or(qp);
            if (arg == NULL)
                goto fail;
            if (n == 0)
                q->a = arg;
            else if (n == 1)
                q->b = arg;
            else
                qnode_free(arg);
            n++;
            if (!arg_ok(f->kind, arg->type))
                goto out;
            if (take(qp, ")"))
                break;
            if (!take(qp, ","))
                goto out;
        }
    }
    if (n < f->min || n > f->max)
        goto out;
    qp->depth--;
    return q;
out:
    qp->out = true;
fail:
    qnode_free(q);
    return NULL;
}

static xs_qnode *parse_primary(qparser *qp)
{
    skip_blanks(qp);
    const char *s = qp->s + qp->i;
    xs_qnode *q = NULL;
    if (s[0] == '(') {
        qp->i++;
        if (++qp->depth > QX_MAX_DEPTH)
            return outside(qp);
        q = parse_or(qp);
        qp->depth--;
        if (q != NULL && !take(qp, ")")) {
            qnode_free(q);
            return outside(qp);
        }
    } else if (s[0] == '\'' || s[0] == '"') {
        const char *end = strchr(s + 1, s[0]);
        if (end == NULL)
            return outside(qp);
        if ((q = new_node(qp, XS_Q_LITERAL, XS_QT_STRING)) == NULL)
            return NULL;
        q->len = (size_t)(end - s - 1);
        if ((q->str = strndup(s + 1, q->len)) == NULL) {
            qp->oom = true;
            qnode_free(q);
            return NULL;
        }
        qp->i += q->len + 2;
    } else if (xs_xp_digit((unsigned char)s[0]) ||
               (s[0] == '.' && xs_xp_digit((unsigned char)s[1]))) {
        size_t n = 0;
        while (xs_xp_digit((unsigned char)s[n]) || s[n] == '.')
            n++;
        char num[64];
        if (n >= sizeof(num) || (q = new_node(qp, XS_Q_NUMBER, XS_QT_NUMBER)) == NULL)
            return n >= sizeof(num) ? outside(qp) : NULL;
        memcpy(num, s, n);
        num[n] = 0;
        /* The conversion XPath's number() does: the same as libxml2 compiling the literal. */
        q->num = xmlXPathStringEvalNumber(BAD_CAST num);
        qp->i += n;
    } else {
        size_t n = ncname(qp, qp->i);
        size_t m = qp->i + n;
        while (n > 0 && xs_xp_blank((unsigned char)qp->s[m]))
            m++;
        if (n > 0 && qp->s[m] == '(' && !(n == 4 && memcmp(s, "text", 4) == 0)) {
            for (size_t k = 0; k < sizeof(qfuncs) / sizeof(qfuncs[0]); k++)
                if (strlen(qfuncs[k].name) == n && memcmp(qfuncs[k].name, s, n) == 0) {
                    qp->i += n;
                    q = parse_call(qp, &qfuncs[k]);
                    break;
                }
            if (q == NULL && !qp->oom)
                return outside(qp);
        } else {
            return parse_path(qp);
        }
    }
    /* A filter expression (`(...)[1]`, `f()/x`) is not in the subset. */
    if (q != NULL && (peek(qp, '[') || peek(qp, '/'))) {
        qnode_free(q);
        return outside(qp);
    }
    return q;
}

/* A boolean node of `kind` with the operand `a` (parsed already) and the one `next` parses.
 * On failure both are freed and NULL returned. */
static xs_qnode *binary(qparser *qp, xs_qkind kind, xs_qnode *a, xs_qnode *(*next)(qparser *))
{
    xs_qnode *q = new_node(qp, kind, XS_QT_BOOLEAN);
    xs_qnode *b = q != NULL ? next(qp) : NULL;
    if (b == NULL) {
        qnode_free(q);
        qnode_free(a);
        return NULL;
    }
    q->a = a;
    q->b = b;
    return q;
}

static xs_qnode *parse_cmp(qparser *qp)
{
    static const struct {
        const char *tok;
        xs_qop op;
    } ops[] = {{"!=", XS_OP_NE}, {"<=", XS_OP_LE}, {">=", XS_OP_GE},
               {"=", XS_OP_EQ},  {"<", XS_OP_LT},  {">", XS_OP_GT}};
    xs_qnode *a = parse_primary(qp);
    if (a == NULL)
        return NULL;
    for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
        if (!take(qp, ops[k].tok))
            continue;
        xs_qnode *q = binary(qp, XS_Q_CMP, a, parse_primary);
        if (q == NULL)
            return NULL;
        q->op = ops[k].op;
        /* Two node-sets, or a chain of comparisons, are not in the subset. */
        skip_blanks(qp);
        char c = qp->s[qp->i];
        if ((a->type == XS_QT_NODES && q->b->type == XS_QT_NODES) || c == '=' || c == '!' ||
            c == '<' || c == '>') {
            qnode_free(q);
            return outside(qp);
        }
        return q;
    }
    return a;
}

static xs_qnode *parse_bool(qparser *qp, xs_qkind kind, const char *word,
                            xs_qnode *(*next)(qparser *))
{
    xs_qnode *a = next(qp);
    while (a != NULL && take(qp, word))
        a = binary(qp, kind, a, next);
    return a;
}

static xs_qnode *parse_and(qparser *qp)
{
    return parse_bool(qp, XS_Q_AND, "and", parse_cmp);
}

static xs_qnode *parse_or(qparser *qp)
{
    return parse_bool(qp, XS_Q_OR, "or", parse_and);
}

int xs_qx_compile(const char *expr, bool nodes, xs_qx **out)
{
    qparser qp = {.s = expr};
    *out = NULL;
    xs_qnode *top = parse_or(&qp);
    if (qp.oom) {
        qnode_free(top);
        return XS_ENOMEM;
    }
    skip_blanks(&qp);
    /* Anything left over (an operator of the full language) is outside the subset. */
    if (top == NULL || qp.out || qp.s[qp.i] != 0 || (nodes && top->kind != XS_Q_PATH)) {
        qnode_free(top);
        return 0;
    }
    if ((*out = malloc(sizeof(**out))) == NULL) {
        qnode_free(top);
        return XS_ENOMEM;
    }
    (*out)->top = top;
    return 0;
}
