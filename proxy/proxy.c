/* The proxy object: set-up, the sessions' list, signals, rule reloads and the run. See proxy.h.
 *
 * The loop's other parts have their own files: listener.c (listen sockets, accepting), conn.c (a
 * session and its two legs), leg.c (one leg: socket, TLS engine, output queue, close sequence)
 * and trim.c (giving memory back). */
#include "proxy/proxy.h"

#include "filters/features.h"
#include "filters/filter_obs.h"
#include "inspect/error.h"
#include "proxy/ca.h"
#include "proxy/conn.h"
#include "proxy/console.h"
#include "proxy/file.h"
#include "proxy/proxy_impl.h"
#include "proxy/resolve.h"
#include "proxy/tls.h"
#include "proxy/web_ctl.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

/* ---- small helpers -------------------------------------------------------------------------- */

void xs_proxy_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "xmppscope: ");
    /* Addresses, names and messages may come from a peer or a file: escaped. */
    xs_term_vprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

#define say xs_proxy_say

int xs_proxy_split_hostport(const char *s, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':')
            return XS_EINVAL;
        if ((size_t)(end - s - 1) >= hcap)
            return XS_EINVAL;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = 0;
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= hcap || colon == s)
            return XS_EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
    }
    char *end;
    long v = strtol(colon + 1, &end, 10);
    if (*end != 0 || v < 0 || v > 65535 || colon[1] == 0)
        return XS_EINVAL;
    snprintf(port, pcap, "%ld", v);
    return 0;
}

static void close_signals(xs_proxy *p)
{
    uv_close((uv_handle_t *)&p->sigint, NULL);
    uv_close((uv_handle_t *)&p->sigterm, NULL);
    uv_close((uv_handle_t *)&p->stop_timer, NULL);
    uv_close((uv_handle_t *)&p->idle_timer, NULL);
    uv_close((uv_handle_t *)&p->flush, NULL);
    if (p->ticking)
        uv_close((uv_handle_t *)&p->tick_timer, NULL);
    if (p->cfg->rules_path != NULL)
        uv_close((uv_handle_t *)&p->sighup, NULL);
    xs_resolver_free(p->resolver); /* no session is left to use it */
    p->resolver = NULL;
    xs_web_close(p->web);
}

void xs_proxy_conn_gone(xs_proxy *p)
{
    /* The last session gone: what the sessions used goes back to the system, so that an idle
     * proxy is as small as it started (glibc keeps freed pages otherwise). */
    if (p->n_conns == 0)
        malloc_trim(0);
    if (p->stopping && p->n_conns == 0)
        close_signals(p);
}

/* ---- signals ----------------------------------------------------------------------------------
 */

/* Once per loop iteration, before it waits: what the sessions logged during it goes out in one
 * write. A failure is said once (forwarding goes on, as for a log write error in a session). */
static void on_prepare(uv_prepare_t *h)
{
    xs_proxy *p = h->data;
    if (p->log == NULL)
        return;
    int rc = xs_printer_flush(p->log);
    if (rc < 0 && !p->log_failed) {
        p->log_failed = true;
        char text[512];
        snprintf(text, sizeof(text),
                 "cannot write the --write log %s (%s): sessions go on, what they do is lost "
                 "from the log (said once)",
                 p->cfg->write_path, xs_strerror(rc));
        if (p->console != NULL)
            (void)xs_printer_note(p->console, NULL, "error", text);
        else
            say("%s", text);
    }
}

static void on_stop_timer(uv_timer_t *t)
{
    xs_proxy *p = t->data;
    /* Sessions that did not close in time are cut. */
    for (xs_conn *c = p->conns; c != NULL; c = c->next)
        xs_conn_cut(c);
}

static void on_signal(uv_signal_t *h, int signum)
{
    xs_proxy *p = h->data;
    if (p->stopping) {
        say("second signal: exiting at once");
        exit(1);
    }
    p->stopping = true;
    say("%s: closing %u session%s, then exiting", signum == SIGINT ? "SIGINT" : "SIGTERM",
        p->n_conns, p->n_conns == 1 ? "" : "s");
    for (int i = 0; i < XS_PROXY_LISTENERS; i++)
        xs_listener_close(&p->lst[i]);
    if (p->n_conns == 0) {
        close_signals(p);
        return;
    }
    uv_timer_start(&p->stop_timer, on_stop_timer, 5000, 0);
    xs_conn *next;
    for (xs_conn *c = p->conns; c != NULL; c = next) {
        next = c->next;
        if (c->s == NULL) { /* still reading its PROXY protocol header */
            xs_conn_abort(c);
            continue;
        }
        xs_session_shutdown(c->s);
        xs_conn_settle(c);
    }
}

