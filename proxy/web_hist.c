/* The web inspector's events: the observer, the bounded history every browser reads from, the
 * filter box, send and the intercept. See web.h and web_impl.h. */
#include "proxy/web_impl.h"

#include "inspect/error.h"
#include "inspect/print.h"
#include "proxy/proxy_impl.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A browser more than this far behind the newest event (in bytes of records) skips ahead to half
 * of it and is told how many events it lost: the bound on what one browser can make the server
 * keep for it beyond the shared history. */
#define WEB_CLIENT_LAG (8u << 20)
#define WEB_TICK_MS 1000

/* ---- the history --------------------------------------------------------------------------- */

static web_rec *rec_at(struct xs_web *w, size_t i)
{
    return w->recs[(w->head + i) % w->cap];
}

static void drop_oldest(struct xs_web *w)
{
    web_rec *r = w->recs[w->head];
    w->bytes -= sizeof(*r) + r->len + (r->account ? strlen(r->account) + 1 : 0);
    free(r->account);
    free(r);
    w->head = (w->head + 1) % w->cap;
    w->n--;
    w->first_seq++;
    w->hist_dropped++;
}

static int push_rec(struct xs_web *w, web_rec *r)
{
    if (w->n == w->cap) {
        size_t ncap = w->cap ? w->cap * 2 : 1024;
        web_rec **nr = malloc(ncap * sizeof(*nr));
        if (nr == NULL)
            return XS_ENOMEM;
        for (size_t i = 0; i < w->n; i++)
            nr[i] = rec_at(w, i);
        free(w->recs);
        w->recs = nr;
        w->cap = ncap;
        w->head = 0;
    }
    w->recs[(w->head + w->n) % w->cap] = r;
    w->n++;
    w->bytes += sizeof(*r) + r->len + (r->account ? strlen(r->account) + 1 : 0);
    while (w->bytes > w->max_bytes && w->n > 1)
        drop_oldest(w);
    if (w->hist_dropped > 0 && !w->said_history_full) {
        w->said_history_full = true;
        xs_proxy_say("web inspector: the history passed --web-history (%zu bytes): the oldest "
                     "events are dropped from the page (the --write log keeps everything)",
                     w->max_bytes);
    }
    xs_web_wake(w);
    return 0;
}

static const char *kind_name(xs_obs_kind k)
{
    switch (k) {
    case XS_OBS_PARSED:
        return "parsed";
    case XS_OBS_TLS_UP:
        return "tls";
    case XS_OBS_NOTE:
        return "note";
    case XS_OBS_CLOSED:
        return "closed";
    case XS_OBS_TICK:
        return "tick";
    }
    return "?";
}

/* Finds `,"raw":"..."` in a record: the printer writes that key once, at the top level of the
 * event, and a string value holds no unescaped quote, so its first occurrence is the one. */
static void raw_span(const char *j, size_t len, size_t *off, size_t *n)
{
    static const char key[] = ",\"raw\":\"";
    *off = *n = 0;
    const char *k = memmem(j, len, key, sizeof(key) - 1);
    if (k == NULL)
        return;
    const char *p = k + sizeof(key) - 1, *end = j + len;
    while (p < end && *p != '"')
        p += *p == '\\' ? 2 : 1;
    if (p >= end)
        return;
    *off = (size_t)(k - j);
    *n = (size_t)(p + 1 - k);
}

