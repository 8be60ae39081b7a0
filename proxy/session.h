/* One proxied XMPP session: the protocol state machine, without sockets.
 *
 * A session sits between two legs, the client's and the server's. It reads plaintext from each
 * (the legs decrypt), parses both directions, secures each leg the way it is configured,
 * forwards what it parsed to the other leg, and tells its observers (inspect/observer.h: the
 * console, the --write log, ...) what happened. Everything it does to the outside goes through
 * xs_session_io, the clock and its diagnostics included, so the whole machine is pure and is
 * tested with plain buffers.
 *
 * Each leg is secured independently. The client leg: `direct` (TLS from the first byte),
 * `starttls` (xmppscope answers the client's first stream itself, offers STARTTLS and requires
 * it) or `none`. The server leg: `direct`, `starttls` (xmppscope sends the client's first stream
 * header, reads the server's features, does STARTTLS) or `none`. The stream that is forwarded
 * byte for byte is the one that begins once both legs are secured: the client's stream header
 * sent over its secured leg goes to the server over the server's secured leg, and the server's
 * answer comes back. What happens before (the unsecured streams) is shown and logged too.
 */
#ifndef XS_PROXY_SESSION_H
#define XS_PROXY_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "filters/rules.h"
#include "inspect/error.h"
#include "inspect/observer.h"
#include "inspect/parser.h"

typedef enum xs_side { XS_CLIENT = 0, XS_SERVER = 1 } xs_side;

typedef enum xs_tls_mode {
    XS_TLSMODE_STARTTLS,
    XS_TLSMODE_DIRECT,
    XS_TLSMODE_NONE,
    XS_TLSMODE_MIRROR, /* server leg only: do what the client leg does */
} xs_tls_mode;

const char *xs_tls_mode_name(xs_tls_mode mode);
int xs_tls_mode_parse(const char *name, xs_tls_mode *out);

/* What the session asks of the legs. Each call is made from inside an xs_session_* call. */
typedef struct xs_session_io {
    /* Queues plaintext for a side; the leg encrypts it if TLS is on. Returns 0 or a negative
     * code (the session then closes). */
    int (*write)(void *ctx, xs_side side, const char *data, size_t len);
    /* From the next byte on, the side speaks TLS: the client leg as a TLS server (forging a
     * certificate for `name` when the client sends no SNI), the server leg as a TLS client
     * verifying `name` (and sending it as SNI). Bytes already queued go out in plaintext first.
     * Bytes the leg read after those handed to xs_session_on_data() are TLS records. */
    int (*start_tls)(void *ctx, xs_side side, const char *name);
    /* Connects the server leg. Answered by xs_session_on_connected(). */
    int (*connect)(void *ctx);
    /* Sends what is queued for the side, then closes it (TLS close_notify first). */
    void (*close)(void *ctx, xs_side side);
    /* Like write, but the bytes go out `ms` milliseconds from now, and everything written to
     * the side after them waits behind them (order within a direction is kept). NULL: the
     * legs cannot delay; the bytes are written at once. */
    int (*write_delayed)(void *ctx, xs_side side, const char *data, size_t len, unsigned long ms);
    /* The time in microseconds: `wall` 1 for the wall clock (since the epoch: the events' time
     * stamps), 0 for a monotonic clock (the session's duration). NULL: the time is unknown; the
     * events carry none (a printer then stamps them when it prints them) and the duration is 0. */
    uint64_t (*now_us)(void *ctx, int wall);
    /* A line for the operator that no observer can take: the one that failed was the only one,
     * or there is none. `text` is one line without a newline, starting "session N: ". NULL:
     * dropped. */
    void (*diag)(void *ctx, const char *text);
} xs_session_io;

typedef struct xs_session xs_session;

/* Asked, when set, for each stanza of a secured stream after the rules ran and before it is
 * forwarded (the web inspector's intercept): `ev` is the event as the observers get it (masked,
 * annotated). Returning 1 holds the stanza under `id` (unique in the session) until
 * xs_session_hold_release() names it; the stanzas of that direction read after it wait behind it
 * (that direction is paused), and are forwarded in order once the held ones before them are
 * released. 0: forwarded as usual. Called from inside the session's calls. */
