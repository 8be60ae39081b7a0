/* Annotations: what the analysers (IQ pairing, checks) found out about one event, for the
 * observers that show it.
 *
 * An event reaches the observers in two passes (observer.h): first every observer's `annotate`
 * callback (the analysers) may add to the event's xs_annot, then every observer's `on_event`
 * reads it. The printers show an answer's round trip on its header line and each check under the
 * event; the JSON Lines add "pair", "rtt_ms" and "checks" (print.h). An annotation never changes
 * a byte that is forwarded.
 *
 * An xs_annot lives on the emitter's stack for one event: xs_annot_init() it, pass it down, and
 * forget it. Nothing in it is allocated.
 */
#ifndef XS_INSPECT_ANNOT_H
#define XS_INSPECT_ANNOT_H

#include <stddef.h>
#include <stdint.h>

/* At most this many checks are kept for one event; more are counted in xs_annot.more_checks. */
#define XS_ANNOT_MAX_CHECKS 8
/* The text of one check, cut (on a UTF-8 boundary) to fit. */
#define XS_ANNOT_TEXT_MAX 320
/* The explanation lines of one event, cut (on a UTF-8 boundary) to fit. */
#define XS_ANNOT_EXPLAIN_MAX 2048

/* One warning of a check: a stable id, the section of the spec it comes from, one line of
 * English. */
typedef struct xs_check_hit {
    const char *id;  /* "iq-unanswered": a string with static storage */
    const char *ref; /* "RFC 6120 §8.2.3": static storage too */
    char text[XS_ANNOT_TEXT_MAX];
} xs_check_hit;

typedef struct xs_annot {
    /* An IQ answer (result or error) paired with its request: the request's direction ("c2s" or
     * "s2c", static storage) and offset in that direction's input, and the round trip in
     * milliseconds (rtt_ms < 0: unknown, e.g. an offline capture without times). pair_dir NULL:
     * not an answer that was paired. */
    const char *pair_dir;
    uint64_t pair_offset;
    unsigned pair_stream; /* the request's stream number in its direction */
    double rtt_ms;
    /* XS_OBS_CLOSED: what the analysers counted over the session (IQ count and round trips by
     * payload namespace), lines separated by '\n' (none at the end), shown under the line that
     * says the session ended (JSON: "summary", an array of lines). Borrowed from the analyser
     * for the duration of the call; NULL: none. */
    const char *summary;
    size_t n_checks;
    size_t more_checks; /* checks that did not fit in checks[] */
    xs_check_hit checks[XS_ANNOT_MAX_CHECKS];
    /* --explain: what the event is and why it is there, in plain words, one or more lines
     * separated by '\n' (no '\n' at the end), with the spec's section and link; "" when none.
     * Shown under the event (pretty, compact) or as "explain" (JSON). Fill with
     * xs_annot_explain(). */
    size_t explain_len;
    char explain[XS_ANNOT_EXPLAIN_MAX];
} xs_annot;

/* Makes *a empty. Cheap: checks[] is not cleared. */
static inline void xs_annot_init(xs_annot *a)
{
    a->pair_dir = NULL;
    a->pair_offset = 0;
    a->pair_stream = 0;
    a->rtt_ms = -1;
    a->summary = NULL;
    a->n_checks = 0;
    a->more_checks = 0;
    a->explain_len = 0;
    a->explain[0] = '\0';
}

/* Adds a check to *a: id and ref must have static storage; the text is formatted as by printf and
 * cut to XS_ANNOT_TEXT_MAX - 1 bytes on a UTF-8 boundary. Returns the hit, or NULL when checks[]
 * is full (more_checks counts it then). */
xs_check_hit *xs_annot_check(xs_annot *a, const char *id, const char *ref, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Adds a line (formatted as by printf) to a->explain, after a '\n' when it holds some already;
 * what does not fit is cut on a UTF-8 boundary. */
void xs_annot_explain(xs_annot *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Whether *a (NULL allowed) holds anything to show. */
static inline int xs_annot_any(const xs_annot *a)
{
    return a != NULL &&
           (a->pair_dir != NULL || a->n_checks > 0 || a->more_checks > 0 || a->explain_len > 0);
}

#endif
