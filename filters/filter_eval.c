/* The filter language: evaluating a compiled filter for one observer event. See filter.h; the
 * compiler is filter.c.
 *
 * The common atoms read the parser event's name and attributes, the meta and the annotations,
 * and allocate nothing. ns: walks the tree when there is one, or scans the stanza's bytes for
 * namespace declarations. text: and xpath: need a tree: the masked copy's, the parser's, or, for
 * a stanza that came without one, a tree parsed from its bytes (inspect/fragment.h) at most once
 * per event, only when such an atom is reached. */
#include "filters/filter_impl.h"

#include "inspect/fragment.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

typedef struct fctx {
    const xs_obs_event *oe;
    const xs_event *ev; /* the stanza, or NULL for any other event */
    int dir;            /* 1 c2s, 2 s2c, 0 unknown */
    const char *account;
    const xmlNode *tree; /* the stanza's tree, once looked for */
    bool tree_tried;
    xmlDoc *doc; /* a tree parsed here, freed at the end of the evaluation */
} fctx;

static xs_filter_answer yes_no(bool b)
{
    return b ? XS_FILTER_YES : XS_FILTER_NO;
}

/* An attribute of the stanza element in no namespace, or NULL. */
static const char *attr(const xs_event *ev, const char *name)
{
    for (size_t i = 0; i < ev->n_attrs; i++) {
        const xs_attr *a = &ev->attrs[i];
        if (a->prefix == NULL && a->name != NULL && strcmp(a->name, name) == 0)
            return a->value;
    }
    return NULL;
}

/* ---- JIDs ------------------------------------------------------------------------------------ */

/* Whether the JID s (a bare JID when `bare`, whatever it holds after '/') is what atom n names. */
static bool jid_matches(const xs_fnode *n, const char *s, bool bare)
{
    size_t len = strlen(s);
    const char *slash = memchr(s, '/', len);
    size_t bare_len = slash != NULL ? (size_t)(slash - s) : len;
    if (bare_len != n->bare_len || strncasecmp(s, n->value, bare_len) != 0)
        return false;
    if (!n->full)
        return true;
    return !bare && slash != NULL && len - bare_len == n->len - n->bare_len &&
           memcmp(s + bare_len, n->value + bare_len, len - bare_len) == 0;
}

/* from (to_side false) or to (true) of the stanza: the attribute, or what its absence means on
 * this session (RFC 6120 §8.1.1.1 and §8.1.2.1): a client's stanza comes from its full JID and,
 * without `to`, goes to its own account; the server's stanza goes to the client's full JID and,
 * without `from`, comes from the account. */
static bool stanza_jid_matches(const fctx *c, const xs_fnode *n, bool to_side)
{
    const char *v = attr(c->ev, to_side ? "to" : "from");
    if (v != NULL)
        return jid_matches(n, v, false);
    if (c->account == NULL || c->dir == 0)
        return false;
    bool full = (c->dir == 1) != to_side; /* c2s from, s2c to: the full JID */
    return jid_matches(n, c->account, !full);
}

static xs_filter_answer eval_jid(const fctx *c, const xs_fnode *n)
{
    if (c->ev == NULL)
        return c->account == NULL ? XS_FILTER_UNKNOWN : yes_no(jid_matches(n, c->account, false));
    switch (n->kind) {
    case XS_F_FROM:
        return yes_no(stanza_jid_matches(c, n, false));
    case XS_F_TO:
        return yes_no(stanza_jid_matches(c, n, true));
    default:
        return yes_no(stanza_jid_matches(c, n, false) || stanza_jid_matches(c, n, true));
    }
}

/* ---- the tree -------------------------------------------------------------------------------- */