/* ---- rules: loading and SIGHUP ---- */

/* The built-in rewrites the sessions may use. */
static unsigned builtin_bits(const xs_proxy *p)
{
    return p->cfg->rewrites | XS_REWRITE_STARTTLS;
}

/* Loads the built-in rewrites and --rules after them. On failure every error is reported and
 * *out is left alone. */
static int load_rules(xs_proxy *p, xs_rules **out)
{
    xs_rule_diag diag = {0};
    xs_rules *r = NULL;
    if (p->cfg->rules_path == NULL) {
        int rc = xs_rules_builtin(builtin_bits(p), &r);
        if (rc < 0) {
            say("cannot compile the built-in rewrites: %s", xs_strerror(rc));
            return rc;
        }
        *out = r;
        return 0;
    }
    int rc = xs_rules_load(p->cfg->rules_path, builtin_bits(p), &r, &diag);
    size_t reported = diag.n;
    for (size_t i = 0; i < diag.n; i++)
        say("%s", diag.errors[i].message);
    if (diag.omitted > 0)
        say("%s: %zu more errors not shown", p->cfg->rules_path, diag.omitted);
    xs_rule_diag_clear(&diag);
    if (rc < 0) {
        if (reported == 0)
            say("cannot load the rules %s: %s", p->cfg->rules_path, xs_strerror(rc));
        return rc;
    }
    *out = r;
    return 0;
}

static void on_sighup(uv_signal_t *h, int signum)
{
    xs_proxy *p = h->data;
    xs_rules *r = NULL;
    if (load_rules(p, &r) < 0) {
        say("SIGHUP: %s has errors; keeping the %zu rules in use", p->cfg->rules_path,
            p->rules ? xs_rules_count_file(p->rules) : (size_t)0);
        return;
    }
    /* Sessions read the set at every stanza; results own their data, so the old set can go. */
    xs_rules_unref(p->rules);
    p->rules = r;
    say("SIGHUP: reloaded %s: %zu rules, in effect for every session from its next stanza",
        p->cfg->rules_path, xs_rules_count_file(r));
}

static void print_rule_hits(xs_proxy *p)
{
    if (p->rules == NULL || p->cfg->rules_path == NULL)
        return;
    char builtin[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < xs_rules_count(p->rules); i++) {
        xs_rule_info info;
        if (xs_rules_info(p->rules, i, &info) == 0 && info.builtin != 0 && used < sizeof(builtin))
            used += (size_t)snprintf(builtin + used, sizeof(builtin) - used, "%s%s %lu",
                                     used ? ", " : "", info.name, info.hits);
    }
    say("built-in rewrite hits: %s", builtin);
    say("rule hits:");
    for (size_t i = 0; i < xs_rules_count(p->rules); i++) {
        xs_rule_info info;
        if (xs_rules_info(p->rules, i, &info) == 0 && info.builtin == 0)
            xs_term_printf(stderr, "  %8lu  %s\n", info.hits, info.name);
    }
}

/* ---- set-up -----------------------------------------------------------------------------------
 *
 * Each step returns 0 or a negative code with the cause in *diag: XS_EINVAL for what the user
 * must change (an address, a refused file or directory, rules with errors), any other code for a
 * runtime failure. xs_proxy_run() hands both back; the proxy command turns them into its exit
 * status (2 and 1). */

static void keylog_line(void *user, const char *line)
{
    FILE *f = user;
    fprintf(f, "%s\n", line);
    fflush(f);
}

/* Opens a file that will hold secrets (the log, the key log) to append to it: never through a
 * link, never a FIFO, only a file of ours that others cannot write (proxy/file.h). `what` names
 * it as the user gave it. Returns 0 with *out, XS_EINVAL for a refused file or XS_EIO for one
 * that cannot be opened. */
