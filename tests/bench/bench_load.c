/* Load and soak test of xmppscope (issue #6): hundreds of concurrent sessions through the proxy
 * to the benchmark's synthetic server, every stanza checked, and the proxy's memory watched.
 *
 * The pieces are the proxy benchmark's: a test CA and server certificate made at start
 * (bench_tls.c), the synthetic server in a child process (bench_server.c: STARTTLS and direct
 * TLS, echoes every stanza byte for byte, reports its own count at the stream's close), the
 * stanza corpus (bench_corpus.c), the child processes' handling (bench_harness.c), and a session
 * driver of our own (bench_load_run.c) on one libuv loop in this process. xmppscope is spawned
 * once for the whole run with --format none, forging client certificates with the test CA and
 * verifying the server with --upstream-ca; it listens on ephemeral ports for STARTTLS and for
 * direct TLS and says which in its stderr.
 *
 * Load mode (the default): a warm-up (two short sessions, one per kind of TLS), then --waves
 * waves. In a wave --sessions sessions are opened (--parallel-connects setting up at a time, a
 * share of --direct-pct on direct TLS), and once all are ready they all send at once, each its
 * own --stanzas stanzas with at most --window unechoed, interleaved on the loop. Each stanza is
 * unique (id='s{session}-{seq}'), so every echo is checked to arrive exactly once, in order,
 * byte exact, and at the close the server's count and the client's must both equal what was
 * sent (bench_load_run.h).
 *
 * Memory. The proxy's RSS (VmRSS) is read at the baseline (after the warm-up, once its
 * descriptors are back and it settled), when all sessions of a wave start sending and every
 * 100 ms during the wave (the highest reading is the peak, shown with the sessions active
 * then), and after each wave once the proxy's descriptor count is back at the baseline and a
 * settle. Passing needs:
 *   - descriptors: after every wave (and after a soak) the proxy holds exactly as many open
 *     files as at the baseline, within 20 s (its close timeout is 10 s, its linger 2 s): every
 *     session's two sockets were closed, so every session ended;
 *   - no growth from wave to wave: the RSS after each later wave is at most wave 1's highest
 *     reading (its peak or the reading after it) plus an allowance: max(2 MiB, 5% of the
 *     working set, that reading minus the baseline) for a proxy on glibc's malloc, max(8 MiB,
 *     20%) for one built with ASan (its runtime's name is in the binary), whose allocator is
 *     noisier. Wave 1 is the reference for that, not the baseline: ASan's allocator keeps its
 *     quarantine and free lists;
 *   - back to the baseline: a proxy on glibc's malloc calls malloc_trim(0) when its last
 *     session ends, so after every wave its RSS must be within RSS_BACK_KIB of the baseline
 *     (measured: about 1.3 MiB above it). Under ASan this is reported, not judged. Neither grows
 * with more waves; what a leak or an unbounded cache keeps grows with every wave. The allowances
 * cover the noise measured on a shared 2-core machine: with glibc the readings after later waves
 * stayed 3 to 7 MiB below the reference (about 50 MiB); with ASan they ranged from 25 MiB below to
 * 12 MiB above it (160 to 210 MiB). A Release proxy made to leak one free() in 1000 (an LD_PRELOAD
 * shim, about 55 bytes a stanza) fails the smoke run. Smaller leaks are the other checks' job: in
 *     an ASan build LeakSanitizer reports every unreachable allocation at the proxy's exit, the
 *     descriptor check catches sessions never closed, and a soak a slow growth over thousands
 *     of sessions. How far the RSS after a wave stays above the baseline is reported, not
 *     judged;
 *   - the proxy ran throughout, exited 0 on SIGTERM, refused no connection, and its stderr has
 *     no sanitizer report.
 *
 * Soak mode (--soak SECONDS): after the warm-up a population of --sessions sessions is kept
 * up for that long (each that ends is replaced), the RSS is sampled every --sample-s seconds
 * and printed as a table. It fails on any stanza check, on descriptors not back after the
 * soak, on the proxy's exit, or when the RSS keeps growing: of the samples taken once the first
 * population has ended (before that the RSS ramps up: buffers, caches, under ASan the
 * quarantine), the median of the last third above the highest of the first third by more than
 * the allowance above (with that sample as the reference). As in the waves, the reference is a
 * high-water mark (the allocator's grows in steps while the load settles, and stays), and the
 * median ignores single spikes; what a leak keeps raises the median further with every minute.
 *
 * Under ASan the spawned proxy gets quarantine_size_mb=64 (instead of 256: the quarantine is
 * resident memory, and a smaller one fills early in wave 1 so that waves compare; freed memory
 * still stays poisoned for the next 64 MiB of frees) and allocator_release_to_os_interval_ms=-1
 * (free pages are never given back: the RSS is the allocator's high-water mark, which only a
 * leak or a higher peak moves; giving pages back every 500 ms cost the proxy 40% more CPU
 * time under this load and made the readings noisier), unless ASAN_OPTIONS sets them already.
 * A build without ASan ignores them.
 *
 * The open-files soft limit is raised to the hard one at start (inherited by the server and
 * the proxy): the proxy needs two descriptors per session, this process and the server one.
 *
 * Output: a table on stdout, progress on stderr, one JSON object to --json FILE. Exit status 0
 * when every check passed, 1 otherwise (with what failed: which session, which stanza, what
 * was expected and what came), 2 on a usage error.
 *
 * usage: bench_load --xmppscope PATH [--sessions N] [--stanzas M] [--soak SECONDS] ...
 */
