/* The analysers: IQ pairing and the protocol checks, as one observer. See check.h. */
#include "inspect/check.h"

#include "inspect/alloc.h"
#include "inspect/check_impl.h"
#include "inspect/error.h"
#include "inspect/jid.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REF_IQ "RFC 6120 §8.2.3"
#define REF_ID "RFC 6120 §8.1.3"
#define REF_ERROR "RFC 6120 §8.3.2"
#define REF_BIND "RFC 6120 §7.1"
#define REF_JID "RFC 7622 §3"
#define REF_PRESENCE "RFC 6121 §4.7.1"
#define REF_MESSAGE "RFC 6121 §5.2.2"
#define REF_DOWNGRADE "RFC 5802 §6"

#define NS_SM3 "urn:xmpp:sm:3"
#define NS_SM2 "urn:xmpp:sm:2"
#define NS_SASL2 "urn:xmpp:sasl:2"
#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_BIND2 "urn:xmpp:bind:0"

/* ---- helpers --------------------------------------------------------------------------------- */

int xs_an_dir(const char *direction)
{
    if (direction == NULL)
        return -1;
    if (strcmp(direction, "c2s") == 0)
        return 0;
    if (strcmp(direction, "s2c") == 0)
        return 1;
    return -1;
}

int64_t xs_an_time_us(const xs_print_meta *m)
{
    if (m == NULL || m->untimed || (m->time.tv_sec == 0 && m->time.tv_nsec == 0))
        return INT64_MIN;
    return (int64_t)m->time.tv_sec * 1000000 + m->time.tv_nsec / 1000;
}

uint64_t xs_an_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

const char *xs_an_attr(const xs_event *ev, const char *name)
{
    for (size_t i = 0; i < ev->n_attrs; i++) {
        const xs_attr *at = &ev->attrs[i];
        if (at->name != NULL && at->prefix == NULL && at->uri == NULL &&
            strcmp(at->name, name) == 0)
            return at->value;
    }
    return NULL;
}

/* At most 60 bytes of s, cut on a character boundary, "…" after when cut. */
static const char *shown(const char *s, char buf[72])
{
    size_t len = strlen(s), n = len > 60 ? 60 : len;
    memcpy(buf, s, n);
    if (n < len) {
        while (n > 0 && ((unsigned char)buf[n - 1] & 0xC0) == 0x80)
            n--;
        if (n > 0 && (unsigned char)buf[n - 1] >= 0xC0)
            n--;
        memcpy(buf + n, "…", sizeof("…"));
    } else {
        buf[n] = '\0';
    }
    return buf;
}

/* ---- sessions -------------------------------------------------------------------------------- */

static xs_an_sess *sess_get(xs_analysis *an, const char *key, int create)
{
    if (key == NULL)
        return NULL;
    if (an->last != NULL && strcmp(an->last->key, key) == 0)
        return an->last;
    uint64_t h = xs_an_hash(key, strlen(key));
    xs_an_sess **b = &an->buckets[h % XS_AN_BUCKETS];
    for (xs_an_sess *s = *b; s != NULL; s = s->next)
        if (s->hash == h && strcmp(s->key, key) == 0)
            return an->last = s;
    if (!create)
        return NULL;
    xs_an_sess *s = xs_calloc(1, sizeof(*s));
    if (s == NULL || (s->key = xs_strdup(key)) == NULL) {
        xs_free(s);
        return NULL;
    }
    s->hash = h;
    s->sm.slot = -1;
    s->iq.ns.max = XS_IQ_MAX_NS;
    s->next = *b;
    *b = s;
    an->n_sess++;
    return an->last = s;
}

static void sess_free(xs_analysis *an, xs_an_sess *s)
{
    xs_sm_end(an, s);
    xs_iq_sess_free(&s->iq);
    xs_free(s->key);
    xs_free(s);
}

static void sess_remove(xs_analysis *an, xs_an_sess *s)
{
    xs_an_sess **pp = &an->buckets[s->hash % XS_AN_BUCKETS];
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    if (an->last == s)
        an->last = NULL;
    an->n_sess--;
    sess_free(an, s);
}

/* ---- stanza checks --------------------------------------------------------------------------- */

static int one_of(const char *v, const char *const *set)
{
    for (; *set != NULL; set++)
        if (strcmp(v, *set) == 0)
            return 1;
    return 0;
}

static const char *const iq_types[] = {"get", "set", "result", "error", NULL};
static const char *const presence_types[] = {
    "unavailable",  "subscribe", "subscribed", "unsubscribe",
    "unsubscribed", "probe",     "error",      NULL};
