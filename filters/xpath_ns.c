/* XPath for the rule engine: the quick evaluator. See rules_impl.h; the prefix rewriter is in
 * xpath_rewrite.c.
 *
 * The quick evaluator parses a rewritten expression a second time, by recursive descent over the
 * subset it handles, into a small tree, and evaluates that with XPath 1.0's rules of conversion
 * and comparison (section 3.4) on libxml2's nodes; numbers are converted by libxml2's own
 * xmlXPathStringEvalNumber(), so that both agree on what a string's number is. Its node-sets are
 * never built: a path is walked depth-first, which for child steps is document order, and a
 * visitor stops the walk as soon as the answer is known. */
#include "filters/rules_impl.h"

#include "inspect/error.h"

#include <libxml/xmlerror.h>
#include <libxml/xpathInternals.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* The character classes of XPath's tokens, as the rewriter reads them. */
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

/* ---- the quick evaluator --------------------------------------------------------------------- */

typedef enum qtype { QT_NODES, QT_STRING, QT_NUMBER, QT_BOOLEAN } qtype;

typedef enum qkind {
    Q_PATH,
    Q_LITERAL,
    Q_NUMBER,
    Q_OR,
    Q_AND,
    Q_CMP,
    Q_NOT,
    Q_TRUE,
    Q_FALSE,
    Q_BOOLEAN,
    Q_CONTAINS,
    Q_STARTS_WITH,
    Q_STRING_LENGTH,
    Q_STRING,
    Q_TO_NUMBER,
    Q_COUNT,
    Q_LOCAL_NAME,
    Q_NAMESPACE_URI,
} qkind;

typedef enum qop { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE } qop;

typedef enum qstep_kind { ST_ELEMENT, ST_ATTRIBUTE, ST_TEXT, ST_SELF } qstep_kind;

/* Namespaces of name tests, besides an index in the URI table. */
#define QNS_STANZA (-1) /* xs-s: the stream's content namespace */
#define QNS_ANY (-2)    /* `*` or `@*`: any name in any namespace */
#define QNS_NONE (-3)   /* an attribute name without a prefix: no namespace */

typedef struct qnode qnode;

typedef struct qstep {
    qstep_kind kind;
    int ns;      /* for ST_ELEMENT and ST_ATTRIBUTE */
    char *local; /* NULL: any local name */
    qnode **preds;
    size_t n_preds;
} qstep;

struct qnode {
    qkind kind;
    qtype type;
    qnode *a, *b; /* operands and arguments, NULL when absent */
    qop op;       /* Q_CMP */
    bool absolute;
    qstep *steps; /* Q_PATH */
    size_t n_steps;
    char *str; /* Q_LITERAL, NUL-terminated */
    size_t len;
    double num; /* Q_NUMBER */
};

struct xs_qx {
    qnode *top;
};

static void qnode_free(qnode *q)
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

static qnode *parse_or(qparser *qp);

static void skip_blanks(qparser *qp)
{
    while (blank((unsigned char)qp->s[qp->i]))
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
    if (name_start((unsigned char)tok[0]) && name_char((unsigned char)qp->s[qp->i + n]))
        return false;
    qp->i += n;
    return true;
}

static bool peek(qparser *qp, char c)
{
    skip_blanks(qp);
    return qp->s[qp->i] == c;
}

static qnode *outside(qparser *qp)
{
    qp->out = true;
    return NULL;
}

static qnode *new_node(qparser *qp, qkind kind, qtype type)
{
    if (++qp->nodes > QX_MAX_NODES)
        return outside(qp);
    qnode *q = calloc(1, sizeof(*q));
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
    if (!name_start((unsigned char)qp->s[i]))
        return 0;
    while (name_char((unsigned char)qp->s[i]))
        i++;
    return i - at;
}

