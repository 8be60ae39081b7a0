/* The certificate authority: loading or creating the CA files and forging leaf certificates.
 *
 * The files are written so that a crash or a concurrent `xmppscope ca init` never leaves a key
 * readable by others or a certificate that does not match its key: each file is written in full
 * to a temporary name created with O_EXCL (the key with mode 0600 from the first byte), then
 * hard-linked to its final name, which fails rather than replacing a file someone else created.
 */
#include "proxy/ca.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "inspect/alloc.h"
#include "inspect/error.h"
#include "proxy/file.h"

#define CA_DAYS (10 * 365 + 3)
#define LEAF_DAYS 365
#define BACKDATE_SECONDS (60 * 60)
/* A cached certificate closer than this to its end is forged again. */
#define RENEW_MARGIN_SECONDS (24 * 60 * 60)
/* ca.crt and ca.key are a few hundred bytes; anything much bigger is not ours. */
#define MAX_PEM_FILE (256 * 1024)
#define MAX_NAME 253

struct cache_entry {
    char *name; /* the normalized name, then " " and the extra address if there is one */
    X509 *cert;
    uint64_t used; /* value of the CA's clock at the last lookup */
};

struct xs_ca {
    char *dir;
    char *cert_path;
    char *key_path;
    X509 *cert;
    EVP_PKEY *key;
    EVP_PKEY *leaf_key; /* shared by every certificate this instance forges */
    int created;
    char fingerprint[XS_CA_FINGERPRINT_LEN];
    struct cache_entry *cache; /* XS_CA_CACHE_SIZE slots, the first cache_len in use */
    size_t cache_len;
    uint64_t clock;
};

/* A name as a certificate carries it. */
struct leaf_name {
    char text[MAX_NAME + 1]; /* lowercase DNS name or canonical IP text */
    int is_ip;
    unsigned char ip[16];
    int ip_len;
};

/* Appends ": reason; reason" drained from OpenSSL's error queue to diag's text (when there is a
 * diag; the queue is drained either way), oldest first (the oldest is usually the cause, the
 * later ones the callers that gave up). Returns `err`. */
static int append_openssl_errors(xs_diag *diag, int err)
{
    char scratch[1];
    char *text = diag != NULL ? diag->text : scratch;
    size_t cap = diag != NULL ? sizeof(diag->text) : sizeof(scratch);
    size_t len = diag != NULL ? strlen(text) : 0;
    const char *sep = ": ";
    unsigned long e;
    const char *data = NULL;
    int flags = 0;

    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        const char *reason = ERR_reason_error_string(e);
        char code[32];
        if (reason == NULL) {
            snprintf(code, sizeof(code), "error %d", ERR_GET_REASON(e));
            reason = code;
        }
        if (len + 1 < cap) {
            int more = (flags & ERR_TXT_STRING) && data != NULL && data[0] != '\0';
            snprintf(text + len, cap - len, "%s%s%s%s", sep, reason, more ? " " : "",
                     more ? data : "");
            len = strlen(text);
        }
        sep = "; ";
    }
    return err;
}

int xs_ca_default_dir(char *buf, size_t cap, xs_diag *diag)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    int n;

    /* The XDG base directory specification says relative paths are to be ignored. */
    if (xdg != NULL && xdg[0] == '/') {
        n = snprintf(buf, cap, "%s/xmppscope", xdg);
    } else if (home != NULL && home[0] == '/') {
        n = snprintf(buf, cap, "%s/.config/xmppscope", home);
    } else {
        return xs_diag_set(diag, XS_EINVAL,
                           "cannot choose a CA directory: neither XDG_CONFIG_HOME nor HOME is an "
                           "absolute path; pass --ca-dir DIR");
    }
    if (n < 0 || (size_t)n >= cap) {
        return xs_diag_set(diag, XS_ETOOBIG,
                           "the default CA directory path is too long; pass --ca-dir DIR");
    }
    return 0;
}

