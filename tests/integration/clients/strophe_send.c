/* A small libstrophe client for the interoperability matrix (tests/integration/test_interop.py):
 * it logs in, sends one chat message, waits until the server has handled it (a ping round trip)
 * and closes the stream.
 *
 *   strophe_send HOST PORT JID PASSWORD TO BODY [--direct-tls] [--ca-file FILE]
 *
 * TLS is mandatory: STARTTLS by default, direct TLS (XEP-0368) with --direct-tls. The server's
 * certificate is checked for the JID's domain against FILE. Prints one line, "ok JID" or
 * "error: WHY", and exits 0 on success, 1 on failure, 2 on a usage error. XS_STROPHE_DEBUG=1 turns
 * on libstrophe's debug log on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <strophe.h>

enum { PING_TIMEOUT_MS = 100, RUN_SECONDS = 20 };

struct state {
    const char *to;
    const char *body;
    char domain[256];
    int pinged;    /* The server answered the ping sent after the message. */
    int finished;  /* The connection is gone (closed or failed). */
    char jid[256]; /* The JID the server bound. */
    char error[256];
};

static int on_ping_result(xmpp_conn_t *conn, xmpp_stanza_t *stanza, void *userdata)
{
    struct state *st = userdata;
    const char *type = xmpp_stanza_get_type(stanza);

    /* An error answer would still prove that the message before it was handled, but a server
     * that has mod_ping answers with a result: anything else is worth reporting. */
    if (type != NULL && strcmp(type, "result") == 0)
        st->pinged = 1;
    else
        snprintf(st->error, sizeof(st->error), "ping answered with type '%s'",
                 type ? type : "(none)");
    xmpp_disconnect(conn);
    return 0;
}

static int send_all(xmpp_conn_t *conn, struct state *st)
{
    xmpp_ctx_t *ctx = xmpp_conn_get_context(conn);
    xmpp_stanza_t *presence = xmpp_presence_new(ctx);
    xmpp_stanza_t *msg = xmpp_message_new(ctx, "chat", st->to, "strophe-msg-1");
    xmpp_stanza_t *iq = xmpp_iq_new(ctx, "get", "strophe-ping-1");
    xmpp_stanza_t *ping = xmpp_stanza_new(ctx);
    int rc = -1;

    if (presence == NULL || msg == NULL || iq == NULL || ping == NULL)
        goto out;
    if (xmpp_message_set_body(msg, st->body) != XMPP_EOK ||
        xmpp_stanza_set_name(ping, "ping") != XMPP_EOK ||
        xmpp_stanza_set_ns(ping, "urn:xmpp:ping") != XMPP_EOK ||
        xmpp_stanza_set_to(iq, st->domain) != XMPP_EOK ||
        xmpp_stanza_add_child(iq, ping) != XMPP_EOK)
        goto out;
    xmpp_id_handler_add(conn, on_ping_result, "strophe-ping-1", st);
    xmpp_send(conn, presence);
    xmpp_send(conn, msg);
    xmpp_send(conn, iq);
    rc = 0;
out:
    if (rc != 0)
        snprintf(st->error, sizeof(st->error), "out of memory building the stanzas");
    if (ping)
        xmpp_stanza_release(ping);
    if (iq)
        xmpp_stanza_release(iq);
    if (msg)
        xmpp_stanza_release(msg);
    if (presence)
        xmpp_stanza_release(presence);
    return rc;
}

