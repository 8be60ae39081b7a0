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
 * them.
 *
 * This file is the engine: which rules a stanza meets, their matches, the stanza they see and
 * what is recorded; the actions themselves are in rules_actions.c (rules_apply.h between them). */
#include "filters/rule_set.h"
#include "filters/rules_apply.h"
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

/* ---- notes ------------------------------------------------------------ */

void xs_apply_note_error(xs_applying *ap, const char *fmt, ...)
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

static void *oom(xs_applying *ap)
{
    ap->err = XS_ENOMEM;
    return NULL;
}

/* ---- serialization --------------------------------------------------------------------------- */

/* Serializes `node` (of `doc`). With `stream`, namespace declarations on `node` that the stream
 * element already makes in the same way are left out: the bytes go into that stream. */
char *xs_apply_serialize(const xmlNode *stream, xmlDoc *doc, xmlNode *node, size_t *len)
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

static const xmlNode *stream_of(const xs_applying *ap)
{
    const xmlNode *p = ap->ev->node->parent;
    return p != NULL && p->type == XML_ELEMENT_NODE ? p : NULL;
}

/* ---- results --------------------------------------------------------------------------------- */

/* Records an action that ran, with `detail` (copied; may be NULL). The rule's name and the
 * detail share one allocation (freed through `rule`); the array grows by doubling. */
xs_rule_applied *xs_apply_add_applied(xs_applying *ap, xs_act_kind kind, unsigned nodes,
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

xs_rule_applied *xs_apply_add_appliedf(xs_applying *ap, xs_act_kind kind, unsigned nodes,
                                       const char *fmt, ...)
{
    char detail[300];
    va_list args;
    va_start(args, fmt);
    vsnprintf(detail, sizeof(detail), fmt, args);
    va_end(args);
    return xs_apply_add_applied(ap, kind, nodes, detail);
}

/* Records a rewrite that changed `nodes` nodes. */
void xs_apply_note_rewrite(xs_applying *ap, xs_act_kind kind, unsigned nodes)
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
    xs_rule_applied *a = xs_apply_add_applied(ap, kind, nodes, e);
    if (nodes > 0)
        ap->modified = true;
    if (a == NULL || nodes == 0 || !(ap->ctx->flags & XS_RULE_EXPLAIN))
        return;
    a->before = ap->last_xml;
    ap->last_xml = xs_apply_serialize(stream_of(ap), ap->doc, ap->root, NULL);
    if (ap->last_xml != NULL)
        a->after = xs_strdup(ap->last_xml);
    if (a->before == NULL || ap->last_xml == NULL || a->after == NULL)
        ap->err = XS_ENOMEM;
}

/* ---- the stanza the rules see ---------------------------------------------------------------- */

/* The rules see the stanza as the root element of a document of its own. Copying it there for
 * every stanza was most of what rules cost, and most stanzas are only looked at; so until an
 * action is about to change it (xs_apply_need_copy()), XPaths look at the parser's own element,
 * lent to the set's empty shell document for the time of one evaluation. Lending swaps the
 * element's parent and sibling pointers for the shell's, so that `/` is the shell, `..` of the
 * stanza is
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
static xmlDoc *lend(xs_applying *ap)
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

static void give_back(xs_applying *ap)
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
bool xs_apply_ensure_copy(xs_applying *ap)
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
        ap->last_xml = xs_apply_serialize(stream_of(ap), ap->doc, ap->root, NULL);
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
bool xs_apply_need_copy(xs_applying *ap)
{
    if (ap->doc != NULL)
        return false;
    ap->want_copy = true;
    return true;
}

/* ---- XPath ----------------------------------------------------------------------------------- */

/* Evaluates `comp` on the stanza, which the caller has lent (lend() gave `doc`). */
static xmlXPathObject *eval(xs_applying *ap, xmlDoc *doc, xmlXPathCompExpr *comp)
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
            xs_apply_note_error(ap, "XPath: %s", xs_xpath_error_text(x->lastError.code));
    }
    xmlResetError(&x->lastError);
    return obj;
}