typedef int (*xs_session_hold_cb)(void *ctx, xs_session *s, xs_side from, const xs_obs_event *ev,
                                  uint64_t id);

typedef struct xs_session_cfg {
    xs_tls_mode client_mode; /* direct, starttls or none: how this client came in */
    xs_tls_mode server_mode; /* may be XS_TLSMODE_MIRROR */
    unsigned rewrites;       /* XS_REWRITE_* bits (filters/features.h) */
    xs_parser_limits limits;
    /* Who is told what happens, in this order (the console, then the --write log). Borrowed: the
     * array and what it points to outlive every session made with it. What an observer's failure
     * does is its policy (xs_obs_policy): for the log, --on-log-error. */
    const xs_observer *observers;
    size_t n_observers;
    /* Secrets go to the observers in clear (--show-secrets); else xs_obs_mask() masks them. */
    int show_secrets;
    /* The name the server's certificate must have; NULL: the domain the client asked for. */
    const char *server_name;
    /* The rules applied to the stanzas of secured streams: the built-in rewrites selected by
     * `rewrites` plus XS_REWRITE_STARTTLS (which the session turns off unless the server leg is
     * plain), then the user's (--rules); see xs_rules_load() and xs_rules_builtin(). Read at
     * every stanza so a reload (SIGHUP) takes effect at once: *rules may change between calls.
     * NULL or *rules NULL: no rules, not even the built-in rewrites. Borrowed. */
    xs_rules *const *rules;
    /* The set holds rules of the user's: every stanza needs its tree (without, only the
     * server's stream features get one, parsed from their bytes). */
    int user_rules;
    /* The intercept (see xs_session_hold_cb); NULL: nothing is ever held. */
    xs_session_hold_cb hold;
    void *hold_ctx;
} xs_session_cfg;

/* Per-direction counters for the summary at close. */
typedef struct xs_session_stats {
    uint64_t stanzas[2]; /* [XS_CLIENT]: read from the client (c2s) */
    uint64_t bytes[2];
} xs_session_stats;

/* Creates a session. `cfg` and `io` are borrowed and must outlive it. Returns 0, XS_ENOMEM. */
int xs_session_new(const xs_session_cfg *cfg, const xs_session_io *io, void *io_ctx, unsigned id,
                   const char *peer, xs_session **out);

/* The client is connected. For a direct-TLS client the leg is already in TLS. */
void xs_session_start(xs_session *s);

/* Plaintext read from a side. Returns the bytes consumed: fewer than `len` only when the side
 * switched to TLS in the middle (xs_session_io.start_tls was called); the rest are TLS records.
 * Bytes are never dropped otherwise. After a switch to TLS from a plaintext stream (STARTTLS),
 * the leg goes on handing its reads here while xs_session_before_tls() says so: whitespace that
 * ends the plaintext stream is consumed, the first byte of a TLS record ends the gap (the rest
 * of the read is TLS), and any other byte fails the side (all of the read is consumed). */
size_t xs_session_on_data(xs_session *s, xs_side side, const char *data, size_t len);

/* 1 while the side has switched to TLS after <starttls/> (client) or <proceed/> (server) and no
 * byte of TLS has come yet: what the leg reads goes to xs_session_on_data() first. */
int xs_session_before_tls(const xs_session *s, xs_side side);

/* The TLS handshake on a side finished. `sni` is the name the client asked for (client leg; NULL
 * when it sent none); `desc` a one-line description for the log. */
void xs_session_on_tls_up(xs_session *s, xs_side side, const char *sni, const char *desc);

/* The address the server leg is connected to, "IP:PORT" or "[IPv6]:PORT", for the events'
 * meta (xs_print_meta.server_addr): call it before xs_session_on_connected(). */
void xs_session_set_server_addr(xs_session *s, const char *addr);

