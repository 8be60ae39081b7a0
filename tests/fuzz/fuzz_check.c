/* libFuzzer target for the analysers (inspect/check.h): IQ pairing, the outline scan of a
 * stanza's bytes, JIDs, stream management counters. The input is two streams split at the first
 * NUL byte (before it: what the client sends, after it: what the server sends), each after a
 * stream header of its own; they are fed alternately in pieces of up to 64 bytes, with the time
 * advancing and a tick now and then, to one analyser with a small in-flight cap and a short
 * timeout, without trees (the bytes are scanned) when the first byte is even, with them when
 * odd. Then the session ends. Every stanza's to/from also goes through xs_jid_valid(). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inspect/check.h"
#include "inspect/jid.h"
#include "inspect/observer.h"
#include "inspect/parser.h"

#define C2S                                                                                        \
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "        \
    "to='example.test' version='1.0'>"
#define S2C                                                                                        \
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "        \
    "from='example.test' id='x' version='1.0'>"

typedef struct fz {
    xs_observer obs[1];
    int dir;
    int64_t now_us;
} fz;

static xs_print_meta meta_of(fz *f, int dir)
{
    xs_print_meta m = {.session = "1", .direction = dir == 0 ? "c2s" : "s2c"};
    m.time.tv_sec = (time_t)(f->now_us / 1000000);
    m.time.tv_nsec = (long)(f->now_us % 1000000) * 1000;
    return m;
}

static int on_event(void *user, const xs_event *ev)
{
    fz *f = user;
    xs_print_meta m = meta_of(f, f->dir);
    if (ev->kind == XS_EV_STANZA)
        for (size_t i = 0; i < ev->n_attrs; i++)
            if (ev->attrs[i].value != NULL)
                (void)xs_jid_valid(ev->attrs[i].value, strlen(ev->attrs[i].value), NULL);
    (void)xs_obs_emit_event(f->obs, 1, &m, ev, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    unsigned opts = XS_PARSER_RAW | XS_PARSER_AUTO_RESTART | (data[0] & 1 ? XS_PARSER_TREE : 0);
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    const char *nul = memchr(in, '\0', n);
    const char *part[2] = {in, nul != NULL ? nul + 1 : in + n};
    size_t len[2] = {nul != NULL ? (size_t)(nul - in) : n,
                     nul != NULL ? n - (size_t)(nul + 1 - in) : 0};

    xs_analysis_cfg cfg = {.pairing = 1, .checks = 1, .iq_timeout = 0.01, .max_inflight = 8};
    xs_analysis *an = NULL;
    if (xs_analysis_new(&cfg, &an) != 0)
        return 0;
    fz f = {.now_us = 1000000000000};
    f.obs[0] = xs_analysis_observer(an);
    xs_parser *p[2] = {NULL, NULL};
    for (int d = 0; d < 2; d++)
        if (xs_parser_new(NULL, opts, on_event, &f, &p[d]) != 0)
            goto out;
    f.dir = 0;
    (void)xs_parser_feed(p[0], C2S, strlen(C2S), NULL);
    f.dir = 1;
    (void)xs_parser_feed(p[1], S2C, strlen(S2C), NULL);
    size_t at[2] = {0, 0};
    int ok[2] = {1, 1};
    for (unsigned step = 0; (ok[0] && at[0] < len[0]) || (ok[1] && at[1] < len[1]); step++) {
        int d = step & 1;
        if (!ok[d] || at[d] >= len[d])
            continue;
        size_t k = len[d] - at[d] < 64 ? len[d] - at[d] : 64;
        f.dir = d;
        ok[d] = xs_parser_feed(p[d], part[d] + at[d], k, NULL) == 0;
        at[d] += k;
        f.now_us += 4000;
        if (step % 5 == 0) {
            xs_print_meta m = meta_of(&f, 0);
            m.direction = NULL;
            xs_obs_event e = {.kind = XS_OBS_TICK, .meta = &m};
            (void)xs_obs_emit_other(f.obs, 1, &e);
        }
    }
    xs_print_meta m = meta_of(&f, 0);
    m.direction = NULL;
    xs_obs_event e = {.kind = XS_OBS_CLOSED, .meta = &m, .level = "info", .text = "end"};
    (void)xs_obs_emit_other(f.obs, 1, &e);
    xs_iq_stat rows[4];
    (void)xs_analysis_iq_stats(an, rows, 4);
out:
    xs_parser_free(p[0]);
    xs_parser_free(p[1]);
    xs_analysis_free(an);
    return 0;
}
