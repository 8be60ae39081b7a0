/* The proxy object shared by the files of the proxy's loop (internal to proxy/): proxy.c (set-up,
 * signals, reload, the run), listener.c (listen sockets, accepting), conn.c (a session and its
 * legs), leg.c (one leg) and trim.c (giving memory back). */
#ifndef XS_PROXY_PROXY_IMPL_H
#define XS_PROXY_PROXY_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "inspect/error.h"
#include "proxy/ca.h"
#include "proxy/conn.h"
#include "proxy/leg.h"
#include "proxy/proxy.h"
#include "proxy/tls.h"
#include "proxy/web.h"

/* What a listener's connections start with. */
typedef enum xs_listener_kind {
    XS_LST_XMPP,        /* XMPP (STARTTLS, plain or direct TLS), maybe after a PROXY header */
    XS_LST_SOCKS,       /* a SOCKS5 dialogue naming the destination (socks_conn.c) */
    XS_LST_TRANSPARENT, /* redirected by the kernel: the destination is SO_ORIGINAL_DST */
} xs_listener_kind;

#define XS_PROXY_LISTENERS 4 /* --listen, --listen-tls, --listen-socks, --listen-transparent */

typedef struct xs_listener {
    uv_tcp_t tcp; /* tcp.data is the listener */
    struct xs_proxy *p;
    xs_listener_kind kind;
    xs_tls_mode client_mode;
    xs_session_cfg scfg; /* what every session of this listener is made with */
    /* The same with a direct TLS client leg, for the listeners whose client's first byte
     * decides (SOCKS5, transparent); scfg is then the STARTTLS one. */
    xs_session_cfg scfg_tls;
    bool open;
    bool proxy_protocol; /* every connection starts with a PROXY protocol header */
    char addr[64];
} xs_listener;

typedef struct xs_proxy {
    const xs_proxy_config *cfg;
    uv_loop_t *loop;
    xs_listener lst[XS_PROXY_LISTENERS];
    uv_signal_t sigint, sigterm;
    uv_timer_t stop_timer;
    uv_timer_t idle_timer; /* when the first leg of a quiet list is due */
    uint64_t idle_due;     /* uv_now() it fires at, while active */
    /* Per kind of trim (XS_TRIM_BUFFERS, XS_TRIM_PARSER), the legs that carried something and
     * were not trimmed since, in the order they fall due: trimming never walks every session. */
    struct {
        xs_leg *head, *tail;
    } quiet[2];
    unsigned heap_given;      /* trims that gave memory back since the last malloc_trim() */
    uint64_t heap_trimmed_at; /* uv_now() of the last malloc_trim() */
    uv_prepare_t flush;       /* before the loop waits: the buffered log goes out */
    bool log_failed;
    bool stopping;
    xs_ca *ca;
    xs_tls_ctx *server_ctx, *client_ctx;
    xs_printer *console, *log;
    struct xs_console *stdout_q;       /* the console printer's writer thread (console.h) */
    struct xs_filter_obs *filtered[2]; /* --filter and --write-filter around console and log */
    /* The sessions' observers: the console, the --write log, then the command's
     * (xs_session_cfg.observers). */
    xs_observer observers[XS_PROXY_MAX_OBSERVERS];
    size_t n_observers;
    uv_timer_t tick_timer; /* XS_OBS_TICK, when an observer annotates */
    bool ticking;
    FILE *log_file, *keylog;
    xs_conn *conns;
    unsigned n_conns;
    unsigned next_id;
    char rbuf[XS_LEG_READ_BUF]; /* every read lands here; processed before the next read */
    char pbuf[XS_LEG_READ_BUF]; /* plaintext out of TLS */
    char up_host[256], up_port[16], upd_host[256], upd_port[16];
    /* How the server is found: the given HOST:PORT, a domain's SRV records, or the domain each
     * client asks for (proxy/resolve.h). The resolver exists for the last two. */
    enum { XS_UP_HOSTPORT, XS_UP_DOMAIN, XS_UP_AUTO } up_kind;
    struct xs_resolver *resolver;
    /* The built-in rewrites and --rules, swapped on SIGHUP; sessions read it at every stanza */
    xs_rules *rules;
    unsigned fd_sessions; /* sessions the open-files limit allows (two descriptors each) */
    unsigned long nofile; /* that limit */
    uv_signal_t sighup;
    struct xs_web *web; /* --web, or NULL */
    xs_web_control web_ctl;
} xs_proxy;

/* Messages about the proxy itself (not a session) go to stderr, so stdout stays the traffic:
 * "xmppscope: " and the text, escaped for a terminal. */
void xs_proxy_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Splits "HOST:PORT" or "[V6]:PORT". Returns 0 or XS_EINVAL. */
int xs_proxy_split_hostport(const char *s, char *host, size_t hcap, char *port, size_t pcap);

/* A conn left the proxy's list: the last one gone gives memory back, and a stopping proxy closes
 * its own handles. */
void xs_proxy_conn_gone(xs_proxy *p);

/* Opens a listener on `spec` ("ADDR:PORT"). Returns 0, XS_EINVAL (the address cannot be read:
 * configuration) or a libuv code (cannot listen), with the cause in *diag. */
int xs_listener_open(xs_proxy *p, xs_listener *ls, const char *spec, xs_listener_kind kind,
                     xs_tls_mode mode, xs_diag *diag);

/* Closes the listener's socket, if open. */
void xs_listener_close(xs_listener *ls);

/* Giving memory back (trim.c): the two kinds of trim, each with its list of legs. */
enum { XS_TRIM_BUFFERS, XS_TRIM_PARSER };

/* The leg carried something: a read (`read`) or a write. Only reads feed its parser. */
void xs_trim_touch(xs_leg *l, bool read);

/* Takes the leg off the trim lists (its conn is being freed). */
void xs_trim_forget(xs_proxy *p, xs_leg *l);

/* Starts the proxy's idle timer (stopped with the proxy's other handles). */
void xs_trim_init(xs_proxy *p);

#endif
