/* Applying compiled rules to stanzas. See rules.h; the compiler is rules_parse.c and the compiled
 * form is rule_set.c, which both use (this file never calls the compiler).
 *
 * Rules see the stanza as the root element of a document of its own. Most stanzas are only
 * looked at, so that document is the parser's own element, lent to an empty shell document while
 * libxml2 evaluates an XPath on it (see lend()), until an action is about to change something:
 * then the stanza is copied into a document of its own (xs_stanza_copy) and every later match
 * and target is evaluated on the copy, so a rule sees what earlier rules did. Only when an action
 * changed the copy is it serialized; otherwise the verdict is "unchanged" and the caller
 * forwards the original bytes. Most XPaths never reach libxml2: a rule whose match names another
 * stanza is skipped by name (rule_may_match()), and the quick evaluator (xpath_ns.c) computes the
 * common ones on the tree. A replace-text first looks for what its regex needs (xs_re_run).
 *
 * Actions that free nodes must never touch a node they freed: nodes are taken out of the XPath
 * result first (freeing that result reads every node in it), and handled in reverse document
 * order, so a node's descendants and attributes are handled before the node itself may free
 * them. */
#include "filters/rule_set.h"
#include "filters/rules_impl.h"

#include "inspect/alloc.h"
#include "inspect/error.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/xpathInternals.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

/* XPath operations one evaluation may take. A stanza is at most a few hundred kilobytes, so this
 * is far above what a sensible expression needs and bounds a nested //-expression. */
#define XPATH_OP_LIMIT 5000000ul

const char *xs_rule_verdict_name(xs_rule_verdict verdict)
{
    switch (verdict) {
    case XS_VERDICT_UNCHANGED:
        return "unchanged";
    case XS_VERDICT_REWRITTEN:
        return "rewritten";
    case XS_VERDICT_DROP:
        return "drop";
    case XS_VERDICT_BOUNCE:
        return "bounce";
    }
    return "unknown";
}

void xs_rule_result_clear(xs_rule_result *res)
{
    xs_free(res->xml);
    xs_free(res->bounce);
    for (size_t i = 0; i < res->n_injects; i++)
        xs_free(res->injects[i].xml);
    xs_free(res->injects);
    for (size_t i = 0; i < res->n_tags; i++)
        xs_free(res->tags[i]);
    xs_free(res->tags);
    for (size_t i = 0; i < res->n_applied; i++) {
        xs_free(res->applied[i].rule); /* and the detail with it */
        xs_free(res->applied[i].before);
        xs_free(res->applied[i].after);
    }
    xs_free(res->applied);
    xs_free(res->error);
    memset(res, 0, sizeof(*res));
}

/* ---- the state of one application ------------------------------------------------------------ */

/* The regex work one stanza may cost, shared by every match of every rule (see regex_step()). */
typedef struct re_budget {
    unsigned long total; /* the stanza's budget, for the message */
    unsigned long left;
    size_t pos; /* subject position at the previous step */
    bool spent; /* used up: the stanza passes unchanged */
} re_budget;

typedef struct applying {
    xs_rules *set;
    const xs_rule_ctx *ctx;
    const xs_event *ev;
    xs_rule_result *res;
    const xs_rule *rule; /* the rule running */
    /* The stanza the rules see (see lend()): the parser's element until an action is about to
     * change it, then a copy of it in a document of its own. */
    xmlDoc *doc;   /* the copy, or NULL */
    xmlNode *root; /* the copy's root element, or the parser's element */
    bool lent;     /* the parser's element is lent to the set's shell document */
    xmlNode *lent_parent, *lent_prev, *lent_next; /* what it had before */
    bool want_copy;         /* an action stopped before its first change (need_copy()) */
    bool ns_bound;          /* XS_XPATH_STANZA_PREFIX is bound to content_ns */
    const char *content_ns; /* the stream's content namespace */
    xs_qx_env qenv;         /* for the quick evaluator */
    xmlChar *orig[3];       /* from, to, id of the stanza as it arrived (NULL until asked) */
    bool orig_read;
    size_t budget;  /* bytes the rewrites may still add */
    re_budget re;   /* the steps the stanza's regexes may still take */
    bool modified;  /* the copy differs from the original */
    bool decided;   /* drop or bounce ran */
    char *last_xml; /* XS_RULE_EXPLAIN: the copy as last serialized */
    int err;        /* XS_ENOMEM once allocation failed */
} applying;