/* Returns 1 if path exists, 0 if it does not, a negative code (with the error set) if it cannot
 * be told. A symbolic link exists, even a dangling one: it is refused when read, never replaced
 * or followed. */
static int file_exists(const char *path, xs_diag *diag)
{
    struct stat st;
    if (lstat(path, &st) == 0)
        return 1;
    if (errno == ENOENT || errno == ENOTDIR)
        return 0;
    return xs_diag_set(diag, XS_EIO,
                       "cannot access %s: %s; fix its permissions or pass --ca-dir DIR", path,
                       strerror(errno));
}

/* mkdir -p, every directory it creates with mode 0700. */
static int make_dir(const char *dir, xs_diag *diag)
{
    struct stat st;
    char *path = NULL;
    int rc = 0;

    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        return xs_diag_set(diag, XS_EIO,
                           "cannot create CA directory %s: it exists and is not a directory; pass "
                           "--ca-dir DIR",
                           dir);
    }
    path = xs_strdup(dir);
    if (path == NULL) {
        return xs_diag_set(diag, XS_ENOMEM, "out of memory");
    }
    for (char *s = path + 1; *s != '\0'; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            rc = xs_diag_set(
                diag, XS_EIO,
                "cannot create CA directory %s: cannot create %s: %s; pass --ca-dir DIR", dir, path,
                strerror(errno));
            goto out;
        }
        *s = '/';
    }
    if (mkdir(dir, 0700) != 0) {
        if (errno != EEXIST) {
            rc = xs_diag_set(diag, XS_EIO, "cannot create CA directory %s: %s; pass --ca-dir DIR",
                             dir, strerror(errno));
        }
        goto out;
    }
    /* The umask may have taken bits away; the owner needs all three. */
    if (chmod(dir, 0700) != 0) {
        rc = xs_diag_set(diag, XS_EIO, "cannot set mode 0700 on CA directory %s: %s", dir,
                         strerror(errno));
    }
out:
    xs_free(path);
    return rc;
}

/* Reads a whole small file, opened by xs_file_open_read(): no link followed, no waiting on a
 * FIFO, a regular file of ours that others cannot change, and for a secret one cannot read. The
 * caller frees *data (after OPENSSL_cleanse() for a secret). */
static int read_file(const char *path, int secret, char **data, size_t *len, xs_diag *diag)
{
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    int fd;
    int rc = 0;

    *data = NULL;
    *len = 0;
    rc = xs_file_open_read(path, secret ? "the CA key" : "the CA certificate", secret, &fd, diag);
    if (rc != 0)
        return rc;
    if (fstat(fd, &st) != 0) {
        rc = xs_diag_set(diag, XS_EIO, "cannot examine %s: %s", path, strerror(errno));
        goto out;
    }
    if (st.st_size > MAX_PEM_FILE) {
        rc = xs_diag_set(diag, XS_EIO, "%s is too large to be a PEM certificate or key", path);
        goto out;
    }
    buf = xs_malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        rc = xs_diag_set(diag, XS_ENOMEM, "out of memory");
        goto out;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = xs_diag_set(diag, XS_EIO, "cannot read %s: %s", path,
                             n < 0 ? strerror(errno) : "file shrank");
            goto out;
        }
        got += (size_t)n;
    }
    *data = buf;
    *len = got;
    buf = NULL;
out:
    if (buf != NULL) {
        OPENSSL_cleanse(buf, (size_t)st.st_size);
        xs_free(buf);
    }
    close(fd);
    return rc;
}

/* Creates `path` with O_EXCL and `mode` and writes `len` bytes to it durably. The mode applies
 * from the creation of the file, so a key is never readable by others, even for a moment. */
