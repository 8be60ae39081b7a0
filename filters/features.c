/* Built-in rewrites of stream features. See features.h. */
#include "filters/features.h"

#include "inspect/buf.h"
#include "inspect/error.h"
#include "inspect/fragment.h"

#include <stdbool.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#define NS_STREAMS "http://etherx.jabber.org/streams"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_SASL2 "urn:xmpp:sasl:2"
#define NS_SASL_CB "urn:xmpp:sasl-cb:0"
#define NS_COMPRESS "http://jabber.org/features/compress"
#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"

static const struct {
    unsigned bit;
    const char *name;
} names[] = {
    {XS_REWRITE_SASL_PLUS, "sasl-plus"},
    {XS_REWRITE_CHANNEL_BINDING, "channel-binding"},
    {XS_REWRITE_COMPRESSION, "compression"},
    {XS_REWRITE_STARTTLS, "starttls"},
};

const char *xs_rewrite_name(unsigned bit)
{
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].bit == bit)
            return names[i].name;
    return "unknown";
}

int xs_rewrite_parse(const char *name, unsigned *bit)
{
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(names[i].name, name) == 0) {
            *bit = names[i].bit;
            return 0;
        }
    }
    return XS_EINVAL;
}

static bool is(const xmlNode *n, const char *ns, const char *name)
{
    return n->type == XML_ELEMENT_NODE && n->ns != NULL && n->ns->href != NULL &&
           strcmp((const char *)n->ns->href, ns) == 0 && strcmp((const char *)n->name, name) == 0;
}

static void note_removed(xs_features_result *out, const char *what)
{
    size_t used = strlen(out->removed);
    snprintf(out->removed + used, sizeof(out->removed) - used, "%s%s", used ? ", " : "", what);
}

static void drop(xmlNode *n)
{
    xmlUnlinkNode(n);
    xmlFreeNode(n);
}

/* Removes -PLUS mechanisms from a SASL <mechanisms/> or SASL2 <authentication/> list. */
static bool strip_plus(xmlNode *list, unsigned which, xs_features_result *out)
{
    bool changed = false;
    xmlNode *next;
    for (xmlNode *m = list->children; m != NULL; m = next) {
        next = m->next;
        if (m->type != XML_ELEMENT_NODE || strcmp((const char *)m->name, "mechanism") != 0)
            continue;
        xmlChar *text = xmlNodeGetContent(m);
        size_t n = text ? strlen((const char *)text) : 0;
        if (n > 5 && strcmp((const char *)text + n - 5, "-PLUS") == 0) {
            out->offered_binding = 1;
            if (which & XS_REWRITE_SASL_PLUS) {
                note_removed(out, (const char *)text);
                drop(m);
                changed = true;
            }
        }
        xmlFree(text);
    }
    return changed;
}

int xs_element_parse(const char *raw, size_t len, const xs_attr *nsdecls, size_t n_nsdecls,
                     xmlDoc **doc, xmlNode **element)
{
    /* The element is parsed inside a wrapper that declares what the stream header declared. */
    xs_fragment_ctx ctx = {.root = "w", .decls = nsdecls, .n_decls = n_nsdecls};
    int rc = xs_fragment_parse(&ctx, raw, len, doc, element, NULL);

    return rc == XS_ENOMEM || rc == XS_ETOOBIG || rc == 0 ? rc : XS_ENOTWF;
}

int xs_features_starttls_required(const xmlNode *features)
{
    for (const xmlNode *f = features->children; f != NULL; f = f->next)
        if (is(f, NS_TLS, "starttls"))
            for (const xmlNode *r = f->children; r != NULL; r = r->next)
                if (is(r, NS_TLS, "required"))
                    return 1;
    return 0;
}

int xs_features_rewrite(const char *raw, size_t len, const xs_attr *nsdecls, size_t n_nsdecls,
                        unsigned which, xs_features_result *out)
{
    xmlDoc *doc = NULL;
    xmlNode *features = NULL;
    xmlBuffer *xb = NULL;

    memset(out, 0, sizeof(*out));
    int rc = xs_element_parse(raw, len, nsdecls, n_nsdecls, &doc, &features);
    if (rc < 0)
        return rc;
    if (!is(features, NS_STREAMS, "features"))
        goto out;

    bool changed = false;
    xmlNode *next;
    for (xmlNode *f = features->children; f != NULL; f = next) {
        next = f->next;
        if (is(f, NS_SASL, "mechanisms") || is(f, NS_SASL2, "authentication")) {
            changed |= strip_plus(f, which, out);
        } else if (is(f, NS_SASL_CB, "sasl-channel-binding")) {
            out->offered_binding = 1;
            if (which & XS_REWRITE_CHANNEL_BINDING) {
                note_removed(out, "sasl-channel-binding (XEP-0440)");
                drop(f);
                changed = true;
            }
        } else if (is(f, NS_COMPRESS, "compression")) {
            if (which & XS_REWRITE_COMPRESSION) {
                note_removed(out, "compression (XEP-0138)");
                drop(f);
                changed = true;
            }
        } else if (is(f, NS_TLS, "starttls")) {
            for (xmlNode *r = f->children; r != NULL; r = r->next)
                if (is(r, NS_TLS, "required"))
                    out->starttls_required = 1;
            if (which & XS_REWRITE_STARTTLS) {
                note_removed(out, "starttls (xmppscope secured this leg itself)");
                drop(f);
                changed = true;
            }
        }
    }
    if (!changed)
        goto out;
    rc = XS_ENOMEM;
    xb = xmlBufferCreate();
    if (xb == NULL || xmlNodeDump(xb, doc, features, 0, 0) < 0)
        goto out;
    out->len = (size_t)xmlBufferLength(xb);
    out->xml = malloc(out->len + 1);
    if (out->xml == NULL)
        goto out;
    memcpy(out->xml, xmlBufferContent(xb), out->len);
    out->xml[out->len] = 0;
    rc = 0;
out:
    if (xb != NULL)
        xmlBufferFree(xb);
    xmlFreeDoc(doc);
    return rc;
}
