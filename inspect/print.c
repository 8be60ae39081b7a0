/* Printers: see print.h. This file holds the printer object, its options, the entry points for
 * events and notes, and the output buffer; the formats are in print_text.c and print_json.c, the
 * one display escaper in term.c.
 *
 * Every event is formatted into the printer's one output buffer first, after the whole lines a
 * buffered printer still holds, and written with a single fwrite(), so a failing FILE is noticed
 * at one place and a line is never half built from the formatter's side: an event that fails is
 * cut off the buffer again.
 */
#include "inspect/print.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libxml/tree.h>

#include "inspect/error.h"
#include "inspect/reference.h"
#include "inspect/observer.h"
#include "inspect/print_impl.h"
#include "inspect/redact.h"

/* A buffer that one large event made bigger than this is freed once written. */
#define OUT_KEEP ((size_t)1 << 20)

/* Empties a buffer for reuse, freeing it when one large event made it big. */
static void out_reset(xs_buf *b)
{
    xs_buf_reset(b);
    if (b->cap > OUT_KEEP)
        xs_buf_free(b);
}

/* ---- small helpers ------------------------------------------------------------------------- */

void xs_print_sgr(const xs_printer *p, xs_buf *b, const char *code)
{
    if (p->o.color)
        xs_print_str(b, code);
}

void xs_print_event_time(const xs_print_meta *m, struct timespec *ts)
{
    if (m != NULL && (m->time.tv_sec != 0 || m->time.tv_nsec != 0))
        *ts = m->time;
    else
        clock_gettime(CLOCK_REALTIME, ts);
    if (ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000L)
        ts->tv_nsec = 0;
}

/* The value of an attribute without a namespace, appended to t. Returns 0 when absent. */
static int plain_attr(const xmlNode *n, const char *name, xs_buf *t)
{
    for (const xmlAttr *a = n->properties; a != NULL; a = a->next) {
        if (a->ns != NULL || strcmp((const char *)a->name, name) != 0)
            continue;
        for (const xmlNode *k = a->children; k != NULL; k = k->next) {
            if (k->type == XML_TEXT_NODE && k->content != NULL) {
                xs_print_str(t, (const char *)k->content);
            } else if (k->type == XML_ENTITY_REF_NODE) {
                xs_print_str(t, "&");
                xs_print_str(t, (const char *)k->name);
                xs_print_str(t, ";");
            }
        }
        return 1;
    }
    return 0;
}

const char *const xs_print_key_attrs[4] = {"from", "to", "id", "type"};

/* The value of an attribute without a namespace (unprefixed: attributes do not take the default
 * namespace) from the event's list, appended to t. Returns 0 when absent. */
static int plain_event_attr(const xs_event *ev, const char *name, xs_buf *t)
{
    for (size_t i = 0; i < ev->n_attrs; i++) {
        const xs_attr *a = &ev->attrs[i];
        if (a->prefix == NULL && a->name != NULL && strcmp(a->name, name) == 0) {
            xs_print_str(t, a->value != NULL ? a->value : "");
            return 1;
        }
    }
    return 0;
}

/* Looks up one of xs_print_key_attrs on the event: for a stanza from its tree when it has one, else
 * from the attributes the parser gives with every stanza event (the same values: libxml2 keeps an
 * entity reference in an attribute's tree only for an entity it does not know, which the parser
 * refuses); for the stream header from its attributes. */
int xs_print_key_attr(const xs_event *ev, const xs_redaction *red, const char *name, xs_buf *t)
{
    xs_print_scratch_clear(t);
    if (ev->kind == XS_EV_STREAM_OPEN)
        return ev->attrs != NULL && plain_event_attr(ev, name, t);
    if (ev->kind != XS_EV_STANZA)
        return 0;
    if (ev->node != NULL)
        return plain_attr(ev->node, name, t);
    if (ev->attrs != NULL)
        return plain_event_attr(ev, name, t);
    /* An event made without the parser's attributes: the masked copy, when there is one, has
     * the stanza's own. */
    return red->node != NULL && plain_attr(red->node, name, t);
}

/* ---- public -------------------------------------------------------------------------------- */

static const char *const format_names[] = {
    [XS_FORMAT_PRETTY] = "pretty",
    [XS_FORMAT_COMPACT] = "compact",
    [XS_FORMAT_JSON] = "json",
    [XS_FORMAT_NONE] = "none",
};

int xs_format_parse(const char *name, xs_format *out)
{
    if (name == NULL || out == NULL)
        return XS_EINVAL;
    for (size_t i = 0; i < sizeof(format_names) / sizeof(format_names[0]); i++) {
        if (strcmp(name, format_names[i]) == 0) {
            *out = (xs_format)i;
            return 0;
        }
    }
    return XS_EINVAL;
}

const char *xs_format_name(xs_format format)
{
    if ((unsigned)format < sizeof(format_names) / sizeof(format_names[0]))
        return format_names[format];
    return "unknown";
}

int xs_color_wanted(int fd)
{
    const char *no_color = getenv("NO_COLOR"), *term = getenv("TERM");

    if (!isatty(fd))
        return 0;
    if (no_color != NULL && no_color[0] != '\0')
        return 0;
    if (term != NULL && strcmp(term, "dumb") == 0)
        return 0;
    return 1;
}

int xs_printer_new(FILE *out, const xs_print_options *options, xs_printer **printer)
{
    xs_printer *p;

    if (printer == NULL)
        return XS_EINVAL;
    *printer = NULL;
    if (options == NULL || (out == NULL && options->sink == NULL) ||
        (unsigned)options->format > XS_FORMAT_NONE)
        return XS_EINVAL;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return XS_ENOMEM;
    p->out = out;
    p->o = *options;
    p->reference = xs_reference_mode();
    xs_buf_init(&p->buf, OUT_MAX);
    xs_buf_init(&p->scratch, OUT_MAX);
    *printer = p;
    return 0;
}