static int write_new_file(const char *path, const void *data, size_t len, mode_t mode,
                          xs_diag *diag)
{
    const char *p = data;
    int fd;
    int rc = 0;

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        return xs_diag_set(diag, XS_EIO, "cannot create %s: %s; pass --ca-dir DIR", path,
                           strerror(errno));
    }
    /* The umask may only have removed bits; make the mode exact. */
    if (fchmod(fd, mode) != 0) {
        rc = xs_diag_set(diag, XS_EIO, "cannot set the mode of %s: %s", path, strerror(errno));
        goto out;
    }
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = xs_diag_set(diag, XS_EIO, "cannot write %s: %s", path, strerror(errno));
            goto out;
        }
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) != 0) {
        rc = xs_diag_set(diag, XS_EIO, "cannot write %s: %s", path, strerror(errno));
    }
out:
    if (close(fd) != 0 && rc == 0) {
        rc = xs_diag_set(diag, XS_EIO, "cannot write %s: %s", path, strerror(errno));
    }
    return rc;
}

static int set_random_serial(X509 *x)
{
    unsigned char bytes[16];
    BIGNUM *bn = NULL;
    int ok = 0;

    if (RAND_bytes(bytes, sizeof(bytes)) != 1)
        return 0;
    bytes[0] &= 0x7f; /* positive */
    bytes[0] |= 0x40; /* and never short or zero */
    bn = BN_bin2bn(bytes, sizeof(bytes), NULL);
    if (bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL)
        ok = 1;
    BN_free(bn);
    return ok;
}

/* Adds an extension written in openssl.cnf syntax; `issuer` is needed by the key identifiers. */
static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_nconf_nid(NULL, &v3, nid, value);
    if (ext == NULL)
        return 0;
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

static int add_name_entry(X509_NAME *n, const char *field, const char *value)
{
    return X509_NAME_add_entry_by_txt(n, field, MBSTRING_UTF8, (const unsigned char *)value, -1, -1,
                                      0);
}

/* The self-signed CA certificate for `key`. */
static X509 *make_ca_cert(EVP_PKEY *key)
{
    X509 *x = X509_new();
    unsigned char id[8];
    char ou[32];
    X509_NAME *n;

    /* Every CA gets its own subject so that trust stores holding several (one per machine,
     * say) never confuse them. */
    if (x == NULL || RAND_bytes(id, sizeof(id)) != 1)
        goto fail;
    snprintf(ou, sizeof(ou), "%02x%02x%02x%02x%02x%02x%02x%02x", id[0], id[1], id[2], id[3], id[4],
             id[5], id[6], id[7]);
    n = X509_get_subject_name(x);
    if (!X509_set_version(x, X509_VERSION_3) || !set_random_serial(x) ||
        !add_name_entry(n, "O", "xmppscope") || !add_name_entry(n, "OU", ou) ||
        !add_name_entry(n, "CN", "xmppscope CA") || !X509_set_issuer_name(x, n) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -BACKDATE_SECONDS) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), CA_DAYS, 0, NULL) || !X509_set_pubkey(x, key) ||
        !add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") ||
        !add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        !add_ext(x, x, NID_subject_key_identifier, "hash") || !X509_sign(x, key, EVP_sha256()))
        goto fail;
    return x;
fail:
    X509_free(x);
    return NULL;
}

/* Forges the certificate for `name`, signed by the CA, for `leaf_key`. Depends on nothing else:
 * the cache in front of it may drop and remake certificates at will. */
/* Appends `name` to a subjectAltName list: an iPAddress for an IP literal, else a dNSName. */
static int push_san(GENERAL_NAMES *san, const struct leaf_name *name)
{
    GENERAL_NAME *gen = GENERAL_NAME_new();

    if (gen == NULL)
        return 0;
    if (name->is_ip) {
        ASN1_OCTET_STRING *ip = ASN1_OCTET_STRING_new();
        if (ip == NULL || !ASN1_OCTET_STRING_set(ip, name->ip, name->ip_len)) {
            ASN1_OCTET_STRING_free(ip);
            goto fail;
        }
        GENERAL_NAME_set0_value(gen, GEN_IPADD, ip);
    } else {
        ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
        if (dns == NULL || !ASN1_STRING_set(dns, name->text, -1)) {
            ASN1_IA5STRING_free(dns);
            goto fail;
        }
        GENERAL_NAME_set0_value(gen, GEN_DNS, dns);
    }
    if (sk_GENERAL_NAME_push(san, gen))
        return 1;
fail:
    GENERAL_NAME_free(gen);
    return 0;
}