static int open_private(const char *path, const char *what, FILE **out, xs_diag *diag)
{
    int fd, others_read;
    int rc = xs_file_open_append(path, what, &fd, &others_read, diag);
    if (rc != 0)
        return rc == XS_EINVAL ? XS_EINVAL : XS_EIO;
    if (others_read)
        say("warning: %s %s is readable by others; it holds secrets: chmod 600 %s", what, path,
            path);
    *out = fdopen(fd, "a");
    if (*out == NULL) {
        rc = xs_diag_set(diag, XS_EIO, "cannot open %s %s: %s", what, path, strerror(errno));
        close(fd);
    }
    return rc;
}

/* --upstream DOMAIN (no port) or auto: the server is found as a client finds it, with a resolver
 * on the loop (proxy/resolve.h). Returns 1 when it is one of those, 0 for HOST:PORT, or
 * XS_EINVAL. */
static int parse_reach(xs_proxy *p, xs_diag *diag)
{
    const xs_proxy_config *cfg = p->cfg;
    const char *up = cfg->upstream;
    if (strcmp(up, "auto") == 0)
        p->up_kind = XS_UP_AUTO;
    else if (strchr(up, ':') == NULL && up[0] != '[')
        p->up_kind = XS_UP_DOMAIN;
    else
        return 0;
    if (p->up_kind == XS_UP_DOMAIN && !xs_dns_name_ok(up))
        return xs_diag_set(diag, XS_EINVAL,
                           "cannot read --upstream '%s': expected HOST:PORT, a domain (its SRV "
                           "records are looked up) or auto",
                           up);
    if (cfg->upstream_direct != NULL)
        return xs_diag_set(diag, XS_EINVAL,
                           "--upstream-direct goes with --upstream HOST:PORT: a domain's SRV "
                           "records (_xmpps-client._tcp) give its direct TLS servers");
    if (p->up_kind == XS_UP_DOMAIN) {
        snprintf(p->up_host, sizeof(p->up_host), "%s", up);
        snprintf(p->upd_host, sizeof(p->upd_host), "%s", up);
    }
    int rc = xs_resolver_new(p->loop, cfg->dns, &p->resolver, diag);
    return rc < 0 ? rc : 1;
}

static int parse_upstreams(xs_proxy *p, xs_diag *diag)
{
    const xs_proxy_config *cfg = p->cfg;
    if (cfg->upstream == NULL) /* only listeners whose clients bring their destination */
        return xs_resolver_new(p->loop, cfg->dns, &p->resolver, diag);
    int reach = parse_reach(p, diag);
    if (reach != 0)
        return reach < 0 ? reach : 0;
    /* The SOCKS5 clients name their destinations: it needs a resolver. */
    bool dials = cfg->listen_socks != NULL || cfg->listen_transparent != NULL;
    int rc = dials ? xs_resolver_new(p->loop, cfg->dns, &p->resolver, diag) : 0;
    if (rc < 0)
        return rc;
    if (cfg->n_allow_domains > 0 && cfg->listen_socks == NULL)
        return xs_diag_set(diag, XS_EINVAL,
                           "--allow-domain goes with --upstream auto or --listen-socks");
    if (cfg->dns != NULL && cfg->listen_socks == NULL)
        say("warning: --dns is not used: --upstream %s names its server", cfg->upstream);
    if (xs_proxy_split_hostport(cfg->upstream, p->up_host, sizeof(p->up_host), p->up_port,
                                sizeof(p->up_port)) < 0)
        return xs_diag_set(diag, XS_EINVAL, "cannot read --upstream '%s': expected HOST:PORT",
                           cfg->upstream);
    const char *ud = cfg->upstream_direct ? cfg->upstream_direct : cfg->upstream;
    if (xs_proxy_split_hostport(ud, p->upd_host, sizeof(p->upd_host), p->upd_port,
                                sizeof(p->upd_port)) < 0)
        return xs_diag_set(diag, XS_EINVAL,
                           "cannot read --upstream-direct '%s': expected HOST:PORT", ud);
    return 0;
}

/* Each session needs two descriptors: raise the soft open-files limit to the hard one and refuse
 * sessions beyond what it allows, with a log line, rather than fail at random. */
