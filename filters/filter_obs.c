/* The filtering observer and the JIDs sessions are bound to. See filter_obs.h. */
#include "filters/filter_obs.h"

#include "filters/filter_impl.h"

#include "inspect/alloc.h"
#include "inspect/error.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define BUCKETS 1024u

#define BIND_NS "urn:ietf:params:xml:ns:xmpp-bind"
#define SASL2_NS "urn:xmpp:sasl:2"

typedef struct entry {
    struct entry *next;
    char *jid;
    char session[]; /* NUL-terminated */
} entry;

struct xs_filter_obs {
    xs_observer inner;
    xs_filter *filter;
    unsigned flags;
    entry *buckets[BUCKETS];
    size_t n_sessions;
};

/* ---- sessions -------------------------------------------------------------------------------- */

static unsigned hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s != 0; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % BUCKETS;
}

static entry **find(const xs_filter_obs *fo, const char *session)
{
    entry **p = (entry **)&fo->buckets[hash(session)];
    while (*p != NULL && strcmp((*p)->session, session) != 0)
        p = &(*p)->next;
    return p;
}

static void forget(xs_filter_obs *fo, const char *session)
{
    if (session == NULL) {
        for (size_t b = 0; b < BUCKETS; b++) {
            while (fo->buckets[b] != NULL) {
                entry *e = fo->buckets[b];
                fo->buckets[b] = e->next;
                xs_free(e->jid);
                xs_free(e);
            }
        }
        fo->n_sessions = 0;
        return;
    }
    entry **p = find(fo, session);
    if (*p == NULL)
        return;
    entry *e = *p;
    *p = e->next;
    xs_free(e->jid);
    xs_free(e);
    fo->n_sessions--;
}

/* Remembers that `session` is bound to jid[0, len). Out of memory or full: not remembered. */
static void remember(xs_filter_obs *fo, const char *session, const char *jid, size_t len)
{
    entry **p = find(fo, session);
    char *copy = xs_strndup(jid, len);
    if (copy == NULL)
        return;
    if (*p != NULL) {
        xs_free((*p)->jid);
        (*p)->jid = copy;
        return;
    }
    size_t sl = strlen(session);
    entry *e = fo->n_sessions < XS_FILTER_MAX_SESSIONS ? xs_malloc(sizeof(*e) + sl + 1) : NULL;
    if (e == NULL) {
        xs_free(copy);
        return;
    }
    memcpy(e->session, session, sl + 1);
    e->jid = copy;
    e->next = NULL;
    *p = e;
    fo->n_sessions++;
}

const char *xs_filter_obs_account(const xs_filter_obs *fo, const char *session)
{
    if (session == NULL)
        return NULL;
    const entry *e = *find(fo, session);
    return e != NULL ? e->jid : NULL;
}

size_t xs_filter_obs_sessions(const xs_filter_obs *fo)
{
    return fo->n_sessions;
}

/* ---- learning the bound JID ------------------------------------------------------------------ */

static const char *attr(const xs_event *ev, const char *name)
{
    for (size_t i = 0; i < ev->n_attrs; i++)
        if (ev->attrs[i].prefix == NULL && ev->attrs[i].name != NULL &&
            strcmp(ev->attrs[i].name, name) == 0)
            return ev->attrs[i].value;
    return NULL;
}

static const xmlNode *child(const xmlNode *parent, const char *name, const char *ns)
{
    for (const xmlNode *c = parent->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, name) == 0 &&
            c->ns != NULL && c->ns->href != NULL && strcmp((const char *)c->ns->href, ns) == 0)
            return c;
    return NULL;
}

/* The text of `el` when it is one text node (a JID is), or NULL. */
static const char *only_text(const xmlNode *el)
{
    const xmlNode *t = el != NULL ? el->children : NULL;
    if (t == NULL || t->next != NULL || t->type != XML_TEXT_NODE || t->content == NULL)
        return NULL;
    return (const char *)t->content;
}

/* Whether the bytes of the event (raw, or the masked copy) mention `what`: most stanzas do not,
 * and are then not looked into further. */
static bool mentions(const xs_obs_event *oe, const char *what)
{
    const xs_event *ev = oe->ev;
    const char *s = oe->masked != NULL && oe->masked->xml != NULL ? oe->masked->xml : ev->raw;
    size_t n = s == oe->ev->raw ? ev->len : oe->masked->xml_len;
    return s == NULL || memmem(s, n, what, strlen(what)) != NULL;
}

