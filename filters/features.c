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
