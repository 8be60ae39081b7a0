/* One proxied XMPP session: the protocol state machine. See session.h, and session_impl.h for
 * how its files divide the work. */
#include "proxy/session_impl.h"

#include "inspect/alloc.h"
#include "inspect/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const sess_names[] = {"negotiating", "forwarding", "closing"};
static const char *const client_names[] = {"tls-handshake", "wait-header", "wait-starttls",
                                           "secure"};
static const char *const server_names[] = {
    "idle", "connecting", "tls-handshake", "wait-features", "wait-proceed", "secure", "gone"};
static const char *const phase_names[] = {"plain", "tls", "authed"};

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

void xs_sess_set_state(xs_session *s, sess_state st)
{
    if (s->state == st)
        return;
    xs_sess_note(s, "debug", "session: %s -> %s", sess_names[s->state], sess_names[st]);
    s->state = st;
}

void xs_sess_set_client(xs_session *s, client_state st)
{
    xs_sess_note(s, "debug", "client leg: %s -> %s", client_names[s->cst], client_names[st]);
    s->cst = st;
}

void xs_sess_set_server(xs_session *s, server_state st)
{
    xs_sess_note(s, "debug", "server leg: %s -> %s", server_names[s->sst], server_names[st]);
    s->sst = st;
}

void xs_sess_set_phase(xs_session *s, xs_side side, phase ph)
{
    s->ph[side] = ph;
}

const char *xs_sess_phase_name(phase ph)
{
    return phase_names[ph];
}

/* Forwarding begins when both legs are secured and the server has answered the client's
 * secured stream with its header: until then the handshake timer runs, and a server that fails
 * or stays silent is reported to the client as <remote-connection-failed/>. */
void xs_sess_update_forwarding(xs_session *s)
{
    if (s->state == SS_NEGOTIATING && s->cst == CL_SECURE && s->sst == SL_SECURE &&
        sess_has(s, XS_SF_CLIENT_ANSWERED))
        xs_sess_set_state(s, SS_FORWARDING);
}

/* ---- the server leg ------------------------------------------------------------------------ */

const char *xs_sess_server_name(const xs_session *s)
{
    return s->cfg->server_name != NULL ? s->cfg->server_name : xs_sess_domain_of(s);
}

void xs_sess_connect_server(xs_session *s)
{
    if (s->sst != SL_IDLE || s->state == SS_CLOSING)
        return;
    xs_sess_set_server(s, SL_CONNECTING);
    int rc = s->io->connect(s->io_ctx);
    if (rc < 0)
        xs_sess_upstream_failed(s, "cannot start connecting: %s", xs_strerror(rc));
}

/* The server leg is secured: send it what the client said so far. */
static void server_secured(xs_session *s)
{
    xs_sess_set_server(s, SL_SECURE);
    if (s->pending.len > 0) {
        xs_sess_put(s, XS_SERVER, s->pending.data, s->pending.len);
        sess_set(s, XS_SF_SERVER_OPENED);
        xs_sess_bytes_free(&s->pending);
    }
    xs_sess_update_forwarding(s);
}

/* The client's first stream header: the domain it asks for, its default namespace, and its
 * bytes (a STARTTLS server leg gets them first). Returns 0, or -1 after failing the session. */
static int learn_client_header(xs_session *s, const xs_event *ev)
{
    for (size_t i = 0; i < ev->n_attrs; i++)
        if (strcmp(ev->attrs[i].name, "to") == 0 && ev->attrs[i].prefix == NULL &&
            xs_sess_domain_of(s)[0] == 0 &&
            xs_sess_set_string(&s->domain, ev->attrs[i].value, 255) < 0) {
            xs_sess_fail(s, XS_CLIENT, "internal-server-error", "out of memory");
            return -1;
        }
    if (ev->default_ns != NULL && xs_sess_set_string(&s->client_ns, ev->default_ns, 127) < 0) {
        xs_sess_fail(s, XS_CLIENT, "internal-server-error", "out of memory");
        return -1;
    }
    if (!sess_has(s, XS_SF_HAVE_FIRST_HEADER)) {
        sess_set(s, XS_SF_HAVE_FIRST_HEADER);
        if (xs_sess_bytes_append(&s->first_header, ev->raw, ev->len, s->max_stanza) < 0) {
            xs_sess_fail(s, XS_CLIENT, "internal-server-error", "out of memory");
            return -1;
        }
    }
    return 0;
}

