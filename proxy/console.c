/* The console's writer thread and its bounded queue. See console.h. */
#include "proxy/console.h"

#include "inspect/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

/* A queue buffer larger than this is given back once it has been written out, so that a burst
 * does not keep megabytes for the proxy's life. */
#define KEEP_BUFFER ((size_t)64 << 10)

typedef struct qbuf {
    char *p;
    size_t len, cap;
} qbuf;

struct xs_console {
    int fd;
    size_t cap;
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t wake; /* to the writer: there is something to write, or stop */
    uv_cond_t done; /* to xs_console_free(): the writer has written what it took */
    qbuf q;         /* queued, under mu */
    bool writing;   /* the writer holds a batch it took from q */
    size_t taken;   /* ... of this many bytes */
    bool stop;
    bool orphan;      /* xs_console_free() gave up waiting: the writer frees the console itself */
    bool failed;      /* writing failed for good */
    uint64_t dropped; /* events dropped, in all */
    uint64_t unsaid;  /* events dropped and not yet said on stderr */
    uint64_t unsaid_from; /* ... since the n-th event of the run */
    uint64_t events;
};

/* Writes all of [p, p + n) to fd. Returns 0 or -1 (the descriptor failed for good). */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void say_dropped(xs_console *c)
{
    char line[256];
    int n = snprintf(line, sizeof(line),
                     "xmppscope: the console did not keep up: %llu events were not shown (the "
                     "terminal or pipe on standard output read too slowly; the --write log keeps "
                     "every event)\n",
                     (unsigned long long)c->unsaid);
    if (n > 0)
        (void)write_all(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line));
}

static void console_destroy(xs_console *c)
{
    uv_cond_destroy(&c->wake);
    uv_cond_destroy(&c->done);
    uv_mutex_destroy(&c->mu);
    free(c->q.p);
    free(c);
}

static void writer(void *arg)
{
    xs_console *c = arg;
    qbuf batch = {0};
    uv_mutex_lock(&c->mu);
    for (;;) {
        while (c->q.len == 0 && !c->stop)
            uv_cond_wait(&c->wake, &c->mu);
        if (c->q.len == 0 && c->stop)
            break;
        /* Take everything queued; the loop goes on queueing into the other buffer. */
        qbuf t = c->q;
        c->q = batch;
        c->q.len = 0;
        batch = t;
        c->writing = true;
        c->taken = batch.len;
        bool failed = c->failed;
        uv_mutex_unlock(&c->mu);
        int rc = failed ? -1 : write_all(c->fd, batch.p, batch.len);
        if (batch.cap > KEEP_BUFFER) {
            free(batch.p);
            batch = (qbuf){0};
        }
        batch.len = 0;
        uv_mutex_lock(&c->mu);
        c->writing = false;
        if (rc < 0)
            c->failed = true;
        if (c->unsaid > 0 && c->q.len == 0 && !c->failed) {
            say_dropped(c);
            c->unsaid = 0;
        }
        uv_cond_broadcast(&c->done);
    }
    bool orphan = c->orphan;
    uv_mutex_unlock(&c->mu);
    free(batch.p);
    if (orphan)
        console_destroy(c);
}

int xs_console_new(int fd, size_t cap, xs_console **out)
{
    *out = NULL;
    xs_console *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return XS_ENOMEM;
    c->fd = fd;
    c->cap = cap != 0 ? cap : XS_CONSOLE_QUEUE_MAX;
    if (uv_mutex_init(&c->mu) != 0) {
        free(c);
        return XS_ENOMEM;
    }
    if (uv_cond_init(&c->wake) != 0 || uv_cond_init(&c->done) != 0 ||
        uv_thread_create(&c->thread, writer, c) != 0) {
        /* uv_cond_destroy() of one that failed to init is not allowed; this is the start of the
         * program and it exits: the little lost here does not matter. */
        return XS_EIO;
    }
    *out = c;
    return 0;
}

int xs_console_write(void *ctx, const char *data, size_t len)
{
    xs_console *c = ctx;
    int rc = 0;
    uv_mutex_lock(&c->mu);
    c->events++;
    if (c->failed) {
        rc = XS_EIO;
    } else if (len > c->cap - c->q.len) {
        c->dropped++;
        c->unsaid++;
    } else {
        if (c->q.len + len > c->q.cap) {
            size_t ncap = c->q.cap != 0 ? c->q.cap : 4096;
            while (ncap < c->q.len + len)
                ncap *= 2;
            if (ncap > c->cap)
                ncap = c->cap;
            char *np = realloc(c->q.p, ncap);
            if (np == NULL) {
                c->dropped++;
                c->unsaid++;
                uv_mutex_unlock(&c->mu);
                return 0;
            }
            c->q.p = np;
            c->q.cap = ncap;
        }
        memcpy(c->q.p + c->q.len, data, len);
        c->q.len += len;
        uv_cond_signal(&c->wake);
    }
    uv_mutex_unlock(&c->mu);
    return rc;
}

uint64_t xs_console_dropped(const xs_console *c)
{
    xs_console *m = (xs_console *)c; /* the mutex, not the console, changes */
    uv_mutex_lock(&m->mu);
    uint64_t n = m->dropped;
    uv_mutex_unlock(&m->mu);
    return n;
}

size_t xs_console_free(xs_console *c, unsigned wait_ms)
{
    if (c == NULL)
        return 0;
    uv_mutex_lock(&c->mu);
    uint64_t deadline = uv_hrtime() + (uint64_t)wait_ms * 1000000u;
    while ((c->q.len > 0 || c->writing) && !c->failed) {
        uint64_t now = uv_hrtime();
        if (now >= deadline || uv_cond_timedwait(&c->done, &c->mu, deadline - now) != 0)
            break;
    }
    bool stuck = c->writing;
    size_t lost = c->q.len + (stuck ? c->taken : 0);
    if (c->unsaid > 0)
        say_dropped(c);
    c->unsaid = 0; /* a write(2) that does not return: the thread cannot be joined */
    c->q.len = 0;
    c->stop = true;
    c->orphan = stuck;
    uv_cond_signal(&c->wake);
    uv_mutex_unlock(&c->mu);
    if (stuck) {
        /* A thread blocked in write(2) on a pipe nobody reads cannot be joined: it is left to
         * finish (or to the end of the process) and frees the console itself. */
        pthread_detach(c->thread);
        return lost;
    }
    uv_thread_join(&c->thread);
    console_destroy(c);
    return lost;
}