static void raise_nofile(xs_proxy *p)
{
    struct rlimit rl;
    p->fd_sessions = UINT_MAX;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY) {
        p->nofile = (unsigned long)rl.rlim_cur;
        p->fd_sessions = rl.rlim_cur > 48 ? (unsigned)((rl.rlim_cur - 32) / 2) : 8;
    }
}

/* The CA that forges the client leg's certificates (unless --cert gives a fixed one). */
static int setup_ca(xs_proxy *p, xs_diag *diag)
{
    char dir[1024];
    const char *d = p->cfg->ca_dir;
    if (d == NULL) {
        /* A runtime failure, as it always was: the environment, not an option, is missing. */
        if (xs_ca_default_dir(dir, sizeof(dir), NULL) < 0)
            return xs_diag_set(
                diag, XS_EIO, "no CA directory: set HOME or XDG_CONFIG_HOME, or pass --ca-dir DIR");
        d = dir;
    }
    int rc = xs_ca_open(d, 1, &p->ca, diag);
    if (rc < 0) /* XS_EINVAL: a refused directory or file, a configuration error */
        return rc;
    char fp[XS_CA_FINGERPRINT_LEN];
    xs_ca_fingerprint(p->ca, fp, sizeof(fp));
    say("%s CA %s (SHA-256 %s): clients must trust it (see 'xmppscope ca show')",
        xs_ca_created(p->ca) ? "created the" : "using the", xs_ca_cert_path(p->ca), fp);
    return 0;
}

static int setup_tls(xs_proxy *p, xs_diag *diag)
{
    const xs_proxy_config *cfg = p->cfg;
    xs_tls_server_opts so = {.cert_file = cfg->cert_file, .key_file = cfg->key_file};
    int rc;
    if (cfg->cert_file == NULL) {
        so.key_file = NULL;
        if ((rc = setup_ca(p, diag)) < 0)
            return rc;
        so.ca = p->ca;
    }
    /* A context that cannot be made is a runtime failure, whatever its cause. */
    xs_diag why = {""};
    if (xs_tls_server_ctx_new(&so, &p->server_ctx, &why) < 0)
        return xs_diag_set(diag, XS_ETLS, "TLS for clients: %s", why.text);
    xs_tls_client_opts co = {.ca_file = cfg->upstream_ca, .insecure = cfg->upstream_insecure};
    if (xs_tls_client_ctx_new(&co, &p->client_ctx, &why) < 0)
        return xs_diag_set(diag, XS_ETLS, "TLS for the server: %s", why.text);
    if (cfg->upstream_insecure)
        say("WARNING: --upstream-insecure: the server's certificate is NOT verified; anyone on "
            "the path to it can read and change this traffic");
    const char *kl = cfg->keylog_path ? cfg->keylog_path : getenv("SSLKEYLOGFILE");
    if (kl == NULL || kl[0] == 0)
        return 0;
    rc = open_private(kl, cfg->keylog_path ? "--keylog" : "SSLKEYLOGFILE", &p->keylog, diag);
    if (rc < 0)
        return rc;
    xs_tls_ctx_set_keylog(p->server_ctx, keylog_line, p->keylog);
    xs_tls_ctx_set_keylog(p->client_ctx, keylog_line, p->keylog);
    say("writing TLS secrets of both legs to %s (NSS key log format, for Wireshark)", kl);
    return 0;
}

/* Wraps the observer just added (the console: 0, the log: 1) with a filter. */
static int filtered(xs_proxy *p, int which, xs_filter *filter, unsigned flags)
{
    xs_observer *o = &p->observers[p->n_observers - 1];
    int rc = xs_filter_obs_new(o, filter, flags, &p->filtered[which]);
    if (rc == 0)
        *o = xs_filter_observer(p->filtered[which]);
    return rc;
}

/* The web inspector (--web), the last observer: it serves on the proxy's loop. */
static int setup_web(xs_proxy *p, xs_diag *diag)
{
    if (p->cfg->web == NULL)
        return 0;
    if (p->n_observers == XS_PROXY_MAX_OBSERVERS)
        return XS_EINVAL;
    p->web_ctl = xs_web_ctl_of(p);
    xs_web_opts wo = {.addr = p->cfg->web,
                      .history = p->cfg->web_history,
                      .title = "proxy",
                      .control = &p->web_ctl};
    int rc = xs_web_new(p->loop, &wo, &p->web, diag);
    if (rc < 0)
        return rc;
    p->observers[p->n_observers++] = xs_web_observer(p->web);
    return 0;
}

