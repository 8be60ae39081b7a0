/* Send and intercept, for the web inspector: stanzas injected into a live session, and stanzas
 * held at a breakpoint until the user forwards, edits or drops them. See session.h.
 *
 * Each direction has one queue of what waits: the stanzas the intercept held (not decided yet)
 * and everything of that direction read after the first of them (decided already: forwarded as it
 * was). The queue goes out from its head as far as the entries are decided, so the order of a
 * direction is kept whatever order the user decides in. */
#include "proxy/session_impl.h"

#include "inspect/alloc.h"
#include "inspect/error.h"
#include "inspect/fragment.h"

#include <stdlib.h>
#include <string.h>

/* What a direction may hold in bytes before everything in it is let go (the session must not
 * grow without bound while a user looks elsewhere). */
#define HOLD_MAX_BYTES (16u << 20)

typedef struct held {
    struct held *next;
    uint64_t id;
    bool decided; /* forward `data` (or nothing when len is 0) */
    size_t len;
    char data[]; /* the bytes to forward */
} held;

struct xs_hold {
    held *head[2], *tail[2]; /* [from] */
    size_t n[2], bytes[2];
    uint64_t next_id;
};

static struct xs_hold *hold_of(xs_session *s)
{
    if (s->hold == NULL)
        s->hold = xs_calloc(1, sizeof(*s->hold));
    return s->hold;
}

/* The other side of a direction: where its stanzas go. */
static xs_side dest_of(xs_side from)
{
    return from == XS_CLIENT ? XS_SERVER : XS_CLIENT;
}

static void send_to(xs_session *s, xs_side to, const char *data, size_t len)
{
    if (len == 0 || s->state == SS_CLOSING)
        return;
    if (to == XS_SERVER)
        xs_sess_to_server(s, data, len);
    else
        xs_sess_put(s, XS_CLIENT, data, len);
}

/* Sends the decided entries at the head of a direction's queue, in order. */
static void drain(xs_session *s, xs_side from)
{
    struct xs_hold *h = s->hold;
    while (h != NULL && h->head[from] != NULL && h->head[from]->decided) {
        held *e = h->head[from];
        h->head[from] = e->next;
        if (h->head[from] == NULL)
            h->tail[from] = NULL;
        h->n[from]--;
        h->bytes[from] -= e->len;
        send_to(s, dest_of(from), e->data, e->len);
        xs_free(e);
    }
}

void xs_sess_hold_ask(xs_session *s, xs_sess_event *sx, const xs_obs_event *oe)
{
    struct xs_hold *h = hold_of(s);
    if (h == NULL)
        return; /* out of memory: nothing can be held, the stanza goes on */
    uint64_t id = h->next_id + 1;
    if (s->cfg->hold(s->cfg->hold_ctx, s, sx->from, oe, id) == 1) {
        h->next_id = id;
        sx->held = true;
        sx->hold_id = id;
    }
}

bool xs_sess_hold_take(xs_session *s, const xs_sess_event *sx, xs_side to, const char *data,
                       size_t len)
{
    xs_side from = sx->from;
    struct xs_hold *h = s->hold;
    if (h == NULL || to != dest_of(from) || (!sx->held && h->head[from] == NULL))
        return false;
    if (h->bytes[from] + len > HOLD_MAX_BYTES) {
        xs_sess_note(s, "warn",
                     "intercept: more than %u bytes of the %s stream are waiting: every held "
                     "stanza of it is forwarded now",
                     HOLD_MAX_BYTES, xs_sess_side_dir(from));
        xs_sess_hold_flush(s, from);
        return false;
    }
    held *e = xs_malloc(sizeof(*e) + len);
    if (e == NULL) {
        /* Out of memory: the stanza cannot wait, so nothing before it may either. */
        xs_sess_note(s, "error", "intercept: out of memory; the held stanzas are forwarded");
        xs_sess_hold_flush(s, from);
        return false;
    }
    e->next = NULL;
    e->id = sx->held ? sx->hold_id : 0;
    e->decided = !sx->held;
    e->len = len;
    memcpy(e->data, data, len);
    if (h->tail[from] != NULL)
        h->tail[from]->next = e;
    else
        h->head[from] = e;
    h->tail[from] = e;
    h->n[from]++;
    h->bytes[from] += len;
    if (sx->held)
        xs_sess_note(s, "info",
                     "intercept: %s stanza held (hold %llu); the %s stream waits until it is "
                     "forwarded or dropped",
                     xs_sess_side_dir(from), (unsigned long long)e->id, xs_sess_side_dir(from));
    return true;
}

void xs_sess_hold_flush(xs_session *s, xs_side from)
{
    struct xs_hold *h = s->hold;
    if (h == NULL || h->head[from] == NULL)
        return;
    size_t undecided = 0;
    for (held *e = h->head[from]; e != NULL; e = e->next) {
        undecided += !e->decided;
        e->decided = true;
    }
    if (undecided > 0)
        xs_sess_note(s, "info", "intercept: %zu held %s stanza(s) forwarded as they were",
                     undecided, xs_sess_side_dir(from));
    drain(s, from);
}

