/* Secrets redaction: see redact.h.
 *
 * The tree of the event is never touched. A stanza that may carry a secret is first copied into a
 * document of our own, under a wrapper element declaring the namespaces the stanza inherited, and
 * the secrets are masked in that copy (redact_sasl.c, redact_stanza.c). The annotation is built in
 * a buffer capped at XS_REDACT_NOTE_MAX, so a hostile payload can make it long only up to that.
 *
 * A stanza without a tree (the parser builds none unless asked) is looked at from its names and
 * bytes first (may_be_candidate), which rules out nearly every stanza of a session at the cost
 * of a few comparisons; the rest are parsed from their raw bytes, under a wrapper declaring what
 * the event tells of the namespaces in scope, and masked as with a tree. The tests compare the
 * two ways stanza by stanza (tests/unit/test_redact.c, test_print.c).
 */
#include "inspect/redact.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>

#include "inspect/buf.h"
#include "inspect/error.h"
#include "inspect/fragment.h"
#include "inspect/redact_impl.h"
#include "inspect/utf8.h"

/* Prefixes of the stanza's attributes declared on the wrapper at most; the others must be
 * declared by the stanza itself, else it cannot be parsed and is masked whole. A bound, so that a
 * stanza with thousands of prefixed attributes costs no more than one with a few. */
#define RAW_MAX_ATTR_PREFIXES 8

/* ---- the annotation ------------------------------------------------------------------------ */

void xs_note_init(xs_note *n)
{
    xs_buf_init(&n->b, XS_REDACT_NOTE_MAX);
    n->full = 0;
}

/* Appends one unit (a character or an escape) whole, or ends the note with "...". */
void xs_note_put(xs_note *n, const char *s, size_t len)
{
    if (n->full)
        return;
    if (len > XS_REDACT_NOTE_MAX - 3 - xs_buf_len(&n->b)) {
        xs_buf_add(&n->b, "...", 3);
        n->full = 1;
        return;
    }
    xs_buf_add(&n->b, s, len);
}

void xs_note_str(xs_note *n, const char *s)
{
    /* Our own fixed strings: short, so put whole. */
    xs_note_put(n, s, strlen(s));
}

void xs_note_fmt(xs_note *n, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    int k;

    va_start(ap, fmt);
    k = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (k > 0)
        xs_note_put(n, tmp, (size_t)k < sizeof(tmp) ? (size_t)k : sizeof(tmp) - 1);
}

/* Appends bytes of a payload for display between double quotes: NUL as \0, other non-printable
 * or invalid bytes as \xNN, '"' and '\' escaped, valid printable UTF-8 as it is. */
void xs_note_bytes(xs_note *n, const void *data, size_t len)
{
    const unsigned char *s = data;
    size_t i = 0;

    while (i < len && !n->full) {
        uint32_t cp;
        size_t k = xs_utf8_next(s + i, len - i, &cp);
        char esc[40];
        size_t e = 0;

        if (k == 0) {
            snprintf(esc, sizeof(esc), "\\x%02X", s[i]);
            xs_note_str(n, esc);
            i++;
            continue;
        }
        if (cp == 0) {
            xs_note_str(n, "\\0");
        } else if (cp == '"' || cp == '\\') {
            esc[0] = '\\';
            esc[1] = (char)cp;
            xs_note_put(n, esc, 2);
        } else if (xs_term_unsafe_cp(cp)) {
            for (size_t j = 0; j < k; j++)
                e += (size_t)snprintf(esc + e, sizeof(esc) - e, "\\x%02X", s[i + j]);
            xs_note_put(n, esc, e);
        } else {
            xs_note_put(n, (const char *)s + i, k);
        }
        i += k;
    }
}

void xs_note_sep(xs_note *n)
{
    if (xs_buf_len(&n->b) > 0)
        xs_note_str(n, "; ");
}

/* ---- tree helpers -------------------------------------------------------------------------- */

int xs_redact_is_el(const xmlNode *n, const char *ns, const char *name)
{
    return n != NULL && n->type == XML_ELEMENT_NODE && n->ns != NULL && n->ns->href != NULL &&
           strcmp((const char *)n->ns->href, ns) == 0 &&
           (name == NULL || strcmp((const char *)n->name, name) == 0);
}