/* Adds one record per line the JSON printer wrote for the event. */
static void add_records(struct xs_web *w, const xs_obs_event *ev, const char *account)
{
    const char *p = xs_buf_ptr(&w->line), *end = p + xs_buf_len(&w->line);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        xs_buf b;
        xs_buf_init(&b, 0);
        xs_buf_addf(&b, "{\"n\":%llu,\"k\":\"%s\"", (unsigned long long)w->next_seq,
                    kind_name(ev->kind));
        if (ev->kind == XS_OBS_TLS_UP)
            xs_buf_addf(&b, ",\"side\":%d", ev->side);
        if (account != NULL) {
            json_t *js = json_string(account);
            char *a = js != NULL ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
            json_decref(js);
            if (a != NULL)
                xs_buf_addf(&b, ",\"a\":%s", a);
            free(a);
        }
        xs_buf_adds(&b, ",\"e\":");
        xs_buf_add(&b, p, ll);
        xs_buf_adds(&b, "}");
        web_rec *r = xs_buf_error(&b) == 0 ? malloc(sizeof(*r) + xs_buf_len(&b) + 1) : NULL;
        if (r != NULL) {
            r->seq = w->next_seq;
            r->len = xs_buf_len(&b);
            raw_span(xs_buf_ptr(&b), r->len, &r->raw_off, &r->raw_len);
            r->account = account != NULL ? strdup(account) : NULL;
            memcpy(r->json, xs_buf_ptr(&b), r->len + 1);
            if (push_rec(w, r) == 0)
                w->next_seq++;
            else {
                free(r->account);
                free(r);
            }
        }
        xs_buf_free(&b);
        p += ll + 1;
    }
}

static void forget_held(struct xs_web *w, const char *session);

static int web_on_event(void *ctx, const xs_obs_event *ev)
{
    struct xs_web *w = ctx;
    /* The tracker learns the session's JID from this event (it passes nothing on). */
    (void)w->tracker_obs.on_event(w->tracker_obs.ctx, ev);
    const char *session = ev->meta != NULL ? ev->meta->session : NULL;
    const char *account = session != NULL ? xs_filter_obs_account(w->tracker, session) : NULL;
    xs_buf_reset(&w->line);
    xs_observer po = xs_printer_observer(w->printer, XS_OBS_BEST_EFFORT, 0, "the web inspector");
    (void)po.on_event(po.ctx, ev);
    if (xs_buf_len(&w->line) > 0)
        add_records(w, ev, account);
    if (ev->kind == XS_OBS_CLOSED && session != NULL)
        forget_held(w, session);
    if (xs_buf_len(&w->line) > (1u << 20))
        xs_buf_free(&w->line); /* a big stanza's room goes back */
    return 0;
}

static void web_annotate(void *ctx, const xs_obs_event *ev, xs_annot *annot)
{
    struct xs_web *w = ctx;
    if (w->tracker_obs.annotate != NULL)
        w->tracker_obs.annotate(w->tracker_obs.ctx, ev, annot);
}

xs_observer xs_web_observer(xs_web *w)
{
    return (xs_observer){.on_event = web_on_event,
                         .annotate = NULL,
                         .ctx = w,
                         .policy = XS_OBS_BEST_EFFORT,
                         .debug = 0,
                         .needs_tree = 0,
                         .name = "the web inspector"};
}

static int line_sink(void *ctx, const char *data, size_t len)
{
    struct xs_web *w = ctx;
    return xs_buf_add(&w->line, data, len) < 0 ? XS_EIO : 0;
}

static int noop_event(void *ctx, const xs_obs_event *ev)
{
    (void)ctx;
    (void)ev;
    return 0;
}

static void on_held_timer(uv_timer_t *t);

void xs_web_start_timer(struct xs_web *w)
{
    uv_timer_start(&w->held_timer, on_held_timer, WEB_TICK_MS, WEB_TICK_MS);
    uv_unref((uv_handle_t *)&w->held_timer);
}

int xs_web_hist_init(struct xs_web *w)
{
    (void)web_annotate;
    xs_buf_init(&w->line, 0);
    xs_print_options po = {.format = XS_FORMAT_JSON, .sink = line_sink, .sink_ctx = w};
    if (xs_printer_new(NULL, &po, &w->printer) < 0)
        return XS_ENOMEM;
    xs_filter_error fe;
    if (xs_filter_parse("message or not message", &w->all, &fe) < 0)
        return XS_ENOMEM;
    xs_observer inner = {.on_event = noop_event, .name = "the web inspector"};
    if (xs_filter_obs_new(&inner, w->all, 0, &w->tracker) < 0)
        return XS_ENOMEM;
    w->tracker_obs = xs_filter_observer(w->tracker);
    return 0;
}

