/* The printers' insides, shared by the files of the printer (print.c: the printer object and its
 * output buffer; print_text.c: pretty and compact; print_json.c: JSON Lines; term.c: the one
 * display escaper). Not for use outside them: see print.h for the interface.
 *
 * Every event is formatted into the printer's one output buffer (an xs_buf, inspect/buf.h),
 * after the whole lines a buffered printer still holds; the formatters append with no error
 * checks of their own, and the buffer's sticky error is looked at once, when the event ends. */
#ifndef XS_INSPECT_PRINT_IMPL_H
#define XS_INSPECT_PRINT_IMPL_H

#include <stdint.h>
#include <string.h>
#include <time.h>

#include <libxml/tree.h>

#include "inspect/buf.h"
#include "inspect/utf8.h"
#include "inspect/annot.h"
#include "inspect/print.h"
#include "inspect/redact.h"

/* Output of one event at most; a stanza is limited by the parser far below this. */
#define OUT_MAX ((size_t)64 << 20)

#define SGR_RESET "\033[0m"
#define SGR_TIME "\033[2m"
#define SGR_C2S "\033[36m"
#define SGR_S2C "\033[35m"
#define SGR_KIND "\033[1m"
#define SGR_ERROR "\033[1;31m"
#define SGR_WARN "\033[33m"
#define SGR_ELEM "\033[34m"
#define SGR_ATTR "\033[33m"
#define SGR_VALUE "\033[32m"
#define SGR_NOTE "\033[1;33m"

#define UTF8_REPLACEMENT "\xEF\xBF\xBD"

struct xs_printer {
    FILE *out;
    xs_print_options o;
    xs_buf buf;     /* whole lines not yet written, then the event being formatted */
    size_t start;   /* where in buf the event being formatted begins; OUT_MAX counts from here */
    xs_buf scratch; /* one event's attribute values and serialized XML; reused */
    /* The JSON time up to the seconds ("2026-11-24T03:40:00"), for time_sec: only the
     * microseconds change from one event to the next under load. */
    time_t time_sec;
    int time_ok;
    int reference; /* XS_REFERENCE (reference.h): JSON is made by jansson alone */
    size_t time_len;
    char time_text[80];
};

/* ---- appending (print.c) -------------------------------------------------------------------- */

/* Appends a NUL-terminated string; inline, so the formatters' many short pieces take
 * xs_buf_add()'s fast path without a call. */
static inline void xs_print_str(xs_buf *b, const char *s)
{
    xs_buf_add(b, s, strlen(s));
}

/* Empties the scratch buffer for the next value, keeping its sticky error: a failure there is
 * carried into the output buffer when the event ends. */
static inline void xs_print_scratch_clear(xs_buf *t)
{
    t->len = 0;
    if (t->p != NULL)
        t->p[0] = '\0';
}

/* For short formatted pieces (numbers, times); longer output is cut at 159 bytes, which never
 * happens with the formats used here. */
void xs_print_fmt(xs_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends n spaces. */
void xs_print_indent(xs_buf *b, unsigned n);

/* Appends an ANSI SGR code when the printer uses colour. */
void xs_print_sgr(const xs_printer *p, xs_buf *b, const char *code);

static inline int xs_print_xml_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* ---- the event's fields (print.c) ----------------------------------------------------------- */

/* The event's time: the one in the meta, else now. */
void xs_print_event_time(const xs_print_meta *m, struct timespec *ts);

/* The stanza's tree to read names and attributes from: the parser's, or the masked copy of a
 * stanza that came without a tree. */
static inline const xmlNode *xs_print_event_node(const xs_event *ev, const xs_redaction *red)
{
    return ev->node != NULL ? ev->node : red->node;
}

/* The attributes compact and JSON show: "from", "to", "id", "type". */
extern const char *const xs_print_key_attrs[4];

/* Looks up one of xs_print_key_attrs on the event into t (emptied first). Returns 0 when
 * absent. */
int xs_print_key_attr(const xs_event *ev, const xs_redaction *red, const char *name, xs_buf *t);

/* ---- the display escaper (term.c) ----------------------------------------------------------- */

typedef enum xs_esc_mode {
    XS_ESC_TEXT,  /* XML character data on one line */
    XS_ESC_ATTR,  /* XML attribute value between single quotes */
    XS_ESC_LINE,  /* anything on one line: C-style escapes for controls, XML left as it is */
    XS_ESC_BLOCK, /* like XS_ESC_LINE, but a newline starts a new indented line */
} xs_esc_mode;

/* Appends n bytes from the wire escaped for the context m; in XS_ESC_BLOCK, each new line is
 * indented by block_indent spaces. */
void xs_term_esc(xs_buf *b, const char *str, size_t n, xs_esc_mode m, unsigned block_indent);

/* The same for a NUL-terminated string; NULL appends nothing. */
void xs_term_esc_str(xs_buf *b, const char *s, xs_esc_mode m);

/* ---- the formats ---------------------------------------------------------------------------- */

/* Each appends one event (or note) to b whole; tmp is the printer's scratch buffer. */
void xs_print_pretty(const xs_printer *p, xs_buf *b, xs_buf *tmp, const xs_print_meta *m,
                     const xs_event *ev, const xs_redaction *red);
void xs_print_compact(const xs_printer *p, xs_buf *b, xs_buf *tmp, const xs_print_meta *m,
                      const xs_event *ev, const xs_redaction *red);
void xs_print_text_note(const xs_printer *p, xs_buf *b, const xs_print_meta *m, const char *level,
                        const char *text);
/* The checks of m->annot under an event ("  ! id: text (ref)"), nothing when none. */
void xs_print_text_checks(const xs_printer *p, xs_buf *b, const xs_print_meta *m);
/* The checks of m->annot (not NULL) on their own, one header line each (xs_printer_checks). */
void xs_print_text_check_lines(const xs_printer *p, xs_buf *b, const xs_print_meta *m);
/* The same as JSON "check" events. */
void xs_print_json_check_lines(xs_printer *p, xs_buf *b, const xs_print_meta *m);
void xs_print_json(xs_printer *p, xs_buf *b, xs_buf *tmp, const xs_print_meta *m,
                   const xs_event *ev, const xs_redaction *red);
void xs_print_json_note(xs_printer *p, xs_buf *b, const xs_print_meta *m, const char *level,
                        const char *text);

#endif
