/* The actions of rules (see rules.h): what each one does to the stanza the rules see, or to the
 * result (drop, bounce, inject, delay, tag), and the helpers only they use: placeholders, the
 * growth budget and the regex budget. The engine that runs them is rules.c (rules_apply.h).
 *
 * Actions that free nodes must never touch a node they freed: nodes are taken out of the XPath
 * result first (freeing that result reads every node in it), and handled in reverse document
 * order, so a node's descendants and attributes are handled before the node itself may free
 * them. */
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

#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

static const char *orig_attr(xs_applying *ap, int which)
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
static char *expand(xs_applying *ap, const char *s, bool dollar, size_t max)
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
static bool spend(xs_applying *ap, size_t n)
{
    if (n > ap->budget) {
        xs_apply_note_error(ap, "the rewrites of this stanza would add more than %u bytes; stopped",
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
int xs_apply_regex_step(pcre2_callout_block *cb, void *data)
{
    xs_re_budget *b = data;
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
static void regex_begin(xs_applying *ap)
{
    ap->re.pos = 0;
    pcre2_set_match_limit(ap->set->mctx,
                          ap->re.left > UINT32_MAX ? UINT32_MAX : (uint32_t)ap->re.left);
}

/* Whether a PCRE2 result code says the budget is used up; then the stanza passes unchanged, and
 * the note says so in place of any earlier one (it explains the whole stanza's fate). */
static bool regex_spent(xs_applying *ap, int rc)
{
    if (rc != PCRE2_ERROR_CALLOUT && rc != PCRE2_ERROR_MATCHLIMIT && rc != PCRE2_ERROR_DEPTHLIMIT)
        return false;
    ap->re.spent = true;
    ap->re.left = 0;
    xs_free(ap->res->error);
    ap->res->error = NULL;
    xs_apply_note_error(
        ap,
        "replace-text: the regex budget of this stanza was used up (%lu steps); the "
        "stanza passes unchanged",
        ap->re.total);
    return true;
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
static void fix_fragment(xs_applying *ap, xmlNode *top, bool vars)
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
static xmlNs *attr_ns(xs_applying *ap, xmlNode *el, const xs_action *a)
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
            xs_apply_note_error(ap, "set-attr: no free namespace prefix");
            return NULL;
        }
        snprintf(prefix, sizeof(prefix), "ns%u", k);
    }
    ns = xmlNewNs(el, BAD_CAST a->attr_uri, BAD_CAST prefix);
    if (ns == NULL)
        ap->err = XS_ENOMEM;
    return ns;
}

static void act_set_attr(xs_applying *ap, const xs_action *a)
{
    xmlNode **nodes;
    size_t n = xs_apply_select_nodes(ap, &a->target, false, &nodes);
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
        if (xs_apply_need_copy(ap) || !spend(ap, strlen(value) + strlen(a->attr_local) + 16))
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
    xs_apply_note_rewrite(ap, XS_ACT_SET_ATTR, changed);
}

static void act_remove_attr(xs_applying *ap, const xs_action *a)
{
    xmlNode **nodes;
    size_t n = xs_apply_select_nodes(ap, &a->target, false, &nodes);
    unsigned changed = 0;
    for (size_t i = n; i-- > 0;) {
        if (nodes[i]->type != XML_ELEMENT_NODE)
            continue;
        xmlAttr *attr = xmlHasNsProp(nodes[i], BAD_CAST a->attr_local, BAD_CAST a->attr_uri);
        if (attr != NULL && xs_apply_need_copy(ap))
            break;
        if (attr != NULL && xmlRemoveProp(attr) == 0)
            changed++;
    }
    xs_free(nodes);
    xs_apply_note_rewrite(ap, XS_ACT_REMOVE_ATTR, changed);
}

static void act_set_text(xs_applying *ap, const xs_action *a)
{
    xmlNode **nodes;
    size_t n = xs_apply_select_nodes(ap, &a->target, false, &nodes);
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
            if (xs_apply_need_copy(ap) || !spend(ap, vlen))
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
            if (xs_apply_need_copy(ap) || !spend(ap, vlen))
                break;
            if (xmlSetNsProp(attr->parent, attr->ns, attr->name, BAD_CAST value) == NULL) {
                ap->err = XS_ENOMEM;
                break;
            }
        } else if (node->type == XML_TEXT_NODE || node->type == XML_CDATA_SECTION_NODE) {
            if (node->content != NULL && strcmp((const char *)node->content, value) == 0)
                continue;
            if (xs_apply_need_copy(ap) || !spend(ap, vlen))
                break;
            xmlNodeSetContent(node, BAD_CAST value);
        } else {
            continue;
        }
        changed++;
    }
    xs_free(value);
    xs_free(nodes);
    xs_apply_note_rewrite(ap, XS_ACT_SET_TEXT, changed);
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

/* On the parser's stanza, only whether the regex matches anywhere in `texts`: usually it does
 * not, and then nothing is copied or substituted. A match (or a failure, which the run on the
 * copy reports) asks for the copy. */
static void replace_probe(xs_applying *ap, const xs_action *a, xmlNode **texts, size_t nt)
{
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
            return;
        if (rc != PCRE2_ERROR_NOMATCH)
            xs_apply_need_copy(ap);
    }
}

