/* The pcap observer: each session as one synthesized TCP connection. See pcap.h. */
#include "inspect/pcap.h"

#include "inspect/buf.h"
#include "inspect/error.h"

#include <arpa/inet.h>
#include <pcap/pcap.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Open sessions are found by name through a small hash table: the proxy may hold thousands. */
#define N_BUCKETS 1024u
#define IP4_HDR 20u
#define IP6_HDR 40u
#define TCP_HDR 20u
#define SNAPLEN 65535u

enum { TCP_FIN = 0x01, TCP_SYN = 0x02, TCP_PSH = 0x08, TCP_ACK = 0x10 };
enum { C2S = 0, S2C = 1 };

/* One end of a flow. */
typedef struct endpoint {
    bool known;
    bool v6;
    uint8_t ip[16]; /* 4 bytes used for IPv4 */
    uint16_t port;
} endpoint;

/* One session: its TCP connection as written. */
typedef struct flow {
    struct flow *next; /* in its bucket */
    char *session;
    uint32_t hash;
    endpoint ep[2];   /* [0] the client, [1] the server, as the events said */
    endpoint wire[2]; /* as written, once open: one family for both */
    bool open;        /* the handshake is written */
    uint32_t seq[2];  /* the next sequence number of each direction */
    uint16_t ip_id[2];
    /* Events held until the server's address is known: records of a pend_hdr and its bytes. */
    xs_buf pending;
    struct timespec last; /* the time of the last packet written */
    /* The time of the session's last event of any kind: offline, where the end of the input
     * ends every session, a session ends then (its summary note), as it did live. */
    struct timespec seen;
} flow;

/* A held event, followed by `len` bytes. */
typedef struct pend_hdr {
    struct timespec t;
    uint32_t len;
    uint8_t dir;
} pend_hdr;

struct xs_pcap {
    pcap_t *dead;
    pcap_dumper_t *dumper;
    FILE *f;
    xs_pcap_options opt;
    flow *buckets[N_BUCKETS];
    uint64_t packets;
    size_t held;           /* bytes held by all sessions (flow.pending) */
    int err;               /* the first write failure, sticky */
    struct timespec synth; /* the clock of events without a time (raw captures) */
    uint8_t pkt[SNAPLEN];
};

/* ---- addresses ---------------------------------------------------------------------------- */

int xs_pcap_parse_addr(const char *s, int *v6, uint8_t ip[16], uint16_t *port)
{
    char host[64];
    const char *colon, *start = s;
    size_t hl;

    if (s == NULL)
        return XS_EINVAL;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return XS_EINVAL;
        start = s + 1;
        hl = (size_t)(close - start);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return XS_EINVAL;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= sizeof(host))
        return XS_EINVAL;
    memcpy(host, start, hl);
    host[hl] = '\0';
    /* The port: 1 to 65535, digits only. */
    unsigned long p = 0;
    const char *d = colon + 1;
    if (*d == '\0')
        return XS_EINVAL;
    for (; *d != '\0'; d++) {
        if (*d < '0' || *d > '9' || p > 65535)
            return XS_EINVAL;
        p = p * 10 + (unsigned long)(*d - '0');
    }
    if (p == 0 || p > 65535)
        return XS_EINVAL;
    memset(ip, 0, 16);
    if (s[0] != '[' && inet_pton(AF_INET, host, ip) == 1)
        *v6 = 0;
    else if (s[0] == '[' && inet_pton(AF_INET6, host, ip) == 1)
        *v6 = 1;
    else
        return XS_EINVAL;
    *port = (uint16_t)p;
    return 0;
}

/* Reads an address of the meta into *e, an IPv4-mapped IPv6 address as the IPv4 address it is
 * (a dual-stack listener names an IPv4 client so). Leaves *e as it was when s is not one. */
static void take_addr(endpoint *e, const char *s)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    int v6;
    uint8_t ip[16];
    uint16_t port;

    if (e->known || s == NULL || xs_pcap_parse_addr(s, &v6, ip, &port) != 0)
        return;
    if (v6 && memcmp(ip, mapped, 12) == 0) {
        memmove(ip, ip + 12, 4);
        memset(ip + 4, 0, 12);
        v6 = 0;
    }
    *e = (endpoint){.known = true, .v6 = v6 != 0, .port = port};
    memcpy(e->ip, ip, 16);
}

/* An IPv4 address as IPv4-mapped IPv6. */
static void map_v6(endpoint *e)
{
    if (e->v6)
        return;
    uint8_t v4[4];
    memcpy(v4, e->ip, 4);
    memset(e->ip, 0, 10);
    e->ip[10] = e->ip[11] = 0xff;
    memcpy(e->ip + 12, v4, 4);
    e->v6 = true;
}

/* The addresses written for a flow: the known ones, placeholders from the documentation ranges
 * (RFC 5737, RFC 3849) for the others, and one family for both. */