/* Next node after cur in document order, staying inside root. */
xmlNode *xs_redact_walk_next(xmlNode *root, xmlNode *cur)
{
    if (cur->type == XML_ELEMENT_NODE && cur->children != NULL)
        return cur->children;
    while (cur != root) {
        if (cur->next != NULL)
            return cur->next;
        cur = cur->parent;
    }
    return NULL;
}

/* Reads an attribute without a namespace. *val is NULL when absent; the caller xmlFree()s it. */
int xs_redact_get_prop(const xmlNode *n, const char *name, xmlChar **val)
{
    *val = NULL;
    if (xmlHasNsProp(n, (const xmlChar *)name, NULL) == NULL)
        return 0;
    *val = xmlGetNoNsProp(n, (const xmlChar *)name);
    return *val != NULL ? 0 : XS_ENOMEM;
}

/* Collects the text of el's text and CDATA children into a malloc'd string. *odd is set when el
 * has children of another kind (elements), which no secret-bearing element should have. */
int xs_redact_element_text(const xmlNode *el, char **text, size_t *len, int *odd)
{
    size_t total = 0;
    char *buf;

    *text = NULL;
    *len = 0;
    *odd = 0;
    for (const xmlNode *k = el->children; k != NULL; k = k->next) {
        if (k->type == XML_TEXT_NODE || k->type == XML_CDATA_SECTION_NODE) {
            if (k->content != NULL)
                total += strlen((const char *)k->content);
        } else {
            *odd = 1;
        }
    }
    buf = malloc(total + 1);
    if (buf == NULL)
        return XS_ENOMEM;
    for (const xmlNode *k = el->children; k != NULL; k = k->next) {
        if ((k->type == XML_TEXT_NODE || k->type == XML_CDATA_SECTION_NODE) && k->content != NULL) {
            size_t l = strlen((const char *)k->content);
            memcpy(buf + *len, k->content, l);
            *len += l;
        }
    }
    buf[*len] = '\0';
    *text = buf;
    return 0;
}

/* Replaces everything inside el with the mask. */
int xs_redact_mask_children(rctx *c, xmlNode *el)
{
    xmlNode *t;

    while (el->children != NULL) {
        xmlNode *k = el->children;
        xmlUnlinkNode(k);
        xmlFreeNode(k);
    }
    c->out->masked++;
    t = xmlNewDocText(el->doc, (const xmlChar *)XS_REDACT_MASK);
    if (t == NULL)
        return XS_ENOMEM;
    if (xmlAddChild(el, t) == NULL) {
        xmlFreeNode(t);
        return XS_ENOMEM;
    }
    return 0;
}

/* ---- the event ----------------------------------------------------------------------------- */

/* Whether a stanza is worth copying: only the authentication elements, iq queries, data forms,
 * MUC elements and direct invitations can carry the secrets we know about, and most stanzas are
 * none of these. */
static int candidate(const xmlNode *st)
{
    if (st == NULL || st->type != XML_ELEMENT_NODE)
        return 0;
    if (xs_redact_is_el(st, NS_SASL, NULL) || xs_redact_is_el(st, NS_SASL2, NULL))
        return 1;
    if (strcmp((const char *)st->name, "iq") == 0)
        for (const xmlNode *k = st->children; k != NULL; k = k->next)
            if (xs_redact_is_el(k, NS_REGISTER, "query") || xs_redact_is_el(k, NS_IQ_AUTH, "query"))
                return 1;
    for (xmlNode *e = (xmlNode *)st; e != NULL; e = xs_redact_walk_next((xmlNode *)st, e))
        if (e->type == XML_ELEMENT_NODE && xs_redact_stanza_secret(e))
            return 1;
    return 0;
}

/* Whether the n bytes at s start with the string w. */
static int starts(const char *s, size_t n, const char *w)
{
    size_t k = strlen(w);

    return n >= k && memcmp(s, w, k) == 0;
}

/* Whether the n bytes at s hold the string w, whose first character is rare in XML ('q'):
 * memchr() to each of those, cheaper here than memmem(), which prepares its search first. */
static int contains(const char *s, size_t n, const char *w)
{
    const char *end = s + n;

    for (const char *c = memchr(s, w[0], n); c != NULL;
         c = memchr(c + 1, w[0], (size_t)(end - c - 1)))
        if (starts(c, (size_t)(end - c), w))
            return 1;
    return 0;
}

