/* The TLS engine: one OpenSSL connection per leg, fed from memory.
 *
 * An xs_tls does no I/O. libuv owns the socket: the caller hands every ciphertext read to
 * xs_tls_feed_cipher(), reads plaintext with xs_tls_read_plain(), writes plaintext with
 * xs_tls_write_plain(), and after each of those calls drains the ciphertext waiting in
 * xs_tls_take_cipher() to the socket. Two engines back to back in memory therefore make a
 * complete handshake without sockets, which is how the tests run.
 *
 * An xs_tls_ctx holds the configuration shared by many connections: one for the side facing the
 * clients (server role, certificates forged by an xs_ca or a fixed pair) and one for the side
 * facing the real server (client role, verifying). Contexts are reference counted: every
 * connection holds a reference, so xs_tls_ctx_free() may be called while connections live on.
 *
 * Nothing here is thread-safe; everything runs on the loop thread. OpenSSL's types stay in
 * tls.c and ca.c.
 */
#ifndef XS_PROXY_TLS_H
#define XS_PROXY_TLS_H

#include <stddef.h>

#include "inspect/error.h"

#include "proxy/ca.h"

typedef struct xs_tls_ctx xs_tls_ctx;
typedef struct xs_tls xs_tls;

/* Protocol versions for the min/max options. 0 means the default: TLS 1.2 to TLS 1.3. Older
 * versions are never offered. */
enum xs_tls_version {
    XS_TLS_DEFAULT = 0,
    XS_TLS_1_2 = 12,
    XS_TLS_1_3 = 13,
};

/* Unread ciphertext accepted by xs_tls_feed_cipher() before it refuses with XS_ETOOBIG. */
#define XS_TLS_MAX_CIPHER_IN (1024u * 1024u)
/* Plaintext xs_tls_write_plain() holds while the handshake is not finished. */
#define XS_TLS_MAX_EARLY_PLAIN (256u * 1024u)
/* Client contexts remember the last session of at most this many host:port keys. */
#define XS_TLS_SESSION_CACHE_SIZE 64

/* The side facing the clients. Exactly one of `ca` and the `cert_file`/`key_file` pair is set. */
typedef struct xs_tls_server_opts {
    /* Forge a leaf certificate for each requested name: the SNI the client sent, else the name
     * set with xs_tls_set_default_name(). Borrowed: the CA must outlive the context and every
     * connection made from it. */
    xs_ca *ca;
    /* A fixed certificate chain (PEM, leaf first) and its private key (PEM). */
    const char *cert_file;
    const char *key_file;
    int min_version; /* enum xs_tls_version */
    int max_version; /* enum xs_tls_version */
} xs_tls_server_opts;

/* The side facing the real server. */
typedef struct xs_tls_client_opts {
    /* Trust the PEM certificates in this file instead of the system store. */
    const char *ca_file;
    /* Do not fail on an untrusted or mismatching certificate. The chain and the name are still
     * checked so xs_tls_info.verify says what is wrong; the caller must log that loudly. */
    int insecure;
    /* Offer ALPN "xmpp-client" (direct TLS, XEP-0368) on every connection by default. */
    int alpn;
    int min_version; /* enum xs_tls_version */
    int max_version; /* enum xs_tls_version */
} xs_tls_client_opts;

/* What a connection negotiated, for the logs. Every string belongs to the xs_tls and stays valid
 * until xs_tls_free(); a field is NULL when it does not apply or is not known yet. */
typedef struct xs_tls_info {
    const char *version; /* "TLSv1.3", once established */
    const char *cipher;  /* "TLS_AES_256_GCM_SHA384", once established */
    /* Server role: the SNI the client sent. Client role: the SNI we sent. */
    const char *sni;
    /* Server role with a CA: the name the forged certificate was made for. */
    const char *cert_name;
    const char *alpn; /* "xmpp-client" when negotiated */
    /* Client role: "ok", or why the server certificate is not trusted (with "insecure: "
     * in front when that did not stop the handshake). */
    const char *verify;
    /* Client role: the server certificate's subject, RFC 2253 form. */
    const char *peer_subject;
    int resumed; /* 1 when the session was resumed */
} xs_tls_info;

/* Creates a context for the side facing the clients: TLS 1.2 and 1.3, no renegotiation, no
 * compression, ALPN "xmpp-client" selected when the client offers it (and nothing selected,
 * without failing, otherwise). On success *out holds one reference for the caller, dropped with
 * xs_tls_ctx_free(). On failure returns XS_EINVAL (bad options) or XS_ETLS (e.g. unreadable
 * certificate) and *diag (when not NULL) says why. */
int xs_tls_server_ctx_new(const xs_tls_server_opts *o, xs_tls_ctx **out, xs_diag *diag);

/* Creates a context for the side facing the real server: verifies the server certificate against
 * the system store or o->ca_file, and the server name given to xs_tls_new(). Same ownership and
 * errors as xs_tls_server_ctx_new(). */
int xs_tls_client_ctx_new(const xs_tls_client_opts *o, xs_tls_ctx **out, xs_diag *diag);

/* Calls cb(user, line) for each secret negotiated by connections of this context, as one line
 * of the NSS key log format without the newline (CLIENT_RANDOM for TLS 1.2, the
 * *_TRAFFIC_SECRET lines for TLS 1.3), during the xs_tls call that derived it. cb == NULL turns
 * it off. `user` is borrowed. Takes effect for handshakes that start afterwards. */
void xs_tls_ctx_set_keylog(xs_tls_ctx *ctx, void (*cb)(void *user, const char *line), void *user);