void xs_web_hist_free(struct xs_web *w)
{
    while (w->n > 0)
        drop_oldest(w);
    free(w->recs);
    w->recs = NULL;
    xs_printer_free(w->printer);
    xs_buf_free(&w->line);
    xs_filter_obs_free(w->tracker);
    xs_filter_free(w->all);
    xs_filter_free(w->bp);
    for (size_t i = 0; i < w->n_held; i++)
        free(w->held[i].xml);
    free(w->held);
}

/* ---- judging a record with a filter -------------------------------------------------------- */

/* Whether the filter says yes to the record: the event is rebuilt from its JSON (name, namespace,
 * from/to/id/type, the bytes as shown, direction, session, rule tags and checks), as a stanza
 * read without a tree, which the filter knows how to judge. */
static bool rec_matches(xs_filter *f, const web_rec *r)
{
    json_t *root = json_loadb(r->json, r->len, 0, NULL);
    json_t *e = json_object_get(root, "e");
    bool yes = false;
    if (!json_is_object(e))
        goto out;
    const char *event = json_string_value(json_object_get(e, "event"));
    xs_print_meta meta = {
        .session = json_string_value(json_object_get(e, "session")),
        .direction = json_string_value(json_object_get(e, "dir")),
    };
    xs_annot annot;
    xs_annot_init(&annot);
    annot.n_checks = 0;
    json_t *checks = json_object_get(e, "checks");
    for (size_t i = 0; i < json_array_size(checks) && annot.n_checks < XS_ANNOT_MAX_CHECKS; i++) {
        const char *id = json_string_value(json_object_get(json_array_get(checks, i), "check"));
        if (id != NULL) {
            annot.checks[annot.n_checks].id = id;
            annot.checks[annot.n_checks].ref = "";
            annot.checks[annot.n_checks++].text[0] = 0;
        }
    }
    meta.annot = &annot;
    xs_print_rule rules[32];
    json_t *jr = json_object_get(e, "rules");
    for (size_t i = 0; i < json_array_size(jr) && i < 32; i++) {
        json_t *o = json_array_get(jr, i);
        rules[meta.n_rules++] = (xs_print_rule){
            .rule = json_string_value(json_object_get(o, "rule")),
            .action = json_string_value(json_object_get(o, "action")),
            .detail = json_string_value(json_object_get(o, "detail")),
        };
    }
    meta.rules = rules;
    xs_obs_event oe = {.meta = &meta, .annot = &annot, .kind = XS_OBS_NOTE};
    xs_event ev = {0};
    xs_attr attrs[4];
    if (event != NULL && strcmp(event, "stanza") == 0) {
        static const char *const names[] = {"from", "to", "id", "type"};
        for (size_t i = 0; i < 4; i++) {
            const char *v = json_string_value(json_object_get(e, names[i]));
            if (v != NULL)
                attrs[ev.n_attrs++] = (xs_attr){.name = names[i], .value = v};
        }
        ev.kind = XS_EV_STANZA;
        ev.name = json_string_value(json_object_get(e, "name"));
        ev.ns = json_string_value(json_object_get(e, "ns"));
        ev.default_ns = ev.ns;
        ev.attrs = attrs;
        ev.raw = json_string_value(json_object_get(e, "raw"));
        ev.len = ev.raw != NULL ? json_string_length(json_object_get(e, "raw")) : 0;
        if (ev.name == NULL)
            ev.name = "";
        oe.kind = XS_OBS_PARSED;
        oe.ev = &ev;
    }
    yes = xs_filter_eval(f, &oe, r->account) == XS_FILTER_YES;
out:
    json_decref(root);
    return yes;
}

