/* libFuzzer target for the session state machine (proxy/session.c).
 *
 * The input plays both legs of one session. Its first byte chooses the legs' modes and the
 * configuration, the second seeds the sizes of the reads; the rest is a list of records:
 *
 *   0x00-0xBF  data: a chunk of (ctrl >> 1) bytes, from the client (ctrl & 1 == 0) or the server
 *   0xC0-0xFF  an event, (ctrl - 0xC0) % 10: 0 client TLS up, 1 server TLS up, 2 connected,
 *              3 connect failed, 4 client EOF, 5 server EOF, 6 client TLS error, 7 timeout,
 *              8 shutdown, 9 writes to a side fail from now on (the server when the next
 *              byte is odd)
 *
 * The legs are played as proxy/proxy.c plays them, with TLS replaced by plaintext: a side's
 * bytes wait while the side cannot be read (the server leg before it connected, a side between
 * start_tls and its TLS-up event) and are fed, in reads of random size, once it can. The bytes
 * a read leaves unconsumed at a switch to TLS are the first plaintext after the handshake.
 * An event the legs could not produce at that point (TLS up on a side with no handshake, a
 * second connect result) is skipped.
 *
 * Nothing may crash or leak, and the session keeps to its contract with the legs: it consumes
 * no more than it is given and stops short only at a switch to TLS, swallows everything once
 * closing, writes nothing to a side it asked to close or to a server leg that is not
 * connected, starts TLS at most once per side (never on a direct-TLS client leg, never on an
 * unconnected server leg), connects at most once, closes each side at most once.
 *
 * Built with -DFUZZ_SESSION_TRACE it prints what the session does, to read a finding. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/features.h"
#include "inspect/error.h"
#include "inspect/print.h"
#include "proxy/session.h"

#define HOLD_MAX (256u * 1024u)

typedef struct held {
    char *d;
    size_t len, cap;
} held;

typedef struct fz {
    xs_session *s;
    xs_tls_mode client_mode;
    uint32_t seed;

    held hold[2];        /* bytes of a side not yet fed */
    bool handshaking[2]; /* start_tls called, TLS-up not yet reported */
    unsigned start_tls_calls[2];
    bool connect_called, connect_answered, connected;
    unsigned close_calls[2];
    bool eof[2]; /* the side's end was reported */
    int fail_write[2];
    bool write_failed;   /* a write was refused: see io_write */
    bool early_close[2]; /* the side was told to close while the session went on */
} fz;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_session: invariant failed at line %d: %s\n", __LINE__, #cond);   \
            __builtin_trap();                                                                      \
        }                                                                                          \
    } while (0)

