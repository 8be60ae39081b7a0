/* The pcap observer (inspect/pcap.h) and the opening of its file (proxy/cmd/cli.h): real parser
 * events go through the observer chain into a file, which libpcap reads back; every record's
 * IP and TCP headers, checksums, sequence and acknowledgement numbers and payload are checked
 * against an independent decoding written here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "inspect/error.h"
#include "inspect/jsonl.h"
#include "inspect/observer.h"
#include "inspect/parser.h"
#include "inspect/pcap.h"
#include "proxy/cmd/cli.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <pcap/pcap.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/tmpdir.h"

static int setup(void **state)
{
    return tmpdir_setup(state, "test_pcap");
}

static int teardown(void **state)
{
    return tmpdir_teardown(state);
}

/* ---- writing: a session fed through a real parser per direction -------------------------- */

typedef struct feeder {
    xs_pcap *pcap;
    xs_observer obs;
    xs_parser *parser[2];
    xs_print_meta meta[2]; /* [0] c2s, [1] s2c */
    int show_secrets;
    long usec;     /* the events' clock */
    size_t events; /* parser events emitted */
} feeder;

static int feed_cb(void *user, const xs_event *ev);

typedef struct cb_ctx {
    feeder *f;
    int dir;
} cb_ctx;

static cb_ctx ctxs[2];

static int feed_cb(void *user, const xs_event *ev)
{
    cb_ctx *c = user;
    feeder *f = c->f;
    xs_print_meta m = f->meta[c->dir];
    f->usec += 1000;
    f->events++;
    m.time.tv_sec = 1700000000 + f->usec / 1000000;
    m.time.tv_nsec = (f->usec % 1000000) * 1000;
    int rc = xs_obs_emit_event(&f->obs, 1, &m, ev, f->show_secrets);
    assert_int_equal(rc, 0);
    return 0;
}

static void feeder_open(feeder *f, const char *path, const char *session, const char *client,
                        const char *server)
{
    memset(f, 0, sizeof(*f));
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(xs_pcap_new(file, NULL, &f->pcap), 0);
    f->obs = xs_pcap_observer(f->pcap, XS_OBS_WARN);
    for (int i = 0; i < 2; i++) {
        ctxs[i] = (cb_ctx){f, i};
        assert_int_equal(xs_parser_new(NULL, XS_PARSER_RAW | XS_PARSER_AUTO_RESTART, feed_cb,
                                       &ctxs[i], &f->parser[i]),
                         0);
        f->meta[i] = (xs_print_meta){.session = session,
                                     .direction = i == 0 ? "c2s" : "s2c",
                                     .client_addr = client,
                                     .server_addr = server};
    }
}

static void feed(feeder *f, int dir, const char *xml)
{
    assert_int_equal(xs_parser_feed(f->parser[dir], xml, strlen(xml), NULL), 0);
}

/* Ends the session (XS_OBS_CLOSED) and the capture. */
static void feeder_close(feeder *f, bool closed_event)
{
    if (closed_event) {
        xs_print_meta m = f->meta[0];
        m.direction = NULL;
        m.time.tv_sec = 1700000100;
        xs_obs_event e = {.kind = XS_OBS_CLOSED, .meta = &m, .level = "info", .text = "closed"};
        assert_int_equal(xs_obs_emit_other(&f->obs, 1, &e), 0);
    }
    for (int i = 0; i < 2; i++)
        xs_parser_free(f->parser[i]);
    assert_int_equal(xs_pcap_close(f->pcap), 0);
}

/* ---- reading back: an independent decoding ----------------------------------------------- */

typedef struct pkt {
    bool v6;
    uint8_t src[16], dst[16];
    uint16_t sport, dport;
    uint32_t seq, ack;
    uint8_t flags;
    struct timeval ts;
    size_t len; /* payload */
    uint8_t *data;
    bool ip_sum_ok, tcp_sum_ok;
} pkt;

typedef struct capture {
    pkt *p;
    size_t n;
    int linktype;
} capture;

