/* The web inspector's server: HTTP for the page, a WebSocket per browser, on the caller's libuv
 * loop. See web.h; the events and requests are web_hist.c's. */
#include "proxy/web_impl.h"

#include "inspect/error.h"
#include "proxy/proxy_impl.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

/* A message of a browser may be at most this long (a stanza to send, edited, or a filter). */
#define WEB_MAX_REQUEST (1u << 20)
/* What one write to a browser carries at most (a batch of records; one record may pass it), and
 * how often a browser that is behind gets one: at most WEB_BATCH * 1000 / WEB_PUMP_MS bytes a
 * second. A browser is a person's view, not a log: under bulk traffic it falls behind and skips
 * (and is told), rather than taking the CPU that forwarding needs. */
#define WEB_BATCH (1u << 20)
#define WEB_PUMP_MS 100
/* While the sessions are busy (more than WEB_BUSY_RECORDS events in one pump period: bulk
 * traffic, ten thousand events a second and more) a browser gets at most WEB_BATCH_BUSY per
 * period: it skips what it cannot show anyway (and is told), and its CPU stays with forwarding.
 * A quiet proxy sends the history to a browser that connects late at the full rate. */
#define WEB_BATCH_BUSY (8u << 10)
#define WEB_BUSY_RECORDS 1000

/* Per HTTP connection: the asset being sent and how far. */
typedef struct http_state {
    const struct web_asset *asset;
    size_t sent;
} http_state;

/* ---- access: token, Host, Origin ----------------------------------------------------------- */

/* Whether the header `tok` of the request equals one of the names this server answers to:
 * HOST:PORT as served, localhost:PORT, 127.0.0.1:PORT, [::1]:PORT; with `scheme` ("http://")
 * before each (Origin) or not (Host). */
static bool names_us(struct xs_web *w, struct lws *wsi, enum lws_token_indexes tok,
                     const char *scheme)
{
    char got[300];
    if (lws_hdr_copy(wsi, got, sizeof(got), tok) <= 0)
        return false;
    const char *hosts[] = {w->host, "localhost", "127.0.0.1", "[::1]"};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        char want[300];
        bool v6 = strchr(hosts[i], ':') != NULL && hosts[i][0] != '[';
        snprintf(want, sizeof(want), "%s%s%s%s:%s", scheme, v6 ? "[" : "", hosts[i], v6 ? "]" : "",
                 w->port);
        if (strcmp(got, want) == 0)
            return true;
    }
    return false;
}

/* Constant-time comparison of a token of 64 hex digits. */
static bool token_is(const struct xs_web *w, const char *s, size_t n)
{
    if (n != 64)
        return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < 64; i++)
        diff |= (unsigned char)(s[i] ^ w->token[i]);
    return diff == 0;
}

/* The token from the cookie header ("xs_token=HEX"). */
static bool cookie_ok(struct xs_web *w, struct lws *wsi)
{
    char c[1024];
    if (lws_hdr_copy(wsi, c, sizeof(c), WSI_TOKEN_HTTP_COOKIE) <= 0)
        return false;
    for (char *p = c; (p = strstr(p, "xs_token=")) != NULL; p += 9) {
        if (p != c && p[-1] != ' ' && p[-1] != ';')
            continue;
        const char *v = p + 9;
        size_t n = strcspn(v, "; ");
        if (token_is(w, v, n))
            return true;
    }
    return false;
}

static bool query_token_ok(struct xs_web *w, struct lws *wsi)
{
    char buf[160];
    /* It copies "token=VALUE" and points at VALUE. */
    const char *v = lws_get_urlarg_by_name(wsi, "token=", buf, sizeof(buf));
    return v != NULL && token_is(w, v, strlen(v));
}

/* ---- HTTP ---------------------------------------------------------------------------------- */

