/* Inside the explainer: shared by explain.c (stream, features, SASL, nonzas) and explain_stanza.c
 * (message, presence, iq, payloads). Not for other modules. */
#ifndef XS_INSPECT_EXPLAIN_IMPL_H
#define XS_INSPECT_EXPLAIN_IMPL_H

#include <stddef.h>

#include <libxml/tree.h>

#include "inspect/explain.h"

/* A value a catalog text names as {name}. */
typedef struct xs_ex_var {
    const char *name;
    const char *value;
} xs_ex_var;

/* What one explanation line is about: the element whose attributes {@attr} reads (or, for a
 * stream header, the event's attributes), and the values the code gives. */
typedef struct xs_ex_src {
    const xmlNode *el;
    const xs_event *ev; /* a stream header: {@attr} reads ev->attrs */
    const xs_ex_var *vars;
    size_t n_vars;
} xs_ex_src;

/* What the explainer remembers of a session: the SASL mechanism it chose, and whether a keepalive
 * was explained already (once is enough: a capture of pretty-printed XML has one per line). */
typedef struct xs_ex_sess {
    char *id;
    char mech[48];
    int keepalive_said;
    struct xs_ex_sess *next;
} xs_ex_sess;

struct xs_explainer {
    xs_lang lang;
    xs_catalog *cat;
    xs_ex_sess *sessions;
    size_t n_sessions;
};

/* Namespaces. */
#define XS_NS_STREAM "http://etherx.jabber.org/streams"
#define XS_NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define XS_NS_SASL2 "urn:xmpp:sasl:2"
#define XS_NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define XS_NS_STREAMS_ERR "urn:ietf:params:xml:ns:xmpp-streams"
#define XS_NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define XS_NS_ROSTER "jabber:iq:roster"

/* Adds the line of catalog entry `key` to *a with src's values; returns 1, or 0 when the catalog
 * has no such entry (nothing is added). */
int xs_ex_line(const xs_explainer *x, xs_annot *a, const char *key, const xs_ex_src *src);

/* The same for the key "PREFIX PART" or "PREFIX PART PART2" (part2 NULL: none), about el. */
int xs_ex_linef(const xs_explainer *x, xs_annot *a, const xmlNode *el, const char *prefix,
                const char *part, const char *part2);

/* Adds the line of "ns NS NAME", else of "ns NS", about el. Returns 1 when one was added. */
int xs_ex_element(const xs_explainer *x, xs_annot *a, const xmlNode *el);

/* The value of el's attribute `name` (in no namespace), or NULL. Borrowed from the tree. */
const char *xs_ex_attr(const xmlNode *el, const char *name);

/* The namespace URI of el, or "". */
const char *xs_ex_ns(const xmlNode *el);

/* Whether el is an element named `name` (NULL: any) in namespace ns. */
int xs_ex_is(const xmlNode *el, const char *ns, const char *name);

/* The first text child of el, or NULL. Borrowed from the tree. */
const char *xs_ex_text(const xmlNode *el);

/* A message, presence or iq: its type line, its payloads, its error. dir is "c2s", "s2c" or
 * NULL (unknown). */
void xs_ex_stanza(const xs_explainer *x, xs_annot *a, const xmlNode *st, const char *dir);

/* The condition of an <error/> or failure element: its first child element in namespace ns,
 * with the key prefix ("stanza-error", "stream-error", "sasl-failure"). */
void xs_ex_condition(const xs_explainer *x, xs_annot *a, const xmlNode *parent, const char *ns,
                     const char *prefix);

#endif
