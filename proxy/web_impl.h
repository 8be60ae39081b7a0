/* The web inspector's insides, shared by web.c (the HTTP and WebSocket server) and web_hist.c
 * (the observer, the history, filters and the intercept). See web.h. */
#ifndef XS_PROXY_WEB_IMPL_H
#define XS_PROXY_WEB_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>
#include <uv.h>

#include "filters/filter.h"
#include "filters/filter_obs.h"
#include "inspect/buf.h"
#include "proxy/web.h"

/* One event as the browsers get it: its JSON (the JSON printer's line) and what the filters need
 * to judge it again (the account the session was bound to then). */
typedef struct web_rec {
    uint64_t seq;
    size_t len;    /* of json */
    char *account; /* or NULL */
    /* The span of json holding `,"raw":"..."` (the stanza's bytes), left out of what browsers
     * get in the list; they ask for the whole record when they show it. raw_len 0: none. */
    size_t raw_off, raw_len;
    char json[]; /* {"n":seq,"k":kind,...,"e":{line}} without the per-browser "f" */
} web_rec;

/* A held stanza, as the page shows it. */
typedef struct web_held {
    char session[16];
    xs_side from;
    uint64_t id;
    uint64_t due_ms; /* uv_now() when it is forwarded anyway */
    char *xml;       /* masked, for display */
} web_held;

/* A browser (a WebSocket). */
typedef struct web_client {
    struct xs_web *w;
    struct lws *wsi;
    struct web_client *next;
    uint64_t next_seq;   /* the next record to send */
    uint64_t joined_seq; /* next_seq of the history when it asked for all (hello, filter) */
    uint64_t lost;       /* records it lost and was not told about yet */
    uint64_t unsaid;     /* records it lost that the operator was not told about yet */
    xs_filter *filter;   /* its filter box; NULL: everything matches */
    bool held_dirty;     /* the held list changed: send it */
    bool hello;          /* it asked for the events */
    xs_buf in;           /* a message being received */
    xs_buf reply;        /* answers to its requests, waiting to be sent (JSON lines) */
} web_client;

struct xs_web {
    uv_loop_t *loop;
    struct lws_context *ctx;
    /* Set to the context and cleared by libwebsockets once its destruction is complete (on a
     * foreign loop it finishes in close callbacks). */
    struct lws_context *ctx_alive;
    xs_web_opts opts;
    char host[256], port[16];
    char token[65];
    char url[400];
    char title[256];
    /* history */
    web_rec **recs; /* ring: recs[(head + i) % cap] for i < n */
    size_t head, n, cap;
    uint64_t first_seq, next_seq; /* seq of recs[head]; of the next record */
    size_t bytes, max_bytes;
    uint64_t hist_dropped; /* records the history dropped */
    uint64_t lost_total;   /* records browsers lost */
    bool said_history_full;
    /* the observer */
    xs_printer *printer; /* JSON, into `line` */
    xs_buf line;
    xs_filter *all;         /* a filter that every account-tracking call can use */
    xs_filter_obs *tracker; /* learns each session's bound JID */
    xs_observer tracker_obs;
    /* browsers */
    web_client *clients;
    unsigned n_clients;
    uv_timer_t wake; /* the pump: every WEB_PUMP_MS, browsers with more to read may write */
    bool wake_pending;
    bool busy;            /* many events in the last pump period: browsers get small batches */
    uint64_t seq_at_pump; /* next_seq at the last pump */
    bool closing;
    /* intercept */
    xs_filter *bp;         /* the breakpoint; NULL: none */
    unsigned bp_timeout_s; /* how long a held stanza waits */
    web_held *held;
    size_t n_held, cap_held;
    uv_timer_t held_timer;
    bool handles_open;
};

/* web_hist.c */
int xs_web_hist_init(struct xs_web *w);
void xs_web_hist_free(struct xs_web *w);
/* The records from client c's cursor, as one message of at most about `max` bytes, appended to
 * *out; advances the cursor. Returns 1 when something was appended. */
int xs_web_hist_batch(struct xs_web *w, web_client *c, xs_buf *out, size_t max);
/* Handles a message of a browser (JSON). Answers go to c->reply. */
void xs_web_request(struct xs_web *w, web_client *c, const char *msg, size_t len);
/* The held list, as a message. */
int xs_web_held_json(struct xs_web *w, xs_buf *out);
void xs_web_mark_held_dirty(struct xs_web *w);
void xs_web_wake(struct xs_web *w);
void xs_web_start_timer(struct xs_web *w);

/* web.c */
extern const struct web_asset {
    const char *path, *mime;
    const unsigned char *data;
    size_t len;
} xs_web_assets[];
extern const size_t xs_web_n_assets;

#endif