static void choose_wire(flow *f)
{
    for (int i = 0; i < 2; i++) {
        f->wire[i] = f->ep[i];
        if (f->wire[i].known)
            continue;
        bool v6 = f->ep[!i].known && f->ep[!i].v6;
        endpoint *w = &f->wire[i];
        *w = (endpoint){.known = true, .v6 = v6};
        if (v6) {
            static const uint8_t doc6[16] = {0x20, 0x01, 0x0d, 0xb8};
            memcpy(w->ip, doc6, 16);
            w->ip[15] = (uint8_t)(i + 1);
        } else {
            w->ip[0] = 192;
            w->ip[1] = 0;
            w->ip[2] = 2;
            w->ip[3] = (uint8_t)(i + 1);
        }
        w->port = i == 0 ? (uint16_t)(40000u + f->hash % 20000u) : 5222;
    }
    if (f->wire[0].v6 != f->wire[1].v6) {
        map_v6(&f->wire[0]);
        map_v6(&f->wire[1]);
    }
}

/* ---- packets ------------------------------------------------------------------------------ */

static uint32_t sum_bytes(uint32_t sum, const uint8_t *d, size_t n)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += (uint32_t)d[i] << 8 | d[i + 1];
    if (n & 1)
        sum += (uint32_t)d[n - 1] << 8;
    return sum;
}

