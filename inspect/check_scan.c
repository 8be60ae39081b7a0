/* The outline of a stanza (check_impl.h): its child elements and their namespaces, and whether
 * an <error/> child holds a defined condition; from the tree, or from a scan of the raw bytes
 * that allocates nothing. */
#include "inspect/check_impl.h"

#include <string.h>

/* ---- from a tree ----------------------------------------------------------------------------- */

static xs_span zspan(const xmlChar *s)
{
    return s != NULL ? (xs_span){(const char *)s, strlen((const char *)s)} : (xs_span){NULL, 0};
}

static int error_has_condition(const xmlNode *err)
{
    for (const xmlNode *c = err->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE && c->ns != NULL &&
            strcmp((const char *)c->ns->href, NS_STANZAS) == 0 &&
            strcmp((const char *)c->name, "text") != 0)
            return 1;
    return 0;
}

static void outline_tree(const xmlNode *node, xs_outline *o)
{
    const xmlChar *own = node->ns != NULL ? node->ns->href : NULL;
    for (const xmlNode *c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        unsigned k = o->n_children++;
        const xmlChar *ns = c->ns != NULL ? c->ns->href : NULL;
        if (k < XS_OUTLINE_MAX) {
            o->name[k] = zspan(c->name);
            o->ns[k] = zspan(ns);
        }
        if (!o->has_error && strcmp((const char *)c->name, "error") == 0 &&
            ((ns == NULL && own == NULL) ||
             (ns != NULL && own != NULL && strcmp((const char *)ns, (const char *)own) == 0))) {
            o->has_error = 1;
            o->error_condition = error_has_condition(c);
        }
    }
}

/* ---- from the bytes -------------------------------------------------------------------------- */

/* What a scanned start tag declares and is called. */
typedef struct tag {
    xs_span prefix, local;
    xs_span dflt; /* xmlns='…' on it; p NULL: none */
    int has_dflt;
    xs_span pfx[4], uri[4]; /* xmlns:p='…' on it (the first four) */
    unsigned n_pfx;
    int empty; /* <…/> */
} tag;

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Reads the start tag at p[0] == '<' up to its '>'. Returns the offset after it, or 0. */
static size_t read_tag(const char *p, size_t len, tag *t)
{
    memset(t, 0, sizeof(*t));
    size_t i = 1, start = 1;
    while (i < len && !is_space(p[i]) && p[i] != '>' && p[i] != '/')
        i++;
    const char *colon = memchr(p + start, ':', i - start);
    if (colon != NULL) {
        t->prefix = (xs_span){p + start, (size_t)(colon - (p + start))};
        t->local = (xs_span){colon + 1, (size_t)(p + i - colon - 1)};
    } else {
        t->local = (xs_span){p + start, i - start};
    }
    for (;;) {
        while (i < len && is_space(p[i]))
            i++;
        if (i >= len)
            return 0;
        if (p[i] == '>')
            return i + 1;
        if (p[i] == '/') {
            t->empty = 1;
            return i + 1 < len && p[i + 1] == '>' ? i + 2 : 0;
        }
        size_t an = i;
        while (i < len && p[i] != '=' && !is_space(p[i]))
            i++;
        xs_span name = {p + an, i - an};
        while (i < len && (is_space(p[i]) || p[i] == '='))
            i++;
        if (i >= len || (p[i] != '"' && p[i] != '\''))
            return 0;
        const char *q = memchr(p + i + 1, p[i], len - i - 1);
        if (q == NULL)
            return 0;
        xs_span val = {p + i + 1, (size_t)(q - (p + i + 1))};
        i = (size_t)(q - p) + 1;
        if (name.n == 5 && memcmp(name.p, "xmlns", 5) == 0) {
            t->dflt = val;
            t->has_dflt = 1;
        } else if (name.n > 6 && memcmp(name.p, "xmlns:", 6) == 0 && t->n_pfx < 4) {
            t->pfx[t->n_pfx] = (xs_span){name.p + 6, name.n - 6};
            t->uri[t->n_pfx++] = val;
        }
    }
}

/* Skips the start tag at p[0] == '<' (quoted values may hold '>'). Returns the offset after it,
 * or 0; sets *empty for <…/>. */
static size_t skip_tag(const char *p, size_t len, int *empty)
{
    char quote = 0;
    for (size_t i = 1; i < len; i++) {
        char c = p[i];
        if (quote) {
            if (c == quote)
                quote = 0;
        } else if (c == '"' || c == '\'') {
            quote = c;
        } else if (c == '>') {
            *empty = p[i - 1] == '/';
            return i + 1;
        }
    }
    return 0;
}

/* The namespace of tag t, with its ancestors' tags anc[0..n) (the stanza first) in scope and
 * `dflt0` the default namespace around the stanza. */
static xs_span resolve(const tag *t, const tag *anc, size_t n, xs_span dflt0)
{
    const tag *chain[4];
    size_t k = 0;
    chain[k++] = t;
    for (size_t i = n; i > 0 && k < 4; i--)
        chain[k++] = &anc[i - 1];
    for (size_t i = 0; i < k; i++) {
        const tag *c = chain[i];
        if (t->prefix.p == NULL) {
            if (c->has_dflt)
                return c->dflt;
            continue;
        }
        for (unsigned j = 0; j < c->n_pfx; j++)
            if (c->pfx[j].n == t->prefix.n && memcmp(c->pfx[j].p, t->prefix.p, t->prefix.n) == 0)
                return c->uri[j];
    }
    return t->prefix.p == NULL ? dflt0 : (xs_span){NULL, 0};
}

