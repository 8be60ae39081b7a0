/* One proxied XMPP session: the protocol state machine. See session.h. */
#include "proxy/session.h"

#include "filters/features.h"
#include "inspect/b64.h"
#include "inspect/buf.h"
#include "inspect/error.h"
#include "inspect/redact.h"

#include <libxml/tree.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_STREAMS "http://etherx.jabber.org/streams"
#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_SASL2 "urn:xmpp:sasl:2"
#define NS_XMPP_STREAMS "urn:ietf:params:xml:ns:xmpp-streams"

/* The session as a whole. */
typedef enum sess_state {
    SS_NEGOTIATING, /* securing the legs */
    SS_FORWARDING,  /* both legs secured: the client's stream flows to the server and back */
    SS_CLOSING,     /* both legs told to close */
} sess_state;

/* The client leg. */
typedef enum client_state {
    CL_TLS_HANDSHAKE, /* direct TLS, or after <proceed/>: waiting for the handshake */
    CL_WAIT_HEADER,   /* plain, STARTTLS mode: waiting for the client's first stream header */
    CL_WAIT_STARTTLS, /* we answered with features offering STARTTLS */
    CL_SECURE,        /* secured (or plain by choice): its stream is forwarded */
} client_state;

/* The server leg. */
typedef enum server_state {
    SL_IDLE,          /* not connected yet: waiting for the client's first stream header */
    SL_CONNECTING,    /* TCP connect under way */
    SL_TLS_HANDSHAKE, /* direct TLS, or after <proceed/> */
    SL_WAIT_FEATURES, /* STARTTLS mode: sent a stream header, waiting for the features */
    SL_WAIT_PROCEED,  /* sent <starttls/> */
    SL_SECURE,        /* secured (or plain by choice): forwarding */
    SL_GONE,          /* failed and closed while the client is still being told */
} server_state;

typedef enum phase { PH_PLAIN, PH_TLS, PH_AUTHED } phase;

static const char *const sess_names[] = {"negotiating", "forwarding", "closing"};
static const char *const client_names[] = {"tls-handshake", "wait-header", "wait-starttls",
                                           "secure"};
static const char *const server_names[] = {
    "idle", "connecting", "tls-handshake", "wait-features", "wait-proceed", "secure", "gone"};
static const char *const phase_names[] = {"plain", "tls", "authed"};

/* A growable byte buffer with a cap. */
typedef struct bytes {
    char *data;
    size_t len, cap;
} bytes;

struct xs_session {
    const xs_session_cfg *cfg;
    const xs_session_io *io;
    void *io_ctx;
    unsigned id;
    char id_str[16];
    char *peer; /* for the "connected" line of xs_session_start(), then freed */
    xs_tls_mode client_mode, server_mode;
    uint64_t started_us; /* io->now_us(monotonic) when the session was made */

    sess_state state;
    client_state cst;
    server_state sst;
    phase ph[2];

    xs_parser *parser[2]; /* [XS_CLIENT] reads what the client sends */
    xs_side feeding;      /* the side whose parser is running (for the event callback) */
    bool switched_tls;    /* start_tls was called while feeding: stop the feed */

    /* The strings below are allocated to their size, and only when there is something to keep:
     * with thousands of idle sessions, fixed arrays for the longest case cost more than all the
     * rest of the session. */
    char *domain;           /* what the client asked for: SNI, else its stream's `to`; or NULL */
    char *client_ns;        /* the client's default namespace (jabber:client), or NULL */
    bytes first_header;     /* the client's first stream header, sent to a STARTTLS server */
    bool have_first_header; /* first_header was taken (and, once sent, freed) */
    bytes pending;          /* the client's secured stream, waiting for the server leg */
    bool client_answered;   /* the client's current stream has a stream header from us/server */
    bool client_opened;     /* the client sent a header in its current stream */
    bool server_opened;     /* we sent the server a header in its current stream */
    bool closed_by[2];      /* the side sent </stream:stream> */
    bool server_binding;    /* the server offered channel binding (-PLUS, XEP-0440) */
    bool warned_binding;
    /* The client sent a SCRAM 'y' login after the server's -PLUS offer was removed: the
     * server's answer (<success/> or <failure/>) tells whether it detected the downgrade. */
    bool downgrade_sent;
    /* The side switched to TLS after <starttls/> (client) or <proceed/> (server) and sent no
     * TLS byte yet: XML whitespace there still belongs to its plaintext stream (gap_read()). */
    bool before_tls[2];
    /* The side's connection ended cleanly after it closed its stream (a half-close), and the
     * session waits for the other side: said once, however many ways the leg reports the end
     * (TLS close_notify, then the TCP FIN). */
    bool half_closed[2];
    /* Bit i: observer i (an XS_OBS_WARN one) failed once in this session: said, not repeated.
     * Observers beyond the 32nd are warned about at every failure. */
    uint32_t warned;
    /* While a parser event is handled (on_event()), the notes it causes are kept here (level,
     * NUL, text, NUL, ...) and told after the event itself, which the observers get only once
     * its bytes are queued: they read the event, then its consequences. */
    bool in_event;
    bytes deferred;
    /* The server leg failed while the client could not be told (its TLS handshake was under
     * way): the stream error waits for the client's next stream header. NULL: no such failure. */
    char *deferred_failure;

    /* Namespace declarations of the server's current stream header, for the feature rewrite:
     * one block, the array followed by its strings. */
    xs_attr *s2c_ns;
    size_t n_s2c_ns;

    bool leg_closed[2];  /* io->close was called for the side: nothing more goes to it */
    xs_rule_result *res; /* what the rules decided for the stanza being handled, or NULL */
    /* The tree of the server's <stream:features/> being handled (the parser's, or one parsed
     * from its bytes when the parser builds none), or NULL. */
    const xmlNode *features;
    xmlDoc *features_doc; /* the document of `features` when parsed from its bytes */
    xs_session_stats stats;
    char *end_cause;   /* why the session ended, for the summary; NULL: "closed" */
    size_t max_stanza; /* the effective limit */
};

static const char *side_dir(xs_side side)
{
    return side == XS_CLIENT ? "c2s" : "s2c";
}