const xmlNode *xs_filter_stanza_tree(const xs_obs_event *oe, bool as_shown, xmlDoc **doc)
{
    const xs_event *ev = oe->ev;
    const xs_redaction *m = as_shown ? oe->masked : NULL;
    const char *bytes = ev->raw;
    size_t len = ev->len;
    *doc = NULL;
    if (m != NULL && m->xml != NULL) {
        if (m->node != NULL)
            return m->node;
        bytes = m->xml;
        len = m->xml_len;
    } else if (ev->node != NULL) {
        return ev->node;
    }
    if (bytes == NULL || ev->name == NULL)
        return NULL;
    xs_attr decls[2];
    size_t nd = 0;
    const char *content = ev->default_ns != NULL ? ev->default_ns : "jabber:client";
    /* The wrapper stands for the stream element: its default namespace is the stream's content
     * namespace, what unprefixed names mean in xpath: (as under the parser's tree), whatever
     * the element declares for itself (<r xmlns='urn:xmpp:sm:3'/> is no jabber:client r). */
    if (ev->prefix == NULL) {
        decls[nd++] = (xs_attr){.uri = content};
    } else {
        decls[nd++] = (xs_attr){.prefix = ev->prefix, .uri = ev->ns};
        decls[nd++] = (xs_attr){.uri = content};
    }
    xs_fragment_ctx ctx = {.root = "w", .decls = decls, .n_decls = nd};
    xmlNode *el = NULL;
    if (xs_fragment_parse(&ctx, bytes, len, doc, &el, NULL) != 0)
        return NULL;
    return el;
}

/* The stanza's tree, looked for once per evaluation. */
static const xmlNode *tree_of(fctx *c)
{
    if (!c->tree_tried) {
        c->tree_tried = true;
        c->tree = xs_filter_stanza_tree(c->oe, true, &c->doc);
    }
    return c->tree;
}

/* The next node after `n` in document order within `top` (children first), or NULL. */
static const xmlNode *walk_next(const xmlNode *top, const xmlNode *n)
{
    if (n->type == XML_ELEMENT_NODE && n->children != NULL)
        return n->children;
    while (n != top && n->next == NULL)
        n = n->parent;
    return n == top ? NULL : n->next;
}

static bool is_text(const xmlNode *n)
{
    return n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE;
}

/* text: a Knuth-Morris-Pratt search of each element's text (its text and CDATA children taken
 * together), ASCII letters folded: linear in the stanza's size, nothing allocated. */
static bool text_contains(const xmlNode *top, const xs_fnode *n)
{
    size_t k = 0;
    for (const xmlNode *e = top; e != NULL; e = walk_next(top, e)) {
        if (!is_text(e) || e->content == NULL)
            continue;
        if (e->prev == NULL || !is_text(e->prev))
            k = 0;
        for (const unsigned char *p = e->content; *p != 0; p++) {
            unsigned char ch = *p >= 'A' && *p <= 'Z' ? (unsigned char)(*p + 32) : *p;
            while (k > 0 && (unsigned char)n->value[k] != ch)
                k = n->kmp[k - 1];
            if ((unsigned char)n->value[k] == ch && ++k == n->len)
                return true;
        }
    }
    return false;
}

static bool eval_xpath(fctx *c, const xs_fnode *n)
{
    const xmlNode *tree = tree_of(c);
    if (tree == NULL)
        return false;
    xs_event ev = *c->ev;
    ev.node = tree;
    xs_rule_ctx ctx = {.direction = c->dir == 1   ? XS_RULE_C2S
                                    : c->dir == 2 ? XS_RULE_S2C
                                                  : XS_RULE_ANY,
                       .session = c->oe->meta != NULL ? c->oe->meta->session : NULL};
    xs_rule_result res;
    int rc = xs_rules_apply(n->rules, &ctx, &ev, &res);
    bool yes = rc == 0 && res.rules_matched > 0;
    xs_rule_result_clear(&res);
    return yes;
}

/* ---- namespaces ------------------------------------------------------------------------------ */