static uint32_t rd16(const uint8_t *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The one's complement sum of RFC 1071, which is 0xffff over data holding a right checksum. */
static uint32_t ones(uint32_t s, const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        s += i % 2 == 0 ? (uint32_t)d[i] << 8 : d[i];
    return s;
}

static bool sum_ok(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return s == 0xffff;
}

static void decode(const uint8_t *b, size_t caplen, pkt *out)
{
    memset(out, 0, sizeof(*out));
    size_t iph;
    uint32_t pseudo;
    assert_true(caplen >= 40);
    if ((b[0] >> 4) == 4) {
        assert_int_equal(b[0], 0x45);
        assert_int_equal(rd16(b + 2), caplen); /* total length */
        assert_int_equal(b[9], 6);
        iph = 20;
        memcpy(out->src, b + 12, 4);
        memcpy(out->dst, b + 16, 4);
        out->ip_sum_ok = sum_ok(ones(0, b, 20));
        pseudo = ones(0, b + 12, 8) + 6 + (uint32_t)(caplen - 20);
    } else {
        assert_int_equal(b[0] >> 4, 6);
        out->v6 = true;
        iph = 40;
        assert_int_equal(rd16(b + 4), caplen - 40); /* payload length */
        assert_int_equal(b[6], 6);
        memcpy(out->src, b + 8, 16);
        memcpy(out->dst, b + 24, 16);
        out->ip_sum_ok = true; /* IPv6 has none */
        pseudo = ones(0, b + 8, 32) + 6 + (uint32_t)(caplen - 40);
    }
    const uint8_t *t = b + iph;
    out->sport = (uint16_t)rd16(t);
    out->dport = (uint16_t)rd16(t + 2);
    out->seq = rd32(t + 4);
    out->ack = rd32(t + 8);
    assert_int_equal(t[12] >> 4, 5);
    out->flags = t[13];
    out->tcp_sum_ok = sum_ok(ones(pseudo, t, caplen - iph));
    out->len = caplen - iph - 20;
    out->data = malloc(out->len + 1);
    assert_non_null(out->data);
    memcpy(out->data, t + 20, out->len);
    out->data[out->len] = 0;
}

static void read_capture(const char *path, capture *c)
{
    char err[PCAP_ERRBUF_SIZE];
    pcap_t *pc = pcap_open_offline(path, err);
    assert_non_null(pc);
    memset(c, 0, sizeof(*c));
    c->linktype = pcap_datalink(pc);
    struct pcap_pkthdr *h;
    const u_char *data;
    while (pcap_next_ex(pc, &h, &data) == 1) {
        assert_int_equal(h->caplen, h->len);
        c->p = realloc(c->p, (c->n + 1) * sizeof(pkt));
        assert_non_null(c->p);
        decode(data, h->caplen, &c->p[c->n]);
        c->p[c->n].ts = h->ts;
        c->n++;
    }
    pcap_close(pc);
}

static void capture_free(capture *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->p[i].data);
    free(c->p);
}

enum { FIN = 0x01, SYN = 0x02, PSH = 0x08, ACK = 0x10 };

/* Checks the TCP conversation as a whole: the handshake, every checksum, both directions'
 * sequence numbers continuous from their ISN (+1 for SYN and FIN), every ACK acknowledging all
 * the other direction sent before, and FIN at the end when `fin`. Returns the plaintext of each
 * direction, concatenated, in c2s and s2c (malloc'd). */
static void check_flow(const capture *c, bool fin, char **c2s, char **s2c)
{
    assert_true(c->n >= 3);
    const pkt *syn = &c->p[0], *synack = &c->p[1], *ack = &c->p[2];
    assert_int_equal(syn->flags, SYN);
    assert_int_equal(synack->flags, SYN | ACK);
    assert_int_equal(ack->flags, ACK);
    assert_int_equal(synack->ack, syn->seq + 1);
    assert_int_equal(ack->seq, syn->seq + 1);
    assert_int_equal(ack->ack, synack->seq + 1);
    uint32_t next[2] = {syn->seq + 1, synack->seq + 1};
    size_t cap[2] = {1, 1}, len[2] = {0, 0};
    char *text[2] = {calloc(1, 1), calloc(1, 1)};
    for (size_t i = 0; i < c->n; i++) {
        const pkt *p = &c->p[i];
        assert_true(p->ip_sum_ok);
        assert_true(p->tcp_sum_ok);
        int dir = p->sport == syn->sport && memcmp(p->src, syn->src, 16) == 0 ? 0 : 1;
        assert_int_equal(p->dport, dir == 0 ? syn->dport : syn->sport);
        if (i < 3)
            continue;
        assert_int_equal(p->seq, next[dir]);
        assert_true(p->flags & ACK);
        assert_int_equal(p->ack, next[!dir]);
        if (p->len > 0) {
            assert_int_equal(p->flags, PSH | ACK);
            if (len[dir] + p->len + 1 > cap[dir]) {
                cap[dir] = (len[dir] + p->len + 1) * 2;
                text[dir] = realloc(text[dir], cap[dir]);
            }
            memcpy(text[dir] + len[dir], p->data, p->len);
            len[dir] += p->len;
            text[dir][len[dir]] = 0;
        }
        next[dir] += (uint32_t)p->len + ((p->flags & FIN) ? 1 : 0);
        /* Time never goes back within the flow. */
        assert_true(timercmp(&c->p[i - 1].ts, &p->ts, <=));
    }
    if (fin) {
        const pkt *a = &c->p[c->n - 3], *b = &c->p[c->n - 2], *z = &c->p[c->n - 1];
        assert_int_equal(a->flags, FIN | ACK);
        assert_int_equal(b->flags, FIN | ACK);
        assert_int_equal(z->flags, ACK);
        assert_int_equal(b->ack, a->seq + 1);
        assert_int_equal(z->ack, b->seq + 1);
    }
    *c2s = text[0];
    *s2c = text[1];
}

