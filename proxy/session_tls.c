/* STARTTLS on either leg, and the plaintext gap between a switch to TLS and its first record.
 * See session_impl.h. */
#include "proxy/session_impl.h"

#include "inspect/error.h"
#include "inspect/redact.h"

#include <string.h>

void xs_sess_send_first_header(xs_session *s)
{
    /* A STARTTLS server first gets the client's first stream header, byte for byte. */
    xs_sess_put(s, XS_SERVER, s->first_header.data, s->first_header.len);
    xs_sess_bytes_free(&s->first_header); /* needed once: idle sessions stay small */
    sess_set(s, XS_SF_SERVER_OPENED);
    xs_sess_set_server(s, SL_WAIT_FEATURES);
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
        xs_sess_note(
            s, "error",
            "server leg: the server sent %zu bytes of plaintext after <proceed/> before the TLS "
            "handshake: '%s' (STARTTLS injection?); nothing of it is forwarded",
            len, shown);
        xs_sess_upstream_failed(
            s, "the server sent plaintext after <proceed/> before the TLS handshake "
               "(STARTTLS injection?)");
        return;
    }
    xs_sess_note(
        s, "error",
        "client leg: the client sent %zu bytes of plaintext after <starttls/> before the TLS "
        "handshake: '%s' (STARTTLS injection?); nothing of it is forwarded, the session ends",
        len, shown);
    xs_sess_set_end_cause(s, "the client sent plaintext after <starttls/> (STARTTLS injection?)");
    xs_sess_end_stream_to(s, XS_SERVER);
    xs_sess_close_both(s);
}

/* Reads what a side sent between its switch to TLS and its first TLS record. XML whitespace
 * there is still part of its plaintext stream (RFC 6120 allows it between elements, and go-xmpp
 * sends a newline after <starttls/>): consumed, in as many reads as it comes. The first byte
 * that can begin a TLS record ends the gap; any other byte fails the side. Returns the bytes
 * consumed: fewer than `len` only where TLS begins. */
size_t xs_sess_gap_read(xs_session *s, xs_side side, const char *data, size_t len)
{
    size_t i = 0;
    while (i < len && xml_space(data[i]))
        i++;
    s->stats.bytes[side] += i;
    if (i == len)
        return len;
    sess_clear(s, side_bit(XS_SF_BEFORE_TLS_CLIENT, side));
    if (tls_record_start((unsigned char)data[i]))
        return i;
    plaintext_before_tls(s, side, data + i, len - i);
    return len;
}

int xs_session_before_tls(const xs_session *s, xs_side side)
{
    return s->state != SS_CLOSING && sess_has(s, side_bit(XS_SF_BEFORE_TLS_CLIENT, side));
}

/* ---- the client leg: xmppscope answers its first stream and requires STARTTLS -------------- */

void xs_sess_client_offer_starttls(xs_session *s)
{
    xs_sess_answer_client_header(s);
    xs_sess_put_str(s, XS_CLIENT,
                    "<stream:features><starttls xmlns='" NS_TLS
                    "'><required/></starttls></stream:features>");
    xs_sess_note(s, "info",
                 "client leg: xmppscope answers this stream itself and offers STARTTLS "
                 "(--client-tls starttls)");
    xs_sess_set_client(s, CL_WAIT_STARTTLS);
}

/* CL_WAIT_STARTTLS: the client must send <starttls/> before anything else. */
int xs_sess_client_wait_starttls(xs_session *s, xs_sess_event *sx)
{
    const xs_event *ev = sx->ev;
    if (ev->kind == XS_EV_STANZA && xs_sess_is_el(ev, NS_TLS, "starttls")) {
        xs_sess_put_str(s, XS_CLIENT, "<proceed xmlns='" NS_TLS "'/>");
        xs_sess_set_client(s, CL_TLS_HANDSHAKE);
        int rc = s->io->start_tls(s->io_ctx, XS_CLIENT, xs_sess_domain_of(s));
        if (rc < 0) {
            xs_sess_fail(s, XS_CLIENT, "internal-server-error", "cannot start TLS: %s",
                         xs_strerror(rc));
            return 0;
        }
        s->switched_tls = true;
        return XS_PARSER_PAUSE;
    }
    if (ev->kind == XS_EV_STANZA) {
        xs_sess_fail(s, XS_CLIENT, "policy-violation",
                     "STARTTLS is required on this leg (--client-tls starttls), but the client "
                     "sent <%s/> before it",
                     ev->name);
        return 0;
    }
    if (ev->kind == XS_EV_STREAM_CLOSE) {
        /* Both open streams are closed properly: ours with the client, and the one the server
         * has with the client's first header. */
        sess_set(s, XS_SF_CLOSED_BY_CLIENT);
        xs_sess_set_end_cause(s, "the client closed its stream");
        xs_sess_put_str(s, XS_CLIENT, "</stream:stream>");
        if (xs_sess_can_speak(s, XS_SERVER) && sess_has(s, XS_SF_SERVER_OPENED))
            xs_sess_put_str(s, XS_SERVER, "</stream:stream>");
        xs_sess_close_both(s);
    }
    return 0;
}

/* ---- the server leg: xmppscope does STARTTLS with the server itself ------------------------ */

/* SL_WAIT_FEATURES: the server's features must offer STARTTLS. */
int xs_sess_server_wait_features(xs_session *s, xs_sess_event *sx)
{
    const xs_event *ev = sx->ev;
    if (ev->kind == XS_EV_STREAM_OPEN)
        return 0;
    if (ev->kind == XS_EV_STANZA && xs_sess_is_el(ev, NS_STREAMS, "features")) {
        if (ev->raw != NULL && memmem(ev->raw, ev->len, NS_TLS, strlen(NS_TLS)) != NULL) {
            xs_sess_put_str(s, XS_SERVER, "<starttls xmlns='" NS_TLS "'/>");
            xs_sess_set_server(s, SL_WAIT_PROCEED);
        } else {
            xs_sess_upstream_failed(s, "the server does not offer STARTTLS; try --upstream-tls "
                                       "none (plain) or direct");
        }
        return 0;
    }
    if (ev->kind == XS_EV_STANZA && xs_sess_is_el(ev, NS_STREAMS, "error")) {
        xs_sess_upstream_failed(s, "the server refused the stream before TLS (see its "
                                   "<stream:error/> above)");
        return 0;
    }
    if (ev->kind == XS_EV_STREAM_CLOSE)
        xs_sess_upstream_failed(s, "the server closed the stream before TLS");
    return 0;
}

/* SL_WAIT_PROCEED: the server's answer to our <starttls/>. */
int xs_sess_server_wait_proceed(xs_session *s, xs_sess_event *sx)
{
    const xs_event *ev = sx->ev;
    if (ev->kind == XS_EV_STANZA && xs_sess_is_el(ev, NS_TLS, "proceed")) {
        xs_sess_set_server(s, SL_TLS_HANDSHAKE);
        int rc = s->io->start_tls(s->io_ctx, XS_SERVER, xs_sess_server_name(s));
        if (rc < 0) {
            xs_sess_upstream_failed(s, "cannot start TLS: %s", xs_strerror(rc));
            return 0;
        }
        s->switched_tls = true;
        return XS_PARSER_PAUSE;
    }
    if (ev->kind == XS_EV_STANZA || ev->kind == XS_EV_STREAM_CLOSE)
        xs_sess_upstream_failed(s, "the server refused STARTTLS (<%s/>)",
                                ev->name ? ev->name : "stream close");
    return 0;
}