/* ---- the client leg's states: one handler each ---------------------------------------------- */

/* A handler gets the event being handled and returns 0 or XS_PARSER_PAUSE (the side switched
 * to TLS: the rest of the read is not XML). */
typedef int (*event_handler)(xs_session *s, xs_sess_event *sx);

/* CL_TLS_HANDSHAKE, and the server leg's states that do not speak XML: nothing is parsed from a
 * leg in a handshake, or not connected. */
static int ignore_event(xs_session *s, xs_sess_event *sx)
{
    (void)s;
    (void)sx;
    return 0;
}

/* CL_WAIT_HEADER: the client's first stream header. With --client-tls starttls xmppscope
 * answers it and offers STARTTLS; a plain client's stream is the one forwarded. */
static int client_wait_header(xs_session *s, xs_sess_event *sx)
{
    const xs_event *ev = sx->ev;
    if (ev->kind != XS_EV_STREAM_OPEN)
        return 0;
    sess_set(s, XS_SF_CLIENT_OPENED);
    if (learn_client_header(s, ev) < 0)
        return 0;
    if (s->client_mode == XS_TLSMODE_STARTTLS) {
        xs_sess_client_offer_starttls(s);
    } else {
        /* A client without TLS: this stream is the one forwarded. */
        xs_sess_set_client(s, CL_SECURE);
        xs_sess_to_server(s, ev->raw, ev->len);
    }
    xs_sess_connect_server(s);
    return 0;
}

/* A stream header of the client's secured leg: the first of a direct-TLS client, or a new
 * stream after TLS or SASL. */
static void client_stream_open(xs_session *s, const xs_event *ev)
{
    if (!sess_has(s, XS_SF_CLIENT_OPENED)) {
        /* The first header of a client that came in with direct TLS. */
        if (learn_client_header(s, ev) < 0)
            return;
    }
    sess_set(s, XS_SF_CLIENT_OPENED);
    sess_clear(s, XS_SF_CLIENT_ANSWERED); /* a new stream (after TLS or SASL) awaits its answer */
    if (s->deferred_failure != NULL) {
        xs_sess_stream_error_to(s, XS_CLIENT, "remote-connection-failed", s->deferred_failure);
        xs_sess_close_both(s);
        return;
    }
    xs_sess_to_server(s, ev->raw, ev->len);
    xs_sess_connect_server(s);
}

/* CL_SECURE: the client's stream goes to the server, through the rules. */
static int client_secure(xs_session *s, xs_sess_event *sx)
{
    const xs_event *ev = sx->ev;
    if (sess_has(s, XS_SF_CLOSED_BY_CLIENT) && ev->kind != XS_EV_KEEPALIVE) {
        /* After </stream:stream> nothing may follow: a second root element. */
        xs_sess_fail(s, XS_CLIENT, "not-well-formed",
                     "data after the client closed its stream (a second root element)");
        return 0;
    }
    switch (ev->kind) {
    case XS_EV_STREAM_OPEN:
        client_stream_open(s, ev);
        return 0;
    case XS_EV_STANZA: {
        s->stats.stanzas[XS_CLIENT]++;
        xs_sess_check_channel_binding(s, ev);
        const char *out;
        size_t out_len;
        xs_sess_rules_verdict(s, sx, &out, &out_len);
        xs_sess_forward(s, sx, XS_SERVER, out, out_len);
        xs_sess_rules_inject(s, sx);
        return 0;
    }
    case XS_EV_KEEPALIVE:
        xs_sess_to_server(s, ev->raw, ev->len);
        return 0;
    case XS_EV_STREAM_CLOSE:
        sess_set(s, XS_SF_CLOSED_BY_CLIENT);
        xs_sess_hold_flush(s, XS_CLIENT);
        xs_sess_to_server(s, ev->raw, ev->len);
        if (sess_has(s, XS_SF_CLOSED_BY_SERVER)) {
            xs_sess_set_end_cause(s, "both streams closed");
            xs_sess_close_both(s);
        }
        return 0;
    case XS_EV_ERROR:
        return 0;
    }
    return 0;
}

static const event_handler client_handlers[] = {
    [CL_TLS_HANDSHAKE] = ignore_event,
    [CL_WAIT_HEADER] = client_wait_header,
    [CL_WAIT_STARTTLS] = xs_sess_client_wait_starttls,
    [CL_SECURE] = client_secure,
};