/* The rules, the --write log and the console printer. */
static int setup_outputs(xs_proxy *p, xs_diag *diag)
{
    const xs_proxy_config *cfg = p->cfg;
    if (load_rules(p, &p->rules) < 0)
        return XS_EINVAL; /* each error was said, with its file and line */
    if (cfg->rules_path != NULL)
        say("rules: %zu from %s after the built-in rewrites (SIGHUP reloads them)",
            xs_rules_count_file(p->rules), cfg->rules_path);
    if (cfg->write_path != NULL) {
        int rc = open_private(cfg->write_path, "--write", &p->log_file, diag);
        if (rc < 0)
            return rc;
        /* Buffered: lines go out once per loop iteration (on_prepare), unless every line
         * must be on disk before what it logs is forwarded (--on-log-error stop). */
        xs_print_options lo = {.format = XS_FORMAT_JSON,
                               .show_secrets = cfg->console.show_secrets,
                               .buffered = !cfg->log_stop};
        if (xs_printer_new(p->log_file, &lo, &p->log) < 0)
            return XS_ENOMEM;
    }
    if (cfg->console.format != XS_FORMAT_NONE) {
        /* A terminal or a pipe may read slowly or not at all: its lines go through a writer
         * thread, so that it never stops the traffic (console.h). A regular file takes them at
         * once, in order with the events, as it always does. */
        xs_print_options co = cfg->console;
        struct stat st;
        bool file = fstat(STDOUT_FILENO, &st) == 0 && S_ISREG(st.st_mode);
        if (!file) {
            if (xs_console_new(STDOUT_FILENO, 0, &p->stdout_q) < 0)
                return XS_ENOMEM;
            co.sink = xs_console_write;
            co.sink_ctx = p->stdout_q;
        }
        if (xs_printer_new(file ? stdout : NULL, &co, &p->console) < 0)
            return XS_ENOMEM;
    }
    /* The console shows what a person needs (no state changes), and its failures are ignored;
     * the log takes everything, and its failure is said once or ends the session
     * (--on-log-error). */
    if (p->console != NULL)
        p->observers[p->n_observers++] =
            xs_printer_observer(p->console, XS_OBS_BEST_EFFORT, 0, "the console");
    if (p->console != NULL && cfg->console_filter != NULL &&
        filtered(p, 0, cfg->console_filter, 0) < 0)
        return XS_ENOMEM;
    if (p->log != NULL) {
        p->observers[p->n_observers++] = xs_printer_observer(
            p->log, cfg->log_stop ? XS_OBS_REQUIRED : XS_OBS_WARN, 1, "the --write log");
        /* The log keeps every stream header: it is read back stream by stream. */
        if (cfg->write_filter != NULL &&
            filtered(p, 1, cfg->write_filter, XS_FILTER_OBS_STREAMS) < 0)
            return XS_ENOMEM;
    }
    if (cfg->n_observers > XS_PROXY_MAX_OBSERVERS - p->n_observers)
        return XS_EINVAL;
    for (size_t i = 0; i < cfg->n_observers; i++) {
        p->observers[p->n_observers++] = cfg->observers[i];
        p->ticking = p->ticking || cfg->observers[i].annotate != NULL;
    }
    return setup_web(p, diag);
}