static void bytes_free(bytes *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static int bytes_append(bytes *b, const char *d, size_t n, size_t limit)
{
    if (n > limit || b->len > limit - n)
        return XS_ETOOBIG;
    if (b->len + n > b->cap) {
        size_t ncap = b->cap ? b->cap : 1024;
        while (ncap < b->len + n)
            ncap *= 2;
        char *nd = realloc(b->data, ncap);
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
static void set_end_cause(xs_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_end_cause(xs_session *s, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    char *copy = strdup(text);
    if (copy == NULL)
        return;
    free(s->end_cause);
    s->end_cause = copy;
}

/* Sets *field to a copy of at most `max` bytes of `value`. Returns 0 or XS_ENOMEM. */
static int set_string(char **field, const char *value, size_t max)
{
    char *copy = strndup(value, max);
    if (copy == NULL)
        return XS_ENOMEM;
    free(*field);
    *field = copy;
    return 0;
}

/* The domain the client asked for, "" while it is not known. */
static const char *domain_of(const xs_session *s)
{
    return s->domain != NULL ? s->domain : "";
}

const char *xs_tls_mode_name(xs_tls_mode mode)
{
    switch (mode) {
    case XS_TLSMODE_STARTTLS:
        return "starttls";
    case XS_TLSMODE_DIRECT:
        return "direct";
    case XS_TLSMODE_NONE:
        return "none";
    case XS_TLSMODE_MIRROR:
        return "mirror";
    }
    return "unknown";
}

int xs_tls_mode_parse(const char *name, xs_tls_mode *out)
{
    for (int m = XS_TLSMODE_STARTTLS; m <= XS_TLSMODE_MIRROR; m++) {
        if (strcmp(name, xs_tls_mode_name((xs_tls_mode)m)) == 0) {
            *out = (xs_tls_mode)m;
            return 0;
        }
    }
    return XS_EINVAL;
}

/* ---- output: the observers ---------------------------------------------------------------- */

static uint64_t now_us(const xs_session *s, int wall)
{
    return s->io->now_us != NULL ? s->io->now_us(s->io_ctx, wall) : 0;
}

static xs_print_meta meta_of(const xs_session *s, const char *dir, const char *ph)
{
    xs_print_meta m = {.session = s->id_str, .direction = dir, .phase = ph};
    uint64_t us = now_us(s, 1);
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
static size_t tell_all(xs_session *s, const xs_obs_event *e, size_t skip)
{
    size_t told = 0;
    for (size_t i = 0; i < s->cfg->n_observers; i++) {
        if (i == skip)
            continue;
        (void)xs_obs_call(&s->cfg->observers[i], e);
        told++;
    }
    return told;
}

static void tell_note(xs_session *s, const char *level, const char *text)
{
    xs_print_meta m = meta_of(s, NULL, NULL);
    xs_obs_event e = {.kind = XS_OBS_NOTE, .meta = &m, .level = level, .text = text};
    (void)tell_all(s, &e, SIZE_MAX);
}

static void note(xs_session *s, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void note(xs_session *s, const char *level, const char *fmt, ...)
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
        if (bytes_append(&s->deferred, level, ll, 65536) == 0) {
            if (bytes_append(&s->deferred, text, tl, 65536) == 0)
                return;
            s->deferred.len -= ll;
        }
    }
    tell_note(s, level, text);
}

/* Tells the notes kept while an event was handled, in order. */
static void tell_deferred(xs_session *s)
{
    size_t at = 0;
    while (at < s->deferred.len) {
        const char *level = s->deferred.data + at;
        const char *text = level + strlen(level) + 1;
        at = (size_t)(text - s->deferred.data) + strlen(text) + 1;
        tell_note(s, level, text);
    }
    bytes_free(&s->deferred);
}

static void fail_unlogged(xs_session *s, int rc);

/* The deferred failure when there is no memory for its text. Never freed. */
static char deferred_oom[] = "the server leg failed (out of memory for the details)";

/* The meta of a parser event: where it comes from, and what the rules did to it. */
static xs_print_meta event_meta(const xs_session *s, xs_side from, xs_print_rule pr[32])
{
    xs_print_meta m = meta_of(s, side_dir(from), phase_names[s->ph[from]]);
    const xs_rule_result *res = s->res;
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
static int tell_required(xs_session *s, int mrc, const xs_obs_masked *m)
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
static void tell_others(xs_session *s, int mrc, const xs_obs_masked *m, const xs_print_meta *meta)
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
        if (tell_all(s, &e, i) == 0)
            diag(s, "cannot write %s (%s): the session goes on unlogged", name, xs_strerror(rc));
    }
}

/* Every state change goes through these, and is logged. */
static void set_state(xs_session *s, sess_state st)
{
    if (s->state == st)
        return;
    note(s, "debug", "session: %s -> %s", sess_names[s->state], sess_names[st]);
    s->state = st;
}

static void set_client(xs_session *s, client_state st)
{
    note(s, "debug", "client leg: %s -> %s", client_names[s->cst], client_names[st]);
    s->cst = st;
}

static void set_server(xs_session *s, server_state st)
{
    note(s, "debug", "server leg: %s -> %s", server_names[s->sst], server_names[st]);
    s->sst = st;
}

/* Forwarding begins when both legs are secured and the server has answered the client's
 * secured stream with its header: until then the handshake timer runs, and a server that fails
 * or stays silent is reported to the client as <remote-connection-failed/>. */
static void update_forwarding(xs_session *s)
{
    if (s->state == SS_NEGOTIATING && s->cst == CL_SECURE && s->sst == SL_SECURE &&
        s->client_answered)
        set_state(s, SS_FORWARDING);
}

/* ---- writing ------------------------------------------------------------------------------ */

static void close_both(xs_session *s);

static int put(xs_session *s, xs_side to, const char *data, size_t len)
{
    if (len == 0 || s->leg_closed[to])
        return 0;
    int rc = s->io->write(s->io_ctx, to, data, len);
    if (rc < 0 && s->state != SS_CLOSING) {
        /* A leg that cannot take more (TLS failed, too much held before a handshake): the
         * session cannot go on without losing bytes, so it ends here. */
        note(s, "error", "cannot send to the %s: %s", to == XS_CLIENT ? "client" : "server",
             xs_strerror(rc));
        set_end_cause(s, "cannot send to the %s: %s", to == XS_CLIENT ? "client" : "server",
                      xs_strerror(rc));
        close_both(s);
    }
    return rc;
}

static int put_str(xs_session *s, xs_side to, const char *str)
{
    return put(s, to, str, strlen(str));
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
static void answer_client_header(xs_session *s)
{
    char dom[600], hdr[1024];
    xml_escape(dom, sizeof(dom), s->domain != NULL && s->domain[0] ? s->domain : "localhost");
    snprintf(hdr, sizeof(hdr),
             "<?xml version='1.0'?><stream:stream xmlns='%s' "
             "xmlns:stream='" NS_STREAMS "' from='%s' id='xmppscope-%u-%ld' version='1.0' "
             "xml:lang='en'>",
             s->client_ns != NULL && s->client_ns[0] ? s->client_ns : "jabber:client", dom, s->id,
             (long)(s->started_us % 1000000u) * 1000L);
    put_str(s, XS_CLIENT, hdr);
    s->client_answered = true;
}

static void stream_error_to(xs_session *s, xs_side to, const char *condition, const char *text)
{
    char esc[600], buf[1024];
    if (to == XS_CLIENT && !s->client_answered)
        answer_client_header(s);
    xml_escape(esc, sizeof(esc), text);
    snprintf(buf, sizeof(buf),
             "<stream:error><%s xmlns='" NS_XMPP_STREAMS "'/><text xmlns='" NS_XMPP_STREAMS
             "' xml:lang='en'>xmppscope: %s</text></stream:error></stream:stream>",
             condition, esc);
    put_str(s, to, buf);
}

/* A side can take XML now: its leg is not in a TLS handshake. */
static bool can_speak(const xs_session *s, xs_side side)
{
    if (side == XS_CLIENT)
        return s->cst != CL_TLS_HANDSHAKE;
    return s->sst != SL_IDLE && s->sst != SL_CONNECTING && s->sst != SL_TLS_HANDSHAKE &&
           s->sst != SL_GONE;
}

/* Ends the stream xmppscope carries towards `to` with </stream:stream>, if that stream is open
 * and was not ended already (its peer, the other side, did not close it through us). */
static void end_stream_to(xs_session *s, xs_side to)
{
    if (!can_speak(s, to))
        return;
    if (to == XS_SERVER ? s->server_opened && !s->closed_by[XS_CLIENT]
                        : s->client_answered && !s->closed_by[XS_SERVER])
        put_str(s, to, "</stream:stream>");
}

static void close_side(xs_session *s, xs_side side)
{
    if (s->leg_closed[side])
        return;
    s->leg_closed[side] = true;
    s->io->close(s->io_ctx, side);
}

static void close_both(xs_session *s)
{
    set_state(s, SS_CLOSING);
    close_side(s, XS_CLIENT);
    close_side(s, XS_SERVER);
}

/* Ends the session because of `at_fault`: that side gets a stream error with `condition`, the
 * other a clean close of its stream. */
static void fail(xs_session *s, xs_side at_fault, const char *condition, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(xs_session *s, xs_side at_fault, const char *condition, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (s->state == SS_CLOSING)
        return;
    note(s, "error", "%s: <%s/> to the %s: %s", at_fault == XS_CLIENT ? "client" : "server",
         condition, at_fault == XS_CLIENT ? "client" : "server", text);
    set_end_cause(s, "%s (%.200s)", condition, text);
    if (can_speak(s, at_fault))
        stream_error_to(s, at_fault, condition, text);
    end_stream_to(s, at_fault == XS_CLIENT ? XS_SERVER : XS_CLIENT);
    close_both(s);
}

/* The log cannot be written and --on-log-error stop: the session ends before anything unlogged
 * is forwarded. The client gets <internal-server-error/>, the server a clean close. */
static void fail_unlogged(xs_session *s, int rc)
{
    if (s->state == SS_CLOSING)
        return;
    char text[200];
    snprintf(text, sizeof(text),
             "cannot write the --write log (%s): the session ends (--on-log-error stop)",
             xs_strerror(rc));
    /* Said to the observers that can still take it (the console), else as a diagnostic. */
    xs_print_meta m = meta_of(s, NULL, NULL);
    xs_obs_event e = {.kind = XS_OBS_NOTE, .meta = &m, .level = "error", .text = text};
    size_t told = 0;
    for (size_t i = 0; i < s->cfg->n_observers; i++)
        if (s->cfg->observers[i].policy != XS_OBS_REQUIRED) {
            (void)xs_obs_call(&s->cfg->observers[i], &e);
            told++;
        }
    if (told == 0)
        diag(s, "%s", text);
    set_end_cause(s, "%s", text);
    if (can_speak(s, XS_CLIENT))
        stream_error_to(s, XS_CLIENT, "internal-server-error",
                        "xmppscope cannot write its log; the session ends");
    end_stream_to(s, XS_SERVER);
    close_both(s);
}

/* The server could not be reached or secured: the client learns it from a stream error. */
static void upstream_failed(xs_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void upstream_failed(xs_session *s, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (s->state == SS_CLOSING || s->deferred_failure != NULL)
        return;
    set_end_cause(s, "remote-connection-failed (%.200s)", text);
    end_stream_to(s, XS_SERVER);
    if (!(can_speak(s, XS_CLIENT) && s->client_opened) &&
        (s->cst == CL_TLS_HANDSHAKE || s->cst == CL_SECURE)) {
        /* The client is securing its leg, or has not opened its new stream yet: it learns
         * of the failure as soon as it does; the handshake timer bounds the wait. */
        note(s, "error",
             "upstream: %s: <remote-connection-failed/> to the client once its stream "
             "opens",
             text);
        s->deferred_failure = strndup(text, 390);
        if (s->deferred_failure == NULL)
            s->deferred_failure = deferred_oom;
        set_server(s, SL_GONE);
        close_side(s, XS_SERVER);
        return;
    }
    note(s, "error", "upstream: %s: <remote-connection-failed/> to the client", text);
    if (can_speak(s, XS_CLIENT) && s->client_opened)
        stream_error_to(s, XS_CLIENT, "remote-connection-failed", text);
    close_both(s);
}

/* ---- the server leg ------------------------------------------------------------------------ */

static const char *server_name(const xs_session *s)
{
    return s->cfg->server_name != NULL ? s->cfg->server_name : domain_of(s);
}

static void connect_server(xs_session *s)
{
    if (s->sst != SL_IDLE || s->state == SS_CLOSING)
        return;
    set_server(s, SL_CONNECTING);
    int rc = s->io->connect(s->io_ctx);
    if (rc < 0)
        upstream_failed(s, "cannot start connecting: %s", xs_strerror(rc));
}

/* The server leg is secured: send it what the client said so far. */
static void server_secured(xs_session *s)
{
    set_server(s, SL_SECURE);
    if (s->pending.len > 0) {
        put(s, XS_SERVER, s->pending.data, s->pending.len);
        s->server_opened = true;
        bytes_free(&s->pending);
    }
    update_forwarding(s);
}

static void send_first_header(xs_session *s)
{
    /* A STARTTLS server first gets the client's first stream header, byte for byte. */
    put(s, XS_SERVER, s->first_header.data, s->first_header.len);
    bytes_free(&s->first_header); /* needed once: idle sessions stay small */
    s->server_opened = true;
    set_server(s, SL_WAIT_FEATURES);
}

/* ---- forwarding ---------------------------------------------------------------------------- */

static bool is_el(const xs_event *ev, const char *ns, const char *name)
{
    return ev->ns != NULL && strcmp(ev->ns, ns) == 0 && strcmp(ev->name, name) == 0;
}

/* Sends an event of the client's secured stream to the server, or keeps it until the server leg
 * is secured. */
static void to_server(xs_session *s, const char *data, size_t len)
{
    if (s->sst == SL_SECURE) {
        put(s, XS_SERVER, data, len);
        s->server_opened = true;
        return;
    }
    int rc = bytes_append(&s->pending, data, len, 2 * s->max_stanza + 65536);
    if (rc < 0)
        fail(s, XS_CLIENT, "policy-violation",
             "the client sent more than the limit while the server leg was not ready");
}

/* What goes on in place of a stanza of a secured stream: the original bytes, the rewritten
 * ones, or nothing; a bounce goes back to the sender and injected stanzas where they were sent.
 * `out`/`out_len` receive the bytes to forward (NULL: none). */
static void rules_verdict(xs_session *s, xs_side from, const xs_event *ev, const char **out,
                          size_t *out_len)
{
    const xs_rule_result *res = s->res;
    *out = ev->raw;
    *out_len = ev->len;
    if (res == NULL)
        return;
    switch (res->verdict) {
    case XS_VERDICT_UNCHANGED:
        break;
    case XS_VERDICT_REWRITTEN:
        *out = res->xml;
        *out_len = res->len;
        break;
    case XS_VERDICT_DROP:
        *out = NULL;
        *out_len = 0;
        break;
    case XS_VERDICT_BOUNCE:
        *out = NULL;
        *out_len = 0;
        if (res->bounce != NULL) {
            if (from == XS_CLIENT)
                put(s, XS_CLIENT, res->bounce, res->bounce_len);
            else
                to_server(s, res->bounce, res->bounce_len);
        }
        break;
    }
}

/* Sends a stanza of a secured stream on, after the rules: delayed when a rule said so. */
static void forward(xs_session *s, xs_side to, const char *data, size_t len)
{
    if (data == NULL || len == 0)
        return;
    unsigned long ms = s->res != NULL ? s->res->delay_ms : 0;
    if (ms > 0 && s->io->write_delayed != NULL && !s->leg_closed[to]) {
        int rc = s->io->write_delayed(s->io_ctx, to, data, len, ms);
        if (rc < 0 && s->state != SS_CLOSING) {
            note(s, "error", "cannot delay a stanza: %s", xs_strerror(rc));
            close_both(s);
        }
        if (to == XS_SERVER)
            s->server_opened = true;
        return;
    }
    if (to == XS_SERVER)
        to_server(s, data, len);
    else
        put(s, XS_CLIENT, data, len);
}

/* Stanzas the rules inject go out after the stanza that triggered them. */
static void rules_inject(xs_session *s)
{
    const xs_rule_result *res = s->res;
    for (size_t i = 0; res != NULL && i < res->n_injects && s->state != SS_CLOSING; i++) {
        if (res->injects[i].direction == XS_RULE_S2C)
            put(s, XS_CLIENT, res->injects[i].xml, res->injects[i].len);
        else
            to_server(s, res->injects[i].xml, res->injects[i].len);
    }
}

/* At most this many declarations, with at most this many bytes of strings, are kept. */
#define S2C_NS_MAX 8
#define S2C_NS_POOL 512

static void remember_s2c_namespaces(xs_session *s, const xs_event *ev)
{
    size_t n = 0, pool = 0;
    free(s->s2c_ns);
    s->s2c_ns = NULL;
    s->n_s2c_ns = 0;
    /* Two passes: the size of the block, then its contents (the same selection). */
    for (size_t i = 0; i < ev->n_nsdecls && n < S2C_NS_MAX; i++) {
        const char *p = ev->nsdecls[i].prefix, *u = ev->nsdecls[i].uri;
        size_t pl = p ? strlen(p) + 1 : 0, ul = u ? strlen(u) + 1 : 0;
        if (u == NULL || pool + pl + ul > S2C_NS_POOL)
            continue;
        n++;
        pool += pl + ul;
    }
    if (n == 0)
        return;
    /* Out of memory the features are parsed without the header's declarations, as for a
     * header that has none: a prefixed features element then fails to parse and is forwarded
     * unchanged. */
    xs_attr *arr = calloc(1, n * sizeof(*arr) + pool);
    if (arr == NULL)
        return;
    char *strings = (char *)(arr + n);
    size_t used = 0;
    for (size_t i = 0; i < ev->n_nsdecls && s->n_s2c_ns < n; i++) {
        const char *p = ev->nsdecls[i].prefix, *u = ev->nsdecls[i].uri;
        size_t pl = p ? strlen(p) + 1 : 0, ul = u ? strlen(u) + 1 : 0;
        if (u == NULL || used + pl + ul > S2C_NS_POOL)
            continue;
        xs_attr *a = &arr[s->n_s2c_ns++];
        if (p != NULL) {
            a->prefix = memcpy(strings + used, p, pl);
            used += pl;
        }
        a->uri = memcpy(strings + used, u, ul);
        used += ul;
    }
    s->s2c_ns = arr;
}

/* The server's <stream:features/>, after the rules (the built-in rewrites among them) ran:
 * remembers whether it offered channel binding, says what the built-in rules removed, and fails
 * the server leg when it requires STARTTLS that a plain leg cannot do. Returns whether the leg
 * failed. */
static bool server_features(xs_session *s)
{
    const xs_rule_result *res = s->res;
    char removed[256] = "";
    size_t used = 0;
    for (size_t i = 0; res != NULL && i < res->n_tags; i++)
        if (strcmp(res->tags[i], "channel-binding-offered") == 0)
            s->server_binding = true;
    for (size_t i = 0; res != NULL && i < res->n_applied; i++) {
        const xs_rule_applied *a = &res->applied[i];
        unsigned bit;
        if (a->nodes == 0 || xs_rewrite_parse(a->rule, &bit) < 0 || used >= sizeof(removed))
            continue;
        used += (size_t)snprintf(removed + used, sizeof(removed) - used, "%s%s (%s)",
                                 used ? ", " : "", a->rule, a->detail ? a->detail : "");
    }
    /* A server leg kept plain by choice cannot do STARTTLS through xmppscope (the proxy would
     * have to follow a TLS session it is not part of): the offer goes (built-in rule
     * "starttls"), and a server that insists cannot be used. */
    if (s->server_mode == XS_TLSMODE_NONE && s->features != NULL &&
        xs_features_starttls_required(s->features)) {
        upstream_failed(s, "the server requires STARTTLS, but the server leg is plain "
                           "(--upstream-tls none); use --upstream-tls starttls");
        return true;
    }
    if (used > 0)
        note(s, "info",
             "features rewritten for the client by built-in rules: %s (each can be turned off "
             "with --no-rewrite NAME)",
             removed);
    return false;
}

/* Reads a SCRAM client-first message (RFC 5802 section 7): a GS2 header (RFC 5801 section 4),
 * then [reserved-mext ","] "n=" username "," "r=" nonce. Returns its channel binding flag ('n',
 * 'y' or 'p', with the binding's name in cb, cut to fit), or 0 when d is not such a message. */
static int scram_client_first(const unsigned char *d, size_t len, char *cb, size_t cap)
{
    char name[256];
    if (memchr(d, '\0', len) != NULL)
        return 0;
    int flag = xs_sasl_gs2_flag((const char *)d, len, name, sizeof(name));
    if (flag == 0)
        return 0;
    /* The header is the flag and the optional authzid, each ended by a comma; neither holds
     * one. */
    const unsigned char *c1 = memchr(d, ',', len);
    const unsigned char *c2 = c1 != NULL ? memchr(c1 + 1, ',', len - (size_t)(c1 + 1 - d)) : NULL;
    if (c2 == NULL)
        return 0;
    const unsigned char *bare = c2 + 1, *end = d + len;
    if (end - bare >= 2 && bare[0] == 'm' && bare[1] == '=') {
        const unsigned char *c = memchr(bare, ',', (size_t)(end - bare));
        if (c == NULL)
            return 0;
        bare = c + 1;
    }
    if (end - bare < 2 || bare[0] != 'n' || bare[1] != '=')
        return 0;
    const unsigned char *c = memchr(bare, ',', (size_t)(end - bare));
    if (c == NULL || end - c < 3 || c[1] != 'r' || c[2] != '=')
        return 0;
    snprintf(cb, cap, "%s", flag == 'p' ? name : "");
    return flag;
}

/* The decoded initial response of a client's SASL <auth/> or SASL2 <authenticate/> when its
 * mechanism is SCRAM (or not named, as a SCRAM payload may come): its channel binding flag, as
 * scram_client_first() gives it. The tree is the parser's or one parsed from the bytes; nothing
 * here masks or shows anything. */
static int sasl_client_first(const xs_event *ev, char *cb, size_t cap)
{
    xmlDoc *doc = NULL;
    const xmlNode *el = ev->node;
    int flag = 0;
    if (el == NULL) {
        xmlNode *parsed = NULL;
        if (ev->raw == NULL || xs_element_parse(ev->raw, ev->len, NULL, 0, &doc, &parsed) < 0)
            return 0;
        el = parsed;
    }
    xmlChar *mech = xmlGetNoNsProp(el, (const xmlChar *)"mechanism");
    if (mech != NULL && xmlStrncasecmp(mech, (const xmlChar *)"SCRAM-", 6) != 0)
        goto out;
    const xmlNode *payload = el;
    if (xmlStrEqual(el->name, (const xmlChar *)"authenticate")) {
        for (payload = el->children; payload != NULL; payload = payload->next)
            if (payload->type == XML_ELEMENT_NODE && payload->ns != NULL &&
                xmlStrEqual(payload->ns->href, (const xmlChar *)NS_SASL2) &&
                xmlStrEqual(payload->name, (const xmlChar *)"initial-response"))
                break;
        if (payload == NULL)
            goto out;
    }
    /* The payload is the element's text; an element inside makes it no SCRAM message. */
    for (const xmlNode *k = payload->children; k != NULL; k = k->next)
        if (k->type != XML_TEXT_NODE && k->type != XML_CDATA_SECTION_NODE)
            goto out;
    xmlChar *text = xmlNodeGetContent(payload);
    unsigned char *dec = NULL;
    size_t dlen = 0;
    if (text != NULL &&
        xs_base64_decode((const char *)text, strlen((const char *)text), &dec, &dlen) == 0)
        flag = scram_client_first(dec, dlen, cb, cap);
    free(dec);
    xmlFree(text);
out:
    xmlFree(mech);
    xmlFreeDoc(doc);
    return flag;
}

static void check_channel_binding(xs_session *s, const xs_event *ev)
{
    if (!is_el(ev, NS_SASL, "auth") && !is_el(ev, NS_SASL2, "authenticate"))
        return;
    char cb[32] = "";
    int flag = sasl_client_first(ev, cb, sizeof(cb));
    if (s->warned_binding)
        return;
    if (flag == 'p') {
        s->warned_binding = true;
        note(s, "warn",
             "channel binding: the client binds its login to the TLS channel (%s), but the "
             "client and the server see two different TLS channels through xmppscope, so the "
             "server will refuse this login. To proceed, turn channel binding off in the client "
             "or use a mechanism without -PLUS (keep the default rewrite 'sasl-plus' on).",
             cb[0] ? cb : "p=");
    } else if (flag == 'y' && s->server_binding && (s->cfg->rewrites & XS_REWRITE_SASL_PLUS)) {
        /* RFC 5802 section 6: a server that supports channel binding MUST fail a login whose
         * gs2 flag is 'y', the sign that its -PLUS offer was removed on the way. Servers differ
         * (ejabberd 23.01 accepts it), so what is certain is said here, and the server's answer
         * is reported when it comes (server_auth_answer()). */
        s->warned_binding = true;
        s->downgrade_sent = true;
        note(s, "warn",
             "channel binding: the server offers SCRAM -PLUS mechanisms, which xmppscope "
             "removed (built-in rewrite 'sasl-plus'), and the client's SCRAM header says 'y' "
             "(it supports channel binding but believes the server does not). This is a "
             "downgrade the server should detect and refuse (RFC 5802 section 6: a server that "
             "supports channel binding must fail this login). A man in the middle cannot carry "
             "channel binding (RFC 9266: it binds the login to one TLS connection). If the "
             "server refuses the login, log in with PLAIN for this test, or make the server not "
             "offer -PLUS (e.g. TLS 1.3 on Prosody 0.12).");
    }
}

/* The server's answer to a SASL login: after a SCRAM 'y' login that follows a removed -PLUS
 * offer (check_channel_binding()), <success/> means the server did not detect the downgrade. */
static void server_auth_answer(xs_session *s, const xs_event *ev)
{
    if (!s->downgrade_sent)
        return;
    if (is_el(ev, NS_SASL, "success") || is_el(ev, NS_SASL2, "success")) {
        s->downgrade_sent = false;
        note(s, "warn",
             "channel binding: the server did not detect the downgrade: it accepted a SCRAM "
             "login with gs2 flag 'y' although it offers channel binding (RFC 5802 section 6 "
             "says it must refuse it)");
    } else if (is_el(ev, NS_SASL, "failure") || is_el(ev, NS_SASL2, "failure")) {
        s->downgrade_sent = false;
    }
}

/* The client's first stream header: the domain it asks for, its default namespace, and its
 * bytes (a STARTTLS server leg gets them first). Returns 0, or -1 after failing the session. */
static int learn_client_header(xs_session *s, const xs_event *ev)
{
    for (size_t i = 0; i < ev->n_attrs; i++)
        if (strcmp(ev->attrs[i].name, "to") == 0 && ev->attrs[i].prefix == NULL &&
            domain_of(s)[0] == 0 && set_string(&s->domain, ev->attrs[i].value, 255) < 0) {
            fail(s, XS_CLIENT, "internal-server-error", "out of memory");
            return -1;
        }
    if (ev->default_ns != NULL && set_string(&s->client_ns, ev->default_ns, 127) < 0) {
        fail(s, XS_CLIENT, "internal-server-error", "out of memory");
        return -1;
    }
    if (!s->have_first_header) {
        s->have_first_header = true;
        if (bytes_append(&s->first_header, ev->raw, ev->len, s->max_stanza) < 0) {
            fail(s, XS_CLIENT, "internal-server-error", "out of memory");
            return -1;
        }
    }
    return 0;
}

static int on_client_event(xs_session *s, const xs_event *ev)
{
    switch (s->cst) {
    case CL_WAIT_HEADER:
        if (ev->kind != XS_EV_STREAM_OPEN)
            break;
        s->client_opened = true;
        if (learn_client_header(s, ev) < 0)
            return 0;
        if (s->client_mode == XS_TLSMODE_STARTTLS) {
            answer_client_header(s);
            put_str(s, XS_CLIENT,
                    "<stream:features><starttls xmlns='" NS_TLS
                    "'><required/></starttls></stream:features>");
            note(s, "info",
                 "client leg: xmppscope answers this stream itself and offers STARTTLS "
                 "(--client-tls starttls)");
            set_client(s, CL_WAIT_STARTTLS);
        } else {
            /* A client without TLS: this stream is the one forwarded. */
            set_client(s, CL_SECURE);
            to_server(s, ev->raw, ev->len);
        }
        connect_server(s);
        return 0;

    case CL_WAIT_STARTTLS:
        if (ev->kind == XS_EV_STANZA && is_el(ev, NS_TLS, "starttls")) {
            put_str(s, XS_CLIENT, "<proceed xmlns='" NS_TLS "'/>");
            set_client(s, CL_TLS_HANDSHAKE);
            int rc = s->io->start_tls(s->io_ctx, XS_CLIENT, domain_of(s));
            if (rc < 0) {
                fail(s, XS_CLIENT, "internal-server-error", "cannot start TLS: %s",
                     xs_strerror(rc));
                return 0;
            }
            s->switched_tls = true;
            return XS_PARSER_PAUSE;
        }
        if (ev->kind == XS_EV_STANZA) {
            fail(s, XS_CLIENT, "policy-violation",
                 "STARTTLS is required on this leg (--client-tls starttls), but the client "
                 "sent <%s/> before it",
                 ev->name);
            return 0;
        }
        if (ev->kind == XS_EV_STREAM_CLOSE) {
            /* Both open streams are closed properly: ours with the client, and the one the
             * server has with the client's first header. */
            s->closed_by[XS_CLIENT] = true;
            set_end_cause(s, "the client closed its stream");
            put_str(s, XS_CLIENT, "</stream:stream>");
            if (can_speak(s, XS_SERVER) && s->server_opened)
                put_str(s, XS_SERVER, "</stream:stream>");
            close_both(s);
        }
        return 0;

    case CL_TLS_HANDSHAKE:
        /* Nothing is parsed from a leg in a handshake. */
        return 0;

    case CL_SECURE:
        break;
    }
    if (s->cst != CL_SECURE)
        return 0;
    if (s->closed_by[XS_CLIENT] && ev->kind != XS_EV_KEEPALIVE) {
        /* After </stream:stream> nothing may follow: a second root element. */
        fail(s, XS_CLIENT, "not-well-formed",
             "data after the client closed its stream (a second root element)");
        return 0;
    }

    switch (ev->kind) {
    case XS_EV_STREAM_OPEN:
        if (!s->client_opened) {
            /* The first header of a client that came in with direct TLS. */
            if (learn_client_header(s, ev) < 0)
                return 0;
        }
        s->client_opened = true;
        s->client_answered = false; /* a new stream (after TLS or SASL) awaits its answer */
        if (s->deferred_failure != NULL) {
            stream_error_to(s, XS_CLIENT, "remote-connection-failed", s->deferred_failure);
            close_both(s);
            return 0;
        }
        to_server(s, ev->raw, ev->len);
        connect_server(s);
        return 0;
    case XS_EV_STANZA: {
        s->stats.stanzas[XS_CLIENT]++;
        check_channel_binding(s, ev);
        const char *out;
        size_t out_len;
        rules_verdict(s, XS_CLIENT, ev, &out, &out_len);
        forward(s, XS_SERVER, out, out_len);
        rules_inject(s);
        return 0;
    }
    case XS_EV_KEEPALIVE:
        to_server(s, ev->raw, ev->len);
        return 0;
    case XS_EV_STREAM_CLOSE:
        s->closed_by[XS_CLIENT] = true;
        to_server(s, ev->raw, ev->len);
        if (s->closed_by[XS_SERVER]) {
            set_end_cause(s, "both streams closed");
            close_both(s);
        }
        return 0;
    case XS_EV_ERROR:
        return 0;
    }
    return 0;
}

static int on_server_event(xs_session *s, const xs_event *ev)
{
    switch (s->sst) {
    case SL_WAIT_FEATURES:
        if (ev->kind == XS_EV_STREAM_OPEN)
            return 0;
        if (ev->kind == XS_EV_STANZA && is_el(ev, NS_STREAMS, "features")) {
            if (ev->raw != NULL && memmem(ev->raw, ev->len, NS_TLS, strlen(NS_TLS)) != NULL) {
                put_str(s, XS_SERVER, "<starttls xmlns='" NS_TLS "'/>");
                set_server(s, SL_WAIT_PROCEED);
            } else {
                upstream_failed(s, "the server does not offer STARTTLS; try --upstream-tls "
                                   "none (plain) or direct");
            }
            return 0;
        }
        if (ev->kind == XS_EV_STANZA && is_el(ev, NS_STREAMS, "error")) {
            upstream_failed(s, "the server refused the stream before TLS (see its "
                               "<stream:error/> above)");
            return 0;
        }
        if (ev->kind == XS_EV_STREAM_CLOSE)
            upstream_failed(s, "the server closed the stream before TLS");
        return 0;

    case SL_WAIT_PROCEED:
        if (ev->kind == XS_EV_STANZA && is_el(ev, NS_TLS, "proceed")) {
            set_server(s, SL_TLS_HANDSHAKE);
            int rc = s->io->start_tls(s->io_ctx, XS_SERVER, server_name(s));
            if (rc < 0) {
                upstream_failed(s, "cannot start TLS: %s", xs_strerror(rc));
                return 0;
            }
            s->switched_tls = true;
            return XS_PARSER_PAUSE;
        }
        if (ev->kind == XS_EV_STANZA || ev->kind == XS_EV_STREAM_CLOSE)
            upstream_failed(s, "the server refused STARTTLS (<%s/>)",
                            ev->name ? ev->name : "stream close");
        return 0;

    case SL_SECURE:
        break;
    default:
        return 0;
    }

    if (!s->server_opened) {
        /* The server speaks before the client's stream reached it: there is no stream of the
         * client's to put this in. */
        upstream_failed(s, "the server sent data before the client's stream header reached it");
        return 0;
    }
    switch (ev->kind) {
    case XS_EV_STREAM_OPEN:
        remember_s2c_namespaces(s, ev);
        s->client_answered = true;
        put(s, XS_CLIENT, ev->raw, ev->len);
        update_forwarding(s);
        return 0;
    case XS_EV_STANZA: {
        s->stats.stanzas[XS_SERVER]++;
        server_auth_answer(s, ev);
        const char *out;
        size_t out_len;
        rules_verdict(s, XS_SERVER, ev, &out, &out_len);
        if (out == NULL) {
            rules_inject(s);
            return 0;
        }
        if (is_el(ev, NS_STREAMS, "features")) {
            if (server_features(s))
                return 0;
        } else if (is_el(ev, NS_SASL, "success") || is_el(ev, NS_SASL2, "success")) {
            s->ph[XS_CLIENT] = s->ph[XS_SERVER] = PH_AUTHED;
        }
        forward(s, XS_CLIENT, out, out_len);
        rules_inject(s);
        return 0;
    }
    case XS_EV_KEEPALIVE:
        put(s, XS_CLIENT, ev->raw, ev->len);
        return 0;
    case XS_EV_STREAM_CLOSE:
        s->closed_by[XS_SERVER] = true;
        put(s, XS_CLIENT, ev->raw, ev->len);
        if (s->closed_by[XS_CLIENT]) {
            set_end_cause(s, "both streams closed");
            close_both(s);
        }
        return 0;
    case XS_EV_ERROR:
        return 0;
    }
    return 0;
}

/* Runs the rules for a stanza of a secured stream; fills *res and sets s->res when they ran.
 * Without the parser's tree (no console, log or rules of the user's: the parser builds none),
 * only the server's <stream:features/> is parsed from its bytes, for the built-in rewrites. */
static void run_rules(xs_session *s, xs_side from, const xs_event *ev, xs_rule_result *res)
{
    xs_rules *rules = s->cfg->rules != NULL ? *s->cfg->rules : NULL;
    bool features = from == XS_SERVER && is_el(ev, NS_STREAMS, "features");
    xmlDoc *doc = NULL;
    xs_event tree_ev = *ev;

    if (ev->node == NULL && features && ev->raw != NULL) {
        xmlNode *el = NULL;
        if (xs_element_parse(ev->raw, ev->len, s->s2c_ns, s->n_s2c_ns, &doc, &el) == 0)
            tree_ev.node = el;
    }
    if (features)
        s->features = tree_ev.node;
    if (rules == NULL || tree_ev.node == NULL)
        goto out;
    xs_rule_ctx rc = {
        .direction = from == XS_CLIENT ? XS_RULE_C2S : XS_RULE_S2C,
        .session = s->id_str,
        /* The STARTTLS offer goes only on a plain server leg (see server_features()). */
        .builtin_off = s->server_mode == XS_TLSMODE_NONE ? 0u : (unsigned)XS_REWRITE_STARTTLS,
    };
    if (xs_rules_apply(rules, &rc, &tree_ev, res) == 0) {
        s->res = res;
        if (res->error != NULL)
            note(s, "warn", "rules: %s", res->error);
    } else {
        xs_rule_result_clear(res);
        note(s, "error", "rules: out of memory; the stanza is forwarded unchanged");
    }
out:
    /* The result owns its data; a parsed features tree lives while the event is handled. */
    s->features_doc = doc;
}

static int on_event(void *user, const xs_event *ev)
{
    xs_session *s = user;
    xs_side from = s->feeding;

    if (s->state == SS_CLOSING)
        return XS_PARSER_PAUSE;
    xs_rule_result res;
    bool secured = from == XS_CLIENT ? s->cst == CL_SECURE : s->sst == SL_SECURE;
    s->res = NULL;
    s->features = NULL;
    s->features_doc = NULL;
    if (secured && ev->kind == XS_EV_STANZA)
        run_rules(s, from, ev, &res);

    /* The secrets are masked once for every observer; without observers there is nothing to
     * mask for. */
    xs_print_rule pr[32];
    xs_print_meta meta = event_meta(s, from, pr);
    xs_obs_masked m = {0};
    int mrc = s->cfg->n_observers > 0 ? xs_obs_mask(ev, &meta, s->cfg->show_secrets, &m) : 0;
    int unlogged = tell_required(s, mrc, &m);
    s->in_event = true;
    s->stats.bytes[from] += ev->len;
    int r = 0;
    if (unlogged < 0) {
        r = XS_PARSER_PAUSE; /* the session ends: the event goes nowhere */
    } else if (ev->kind == XS_EV_ERROR) {
        /* The side that sent malformed XML gets the stream error the parser chose. */
        char where[64];
        snprintf(where, sizeof(where), "line %u column %u", ev->line, ev->column);
        fail(s, from, xs_parse_error_condition(ev->error_kind), "%s (%s of the %s's stream)",
             ev->message, where, from == XS_CLIENT ? "client" : "server");
    } else {
        r = from == XS_CLIENT ? on_client_event(s, ev) : on_server_event(s, ev);
    }
    /* The bytes are queued (or held for a leg not ready yet): now the observers see the event,
     * then the notes it caused. */
    tell_others(s, mrc, &m, &meta);
    s->in_event = false;
    tell_deferred(s);
    xs_obs_masked_clear(&m);
    if (unlogged < 0)
        fail_unlogged(s, unlogged);
    if (s->res != NULL)
        xs_rule_result_clear(&res);
    s->res = NULL;
    s->features = NULL;
    xmlFreeDoc(s->features_doc);
    s->features_doc = NULL;
    return r;
}

/* ---- public -------------------------------------------------------------------------------- */

int xs_session_new(const xs_session_cfg *cfg, const xs_session_io *io, void *io_ctx, unsigned id,
                   const char *peer, xs_session **out)
{
    xs_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return XS_ENOMEM;
    s->cfg = cfg;
    s->io = io;
    s->io_ctx = io_ctx;
    s->id = id;
    snprintf(s->id_str, sizeof(s->id_str), "%u", id);
    s->peer = strdup(peer ? peer : "?"); /* NULL out of memory: the line says "?" */
    s->started_us = now_us(s, 0);
    s->client_mode = cfg->client_mode;
    s->server_mode = cfg->server_mode == XS_TLSMODE_MIRROR ? cfg->client_mode : cfg->server_mode;
    s->max_stanza = cfg->limits.max_stanza ? cfg->limits.max_stanza : XS_PARSER_DEFAULT_MAX_STANZA;

    unsigned opts = XS_PARSER_RAW | XS_PARSER_AUTO_RESTART;
    bool tree = cfg->user_rules != 0;
    for (size_t i = 0; i < cfg->n_observers; i++)
        tree = tree || cfg->observers[i].needs_tree;
    if (cfg->n_observers == 0)
        opts |= XS_PARSER_NO_ATTRS; /* the observers are their only readers */
    if (tree)
        opts |= XS_PARSER_TREE;
    for (int i = 0; i < 2; i++) {
        int rc = xs_parser_new(&cfg->limits, opts, on_event, s, &s->parser[i]);
        if (rc < 0) {
            xs_parser_free(s->parser[0]);
            free(s->peer);
            free(s);
            return rc;
        }
    }
    *out = s;
    return 0;
}

void xs_session_start(xs_session *s)
{
    note(s, "info", "client %s connected (client leg %s, server leg %s)",
         s->peer != NULL ? s->peer : "?", xs_tls_mode_name(s->client_mode),
         xs_tls_mode_name(s->server_mode));
    free(s->peer); /* said once; never needed again */
    s->peer = NULL;
    switch (s->client_mode) {
    case XS_TLSMODE_DIRECT:
        s->cst = CL_TLS_HANDSHAKE;
        break;
    case XS_TLSMODE_STARTTLS:
        s->cst = CL_WAIT_HEADER;
        break;
    default:
        s->cst = CL_WAIT_HEADER;
        break;
    }
    s->sst = SL_IDLE;
}

/* The first byte of a TLS record is its content type (RFC 8446 section 5.1): change_cipher_spec,
 * alert, handshake or application_data. */
static bool tls_record_start(unsigned char c)
{
    return c >= 20 && c <= 23;
}

static bool xml_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Plaintext where the side's TLS handshake should begin: the STARTTLS command injection class
 * (bytes sent with <starttls/> or <proceed/> that a careless implementation would process as if
 * they came over TLS). They are neither forwarded nor given to TLS; the side fails. */
static void plaintext_before_tls(xs_session *s, xs_side side, const char *data, size_t len)
{
    char shown[200] = "";
    xs_quote_bytes(shown, sizeof(shown), data, len, 40);
    if (side == XS_SERVER) {
        /* The client is told the cause, not the server's bytes. */
        note(s, "error",
             "server leg: the server sent %zu bytes of plaintext after <proceed/> before the TLS "
             "handshake: '%s' (STARTTLS injection?); nothing of it is forwarded",
             len, shown);
        upstream_failed(s, "the server sent plaintext after <proceed/> before the TLS handshake "
                           "(STARTTLS injection?)");
        return;
    }
    note(s, "error",
         "client leg: the client sent %zu bytes of plaintext after <starttls/> before the TLS "
         "handshake: '%s' (STARTTLS injection?); nothing of it is forwarded, the session ends",
         len, shown);
    set_end_cause(s, "the client sent plaintext after <starttls/> (STARTTLS injection?)");
    end_stream_to(s, XS_SERVER);
    close_both(s);
}

/* Reads what a side sent between its switch to TLS and its first TLS record. XML whitespace
 * there is still part of its plaintext stream (RFC 6120 allows it between elements, and go-xmpp
 * sends a newline after <starttls/>): consumed, in as many reads as it comes. The first byte
 * that can begin a TLS record ends the gap; any other byte fails the side. Returns the bytes
 * consumed: fewer than `len` only where TLS begins. */
static size_t gap_read(xs_session *s, xs_side side, const char *data, size_t len)
{
    size_t i = 0;
    while (i < len && xml_space(data[i]))
        i++;
    s->stats.bytes[side] += i;
    if (i == len)
        return len;
    s->before_tls[side] = false;
    if (tls_record_start((unsigned char)data[i]))
        return i;
    plaintext_before_tls(s, side, data + i, len - i);
    return len;
}

size_t xs_session_on_data(xs_session *s, xs_side side, const char *data, size_t len)
{
    if (s->state == SS_CLOSING)
        return len; /* nothing more is read into a closing session */
    if (s->before_tls[side])
        return gap_read(s, side, data, len);
    s->feeding = side;
    s->switched_tls = false;
    size_t used = 0;
    int rc = xs_parser_feed(s->parser[side], data, len, &used);
    if (rc < 0)
        return len; /* the error event already failed the session */
    if (s->switched_tls) {
        /* The next bytes belong to TLS; the parser starts a new stream after the handshake. */
        (void)xs_parser_reset(s->parser[side]);
        s->ph[side] = PH_TLS;
        s->before_tls[side] = true;
        return used + gap_read(s, side, data + used, len - used);
    }
    return s->state == SS_CLOSING ? len : used;
}

int xs_session_before_tls(const xs_session *s, xs_side side)
{
    return s->state != SS_CLOSING && s->before_tls[side];
}

static void tell_tls_up(xs_session *s, xs_side side, const char *desc)
{
    char text[1024];
    snprintf(text, sizeof(text), "%s leg: TLS up: %s", side == XS_CLIENT ? "client" : "server",
             desc ? desc : "");
    xs_print_meta m = meta_of(s, NULL, NULL);
    xs_obs_event e = {.kind = XS_OBS_TLS_UP,
                      .meta = &m,
                      .level = "info",
                      .text = text,
                      .side = side,
                      .tls_desc = desc ? desc : ""};
    (void)tell_all(s, &e, SIZE_MAX);
}

void xs_session_on_tls_up(xs_session *s, xs_side side, const char *sni, const char *desc)
{
    if (s->state == SS_CLOSING)
        return;
    s->ph[side] = PH_TLS;
    s->before_tls[side] = false;
    if (side == XS_CLIENT) {
        tell_tls_up(s, side, desc);
        /* Out of memory the domain stays unknown: the forged certificate is already made,
         * only the names in our own stream header fall back to defaults. */
        if (sni != NULL && sni[0] && domain_of(s)[0] == 0)
            (void)set_string(&s->domain, sni, 255);
        set_client(s, CL_SECURE);
        s->client_opened = false;
        s->client_answered = false;
        if (s->pending.len > 0)
            bytes_free(&s->pending);
    } else {
        tell_tls_up(s, side, desc);
        (void)xs_parser_reset(s->parser[XS_SERVER]);
        s->server_opened = false;
        server_secured(s);
    }
    update_forwarding(s);
}

void xs_session_on_connected(xs_session *s, int status, const char *cause)
{
    if (s->state == SS_CLOSING)
        return;
    if (status < 0) {
        upstream_failed(s, "cannot connect to the server: %s", cause ? cause : xs_strerror(status));
        return;
    }
    note(s, "info", "server leg: connected (%s)", xs_tls_mode_name(s->server_mode));
    switch (s->server_mode) {
    case XS_TLSMODE_DIRECT: {
        set_server(s, SL_TLS_HANDSHAKE);
        int rc = s->io->start_tls(s->io_ctx, XS_SERVER, server_name(s));
        if (rc < 0)
            upstream_failed(s, "cannot start TLS: %s", xs_strerror(rc));
        break;
    }
    case XS_TLSMODE_STARTTLS:
        send_first_header(s);
        break;
    default:
        server_secured(s);
        break;
    }
}

void xs_session_on_closed(xs_session *s, xs_side side, int status, const char *cause)
{
    if (s->state == SS_CLOSING)
        return;
    const char *who = side == XS_CLIENT ? "client" : "server";
    if (side == XS_SERVER && s->state == SS_NEGOTIATING) {
        upstream_failed(s, "%s", cause && cause[0] ? cause : "the server closed the connection");
        return;
    }
    xs_side peer = side == XS_CLIENT ? XS_SERVER : XS_CLIENT;
    if (s->closed_by[side] && !s->closed_by[peer] && status == 0 && can_speak(s, peer)) {
        /* A half-close after a clean end of stream: the other side may still finish its
         * stream, and its last stanzas are delivered (--close-timeout bounds the wait). A TLS
         * leg reports this end twice, its close_notify and then its FIN: one end, said once. */
        if (s->half_closed[side])
            return;
        s->half_closed[side] = true;
        note(s, "info",
             "%s closed its side of the connection after closing its stream; "
             "waiting for the %s to close its stream",
             who, side == XS_CLIENT ? "server" : "client");
        return;
    }
    if (s->closed_by[side])
        note(s, "info", "%s closed the connection after closing its stream", who);
    else
        note(s, status < 0 ? "warn" : "info",
             "%s closed the connection without closing its "
             "stream%s%s",
             who, cause && cause[0] ? ": " : "", cause ? cause : "");
    set_end_cause(s, "%s %s", who, cause && cause[0] ? cause : "closed the connection");
    /* The other side gets a clean end of its stream. */
    end_stream_to(s, peer);
    close_both(s);
}

void xs_session_on_timeout(xs_session *s, const char *what)
{
    if (s->state == SS_CLOSING)
        return;
    if (s->deferred_failure != NULL) {
        note(s, "error",
             "%s: the client never opened its stream to be told that the server "
             "failed (%s)",
             what, s->deferred_failure);
        close_both(s);
        return;
    }
    if (s->state == SS_NEGOTIATING && s->client_opened &&
        (s->sst != SL_SECURE || !s->client_answered)) {
        /* The client did its part; the server did not answer in time. */
        upstream_failed(s, "%s (the server did not answer)", what);
        return;
    }
    fail(s, XS_CLIENT, "connection-timeout", "%s", what);
}

void xs_session_shutdown(xs_session *s)
{
    if (s->state == SS_CLOSING)
        return;
    set_end_cause(s, "xmppscope shutting down");
    if (can_speak(s, XS_CLIENT) && s->client_opened)
        stream_error_to(s, XS_CLIENT, "system-shutdown", "the proxy is shutting down");
    end_stream_to(s, XS_SERVER);
    close_both(s);
}

int xs_session_forwarding(const xs_session *s)
{
    return s->state == SS_FORWARDING;
}

int xs_session_lagging_side(const xs_session *s)
{
    if (s->state == SS_CLOSING || s->closed_by[XS_CLIENT] == s->closed_by[XS_SERVER])
        return -1;
    return s->closed_by[XS_CLIENT] ? XS_SERVER : XS_CLIENT;
}

int xs_session_closing(const xs_session *s)
{
    return s->state == SS_CLOSING;
}

const xs_session_stats *xs_session_get_stats(const xs_session *s)
{
    return &s->stats;
}

const char *xs_session_id(const xs_session *s)
{
    return s->id_str;
}

int xs_session_trim(xs_session *s, xs_side side)
{
    return s->state != SS_CLOSING ? xs_parser_trim(s->parser[side]) : 0;
}

void xs_session_free(xs_session *s)
{
    if (s == NULL)
        return;
    xs_obs_summary sum = {
        .seconds = (double)(now_us(s, 0) - s->started_us) / 1e6,
        .stanzas = {s->stats.stanzas[XS_CLIENT], s->stats.stanzas[XS_SERVER]},
        .bytes = {s->stats.bytes[XS_CLIENT], s->stats.bytes[XS_SERVER]},
        .cause = s->end_cause != NULL ? s->end_cause : "closed",
    };
    char text[512];
    snprintf(text, sizeof(text),
             "session closed after %.3f s: c2s %llu stanzas %llu bytes, s2c %llu stanzas %llu "
             "bytes; %s",
             sum.seconds, (unsigned long long)sum.stanzas[XS_CLIENT],
             (unsigned long long)sum.bytes[XS_CLIENT], (unsigned long long)sum.stanzas[XS_SERVER],
             (unsigned long long)sum.bytes[XS_SERVER], sum.cause);
    xs_print_meta m = meta_of(s, NULL, NULL);
    xs_obs_event e = {
        .kind = XS_OBS_CLOSED, .meta = &m, .level = "info", .text = text, .summary = &sum};
    (void)tell_all(s, &e, SIZE_MAX);
    xs_parser_free(s->parser[0]);
    xs_parser_free(s->parser[1]);
    bytes_free(&s->first_header);
    bytes_free(&s->pending);
    bytes_free(&s->deferred);
    free(s->peer);
    free(s->domain);
    free(s->client_ns);
    if (s->deferred_failure != deferred_oom)
        free(s->deferred_failure);
    free(s->s2c_ns);
    free(s->end_cause);
    free(s);
}