#include "bench_corpus.h"
#include "bench_harness.h"
#include "bench_load_run.h"
#include "bench_server.h"
#include "bench_tls.h"
#include "bench_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

extern char **environ;

#define DOMAIN "load.test"
#define TICK_MS 100      /* RSS is read this often during a phase */
#define SETTLE_MS 1500   /* after the descriptors are back, before the settled reading */
#define FD_WAIT_MS 20000 /* how long the proxy may take to close every session */
#define STALL_S 30.0     /* a session that receives nothing for this long fails */
/* Growth allowed: at least so many KiB, or this share of the working set (the reference minus
 * the baseline), for a proxy with glibc's malloc and one with ASan's allocator. */
#define RSS_TOL_KIB 2048L
/* A proxy on glibc's malloc trims its heap when its last session ends: how far above the
 * baseline its RSS may stay after a wave. */
#define RSS_BACK_KIB 4096
#define RSS_TOL_PCT 5.0
#define RSS_TOL_ASAN_KIB 8192L
#define RSS_TOL_ASAN_PCT 20.0
#define SOAK_MIN_SAMPLES 6  /* fewer: no trend is judged */
#define WARMUP_STANZAS 200u /* per warm-up session */
#define MAX_WAVES 100u
#define MAX_PROXY_ARGS 16
#define ASAN_QUARANTINE "quarantine_size_mb=64"
#define ASAN_RELEASE "allocator_release_to_os_interval_ms=-1"

/* ---- options ---------------------------------------------------------------------------------
 */

typedef struct opts {
    const char *xmppscope;
    const char *json_file;
    const char *proxy_args[MAX_PROXY_ARGS];
    unsigned n_proxy_args;
    unsigned sessions, stanzas, parallel, window, direct_pct, waves;
    double soak_s, sample_s, timeout_s;
    int smoke, keep_tmp;
} opts;

static opts O;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_load [options]\n"
            "\n"
            "Load test of xmppscope: many concurrent sessions through the proxy to a synthetic\n"
            "server that echoes every stanza; each echo is checked (exactly once, in order,\n"
            "byte exact), both ends count, and the proxy's memory and descriptors are watched.\n"
            "\n"
            "  --xmppscope PATH        the proxy (default: $XMPPSCOPE, else ../proxy/xmppscope\n"
            "                          next to this program)\n"
            "  --sessions N            concurrent sessions (default 200)\n"
            "  --stanzas M             stanzas each session sends, echoed back (default 2000)\n"
            "  --parallel-connects K   sessions setting up at once (default 50)\n"
            "  --window W              stanzas in flight per session (default 16)\n"
            "  --direct-pct P          share of sessions on direct TLS (default 25)\n"
            "  --waves W               load mode: waves of sessions (default 3, at least 2)\n"
            "  --soak SECONDS          soak mode: keep N sessions going that long, RSS table\n"
            "  --sample-s S            soak: RSS sampling interval (default 5)\n"
            "  --timeout S             a wave (or a soak's end) that takes longer fails\n"
            "                          (default 600)\n"
            "  --proxy-arg ARG         one more argument for `xmppscope proxy` (repeat it), e.g.\n"
            "                          --proxy-arg --rules --proxy-arg FILE\n"
            "  --json FILE             write the results as one JSON object to FILE\n"
            "  --smoke                 the CI run: 200 sessions x 1000 stanzas, 2 waves\n"
            "  --keep-tmp              keep the temporary directory (certificates, proxy log)\n"
            "  -h, --help              this help\n"
            "\n"
            "Exit status: 0 when every check passed, 1 otherwise, 2 on a usage error.\n");
}