/* Whether the bytes of an iq may hold a query in the XEP-0077 or XEP-0078 namespace whose name
 * does not depend on the stream (see may_be_candidate): the name "query", and "&" (a reference
 * may spell a namespace), a prefixed ":query" (the prefix may be the stream's), or one of the two
 * namespaces written out. One pass over the colons, which are few outside namespace names, finds
 * the last two. */
static int iq_may_hold_query(const char *raw, size_t len)
{
    static const char *const nss[] = {NS_REGISTER, NS_IQ_AUTH};
    const char *end = raw + len;

    if (!contains(raw, len, "query"))
        return 0;
    if (memchr(raw, '&', len) != NULL)
        return 1;
    for (const char *c = memchr(raw, ':', len); c != NULL;
         c = memchr(c + 1, ':', (size_t)(end - c - 1))) {
        if (starts(c + 1, (size_t)(end - c - 1), "query"))
            return 1;
        for (size_t i = 0; i < sizeof(nss) / sizeof(nss[0]); i++) {
            /* The namespace written out, found from its first colon. */
            size_t k = (size_t)(strchr(nss[i], ':') - nss[i]);
            if ((size_t)(c - raw) >= k && starts(c - k, (size_t)(end - (c - k)), nss[i]))
                return 1;
        }
    }
    return 0;
}

/* Whether the n bytes at s hold `name` as an element's name: after "<", "</" or a prefix's ":".
 * Text ("password: hunter2") does not count. */
static int has_element_name(const char *s, size_t n, const char *name)
{
    const char *end = s + n;

    for (const char *c = memchr(s, name[0], n); c != NULL;
         c = memchr(c + 1, name[0], (size_t)(end - c - 1)))
        if (c > s && (c[-1] == '<' || c[-1] == '/' || c[-1] == ':') &&
            starts(c, (size_t)(end - c), name))
            return 1;
    return 0;
}

/* Whether the n bytes at s hold a start tag named `name` with attributes: `name` after "<" or a
 * prefix's ":", then the whitespace that must come before an attribute. Namespace names such as
 * "urn:xmpp:ping" do not count for "x". */
static int has_start_tag_with_attrs(const char *s, size_t n, const char *name)
{
    const char *end = s + n;
    size_t k = strlen(name);

    for (const char *c = memchr(s, name[0], n); c != NULL;
         c = memchr(c + 1, name[0], (size_t)(end - c - 1)))
        if (c > s && (c[-1] == '<' || c[-1] == ':') && (size_t)(end - c) > k &&
            memcmp(c, name, k) == 0 &&
            (c[k] == ' ' || c[k] == '\t' || c[k] == '\r' || c[k] == '\n'))
            return 1;
    return 0;
}

/* Whether the bytes of a stanza may hold what xs_redact_stanza_secret() looks for. Element and
 * attribute names are written as they are: a MUC <password>, a data form <field>, the password
 * attribute of a direct invitation's <x> (whose namespace may come from the stream, so any <x>
 * counts). Attribute values may be spelled with character references ("&#"; the five named
 * references spell no letter): the field's var ("password", "password-verify", "...roomsecret") or
 * type
 * ("text-private"). */
static int may_hold_stanza_secret(const char *raw, size_t len)
{
    if (has_element_name(raw, len, "password"))
        return 1;
    if (has_start_tag_with_attrs(raw, len, "x") && contains(raw, len, "password"))
        return 1;
    if (!has_element_name(raw, len, "field"))
        return 0;
    return contains(raw, len, "password") || contains(raw, len, "private") ||
           contains(raw, len, "roomsecret") || contains(raw, len, "&#");
}

/* For a stanza that came without a tree: whether candidate() might accept it, told from the
 * event's names and a search of its bytes, so that ordinary stanzas are not parsed. It must
 * never say no where candidate() would say yes on the stanza's tree, so it errs towards yes.
 *
 * The root's name and namespace are the event's. Any stanza may carry a data form's password
 * field or a room password (may_hold_stanza_secret). An iq is also a candidate with a child named
 * "query" in one of the two namespaces, and the name is written as it is in the bytes. So is the
 * namespace, unless it is spelled with references ('&'), or comes from outside the stanza: from
 * a prefix the stream element declares (a prefixed query), or from the default namespace in
 * scope at the iq (its own when it is unprefixed, which the event tells; unknown when it is
 * prefixed). */