/* ---- what a browser gets ------------------------------------------------------------------- */

/* Moves a browser that fell too far behind (or behind what the history dropped) ahead. */
static void catch_up(struct xs_web *w, web_client *c)
{
    if (c->next_seq < w->first_seq) {
        c->lost += w->first_seq - c->next_seq;
        c->unsaid += w->first_seq - c->next_seq;
        w->lost_total += w->first_seq - c->next_seq;
        c->next_seq = w->first_seq;
    }
    /* What was there when it asked (the history, read late) is bounded by the history alone;
     * the lag bound is for what comes while it watches. */
    if (w->n == 0 || c->next_seq >= w->next_seq || c->next_seq < c->joined_seq)
        return;
    /* Bytes from its cursor to the end, by walking back from the end (bounded by the lag). */
    size_t lag = 0, i = w->n;
    size_t at = (size_t)(c->next_seq - w->first_seq);
    while (i > at && lag <= WEB_CLIENT_LAG)
        lag += rec_at(w, --i)->len;
    if (lag <= WEB_CLIENT_LAG)
        return;
    /* Keep the newest half of the lag. */
    size_t keep = 0;
    i = w->n;
    while (i > at && keep < WEB_CLIENT_LAG / 2)
        keep += rec_at(w, --i)->len;
    uint64_t to = w->first_seq + i;
    c->lost += to - c->next_seq;
    c->unsaid += to - c->next_seq;
    w->lost_total += to - c->next_seq;
    c->next_seq = to;
}

int xs_web_hist_batch(struct xs_web *w, web_client *c, xs_buf *out, size_t max)
{
    catch_up(w, c);
    if (c->next_seq >= w->next_seq && c->lost == 0)
        return 0;
    size_t start = xs_buf_len(out);
    xs_buf_addf(out, "{\"t\":\"evs\",\"lost\":%llu,\"hist_dropped\":%llu,\"list\":[",
                (unsigned long long)c->lost, (unsigned long long)w->hist_dropped);
    c->lost = 0;
    bool first = true;
    while (c->next_seq < w->next_seq && xs_buf_len(out) - start < max) {
        const web_rec *r = rec_at(w, (size_t)(c->next_seq - w->first_seq));
        if (!first)
            xs_buf_adds(out, ",");
        first = false;
        if (c->filter != NULL)
            xs_buf_adds(out, rec_matches(c->filter, r) ? "{\"f\":1," : "{\"f\":0,");
        else
            xs_buf_adds(out, "{");
        /* The list needs no stanza bytes: a record goes without them ("lite"). */
        if (r->raw_len > 0) {
            xs_buf_adds(out, "\"lite\":1,");
            xs_buf_add(out, r->json + 1, r->raw_off - 1);
            xs_buf_add(out, r->json + r->raw_off + r->raw_len, r->len - r->raw_off - r->raw_len);
        } else
            xs_buf_add(out, r->json + 1, r->len - 1);
        c->next_seq++;
    }
    xs_buf_adds(out, "]}");
    return 1;
}

/* ---- requests ------------------------------------------------------------------------------ */

static void reply(web_client *c, json_t *msg)
{
    char *s = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (s == NULL)
        return;
    /* Answers are sent one message each; several pending ones are joined as an array. */
    if (xs_buf_len(&c->reply) == 0)
        xs_buf_adds(&c->reply, s);
    else {
        char *old = strdup(xs_buf_ptr(&c->reply));
        xs_buf_reset(&c->reply);
        if (old != NULL && old[0] == '[')
            old[strlen(old) - 1] = 0, xs_buf_addf(&c->reply, "%s,%s]", old, s);
        else if (old != NULL)
            xs_buf_addf(&c->reply, "[%s,%s]", old, s);
        free(old);
    }
    free(s);
}

