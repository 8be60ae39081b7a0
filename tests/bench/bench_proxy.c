/* Proxy benchmark: xmppscope against the direct path and against sslsplit, in one run.
 *
 * A synthetic XMPP server (bench_server.c, in a child process) and a load generator
 * (bench_client.c, in this process), each one thread on its own libuv loop, with a test CA and
 * server certificate made at start in a temporary directory. Every scenario is run direct
 * (client to server: the physical limit on this machine), through xmppscope (spawned per run
 * with --format none; client certificates forged by the same test CA, --upstream-ca for the
 * server) and, when installed, through sslsplit in autossl mode (ssl mode for direct TLS) with
 * the same CA. Runs are interleaved: each repetition runs every scenario on every target, the
 * target order rotating. Medians and ratios go out as a table and as one JSON object, with the
 * targets' throughput ratios also paired run by run (see paired_ratios).
 *
 *   bulk          one session pushes --bulk-mib MiB of stanzas, echoed back: MB/s, stanzas/s
 *   interactive   one stanza at a time, --rounds round trips: RTT p50/p99/max, and the latency
 *                 a proxy adds (through minus direct)
 *   setup         sessions/s with --parallel in parallel, each doing stream + STARTTLS + one
 *                 stanza + close (setup-tls: the same with direct TLS, XEP-0368)
 *   idle          --idle sessions, each after --idle-stanzas stanzas echoed, held open
 *                 --idle-hold-s seconds: RSS per session of the proxy (direct: of the server);
 *                 idle-tls: the same with direct TLS
 *   bulk-write    bulk through xmppscope --write LOG (JSON Lines to a temporary file)
 *   bulk-rules    bulk through xmppscope --rules FILE (when the proxy has --rules and
 *                 --rules-file is given)
 *   bulk-sink     (opt-in) one-way bulk: the server counts but does not echo
 *
 * Every stanza is checked at both ends: the echo must be the bytes sent, and the server's count
 * of stanzas and bytes must match. Any mismatch, failed handshake or timeout on the direct or
 * xmppscope path makes the exit status 1; sslsplit's failures are reported, not fatal.
 * --smoke makes every scenario tiny (seconds in all) for CI. Speed is never asserted.
 * BENCH_SSLSPLIT_DEBUG=1 in the environment runs sslsplit with -D (its log stays in the
 * temporary directory with --keep-tmp).
 *
 * usage: bench_proxy [--smoke] [--reps N] [options]   (bench_proxy --help)
 */
#include "bench_client.h"
#include "bench_conn.h"
#include "bench_corpus.h"
#include "bench_harness.h"
#include "bench_server.h"
#include "bench_tls.h"
#include "bench_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#define DOMAIN "bench.test"
#define MAX_REPS 50
#define SSLSPLIT_STALL_S 0.5
#define DIRECT_IDLE_MAX 2000u

/* ---- what is measured ------------------------------------------------------------------------
 */

enum target { T_DIRECT, T_XS, T_SSLSPLIT, N_TARGETS };
static const char *const target_names[] = {"direct", "xmppscope", "sslsplit"};

enum scenario {
    S_BULK,
    S_BULK_WRITE,
    S_BULK_RULES,
    S_BULK_SINK,
    S_INTER,
    S_SETUP,
    S_SETUP_TLS,
    S_IDLE,
    S_IDLE_TLS,
    N_SCEN
};
static const char *const scen_names[] = {"bulk",      "bulk-write",  "bulk-rules",
                                         "bulk-sink", "interactive", "setup",
                                         "setup-tls", "idle",        "idle-tls"};

#define N_METRICS 4
/* The metrics of each scenario, by index; NULL ends the list. */
static const char *const metric_names[N_SCEN][N_METRICS] = {
    [S_BULK] = {"MBps", "stanzas_per_s", "proxy_cpu_pct", NULL},
    [S_BULK_WRITE] = {"MBps", "stanzas_per_s", "proxy_cpu_pct", NULL},
    [S_BULK_RULES] = {"MBps", "stanzas_per_s", "proxy_cpu_pct", NULL},
    [S_BULK_SINK] = {"MBps", "stanzas_per_s", "proxy_cpu_pct", NULL},
    [S_INTER] = {"rtt_p50_us", "rtt_p99_us", "rtt_max_us", "round_trips"},
    [S_SETUP] = {"sessions_per_s", "proxy_cpu_ms_per_session", NULL, NULL},
    [S_SETUP_TLS] = {"sessions_per_s", "proxy_cpu_ms_per_session", NULL, NULL},
    [S_IDLE] = {"kib_per_session", "sessions", "opened_per_s", NULL},
    [S_IDLE_TLS] = {"kib_per_session", "sessions", "opened_per_s", NULL},
};

typedef struct cell {
    int tried;  /* the scenario ran on this target */
    int n;      /* successful runs */
    int failed; /* failed runs */
    char err[800];
    char note[200];
    unsigned stalled, stall_base; /* sessions abandoned, of so many set up */
    double v[N_METRICS][MAX_REPS];
    double med[N_METRICS];
} cell;

/* ---- options ---------------------------------------------------------------------------------
 */

typedef struct opts {
    const char *xmppscope;
    const char *sslsplit;
    const char *rules_file;
    const char *json_file;
    const char *profile;
    unsigned reps;
    unsigned bulk_mib;
    unsigned rounds;
    unsigned setup_sessions;
    unsigned parallel;
    unsigned idle;
    unsigned idle_stanzas;
    unsigned idle_reps;
    unsigned idle_parallel;
    double idle_hold_s;
    unsigned window_kib;
    double inter_max_s;
    double timeout_s;
    int smoke;
    int keep_tmp;
    int want_scen[N_SCEN];
    int want_target[N_TARGETS];
} opts;

static void usage(FILE *out)
{
    fprintf(out, "usage: bench_proxy [options]\n"
                 "\n"
                 "Measures xmppscope against the direct path (client to a synthetic server) and\n"
                 "against sslsplit (autossl mode) on 127.0.0.1, and prints a table and one JSON\n"
                 "object. Progress goes to stderr.\n"
                 "\n"
                 "  --xmppscope PATH     the proxy binary (default: $XMPPSCOPE, else\n"
                 "                       ../proxy/xmppscope next to this program)\n"
                 "  --sslsplit PATH|none the peer to compare with (default: sslsplit on PATH)\n"
                 "  --reps N             repetitions of every scenario (default 3)\n"
                 "  --bulk-mib N         MiB pushed by the bulk scenarios (default 256)\n"
                 "  --rounds N           interactive round trips (default 20000)\n"
                 "  --inter-max-s S      stop an interactive run after S seconds (default 10)\n"
                 "  --setup-sessions N   sessions per setup run (default 1000)\n"
                 "  --parallel N         sessions in parallel in setup runs (default 32)\n"
                 "  --idle N             idle sessions held open (default 10000; fewer if the\n"
                 "                       open-files limit does not allow them)\n"
                 "  --idle-stanzas N     stanzas each idle session exchanges (each echoed)\n"
                 "                       before it idles (default 1)\n"
                 "  --idle-hold-s S      how long the idle sessions are held before the RSS\n"
                 "                       is read (default 3)\n"
                 "  --idle-parallel N    idle sessions negotiating at once (default 64)\n"
                 "  --idle-reps N        repetitions of the idle scenarios (default 1: their\n"
                 "                       figure is steady and they are slow)\n"
                 "  --window-kib N       bulk: KiB sent and not yet echoed (default 2048, at\n"
                 "                       least 16: the server echoes whole stanzas only)\n"
                 "  --scenarios LIST     comma-separated, from bulk, bulk-write, bulk-rules,\n"
                 "                       bulk-sink, interactive, setup, setup-tls, idle, idle-tls\n"
                 "                       (default: all but bulk-sink)\n"
                 "  --targets LIST       comma-separated, from direct, xmppscope, sslsplit\n"
                 "  --rules-file FILE    rules for bulk-rules (run when xmppscope has --rules)\n"
                 "  --profile CMD        run CMD (split at spaces; %%p: the proxy's pid, %%s: the\n"
                 "                       scenario) during the first xmppscope run of each bulk\n"
                 "                       scenario, e.g. 'perf record -g -p %%p -o perf-%%s.data';\n"
                 "                       it gets SIGINT when the run ends\n"
                 "  --json FILE          also write the JSON object to FILE\n"
                 "  --timeout S          a run that takes longer fails (default 300)\n"
                 "  --smoke              every scenario tiny, one repetition (for CI)\n"
                 "  --keep-tmp           keep the temporary directory (certificates, logs)\n"
                 "  -h, --help           this help\n"
                 "\n"
                 "Exit status: 0 when every run on the direct and xmppscope paths completed with\n"
                 "matching counts at both ends, 1 otherwise, 2 on a usage error.\n");
}

