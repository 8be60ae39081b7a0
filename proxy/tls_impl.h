/* What the two halves of the TLS engine share (internal to proxy/): tls_ctx.c makes the contexts
 * (server and client SSL_CTX, verification, the certificate forged with the CA for each
 * connection, the client's session cache, the key log) and tls.c drives each connection (its
 * buffers and BIO, handshake, reads and writes, shutdown, errors). */
#ifndef XS_PROXY_TLS_IMPL_H
#define XS_PROXY_TLS_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "proxy/tls.h"

/* The one ALPN protocol either role negotiates (XEP-0368). */
#define ALPN_NAME "xmpp-client"

struct session_entry {
    char *key; /* "host:port" */
    SSL_SESSION *sess;
    uint64_t used;
};

struct xs_tls_ctx {
    SSL_CTX *ssl_ctx;
    int refs;
    int server;
    int insecure;
    int alpn;               /* client: offer ALPN by default */
    xs_ca *ca;              /* server: borrowed */
    BIO_METHOD *bio_method; /* the connections' BIO (see xs_tls_buffer_bio_method()) */
    void (*keylog)(void *user, const char *line);
    void *keylog_user;
    /* Client: the last session of each host:port, least recently used dropped first. */
    struct session_entry sessions[XS_TLS_SESSION_CACHE_SIZE];
    size_t n_sessions;
    uint64_t clock;
};

struct xs_tls {
    xs_tls_ctx *ctx;
    SSL *ssl;
    int started;        /* the handshake has been stepped at least once */
    int established;    /* the handshake finished */
    int failed;         /* sticky XS_ETLS */
    int shut;           /* our close_notify is queued (or the handshake was abandoned) */
    int peer_closed;    /* the peer's close_notify arrived */
    int err_set;        /* a callback wrote err; keep it over OpenSSL's more generic text */
    char *server_name;  /* client: the name to verify */
    char *default_name; /* server: the name to forge for when there is no SNI */
    char *local_ip;     /* server: the address the client connected to, a second SAN */
    char *sni;          /* server: what the client sent */
    char *cert_name;    /* server: what the forged certificate is for */
    char *resume_key;   /* client */
    char *peer_subject; /* client */
    /* Snapshots for xs_tls_info, allocated to their size (idle connections must stay small):
     * the ALPN protocol selected (the static ALPN_NAME, or a copy for anything else) and, client
     * role, the verification result. */
    const char *alpn;
    char *alpn_copy;
    char *verify;
    /* Ciphertext: `in` from the peer not yet read by OpenSSL (from in_off to in_len), `out`
     * from OpenSSL not yet taken (from out_off to out_len). Kept between uses, given back by
     * xs_tls_trim(). */
    unsigned char *in, *out;
    size_t in_off, in_len, in_cap;
    size_t out_off, out_len, out_cap;
    unsigned char *early; /* plaintext written before the handshake finished */
    size_t early_len;
    size_t early_cap;
    char *err;      /* why it failed (xs_tls_err_buf()); NULL until then */
    int err_static; /* err is the shared fallback buffer, not ours to free */
};

#define TLS_ERR_LEN 512

/* The buffer for t's failure text, allocated on first use (tls.c). */
char *xs_tls_err_buf(xs_tls *t);

/* The method of the connections' BIO, one per context (tls.c). */
BIO_METHOD *xs_tls_buffer_bio_method(void);

/* Appends the reasons drained from OpenSSL's error queue to the string in buf; returns 1 if there
 * were any (tls.c). */
int xs_tls_append_openssl_errors(char *buf, size_t cap);

/* Drops a reference to ctx, freeing it with the last one (tls_ctx.c). */
void xs_tls_ctx_unref(xs_tls_ctx *ctx);

/* Forgets the client session cached for key, after a failure (tls_ctx.c). */
void xs_tls_forget_session(xs_tls_ctx *ctx, const char *key);

#endif
