/* The proxy: a libuv loop with listeners, and one connection pair (two legs) per session.
 *
 * This layer owns every socket and timer. It moves bytes between the sockets, the TLS engines and
 * the session state machine (session.h), writes with backpressure, and closes politely. */
#ifndef XS_PROXY_PROXY_H
#define XS_PROXY_PROXY_H

#include <stddef.h>

#include "filters/filter.h"
#include "inspect/error.h"
#include "inspect/observer.h"
#include "inspect/parser.h"
#include "inspect/print.h"
#include "proxy/session.h"

/* Defaults, stated in README. */
#define XS_PROXY_DEFAULT_LISTEN "127.0.0.1:5222"
#define XS_PROXY_HIGH_WATER (1u << 20)  /* queued bytes on a leg that stop reading the other */
#define XS_PROXY_LOW_WATER (256u << 10) /* ... and resume it */
#define XS_PROXY_DEFAULT_HANDSHAKE_TIMEOUT 30 /* seconds to secure both legs */
#define XS_PROXY_DEFAULT_CLOSE_TIMEOUT 10     /* seconds for the other side to close its stream */
#define XS_PROXY_LINGER_MS 2000               /* reading after our FIN before closing */
#define XS_PROXY_IDLE_MS 250                  /* a leg quiet this long trims its parser */
#define XS_PROXY_TICK_MS 1000                 /* XS_OBS_TICK to the analysers */
#define XS_PROXY_CONSOLE_DRAIN_MS 5000        /* at exit, for a slow standard output */
#define XS_PROXY_MAX_OBSERVERS 8              /* console, log and the command's */
#define XS_PROXY_MAX_ALLOW_DOMAINS 32         /* --allow-domain patterns */

typedef struct xs_proxy_config {
    const char *listen;          /* "ADDR:PORT" for plain TCP (STARTTLS); NULL: none */
    const char *listen_tls;      /* "ADDR:PORT" for direct TLS (XEP-0368); NULL: none */
    const char *upstream;        /* "HOST:PORT" of the server (STARTTLS or plain), a DOMAIN
                                    (found by its SRV records: proxy/resolve.h) or "auto" (the
                                    domain each client asks for); NULL: only listeners whose
                                    clients name their destination (--listen-socks) */
    const char *upstream_direct; /* "HOST:PORT" for direct TLS to the server; NULL: upstream */
    xs_tls_mode client_tls;      /* of the --listen socket: starttls, direct or none */
    xs_tls_mode upstream_tls;    /* mirror, starttls, direct or none */
    const char *ca_dir;          /* NULL: the default */
    const char *cert_file, *key_file;
    const char *upstream_ca;
    int upstream_insecure;
    const char *server_name; /* the name the server certificate must have; NULL: the domain */
    const char *write_path;  /* --write JSON Lines */
    int log_stop;            /* --on-log-error stop: a session whose log fails ends */
    const char *keylog_path; /* --keylog (SSLKEYLOGFILE is honoured too) */
    const char *rules_path;  /* --rules FILE; NULL: none */
    xs_print_options console;
    /* --filter and --write-filter (filters/filter.h): what the console shows and what the log
     * keeps (the log also keeps every stream header, so that it can be read back); NULL: all.
     * They stay the caller's and must outlive the run. */
    xs_filter *console_filter;
    xs_filter *write_filter;
    /* Observers of the command's own (analysers, pcap, ...), told after the console and the log
     * (xs_session_cfg.observers); they stay the caller's. When one of them annotates, the
     * sessions are also told XS_OBS_TICK once a second. */
    const xs_observer *observers;
    size_t n_observers;
    unsigned rewrites;
    xs_parser_limits limits;
    unsigned handshake_timeout; /* seconds */
    unsigned close_timeout;     /* seconds */
    unsigned max_sessions;      /* 0: no limit */
    /* Reaching servers (issue 15): the DNS server to ask, "ADDR:PORT" (NULL: the system's), and
     * the --allow-domain patterns an "auto" upstream may connect to (none: any, loopback only). */
    const char *dns;
    const char *listen_socks;            /* --listen-socks ADDR:PORT; NULL: none */
    const char *listen_transparent;      /* --listen-transparent ADDR:PORT; NULL: none */
    const char *socks_user, *socks_pass; /* --socks-auth USER:PASS; NULL: no authentication */
    int proxy_protocol; /* --proxy-protocol: connections to --listen/--listen-tls start with a
                           PROXY protocol v1 or v2 header (proxy/proxyproto.h) */
    const char *const *allow_domains;
    size_t n_allow_domains;
    /* The web inspector (--web ADDR:PORT; proxy/web.h), on the proxy's loop; NULL: none. */
    const char *web;
    size_t web_history; /* --web-history bytes; 0: the default */
} xs_proxy_config;

/* Runs the proxy until SIGINT or SIGTERM. Returns 0 after a clean stop, XS_EINVAL when the
 * configuration is refused (an address that cannot be read, a refused CA directory or file, rules
 * with errors) or another negative code on a runtime failure (a listener cannot bind, a file
 * cannot be opened or finished). The cause is in *diag, for the caller to say; it is empty when
 * there is nothing to add or it was said already (each error of a rules file, on stderr). */
int xs_proxy_run(const xs_proxy_config *cfg, xs_diag *diag);

#endif