static int http_deny(struct lws *wsi, unsigned status)
{
    unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf);
    const char *body = status == HTTP_STATUS_FORBIDDEN
                           ? "forbidden: open the URL with its token that xmppscope printed\n"
                           : "not found\n";
    size_t n = strlen(body);
    if (lws_add_http_common_headers(wsi, status, "text/plain", n, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    memcpy(start, body, n);
    lws_write(wsi, start, n, LWS_WRITE_HTTP_FINAL);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int http_request(struct xs_web *w, struct lws *wsi, http_state *st, const char *uri)
{
    if (!names_us(w, wsi, WSI_TOKEN_HOST, ""))
        return http_deny(wsi, HTTP_STATUS_FORBIDDEN);
    bool with_token = query_token_ok(w, wsi);
    if (!with_token && !cookie_ok(w, wsi))
        return http_deny(wsi, HTTP_STATUS_FORBIDDEN);
    const char *path = strcmp(uri, "/") == 0 ? "/index.html" : uri;
    const struct web_asset *a = NULL;
    for (size_t i = 0; i < xs_web_n_assets; i++)
        if (strcmp(xs_web_assets[i].path, path) == 0)
            a = &xs_web_assets[i];
    if (a == NULL)
        return http_deny(wsi, HTTP_STATUS_NOT_FOUND);
    unsigned char buf[LWS_PRE + 2048], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf);
    char cookie[160];
    snprintf(cookie, sizeof(cookie), "xs_token=%s; Path=/; HttpOnly; SameSite=Strict", w->token);
    static const char csp[] = "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                              "frame-ancestors 'none'";
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, a->mime, a->len, &p, end) ||
        (with_token && lws_add_http_header_by_name(
                           wsi, (const unsigned char *)"set-cookie:", (const unsigned char *)cookie,
                           (int)strlen(cookie), &p, end)) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"content-security-policy:",
                                    (const unsigned char *)csp, (int)sizeof(csp) - 1, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"referrer-policy:",
                                    (const unsigned char *)"no-referrer", 11, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    st->asset = a;
    st->sent = 0;
    lws_callback_on_writable(wsi);
    return 0;
}