static int open_listeners(xs_proxy *p, xs_diag *diag)
{
    int rc = 0;
    if (p->cfg->listen != NULL)
        rc = xs_listener_open(p, &p->lst[0], p->cfg->listen, XS_LST_XMPP, p->cfg->client_tls, diag);
    if (rc == 0 && p->cfg->listen_tls != NULL)
        rc = xs_listener_open(p, &p->lst[1], p->cfg->listen_tls, XS_LST_XMPP, XS_TLSMODE_DIRECT,
                              diag);
    if (rc == 0 && p->cfg->listen_socks != NULL)
        rc = xs_listener_open(p, &p->lst[2], p->cfg->listen_socks, XS_LST_SOCKS,
                              XS_TLSMODE_STARTTLS, diag);
    if (rc == 0 && p->cfg->listen_transparent != NULL)
        rc = xs_listener_open(p, &p->lst[3], p->cfg->listen_transparent, XS_LST_TRANSPARENT,
                              XS_TLSMODE_STARTTLS, diag);
    /* A proxy that goes anywhere a client asks serves only this machine unless told where. */
    for (int i = 0; rc == 0 && i < XS_PROXY_LISTENERS; i++) {
        const xs_listener *ls = &p->lst[i];
        bool anywhere = ls->kind == XS_LST_SOCKS || p->up_kind == XS_UP_AUTO;
        if (anywhere && p->cfg->n_allow_domains == 0 && ls->open &&
            strncmp(ls->addr, "127.", 4) != 0 && strncmp(ls->addr, "[::1]", 5) != 0)
            rc = xs_diag_set(diag, XS_EINVAL,
                             "%s without --allow-domain listens on loopback only (it would "
                             "connect anywhere for anyone): listen on 127.0.0.1 or [::1], or "
                             "give --allow-domain PATTERN",
                             ls->kind == XS_LST_SOCKS ? "--listen-socks" : "--upstream auto");
    }
    /* The web inspector's intercept asks about each stanza of the sessions. */
    for (int i = 0; i < XS_PROXY_LISTENERS && p->web != NULL; i++) {
        p->lst[i].scfg.hold = xs_web_hold;
        p->lst[i].scfg.hold_ctx = p->web;
    }
    return rc;
}

/* Once a second, when an observer annotates: each live session is told time passed (an IQ may
 * have timed out). */
static void on_tick(uv_timer_t *t)
{
    xs_proxy *p = t->data;
    for (xs_conn *c = p->conns; c != NULL; c = c->next)
        if (c->s != NULL)
            xs_session_tick(c->s);
}

/* The signals, the stop timer, the log's flush, the trim timer and the tick. */
static void start_handles(xs_proxy *p)
{
    uv_signal_init(p->loop, &p->sigint);
    uv_signal_init(p->loop, &p->sigterm);
    p->sigint.data = p->sigterm.data = p;
    uv_signal_start(&p->sigint, on_signal, SIGINT);
    uv_signal_start(&p->sigterm, on_signal, SIGTERM);
    uv_timer_init(p->loop, &p->stop_timer);
    p->stop_timer.data = p;
    uv_prepare_init(p->loop, &p->flush);
    p->flush.data = p;
    uv_prepare_start(&p->flush, on_prepare);
    uv_unref((uv_handle_t *)&p->flush);
    xs_trim_init(p);
    if (p->ticking) {
        uv_timer_init(p->loop, &p->tick_timer);
        p->tick_timer.data = p;
        uv_timer_start(&p->tick_timer, on_tick, XS_PROXY_TICK_MS, XS_PROXY_TICK_MS);
        uv_unref((uv_handle_t *)&p->tick_timer);
    }
    if (p->cfg->rules_path != NULL) {
        uv_signal_init(p->loop, &p->sighup);
        p->sighup.data = p;
        uv_signal_start(&p->sighup, on_sighup, SIGHUP);
    }
    signal(SIGPIPE, SIG_IGN);
}