/* What the quick evaluator selects (see xs_apply_select_nodes()); false when it gave up. */
static bool select_quick(xs_applying *ap, const xs_xpath *xp, bool not_root, xmlNode ***out,
                         size_t *n)
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
        xs_apply_note_error(ap, "an action selected more than %u nodes; the rest were left",
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
size_t xs_apply_select_nodes(xs_applying *ap, const xs_xpath *xp, bool not_root, xmlNode ***out)
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
                    xs_apply_note_error(ap,
                                        "an action selected more than %u nodes; the rest were left",
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

/* The default namespace the stream element declares: what a stanza's unprefixed names mean. */
static const char *content_ns(const xmlNode *node)
{
    const xmlNode *stream = node->parent;
    if (stream != NULL && stream->type == XML_ELEMENT_NODE) {
        xmlNs *ns = xmlSearchNs(stream->doc, (xmlNode *)stream, NULL);
        if (ns != NULL && ns->href != NULL && ns->href[0] != 0)
            return (const char *)ns->href;
    }
    if (xs_apply_is_stanza_ns(node))
        return (const char *)node->ns->href;
    return "jabber:client";
}

/* True when no match of `r` is ruled out by the stanza's own name (no copy needed for that). */
/* Whether the stanza is the element `local` in URI index `ns` (-1: the stream's content
 * namespace), as a path from the root names it. */
static bool is_stanza(const xs_applying *ap, const char *local, int ns)
{
    const xmlNode *n = ap->ev->node;
    if (local[0] != n->name[0] || strcmp(local, (const char *)n->name) != 0)
        return false;
    const char *href = n->ns != NULL && n->ns->href != NULL ? (const char *)n->ns->href : "";
    /* The content namespace is usually the very string the stanza's namespace points to. */
    const char *want = ns < 0 ? ap->content_ns : ap->set->uris[ns];
    return want == href || strcmp(want, href) == 0;
}

static bool rule_may_match(xs_applying *ap, const xs_rule *r)
{
    for (size_t i = 0; i < r->n_matches; i++) {
        const xs_xpath *f = &r->matches[i];
        if (f->root_local != NULL && !is_stanza(ap, f->root_local, f->root_ns))
            return false;
    }
    return true;
}

/* Which of the set's roots the stanza is (bit k: roots[k]), looked up once per stanza. */
static uint64_t stanza_roots(const xs_applying *ap)
{
    uint64_t mask = 0;
    for (size_t k = 0; k < ap->set->n_roots; k++)
        if (is_stanza(ap, ap->set->roots[k].local, ap->set->roots[k].ns))
            mask |= (uint64_t)1 << k;
    return mask;
}

/* Binds XS_XPATH_STANZA_PREFIX to the stanza's content namespace in the set's XPath context,
 * unless the previous stanza had it bound already (it nearly always did). */
static bool bind_stanza_ns(xs_applying *ap)
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

static bool rule_matches(xs_applying *ap, const xs_rule *r)
{
    xmlXPathContext *x = ap->set->xpath;
    for (size_t i = 0; i < r->n_matches; i++) {
        const xs_xpath *m = &r->matches[i];
        if (m->own_doc && !xs_apply_ensure_copy(ap))
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
                xs_apply_note_error(ap, "XPath: %s", xs_xpath_error_text(x->lastError.code));
            xmlResetError(&x->lastError);
        }
        if (yes != 1)
            return false;
    }
    return true;
}

int xs_rules_apply(xs_rules *rules, const xs_rule_ctx *ctx, const xs_event *ev, xs_rule_result *res)
{
    xs_applying ap;
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
    pcre2_set_callout(rules->mctx, xs_apply_regex_step, &ap.re);
    ap.content_ns = content_ns(ev->node);
    /* The one place the parser's const element loses its const: libxml2's XPath API takes a
     * non-const node, and lend() rewires three link pointers of it for one evaluation (see there
     * why, and why that is safe). Until xs_apply_ensure_copy() nothing else writes through ap.root:
     * every action calls xs_apply_need_copy() before its first change. */
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
        if (rules->reference && !xs_apply_ensure_copy(&ap))
            break;
        ap.rule = r;
        if (!rule_matches(&ap, r))
            continue;
        r->hits++;
        res->rules_matched++;
        bool stop = false;
        for (size_t k = 0; k < r->n_actions && ap.err == 0 && !ap.re.spent; k++)
            stop |= xs_apply_run_action(&ap, &r->actions[k]);
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
        res->xml = xs_apply_serialize(stream_of(&ap), ap.doc, ap.root, &res->len);
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