static int parse_list(const char *arg, const char *const *names, int n, int *want)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", arg);
    for (int i = 0; i < n; i++)
        want[i] = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int i = 0; i < n; i++)
            if (strcmp(t, names[i]) == 0)
                want[i] = found = 1;
        if (!found) {
            fprintf(stderr, "bench_proxy: unknown name '%s'\n", t);
            return -1;
        }
    }
    return 0;
}

/* ---- the run's state -------------------------------------------------------------------------
 */

static opts O;
static char tmpdir[PATH_MAX];
static char ca_file[PATH_MAX + 16];
static pid_t server_pid;
static bn_endpoint server_st, server_dt; /* the synthetic server's two sockets */
static cell cells[N_SCEN][N_TARGETS];
static int xs_has_rules;
static unsigned idle_sessions;
static rlim_t nofile;
static unsigned spawn_seq;

static void endpoint(bn_endpoint *ep, int port, int direct_tls)
{
    memset(ep, 0, sizeof(*ep));
    bn_loopback(&ep->addr, port);
    ep->direct_tls = direct_tls;
}

/* A port that was free a moment ago, for programs that cannot report the one they bound. */
static int free_port(void)
{
    struct sockaddr_in a;
    int fd = bn_listen_loopback(&a);
    if (fd < 0)
        return -1;
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- child processes -------------------------------------------------------------------------
 */

/* Starts argv (in our environment) with its stderr in a file of the temporary directory named
 * after `tag`. */
static int spawn(bn_proc *p, const char *const argv[], const char *tag)
{
    char path[PATH_MAX + 32], err[PATH_MAX + 300];
    snprintf(path, sizeof(path), "%s/%s-%u.err", tmpdir, tag, ++spawn_seq);
    if (bn_proc_spawn(p, argv, NULL, path, err, sizeof(err)) < 0) {
        bn_say("%s", err);
        return -1;
    }
    return 0;
}

/* SIGTERM, a grace period, then SIGKILL, for the process and its children. Returns the exit
 * status, or -1 for a signal. */
static int stop(bn_proc *p)
{
    bn_proc_stop(p, 10000);
    return bn_proc_code(p);
}

/* Waits until something accepts on 127.0.0.1:port. */
static int wait_port(bn_proc *p, int port, char *err, size_t errcap)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int waited = 0; waited < 15000; waited += 20) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return 0;
        if (bn_proc_reap(p, 0)) {
            char t[600];
            bn_file_tail(p->errpath, t, sizeof(t));
            snprintf(err, errcap, "exited at start (status %d): %s",
                     WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1, t);
            return -1;
        }
        usleep(20000);
    }
    snprintf(err, errcap, "nothing listens on port %d after 15 s", port);
    return -1;
}

/* ---- targets ---------------------------------------------------------------------------------
 */

typedef enum variant { V_PLAIN, V_WRITE, V_RULES } variant;

typedef struct instance {
    bn_proc p;
    pid_t pid; /* the process whose memory and CPU are measured */
    bn_endpoint st, dt;
} instance;

static int start_xmppscope(instance *in, variant v, char *err, size_t errcap)
{
    char logpath[PATH_MAX + 32], errpath[PATH_MAX + 32];
    const char *extra[2];
    unsigned n = 0;
    snprintf(logpath, sizeof(logpath), "%s/log.jsonl", tmpdir);
    unlink(logpath);
    if (v == V_WRITE) {
        extra[n++] = "--write";
        extra[n++] = logpath;
    } else if (v == V_RULES) {
        extra[n++] = "--rules";
        extra[n++] = O.rules_file;
    }
    snprintf(errpath, sizeof(errpath), "%s/xmppscope-%u.err", tmpdir, ++spawn_seq);
    const bn_xs_spawn xs = {
        .path = O.xmppscope,
        .st = &server_st.addr,
        .dt = &server_dt.addr,
        .dir = tmpdir,
        .ca_file = ca_file,
        .extra = extra,
        .n_extra = n,
        .errpath = errpath,
        .wait_ms = 15000,
    };
    if (bn_xs_start(&xs, &in->p, &in->st.addr, &in->dt.addr, err, errcap) < 0)
        return -1;
    in->pid = in->p.pid;
    in->st.direct_tls = 0;
    in->dt.direct_tls = 1;
    return 0;
}

/* sslsplit with a static destination: autossl (plain TCP until a ClientHello, then TLS
 * interception: its generic STARTTLS support) in front of the STARTTLS socket, ssl in front of
 * the direct TLS socket. Same CA, and an EC P-256 leaf key as xmppscope uses (-K), rather than
 * its default of a new RSA-2048 key. -u root: nothing to drop privileges for in a benchmark,
 * and the default (nobody) cannot read the keys in the temporary directory. */
static int start_sslsplit(instance *in, char *err, size_t errcap)
{
    char key[PATH_MAX + 16], leaf[PATH_MAX + 16], p1[16], p2[16], s1[16], s2[16];
    int sp = free_port(), dp = free_port();
    snprintf(key, sizeof(key), "%s/ca.key", tmpdir);
    snprintf(leaf, sizeof(leaf), "%s/leaf.key", tmpdir);
    snprintf(p1, sizeof(p1), "%d", sp);
    snprintf(p2, sizeof(p2), "%d", dp);
    snprintf(s1, sizeof(s1), "%d", ntohs(server_st.addr.sin_port));
    snprintf(s2, sizeof(s2), "%d", ntohs(server_dt.addr.sin_port));
    const char *argv[24];
    int n = 0;
    argv[n++] = O.sslsplit;
    argv[n++] = "-k";
    argv[n++] = key;
    argv[n++] = "-c";
    argv[n++] = ca_file;
    argv[n++] = "-K";
    argv[n++] = leaf;
    argv[n++] = "-u";
    argv[n++] = "root";
    if (getenv("BENCH_SSLSPLIT_DEBUG") != NULL)
        argv[n++] = "-D"; /* its debug log goes to the stderr file (see --keep-tmp) */
    const char *spec[] = {"autossl", "127.0.0.1", p1, "127.0.0.1", s1,
                          "ssl",     "127.0.0.1", p2, "127.0.0.1", s2};
    for (size_t i = 0; i < sizeof(spec) / sizeof(spec[0]); i++)
        argv[n++] = spec[i];
    argv[n] = NULL;
    if (sp < 0 || dp < 0 || spawn(&in->p, argv, "sslsplit") < 0) {
        snprintf(err, errcap, "cannot start %s", O.sslsplit);
        return -1;
    }
    if (wait_port(&in->p, sp, err, errcap) < 0 || wait_port(&in->p, dp, err, errcap) < 0) {
        stop(&in->p);
        return -1;
    }
    in->pid = in->p.pid;
    endpoint(&in->st, sp, 0);
    endpoint(&in->dt, dp, 1);
    return 0;
}