static int may_be_candidate(const xs_event *ev)
{
    if (ev->name == NULL)
        return 1;
    if (ev->ns != NULL && (strcmp(ev->ns, NS_SASL) == 0 || strcmp(ev->ns, NS_SASL2) == 0))
        return 1;
    if (may_hold_stanza_secret(ev->raw, ev->len))
        return 1;
    if (strcmp(ev->name, "iq") != 0)
        return 0;
    if (ev->prefix != NULL ||
        (ev->ns != NULL && (strcmp(ev->ns, NS_REGISTER) == 0 || strcmp(ev->ns, NS_IQ_AUTH) == 0)))
        return contains(ev->raw, ev->len, "query");
    return iq_may_hold_query(ev->raw, ev->len);
}

static int declared_on(const xmlNode *n, const xmlChar *prefix)
{
    for (const xmlNs *ns = n->nsDef; ns != NULL; ns = ns->next)
        if (xmlStrEqual(ns->prefix, prefix))
            return 1;
    return 0;
}

/* Binds *ns, a name's namespace in the copy, to the declaration in scope at el with the prefix
 * of `orig`, the original's, when that one declares the same namespace. */
static void same_prefix(xmlNode *el, xmlNs **ns, const xmlNs *orig)
{
    xmlNs *want;

    if (*ns == NULL || xmlStrEqual((*ns)->prefix, orig->prefix))
        return;
    want = xmlSearchNs(el->doc, el, orig->prefix);
    if (want != NULL && xmlStrEqual(want->href, orig->href))
        *ns = want;
}

/* xmlDOMWrapCloneNode() binds each name of the copy to some declaration of its namespace in
 * scope, which need not have the original's prefix when the stream element declares one
 * namespace twice (as the default namespace and with a prefix). Puts the original's prefixes
 * back, so that the masked copy reads as the stanza did, and as the same stanza parsed from its
 * raw bytes (parse_raw). The two trees have the same shape. */
static void keep_prefixes(xmlNode *orig, xmlNode *copy)
{
    xmlNode *o = orig, *c = copy;

    while (o != NULL && c != NULL) {
        if (o->type == XML_ELEMENT_NODE && c->type == XML_ELEMENT_NODE) {
            xmlAttr *oa = o->properties, *ca = c->properties;

            if (o->ns != NULL)
                same_prefix(c, &c->ns, o->ns);
            for (; oa != NULL && ca != NULL; oa = oa->next, ca = ca->next)
                if (oa->ns != NULL)
                    same_prefix(c, &ca->ns, oa->ns);
        }
        o = xs_redact_walk_next(orig, o);
        c = xs_redact_walk_next(copy, c);
    }
}

/* A set of namespace declarations (pointers), by open addressing: which ones copy_stanza() has
 * met, so that each costs one look-up whatever the number of declarations in scope. */
typedef struct nsset {
    const xmlNs **slot;
    size_t cap, n; /* cap is 0 or a power of two, at least twice n */
} nsset;

static size_t nsset_hash(const xmlNs *ns, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)ns * UINT64_C(0x9e3779b97f4a7c15);

    return (size_t)(h >> 32) & (cap - 1);
}

/* Adds ns. Returns 1 when it was added, 0 when it was there, XS_ENOMEM. */
static int nsset_add(nsset *s, const xmlNs *ns)
{
    size_t i;

    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap > 0 ? 2 * s->cap : 16;
        const xmlNs **slot = calloc(cap, sizeof(*slot));

        if (slot == NULL)
            return XS_ENOMEM;
        for (size_t k = 0; k < s->cap; k++) {
            if (s->slot[k] == NULL)
                continue;
            for (i = nsset_hash(s->slot[k], cap); slot[i] != NULL; i = (i + 1) & (cap - 1))
                ;
            slot[i] = s->slot[k];
        }
        free(s->slot);
        s->slot = slot;
        s->cap = cap;
    }
    for (i = nsset_hash(ns, s->cap); s->slot[i] != NULL; i = (i + 1) & (s->cap - 1))
        if (s->slot[i] == ns)
            return 0;
    s->slot[i] = ns;
    s->n++;
    return 1;
}