static void on_conn(xmpp_conn_t *conn, xmpp_conn_event_t event, int error,
                    xmpp_stream_error_t *stream_error, void *userdata)
{
    struct state *st = userdata;

    if (event == XMPP_CONN_CONNECT) {
        snprintf(st->jid, sizeof(st->jid), "%s",
                 xmpp_conn_get_bound_jid(conn) ? xmpp_conn_get_bound_jid(conn) : "");
        if (!xmpp_conn_is_secured(conn)) {
            snprintf(st->error, sizeof(st->error), "logged in without TLS");
            xmpp_disconnect(conn);
        } else if (send_all(conn, st) != 0) {
            xmpp_disconnect(conn);
        }
        return;
    }
    /* XMPP_CONN_DISCONNECT or XMPP_CONN_FAIL: keep the first reason found. */
    if (st->error[0] == '\0' && !st->pinged) {
        if (stream_error != NULL)
            snprintf(st->error, sizeof(st->error), "stream error %d: %s", (int)stream_error->type,
                     stream_error->text ? stream_error->text : "(no text)");
        else
            snprintf(st->error, sizeof(st->error),
                     "connection %s before the ping was answered (socket error %d)",
                     event == XMPP_CONN_FAIL ? "failed" : "closed", error);
    }
    st->finished = 1;
}

int main(int argc, char **argv)
{
    struct state st = {0};
    const char *ca_file = NULL;
    long flags = XMPP_CONN_FLAG_MANDATORY_TLS;
    xmpp_ctx_t *ctx = NULL;
    xmpp_conn_t *conn = NULL;
    xmpp_log_t *log;
    time_t deadline;
    char *end;
    long port;
    int rc = 1;

    if (argc < 7) {
        fprintf(stderr,
                "usage: %s HOST PORT JID PASSWORD TO BODY [--direct-tls] "
                "[--ca-file FILE]\n",
                argv[0]);
        return 2;
    }
    for (int i = 7; i < argc; i++) {
        if (strcmp(argv[i], "--direct-tls") == 0) {
            flags = XMPP_CONN_FLAG_LEGACY_SSL;
        } else if (strcmp(argv[i], "--ca-file") == 0 && i + 1 < argc) {
            ca_file = argv[++i];
        } else {
            fprintf(stderr, "%s: unknown argument '%s'\n", argv[0], argv[i]);
            return 2;
        }
    }
    port = strtol(argv[2], &end, 10);
    if (*end != '\0' || port < 1 || port > 65535) {
        fprintf(stderr, "%s: '%s' is not a port number (1 to 65535)\n", argv[0], argv[2]);
        return 2;
    }
    st.to = argv[5];
    st.body = argv[6];
    /* The ping goes to the JID's domain: the part between '@' and '/'. */
    snprintf(st.domain, sizeof(st.domain), "%s",
             strchr(argv[3], '@') ? strchr(argv[3], '@') + 1 : argv[3]);
    st.domain[strcspn(st.domain, "/")] = '\0';

    xmpp_initialize();
    log = xmpp_get_default_logger(getenv("XS_STROPHE_DEBUG") ? XMPP_LEVEL_DEBUG : XMPP_LEVEL_ERROR);
    ctx = xmpp_ctx_new(NULL, log);
    conn = ctx ? xmpp_conn_new(ctx) : NULL;
    if (conn == NULL) {
        printf("error: out of memory\n");
        goto out;
    }
    xmpp_conn_set_jid(conn, argv[3]);
    xmpp_conn_set_pass(conn, argv[4]);
    xmpp_conn_set_flags(conn, flags);
    if (ca_file != NULL)
        xmpp_conn_set_cafile(conn, ca_file);
    if (xmpp_connect_client(conn, argv[1], (unsigned short)port, on_conn, &st) != XMPP_EOK) {
        printf("error: cannot connect to %s:%ld\n", argv[1], port);
        goto out;
    }
    /* xmpp_run() has no time limit: run the loop by hand so that a stuck peer ends the run. */
    deadline = time(NULL) + RUN_SECONDS;
    while (!st.finished && time(NULL) < deadline)
        xmpp_run_once(ctx, PING_TIMEOUT_MS);
    if (!st.finished)
        snprintf(st.error, sizeof(st.error), "no result within %d s", RUN_SECONDS);
    if (st.pinged && st.finished) {
        printf("ok %s\n", st.jid);
        rc = 0;
    } else {
        printf("error: %s\n", st.error[0] ? st.error : "unknown failure");
    }
out:
    if (conn)
        xmpp_conn_release(conn);
    if (ctx)
        xmpp_ctx_free(ctx);
    xmpp_shutdown();
    return rc;
}