static const char *const message_types[] = {"chat",     "error",  "groupchat",
                                            "headline", "normal", NULL};

static int needs_idn(const char *j)
{
    for (const unsigned char *p = (const unsigned char *)j; *p; p++)
        if (*p >= 0x80 || ((*p == 'x' || *p == 'X') && (p[1] == 'n' || p[1] == 'N') &&
                           p[2] == '-' && p[3] == '-'))
            return 1;
    return 0;
}

static void check_jid(xs_analysis *an, xs_an_sess *s, const char *what, const char *j, xs_annot *a)
{
    if (j == NULL)
        return;
    size_t len = strlen(j);
    if (s != NULL && len > 0 && len < XS_AN_JID_CACHE)
        for (int k = 0; k < 2; k++)
            if (s->jid_ok_len[k] == len && memcmp(s->jid_ok[k], j, len) == 0)
                return;
    uint64_t h = 0;
    /* libidn2 allocates: an internationalized JID found valid is not asked again (bulk traffic
     * repeats its JIDs). */
    int idn = needs_idn(j);
    if (idn && s != NULL) {
        h = xs_an_hash(j, len);
        if (h == s->idn_hash[0] || h == s->idn_hash[1])
            return;
    }
    const char *why = NULL;
    if (xs_jid_valid(j, len, &why)) {
        if (idn && s != NULL) {
            s->idn_hash[1] = s->idn_hash[0];
            s->idn_hash[0] = h;
        }
        if (s != NULL && len < XS_AN_JID_CACHE && len > 0) {
            memcpy(s->jid_ok[1], s->jid_ok[0], s->jid_ok_len[0]);
            s->jid_ok_len[1] = s->jid_ok_len[0];
            memcpy(s->jid_ok[0], j, len);
            s->jid_ok_len[0] = (unsigned char)len;
        }
        return;
    }
    char buf[72];
    xs_an_check(an, a, XS_CHECK_JID_INVALID, REF_JID, "the '%s' JID '%s' is not valid: %s", what,
                shown(j, buf), why);
}

/* The checks of an iq stanza's own shape. */
static void check_iq(xs_analysis *an, const char *type, const char *id, const xs_outline *o,
                     xs_annot *a)
{
    char buf[72];
    if (id == NULL)
        xs_an_check(an, a, XS_CHECK_IQ_NO_ID, REF_ID,
                    "an iq without an id: its answer cannot be matched to it");
    if (type == NULL) {
        xs_an_check(an, a, XS_CHECK_IQ_BAD_TYPE, REF_IQ,
                    "an iq without a type (get, set, result or error)");
        return;
    }
    if (!one_of(type, iq_types)) {
        xs_an_check(an, a, XS_CHECK_IQ_BAD_TYPE, REF_IQ,
                    "iq type '%s' is none of get, set, result, error", shown(type, buf));
        return;
    }
    int request = strcmp(type, "get") == 0 || strcmp(type, "set") == 0;
    if (request && o->n_children != 1)
        xs_an_check(an, a, XS_CHECK_IQ_PAYLOAD_COUNT, REF_IQ,
                    "an iq %s must hold exactly one child element (the request); this one "
                    "holds %u",
                    type, o->n_children);
    else if (strcmp(type, "result") == 0 && o->n_children > 1)
        xs_an_check(an, a, XS_CHECK_IQ_PAYLOAD_COUNT, REF_IQ,
                    "an iq result holds at most one child element; this one holds %u",
                    o->n_children);
}

static void check_error(xs_analysis *an, const char *kind, const xs_outline *o, xs_annot *a)
{
    if (!o->has_error)
        xs_an_check(an, a, XS_CHECK_ERROR_NO_CONDITION, REF_ERROR,
                    "a %s of type 'error' without an <error/> child", kind);
    else if (!o->error_condition)
        xs_an_check(an, a, XS_CHECK_ERROR_NO_CONDITION, REF_ERROR,
                    "the <error/> of this %s names no defined condition (an element of %s)", kind,
                    NS_STANZAS);
}

/* The s2c features: does the server offer a -PLUS mechanism, and did a rule hide it? */
static void on_features(xs_an_sess *s, const xs_event *ev, const xs_print_meta *m)
{
    if (ev->raw == NULL)
        return;
    const char *hit = memmem(ev->raw, ev->len, "-PLUS</", 7);
    if (hit == NULL)
        return;
    const char *b = hit;
    while (b > ev->raw && b[-1] != '>' && hit - b < (ptrdiff_t)sizeof(s->plus_mech) - 6)
        b--;
    snprintf(s->plus_mech, sizeof(s->plus_mech), "%.*s-PLUS", (int)(hit - b), b);
    s->plus_offered = 1;
    s->plus_hidden = m->rewritten != NULL && strstr(m->rewritten, "-PLUS</") == NULL;
}