static int parse_secs(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0) || v > 1e7)
        return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    enum {
        OPT_XS = 256,
        OPT_SESSIONS,
        OPT_STANZAS,
        OPT_PARALLEL,
        OPT_WINDOW,
        OPT_DIRECT,
        OPT_WAVES,
        OPT_SOAK,
        OPT_SAMPLE,
        OPT_TIMEOUT,
        OPT_JSON,
        OPT_PROXY_ARG,
        OPT_SMOKE,
        OPT_KEEP,
        OPT_END,
    };
    static const struct option lo[] = {
        {"xmppscope", required_argument, NULL, OPT_XS},
        {"sessions", required_argument, NULL, OPT_SESSIONS},
        {"stanzas", required_argument, NULL, OPT_STANZAS},
        {"parallel-connects", required_argument, NULL, OPT_PARALLEL},
        {"window", required_argument, NULL, OPT_WINDOW},
        {"direct-pct", required_argument, NULL, OPT_DIRECT},
        {"waves", required_argument, NULL, OPT_WAVES},
        {"soak", required_argument, NULL, OPT_SOAK},
        {"sample-s", required_argument, NULL, OPT_SAMPLE},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"json", required_argument, NULL, OPT_JSON},
        {"proxy-arg", required_argument, NULL, OPT_PROXY_ARG},
        {"smoke", no_argument, NULL, OPT_SMOKE},
        {"keep-tmp", no_argument, NULL, OPT_KEEP},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int set[OPT_END] = {0};
    int c, bad = 0;
    O.sessions = 200;
    O.stanzas = 2000;
    O.parallel = 50;
    O.window = 16;
    O.direct_pct = 25;
    O.waves = 3;
    O.sample_s = 5;
    O.timeout_s = 600;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (c >= OPT_XS && c < OPT_END)
            set[c] = 1;
        switch (c) {
        case OPT_XS:
            O.xmppscope = optarg;
            break;
        case OPT_SESSIONS:
            bad = bn_parse_uint(optarg, 1, 1000000, &O.sessions);
            break;
        case OPT_STANZAS:
            bad = bn_parse_uint(optarg, 1, 100000000, &O.stanzas);
            break;
        case OPT_PARALLEL:
            bad = bn_parse_uint(optarg, 1, 100000, &O.parallel);
            break;
        case OPT_WINDOW:
            bad = bn_parse_uint(optarg, 1, 1000, &O.window);
            break;
        case OPT_DIRECT:
            bad = bn_parse_uint(optarg, 0, 100, &O.direct_pct);
            break;
        case OPT_WAVES:
            bad = bn_parse_uint(optarg, 2, MAX_WAVES, &O.waves);
            break;
        case OPT_SOAK:
            bad = parse_secs(optarg, &O.soak_s);
            break;
        case OPT_SAMPLE:
            bad = parse_secs(optarg, &O.sample_s);
            break;
        case OPT_TIMEOUT:
            bad = parse_secs(optarg, &O.timeout_s);
            break;
        case OPT_JSON:
            O.json_file = optarg;
            break;
        case OPT_PROXY_ARG:
            if (O.n_proxy_args == MAX_PROXY_ARGS) {
                fprintf(stderr, "bench_load: at most %d --proxy-arg\n", MAX_PROXY_ARGS);
                return -1;
            }
            O.proxy_args[O.n_proxy_args++] = optarg;
            break;
        case OPT_SMOKE:
            O.smoke = 1;
            break;
        case OPT_KEEP:
            O.keep_tmp = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "bench_load: bad value '%s' for --%s\n", optarg, lo[c - OPT_XS].name);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bench_load: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (O.smoke) {
        /* Still hundreds of sessions and thousands of stanzas each way; given values win. */
        if (!set[OPT_STANZAS])
            O.stanzas = 1000;
        if (!set[OPT_WAVES])
            O.waves = 2;
        if (!set[OPT_TIMEOUT])
            O.timeout_s = 240;
    }
    if (O.xmppscope == NULL)
        O.xmppscope = bn_default_xmppscope();
    return 0;
}

/* ---- what is measured and checked ------------------------------------------------------------
 */

/* What one phase did: the warm-up, a wave, or the soak. */
typedef struct wave {
    const char *name;
    bl_result r;
    long rss_peak;        /* KiB, the highest reading during the phase */
    unsigned peak_active; /* sessions active at that reading */
    long rss_after;       /* KiB, settled after the phase */
    long fds_after;
    double proxy_cpu_s; /* CPU time the proxy used during the phase */
} wave;

typedef struct sample {
    double t;
    unsigned live, done;
    uint64_t stanzas;
    long rss;
} sample;

#define N_CHECKS 4
enum { C_STANZAS, C_FDS, C_MEMORY, C_PROXY };
static const char *const check_names[N_CHECKS] = {"stanzas", "descriptors", "memory", "proxy"};

typedef struct check {
    int done, ok;
    char detail[1400];
} check;

static struct {
    char tmpdir[PATH_MAX];
    char ca_file[PATH_MAX + 16];
    bn_proc server, proxy;
    int proxy_asan; /* the proxy is built with AddressSanitizer */
    struct sockaddr_in srv_st, srv_dt;
    bl_target target;
    rlim_t nofile;
    long rss_base, fds_base;
    wave waves[MAX_WAVES + 1]; /* [0] is the warm-up */
    unsigned n_waves;
    sample *samples;
    size_t n_samples, cap_samples;
    double next_sample_s;
    check checks[N_CHECKS];
} R;

static void check_set(int which, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A check's verdict; a failure is never overwritten by a later pass. */
static void check_set(int which, int ok, const char *fmt, ...)
{
    check *c = &R.checks[which];
    if (c->done && !c->ok)
        return;
    c->done = 1;
    c->ok = ok;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
    va_end(ap);
}

/* The number of descriptors `pid` holds open, or -1. */
static long count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* ---- processes -------------------------------------------------------------------------------
 */

/* The environment for the proxy: ours, with the ASan options added that ASAN_OPTIONS does not
 * set already. The caller frees it with proxy_env_free(). Returns NULL when out of memory. */
static char **proxy_env(void)
{
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **env = calloc(n + 2, sizeof(*env));
    const char *old = getenv("ASAN_OPTIONS");
    char *asan = malloc(strlen(old ? old : "") + 200);
    if (env == NULL || asan == NULL) {
        free(env);
        free(asan);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "ASAN_OPTIONS=", 13) != 0)
            env[k++] = environ[i];
    strcpy(asan, "ASAN_OPTIONS=");
    strcat(asan, old ? old : "");
    if (old == NULL || strstr(old, "quarantine_size") == NULL)
        strcat(strcat(asan, asan[13] ? ":" : ""), ASAN_QUARANTINE);
    if (old == NULL || strstr(old, "allocator_release_to_os") == NULL)
        strcat(strcat(asan, asan[13] ? ":" : ""), ASAN_RELEASE);
    env[k++] = asan;
    env[k] = NULL;
    return env;
}

