/* A conn: one session and its two legs (internal to proxy/).
 *
 * Ownership: a conn embeds both legs (and so their uv_tcp_t) and points at its deadline timer.
 * Every libuv callback into a conn ends with xs_conn_settle(), which flushes what the session
 * queued, applies backpressure, carries out close requests and, once every handle of the conn has
 * been closed (the last close callback), frees the session and the conn. Nothing is freed from a
 * read or write callback directly. The conn plays the session's xs_session_io. */
#ifndef XS_PROXY_CONN_H
#define XS_PROXY_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "proxy/leg.h"
#include "proxy/session.h"

struct xs_proxy;
struct xs_listener;

typedef enum xs_conn_timer {
    XS_TIMER_NONE,
    XS_TIMER_HANDSHAKE,
    XS_TIMER_CLOSE,
    XS_TIMER_LINGER,
    XS_TIMER_PREAMBLE /* a PROXY protocol header is awaited (proxy/proxyproto_conn.c) */
} xs_conn_timer;

typedef struct xs_conn {
    struct xs_proxy *p;
    xs_session *s;
    xs_leg leg[2];
    /* The session's deadline (handshake, close, linger): allocated when one is set and given
     * back when it is cleared, so a forwarding session holds none. Its data is the conn. */
    uv_timer_t *timer;
    xs_conn_timer timer_kind;
    bool timer_open;  /* deadlines may still be set: false once every handle is closing */
    bool resolving;   /* a uv_getaddrinfo (allocated for it) is under way */
    bool listed;      /* in the proxy's list of conns (it has a session) */
    unsigned handles; /* handles opened and not yet closed */
    bool dead;        /* every handle closed: free at the end of the callback */
    xs_tls_mode server_mode;
    struct xs_listener *ls; /* the listener that accepted it */
    struct xs_dial *dial;   /* finding and connecting the server (proxy/resolve.h), under way */
    struct xs_pp_read *pp;  /* the PROXY protocol header being read; NULL otherwise */
    char *pp_peer;          /* the sender of that header, "IP:PORT", while it is read */
    struct xs_socks_conn *socks; /* the SOCKS5 dialogue (socks_conn.c); NULL otherwise */
    int pre_fd; /* connected to the destination before the session (SOCKS5, transparent); -1 */
    xs_tls_mode client_mode; /* how the client leg is secured (a sniffing listener: its first
                                byte decides) */
    char *dialled_ip;        /* the address the client dialled, when not this socket's (a PROXY
                                protocol header's destination, a redirected connection's): the forged
                                certificate names it; NULL otherwise */
    char *up_key;            /* "host:port" of the server dialled (TLS resumption), allocated */
    struct xs_conn *prev, *next;
} xs_conn;

/* Accepts a connection on the listener's socket into a new conn and starts its session. Refusals
 * (limits, stopping, no memory) are said on stderr and the socket is closed. */
void xs_conn_accept(struct xs_listener *ls, uv_stream_t *server);

/* Starts the session of an accepted conn whose client is `peer` ("IP:PORT"); `note` (or NULL) is
 * a line told right after the session's first. */
void xs_conn_begin(xs_conn *c, const char *peer, const char *note);

/* Closes the conn's handles and its deadline at once (a refused connection). */
void xs_conn_abort(xs_conn *c);

/* The PROXY protocol on a listener (proxyproto_conn.c): reads the header of the accepted conn,
 * no further than its end, then xs_conn_begin() with the client it names; a bad header closes the
 * connection with a line on stderr. `peer` is the sender's address. */
void xs_pp_conn_start(xs_conn *c, const char *peer);
void xs_pp_conn_free(xs_conn *c);

/* A SOCKS5 listener (socks_conn.c): the dialogue, the connection to the destination (kept in
 * c->pre_fd for the server leg), the reply, then xs_conn_sniff_start(). */
void xs_socks_conn_start(xs_conn *c, const char *peer);
void xs_socks_conn_free(xs_conn *c);

/* Waits for the client's first byte without reading it: a TLS record makes the client leg
 * direct TLS, anything else STARTTLS; then xs_conn_begin(). Needs c->socks (its peer and note). */
void xs_conn_sniff_start(xs_conn *c);

/* A transparent listener (socks_conn.c, proxy/transparent.h): the destination the kernel
 * redirected the client from, connected before the session, then xs_conn_sniff_start(). A
 * connection that was not redirected is refused (it would loop). */
void xs_transparent_conn_start(xs_conn *c, const char *peer);

/* The end of every callback into the conn (see above). May free the conn. */
void xs_conn_settle(xs_conn *c);

/* One of the conn's handles finished closing; the conn is freed with its last. */
void xs_conn_handle_gone(xs_conn *c);

/* Starts the deadline of kind `kind` (replacing any other) `ms` from now. */
void xs_conn_timer_start(xs_conn *c, xs_conn_timer kind, uint64_t ms);

/* Closes both legs' handles at once (the stop timer, the linger timer, no memory). */
void xs_conn_cut(xs_conn *c);

#endif
