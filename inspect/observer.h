/* Observers: the one way to watch a session.
 *
 * A session (proxy/session.h) tells its observers what happened, in order: each parser event of
 * either direction (stream opened, stanza received and forwarded with its bytes, tree and rule
 * results, keepalive, stream closed, parse error), a leg's TLS coming up, a note of the proxy
 * (level and text), and at the end a summary. The console printer and the JSON Lines log are the
 * first two observers (xs_printer_observer()); whatever comes next (an IQ tracker, checks,
 * explanations, a web inspector) plugs in the same way, without touching the session.
 *
 * The contract:
 *   - Observers are registered when the session is made (xs_session_cfg.observers) and stay for
 *     its life. They are called from inside the session's calls, on its thread, in the order of
 *     the array.
 *   - A parser event reaches them after its bytes were queued for forwarding (the one exception
 *     is an XS_OBS_REQUIRED observer, below), with its secrets already masked: the masking runs
 *     once per event, in xs_obs_mask(), before any observer is called, and every output (the
 *     proxy's and the offline `inspect`'s) goes through it.
 *   - An observer sees everything as const: it cannot change the bytes that are forwarded. It
 *     must not block: it formats, counts or queues, and returns.
 *   - Its failure (a negative return) does not end the session unless the user asked for that:
 *     see xs_obs_policy.
 */
#ifndef XS_INSPECT_OBSERVER_H
#define XS_INSPECT_OBSERVER_H

#include <stddef.h>
#include <stdint.h>

#include "inspect/annot.h"
#include "inspect/parser.h"
#include "inspect/print.h"
#include "inspect/redact.h"

typedef enum xs_obs_kind {
    /* A parser event of one direction (ev->kind: stream open, stanza, keepalive, stream close,
     * error), with the rules that applied to it (meta). */
    XS_OBS_PARSED,
    /* A leg's TLS handshake finished (side, tls_desc). */
    XS_OBS_TLS_UP,
    /* A note of the proxy: level and text. */
    XS_OBS_NOTE,
    /* The session ended (summary). The last event an observer gets from a session. Offline
     * (inspect), the end of the input is one XS_OBS_CLOSED with meta->session NULL, no text
     * and no summary: every session in it ended. */
    XS_OBS_CLOSED,
    /* Time passed (about once a second, from the proxy, for each live session; never offline):
     * an analyser may report what timed out (an IQ left unanswered) as checks in ev->annot. It
     * carries nothing else: a printer shows its checks, if any, and nothing when there are none. */
    XS_OBS_TICK,
} xs_obs_kind;

/* What the summary at the end of a session says. */
typedef struct xs_obs_summary {
    double seconds;      /* how long the session lasted */
    uint64_t stanzas[2]; /* [0]: read from the client (c2s), [1]: from the server (s2c) */
    uint64_t bytes[2];   /* the same in bytes */
    const char *cause;   /* why it ended, one line */
} xs_obs_summary;

/* One event for the observers. Everything is borrowed for the duration of the call. */
typedef struct xs_obs_event {
    xs_obs_kind kind;
    /* Session, direction, phase and time of every kind. For XS_OBS_PARSED also the rules that
     * applied, the verdict, and the XML forwarded instead of the stanza (meta->rewritten),
     * masked already. */
    const xs_print_meta *meta;
    /* XS_OBS_PARSED: the parser event as read. Its raw bytes and tree are the original: where
     * masked->xml is set, an observer that shows the stanza shows that instead (masked->node
     * is its tree), as the printers do. NULL for the other kinds. */
    const xs_event *ev;
    const xs_redaction *masked;
    /* XS_OBS_NOTE, XS_OBS_TLS_UP, XS_OBS_CLOSED: the line a person reads, and its level
     * ("debug", "info", "warn" or "error"). */
    const char *level;
    const char *text;
    int side;                      /* XS_OBS_TLS_UP: 0 the client leg, 1 the server leg */
    const char *tls_desc;          /* XS_OBS_TLS_UP: protocol and cipher, one line */
    const xs_obs_summary *summary; /* XS_OBS_CLOSED */
    /* What the analysers found out (IQ pairing, checks): filled by the observers' `annotate`
     * callbacks, all of which run before any `on_event`, and read by the rest; meta->annot
     * points at the same. Never NULL when it comes from a session or xs_obs_emit_event(). */
    xs_annot *annot;
} xs_obs_event;