/* Declares on w a namespace the stanza takes from outside itself (from the stream element), the
 * first time the stanza refers to it. A declaration made inside the stanza is in `seen` before
 * any reference to it (it is on the referring element or an ancestor, met first in document
 * order), so it is never declared again. */
static int declare_used(xmlNode *w, nsset *seen, const xmlNs *ns)
{
    int rc;

    if (ns == NULL)
        return 0;
    rc = nsset_add(seen, ns);
    if (rc <= 0)
        return rc;
    /* The xml prefix is bound without a declaration (libxml2 refuses to declare it). */
    if (xmlStrEqual(ns->prefix, (const xmlChar *)"xml"))
        return 0;
    if (xmlNewNs(w, ns->href, ns->prefix) != NULL)
        return 0;
    /* Two declarations of one prefix from outside: the tree of a well-formed stream has none;
     * the first stays. Only this rare failure pays for a search. */
    return declared_on(w, ns->prefix) ? 0 : XS_ENOMEM;
}

/* 1 when `copy` has every name, value and text that `orig` has. libxml2 2.9's
 * xmlDOMWrapCloneNode() does not check its xmlStrdup() of names: when one fails it returns
 * success with an element whose name is NULL, which the masking would then dereference. */
static int clone_complete(const xmlNode *orig, const xmlNode *copy)
{
    for (; orig != NULL && copy != NULL; orig = orig->next, copy = copy->next) {
        if ((orig->name != NULL && copy->name == NULL) ||
            (orig->content != NULL && copy->content == NULL))
            return 0;
        if (orig->type == XML_ELEMENT_NODE) {
            const xmlAttr *a = orig->properties, *b = copy->properties;
            for (; a != NULL && b != NULL; a = a->next, b = b->next)
                if (b->name == NULL || !clone_complete(a->children, b->children))
                    return 0;
            if (a != NULL || b != NULL || !clone_complete(orig->children, copy->children))
                return 0;
        }
    }
    return orig == NULL && copy == NULL;
}

/* Copies `node` into a new document under a wrapper element that declares what the stanza
 * inherited, so the copy keeps the same namespaces without repeating their declarations. Only
 * the namespaces the stanza uses are declared, not every one in scope: a stream header with
 * thousands of declarations must not make every copy cost thousands (the copy, and libxml2's
 * look-ups in it, would grow with the header times the stanzas). */
static int copy_stanza(const xmlNode *node, xmlDoc **doc_out, xmlNode **copy_out)
{
    xmlDoc *doc;
    xmlNode *w, *copy = NULL;
    nsset seen = {0};
    int rc = XS_ENOMEM;

    *doc_out = NULL;
    *copy_out = NULL;
    doc = xmlNewDoc((const xmlChar *)"1.0");
    if (doc == NULL)
        return XS_ENOMEM;
    w = xmlNewDocNode(doc, NULL, (const xmlChar *)"w", NULL);
    if (w == NULL)
        goto out;
    xmlDocSetRootElement(doc, w);
    for (xmlNode *e = (xmlNode *)node; e != NULL; e = xs_redact_walk_next((xmlNode *)node, e)) {
        if (e->type != XML_ELEMENT_NODE)
            continue;
        for (const xmlNs *d = e->nsDef; d != NULL; d = d->next)
            if (nsset_add(&seen, d) < 0)
                goto out;
        if (declare_used(w, &seen, e->ns) < 0)
            goto out;
        for (const xmlAttr *a = e->properties; a != NULL; a = a->next)
            if (declare_used(w, &seen, a->ns) < 0)
                goto out;
    }
    if (xmlDOMWrapCloneNode(NULL, node->doc, (xmlNode *)node, &copy, doc, w, 1, 0) != 0 ||
        copy == NULL || copy->name == NULL || !clone_complete(node->children, copy->children)) {
        xmlFreeNode(copy);
        goto out;
    }
    if (xmlAddChild(w, copy) == NULL) {
        xmlFreeNode(copy);
        goto out;
    }
    keep_prefixes((xmlNode *)node, copy);
    *doc_out = doc;
    *copy_out = copy;
    doc = NULL;
    rc = 0;
out:
    free(seen.slot);
    xmlFreeDoc(doc);
    return rc;
}

static int declared_prefix(const char *prefix, const char *const *seen, size_t n_seen)
{
    for (size_t i = 0; i < n_seen; i++)
        if (strcmp(seen[i], prefix) == 0)
            return 1;
    return 0;
}

