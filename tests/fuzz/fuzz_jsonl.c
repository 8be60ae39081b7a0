/* libFuzzer target for the JSON Lines log reader (inspect/jsonl.c) and the printers behind it:
 * the input is split into lines and replayed, each event printed in every format to a sink. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "inspect/error.h"
#include "inspect/jsonl.h"
#include "inspect/print.h"

typedef struct sink {
    xs_printer *pr[3];
} sink;

static int on_event(void *user, const xs_print_meta *meta, const xs_event *ev)
{
    sink *s = user;
    for (int i = 0; i < 3; i++)
        (void)xs_printer_event(s->pr[i], meta, ev);
    return 0;
}

static int on_note(void *user, const xs_print_meta *meta, const char *level, const char *text)
{
    sink *s = user;
    for (int i = 0; i < 3; i++)
        (void)xs_printer_note(s->pr[i], meta, level, text);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *devnull = fopen("/dev/null", "w");
    if (devnull == NULL)
        return 0;
    sink s = {0};
    static const xs_format formats[3] = {XS_FORMAT_PRETTY, XS_FORMAT_COMPACT, XS_FORMAT_JSON};
    for (int i = 0; i < 3; i++) {
        xs_print_options o = {.format = formats[i], .color = i == 0, .show_secrets = 0};
        if (xs_printer_new(devnull, &o, &s.pr[i]) < 0)
            goto out;
    }
    xs_parser_limits lim = {.max_stanza = 4096, .max_depth = 16};
    xs_jsonl_reader *r = NULL;
    if (xs_jsonl_reader_new(&lim, on_event, on_note, &s, &r) < 0)
        goto out;
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        char err[256];
        (void)xs_jsonl_reader_line(r, p, n, err, sizeof(err));
        p += n + (nl != NULL);
    }
    xs_jsonl_reader_free(r);
out:
    for (int i = 0; i < 3; i++)
        xs_printer_free(s.pr[i]);
    fclose(devnull);
    return 0;
}