/* ---- one run ---------------------------------------------------------------------------------
 */

static const bn_client *client;

static void cell_fail(cell *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void cell_fail(cell *c, const char *fmt, ...)
{
    c->failed++;
    if (c->err[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
}

static int is_bulk(int scen)
{
    return scen == S_BULK || scen == S_BULK_WRITE || scen == S_BULK_RULES || scen == S_BULK_SINK;
}

static bn_proc profiler;

/* Starts the --profile command (split at spaces, %p replaced by the pid), without a shell so
 * that the signal that ends it reaches it. */
static void profile_start(pid_t pid, const char *scen)
{
    char cmd[2048], pidstr[16], words[64][256];
    const char *argv[64];
    int n = 0;
    snprintf(cmd, sizeof(cmd), "%s", O.profile);
    snprintf(pidstr, sizeof(pidstr), "%d", (int)pid);
    for (char *save = NULL, *t = strtok_r(cmd, " ", &save); t && n < 63;
         t = strtok_r(NULL, " ", &save)) {
        /* %p is the pid, %s the scenario's name. */
        size_t o = 0;
        for (const char *c = t; *c && o + 1 < sizeof(words[n]); c++) {
            if (c[0] == '%' && (c[1] == 'p' || c[1] == 's')) {
                o += (size_t)snprintf(words[n] + o, sizeof(words[n]) - o, "%s",
                                      c[1] == 'p' ? pidstr : scen);
                if (o >= sizeof(words[n]))
                    o = sizeof(words[n]) - 1;
                c++;
            } else {
                words[n][o++] = *c;
            }
        }
        words[n][o] = 0;
        argv[n] = words[n];
        n++;
    }
    argv[n] = NULL;
    if (n == 0)
        return;
    if (spawn(&profiler, argv, "profile") == 0) {
        bn_say("profiling pid %d with %s (stderr in %s)", (int)pid, argv[0], profiler.errpath);
        usleep(500000); /* let it attach */
    }
}

static void profile_stop(void)
{
    if (profiler.pid <= 0)
        return;
    kill(profiler.pid, SIGINT);
    if (!bn_proc_reap(&profiler, 30000)) {
        kill(profiler.pid, SIGKILL);
        bn_proc_reap(&profiler, 2000);
    }
    profiler.pid = 0;
}

/* The stanza events in xmppscope's --write log of the last run, or -1 without a log. */
static long long count_log_stanzas(void)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/log.jsonl", tmpdir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    long long n = 0;
    while (getline(&line, &cap, f) > 0)
        if (strstr(line, "\"event\":\"stanza\"") != NULL)
            n++;
    free(line);
    fclose(f);
    unlink(path);
    return n;
}

static void run_one(int scen, int target, unsigned rep)
{
    cell *c = &cells[scen][target];
    instance in;
    char err[800];
    memset(&in, 0, sizeof(in));
    c->tried = 1;

    if (target == T_DIRECT) {
        in.pid = server_pid;
        in.st = server_st;
        in.dt = server_dt;
    } else if (target == T_XS) {
        variant v = scen == S_BULK_WRITE ? V_WRITE : scen == S_BULK_RULES ? V_RULES : V_PLAIN;
        if (start_xmppscope(&in, v, err, sizeof(err)) < 0) {
            cell_fail(c, "%s", err);
            bn_say("rep %u %s %s: FAILED: %s", rep + 1, scen_names[scen], target_names[target],
                   err);
            return;
        }
    } else {
        if (start_sslsplit(&in, err, sizeof(err)) < 0) {
            cell_fail(c, "sslsplit %s", err);
            bn_say("rep %u %s %s: FAILED: sslsplit %s", rep + 1, scen_names[scen],
                   target_names[target], err);
            return;
        }
    }

    bn_result r;
    double cpu0 = target != T_DIRECT ? bn_cpu_tree_seconds(in.pid) : 0;
    int profiling = O.profile && target == T_XS && is_bulk(scen) && rep == 0;
    if (profiling)
        profile_start(in.pid, scen_names[scen]);
    switch (scen) {
    case S_BULK:
    case S_BULK_WRITE:
    case S_BULK_RULES:
    case S_BULK_SINK:
        bn_run_bulk(client, &in.st, (uint64_t)O.bulk_mib << 20, (size_t)O.window_kib << 10,
                    scen == S_BULK_SINK, &r);
        break;
    case S_INTER:
        bn_run_interactive(client, &in.st, O.rounds, O.inter_max_s, &r);
        break;
    case S_SETUP:
        bn_run_setup(client, &in.st, O.setup_sessions, O.parallel, &r);
        break;
    case S_SETUP_TLS:
        bn_run_setup(client, &in.dt, O.setup_sessions, O.parallel, &r);
        break;
    case S_IDLE:
    case S_IDLE_TLS: {
        /* The server's figure is only a reference: fewer sessions save time. sslsplit leaks
         * the two sockets of each stalled session, so it gets fewer too, or it runs out of
         * descriptors and stops listening. */
        unsigned k = idle_sessions;
        if (target == T_DIRECT && k > DIRECT_IDLE_MAX)
            k = DIRECT_IDLE_MAX;
        if (target == T_SSLSPLIT && k > (nofile - 128) / 3)
            k = (unsigned)((nofile - 128) / 3);
        if (k != idle_sessions)
            snprintf(c->note, sizeof(c->note), "idle with %u sessions, not %u", k, idle_sessions);
        bn_run_idle(client, scen == S_IDLE ? &in.st : &in.dt, k, O.idle_parallel, O.idle_stanzas,
                    O.idle_hold_s, in.pid, &r);
        break;
    }
    }
    if (profiling)
        profile_stop();
    double cpu1 = target != T_DIRECT ? bn_cpu_tree_seconds(in.pid) : 0;

    if (target != T_DIRECT) {
        int dead = bn_proc_reap(&in.p, 0);
        int status = stop(&in.p);
        if (dead && r.ok) {
            r.ok = 0;
            snprintf(r.err, sizeof(r.err), "%s died during the run (status %d)",
                     target_names[target], status);
        } else if (target == T_XS && status != 0 && r.ok) {
            char t[500];
            bn_file_tail(in.p.errpath, t, sizeof(t));
            r.ok = 0;
            snprintf(r.err, sizeof(r.err), "xmppscope exited with status %d after SIGTERM: %s",
                     status, t);
        }
    }
    if (r.ok && scen == S_BULK_WRITE) {
        /* Every stanza of both directions must be in the log. */
        long long lines = count_log_stanzas();
        if (lines < 2 * (long long)r.stanzas) {
            r.ok = 0;
            snprintf(r.err, sizeof(r.err),
                     "the --write log holds %lld stanza events, expected at least %llu", lines,
                     2 * (unsigned long long)r.stanzas);
        }
    }
    if (r.ok && r.seconds <= 0)
        r.seconds = 1e-9;
    if (r.ok && r.stalled > 0) {
        if (target == T_SSLSPLIT) {
            c->stalled += r.stalled;
            c->stall_base += r.sessions + r.stalled;
        } else {
            r.ok = 0;
            snprintf(r.err, sizeof(r.err), "%u session(s) stalled while setting up", r.stalled);
        }
    }

    if (!r.ok) {
        if (target != T_DIRECT) {
            char t[300];
            bn_file_tail(in.p.errpath, t, sizeof(t));
            if (t[0] && strlen(r.err) + strlen(t) + 20 < sizeof(c->err))
                cell_fail(c, "%s [%s stderr: ...%s]", r.err, target_names[target], t);
            else
                cell_fail(c, "%s", r.err);
        } else {
            cell_fail(c, "%s", r.err);
        }
        bn_say("rep %u %s %s: FAILED: %s", rep + 1, scen_names[scen], target_names[target], r.err);
        free(r.lat_us);
        return;
    }

    double m[N_METRICS] = {0};
    switch (scen) {
    case S_INTER:
        m[0] = bn_quantile(r.lat_us, r.n_lat, 0.50);
        m[1] = bn_quantile(r.lat_us, r.n_lat, 0.99);
        m[2] = bn_quantile(r.lat_us, r.n_lat, 1.0);
        m[3] = (double)r.n_lat;
        if (r.n_lat < O.rounds)
            snprintf(c->note, sizeof(c->note), "only %zu of %u round trips in %.0f s", r.n_lat,
                     O.rounds, O.inter_max_s);
        bn_say("rep %u %s %s: RTT p50 %.1f us, p99 %.1f us, max %.1f us (%zu round trips)", rep + 1,
               scen_names[scen], target_names[target], m[0], m[1], m[2], r.n_lat);
        break;
    case S_SETUP:
    case S_SETUP_TLS:
        m[0] = r.sessions / r.seconds;
        /* CPU time per session says what a session costs the proxy even when the machine is
         * shared and the rate is noisy. */
        m[1] = target != T_DIRECT && r.sessions ? 1e3 * (cpu1 - cpu0) / r.sessions : 0;
        bn_say("rep %u %s %s: %.0f sessions/s (%u sessions in %.2f s), proxy CPU %.3f ms/session",
               rep + 1, scen_names[scen], target_names[target], m[0], r.sessions, r.seconds, m[1]);
        break;
    case S_IDLE:
    case S_IDLE_TLS:
        m[0] = r.sessions ? (double)(r.rss_after - r.rss_before) / r.sessions : 0;
        m[1] = r.sessions;
        m[2] = r.sessions / r.seconds;
        bn_say("rep %u %s %s: %.1f KiB/session (RSS %ld -> %ld KiB, %u sessions, opened at %.0f/s)",
               rep + 1, scen_names[scen], target_names[target], m[0], r.rss_before, r.rss_after,
               r.sessions, m[2]);
        break;
    default:
        m[0] = (double)r.bytes / 1e6 / r.seconds;
        m[1] = (double)r.stanzas / r.seconds;
        m[2] = target != T_DIRECT ? 100.0 * (cpu1 - cpu0) / r.seconds : 0;
        if (target != T_DIRECT)
            snprintf(err, sizeof(err), ", proxy CPU %.0f%% of a core", m[2]);
        else
            err[0] = 0;
        bn_say("rep %u %s %s: %.1f MB/s, %.0f stanzas/s (%llu bytes in %.2f s%s)", rep + 1,
               scen_names[scen], target_names[target], m[0], m[1], (unsigned long long)r.bytes,
               r.seconds, err);
        break;
    }
    for (int i = 0; i < N_METRICS; i++)
        c->v[i][c->n] = m[i];
    c->n++;
    free(r.lat_us);
}

/* ---- the report ------------------------------------------------------------------------------
 */

static void compute_medians(void)
{
    for (int s = 0; s < N_SCEN; s++)
        for (int t = 0; t < N_TARGETS; t++) {
            cell *c = &cells[s][t];
            for (int i = 0; i < N_METRICS; i++) {
                double tmp[MAX_REPS];
                memcpy(tmp, c->v[i], sizeof(double) * (size_t)c->n);
                c->med[i] = bn_median(tmp, (size_t)c->n);
            }
        }
}

static int have(int s, int t)
{
    return cells[s][t].n > 0;
}

/* The throughput ratios the targets are about, also taken pair by pair: run k of one cell
 * against run k of the other, made minutes apart at most in the same repetition, then the
 * median. A machine whose speed drifts during the benchmark (a shared or throttled VM) moves
 * the medians of different scenarios apart; the pairs stay comparable. */
static const struct paired_ratio {
    const char *name, *label;
    int s1, t1, s2, t2;
} paired_ratios[] = {
    {"bulk_xmppscope_vs_sslsplit", "bulk / sslsplit", S_BULK, T_XS, S_BULK, T_SSLSPLIT},
    {"bulk_write_xmppscope_vs_sslsplit", "bulk-write / sslsplit bulk", S_BULK_WRITE, T_XS, S_BULK,
     T_SSLSPLIT},
    {"bulk_rules_vs_bulk", "bulk-rules / bulk", S_BULK_RULES, T_XS, S_BULK, T_XS},
    {"setup_xmppscope_vs_sslsplit", "setup / sslsplit", S_SETUP, T_XS, S_SETUP, T_SSLSPLIT},
    {"setup_tls_xmppscope_vs_sslsplit", "setup-tls / sslsplit", S_SETUP_TLS, T_XS, S_SETUP_TLS,
     T_SSLSPLIT},
    {"idle_kib_xmppscope_vs_sslsplit", "idle KiB / sslsplit", S_IDLE, T_XS, S_IDLE, T_SSLSPLIT},
    {"idle_tls_kib_xmppscope_vs_sslsplit", "idle-tls KiB / sslsplit", S_IDLE_TLS, T_XS, S_IDLE_TLS,
     T_SSLSPLIT},
};

/* The median of the paired ratios of metric 0, or -1 when the cells do not pair up (a run
 * failed). */
static double paired(const struct paired_ratio *r)
{
    const cell *a = &cells[r->s1][r->t1], *b = &cells[r->s2][r->t2];
    if (a->n == 0 || a->n != b->n || a->failed || b->failed)
        return -1;
    double q[MAX_REPS];
    for (int k = 0; k < a->n; k++) {
        if (b->v[0][k] <= 0)
            return -1;
        q[k] = a->v[0][k] / b->v[0][k];
    }
    return bn_median(q, (size_t)a->n);
}

/* A table cell: the median, or why there is none. */
static void fmt_cell(char *out, size_t cap, int s, int t, int m, int decimals, const char *unit)
{
    const cell *c = &cells[s][t];
    if (c->n > 0)
        snprintf(out, cap, "%.*f%s", decimals, c->med[m], unit);
    else if (c->failed)
        snprintf(out, cap, "FAILED");
    else
        snprintf(out, cap, "-");
}

static void fmt_ratio(char *out, size_t cap, int s1, int t1, int s2, int t2, int m)
{
    if (have(s1, t1) && have(s2, t2) && cells[s2][t2].med[m] > 0)
        snprintf(out, cap, "%.2fx", cells[s1][t1].med[m] / cells[s2][t2].med[m]);
    else
        snprintf(out, cap, "-");
}

static void row(const char *scen, const char *metric, const char *a, const char *b, const char *c,
                const char *d, const char *e)
{
    printf("%-24s %-22s %10s %10s %10s %10s %12s\n", scen, metric, a, b, c, d, e);
}

/* Rows for a throughput-like metric m (higher is better). `base` is the scenario whose direct
 * and sslsplit cells the ratios compare with (bulk for bulk-write and bulk-rules). */
static void rate_row(const char *label, const char *metric, int s, int base, int m, int decimals)
{
    char a[32], b[32], c[32], d[32], e[32];
    fmt_cell(a, sizeof(a), base, T_DIRECT, m, decimals, "");
    fmt_cell(b, sizeof(b), s, T_XS, m, decimals, "");
    fmt_ratio(c, sizeof(c), s, T_XS, base, T_DIRECT, m);
    fmt_cell(d, sizeof(d), base, T_SSLSPLIT, m, decimals, "");
    fmt_ratio(e, sizeof(e), s, T_XS, base, T_SSLSPLIT, m);
    if (s != base) {
        /* Only xmppscope runs this one: the other columns are the plain scenario's. */
        snprintf(a + strlen(a), sizeof(a) - strlen(a), "*");
        if (strcmp(d, "-") != 0)
            snprintf(d + strlen(d), sizeof(d) - strlen(d), "*");
    }
    row(label, metric, a, b, c, d, e);
}

static void print_table(void)
{
    char label[64], a[32], b[32], c[32], d[32], e[32];
    printf("\n");
    row("scenario", "metric (median)", "direct", "xmppscope", "xs/direct", "sslsplit",
        "xs/sslsplit");
    printf("%.*s\n", 104,
           "--------------------------------------------------------------------"
           "----------------------------------------------------------------");
    for (int s = 0; s < N_SCEN; s++) {
        int any = 0;
        for (int t = 0; t < N_TARGETS; t++)
            any |= cells[s][t].tried;
        if (!any)
            continue;
        switch (s) {
        case S_BULK:
        case S_BULK_WRITE:
        case S_BULK_RULES:
        case S_BULK_SINK: {
            int base = s == S_BULK_SINK ? S_BULK_SINK : S_BULK;
            snprintf(label, sizeof(label), "%s %u MiB", scen_names[s], O.bulk_mib);
            rate_row(label, "MB/s (one way)", s, base, 0, 1);
            rate_row("", "stanzas/s", s, base, 1, 0);
            fmt_cell(b, sizeof(b), s, T_XS, 2, 0, "%");
            fmt_cell(d, sizeof(d), base, T_SSLSPLIT, 2, 0, "%");
            row("", "proxy CPU (of 1 core)", "-", b, "", d, "");
            break;
        }
        case S_INTER: {
            snprintf(label, sizeof(label), "interactive %u RT", O.rounds);
            static const char *const names[] = {"RTT p50 (us)", "RTT p99 (us)", "RTT max (us)"};
            static const char *const added[] = {"added p50 (us)", "added p99 (us)",
                                                "added max (us)"};
            for (int m = 0; m < 3; m++) {
                fmt_cell(a, sizeof(a), s, T_DIRECT, m, 1, "");
                fmt_cell(b, sizeof(b), s, T_XS, m, 1, "");
                fmt_ratio(c, sizeof(c), s, T_XS, s, T_DIRECT, m);
                fmt_cell(d, sizeof(d), s, T_SSLSPLIT, m, 1, "");
                fmt_ratio(e, sizeof(e), s, T_XS, s, T_SSLSPLIT, m);
                row(m == 0 ? label : "", names[m], a, b, c, d, e);
            }
            for (int m = 0; m < 3; m++) {
                snprintf(b, sizeof(b), "-");
                snprintf(d, sizeof(d), "-");
                if (have(s, T_DIRECT) && have(s, T_XS))
                    snprintf(b, sizeof(b), "%+.1f",
                             cells[s][T_XS].med[m] - cells[s][T_DIRECT].med[m]);
                if (have(s, T_DIRECT) && have(s, T_SSLSPLIT))
                    snprintf(d, sizeof(d), "%+.1f",
                             cells[s][T_SSLSPLIT].med[m] - cells[s][T_DIRECT].med[m]);
                row("", added[m], "-", b, "", d, "");
            }
            break;
        }
        case S_SETUP:
        case S_SETUP_TLS:
            snprintf(label, sizeof(label), "%s x%u", s == S_SETUP ? "setup STARTTLS" : "setup TLS",
                     O.parallel);
            rate_row(label, "sessions/s", s, s, 0, 0);
            fmt_cell(b, sizeof(b), s, T_XS, 1, 3, "");
            fmt_cell(d, sizeof(d), s, T_SSLSPLIT, 1, 3, "");
            fmt_ratio(e, sizeof(e), s, T_XS, s, T_SSLSPLIT, 1);
            row("", "proxy CPU ms/session", "-", b, "", d, e);
            break;
        case S_IDLE:
        case S_IDLE_TLS:
            snprintf(label, sizeof(label), "%s %u sessions", s == S_IDLE ? "idle" : "idle TLS",
                     idle_sessions);
            fmt_cell(a, sizeof(a), s, T_DIRECT, 0, 1, "");
            snprintf(a + strlen(a), sizeof(a) - strlen(a), "%s", have(s, T_DIRECT) ? "+" : "");
            fmt_cell(b, sizeof(b), s, T_XS, 0, 1, "");
            fmt_cell(d, sizeof(d), s, T_SSLSPLIT, 0, 1, "");
            fmt_ratio(e, sizeof(e), s, T_XS, s, T_SSLSPLIT, 0);
            row(label, "RSS KiB/session", a, b, "", d, e);
            rate_row("", "sessions opened/s", s, s, 2, 0);
            break;
        }
    }
    printf("\n");
    if (cells[S_IDLE][T_DIRECT].tried || cells[S_IDLE_TLS][T_DIRECT].tried)
        printf("+ idle/direct: the synthetic server's RSS per session (a bare OpenSSL server), "
               "for scale.\n");
    if (cells[S_BULK_WRITE][T_XS].tried || cells[S_BULK_RULES][T_XS].tried)
        printf("* bulk-write / bulk-rules run only through xmppscope; their direct and sslsplit "
               "columns and ratios are plain bulk's.\n");
    printf("Medians of %u repetition(s) (idle: %u). MB = 10^6 bytes of stanzas one way (the echo "
           "doubles the traffic).\n",
           O.reps, O.idle_reps < O.reps ? O.idle_reps : O.reps);
    if (cells[S_IDLE][T_XS].tried || cells[S_IDLE_TLS][T_XS].tried)
        printf("Idle: each session exchanged %u stanza(s), then all were held %.1f s.\n",
               O.idle_stanzas, O.idle_hold_s);
    int any_pair = 0;
    for (size_t i = 0; i < sizeof(paired_ratios) / sizeof(paired_ratios[0]); i++) {
        double q = paired(&paired_ratios[i]);
        if (q < 0)
            continue;
        printf("%s%s %.2fx",
               any_pair ? ", " : "Paired per repetition (median of run-by-run ratios): ",
               paired_ratios[i].label, q);
        any_pair = 1;
    }
    if (any_pair)
        printf("\n");
    for (int s = 0; s < N_SCEN; s++)
        for (int t = 0; t < N_TARGETS; t++) {
            const cell *cl = &cells[s][t];
            if (cl->failed)
                printf("%s/%s: %d run(s) failed: %s\n", scen_names[s], target_names[t], cl->failed,
                       cl->err);
            if (cl->note[0])
                printf("%s/%s: %s\n", scen_names[s], target_names[t], cl->note);
            if (cl->stalled)
                printf("%s/%s: %u of %u sessions stalled (accepted, never forwarded) and were "
                       "abandoned after %.1f s and replaced; the rate includes that time\n",
                       scen_names[s], target_names[t], cl->stalled, cl->stall_base,
                       SSLSPLIT_STALL_S);
        }
    if (!cells[S_BULK_RULES][T_XS].tried && O.want_scen[S_BULK_RULES])
        printf("bulk-rules: skipped: %s\n", !xs_has_rules
                                                ? "this xmppscope has no --rules option yet"
                                                : "no --rules-file given");
}

static void json_num(FILE *f, double v)
{
    if (v >= 1000 || v <= -1000)
        fprintf(f, "%.0f", v);
    else
        fprintf(f, "%.4g", v);
}

static void cpu_model(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "model name", 10) == 0) {
            const char *v = strchr(line, ':');
            if (v != NULL) {
                snprintf(out, cap, "%s", v + 2);
                out[strcspn(out, "\n")] = 0;
            }
            break;
        }
    }
    if (f != NULL)
        fclose(f);
}

