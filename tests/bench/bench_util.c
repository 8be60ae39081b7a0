/* Helpers of the proxy benchmark. See bench_util.h. */
#include "bench_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

void bn_buf_init(bn_buf *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

int bn_buf_reserve(bn_buf *b, size_t n)
{
    if (n > b->max || b->len > b->max - n)
        return BN_ETOOBIG;
    if (b->len + n <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap < b->len + n)
        ncap *= 2;
    if (ncap > b->max)
        ncap = b->max;
    char *nd = realloc(b->data, ncap);
    if (nd == NULL)
        return BN_ENOMEM;
    b->data = nd;
    b->cap = ncap;
    return 0;
}

int bn_buf_append(bn_buf *b, const void *p, size_t n)
{
    int rc = bn_buf_reserve(b, n);
    if (rc < 0)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void bn_buf_consume(bn_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void bn_buf_free(bn_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

uint64_t bn_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

long bn_rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

/* The parent pid of `pid` from /proc/PID/stat, or -1. */
static pid_t parent_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The command name is in parentheses and may hold spaces: read after the last ')'. */
    const char *p = strrchr(buf, ')');
    int ppid;
    if (p == NULL || sscanf(p + 1, " %*c %d", &ppid) != 1)
        return -1;
    return (pid_t)ppid;
}

size_t bn_children(pid_t pid, pid_t *pids, size_t cap)
{
    size_t n = 0;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < cap) {
        char *end;
        long child = strtol(e->d_name, &end, 10);
        if (*end != 0 || child <= 0 || child == pid)
            continue;
        if (parent_of((pid_t)child) == pid)
            pids[n++] = (pid_t)child;
    }
    closedir(d);
    return n;
}

long bn_rss_tree_kib(pid_t pid)
{
    pid_t kids[64];
    long total = bn_rss_kib(pid);
    if (total < 0)
        return -1;
    size_t n = bn_children(pid, kids, 64);
    for (size_t i = 0; i < n; i++) {
        long r = bn_rss_kib(kids[i]);
        if (r > 0)
            total += r;
    }
    return total;
}

double bn_cpu_tree_seconds(pid_t pid)
{
    pid_t kids[64];
    double total = bn_cpu_seconds(pid);
    if (total < 0)
        return -1;
    size_t n = bn_children(pid, kids, 64);
    for (size_t i = 0; i < n; i++) {
        double c = bn_cpu_seconds(kids[i]);
        if (c > 0)
            total += c;
    }
    return total;
}

double bn_cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    /* Fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt
     * cmajflt utime stime. */
    if (p == NULL ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (double)(ut + st) / (double)(hz > 0 ? hz : 100);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bn_median(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double bn_quantile(double *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

void bn_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

const char *bn_strerror(int err)
{
    switch (err) {
    case BN_ENOMEM:
        return "out of memory";
    case BN_ETOOBIG:
        return "buffer limit exceeded";
    case BN_ETLS:
        return "TLS failure";
    case BN_ECLOSED:
        return "TLS connection closed";
    case BN_EPROTO:
        return "protocol error";
    default:
        return err < 0 && err > -4096 ? uv_strerror(err) : "unknown error";
    }
}