/* The leaf for `name`; `extra_ip`, when not NULL, is an IP address the certificate also carries
 * as a second subjectAltName (the address a client without SNI connected to). */
static X509 *forge_leaf(X509 *ca_cert, EVP_PKEY *ca_key, EVP_PKEY *leaf_key,
                        const struct leaf_name *name, const struct leaf_name *extra_ip)
{
    X509 *x = X509_new();
    GENERAL_NAMES *san = NULL;
    X509_NAME *n;

    if (x == NULL)
        goto fail;
    n = X509_get_subject_name(x);
    if (!X509_set_version(x, X509_VERSION_3) || !set_random_serial(x) ||
        !add_name_entry(n, "O", "xmppscope"))
        goto fail;
    /* The common name is limited to 64 characters; longer names are in the SAN only, which is
     * what clients check anyway. */
    if (strlen(name->text) <= 64 && !add_name_entry(n, "CN", name->text))
        goto fail;
    if (!X509_set_issuer_name(x, X509_get_subject_name(ca_cert)) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -BACKDATE_SECONDS) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), LEAF_DAYS, 0, NULL))
        goto fail;
    /* A certificate cannot outlive its issuer. */
    if (ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca_cert)) > 0 &&
        !X509_set1_notAfter(x, X509_get0_notAfter(ca_cert)))
        goto fail;
    if (!X509_set_pubkey(x, leaf_key) ||
        !add_ext(x, ca_cert, NID_basic_constraints, "critical,CA:FALSE") ||
        !add_ext(x, ca_cert, NID_key_usage, "critical,digitalSignature") ||
        !add_ext(x, ca_cert, NID_ext_key_usage, "serverAuth") ||
        !add_ext(x, ca_cert, NID_subject_key_identifier, "hash") ||
        !add_ext(x, ca_cert, NID_authority_key_identifier, "keyid:always"))
        goto fail;

    /* The SAN is built by hand, not from openssl.cnf syntax, so that no character of a name
     * a client sent can be read as syntax. */
    san = GENERAL_NAMES_new();
    if (san == NULL || !push_san(san, name))
        goto fail;
    if (extra_ip != NULL && !push_san(san, extra_ip))
        goto fail;
    if (!X509_add1_ext_i2d(x, NID_subject_alt_name, san, 0, X509V3_ADD_DEFAULT))
        goto fail;
    if (!X509_sign(x, ca_key, EVP_sha256()))
        goto fail;
    GENERAL_NAMES_free(san);
    return x;
fail:
    GENERAL_NAMES_free(san);
    X509_free(x);
    return NULL;
}

/* Accepts a DNS name (letters, digits, '-', '_' in labels of 1 to 63 characters; one trailing dot
 * and case ignored) or an IP literal (IPv6 possibly in brackets). */
static int normalize_name(const char *in, struct leaf_name *out)
{
    size_t len = in != NULL ? strlen(in) : 0;
    size_t label = 0;
    char tmp[MAX_NAME + 2];

    memset(out, 0, sizeof(*out));
    if (len == 0 || len > MAX_NAME + 2)
        return XS_EINVAL;
    if (in[0] == '[' && in[len - 1] == ']') {
        in++;
        len -= 2;
    } else if (in[len - 1] == '.') {
        len--;
    }
    if (len == 0 || len > MAX_NAME)
        return XS_EINVAL;
    memcpy(tmp, in, len);
    tmp[len] = '\0';

    if (inet_pton(AF_INET, tmp, out->ip) == 1) {
        out->is_ip = 1;
        out->ip_len = 4;
        inet_ntop(AF_INET, out->ip, out->text, sizeof(out->text));
        return 0;
    }
    if (inet_pton(AF_INET6, tmp, out->ip) == 1) {
        out->is_ip = 1;
        out->ip_len = 16;
        inet_ntop(AF_INET6, out->ip, out->text, sizeof(out->text));
        return 0;
    }
    for (size_t i = 0; i <= len; i++) {
        char c = tmp[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63)
                return XS_EINVAL;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            label++;
        } else if (c >= 'A' && c <= 'Z') {
            tmp[i] = (char)(c - 'A' + 'a');
            label++;
        } else {
            return XS_EINVAL;
        }
    }
    memcpy(out->text, tmp, len + 1);
    return 0;
}