/* Substitutes every match in the text node `t` with `repl`, in *buf (*cap bytes, grown as
 * needed), and counts a change in *changed. Returns false when the action must stop (out of
 * memory, a budget spent). */
static bool replace_one(xs_applying *ap, const xs_action *a, xmlNode *t, const char *repl,
                        PCRE2_UCHAR **buf, size_t *cap, unsigned *changed)
{
    const char *subject = t->content != NULL ? (const char *)t->content : "";
    size_t slen = strlen(subject);
    if (!ap->set->reference && !xs_re_may_match(&a->re_run, subject, slen))
        return true;
    /* Room for the subject plus what the budget allows to grow. */
    size_t want = slen + (ap->budget < 4096 ? ap->budget : 4096) + 1;
    for (;;) {
        if (want > *cap) {
            PCRE2_UCHAR *nb = xs_realloc(*buf, want);
            if (nb == NULL) {
                ap->err = XS_ENOMEM;
                return false;
            }
            *buf = nb;
            *cap = want;
        }
        PCRE2_SIZE olen = *cap;
        regex_begin(ap);
        int rc = pcre2_substitute(a->re, (PCRE2_SPTR)subject, slen, 0,
                                  PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_UNSET_EMPTY |
                                      PCRE2_SUBSTITUTE_OVERFLOW_LENGTH,
                                  NULL, ap->set->mctx, (PCRE2_SPTR)repl, PCRE2_ZERO_TERMINATED,
                                  *buf, &olen);
        if (rc == PCRE2_ERROR_NOMEMORY) {
            /* olen is the length needed, without the NUL. */
            if (olen + 1 <= *cap || olen > slen + ap->budget) {
                spend(ap, olen - slen);
                return false;
            }
            want = olen + 1;
            continue;
        }
        if (regex_spent(ap, rc))
            return false;
        if (rc < 0) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(rc, msg, sizeof(msg));
            xs_apply_note_error(ap, "replace-text: %s", (const char *)msg);
            return true;
        }
        if (rc > 0 && (olen != slen || memcmp(*buf, subject, slen) != 0)) {
            if (olen > slen && !spend(ap, olen - slen))
                return false;
            xmlNodeSetContentLen(t, *buf, (int)olen);
            (*changed)++;
        }
        return true;
    }
}

