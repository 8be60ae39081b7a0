/* The certificate authority that forges the certificates the proxy shows to clients.
 *
 * A CA lives in a directory (by default $XDG_CONFIG_HOME/xmppscope or ~/.config/xmppscope) as
 * ca.crt (PEM, mode 0644, to be installed in the clients' trust stores) and ca.key (PEM, mode
 * 0600, never readable by anyone else at any moment). The key is EC P-256.
 *
 * Forging is a pure function of the CA, the requested name and one leaf key generated for each
 * xs_ca at xs_ca_open(); a bounded cache in front of it keeps one certificate per name (and
 * address). Each leaf has CN and subjectAltName set to the name (an IP address SAN for an IP
 * literal), optionally a second IP address SAN (the address the client connected to), serverAuth,
 * a random serial and a validity from one hour ago to 365 days ahead.
 *
 * Nothing here is thread-safe. OpenSSL's headers are included only by ca.c and tls.c; the two
 * OpenSSL types below are left incomplete for everybody else.
 */
#ifndef XS_PROXY_CA_H
#define XS_PROXY_CA_H

#include <stddef.h>
#include <time.h>

#include "inspect/error.h"

struct x509_st;     /* OpenSSL's X509 */
struct evp_pkey_st; /* OpenSSL's EVP_PKEY */

typedef struct xs_ca xs_ca;

/* Most certificates kept by the forging cache; the least recently used one makes room. */
#define XS_CA_CACHE_SIZE 1024
/* Size of the text written by xs_ca_fingerprint(), NUL included: 32 bytes as "AB:" pairs. */
#define XS_CA_FINGERPRINT_LEN 96

/* Writes the default CA directory into buf: $XDG_CONFIG_HOME/xmppscope if XDG_CONFIG_HOME is an
 * absolute path, else $HOME/.config/xmppscope. Returns 0, XS_EINVAL when neither variable is
 * usable, or XS_ETOOBIG when cap is too small, and says why in `diag` (may be NULL). */
int xs_ca_default_dir(char *buf, size_t cap, xs_diag *diag);

/* Loads the CA from dir/ca.crt and dir/ca.key. When both are absent and create != 0, makes a new
 * CA there first (dir created with mode 0700 if missing, parents as by mkdir -p). As ssh's
 * StrictModes (proxy/file.h): the directory must not be a symbolic link, must belong to the
 * effective user and not be writable by group or others; the files must be regular files of
 * that user, reached without following a link and opened without blocking, and the key must not
 * be readable by group or others. On success *out is the CA, freed with xs_ca_free().
 * Returns 0, XS_EINVAL (no directory given, or the directory or a file refused: a configuration
 * error), XS_EIO (files missing, unreadable), XS_ETLS (bad PEM, key and certificate do not
 * match, not a CA) or XS_ENOMEM, and gives the cause and the fix in one line in `diag` (may be
 * NULL). */
int xs_ca_open(const char *dir, int create, xs_ca **out, xs_diag *diag);

/* 1 if xs_ca_open() created this CA, 0 if it loaded an existing one. */
int xs_ca_created(const xs_ca *ca);

void xs_ca_free(xs_ca *ca);

/* Path of the CA certificate (dir/ca.crt), owned by the CA. */
const char *xs_ca_cert_path(const xs_ca *ca);
/* Path of the CA key (dir/ca.key), owned by the CA. */
const char *xs_ca_key_path(const xs_ca *ca);

/* Writes the SHA-256 fingerprint of the CA certificate as colon-separated uppercase hex pairs.
 * Returns 0 or XS_ETOOBIG if cap < XS_CA_FINGERPRINT_LEN. */
int xs_ca_fingerprint(const xs_ca *ca, char *buf, size_t cap);

/* Writes the CA certificate's subject (RFC 2253) into buf, truncated to cap. Returns 0 or
 * XS_ETOOBIG when truncated. */
int xs_ca_subject(const xs_ca *ca, char *buf, size_t cap);

/* The CA certificate's validity period. Returns 0 or XS_ETLS. */
int xs_ca_validity(const xs_ca *ca, time_t *not_before, time_t *not_after);

/* Returns a certificate for `name` (a DNS name, a trailing dot and case ignored, or an IP
 * literal), issued by the CA for the key xs_ca_leaf_key(). The same name gives the same
 * certificate while it is cached and valid for more than a day. *cert is a new reference the
 * caller releases with X509_free(). Returns 0, XS_EINVAL (a name no certificate can carry),
 * XS_ETLS or XS_ENOMEM, and says why in `diag` (may be NULL). */
int xs_ca_forge(xs_ca *ca, const char *name, struct x509_st **cert, xs_diag *diag);

/* As xs_ca_forge(), and when `ip` is not NULL the certificate also carries that IP address (an
 * IP literal, IPv6 possibly in brackets) as a subjectAltName: the address a client connected to,
 * which a client that dialled an address rather than a name checks. Certificates are cached per
 * (name, ip) pair. Returns XS_EINVAL as well when `ip` is not an IP literal. */
int xs_ca_forge_ip(xs_ca *ca, const char *name, const char *ip, struct x509_st **cert,
                   xs_diag *diag);

/* The private key of every forged certificate. Borrowed: valid until xs_ca_free(). */
struct evp_pkey_st *xs_ca_leaf_key(const xs_ca *ca);

#endif