static void announce(const xs_proxy *p)
{
    const xs_proxy_config *cfg = p->cfg;
    if (p->lst[2].open)
        say("SOCKS5 proxy on %s (%s; the destination comes from each request, the client's "
            "first byte decides direct TLS or STARTTLS; server TLS: %s)",
            p->lst[2].addr,
            cfg->socks_user ? "username/password required (--socks-auth)" : "no authentication",
            xs_tls_mode_name(cfg->upstream_tls));
    if (p->lst[3].open)
        say("transparent listener on %s (connections redirected to it go to the destination "
            "they were meant for; the client's first byte decides direct TLS or STARTTLS; "
            "server TLS: %s)",
            p->lst[3].addr, xs_tls_mode_name(cfg->upstream_tls));
    if (cfg->upstream == NULL)
        return;
    if (p->up_kind != XS_UP_HOSTPORT) {
        char allowed[512] = "";
        size_t used = 0;
        for (size_t i = 0; i < cfg->n_allow_domains && used < sizeof(allowed); i++)
            used += (size_t)snprintf(allowed + used, sizeof(allowed) - used, "%s%s", i ? ", " : "",
                                     cfg->allow_domains[i]);
        for (int i = 0; i < 2; i++)
            if (p->lst[i].open)
                say("listening on %s (client TLS: %s), upstream %s (server TLS: %s; found by "
                    "SRV records, DNS %s)",
                    p->lst[i].addr, xs_tls_mode_name(p->lst[i].client_mode),
                    p->up_kind == XS_UP_AUTO ? "auto: the domain each client asks for"
                                             : cfg->upstream,
                    xs_tls_mode_name(cfg->upstream_tls), cfg->dns ? cfg->dns : "of the system");
        if (p->up_kind == XS_UP_AUTO)
            say("auto: %s%s",
                used ? "connecting only to "
                     : "any domain; listening on loopback "
                       "only (--allow-domain to limit it)",
                allowed);
        return;
    }
    const char *ud = cfg->upstream_direct ? cfg->upstream_direct : cfg->upstream;
    for (int i = 0; i < 2; i++)
        if (p->lst[i].open)
            say("listening on %s (client TLS: %s), upstream %s (server TLS: %s)", p->lst[i].addr,
                xs_tls_mode_name(p->lst[i].client_mode),
                p->lst[i].client_mode == XS_TLSMODE_DIRECT || cfg->upstream_tls == XS_TLSMODE_DIRECT
                    ? ud
                    : cfg->upstream,
                xs_tls_mode_name(cfg->upstream_tls));
}

/* Closes and frees everything. A run that went well (rc 0) fails still when the log cannot be
 * finished. */
static int teardown(xs_proxy *p, int rc, xs_diag *diag)
{
    const xs_proxy_config *cfg = p->cfg;
    for (int i = 0; i < XS_PROXY_LISTENERS; i++)
        xs_listener_close(&p->lst[i]);
    xs_resolver_free(p->resolver); /* set-up failed after it was made */
    uv_run(p->loop, UV_RUN_NOWAIT);
    if (p->log != NULL && xs_printer_flush(p->log) < 0 && rc == 0 && !p->log_failed)
        rc = xs_diag_set(diag, XS_EIO, "cannot finish writing %s: %s", cfg->write_path,
                         strerror(errno));
    xs_printer_free(p->console);
    /* What the console still holds goes out, unless standard output is stuck. */
    (void)xs_console_free(p->stdout_q, XS_PROXY_CONSOLE_DRAIN_MS);
    xs_printer_free(p->log);
    for (int i = 0; i < 2; i++)
        xs_filter_obs_free(p->filtered[i]);
    if (p->log_file != NULL && fclose(p->log_file) != 0 && rc == 0 && !p->log_failed)
        rc = xs_diag_set(diag, XS_EIO, "cannot finish writing %s: %s", cfg->write_path,
                         strerror(errno));
    if (p->keylog != NULL)
        fclose(p->keylog);
    xs_rules_unref(p->rules);
    xs_tls_ctx_free(p->server_ctx);
    xs_tls_ctx_free(p->client_ctx);
    xs_ca_free(p->ca);
    xs_web_close(p->web);
    uv_run(p->loop, UV_RUN_DEFAULT); /* the web server closes its handles */
    xs_web_free(p->web);
    uv_loop_close(p->loop);
    fflush(stdout);
    free(p);
    return rc;
}

int xs_proxy_run(const xs_proxy_config *cfg, xs_diag *diag)
{
    xs_diag_set(diag, 0, "%s", "");
    xs_proxy *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return XS_ENOMEM;
    p->cfg = cfg;
    p->loop = uv_default_loop();
    int rc = parse_upstreams(p, diag);
    if (rc == 0) {
        raise_nofile(p);
        rc = setup_tls(p, diag);
    }
    if (rc == 0)
        rc = setup_outputs(p, diag);
    if (rc == 0)
        rc = open_listeners(p, diag);
    if (rc == 0) {
        start_handles(p);
        announce(p);
        fflush(stderr);
        uv_run(p->loop, UV_RUN_DEFAULT);
        print_rule_hits(p);
        say("stopped");
    }
    return teardown(p, rc, diag);
}
