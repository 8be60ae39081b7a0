/* The benchmark's synthetic XMPP server. See bench_server.h. */
#include "bench_server.h"

#include "bench_conn.h"
#include "bench_tls.h"
#include "bench_xml.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"

typedef enum sstate {
    SS_HEADER,   /* plain: waiting for the first stream header */
    SS_STARTTLS, /* offered STARTTLS: waiting for <starttls/> */
    SS_TLS,      /* in the handshake */
    SS_HEADER2,  /* secured: waiting for the new stream header */
    SS_OPEN,     /* echoing or sinking stanzas */
    SS_CLOSED,   /* our stream is closed */
} sstate;

typedef struct server server;

typedef struct ssess {
    bn_conn conn;
    server *srv;
    sstate state;
    int sink;
    bx scan;
    uint64_t base; /* stream offset of conn.in's first byte */
    uint64_t stanzas, bytes;
    struct ssess *prev, *next;
} ssess;

struct server {
    uv_loop_t *loop;
    uv_tcp_t lst[2];
    uv_signal_t sigterm, sigint;
    struct ssl_ctx_st *ctx;
    const char *domain;
    ssess *sessions;
    unsigned next_id;
    int stopping;
};

static void send_str(ssess *s, const char *str)
{
    if (bn_conn_write(&s->conn, str, strlen(str)) < 0)
        bn_conn_close(&s->conn);
}