static void proxy_env_free(char **env)
{
    size_t k = 0;
    if (env == NULL)
        return;
    while (env[k] != NULL)
        k++;
    free(env[k - 1]); /* ASAN_OPTIONS, ours; the rest is borrowed from environ */
    free(env);
}

/* Whether the binary at `path` carries AddressSanitizer (clang links its runtime in, gcc
 * links libasan: either way the name of its init function is in the file). */
static int has_asan(const char *path)
{
    static const char needle[] = "__asan_init";
    const size_t k = sizeof(needle) - 1;
    char buf[65536];
    size_t have = 0, n;
    int found = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return 0;
    while (!found && (n = fread(buf + have, 1, sizeof(buf) - have, f)) > 0) {
        have += n;
        found = memmem(buf, have, needle, k) != NULL;
        /* Keep the tail: the name may straddle two reads. */
        if (have > k - 1) {
            memmove(buf, buf + have - (k - 1), k - 1);
            have = k - 1;
        }
    }
    fclose(f);
    return found;
}

static int start_proxy(char *err, size_t errcap)
{
    char path[PATH_MAX + 32];
    char **env = proxy_env();
    if (env == NULL) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    snprintf(path, sizeof(path), "%s/xmppscope.err", R.tmpdir);
    const bn_xs_spawn xs = {
        .path = O.xmppscope,
        .st = &R.srv_st,
        .dt = &R.srv_dt,
        .dir = R.tmpdir,
        .ca_file = R.ca_file,
        .extra = O.proxy_args,
        .n_extra = O.n_proxy_args,
        .envp = env,
        .errpath = path,
        .wait_ms = 30000,
    };
    int rc = bn_xs_start(&xs, &R.proxy, &R.target.starttls, &R.target.direct, err, errcap);
    proxy_env_free(env);
    return rc;
}

/* Scans the proxy's stderr for sanitizer reports and refused connections. */
static void scan_proxy_log(char *out, size_t cap)
{
    out[0] = 0;
    FILE *f = fopen(R.proxy.errpath, "r");
    if (f == NULL)
        return;
    char line[1024];
    while (fgets(line, sizeof(line), f) != NULL) {
        int san = (strstr(line, "ERROR: ") != NULL && strstr(line, "Sanitizer") != NULL) ||
                  strstr(line, "runtime error:") != NULL ||
                  (strstr(line, "SUMMARY: ") != NULL && strstr(line, "Sanitizer") != NULL);
        if (san || strstr(line, "refusing") != NULL) {
            line[strcspn(line, "\n")] = 0;
            snprintf(out, cap, "%s", line);
            break;
        }
    }
    fclose(f);
}

/* ---- memory ----------------------------------------------------------------------------------
 */

/* Waits until the proxy holds no more descriptors than `want` (every session closed), then lets
 * it settle and reads its RSS. Returns the descriptors it holds then. */
static long settle(long want, long *rss)
{
    long fds = count_fds(R.proxy.pid);
    for (int waited = 0; fds > want && waited < FD_WAIT_MS; waited += 50) {
        usleep(50000);
        fds = count_fds(R.proxy.pid);
    }
    usleep(SETTLE_MS * 1000);
    *rss = bn_rss_kib(R.proxy.pid);
    return count_fds(R.proxy.pid);
}

static void on_tick(void *user, const bl_progress *p)
{
    wave *w = user;
    long rss = bn_rss_kib(R.proxy.pid);
    if (rss > w->rss_peak) {
        w->rss_peak = rss;
        w->peak_active = p->active;
    }
    if (O.soak_s <= 0 || p->draining || p->elapsed_s < R.next_sample_s)
        return;
    R.next_sample_s += O.sample_s;
    if (R.n_samples == R.cap_samples) {
        size_t ncap = R.cap_samples ? R.cap_samples * 2 : 64;
        sample *ns = realloc(R.samples, ncap * sizeof(*ns));
        if (ns == NULL)
            return; /* the table misses a row; the run goes on */
        R.samples = ns;
        R.cap_samples = ncap;
    }
    sample *s = &R.samples[R.n_samples++];
    s->t = p->elapsed_s;
    s->live = p->live;
    s->done = p->done;
    s->stanzas = p->stanzas;
    s->rss = rss;
    bn_say("soak %6.1f s: %u sessions done, %u open, %llu stanzas each way, RSS %ld KiB", s->t,
           s->done, s->live, (unsigned long long)s->stanzas, rss);
}

/* ---- phases ----------------------------------------------------------------------------------
 */

static uv_loop_t loop;
static struct ssl_ctx_st *cctx;
static bn_corpus corpus;
static unsigned next_id = 1;

