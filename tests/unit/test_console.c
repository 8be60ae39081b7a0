/* The console's writer thread (proxy/console.h): writing never blocks on a slow standard output,
 * whole events are dropped and counted when the queue is full, nothing is cut, and the end waits
 * for a reader but not for ever. */
#include "proxy/console.h"

#include "inspect/error.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#define EVENTS 2000
#define EVENT_LEN 1000

/* Event k: "event 0042 " then dots up to EVENT_LEN - 1 bytes, then a newline. */
static void make_event(char *e, int k)
{
    int n = snprintf(e, EVENT_LEN, "event %04d ", k);
    memset(e + n, '.', EVENT_LEN - 1 - (size_t)n);
    e[EVENT_LEN - 1] = '\n';
}

typedef struct reader {
    int fd;
    char *buf;
    size_t len, cap;
} reader;

static void read_all(void *arg)
{
    reader *r = arg;
    for (;;) {
        if (r->cap - r->len < 65536) {
            r->cap = r->cap ? r->cap * 2 : 1 << 20;
            r->buf = realloc(r->buf, r->cap);
            if (r->buf == NULL)
                abort();
        }
        ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len);
        if (n <= 0)
            break;
        r->len += (size_t)n;
    }
}

/* Nobody reads while the events are written: writing returns at once (the alarm would end the
 * test otherwise), the queue's overflow is dropped whole, and what arrives is whole events in
 * order. */
static void test_console_never_blocks_and_drops_whole_events(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    xs_console *c = NULL;
    assert_int_equal(xs_console_new(fds[1], 64 << 10, &c), 0);
    char e[EVENT_LEN];
    alarm(20);
    for (int k = 0; k < EVENTS; k++) {
        make_event(e, k);
        assert_int_equal(xs_console_write(c, e, sizeof(e)), 0);
    }
    alarm(0);
    uint64_t dropped = xs_console_dropped(c);
    /* The pipe (64 KiB on Linux) and the queue (64 KiB) hold far less than 2 MB. */
    assert_true(dropped > 0);
    assert_true(dropped < EVENTS);

    reader r = {.fd = fds[0]};
    uv_thread_t t;
    assert_int_equal(uv_thread_create(&t, read_all, &r), 0);
    assert_int_equal(xs_console_free(c, 10000), 0);
    close(fds[1]);
    uv_thread_join(&t);
    close(fds[0]);

    assert_int_equal(r.len % EVENT_LEN, 0);
    size_t shown = r.len / EVENT_LEN;
    assert_int_equal(shown + dropped, EVENTS);
    int last = -1;
    for (size_t i = 0; i < shown; i++) {
        const char *line = r.buf + i * EVENT_LEN;
        int k = atoi(line + 6);
        assert_true(k > last);
        last = k;
        make_event(e, k);
        assert_memory_equal(line, e, EVENT_LEN);
    }
    free(r.buf);
}

/* With a reader, nothing is lost. */
static void test_console_reader_gets_everything(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    reader r = {.fd = fds[0]};
    uv_thread_t t;
    assert_int_equal(uv_thread_create(&t, read_all, &r), 0);
    xs_console *c = NULL;
    assert_int_equal(xs_console_new(fds[1], 0, &c), 0);
    char e[EVENT_LEN];
    for (int k = 0; k < EVENTS; k++) {
        make_event(e, k);
        assert_int_equal(xs_console_write(c, e, sizeof(e)), 0);
    }
    assert_int_equal(xs_console_dropped(c), 0);
    assert_int_equal(xs_console_free(c, 10000), 0);
    close(fds[1]);
    uv_thread_join(&t);
    close(fds[0]);
    assert_int_equal(r.len, (size_t)EVENTS * EVENT_LEN);
    free(r.buf);
}

/* Nobody will ever read: the end gives up after its wait and says how much is lost. */
static void test_console_end_does_not_wait_for_ever(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    xs_console *c = NULL;
    assert_int_equal(xs_console_new(fds[1], 1 << 20, &c), 0);
    char e[EVENT_LEN];
    for (int k = 0; k < 500; k++) {
        make_event(e, k);
        assert_int_equal(xs_console_write(c, e, sizeof(e)), 0);
    }
    uint64_t t0 = uv_hrtime();
    size_t lost = xs_console_free(c, 200);
    uint64_t ms = (uv_hrtime() - t0) / 1000000u;
    assert_true(lost > 0);
    assert_true(ms < 5000);
    /* The writer is still blocked in write(2): reading the pipe lets it end. */
    reader r = {.fd = fds[0]};
    close(fds[1]);
    read_all(&r);
    close(fds[0]);
    free(r.buf);
}

/* A reader that went away (EPIPE): writes fail with XS_EIO from then on, nothing blocks. */
static void test_console_closed_reader_is_eio(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    xs_console *c = NULL;
    assert_int_equal(xs_console_new(fds[1], 0, &c), 0);
    char e[EVENT_LEN];
    make_event(e, 1);
    int rc = 0;
    alarm(20);
    for (int k = 0; k < 100000 && rc == 0; k++) {
        rc = xs_console_write(c, e, sizeof(e));
        if (rc == 0)
            usleep(100);
    }
    alarm(0);
    assert_int_equal(rc, XS_EIO);
    (void)xs_console_free(c, 1000);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_console_never_blocks_and_drops_whole_events),
        cmocka_unit_test(test_console_reader_gets_everything),
        cmocka_unit_test(test_console_end_does_not_wait_for_ever),
        cmocka_unit_test(test_console_closed_reader_is_eio),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
