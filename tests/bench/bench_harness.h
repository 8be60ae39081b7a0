/* The process side shared by the proxy benchmark (bench_proxy.c) and the load test
 * (bench_load.c): messages on stderr, the temporary directory, the open-files limit, child
 * processes (spawned with their stderr in a file, stopped with SIGTERM and then SIGKILL), the
 * synthetic server forked on sockets bound here, and xmppscope spawned in front of it with the
 * ports it listens on read from its stderr.
 *
 * Test code, like the rest of tests/bench: names start with bn_, one thread per process.
 */
#ifndef XS_BENCH_BENCH_HARNESS_H
#define XS_BENCH_BENCH_HARNESS_H

#include <limits.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <netinet/in.h>

/* ---- messages and options ------------------------------------------------------------------ */

/* Names the program in front of every bn_say() line ("bench" unless set). `prog` is borrowed
 * for the life of the process. */
void bn_say_as(const char *prog);
/* One line on stderr: "PROG: " and the formatted text. */
void bn_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A decimal number from min to max, nothing else in `s`. Returns 0, or -1 with *out unchanged. */
int bn_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);

/* $XMPPSCOPE, else ../proxy/xmppscope next to this program, else "xmppscope". The result is
 * the environment's or a static buffer's: not to be freed. */
const char *bn_default_xmppscope(void);

/* ---- the environment ------------------------------------------------------------------------ */

/* Makes $TMPDIR/NAME-XXXXXX (/tmp without TMPDIR) into dir. Returns 0, or -1 with errno set. */
int bn_tmpdir_make(char *dir, size_t cap, const char *name);
/* Removes the files in dir, then dir (the benchmarks make no subdirectories). */
void bn_tmpdir_remove(const char *dir);

/* Raises the soft open-files limit to the hard one, after trying to raise the hard one to
 * `want` (that needs CAP_SYS_RESOURCE). Returns the soft limit in force afterwards. */
rlim_t bn_raise_nofile(rlim_t want);

/* 127.0.0.1 and `port` in *a. */
void bn_loopback(struct sockaddr_in *a, int port);
/* A listening socket on 127.0.0.1 and an ephemeral port, its address in *a. Returns the
 * descriptor (close-on-exec), or -1 with errno set. */
int bn_listen_loopback(struct sockaddr_in *a);

/* ---- child processes ------------------------------------------------------------------------ */

/* A child process. The owner embeds it; nothing in it is allocated. */
typedef struct bn_proc {
    pid_t pid;                   /* 0: never started */
    char errpath[PATH_MAX + 32]; /* where its stderr goes */
    int exited, status;          /* reaped, and its wait status then */
} bn_proc;

/* Starts argv (argv[0] searched on PATH unless it holds a '/') with stdin and stdout on
 * /dev/null and stderr into the file `errpath` (made or truncated), in the environment envp
 * (NULL: ours). Returns 0, or -1 with the reason in err. */
int bn_proc_spawn(bn_proc *p, const char *const argv[], char *const envp[], const char *errpath,
                  char *err, size_t errcap);
/* Waits up to wait_ms for p to exit (0: only looks). Returns 1 once it has been reaped. */
int bn_proc_reap(bn_proc *p, int wait_ms);
/* SIGTERM, up to grace_ms for the process to exit, then SIGKILL (said with bn_say()); then its
 * direct children at that moment (sslsplit works in one) get 2 s before SIGKILL too. Returns 1
 * when it was still running, 0 when it had been reaped already or never started; its wait
 * status is in p->status either way. */
int bn_proc_stop(bn_proc *p, int grace_ms);
/* p's exit status, or -1 when a signal ended it. */
int bn_proc_code(const bn_proc *p);
/* "exit status N", "killed by signal N (NAME)", ...: a wait status in words, in buf. */
const char *bn_exit_text(int status, char *buf, size_t cap);
/* The last cap - 1 bytes of the file at path on one line (newlines become spaces); empty when
 * it cannot be read. */
void bn_file_tail(const char *path, char *out, size_t cap);

/* ---- the synthetic server and xmppscope ----------------------------------------------------- */

/* Binds the synthetic server's two sockets on 127.0.0.1 (their addresses in *st, for STARTTLS,
 * and *dt, for direct TLS) and forks a child that serves them as `domain` with dir's test PKI
 * (bn_server_main()). Its stderr is ours. Returns 0, or -1 with the reason in err. */
int bn_server_start(bn_proc *p, const char *dir, const char *domain, struct sockaddr_in *st,
                    struct sockaddr_in *dt, char *err, size_t errcap);

/* How to spawn `xmppscope proxy` in front of the synthetic server. */
typedef struct bn_xs_spawn {
    const char *path;                  /* the binary */
    const struct sockaddr_in *st, *dt; /* the server: --upstream, --upstream-direct */
    const char *dir;                   /* --ca-dir: the test CA made by bn_pki_make() */
    const char *ca_file;               /* --upstream-ca */
    const char *const *extra;          /* more arguments, after the common ones */
    unsigned n_extra;
    char *const *envp;   /* NULL: ours */
    const char *errpath; /* its stderr */
    int wait_ms;         /* how long it may take to report its ports */
} bn_xs_spawn;

/* Spawns xmppscope listening on ephemeral ports of 127.0.0.1 for STARTTLS and for direct TLS,
 * with --format none, and waits until its stderr says which ports (*st and *dt). Returns 0, or
 * -1 with the reason in err and the process stopped. */
int bn_xs_start(const bn_xs_spawn *cfg, bn_proc *p, struct sockaddr_in *st, struct sockaddr_in *dt,
                char *err, size_t errcap);

#endif
