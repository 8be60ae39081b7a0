/* Small helpers shared by the proxy benchmark's files: a growable byte buffer with a hard cap,
 * clocks, process statistics from /proc, and order statistics.
 *
 * The benchmark is test code: it lives in tests/bench and is never linked into xmppscope. Its
 * names start with bn_. Everything runs on one thread per process.
 */
#ifndef XS_BENCH_BENCH_UTIL_H
#define XS_BENCH_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* Errors of the benchmark's own functions (libuv's negative codes pass through unchanged). */
#define BN_ENOMEM (-30001)
#define BN_ETOOBIG (-30002)
#define BN_ETLS (-30003)
#define BN_ECLOSED (-30004)
#define BN_EPROTO (-30005)

/* A contiguous byte buffer that grows up to `max` bytes. The owner embeds it and frees it with
 * bn_buf_free(). */
typedef struct bn_buf {
    char *data;
    size_t len, cap, max;
} bn_buf;

void bn_buf_init(bn_buf *b, size_t max);
/* Makes room for `n` more bytes after len. Returns 0, BN_ETOOBIG past max, or BN_ENOMEM. */
int bn_buf_reserve(bn_buf *b, size_t n);
/* Appends `n` bytes. Same returns as bn_buf_reserve(). */
int bn_buf_append(bn_buf *b, const void *p, size_t n);
/* Drops the first `n` bytes. */
void bn_buf_consume(bn_buf *b, size_t n);
void bn_buf_free(bn_buf *b);

/* Monotonic time in nanoseconds. */
uint64_t bn_now_ns(void);

/* Resident set size of process `pid` in KiB (VmRSS), or -1 when it cannot be read. */
long bn_rss_kib(pid_t pid);
/* The sum of VmRSS over `pid` and its direct children, in KiB (sslsplit keeps helpers). */
long bn_rss_tree_kib(pid_t pid);
/* User plus system CPU time of `pid` so far, in seconds, or -1. */
double bn_cpu_seconds(pid_t pid);
/* The same summed over `pid` and its direct children. */
double bn_cpu_tree_seconds(pid_t pid);
/* Fills pids with up to cap direct children of `pid`; returns how many. */
size_t bn_children(pid_t pid, pid_t *pids, size_t cap);

/* The median of n values (the mean of the two middle ones for even n); sorts `v`. 0 for n == 0. */
double bn_median(double *v, size_t n);
/* The q-quantile (0 <= q <= 1, nearest rank) of n values; sorts `v`. 0 for n == 0. */
double bn_quantile(double *v, size_t n, double q);

/* Writes s to f as a JSON string: in quotes, with '"', '\\' and control characters escaped. */
void bn_json_str(FILE *f, const char *s);

/* A description of a benchmark or libuv error code. */
const char *bn_strerror(int err);

#endif
