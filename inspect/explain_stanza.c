/* Explanations of stanzas: message, presence and iq types, resource binding, the roster (RFC 6121),
 * payload namespaces of the XEPs, stanza errors. See explain.h. */
#include <stdio.h>
#include <string.h>

#include "inspect/explain_impl.h"

/* Payload lines of one stanza at most (one per namespace). */
#define MAX_PAYLOAD_LINES 6

/* Children of a stanza that RFC 6120/6121 define, explained with the stanza itself. */
static int core_child(const xmlNode *c)
{
    static const char *const names[] = {"body",   "subject",  "thread", "show",
                                        "status", "priority", "error"};
    const char *ns = xs_ex_ns(c);
    if (strcmp(ns, "jabber:client") != 0 && strcmp(ns, "jabber:server") != 0 && ns[0] != '\0')
        return 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp((const char *)c->name, names[i]) == 0)
            return 1;
    return 0;
}

/* Resource binding (RFC 6120 §7): the resource asked for, or the full JID given. */
static void explain_bind(const xs_explainer *x, xs_annot *a, const xmlNode *bind, const char *type)
{
    const xmlNode *res = NULL, *jid = NULL;
    for (const xmlNode *c = bind->children; c != NULL; c = c->next) {
        if (xs_ex_is(c, XS_NS_BIND, "resource"))
            res = c;
        else if (xs_ex_is(c, XS_NS_BIND, "jid"))
            jid = c;
    }
    xs_ex_var v[] = {{"resource", res != NULL ? xs_ex_text(res) : NULL},
                     {"jid", jid != NULL ? xs_ex_text(jid) : NULL}};
    xs_ex_src src = {.el = bind, .vars = v, .n_vars = 2};
    if (strcmp(type, "result") == 0)
        xs_ex_line(x, a, "bind-result", &src);
    else if (strcmp(type, "set") == 0)
        xs_ex_line(x, a, res != NULL ? "bind-request" : "bind-request-server", &src);
}

/* The roster (RFC 6121 §2): get, result, push, set, and each subscription state of its items. */
static void explain_roster(const xs_explainer *x, xs_annot *a, const xmlNode *st, const xmlNode *q,
                           const char *type, const char *dir)
{
    unsigned items = 0, ask = 0;
    const char *states[] = {"none", "to", "from", "both", "remove"};
    int seen[5] = {0};
    for (const xmlNode *c = q->children; c != NULL; c = c->next) {
        if (!xs_ex_is(c, XS_NS_ROSTER, "item"))
            continue;
        items++;
        const char *sub = xs_ex_attr(c, "subscription");
        for (size_t i = 0; i < 5; i++)
            if (strcmp(sub != NULL ? sub : "none", states[i]) == 0)
                seen[i] = 1;
        const char *ak = xs_ex_attr(c, "ask");
        ask += ak != NULL && strcmp(ak, "subscribe") == 0;
    }
    char count[16];
    snprintf(count, sizeof(count), "%u", items);
    xs_ex_var v = {"count", count};
    xs_ex_src src = {.el = q, .vars = &v, .n_vars = 1};
    const char *key = NULL;
    if (strcmp(type, "get") == 0)
        key = "roster-get";
    else if (strcmp(type, "result") == 0)
        key = "roster-result";
    else if (strcmp(type, "set") == 0) {
        /* A push comes from the server; a client's set has no 'from'. */
        int push = dir != NULL ? strcmp(dir, "s2c") == 0 : xs_ex_attr(st, "from") != NULL;
        key = push ? "roster-push" : "roster-set";
    }
    if (key != NULL)
        xs_ex_line(x, a, key, &src);
    for (size_t i = 0; i < 5; i++)
        if (seen[i])
            xs_ex_linef(x, a, q, "roster-sub", states[i], NULL);
    if (ask > 0)
        xs_ex_line(x, a, "roster-ask", NULL);
}