static int parse_side(const char *dir, xs_side *side)
{
    if (dir != NULL && strcmp(dir, "c2s") == 0)
        *side = XS_CLIENT;
    else if (dir != NULL && strcmp(dir, "s2c") == 0)
        *side = XS_SERVER;
    else
        return -1;
    return 0;
}

static void req_filter(web_client *c, json_t *m, const char *t)
{
    const char *expr = json_string_value(json_object_get(m, "expr"));
    xs_filter *f = NULL;
    xs_filter_error fe = {0};
    if (expr != NULL && expr[0] != 0 && xs_filter_parse(expr, &f, &fe) < 0) {
        reply(c, json_pack("{ss sb si ss}", "t", t, "ok", 0, "column", (int)fe.column, "message",
                           fe.message));
        return;
    }
    xs_filter_free(c->filter);
    c->filter = f;
    /* The browser gets everything again, judged by the new filter. */
    c->next_seq = 0;
    c->joined_seq = c->w->next_seq;
    c->lost = 0;
    reply(c, json_pack("{ss sb ss}", "t", t, "ok", 1, "expr", expr ? expr : ""));
}

/* A whole record (with its bytes), for the detail pane. */
static void req_get(struct xs_web *w, web_client *c, json_t *m)
{
    json_int_t n = json_integer_value(json_object_get(m, "n"));
    if (n < 0 || (uint64_t)n < w->first_seq || (uint64_t)n >= w->next_seq) {
        reply(c, json_pack("{ss sI sb}", "t", "rec", "n", n, "gone", 1));
        return;
    }
    const web_rec *r = rec_at(w, (size_t)((uint64_t)n - w->first_seq));
    json_t *rec = json_loadb(r->json, r->len, 0, NULL);
    if (rec == NULL)
        return;
    reply(c, json_pack("{ss sI so}", "t", "rec", "n", n, "r", rec));
}

static void req_send(struct xs_web *w, web_client *c, json_t *m)
{
    const char *session = json_string_value(json_object_get(m, "session"));
    const char *dir = json_string_value(json_object_get(m, "dir"));
    json_t *jx = json_object_get(m, "xml");
    xs_side to;
    xs_diag d = {""};
    int rc;
    if (w->opts.control == NULL)
        rc = xs_diag_set(&d, XS_ESTATE, "a saved log has no live session to send to");
    else if (session == NULL || !json_is_string(jx) || parse_side(dir, &to) < 0)
        rc = xs_diag_set(&d, XS_EINVAL,
                         "send needs session, dir (c2s: to the server, s2c: to "
                         "the client) and xml");
    else {
        /* dir c2s goes to the server, as if the client had sent it. */
        to = to == XS_CLIENT ? XS_SERVER : XS_CLIENT;
        rc = w->opts.control->inject(w->opts.control->ctx, session, to, json_string_value(jx),
                                     json_string_length(jx), &d);
    }
    reply(c, json_pack("{ss sb ss}", "t", "sent", "ok", rc == 0, "message", d.text));
}

static void req_intercept(struct xs_web *w, web_client *c, json_t *m)
{
    json_t *to = json_object_get(m, "timeout");
    if (w->opts.control == NULL) {
        reply(c, json_pack("{ss sb ss}", "t", "intercept", "ok", 0, "message",
                           "a saved log has no live session to intercept"));
        return;
    }
    if (json_is_number(to)) {
        double s = json_number_value(to);
        w->bp_timeout_s = s < 1 ? 1 : s > 3600 ? 3600 : (unsigned)s;
    }
    const char *expr = json_string_value(json_object_get(m, "expr"));
    xs_filter *f = NULL;
    xs_filter_error fe = {0};
    if (expr != NULL && expr[0] != 0 && xs_filter_parse(expr, &f, &fe) < 0) {
        reply(c, json_pack("{ss sb si ss}", "t", "intercept", "ok", 0, "column", (int)fe.column,
                           "message", fe.message));
        return;
    }
    xs_filter_free(w->bp);
    w->bp = f;
    xs_proxy_say("web inspector: breakpoint %s%s (held stanzas go on after %u s)",
                 f ? "set to " : "cleared", f ? expr : "", w->bp_timeout_s);
    reply(c, json_pack("{ss sb ss si}", "t", "intercept", "ok", 1, "expr", expr ? expr : "",
                       "timeout", (int)w->bp_timeout_s));
}