static int compute_fingerprint(xs_ca *ca)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (!X509_digest(ca->cert, EVP_sha256(), md, &n) || n != 32)
        return 0;
    for (unsigned int i = 0; i < n; i++)
        snprintf(ca->fingerprint + 3 * i, 4, i + 1 < n ? "%02X:" : "%02X", md[i]);
    return 1;
}

/* A password callback that refuses: an encrypted key is an error, never a prompt. */
static int no_password(char *buf, int size, int rwflag, void *user)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)user;
    return -1;
}

static int load_ca(xs_ca *ca, xs_diag *diag)
{
    char *pem = NULL;
    size_t len = 0;
    BIO *bio = NULL;
    int rc;

    rc = read_file(ca->cert_path, 0, &pem, &len, diag);
    if (rc != 0)
        goto out;
    bio = BIO_new_mem_buf(pem, (int)len);
    ca->cert = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    xs_free(pem);
    pem = NULL;
    if (ca->cert == NULL) {
        xs_diag_set(diag, XS_ETLS, "cannot load %s: not a PEM certificate", ca->cert_path);
        rc = append_openssl_errors(diag, XS_ETLS);
        goto out;
    }

    rc = read_file(ca->key_path, 1, &pem, &len, diag);
    if (rc != 0)
        goto out;
    bio = BIO_new_mem_buf(pem, (int)len);
    ca->key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL) : NULL;
    BIO_free(bio);
    OPENSSL_cleanse(pem, len);
    xs_free(pem);
    pem = NULL;
    if (ca->key == NULL) {
        xs_diag_set(diag, XS_ETLS, "cannot load %s: not an unencrypted PEM private key",
                    ca->key_path);
        rc = append_openssl_errors(diag, XS_ETLS);
        goto out;
    }

    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        ERR_clear_error();
        rc = xs_diag_set(diag, XS_ETLS,
                         "%s does not match %s; restore the matching pair, or remove both and run "
                         "`xmppscope ca init` (clients must then trust the new CA)",
                         ca->key_path, ca->cert_path);
        goto out;
    }
    if (X509_check_ca(ca->cert) == 0) {
        rc = xs_diag_set(diag, XS_ETLS,
                         "%s is not a CA certificate (basicConstraints CA:TRUE is missing); remove "
                         "ca.crt and ca.key and run `xmppscope ca init`",
                         ca->cert_path);
        goto out;
    }
out:
    return rc;
}

/* Publishes tmp under `path` unless `path` already exists. */
static int publish(const char *tmp, const char *path, xs_diag *diag)
{
    if (link(tmp, path) == 0)
        return 0;
    if (errno == EEXIST) {
        return xs_diag_set(
            diag, XS_EIO,
            "%s appeared while the CA was being created (another `xmppscope ca init`?); "
            "run the command again",
            path);
    }
    return xs_diag_set(diag, XS_EIO, "cannot create %s: %s; pass --ca-dir DIR", path,
                       strerror(errno));
}