/* A raw capture's events, as `inspect` gives them: its file name, no direction, no time. */
static int raw_cb(void *user, const xs_event *ev)
{
    xs_print_meta m = {.session = "capture.xml", .untimed = 1};
    assert_int_equal(xs_obs_emit_event(user, 1, &m, ev, 0), 0);
    return 0;
}

/* ---- the cases ---------------------------------------------------------------------------- */

#define C_HDR                                                                                      \
    "<?xml version='1.0'?><stream:stream to='example.test' xmlns='jabber:client' "                 \
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
#define S_HDR                                                                                      \
    "<?xml version='1.0'?><stream:stream from='example.test' id='s1' xmlns='jabber:client' "       \
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
#define STARTTLS "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
#define FEATURES                                                                                   \
    "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>"
#define PROCEED "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
#define C_HDR2                                                                                     \
    "<stream:stream to='example.test' xmlns='jabber:client' "                                      \
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
#define S_HDR2                                                                                     \
    "<stream:stream from='example.test' id='s2' xmlns='jabber:client' "                            \
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
#define MSG "<message to='bob@example.test' type='chat'><body>hi</body></message>"
#define IQ "<iq type='result' id='r1'/>"

/* A whole session with a STARTTLS restart: one flow, the handshake, the exact bytes of each
 * direction in order, continuous sequence numbers across the restart, FIN at the end. */
static void test_pcap_session_v4_restart(void **state)
{
    struct fixture *fx = *state;
    char path[600];
    path_in(path, sizeof(path), fx->dir, "s.pcap");
    feeder f;
    feeder_open(&f, path, "1", "127.0.0.1:40123", "127.0.0.2:5222");
    feed(&f, 0, C_HDR);
    feed(&f, 1, S_HDR FEATURES);
    feed(&f, 0, STARTTLS);
    feed(&f, 1, PROCEED);
    feed(&f, 0, C_HDR2 "\n");
    feed(&f, 1, S_HDR2);
    feed(&f, 0, MSG "</stream:stream>");
    feed(&f, 1, IQ "</stream:stream>");
    feeder_close(&f, true);

    capture c;
    read_capture(path, &c);
    assert_int_equal(c.linktype, DLT_RAW);
    char *c2s, *s2c;
    check_flow(&c, true, &c2s, &s2c);
    assert_string_equal(c2s, C_HDR STARTTLS C_HDR2 "\n" MSG "</stream:stream>");
    assert_string_equal(s2c, S_HDR FEATURES PROCEED S_HDR2 IQ "</stream:stream>");
    const pkt *syn = &c.p[0];
    assert_false(syn->v6);
    assert_memory_equal(syn->src, "\x7f\x00\x00\x01", 4);
    assert_memory_equal(syn->dst, "\x7f\x00\x00\x02", 4);
    assert_int_equal(syn->sport, 40123);
    assert_int_equal(syn->dport, 5222);
    /* One segment per event (12, the keepalive included), the handshake and the end. */
    assert_int_equal(f.events, 12);
    assert_int_equal(c.n, 3 + f.events + 3);
    /* Each event carries its own time (1 ms apart). */
    assert_int_equal(c.p[3].ts.tv_sec, 1700000000);
    assert_int_equal(c.p[3].ts.tv_usec, 1000);
    assert_int_equal(c.p[4].ts.tv_usec, 2000);
    free(c2s);
    free(s2c);
    capture_free(&c);
}

/* The server's address comes after the client's first events (the proxy connects to the server
 * once the client's stream header is in): they are held, then written after the handshake with
 * their own times and the real addresses, in order. */