/* The server leg connected (status 0) or failed (negative code, `cause` in words). */
void xs_session_on_connected(xs_session *s, int status, const char *cause);

/* A side ended: EOF (status 0), a read or TLS error (negative, `cause` in words). */
void xs_session_on_closed(xs_session *s, xs_side side, int status, const char *cause);

/* A timer of the legs fired: the session did not finish negotiating, or a side went silent
 * after the other closed. `what` says which, for the log. */
void xs_session_on_timeout(xs_session *s, const char *what);

/* 1 once both directions are secured and forwarding. */
int xs_session_forwarding(const xs_session *s);

/* The side that has not closed its stream while the other has, or -1 when there is none (both
 * open, both closed, or the session is closing anyway). The legs give that side a deadline. */
int xs_session_lagging_side(const xs_session *s);

/* 1 once the session decided to close both legs (an error, a stream close both ways, ...). */
int xs_session_closing(const xs_session *s);

/* Tells the session it is shutting down (SIGTERM): each side with an open stream gets a clean
 * </stream:stream> (the client a <system-shutdown/> stream error) and both legs close. */
void xs_session_shutdown(xs_session *s);

/* Tells the observers that time passed (XS_OBS_TICK), so an analyser can report what timed out.
 * Nothing when the session is closing or has no observer that annotates. */
void xs_session_tick(xs_session *s);

const xs_session_stats *xs_session_get_stats(const xs_session *s);
const char *xs_session_id(const xs_session *s);

/* ---- reaching the server (the legs find it: proxy/resolve.h) ---- */

/* The domain the client asked for (its first stream's 'to', else its SNI); "" while unknown. */
const char *xs_session_domain(const xs_session *s);

/* How the server leg is secured, when the legs learn it with the connection (an SRV target of
 * _xmpps-client._tcp is direct TLS, XEP-0368): direct, starttls or none. Call before
 * xs_session_on_connected(). */
void xs_session_set_server_mode(xs_session *s, xs_tls_mode mode);

/* A line about the session for its observers ("info", "warning", "error"), as its own notes. */
void xs_session_say(xs_session *s, const char *level, const char *text);

/* The side has been quiet for a while: its parser gives back what it can (xs_parser_trim()),
 * so that idle sessions stay small. Returns 1 when memory was given back, else 0. */
int xs_session_trim(xs_session *s, xs_side side);

/* Send and intercept (session_hold.c), for the web inspector. Both are called from outside the
 * session's calls (the legs' writes then need settling by the caller) and only between stanzas:
 * a stanza is forwarded whole once its end tag is read, so any moment outside the session's calls
 * is a stanza boundary.
 *
 * Injects `xml` into the stream going to `to`: it must be one well-formed element (parsed as a
 * stanza of the stream: inspect/fragment.h), both legs secured and that stream open. The
 * observers get a note saying what was injected ("injected by the web inspector ..."). Returns 0,
 * XS_ENOTWF / XS_EBADFORMAT / XS_ERESTRICTED / XS_ETOOBIG for refused XML (the cause in *why),
 * XS_ESTATE when the session is not forwarding or that stream is closed. */
int xs_session_inject(xs_session *s, xs_side to, const char *xml, size_t len, xs_diag *why);

/* Decides a held stanza of direction `from`: forwarded as held (xml NULL), forwarded as `xml`
 * instead (checked as for xs_session_inject()), or dropped (`drop`). `why` ends the note the
 * observers get ("by the user", "after the 30 s timeout"). What waits behind it and is decided
 * goes on in order. Returns 0, XS_EINVAL (no such held stanza), or the refusal of `xml`. */
int xs_session_hold_release(xs_session *s, xs_side from, uint64_t id, const char *xml, size_t len,
                            int drop, const char *why, xs_diag *diag);

/* Stanzas of direction `from` waiting (held or behind a held one). */
size_t xs_session_held(const xs_session *s, xs_side from);

/* Prints the summary line (duration, stanzas and bytes each way, why it ended) and frees. */
void xs_session_free(xs_session *s);

#endif