static int create_ca(xs_ca *ca, xs_diag *diag)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    BIO *key_bio = NULL;
    BIO *cert_bio = NULL;
    char *key_tmp = NULL;
    char *cert_tmp = NULL;
    char *data;
    long len;
    int rc = 0;

    key = EVP_EC_gen("P-256");
    cert = key != NULL ? make_ca_cert(key) : NULL;
    key_bio = BIO_new(BIO_s_secmem());
    cert_bio = BIO_new(BIO_s_mem());
    if (cert == NULL || key_bio == NULL || cert_bio == NULL ||
        !PEM_write_bio_PrivateKey(key_bio, key, NULL, NULL, 0, NULL, NULL) ||
        !PEM_write_bio_X509(cert_bio, cert)) {
        xs_diag_set(diag, XS_ETLS, "cannot make the CA key and certificate");
        rc = append_openssl_errors(diag, XS_ETLS);
        goto out;
    }
    /* The process id makes the temporary names unique among live processes; a file left by a
     * dead one is removed first. */
    if (asprintf(&key_tmp, "%s/.ca.key.%ld.tmp", ca->dir, (long)getpid()) < 0) {
        key_tmp = NULL;
        rc = XS_ENOMEM;
        goto out;
    }
    if (asprintf(&cert_tmp, "%s/.ca.crt.%ld.tmp", ca->dir, (long)getpid()) < 0) {
        cert_tmp = NULL;
        rc = XS_ENOMEM;
        goto out;
    }
    unlink(key_tmp);
    unlink(cert_tmp);

    len = BIO_get_mem_data(key_bio, &data);
    rc = write_new_file(key_tmp, data, (size_t)len, 0600, diag);
    if (rc != 0)
        goto out;
    len = BIO_get_mem_data(cert_bio, &data);
    rc = write_new_file(cert_tmp, data, (size_t)len, 0644, diag);
    if (rc != 0)
        goto out;
    rc = publish(key_tmp, ca->key_path, diag);
    if (rc != 0)
        goto out;
    rc = publish(cert_tmp, ca->cert_path, diag);
    if (rc != 0) {
        unlink(ca->key_path); /* ours: it was linked just above */
        goto out;
    }
    ca->key = key;
    ca->cert = cert;
    key = NULL;
    cert = NULL;
    ca->created = 1;
out:
    if (rc == XS_ENOMEM)
        xs_diag_set(diag, rc, "out of memory");
    if (key_tmp != NULL)
        unlink(key_tmp);
    if (cert_tmp != NULL)
        unlink(cert_tmp);
    xs_free(key_tmp);
    xs_free(cert_tmp);
    BIO_free(key_bio);
    BIO_free(cert_bio);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

int xs_ca_open(const char *dir, int create, xs_ca **out, xs_diag *diag)
{
    xs_ca *ca = NULL;
    struct stat st;
    int have_cert, have_key;
    int rc = 0;

    *out = NULL;
    if (dir == NULL || dir[0] == '\0') {
        return xs_diag_set(diag, XS_EINVAL, "no CA directory given; pass --ca-dir DIR");
    }
    ERR_clear_error();
    ca = xs_calloc(1, sizeof(*ca));
    if (ca == NULL)
        goto nomem;
    ca->dir = xs_strdup(dir);
    if (ca->dir == NULL)
        goto nomem;
    /* "/a/b/" and "/a/b" are the same directory; keep file names tidy. */
    for (size_t n = strlen(ca->dir); n > 1 && ca->dir[n - 1] == '/'; n--)
        ca->dir[n - 1] = '\0';
    if (asprintf(&ca->cert_path, "%s/ca.crt", ca->dir) < 0) {
        ca->cert_path = NULL;
        goto nomem;
    }
    if (asprintf(&ca->key_path, "%s/ca.key", ca->dir) < 0) {
        ca->key_path = NULL;
        goto nomem;
    }

    /* The directory is checked before anything in it is believed: whoever can write to it can
     * plant the CA that clients are told to trust. A missing one is made (mode 0700) only when
     * asked to create a CA; without that the message below says how to make one. */
    if (create) {
        rc = make_dir(ca->dir, diag);
        if (rc != 0)
            goto out;
    }
    if (create || lstat(ca->dir, &st) == 0) {
        rc = xs_file_check_dir(ca->dir, "the CA directory", diag);
        if (rc != 0)
            goto out;
    }
    have_cert = file_exists(ca->cert_path, diag);
    have_key = file_exists(ca->key_path, diag);
    if (have_cert < 0 || have_key < 0) {
        rc = have_cert < 0 ? have_cert : have_key;
        goto out;
    }
    if (!have_cert && !have_key) {
        if (!create) {
            rc = xs_diag_set(diag, XS_EIO,
                             "no CA in %s (ca.crt and ca.key are missing); run `xmppscope ca init "
                             "--ca-dir %s` first, or pass the --ca-dir DIR that holds it",
                             ca->dir, ca->dir);
            goto out;
        }
        rc = create_ca(ca, diag);
    } else if (have_cert != have_key) {
        const char *present = have_cert ? ca->cert_path : ca->key_path;
        const char *missing = have_cert ? ca->key_path : ca->cert_path;
        rc = xs_diag_set(
            diag, XS_EIO,
            "%s exists but %s is missing; restore it, or remove %s and run `xmppscope ca "
            "init` to make a new CA (clients must then trust the new one)",
            present, missing, present);
    } else {
        rc = load_ca(ca, diag);
    }
    if (rc != 0)
        goto out;

    ca->leaf_key = EVP_EC_gen("P-256");
    if (ca->leaf_key == NULL || !compute_fingerprint(ca)) {
        xs_diag_set(diag, XS_ETLS, "cannot prepare the CA in %s", ca->dir);
        rc = append_openssl_errors(diag, XS_ETLS);
        goto out;
    }
    ca->cache = xs_calloc(XS_CA_CACHE_SIZE, sizeof(*ca->cache));
    if (ca->cache == NULL)
        goto nomem;
    *out = ca;
    return 0;
nomem:
    rc = xs_diag_set(diag, XS_ENOMEM, "out of memory");
out:
    xs_ca_free(ca);
    return rc;
}