/* A MUC occupant's status codes (XEP-0045): what happened to whom. */
static void explain_muc_status(const xs_explainer *x, xs_annot *a, const xmlNode *mu)
{
    int n = 0;
    for (const xmlNode *c = mu->children; c != NULL && n < 4; c = c->next) {
        const char *code = xs_ex_is(c, xs_ex_ns(mu), "status") ? xs_ex_attr(c, "code") : NULL;
        if (code != NULL)
            n += xs_ex_linef(x, a, c, "muc-status", code, NULL);
    }
}

/* A publish-subscribe payload also names its node: on PEP the node is a namespace (avatars,
 * nick, mood, OMEMO device lists, bookmarks), explained as such. */
static int explain_pubsub_node(const xs_explainer *x, xs_annot *a, const xmlNode *ps)
{
    for (const xmlNode *c = ps->children; c != NULL; c = c->next) {
        const char *node = c->type == XML_ELEMENT_NODE ? xs_ex_attr(c, "node") : NULL;
        if (node != NULL)
            return xs_ex_linef(x, a, c, "ns", node, NULL);
    }
    return 0;
}

/* One line per payload namespace of the stanza, in order, each namespace once. */
static void explain_payloads(const xs_explainer *x, xs_annot *a, const xmlNode *st,
                             const char *type, const char *dir)
{
    const char *seen[MAX_PAYLOAD_LINES];
    size_t n_seen = 0;
    for (const xmlNode *c = st->children; c != NULL && n_seen < MAX_PAYLOAD_LINES; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || core_child(c))
            continue;
        const char *ns = xs_ex_ns(c);
        int dup = 0;
        for (size_t i = 0; i < n_seen; i++)
            dup = dup || strcmp(seen[i], ns) == 0;
        if (dup)
            continue;
        seen[n_seen++] = ns;
        if (xs_ex_is(c, XS_NS_ROSTER, "query") && strcmp((const char *)st->name, "iq") == 0)
            explain_roster(x, a, st, c, type, dir);
        else if (xs_ex_is(c, XS_NS_BIND, "bind"))
            explain_bind(x, a, c, type);
        else if (!xs_ex_element(x, a, c))
            continue;
        else if (strncmp(ns, "http://jabber.org/protocol/pubsub", 33) == 0)
            explain_pubsub_node(x, a, c);
        else if (strcmp(ns, "http://jabber.org/protocol/muc#user") == 0)
            explain_muc_status(x, a, c);
    }
}

/* The stanza error (RFC 6120 §8.3): its type, then its condition. */
static void explain_error(const xs_explainer *x, xs_annot *a, const xmlNode *st)
{
    for (const xmlNode *c = st->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, "error") != 0 ||
            !core_child(c))
            continue;
        const char *type = xs_ex_attr(c, "type");
        if (type != NULL)
            xs_ex_linef(x, a, c, "error-type", type, NULL);
        xs_ex_condition(x, a, c, XS_NS_STANZAS, "stanza-error");
        return;
    }
}

void xs_ex_stanza(const xs_explainer *x, xs_annot *a, const xmlNode *st, const char *dir)
{
    const char *name = (const char *)st->name;
    const char *type = xs_ex_attr(st, "type");
    if (type == NULL)
        type = strcmp(name, "message") == 0    ? "normal"
               : strcmp(name, "presence") == 0 ? "available"
                                               : "";
    if (!xs_ex_linef(x, a, st, name, type, NULL)) {
        char key[32];
        snprintf(key, sizeof(key), "%s-unknown-type", name);
        xs_ex_var v = {"type", type};
        xs_ex_src src = {.el = st, .vars = &v, .n_vars = 1};
        xs_ex_line(x, a, key, &src);
    }
    if (strcmp(name, "presence") == 0) {
        for (const xmlNode *c = st->children; c != NULL; c = c->next) {
            const char *t =
                core_child(c) && strcmp((const char *)c->name, "show") == 0 ? xs_ex_text(c) : NULL;
            if (t != NULL) {
                xs_ex_linef(x, a, c, "show", t, NULL);
                break;
            }
        }
    }
    explain_payloads(x, a, st, type, dir);
    if (strcmp(type, "error") == 0)
        explain_error(x, a, st);
}