static void act_replace_text(xs_applying *ap, const xs_action *a)
{
    xmlNode **nodes;
    size_t n = xs_apply_select_nodes(ap, &a->target, false, &nodes);
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
        xs_apply_note_error(ap, "replace-text: more than %u text nodes; the rest were left",
                            XS_RULES_MAX_NODES);
    if (ap->doc == NULL) {
        replace_probe(ap, a, texts, nt);
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
    for (size_t i = 0; i < nt && ap->err == 0; i++)
        if (!replace_one(ap, a, texts[i], repl, &buf, &cap, &changed))
            break;
out:
    xs_free(buf);
    xs_free(repl);
    xs_free(nodes);
    xs_apply_note_rewrite(ap, XS_ACT_REPLACE_TEXT, changed);
}

static void act_remove(xs_applying *ap, const xs_action *a)
{
    xmlNode **nodes;
    size_t n = xs_apply_select_nodes(ap, &a->target, true, &nodes);
    if (n > 0 && xs_apply_need_copy(ap))
        n = 0;
    /* Unlink everything first: then no selected node is inside another, and each is freed
     * once. */
    for (size_t i = n; i-- > 0;)
        xmlUnlinkNode(nodes[i]);
    for (size_t i = 0; i < n; i++)
        xmlFreeNode(nodes[i]);
    xs_free(nodes);
    xs_apply_note_rewrite(ap, XS_ACT_REMOVE, (unsigned)n);
}

static void act_insert(xs_applying *ap, const xs_action *a)
{
    xmlNode **nodes;
    size_t n = xs_apply_select_nodes(ap, &a->target, false, &nodes);
    unsigned changed = 0;
    xmlNode *frag = xmlDocGetRootElement(a->fragment);
    for (size_t i = 0; i < n && ap->err == 0; i++) {
        xmlNode *el = nodes[i];
        if (el->type != XML_ELEMENT_NODE)
            continue;
        if (xs_apply_need_copy(ap) || !spend(ap, a->fragment_size))
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
    xs_apply_note_rewrite(ap, XS_ACT_INSERT, changed);
}

static void act_inject(xs_applying *ap, const xs_action *a)
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
    xml = xs_apply_serialize(NULL, doc, copy, &len);
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
    xs_apply_add_applied(ap, XS_ACT_INJECT, 0, xs_rule_dir_name(a->inject_dir));
    xmlFreeDoc(doc);
    return;
out:
    ap->err = XS_ENOMEM;
    xs_free(xml);
    if (doc != NULL)
        xmlFreeDoc(doc);
}

bool xs_apply_is_stanza_ns(const xmlNode *n)
{
    return n->ns != NULL && n->ns->href != NULL &&
           (xmlStrEqual(n->ns->href, BAD_CAST "jabber:client") ||
            xmlStrEqual(n->ns->href, BAD_CAST "jabber:server"));
}

static void act_bounce(xs_applying *ap, const xs_action *a)
{
    const xmlNode *orig = ap->ev->node;
    const char *name = (const char *)orig->name;
    xmlChar *type = xmlGetNoNsProp(orig, BAD_CAST "type");
    const char *why = NULL;
    xmlDoc *doc = NULL;

    if (ap->decided)
        goto out;
    ap->decided = true;
    if (!xs_apply_is_stanza_ns(orig) ||
        (strcmp(name, "message") != 0 && strcmp(name, "presence") != 0 && strcmp(name, "iq") != 0))
        why = "not a stanza";
    else if (type != NULL && xmlStrEqual(type, BAD_CAST "error"))
        why = "an error is never bounced";
    else if (type != NULL && strcmp(name, "iq") == 0 && xmlStrEqual(type, BAD_CAST "result"))
        why = "a result is never bounced";
    if (why != NULL) {
        ap->res->verdict = XS_VERDICT_DROP;
        xs_apply_add_appliedf(ap, XS_ACT_BOUNCE, 0, "dropped instead: %s", why);
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
    ap->res->bounce = xs_apply_serialize(NULL, doc, root, &ap->res->bounce_len);
    if (ap->res->bounce == NULL)
        goto oom;
    ap->res->verdict = XS_VERDICT_BOUNCE;
    xs_apply_add_applied(ap, XS_ACT_BOUNCE, 0, a->condition);
    goto out;
oom:
    ap->err = XS_ENOMEM;
out:
    if (doc != NULL)
        xmlFreeDoc(doc);
    xmlFree(type);
}

static void act_tag(xs_applying *ap, const char *label)
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
    xs_apply_add_applied(ap, XS_ACT_TAG, 0, label);
}

/* Runs an action that changes the stanza. It finds its nodes on the stanza the rules see; when
 * that is still the parser's and a node would change, the action stops before the change
 * (xs_apply_need_copy()) and runs again on a copy. */
static void run_rewrite(xs_applying *ap, const xs_action *a,
                        void (*act)(xs_applying *ap, const xs_action *a))
{
    if (a->target.own_doc && !xs_apply_ensure_copy(ap))
        return;
    act(ap, a);
    if (ap->want_copy) {
        ap->want_copy = false;
        if (xs_apply_ensure_copy(ap))
            act(ap, a);
    }
}

/* Runs one action. Returns true when no later rule should be tried. */
bool xs_apply_run_action(xs_applying *ap, const xs_action *a)
{
    switch (a->kind) {
    case XS_ACT_DROP:
        if (!ap->decided) {
            ap->decided = true;
            ap->res->verdict = XS_VERDICT_DROP;
            xs_apply_add_applied(ap, XS_ACT_DROP, 0, NULL);
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
        xs_apply_add_appliedf(ap, XS_ACT_DELAY, 0, "%lu ms", a->ms);
        break;
    case XS_ACT_TAG:
        act_tag(ap, a->value);
        break;
    case XS_ACT_PASS:
        xs_apply_add_applied(ap, XS_ACT_PASS, 0, NULL);
        return true;
    }
    return false;
}