static void write_json(FILE *f)
{
    char model[256], date[64];
    struct utsname u;
    time_t now = time(NULL);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cpu_model(model, sizeof(model));
    uname(&u);
    fprintf(f,
            "{\"bench\":\"bench_proxy\",\"date\":\"%s\",\"machine\":{\"cpus\":%ld,\"cpu\":", date,
            sysconf(_SC_NPROCESSORS_ONLN));
    bn_json_str(f, model);
    fprintf(f, ",\"kernel\":");
    bn_json_str(f, u.release);
    fprintf(f,
            "},\"config\":{\"smoke\":%s,\"reps\":%u,\"bulk_mib\":%u,\"rounds\":%u,"
            "\"inter_max_s\":%g,\"setup_sessions\":%u,\"parallel\":%u,\"idle_sessions\":%u,"
            "\"idle_stanzas\":%u,\"idle_hold_s\":%g,"
            "\"window_kib\":%u,\"nofile\":%llu,\"corpus_bytes\":%zu,\"corpus_stanzas\":%zu,"
            "\"stanza_min\":%zu,\"stanza_max\":%zu},\"results\":{",
            O.smoke ? "true" : "false", O.reps, O.bulk_mib, O.rounds, O.inter_max_s,
            O.setup_sessions, O.parallel, idle_sessions, O.idle_stanzas, O.idle_hold_s,
            O.window_kib, (unsigned long long)nofile, client->corpus->len, client->corpus->n,
            client->corpus->min, client->corpus->max);
    int first_s = 1;
    for (int s = 0; s < N_SCEN; s++) {
        int any = 0;
        for (int t = 0; t < N_TARGETS; t++)
            any |= cells[s][t].tried;
        if (!any)
            continue;
        fprintf(f, "%s\"%s\":{", first_s ? "" : ",", scen_names[s]);
        first_s = 0;
        int first_t = 1;
        for (int t = 0; t < N_TARGETS; t++) {
            const cell *c = &cells[s][t];
            if (!c->tried)
                continue;
            fprintf(f, "%s\"%s\":{\"ok_runs\":%d,\"failed_runs\":%d", first_t ? "" : ",",
                    target_names[t], c->n, c->failed);
            first_t = 0;
            if (c->err[0]) {
                fprintf(f, ",\"error\":");
                bn_json_str(f, c->err);
            }
            if (c->note[0]) {
                fprintf(f, ",\"note\":");
                bn_json_str(f, c->note);
            }
            if (c->stalled)
                fprintf(f, ",\"stalled_sessions\":%u,\"of_sessions\":%u", c->stalled,
                        c->stall_base);
            if (c->n > 0) {
                fprintf(f, ",\"median\":{");
                for (int m = 0; m < N_METRICS && metric_names[s][m]; m++) {
                    if (m == 2 && is_bulk(s) && t == T_DIRECT)
                        continue;
                    fprintf(f, "%s\"%s\":", m ? "," : "", metric_names[s][m]);
                    json_num(f, c->med[m]);
                }
                fprintf(f, "},\"runs\":{");
                for (int m = 0; m < N_METRICS && metric_names[s][m]; m++) {
                    if (m == 2 && is_bulk(s) && t == T_DIRECT)
                        continue;
                    fprintf(f, "%s\"%s\":[", m ? "," : "", metric_names[s][m]);
                    for (int i = 0; i < c->n; i++) {
                        if (i)
                            fputc(',', f);
                        json_num(f, c->v[m][i]);
                    }
                    fputc(']', f);
                }
                fputc('}', f);
            }
            fputc('}', f);
        }
        fputc('}', f);
    }
    fprintf(f, "},\"ratios\":{");
    int first = 1;
    struct {
        const char *name;
        int s1, t1, s2, t2, m;
    } ratios[] = {
        {"bulk_xmppscope_vs_direct", S_BULK, T_XS, S_BULK, T_DIRECT, 0},
        {"bulk_xmppscope_vs_sslsplit", S_BULK, T_XS, S_BULK, T_SSLSPLIT, 0},
        {"bulk_write_xmppscope_vs_sslsplit", S_BULK_WRITE, T_XS, S_BULK, T_SSLSPLIT, 0},
        {"bulk_write_xmppscope_vs_direct", S_BULK_WRITE, T_XS, S_BULK, T_DIRECT, 0},
        {"bulk_rules_xmppscope_vs_sslsplit", S_BULK_RULES, T_XS, S_BULK, T_SSLSPLIT, 0},
        {"setup_xmppscope_vs_direct", S_SETUP, T_XS, S_SETUP, T_DIRECT, 0},
        {"setup_xmppscope_vs_sslsplit", S_SETUP, T_XS, S_SETUP, T_SSLSPLIT, 0},
        {"setup_tls_xmppscope_vs_sslsplit", S_SETUP_TLS, T_XS, S_SETUP_TLS, T_SSLSPLIT, 0},
        {"idle_kib_xmppscope_vs_sslsplit", S_IDLE, T_XS, S_IDLE, T_SSLSPLIT, 0},
        {"idle_tls_kib_xmppscope_vs_sslsplit", S_IDLE_TLS, T_XS, S_IDLE_TLS, T_SSLSPLIT, 0},
    };
    for (size_t i = 0; i < sizeof(ratios) / sizeof(ratios[0]); i++) {
        if (!have(ratios[i].s1, ratios[i].t1) || !have(ratios[i].s2, ratios[i].t2) ||
            cells[ratios[i].s2][ratios[i].t2].med[ratios[i].m] <= 0)
            continue;
        fprintf(f, "%s\"%s\":", first ? "" : ",", ratios[i].name);
        json_num(f, cells[ratios[i].s1][ratios[i].t1].med[ratios[i].m] /
                        cells[ratios[i].s2][ratios[i].t2].med[ratios[i].m]);
        first = 0;
    }
    for (size_t i = 0; i < sizeof(paired_ratios) / sizeof(paired_ratios[0]); i++) {
        double q = paired(&paired_ratios[i]);
        if (q < 0)
            continue;
        fprintf(f, "%s\"paired_%s\":", first ? "" : ",", paired_ratios[i].name);
        json_num(f, q);
        first = 0;
    }
    for (int t = T_XS; t < N_TARGETS; t++) {
        if (!have(S_INTER, t) || !have(S_INTER, T_DIRECT))
            continue;
        static const char *const q[] = {"p50", "p99", "max"};
        for (int m = 0; m < 3; m++) {
            fprintf(f, "%s\"interactive_added_%s_us_%s\":", first ? "" : ",", q[m],
                    target_names[t]);
            json_num(f, cells[S_INTER][t].med[m] - cells[S_INTER][T_DIRECT].med[m]);
            first = 0;
        }
    }
    fprintf(f, "}}\n");
}