static void remove_held(struct xs_web *w, size_t i)
{
    free(w->held[i].xml);
    memmove(&w->held[i], &w->held[i + 1], (w->n_held - i - 1) * sizeof(w->held[0]));
    w->n_held--;
    xs_web_mark_held_dirty(w);
}

static void req_release(struct xs_web *w, web_client *c, json_t *m)
{
    const char *session = json_string_value(json_object_get(m, "session"));
    const char *dir = json_string_value(json_object_get(m, "dir"));
    const char *action = json_string_value(json_object_get(m, "action"));
    json_t *jx = json_object_get(m, "xml");
    json_int_t id = json_integer_value(json_object_get(m, "id"));
    xs_side from = XS_CLIENT;
    xs_diag d = {""};
    int rc;
    if (w->opts.control == NULL || session == NULL || action == NULL || parse_side(dir, &from) < 0)
        rc = xs_diag_set(&d, XS_EINVAL, "release needs session, dir, id and action");
    else {
        int drop = strcmp(action, "drop") == 0;
        const char *xml = !drop && json_is_string(jx) ? json_string_value(jx) : NULL;
        rc = w->opts.control->release(w->opts.control->ctx, session, from, (uint64_t)id, xml,
                                      xml ? json_string_length(jx) : 0, drop, "by the user", &d);
    }
    /* Released, or gone from the session already (it closed, or the stream flushed it). */
    if (w->opts.control != NULL && session != NULL && (rc == 0 || rc == XS_EINVAL))
        for (size_t i = 0; i < w->n_held; i++)
            if (session != NULL && strcmp(w->held[i].session, session) == 0 &&
                w->held[i].id == (uint64_t)id && w->held[i].from == from) {
                remove_held(w, i);
                break;
            }
    reply(c, json_pack("{ss sb ss}", "t", "released", "ok", rc == 0, "message", d.text));
}

void xs_web_request(struct xs_web *w, web_client *c, const char *msg, size_t len)
{
    json_t *m = json_loadb(msg, len, 0, NULL);
    const char *t = json_string_value(json_object_get(m, "t"));
    if (t == NULL)
        reply(c, json_pack("{ss ss}", "t", "error", "message", "not a request"));
    else if (strcmp(t, "hello") == 0) {
        c->hello = true;
        c->joined_seq = w->next_seq;
        reply(c, json_pack("{ss ss sb ss si}", "t", "hello", "title", w->title, "live",
                           w->opts.control != NULL, "breakpoint", "", "timeout",
                           (int)w->bp_timeout_s));
    } else if (strcmp(t, "get") == 0)
        req_get(w, c, m);
    else if (strcmp(t, "filter") == 0)
        req_filter(c, m, "filter");
    else if (strcmp(t, "send") == 0)
        req_send(w, c, m);
    else if (strcmp(t, "intercept") == 0)
        req_intercept(w, c, m);
    else if (strcmp(t, "release") == 0)
        req_release(w, c, m);
    else
        reply(c, json_pack("{ss ss}", "t", "error", "message", "unknown request"));
    json_decref(m);
}

/* ---- the intercept ------------------------------------------------------------------------- */

void xs_web_mark_held_dirty(struct xs_web *w)
{
    for (web_client *c = w->clients; c != NULL; c = c->next) {
        c->held_dirty = true;
        if (!w->closing)
            lws_callback_on_writable(c->wsi);
    }
}

