/* The benchmarks' process side. See bench_harness.h. */
#include "bench_harness.h"

#include "bench_server.h"
#include "bench_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define XS_COMMON_ARGS 16 /* the arguments bn_xs_start() always passes */
#define XS_MAX_EXTRA 16

/* ---- messages and options ------------------------------------------------------------------ */

static const char *say_prog = "bench";

void bn_say_as(const char *prog)
{
    say_prog = prog;
}

void bn_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", say_prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

int bn_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

const char *bn_default_xmppscope(void)
{
    static char path[PATH_MAX + 32];
    const char *env = getenv("XMPPSCOPE");
    char self[PATH_MAX];
    if (env != NULL && env[0])
        return env;
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return "xmppscope";
    self[n] = 0;
    snprintf(path, sizeof(path), "%s/../proxy/xmppscope", dirname(self));
    return path;
}

/* ---- the environment ------------------------------------------------------------------------ */

int bn_tmpdir_make(char *dir, size_t cap, const char *name)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, cap, "%s/%s-XXXXXX", base && base[0] ? base : "/tmp", name);
    return mkdtemp(dir) == NULL ? -1 : 0;
}

void bn_tmpdir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[PATH_MAX + 300];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

rlim_t bn_raise_nofile(rlim_t want)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
        struct rlimit more = {want, want};
        if (setrlimit(RLIMIT_NOFILE, &more) == 0)
            rl = more;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur;
}

void bn_loopback(struct sockaddr_in *a, int port)
{
    memset(a, 0, sizeof(*a));
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

int bn_listen_loopback(struct sockaddr_in *a)
{
    socklen_t len = sizeof(*a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bn_loopback(a, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)a, sizeof(*a)) < 0 || listen(fd, 4096) < 0 ||
        getsockname(fd, (struct sockaddr *)a, &len) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* ---- child processes ------------------------------------------------------------------------ */

int bn_proc_spawn(bn_proc *p, const char *const argv[], char *const envp[], const char *errpath,
                  char *err, size_t errcap)
{
    posix_spawn_file_actions_t fa;
    memset(p, 0, sizeof(*p));
    snprintf(p->errpath, sizeof(p->errpath), "%s", errpath);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, p->errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int rc = posix_spawnp(&p->pid, argv[0], &fa, NULL, (char *const *)argv,
                          envp != NULL ? envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        p->pid = 0;
        snprintf(err, errcap, "cannot start %s: %s", argv[0], strerror(rc));
        return -1;
    }
    return 0;
}

int bn_proc_reap(bn_proc *p, int wait_ms)
{
    if (p->pid <= 0)
        return p->exited;
    for (int waited = 0; !p->exited; waited += 10) {
        if (waitpid(p->pid, &p->status, WNOHANG) == p->pid) {
            p->exited = 1;
            break;
        }
        if (waited >= wait_ms)
            return 0;
        usleep(10000);
    }
    return 1;
}

int bn_proc_stop(bn_proc *p, int grace_ms)
{
    pid_t kids[16];
    size_t nk;
    if (p->pid <= 0 || p->exited)
        return 0;
    /* sslsplit works in a child process; it must not outlive the run. */
    nk = bn_children(p->pid, kids, 16);
    kill(p->pid, SIGTERM);
    if (!bn_proc_reap(p, grace_ms)) {
        bn_say("pid %d did not stop within %d s of SIGTERM: killing it", (int)p->pid,
               grace_ms / 1000);
        kill(p->pid, SIGKILL);
        bn_proc_reap(p, 5000);
    }
    for (size_t i = 0; i < nk; i++) {
        for (int waited = 0; waited < 2000 && kill(kids[i], 0) == 0; waited += 10)
            usleep(10000);
        if (kill(kids[i], 0) == 0)
            kill(kids[i], SIGKILL);
    }
    return 1;
}

int bn_proc_code(const bn_proc *p)
{
    return WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1;
}

const char *bn_exit_text(int status, char *buf, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(buf, cap, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, cap, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, cap, "status 0x%x", status);
    return buf;
}

void bn_file_tail(const char *path, char *out, size_t cap)
{
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)cap - 1 ? size - (long)cap + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = 0;
    for (char *c = out; *c; c++)
        if (*c == '\n')
            *c = ' ';
}

/* ---- the synthetic server and xmppscope ----------------------------------------------------- */

int bn_server_start(bn_proc *p, const char *dir, const char *domain, struct sockaddr_in *st,
                    struct sockaddr_in *dt, char *err, size_t errcap)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->errpath, sizeof(p->errpath), "(stderr)");
    int sfd = bn_listen_loopback(st), dfd = bn_listen_loopback(dt);
    if (sfd < 0 || dfd < 0) {
        snprintf(err, errcap, "cannot listen on 127.0.0.1: %s", strerror(errno));
        if (sfd >= 0)
            close(sfd);
        if (dfd >= 0)
            close(dfd);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int rc = bn_server_main(sfd, dfd, dir, domain);
        fflush(NULL);
        _exit(rc);
    }
    int e = errno;
    close(sfd);
    close(dfd);
    if (pid < 0) {
        snprintf(err, errcap, "fork: %s", strerror(e));
        return -1;
    }
    p->pid = pid;
    return 0;
}