/* Whether the attribute value v[0, n) (as written, with references) is `uri`. */
static bool value_is(const char *v, size_t n, const char *uri, size_t ulen)
{
    if (memchr(v, '&', n) == NULL)
        return n == ulen && memcmp(v, uri, n) == 0;
    static const struct {
        const char *ref;
        char c;
    } refs[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t u = 0;
    for (size_t i = 0; i < n; u++) {
        char ch = v[i];
        size_t step = 1;
        for (size_t r = 0; ch == '&' && r < sizeof(refs) / sizeof(refs[0]); r++) {
            size_t rl = strlen(refs[r].ref);
            if (n - i >= rl && memcmp(v + i, refs[r].ref, rl) == 0) {
                ch = refs[r].c;
                step = rl;
            }
        }
        if (u >= ulen || uri[u] != ch)
            return false;
        i += step;
    }
    return u == ulen;
}

/* Whether a tag of the well-formed stanza s[0, n) declares the namespace `uri` (xmlns="uri" or
 * xmlns:p="uri"): tags are told from text and CDATA sections, attribute values skipped. */
static bool raw_declares(const char *s, size_t n, const char *uri)
{
    size_t ulen = strlen(uri);
    for (size_t i = 0; i < n;) {
        const char *lt = memchr(s + i, '<', n - i);
        if (lt == NULL)
            return false;
        i = (size_t)(lt - s);
        if (n - i >= 9 && memcmp(s + i, "<![CDATA[", 9) == 0) {
            const char *end = NULL;
            for (size_t j = i + 9; j + 2 < n && end == NULL; j++)
                if (s[j] == ']' && s[j + 1] == ']' && s[j + 2] == '>')
                    end = s + j;
            if (end == NULL)
                return false;
            i = (size_t)(end - s) + 3;
            continue;
        }
        for (i++; i < n && s[i] != '>'; i++) {
            if (s[i] == '"' || s[i] == '\'') {
                const char *q = memchr(s + i + 1, s[i], n - i - 1);
                if (q == NULL)
                    return false;
                i = (size_t)(q - s);
                continue;
            }
            if (n - i < 6 || memcmp(s + i, "xmlns", 5) != 0 ||
                !(s[i - 1] == ' ' || s[i - 1] == '\t' || s[i - 1] == '\n' || s[i - 1] == '\r'))
                continue;
            size_t j = i + 5;
            if (s[j] == ':')
                while (j < n && s[j] != '=' && s[j] != '>')
                    j++;
            while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r'))
                j++;
            if (j >= n || s[j] != '=')
                continue;
            for (j++; j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r');)
                j++;
            if (j >= n || (s[j] != '"' && s[j] != '\''))
                continue;
            const char *q = memchr(s + j + 1, s[j], n - j - 1);
            if (q == NULL)
                return false;
            if (value_is(s + j + 1, (size_t)(q - s) - j - 1, uri, ulen))
                return true;
            i = (size_t)(q - s);
        }
    }
    return false;
}

static bool tree_has_ns(const xmlNode *top, const char *uri)
{
    for (const xmlNode *e = top; e != NULL; e = walk_next(top, e)) {
        if (e->type != XML_ELEMENT_NODE)
            continue;
        if (e->ns != NULL && e->ns->href != NULL && strcmp((const char *)e->ns->href, uri) == 0)
            return true;
        for (const xmlNs *d = e->nsDef; d != NULL; d = d->next)
            if (d->href != NULL && strcmp((const char *)d->href, uri) == 0)
                return true;
    }
    return false;
}

static bool eval_ns(const fctx *c, const xs_fnode *n)
{
    const xs_event *ev = c->ev;
    if (ev->ns != NULL && strcmp(ev->ns, n->value) == 0)
        return true;
    const xs_redaction *m = c->oe->masked;
    const xmlNode *tree = m != NULL && m->node != NULL ? m->node : ev->node;
    if (tree != NULL)
        return tree_has_ns(tree, n->value);
    if (m != NULL && m->xml != NULL)
        return raw_declares(m->xml, m->xml_len, n->value);
    return ev->raw != NULL && raw_declares(ev->raw, ev->len, n->value);
}

/* ---- atoms ----------------------------------------------------------------------------------- */

static bool is_stanza_named(const xs_event *ev, const char *name)
{
    return strcmp(ev->name, name) == 0 && (ev->ns == NULL || strncmp(ev->ns, "jabber:", 7) == 0);
}

static bool has_check(const fctx *c, const xs_fnode *n)
{
    const xs_annot *a = c->oe->annot != NULL ? c->oe->annot : NULL;
    if (a == NULL && c->oe->meta != NULL)
        a = c->oe->meta->annot;
    if (a == NULL)
        return false;
    if (n->value == NULL)
        return a->n_checks > 0 || a->more_checks > 0;
    for (size_t i = 0; i < a->n_checks; i++)
        if (a->checks[i].id != NULL && strcmp(a->checks[i].id, n->value) == 0)
            return true;
    return false;
}

static bool has_tag(const fctx *c, const xs_fnode *n)
{
    const xs_print_meta *m = c->oe->meta;
    for (size_t i = 0; m != NULL && i < m->n_rules; i++)
        if (m->rules[i].action != NULL && strcmp(m->rules[i].action, "tag") == 0 &&
            m->rules[i].detail != NULL && strcmp(m->rules[i].detail, n->value) == 0)
            return true;
    return false;
}

static bool type_is(const xs_event *ev, const char *want)
{
    const char *t = attr(ev, "type");
    if (t == NULL)
        t = is_stanza_named(ev, "message")    ? "normal"
            : is_stanza_named(ev, "presence") ? "available"
                                              : NULL;
    return t != NULL && strcmp(t, want) == 0;
}

/* An atom that is about the stanza itself; any other event is none of these. */
static bool eval_stanza_atom(fctx *c, const xs_fnode *n)
{
    const xs_event *ev = c->ev;
    switch (n->kind) {
    case XS_F_MESSAGE:
        return is_stanza_named(ev, "message");
    case XS_F_PRESENCE:
        return is_stanza_named(ev, "presence");
    case XS_F_IQ:
        return is_stanza_named(ev, "iq");
    case XS_F_TYPE:
        return type_is(ev, n->value);
    case XS_F_ID: {
        const char *id = attr(ev, "id");
        return id != NULL && strcmp(id, n->value) == 0;
    }
    case XS_F_NS:
        return eval_ns(c, n);
    case XS_F_TEXT: {
        const xmlNode *tree = tree_of(c);
        return tree != NULL && text_contains(tree, n);
    }
    case XS_F_XPATH:
        return eval_xpath(c, n);
    default:
        return false;
    }
}

static xs_filter_answer eval_node(xs_filter *f, fctx *c, int i)
{
    const xs_fnode *n = &f->nodes[i];
    xs_filter_answer a, b;
    const xs_print_meta *m = c->oe->meta;
    switch (n->kind) {
    case XS_F_AND:
        a = eval_node(f, c, n->a);
        if (a == XS_FILTER_NO)
            return a;
        b = eval_node(f, c, n->b);
        return b == XS_FILTER_NO ? b : a == XS_FILTER_UNKNOWN ? a : b;
    case XS_F_OR:
        a = eval_node(f, c, n->a);
        if (a == XS_FILTER_YES)
            return a;
        b = eval_node(f, c, n->b);
        return b == XS_FILTER_YES ? b : a == XS_FILTER_UNKNOWN ? a : b;
    case XS_F_NOT:
        a = eval_node(f, c, n->a);
        return a == XS_FILTER_UNKNOWN ? a : yes_no(a == XS_FILTER_NO);
    case XS_F_FROM:
    case XS_F_TO:
    case XS_F_JID:
        return eval_jid(c, n);
    case XS_F_DIR:
        if (c->dir == 0)
            return c->ev != NULL ? XS_FILTER_NO : XS_FILTER_UNKNOWN;
        return yes_no(c->dir == n->dir);
    case XS_F_SESSION:
        if (m == NULL || m->session == NULL)
            return c->ev != NULL ? XS_FILTER_NO : XS_FILTER_UNKNOWN;
        return yes_no(strcmp(m->session, n->value) == 0);
    case XS_F_CHECK:
        return yes_no(has_check(c, n));
    case XS_F_TAG:
        return yes_no(has_tag(c, n));
    default:
        return c->ev != NULL ? yes_no(eval_stanza_atom(c, n)) : XS_FILTER_NO;
    }
}

xs_filter_answer xs_filter_eval(xs_filter *f, const xs_obs_event *oe, const char *account)
{
    fctx c = {.oe = oe, .account = account};
    if (oe->kind == XS_OBS_PARSED && oe->ev != NULL && oe->ev->kind == XS_EV_STANZA &&
        oe->ev->name != NULL)
        c.ev = oe->ev;
    const char *d = oe->meta != NULL ? oe->meta->direction : NULL;
    if (d != NULL)
        c.dir = strcmp(d, "c2s") == 0 ? 1 : strcmp(d, "s2c") == 0 ? 2 : 0;
    xs_filter_answer a = eval_node(f, &c, f->root);
    if (c.doc != NULL)
        xmlFreeDoc(c.doc);
    /* A stanza's every atom is known (a missing account means a missing JID). */
    return c.ev != NULL && a == XS_FILTER_UNKNOWN ? XS_FILTER_NO : a;
}