/* Fills decls (room for 1 + RAW_MAX_ATTR_PREFIXES) with the namespace declarations of the
 * wrapper a stanza without a tree is parsed in (element w): what the event says the stanza
 * inherited, nothing more. That is the binding of the root's prefix, or for an unprefixed root
 * the default namespace (the root's own), and the bindings of the root's attribute prefixes.
 * Anything else the stanza takes from the stream element is left undeclared: an undeclared prefix
 * makes the parse fail, and reliance on the stream's default namespace is found by
 * relies_on_stream_default(). The xml prefix needs no declaration. Returns how many, or -1 when
 * the event names a prefix without its namespace. */
static int wrapper_decls(const xs_event *ev, xs_attr *decls)
{
    const char *seen[RAW_MAX_ATTR_PREFIXES + 1];
    size_t n_seen = 0, n_attr_decls = 0;
    int n = 0;

    if (ev->prefix == NULL) {
        if (ev->ns != NULL)
            decls[n++] = (xs_attr){.prefix = NULL, .uri = ev->ns};
    } else if (strcmp(ev->prefix, "xml") != 0) {
        if (ev->ns == NULL)
            return -1;
        decls[n++] = (xs_attr){.prefix = ev->prefix, .uri = ev->ns};
        seen[n_seen++] = ev->prefix;
    }
    for (size_t i = 0; ev->attrs != NULL && i < ev->n_attrs; i++) {
        const xs_attr *a = &ev->attrs[i];

        if (n_attr_decls == RAW_MAX_ATTR_PREFIXES)
            break;
        if (a->prefix == NULL || a->uri == NULL || strcmp(a->prefix, "xml") == 0 ||
            declared_prefix(a->prefix, seen, n_seen))
            continue;
        decls[n++] = (xs_attr){.prefix = a->prefix, .uri = a->uri};
        seen[n_seen++] = a->prefix;
        n_attr_decls++;
    }
    return n;
}

/* Whether an element of the stanza is in the stream's default namespace, which the event does not
 * tell: in no namespace, with no default namespace declared on it or above it in the stanza.
 * Only for a prefixed root; an unprefixed root's default namespace is declared on the wrapper. */
static int relies_on_stream_default(xmlNode *st)
{
    for (xmlNode *e = st; e != NULL; e = xs_redact_walk_next(st, e)) {
        const xmlNode *a;

        if (e->type != XML_ELEMENT_NODE || e->ns != NULL)
            continue;
        for (a = e; a != st->parent; a = a->parent)
            if (declared_on(a, NULL))
                break;
        if (a == st->parent)
            return 1;
    }
    return 0;
}

/* Parses the raw bytes of a stanza that came without a tree, in a wrapper declaring the
 * namespaces the event tells of, so that its names resolve as in the stream. Returns XS_EPARSE
 * when they are not one well-formed, namespace-well-formed element in that wrapper, or when the
 * names of its elements depend on the stream's default namespace, which the event does not tell:
 * then the names could not be known, and the caller masks the stanza whole. */
static int parse_raw(const xs_event *ev, xmlDoc **doc_out, xmlNode **st_out)
{
    xs_attr decls[1 + RAW_MAX_ATTR_PREFIXES];
    xs_fragment_ctx ctx = {.root = "w", .decls = decls};
    xmlDoc *doc = NULL;
    xmlNode *st = NULL;
    int n = wrapper_decls(ev, decls), rc;

    *doc_out = NULL;
    *st_out = NULL;
    if (n < 0)
        return XS_EPARSE;
    ctx.n_decls = (size_t)n;
    rc = xs_fragment_parse(&ctx, ev->raw, ev->len, &doc, &st, NULL);
    if (rc == XS_ENOMEM)
        return rc;
    if (rc != 0 || (ev->prefix != NULL && relies_on_stream_default(st))) {
        xmlFreeDoc(doc);
        return XS_EPARSE;
    }
    /* Serialized like the copy of a tree (copy_stanza), in a document without an encoding:
     * non-ASCII characters of attribute values then come out as character references. */
    xmlFree((xmlChar *)doc->encoding);
    doc->encoding = NULL;
    *doc_out = doc;
    *st_out = st;
    return 0;
}

