/* IQ pairing and timing, inside the analysers (check.h).
 *
 * Each request (get, set) waits in its session's table, keyed by its direction and id, until the
 * answer (result, error) with the same id comes the other way. Ids are scoped to the stream: a
 * restart of either direction ends every wait (RFC 6120 §4.3.3). The waits are kept in the order
 * they began, so the timeout looks at the oldest only. Per payload namespace (the request's first
 * child), requests, answers and round trips are counted, per session and over the run. */
#ifndef XS_INSPECT_IQ_H
#define XS_INSPECT_IQ_H

#include <stddef.h>
#include <stdint.h>

#include "inspect/annot.h"
#include "inspect/buf.h"
#include "inspect/parser.h"

struct xs_analysis;
struct xs_an_sess;
struct xs_outline;
struct xs_print_meta;

/* The statistics of one payload namespace. */
typedef struct xs_iq_nsrow {
    char *ns;
    uint64_t requests, answered, errors, unanswered;
    uint64_t timed; /* answers with a round trip (the samples are a uniform choice of them) */
    double max_ms;
    float *samples;
    uint32_t n_samples, cap_samples;
} xs_iq_nsrow;

typedef struct xs_iq_nstab {
    xs_iq_nsrow *rows;
    size_t n, cap, max; /* max rows, the last of which is "(other)" once it is full */
} xs_iq_nstab;

/* The id kept of a request: its hash, its length and its first bytes (for the messages). */
#define XS_IQ_ID_SHOWN 48

typedef struct xs_iq_entry {
    uint64_t hash; /* of the id */
    int64_t t_us;  /* when it was read; INT64_MIN: unknown */
    uint64_t offset;
    unsigned stream;
    uint32_t id_len;
    int32_t prev, next, hnext; /* order of arrival; hash chain (or the free list) */
    int16_t row;               /* its namespace in the session's table; -1 none */
    uint8_t dir;               /* of the request */
    uint8_t flags;             /* XS_IQE_* */
    char id[XS_IQ_ID_SHOWN];
} xs_iq_entry;

enum {
    XS_IQE_SET = 1,     /* a set (else a get) */
    XS_IQE_DROPPED = 2, /* a rule dropped it */
    XS_IQE_EXEMPT = 4,  /* resource binding, session, registration, legacy auth */
    XS_IQE_BIND = 8,    /* a resource binding request */
};

#define XS_IQ_BUCKETS 128

typedef struct xs_iq_sess {
    xs_iq_entry *e;
    int32_t *bucket; /* XS_IQ_BUCKETS chains, made with the first request */
    size_t cap, n;
    int32_t head, tail, free;
    int limit_said;
    uint64_t requests, answered, errors, unanswered;
    xs_iq_nstab ns;
} xs_iq_sess;

/* What the pairing made of one IQ, for the other checks. */
typedef struct xs_iq_result {
    int request;    /* a get or set */
    int answer;     /* a result or error */
    int paired;     /* an answer that found its request */
    int exempt;     /* a request allowed before binding, or the answer to one */
    int bind_reply; /* a result to a resource binding request */
} xs_iq_result;

/* An IQ stanza of direction dir (0 c2s, 1 s2c) with its type and id (NULL when absent). */
void xs_iq_stanza(struct xs_analysis *an, struct xs_an_sess *s, int dir, const xs_event *ev,
                  const struct xs_print_meta *m, const char *type, const char *id,
                  const struct xs_outline *o, xs_annot *a, xs_iq_result *res);

/* A stream of direction dir restarted (or ended): every wait ends, reported as unanswered. */
void xs_iq_restart(struct xs_analysis *an, struct xs_an_sess *s, int dir, xs_annot *a);

/* Reports (up to the room left in *a) the waits older than the timeout at now_us. */
void xs_iq_expire(struct xs_analysis *an, struct xs_an_sess *s, int64_t now_us, xs_annot *a);

/* The session ended (input: with the end of an offline input): reports every wait still open. */
void xs_iq_end(struct xs_analysis *an, struct xs_an_sess *s, xs_annot *a, int input);

/* Appends the session's summary lines (none without IQs) to b. */
void xs_iq_summary(const struct xs_an_sess *s, xs_buf *b);

void xs_iq_sess_free(xs_iq_sess *q);
void xs_iq_nstab_free(xs_iq_nstab *t);

/* p50, p95 and max of a row in ms (< 0 when nothing was timed). */
void xs_iq_row_quantiles(const xs_iq_nsrow *r, double *p50, double *p95, double *max);

#endif