int xs_ca_created(const xs_ca *ca)
{
    return ca->created;
}

void xs_ca_free(xs_ca *ca)
{
    if (ca == NULL)
        return;
    if (ca->cache != NULL) {
        for (size_t i = 0; i < ca->cache_len; i++) {
            xs_free(ca->cache[i].name);
            X509_free(ca->cache[i].cert);
        }
        xs_free(ca->cache);
    }
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    EVP_PKEY_free(ca->leaf_key);
    xs_free(ca->dir);
    xs_free(ca->cert_path);
    xs_free(ca->key_path);
    xs_free(ca);
}

const char *xs_ca_cert_path(const xs_ca *ca)
{
    return ca->cert_path;
}

const char *xs_ca_key_path(const xs_ca *ca)
{
    return ca->key_path;
}

int xs_ca_fingerprint(const xs_ca *ca, char *buf, size_t cap)
{
    if (cap < XS_CA_FINGERPRINT_LEN)
        return XS_ETOOBIG;
    memcpy(buf, ca->fingerprint, XS_CA_FINGERPRINT_LEN);
    return 0;
}

int xs_ca_subject(const xs_ca *ca, char *buf, size_t cap)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;
    int rc = 0;

    if (cap == 0)
        return XS_ETOOBIG;
    buf[0] = '\0';
    if (bio == NULL)
        return XS_ENOMEM;
    if (X509_NAME_print_ex(bio, X509_get_subject_name(ca->cert), 0,
                           XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
        rc = XS_ETLS;
        goto out;
    }
    len = BIO_get_mem_data(bio, &data);
    if (len < 0)
        len = 0;
    if ((size_t)len >= cap) {
        len = (long)cap - 1;
        rc = XS_ETOOBIG;
    }
    memcpy(buf, data, (size_t)len);
    buf[len] = '\0';
out:
    BIO_free(bio);
    return rc;
}

static int asn1_to_time_t(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;
    if (!ASN1_TIME_to_tm(t, &tm))
        return 0;
    *out = timegm(&tm);
    return 1;
}

int xs_ca_validity(const xs_ca *ca, time_t *not_before, time_t *not_after)
{
    if (!asn1_to_time_t(X509_get0_notBefore(ca->cert), not_before) ||
        !asn1_to_time_t(X509_get0_notAfter(ca->cert), not_after)) {
        ERR_clear_error();
        return XS_ETLS;
    }
    return 0;
}