/* Reads xmppscope's "listening on 127.0.0.1:PORT (client TLS: MODE)" lines until both ports
 * are known, the process exits or wait_ms passed. */
static int wait_listening(bn_proc *p, int wait_ms, struct sockaddr_in *st, struct sockaddr_in *dt,
                          char *err, size_t errcap)
{
    static const char at_text[] = "listening on 127.0.0.1:";
    int sp = 0, dp = 0;
    for (int waited = 0; waited < wait_ms; waited += 10) {
        FILE *f = fopen(p->errpath, "r");
        char line[1024];
        while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
            const char *at = strstr(line, at_text);
            if (at == NULL)
                continue;
            int port = atoi(at + strlen(at_text));
            if (strstr(line, "client TLS: direct") != NULL)
                dp = port;
            else if (strstr(line, "client TLS: starttls") != NULL)
                sp = port;
        }
        if (f != NULL)
            fclose(f);
        if (sp > 0 && dp > 0) {
            bn_loopback(st, sp);
            bn_loopback(dt, dp);
            return 0;
        }
        if (bn_proc_reap(p, 0)) {
            char t[600], e[64];
            bn_file_tail(p->errpath, t, sizeof(t));
            snprintf(err, errcap, "xmppscope exited at start (%s): %s",
                     bn_exit_text(p->status, e, sizeof(e)), t);
            return -1;
        }
        usleep(10000);
    }
    snprintf(err, errcap, "xmppscope did not report its listening ports within %d s",
             wait_ms / 1000);
    return -1;
}

int bn_xs_start(const bn_xs_spawn *cfg, bn_proc *p, struct sockaddr_in *st, struct sockaddr_in *dt,
                char *err, size_t errcap)
{
    char up[64], upd[64];
    const char *argv[XS_COMMON_ARGS + XS_MAX_EXTRA + 1] = {
        cfg->path,           "proxy",       "--listen",   "127.0.0.1:0",
        "--listen-tls",      "127.0.0.1:0", "--upstream", up,
        "--upstream-direct", upd,           "--ca-dir",   cfg->dir,
        "--upstream-ca",     cfg->ca_file,  "--format",   "none"};
    if (cfg->n_extra > XS_MAX_EXTRA) {
        snprintf(err, errcap, "at most %d more arguments for xmppscope", XS_MAX_EXTRA);
        return -1;
    }
    snprintf(up, sizeof(up), "127.0.0.1:%u", ntohs(cfg->st->sin_port));
    snprintf(upd, sizeof(upd), "127.0.0.1:%u", ntohs(cfg->dt->sin_port));
    for (unsigned i = 0; i < cfg->n_extra; i++)
        argv[XS_COMMON_ARGS + i] = cfg->extra[i];
    if (bn_proc_spawn(p, argv, cfg->envp, cfg->errpath, err, errcap) < 0)
        return -1;
    if (wait_listening(p, cfg->wait_ms, st, dt, err, errcap) < 0) {
        bn_proc_stop(p, 10000);
        return -1;
    }
    return 0;
}
