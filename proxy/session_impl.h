/* The session's insides, shared by its files and by nothing else (see session.h for the
 * interface). The files, one concern each:
 *   session.c       the state machine: one handler per state of each leg, the public calls
 *   session_out.c   what the session says: notes and observers, writes to the legs, failures
 *   session_fwd.c   the stanzas of the secured streams: rules, verdicts, forwarding, features
 *   session_auth.c  SASL: the SCRAM GS2 header, channel binding and its downgrade
 *   session_tls.c   STARTTLS on either leg and the plaintext gap before the first TLS record
 */
#ifndef XS_PROXY_SESSION_IMPL_H
#define XS_PROXY_SESSION_IMPL_H

#include "proxy/session.h"

#include <libxml/tree.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NS_STREAMS "http://etherx.jabber.org/streams"
#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_SASL2 "urn:xmpp:sasl:2"
#define NS_XMPP_STREAMS "urn:ietf:params:xml:ns:xmpp-streams"

/* The session as a whole. */
typedef enum sess_state {
    SS_NEGOTIATING, /* securing the legs */
    SS_FORWARDING,  /* both legs secured: the client's stream flows to the server and back */
    SS_CLOSING,     /* both legs told to close */
} sess_state;

/* The client leg. */
typedef enum client_state {
    CL_TLS_HANDSHAKE, /* direct TLS, or after <proceed/>: waiting for the handshake */
    CL_WAIT_HEADER,   /* plain, STARTTLS mode: waiting for the client's first stream header */
    CL_WAIT_STARTTLS, /* we answered with features offering STARTTLS */
    CL_SECURE,        /* secured (or plain by choice): its stream is forwarded */
} client_state;

/* The server leg. */
typedef enum server_state {
    SL_IDLE,          /* not connected yet: waiting for the client's first stream header */
    SL_CONNECTING,    /* TCP connect under way */
    SL_TLS_HANDSHAKE, /* direct TLS, or after <proceed/> */
    SL_WAIT_FEATURES, /* STARTTLS mode: sent a stream header, waiting for the features */
    SL_WAIT_PROCEED,  /* sent <starttls/> */
    SL_SECURE,        /* secured (or plain by choice): forwarding */
    SL_GONE,          /* failed and closed while the client is still being told */
} server_state;

typedef enum phase { PH_PLAIN, PH_TLS, PH_AUTHED } phase;

/* The session's flags, one bit each in `flags`: read through sess_has(), changed through
 * sess_set() and sess_clear(). A flag of a side is two bits, the client's then the server's,
 * and side_bit() picks one from the client's. */
typedef enum sess_flag {
    XS_SF_HAVE_FIRST_HEADER = 1u << 0, /* first_header was taken (and, once sent, freed) */
    XS_SF_CLIENT_ANSWERED = 1u << 1,   /* the client's current stream has a header from us/server */
    XS_SF_CLIENT_OPENED = 1u << 2,     /* the client sent a header in its current stream */
    XS_SF_SERVER_OPENED = 1u << 3,     /* we sent the server a header in its current stream */
    XS_SF_SERVER_BINDING = 1u << 4,    /* the server offered channel binding (-PLUS, XEP-0440) */
    /* The client was warned about channel binding in its SASL login: said once a session. */
    XS_SF_WARNED_BINDING = 1u << 5,
    /* The client sent a SCRAM 'y' login after the server's -PLUS offer was removed: the
     * server's answer (<success/> or <failure/>) tells whether it detected the downgrade. */
    XS_SF_DOWNGRADE_SENT = 1u << 6,
    /* The side sent </stream:stream>. */
    XS_SF_CLOSED_BY_CLIENT = 1u << 7,
    XS_SF_CLOSED_BY_SERVER = 1u << 8,
    /* The side switched to TLS after <starttls/> (client) or <proceed/> (server) and sent no
     * TLS byte yet: XML whitespace there still belongs to its plaintext stream (gap_read()). */
    XS_SF_BEFORE_TLS_CLIENT = 1u << 9,
    XS_SF_BEFORE_TLS_SERVER = 1u << 10,
    /* The side's connection ended cleanly after it closed its stream (a half-close), and the
     * session waits for the other side: said once, however many ways the leg reports the end
     * (TLS close_notify, then the TCP FIN). */
    XS_SF_HALF_CLOSED_CLIENT = 1u << 11,
    XS_SF_HALF_CLOSED_SERVER = 1u << 12,
    /* io->close was called for the side: nothing more goes to it. */
    XS_SF_LEG_CLOSED_CLIENT = 1u << 13,
    XS_SF_LEG_CLOSED_SERVER = 1u << 14,
} sess_flag;

