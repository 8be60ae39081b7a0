/* An observer that passes on only the events a filter (filter.h) selects: `--filter` wraps the
 * console with it, `--write-filter` the --write log, `inspect --filter` its printer.
 *
 * What it passes on:
 *   - a stanza when the filter says yes;
 *   - a parse error, and a note of level "warn" or "error", always (something went wrong: a
 *     person must see it whatever they filter on), and a note of no session;
 *   - the end of the input offline (XS_OBS_CLOSED of no session), always;
 *   - any other event (stream opened or closed, keepalive, TLS up, info note, the end of a
 *     session, a tick with checks) when the filter says a clear yes for it (see filter.h: such an
 *     event is no message and has no id; the JID atoms ask about the JID the session is bound to);
 *   - with XS_FILTER_OBS_STREAMS, every stream header too: a log must hold them to be read back
 *     (inspect rebuilds each stream from its header).
 *
 * To know whose a stanza without `from` is, it remembers, per session (meta->session), the JID
 * the server bound: the full JID in the result of resource binding (RFC 6120 §7) or in a SASL2
 * <success/> (XEP-0388 authorization-identifier), from the server's side. Before that, from the
 * server's SASL <success/> on, the bare JID the client's SASL PLAIN or SCRAM message claimed
 * (its authzid, or its authcid at the domain of the client's stream header), read from the
 * original bytes and never kept beyond that JID. It sees every event for that, also those it
 * does not pass on. A session is forgotten at its XS_OBS_CLOSED (offline, the one of no session
 * forgets all); at most XS_FILTER_MAX_SESSIONS sessions are remembered at once (a further one
 * then counts as not bound).
 *
 * The annotate pass is handed to the wrapped observer unchanged (an analyser sees everything).
 * The wrapped observer may miss an XS_OBS_CLOSED the filter does not select: wrap printers and
 * other observers that keep nothing per session.
 */
#ifndef XS_FILTERS_FILTER_OBS_H
#define XS_FILTERS_FILTER_OBS_H

#include <stddef.h>

#include "filters/filter.h"
#include "inspect/observer.h"

#define XS_FILTER_MAX_SESSIONS 65536u

enum {
    /* Pass on every stream header (XS_EV_STREAM_OPEN), whatever the filter says. */
    XS_FILTER_OBS_STREAMS = 1u << 0,
};

typedef struct xs_filter_obs xs_filter_obs;

/* Wraps `inner` (copied: its ctx must outlive the wrapper) with `filter` (borrowed: it must
 * outlive the wrapper; one thread uses both). Returns 0 and sets *out, or XS_ENOMEM. Free with
 * xs_filter_obs_free() once no session uses it. */
int xs_filter_obs_new(const xs_observer *inner, xs_filter *filter, unsigned flags,
                      xs_filter_obs **out);

/* The observer to register: the inner's policy, debug, needs_tree and name, with the wrapper's
 * callbacks. A stanza the filter must look into without a tree is parsed from its bytes, so
 * needs_tree is not raised for the filter's sake. */
xs_observer xs_filter_observer(xs_filter_obs *fo);

void xs_filter_obs_free(xs_filter_obs *fo);

/* The JID the session `session` is bound to as the wrapper knows it, or NULL (for tests). */
const char *xs_filter_obs_account(const xs_filter_obs *fo, const char *session);

/* Sessions remembered now (for tests). */
size_t xs_filter_obs_sessions(const xs_filter_obs *fo);

#endif