/* The namespace of a rewritten prefix: xs-s or xs-N; -4 for any other (xml). */
static int prefix_ns(const char *p, size_t n)
{
    size_t pl = strlen(XS_XPATH_NS_PREFIX);
    if (n == strlen(XS_XPATH_STANZA_PREFIX) && memcmp(p, XS_XPATH_STANZA_PREFIX, n) == 0)
        return QNS_STANZA;
    if (n <= pl || n > pl + 6 || memcmp(p, XS_XPATH_NS_PREFIX, pl) != 0)
        return -4;
    int idx = 0;
    for (size_t i = pl; i < n; i++) {
        if (!digit((unsigned char)p[i]))
            return -4;
        idx = idx * 10 + (p[i] - '0');
    }
    return idx;
}

/* A name test at the cursor: `*`, `NAME`, `PFX:NAME` or `PFX:*`, not followed by `(` or `::`.
 * Sets st->ns and st->local; an unprefixed name gets `plain_ns`. */
static bool name_test(qparser *qp, qstep *st, int plain_ns)
{
    skip_blanks(qp);
    const char *s = qp->s;
    if (s[qp->i] == '*') {
        qp->i++;
        st->ns = QNS_ANY;
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
        if (st->ns < QNS_STANZA)
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
    while (blank((unsigned char)s[m]))
        m++;
    if (s[m] == '(' || (s[m] == ':' && s[m + 1] == ':'))
        return false;
    if (local_len > 0 && (st->local = strndup(s + local, local_len)) == NULL)
        qp->oom = true;
    return !qp->oom;
}

static bool parse_preds(qparser *qp, qstep *st)
{
    while (!qp->out && !qp->oom && peek(qp, '[')) {
        qp->i++;
        if (++qp->depth > QX_MAX_DEPTH)
            return outside(qp), false;
        qnode *p = parse_or(qp);
        qp->depth--;
        if (p == NULL)
            return false;
        qnode **np = realloc(st->preds, (st->n_preds + 1) * sizeof(*np));
        if (np == NULL) {
            qnode_free(p);
            qp->oom = true;
            return false;
        }
        st->preds = np;
        st->preds[st->n_preds++] = p;
        /* A number is a position: not in the subset. */
        if (p->type == QT_NUMBER || !take(qp, "]"))
            return outside(qp), false;
    }
    return !qp->out && !qp->oom;
}

static bool parse_step(qparser *qp, qstep *st)
{
    memset(st, 0, sizeof(*st));
    skip_blanks(qp);
    const char *s = qp->s + qp->i;
    if (s[0] == '.') {
        if (s[1] == '.')
            return outside(qp), false;
        qp->i++;
        st->kind = ST_SELF;
        return true;
    }
    if (s[0] == '@') {
        qp->i++;
        st->kind = ST_ATTRIBUTE;
        if (!name_test(qp, st, QNS_NONE))
            return outside(qp), false;
        if (st->ns == QNS_STANZA)
            return outside(qp), false;
    } else if (take(qp, "text")) {
        if (!take(qp, "(") || !take(qp, ")"))
            return outside(qp), false;
        st->kind = ST_TEXT;
    } else {
        st->kind = ST_ELEMENT;
        /* Element names are all prefixed once rewritten: an unprefixed one is not a name. */
        if (!name_test(qp, st, -4) || st->ns == -4)
            return outside(qp), false;
    }
    return parse_preds(qp, st);
}

static qnode *parse_path(qparser *qp)
{
    qnode *q = new_node(qp, Q_PATH, QT_NODES);
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
        qstep *ns = realloc(q->steps, (q->n_steps + 1) * sizeof(*ns));
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
        if (q->steps[q->n_steps - 1].kind == ST_ATTRIBUTE ||
            q->steps[q->n_steps - 1].kind == ST_TEXT || !peek(qp, '/'))
            break;
        qp->i++;
        if (qp->s[qp->i] == '/')
            goto out;
    }
    if (peek(qp, '/'))
        goto out;
    /* The document has one child, the stanza, and no text or attributes. */
    if (q->absolute && q->steps[0].kind != ST_ELEMENT)
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
    qkind kind;
    qtype type;
    unsigned min, max; /* arguments */
} qfuncs[] = {
    {"not", Q_NOT, QT_BOOLEAN, 1, 1},
    {"true", Q_TRUE, QT_BOOLEAN, 0, 0},
    {"false", Q_FALSE, QT_BOOLEAN, 0, 0},
    {"boolean", Q_BOOLEAN, QT_BOOLEAN, 1, 1},
    {"contains", Q_CONTAINS, QT_BOOLEAN, 2, 2},
    {"starts-with", Q_STARTS_WITH, QT_BOOLEAN, 2, 2},
    {"string-length", Q_STRING_LENGTH, QT_NUMBER, 0, 1},
    {"string", Q_STRING, QT_STRING, 0, 1},
    {"number", Q_TO_NUMBER, QT_NUMBER, 0, 1},
    {"count", Q_COUNT, QT_NUMBER, 1, 1},
    {"local-name", Q_LOCAL_NAME, QT_STRING, 0, 1},
    {"namespace-uri", Q_NAMESPACE_URI, QT_STRING, 0, 1},
};