static int serialize(xmlDoc *doc, xmlNode *st, char **xml, size_t *len)
{
    xmlBuffer *b = xmlBufferCreate();
    int rc = XS_ENOMEM;

    if (b == NULL)
        return XS_ENOMEM;
    if (xmlNodeDump(b, doc, st, 0, 0) < 0)
        goto out;
    *len = (size_t)xmlBufferLength(b);
    *xml = malloc(*len + 1);
    if (*xml == NULL)
        goto out;
    memcpy(*xml, xmlBufferContent(b), *len);
    (*xml)[*len] = '\0';
    rc = 0;
out:
    xmlBufferFree(b);
    return rc;
}

void xs_redaction_clear(xs_redaction *r)
{
    if (r == NULL)
        return;
    free(r->xml);
    free(r->note);
    xmlFreeDoc(r->doc);
    memset(r, 0, sizeof(*r));
}

int xs_redact_event(const xs_event *ev, int show_secrets, xs_redaction *out)
{
    rctx *c = NULL;
    xmlDoc *doc = NULL;
    xmlNode *st = NULL;
    int rc = 0;

    if (out == NULL)
        return XS_EINVAL;
    memset(out, 0, sizeof(*out));
    if (ev == NULL)
        return XS_EINVAL;
    if (ev->kind != XS_EV_STANZA)
        return 0;
    if (ev->node != NULL) {
        if (!candidate(ev->node))
            return 0;
        rc = copy_stanza(ev->node, &doc, &st);
    } else if (ev->raw != NULL && ev->len > 0) {
        if (!may_be_candidate(ev))
            return 0;
        out->parsed = 1;
        rc = parse_raw(ev, &doc, &st);
    } else {
        return 0;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        rc = XS_ENOMEM;
        goto out;
    }
    c->show = show_secrets;
    c->out = out;
    xs_note_init(&c->note);
    if (rc == XS_EPARSE) {
        /* Without a tree we cannot tell where a secret would be: hide it all. */
        rc = 0;
        xs_note_str(&c->note, "stanza could not be parsed on its own to look for secrets");
        if (!show_secrets) {
            xs_note_str(&c->note, "; masked whole");
            out->xml = strdup(XS_REDACT_MASK);
            out->xml_len = strlen(XS_REDACT_MASK);
            out->masked = 1;
            if (out->xml == NULL)
                rc = XS_ENOMEM;
        }
        goto note;
    }
    if (rc != 0 || !candidate(st))
        goto out;
    rc = xs_redact_sasl(c, st);
    if (rc == 0)
        rc = xs_redact_iq(c, st);
    if (rc != 0)
        goto out;
    if (out->masked > 0) {
        rc = serialize(doc, st, &out->xml, &out->xml_len);
        if (rc != 0)
            goto out;
        out->doc = doc;
        out->node = st;
        doc = NULL;
    }
note:
    /* The note's only failure is out of memory: its cap ends it with "..." instead. */
    if (rc == 0 && xs_buf_error(&c->note.b) != 0)
        rc = xs_buf_error(&c->note.b);
    else if (rc == 0 && xs_buf_len(&c->note.b) > 0 &&
             (out->note = xs_buf_take(&c->note.b, NULL)) == NULL)
        rc = XS_ENOMEM;
out:
    xmlFreeDoc(doc);
    if (c != NULL)
        xs_buf_free(&c->note.b);
    free(c);
    if (rc != 0)
        xs_redaction_clear(out);
    return rc;
}

int xs_redact_rewritten(const xs_event *ev, const char *xml, size_t len, int show_secrets,
                        xs_redaction *out)
{
    xs_event shadow;

    if (out == NULL)
        return XS_EINVAL;
    memset(out, 0, sizeof(*out));
    if (ev == NULL || (xml == NULL && len > 0))
        return XS_EINVAL;
    if (ev->kind != XS_EV_STANZA || xml == NULL)
        return 0;
    /* The rewritten bytes are the same element in the same stream: the event's names tell the
     * namespaces they inherit, as for a stanza that came without a tree. What they take from the
     * stream that the event does not tell (a rule may make that) makes them masked whole. */
    shadow = *ev;
    shadow.node = NULL;
    shadow.raw = xml;
    shadow.len = len;
    if (len == 0)
        return 0;
    return xs_redact_event(&shadow, show_secrets, out);
}