/* ---- the server leg's states: one handler each ---------------------------------------------- */

/* A stanza of the server's secured stream: the rules, then what the session learns from it
 * (the login's outcome, the features), then the client. */
static void server_stanza(xs_session *s, xs_sess_event *sx)
{
    const xs_event *ev = sx->ev;
    s->stats.stanzas[XS_SERVER]++;
    xs_sess_server_auth_answer(s, ev);
    const char *out;
    size_t out_len;
    xs_sess_rules_verdict(s, sx, &out, &out_len);
    if (out == NULL) {
        xs_sess_rules_inject(s, sx);
        return;
    }
    if (xs_sess_is_el(ev, NS_STREAMS, "features")) {
        if (xs_sess_server_features(s, sx))
            return;
    } else if (xs_sess_is_el(ev, NS_SASL, "success") || xs_sess_is_el(ev, NS_SASL2, "success")) {
        xs_sess_set_phase(s, XS_CLIENT, PH_AUTHED);
        xs_sess_set_phase(s, XS_SERVER, PH_AUTHED);
    }
    xs_sess_forward(s, sx, XS_CLIENT, out, out_len);
    xs_sess_rules_inject(s, sx);
}

/* SL_SECURE: the server's stream goes to the client, through the rules. */
static int server_secure(xs_session *s, xs_sess_event *sx)
{
    const xs_event *ev = sx->ev;
    if (!sess_has(s, XS_SF_SERVER_OPENED)) {
        /* The server speaks before the client's stream reached it: there is no stream of the
         * client's to put this in. */
        xs_sess_upstream_failed(
            s, "the server sent data before the client's stream header reached it");
        return 0;
    }
    switch (ev->kind) {
    case XS_EV_STREAM_OPEN:
        xs_sess_remember_s2c_namespaces(s, ev);
        sess_set(s, XS_SF_CLIENT_ANSWERED);
        xs_sess_put(s, XS_CLIENT, ev->raw, ev->len);
        xs_sess_update_forwarding(s);
        return 0;
    case XS_EV_STANZA:
        server_stanza(s, sx);
        return 0;
    case XS_EV_KEEPALIVE:
        xs_sess_put(s, XS_CLIENT, ev->raw, ev->len);
        return 0;
    case XS_EV_STREAM_CLOSE:
        sess_set(s, XS_SF_CLOSED_BY_SERVER);
        xs_sess_hold_flush(s, XS_SERVER);
        xs_sess_put(s, XS_CLIENT, ev->raw, ev->len);
        if (sess_has(s, XS_SF_CLOSED_BY_CLIENT)) {
            xs_sess_set_end_cause(s, "both streams closed");
            xs_sess_close_both(s);
        }
        return 0;
    case XS_EV_ERROR:
        return 0;
    }
    return 0;
}

static const event_handler server_handlers[] = {
    [SL_IDLE] = ignore_event,
    [SL_CONNECTING] = ignore_event,
    [SL_TLS_HANDSHAKE] = ignore_event,
    [SL_WAIT_FEATURES] = xs_sess_server_wait_features,
    [SL_WAIT_PROCEED] = xs_sess_server_wait_proceed,
    [SL_SECURE] = server_secure,
    [SL_GONE] = ignore_event,
};

/* ---- the parsers' events ------------------------------------------------------------------- */

/* Handles one event: a parse error fails its side; anything else goes to the handler of the
 * state its leg is in. */
static int dispatch(xs_session *s, xs_sess_event *sx)
{
    const xs_event *ev = sx->ev;
    if (ev->kind == XS_EV_ERROR) {
        /* The side that sent malformed XML gets the stream error the parser chose. */
        char where[64];
        snprintf(where, sizeof(where), "line %u column %u", ev->line, ev->column);
        xs_sess_fail(s, sx->from, xs_parse_error_condition(ev->error_kind),
                     "%s (%s of the %s's stream)", ev->message, where,
                     sx->from == XS_CLIENT ? "client" : "server");
        return 0;
    }
    return sx->from == XS_CLIENT ? client_handlers[s->cst](s, sx) : server_handlers[s->sst](s, sx);
}

