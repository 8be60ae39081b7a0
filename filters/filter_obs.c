/* The filtering observer and the JIDs sessions are bound to. See filter_obs.h. */
#include "filters/filter_obs.h"

#include "filters/filter_impl.h"

#include "inspect/alloc.h"
#include "inspect/b64.h"
#include "inspect/error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 1024u

#define BIND_NS "urn:ietf:params:xml:ns:xmpp-bind"
#define SASL_NS "urn:ietf:params:xml:ns:xmpp-sasl"
#define SASL2_NS "urn:xmpp:sasl:2"

/* What is known of one session. */
typedef struct entry {
    struct entry *next;
    char *jid;      /* the JID the session is bound to (or authenticated as), or NULL */
    char *domain;   /* the domain the client's stream header asks for, or NULL */
    char *pending;  /* the identity a SASL exchange claims, until the server's <success/> */
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

static void entry_free(entry *e)
{
    xs_free(e->jid);
    xs_free(e->domain);
    xs_free(e->pending);
    xs_free(e);
}

static void forget(xs_filter_obs *fo, const char *session)
{
    if (session == NULL) {
        for (size_t b = 0; b < BUCKETS; b++) {
            while (fo->buckets[b] != NULL) {
                entry *e = fo->buckets[b];
                fo->buckets[b] = e->next;
                entry_free(e);
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
    entry_free(e);
    fo->n_sessions--;
}

/* The entry of `session`, made when there is none; NULL when out of memory or full (the session
 * is then not remembered). */
static entry *get(xs_filter_obs *fo, const char *session)
{
    entry **p = find(fo, session);
    if (*p != NULL)
        return *p;
    size_t sl = strlen(session);
    entry *e = fo->n_sessions < XS_FILTER_MAX_SESSIONS ? xs_calloc(1, sizeof(*e) + sl + 1) : NULL;
    if (e == NULL)
        return NULL;
    memcpy(e->session, session, sl + 1);
    *p = e;
    fo->n_sessions++;
    return e;
}

/* Sets *field to a copy of s[0, len), or to NULL for s NULL (and when out of memory). */
static void set_field(char **field, const char *s, size_t len)
{
    xs_free(*field);
    *field = s != NULL ? xs_strndup(s, len) : NULL;
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

/* ---- reading stanzas ------------------------------------------------------------------------- */

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
    for (const xmlNode *c = parent != NULL ? parent->children : NULL; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, name) == 0 &&
            c->ns != NULL && c->ns->href != NULL && strcmp((const char *)c->ns->href, ns) == 0)
            return c;
    return NULL;
}

/* The text of `el` when it is one text node (a JID, a base64 payload), or NULL. */
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

static bool named(const xs_event *ev, const char *name, const char *ns)
{
    return strcmp(ev->name, name) == 0 && strcmp(ev->ns, ns) == 0;
}

/* ---- who the session is ---------------------------------------------------------------------- */

/* A SCRAM saslname (RFC 5802 §5.1) or authzid from s[0, n) into out (cap bytes): "=2C" is ',' and
 * "=3D" is '='. False when it does not fit or holds another '='. */
static bool unescape_saslname(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '=') {
            if (n - i < 3 || s[i + 1] != '3' || (s[i + 2] != 'D' && s[i + 2] != 'C'))
                return false;
            c = s[i + 2] == 'D' ? '=' : ',';
            i += 2;
        }
        if (o + 1 >= cap)
            return false;
        out[o++] = c;
    }
    out[o] = 0;
    return true;
}

/* The identity a client's first SASL message claims, as a bare JID in out (cap bytes): PLAIN's
 * authzid, or its authcid at the domain of the stream; SCRAM's a= or n= the same way. */
static bool claimed_identity(bool plain, const unsigned char *msg, size_t n, const char *domain,
                             char *out, size_t cap)
{
    const char *s = (const char *)msg;
    char name[XS_FILTER_MAX_JID + 1];
    name[0] = 0;
    if (plain) {
        const char *z1 = memchr(s, 0, n);
        const char *z2 = z1 != NULL ? memchr(z1 + 1, 0, n - (size_t)(z1 + 1 - s)) : NULL;
        if (z2 == NULL)
            return false;
        const char *id = z1 > s ? s : z1 + 1; /* the authzid when there is one */
        size_t len = z1 > s ? (size_t)(z1 - s) : (size_t)(z2 - z1 - 1);
        if (len >= sizeof(name))
            return false;
        memcpy(name, id, len);
        name[len] = 0;
    } else {
        /* gs2-header "FLAG,[a=AUTHZID]," then "n=SASLNAME,r=...". */
        const char *c1 = memchr(s, ',', n);
        const char *c2 = c1 != NULL ? memchr(c1 + 1, ',', n - (size_t)(c1 + 1 - s)) : NULL;
        if (c2 == NULL)
            return false;
        const char *id = c1 + 1, *end = c2;
        if (id == end) {
            id = c2 + 1;
            end = memchr(id, ',', n - (size_t)(id - s));
            if (end == NULL || end - id < 2 || id[0] != 'n' || id[1] != '=')
                return false;
        } else if (end - id < 2 || id[0] != 'a' || id[1] != '=') {
            return false;
        }
        if (!unescape_saslname(id + 2, (size_t)(end - id - 2), name, sizeof(name)))
            return false;
    }
    int k = strchr(name, '@') != NULL ? snprintf(out, cap, "%s", name)
            : domain != NULL          ? snprintf(out, cap, "%s@%s", name, domain)
                                      : -1;
    return k > 0 && (size_t)k < cap && strchr(out, '/') == NULL && xs_filter_jid_ok(out, (size_t)k);
}

/* A client's SASL <auth/> (or SASL2 <authenticate/>) with PLAIN or SCRAM: who it claims to be,
 * kept until the server says <success/>. Read from the original bytes (the masked copy hides the
 * payload); the decoded payload is wiped at once. */
static void learn_auth(entry *e, const xs_obs_event *oe, bool sasl2)
{
    const char *mech = attr(oe->ev, "mechanism");
    if (mech == NULL)
        return;
    bool plain = strcmp(mech, "PLAIN") == 0;
    if (!plain && strncmp(mech, "SCRAM-", 6) != 0)
        return;
    xmlDoc *doc = NULL;
    const xmlNode *tree = xs_filter_stanza_tree(oe, false, &doc);
    const char *b64 = only_text(sasl2 ? child(tree, "initial-response", SASL2_NS) : tree);
    unsigned char *msg = NULL;
    size_t n = 0;
    char id[XS_FILTER_MAX_JID + 1];
    if (b64 != NULL && xs_base64_decode(b64, strlen(b64), &msg, &n) == 0) {
        if (claimed_identity(plain, msg, n, e->domain, id, sizeof(id)))
            set_field(&e->pending, id, strlen(id));
        explicit_bzero(msg, n);
        free(msg);
    }
    if (doc != NULL)
        xmlFreeDoc(doc);
}

/* A server's stanza that tells the client its full JID: a resource binding result, or a SASL2
 * success with an authorization-identifier. */
static void learn_bound(xs_filter_obs *fo, const xs_obs_event *oe, bool bind)
{
    xmlDoc *doc = NULL;
    const xmlNode *tree = xs_filter_stanza_tree(oe, true, &doc);
    const xmlNode *el = bind ? child(child(tree, "bind", BIND_NS), "jid", BIND_NS)
                             : child(tree, "authorization-identifier", SASL2_NS);
    const char *jid = only_text(el);
    entry *e =
        jid != NULL && xs_filter_jid_ok(jid, strlen(jid)) ? get(fo, oe->meta->session) : NULL;
    if (e != NULL)
        set_field(&e->jid, jid, strlen(jid));
    if (doc != NULL)
        xmlFreeDoc(doc);
}

/* Follows what tells who a session is: the domain of the client's stream header, the identity
 * its SASL exchange claims once the server accepts it, and the JID the server binds. */
static void learn(xs_filter_obs *fo, const xs_obs_event *oe)
{
    const xs_event *ev = oe->ev;
    const xs_print_meta *m = oe->meta;
    if (m == NULL || m->session == NULL || m->direction == NULL)
        return;
    bool c2s = strcmp(m->direction, "c2s") == 0;
    if (ev->kind == XS_EV_STREAM_OPEN && c2s) {
        const char *to = attr(ev, "to");
        entry *e = to != NULL && strpbrk(to, "@/") == NULL && xs_filter_jid_ok(to, strlen(to))
                       ? get(fo, m->session)
                       : NULL;
        if (e != NULL && e->domain == NULL)
            set_field(&e->domain, to, strlen(to));
        return;
    }
    if (ev->kind != XS_EV_STANZA || ev->name == NULL || ev->ns == NULL)
        return;
    if (c2s) {
        bool sasl2 = named(ev, "authenticate", SASL2_NS);
        entry *e = sasl2 || named(ev, "auth", SASL_NS) ? *find(fo, m->session) : NULL;
        if (e != NULL)
            learn_auth(e, oe, sasl2);
        return;
    }
    if (strcmp(m->direction, "s2c") != 0)
        return;
    bool success = named(ev, "success", SASL_NS), sasl2 = named(ev, "success", SASL2_NS);
    bool bind = strcmp(ev->name, "iq") == 0 && strncmp(ev->ns, "jabber:", 7) == 0;
    bool failure = named(ev, "failure", SASL_NS) || named(ev, "failure", SASL2_NS);
    entry *e = success || sasl2 || failure ? *find(fo, m->session) : NULL;
    if (e != NULL && failure) {
        set_field(&e->pending, NULL, 0);
    } else if (e != NULL && e->pending != NULL) {
        xs_free(e->jid);
        e->jid = e->pending;
        e->pending = NULL;
    }
    if (bind) {
        const char *type = attr(ev, "type");
        if (type == NULL || strcmp(type, "result") != 0 || !mentions(oe, BIND_NS))
            return;
    } else if (!sasl2 || !mentions(oe, "authorization-identifier")) {
        return;
    }
    learn_bound(fo, oe, bind);
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
    if (oe->kind == XS_OBS_PARSED && oe->ev != NULL)
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