static void note_error(applying *ap, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note_error(applying *ap, const char *fmt, ...)
{
    if (ap->res->error != NULL)
        return;
    char msg[400];
    va_list ap_list;
    va_start(ap_list, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap_list);
    va_end(ap_list);
    xs_buf b;
    xs_buf_init(&b, 0);
    xs_buf_addf(&b, "rule \"%s\": %s", ap->rule ? ap->rule->name : "?", msg);
    ap->res->error = xs_buf_take(&b, NULL);
    if (ap->res->error == NULL)
        ap->err = XS_ENOMEM;
}

static void *oom(applying *ap)
{
    ap->err = XS_ENOMEM;
    return NULL;
}

static const char *orig_attr(applying *ap, int which)
{
    static const char *const names[] = {"from", "to", "id"};
    if (!ap->orig_read) {
        ap->orig_read = true;
        for (int i = 0; i < 3; i++)
            if (xmlHasNsProp(ap->ev->node, BAD_CAST names[i], NULL) != NULL &&
                (ap->orig[i] = xmlGetNoNsProp(ap->ev->node, BAD_CAST names[i])) == NULL)
                ap->err = XS_ENOMEM;
    }
    return ap->orig[which] != NULL ? (const char *)ap->orig[which] : "";
}

/* Expands {from}, {to}, {id} and {session}. With `dollar`, a '$' in an expanded value is doubled
 * (for a PCRE2 replacement). Returns a malloc'd string or NULL when out of memory or over
 * `max` bytes. */
static char *expand(applying *ap, const char *s, bool dollar, size_t max)
{
    xs_buf b;
    xs_buf_init(&b, max);
    while (*s != 0) {
        const char *val = NULL;
        size_t skip = 0;
        if (*s == '{') {
            if (strncmp(s, "{from}", 6) == 0)
                val = orig_attr(ap, 0), skip = 6;
            else if (strncmp(s, "{to}", 4) == 0)
                val = orig_attr(ap, 1), skip = 4;
            else if (strncmp(s, "{id}", 4) == 0)
                val = orig_attr(ap, 2), skip = 4;
            else if (strncmp(s, "{session}", 9) == 0)
                val = ap->ctx->session != NULL ? ap->ctx->session : "", skip = 9;
        }
        if (val != NULL && skip == 9) {
            /* The caller's text: control characters would make the stanza malformed. */
            for (s += skip; *val != 0; val++)
                if ((unsigned char)*val >= 0x20 || *val == '\t')
                    xs_buf_add(&b, *val == '$' && dollar ? "$$" : val,
                               *val == '$' && dollar ? 2 : 1);
            continue;
        }
        if (val == NULL) {
            size_t n = strcspn(s + 1, "{") + 1;
            xs_buf_add(&b, s, n);
            s += n;
            continue;
        }
        for (; dollar && *val != 0; val++)
            xs_buf_add(&b, *val == '$' ? "$$" : val, *val == '$' ? 2 : 1);
        if (!dollar)
            xs_buf_adds(&b, val);
        s += skip;
    }
    char *out = xs_buf_take(&b, NULL);
    if (out == NULL && b.err == XS_ENOMEM)
        ap->err = XS_ENOMEM;
    return out;
}

/* Takes `n` bytes from the growth budget; false (with a note) when it is spent. */
static bool spend(applying *ap, size_t n)
{
    if (n > ap->budget) {
        note_error(ap, "the rewrites of this stanza would add more than %u bytes; stopped",
                   XS_RULES_MAX_GROWTH);
        ap->budget = 0;
        return false;
    }
    ap->budget -= n;
    return true;
}

/* ---- the regex budget ---------------------------------------------------------------------- */

/* PCRE2's match limit counts per call and a global substitution restarts it for each match, so a
 * pattern that backtracks badly (`(x+x+)+y|!`) costs the limit many times over on a long text,
 * and again for every text node a replace-text selects. Instead every regex a stanza meets draws
 * on one budget of steps: patterns are compiled with auto callouts, and this callout, called
 * before each item the engine tries, charges one step plus the characters the subject position
 * moved since the previous step (what a repeat or a jump to the next start consumed or gave
 * back). The budget is XS_RULES_REGEX_STEPS plus XS_RULES_REGEX_STEPS_PER_BYTE per byte of the
 * stanza, so regex work is linear in the stanza's size whatever the patterns and rules. */
static int regex_step(pcre2_callout_block *cb, void *data)
{
    re_budget *b = data;
    size_t pos = cb->current_position;
    unsigned long cost = 1ul + (pos > b->pos ? pos - b->pos : b->pos - pos);
    b->pos = pos;
    if (cost > b->left) {
        b->left = 0;
        return PCRE2_ERROR_CALLOUT;
    }
    b->left -= cost;
    return 0;
}

/* Readies the set's match context for a match on a new subject. PCRE2's own count is capped by
 * what is left too, for the work between callouts it does not show us. */
static void regex_begin(applying *ap)
{
    ap->re.pos = 0;
    pcre2_set_match_limit(ap->set->mctx,
                          ap->re.left > UINT32_MAX ? UINT32_MAX : (uint32_t)ap->re.left);
}

/* Whether a PCRE2 result code says the budget is used up; then the stanza passes unchanged, and
 * the note says so in place of any earlier one (it explains the whole stanza's fate). */
static bool regex_spent(applying *ap, int rc)
{
    if (rc != PCRE2_ERROR_CALLOUT && rc != PCRE2_ERROR_MATCHLIMIT && rc != PCRE2_ERROR_DEPTHLIMIT)
        return false;
    ap->re.spent = true;
    ap->re.left = 0;
    xs_free(ap->res->error);
    ap->res->error = NULL;
    note_error(ap,
               "replace-text: the regex budget of this stanza was used up (%lu steps); the "
               "stanza passes unchanged",
               ap->re.total);
    return true;
}

/* ---- serialization --------------------------------------------------------------------------- */

/* Serializes `node` (of `doc`). With `stream`, namespace declarations on `node` that the stream
 * element already makes in the same way are left out: the bytes go into that stream. */
static char *serialize(const xmlNode *stream, xmlDoc *doc, xmlNode *node, size_t *len)
{
    enum { MAX_DECLS = 64 };
    xmlNs *all[MAX_DECLS];
    size_t n_all = 0;
    bool strip = stream != NULL && stream->type == XML_ELEMENT_NODE;
    if (strip) {
        for (xmlNs *d = node->nsDef; d != NULL; d = d->next)
            if (n_all < MAX_DECLS)
                all[n_all++] = d;
            else
                strip = false;
    }
    if (strip) {
        xmlNs *kept = NULL, **tail = &kept;
        for (size_t i = 0; i < n_all; i++) {
            xmlNs *s = xmlSearchNs(stream->doc, (xmlNode *)stream, all[i]->prefix);
            if (s != NULL && s->href != NULL && xmlStrEqual(s->href, all[i]->href))
                continue;
            *tail = all[i];
            tail = &all[i]->next;
        }
        *tail = NULL;
        node->nsDef = kept;
    }
    char *out = NULL;
    xmlBuffer *xb = xmlBufferCreate();
    if (xb != NULL && xmlNodeDump(xb, doc, node, 0, 0) >= 0) {
        size_t n = (size_t)xmlBufferLength(xb);
        out = xs_malloc(n + 1);
        if (out != NULL) {
            memcpy(out, xmlBufferContent(xb), n);
            out[n] = 0;
            if (len != NULL)
                *len = n;
        }
    }
    if (xb != NULL)
        xmlBufferFree(xb);
    if (strip) {
        for (size_t i = 0; i + 1 < n_all; i++)
            all[i]->next = all[i + 1];
        if (n_all > 0)
            all[n_all - 1]->next = NULL;
        node->nsDef = n_all > 0 ? all[0] : NULL;
    }
    return out;
}

static const xmlNode *stream_of(const applying *ap)
{
    const xmlNode *p = ap->ev->node->parent;
    return p != NULL && p->type == XML_ELEMENT_NODE ? p : NULL;
}

/* ---- results --------------------------------------------------------------------------------- */

/* Records an action that ran, with `detail` (copied; may be NULL). The rule's name and the
 * detail share one allocation (freed through `rule`); the array grows by doubling. */
static xs_rule_applied *add_applied(applying *ap, xs_act_kind kind, unsigned nodes,
                                    const char *detail)
{
    xs_rule_result *res = ap->res;
    if (res->n_applied == XS_RULES_MAX_APPLIED) {
        res->applied_omitted++;
        return NULL;
    }
    size_t n = res->n_applied;
    if (n == 0 || (n >= 4 && (n & (n - 1)) == 0)) {
        xs_rule_applied *grown = xs_realloc(res->applied, (n == 0 ? 4 : 2 * n) * sizeof(*grown));
        if (grown == NULL)
            return oom(ap);
        res->applied = grown;
    }
    xs_rule_applied *a = &res->applied[n];
    memset(a, 0, sizeof(*a));
    a->action = xs_act_name(kind);
    a->nodes = nodes;
    size_t rl = strlen(ap->rule->name) + 1, dl = detail != NULL ? strlen(detail) + 1 : 0;
    a->rule = xs_malloc(rl + dl);
    if (a->rule == NULL)
        return oom(ap);
    memcpy(a->rule, ap->rule->name, rl);
    if (detail != NULL) {
        a->detail = a->rule + rl;
        memcpy(a->detail, detail, dl);
    }
    res->n_applied++;
    return a;
}

static xs_rule_applied *add_appliedf(applying *ap, xs_act_kind kind, unsigned nodes,
                                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static xs_rule_applied *add_appliedf(applying *ap, xs_act_kind kind, unsigned nodes,
                                     const char *fmt, ...)
{
    char detail[300];
    va_list args;
    va_start(args, fmt);
    vsnprintf(detail, sizeof(detail), fmt, args);
    va_end(args);
    return add_applied(ap, kind, nodes, detail);
}

/* Records a rewrite that changed `nodes` nodes. */
static void applied_rewrite(applying *ap, xs_act_kind kind, unsigned nodes)
{
    if (ap->want_copy)
        return; /* it runs again on the copy and is recorded then */
    /* "N node(s)", written by hand: this runs for most stanzas a rewrite rule matches, and
     * vsnprintf() cost more than the rest of recording it. */
    char detail[32], *e = detail + sizeof(detail);
    static const char unit[] = " nodes";
    size_t ul = nodes == 1 ? sizeof(unit) - 2 : sizeof(unit) - 1;
    *--e = 0;
    e -= ul;
    memcpy(e, unit, ul);
    unsigned v = nodes;
    do
        *--e = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    xs_rule_applied *a = add_applied(ap, kind, nodes, e);
    if (nodes > 0)
        ap->modified = true;
    if (a == NULL || nodes == 0 || !(ap->ctx->flags & XS_RULE_EXPLAIN))
        return;
    a->before = ap->last_xml;
    ap->last_xml = serialize(stream_of(ap), ap->doc, ap->root, NULL);
    if (ap->last_xml != NULL)
        a->after = xs_strdup(ap->last_xml);
    if (a->before == NULL || ap->last_xml == NULL || a->after == NULL)
        ap->err = XS_ENOMEM;
}

/* ---- the stanza the rules see ---------------------------------------------------------------- */

/* The rules see the stanza as the root element of a document of its own. Copying it there for
 * every stanza was most of what rules cost, and most stanzas are only looked at; so until an
 * action is about to change it (need_copy()), XPaths look at the parser's own element, lent to
 * the set's empty shell document for the time of one evaluation. Lending swaps the element's
 * parent and sibling pointers for the shell's, so that `/` is the shell, `..` of the stanza is
 * `/`, and no axis leads into the stream element or to other stanzas; give_back() puts the three
 * pointers back exactly, and nothing else of the parser's tree is written. Namespaces the stanza
 * inherits from the stream element still resolve: name tests compare the xmlNs each node points
 * to, and those stay where they are. Only id() and the namespace axis look at the document or
 * walk up for declarations, so an XPath that uses them is evaluated on the copy
 * (xs_xpath_rw.own_doc). Returns the document to evaluate in.
 *
 * This is the one write into the tree the parser hands out const (xs_event.node), and it stays
 * on purpose: libxml2's XPath finds `/` and `..` by walking parent pointers and has no way to
 * evaluate under another root, so the alternative is a copy of every stanza, which was most of
 * what rules cost. It is safe because the parser is neither re-entered nor reading its tree while
 * its callback runs xs_rules_apply(), nothing but the three link pointers and the shell's child
 * pointers is written, and give_back() restores them before xs_rules_apply() returns, on every
 * path (test_rules checks the tree, links included, after every apply). With the reference
 * switch (inspect/reference.h) the stanza is copied first and the parser's tree is not written
 * at all. */
static xmlDoc *lend(applying *ap)
{
    if (ap->doc != NULL)
        return ap->doc;
    xmlDoc *shell = ap->set->shell;
    xmlNode *n = ap->root;
    ap->lent = true;
    ap->lent_parent = n->parent;
    ap->lent_prev = n->prev;
    ap->lent_next = n->next;
    n->parent = (xmlNode *)shell;
    n->prev = n->next = NULL;
    shell->children = shell->last = n;
    return shell;
}

static void give_back(applying *ap)
{
    if (!ap->lent)
        return;
    xmlDoc *shell = ap->set->shell;
    xmlNode *n = ap->root;
    n->parent = ap->lent_parent;
    n->prev = ap->lent_prev;
    n->next = ap->lent_next;
    shell->children = shell->last = NULL;
    ap->lent = false;
}

/* Makes the copy the rules work on from now on. False when out of memory. */
static bool ensure_copy(applying *ap)
{
    if (ap->doc != NULL)
        return true;
    ap->doc = xs_stanza_copy(ap->ev->node);
    if (ap->doc == NULL) {
        ap->err = XS_ENOMEM;
        return false;
    }
    ap->root = xmlDocGetRootElement(ap->doc);
    if (ap->ctx->flags & XS_RULE_EXPLAIN) {
        ap->last_xml = serialize(stream_of(ap), ap->doc, ap->root, NULL);
        if (ap->last_xml == NULL) {
            ap->err = XS_ENOMEM;
            return false;
        }
    }
    return true;
}

/* Called by an action right before its first change: true when the stanza is still the
 * parser's, and the action must stop changing nothing, to be run again on a copy (see
 * run_rewrite()). */
static bool need_copy(applying *ap)
{
    if (ap->doc != NULL)
        return false;
    ap->want_copy = true;
    return true;
}

/* ---- XPath ----------------------------------------------------------------------------------- */

/* Evaluates `comp` on the stanza, which the caller has lent (lend() gave `doc`). */
static xmlXPathObject *eval(applying *ap, xmlDoc *doc, xmlXPathCompExpr *comp)
{
    xmlXPathContext *x = ap->set->xpath;
    x->doc = doc;
    x->node = ap->root;
    x->opLimit = XPATH_OP_LIMIT;
    x->opCount = 0;
    /* The context is the stanza alone: position() and last() are 1. */
    x->contextSize = 1;
    x->proximityPosition = 1;
    xmlResetError(&x->lastError);
    xmlXPathObject *obj = xmlXPathCompiledEval(comp, x);
    if (obj == NULL) {
        if (XS_XPATH_OOM(x->lastError.code))
            ap->err = XS_ENOMEM;
        else
            note_error(ap, "XPath: %s", xs_xpath_error_text(x->lastError.code));
    }
    xmlResetError(&x->lastError);
    return obj;
}

/* What the quick evaluator selects (see select_nodes()); false when it gave up. */
static bool select_quick(applying *ap, const xs_xpath *xp, bool not_root, xmlNode ***out, size_t *n)
{
    xmlNode **sel = ap->set->selected;
    size_t found = 0, k = 0;
    int rc = xs_qx_select(xp->quick, &ap->qenv, ap->root, sel, XS_RULES_MAX_NODES + 1, &found);
    if (rc < 0)
        return false;
    for (size_t i = 0; i < found; i++)
        if (!not_root || sel[i] != ap->root)
            sel[k++] = sel[i];
    if (k > XS_RULES_MAX_NODES || rc == 1) {
        note_error(ap, "an action selected more than %u nodes; the rest were left",
                   XS_RULES_MAX_NODES);
        k = XS_RULES_MAX_NODES;
    }
    *n = k;
    if (k > 0 && (*out = xs_malloc(k * sizeof(**out))) == NULL) {
        ap->err = XS_ENOMEM;
        *n = 0;
    } else if (k > 0) {
        memcpy(*out, sel, k * sizeof(**out));
    }
    return true;
}

/* The nodes an action's XPath selects, in document order, without namespace nodes and the
 * document node; the XPath result is freed before the caller changes anything. With
 * `not_root`, the stanza element is left out too. Returns the count (at most
 * XS_RULES_MAX_NODES) and *out (xs_free()), or 0. */
static size_t select_nodes(applying *ap, const xs_xpath *xp, bool not_root, xmlNode ***out)
{
    *out = NULL;
    size_t nq;
    if (xp->quick != NULL && !ap->set->reference && select_quick(ap, xp, not_root, out, &nq))
        return nq;
    xmlXPathObject *obj = eval(ap, lend(ap), xp->comp);
    if (obj == NULL) {
        give_back(ap);
        return 0;
    }
    size_t n = 0;
    xmlNodeSet *set = obj->type == XPATH_NODESET ? obj->nodesetval : NULL;
    if (set != NULL && set->nodeNr > 0) {
        xmlXPathNodeSetSort(set);
        *out = xs_malloc((size_t)set->nodeNr * sizeof(**out));
        if (*out == NULL) {
            ap->err = XS_ENOMEM;
        } else {
            for (int i = 0; i < set->nodeNr; i++) {
                xmlNode *node = set->nodeTab[i];
                if (node == NULL || node->type == XML_NAMESPACE_DECL ||
                    node->type == XML_DOCUMENT_NODE || (not_root && node == ap->root))
                    continue;
                if (n == XS_RULES_MAX_NODES) {
                    note_error(ap, "an action selected more than %u nodes; the rest were left",
                               XS_RULES_MAX_NODES);
                    break;
                }
                (*out)[n++] = node;
            }
        }
    }
    xmlXPathFreeObject(obj);
    give_back(ap);
    if (n == 0) {
        xs_free(*out);
        *out = NULL;
    }
    return n;
}

/* ---- namespaces of copied fragments ---------------------------------------------------------- */

/* Next node of `top`'s subtree in document order. */
static xmlNode *next_in(xmlNode *n, const xmlNode *top)
{
    if (n->type == XML_ELEMENT_NODE && n->children != NULL)
        return n->children;
    while (n != top && n->next == NULL)
        n = n->parent;
    return n == top ? NULL : n->next;
}

/* The fragment namespace becomes the stream's content namespace, and placeholders in text and
 * attribute values are expanded. */
static void fix_fragment(applying *ap, xmlNode *top, bool vars)
{
    for (xmlNode *n = top; n != NULL && ap->err == 0; n = next_in(n, top)) {
        if (n->type == XML_ELEMENT_NODE) {
            for (xmlNs *d = n->nsDef; d != NULL; d = d->next) {
                if (d->href == NULL || !xmlStrEqual(d->href, BAD_CAST XS_RULES_FRAGMENT_NS))
                    continue;
                xmlChar *h = xmlStrdup(BAD_CAST ap->content_ns);
                if (h == NULL) {
                    ap->err = XS_ENOMEM;
                    return;
                }
                xmlFree((xmlChar *)d->href);
                d->href = h;
            }
            if (!vars)
                continue;
            for (xmlAttr *a = n->properties; a != NULL; a = a->next) {
                xmlChar *v = xmlNodeGetContent((xmlNode *)a);
                if (v == NULL)
                    continue;
                char *e = expand(ap, (const char *)v, false, XS_RULES_MAX_GROWTH);
                xmlFree(v);
                if (e == NULL || xmlSetNsProp(n, a->ns, a->name, BAD_CAST e) == NULL)
                    ap->err = XS_ENOMEM;
                xs_free(e);
            }
        } else if (vars && n->type == XML_TEXT_NODE && n->content != NULL) {
            char *e = expand(ap, (const char *)n->content, false, XS_RULES_MAX_GROWTH);
            if (e == NULL)
                ap->err = XS_ENOMEM;
            else
                xmlNodeSetContent(n, BAD_CAST e);
            xs_free(e);
        }
    }
}

/* After `el` was attached: declarations on it that its new ancestors already make the same way
 * are removed and their users pointed at the ancestors' declarations. */
static void drop_redundant_decls(xmlDoc *doc, xmlNode *el)
{
    xmlNs **link = &el->nsDef;
    while (*link != NULL) {
        xmlNs *d = *link;
        xmlNs *up = el->parent != NULL ? xmlSearchNs(doc, el->parent, d->prefix) : NULL;
        if (up == NULL || up->href == NULL || d->href == NULL || !xmlStrEqual(up->href, d->href)) {
            link = &d->next;
            continue;
        }
        for (xmlNode *n = el; n != NULL; n = next_in(n, el)) {
            if (n->type != XML_ELEMENT_NODE)
                continue;
            if (n->ns == d)
                n->ns = up;
            for (xmlAttr *a = n->properties; a != NULL; a = a->next)
                if (a->ns == d)
                    a->ns = up;
        }
        *link = d->next;
        d->next = NULL;
        xmlFreeNs(d);
    }
}

/* ---- actions --------------------------------------------------------------------------------- */

/* A namespace for a prefixed attribute of `el`: one in scope with the URI, or a new declaration
 * on `el` with a prefix bound to nothing in scope (the file's own prefix when free), so that no
 * descendant's use of a prefix is captured. */
static xmlNs *attr_ns(applying *ap, xmlNode *el, const xs_action *a)
{
    xmlNs *ns = xmlSearchNsByHref(ap->doc, el, BAD_CAST a->attr_uri);
    if (ns != NULL && ns->prefix != NULL)
        return ns;
    char prefix[80];
    if (strlen(a->attr_prefix) < sizeof(prefix))
        memcpy(prefix, a->attr_prefix, strlen(a->attr_prefix) + 1);
    else
        snprintf(prefix, sizeof(prefix), "ns");
    for (unsigned k = 0; xmlSearchNs(ap->doc, el, BAD_CAST prefix) != NULL; k++) {
        if (k == 1000) {
            note_error(ap, "set-attr: no free namespace prefix");
            return NULL;
        }
        snprintf(prefix, sizeof(prefix), "ns%u", k);
    }
    ns = xmlNewNs(el, BAD_CAST a->attr_uri, BAD_CAST prefix);
    if (ns == NULL)
        ap->err = XS_ENOMEM;
    return ns;
}

static void act_set_attr(applying *ap, const xs_action *a)
{
    xmlNode **nodes;
    size_t n = select_nodes(ap, &a->target, false, &nodes);
    unsigned changed = 0;
    char *value = n > 0 ? expand(ap, a->value, false, XS_RULES_MAX_GROWTH) : NULL;
    for (size_t i = n; value != NULL && i-- > 0 && ap->err == 0;) {
        xmlNode *el = nodes[i];
        if (el->type != XML_ELEMENT_NODE)
            continue;
        xmlChar *old = xmlGetNsProp(el, BAD_CAST a->attr_local, BAD_CAST a->attr_uri);
        bool same = old != NULL && strcmp((const char *)old, value) == 0;
        xmlFree(old);
        if (same)
            continue;
        if (need_copy(ap) || !spend(ap, strlen(value) + strlen(a->attr_local) + 16))
            break;
        xmlNs *ns = NULL;
        if (a->attr_uri != NULL && (ns = attr_ns(ap, el, a)) == NULL)
            break;
        if (xmlSetNsProp(el, ns, BAD_CAST a->attr_local, BAD_CAST value) == NULL) {
            ap->err = XS_ENOMEM;
            break;
        }
        changed++;
    }
    xs_free(value);
    xs_free(nodes);
    applied_rewrite(ap, XS_ACT_SET_ATTR, changed);
}

static void act_remove_attr(applying *ap, const xs_action *a)
{
    xmlNode **nodes;
    size_t n = select_nodes(ap, &a->target, false, &nodes);
    unsigned changed = 0;
    for (size_t i = n; i-- > 0;) {
        if (nodes[i]->type != XML_ELEMENT_NODE)
            continue;
        xmlAttr *attr = xmlHasNsProp(nodes[i], BAD_CAST a->attr_local, BAD_CAST a->attr_uri);
        if (attr != NULL && need_copy(ap))
            break;
        if (attr != NULL && xmlRemoveProp(attr) == 0)
            changed++;
    }
    xs_free(nodes);
    applied_rewrite(ap, XS_ACT_REMOVE_ATTR, changed);
}

static void act_set_text(applying *ap, const xs_action *a)
{
    xmlNode **nodes;
    size_t n = select_nodes(ap, &a->target, false, &nodes);
    unsigned changed = 0;
    char *value = n > 0 ? expand(ap, a->value, false, XS_RULES_MAX_GROWTH) : NULL;
    size_t vlen = value != NULL ? strlen(value) : 0;
    for (size_t i = n; value != NULL && i-- > 0 && ap->err == 0;) {
        xmlNode *node = nodes[i];
        if (node->type == XML_ELEMENT_NODE) {
            if (node->children != NULL && node->children == node->last &&
                node->children->type == XML_TEXT_NODE && node->children->content != NULL &&
                strcmp((const char *)node->children->content, value) == 0)
                continue;
            if (need_copy(ap) || !spend(ap, vlen))
                break;
            xmlNode *text = vlen > 0 ? xmlNewDocTextLen(ap->doc, BAD_CAST value, (int)vlen) : NULL;
            if (vlen > 0 && text == NULL) {
                ap->err = XS_ENOMEM;
                break;
            }
            xmlFreeNodeList(node->children);
            node->children = node->last = NULL;
            if (text != NULL)
                xmlAddChild(node, text);
        } else if (node->type == XML_ATTRIBUTE_NODE) {
            xmlAttr *attr = (xmlAttr *)node;
            xmlChar *old = xmlNodeGetContent(node);
            bool same = old != NULL && strcmp((const char *)old, value) == 0;
            xmlFree(old);
            if (same)
                continue;
            if (need_copy(ap) || !spend(ap, vlen))
                break;
            if (xmlSetNsProp(attr->parent, attr->ns, attr->name, BAD_CAST value) == NULL) {
                ap->err = XS_ENOMEM;
                break;
            }
        } else if (node->type == XML_TEXT_NODE || node->type == XML_CDATA_SECTION_NODE) {
            if (node->content != NULL && strcmp((const char *)node->content, value) == 0)
                continue;
            if (need_copy(ap) || !spend(ap, vlen))
                break;
            xmlNodeSetContent(node, BAD_CAST value);
        } else {
            continue;
        }
        changed++;
    }
    xs_free(value);
    xs_free(nodes);
    applied_rewrite(ap, XS_ACT_SET_TEXT, changed);
}

/* Counts the characters of the run from u[j] on: 1 when they reach f->run, 0 when the text ends
 * first; otherwise -1 with *next set to the byte after the run. */
static int measure_run(const xs_re_run *f, const unsigned char *u, size_t j, size_t n, size_t *next)
{
    size_t run = 0;
    for (; j < n; j++) {
        unsigned step = f->step[u[j]];
        if (step == XS_RE_BREAK)
            break;
        run += step == XS_RE_COUNT;
        if (run == f->run)
            return 1;
    }
    if (j >= n)
        return 0;
    *next = j + 1;
    return -1;
}

bool xs_re_may_match(const xs_re_run *f, const char *s, size_t n)
{
    if (f->run == 0)
        return true;
    const unsigned char *u = (const unsigned char *)s;
    size_t need = f->run, i = 0;
#if defined(__SSE2__)
    if (f->range) {
        /* Sixteen bytes at a time: a block without a byte that may count (an ASCII character
         * from lo to hi, a lead byte from `lead` on) adds nothing to a run. Otherwise the run
         * through the block's first such byte is measured from it (what precedes it in the
         * run counts nothing), and the search goes on after its end. */
        const __m128i lo = _mm_set1_epi8((char)f->lo), span = _mm_set1_epi8((char)(f->hi - f->lo));
        const __m128i lead = _mm_set1_epi8((char)f->lead);
        while (n - i >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(u + i));
            __m128i d = _mm_sub_epi8(v, lo);
            __m128i ascii = _mm_cmpeq_epi8(_mm_min_epu8(d, span), d);
            __m128i high = _mm_cmpeq_epi8(_mm_max_epu8(v, lead), v);
            int m = _mm_movemask_epi8(_mm_or_si128(ascii, high));
            if (m == 0) {
                i += 16;
                continue;
            }
            int r = measure_run(f, u, i + (size_t)__builtin_ctz((unsigned)m), n, &i);
            if (r >= 0)
                return r;
        }
    }
#endif
    /* A run of `need` characters starting anywhere in [i, i + need) takes at least `need` bytes,
     * so it holds byte i + need - 1. When that byte breaks runs, none starts before the byte
     * after it: most bytes of a text are never looked at. Otherwise the run through that byte
     * is measured from its start (found backwards) to its end. */
    while (need <= n - i) {
        size_t j = i + need - 1;
        if (f->step[u[j]] == XS_RE_BREAK) {
            i = j + 1;
            continue;
        }
        while (j > i && f->step[u[j - 1]] != XS_RE_BREAK)
            j--;
        int r = measure_run(f, u, j, n, &i);
        if (r >= 0)
            return r;
    }
    return false;
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

/* Adds the text nodes a selected node stands for to `texts` (capped). */
static void collect_texts(xmlNode *node, xmlNode **texts, size_t *n, bool *capped)
{
    xmlNode *top = node;
    if (node->type == XML_TEXT_NODE || node->type == XML_CDATA_SECTION_NODE) {
        if (*n < XS_RULES_MAX_NODES)
            texts[(*n)++] = node;
        else
            *capped = true;
        return;
    }
    if (node->type == XML_ATTRIBUTE_NODE) {
        for (xmlNode *c = node->children; c != NULL; c = c->next)
            collect_texts(c, texts, n, capped);
        return;
    }
    if (node->type != XML_ELEMENT_NODE)
        return;
    for (xmlNode *c = next_in(top, top); c != NULL; c = next_in(c, top)) {
        if (c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE)
            continue;
        if (*n == XS_RULES_MAX_NODES) {
            *capped = true;
            return;
        }
        texts[(*n)++] = c;
    }
}

static void act_replace_text(applying *ap, const xs_action *a)
{
    xmlNode **nodes;
    size_t n = select_nodes(ap, &a->target, false, &nodes);
    unsigned changed = 0;
    xmlNode **texts = NULL;
    size_t nt = 0;
    bool capped = false;
    char *repl = NULL;
    PCRE2_UCHAR *buf = NULL;
    size_t cap = 0;

    if (n == 0)
        goto out;
    texts = ap->set->texts;
    for (size_t i = 0; i < n && !capped; i++)
        collect_texts(nodes[i], texts, &nt, &capped);
    if (capped)
        note_error(ap, "replace-text: more than %u text nodes; the rest were left",
                   XS_RULES_MAX_NODES);
    if (ap->doc == NULL) {
        /* On the parser's stanza, only whether the regex matches anywhere: usually it does
         * not, and then nothing is copied or substituted. A match (or a failure, which the run
         * on the copy reports) asks for the copy. */
        for (size_t i = 0; i < nt && !ap->want_copy; i++) {
            const char *subject = texts[i]->content != NULL ? (const char *)texts[i]->content : "";
            size_t slen = strlen(subject);
            if (!ap->set->reference && !xs_re_may_match(&a->re_run, subject, slen))
                continue;
            /* libxml2 checked that the parser's text is UTF-8. */
            regex_begin(ap);
            int rc = pcre2_match(a->re, (PCRE2_SPTR)subject, slen, 0, PCRE2_NO_UTF_CHECK,
                                 ap->set->mdata, ap->set->mctx);
            if (regex_spent(ap, rc))
                goto out;
            if (rc != PCRE2_ERROR_NOMATCH)
                need_copy(ap);
        }
        goto out;
    }
    repl = expand(ap, a->value, true, XS_RULES_MAX_GROWTH);
    if (repl == NULL) {
        ap->err = XS_ENOMEM;
        goto out;
    }
    /* An element and a text node inside it may both be selected: each text once. */
    qsort(texts, nt, sizeof(*texts), cmp_ptr);
    size_t u = 0;
    for (size_t i = 0; i < nt; i++)
        if (u == 0 || texts[u - 1] != texts[i])
            texts[u++] = texts[i];
    nt = u;
    for (size_t i = 0; i < nt && ap->err == 0; i++) {
        xmlNode *t = texts[i];
        const char *subject = t->content != NULL ? (const char *)t->content : "";
        size_t slen = strlen(subject);
        if (!ap->set->reference && !xs_re_may_match(&a->re_run, subject, slen))
            continue;
        /* Room for the subject plus what the budget allows to grow. */
        size_t want = slen + (ap->budget < 4096 ? ap->budget : 4096) + 1;
        for (;;) {
            if (want > cap) {
                PCRE2_UCHAR *nb = xs_realloc(buf, want);
                if (nb == NULL) {
                    ap->err = XS_ENOMEM;
                    goto out;
                }
                buf = nb;
                cap = want;
            }
            PCRE2_SIZE olen = cap;
            regex_begin(ap);
            int rc = pcre2_substitute(a->re, (PCRE2_SPTR)subject, slen, 0,
                                      PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_UNSET_EMPTY |
                                          PCRE2_SUBSTITUTE_OVERFLOW_LENGTH,
                                      NULL, ap->set->mctx, (PCRE2_SPTR)repl, PCRE2_ZERO_TERMINATED,
                                      buf, &olen);
            if (rc == PCRE2_ERROR_NOMEMORY) {
                /* olen is the length needed, without the NUL. */
                if (olen + 1 <= cap || olen > slen + ap->budget) {
                    spend(ap, olen - slen);
                    goto out;
                }
                want = olen + 1;
                continue;
            }
            if (regex_spent(ap, rc))
                goto out;
            if (rc < 0) {
                PCRE2_UCHAR msg[120];
                pcre2_get_error_message(rc, msg, sizeof(msg));
                note_error(ap, "replace-text: %s", (const char *)msg);
                break;
            }
            if (rc > 0 && (olen != slen || memcmp(buf, subject, slen) != 0)) {
                if (olen > slen && !spend(ap, olen - slen))
                    goto out;
                xmlNodeSetContentLen(t, buf, (int)olen);
                changed++;
            }
            break;
        }
    }
out:
    xs_free(buf);
    xs_free(repl);
    xs_free(nodes);
    applied_rewrite(ap, XS_ACT_REPLACE_TEXT, changed);
}

static void act_remove(applying *ap, const xs_action *a)
{
    xmlNode **nodes;
    size_t n = select_nodes(ap, &a->target, true, &nodes);
    if (n > 0 && need_copy(ap))
        n = 0;
    /* Unlink everything first: then no selected node is inside another, and each is freed
     * once. */
    for (size_t i = n; i-- > 0;)
        xmlUnlinkNode(nodes[i]);
    for (size_t i = 0; i < n; i++)
        xmlFreeNode(nodes[i]);
    xs_free(nodes);
    applied_rewrite(ap, XS_ACT_REMOVE, (unsigned)n);
}

static void act_insert(applying *ap, const xs_action *a)
{
    xmlNode **nodes;
    size_t n = select_nodes(ap, &a->target, false, &nodes);
    unsigned changed = 0;
    xmlNode *frag = xmlDocGetRootElement(a->fragment);
    for (size_t i = 0; i < n && ap->err == 0; i++) {
        xmlNode *el = nodes[i];
        if (el->type != XML_ELEMENT_NODE)
            continue;
        if (need_copy(ap) || !spend(ap, a->fragment_size))
            break;
        for (xmlNode *c = frag->children; c != NULL && ap->err == 0; c = c->next) {
            xmlNode *copy = xmlDocCopyNode(c, ap->doc, 1);
            if (copy == NULL) {
                ap->err = XS_ENOMEM;
                break;
            }
            fix_fragment(ap, copy, a->fragment_vars);
            bool element = copy->type == XML_ELEMENT_NODE;
            /* A text node may be merged into the last text child and freed. */
            xmlNode *added = xmlAddChild(el, copy);
            if (added == NULL) {
                xmlFreeNode(copy);
                ap->err = XS_ENOMEM;
                break;
            }
            if (element)
                drop_redundant_decls(ap->doc, added);
        }
        changed++;
    }
    xs_free(nodes);
    applied_rewrite(ap, XS_ACT_INSERT, changed);
}

static void act_inject(applying *ap, const xs_action *a)
{
    xmlNode *el = xmlDocGetRootElement(a->fragment)->children;
    while (el != NULL && el->type != XML_ELEMENT_NODE)
        el = el->next;
    xmlDoc *doc = xmlNewDoc(BAD_CAST "1.0");
    xmlNode *copy = doc != NULL && el != NULL ? xmlDocCopyNode(el, doc, 1) : NULL;
    char *xml = NULL;
    size_t len = 0;
    if (copy == NULL)
        goto out;
    xmlDocSetRootElement(doc, copy);
    fix_fragment(ap, copy, a->fragment_vars);
    if (ap->err != 0)
        goto out;
    xml = serialize(NULL, doc, copy, &len);
    if (xml == NULL)
        goto out;
    xs_rule_inject *inj = xs_realloc(ap->res->injects, (ap->res->n_injects + 1) * sizeof(*inj));
    if (inj == NULL)
        goto out;
    ap->res->injects = inj;
    inj[ap->res->n_injects].direction = a->inject_dir;
    inj[ap->res->n_injects].xml = xml;
    inj[ap->res->n_injects].len = len;
    ap->res->n_injects++;
    xml = NULL;
    add_applied(ap, XS_ACT_INJECT, 0, xs_rule_dir_name(a->inject_dir));
    xmlFreeDoc(doc);
    return;
out:
    ap->err = XS_ENOMEM;
    xs_free(xml);
    if (doc != NULL)
        xmlFreeDoc(doc);
}

static bool is_stanza_ns(const xmlNode *n)
{
    return n->ns != NULL && n->ns->href != NULL &&
           (xmlStrEqual(n->ns->href, BAD_CAST "jabber:client") ||
            xmlStrEqual(n->ns->href, BAD_CAST "jabber:server"));
}

static void act_bounce(applying *ap, const xs_action *a)
{
    const xmlNode *orig = ap->ev->node;
    const char *name = (const char *)orig->name;
    xmlChar *type = xmlGetNoNsProp(orig, BAD_CAST "type");
    const char *why = NULL;
    xmlDoc *doc = NULL;

    if (ap->decided)
        goto out;
    ap->decided = true;
    if (!is_stanza_ns(orig) ||
        (strcmp(name, "message") != 0 && strcmp(name, "presence") != 0 && strcmp(name, "iq") != 0))
        why = "not a stanza";
    else if (type != NULL && xmlStrEqual(type, BAD_CAST "error"))
        why = "an error is never bounced";
    else if (type != NULL && strcmp(name, "iq") == 0 && xmlStrEqual(type, BAD_CAST "result"))
        why = "a result is never bounced";
    if (why != NULL) {
        ap->res->verdict = XS_VERDICT_DROP;
        add_appliedf(ap, XS_ACT_BOUNCE, 0, "dropped instead: %s", why);
        goto out;
    }

    const char *from = orig_attr(ap, 0), *to = orig_attr(ap, 1), *id = orig_attr(ap, 2);
    doc = xmlNewDoc(BAD_CAST "1.0");
    xmlNode *root = doc != NULL ? xmlNewDocNode(doc, NULL, BAD_CAST name, NULL) : NULL;
    if (root == NULL)
        goto oom;
    xmlDocSetRootElement(doc, root);
    xmlNs *ns = xmlNewNs(root, orig->ns->href, NULL);
    if (ns == NULL)
        goto oom;
    xmlSetNs(root, ns);
    if ((ap->orig[1] != NULL && xmlNewProp(root, BAD_CAST "from", BAD_CAST to) == NULL) ||
        (ap->orig[0] != NULL && xmlNewProp(root, BAD_CAST "to", BAD_CAST from) == NULL) ||
        (ap->orig[2] != NULL && xmlNewProp(root, BAD_CAST "id", BAD_CAST id) == NULL) ||
        xmlNewProp(root, BAD_CAST "type", BAD_CAST "error") == NULL)
        goto oom;
    xmlNode *err = xmlNewChild(root, ns, BAD_CAST "error", NULL);
    if (err == NULL || xmlNewProp(err, BAD_CAST "type", BAD_CAST a->error_type) == NULL)
        goto oom;
    xmlNode *cond = xmlNewChild(err, NULL, BAD_CAST a->condition, NULL);
    xmlNode *text = xmlNewChild(err, NULL, BAD_CAST "text", NULL);
    xmlNs *sns = cond != NULL ? xmlNewNs(cond, BAD_CAST NS_STANZAS, NULL) : NULL;
    xmlNs *tns = text != NULL ? xmlNewNs(text, BAD_CAST NS_STANZAS, NULL) : NULL;
    if (sns == NULL || tns == NULL)
        goto oom;
    xmlSetNs(cond, sns);
    xmlSetNs(text, tns);
    char msg[300];
    snprintf(msg, sizeof(msg), "bounced by xmppscope rule \"%s\"", ap->rule->name);
    xmlNodeAddContent(text, BAD_CAST msg);
    ap->res->bounce = serialize(NULL, doc, root, &ap->res->bounce_len);
    if (ap->res->bounce == NULL)
        goto oom;
    ap->res->verdict = XS_VERDICT_BOUNCE;
    add_applied(ap, XS_ACT_BOUNCE, 0, a->condition);
    goto out;
oom:
    ap->err = XS_ENOMEM;
out:
    if (doc != NULL)
        xmlFreeDoc(doc);
    xmlFree(type);
}

static void act_tag(applying *ap, const char *label)
{
    xs_rule_result *res = ap->res;
    for (size_t i = 0; i < res->n_tags; i++)
        if (strcmp(res->tags[i], label) == 0)
            goto applied;
    char **t = xs_realloc(res->tags, (res->n_tags + 1) * sizeof(*t));
    if (t == NULL) {
        ap->err = XS_ENOMEM;
        return;
    }
    res->tags = t;
    if ((t[res->n_tags] = xs_strdup(label)) == NULL) {
        ap->err = XS_ENOMEM;
        return;
    }
    res->n_tags++;
applied:
    add_applied(ap, XS_ACT_TAG, 0, label);
}

/* Runs an action that changes the stanza. It finds its nodes on the stanza the rules see; when
 * that is still the parser's and a node would change, the action stops before the change
 * (need_copy()) and runs again on a copy. */
static void run_rewrite(applying *ap, const xs_action *a,
                        void (*act)(applying *ap, const xs_action *a))
{
    if (a->target.own_doc && !ensure_copy(ap))
        return;
    act(ap, a);
    if (ap->want_copy) {
        ap->want_copy = false;
        if (ensure_copy(ap))
            act(ap, a);
    }
}

/* Runs one action. Returns true when no later rule should be tried. */
static bool run_action(applying *ap, const xs_action *a)
{
    switch (a->kind) {
    case XS_ACT_DROP:
        if (!ap->decided) {
            ap->decided = true;
            ap->res->verdict = XS_VERDICT_DROP;
            add_applied(ap, XS_ACT_DROP, 0, NULL);
        }
        return true;
    case XS_ACT_BOUNCE:
        act_bounce(ap, a);
        return true;
    case XS_ACT_SET_ATTR:
        run_rewrite(ap, a, act_set_attr);
        break;
    case XS_ACT_REMOVE_ATTR:
        run_rewrite(ap, a, act_remove_attr);
        break;
    case XS_ACT_SET_TEXT:
        run_rewrite(ap, a, act_set_text);
        break;
    case XS_ACT_REPLACE_TEXT:
        run_rewrite(ap, a, act_replace_text);
        break;
    case XS_ACT_REMOVE:
        run_rewrite(ap, a, act_remove);
        break;
    case XS_ACT_INSERT:
        run_rewrite(ap, a, act_insert);
        break;
    case XS_ACT_INJECT:
        act_inject(ap, a);
        break;
    case XS_ACT_DELAY:
        ap->res->delay_ms += a->ms;
        if (ap->res->delay_ms > XS_RULES_MAX_DELAY_MS)
            ap->res->delay_ms = XS_RULES_MAX_DELAY_MS;
        add_appliedf(ap, XS_ACT_DELAY, 0, "%lu ms", a->ms);
        break;
    case XS_ACT_TAG:
        act_tag(ap, a->value);
        break;
    case XS_ACT_PASS:
        add_applied(ap, XS_ACT_PASS, 0, NULL);
        return true;
    }
    return false;
}

/* The default namespace the stream element declares: what a stanza's unprefixed names mean. */
static const char *content_ns(const xmlNode *node)
{
    const xmlNode *stream = node->parent;
    if (stream != NULL && stream->type == XML_ELEMENT_NODE) {
        xmlNs *ns = xmlSearchNs(stream->doc, (xmlNode *)stream, NULL);
        if (ns != NULL && ns->href != NULL && ns->href[0] != 0)
            return (const char *)ns->href;
    }
    if (is_stanza_ns(node))
        return (const char *)node->ns->href;
    return "jabber:client";
}

/* True when no match of `r` is ruled out by the stanza's own name (no copy needed for that). */
/* Whether the stanza is the element `local` in URI index `ns` (-1: the stream's content
 * namespace), as a path from the root names it. */
static bool is_stanza(const applying *ap, const char *local, int ns)
{
    const xmlNode *n = ap->ev->node;
    if (local[0] != n->name[0] || strcmp(local, (const char *)n->name) != 0)
        return false;
    const char *href = n->ns != NULL && n->ns->href != NULL ? (const char *)n->ns->href : "";
    /* The content namespace is usually the very string the stanza's namespace points to. */
    const char *want = ns < 0 ? ap->content_ns : ap->set->uris[ns];
    return want == href || strcmp(want, href) == 0;
}

static bool rule_may_match(applying *ap, const xs_rule *r)
{
    for (size_t i = 0; i < r->n_matches; i++) {
        const xs_xpath *f = &r->matches[i];
        if (f->root_local != NULL && !is_stanza(ap, f->root_local, f->root_ns))
            return false;
    }
    return true;
}

/* Which of the set's roots the stanza is (bit k: roots[k]), looked up once per stanza. */
static uint64_t stanza_roots(const applying *ap)
{
    uint64_t mask = 0;
    for (size_t k = 0; k < ap->set->n_roots; k++)
        if (is_stanza(ap, ap->set->roots[k].local, ap->set->roots[k].ns))
            mask |= (uint64_t)1 << k;
    return mask;
}

/* Binds XS_XPATH_STANZA_PREFIX to the stanza's content namespace in the set's XPath context,
 * unless the previous stanza had it bound already (it nearly always did). */
static bool bind_stanza_ns(applying *ap)
{
    xs_rules *set = ap->set;
    ap->ns_bound = true;
    if (set->stanza_ns != NULL && strcmp(set->stanza_ns, ap->content_ns) == 0)
        return true;
    xs_free(set->stanza_ns);
    set->stanza_ns = xs_strdup(ap->content_ns);
    if (set->stanza_ns == NULL || xmlXPathRegisterNs(set->xpath, BAD_CAST XS_XPATH_STANZA_PREFIX,
                                                     BAD_CAST ap->content_ns) != 0) {
        xs_free(set->stanza_ns);
        set->stanza_ns = NULL;
        ap->err = XS_ENOMEM;
        return false;
    }
    return true;
}

static bool rule_matches(applying *ap, const xs_rule *r)
{
    xmlXPathContext *x = ap->set->xpath;
    for (size_t i = 0; i < r->n_matches; i++) {
        const xs_xpath *m = &r->matches[i];
        if (m->own_doc && !ensure_copy(ap))
            return false;
        int quick = m->quick != NULL && !ap->set->reference
                        ? xs_qx_bool(m->quick, &ap->qenv, ap->root)
                        : -1;
        if (quick == 0)
            return false;
        if (quick == 1)
            continue;
        /* Evaluated straight to a boolean: libxml2 stops at the first node found. */
        x->doc = lend(ap);
        x->node = ap->root;
        x->opLimit = XPATH_OP_LIMIT;
        x->opCount = 0;
        x->contextSize = 1;
        x->proximityPosition = 1;
        xmlResetError(&x->lastError);
        int yes = xmlXPathCompiledEvalToBoolean(m->comp, x);
        give_back(ap);
        if (yes < 0) {
            if (XS_XPATH_OOM(x->lastError.code))
                ap->err = XS_ENOMEM;
            else
                note_error(ap, "XPath: %s", xs_xpath_error_text(x->lastError.code));
            xmlResetError(&x->lastError);
        }
        if (yes != 1)
            return false;
    }
    return true;
}

int xs_rules_apply(xs_rules *rules, const xs_rule_ctx *ctx, const xs_event *ev, xs_rule_result *res)
{
    applying ap;
    memset(res, 0, sizeof(*res));
    if (ev->kind != XS_EV_STANZA || ev->node == NULL ||
        (ctx->direction != XS_RULE_C2S && ctx->direction != XS_RULE_S2C &&
         ctx->direction != XS_RULE_ANY))
        return XS_EINVAL;
    memset(&ap, 0, sizeof(ap));
    ap.set = rules;
    ap.ctx = ctx;
    ap.ev = ev;
    ap.res = res;
    ap.budget = XS_RULES_MAX_GROWTH;
    ap.re.total = XS_RULES_REGEX_STEPS + XS_RULES_REGEX_STEPS_PER_BYTE * (unsigned long)ev->len;
    ap.re.left = ap.re.total;
    /* The match context is the set's; the budget is this stanza's. */
    pcre2_set_callout(rules->mctx, regex_step, &ap.re);
    ap.content_ns = content_ns(ev->node);
    /* The one place the parser's const element loses its const: libxml2's XPath API takes a
     * non-const node, and lend() rewires three link pointers of it for one evaluation (see there
     * why, and why that is safe). Until ensure_copy() nothing else writes through ap.root:
     * every action calls need_copy() before its first change. */
    ap.root = (xmlNode *)ev->node;
    ap.qenv.uris = rules->uris;
    ap.qenv.stanza_ns = ap.content_ns;
    ap.qenv.op_limit = XPATH_OP_LIMIT;

    uint64_t roots = stanza_roots(&ap);
    for (size_t i = 0; i < rules->n_rules && ap.err == 0 && !ap.re.spent; i++) {
        xs_rule *r = &rules->rules[i];
        if ((r->builtin & ctx->builtin_off) != 0)
            continue;
        if (r->dir != XS_RULE_ANY && r->dir != ctx->direction)
            continue;
        if (r->root >= 0 ? !(roots >> r->root & 1) : !rule_may_match(&ap, r))
            continue;
        if (!ap.ns_bound && !bind_stanza_ns(&ap))
            break;
        if (rules->reference && !ensure_copy(&ap))
            break;
        ap.rule = r;
        if (!rule_matches(&ap, r))
            continue;
        r->hits++;
        res->rules_matched++;
        bool stop = false;
        for (size_t k = 0; k < r->n_actions && ap.err == 0 && !ap.re.spent; k++)
            stop |= run_action(&ap, &r->actions[k]);
        if (stop)
            break;
    }

    if (ap.err == 0 && ap.re.spent) {
        /* Nothing the rules decided for this stanza stands, so that it passes as it came
         * rather than half rewritten: only the note and the count of rules matched remain. */
        char *note = res->error;
        unsigned matched = res->rules_matched;
        res->error = NULL;
        xs_rule_result_clear(res);
        res->error = note;
        res->rules_matched = matched;
    } else if (ap.err == 0 && !ap.decided && ap.modified) {
        res->xml = serialize(stream_of(&ap), ap.doc, ap.root, &res->len);
        if (res->xml == NULL)
            ap.err = XS_ENOMEM;
        else
            res->verdict = XS_VERDICT_REWRITTEN;
    }
    /* No callout may point to this stack frame after it is gone. */
    pcre2_set_callout(rules->mctx, NULL, NULL);
    for (int i = 0; i < 3; i++)
        xmlFree(ap.orig[i]);
    xs_free(ap.last_xml);
    if (ap.doc != NULL)
        xmlFreeDoc(ap.doc);
    if (ap.err != 0) {
        xs_rule_result_clear(res);
        return ap.err;
    }
    return 0;
}