/* Whether the proxy exited during the phase (the proxy check says how, with its last words). */
static int proxy_died(const wave *w)
{
    char t[400], e[64];
    if (!bn_proc_reap(&R.proxy, 0))
        return 0;
    bn_file_tail(R.proxy.errpath, t, sizeof(t));
    check_set(C_PROXY, 0, "xmppscope died during %s (%s): ...%s", w->name,
              bn_exit_text(R.proxy.status, e, sizeof(e)), t);
    return 1;
}

/* Runs one phase and the settled reading after it. Returns 0, or -1 when it failed (the
 * checks say why). */
static int run_phase(wave *w, unsigned sessions, unsigned stanzas, unsigned direct_pct, int rolling)
{
    bl_phase_cfg cfg = {
        .loop = &loop,
        .ctx = cctx,
        .domain = DOMAIN,
        .corpus = &corpus,
        .target = &R.target,
        .sessions = sessions,
        .stanzas = stanzas,
        .window = O.window,
        .parallel = O.parallel,
        .direct_pct = direct_pct,
        .first_id = next_id,
        .rolling = rolling,
        .seconds = O.soak_s,
        .timeout_s = O.timeout_s,
        .stall_s = STALL_S,
        .tick_ms = TICK_MS,
        .on_tick = on_tick,
        .user = w,
    };
    w->rss_peak = -1;
    R.next_sample_s = O.sample_s;
    double cpu0 = bn_cpu_seconds(R.proxy.pid);
    bl_phase_run(&cfg, &w->r);
    w->proxy_cpu_s = bn_cpu_seconds(R.proxy.pid) - cpu0;
    next_id = w->r.next_id;
    int died = proxy_died(w);
    if (!w->r.ok)
        check_set(C_STANZAS, 0, "%s: %s", w->name, w->r.err);
    if (!w->r.ok || died)
        return -1;
    bn_say("%s: %u sessions (%u direct TLS), %llu stanzas and %.1f MB each way in %.1f s "
           "(set-up %.1f s); proxy RSS peak %ld KiB with %u active, proxy CPU %.1f s",
           w->name, w->r.sessions, w->r.direct_sessions, (unsigned long long)w->r.stanzas,
           (double)w->r.bytes / 1e6, w->r.seconds, w->r.setup_s, w->rss_peak, w->peak_active,
           w->proxy_cpu_s);
    w->fds_after = settle(R.fds_base, &w->rss_after);
    return 0;
}

/* The median of the RSS samples [from, to), or -1 when out of memory. */
static double median_rss(size_t from, size_t to)
{
    double *v = malloc((to - from + 1) * sizeof(*v)), m;
    if (v == NULL)
        return -1;
    for (size_t i = from; i < to; i++)
        v[i - from] = (double)R.samples[i].rss;
    m = bn_median(v, to - from);
    free(v);
    return m;
}

/* The growth allowed over a reference reading: see the header comment. */
static long tolerance(long ref)
{
    double share = R.proxy_asan ? RSS_TOL_ASAN_PCT : RSS_TOL_PCT;
    long least = R.proxy_asan ? RSS_TOL_ASAN_KIB : RSS_TOL_KIB;
    long pct = (long)((double)(ref - R.rss_base) * share / 100.0);
    return pct > least ? pct : least;
}

static void judge_fds(void)
{
    for (unsigned i = 1; i <= R.n_waves; i++) {
        const wave *w = &R.waves[i];
        if (w->fds_after != R.fds_base) {
            check_set(C_FDS, 0,
                      "%ld descriptors open in the proxy after %s ended (waited up to %.1f "
                      "s), %ld at the baseline: sockets of ended sessions were not closed",
                      w->fds_after, w->name, (FD_WAIT_MS + SETTLE_MS) / 1000.0, R.fds_base);
            return;
        }
    }
    check_set(C_FDS, 1, "%ld open in the proxy at the baseline and after every %s", R.fds_base,
              O.soak_s > 0 ? "phase" : "wave");
}

static void judge_waves(void)
{
    const wave *w1 = &R.waves[1];
    long ref = w1->rss_after > w1->rss_peak ? w1->rss_after : w1->rss_peak;
    long tol = tolerance(ref), worst = 0;
    unsigned at = 0;
    for (unsigned i = 2; i <= R.n_waves; i++) {
        long d = R.waves[i].rss_after - ref;
        if (at == 0 || d > worst) {
            worst = d;
            at = i;
        }
    }
    if (R.proxy_asan) {
        check_set(C_MEMORY, worst <= tol,
                  "RSS after wave %u %+ld KiB against wave 1's highest reading (%ld KiB; "
                  "allowed +%ld); baseline %ld KiB, after wave 1 %ld KiB (%+ld: kept by ASan's "
                  "allocator, not judged)",
                  at, worst, ref, tol, R.rss_base, w1->rss_after, w1->rss_after - R.rss_base);
        return;
    }
    /* With glibc's malloc the proxy gives its memory back when its last session ends: every
     * wave must end near the baseline. */
    long back = 0;
    unsigned back_at = 1;
    for (unsigned i = 1; i <= R.n_waves; i++) {
        if (R.waves[i].rss_after - R.rss_base > back || i == 1) {
            back = R.waves[i].rss_after - R.rss_base;
            back_at = i;
        }
    }
    check_set(C_MEMORY, worst <= tol && back <= RSS_BACK_KIB,
              "RSS after wave %u %+ld KiB against the baseline (%ld KiB; allowed +%d), after "
              "wave %u %+ld KiB against wave 1's highest reading (%ld KiB; allowed +%ld)",
              back_at, back, R.rss_base, RSS_BACK_KIB, at, worst, ref, tol);
}