static int on_event(void *user, const xs_event *ev)
{
    xs_session *s = user;
    if (s->state == SS_CLOSING)
        return XS_PARSER_PAUSE;
    xs_sess_event sx = {.from = s->feeding, .ev = ev};
    bool secured = sx.from == XS_CLIENT ? s->cst == CL_SECURE : s->sst == SL_SECURE;
    if (secured && ev->kind == XS_EV_STANZA)
        xs_sess_run_rules(s, &sx);

    /* The secrets are masked once for every observer. Without observers (no console, no log)
     * there is nothing to mask, time or describe: the event costs only its forwarding. */
    bool watched = s->cfg->n_observers > 0;
    xs_print_rule pr[32];
    xs_print_meta meta;
    xs_obs_masked m;
    int mrc = 0, unlogged = 0;
    if (watched) {
        meta = xs_sess_event_meta(s, &sx, pr);
        mrc = xs_obs_mask(ev, &meta, s->cfg->show_secrets, &m);
        if (mrc == 0)
            xs_obs_annotate(s->cfg->observers, s->cfg->n_observers, &m.event);
        if (mrc == 0 && secured && ev->kind == XS_EV_STANZA && s->cfg->hold != NULL)
            xs_sess_hold_ask(s, &sx, &m.event);
        unlogged = xs_sess_tell_required(s, mrc, &m);
    }
    s->in_event = true;
    s->stats.bytes[sx.from] += ev->len;
    /* When the log failed the session ends: the event goes nowhere. */
    int r = unlogged < 0 ? XS_PARSER_PAUSE : dispatch(s, &sx);
    /* The bytes are queued (or held for a leg not ready yet): now the observers see the event,
     * then the notes it caused. */
    if (watched)
        xs_sess_tell_others(s, mrc, &m, &meta);
    s->in_event = false;
    xs_sess_tell_deferred(s);
    if (watched)
        xs_obs_masked_clear(&m);
    if (unlogged < 0)
        xs_sess_fail_unlogged(s, unlogged);
    xs_sess_event_done(&sx);
    return r;
}

/* ---- public -------------------------------------------------------------------------------- */

int xs_session_new(const xs_session_cfg *cfg, const xs_session_io *io, void *io_ctx, unsigned id,
                   const char *peer, xs_session **out)
{
    xs_session *s = xs_calloc(1, sizeof(*s));
    if (s == NULL)
        return XS_ENOMEM;
    s->cfg = cfg;
    s->io = io;
    s->io_ctx = io_ctx;
    s->id = id;
    snprintf(s->id_str, sizeof(s->id_str), "%u", id);
    s->peer = xs_strdup(peer ? peer : "?"); /* NULL out of memory: the line says "?" */
    s->started_us = xs_sess_now_us(s, 0);
    s->client_mode = cfg->client_mode;
    s->server_mode = cfg->server_mode == XS_TLSMODE_MIRROR ? cfg->client_mode : cfg->server_mode;
    s->max_stanza = cfg->limits.max_stanza ? cfg->limits.max_stanza : XS_PARSER_DEFAULT_MAX_STANZA;
    /* The states the legs start in (set here, not changed: no transition to log). A direct-TLS
     * client is in its handshake from the first byte; any other first sends a stream header. */
    s->cst = s->client_mode == XS_TLSMODE_DIRECT ? CL_TLS_HANDSHAKE : CL_WAIT_HEADER;
    s->sst = SL_IDLE;

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
            xs_free(s->peer);
            xs_free(s);
            return rc;
        }
    }
    *out = s;
    return 0;
}

void xs_session_start(xs_session *s)
{
    xs_sess_note(s, "info", "client %s connected (client leg %s, server leg %s)",
                 s->peer != NULL ? s->peer : "?", xs_tls_mode_name(s->client_mode),
                 xs_tls_mode_name(s->server_mode));
}

void xs_session_set_server_addr(xs_session *s, const char *addr)
{
    /* Out of memory the events go on without it (the pcap then names a placeholder). */
    (void)xs_sess_set_string(&s->server_addr, addr, 64);
}