static void check_downgrade(xs_analysis *an, xs_an_sess *s, const xs_obs_event *e, xs_annot *a)
{
    if (e->masked == NULL || e->masked->gs2_flag != 'y' || !s->plus_offered)
        return;
    xs_an_check(an, a, XS_CHECK_SASL_DOWNGRADE, REF_DOWNGRADE,
                "the client uses SCRAM with gs2 flag 'y' (it can bind to the channel but thinks "
                "the server cannot) while the server offered %s: the server must refuse this "
                "login%s",
                s->plus_mech,
                s->plus_hidden ? "; xmppscope's sasl-plus rewrite hid that mechanism from the "
                                 "client (a man in the middle cannot do channel binding)"
                               : "");
}

/* ---- events ---------------------------------------------------------------------------------- */

static int is_stanza(const xs_event *ev)
{
    const char *ns = ev->ns;
    if (ns != NULL && strcmp(ns, NS_CLIENT) != 0 && strcmp(ns, "jabber:server") != 0 &&
        strcmp(ns, "jabber:component:accept") != 0)
        return 0;
    return strcmp(ev->name, "message") == 0 || strcmp(ev->name, "presence") == 0 ||
           strcmp(ev->name, "iq") == 0;
}

static void on_stream_open(xs_analysis *an, xs_an_sess *s, int dir, const xs_event *ev, xs_annot *a)
{
    if (s->stream_no[dir] != 0 && ev->stream_no != s->stream_no[dir] && an->cfg.pairing)
        xs_iq_restart(an, s, dir, a);
    s->stream_no[dir] = ev->stream_no;
    if (dir == 0) {
        s->client_stream = ev->default_ns != NULL && strcmp(ev->default_ns, NS_CLIENT) == 0;
        s->bound = 0; /* a new stream binds again (or resumes) */
        s->bind_said = 0;
    }
}

static void before_bind(xs_analysis *an, xs_an_sess *s, int dir, const xs_event *ev,
                        const xs_iq_result *res, xs_annot *a)
{
    int iq = ev->name[0] == 'i';
    if (s->bound || s->bind_said || !s->client_stream || res->exempt || (iq && dir == 1))
        return;
    s->bind_said = 1;
    xs_an_check(an, a, XS_CHECK_BEFORE_BIND, REF_BIND,
                "a %s from %s before a resource was bound: a server must not route stanzas of "
                "this stream yet (said once per stream)",
                ev->name, dir == 0 ? "the client" : "the server");
}

/* A stanza (message, presence, iq) of direction dir (-1: unknown, offline). */
/* The attributes a stanza's checks read, in one pass. */
typedef struct stanza_attrs {
    const char *type, *id, *to, *from;
} stanza_attrs;

static void read_attrs(const xs_event *ev, stanza_attrs *sa)
{
    memset(sa, 0, sizeof(*sa));
    for (size_t i = 0; i < ev->n_attrs; i++) {
        const xs_attr *at = &ev->attrs[i];
        if (at->name == NULL || at->prefix != NULL || at->uri != NULL)
            continue;
        const char *n = at->name;
        if (strcmp(n, "type") == 0)
            sa->type = at->value;
        else if (strcmp(n, "id") == 0)
            sa->id = at->value;
        else if (strcmp(n, "to") == 0)
            sa->to = at->value;
        else if (strcmp(n, "from") == 0)
            sa->from = at->value;
    }
}

