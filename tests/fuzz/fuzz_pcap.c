/* libFuzzer target for the pcap observer (inspect/pcap.c) behind the JSON Lines reader: the input
 * is a log whose lines name sessions, directions, times and addresses ("client", "server") of
 * the fuzzer's choosing. The capture is read back with libpcap, and every record must be a whole
 * IPv4 or IPv6 packet within 65535 bytes whose length fields agree with the record. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pcap/pcap.h>

#include "inspect/error.h"
#include "inspect/jsonl.h"
#include "inspect/observer.h"
#include "inspect/pcap.h"

static int on_event(void *user, const xs_print_meta *meta, const xs_event *ev)
{
    (void)xs_obs_emit_event(user, 1, meta, ev, 0);
    return 0;
}

static int on_note(void *user, const xs_print_meta *meta, const char *level, const char *text)
{
    xs_obs_event e = {.kind = XS_OBS_NOTE, .meta = meta, .level = level, .text = text};
    (void)xs_obs_emit_other(user, 1, &e);
    return 0;
}

/* Every record of the capture in f is a consistent IP packet. */
static void check(FILE *f)
{
    char err[PCAP_ERRBUF_SIZE];
    rewind(f);
    pcap_t *pc = pcap_fopen_offline(f, err);
    if (pc == NULL)
        abort();
    struct pcap_pkthdr *h;
    const u_char *d;
    int rc;
    while ((rc = pcap_next_ex(pc, &h, &d)) == 1) {
        if (h->caplen != h->len || h->len < 40 || h->len > 65535)
            abort();
        if ((d[0] >> 4) == 4 && (d[0] != 0x45 || ((size_t)d[2] << 8 | d[3]) != h->len))
            abort();
        if ((d[0] >> 4) == 6 && ((size_t)d[4] << 8 | d[5]) + 40 != h->len)
            abort();
        if ((d[0] >> 4) != 4 && (d[0] >> 4) != 6)
            abort();
    }
    if (rc != PCAP_ERROR_BREAK)
        abort();
    pcap_close(pc); /* closes f */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = tmpfile();
    if (f == NULL)
        return 0;
    int fd = dup(fileno(f));
    FILE *w = fd >= 0 ? fdopen(fd, "wb") : NULL;
    xs_pcap *pcap = NULL;
    if (w == NULL || xs_pcap_new(w, &(xs_pcap_options){.max_pending = 8192}, &pcap) < 0) {
        fclose(f);
        return 0;
    }
    xs_observer obs = xs_pcap_observer(pcap, XS_OBS_WARN);
    xs_parser_limits lim = {.max_stanza = 1u << 18, .max_depth = 16};
    xs_jsonl_reader *r = NULL;
    if (xs_jsonl_reader_new(&lim, on_event, on_note, &obs, &r) == 0) {
        const char *p = (const char *)data, *end = p + size;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n = (size_t)((nl ? nl : end) - p);
            char err[256];
            (void)xs_jsonl_reader_line(r, p, n, err, sizeof(err));
            p += n + (nl != NULL);
        }
        /* The end of the input, as `inspect` says it. */
        xs_print_meta endm = {.untimed = 1};
        xs_obs_event e = {.kind = XS_OBS_CLOSED, .meta = &endm};
        (void)xs_obs_emit_other(&obs, 1, &e);
        xs_jsonl_reader_free(r);
    }
    if (xs_pcap_close(pcap) == 0)
        check(f);
    else
        fclose(f);
    return 0;
}