/* Whether a function of `kind` takes an argument of `type` without a conversion the subset
 * leaves out (a number or boolean made a string). */
static bool arg_ok(qkind kind, qtype type)
{
    switch (kind) {
    case Q_NOT:
    case Q_BOOLEAN:
    case Q_TO_NUMBER:
        return true;
    case Q_COUNT:
    case Q_LOCAL_NAME:
    case Q_NAMESPACE_URI:
        return type == QT_NODES;
    default:
        return type == QT_NODES || type == QT_STRING;
    }
}

static qnode *parse_call(qparser *qp, const struct qfunc *f)
{
    qnode *q = new_node(qp, f->kind, f->type);
    if (q == NULL)
        return NULL;
    take(qp, "(");
    unsigned n = 0;
    if (++qp->depth > QX_MAX_DEPTH)
        goto out;
    if (!take(qp, ")")) {
        for (;;) {
            qnode *arg = parse_or(qp);
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

static qnode *parse_primary(qparser *qp)
{
    skip_blanks(qp);
    const char *s = qp->s + qp->i;
    qnode *q = NULL;
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
        if ((q = new_node(qp, Q_LITERAL, QT_STRING)) == NULL)
            return NULL;
        q->len = (size_t)(end - s - 1);
        if ((q->str = strndup(s + 1, q->len)) == NULL) {
            qp->oom = true;
            qnode_free(q);
            return NULL;
        }
        qp->i += q->len + 2;
    } else if (digit((unsigned char)s[0]) || (s[0] == '.' && digit((unsigned char)s[1]))) {
        size_t n = 0;
        while (digit((unsigned char)s[n]) || s[n] == '.')
            n++;
        char num[64];
        if (n >= sizeof(num) || (q = new_node(qp, Q_NUMBER, QT_NUMBER)) == NULL)
            return n >= sizeof(num) ? outside(qp) : NULL;
        memcpy(num, s, n);
        num[n] = 0;
        /* The conversion XPath's number() does: the same as libxml2 compiling the literal. */
        q->num = xmlXPathStringEvalNumber(BAD_CAST num);
        qp->i += n;
    } else {
        size_t n = ncname(qp, qp->i);
        size_t m = qp->i + n;
        while (n > 0 && blank((unsigned char)qp->s[m]))
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
static qnode *binary(qparser *qp, qkind kind, qnode *a, qnode *(*next)(qparser *))
{
    qnode *q = new_node(qp, kind, QT_BOOLEAN);
    qnode *b = q != NULL ? next(qp) : NULL;
    if (b == NULL) {
        qnode_free(q);
        qnode_free(a);
        return NULL;
    }
    q->a = a;
    q->b = b;
    return q;
}

static qnode *parse_cmp(qparser *qp)
{
    static const struct {
        const char *tok;
        qop op;
    } ops[] = {{"!=", OP_NE}, {"<=", OP_LE}, {">=", OP_GE},
               {"=", OP_EQ},  {"<", OP_LT},  {">", OP_GT}};
    qnode *a = parse_primary(qp);
    if (a == NULL)
        return NULL;
    for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
        if (!take(qp, ops[k].tok))
            continue;
        qnode *q = binary(qp, Q_CMP, a, parse_primary);
        if (q == NULL)
            return NULL;
        q->op = ops[k].op;
        /* Two node-sets, or a chain of comparisons, are not in the subset. */
        skip_blanks(qp);
        char c = qp->s[qp->i];
        if ((a->type == QT_NODES && q->b->type == QT_NODES) || c == '=' || c == '!' || c == '<' ||
            c == '>') {
            qnode_free(q);
            return outside(qp);
        }
        return q;
    }
    return a;
}

static qnode *parse_bool(qparser *qp, qkind kind, const char *word, qnode *(*next)(qparser *))
{
    qnode *a = next(qp);
    while (a != NULL && take(qp, word))
        a = binary(qp, kind, a, next);
    return a;
}

static qnode *parse_and(qparser *qp)
{
    return parse_bool(qp, Q_AND, "and", parse_cmp);
}

static qnode *parse_or(qparser *qp)
{
    return parse_bool(qp, Q_OR, "or", parse_and);
}

int xs_qx_compile(const char *expr, bool nodes, xs_qx **out)
{
    qparser qp = {.s = expr};
    *out = NULL;
    qnode *top = parse_or(&qp);
    if (qp.oom) {
        qnode_free(top);
        return XS_ENOMEM;
    }
    skip_blanks(&qp);
    /* Anything left over (an operator of the full language) is outside the subset. */
    if (top == NULL || qp.out || qp.s[qp.i] != 0 || (nodes && top->kind != Q_PATH)) {
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

/* ---- evaluating ---- */

typedef struct qrun {
    const xs_qx_env *env;
    xmlNode *root;
    unsigned long ops;
    bool gave_up;
} qrun;

/* A string value: `s` is NUL-terminated; `owned` is what to free (NULL when it points into the
 * tree or the expression). */
typedef struct qstr {
    const char *s;
    size_t len;
    char *owned;
} qstr;

static void qstr_set(qstr *q, const xmlChar *s)
{
    q->s = s != NULL ? (const char *)s : "";
    q->len = strlen(q->s);
    q->owned = NULL;
}

/* Visits a node of a path; returns false to stop the walk. */
typedef bool (*qvisit)(qrun *r, xmlNode *node, void *user);

static bool spend_op(qrun *r)
{
    if (++r->ops <= r->env->op_limit)
        return true;
    r->gave_up = true;
    return false;
}

static const char *ns_uri(const qrun *r, int ns)
{
    return ns == QNS_STANZA ? r->env->stanza_ns : r->env->uris[ns];
}

static bool name_matches(const qrun *r, const qstep *st, const xmlNode *n)
{
    if (st->ns == QNS_ANY)
        return true;
    if (st->local != NULL &&
        (n->name[0] != st->local[0] || strcmp((const char *)n->name, st->local) != 0))
        return false;
    if (st->ns == QNS_NONE)
        return n->ns == NULL;
    if (n->ns == NULL || n->ns->href == NULL)
        return false;
    /* The content namespace is usually the very string of the stream's declaration. */
    const char *uri = ns_uri(r, st->ns);
    return (const char *)n->ns->href == uri || strcmp((const char *)n->ns->href, uri) == 0;
}

static int eval_bool(qrun *r, const qnode *q, xmlNode *ctx);

/* 1 when every predicate of `st` holds for `node`, 0 when one does not, -1 gave up. */
static int preds_hold(qrun *r, const qstep *st, xmlNode *node)
{
    for (size_t i = 0; i < st->n_preds; i++) {
        int yes = eval_bool(r, st->preds[i], node);
        if (yes != 1)
            return yes;
    }
    return 1;
}

/* Walks steps i.. of path `p` from `ctx`, in document order. Returns false when the visitor
 * stopped the walk or the evaluation gave up. */
static bool walk(qrun *r, const qnode *p, size_t i, xmlNode *ctx, qvisit visit, void *user)
{
    if (i == p->n_steps)
        return visit(r, ctx, user);
    const qstep *st = &p->steps[i];
    if (st->kind == ST_SELF)
        return walk(r, p, i + 1, ctx, visit, user);
    if (ctx->type != XML_ELEMENT_NODE)
        return true;
    if (st->kind == ST_ATTRIBUTE) {
        for (xmlAttr *a = ctx->properties; a != NULL; a = a->next) {
            if (!spend_op(r))
                return false;
            if (!name_matches(r, st, (xmlNode *)a))
                continue;
            int yes = preds_hold(r, st, (xmlNode *)a);
            if (yes < 0 || (yes == 1 && !walk(r, p, i + 1, (xmlNode *)a, visit, user)))
                return false;
        }
        return true;
    }
    for (xmlNode *c = ctx->children; c != NULL; c = c->next) {
        if (!spend_op(r))
            return false;
        if (st->kind == ST_TEXT ? c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE
                                : c->type != XML_ELEMENT_NODE || !name_matches(r, st, c))
            continue;
        int yes = preds_hold(r, st, c);
        if (yes < 0 || (yes == 1 && !walk(r, p, i + 1, c, visit, user)))
            return false;
    }
    return true;
}

/* Walks path `p` from `ctx` (an absolute path from the stanza's document, whose one child is
 * the stanza). Returns false when stopped or given up. */
static bool walk_path(qrun *r, const qnode *p, xmlNode *ctx, qvisit visit, void *user)
{
    if (!p->absolute)
        return walk(r, p, 0, ctx, visit, user);
    const qstep *st = &p->steps[0];
    if (!spend_op(r))
        return false;
    if (!name_matches(r, st, r->root))
        return true;
    int yes = preds_hold(r, st, r->root);
    return yes == 0 || (yes == 1 && walk(r, p, 1, r->root, visit, user));
}

static bool visit_first(qrun *r, xmlNode *node, void *user)
{
    (void)r;
    *(xmlNode **)user = node;
    return false;
}

/* The first node of path `p` in document order, or NULL; sets r->gave_up. */
static xmlNode *first_node(qrun *r, const qnode *p, xmlNode *ctx)
{
    xmlNode *found = NULL;
    walk_path(r, p, ctx, visit_first, &found);
    return found;
}

/* XPath's string-value of a node: the text it holds (for an element, of all its descendants in
 * document order). Points into the tree unless the text is in several nodes. */
static bool string_value(qrun *r, const xmlNode *node, qstr *out)
{
    if (node->type != XML_ELEMENT_NODE && node->type != XML_ATTRIBUTE_NODE) {
        qstr_set(out, node->content);
        return true;
    }
    const xmlNode *only = NULL;
    size_t count = 0, total = 0;
    const xmlNode *top = node;
    for (const xmlNode *n = node->children; n != NULL;) {
        if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
            only = n;
            count++;
            total += n->content != NULL ? strlen((const char *)n->content) : 0;
        }
        if (n->type == XML_ELEMENT_NODE && n->children != NULL) {
            n = n->children;
            continue;
        }
        while (n != top && n->next == NULL)
            n = n->parent;
        n = n == top ? NULL : n->next;
    }
    if (count <= 1) {
        qstr_set(out, only != NULL ? only->content : NULL);
        return true;
    }
    char *buf = malloc(total + 1);
    if (buf == NULL) {
        r->gave_up = true;
        return false;
    }
    size_t at = 0;
    for (const xmlNode *n = node->children; n != NULL;) {
        if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) && n->content) {
            size_t k = strlen((const char *)n->content);
            memcpy(buf + at, n->content, k);
            at += k;
        }
        if (n->type == XML_ELEMENT_NODE && n->children != NULL) {
            n = n->children;
            continue;
        }
        while (n != top && n->next == NULL)
            n = n->parent;
        n = n == top ? NULL : n->next;
    }
    buf[at] = 0;
    out->s = out->owned = buf;
    out->len = at;
    return true;
}

/* Evaluates a string-typed or node-set expression as a string (a node-set: the string-value of
 * its first node, "" when empty). False when it gave up. */
static bool eval_str(qrun *r, const qnode *q, xmlNode *ctx, qstr *out)
{
    qstr_set(out, NULL);
    xmlNode *n = ctx;
    switch (q->kind) {
    case Q_LITERAL:
        out->s = q->str;
        out->len = q->len;
        return true;
    case Q_PATH:
        n = first_node(r, q, ctx);
        return r->gave_up ? false : n == NULL || string_value(r, n, out);
    case Q_STRING:
        if (q->a != NULL)
            return eval_str(r, q->a, ctx, out);
        return string_value(r, ctx, out);
    case Q_LOCAL_NAME:
    case Q_NAMESPACE_URI:
        if (q->a != NULL && (n = first_node(r, q->a, ctx)) == NULL)
            return !r->gave_up;
        if (n->type != XML_ELEMENT_NODE && n->type != XML_ATTRIBUTE_NODE)
            return true;
        if (q->kind == Q_LOCAL_NAME)
            qstr_set(out, n->name);
        else if (n->ns != NULL)
            qstr_set(out, n->ns->href);
        return true;
    default:
        /* Compiling keeps numbers and booleans from places that want strings. */
        r->gave_up = true;
        return false;
    }
}

static void qstr_free(qstr *s)
{
    free(s->owned);
    s->owned = NULL;
}

static bool visit_count(qrun *r, xmlNode *node, void *user)
{
    (void)r;
    (void)node;
    (*(double *)user)++;
    return true;
}

/* How common a byte is in chat text and XML values (higher: more common), to pick the byte of a
 * needle worth looking for first. */
static unsigned byte_rank(unsigned char c)
{
    if (c == ' ' || c == 'e' || c == 't' || c == 'a' || c == 'o' || c == 'i' || c == 'n')
        return 4;
    if (c >= 'a' && c <= 'z')
        return 3;
    if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80)
        return 2;
    return c == '.' || c == ',' ? 1 : 0;
}

/* Whether t[0, tn) occurs in s[0, sn): memchr() for the needle's least common byte, then a
 * compare around each one found; memmem() when that byte turns out common in this text. */
static bool contains(const char *s, size_t sn, const char *t, size_t tn)
{
    if (tn == 0)
        return true;
    if (tn > sn)
        return false;
    size_t k = 0;
    for (size_t i = 1; i < tn; i++)
        if (byte_rank((unsigned char)t[i]) < byte_rank((unsigned char)t[k]))
            k = i;
    /* The rare byte sits at s[k] to s[sn - tn + k]. */
    const char *p = s + k, *end = s + (sn - tn + k + 1);
    size_t tries = 16 + sn / 64;
    while (p < end) {
        p = memchr(p, t[k], (size_t)(end - p));
        if (p == NULL)
            return false;
        if (memcmp(p - k, t, tn) == 0)
            return true;
        if (--tries == 0)
            return memmem(p - k + 1, (size_t)(s + sn - (p - k + 1)), t, tn) != NULL;
        p++;
    }
    return false;
}

/* The characters of n bytes of UTF-8: the bytes that do not continue a sequence. */
static size_t utf8_chars(const char *s, size_t n)
{
    size_t cont = 0, i = 0;
#if defined(__SSE2__)
    /* Continuation bytes 0x80-0xBF are the signed bytes below -64. Each block adds 1 to the
     * byte lanes that hold one; the lanes are summed before any can reach 256. */
    const __m128i below = _mm_set1_epi8(-64), zero = _mm_setzero_si128();
    while (n - i >= 16) {
        __m128i acc = zero;
        for (int k = 0; k < 255 && n - i >= 16; k++, i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
            acc = _mm_sub_epi8(acc, _mm_cmplt_epi8(v, below));
        }
        __m128i sums = _mm_sad_epu8(acc, zero);
        cont += (size_t)_mm_cvtsi128_si32(sums) + (size_t)_mm_extract_epi16(sums, 4);
    }
#endif
    for (; i < n; i++)
        cont += ((unsigned char)s[i] & 0xC0) == 0x80;
    return n - cont;
}

/* Evaluates `q` as by XPath's number(). False when it gave up. */
static bool eval_num(qrun *r, const qnode *q, xmlNode *ctx, double *out)
{
    qstr s;
    switch (q->type) {
    case QT_BOOLEAN: {
        int yes = eval_bool(r, q, ctx);
        *out = yes == 1;
        return yes >= 0;
    }
    case QT_NODES:
    case QT_STRING:
        if (!eval_str(r, q, ctx, &s))
            return false;
        *out = xmlXPathStringEvalNumber(BAD_CAST s.s);
        qstr_free(&s);
        return true;
    case QT_NUMBER:
        break;
    }
    switch (q->kind) {
    case Q_NUMBER:
        *out = q->num;
        return true;
    case Q_COUNT:
        *out = 0;
        walk_path(r, q->a, ctx, visit_count, out);
        return !r->gave_up;
    case Q_STRING_LENGTH: {
        if (q->a != NULL ? !eval_str(r, q->a, ctx, &s) : !string_value(r, ctx, &s))
            return false;
        size_t chars = utf8_chars(s.s, s.len);
        qstr_free(&s);
        *out = (double)chars;
        return true;
    }
    case Q_TO_NUMBER:
        if (q->a != NULL)
            return eval_num(r, q->a, ctx, out);
        if (!string_value(r, ctx, &s))
            return false;
        *out = xmlXPathStringEvalNumber(BAD_CAST s.s);
        qstr_free(&s);
        return true;
    default:
        r->gave_up = true;
        return false;
    }
}

static bool compare_num(qop op, double x, double y)
{
    switch (op) {
    case OP_EQ:
        return x == y;
    case OP_NE:
        return x != y;
    case OP_LT:
        return x < y;
    case OP_LE:
        return x <= y;
    case OP_GT:
        return x > y;
    case OP_GE:
        return x >= y;
    }
    return false;
}

/* A node-set compared with a string or a number: true when one node's string-value compares
 * true (XPath 1.0 section 3.4). */
typedef struct qcmp {
    qop op;
    bool strings; /* = or != with a string: compare strings; otherwise numbers */
    qstr str;
    double num;
    bool yes;
} qcmp;

static bool visit_cmp(qrun *r, xmlNode *node, void *user)
{
    qcmp *c = user;
    qstr v;
    if (!string_value(r, node, &v))
        return false;
    if (c->strings) {
        bool eq = v.len == c->str.len && memcmp(v.s, c->str.s, v.len) == 0;
        c->yes = c->op == OP_EQ ? eq : !eq;
    } else {
        c->yes = compare_num(c->op, xmlXPathStringEvalNumber(BAD_CAST v.s), c->num);
    }
    qstr_free(&v);
    return !c->yes;
}

static qop mirror(qop op)
{
    switch (op) {
    case OP_LT:
        return OP_GT;
    case OP_LE:
        return OP_GE;
    case OP_GT:
        return OP_LT;
    case OP_GE:
        return OP_LE;
    default:
        return op;
    }
}

static int eval_cmp(qrun *r, const qnode *q, xmlNode *ctx)
{
    const qnode *x = q->a, *y = q->b;
    qop op = q->op;
    bool eq = op == OP_EQ || op == OP_NE;
    if (y->type == QT_NODES) {
        x = q->b;
        y = q->a;
        op = mirror(op);
    }
    if (x->type == QT_NODES && y->type != QT_BOOLEAN) {
        qcmp c = {.op = op, .strings = eq && y->type == QT_STRING};
        if (c.strings ? !eval_str(r, y, ctx, &c.str) : !eval_num(r, y, ctx, &c.num))
            return -1;
        walk_path(r, x, ctx, visit_cmp, &c);
        qstr_free(&c.str);
        return r->gave_up ? -1 : c.yes;
    }
    /* Two values, or a node-set and a boolean (the node-set made a boolean). */
    if (eq && (x->type == QT_BOOLEAN || y->type == QT_BOOLEAN || x->type == QT_NODES)) {
        int a = eval_bool(r, x, ctx), b = a < 0 ? -1 : eval_bool(r, y, ctx);
        if (b < 0)
            return -1;
        return (a == b) == (op == OP_EQ);
    }
    if (eq && x->type == QT_STRING && y->type == QT_STRING) {
        qstr a, b;
        if (!eval_str(r, x, ctx, &a))
            return -1;
        if (!eval_str(r, y, ctx, &b)) {
            qstr_free(&a);
            return -1;
        }
        bool same = a.len == b.len && memcmp(a.s, b.s, a.len) == 0;
        qstr_free(&a);
        qstr_free(&b);
        return same == (op == OP_EQ);
    }
    double a, b;
    if (x->type == QT_NODES) {
        /* A node-set and a boolean, compared as numbers. */
        int yes = eval_bool(r, x, ctx);
        if (yes < 0)
            return -1;
        a = yes;
    } else if (!eval_num(r, x, ctx, &a)) {
        return -1;
    }
    if (!eval_num(r, y, ctx, &b))
        return -1;
    return compare_num(op, a, b);
}

static bool visit_any(qrun *r, xmlNode *node, void *user)
{
    (void)r;
    (void)node;
    *(bool *)user = true;
    return false;
}

/* Evaluates `q` as by XPath's boolean(): 1, 0, or -1 when it gave up. */
static int eval_bool(qrun *r, const qnode *q, xmlNode *ctx)
{
    int a;
    qstr s, t;
    double d;
    switch (q->kind) {
    case Q_PATH: {
        bool any = false;
        walk_path(r, q, ctx, visit_any, &any);
        return r->gave_up ? -1 : any;
    }
    case Q_OR:
    case Q_AND:
        a = eval_bool(r, q->a, ctx);
        if (a < 0 || a == (q->kind == Q_OR))
            return a;
        return eval_bool(r, q->b, ctx);
    case Q_NOT:
        a = eval_bool(r, q->a, ctx);
        return a < 0 ? a : !a;
    case Q_TRUE:
        return 1;
    case Q_FALSE:
        return 0;
    case Q_BOOLEAN:
        return eval_bool(r, q->a, ctx);
    case Q_CMP:
        return eval_cmp(r, q, ctx);
    case Q_CONTAINS:
    case Q_STARTS_WITH:
        if (!eval_str(r, q->a, ctx, &s))
            return -1;
        if (!eval_str(r, q->b, ctx, &t)) {
            qstr_free(&s);
            return -1;
        }
        if (q->kind == Q_CONTAINS)
            a = contains(s.s, s.len, t.s, t.len);
        else
            a = s.len >= t.len && memcmp(s.s, t.s, t.len) == 0;
        qstr_free(&s);
        qstr_free(&t);
        return a;
    default:
        break;
    }
    if (q->type == QT_STRING) {
        if (!eval_str(r, q, ctx, &s))
            return -1;
        a = s.len > 0;
        qstr_free(&s);
        return a;
    }
    if (!eval_num(r, q, ctx, &d))
        return -1;
    return d != 0 && d == d; /* NaN is false */
}

int xs_qx_bool(const xs_qx *q, const xs_qx_env *env, xmlNode *root)
{
    qrun r = {.env = env, .root = root};
    return eval_bool(&r, q->top, root);
}

typedef struct qcollect {
    xmlNode **out;
    size_t max, n;
    bool more;
} qcollect;

static bool visit_collect(qrun *r, xmlNode *node, void *user)
{
    (void)r;
    qcollect *c = user;
    if (c->n == c->max) {
        c->more = true;
        return false;
    }
    c->out[c->n++] = node;
    return true;
}

int xs_qx_select(const xs_qx *q, const xs_qx_env *env, xmlNode *root, xmlNode **out, size_t max,
                 size_t *n)
{
    qrun r = {.env = env, .root = root};
    qcollect c = {.out = out, .max = max};
    walk_path(&r, q->top, root, visit_collect, &c);
    *n = c.n;
    return r.gave_up ? -1 : c.more;
}