static void on_stanza(xs_analysis *an, xs_an_sess *s, int dir, const xs_obs_event *e, xs_annot *a)
{
    const xs_event *ev = e->ev;
    stanza_attrs sa;
    read_attrs(ev, &sa);
    const char *type = sa.type;
    int iq = strcmp(ev->name, "iq") == 0;
    int error = type != NULL && strcmp(type, "error") == 0;
    xs_outline o;
    int outlined = 0;
    if (error)
        outlined = xs_outline_of(ev, &o) == 0;
    else if (iq)
        outlined = xs_outline_first(ev, &o) == 0;
    if (!outlined)
        memset(&o, 0, sizeof(o));
    xs_iq_result res = {0};
    if (iq && dir >= 0 && s != NULL && an->cfg.pairing)
        xs_iq_stanza(an, s, dir, ev, e->meta, type, sa.id, &o, a, &res);
    else if (iq && o.n_children > 0) {
        int bind;
        res.exempt = xs_iq_exempt_ns(o.ns[0], &bind);
    }
    if (!an->cfg.checks)
        return;
    if (iq && (outlined || type == NULL))
        check_iq(an, type, sa.id, &o, a);
    if (error && outlined)
        check_error(an, ev->name, &o, a);
    if (type != NULL && ev->name[0] == 'p' && !one_of(type, presence_types)) {
        char buf[72];
        xs_an_check(an, a, XS_CHECK_PRESENCE_BAD_TYPE, REF_PRESENCE,
                    "presence type '%s' is none of unavailable, subscribe, subscribed, "
                    "unsubscribe, unsubscribed, probe, error",
                    shown(type, buf));
    }
    if (type != NULL && ev->name[0] == 'm' && !one_of(type, message_types)) {
        char buf[72];
        xs_an_check(an, a, XS_CHECK_MESSAGE_BAD_TYPE, REF_MESSAGE,
                    "message type '%s' is none of chat, error, groupchat, headline, normal",
                    shown(type, buf));
    }
    check_jid(an, s, "to", sa.to, a);
    check_jid(an, s, "from", sa.from, a);
    if (s == NULL || dir < 0)
        return;
    /* The answer to a resource binding request binds (RFC 6120 §7.6.1). */
    if (iq && dir == 1 && type != NULL && strcmp(type, "result") == 0 && outlined &&
        o.n_children > 0 && xs_span_eq(o.ns[0], NS_BIND))
        s->bound = 1;
    before_bind(an, s, dir, ev, &res, a);
    xs_sm_stanza(s, &s->sm, dir, xs_an_dropped(e->meta != NULL ? e->meta->verdict : NULL));
}

/* Anything else directly inside the stream: stream management, features, SASL. */
static void on_element(xs_analysis *an, xs_an_sess *s, int dir, const xs_obs_event *e, xs_annot *a)
{
    const xs_event *ev = e->ev;
    if (!an->cfg.checks || s == NULL || dir < 0 || ev->ns == NULL)
        return;
    if (strcmp(ev->ns, NS_SM3) == 0 || strcmp(ev->ns, NS_SM2) == 0) {
        xs_sm_element(an, s, dir, ev, a);
    } else if (dir == 1 && strcmp(ev->ns, NS_STREAMS) == 0 && strcmp(ev->name, "features") == 0) {
        on_features(s, ev, e->meta);
    } else if (dir == 1 && strcmp(ev->ns, NS_SASL2) == 0 && strcmp(ev->name, "success") == 0) {
        xs_outline o;
        if (xs_outline_of(ev, &o) == 0)
            for (unsigned i = 0; i < o.n_children && i < XS_OUTLINE_MAX; i++)
                s->bound = s->bound || xs_span_eq(o.ns[i], NS_BIND2);
    }
    if (dir == 0)
        check_downgrade(an, s, e, a);
}

static void on_parsed(xs_analysis *an, const xs_obs_event *e, xs_annot *a)
{
    const xs_event *ev = e->ev;
    const xs_print_meta *m = e->meta;
    if (ev == NULL || (ev->kind != XS_EV_STANZA && ev->kind != XS_EV_STREAM_OPEN))
        return;
    int dir = xs_an_dir(m != NULL ? m->direction : NULL);
    xs_an_sess *s =
        dir >= 0 && m != NULL ? sess_get(an, m->session != NULL ? m->session : "", 1) : NULL;
    if (ev->kind == XS_EV_STREAM_OPEN) {
        if (s != NULL)
            on_stream_open(an, s, dir, ev, a);
        return;
    }
    if (ev->name == NULL)
        return;
    if (is_stanza(ev))
        on_stanza(an, s, dir, e, a);
    else
        on_element(an, s, dir, e, a);
    if (an->cfg.lazy_timeouts && s != NULL && s->iq.n > 0)
        xs_iq_expire(an, s, xs_an_time_us(m), a);
}

static void on_closed(xs_analysis *an, const xs_obs_event *e, xs_annot *a)
{
    const char *key = e->meta != NULL ? e->meta->session : NULL;
    if (key != NULL) {
        xs_an_sess *s = sess_get(an, key, 0);
        if (s == NULL)
            return;
        if (an->cfg.pairing)
            xs_iq_end(an, s, a, 0);
        xs_buf_reset(&an->summary);
        xs_iq_summary(s, &an->summary);
        if (an->summary.len > 0 && an->summary.err == 0)
            a->summary = an->summary.p;
        sess_remove(an, s);
        return;
    }
    /* The end of an offline input: every session ended. */
    for (size_t i = 0; i < XS_AN_BUCKETS; i++)
        while (an->buckets[i] != NULL) {
            xs_an_sess *s = an->buckets[i];
            if (an->cfg.pairing)
                xs_iq_end(an, s, a, 1);
            sess_remove(an, s);
        }
}