/* Writes the whole lines the buffer holds with one fwrite() and one fflush(), so the FILE holds
 * no part of a line afterwards, and empties the buffer whatever happens: lines a FILE failed to
 * take are not tried again. */
static int write_out(xs_printer *p)
{
    xs_buf *b = &p->buf;
    int rc = 0;

    if (p->o.sink != NULL)
        rc = xs_buf_len(b) > 0 ? p->o.sink(p->o.sink_ctx, xs_buf_ptr(b), xs_buf_len(b)) : 0;
    else if (xs_buf_len(b) > 0 && fwrite(xs_buf_ptr(b), 1, xs_buf_len(b), p->out) != xs_buf_len(b))
        rc = XS_EIO;
    else if (fflush(p->out) != 0)
        rc = XS_EIO;
    out_reset(b);
    return rc;
}

/* Starts one event, after the lines a buffered printer holds: the event may take OUT_MAX bytes
 * from there. Returns the buffer to format into. */
static xs_buf *event_begin(xs_printer *p)
{
    p->start = xs_buf_len(&p->buf);
    xs_buf_truncate(&p->buf, p->start);
    p->buf.max = p->start + OUT_MAX;
    xs_buf_reset(&p->scratch);
    return &p->buf;
}

/* Ends one event: cuts it off the buffer again when it could not be formatted whole, else writes
 * it at once (unbuffered) or with the lines held once they are enough. */
static int event_end(xs_printer *p)
{
    xs_buf *b = &p->buf;
    int rc = xs_buf_error(b);

    out_reset(&p->scratch);
    if (rc != 0) {
        xs_buf_truncate(b, p->start);
        if (p->start == 0)
            out_reset(b);
        return rc;
    }
    if (!p->o.buffered || xs_buf_len(b) >= XS_PRINT_BUFFER_MAX)
        return write_out(p);
    return 0;
}

int xs_printer_flush(xs_printer *p)
{
    if (p == NULL)
        return XS_EINVAL;
    if (xs_buf_len(&p->buf) == 0)
        return 0;
    return write_out(p);
}

int xs_printer_needs_tree(const xs_printer *p)
{
    return p != NULL && p->o.format == XS_FORMAT_PRETTY;
}

void xs_printer_free(xs_printer *p)
{
    if (p == NULL)
        return;
    (void)xs_printer_flush(p);
    xs_buf_free(&p->buf);
    xs_buf_free(&p->scratch);
    free(p);
}

int xs_printer_masked(xs_printer *p, const xs_print_meta *meta, const xs_event *ev,
                      const xs_redaction *red)
{
    static const xs_redaction none;
    xs_buf *b;

    if (p == NULL || ev == NULL)
        return XS_EINVAL;
    if (p->o.format == XS_FORMAT_NONE)
        return 0;
    if (red == NULL)
        red = &none;
    b = event_begin(p);
    switch (p->o.format) {
    case XS_FORMAT_PRETTY:
        xs_print_pretty(p, b, &p->scratch, meta, ev, red);
        break;
    case XS_FORMAT_COMPACT:
        xs_print_compact(p, b, &p->scratch, meta, ev, red);
        break;
    case XS_FORMAT_JSON:
        xs_print_json(p, b, &p->scratch, meta, ev, red);
        break;
    case XS_FORMAT_NONE:
        break;
    }
    return event_end(p);
}

/* The masking is xs_obs_mask()'s, the one place where it happens (inspect/observer.c): every
 * output of a stanza goes through it, this one included. */
int xs_printer_event(xs_printer *p, const xs_print_meta *meta, const xs_event *ev)
{
    xs_obs_masked m;
    int rc;

    if (p == NULL || ev == NULL)
        return XS_EINVAL;
    if (p->o.format == XS_FORMAT_NONE)
        return 0;
    rc = xs_obs_mask(ev, meta, p->o.show_secrets, &m);
    if (rc != 0)
        return rc;
    rc = xs_printer_masked(p, meta != NULL ? &m.meta : NULL, ev, &m.red);
    xs_obs_masked_clear(&m);
    return rc;
}

int xs_printer_note(xs_printer *p, const xs_print_meta *meta, const char *level, const char *text)
{
    xs_buf *b;

    if (p == NULL)
        return XS_EINVAL;
    if (p->o.format == XS_FORMAT_NONE)
        return 0;
    if (level == NULL)
        level = "info";
    if (text == NULL)
        text = "";
    b = event_begin(p);
    switch (p->o.format) {
    case XS_FORMAT_PRETTY:
    case XS_FORMAT_COMPACT:
        xs_print_text_note(p, b, meta, level, text);
        break;
    case XS_FORMAT_JSON:
        xs_print_json_note(p, b, meta, level, text);
        break;
    case XS_FORMAT_NONE:
        break;
    }
    return event_end(p);
}

int xs_printer_checks(xs_printer *p, const xs_print_meta *meta)
{
    if (p == NULL)
        return XS_EINVAL;
    if (p->o.format == XS_FORMAT_NONE || meta == NULL || meta->annot == NULL ||
        meta->annot->n_checks == 0)
        return 0;
    xs_buf *b = event_begin(p);
    if (p->o.format == XS_FORMAT_JSON)
        xs_print_json_check_lines(p, b, meta);
    else
        xs_print_text_check_lines(p, b, meta);
    return event_end(p);
}