static void test_pcap_holds_until_server_known(void **state)
{
    struct fixture *fx = *state;
    char path[600];
    path_in(path, sizeof(path), fx->dir, "held.pcap");
    feeder f;
    feeder_open(&f, path, "7", "127.0.0.1:40001", NULL);
    f.meta[1].server_addr = NULL;
    feed(&f, 0, C_HDR);
    feed(&f, 0, STARTTLS);
    assert_int_equal(xs_pcap_packets(f.pcap), 0);
    f.meta[0].server_addr = f.meta[1].server_addr = "10.1.2.3:5269";
    feed(&f, 1, S_HDR);
    assert_int_equal(xs_pcap_packets(f.pcap), 3 + 3);
    feeder_close(&f, true);

    capture c;
    read_capture(path, &c);
    char *c2s, *s2c;
    check_flow(&c, true, &c2s, &s2c);
    assert_string_equal(c2s, C_HDR STARTTLS);
    assert_string_equal(s2c, S_HDR);
    assert_memory_equal(c.p[0].dst, "\x0a\x01\x02\x03", 4);
    assert_int_equal(c.p[0].dport, 5269);
    /* The handshake at the first event's time, then each event at its own. */
    assert_int_equal(c.p[0].ts.tv_usec, 1000);
    assert_int_equal(c.p[3].ts.tv_usec, 1000);
    assert_int_equal(c.p[4].ts.tv_usec, 2000);
    assert_int_equal(c.p[5].ts.tv_usec, 3000);
    free(c2s);
    free(s2c);
    capture_free(&c);
}

/* A session whose server never answered, ended by closing the capture (no XS_OBS_CLOSED): it is
 * written towards the placeholder 192.0.2.2:5222, and ended with FIN. */
static void test_pcap_placeholder_server(void **state)
{
    struct fixture *fx = *state;
    char path[600];
    path_in(path, sizeof(path), fx->dir, "ph.pcap");
    feeder f;
    feeder_open(&f, path, "3", "127.0.0.1:40002", NULL);
    feed(&f, 0, C_HDR);
    feeder_close(&f, false);

    capture c;
    read_capture(path, &c);
    char *c2s, *s2c;
    check_flow(&c, true, &c2s, &s2c);
    assert_string_equal(c2s, C_HDR);
    assert_string_equal(s2c, "");
    assert_memory_equal(c.p[0].src, "\x7f\x00\x00\x01", 4);
    assert_memory_equal(c.p[0].dst, "\xc0\x00\x02\x02", 4);
    assert_int_equal(c.p[0].dport, 5222);
    assert_int_equal(c.n, 3 + 1 + 3);
    free(c2s);
    free(s2c);
    capture_free(&c);
}

/* What is held while servers are unknown is bounded per session and for all sessions together:
 * past either cap, the session is written at once with the placeholder server. */
static void test_pcap_held_bytes_are_capped(void **state)
{
    struct fixture *fx = *state;
    char path[600];
    path_in(path, sizeof(path), fx->dir, "cap.pcap");
    feeder f;
    feeder_open(&f, path, "1", "127.0.0.1:40030", NULL);
    assert_int_equal(xs_pcap_close(f.pcap), 0);
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    /* One session may hold a stream header, not two; all sessions three. */
    size_t one = strlen(C_HDR) + 64;
    xs_pcap_options opt = {.max_pending = one, .max_held = 3 * one};
    assert_int_equal(xs_pcap_new(file, &opt, &f.pcap), 0);
    f.obs = xs_pcap_observer(f.pcap, XS_OBS_WARN);
    static const char *const sessions[] = {"1", "2", "3", "4"};
    static const char *const clients[] = {"127.0.0.1:40030", "127.0.0.1:40031", "127.0.0.1:40032",
                                          "127.0.0.1:40033"};
    for (size_t i = 0; i < 4; i++) {
        for (int d = 0; d < 2; d++) {
            xs_parser_free(f.parser[d]);
            assert_int_equal(xs_parser_new(NULL, XS_PARSER_RAW | XS_PARSER_AUTO_RESTART, feed_cb,
                                           &ctxs[d], &f.parser[d]),
                             0);
            f.meta[d].session = sessions[i];
            f.meta[d].client_addr = clients[i];
        }
        feed(&f, 0, C_HDR);
        /* Sessions 1 to 3 fit; the fourth passes the total and is written at once. */
        assert_int_equal(xs_pcap_packets(f.pcap), i < 3 ? 0 : 3 + 1);
    }
    /* Session 1's second event passes its own share: written at once, with the first. */
    f.meta[0].session = "1";
    f.meta[0].client_addr = clients[0];
    xs_parser_free(f.parser[0]);
    assert_int_equal(xs_parser_new(NULL, XS_PARSER_RAW | XS_PARSER_AUTO_RESTART, feed_cb, &ctxs[0],
                                   &f.parser[0]),
                     0);
    feed(&f, 0, C_HDR);
    assert_int_equal(xs_pcap_packets(f.pcap), 2 * (3 + 1) + 1);
    feeder_close(&f, false);

    capture c;
    read_capture(path, &c);
    size_t to_placeholder = 0;
    for (size_t i = 0; i < c.n; i++)
        to_placeholder += c.p[i].flags == SYN && memcmp(c.p[i].dst, "\xc0\x00\x02\x02", 4) == 0 &&
                          c.p[i].dport == 5222;
    /* Every session went to the placeholder server; the data segments of each: 2, 1, 1, 1. */
    assert_int_equal(c.n, 4 * 6 + 5);
    assert_int_equal(to_placeholder, 4);
    capture_free(&c);
}

