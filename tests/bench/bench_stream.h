/* The client's end of the benchmark's XMPP streams, shared by the proxy benchmark's load
 * generator (bench_client.c) and the load test's session driver (bench_load_run.c): the stream
 * header, element names, the synthetic server's closing count (bench_server.h) and the switch
 * to TLS after <proceed/>. Each driver keeps its own session state machine and messages.
 */
#ifndef XS_BENCH_BENCH_STREAM_H
#define XS_BENCH_BENCH_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "bench_conn.h"
#include "bench_xml.h"

#define BN_NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
/* What a client sends to start TLS on a stream that offers it. */
#define BN_STARTTLS "<starttls xmlns='" BN_NS_TLS "'/>"

/* Writes a client's stream header to `domain` into out, with `attrs` (" name='value'...", or
 * "") added to the stream element. Returns its length (truncated to cap - 1). */
size_t bn_stream_header(char *out, size_t cap, const char *domain, const char *attrs);

/* Whether the element el (n bytes, starting with '<') is named `name`. */
int bn_el_is(const char *el, size_t n, const char *name);

/* Whether the element is the synthetic server's <count xmlns='urn:xmppscope:bench'/>. */
int bn_el_is_count(const char *el, size_t n);

/* Reads a count's stanzas='N' and bytes='B'. Returns 0, or -1 when either is missing; `text`
 * (cap bytes) gets the element's start, NUL-terminated, for a message either way. */
int bn_count_read(const char *el, size_t n, long long *stanzas, long long *bytes, char *text,
                  size_t cap);

/* After <proceed/>: the bytes that follow are TLS, and a new stream starts on top of it, so the
 * framer starts over (*base, the stream offset of c->in's first byte, becomes 0) and the
 * client's handshake for `domain` begins. Returns what bn_conn_start_tls() returns. */
int bn_stream_starttls(bn_conn *c, bx *scan, uint64_t *base, struct ssl_ctx_st *ctx,
                       const char *domain);

#endif
