/* TLS for the benchmark's synthetic server and load generator: a test PKI made at start, and a
 * small engine that runs one OpenSSL connection over two memory BIOs (no I/O of its own, so
 * libuv owns every socket, as in the proxy).
 *
 * This is deliberately independent of proxy/tls.c: the load generator must not share the code
 * under test, and the direct runs (client to server, no proxy) are the physical limit that the
 * proxy is compared with.
 */
#ifndef XS_BENCH_BENCH_TLS_H
#define XS_BENCH_BENCH_TLS_H

#include <stddef.h>

struct ssl_ctx_st; /* OpenSSL's SSL_CTX */
typedef struct bn_tls bn_tls;

/* Creates in `dir` (which must exist) a test PKI, all EC P-256:
 *   ca.crt, ca.key (0600)       the CA: it signs the server certificate, and it is the CA that
 *                               the proxies forge client-facing certificates with (xmppscope
 *                               --ca-dir dir, sslsplit -c/-k), so clients trust only ca.crt;
 *   server.crt, server.key      the synthetic server's certificate for `name` (SAN DNS);
 *   leaf.key                    a spare key for sslsplit's forged leaves (-K), so both proxies
 *                               sign with the same kind of key.
 * Returns 0, or -1 with a message in err. */
int bn_pki_make(const char *dir, const char *name, char *err, size_t errcap);

/* A server context with dir's server.crt and server.key. Session resumption (tickets and the
 * server cache, OpenSSL's defaults) stays on: a proxy may resume on its server leg. Buffers of
 * idle connections are released. Returns NULL with a message in err. */
struct ssl_ctx_st *bn_tls_server_ctx(const char *dir, char *err, size_t errcap);

/* A client context that trusts only `ca_file` and never resumes: every session of the load
 * generator pays for a full handshake, as a fresh client would. TLS 1.2 and 1.3 are offered
 * (sslsplit 0.5 speaks at most TLS 1.2). Returns NULL with a message in err. */
struct ssl_ctx_st *bn_tls_client_ctx(const char *ca_file, char *err, size_t errcap);

void bn_tls_ctx_free(struct ssl_ctx_st *ctx);

/* A connection. Client role: `name` is the SNI and the name the certificate must carry.
 * Returns NULL when out of memory. The caller frees it with bn_tls_free(). */
bn_tls *bn_tls_new(struct ssl_ctx_st *ctx, int server, const char *name);
void bn_tls_free(bn_tls *t);

/* Hands ciphertext read from the socket to the engine (copied). Returns 0 or BN_ENOMEM. */
int bn_tls_feed(bn_tls *t, const void *p, size_t n);
/* Advances the handshake. Returns 1 once established, 0 while in progress, BN_ETLS on failure
 * (bn_tls_error() says why). Take the ciphertext afterwards either way. */
int bn_tls_handshake(bn_tls *t);
/* Decrypts up to cap bytes. Returns 0 with *got (0 when more ciphertext is needed),
 * BN_ECLOSED after the peer's close_notify, or BN_ETLS. */
int bn_tls_read(bn_tls *t, void *buf, size_t cap, size_t *got);
/* Encrypts all n bytes (only once established). Returns 0 or BN_ETLS. */
int bn_tls_write(bn_tls *t, const void *p, size_t n);
/* Queues close_notify. */
void bn_tls_shutdown(bn_tls *t);
/* Ciphertext waiting to be sent, and taking it. */
size_t bn_tls_pending(const bn_tls *t);
size_t bn_tls_take(bn_tls *t, void *buf, size_t cap);
/* The negotiated protocol version ("TLSv1.3"), or "" before the handshake finished. */
const char *bn_tls_version(const bn_tls *t);
/* Why the last call failed (OpenSSL's error queue and the verification result). Owned by t. */
const char *bn_tls_error(const bn_tls *t);

#endif