/* Skips to after the end of "<…" constructs other than start tags at p[i] == '<': an end tag,
 * CDATA. Returns the offset after it, 0 when malformed. Sets *end_tag for an end tag. */
static size_t skip_other(const char *p, size_t len, size_t i, int *end_tag)
{
    *end_tag = 0;
    if (i + 1 < len && p[i + 1] == '/') {
        const char *gt = memchr(p + i, '>', len - i);
        *end_tag = 1;
        return gt != NULL ? (size_t)(gt - p) + 1 : 0;
    }
    if (len - i >= 9 && memcmp(p + i, "<![CDATA[", 9) == 0) {
        for (size_t k = i + 9; k + 2 < len; k++)
            if (p[k] == ']' && p[k + 1] == ']' && p[k + 2] == '>')
                return k + 3;
    }
    return 0;
}

/* Reads the stanza's own start tag into *t and the default namespace its children see into
 * *dflt0, and its namespace into *own. Returns the offset after the tag, 0 when malformed. */
static size_t stanza_tag(const xs_event *ev, tag *t, xs_span *dflt0, xs_span *own)
{
    const char *p = ev->raw;
    size_t len = ev->len, i = 0;
    *dflt0 = ev->default_ns != NULL ? (xs_span){ev->default_ns, strlen(ev->default_ns)}
                                    : (xs_span){NULL, 0};
    *own = ev->ns != NULL ? (xs_span){ev->ns, strlen(ev->ns)} : (xs_span){NULL, 0};
    while (i < len && p[i] != '<')
        i++;
    size_t used = i < len ? read_tag(p + i, len - i, t) : 0;
    if (used == 0)
        return 0;
    /* Unprefixed, without xmlns: the stanza's namespace is the one in scope, its children's. */
    if (t->prefix.p == NULL && !t->has_dflt)
        *dflt0 = *own;
    return i + used;
}

static int outline_raw(const xs_event *ev, xs_outline *o)
{
    const char *p = ev->raw;
    size_t len = ev->len;
    tag anc[2]; /* the stanza, and the child being read */
    xs_span dflt0, own;
    size_t i = stanza_tag(ev, &anc[0], &dflt0, &own);
    if (i == 0)
        return -1;
    if (anc[0].empty)
        return 0;
    unsigned depth = 1;
    int in_error = 0;
    while (i < len) {
        const char *lt = memchr(p + i, '<', len - i);
        if (lt == NULL)
            return -1;
        i = (size_t)(lt - p);
        if (i + 1 < len && (p[i + 1] == '/' || p[i + 1] == '!')) {
            int end_tag;
            size_t next = skip_other(p, len, i, &end_tag);
            if (next == 0)
                return -1;
            i = next;
            if (end_tag && --depth == 0)
                return 0;
            if (end_tag && depth == 1)
                in_error = 0;
            continue;
        }
        if (depth >= 2 && !(depth == 2 && in_error)) {
            /* Deeper than what the outline tells: only the depth matters. */
            int empty;
            size_t used = skip_tag(p + i, len - i, &empty);
            if (used == 0)
                return -1;
            i += used;
            depth += !empty;
            continue;
        }
        tag t;
        size_t used = read_tag(p + i, len - i, &t);
        if (used == 0)
            return -1;
        i += used;
        if (depth == 1) {
            xs_span ns = resolve(&t, anc, 1, dflt0);
            unsigned k = o->n_children++;
            if (k < XS_OUTLINE_MAX) {
                o->name[k] = t.local;
                o->ns[k] = ns;
            }
            if (!o->has_error && t.local.n == 5 && memcmp(t.local.p, "error", 5) == 0 &&
                ns.n == own.n && (ns.n == 0 || memcmp(ns.p, own.p, ns.n) == 0)) {
                o->has_error = 1;
                in_error = !t.empty;
                anc[1] = t;
            }
        } else if (depth == 2 && in_error) {
            xs_span ns = resolve(&t, anc, 2, dflt0);
            if (xs_span_eq(ns, NS_STANZAS) &&
                !(t.local.n == 4 && memcmp(t.local.p, "text", 4) == 0))
                o->error_condition = 1;
        }
        if (!t.empty)
            depth++;
    }
    return -1;
}

/* The first child only, where the parser counted the children and found the first one
 * (xs_event.n_children, first_child): two tags read, not the whole stanza. */
static int outline_first_raw(const xs_event *ev, xs_outline *o)
{
    const char *p = ev->raw;
    size_t len = ev->len;
    tag anc[2];
    xs_span dflt0, own;
    if (stanza_tag(ev, &anc[0], &dflt0, &own) == 0 || ev->first_child >= len)
        return -1;
    tag t;
    if (read_tag(p + ev->first_child, len - ev->first_child, &t) == 0)
        return -1;
    o->n_children = ev->n_children;
    o->name[0] = t.local;
    o->ns[0] = resolve(&t, anc, 1, dflt0);
    return 0;
}

int xs_outline_first(const xs_event *ev, xs_outline *o)
{
    if (ev->node == NULL && ev->raw != NULL && ev->first_child > 0) {
        memset(o, 0, sizeof(*o));
        if (outline_first_raw(ev, o) == 0)
            return 0;
    }
    return xs_outline_of(ev, o);
}

int xs_outline_of(const xs_event *ev, xs_outline *o)
{
    memset(o, 0, sizeof(*o));
    if (ev->node != NULL) {
        outline_tree(ev->node, o);
        return 0;
    }
    if (ev->raw == NULL)
        return -1;
    int rc = outline_raw(ev, o);
    if (rc < 0)
        memset(o, 0, sizeof(*o));
    return rc;
}