EVP_PKEY *xs_ca_leaf_key(const xs_ca *ca)
{
    return ca->leaf_key;
}

static struct cache_entry *cache_find(xs_ca *ca, const char *name)
{
    for (size_t i = 0; i < ca->cache_len; i++)
        if (strcmp(ca->cache[i].name, name) == 0)
            return &ca->cache[i];
    return NULL;
}

/* Returns an empty slot: a never used one, else the least recently used one, emptied. */
static struct cache_entry *cache_make_room(xs_ca *ca)
{
    struct cache_entry *lru;

    if (ca->cache_len < XS_CA_CACHE_SIZE)
        return &ca->cache[ca->cache_len++];
    lru = &ca->cache[0];
    for (size_t i = 1; i < ca->cache_len; i++)
        if (ca->cache[i].used < lru->used)
            lru = &ca->cache[i];
    xs_free(lru->name);
    X509_free(lru->cert);
    memset(lru, 0, sizeof(*lru));
    return lru;
}

/* 1 if the certificate is good for more than RENEW_MARGIN_SECONDS. */
static int still_fresh(X509 *cert)
{
    time_t limit = time(NULL) + RENEW_MARGIN_SECONDS;
    return X509_cmp_time(X509_get0_notAfter(cert), &limit) > 0;
}

int xs_ca_forge(xs_ca *ca, const char *name, X509 **cert, xs_diag *diag)
{
    return xs_ca_forge_ip(ca, name, NULL, cert, diag);
}

int xs_ca_forge_ip(xs_ca *ca, const char *name, const char *ip, X509 **cert, xs_diag *diag)
{
    struct leaf_name ln, extra;
    const struct leaf_name *extra_ip = NULL;
    struct cache_entry *e;
    char cache_key[2 * (MAX_NAME + 1) + 1]; /* name, space, address */
    char *key = NULL;
    X509 *x;

    *cert = NULL;
    if (normalize_name(name, &ln) != 0) {
        return xs_diag_set(diag, XS_EINVAL,
                           "cannot forge a certificate for \"%.80s\": not a DNS name or IP address",
                           name != NULL ? name : "(null)");
    }
    if (ip != NULL) {
        if (normalize_name(ip, &extra) != 0 || !extra.is_ip) {
            return xs_diag_set(diag, XS_EINVAL,
                               "cannot forge a certificate for %s: \"%.80s\" is not an IP address",
                               ln.text, ip);
        }
        /* A name that is that very address needs it once. */
        if (strcmp(extra.text, ln.text) != 0)
            extra_ip = &extra;
    }
    /* The address is part of the key: the same name reached at two addresses makes two
     * certificates, each carrying its own address. A space appears in no name. */
    snprintf(cache_key, sizeof(cache_key), "%.*s%s%.*s", MAX_NAME, ln.text,
             extra_ip != NULL ? " " : "", MAX_NAME, extra_ip != NULL ? extra_ip->text : "");
    e = cache_find(ca, cache_key);
    if (e != NULL && still_fresh(e->cert)) {
        e->used = ++ca->clock;
        X509_up_ref(e->cert);
        *cert = e->cert;
        return 0;
    }

    if (e == NULL) {
        key = xs_strdup(cache_key);
        if (key == NULL) {
            return xs_diag_set(diag, XS_ENOMEM, "out of memory");
        }
    }
    ERR_clear_error();
    x = forge_leaf(ca->cert, ca->key, ca->leaf_key, &ln, extra_ip);
    if (x == NULL) {
        xs_diag_set(diag, XS_ETLS, "cannot forge a certificate for %s", ln.text);
        xs_free(key);
        return append_openssl_errors(diag, XS_ETLS);
    }
    if (e == NULL) {
        e = cache_make_room(ca);
        e->name = key;
    } else {
        X509_free(e->cert);
    }
    e->cert = x;
    e->used = ++ca->clock;
    X509_up_ref(x);
    *cert = x;
    return 0;
}