/* What an observer's failure does to the session. */
typedef enum xs_obs_policy {
    /* Failures are ignored (the console: a closed stdout does not stop the traffic). */
    XS_OBS_BEST_EFFORT,
    /* The first failure in a session is said once (to the other observers, or as a diagnostic
     * when there is none) and the session goes on: --on-log-error continue. */
    XS_OBS_WARN,
    /* The user asked that nothing goes out unobserved (--on-log-error stop). This observer gets
     * each parser event BEFORE its bytes are forwarded, synchronously: when it fails, the session
     * ends without forwarding the event. The one exception to "after forwarding", kept because
     * the promise is about what reaches the other side. */
    XS_OBS_REQUIRED,
} xs_obs_policy;

typedef struct xs_observer {
    /* Called for each event. Returns 0 or a negative XS_E code (see xs_obs_policy). NULL: the
     * observer only annotates. */
    int (*on_event)(void *ctx, const xs_obs_event *ev);
    /* An analyser: called for each event (every kind, debug notes included) before any observer's
     * on_event, in the order of the array, to add what it finds to *annot (== ev->annot). It
     * sees the event as the others will, masked. It must not fail the session: it returns
     * nothing, and what it cannot record (no memory) it drops and counts. NULL: none. */
    void (*annotate)(void *ctx, const xs_obs_event *ev, xs_annot *annot);
    void *ctx;
    xs_obs_policy policy;
    /* Whether it wants the "debug" notes (every state change); else it is not called for them. */
    int debug;
    /* Whether it needs every stanza's tree (XS_PARSER_TREE), which is costly to build. */
    int needs_tree;
    /* What it is, for the message that says it failed: "the --write log". */
    const char *name;
} xs_observer;

/* Secrets masked out of one parser event, for the observers. Fill with xs_obs_mask(), release
 * with xs_obs_masked_clear(). */
typedef struct xs_obs_masked {
    xs_redaction red;   /* the stanza's masks (empty when it carries no secret) */
    xs_redaction rew;   /* the masks of the XML a rule forwarded instead (meta->rewritten) */
    xs_print_meta meta; /* the meta given, with rewritten replaced by its masked copy */
    xs_obs_event event; /* the event to hand to the observers: points into this struct */
    xs_annot annot;     /* its annotations, empty: event.annot and meta.annot point here */
} xs_obs_masked;

/* Masks the secrets of a parser event (ev, and meta->rewritten when set) once, unless
 * show_secrets: the one place where masking happens (see redact.h). Fills *out, whose `event`
 * is then the XS_OBS_PARSED event for the observers, with an empty annot (out->annot) for the
 * analysers to fill; it points into *out and at ev and meta, which must outlive it. meta may be
 * NULL (no session, no direction, no rules). Returns 0 or XS_ENOMEM (with *out empty then). Release
 * with xs_obs_masked_clear(). */
int xs_obs_mask(const xs_event *ev, const xs_print_meta *meta, int show_secrets,
                xs_obs_masked *out);

/* Frees what *m holds. Safe on an empty one. */
void xs_obs_masked_clear(xs_obs_masked *m);

/* Calls one observer for one event, unless it is a "debug" note the observer does not want or the
 * observer only annotates. Returns what the observer returned (0 when not called). */
int xs_obs_call(const xs_observer *o, const xs_obs_event *ev);

/* The first pass over an event: every observer's `annotate` of obs[0..n), in order. ev->annot
 * must be set (and xs_annot_init()ed by the emitter). */
void xs_obs_annotate(const xs_observer *obs, size_t n, const xs_obs_event *ev);

/* Masks a parser event once, annotates it (xs_obs_annotate), then calls every observer of
 * obs[0..n) with it, in order. The first failure is returned (0 when none); the others are still
 * called. For a reader with no forwarding to order against (the offline inspect). */
int xs_obs_emit_event(const xs_observer *obs, size_t n, const xs_print_meta *meta,
                      const xs_event *ev, int show_secrets);

/* Annotates, then tells every observer of obs[0..n) an event other than a parser event (a note,
 * TLS up, closed, tick), whose annot may be NULL (one on the stack is used then). The first
 * failure is returned; the others are still called. */
int xs_obs_emit_other(const xs_observer *obs, size_t n, const xs_obs_event *ev);

/* The same, but observer `skip` (an index of obs; SIZE_MAX: none) is not called (it is still
 * asked to annotate). */
int xs_obs_emit_other_but(const xs_observer *obs, size_t n, size_t skip, const xs_obs_event *ev);

/* An observer that prints every event with `printer` (which stays the caller's and must outlive
 * the observer): parser events as xs_printer_event() does after the masking, the others as
 * xs_printer_note() lines. */
xs_observer xs_printer_observer(xs_printer *printer, xs_obs_policy policy, int debug,
                                const char *name);

#endif