/* ---- set-up ----------------------------------------------------------------------------------
 */

static void raise_nofile(void)
{
    /* Root may raise the hard limit too (CAP_SYS_RESOURCE); otherwise it stays. */
    nofile = bn_raise_nofile((rlim_t)O.idle * 2 + 256);
    /* The proxy holds two sockets per session, plus its own few; this process and the server
     * one each. */
    unsigned max = nofile > 256 ? (unsigned)((nofile - 128) / 2) : 1;
    idle_sessions = O.idle;
    if (idle_sessions > max) {
        bn_say("open files limit is %llu (hard limit; raising it needs CAP_SYS_RESOURCE): the "
               "proxy needs 2 per session, so idle runs with %u sessions instead of %u",
               (unsigned long long)nofile, max, O.idle);
        idle_sessions = max;
    } else {
        bn_say("open files limit raised to %llu", (unsigned long long)nofile);
    }
}

static const char *find_on_path(const char *name)
{
    static char path[PATH_MAX];
    const char *env = getenv("PATH");
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s:/usr/sbin:/usr/bin:/sbin:/bin", env ? env : "");
    for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(path, sizeof(path), "%s/%s", d, name);
        if (access(path, X_OK) == 0)
            return path;
    }
    return NULL;
}

/* Whether `xmppscope proxy --help` mentions --rules (the rules engine may not exist yet). */
static int xmppscope_has_rules(void)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "'%s' proxy --help 2>/dev/null | grep -q -- --rules", O.xmppscope);
    return system(cmd) == 0;
}