/* A growable byte buffer with a cap. */
typedef struct bytes {
    char *data;
    size_t len, cap;
} bytes;

struct xs_session {
    const xs_session_cfg *cfg;
    const xs_session_io *io;
    void *io_ctx;
    unsigned id;
    char id_str[16];
    /* The client's and the server's addresses, "IP:PORT" or "[IPv6]:PORT", for the "connected"
     * line and the events' meta (the pcap, the log's stream-open lines); NULL while unknown. */
    char *peer;
    char *server_addr;
    xs_tls_mode client_mode, server_mode;
    uint64_t started_us; /* io->now_us(monotonic) when the session was made */

    sess_state state;
    client_state cst;
    server_state sst;
    phase ph[2];
    unsigned flags; /* sess_flag bits */

    xs_parser *parser[2]; /* [XS_CLIENT] reads what the client sends */
    xs_side feeding;      /* the side whose parser is running (for the event callback) */
    bool switched_tls;    /* start_tls was called while feeding: stop the feed */

    /* The strings below are allocated to their size, and only when there is something to keep:
     * with thousands of idle sessions, fixed arrays for the longest case cost more than all the
     * rest of the session. */
    char *domain;       /* what the client asked for: SNI, else its stream's `to`; or NULL */
    char *client_ns;    /* the client's default namespace (jabber:client), or NULL */
    bytes first_header; /* the client's first stream header, sent to a STARTTLS server */
    bytes pending;      /* the client's secured stream, waiting for the server leg */
    /* Bit i: observer i (an XS_OBS_WARN one) failed once in this session: said, not repeated.
     * Observers beyond the 32nd are warned about at every failure. */
    uint32_t warned;
    /* While a parser event is handled (on_event()), the notes it causes are kept here (level,
     * NUL, text, NUL, ...) and told after the event itself, which the observers get only once
     * its bytes are queued: they read the event, then its consequences. */
    bool in_event;
    bytes deferred;
    /* The server leg failed while the client could not be told (its TLS handshake was under
     * way): the stream error waits for the client's next stream header. NULL: no such failure. */
    char *deferred_failure;

    /* Namespace declarations of the server's current stream header, for the feature rewrite:
     * one block, the array followed by its strings. */
    xs_attr *s2c_ns;
    size_t n_s2c_ns;

    struct xs_hold *hold; /* the intercept's queues (session_hold.c); NULL: nothing held yet */

    xs_session_stats stats;
    char *end_cause;   /* why the session ended, for the summary; NULL: "closed" */
    size_t max_stanza; /* the effective limit */
};

/* The bit of a per-side flag for `side`, given the flag's client bit (XS_SF_*_CLIENT). */
static inline unsigned side_bit(sess_flag client_bit, xs_side side)
{
    _Static_assert(XS_CLIENT == 0 && XS_SERVER == 1, "side_bit() shifts by the side");
    return (unsigned)client_bit << side;
}

static inline bool sess_has(const xs_session *s, unsigned bit)
{
    return (s->flags & bit) != 0;
}

static inline void sess_set(xs_session *s, unsigned bit)
{
    s->flags |= bit;
}

static inline void sess_clear(xs_session *s, unsigned bit)
{
    s->flags &= ~bit;
}

/* One parser event being handled, with what the rules made of it. It lives on on_event()'s
 * stack and is handed down to whatever handles the event; the session keeps no pointer to it. */
typedef struct xs_sess_event {
    xs_side from;
    const xs_event *ev;
    /* What the rules decided (points at `result`), or NULL when they did not run. */
    const xs_rule_result *res;
    xs_rule_result result;
    /* The tree of the server's <stream:features/> (the parser's, or one parsed from its bytes
     * when the parser builds none), or NULL. */
    const xmlNode *features;
    xmlDoc *features_doc; /* the document of `features` when parsed from its bytes */
    bool held;            /* the intercept holds it (xs_session_cfg.hold), as hold_id */
    uint64_t hold_id;
} xs_sess_event;

/* ---- session.c: the state setters (each logs its transition) ---- */
void xs_sess_set_state(xs_session *s, sess_state st);
void xs_sess_set_client(xs_session *s, client_state st);
void xs_sess_set_server(xs_session *s, server_state st);
/* The phase a direction's events are shown in; not a state of the machine, so not logged: every
 * event line carries it. */
