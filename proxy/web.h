/* The live web inspector (`proxy --web`, `xmppscope web LOG`): an HTTP and WebSocket server on the
 * proxy's own libuv loop (libwebsockets with its libuv event library, on a foreign loop: no
 * second loop, no thread) that serves a page built into the binary and sends each browser the
 * events of every session as JSON (the JSON printer's schema, inspect/print.h).
 *
 * It is an observer (inspect/observer.h): each event becomes one record of a history shared by
 * every browser, bounded in bytes (oldest records dropped first, and the browsers told). Each
 * browser reads the history from its own cursor as fast as its socket takes it: a browser that
 * reads slowly, or not at all, falls behind and loses what the history dropped (it is told how
 * many events); it never slows a session, whose observer call only appends a record.
 *
 * Access: the start-up line prints a URL with a random token (32 bytes from RAND_bytes, in hex).
 * The page is served only to a request carrying it in the query string (?token=), which sets a
 * cookie (HttpOnly, SameSite=Strict) that the page's other requests and its WebSocket carry;
 * anything else gets 403. The Host header must name the address served (or localhost with its
 * port: no DNS rebinding), and a WebSocket's Origin must be the page's own (no cross-site
 * WebSocket). */
#ifndef XS_PROXY_WEB_H
#define XS_PROXY_WEB_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "inspect/error.h"
#include "inspect/observer.h"
#include "proxy/session.h"

#define XS_WEB_DEFAULT_ADDR "127.0.0.1:8180"
#define XS_WEB_DEFAULT_HISTORY ((size_t)64 << 20)
#define XS_WEB_DEFAULT_HOLD_TIMEOUT 60 /* seconds a held stanza waits for the user */

/* What the page may do to live sessions: the proxy's side of send and intercept (web_ctl.c). Both
 * return 0 or a negative code with the cause in *diag (see xs_session_inject() and
 * xs_session_hold_release()); an unknown session is XS_EINVAL. */
typedef struct xs_web_control {
    int (*inject)(void *ctx, const char *session, xs_side to, const char *xml, size_t len,
                  xs_diag *diag);
    int (*release)(void *ctx, const char *session, xs_side from, uint64_t id, const char *xml,
                   size_t len, int drop, const char *why, xs_diag *diag);
    void *ctx;
} xs_web_control;

typedef struct xs_web_opts {
    const char *addr;              /* "ADDR:PORT"; NULL: XS_WEB_DEFAULT_ADDR */
    size_t history;                /* bytes of history; 0: XS_WEB_DEFAULT_HISTORY */
    const char *title;             /* what is shown: "proxy", or the log's name */
    const xs_web_control *control; /* NULL: nothing live to send to (a saved log) */
} xs_web_opts;

typedef struct xs_web xs_web;

/* Starts serving on `loop` (which must outlive the server). Prints the URL with its token on
 * standard error, and a warning when the address is not loopback. Returns 0 and sets *out,
 * XS_EINVAL for an address that cannot be read (cause in *diag), XS_EIO when it cannot listen,
 * XS_ENOMEM. */
int xs_web_new(uv_loop_t *loop, const xs_web_opts *opts, xs_web **out, xs_diag *diag);

/* The observer to register (it stays valid as long as the server). */
xs_observer xs_web_observer(xs_web *w);

/* The intercept's breakpoint test, an xs_session_hold_cb: ctx is the server. */
int xs_web_hold(void *ctx, xs_session *s, xs_side from, const xs_obs_event *ev, uint64_t id);

/* The URL with the token. */
const char *xs_web_url(const xs_web *w);

/* Events the browsers lost (they read too slowly) since the start, over all browsers. */
uint64_t xs_web_dropped(const xs_web *w);

/* Stops serving: closes the browsers' connections and the listener. The loop ends once its other
 * handles are closed too; then call xs_web_free(). */
void xs_web_close(xs_web *w);

/* `xmppscope web LOG.jsonl`: reads the JSON Lines log at `path` (inspect/jsonl.h) through the
 * analysers and the web inspector's observer, then serves it (read-only: no send, no intercept)
 * until SIGINT or SIGTERM. Returns 0, or an error with its cause in *diag (the log cannot be
 * opened, the address cannot be served). */
int xs_web_run_log(const xs_web_opts *opts, const char *path, xs_diag *diag);

/* Reads a --web-history value: bytes with an optional K, M or G suffix, from 1 MiB to 64 GiB.
 * Returns 0 or XS_EINVAL. */
int xs_web_parse_size(const char *s, size_t *out);

/* Frees the server (after xs_web_close() and the loop's end). NULL is allowed. */
void xs_web_free(xs_web *w);

#endif