/* IPv6 on both sides; and an IPv4 client of an IPv6 server written as IPv4-mapped IPv6; an
 * IPv4-mapped client of an IPv4 server as plain IPv4. */
static void test_pcap_ipv6(void **state)
{
    struct fixture *fx = *state;
    static const struct {
        const char *client, *server;
        bool v6;
        const char *src; /* 16 bytes, or 4 for IPv4 */
    } cases[] = {
        {"[::1]:40003", "[2001:db8::5]:5222", true, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1"},
        {"127.0.0.1:40004", "[::1]:5222", true, "\0\0\0\0\0\0\0\0\0\0\xff\xff\x7f\0\0\1"},
        {"[::ffff:127.0.0.1]:40005", "127.0.0.2:5222", false, "\x7f\0\0\1"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char path[600];
        path_in(path, sizeof(path), fx->dir, "v6.pcap");
        feeder f;
        feeder_open(&f, path, "9", cases[k].client, cases[k].server);
        feed(&f, 0, C_HDR);
        feed(&f, 1, S_HDR);
        feed(&f, 0, MSG);
        feeder_close(&f, true);
        capture c;
        read_capture(path, &c);
        char *c2s, *s2c;
        check_flow(&c, true, &c2s, &s2c);
        assert_string_equal(c2s, C_HDR MSG);
        assert_string_equal(s2c, S_HDR);
        for (size_t i = 0; i < c.n; i++)
            assert_int_equal(c.p[i].v6, cases[k].v6);
        assert_memory_equal(c.p[0].src, cases[k].src, cases[k].v6 ? 16 : 4);
        free(c2s);
        free(s2c);
        capture_free(&c);
    }
}

/* A stanza larger than one IP packet is split into segments within 65535 bytes of IP packet,
 * IPv4 and IPv6, which put together give the stanza back. */
static void test_pcap_splits_large_stanza(void **state)
{
    struct fixture *fx = *state;
    size_t body = 200000;
    char *big = malloc(body + 100);
    assert_non_null(big);
    int n = snprintf(big, 100, "<message type='chat'><body>");
    memset(big + n, 'x', body);
    strcpy(big + n + body, "</body></message>");
    for (int v6 = 0; v6 < 2; v6++) {
        char path[600];
        path_in(path, sizeof(path), fx->dir, "big.pcap");
        feeder f;
        feeder_open(&f, path, "2", v6 ? "[::1]:40006" : "127.0.0.1:40006",
                    v6 ? "[::1]:5222" : "127.0.0.1:5222");
        f.parser[0] = (xs_parser_free(f.parser[0]), NULL);
        xs_parser_limits lim = {.max_stanza = 1u << 20};
        assert_int_equal(xs_parser_new(&lim, XS_PARSER_RAW | XS_PARSER_AUTO_RESTART, feed_cb,
                                       &ctxs[0], &f.parser[0]),
                         0);
        feed(&f, 0, C_HDR);
        feed(&f, 0, big);
        feeder_close(&f, true);
        capture c;
        read_capture(path, &c);
        char *c2s, *s2c;
        check_flow(&c, true, &c2s, &s2c);
        assert_int_equal(strlen(c2s), strlen(C_HDR) + strlen(big));
        assert_string_equal(c2s + strlen(C_HDR), big);
        size_t max = v6 ? XS_PCAP_MAX_PAYLOAD_V6 : XS_PCAP_MAX_PAYLOAD_V4, segs = 0;
        for (size_t i = 0; i < c.n; i++) {
            assert_true(c.p[i].len <= max);
            assert_true(c.p[i].len + (v6 ? 60 : 40) <= 65535);
            segs += c.p[i].len == max;
        }
        assert_int_equal(segs, strlen(big) / max);
        free(c2s);
        free(s2c);
        capture_free(&c);
    }
    free(big);
}

/* A SASL PLAIN password: masked as in the log by default, the exact bytes with show_secrets. */
static void test_pcap_masks_secrets(void **state)
{
    struct fixture *fx = *state;
    /* "\0alice\0s3cret" in base64. */
    static const char auth[] = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                               "mechanism='PLAIN'>AGFsaWNlAHMzY3JldA==</auth>";
    for (int show = 0; show < 2; show++) {
        char path[600];
        path_in(path, sizeof(path), fx->dir, "sasl.pcap");
        feeder f;
        feeder_open(&f, path, "4", "127.0.0.1:40007", "127.0.0.1:5222");
        f.show_secrets = show;
        feed(&f, 0, C_HDR);
        feed(&f, 0, auth);
        feeder_close(&f, true);
        capture c;
        read_capture(path, &c);
        char *c2s, *s2c;
        check_flow(&c, true, &c2s, &s2c);
        if (show) {
            assert_string_equal(c2s, C_HDR "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                                           "mechanism='PLAIN'>AGFsaWNlAHMzY3JldA==</auth>");
        } else {
            assert_null(strstr(c2s, "AGFsaWNlAHMzY3JldA=="));
            assert_non_null(strstr(c2s, "<auth "));
            assert_non_null(strstr(c2s, "***"));
        }
        free(c2s);
        free(s2c);
        capture_free(&c);
    }
}

/* Two sessions interleaved: two flows, each consistent on its own; the end of an offline input
 * (XS_OBS_CLOSED without a session) ends both. */
static void test_pcap_two_sessions(void **state)
{
    struct fixture *fx = *state;
    char path[600];
    path_in(path, sizeof(path), fx->dir, "two.pcap");
    feeder f;
    feeder_open(&f, path, "1", "127.0.0.1:40010", "127.0.0.1:5222");
    xs_parser *other[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(xs_parser_new(NULL, XS_PARSER_RAW | XS_PARSER_AUTO_RESTART, feed_cb,
                                       &ctxs[i], &other[i]),
                         0);
    feed(&f, 0, C_HDR);
    for (int i = 0; i < 2; i++) {
        f.meta[i].session = "2";
        f.meta[i].client_addr = "127.0.0.1:40011";
    }
    assert_int_equal(xs_parser_feed(other[0], C_HDR, strlen(C_HDR), NULL), 0);
    assert_int_equal(xs_parser_feed(other[1], S_HDR, strlen(S_HDR), NULL), 0);
    for (int i = 0; i < 2; i++) {
        f.meta[i].session = "1";
        f.meta[i].client_addr = "127.0.0.1:40010";
    }
    feed(&f, 1, S_HDR);
    feed(&f, 0, MSG);
    xs_print_meta endm = {.untimed = 1};
    xs_obs_event end = {.kind = XS_OBS_CLOSED, .meta = &endm};
    assert_int_equal(xs_obs_emit_other(&f.obs, 1, &end), 0);
    for (int i = 0; i < 2; i++)
        xs_parser_free(other[i]);
    feeder_close(&f, false);

    capture all;
    read_capture(path, &all);
    for (uint16_t port = 40010; port <= 40011; port++) {
        capture c = {0};
        c.p = calloc(all.n, sizeof(pkt));
        for (size_t i = 0; i < all.n; i++)
            if (all.p[i].sport == port || all.p[i].dport == port)
                c.p[c.n++] = all.p[i];
        char *c2s, *s2c;
        check_flow(&c, true, &c2s, &s2c);
        assert_string_equal(c2s, port == 40010 ? C_HDR MSG : C_HDR);
        assert_string_equal(s2c, S_HDR);
        free(c2s);
        free(s2c);
        free(c.p);
    }
    capture_free(&all);
}

/* The log names the addresses on stream-open lines ("client", "server"; the server's once known),
 * and its reader gives them back in the meta: what `inspect --pcap` builds on. */
typedef struct seen_addrs {
    int n;
    char client[3][64], server[3][64];
} seen_addrs;

static int keep_addrs(void *user, const xs_print_meta *meta, const xs_event *ev)
{
    seen_addrs *s = user;
    assert_true(s->n < 3);
    snprintf(s->client[s->n], 64, "%s", meta->client_addr ? meta->client_addr : "-");
    snprintf(s->server[s->n], 64, "%s", meta->server_addr ? meta->server_addr : "-");
    s->n++;
    (void)ev;
    return 0;
}

static int print_cb(void *user, const xs_event *ev)
{
    void **a = user;
    return xs_printer_event(a[0], a[1], ev) == 0 ? 0 : -1;
}

static void test_pcap_log_carries_addresses(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    xs_print_options o = {.format = XS_FORMAT_JSON};
    xs_printer *pr = NULL;
    assert_int_equal(xs_printer_new(out, &o, &pr), 0);
    xs_print_meta m = {.session = "1", .direction = "c2s", .client_addr = "[::1]:40040"};
    void *args[2] = {pr, &m};
    xs_parser *parser = NULL;
    assert_int_equal(
        xs_parser_new(NULL, XS_PARSER_RAW | XS_PARSER_AUTO_RESTART, print_cb, args, &parser), 0);
    assert_int_equal(xs_parser_feed(parser, C_HDR, strlen(C_HDR), NULL), 0);
    m.server_addr = "127.0.0.1:5222";
    assert_int_equal(xs_parser_feed(parser, MSG C_HDR2, strlen(MSG C_HDR2), NULL), 0);
    xs_parser_free(parser);
    xs_printer_free(pr);
    fclose(out);

    /* Only stream-open lines carry them; the first before the server is known. */
    char *e1 = strchr(text, '\n'), *e2 = strchr(e1 + 1, '\n');
    char *l1 = strndup(text, (size_t)(e1 - text)), *l2 = strndup(e1 + 1, (size_t)(e2 - e1 - 1));
    char *l3 = strdup(e2 + 1);
    assert_non_null(strstr(l1, "\"client\":\"[::1]:40040\""));
    assert_null(strstr(l1, "\"server\""));
    assert_null(strstr(l2, "\"client\""));
    assert_true(strstr(l3, "\"client\":\"[::1]:40040\",\"server\":\"127.0.0.1:5222\"") != NULL);
    assert_non_null(strstr(l2, "\"event\":\"stanza\""));
    free(l1);
    free(l2);
    free(l3);

    seen_addrs seen = {0};
    xs_jsonl_reader *r = NULL;
    assert_int_equal(xs_jsonl_reader_new(NULL, keep_addrs, NULL, &seen, &r), 0);
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        char err[256];
        assert_int_equal(xs_jsonl_reader_line(r, line, (size_t)(nl - line), err, sizeof(err)), 0);
        line = nl + 1;
    }
    xs_jsonl_reader_free(r);
    assert_int_equal(seen.n, 3);
    assert_string_equal(seen.client[0], "[::1]:40040");
    assert_string_equal(seen.server[0], "-");
    assert_string_equal(seen.client[1], "-");
    assert_string_equal(seen.client[2], "[::1]:40040");
    assert_string_equal(seen.server[2], "127.0.0.1:5222");
    free(text);
}

static void test_pcap_parse_addr(void **state)
{
    (void)state;
    int v6;
    uint8_t ip[16];
    uint16_t port;
    assert_int_equal(xs_pcap_parse_addr("127.0.0.1:5222", &v6, ip, &port), 0);
    assert_int_equal(v6, 0);
    assert_int_equal(port, 5222);
    assert_int_equal(xs_pcap_parse_addr("[fe80::1]:1", &v6, ip, &port), 0);
    assert_int_equal(v6, 1);
    assert_int_equal(port, 1);
    static const char *bad[] = {"",
                                "?",
                                "127.0.0.1",
                                "127.0.0.1:",
                                "1.2.3.4:0",
                                "1.2.3.4:65536",
                                "1.2.3.4:99999999999",
                                "::1:5222",
                                "[::1]5222",
                                "[::1]:",
                                "[1.2.3.4]:5",
                                "host:5222",
                                "1.2.3.4:+5",
                                "[::1:5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(xs_pcap_parse_addr(bad[i], &v6, ip, &port), XS_EINVAL);
    assert_int_equal(xs_pcap_parse_addr(NULL, &v6, ip, &port), XS_EINVAL);
}

/* The file: created with mode 0600; an existing file of ours replaced (emptied); a symbolic
 * link and a FIFO refused (exit status 2) and left as they were. */
static void test_pcap_file_checks(void **state)
{
    struct fixture *fx = *state;
    char path[600], target[600], link_path[600], fifo[600];
    struct stat st;
    xs_pcap *p = NULL;

    path_in(path, sizeof(path), fx->dir, "new.pcap");
    assert_int_equal(xs_cli_open_pcap("proxy", path, 0, 1, &p), 0);
    assert_non_null(p);
    assert_int_equal(xs_cli_close_pcap("proxy", path, p), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, 24); /* the pcap file header alone */

    /* An existing file of ours with other content is replaced. */
    FILE *old = fopen(path, "ab");
    assert_non_null(old);
    fputs("old content that is not a pcap file at all", old);
    fclose(old);
    assert_int_equal(xs_cli_open_pcap("proxy", path, 0, 1, &p), 0);
    assert_int_equal(xs_cli_close_pcap("proxy", path, p), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 24);

    path_in(target, sizeof(target), fx->dir, "target");
    path_in(link_path, sizeof(link_path), fx->dir, "link.pcap");
    FILE *t = fopen(target, "wb");
    assert_non_null(t);
    fputs("keep me", t);
    fclose(t);
    assert_int_equal(symlink(target, link_path), 0);
    p = (xs_pcap *)1;
    assert_int_equal(xs_cli_open_pcap("proxy", link_path, 0, 1, &p), 2);
    assert_null(p);
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_size, 7);

    path_in(fifo, sizeof(fifo), fx->dir, "fifo.pcap");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(xs_cli_open_pcap("inspect", fifo, 0, 0, &p), 2);

    /* Writable by others: refused, and not emptied. */
    assert_int_equal(chmod(target, 0666), 0);
    assert_int_equal(xs_cli_open_pcap("proxy", target, 0, 1, &p), 2);
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_size, 7);
}

/* A raw capture read offline: no session address, no direction, no time. Its bytes go the way
 * raw_s2c says, between the placeholders, at increasing made-up times. */
static void test_pcap_raw_capture(void **state)
{
    struct fixture *fx = *state;
    for (int s2c = 0; s2c < 2; s2c++) {
        char path[600];
        path_in(path, sizeof(path), fx->dir, "raw.pcap");
        FILE *file = fopen(path, "wb");
        assert_non_null(file);
        xs_pcap *p = NULL;
        xs_pcap_options opt = {.raw_s2c = s2c};
        assert_int_equal(xs_pcap_new(file, &opt, &p), 0);
        xs_observer obs = xs_pcap_observer(p, XS_OBS_WARN);
        xs_parser *parser = NULL;
        assert_int_equal(
            xs_parser_new(NULL, XS_PARSER_RAW | XS_PARSER_AUTO_RESTART, raw_cb, &obs, &parser), 0);
        static const char in[] = C_HDR STARTTLS C_HDR2 MSG;
        assert_int_equal(xs_parser_feed(parser, in, strlen(in), NULL), 0);
        xs_print_meta endm = {.untimed = 1};
        xs_obs_event end = {.kind = XS_OBS_CLOSED, .meta = &endm};
        assert_int_equal(xs_obs_emit_other(&obs, 1, &end), 0);
        xs_parser_free(parser);
        assert_int_equal(xs_pcap_close(p), 0);

        capture c;
        read_capture(path, &c);
        char *c2s, *s2c_text;
        check_flow(&c, true, &c2s, &s2c_text);
        assert_string_equal(s2c ? s2c_text : c2s, in);
        assert_string_equal(s2c ? c2s : s2c_text, "");
        assert_memory_equal(c.p[0].src, "\xc0\x00\x02\x01", 4);
        assert_memory_equal(c.p[0].dst, "\xc0\x00\x02\x02", 4);
        for (size_t i = 4; i < 3 + 4; i++)
            assert_true(timercmp(&c.p[i - 1].ts, &c.p[i].ts, <));
        free(c2s);
        free(s2c_text);
        capture_free(&c);
    }
}

/* With flush_each (the proxy), the file holds each event's packets as soon as the event was told:
 * a reader following the file, or a crash, loses nothing. */
static void test_pcap_flush_each(void **state)
{
    struct fixture *fx = *state;
    char path[600];
    path_in(path, sizeof(path), fx->dir, "live.pcap");
    feeder f;
    feeder_open(&f, path, "5", "127.0.0.1:40020", "127.0.0.1:5222");
    assert_int_equal(xs_pcap_close(f.pcap), 0);
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    xs_pcap_options opt = {.flush_each = 1};
    assert_int_equal(xs_pcap_new(file, &opt, &f.pcap), 0);
    f.obs = xs_pcap_observer(f.pcap, XS_OBS_WARN);
    feed(&f, 0, C_HDR);
    capture c;
    read_capture(path, &c);
    assert_int_equal(c.n, 3 + 1);
    assert_string_equal((const char *)c.p[3].data, C_HDR);
    capture_free(&c);
    feed(&f, 1, S_HDR);
    read_capture(path, &c);
    assert_int_equal(c.n, 3 + 2);
    capture_free(&c);
    feeder_close(&f, true);
}

/* A file that cannot be written (a full disk) makes the observer fail, so that the proxy says so
 * (XS_OBS_WARN), and the close reports it. */
static void test_pcap_write_failure(void **state)
{
    (void)state;
    FILE *full = fopen("/dev/full", "wb");
    if (full == NULL)
        skip();
    xs_pcap *p = NULL;
    /* The header is flushed at once: /dev/full refuses it. */
    assert_int_equal(xs_pcap_new(full, NULL, &p), XS_EIO);
    assert_null(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pcap_session_v4_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pcap_holds_until_server_known, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pcap_placeholder_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pcap_held_bytes_are_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pcap_ipv6, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pcap_splits_large_stanza, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pcap_masks_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pcap_two_sessions, setup, teardown),
        cmocka_unit_test(test_pcap_parse_addr),
        cmocka_unit_test(test_pcap_log_carries_addresses),
        cmocka_unit_test_setup_teardown(test_pcap_file_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pcap_raw_capture, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pcap_flush_each, setup, teardown),
        cmocka_unit_test(test_pcap_write_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