size_t xs_session_on_data(xs_session *s, xs_side side, const char *data, size_t len)
{
    if (s->state == SS_CLOSING)
        return len; /* nothing more is read into a closing session */
    if (sess_has(s, side_bit(XS_SF_BEFORE_TLS_CLIENT, side)))
        return xs_sess_gap_read(s, side, data, len);
    s->feeding = side;
    s->switched_tls = false;
    size_t used = 0;
    int rc = xs_parser_feed(s->parser[side], data, len, &used);
    if (rc < 0)
        return len; /* the error event already failed the session */
    if (s->switched_tls) {
        /* The next bytes belong to TLS; the parser starts a new stream after the handshake. */
        (void)xs_parser_reset(s->parser[side]);
        xs_sess_set_phase(s, side, PH_TLS);
        sess_set(s, side_bit(XS_SF_BEFORE_TLS_CLIENT, side));
        return used + xs_sess_gap_read(s, side, data + used, len - used);
    }
    return s->state == SS_CLOSING ? len : used;
}

void xs_session_on_tls_up(xs_session *s, xs_side side, const char *sni, const char *desc)
{
    if (s->state == SS_CLOSING)
        return;
    xs_sess_set_phase(s, side, PH_TLS);
    sess_clear(s, side_bit(XS_SF_BEFORE_TLS_CLIENT, side));
    if (side == XS_CLIENT) {
        xs_sess_tell_tls_up(s, side, desc);
        /* Out of memory the domain stays unknown: the forged certificate is already made,
         * only the names in our own stream header fall back to defaults. */
        if (sni != NULL && sni[0] && xs_sess_domain_of(s)[0] == 0)
            (void)xs_sess_set_string(&s->domain, sni, 255);
        xs_sess_set_client(s, CL_SECURE);
        sess_clear(s, XS_SF_CLIENT_OPENED);
        sess_clear(s, XS_SF_CLIENT_ANSWERED);
        if (s->pending.len > 0)
            xs_sess_bytes_free(&s->pending);
    } else {
        xs_sess_tell_tls_up(s, side, desc);
        (void)xs_parser_reset(s->parser[XS_SERVER]);
        sess_clear(s, XS_SF_SERVER_OPENED);
        server_secured(s);
    }
    xs_sess_update_forwarding(s);
}

void xs_session_on_connected(xs_session *s, int status, const char *cause)
{
    if (s->state == SS_CLOSING)
        return;
    if (status < 0) {
        xs_sess_upstream_failed(s, "cannot connect to the server: %s",
                                cause ? cause : xs_strerror(status));
        return;
    }
    xs_sess_note(s, "info", "server leg: connected (%s)", xs_tls_mode_name(s->server_mode));
    switch (s->server_mode) {
    case XS_TLSMODE_DIRECT: {
        xs_sess_set_server(s, SL_TLS_HANDSHAKE);
        int rc = s->io->start_tls(s->io_ctx, XS_SERVER, xs_sess_server_name(s));
        if (rc < 0)
            xs_sess_upstream_failed(s, "cannot start TLS: %s", xs_strerror(rc));
        break;
    }
    case XS_TLSMODE_STARTTLS:
        xs_sess_send_first_header(s);
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
        xs_sess_upstream_failed(s, "%s",
                                cause && cause[0] ? cause : "the server closed the connection");
        return;
    }
    xs_side peer = side == XS_CLIENT ? XS_SERVER : XS_CLIENT;
    if (sess_has(s, side_bit(XS_SF_CLOSED_BY_CLIENT, side)) &&
        !sess_has(s, side_bit(XS_SF_CLOSED_BY_CLIENT, peer)) && status == 0 &&
        xs_sess_can_speak(s, peer)) {
        /* A half-close after a clean end of stream: the other side may still finish its
         * stream, and its last stanzas are delivered (--close-timeout bounds the wait). A TLS
         * leg reports this end twice, its close_notify and then its FIN: one end, said once. */
        if (sess_has(s, side_bit(XS_SF_HALF_CLOSED_CLIENT, side)))
            return;
        sess_set(s, side_bit(XS_SF_HALF_CLOSED_CLIENT, side));
        xs_sess_note(s, "info",
                     "%s closed its side of the connection after closing its stream; "
                     "waiting for the %s to close its stream",
                     who, side == XS_CLIENT ? "server" : "client");
        return;
    }
    if (sess_has(s, side_bit(XS_SF_CLOSED_BY_CLIENT, side)))
        xs_sess_note(s, "info", "%s closed the connection after closing its stream", who);
    else
        xs_sess_note(s, status < 0 ? "warn" : "info",
                     "%s closed the connection without closing its "
                     "stream%s%s",
                     who, cause && cause[0] ? ": " : "", cause ? cause : "");
    xs_sess_set_end_cause(s, "%s %s", who, cause && cause[0] ? cause : "closed the connection");
    /* The other side gets a clean end of its stream. */
    xs_sess_end_stream_to(s, peer);
    xs_sess_close_both(s);
}