static void judge_soak(void)
{
    /* The samples before the first population has ended are the ramp (buffers, TLS caches,
     * under ASan the quarantine filling): the trend is judged on the rest. */
    size_t from = 0;
    while (from < R.n_samples && R.samples[from].done < O.sessions)
        from++;
    size_t n = R.n_samples - from;
    if (n < SOAK_MIN_SAMPLES) {
        check_set(C_MEMORY, 1,
                  "only %zu RSS samples after the first %u sessions ended: no trend judged (need "
                  "%d; a longer --soak or a shorter --sample-s)",
                  n, O.sessions, SOAK_MIN_SAMPLES);
        return;
    }
    long ref = 0;
    for (size_t i = from; i < from + n / 3; i++)
        if (R.samples[i].rss > ref)
            ref = R.samples[i].rss;
    double last = median_rss(R.n_samples - n / 3, R.n_samples);
    long tol = tolerance(ref);
    check_set(C_MEMORY, last - (double)ref <= (double)tol,
              "median RSS of the last third of the samples %.0f KiB, %+.0f KiB against the "
              "highest of the first third (%ld KiB, from %.0f s; allowed +%ld)",
              last, last - (double)ref, ref, R.samples[from].t, tol);
}

/* ---- output ----------------------------------------------------------------------------------
 */

static int all_ok(void)
{
    for (int i = 0; i < N_CHECKS; i++)
        if (!R.checks[i].done || !R.checks[i].ok)
            return 0;
    return 1;
}

static void print_table(void)
{
    printf("xmppscope load %s: %u sessions x %u stanzas each way (window %u, %u%% direct TLS, "
           "%u setting up at once), %s\n\n",
           O.soak_s > 0 ? "soak" : "test", O.sessions, O.stanzas, O.window, O.direct_pct,
           O.parallel, O.xmppscope);
    printf("%-8s %9s %7s %12s %9s %8s %8s %10s %8s %16s %10s %4s\n", "phase", "sessions", "direct",
           "stanzas", "MB", "setup s", "run s", "stanzas/s", "proxy %", "RSS peak (act.)",
           "RSS after", "fds");
    for (unsigned i = 0; i <= R.n_waves; i++) {
        const wave *w = &R.waves[i];
        char peak[32] = "-";
        if (w->rss_peak >= 0)
            snprintf(peak, sizeof(peak), "%ld (%u)", w->rss_peak, w->peak_active);
        double secs = w->r.setup_s + w->r.seconds;
        printf("%-8s %9u %7u %12llu %9.1f %8.1f %8.1f %10.0f %8.0f %16s %10ld %4ld\n", w->name,
               w->r.sessions, w->r.direct_sessions, (unsigned long long)w->r.stanzas,
               (double)w->r.bytes / 1e6, w->r.setup_s, w->r.seconds,
               w->r.seconds > 0 ? (double)w->r.stanzas / w->r.seconds : 0.0,
               secs > 0 ? 100.0 * w->proxy_cpu_s / secs : 0.0, peak, w->rss_after, w->fds_after);
    }
    printf("\nproxy baseline (after the warm-up): RSS %ld KiB, %ld descriptors. Stanzas and MB "
           "are per direction, RSS in KiB, proxy %% is its CPU time over the phase's time.\n",
           R.rss_base, R.fds_base);
    if (R.n_samples > 0) {
        printf("\n%10s %10s %8s %14s %10s\n", "elapsed s", "sessions", "open", "stanzas",
               "RSS KiB");
        for (size_t i = 0; i < R.n_samples; i++) {
            const sample *s = &R.samples[i];
            printf("%10.1f %10u %8u %14llu %10ld\n", s->t, s->done, s->live,
                   (unsigned long long)s->stanzas, s->rss);
        }
    }
    printf("\n");
    for (int i = 0; i < N_CHECKS; i++)
        printf("%-12s %-6s %s\n", check_names[i],
               !R.checks[i].done ? "-"
               : R.checks[i].ok  ? "ok"
                                 : "FAILED",
               R.checks[i].done ? R.checks[i].detail : "not reached");
    printf("\nresult: %s\n", all_ok() ? "PASS" : "FAIL");
    fflush(stdout);
}

