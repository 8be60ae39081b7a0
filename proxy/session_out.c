/* What the session says: notes and the observers, writes to the legs, stream errors and the
 * ways a session fails. See session_impl.h. */
#include "proxy/session_impl.h"

#include "inspect/alloc.h"
#include "inspect/error.h"
#include "inspect/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *xs_sess_side_dir(xs_side side)
{
    return side == XS_CLIENT ? "c2s" : "s2c";
}

void xs_sess_bytes_free(bytes *b)
{
    xs_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int xs_sess_bytes_append(bytes *b, const char *d, size_t n, size_t limit)
{
    if (n > limit || b->len > limit - n)
        return XS_ETOOBIG;
    if (b->len + n > b->cap) {
        size_t ncap = b->cap ? b->cap : 1024;
        while (ncap < b->len + n)
            ncap *= 2;
        char *nd = xs_realloc(b->data, ncap);
        if (nd == NULL)
            return XS_ENOMEM;
        b->data = nd;
        b->cap = ncap;
    }
    memcpy(b->data + b->len, d, n);
    b->len += n;
    return 0;
}

/* Replaces the reason given in the summary line. Out of memory the previous one stays: the
 * summary says less, nothing else changes. */
void xs_sess_set_end_cause(xs_session *s, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    char *copy = xs_strdup(text);
    if (copy == NULL)
        return;
    xs_free(s->end_cause);
    s->end_cause = copy;
}

/* Sets *field to a copy of at most `max` bytes of `value`. Returns 0 or XS_ENOMEM. */
int xs_sess_set_string(char **field, const char *value, size_t max)
{
    char *copy = xs_strndup(value, max);
    if (copy == NULL)
        return XS_ENOMEM;
    xs_free(*field);
    *field = copy;
    return 0;
}

/* The domain the client asked for, "" while it is not known. */
const char *xs_sess_domain_of(const xs_session *s)
{
    return s->domain != NULL ? s->domain : "";
}

/* ---- output: the observers ---------------------------------------------------------------- */

uint64_t xs_sess_now_us(const xs_session *s, int wall)
{
    return s->io->now_us != NULL ? s->io->now_us(s->io_ctx, wall) : 0;
}

xs_print_meta xs_sess_meta_of(const xs_session *s, const char *dir, const char *ph)
{
    xs_print_meta m = {.session = s->id_str,
                       .direction = dir,
                       .phase = ph,
                       .client_addr = s->peer != NULL && s->peer[0] != '?' ? s->peer : NULL,
                       .server_addr = s->server_addr};
    uint64_t us = xs_sess_now_us(s, 1);
    m.time.tv_sec = (time_t)(us / 1000000u);
    m.time.tv_nsec = (long)(us % 1000000u) * 1000L;
    return m;
}

static void diag(xs_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line no observer can take goes to the legs' diagnostics (stderr in the proxy). */
static void diag(xs_session *s, const char *fmt, ...)
{
    char text[512];
    int n = snprintf(text, sizeof(text), "session %s: ", s->id_str);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text + n, sizeof(text) - (size_t)n, fmt, ap);
    va_end(ap);
    if (s->io->diag != NULL)
        s->io->diag(s->io_ctx, text);
}

/* Tells every observer but observer `skip` (SIZE_MAX: none) an event other than a parser event.
 * Their failures are not acted upon: a note that cannot be written is lost, as a line of a
 * console is; only the parser events carry the promise of --on-log-error. Returns how many
 * observers were told. */
size_t xs_sess_tell_all(xs_session *s, const xs_obs_event *e, size_t skip)
{
    size_t n = s->cfg->n_observers;
    (void)xs_obs_emit_other_but(s->cfg->observers, n, skip, e);
    return skip < n ? n - 1 : n;
}

static void tell_note(xs_session *s, const char *level, const char *text)
{
    xs_print_meta m = xs_sess_meta_of(s, NULL, NULL);
    xs_obs_event e = {.kind = XS_OBS_NOTE, .meta = &m, .level = level, .text = text};
    (void)xs_sess_tell_all(s, &e, SIZE_MAX);
}

void xs_sess_note(xs_session *s, const char *level, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (s->cfg->n_observers == 0)
        return;
    if (s->in_event) {
        size_t ll = strlen(level) + 1, tl = strlen(text) + 1;
        /* Out of memory (or past 64 KiB of notes for one event) the note is told at once,
         * before the event: out of order rather than lost. */
        if (xs_sess_bytes_append(&s->deferred, level, ll, 65536) == 0) {
            if (xs_sess_bytes_append(&s->deferred, text, tl, 65536) == 0)
                return;
            s->deferred.len -= ll;
        }
    }
    tell_note(s, level, text);
}

/* Tells the notes kept while an event was handled, in order. */
void xs_sess_tell_deferred(xs_session *s)
{
    size_t at = 0;
    while (at < s->deferred.len) {
        const char *level = s->deferred.data + at;
        const char *text = level + strlen(level) + 1;
        at = (size_t)(text - s->deferred.data) + strlen(text) + 1;
        tell_note(s, level, text);
    }
    xs_sess_bytes_free(&s->deferred);
}

/* The deferred failure when there is no memory for its text. Never freed. */
char xs_sess_deferred_oom[] = "the server leg failed (out of memory for the details)";

/* The meta of a parser event: where it comes from, and what the rules did to it. */
xs_print_meta xs_sess_event_meta(const xs_session *s, const xs_sess_event *sx, xs_print_rule pr[32])
{
    xs_print_meta m =
        xs_sess_meta_of(s, xs_sess_side_dir(sx->from), xs_sess_phase_name(s->ph[sx->from]));
    const xs_rule_result *res = sx->res;
    if (res != NULL && res->n_applied > 0) {
        size_t n = res->n_applied < 32 ? res->n_applied : 32;
        for (size_t i = 0; i < n; i++)
            pr[i] = (xs_print_rule){.rule = res->applied[i].rule,
                                    .action = res->applied[i].action,
                                    .detail = res->applied[i].detail};
        m.rules = pr;
        m.n_rules = n;
        m.verdict = xs_rule_verdict_name(res->verdict);
        if (res->verdict == XS_VERDICT_REWRITTEN)
            m.rewritten = res->xml;
    }
    return m;
}

/* Before the event is forwarded: the observers that must see it first (XS_OBS_REQUIRED, the log
 * with --on-log-error stop). This is the one synchronous check on the forwarding path, kept
 * because the user's promise is that nothing unlogged reaches the other side. `mrc` is the
 * masking's result: when it failed, every observer failed. Returns 0, or the first failure (the
 * session then ends without forwarding the event). */
int xs_sess_tell_required(xs_session *s, int mrc, const xs_obs_masked *m)
{
    for (size_t i = 0; i < s->cfg->n_observers; i++) {
        const xs_observer *o = &s->cfg->observers[i];
        if (o->policy != XS_OBS_REQUIRED)
            continue;
        int rc = mrc < 0 ? mrc : xs_obs_call(o, &m->event);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* After the event's bytes are queued: every other observer. An XS_OBS_WARN observer that fails
 * is said to fail once per session (forwarding goes on: the traffic matters more than its
 * record), to the other observers, or as a diagnostic when there is none. */
void xs_sess_tell_others(xs_session *s, int mrc, const xs_obs_masked *m, const xs_print_meta *meta)
{
    for (size_t i = 0; i < s->cfg->n_observers; i++) {
        const xs_observer *o = &s->cfg->observers[i];
        if (o->policy == XS_OBS_REQUIRED)
            continue;
        int rc = mrc < 0 ? mrc : xs_obs_call(o, &m->event);
        if (rc >= 0 || o->policy != XS_OBS_WARN)
            continue;
        uint32_t bit = i < 32 ? (uint32_t)1 << i : 0;
        if (s->warned & bit)
            continue;
        s->warned |= bit;
        const char *name = o->name != NULL ? o->name : "an observer";
        char text[200];
        snprintf(text, sizeof(text), "cannot write %s (%s): this session goes on unlogged", name,
                 xs_strerror(rc));
        xs_print_meta nm = *meta;
        nm.rules = NULL;
        nm.n_rules = 0;
        nm.verdict = NULL;
        nm.rewritten = NULL;
        xs_obs_event e = {.kind = XS_OBS_NOTE, .meta = &nm, .level = "error", .text = text};
        if (xs_sess_tell_all(s, &e, i) == 0)
            diag(s, "cannot write %s (%s): the session goes on unlogged", name, xs_strerror(rc));
    }
}

/* Every state change goes through these, and is logged. */

/* ---- writing ------------------------------------------------------------------------------ */

int xs_sess_put(xs_session *s, xs_side to, const char *data, size_t len)
{
    if (len == 0 || sess_has(s, side_bit(XS_SF_LEG_CLOSED_CLIENT, to)))
        return 0;
    int rc = s->io->write(s->io_ctx, to, data, len);
    if (rc < 0 && s->state != SS_CLOSING) {
        /* A leg that cannot take more (TLS failed, too much held before a handshake): the
         * session cannot go on without losing bytes, so it ends here. */
        xs_sess_note(s, "error", "cannot send to the %s: %s", to == XS_CLIENT ? "client" : "server",
                     xs_strerror(rc));
        xs_sess_set_end_cause(s, "cannot send to the %s: %s", to == XS_CLIENT ? "client" : "server",
                              xs_strerror(rc));
        xs_sess_close_both(s);
    }
    return rc;
}

int xs_sess_put_str(xs_session *s, xs_side to, const char *str)
{
    return xs_sess_put(s, to, str, strlen(str));
}

/* Escapes a value for an XML attribute or text into `out`, with the program's one escaper; a
 * value too long for cap is cut before a whole character reference. Out of memory gives "". */
static void xml_escape(char *out, size_t cap, const char *in)
{
    xs_buf b;
    size_t n;

    xs_buf_init(&b, 0);
    xs_buf_add_xml_escaped(&b, in, strlen(in), XS_XML_ATTR);
    n = xs_buf_error(&b) != 0 ? 0 : xs_buf_len(&b);
    if (n > cap - 1) {
        n = cap - 1;
        for (size_t k = n; k > 0 && n - k < 6; k--) {
            if (b.p[k - 1] == ';')
                break;
            if (b.p[k - 1] == '&') {
                n = k - 1;
                break;
            }
        }
    }
    memcpy(out, xs_buf_ptr(&b), n);
    out[n] = '\0';
    xs_buf_free(&b);
}

/* Opens the client's stream from our side, as the server would. */
void xs_sess_answer_client_header(xs_session *s)
{
    char dom[600], hdr[1024];
    xml_escape(dom, sizeof(dom), s->domain != NULL && s->domain[0] ? s->domain : "localhost");
    snprintf(hdr, sizeof(hdr),
             "<?xml version='1.0'?><stream:stream xmlns='%s' "
             "xmlns:stream='" NS_STREAMS "' from='%s' id='xmppscope-%u-%ld' version='1.0' "
             "xml:lang='en'>",
             s->client_ns != NULL && s->client_ns[0] ? s->client_ns : "jabber:client", dom, s->id,
             (long)(s->started_us % 1000000u) * 1000L);
    xs_sess_put_str(s, XS_CLIENT, hdr);
    sess_set(s, XS_SF_CLIENT_ANSWERED);
}

void xs_sess_stream_error_to(xs_session *s, xs_side to, const char *condition, const char *text)
{
    char esc[600], buf[1024];
    if (to == XS_CLIENT && !sess_has(s, XS_SF_CLIENT_ANSWERED))
        xs_sess_answer_client_header(s);
    xml_escape(esc, sizeof(esc), text);
    snprintf(buf, sizeof(buf),
             "<stream:error><%s xmlns='" NS_XMPP_STREAMS "'/><text xmlns='" NS_XMPP_STREAMS
             "' xml:lang='en'>xmppscope: %s</text></stream:error></stream:stream>",
             condition, esc);
    xs_sess_put_str(s, to, buf);
}

/* A side can take XML now: its leg is not in a TLS handshake. */
bool xs_sess_can_speak(const xs_session *s, xs_side side)
{
    if (side == XS_CLIENT)
        return s->cst != CL_TLS_HANDSHAKE;
    return s->sst != SL_IDLE && s->sst != SL_CONNECTING && s->sst != SL_TLS_HANDSHAKE &&
           s->sst != SL_GONE;
}

/* Ends the stream xmppscope carries towards `to` with </stream:stream>, if that stream is open
 * and was not ended already (its peer, the other side, did not close it through us). */
void xs_sess_end_stream_to(xs_session *s, xs_side to)
{
    if (!xs_sess_can_speak(s, to))
        return;
    if (to == XS_SERVER
            ? sess_has(s, XS_SF_SERVER_OPENED) && !sess_has(s, XS_SF_CLOSED_BY_CLIENT)
            : sess_has(s, XS_SF_CLIENT_ANSWERED) && !sess_has(s, XS_SF_CLOSED_BY_SERVER))
        xs_sess_put_str(s, to, "</stream:stream>");
}

void xs_sess_close_side(xs_session *s, xs_side side)
{
    if (sess_has(s, side_bit(XS_SF_LEG_CLOSED_CLIENT, side)))
        return;
    sess_set(s, side_bit(XS_SF_LEG_CLOSED_CLIENT, side));
    s->io->close(s->io_ctx, side);
}

void xs_sess_close_both(xs_session *s)
{
    xs_sess_set_state(s, SS_CLOSING);
    xs_sess_close_side(s, XS_CLIENT);
    xs_sess_close_side(s, XS_SERVER);
}

/* Ends the session because of `at_fault`: that side gets a stream error with `condition`, the
 * other a clean close of its stream. */
void xs_sess_fail(xs_session *s, xs_side at_fault, const char *condition, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (s->state == SS_CLOSING)
        return;
    xs_sess_note(s, "error", "%s: <%s/> to the %s: %s", at_fault == XS_CLIENT ? "client" : "server",
                 condition, at_fault == XS_CLIENT ? "client" : "server", text);
    xs_sess_set_end_cause(s, "%s (%.200s)", condition, text);
    if (xs_sess_can_speak(s, at_fault))
        xs_sess_stream_error_to(s, at_fault, condition, text);
    xs_sess_end_stream_to(s, at_fault == XS_CLIENT ? XS_SERVER : XS_CLIENT);
    xs_sess_close_both(s);
}

/* The log cannot be written and --on-log-error stop: the session ends before anything unlogged
 * is forwarded. The client gets <internal-server-error/>, the server a clean close. */
void xs_sess_fail_unlogged(xs_session *s, int rc)
{
    if (s->state == SS_CLOSING)
        return;
    char text[200];
    snprintf(text, sizeof(text),
             "cannot write the --write log (%s): the session ends (--on-log-error stop)",
             xs_strerror(rc));
    /* Said to the observers that can still take it (the console), else as a diagnostic. */
    xs_print_meta m = xs_sess_meta_of(s, NULL, NULL);
    xs_obs_event e = {.kind = XS_OBS_NOTE, .meta = &m, .level = "error", .text = text};
    size_t told = 0;
    for (size_t i = 0; i < s->cfg->n_observers; i++)
        if (s->cfg->observers[i].policy != XS_OBS_REQUIRED) {
            (void)xs_obs_call(&s->cfg->observers[i], &e);
            told++;
        }
    if (told == 0)
        diag(s, "%s", text);
    xs_sess_set_end_cause(s, "%s", text);
    if (xs_sess_can_speak(s, XS_CLIENT))
        xs_sess_stream_error_to(s, XS_CLIENT, "internal-server-error",
                                "xmppscope cannot write its log; the session ends");
    xs_sess_end_stream_to(s, XS_SERVER);
    xs_sess_close_both(s);
}

/* The server could not be reached or secured: the client learns it from a stream error. */
void xs_sess_upstream_failed(xs_session *s, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (s->state == SS_CLOSING || s->deferred_failure != NULL)
        return;
    xs_sess_set_end_cause(s, "remote-connection-failed (%.200s)", text);
    xs_sess_end_stream_to(s, XS_SERVER);
    if (!(xs_sess_can_speak(s, XS_CLIENT) && sess_has(s, XS_SF_CLIENT_OPENED)) &&
        (s->cst == CL_TLS_HANDSHAKE || s->cst == CL_SECURE)) {
        /* The client is securing its leg, or has not opened its new stream yet: it learns
         * of the failure as soon as it does; the handshake timer bounds the wait. */
        xs_sess_note(s, "error",
                     "upstream: %s: <remote-connection-failed/> to the client once its stream "
                     "opens",
                     text);
        s->deferred_failure = xs_strndup(text, 390);
        if (s->deferred_failure == NULL)
            s->deferred_failure = xs_sess_deferred_oom;
        xs_sess_set_server(s, SL_GONE);
        xs_sess_close_side(s, XS_SERVER);
        return;
    }
    xs_sess_note(s, "error", "upstream: %s: <remote-connection-failed/> to the client", text);
    if (xs_sess_can_speak(s, XS_CLIENT) && sess_has(s, XS_SF_CLIENT_OPENED))
        xs_sess_stream_error_to(s, XS_CLIENT, "remote-connection-failed", text);
    xs_sess_close_both(s);
}

void xs_sess_tell_tls_up(xs_session *s, xs_side side, const char *desc)
{
    char text[1024];
    snprintf(text, sizeof(text), "%s leg: TLS up: %s", side == XS_CLIENT ? "client" : "server",
             desc ? desc : "");
    xs_print_meta m = xs_sess_meta_of(s, NULL, NULL);
    xs_obs_event e = {.kind = XS_OBS_TLS_UP,
                      .meta = &m,
                      .level = "info",
                      .text = text,
                      .side = side,
                      .tls_desc = desc ? desc : ""};
    (void)xs_sess_tell_all(s, &e, SIZE_MAX);
}
