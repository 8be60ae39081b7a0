/* Built-in rewrites of stream features. See features.h. */
#include "filters/features.h"

#include "inspect/error.h"

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

/* Appends ` xmlns[:prefix]='uri'` with the URI escaped for an attribute value. */
static int append_decl(char **buf, size_t *len, size_t *cap, const xs_attr *d)
{
    size_t need = 16 + (d->prefix ? strlen(d->prefix) : 0) + 6 * strlen(d->uri);
    if (*len + need + 1 > *cap) {
        size_t ncap = (*cap + need + 1) * 2;
        char *n = realloc(*buf, ncap);
        if (n == NULL)
            return XS_ENOMEM;
        *buf = n;
        *cap = ncap;
    }
    *len += (size_t)sprintf(*buf + *len, " xmlns%s%s='", d->prefix ? ":" : "",
                            d->prefix ? d->prefix : "");
    for (const char *c = d->uri; *c; c++) {
        const char *e = *c == '\'' ? "&apos;" : *c == '&' ? "&amp;" : *c == '<' ? "&lt;" : NULL;
        if (e != NULL)
            *len += (size_t)sprintf(*buf + *len, "%s", e);
        else
            (*buf)[(*len)++] = *c;
    }
    (*buf)[(*len)++] = '\'';
    return 0;
}

int xs_element_parse(const char *raw, size_t len, const xs_attr *nsdecls, size_t n_nsdecls,
                     xmlDoc **doc, xmlNode **element)
{
    int rc = XS_ENOMEM;
    char *text = NULL;
    size_t tlen = 0, tcap = len + 64;

    *doc = NULL;
    *element = NULL;
    if (len > INT_MAX - 4096)
        return XS_ETOOBIG;
    /* The element is parsed inside a wrapper that declares what the stream header declared. */
    text = malloc(tcap);
    if (text == NULL)
        goto out;
    tlen = (size_t)sprintf(text, "<w");
    for (size_t i = 0; i < n_nsdecls; i++)
        if (nsdecls[i].uri != NULL && append_decl(&text, &tlen, &tcap, &nsdecls[i]) < 0)
            goto out;
    if (tlen + len + 8 > tcap) {
        char *n = realloc(text, tlen + len + 8);
        if (n == NULL)
            goto out;
        text = n;
    }
    text[tlen++] = '>';
    memcpy(text + tlen, raw, len);
    tlen += len;
    memcpy(text + tlen, "</w>", 4);
    tlen += 4;

    xmlDoc *d = xmlReadMemory(text, (int)tlen, NULL, "UTF-8",
                              XML_PARSE_NONET | XML_PARSE_NOWARNING | XML_PARSE_NOERROR);
    rc = XS_ENOTWF;
    if (d == NULL)
        goto out;
    xmlNode *el = xmlDocGetRootElement(d)->children;
    while (el != NULL && el->type != XML_ELEMENT_NODE)
        el = el->next;
    if (el == NULL) {
        xmlFreeDoc(d);
        goto out;
    }
    *doc = d;
    *element = el;
    rc = 0;
out:
    free(text);
    return rc;
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
