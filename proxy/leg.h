/* A leg: one side of a session's connection pair (internal to proxy/).
 *
 * A leg owns its socket (a uv_tcp_t embedded here, so the conn that embeds the leg embeds it
 * too), its TLS engine, the plaintext gathered for TLS, its output queue, the chunks a rule
 * delayed and their timer. The socket's and the delay timer's `data` always point at the leg;
 * the conn, and through it the session, is reached from the leg.
 *
 * Its close sequence is one state, changed only by xs_leg_set_state(), which logs every change
 * at debug level (XMPPSCOPE_DEBUG=leg in the environment):
 *
 *   IDLE ──connect──► CONNECTING ──connected──► OPEN ──close asked──► DRAINING
 *     │                   │                                              │ queue written,
 * close_notify │                   │ close asked: nothing to say                  ▼ │
 * └───────────────────────────────────► CLOSING ◄── SHUTTING ──► SHUT └── close asked: never opened
 * ──► CLOSED ◄── close callback ──┘   (FIN sent)  (FIN done; peer FIN/linger) A read error, the
 * peer's FIN, a failed write or a timer may close the handle from any open state (CLOSING). A leg's
 * state only moves forward along this order.
 *
 * Beside the state, three facts that are not steps of the close sequence: the peer's FIN was
 * read (eof), reading is stopped by backpressure (paused), a write is in flight (writing). And
 * the TLS engine's own progression (xs_leg_tls). */
#ifndef XS_PROXY_LEG_H
#define XS_PROXY_LEG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "proxy/session.h"
#include "proxy/tls.h"

struct xs_conn;

/* Every read lands in one buffer of the proxy's this large; processed before the next read. */
#define XS_LEG_READ_BUF 65536

typedef enum xs_leg_state {
    XS_LEG_IDLE,       /* no socket yet: the server leg before it connects */
    XS_LEG_CONNECTING, /* the handle is open, the connection under way */
    XS_LEG_OPEN,       /* connected: read and written */
    XS_LEG_DRAINING,   /* the session asked to close: what is queued goes out first */
    XS_LEG_SHUTTING,   /* everything written, close_notify too: uv_shutdown requested */
    XS_LEG_SHUT,       /* our FIN was sent: waiting for the peer's FIN or the linger timer */
    XS_LEG_CLOSING,    /* uv_close called */
    XS_LEG_CLOSED,     /* the close callback ran, or the leg was closed before it ever opened */
} xs_leg_state;

/* The TLS engine of a leg, in order. */
typedef enum xs_leg_tls {
    XS_LEG_TLS_OFF,         /* bytes on the wire are plaintext */
    XS_LEG_TLS_HANDSHAKING, /* bytes on the wire are TLS records; the handshake is not done */
    XS_LEG_TLS_UP,          /* handshake finished */
    XS_LEG_TLS_SHUT,        /* our close_notify is queued */
} xs_leg_tls;

/* Facts about a leg beside its state, one bit each. */
enum {
    XS_LEG_EOF = 1u << 0,     /* the peer's FIN or a read error was read */
    XS_LEG_PAUSED = 1u << 1,  /* reading stopped by backpressure */
    XS_LEG_WRITING = 1u << 2, /* a uv_write is in flight */
};

/* A plain growable byte buffer: the output queues swap theirs, so they are not capped xs_bufs
 * (the cap is the high-water mark, applied to the reading side). */
typedef struct xs_leg_bytes {
    char *data;
    size_t len, cap;
} xs_leg_bytes;

/* A stanza a rule delayed, and everything written to the same leg after it. */
typedef struct xs_leg_delayed {
    struct xs_leg_delayed *next;
    uint64_t at; /* uv_now() when it may go */
    size_t len;
    char data[];
} xs_leg_delayed;