static uint32_t step(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* ---- the fake legs ---- */

static int io_write(void *ctx, xs_side side, const char *data, size_t len)
{
    fz *f = ctx;
    CHECK(side == XS_CLIENT || side == XS_SERVER);
    CHECK(data != NULL && len > 0);
    /* Known: after a refused write the session closes both legs at once, but the caller of that
     * write goes on: it writes, connects, starts TLS and closes again (reported; see
     * test_session_write_failure_*). These checks are relaxed once a write was refused. Also
     * known: a server leg closed early gets a second </stream:stream> when the client's stream
     * then fails (test_session_deferred_failure_then_client_error). */
    CHECK(f->close_calls[side] == 0 || f->write_failed || f->early_close[side]);
    if (side == XS_SERVER)
        CHECK(f->connected);
    if (f->close_calls[side] > 0 && f->write_failed)
        return 0;
    /* Touch the bytes so ASan checks they are readable. */
    volatile char sink = data[0] ^ data[len - 1];
    (void)sink;
#ifdef FUZZ_SESSION_TRACE
    fprintf(stderr, "write %s: %.*s\n", side == XS_CLIENT ? "client" : "server", (int)len, data);
#endif
    if (f->fail_write[side] < 0)
        f->write_failed = true;
    return f->fail_write[side];
}

static int io_start_tls(void *ctx, xs_side side, const char *name)
{
    fz *f = ctx;
    CHECK(f->close_calls[side] == 0 || f->write_failed);
    CHECK(f->start_tls_calls[side] == 0);
    if (side == XS_CLIENT)
        CHECK(f->client_mode != XS_TLSMODE_DIRECT);
    else
        CHECK(f->connected);
    if (name != NULL)
        (void)strlen(name);
    f->start_tls_calls[side]++;
#ifdef FUZZ_SESSION_TRACE
    fprintf(stderr, "start_tls %s %s\n", side == XS_CLIENT ? "client" : "server", name);
#endif
    f->handshaking[side] = true;
    return 0;
}

static int io_connect(void *ctx)
{
    fz *f = ctx;
    CHECK(!f->connect_called);
    CHECK(f->close_calls[XS_SERVER] == 0 || f->write_failed);
    f->connect_called = true;
    return 0;
}

static void io_close(void *ctx, xs_side side)
{
    fz *f = ctx;
    /* Known: a server leg closed early (a failure the client learns of later) is told to close
     * again when the session ends (reported; see test_session_deferred_failure_told). */
    CHECK(f->close_calls[side] == 0 || f->write_failed || f->early_close[side]);
    if (!xs_session_closing(f->s))
        f->early_close[side] = true;
    f->close_calls[side]++;
#ifdef FUZZ_SESSION_TRACE
    fprintf(stderr, "close %s (forwarding %d)\n", side == XS_CLIENT ? "client" : "server",
            xs_session_forwarding(f->s));
#endif
}

static const xs_session_io fuzz_io = {
    .write = io_write,
    .start_tls = io_start_tls,
    .connect = io_connect,
    .close = io_close,
};

/* ---- playing the legs ---- */

static void hold_add(held *h, const uint8_t *d, size_t n)
{
    if (n == 0 || h->len + n > HOLD_MAX)
        return;
    if (h->len + n > h->cap) {
        size_t cap = h->cap ? h->cap : 256;
        while (cap < h->len + n)
            cap *= 2;
        char *nd = realloc(h->d, cap);
        if (nd == NULL)
            return;
        h->d = nd;
        h->cap = cap;
    }
    memcpy(h->d + h->len, d, n);
    h->len += n;
}

static void hold_drop(held *h, size_t n)
{
    memmove(h->d, h->d + n, h->len - n);
    h->len -= n;
}

static bool readable(const fz *f, xs_side side)
{
    /* Between a switch to TLS and the first TLS byte, proxy.c still hands reads to the
     * session (xs_session_before_tls()). */
    if (f->eof[side] || f->close_calls[side] > 0 ||
        (f->handshaking[side] && !xs_session_before_tls(f->s, side)))
        return false;
    if (side == XS_SERVER && !f->connected)
        return false;
    return true;
}

/* Feeds what a side has waiting, in reads of random size, while the side can be read. */
static void pump(fz *f, xs_side side)
{
    held *h = &f->hold[side];
    while (h->len > 0) {
        if (xs_session_closing(f->s)) {
            /* proxy.c drops what a closing session still reads; the session must swallow it
             * too when it is given. */
            size_t used = xs_session_on_data(f->s, side, h->d, h->len);
            CHECK(used == h->len);
            h->len = 0;
            return;
        }
        if (!readable(f, side))
            return;
        size_t n = 1 + step(&f->seed) % 97;
        if (n > h->len)
            n = h->len;
        unsigned calls = f->start_tls_calls[side];
        bool gap = f->handshaking[side];
        size_t used = xs_session_on_data(f->s, side, h->d, n);
        CHECK(used <= n);
        if (used < n)
            CHECK((gap || f->start_tls_calls[side] == calls + 1) && f->handshaking[side] &&
                  !xs_session_before_tls(f->s, side));
        hold_drop(h, used);
    }
}

static void pump_both(fz *f)
{
    pump(f, XS_CLIENT);
    pump(f, XS_SERVER);
}

static void event(fz *f, unsigned ev, uint8_t arg)
{
    switch (ev % 10) {
    case 0:
        if (!f->handshaking[XS_CLIENT] || f->close_calls[XS_CLIENT] > 0 || f->eof[XS_CLIENT])
            return;
        f->handshaking[XS_CLIENT] = false;
        xs_session_on_tls_up(f->s, XS_CLIENT, (arg & 1) ? "example.test" : NULL, "TLSv1.3 (fuzz)");
        break;
    case 1:
        if (!f->handshaking[XS_SERVER] || f->close_calls[XS_SERVER] > 0 || f->eof[XS_SERVER])
            return;
        f->handshaking[XS_SERVER] = false;
        xs_session_on_tls_up(f->s, XS_SERVER, NULL, "TLSv1.3 (fuzz)");
        break;
    case 2:
    case 3:
        if (!f->connect_called || f->connect_answered)
            return;
        f->connect_answered = true;
        if (ev % 10 == 2) {
            f->connected = true;
            xs_session_on_connected(f->s, 0, NULL);
        } else {
            f->hold[XS_SERVER].len = 0;
            xs_session_on_connected(f->s, -111, "connection refused");
        }
        break;
    case 4:
    case 6:
        if (f->eof[XS_CLIENT])
            return;
        f->eof[XS_CLIENT] = true;
        f->hold[XS_CLIENT].len = 0;
        if (!xs_session_closing(f->s))
            xs_session_on_closed(f->s, XS_CLIENT, ev % 10 == 4 ? 0 : XS_ETLS,
                                 ev % 10 == 4 ? "connection closed (EOF)" : "TLS failed");
        break;
    case 5:
        if (!f->connected || f->eof[XS_SERVER])
            return;
        f->eof[XS_SERVER] = true;
        f->hold[XS_SERVER].len = 0;
        if (!xs_session_closing(f->s))
            xs_session_on_closed(f->s, XS_SERVER, (arg & 1) ? -104 : 0,
                                 (arg & 1) ? "connection reset by peer" : NULL);
        break;
    case 7:
        xs_session_on_timeout(f->s, "fuzz timer");
        break;
    case 8:
        xs_session_shutdown(f->s);
        break;
    case 9:
        f->fail_write[(arg & 1) ? XS_SERVER : XS_CLIENT] = XS_ETOOBIG;
        break;
    }
    pump_both(f);
}

static FILE *devnull(void)
{
    static FILE *f;
    if (f == NULL)
        f = fopen("/dev/null", "w");
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const xs_tls_mode cmodes[] = {XS_TLSMODE_STARTTLS, XS_TLSMODE_DIRECT, XS_TLSMODE_NONE};
    static const xs_tls_mode smodes[] = {XS_TLSMODE_STARTTLS, XS_TLSMODE_DIRECT, XS_TLSMODE_NONE,
                                         XS_TLSMODE_MIRROR};
    unsigned m = (data[0] & 0x0f) % 12;
    xs_session_cfg cfg = {
        .client_mode = cmodes[m % 3],
        .server_mode = smodes[m / 3],
        .rewrites = (data[0] & 0x10) ? 0 : XS_REWRITE_DEFAULT,
        .limits = {.max_stanza = (data[0] & 0x40) ? 512 : 0, .max_depth = (data[0] & 0x40) ? 8 : 0},
        .server_name = (data[0] & 0x80) ? "xmpp.example.net" : NULL,
    };
    /* The built-in rewrites, as the proxy gives them; compiled once per process. */
    static xs_rules *builtin[2];
    int b = (data[0] & 0x10) ? 0 : 1;
    if (builtin[b] == NULL && xs_rules_builtin(cfg.rewrites | XS_REWRITE_STARTTLS, &builtin[b]) < 0)
        return 0;
    cfg.rules = &builtin[b];
    xs_printer *printer = NULL;
    xs_observer obs;
    if ((data[0] & 0x20) && devnull() != NULL) {
        xs_print_options po = {.format = (data[1] & 1) ? XS_FORMAT_JSON : XS_FORMAT_PRETTY};
        if (xs_printer_new(devnull(), &po, &printer) == 0) {
            obs = xs_printer_observer(printer, XS_OBS_WARN, 1, "the --write log");
            cfg.observers = &obs;
            cfg.n_observers = 1;
        }
    }

    fz f;
    memset(&f, 0, sizeof(f));
    f.client_mode = cfg.client_mode;
    f.seed = data[1];
    if (xs_session_new(&cfg, &fuzz_io, &f, 1, "fuzz", &f.s) != 0)
        goto out;
    xs_session_start(f.s);
    if (f.client_mode == XS_TLSMODE_DIRECT)
        f.handshaking[XS_CLIENT] = true; /* proxy.c starts TLS on this leg itself */

    size_t at = 2;
    while (at < size) {
        uint8_t ctrl = data[at++];
        if (ctrl >= 0xC0) {
            event(&f, ctrl - 0xC0u, at < size ? data[at] : 0);
            continue;
        }
        xs_side side = (ctrl & 1) ? XS_SERVER : XS_CLIENT;
        size_t n = ctrl >> 1;
        if (n > size - at)
            n = size - at;
        if (!f.eof[side] && !(side == XS_SERVER && f.connect_answered && !f.connected))
            hold_add(&f.hold[side], data + at, n);
        at += n;
        pump(&f, side);
    }

    /* Read-only calls must hold up in any state. */
    (void)xs_session_forwarding(f.s);
    (void)xs_session_closing(f.s);
    (void)xs_session_id(f.s);
    const xs_session_stats *st = xs_session_get_stats(f.s);
    CHECK(st != NULL);
    xs_session_free(f.s);
out:
    free(f.hold[0].d);
    free(f.hold[1].d);
    if (printer != NULL)
        xs_printer_free(printer);
    return 0;
}