static void send_header(ssess *s, int secured)
{
    char hdr[600];
    snprintf(hdr, sizeof(hdr),
             "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
             "xmlns:stream='http://etherx.jabber.org/streams' from='%s' id='bench-%u' "
             "version='1.0' xml:lang='en'><stream:features>%s</stream:features>",
             s->srv->domain, ++s->srv->next_id,
             secured ? "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                     : "<starttls xmlns='" NS_TLS "'><required/></starttls>");
    send_str(s, hdr);
}

/* The element [start, end) of data (whose first byte is at stream offset base) starts with
 * the tag `name`. */
static int starts_with(const char *data, uint64_t base, const bx_event *ev, const char *name)
{
    size_t n = strlen(name);
    return ev->end - ev->start > n + 1 && memcmp(data + (ev->start - base) + 1, name, n) == 0;
}

static void close_stream(ssess *s)
{
    char tail[200];
    snprintf(tail, sizeof(tail),
             "<count xmlns='" BN_NS_BENCH "' stanzas='%llu' bytes='%llu'/></stream:stream>",
             (unsigned long long)s->stanzas, (unsigned long long)s->bytes);
    send_str(s, tail);
    /* The client closed its stream first, so it closes the connection (RFC 6120 4.4); the
     * server's FIN follows the client's. Closing first here would also lose the last bytes
     * through sslsplit's autossl mode, which drops what it has not forwarded yet when the
     * server side ends. */
    s->state = SS_CLOSED;
}

static size_t on_data(bn_conn *c, const char *data, size_t len)
{
    ssess *s = c->user;
    size_t keep_from = 0; /* everything before this offset in data is consumed */
    bx_event ev;

    while (s->state != SS_CLOSED && !c->closing) {
        size_t off = (size_t)(s->scan.pos - s->base);
        bx_scan(&s->scan, data + off, len - off, &ev);
        if (ev.kind == BX_NONE)
            break;
        if (ev.kind == BX_ERROR) {
            fprintf(stderr, "bench server: malformed input, closing a session\n");
            bn_conn_close(c);
            return len;
        }
        switch (s->state) {
        case SS_HEADER:
        case SS_HEADER2:
            if (ev.kind != BX_OPEN)
                break;
            if (s->state == SS_HEADER2) {
                const char *h = data + (ev.start - s->base);
                s->sink = memmem(h, (size_t)(ev.end - ev.start), "mode='sink'", 11) != NULL;
            }
            send_header(s, s->state == SS_HEADER2);
            s->state = s->state == SS_HEADER ? SS_STARTTLS : SS_OPEN;
            keep_from = (size_t)(ev.end - s->base);
            break;
        case SS_STARTTLS:
            if (ev.kind == BX_ELEMENT && starts_with(data, s->base, &ev, "starttls")) {
                size_t used = (size_t)(ev.end - s->base);
                send_str(s, "<proceed xmlns='" NS_TLS "'/>");
                if (bn_conn_start_tls(c, s->srv->ctx, 1, NULL) < 0) {
                    bn_conn_close(c);
                    return len;
                }
                s->state = SS_TLS;
                bx_reset(&s->scan);
                s->base = 0;
                /* What follows is the handshake: bn_conn feeds it to TLS. */
                return used;
            }
            if (ev.kind == BX_CLOSE) {
                send_str(s, "</stream:stream>");
                s->state = SS_CLOSED;
                return len;
            }
            break;
        case SS_OPEN:
            if (ev.kind == BX_ELEMENT) {
                s->stanzas++;
                s->bytes += ev.end - ev.start;
                break;
            }
            if (ev.kind == BX_CLOSE) {
                size_t upto = (size_t)(ev.start - s->base);
                if (!s->sink && upto > keep_from)
                    (void)bn_conn_write(c, data + keep_from, upto - keep_from);
                close_stream(s);
                return len;
            }
            break;
        default:
            break;
        }
    }
    if (s->state == SS_OPEN && !c->closing) {
        /* Echo every complete stanza of this read in one write; keep a partial one. */
        size_t upto = (size_t)(bx_complete_end(&s->scan) - s->base);
        if (upto < keep_from)
            upto = keep_from;
        if (upto > keep_from && !s->sink &&
            bn_conn_write(c, data + keep_from, upto - keep_from) < 0)
            bn_conn_close(c);
        keep_from = upto;
    }
    s->base += keep_from;
    return keep_from;
}

static void on_tls_up(bn_conn *c)
{
    ssess *s = c->user;
    s->state = SS_HEADER2;
}

/* The client's FIN (after its stream was closed, or an aborted session): ours follows once
 * everything queued is written. */
static void on_eof(bn_conn *c, int status)
{
    if (status < 0)
        bn_conn_close(c);
    else
        bn_conn_finish(c);
}

static void on_closed(bn_conn *c)
{
    ssess *s = c->user;
    server *srv = s->srv;
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
}

static void on_connect_unused(bn_conn *c, int status)
{
    (void)c, (void)status;
}

static const bn_conn_ops server_ops = {
    .on_connect = on_connect_unused,
    .on_tls_up = on_tls_up,
    .on_data = on_data,
    .on_eof = on_eof,
    .on_closed = on_closed,
};

static void on_connection(uv_stream_t *lst, int status)
{
    server *srv = lst->data;
    if (status < 0)
        return;
    ssess *s = calloc(1, sizeof(*s));
    if (s == NULL || bn_conn_init(srv->loop, &s->conn, &server_ops, s) < 0) {
        free(s);
        return;
    }
    s->srv = srv;
    bx_reset(&s->scan);
    s->next = srv->sessions;
    if (srv->sessions)
        srv->sessions->prev = s;
    srv->sessions = s;
    if (bn_conn_accept(lst, &s->conn) < 0) {
        bn_conn_close(&s->conn);
        return;
    }
    if (lst == (uv_stream_t *)&srv->lst[1]) {
        s->state = SS_TLS;
        if (bn_conn_start_tls(&s->conn, srv->ctx, 1, NULL) < 0)
            bn_conn_close(&s->conn);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    server *srv = h->data;
    if (srv->stopping)
        return;
    srv->stopping = 1;
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&srv->lst[i], NULL);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    for (ssess *s = srv->sessions; s != NULL; s = s->next)
        bn_conn_close(&s->conn);
}

int bn_server_main(int starttls_fd, int direct_fd, const char *pki_dir, const char *domain)
{
    char err[600];
    server srv;
    memset(&srv, 0, sizeof(srv));
    srv.domain = domain;
    srv.ctx = bn_tls_server_ctx(pki_dir, err, sizeof(err));
    if (srv.ctx == NULL) {
        fprintf(stderr, "bench server: %s\n", err);
        return 1;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    srv.loop = &loop;
    int fds[2] = {starttls_fd, direct_fd};
    for (int i = 0; i < 2; i++) {
        uv_tcp_init(&loop, &srv.lst[i]);
        srv.lst[i].data = &srv;
        int rc = uv_tcp_open(&srv.lst[i], fds[i]);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&srv.lst[i], 4096, on_connection);
        if (rc < 0) {
            fprintf(stderr, "bench server: cannot listen: %s\n", uv_strerror(rc));
            return 1;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    uv_signal_init(&loop, &srv.sigterm);
    uv_signal_init(&loop, &srv.sigint);
    srv.sigterm.data = srv.sigint.data = &srv;
    uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv.sigint, on_signal, SIGINT);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    bn_tls_ctx_free(srv.ctx);
    return 0;
}