typedef struct xs_leg {
    uv_tcp_t tcp; /* tcp.data is this leg, always */
    struct xs_conn *c;
    xs_side side;
    xs_leg_state state; /* changed only by xs_leg_set_state() */
    xs_leg_tls tls_state;
    unsigned flags; /* XS_LEG_EOF, XS_LEG_PAUSED, XS_LEG_WRITING */
    xs_tls *tls;
    /* Its places in the proxy's lists of legs that may have memory to give back (trim.c): it
     * is trimmed at q[k].at unless it carries something before. */
    struct {
        struct xs_leg *prev, *next;
        uint64_t at;
        bool listed;
    } q[2];
    xs_leg_bytes plain; /* TLS legs: plaintext gathered during a callback, encrypted at its end */
    xs_leg_bytes out;   /* queued for the socket */
    xs_leg_bytes inflight; /* being written */
    /* The requests and the delay timer are allocated when first needed and given back when
     * done (the write request when the leg is trimmed): an idle session holds none of them. */
    uv_write_t *wreq;
    xs_leg_delayed *dq_head, *dq_tail; /* plaintext waiting for its time, in order */
    uv_timer_t *dtimer; /* fires when the head of dq may go; NULL until a rule delays */
} xs_leg;

/* The predicates the rest of proxy/ reads a leg through. */
static inline bool xs_leg_is_open(const xs_leg *l) /* the handle is initialised, not closing */
{
    return l->state >= XS_LEG_CONNECTING && l->state < XS_LEG_CLOSING;
}
static inline bool xs_leg_has_handle(const xs_leg *l) /* initialised and not yet closed */
{
    return l->state >= XS_LEG_CONNECTING && l->state <= XS_LEG_CLOSING;
}
static inline bool xs_leg_connected(const xs_leg *l) /* the socket can be read and written */
{
    return l->state >= XS_LEG_OPEN && l->state <= XS_LEG_SHUT;
}
static inline bool xs_leg_close_asked(const xs_leg *l)
{
    return l->state >= XS_LEG_DRAINING;
}
static inline bool xs_leg_done(const xs_leg *l) /* no handle, or its close is under way */
{
    return l->state == XS_LEG_IDLE || l->state >= XS_LEG_CLOSING;
}
static inline bool xs_leg_tls_on(const xs_leg *l)
{
    return l->tls_state != XS_LEG_TLS_OFF;
}

/* Makes an IDLE leg of conn c for `side`. */
void xs_leg_init(xs_leg *l, struct xs_conn *c, xs_side side);

/* The one way a leg's state changes; logs "leg <session> <side>: OLD -> NEW" at debug level. */
void xs_leg_set_state(xs_leg *l, xs_leg_state to);

/* Opens the leg's handle on `loop` (IDLE -> CONNECTING). Returns 0 or a libuv code. */
int xs_leg_open_handle(xs_leg *l, uv_loop_t *loop);

/* The handle is connected (CONNECTING -> OPEN): no Nagle, reading starts. */
void xs_leg_connected_now(xs_leg *l);

/* Queues plaintext for the leg (encrypted when TLS is on). Returns 0 or XS_ENOMEM. */
int xs_leg_write(xs_leg *l, const char *data, size_t len);

/* Queues plaintext that goes out at `at` (uv_now() time), behind what is delayed already. */
int xs_leg_delay(xs_leg *l, const char *data, size_t len, uint64_t at);

/* Encrypts what was gathered and starts a write of what is queued, when none is in flight. */
void xs_leg_flush(xs_leg *l);

/* Moves what the TLS engine produced into the output queue. */
void xs_leg_drain_cipher(xs_leg *l);

/* Starts (or resumes) reading from a connected leg. */
void xs_leg_start_reading(xs_leg *l);

/* Bytes queued on the leg: gathered, queued, in flight and inside the TLS engine. */
size_t xs_leg_queued(const xs_leg *l);

/* The session asked to close the leg: it goes on through DRAINING (see above). */
void xs_leg_request_close(xs_leg *l);

/* Carries out a close request as far as it can go now. Called at the end of every callback. */
void xs_leg_settle_close(xs_leg *l);

/* Closes the handle at once (any open state -> CLOSING). */
void xs_leg_close_handle(xs_leg *l);

/* Closes the delay timer, if any; its close callback counts as one of the conn's handles. */
void xs_leg_close_delay_timer(xs_leg *l);

/* Gives back the write request and the TLS buffers of a quiet leg. Returns how many allocations
 * it gave back, or -1 when the leg still has something to write (try again later). */
int xs_leg_trim(xs_leg *l);

/* Frees what the leg holds (after its handles closed). */
void xs_leg_free(xs_leg *l);

#endif