void xs_session_on_timeout(xs_session *s, const char *what)
{
    if (s->state == SS_CLOSING)
        return;
    if (s->deferred_failure != NULL) {
        xs_sess_note(s, "error",
                     "%s: the client never opened its stream to be told that the server "
                     "failed (%s)",
                     what, s->deferred_failure);
        xs_sess_close_both(s);
        return;
    }
    if (s->state == SS_NEGOTIATING && sess_has(s, XS_SF_CLIENT_OPENED) &&
        (s->sst != SL_SECURE || !sess_has(s, XS_SF_CLIENT_ANSWERED))) {
        /* The client did its part; the server did not answer in time. */
        xs_sess_upstream_failed(s, "%s (the server did not answer)", what);
        return;
    }
    xs_sess_fail(s, XS_CLIENT, "connection-timeout", "%s", what);
}

void xs_session_shutdown(xs_session *s)
{
    if (s->state == SS_CLOSING)
        return;
    xs_sess_set_end_cause(s, "xmppscope shutting down");
    if (xs_sess_can_speak(s, XS_CLIENT) && sess_has(s, XS_SF_CLIENT_OPENED))
        xs_sess_stream_error_to(s, XS_CLIENT, "system-shutdown", "the proxy is shutting down");
    xs_sess_end_stream_to(s, XS_SERVER);
    xs_sess_close_both(s);
}

int xs_session_forwarding(const xs_session *s)
{
    return s->state == SS_FORWARDING;
}

int xs_session_lagging_side(const xs_session *s)
{
    if (s->state == SS_CLOSING ||
        sess_has(s, XS_SF_CLOSED_BY_CLIENT) == sess_has(s, XS_SF_CLOSED_BY_SERVER))
        return -1;
    return sess_has(s, XS_SF_CLOSED_BY_CLIENT) ? XS_SERVER : XS_CLIENT;
}

int xs_session_closing(const xs_session *s)
{
    return s->state == SS_CLOSING;
}

const xs_session_stats *xs_session_get_stats(const xs_session *s)
{
    return &s->stats;
}

void xs_session_tick(xs_session *s)
{
    if (s->state == SS_CLOSING || s->in_event)
        return;
    bool any = false;
    for (size_t i = 0; i < s->cfg->n_observers; i++)
        any = any || s->cfg->observers[i].annotate != NULL;
    if (!any)
        return;
    xs_print_meta m = xs_sess_meta_of(s, NULL, NULL);
    xs_obs_event e = {.kind = XS_OBS_TICK, .meta = &m};
    (void)xs_sess_tell_all(s, &e, SIZE_MAX);
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
        .seconds = (double)(xs_sess_now_us(s, 0) - s->started_us) / 1e6,
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
    xs_print_meta m = xs_sess_meta_of(s, NULL, NULL);
    xs_obs_event e = {
        .kind = XS_OBS_CLOSED, .meta = &m, .level = "info", .text = text, .summary = &sum};
    (void)xs_sess_tell_all(s, &e, SIZE_MAX);
    xs_sess_hold_free(s);
    xs_parser_free(s->parser[0]);
    xs_parser_free(s->parser[1]);
    xs_sess_bytes_free(&s->first_header);
    xs_sess_bytes_free(&s->pending);
    xs_sess_bytes_free(&s->deferred);
    xs_free(s->peer);
    xs_free(s->server_addr);
    xs_free(s->domain);
    xs_free(s->client_ns);
    if (s->deferred_failure != xs_sess_deferred_oom)
        xs_free(s->deferred_failure);
    xs_free(s->s2c_ns);
    xs_free(s->end_cause);
    xs_free(s);
}

/* ---- reaching the server ---- */

const char *xs_session_domain(const xs_session *s)
{
    return xs_sess_domain_of(s);
}

void xs_session_set_server_mode(xs_session *s, xs_tls_mode mode)
{
    if (mode != XS_TLSMODE_MIRROR)
        s->server_mode = mode;
}

void xs_session_say(xs_session *s, const char *level, const char *text)
{
    xs_sess_note(s, level, "%s", text);
}