static int parse_args(int argc, char **argv)
{
    enum {
        O_XS = 256,
        O_SSLSPLIT,
        O_REPS,
        O_BULK,
        O_ROUNDS,
        O_INTER_MAX,
        O_SETUP,
        O_PARALLEL,
        O_IDLE,
        O_IDLE_STANZAS,
        O_IDLE_REPS,
        O_IDLE_PARALLEL,
        O_IDLE_HOLD,
        O_WINDOW,
        O_SCEN,
        O_TARGETS,
        O_RULES,
        O_PROFILE,
        O_JSON,
        O_TIMEOUT,
        O_SMOKE,
        O_KEEP,
    };
    static const struct option lo[] = {
        {"xmppscope", required_argument, NULL, O_XS},
        {"sslsplit", required_argument, NULL, O_SSLSPLIT},
        {"reps", required_argument, NULL, O_REPS},
        {"bulk-mib", required_argument, NULL, O_BULK},
        {"rounds", required_argument, NULL, O_ROUNDS},
        {"inter-max-s", required_argument, NULL, O_INTER_MAX},
        {"setup-sessions", required_argument, NULL, O_SETUP},
        {"parallel", required_argument, NULL, O_PARALLEL},
        {"idle", required_argument, NULL, O_IDLE},
        {"idle-stanzas", required_argument, NULL, O_IDLE_STANZAS},
        {"idle-reps", required_argument, NULL, O_IDLE_REPS},
        {"idle-parallel", required_argument, NULL, O_IDLE_PARALLEL},
        {"idle-hold-s", required_argument, NULL, O_IDLE_HOLD},
        {"window-kib", required_argument, NULL, O_WINDOW},
        {"scenarios", required_argument, NULL, O_SCEN},
        {"targets", required_argument, NULL, O_TARGETS},
        {"rules-file", required_argument, NULL, O_RULES},
        {"profile", required_argument, NULL, O_PROFILE},
        {"json", required_argument, NULL, O_JSON},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"smoke", no_argument, NULL, O_SMOKE},
        {"keep-tmp", no_argument, NULL, O_KEEP},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int set[O_KEEP + 1] = {0};
    unsigned u;
    int c;
    O.reps = 3;
    O.bulk_mib = 256;
    O.rounds = 20000;
    O.inter_max_s = 10;
    O.setup_sessions = 1000;
    O.parallel = 32;
    O.idle = 10000;
    O.idle_stanzas = 1;
    O.idle_reps = 1;
    O.idle_parallel = 64;
    O.idle_hold_s = 3;
    O.window_kib = 2048;
    O.timeout_s = 300;
    for (int s = 0; s < N_SCEN; s++)
        O.want_scen[s] = s != S_BULK_SINK;
    for (int t = 0; t < N_TARGETS; t++)
        O.want_target[t] = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (c >= O_XS && c <= O_KEEP)
            set[c] = 1;
        switch (c) {
        case O_XS:
            O.xmppscope = optarg;
            break;
        case O_SSLSPLIT:
            O.sslsplit = optarg;
            break;
        case O_REPS:
        case O_BULK:
        case O_ROUNDS:
        case O_SETUP:
        case O_PARALLEL:
        case O_IDLE:
        case O_IDLE_REPS:
        case O_IDLE_PARALLEL:
        case O_WINDOW:
            if (bn_parse_uint(optarg, c == O_WINDOW ? 16 : 1, 100000000u, &u) < 0 ||
                (c == O_REPS && u > MAX_REPS)) {
                fprintf(stderr, "bench_proxy: bad number '%s'\n", optarg);
                return -1;
            }
            *(c == O_REPS            ? &O.reps
              : c == O_BULK          ? &O.bulk_mib
              : c == O_ROUNDS        ? &O.rounds
              : c == O_SETUP         ? &O.setup_sessions
              : c == O_PARALLEL      ? &O.parallel
              : c == O_IDLE          ? &O.idle
              : c == O_IDLE_REPS     ? &O.idle_reps
              : c == O_IDLE_PARALLEL ? &O.idle_parallel
                                     : &O.window_kib) = u;
            break;
        case O_IDLE_STANZAS:
            if (bn_parse_uint(optarg, 0, 1000000u, &u) < 0) {
                fprintf(stderr, "bench_proxy: bad number '%s'\n", optarg);
                return -1;
            }
            O.idle_stanzas = u;
            break;
        case O_INTER_MAX:
        case O_TIMEOUT:
        case O_IDLE_HOLD: {
            double v = atof(optarg);
            if (v <= 0 || v > 3600) {
                fprintf(stderr, "bench_proxy: bad number of seconds '%s'\n", optarg);
                return -1;
            }
            *(c == O_INTER_MAX ? &O.inter_max_s
              : c == O_TIMEOUT ? &O.timeout_s
                               : &O.idle_hold_s) = v;
            break;
        }
        case O_SCEN:
            if (parse_list(optarg, scen_names, N_SCEN, O.want_scen) < 0)
                return -1;
            break;
        case O_TARGETS:
            if (parse_list(optarg, target_names, N_TARGETS, O.want_target) < 0)
                return -1;
            break;
        case O_RULES:
            O.rules_file = optarg;
            break;
        case O_PROFILE:
            O.profile = optarg;
            break;
        case O_JSON:
            O.json_file = optarg;
            break;
        case O_SMOKE:
            O.smoke = 1;
            break;
        case O_KEEP:
            O.keep_tmp = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bench_proxy: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (O.smoke) {
        /* Tiny everywhere, unless given explicitly. */
        if (!set[O_REPS])
            O.reps = 1;
        if (!set[O_BULK])
            O.bulk_mib = 4;
        if (!set[O_ROUNDS])
            O.rounds = 200;
        if (!set[O_INTER_MAX])
            O.inter_max_s = 3;
        if (!set[O_SETUP])
            O.setup_sessions = 64;
        if (!set[O_IDLE])
            O.idle = 200;
        if (!set[O_IDLE_HOLD])
            O.idle_hold_s = 1;
        if (!set[O_TIMEOUT])
            O.timeout_s = 60;
    }
    if (O.xmppscope == NULL)
        O.xmppscope = bn_default_xmppscope();
    if (O.sslsplit == NULL)
        O.sslsplit = find_on_path("sslsplit");
    else if (strcmp(O.sslsplit, "none") == 0)
        O.sslsplit = NULL;
    return 0;
}

int main(int argc, char **argv)
{
    char err[800];
    int status = 1;
    bn_corpus corpus = {0};
    struct ssl_ctx_st *cctx = NULL;
    uv_loop_t loop;
    int loop_open = 0;
    bn_proc server = {0};

    bn_say_as("bench");
    if (parse_args(argc, argv) < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    if (O.want_target[T_XS] && access(O.xmppscope, X_OK) != 0) {
        bn_say("no xmppscope at %s: build it, or pass --xmppscope PATH", O.xmppscope);
        return 1;
    }
    if (O.want_target[T_SSLSPLIT] && O.sslsplit == NULL)
        bn_say("sslsplit is not installed (Debian: apt-get install sslsplit): no peer comparison");
    if (O.sslsplit == NULL)
        O.want_target[T_SSLSPLIT] = 0;
    xs_has_rules = O.want_target[T_XS] && xmppscope_has_rules();
    raise_nofile();

    if (bn_tmpdir_make(tmpdir, sizeof(tmpdir), "xs-bench") < 0) {
        bn_say("cannot make a temporary directory: %s", strerror(errno));
        return 1;
    }
    snprintf(ca_file, sizeof(ca_file), "%s/ca.crt", tmpdir);
    if (bn_pki_make(tmpdir, DOMAIN, err, sizeof(err)) < 0) {
        bn_say("%s", err);
        goto out;
    }
    if (bn_corpus_make(&corpus, O.smoke ? (256u << 10) : (1u << 20), 12345) < 0) {
        bn_say("out of memory");
        goto out;
    }
    bn_say("test PKI in %s; corpus: %zu stanzas, %zu bytes, %zu to %zu bytes each", tmpdir,
           corpus.n, corpus.len, corpus.min, corpus.max);

    /* The server gets a process of its own, so that the client and the server each have one
     * thread, as the proxy does. Its sockets are bound here, so their ports are known. */
    if (bn_server_start(&server, tmpdir, DOMAIN, &server_st.addr, &server_dt.addr, err,
                        sizeof(err)) < 0) {
        bn_say("%s", err);
        goto out;
    }
    server_pid = server.pid;
    server_dt.direct_tls = 1;

    cctx = bn_tls_client_ctx(ca_file, err, sizeof(err));
    if (cctx == NULL) {
        bn_say("%s", err);
        goto out;
    }
    uv_loop_init(&loop);
    loop_open = 1;
    bn_client cl = {
        .loop = &loop,
        .ctx = cctx,
        .domain = DOMAIN,
        .corpus = &corpus,
        .timeout_s = O.timeout_s,
    };
    client = &cl;

    /* Which scenario runs on which target. */
    int plan[N_SCEN][N_TARGETS] = {{0}};
    for (int s = 0; s < N_SCEN; s++)
        for (int t = 0; t < N_TARGETS; t++)
            plan[s][t] = O.want_scen[s] && O.want_target[t];
    for (int t = 0; t < N_TARGETS; t++)
        if (t != T_XS)
            plan[S_BULK_WRITE][t] = plan[S_BULK_RULES][t] = 0;
    if (!xs_has_rules || O.rules_file == NULL)
        plan[S_BULK_RULES][T_XS] = 0;

    uint64_t t_start = bn_now_ns();
    for (unsigned rep = 0; rep < O.reps; rep++) {
        for (int s = 0; s < N_SCEN; s++) {
            /* Idle is costly and its figure steady: it runs in the first --idle-reps
             * repetitions only. */
            if ((s == S_IDLE || s == S_IDLE_TLS) && rep >= O.idle_reps)
                continue;
            for (int k = 0; k < N_TARGETS; k++) {
                int t = (int)((rep + (unsigned)k) % N_TARGETS);
                if (!plan[s][t])
                    continue;
                double timeout = O.timeout_s;
                if (s == S_IDLE || s == S_IDLE_TLS)
                    cl.timeout_s = timeout + idle_sessions / 50.0 + O.idle_hold_s;
                else if (s == S_INTER)
                    cl.timeout_s = timeout + O.inter_max_s;
                else
                    cl.timeout_s = timeout;
                /* sslsplit leaves some connections hanging when many are set up at once (it
                 * accepts them and never reads from them): those are abandoned quickly and
                 * counted. Anywhere else a stall is a failure. */
                cl.stall_s = t == T_SSLSPLIT ? SSLSPLIT_STALL_S : 5.0;
                run_one(s, t, rep);
            }
        }
    }
    bn_say("all runs took %.1f s", (double)(bn_now_ns() - t_start) / 1e9);

    compute_medians();
    print_table();
    printf("\n");
    write_json(stdout);
    fflush(stdout);
    if (O.json_file != NULL) {
        FILE *f = fopen(O.json_file, "w");
        if (f == NULL) {
            bn_say("cannot write %s: %s", O.json_file, strerror(errno));
        } else {
            write_json(f);
            fclose(f);
        }
    }
    status = 0;
    for (int s = 0; s < N_SCEN; s++)
        for (int t = 0; t < N_TARGETS; t++)
            if (t != T_SSLSPLIT && cells[s][t].failed)
                status = 1;
out:
    if (server.pid > 0) {
        int st = stop(&server);
        if (st != 0) {
            bn_say("the synthetic server exited with status %d", st);
            status = 1;
        }
    }
    if (loop_open) {
        uv_run(&loop, UV_RUN_NOWAIT);
        if (uv_loop_close(&loop) != 0)
            bn_say("warning: the client loop still has handles");
    }
    bn_tls_ctx_free(cctx);
    bn_corpus_free(&corpus);
    if (O.keep_tmp)
        bn_say("kept %s", tmpdir);
    else
        bn_tmpdir_remove(tmpdir);
    return status;
}