static void write_json(FILE *f)
{
    fprintf(f, "{\"tool\":\"bench_load\",\"mode\":\"%s\",\"ok\":%s,\"xmppscope\":",
            O.soak_s > 0 ? "soak" : "load", all_ok() ? "true" : "false");
    bn_json_str(f, O.xmppscope);
    fprintf(f,
            ",\"sessions\":%u,\"stanzas_per_session\":%u,\"window\":%u,\"parallel_connects\":%u,"
            "\"direct_pct\":%u,\"proxy_asan\":%s,\"soak_s\":%g,\"sample_s\":%g,\"rss_baseline_"
            "kib\":%ld,"
            "\"fds_baseline\":%ld,\"phases\":[",
            O.sessions, O.stanzas, O.window, O.parallel, O.direct_pct,
            R.proxy_asan ? "true" : "false", O.soak_s, O.sample_s, R.rss_base, R.fds_base);
    for (unsigned i = 0; i <= R.n_waves; i++) {
        const wave *w = &R.waves[i];
        fprintf(f,
                "%s{\"name\":\"%s\",\"sessions\":%u,\"direct_sessions\":%u,\"stanzas\":%llu,"
                "\"bytes\":%llu,\"setup_s\":%.3f,\"seconds\":%.3f,\"proxy_cpu_s\":%.2f,"
                "\"rss_peak_kib\":%ld,\"peak_active\":%u,\"rss_after_kib\":%ld,"
                "\"fds_after\":%ld}",
                i ? "," : "", w->name, w->r.sessions, w->r.direct_sessions,
                (unsigned long long)w->r.stanzas, (unsigned long long)w->r.bytes, w->r.setup_s,
                w->r.seconds, w->proxy_cpu_s, w->rss_peak, w->peak_active, w->rss_after,
                w->fds_after);
    }
    fprintf(f, "],\"samples\":[");
    for (size_t i = 0; i < R.n_samples; i++) {
        const sample *s = &R.samples[i];
        fprintf(f,
                "%s{\"t_s\":%.1f,\"sessions_done\":%u,\"open\":%u,\"stanzas\":%llu,"
                "\"rss_kib\":%ld}",
                i ? "," : "", s->t, s->done, s->live, (unsigned long long)s->stanzas, s->rss);
    }
    fprintf(f, "],\"checks\":{");
    for (int i = 0; i < N_CHECKS; i++) {
        fprintf(f, "%s\"%s\":{\"ok\":%s,\"detail\":", i ? "," : "", check_names[i],
                R.checks[i].done && R.checks[i].ok ? "true" : "false");
        bn_json_str(f, R.checks[i].done ? R.checks[i].detail : "not reached");
        fprintf(f, "}");
    }
    fprintf(f, "}}\n");
}

/* ---- set-up ----------------------------------------------------------------------------------
 */

/* The soft open-files limit goes up to the hard one (root may raise the hard one too): the
 * proxy needs two descriptors per session, this process and the server one each. */
static int raise_nofile(void)
{
    rlim_t want = (rlim_t)O.sessions * 2 + 256;
    R.nofile = bn_raise_nofile(want);
    if (R.nofile < want) {
        bn_say("the open-files limit is %llu and cannot be raised (that needs CAP_SYS_RESOURCE): "
               "%u sessions need about %llu (two per session in the proxy); use fewer --sessions "
               "or raise the hard limit (ulimit -Hn)",
               (unsigned long long)R.nofile, O.sessions, (unsigned long long)want);
        return -1;
    }
    bn_say("open-files limit raised to %llu", (unsigned long long)R.nofile);
    return 0;
}

/* The warm-up, the baseline, then the waves or the soak. */
static void run_all(void)
{
    wave *w = &R.waves[0];
    w->name = "warm-up";
    long pre_fds = count_fds(R.proxy.pid);
    /* Two sessions, one on each kind of TLS, so that the first forged certificate, the
     * upstream TLS session caches and the parser's pools are in the baseline. */
    R.fds_base = pre_fds;
    if (run_phase(w, 2, WARMUP_STANZAS < O.stanzas ? WARMUP_STANZAS : O.stanzas, 50, 0) < 0)
        return;
    R.fds_base = w->fds_after;
    R.rss_base = w->rss_after;
    if (R.fds_base != pre_fds)
        bn_say("note: the proxy held %ld descriptors before the warm-up and %ld after it", pre_fds,
               R.fds_base);
    bn_say("baseline: proxy RSS %ld KiB, %ld descriptors", R.rss_base, R.fds_base);

    if (O.soak_s > 0) {
        w = &R.waves[1];
        w->name = "soak";
        R.n_waves = 1;
        int rc = run_phase(w, O.sessions, O.stanzas, O.direct_pct, 1);
        if (rc == 0) {
            check_set(C_STANZAS, 1,
                      "%u sessions (%u direct TLS) and %llu stanzas (%.1f MB) each way in %.0f s: "
                      "each echoed once, in order, byte exact; both ends counted them all",
                      w->r.sessions, w->r.direct_sessions, (unsigned long long)w->r.stanzas,
                      (double)w->r.bytes / 1e6, w->r.seconds);
            judge_fds();
            judge_soak();
        }
        return;
    }
    uint64_t stanzas = 0, bytes = 0;
    unsigned sessions = 0;
    for (unsigned i = 1; i <= O.waves; i++) {
        static char names[MAX_WAVES + 1][16];
        w = &R.waves[i];
        snprintf(names[i], sizeof(names[i]), "wave %u", i);
        w->name = names[i];
        R.n_waves = i;
        if (run_phase(w, O.sessions, O.stanzas, O.direct_pct, 0) < 0)
            return;
        stanzas += w->r.stanzas;
        bytes += w->r.bytes;
        sessions += w->r.sessions;
        bn_say("%s settled: proxy RSS %ld KiB, %ld descriptors", w->name, w->rss_after,
               w->fds_after);
    }
    check_set(C_STANZAS, 1,
              "%u sessions and %llu stanzas (%.1f MB) each way in %u waves: each echoed once, in "
              "order, byte exact; both ends counted them all",
              sessions, (unsigned long long)stanzas, (double)bytes / 1e6, O.waves);
    judge_fds();
    judge_waves();
}

