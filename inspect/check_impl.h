/* Inside the analysers (check.h): the per-session state, the outline of a stanza, and the parts
 * in iq.c and sm.c. Not for other modules. */
#ifndef XS_INSPECT_CHECK_IMPL_H
#define XS_INSPECT_CHECK_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "inspect/buf.h"
#include "inspect/check.h"
#include "inspect/iq.h"
#include "inspect/sm.h"

#define NS_CLIENT "jabber:client"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_STREAMS "http://etherx.jabber.org/streams"

/* ---- outline: the child elements of a stanza, from its tree or a scan of its bytes ---------- */

#define XS_OUTLINE_MAX 8

typedef struct xs_span {
    const char *p; /* NULL: none (an unknown namespace) */
    size_t n;
} xs_span;

typedef struct xs_outline {
    unsigned n_children; /* element children of the stanza, all of them */
    xs_span name[XS_OUTLINE_MAX], ns[XS_OUTLINE_MAX]; /* the first ones */
    int has_error;       /* a child <error/> in the stanza's namespace */
    int error_condition; /* that error holds a defined condition (NS_STANZAS, not <text/>) */
} xs_outline;

/* Fills *o from ev->node, or without one by scanning ev->raw (well-formed: the parser checked
 * it). The spans point into the event. Returns 0, or -1 when neither is there or the bytes are
 * not as expected (then *o says no child). */
int xs_outline_of(const xs_event *ev, xs_outline *o);

/* The same but for has_error and error_condition, which it leaves 0, and the children after the
 * first, which it does not name: for a stanza whose <error/> does not matter, read in a few bytes
 * when the parser counted the children (xs_event.n_children). */
int xs_outline_first(const xs_event *ev, xs_outline *o);

static inline int xs_span_eq(xs_span s, const char *z)
{
    size_t n = strlen(z);
    return s.p != NULL && s.n == n && memcmp(s.p, z, n) == 0;
}

/* Whether a request of payload namespace ns may come before resource binding (binding itself,
 * session, in-band registration, legacy authentication); *bind: it is a binding request. */
int xs_iq_exempt_ns(xs_span ns, int *bind);

/* ---- sessions -------------------------------------------------------------------------------- */

#define XS_AN_JID_CACHE 64 /* bytes of a JID the cache of valid JIDs keeps (shorter ones) */

typedef struct xs_an_sess {
    struct xs_an_sess *next; /* in its hash bucket */
    char *key;               /* the session's name, as meta->session */
    uint64_t hash;
    unsigned stream_no[2]; /* the stream seen last of each direction */
    int client_stream;     /* the client's stream is jabber:client (bind applies) */
    int bound;             /* resource binding done (or SASL2 bound, or resumed) */
    int bind_said;         /* stanza-before-bind reported once */
    int plus_offered;      /* the server's features offered a -PLUS mechanism */
    int plus_hidden;       /* and a rule (sasl-plus) removed it for the client */
    char plus_mech[40];
    uint64_t idn_hash[2]; /* the last internationalized domains found valid */
    /* The last two short JIDs found valid, to skip validating them again: a session's stanzas
     * carry the same few JIDs over and over. */
    unsigned char jid_ok_len[2];
    char jid_ok[2][XS_AN_JID_CACHE];
    xs_iq_sess iq;
    xs_sm_sess sm;
} xs_an_sess;

#define XS_AN_BUCKETS 256

struct xs_analysis {
    xs_analysis_cfg cfg;
    int64_t timeout_us;
    xs_an_sess *buckets[XS_AN_BUCKETS];
    xs_an_sess *last; /* the session of the last event: bulk traffic comes in runs */
    uint64_t n_sess;
    xs_iq_nstab total; /* IQ statistics over the run */
    xs_sm_ids ids;     /* stream management ids, across sessions */
    xs_buf summary;    /* the summary handed out at XS_OBS_CLOSED */
    xs_iq_stat *rows;  /* xs_analysis_iq_stats() */
    size_t n_rows;
    uint64_t checks, evicted;
    uint64_t rng;
};

/* The direction index of meta->direction: 0 c2s, 1 s2c, -1 none. */
int xs_an_dir(const char *direction);

/* Microseconds of meta->time, or INT64_MIN when unknown. */
int64_t xs_an_time_us(const struct xs_print_meta *m);

/* Adds a check (formatted once, by xs_annot_check()) and counts it. */
#define xs_an_check(an, a, id, ref, ...)                                                           \
    ((an)->checks++, (void)xs_annot_check(a, id, ref, __VA_ARGS__))

/* The value of the stanza's attribute `name` in no namespace, or NULL. */
const char *xs_an_attr(const xs_event *ev, const char *name);

/* Whether a rule dropped the stanza (verdict "drop", filters/rules.h) or bounced it ("bounce": the
 * proxy answered it itself); "dropped" and "bounced", as print.h spells them, too. */
static inline int xs_an_dropped(const char *verdict)
{
    return verdict != NULL && strncmp(verdict, "drop", 4) == 0;
}

static inline int xs_an_bounced(const char *verdict)
{
    return verdict != NULL && strncmp(verdict, "bounce", 6) == 0;
}

/* A 64-bit FNV-1a hash. */
uint64_t xs_an_hash(const void *p, size_t n);

#endif
