/* XPath for the rule engine: the quick evaluator. See rules_impl.h; its compiler is
 * xpath_compile.c and the prefix rewriter xpath_rewrite.c.
 *
 * The tree the compiler makes (xpath_quick.h) is evaluated with XPath 1.0's rules of conversion
 * and comparison (section 3.4) on libxml2's nodes; numbers are converted by libxml2's own
 * xmlXPathStringEvalNumber(), so that both agree on what a string's number is. Its node-sets are
 * never built: a path is walked depth-first, which for child steps is document order, and a
 * visitor stops the walk as soon as the answer is known. */
#include "filters/rules_impl.h"
#include "filters/xpath_quick.h"

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
    return ns == XS_QNS_STANZA ? r->env->stanza_ns : r->env->uris[ns];
}

static bool name_matches(const qrun *r, const xs_qstep *st, const xmlNode *n)
{
    if (st->ns == XS_QNS_ANY)
        return true;
    if (st->local != NULL &&
        (n->name[0] != st->local[0] || strcmp((const char *)n->name, st->local) != 0))
        return false;
    if (st->ns == XS_QNS_NONE)
        return n->ns == NULL;
    if (n->ns == NULL || n->ns->href == NULL)
        return false;
    /* The content namespace is usually the very string of the stream's declaration. */
    const char *uri = ns_uri(r, st->ns);
    return (const char *)n->ns->href == uri || strcmp((const char *)n->ns->href, uri) == 0;
}

static int eval_bool(qrun *r, const xs_qnode *q, xmlNode *ctx);