static void annotate(void *ctx, const xs_obs_event *e, xs_annot *a)
{
    xs_analysis *an = ctx;
    switch (e->kind) {
    case XS_OBS_PARSED:
        on_parsed(an, e, a);
        break;
    case XS_OBS_TICK: {
        xs_an_sess *s = e->meta != NULL ? sess_get(an, e->meta->session, 0) : NULL;
        if (s != NULL && an->cfg.pairing && s->iq.n > 0)
            xs_iq_expire(an, s, xs_an_time_us(e->meta), a);
        break;
    }
    case XS_OBS_CLOSED:
        on_closed(an, e, a);
        break;
    default:
        break;
    }
}

/* ---- public ---------------------------------------------------------------------------------- */

int xs_analysis_parse_timeout(const char *arg, double *out)
{
    char *end = NULL;
    if (arg == NULL || *arg == '\0' || !((*arg >= '0' && *arg <= '9') || *arg == '.'))
        return XS_EINVAL;
    double v = strtod(arg, &end);
    if (end == arg || *end != '\0' || !(v >= 0.001 && v <= 86400))
        return XS_EINVAL;
    *out = v;
    return 0;
}

int xs_analysis_new(const xs_analysis_cfg *cfg, xs_analysis **out)
{
    if (cfg == NULL || out == NULL || cfg->iq_timeout > 1e7)
        return XS_EINVAL;
    xs_analysis *an = xs_calloc(1, sizeof(*an));
    if (an == NULL)
        return XS_ENOMEM;
    an->cfg = *cfg;
    if (an->cfg.iq_timeout <= 0)
        an->cfg.iq_timeout = XS_IQ_DEFAULT_TIMEOUT;
    if (an->cfg.max_inflight == 0)
        an->cfg.max_inflight = XS_IQ_DEFAULT_MAX_INFLIGHT;
    if (an->cfg.max_inflight > INT16_MAX * 16)
        an->cfg.max_inflight = INT16_MAX * 16;
    an->timeout_us = (int64_t)(an->cfg.iq_timeout * 1e6);
    an->total.max = XS_IQ_MAX_NS_TOTAL;
    an->rng = 0x9E3779B97F4A7C15ull;
    xs_buf_init(&an->summary, 1 << 16);
    *out = an;
    return 0;
}

xs_observer xs_analysis_observer(xs_analysis *an)
{
    return (xs_observer){.annotate = annotate,
                         .ctx = an,
                         .policy = XS_OBS_BEST_EFFORT,
                         .name = "the IQ pairing and checks"};
}

static int stat_cmp(const void *x, const void *y)
{
    const xs_iq_stat *a = x, *b = y;
    if (a->requests != b->requests)
        return a->requests < b->requests ? 1 : -1;
    return strcmp(a->ns, b->ns);
}

size_t xs_analysis_iq_stats(xs_analysis *an, xs_iq_stat *rows, size_t cap)
{
    size_t n = an->total.n;
    xs_iq_stat *all = xs_realloc(an->rows, (n ? n : 1) * sizeof(*all));
    if (all == NULL)
        return 0;
    an->rows = all;
    for (size_t i = 0; i < n; i++) {
        const xs_iq_nsrow *r = &an->total.rows[i];
        all[i] = (xs_iq_stat){.ns = r->ns,
                              .requests = r->requests,
                              .answered = r->answered,
                              .errors = r->errors,
                              .unanswered = r->unanswered};
        xs_iq_row_quantiles(r, &all[i].p50, &all[i].p95, &all[i].max);
    }
    qsort(all, n, sizeof(*all), stat_cmp);
    for (size_t i = 0; i < n && i < cap; i++)
        rows[i] = all[i];
    return n;
}

void xs_analysis_get_counts(const xs_analysis *an, xs_analysis_counts *out)
{
    out->checks = an->checks;
    out->iq_evicted = an->evicted;
    out->sessions = an->n_sess;
}

void xs_analysis_free(xs_analysis *an)
{
    if (an == NULL)
        return;
    for (size_t i = 0; i < XS_AN_BUCKETS; i++)
        while (an->buckets[i] != NULL) {
            xs_an_sess *s = an->buckets[i];
            an->buckets[i] = s->next;
            sess_free(an, s);
        }
    xs_iq_nstab_free(&an->total);
    xs_sm_ids_free(&an->ids);
    xs_buf_free(&an->summary);
    xs_free(an->rows);
    xs_free(an);
}