/* A server's stanza that tells the client its full JID: a resource binding result, or a SASL2
 * success with an authorization-identifier. */
static void learn(xs_filter_obs *fo, const xs_obs_event *oe)
{
    const xs_event *ev = oe->ev;
    const xs_print_meta *m = oe->meta;
    if (m == NULL || m->session == NULL || m->direction == NULL ||
        strcmp(m->direction, "s2c") != 0 || ev->name == NULL || ev->ns == NULL)
        return;
    bool bind = strcmp(ev->name, "iq") == 0 && strncmp(ev->ns, "jabber:", 7) == 0;
    bool sasl2 = strcmp(ev->name, "success") == 0 && strcmp(ev->ns, SASL2_NS) == 0;
    if (bind) {
        const char *type = attr(ev, "type");
        if (type == NULL || strcmp(type, "result") != 0 || !mentions(oe, BIND_NS))
            return;
    } else if (!sasl2 || !mentions(oe, "authorization-identifier")) {
        return;
    }
    xmlDoc *doc = NULL;
    const xmlNode *tree = xs_filter_stanza_tree(oe, &doc);
    const xmlNode *el = NULL;
    if (tree != NULL && bind) {
        el = child(tree, "bind", BIND_NS);
        el = el != NULL ? child(el, "jid", BIND_NS) : NULL;
    } else if (tree != NULL) {
        el = child(tree, "authorization-identifier", SASL2_NS);
    }
    const char *jid = only_text(el);
    if (jid != NULL && xs_filter_jid_ok(jid, strlen(jid)))
        remember(fo, m->session, jid, strlen(jid));
    if (doc != NULL)
        xmlFreeDoc(doc);
}

/* ---- the observer ---------------------------------------------------------------------------- */

static bool wanted(xs_filter_obs *fo, const xs_obs_event *oe, const char *account)
{
    const xs_print_meta *m = oe->meta;
    bool sessionless = m == NULL || m->session == NULL;
    switch (oe->kind) {
    case XS_OBS_PARSED:
        if (oe->ev->kind == XS_EV_ERROR)
            return true;
        if (oe->ev->kind == XS_EV_STREAM_OPEN && (fo->flags & XS_FILTER_OBS_STREAMS))
            return true;
        break;
    case XS_OBS_NOTE:
        if (sessionless || (oe->level != NULL &&
                            (strcmp(oe->level, "warn") == 0 || strcmp(oe->level, "error") == 0)))
            return true;
        break;
    case XS_OBS_CLOSED:
        if (sessionless)
            return true;
        break;
    case XS_OBS_TLS_UP:
    case XS_OBS_TICK:
        break;
    }
    return xs_filter_eval(fo->filter, oe, account) == XS_FILTER_YES;
}

static int on_event(void *ctx, const xs_obs_event *oe)
{
    xs_filter_obs *fo = ctx;
    const char *session = oe->meta != NULL ? oe->meta->session : NULL;
    if (oe->kind == XS_OBS_PARSED && oe->ev != NULL && oe->ev->kind == XS_EV_STANZA)
        learn(fo, oe);
    bool pass = wanted(fo, oe, session != NULL ? xs_filter_obs_account(fo, session) : NULL);
    if (oe->kind == XS_OBS_CLOSED)
        forget(fo, session);
    if (!pass || fo->inner.on_event == NULL)
        return 0;
    return fo->inner.on_event(fo->inner.ctx, oe);
}

static void annotate(void *ctx, const xs_obs_event *ev, xs_annot *annot)
{
    xs_filter_obs *fo = ctx;
    if (fo->inner.annotate != NULL)
        fo->inner.annotate(fo->inner.ctx, ev, annot);
}

int xs_filter_obs_new(const xs_observer *inner, xs_filter *filter, unsigned flags,
                      xs_filter_obs **out)
{
    *out = NULL;
    xs_filter_obs *fo = xs_calloc(1, sizeof(*fo));
    if (fo == NULL)
        return XS_ENOMEM;
    fo->inner = *inner;
    fo->filter = filter;
    fo->flags = flags;
    *out = fo;
    return 0;
}

xs_observer xs_filter_observer(xs_filter_obs *fo)
{
    xs_observer o = fo->inner;
    o.on_event = on_event;
    o.annotate = fo->inner.annotate != NULL ? annotate : NULL;
    o.ctx = fo;
    return o;
}

void xs_filter_obs_free(xs_filter_obs *fo)
{
    if (fo == NULL)
        return;
    forget(fo, NULL);
    xs_free(fo);
}
