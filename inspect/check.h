/* The analysers of issue 13: IQ pairing and timing, and the protocol checks.
 *
 * One observer (observer.h) with only an `annotate` callback, shared by every session of a proxy
 * or an offline run. For each event it may:
 *   - pair an IQ answer (result or error) with its request (get or set) by id, per session and
 *     stream, either way (a server's request is answered by the client): the answer's annotation
 *     gets the request's direction, offset and stream and the round trip (annot.h);
 *   - add checks, each a stable id, a section of a spec and one line of English (XS_CHECK_*
 *     below: RFC 6120/6121 stanza rules, RFC 7622 JIDs, XEP-0198 counters, the SCRAM channel
 *     binding downgrade);
 *   - at XS_OBS_TICK (the proxy) or lazily by the time of the session's events (offline), report
 *     the IQs that got no answer within the timeout; at XS_OBS_CLOSED, those still waiting, and
 *     the session's summary (IQ count and round trips by payload namespace, annot.h summary).
 *
 * Costs: a message or presence stanza costs a look-up of its session, a look at its attributes
 * (type, from, to: checked with no allocation, inspect/jid.h) and a counter; nothing is
 * allocated for it. An IQ, an error stanza and the few stream-level elements that matter
 * (features, SASL2 success) are looked into: their tree when the parser built one, else a small
 * scan of their raw bytes (no allocation). Memory per session is bounded: at most
 * max_inflight IQs waiting for an answer (the oldest is forgotten past that, and the session is
 * told once), XS_IQ_MAX_NS payload namespaces in its statistics, XS_IQ_MAX_SAMPLES round trips
 * kept per namespace (a uniform sample beyond). Across sessions, XS_SM_MAX_IDS stream management
 * ids are remembered for resumption.
 */
#ifndef XS_INSPECT_CHECK_H
#define XS_INSPECT_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "inspect/observer.h"

/* The stable ids of the checks (JSON "check"). */
#define XS_CHECK_IQ_UNANSWERED "iq-unanswered"
#define XS_CHECK_IQ_UNKNOWN_ID "iq-unknown-id"
#define XS_CHECK_IQ_DUPLICATE_ID "iq-duplicate-id"
#define XS_CHECK_IQ_NO_ID "iq-no-id"
#define XS_CHECK_IQ_BAD_TYPE "iq-bad-type"
#define XS_CHECK_IQ_PAYLOAD_COUNT "iq-payload-count"
#define XS_CHECK_ERROR_NO_CONDITION "error-no-condition"
#define XS_CHECK_BEFORE_BIND "stanza-before-bind"
#define XS_CHECK_JID_INVALID "jid-invalid"
#define XS_CHECK_PRESENCE_BAD_TYPE "presence-bad-type"
#define XS_CHECK_MESSAGE_BAD_TYPE "message-bad-type"
#define XS_CHECK_SM_H_MISMATCH "sm-h-mismatch"
#define XS_CHECK_SM_RESUME_MISMATCH "sm-resume-mismatch"
#define XS_CHECK_SASL_DOWNGRADE "sasl-downgrade"
/* Not a protocol check: the analyser's own limit was reached (say so rather than be wrong). */
#define XS_CHECK_IQ_LIMIT "iq-limit"

#define XS_IQ_DEFAULT_TIMEOUT 30.0
#define XS_IQ_DEFAULT_MAX_INFLIGHT 1024u
#define XS_IQ_MAX_NS 32u        /* payload namespaces counted per session; more: "(other)" */
#define XS_IQ_MAX_NS_TOTAL 256u /* the same over a whole run (inspect --stats) */
#define XS_IQ_MAX_SAMPLES 512u  /* round trips kept per namespace for the percentiles */
#define XS_SM_MAX_IDS 1024u     /* stream management ids remembered across sessions */

typedef struct xs_analysis xs_analysis;

typedef struct xs_analysis_cfg {
    int pairing;         /* pair IQs, time them, report the unanswered (iq-* checks) */
    int checks;          /* the other checks */
    double iq_timeout;   /* seconds; <= 0: XS_IQ_DEFAULT_TIMEOUT */
    size_t max_inflight; /* IQs waiting per session; 0: XS_IQ_DEFAULT_MAX_INFLIGHT */
    /* No XS_OBS_TICK will come (offline): an IQ's timeout is judged at the next event of its
     * session by that event's time. */
    int lazy_timeouts;
} xs_analysis_cfg;

/* Reads an --iq-timeout value: seconds, a decimal number from 0.001 to 86400. Returns 0 and
 * sets *out, or XS_EINVAL. */
int xs_analysis_parse_timeout(const char *arg, double *out);

/* Makes an analyser. Returns 0 and sets *out, XS_EINVAL or XS_ENOMEM. Free with
 * xs_analysis_free() once no session uses its observer any more. */
int xs_analysis_new(const xs_analysis_cfg *cfg, xs_analysis **out);

/* The observer to register (annotate only; it needs no trees). It points at `an`. */
xs_observer xs_analysis_observer(xs_analysis *an);

/* The IQ statistics of one payload namespace over the whole run (every session). */
typedef struct xs_iq_stat {
    const char *ns;       /* "(none)" for an IQ without payload, "(other)" past the cap */
    uint64_t requests;    /* get and set */
    uint64_t answered;    /* paired with a result or an error */
    uint64_t errors;      /* of which errors */
    uint64_t unanswered;  /* reported iq-unanswered */
    double p50, p95, max; /* round trips in ms; < 0 when none was timed */
} xs_iq_stat;

/* The statistics so far, by namespace, most requests first: up to cap rows into rows[]; returns
 * how many there are in all. The strings stay valid until the next event or xs_analysis_free(). */
size_t xs_analysis_iq_stats(xs_analysis *an, xs_iq_stat *rows, size_t cap);

/* What the analyser did over the run, for tests: checks reported (all ids), IQs forgotten
 * because of the in-flight cap, sessions it holds state for now. */
typedef struct xs_analysis_counts {
    uint64_t checks;
    uint64_t iq_evicted;
    uint64_t sessions; /* sessions with state now */
} xs_analysis_counts;
void xs_analysis_get_counts(const xs_analysis *an, xs_analysis_counts *out);

void xs_analysis_free(xs_analysis *an);

#endif