static int http_writable(struct lws *wsi, http_state *st)
{
    if (st->asset == NULL)
        return 0;
    unsigned char buf[LWS_PRE + 16384];
    size_t n = st->asset->len - st->sent;
    if (n > sizeof(buf) - LWS_PRE)
        n = sizeof(buf) - LWS_PRE;
    memcpy(buf + LWS_PRE, st->asset->data + st->sent, n);
    st->sent += n;
    bool last = st->sent == st->asset->len;
    if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
        return -1;
    if (!last) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    st->asset = NULL;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int cb_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
    struct xs_web *w = lws_context_user(lws_get_context(wsi));
    http_state *st = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return http_request(w, wsi, st, (const char *)in);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_writable(wsi, st);
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ---- WebSocket ----------------------------------------------------------------------------- */

static void client_gone(struct xs_web *w, web_client *c)
{
    for (web_client **pp = &w->clients; *pp != NULL; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            w->n_clients--;
            break;
        }
    xs_filter_free(c->filter);
    xs_buf_free(&c->in);
    xs_buf_free(&c->reply);
}

/* Sends the next message: answers first, then the held list, then events from the cursor. */
static int ws_writable(struct xs_web *w, web_client *c)
{
    xs_buf out;
    xs_buf_init(&out, 0);
    xs_buf_reserve(&out, LWS_PRE);
    xs_buf_commit(&out, LWS_PRE);
    if (xs_buf_len(&c->reply) > 0) {
        xs_buf_add(&out, xs_buf_ptr(&c->reply), xs_buf_len(&c->reply));
        xs_buf_reset(&c->reply);
    } else if (c->held_dirty) {
        c->held_dirty = false;
        xs_web_held_json(w, &out);
    } else if (!c->hello || !xs_web_hist_batch(w, c, &out, w->busy ? WEB_BATCH_BUSY : WEB_BATCH)) {
        xs_buf_free(&out);
        return 0;
    }
    if (xs_buf_error(&out) != 0) {
        xs_buf_free(&out);
        return -1;
    }
    size_t n = xs_buf_len(&out) - LWS_PRE;
    int rc = lws_write(c->wsi, (unsigned char *)out.p + LWS_PRE, n, LWS_WRITE_TEXT);
    xs_buf_free(&out);
    if (rc < (int)n)
        return -1;
    /* Answers and the held list go at once; the next batch of events waits for the pump. */
    if (xs_buf_len(&c->reply) > 0 || c->held_dirty)
        lws_callback_on_writable(c->wsi);
    return 0;
}

static int ws_receive(struct xs_web *w, web_client *c, const char *in, size_t len)
{
    if (xs_buf_add(&c->in, in, len) < 0)
        return -1; /* past WEB_MAX_REQUEST: the browser is closed */
    if (!lws_is_final_fragment(c->wsi) || lws_remaining_packet_payload(c->wsi) > 0)
        return 0;
    xs_web_request(w, c, xs_buf_ptr(&c->in), xs_buf_len(&c->in));
    xs_buf_reset(&c->in);
    lws_callback_on_writable(c->wsi);
    return 0;
}

static int cb_ws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                 size_t len)
{
    struct xs_web *w = lws_context_user(lws_get_context(wsi));
    web_client *c = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        /* A WebSocket needs the cookie, our Host and our own page as Origin. */
        if (w->closing || !names_us(w, wsi, WSI_TOKEN_HOST, "") ||
            !names_us(w, wsi, WSI_TOKEN_ORIGIN, "http://") || !cookie_ok(w, wsi))
            return 1;
        return 0;
    case LWS_CALLBACK_ESTABLISHED:
        memset(c, 0, sizeof(*c));
        c->w = w;
        c->wsi = wsi;
        c->next = w->clients;
        c->held_dirty = true;
        xs_buf_init(&c->in, WEB_MAX_REQUEST);
        xs_buf_init(&c->reply, 0);
        w->clients = c;
        w->n_clients++;
        return 0;
    case LWS_CALLBACK_CLOSED:
        client_gone(w, c);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return ws_receive(w, c, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return ws_writable(w, c);
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"http", cb_http, sizeof(http_state), 0, 0, NULL, 0},
    {"xmppscope", cb_ws, sizeof(web_client), 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

void xs_web_wake(struct xs_web *w)
{
    w->wake_pending = true;
}

/* Every WEB_PUMP_MS: when records came since, every browser may write its next batch. */
static void on_wake(uv_timer_t *h)
{
    struct xs_web *w = h->data;
    if (w->ctx == NULL)
        return;
    w->busy = w->next_seq - w->seq_at_pump > WEB_BUSY_RECORDS;
    w->seq_at_pump = w->next_seq;
    bool behind = false;
    for (web_client *c = w->clients; c != NULL && !behind; c = c->next)
        behind = c->hello && (c->next_seq < w->next_seq || c->lost > 0);
    if (!w->wake_pending && !behind)
        return;
    w->wake_pending = false;
    lws_callback_on_writable_all_protocol(w->ctx, &protocols[1]);
}

/* ---- life ---------------------------------------------------------------------------------- */

static bool loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return strcmp(host, "localhost") == 0;
}

static void lws_log_line(int level, const char *line)
{
    if (level & LLL_ERR)
        xs_proxy_say("web: %.*s", (int)strcspn(line, "\n"), line);
}

int xs_web_new(uv_loop_t *loop, const xs_web_opts *opts, xs_web **out, xs_diag *diag)
{
    const char *addr = opts->addr != NULL ? opts->addr : XS_WEB_DEFAULT_ADDR;
    struct xs_web *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return XS_ENOMEM;
    w->loop = loop;
    w->opts = *opts;
    snprintf(w->title, sizeof(w->title), "%s", opts->title ? opts->title : "xmppscope");
    w->opts.title = w->title;
    w->max_bytes = opts->history ? opts->history : XS_WEB_DEFAULT_HISTORY;
    w->bp_timeout_s = XS_WEB_DEFAULT_HOLD_TIMEOUT;
    int rc = 0;
    char *endp;
    if (xs_proxy_split_hostport(addr, w->host, sizeof(w->host), w->port, sizeof(w->port)) < 0 ||
        strtol(w->port, &endp, 10) == 0) {
        rc = xs_diag_set(diag, XS_EINVAL, "cannot read --web '%s': expected ADDR:PORT", addr);
        goto out;
    }
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        rc = xs_diag_set(diag, XS_EIO, "cannot make a token for the web inspector (RAND_bytes)");
        goto out;
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(w->token + 2 * i, 3, "%02x", raw[i]);
    if ((rc = xs_web_hist_init(w)) < 0)
        goto out;
    lws_set_log_level(LLL_ERR, lws_log_line);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    void *loops[1] = {loop};
    info.port = atoi(w->port);
    info.iface = w->host;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_LIBUV;
    info.foreign_loops = loops;
    info.pcontext = &w->ctx_alive;
    info.user = w;
    info.gid = (gid_t)-1;
    info.uid = (uid_t)-1;
    w->ctx = w->ctx_alive = lws_create_context(&info);
    if (w->ctx == NULL) {
        rc = xs_diag_set(diag, XS_EIO, "cannot serve the web inspector on %s (in use?)", addr);
        goto out;
    }
    uv_timer_init(loop, &w->wake);
    w->wake.data = w;
    uv_timer_start(&w->wake, on_wake, WEB_PUMP_MS, WEB_PUMP_MS);
    uv_unref((uv_handle_t *)&w->wake);
    uv_timer_init(loop, &w->held_timer);
    w->held_timer.data = w;
    xs_web_start_timer(w);
    w->handles_open = true;
    bool v6 = strchr(w->host, ':') != NULL;
    snprintf(w->url, sizeof(w->url), "http://%s%s%s:%s/?token=%s", v6 ? "[" : "", w->host,
             v6 ? "]" : "", w->port, w->token);
    xs_proxy_say("web inspector: %s", w->url);
    if (!loopback(w->host))
        xs_proxy_say("WARNING: --web %s is not a loopback address: whoever reaches it and has the "
                     "token sees every session's stanzas and can send and hold stanzas",
                     addr);
    *out = w;
    return 0;
out:
    xs_web_hist_free(w);
    free(w);
    return rc;
}

int xs_web_parse_size(const char *s, size_t *out)
{
    char *end;
    if (s == NULL || s[0] < '0' || s[0] > '9')
        return XS_EINVAL;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift != 0)
        end++;
    if (*end != 0 || v > (64ull << 30) >> shift)
        return XS_EINVAL;
    v <<= shift;
    if (v < (1u << 20))
        return XS_EINVAL;
    *out = (size_t)v;
    return 0;
}

const char *xs_web_url(const xs_web *w)
{
    return w->url;
}

uint64_t xs_web_dropped(const xs_web *w)
{
    return w->lost_total;
}

void xs_web_close(xs_web *w)
{
    if (w == NULL || w->closing)
        return;
    w->closing = true;
    if (w->handles_open) {
        uv_close((uv_handle_t *)&w->wake, NULL);
        uv_close((uv_handle_t *)&w->held_timer, NULL);
        w->handles_open = false;
    }
    if (w->lost_total > 0)
        xs_proxy_say("web inspector: browsers that read too slowly lost %llu events in all",
                     (unsigned long long)w->lost_total);
    /* On a foreign loop the context closes its handles asynchronously; the loop runs them out. */
    lws_context_destroy(w->ctx);
    w->ctx = NULL;
}

void xs_web_free(xs_web *w)
{
    if (w == NULL)
        return;
    xs_web_close(w);
    /* On a foreign loop the first lws_context_destroy() closes the connections and handles,
     * whose close callbacks the loop runs; once it did, the next calls free what remains. */
    for (int i = 0; i < 3 && w->ctx_alive != NULL; i++)
        lws_context_destroy(w->ctx_alive);
    xs_web_hist_free(w);
    free(w);
}