void xs_sess_hold_free(xs_session *s)
{
    struct xs_hold *h = s->hold;
    if (h == NULL)
        return;
    for (int i = 0; i < 2; i++) {
        held *next;
        for (held *e = h->head[i]; e != NULL; e = next) {
            next = e->next;
            xs_free(e);
        }
    }
    xs_free(h);
    s->hold = NULL;
}

/* Checks that xml is one element, parsed as a stanza of the stream going to `to` would be. */
static int check_stanza(const xs_session *s, const char *xml, size_t len, xs_diag *why)
{
    const char *ns = s->client_ns != NULL ? s->client_ns : "jabber:client";
    xs_attr decls[2] = {{.prefix = NULL, .uri = ns}, {.prefix = "stream", .uri = NS_STREAMS}};
    xs_fragment_ctx ctx = {.root = "stream", .decls = decls, .n_decls = 2};
    size_t max = s->max_stanza;
    if (len > max)
        return xs_diag_set(why, XS_ETOOBIG, "the stanza has %zu bytes, more than the limit of %zu",
                           len, max);
    xmlDoc *doc = NULL;
    xmlNode *el = NULL;
    xs_fragment_error err = {0};
    int rc = xs_fragment_parse(&ctx, xml, len, &doc, &el, &err);
    xmlFreeDoc(doc);
    if (rc == XS_ENOTWF)
        return xs_diag_set(why, rc, "not well-formed at byte %zu: %s", err.off, err.message);
    if (rc == XS_EBADFORMAT)
        return xs_diag_set(why, rc, "not exactly one element: %s", err.message);
    if (rc < 0)
        return xs_diag_set(why, rc, "refused: %s", err.message[0] ? err.message : xs_strerror(rc));
    return 0;
}

int xs_session_inject(xs_session *s, xs_side to, const char *xml, size_t len, xs_diag *why)
{
    xs_diag_set(why, 0, "%s", "");
    if (s->state != SS_FORWARDING || sess_has(s, side_bit(XS_SF_LEG_CLOSED_CLIENT, to)) ||
        sess_has(s, to == XS_SERVER ? XS_SF_CLOSED_BY_CLIENT : XS_SF_CLOSED_BY_SERVER))
        return xs_diag_set(why, XS_ESTATE,
                           "session %s is not forwarding, or its %s stream is closed", s->id_str,
                           xs_sess_side_dir(dest_of(to)));
    int rc = check_stanza(s, xml, len, why);
    if (rc < 0)
        return rc;
    send_to(s, to, xml, len);
    xs_sess_note(s, "info", "injected by the web inspector into the %s stream (%zu bytes): %.*s",
                 xs_sess_side_dir(dest_of(to)), len, len > 800 ? 800 : (int)len, xml);
    return 0;
}

int xs_session_hold_release(xs_session *s, xs_side from, uint64_t id, const char *xml, size_t len,
                            int drop, const char *why, xs_diag *diag)
{
    xs_diag_set(diag, 0, "%s", "");
    struct xs_hold *h = s->hold;
    held *e = NULL, *prev = NULL;
    for (e = h != NULL ? h->head[from] : NULL; e != NULL; prev = e, e = e->next)
        if (e->id == id && !e->decided)
            break;
    if (e == NULL || id == 0)
        return xs_diag_set(diag, XS_EINVAL, "no held %s stanza %llu in session %s",
                           xs_sess_side_dir(from), (unsigned long long)id, s->id_str);
    const char *what = "forwarded";
    if (drop) {
        h->bytes[from] -= e->len;
        e->len = 0;
        what = "dropped";
    } else if (xml != NULL) {
        int rc = check_stanza(s, xml, len, diag);
        if (rc < 0)
            return rc;
        held *n = xs_malloc(sizeof(*n) + len);
        if (n == NULL)
            return xs_diag_set(diag, XS_ENOMEM, "out of memory");
        *n = *e;
        n->len = len;
        memcpy(n->data, xml, len);
        if (prev != NULL)
            prev->next = n;
        else
            h->head[from] = n;
        if (h->tail[from] == e)
            h->tail[from] = n;
        h->bytes[from] = h->bytes[from] - e->len + len;
        xs_free(e);
        e = n;
        what = "edited and forwarded";
    }
    e->decided = true;
    xs_sess_note(s, "info", "intercept: held %s stanza %llu %s %s", xs_sess_side_dir(from),
                 (unsigned long long)id, what, why != NULL ? why : "");
    drain(s, from);
    return 0;
}

size_t xs_session_held(const xs_session *s, xs_side from)
{
    return s->hold != NULL ? s->hold->n[from] : 0;
}