void xs_sess_set_phase(xs_session *s, xs_side side, phase ph);
void xs_sess_update_forwarding(xs_session *s);
const char *xs_sess_server_name(const xs_session *s);
void xs_sess_connect_server(xs_session *s);
/* The name of a phase, as events show it. */
const char *xs_sess_phase_name(phase ph);

/* ---- session_out.c: saying and writing ---- */
const char *xs_sess_side_dir(xs_side side);
void xs_sess_bytes_free(bytes *b);
int xs_sess_bytes_append(bytes *b, const char *d, size_t n, size_t limit);
void xs_sess_set_end_cause(xs_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int xs_sess_set_string(char **field, const char *value, size_t max);
const char *xs_sess_domain_of(const xs_session *s);
uint64_t xs_sess_now_us(const xs_session *s, int wall);
xs_print_meta xs_sess_meta_of(const xs_session *s, const char *dir, const char *ph);
size_t xs_sess_tell_all(xs_session *s, const xs_obs_event *e, size_t skip);
void xs_sess_note(xs_session *s, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void xs_sess_tell_deferred(xs_session *s);
xs_print_meta xs_sess_event_meta(const xs_session *s, const xs_sess_event *sx,
                                 xs_print_rule pr[32]);
int xs_sess_tell_required(xs_session *s, int mrc, const xs_obs_masked *m);
void xs_sess_tell_others(xs_session *s, int mrc, const xs_obs_masked *m, const xs_print_meta *meta);
void xs_sess_tell_tls_up(xs_session *s, xs_side side, const char *desc);
int xs_sess_put(xs_session *s, xs_side to, const char *data, size_t len);
int xs_sess_put_str(xs_session *s, xs_side to, const char *str);
void xs_sess_answer_client_header(xs_session *s);
void xs_sess_stream_error_to(xs_session *s, xs_side to, const char *condition, const char *text);
bool xs_sess_can_speak(const xs_session *s, xs_side side);
void xs_sess_end_stream_to(xs_session *s, xs_side to);
void xs_sess_close_side(xs_session *s, xs_side side);
void xs_sess_close_both(xs_session *s);
void xs_sess_fail(xs_session *s, xs_side at_fault, const char *condition, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void xs_sess_fail_unlogged(xs_session *s, int rc);
void xs_sess_upstream_failed(xs_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The deferred failure when there is no memory for its text. Never freed. */
extern char xs_sess_deferred_oom[];

/* ---- session_fwd.c: the stanzas of the secured streams ---- */
bool xs_sess_is_el(const xs_event *ev, const char *ns, const char *name);
void xs_sess_run_rules(xs_session *s, xs_sess_event *sx);
void xs_sess_event_done(xs_sess_event *sx);
void xs_sess_to_server(xs_session *s, const char *data, size_t len);
void xs_sess_rules_verdict(xs_session *s, const xs_sess_event *sx, const char **out,
                           size_t *out_len);
void xs_sess_forward(xs_session *s, const xs_sess_event *sx, xs_side to, const char *data,
                     size_t len);
void xs_sess_rules_inject(xs_session *s, const xs_sess_event *sx);
void xs_sess_remember_s2c_namespaces(xs_session *s, const xs_event *ev);
bool xs_sess_server_features(xs_session *s, const xs_sess_event *sx);

/* ---- session_hold.c: the intercept ---- */
void xs_sess_hold_ask(xs_session *s, xs_sess_event *sx, const xs_obs_event *oe);
bool xs_sess_hold_take(xs_session *s, const xs_sess_event *sx, xs_side to, const char *data,
                       size_t len);
void xs_sess_hold_flush(xs_session *s, xs_side from);
void xs_sess_hold_free(xs_session *s);

/* ---- session_auth.c: SASL ---- */
void xs_sess_check_channel_binding(xs_session *s, const xs_event *ev);
void xs_sess_server_auth_answer(xs_session *s, const xs_event *ev);

/* ---- session_tls.c: STARTTLS and the gap before TLS ---- */
void xs_sess_client_offer_starttls(xs_session *s);
int xs_sess_client_wait_starttls(xs_session *s, xs_sess_event *sx);
int xs_sess_server_wait_features(xs_session *s, xs_sess_event *sx);
int xs_sess_server_wait_proceed(xs_session *s, xs_sess_event *sx);
void xs_sess_send_first_header(xs_session *s);
size_t xs_sess_gap_read(xs_session *s, xs_side side, const char *data, size_t len);

#endif