int xs_web_held_json(struct xs_web *w, xs_buf *out)
{
    json_t *list = json_array();
    uint64_t now = uv_now(w->loop);
    for (size_t i = 0; i < w->n_held; i++) {
        const web_held *h = &w->held[i];
        json_array_append_new(
            list,
            json_pack("{ss ss sI ss si}", "session", h->session, "dir",
                      h->from == XS_CLIENT ? "c2s" : "s2c", "id", (json_int_t)h->id, "xml", h->xml,
                      "left_s", (int)(h->due_ms > now ? (h->due_ms - now + 999) / 1000 : 0)));
    }
    json_t *msg = json_pack("{ss so}", "t", "held", "list", list);
    char *s = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    int rc = s != NULL ? xs_buf_adds(out, s) : XS_ENOMEM;
    free(s);
    return rc;
}

int xs_web_hold(void *ctx, xs_session *s, xs_side from, const xs_obs_event *ev, uint64_t id)
{
    struct xs_web *w = ctx;
    if (w->bp == NULL || w->closing || ev->ev == NULL)
        return 0;
    const char *session = xs_session_id(s);
    const char *account = xs_filter_obs_account(w->tracker, session);
    if (xs_filter_eval(w->bp, ev, account) != XS_FILTER_YES)
        return 0;
    if (w->n_held == w->cap_held) {
        size_t ncap = w->cap_held ? 2 * w->cap_held : 16;
        web_held *nh = realloc(w->held, ncap * sizeof(*nh));
        if (nh == NULL)
            return 0;
        w->held = nh;
        w->cap_held = ncap;
    }
    const char *xml = ev->masked != NULL && ev->masked->xml != NULL ? ev->masked->xml : ev->ev->raw;
    size_t len = ev->masked != NULL && ev->masked->xml != NULL ? ev->masked->xml_len : ev->ev->len;
    web_held *h = &w->held[w->n_held];
    h->xml = xml != NULL ? strndup(xml, len) : strdup("");
    if (h->xml == NULL)
        return 0;
    snprintf(h->session, sizeof(h->session), "%s", session);
    h->from = from;
    h->id = id;
    h->due_ms = uv_now(w->loop) + (uint64_t)w->bp_timeout_s * 1000;
    w->n_held++;
    xs_web_mark_held_dirty(w);
    return 1;
}

static void forget_held(struct xs_web *w, const char *session)
{
    for (size_t i = w->n_held; i-- > 0;)
        if (strcmp(w->held[i].session, session) == 0)
            remove_held(w, i);
}

/* Once a second (said at most once a second per browser): what waited its time goes on, and the
 * console says so (the session's note). Browsers see the seconds left. */
static void on_held_timer(uv_timer_t *t)
{
    struct xs_web *w = t->data;
    uint64_t now = uv_now(w->loop);
    char why[64];
    snprintf(why, sizeof(why), "after the timeout (%u s)", w->bp_timeout_s);
    for (size_t i = 0; i < w->n_held;) {
        web_held *h = &w->held[i];
        if (h->due_ms > now) {
            i++;
            continue;
        }
        xs_diag d = {""};
        if (w->opts.control != NULL)
            (void)w->opts.control->release(w->opts.control->ctx, h->session, h->from, h->id, NULL,
                                           0, 0, why, &d);
        remove_held(w, i);
    }
    if (w->n_held > 0)
        xs_web_mark_held_dirty(w);
    /* A browser that does not read falls behind here, not only when it writes again: the lag
     * is bounded and the operator told at once. */
    for (web_client *c = w->clients; c != NULL; c = c->next) {
        catch_up(w, c);
        if (c->unsaid > 0)
            xs_proxy_say("web inspector: a browser reads too slowly: it lost %llu events in the "
                         "last second (%llu in all browsers so far; the page is told)",
                         (unsigned long long)c->unsaid, (unsigned long long)w->lost_total);
        c->unsaid = 0;
    }
}