static uint16_t fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Writes one packet of flow f in direction dir (C2S: client to server) with the TCP flags, the
 * payload (len bytes, within the family's maximum) and the time t. The sequence number of the
 * direction moves on by the payload, and by one for SYN and FIN. */
static void put_packet(xs_pcap *p, flow *f, int dir, unsigned flags, const char *data, size_t len,
                       struct timespec t)
{
    const endpoint *src = &f->wire[dir], *dst = &f->wire[!dir];
    size_t iph = src->v6 ? IP6_HDR : IP4_HDR, tcplen = TCP_HDR + len, total = iph + tcplen;
    uint8_t *ip = p->pkt, *tcp = p->pkt + iph;
    uint32_t sum;

    if (p->err != 0)
        return;
    if (src->v6) {
        put32(ip, 0x60000000u);
        put16(ip + 4, (uint32_t)tcplen);
        ip[6] = 6; /* TCP */
        ip[7] = 64;
        memcpy(ip + 8, src->ip, 16);
        memcpy(ip + 24, dst->ip, 16);
        /* The pseudo-header: addresses, upper-layer length, next header. */
        sum = sum_bytes(0, ip + 8, 32) + (uint32_t)(tcplen >> 16) + (uint32_t)(tcplen & 0xffff) + 6;
    } else {
        ip[0] = 0x45;
        ip[1] = 0;
        put16(ip + 2, (uint32_t)total);
        put16(ip + 4, f->ip_id[dir]++);
        put16(ip + 6, 0x4000); /* don't fragment */
        ip[8] = 64;
        ip[9] = 6;
        put16(ip + 10, 0);
        memcpy(ip + 12, src->ip, 4);
        memcpy(ip + 16, dst->ip, 4);
        put16(ip + 10, fold(sum_bytes(0, ip, IP4_HDR)));
        sum = sum_bytes(0, ip + 12, 8) + 6 + (uint32_t)tcplen;
    }
    put16(tcp, src->port);
    put16(tcp + 2, dst->port);
    put32(tcp + 4, f->seq[dir]);
    put32(tcp + 8, flags & TCP_ACK ? f->seq[!dir] : 0);
    tcp[12] = (TCP_HDR / 4) << 4;
    tcp[13] = (uint8_t)flags;
    put16(tcp + 14, 65535); /* window */
    put16(tcp + 16, 0);
    put16(tcp + 18, 0);
    if (len > 0)
        memcpy(tcp + TCP_HDR, data, len);
    put16(tcp + 16, fold(sum_bytes(sum, tcp, tcplen)));

    struct pcap_pkthdr h = {.caplen = (bpf_u_int32)total, .len = (bpf_u_int32)total};
    h.ts.tv_sec = t.tv_sec;
    h.ts.tv_usec = (suseconds_t)(t.tv_nsec / 1000);
    pcap_dump((u_char *)p->dumper, &h, p->pkt);
    if (ferror(p->f))
        p->err = XS_EIO;
    p->packets++;
    f->seq[dir] += (uint32_t)len + ((flags & (TCP_SYN | TCP_FIN)) ? 1u : 0u);
    f->last = t;
}

static bool ts_before(struct timespec a, struct timespec b)
{
    return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

/* t, or the flow's last time when t is earlier: a flow's packets never go back in time. */
static struct timespec not_before(const flow *f, struct timespec t)
{
    return ts_before(t, f->last) ? f->last : t;
}

/* Bytes of one direction as segments, each within the largest IP packet. */
static void put_data(xs_pcap *p, flow *f, int dir, const char *data, size_t len, struct timespec t)
{
    size_t max = f->wire[0].v6 ? XS_PCAP_MAX_PAYLOAD_V6 : XS_PCAP_MAX_PAYLOAD_V4;
    t = not_before(f, t);
    while (len > 0) {
        size_t n = len < max ? len : max;
        put_packet(p, f, dir, TCP_PSH | TCP_ACK, data, n, t);
        data += n;
        len -= n;
    }
}

/* Forgets what a session held. */
static void drop_pending(xs_pcap *p, flow *f)
{
    p->held -= f->pending.len;
    xs_buf_free(&f->pending);
}

/* The handshake at time t, then what was held. */
static void open_flow(xs_pcap *p, flow *f, struct timespec t)
{
    choose_wire(f);
    /* Initial sequence numbers from the session's name: the same input makes the same file. */
    f->seq[C2S] = f->hash * 2654435761u;
    f->seq[S2C] = (f->hash ^ 0x5bd1e995u) * 2246822519u;
    f->open = true;
    if (f->pending.len >= sizeof(pend_hdr)) {
        pend_hdr h;
        memcpy(&h, f->pending.p, sizeof(h));
        t = h.t;
    }
    f->last = t;
    put_packet(p, f, C2S, TCP_SYN, NULL, 0, t);
    put_packet(p, f, S2C, TCP_SYN | TCP_ACK, NULL, 0, t);
    put_packet(p, f, C2S, TCP_ACK, NULL, 0, t);
    for (size_t at = 0; at + sizeof(pend_hdr) <= f->pending.len;) {
        pend_hdr h;
        memcpy(&h, f->pending.p + at, sizeof(h));
        at += sizeof(h);
        put_data(p, f, h.dir, f->pending.p + at, h.len, h.t);
        at += h.len;
    }
    drop_pending(p, f);
}

/* FIN from the client, FIN-ACK from the server, the last ACK. */
static void close_flow(xs_pcap *p, flow *f, struct timespec t)
{
    if (!f->open)
        open_flow(p, f, t);
    t = not_before(f, t);
    put_packet(p, f, C2S, TCP_FIN | TCP_ACK, NULL, 0, t);
    put_packet(p, f, S2C, TCP_FIN | TCP_ACK, NULL, 0, t);
    put_packet(p, f, C2S, TCP_ACK, NULL, 0, t);
}

/* ---- sessions ----------------------------------------------------------------------------- */

static uint32_t hash_name(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static flow *find_flow(xs_pcap *p, const char *session, bool make)
{
    uint32_t h = hash_name(session);
    flow **head = &p->buckets[h % N_BUCKETS];
    for (flow *f = *head; f != NULL; f = f->next)
        if (f->hash == h && strcmp(f->session, session) == 0)
            return f;
    if (!make)
        return NULL;
    flow *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->session = strdup(session);
    if (f->session == NULL) {
        free(f);
        return NULL;
    }
    f->hash = h;
    xs_buf_init(&f->pending, 0);
    f->next = *head;
    *head = f;
    return f;
}

static void free_flow(xs_pcap *p, flow *f)
{
    flow **at = &p->buckets[f->hash % N_BUCKETS];
    while (*at != f)
        at = &(*at)->next;
    *at = f->next;
    drop_pending(p, f);
    free(f->session);
    free(f);
}

/* The time of an event: its own, or the capture's clock for events without one. */
static struct timespec event_time(xs_pcap *p, const xs_print_meta *m)
{
    if (m != NULL && !m->untimed && (m->time.tv_sec != 0 || m->time.tv_nsec != 0))
        return m->time;
    p->synth.tv_nsec += 1000;
    if (p->synth.tv_nsec >= 1000000000L) {
        p->synth.tv_sec++;
        p->synth.tv_nsec = 0;
    }
    return p->synth;
}

/* Holds an event's bytes until the server's address is known. Returns 0 or XS_ENOMEM. */
static int hold(xs_pcap *p, flow *f, int dir, const char *data, size_t len, struct timespec t)
{
    pend_hdr h = {.t = t, .len = (uint32_t)len, .dir = (uint8_t)dir};
    size_t mark = f->pending.len;
    xs_buf_add(&f->pending, &h, sizeof(h));
    xs_buf_add(&f->pending, data, len);
    int rc = xs_buf_error(&f->pending);
    if (rc != 0)
        xs_buf_truncate(&f->pending, mark);
    p->held += f->pending.len - mark;
    return rc;
}

static int on_parsed(xs_pcap *p, flow *f, const xs_obs_event *e, struct timespec t)
{
    const xs_event *ev = e->ev;
    const char *data = ev->raw;
    size_t len = ev->len;
    const xs_print_meta *m = e->meta;
    int dir = p->opt.raw_s2c ? S2C : C2S;

    if (ev->kind == XS_EV_ERROR)
        return 0;
    if (e->masked != NULL && e->masked->xml != NULL) {
        data = e->masked->xml;
        len = e->masked->xml_len;
    }
    if (data == NULL || len == 0)
        return 0;
    if (m != NULL && m->direction != NULL)
        dir = strcmp(m->direction, "s2c") == 0 ? S2C : C2S;
    /* Held while the server's address is unknown, within the session's share and the total. */
    size_t need = len + sizeof(pend_hdr);
    if (!f->open && need <= p->opt.max_pending - f->pending.len &&
        need <= p->opt.max_held - p->held)
        return hold(p, f, dir, data, len, t);
    if (!f->open)
        open_flow(p, f, t);
    put_data(p, f, dir, data, len, t);
    return 0;
}

static int pcap_on_event(void *ctx, const xs_obs_event *e)
{
    xs_pcap *p = ctx;
    const xs_print_meta *m = e->meta;
    const char *session = m != NULL && m->session != NULL ? m->session : "";
    int rc = 0;

    if (e->kind == XS_OBS_CLOSED && (m == NULL || m->session == NULL)) {
        /* The end of an offline input: every session in it ended. */
        for (size_t i = 0; i < N_BUCKETS; i++)
            while (p->buckets[i] != NULL) {
                close_flow(p, p->buckets[i], p->buckets[i]->seen);
                free_flow(p, p->buckets[i]);
            }
        goto out;
    }
    flow *f = find_flow(p, session, e->kind == XS_OBS_PARSED);
    if (f == NULL)
        return e->kind == XS_OBS_PARSED ? XS_ENOMEM : 0;
    if (m != NULL) {
        take_addr(&f->ep[0], m->client_addr);
        take_addr(&f->ep[1], m->server_addr);
    }
    struct timespec t = event_time(p, m);
    if (ts_before(f->seen, t))
        f->seen = t;
    if (!f->open && f->ep[1].known)
        open_flow(p, f, t);
    if (e->kind == XS_OBS_PARSED)
        rc = on_parsed(p, f, e, t);
    else if (e->kind == XS_OBS_CLOSED) {
        close_flow(p, f, t);
        free_flow(p, f);
    }
out:
    if (p->err == 0 && p->opt.flush_each && pcap_dump_flush(p->dumper) != 0)
        p->err = XS_EIO;
    return p->err != 0 ? p->err : rc;
}

/* ---- the capture -------------------------------------------------------------------------- */

int xs_pcap_new(FILE *f, const xs_pcap_options *opt, xs_pcap **out)
{
    xs_pcap *p = calloc(1, sizeof(*p));
    int rc = XS_ENOMEM;

    *out = NULL;
    if (p == NULL)
        goto fail;
    if (opt != NULL)
        p->opt = *opt;
    if (p->opt.max_pending == 0)
        p->opt.max_pending = XS_PCAP_DEFAULT_MAX_PENDING;
    if (p->opt.max_held == 0)
        p->opt.max_held = XS_PCAP_DEFAULT_MAX_HELD;
    p->dead = pcap_open_dead(DLT_RAW, SNAPLEN);
    if (p->dead == NULL)
        goto fail;
    p->dumper = pcap_dump_fopen(p->dead, f);
    rc = XS_EIO;
    if (p->dumper == NULL)
        goto fail;
    p->f = f;
    if (pcap_dump_flush(p->dumper) != 0) {
        (void)xs_pcap_close(p);
        return XS_EIO;
    }
    *out = p;
    return 0;
fail:
    if (p != NULL && p->dead != NULL)
        pcap_close(p->dead);
    free(p);
    fclose(f);
    return rc;
}

int xs_pcap_close(xs_pcap *p)
{
    if (p == NULL)
        return 0;
    /* Sessions still open end at the time of their last event. */
    for (size_t i = 0; i < N_BUCKETS; i++)
        while (p->buckets[i] != NULL) {
            flow *f = p->buckets[i];
            close_flow(p, f, f->seen);
            free_flow(p, f);
        }
    int rc = p->err;
    if (pcap_dump_flush(p->dumper) != 0)
        rc = XS_EIO;
    /* pcap_dump_close() closes the FILE but says nothing of a failure: see it before. */
    if (fflush(p->f) != 0 || ferror(p->f))
        rc = XS_EIO;
    pcap_dump_close(p->dumper);
    pcap_close(p->dead);
    free(p);
    return rc;
}

uint64_t xs_pcap_packets(const xs_pcap *p)
{
    return p->packets;
}

xs_observer xs_pcap_observer(xs_pcap *p, xs_obs_policy policy)
{
    return (xs_observer){
        .on_event = pcap_on_event, .ctx = p, .policy = policy, .name = "the --pcap file"};
}