int main(int argc, char **argv)
{
    char err[800], e[64];
    int status = 1, loop_open = 0;

    bn_say_as("bench_load");
    if (parse_args(argc, argv) < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    if (access(O.xmppscope, X_OK) != 0) {
        bn_say("no xmppscope at %s: build it, or pass --xmppscope PATH", O.xmppscope);
        return 1;
    }
    if (raise_nofile() < 0)
        return 1;
    if (bn_tmpdir_make(R.tmpdir, sizeof(R.tmpdir), "xs-load") < 0) {
        bn_say("cannot make a temporary directory: %s", strerror(errno));
        return 1;
    }
    snprintf(R.ca_file, sizeof(R.ca_file), "%s/ca.crt", R.tmpdir);
    if (bn_pki_make(R.tmpdir, DOMAIN, err, sizeof(err)) < 0) {
        bn_say("%s", err);
        goto out;
    }
    if (bn_corpus_make(&corpus, 1u << 20, 4242) < 0) {
        bn_say("out of memory");
        goto out;
    }
    cctx = bn_tls_client_ctx(R.ca_file, err, sizeof(err));
    if (cctx == NULL) {
        bn_say("%s", err);
        goto out;
    }
    R.proxy_asan = has_asan(O.xmppscope);
    /* The server gets a process of its own, on sockets bound here. */
    if (bn_server_start(&R.server, R.tmpdir, DOMAIN, &R.srv_st, &R.srv_dt, err, sizeof(err)) < 0 ||
        start_proxy(err, sizeof(err)) < 0) {
        bn_say("%s", err);
        goto out;
    }
    bn_say("%s (pid %d%s) on ports %u (STARTTLS) and %u (direct TLS); server pid %d; corpus %zu "
           "stanzas of %zu to %zu bytes",
           O.xmppscope, (int)R.proxy.pid, R.proxy_asan ? ", ASan" : "",
           ntohs(R.target.starttls.sin_port), ntohs(R.target.direct.sin_port), (int)R.server.pid,
           corpus.n, corpus.min, corpus.max);
    uv_loop_init(&loop);
    loop_open = 1;

    run_all();

    int was_running = bn_proc_stop(&R.proxy, 20000);
    char found[1024];
    scan_proxy_log(found, sizeof(found));
    if (!was_running) {
        check_set(C_PROXY, 0, "xmppscope had exited before the end (%s)",
                  bn_exit_text(R.proxy.status, e, sizeof(e)));
    } else if (!WIFEXITED(R.proxy.status) || WEXITSTATUS(R.proxy.status) != 0) {
        char t[600];
        bn_file_tail(R.proxy.errpath, t, sizeof(t));
        check_set(C_PROXY, 0, "xmppscope ended with %s after SIGTERM: ...%s",
                  bn_exit_text(R.proxy.status, e, sizeof(e)), t);
    } else if (found[0]) {
        check_set(C_PROXY, 0, "xmppscope's stderr says: %s", found);
    } else {
        check_set(C_PROXY, 1,
                  "ran throughout, refused nothing, exited 0 on SIGTERM, no "
                  "sanitizer report");
    }
    status = all_ok() ? 0 : 1;
    print_table();
    for (int i = 0; i < N_CHECKS; i++)
        if (R.checks[i].done && !R.checks[i].ok)
            bn_say("FAILED: %s: %s", check_names[i], R.checks[i].detail);
    if (O.json_file != NULL) {
        FILE *f = fopen(O.json_file, "w");
        if (f == NULL) {
            bn_say("cannot write %s: %s", O.json_file, strerror(errno));
            status = 1;
        } else {
            write_json(f);
            if (fclose(f) != 0) {
                bn_say("cannot write %s: %s", O.json_file, strerror(errno));
                status = 1;
            }
        }
    }
out:
    bn_proc_stop(&R.proxy, 20000);
    if (R.server.pid > 0) {
        bn_proc_stop(&R.server, 20000);
        if (!WIFEXITED(R.server.status) || WEXITSTATUS(R.server.status) != 0) {
            bn_say("the synthetic server ended with %s",
                   bn_exit_text(R.server.status, e, sizeof(e)));
            status = 1;
        }
    }
    if (loop_open && uv_loop_close(&loop) != 0)
        bn_say("warning: the client loop still has handles");
    bn_tls_ctx_free(cctx);
    bn_corpus_free(&corpus);
    free(R.samples);
    if (O.keep_tmp)
        bn_say("kept %s", R.tmpdir);
    else
        bn_tmpdir_remove(R.tmpdir);
    return status;
}
