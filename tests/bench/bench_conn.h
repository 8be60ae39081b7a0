/* One TCP connection of the benchmark's server or load generator, optionally with TLS, on a
 * libuv loop: plaintext in through one input buffer, plaintext out through one write queue.
 *
 * The owner embeds a bn_conn in its own struct (libuv style), sets `user`, and frees the struct
 * only from ops->on_closed, after the handle's close callback. Callbacks run on the loop thread;
 * inside any of them the owner may write, start TLS, finish or close the connection.
 */
#ifndef XS_BENCH_BENCH_CONN_H
#define XS_BENCH_BENCH_CONN_H

#include <stddef.h>

#include <uv.h>

#include "bench_tls.h"
#include "bench_util.h"

typedef struct bn_conn bn_conn;

typedef struct bn_conn_ops {
    /* The TCP connect finished (status < 0: it failed; the connection is being closed). */
    void (*on_connect)(bn_conn *c, int status);
    /* The TLS handshake finished. */
    void (*on_tls_up)(bn_conn *c);
    /* Plaintext arrived: `data` holds every byte received and not consumed yet (also c->in).
     * Returns how many bytes to consume from the front. */
    size_t (*on_data)(bn_conn *c, const char *data, size_t len);
    /* A write finished; bn_conn_queued() says how much is still queued. May be NULL. */
    void (*on_drain)(bn_conn *c);
    /* The peer closed (status 0) or the connection failed (status < 0, message in c->err)
     * before bn_conn_finish() was called. The owner finishes or closes the connection. */
    void (*on_eof)(bn_conn *c, int status);
    /* The handle is closed; the owner may free the struct that embeds the connection. */
    void (*on_closed)(bn_conn *c);
} bn_conn_ops;

struct bn_conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    const bn_conn_ops *ops;
    void *user;
    bn_tls *tls;
    bn_buf in;       /* plaintext received, not consumed yet */
    bn_buf out;      /* bytes for the socket, queued */
    bn_buf inflight; /* bytes for the socket, being written */
    unsigned tls_on : 1, tls_up : 1, writing : 1, want_shut : 1, shut_sent : 1, eof : 1,
        closing : 1, reading : 1;
    char err[600]; /* why the connection failed */
};

/* Prepares the connection on `loop`. Returns 0 or a libuv error. */
int bn_conn_init(uv_loop_t *loop, bn_conn *c, const bn_conn_ops *ops, void *user);
/* Connects (ops->on_connect follows) and starts reading once connected. */
int bn_conn_connect(bn_conn *c, const struct sockaddr *addr);
/* Accepts a pending connection of `server` into an initialised c and starts reading. */
int bn_conn_accept(uv_stream_t *server, bn_conn *c);
/* From now on the bytes on the wire are TLS. A client sends its ClientHello at once.
 * Returns 0 or BN_ENOMEM / BN_ETLS. */
int bn_conn_start_tls(bn_conn *c, struct ssl_ctx_st *ctx, int server, const char *name);
/* Queues plaintext (encrypted when TLS is on; only after the handshake). Returns 0 or an
 * error, after which the owner closes the connection. */
int bn_conn_write(bn_conn *c, const void *p, size_t n);
/* Bytes queued and not yet written to the socket. */
size_t bn_conn_queued(const bn_conn *c);
/* Closes politely: TLS close_notify, everything queued, our FIN, then the handle once the
 * peer's FIN came. */
void bn_conn_finish(bn_conn *c);
/* Closes the handle now. */
void bn_conn_close(bn_conn *c);

#endif