/* 1 when every predicate of `st` holds for `node`, 0 when one does not, -1 gave up. */
static int preds_hold(qrun *r, const xs_qstep *st, xmlNode *node)
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
static bool walk(qrun *r, const xs_qnode *p, size_t i, xmlNode *ctx, qvisit visit, void *user)
{
    if (i == p->n_steps)
        return visit(r, ctx, user);
    const xs_qstep *st = &p->steps[i];
    if (st->kind == XS_ST_SELF)
        return walk(r, p, i + 1, ctx, visit, user);
    if (ctx->type != XML_ELEMENT_NODE)
        return true;
    if (st->kind == XS_ST_ATTRIBUTE) {
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
        if (st->kind == XS_ST_TEXT ? c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE
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
static bool walk_path(qrun *r, const xs_qnode *p, xmlNode *ctx, qvisit visit, void *user)
{
    if (!p->absolute)
        return walk(r, p, 0, ctx, visit, user);
    const xs_qstep *st = &p->steps[0];
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
static xmlNode *first_node(qrun *r, const xs_qnode *p, xmlNode *ctx)
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
static bool eval_str(qrun *r, const xs_qnode *q, xmlNode *ctx, qstr *out)
{
    qstr_set(out, NULL);
    xmlNode *n = ctx;
    switch (q->kind) {
    case XS_Q_LITERAL:
        out->s = q->str;
        out->len = q->len;
        return true;
    case XS_Q_PATH:
        n = first_node(r, q, ctx);
        return r->gave_up ? false : n == NULL || string_value(r, n, out);
    case XS_Q_STRING:
        if (q->a != NULL)
            return eval_str(r, q->a, ctx, out);
        return string_value(r, ctx, out);
    case XS_Q_LOCAL_NAME:
    case XS_Q_NAMESPACE_URI:
        if (q->a != NULL && (n = first_node(r, q->a, ctx)) == NULL)
            return !r->gave_up;
        if (n->type != XML_ELEMENT_NODE && n->type != XML_ATTRIBUTE_NODE)
            return true;
        if (q->kind == XS_Q_LOCAL_NAME)
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
static bool eval_num(qrun *r, const xs_qnode *q, xmlNode *ctx, double *out)
{
    qstr s;
    switch (q->type) {
    case XS_QT_BOOLEAN: {
        int yes = eval_bool(r, q, ctx);
        *out = yes == 1;
        return yes >= 0;
    }
    case XS_QT_NODES:
    case XS_QT_STRING:
        if (!eval_str(r, q, ctx, &s))
            return false;
        *out = xmlXPathStringEvalNumber(BAD_CAST s.s);
        qstr_free(&s);
        return true;
    case XS_QT_NUMBER:
        break;
    }
    switch (q->kind) {
    case XS_Q_NUMBER:
        *out = q->num;
        return true;
    case XS_Q_COUNT:
        *out = 0;
        walk_path(r, q->a, ctx, visit_count, out);
        return !r->gave_up;
    case XS_Q_STRING_LENGTH: {
        if (q->a != NULL ? !eval_str(r, q->a, ctx, &s) : !string_value(r, ctx, &s))
            return false;
        size_t chars = utf8_chars(s.s, s.len);
        qstr_free(&s);
        *out = (double)chars;
        return true;
    }
    case XS_Q_TO_NUMBER:
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

static bool compare_num(xs_qop op, double x, double y)
{
    switch (op) {
    case XS_OP_EQ:
        return x == y;
    case XS_OP_NE:
        return x != y;
    case XS_OP_LT:
        return x < y;
    case XS_OP_LE:
        return x <= y;
    case XS_OP_GT:
        return x > y;
    case XS_OP_GE:
        return x >= y;
    }
    return false;
}

/* A node-set compared with a string or a number: true when one node's string-value compares
 * true (XPath 1.0 section 3.4). */
typedef struct qcmp {
    xs_qop op;
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
        c->yes = c->op == XS_OP_EQ ? eq : !eq;
    } else {
        c->yes = compare_num(c->op, xmlXPathStringEvalNumber(BAD_CAST v.s), c->num);
    }
    qstr_free(&v);
    return !c->yes;
}

static xs_qop mirror(xs_qop op)
{
    switch (op) {
    case XS_OP_LT:
        return XS_OP_GT;
    case XS_OP_LE:
        return XS_OP_GE;
    case XS_OP_GT:
        return XS_OP_LT;
    case XS_OP_GE:
        return XS_OP_LE;
    default:
        return op;
    }
}

static int eval_cmp(qrun *r, const xs_qnode *q, xmlNode *ctx)
{
    const xs_qnode *x = q->a, *y = q->b;
    xs_qop op = q->op;
    bool eq = op == XS_OP_EQ || op == XS_OP_NE;
    if (y->type == XS_QT_NODES) {
        x = q->b;
        y = q->a;
        op = mirror(op);
    }
    if (x->type == XS_QT_NODES && y->type != XS_QT_BOOLEAN) {
        qcmp c = {.op = op, .strings = eq && y->type == XS_QT_STRING};
        if (c.strings ? !eval_str(r, y, ctx, &c.str) : !eval_num(r, y, ctx, &c.num))
            return -1;
        walk_path(r, x, ctx, visit_cmp, &c);
        qstr_free(&c.str);
        return r->gave_up ? -1 : c.yes;
    }
    /* Two values, or a node-set and a boolean (the node-set made a boolean). */
    if (eq && (x->type == XS_QT_BOOLEAN || y->type == XS_QT_BOOLEAN || x->type == XS_QT_NODES)) {
        int a = eval_bool(r, x, ctx), b = a < 0 ? -1 : eval_bool(r, y, ctx);
        if (b < 0)
            return -1;
        return (a == b) == (op == XS_OP_EQ);
    }
    if (eq && x->type == XS_QT_STRING && y->type == XS_QT_STRING) {
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
        return same == (op == XS_OP_EQ);
    }
    double a, b;
    if (x->type == XS_QT_NODES) {
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
static int eval_bool(qrun *r, const xs_qnode *q, xmlNode *ctx)
{
    int a;
    qstr s, t;
    double d;
    switch (q->kind) {
    case XS_Q_PATH: {
        bool any = false;
        walk_path(r, q, ctx, visit_any, &any);
        return r->gave_up ? -1 : any;
    }
    case XS_Q_OR:
    case XS_Q_AND:
        a = eval_bool(r, q->a, ctx);
        if (a < 0 || a == (q->kind == XS_Q_OR))
            return a;
        return eval_bool(r, q->b, ctx);
    case XS_Q_NOT:
        a = eval_bool(r, q->a, ctx);
        return a < 0 ? a : !a;
    case XS_Q_TRUE:
        return 1;
    case XS_Q_FALSE:
        return 0;
    case XS_Q_BOOLEAN:
        return eval_bool(r, q->a, ctx);
    case XS_Q_CMP:
        return eval_cmp(r, q, ctx);
    case XS_Q_CONTAINS:
    case XS_Q_STARTS_WITH:
        if (!eval_str(r, q->a, ctx, &s))
            return -1;
        if (!eval_str(r, q->b, ctx, &t)) {
            qstr_free(&s);
            return -1;
        }
        if (q->kind == XS_Q_CONTAINS)
            a = contains(s.s, s.len, t.s, t.len);
        else
            a = s.len >= t.len && memcmp(s.s, t.s, t.len) == 0;
        qstr_free(&s);
        qstr_free(&t);
        return a;
    default:
        break;
    }
    if (q->type == XS_QT_STRING) {
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