/* Drops the caller's reference. The context goes away with the last connection made from it. */
void xs_tls_ctx_free(xs_tls_ctx *ctx);

/* Creates a connection in the context's role. For a client context `server_name` is the name
 * the certificate must match (for XMPP the domain of the JID, not the SRV target) and, unless it
 * is an IP literal, the SNI; it is required unless the context is insecure. For a server context
 * a non-NULL `server_name` is the default name (see xs_tls_set_default_name()). The connection
 * holds a reference on `ctx`.
 * The caller frees *out with xs_tls_free(). Returns 0, XS_EINVAL or XS_ENOMEM. */
int xs_tls_new(xs_tls_ctx *ctx, const char *server_name, xs_tls **out);

/* Frees the connection without sending anything (see xs_tls_shutdown()). NULL is fine. */
void xs_tls_free(xs_tls *t);

/* Server role: the name to forge a certificate for when the client sends no SNI (the `to` of
 * the XMPP stream). Call before the handshake reaches the ClientHello. The string is copied.
 * Returns 0, XS_EINVAL (client role, or a handshake already under way) or XS_ENOMEM. */
int xs_tls_set_default_name(xs_tls *t, const char *name);

/* Server role with a CA: the address the client connected to (an IPv4 or IPv6 literal), which
 * every certificate forged for this connection also carries as an IP address SAN, so that a
 * client that dialled the address (and so sent no SNI) can verify it. Call before the first
 * handshake step. The string is copied. Returns 0, XS_EINVAL (client role, handshake started,
 * not an IP literal) or XS_ENOMEM. */
int xs_tls_set_local_ip(xs_tls *t, const char *ip);

/* Client role: offer (on != 0) or do not offer ALPN "xmpp-client", overriding the context's
 * default. Call before the first handshake step. Returns 0 or XS_EINVAL / XS_ENOMEM. */
int xs_tls_set_alpn(xs_tls *t, int on);

/* Client role: resume the session last negotiated under `key` ("host:port") if the context
 * remembers one, and remember the sessions of this connection under `key`. Call before the first
 * handshake step. Without a key nothing is resumed or remembered. As OpenSSL wants it, a
 * connection freed after its handshake without xs_tls_shutdown() makes its session unusable, and
 * a failed handshake forgets the key's session. Returns 0, XS_EINVAL or XS_ENOMEM. */
int xs_tls_set_resume_key(xs_tls *t, const char *key);

/* Hands ciphertext read from the socket to the engine (copied). Nothing is decrypted until the
 * next xs_tls_handshake() or xs_tls_read_plain(). Returns 0, XS_ETOOBIG when more than
 * XS_TLS_MAX_CIPHER_IN bytes would be waiting unread, XS_ENOMEM, or XS_ETLS after a failure. */
int xs_tls_feed_cipher(xs_tls *t, const void *buf, size_t len);

/* Advances the handshake with the ciphertext fed so far. A client calls it once right after
 * xs_tls_new() to produce its ClientHello. Returns 0 (in progress, or established: see
 * xs_tls_established()), XS_ECLOSED after xs_tls_shutdown() abandoned the handshake, or XS_ETLS
 * with xs_tls_last_error() saying why. Drain the ciphertext afterwards either way: on failure it
 * may hold an alert for the peer. */
int xs_tls_handshake(xs_tls *t);

/* 1 once the handshake has finished, else 0. */
int xs_tls_established(const xs_tls *t);

/* Decrypts up to `cap` bytes of plaintext into `buf`, advancing the handshake first if needed.
 * Returns 0 with *got > 0 for data, 0 with *got == 0 when more ciphertext is needed, XS_ECLOSED
 * once the peer sent close_notify (and on every later call), XS_ETLS on failure. Call it until
 * *got == 0 after every feed: records are decrypted one at a time. */
int xs_tls_read_plain(xs_tls *t, void *buf, size_t cap, size_t *got);

/* Encrypts all `len` bytes or fails. Before the handshake finishes, up to XS_TLS_MAX_EARLY_PLAIN
 * bytes are held and sent, in order, as soon as it does. Returns 0, XS_ETOOBIG, XS_ENOMEM,
 * XS_ECLOSED after xs_tls_shutdown(), or XS_ETLS. */
int xs_tls_write_plain(xs_tls *t, const void *buf, size_t len);

/* Bytes of ciphertext waiting to be sent to the socket. */
size_t xs_tls_cipher_pending(const xs_tls *t);

/* Moves up to `cap` bytes of waiting ciphertext into `buf`; *got says how many. Call it after
 * every other xs_tls call until *got == 0. Returns 0. */
int xs_tls_take_cipher(xs_tls *t, void *buf, size_t cap, size_t *got);

/* The connection is idle: gives back its record buffers and its ciphertext buffers (they come
 * back when traffic does). Returns 1 when the record buffers were freed, 0 when they were in use
 * or there is no established connection. */
int xs_tls_trim(xs_tls *t);

/* Queues close_notify (take it with xs_tls_take_cipher()); later writes fail with XS_ECLOSED.
 * Does not wait for the peer's close_notify. Before the handshake has finished there is nothing
 * to protect: nothing is queued and 0 is returned. Returns 0 or XS_ETLS. */
int xs_tls_shutdown(xs_tls *t);

/* Fills *info with what the connection negotiated so far (see xs_tls_info). */
void xs_tls_get_info(const xs_tls *t, xs_tls_info *info);

/* A one-line description of the connection's last failure, from the OpenSSL error queue and the
 * certificate verification, or "" if none. Owned by `t`. */
const char *xs_tls_last_error(const xs_tls *t);

#endif
