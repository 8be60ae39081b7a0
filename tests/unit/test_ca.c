/* Unit tests of the certificate authority (proxy/ca.c) and `xmppscope ca` (proxy/cmd/ca_cmd.c).
 *
 * Every CA is made by the tests in a fresh directory under $XS_TEST_TMP (or /tmp) and removed
 * afterwards. The tests look at the certificates through OpenSSL directly, as a client would. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/unit/tmpdir.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "inspect/error.h"
#include "proxy/ca.h"
#include "proxy/cmd/ca_cmd.h"

/* What the last xs_ca_*() call of a test said. */
static xs_diag diag;

static int setup(void **state)
{
    return tmpdir_setup(state, "test_ca");
}

static int teardown(void **state)
{
    return tmpdir_teardown(state);
}

static X509 *read_cert(const char *path)
{
    FILE *fp = fopen(path, "r");
    X509 *x;
    assert_non_null(fp);
    x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(x);
    return x;
}

/* Verifies `leaf` against the CA certificate in `ca_path` as a TLS client would for `host` (or
 * an IP address). Returns the X509_V_* result. */
static int verify_leaf(const char *ca_path, X509 *leaf, const char *host, const char *ip)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_VERIFY_PARAM *param;
    int result;

    assert_non_null(store);
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_load_file(store, ca_path), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    param = X509_STORE_CTX_get0_param(ctx);
    assert_int_equal(X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER), 1);
    if (host != NULL)
        assert_int_equal(X509_VERIFY_PARAM_set1_host(param, host, 0), 1);
    if (ip != NULL)
        assert_int_equal(X509_VERIFY_PARAM_set1_ip_asc(param, ip), 1);
    result = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return result;
}

static void test_ca_create_sets_modes(void **state)
{
    struct fixture *f = *state;
    char dir[600], cert[700], key[700];
    struct stat st;
    mode_t old_umask;
    xs_ca *ca = NULL;

    /* A permissive umask must not loosen anything. */
    old_umask = umask(0);
    path_in(dir, sizeof(dir), f->dir, "nested/ca");
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), 0);
    umask(old_umask);
    assert_non_null(ca);
    assert_int_equal(xs_ca_created(ca), 1);

    path_in(cert, sizeof(cert), dir, "ca.crt");
    path_in(key, sizeof(key), dir, "ca.key");
    assert_string_equal(xs_ca_cert_path(ca), cert);
    assert_string_equal(xs_ca_key_path(ca), key);
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(stat(key, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stat(cert, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0077, 0044); /* readable by everyone: it is public */
    xs_ca_free(ca);
}

static void test_ca_ca_certificate_is_a_ca(void **state)
{
    struct fixture *f = *state;
    char dir[600];
    xs_ca *ca = NULL;
    X509 *x;
    char subject[256];
    int crit = -1;
    ASN1_OCTET_STRING *ski;
    int days = 0, secs = 0;

    path_in(dir, sizeof(dir), f->dir, "ca");
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), 0);
    x = read_cert(xs_ca_cert_path(ca));

    assert_int_equal(X509_check_ca(x), 1);
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_true(bc->ca);
    assert_int_equal(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    assert_true(X509_get_key_usage(x) & KU_KEY_CERT_SIGN);
    assert_true(X509_get_key_usage(x) & KU_CRL_SIGN);
    ski = X509_get_ext_d2i(x, NID_subject_key_identifier, NULL, NULL);
    assert_non_null(ski);
    ASN1_OCTET_STRING_free(ski);
    assert_int_equal(EVP_PKEY_get_base_id(X509_get0_pubkey(x)), EVP_PKEY_EC);
    assert_int_equal(X509_verify(x, X509_get0_pubkey(x)), 1);
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)),
                     1);
    assert_true(days >= 3650 && days < 3660);

    assert_int_equal(xs_ca_subject(ca, subject, sizeof(subject)), 0);
    assert_non_null(strstr(subject, "CN=xmppscope CA"));
    time_t nb = 0, na = 0;
    assert_int_equal(xs_ca_validity(ca, &nb, &na), 0);
    assert_true(nb < time(NULL) && na > time(NULL) + 3650L * 86400);
    X509_free(x);
    xs_ca_free(ca);
}

static void test_ca_reopen_same_fingerprint(void **state)
{
    struct fixture *f = *state;
    char dir[600];
    char fp1[XS_CA_FINGERPRINT_LEN], fp2[XS_CA_FINGERPRINT_LEN], expect[XS_CA_FINGERPRINT_LEN];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    char small[10];
    xs_ca *ca = NULL;
    X509 *x;

    path_in(dir, sizeof(dir), f->dir, "ca");
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), 0);
    assert_int_equal(xs_ca_fingerprint(ca, fp1, sizeof(fp1)), 0);
    assert_int_equal(xs_ca_fingerprint(ca, small, sizeof(small)), XS_ETOOBIG);
    xs_ca_free(ca);

    /* Opening again, with or without create, loads the same CA. */
    assert_int_equal(xs_ca_open(dir, 0, &ca, &diag), 0);
    assert_int_equal(xs_ca_created(ca), 0);
    assert_int_equal(xs_ca_fingerprint(ca, fp2, sizeof(fp2)), 0);
    assert_string_equal(fp1, fp2);
    xs_ca_free(ca);
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), 0);
    assert_int_equal(xs_ca_created(ca), 0);
    assert_int_equal(xs_ca_fingerprint(ca, fp2, sizeof(fp2)), 0);
    assert_string_equal(fp1, fp2);

    /* It is the SHA-256 of the DER certificate, "AB:CD:..." */
    x = read_cert(xs_ca_cert_path(ca));
    assert_int_equal(X509_digest(x, EVP_sha256(), md, &n), 1);
    assert_int_equal(n, 32);
    for (unsigned int i = 0; i < n; i++)
        snprintf(expect + 3 * i, 4, i + 1 < n ? "%02X:" : "%02X", md[i]);
    assert_string_equal(fp1, expect);
    assert_int_equal(strlen(fp1), XS_CA_FINGERPRINT_LEN - 1);
    X509_free(x);
    xs_ca_free(ca);
}

static void test_ca_forged_chain_verifies(void **state)
{
    struct fixture *f = *state;
    char dir[600];
    xs_ca *ca = NULL;
    X509 *leaf = NULL;
    X509 *cacert;
    GENERAL_NAMES *san;
    int days = 0, secs = 0;
    int found = 0;
    char cn[128];

    path_in(dir, sizeof(dir), f->dir, "ca");
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), 0);
    assert_int_equal(xs_ca_forge(ca, "example.test", &leaf, &diag), 0);
    assert_non_null(leaf);
    cacert = read_cert(xs_ca_cert_path(ca));

    assert_int_equal(verify_leaf(xs_ca_cert_path(ca), leaf, "example.test", NULL), X509_V_OK);
    assert_int_equal(verify_leaf(xs_ca_cert_path(ca), leaf, "other.test", NULL),
                     X509_V_ERR_HOSTNAME_MISMATCH);
    assert_int_equal(X509_check_issued(cacert, leaf), X509_V_OK); /* AKID matches the SKI */

    san = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    assert_non_null(san);
    for (int i = 0; i < sk_GENERAL_NAME_num(san); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(san, i);
        if (g->type == GEN_DNS &&
            strcmp((const char *)ASN1_STRING_get0_data(g->d.dNSName), "example.test") == 0)
            found = 1;
    }
    GENERAL_NAMES_free(san);
    assert_true(found);
    assert_true(
        X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof(cn)) > 0);
    assert_string_equal(cn, "example.test");
    assert_true(X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER);
    assert_int_equal(X509_check_ca(leaf), 0);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(leaf), xs_ca_leaf_key(ca)), 1);
    assert_int_equal(
        ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(leaf), X509_get0_notAfter(leaf)), 1);
    assert_true(days >= 365 && days < 398);
    assert_true(X509_cmp_current_time(X509_get0_notBefore(leaf)) < 0);

    X509_free(cacert);
    X509_free(leaf);
    xs_ca_free(ca);
}

static void test_ca_forge_ip_literal(void **state)
{
    struct fixture *f = *state;
    char dir[600];
    xs_ca *ca = NULL;
    X509 *v4 = NULL, *v6 = NULL, *v6b = NULL;

    path_in(dir, sizeof(dir), f->dir, "ca");
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), 0);
    assert_int_equal(xs_ca_forge(ca, "127.0.0.1", &v4, &diag), 0);
    assert_int_equal(verify_leaf(xs_ca_cert_path(ca), v4, NULL, "127.0.0.1"), X509_V_OK);
    assert_int_equal(verify_leaf(xs_ca_cert_path(ca), v4, NULL, "127.0.0.2"),
                     X509_V_ERR_IP_ADDRESS_MISMATCH);
    assert_int_equal(xs_ca_forge(ca, "::1", &v6, &diag), 0);
    assert_int_equal(X509_check_ip_asc(v6, "::1", 0), 1);
    /* The bracketed and the long form are the same address, so the same certificate. */
    assert_int_equal(xs_ca_forge(ca, "[0:0::1]", &v6b, &diag), 0);
    assert_ptr_equal(v6, v6b);
    X509_free(v4);
    X509_free(v6);
    X509_free(v6b);
    xs_ca_free(ca);
}

/* A client that dialled an address sends no SNI and checks the certificate against that
 * address: the certificate for the default name also carries the address the client connected
 * to, and the cache keeps the two apart. */
static void test_ca_forge_adds_local_address_san(void **state)
{
    struct fixture *f = *state;
    char dir[600];
    xs_ca *ca = NULL;
    X509 *plain = NULL, *v4 = NULL, *v4b = NULL, *v6 = NULL, *self = NULL, *bad = NULL;

    path_in(dir, sizeof(dir), f->dir, "ca");
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), 0);
    assert_int_equal(xs_ca_forge(ca, "example.test", &plain, &diag), 0);
    assert_int_equal(X509_check_ip_asc(plain, "127.0.0.1", 0), 0);

    assert_int_equal(xs_ca_forge_ip(ca, "example.test", "127.0.0.1", &v4, &diag), 0);
    assert_ptr_not_equal(v4, plain); /* the address is part of the cache key */
    assert_int_equal(X509_check_ip_asc(v4, "127.0.0.1", 0), 1);
    assert_int_equal(X509_check_host(v4, "example.test", 0, 0, NULL), 1);
    assert_int_equal(verify_leaf(xs_ca_cert_path(ca), v4, NULL, "127.0.0.1"), X509_V_OK);
    assert_int_equal(verify_leaf(xs_ca_cert_path(ca), v4, "example.test", NULL), X509_V_OK);
    assert_int_equal(verify_leaf(xs_ca_cert_path(ca), v4, NULL, "127.0.0.2"),
                     X509_V_ERR_IP_ADDRESS_MISMATCH);
    assert_int_equal(xs_ca_forge_ip(ca, "EXAMPLE.test.", "127.0.0.1", &v4b, &diag), 0);
    assert_ptr_equal(v4, v4b);

    assert_int_equal(xs_ca_forge_ip(ca, "example.test", "[::1]", &v6, &diag), 0);
    assert_ptr_not_equal(v6, v4);
    assert_int_equal(X509_check_ip_asc(v6, "::1", 0), 1);
    assert_int_equal(X509_check_ip_asc(v6, "127.0.0.1", 0), 0);

    /* A name that is the address itself: one SAN, the certificate of the bare address. */
    assert_int_equal(xs_ca_forge_ip(ca, "127.0.0.1", "127.0.0.1", &self, &diag), 0);
    assert_int_equal(X509_check_ip_asc(self, "127.0.0.1", 0), 1);
    GENERAL_NAMES *sans = X509_get_ext_d2i(self, NID_subject_alt_name, NULL, NULL);
    assert_non_null(sans);
    assert_int_equal(sk_GENERAL_NAME_num(sans), 1);
    GENERAL_NAMES_free(sans);

    assert_int_equal(xs_ca_forge_ip(ca, "example.test", "example.org", &bad, &diag), XS_EINVAL);
    assert_null(bad);
    assert_non_null(strstr(diag.text, "not an IP address"));

    X509_free(plain);
    X509_free(v4);
    X509_free(v4b);
    X509_free(v6);
    X509_free(self);
    xs_ca_free(ca);
}

static void test_ca_cache_same_name_same_cert(void **state)
{
    struct fixture *f = *state;
    char dir[600];
    xs_ca *ca = NULL;
    X509 *a = NULL, *b = NULL, *c = NULL, *d = NULL;

    path_in(dir, sizeof(dir), f->dir, "ca");
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), 0);
    assert_int_equal(xs_ca_forge(ca, "example.test", &a, &diag), 0);
    assert_int_equal(xs_ca_forge(ca, "example.test", &b, &diag), 0);
    assert_ptr_equal(a, b);
    /* Case and a trailing dot do not make another name. */
    assert_int_equal(xs_ca_forge(ca, "EXAMPLE.test.", &c, &diag), 0);
    assert_ptr_equal(a, c);
    assert_int_equal(xs_ca_forge(ca, "other.test", &d, &diag), 0);
    assert_ptr_not_equal(a, d);
    assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(a), X509_get0_serialNumber(d)), 0);
    assert_int_equal(X509_check_host(d, "other.test", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(d, "example.test", 0, 0, NULL), 0);
    X509_free(a);
    X509_free(b);
    X509_free(c);
    X509_free(d);
    xs_ca_free(ca);
}

static void test_ca_cache_is_bounded(void **state)
{
    struct fixture *f = *state;
    char dir[600], name[64];
    xs_ca *ca = NULL;
    X509 *first = NULL, *x = NULL, *again = NULL;

    path_in(dir, sizeof(dir), f->dir, "ca");
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), 0);
    assert_int_equal(xs_ca_forge(ca, "n0.test", &first, &diag), 0);
    for (int i = 1; i <= XS_CA_CACHE_SIZE; i++) {
        snprintf(name, sizeof(name), "n%d.test", i);
        assert_int_equal(xs_ca_forge(ca, name, &x, &diag), 0);
        X509_free(x);
    }
    /* n0 was the least recently used, so it made room and is forged anew. */
    assert_int_equal(xs_ca_forge(ca, "n0.test", &again, &diag), 0);
    assert_ptr_not_equal(first, again);
    assert_int_equal(X509_check_host(again, "n0.test", 0, 0, NULL), 1);
    X509_free(first);
    X509_free(again);
    xs_ca_free(ca);
}

static void test_ca_forge_rejects_bad_names(void **state)
{
    struct fixture *f = *state;
    static const char *const bad[] = {
        "",
        ".",
        "a..b",
        "a b",
        "a,DNS:evil.test",
        "*.example.test",
        "exa\nmple.test",
        "caf\xc3\xa9.test",
        "a/b",
        NULL,
    };
    char dir[600], longname[400], label[80];
    xs_ca *ca = NULL;
    X509 *x = NULL;

    path_in(dir, sizeof(dir), f->dir, "ca");
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), 0);
    for (size_t i = 0; bad[i] != NULL; i++) {
        assert_int_equal(xs_ca_forge(ca, bad[i], &x, &diag), XS_EINVAL);
        assert_null(x);
        assert_non_null(strstr(diag.text, "not a DNS name or IP address"));
    }
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(xs_ca_forge(ca, longname, &x, &diag), XS_EINVAL);
    memset(label, 'a', sizeof(label) - 1); /* a 79-character label */
    label[sizeof(label) - 1] = '\0';
    assert_int_equal(xs_ca_forge(ca, label, &x, &diag), XS_EINVAL);

    /* A 253-character name is fine; it is too long for the CN, so it is in the SAN only. */
    for (int i = 0; i < 4; i++) {
        memset(longname + 64 * i, i == 3 ? 'b' : 'a', 63);
        longname[64 * i + 63] = '.';
    }
    longname[253] = '\0';
    assert_int_equal(xs_ca_forge(ca, longname, &x, &diag), 0);
    assert_int_equal(X509_check_host(x, longname, 0, 0, NULL), 1);
    X509_free(x);
    xs_ca_free(ca);
}

static void test_ca_open_without_create_fails(void **state)
{
    struct fixture *f = *state;
    char dir[600];
    xs_ca *ca = (xs_ca *)1;

    assert_int_equal(xs_ca_open(f->dir, 0, &ca, &diag), XS_EIO);
    assert_null(ca);
    assert_non_null(strstr(diag.text, "no CA in"));
    assert_non_null(strstr(diag.text, "xmppscope ca init"));
    /* A directory that does not exist is not created either. */
    path_in(dir, sizeof(dir), f->dir, "missing");
    assert_int_equal(xs_ca_open(dir, 0, &ca, &diag), XS_EIO);
    assert_int_equal(access(dir, F_OK), -1);
    assert_int_equal(xs_ca_open("", 1, &ca, &diag), XS_EINVAL);
}

static void test_ca_refuses_key_readable_by_others(void **state)
{
    struct fixture *f = *state;
    char dir[600], key[700];
    xs_ca *ca = NULL;

    path_in(dir, sizeof(dir), f->dir, "ca");
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), 0);
    xs_ca_free(ca);
    path_in(key, sizeof(key), dir, "ca.key");
    assert_int_equal(chmod(key, 0640), 0);
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), XS_EINVAL);
    assert_null(ca);
    assert_non_null(strstr(diag.text, "chmod 600"));
    assert_int_equal(chmod(key, 0600), 0);
    assert_int_equal(xs_ca_open(dir, 0, &ca, &diag), 0);
    xs_ca_free(ca);
}

/* A CA directory someone else could write to, or reach through a link, is not trusted: whoever
 * writes there plants the CA that clients are told to trust. */
static void test_ca_refuses_untrusted_dir(void **state)
{
    struct fixture *f = *state;
    char dir[600], link_path[600];
    xs_ca *ca = NULL;

    path_in(dir, sizeof(dir), f->dir, "ca");
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), 0);
    xs_ca_free(ca);
    ca = NULL;

    assert_int_equal(chmod(dir, 0777), 0);
    assert_int_equal(xs_ca_open(dir, 0, &ca, &diag), XS_EINVAL);
    assert_null(ca);
    assert_non_null(strstr(diag.text, "refusing the CA directory"));
    assert_non_null(strstr(diag.text, "writable by group or others (mode 0777)"));
    assert_int_equal(chmod(dir, 0700), 0);

    path_in(link_path, sizeof(link_path), f->dir, "ca-link");
    assert_int_equal(symlink(dir, link_path), 0);
    assert_int_equal(xs_ca_open(link_path, 1, &ca, &diag), XS_EINVAL);
    assert_non_null(strstr(diag.text, "it is a symbolic link"));
    /* "ca-link/" names the same link. */
    char slash[620];
    snprintf(slash, sizeof(slash), "%s/", link_path);
    assert_int_equal(xs_ca_open(slash, 0, &ca, &diag), XS_EINVAL);

    if (geteuid() == 0) {
        assert_int_equal(chown(dir, 65534, 65534), 0);
        assert_int_equal(xs_ca_open(dir, 0, &ca, &diag), XS_EINVAL);
        assert_non_null(strstr(diag.text, "belongs to uid 65534"));
        assert_int_equal(chown(dir, 0, 0), 0);
    }
    assert_int_equal(xs_ca_open(dir, 0, &ca, &diag), 0);
    xs_ca_free(ca);
}

/* ca.crt as a FIFO used to hang start-up forever in open(); a linked ca.key is not followed. */
static void test_ca_refuses_fifo_and_linked_files(void **state)
{
    struct fixture *f = *state;
    char dir[600], crt[700], key[700], elsewhere[700];
    xs_ca *ca = NULL;

    path_in(dir, sizeof(dir), f->dir, "ca");
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), 0);
    xs_ca_free(ca);
    ca = NULL;
    path_in(crt, sizeof(crt), dir, "ca.crt");
    path_in(key, sizeof(key), dir, "ca.key");
    path_in(elsewhere, sizeof(elsewhere), f->dir, "moved.crt");

    assert_int_equal(rename(crt, elsewhere), 0);
    assert_int_equal(mkfifo(crt, 0600), 0);
    alarm(20); /* a hang fails the test rather than the CI job */
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), XS_EINVAL);
    alarm(0);
    assert_null(ca);
    assert_non_null(strstr(diag.text, "refusing the CA certificate"));
    assert_non_null(strstr(diag.text, "a FIFO (named pipe), not a regular file"));

    /* A link, even to the genuine certificate, is not followed. */
    assert_int_equal(unlink(crt), 0);
    assert_int_equal(symlink(elsewhere, crt), 0);
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), XS_EINVAL);
    assert_non_null(strstr(diag.text, "it is a symbolic link"));
    /* A dangling link counts as present: never replaced by a new CA, never followed. */
    assert_int_equal(unlink(crt), 0);
    assert_int_equal(symlink("/nonexistent/ca.crt", crt), 0);
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), XS_EINVAL);
    assert_non_null(strstr(diag.text, "it is a symbolic link"));
    assert_int_equal(unlink(crt), 0);
    assert_int_equal(rename(elsewhere, crt), 0);
    assert_int_equal(xs_ca_open(dir, 0, &ca, &diag), 0);
    xs_ca_free(ca);
}

static void test_ca_half_present_is_an_error(void **state)
{
    struct fixture *f = *state;
    char dir[600], cert[700];
    xs_ca *ca = NULL;

    path_in(dir, sizeof(dir), f->dir, "ca");
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), 0);
    xs_ca_free(ca);
    path_in(cert, sizeof(cert), dir, "ca.crt");
    assert_int_equal(unlink(cert), 0);
    /* Never silently replaced: clients trust the old certificate. */
    assert_int_equal(xs_ca_open(dir, 1, &ca, &diag), XS_EIO);
    assert_non_null(strstr(diag.text, "is missing"));
}

static void copy_file(const char *from, const char *to, mode_t mode)
{
    char buf[8192];
    ssize_t n;
    int in = open(from, O_RDONLY);
    int out = open(to, O_WRONLY | O_TRUNC | O_CREAT, mode);
    assert_true(in >= 0 && out >= 0);
    while ((n = read(in, buf, sizeof(buf))) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    close(in);
    close(out);
}

static void test_ca_mismatched_pair_is_an_error(void **state)
{
    struct fixture *f = *state;
    char a[600], b[600], key_a[700], key_b[700], cert_a[700];
    xs_ca *ca = NULL;

    path_in(a, sizeof(a), f->dir, "a");
    path_in(b, sizeof(b), f->dir, "b");
    assert_int_equal(xs_ca_open(a, 1, &ca, &diag), 0);
    xs_ca_free(ca);
    assert_int_equal(xs_ca_open(b, 1, &ca, &diag), 0);
    xs_ca_free(ca);
    path_in(key_a, sizeof(key_a), a, "ca.key");
    path_in(key_b, sizeof(key_b), b, "ca.key");
    copy_file(key_b, key_a, 0600);
    assert_int_equal(xs_ca_open(a, 0, &ca, &diag), XS_ETLS);
    assert_non_null(strstr(diag.text, "does not match"));

    path_in(cert_a, sizeof(cert_a), a, "ca.crt");
    copy_file("/dev/null", cert_a, 0644);
    assert_int_equal(xs_ca_open(a, 0, &ca, &diag), XS_ETLS);
    assert_non_null(strstr(diag.text, "not a PEM certificate"));
}

static void restore_env(const char *name, char *saved)
{
    if (saved != NULL) {
        setenv(name, saved, 1);
        free(saved);
    } else {
        unsetenv(name);
    }
}

static void test_ca_default_dir(void **state)
{
    char *xdg = getenv("XDG_CONFIG_HOME") ? strdup(getenv("XDG_CONFIG_HOME")) : NULL;
    char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    char buf[256], tiny[8];
    (void)state;

    setenv("XDG_CONFIG_HOME", "/x/config", 1);
    setenv("HOME", "/home/u", 1);
    assert_int_equal(xs_ca_default_dir(buf, sizeof(buf), &diag), 0);
    assert_string_equal(buf, "/x/config/xmppscope");
    assert_int_equal(xs_ca_default_dir(tiny, sizeof(tiny), &diag), XS_ETOOBIG);
    setenv("XDG_CONFIG_HOME", "relative", 1); /* ignored, as the XDG specification says */
    assert_int_equal(xs_ca_default_dir(buf, sizeof(buf), &diag), 0);
    assert_string_equal(buf, "/home/u/.config/xmppscope");
    unsetenv("XDG_CONFIG_HOME");
    assert_int_equal(xs_ca_default_dir(buf, sizeof(buf), &diag), 0);
    assert_string_equal(buf, "/home/u/.config/xmppscope");
    unsetenv("HOME");
    assert_int_equal(xs_ca_default_dir(buf, sizeof(buf), &diag), XS_EINVAL);
    assert_non_null(strstr(diag.text, "--ca-dir"));

    restore_env("XDG_CONFIG_HOME", xdg);
    restore_env("HOME", home);
}

/* Runs `xmppscope ca ARGS...` with stdout and stderr captured into out/err. */
static int run_cmd(const char *tmpdir, char *out, size_t out_cap, char *err, size_t err_cap,
                   int argc, const char **argv)
{
    char out_path[700], err_path[700];
    int saved_out, saved_err, fd_out, fd_err, rc;
    ssize_t n;

    path_in(out_path, sizeof(out_path), tmpdir, "stdout.txt");
    path_in(err_path, sizeof(err_path), tmpdir, "stderr.txt");
    fflush(stdout);
    fflush(stderr);
    saved_out = dup(1);
    saved_err = dup(2);
    fd_out = open(out_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    fd_err = open(err_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(saved_out >= 0 && saved_err >= 0 && fd_out >= 0 && fd_err >= 0);
    dup2(fd_out, 1);
    dup2(fd_err, 2);
    rc = xs_ca_cmd_main(argc, (char **)argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    n = pread(fd_out, out, out_cap - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    n = pread(fd_err, err, err_cap - 1, 0);
    err[n > 0 ? n : 0] = '\0';
    close(fd_out);
    close(fd_err);
    unlink(out_path);
    unlink(err_path);
    return rc;
}

static void test_ca_cmd_init_and_show(void **state)
{
    struct fixture *f = *state;
    char dir[600], out[8192], err[2048], fp[XS_CA_FINGERPRINT_LEN];
    xs_ca *ca = NULL;

    path_in(dir, sizeof(dir), f->dir, "cmd");
    const char *init[] = {"ca", "init", "--ca-dir", dir};
    assert_int_equal(run_cmd(f->dir, out, sizeof(out), err, sizeof(err), 4, init), 0);
    assert_non_null(strstr(out, "Created a new CA"));
    assert_int_equal(run_cmd(f->dir, out, sizeof(out), err, sizeof(err), 4, init), 0);
    assert_non_null(strstr(out, "already exists"));

    assert_int_equal(xs_ca_open(dir, 0, &ca, &diag), 0);
    assert_int_equal(xs_ca_fingerprint(ca, fp, sizeof(fp)), 0);
    char dir_opt[620];
    snprintf(dir_opt, sizeof(dir_opt), "--ca-dir=%s", dir);
    const char *show[] = {"ca", dir_opt, "show"};
    assert_int_equal(run_cmd(f->dir, out, sizeof(out), err, sizeof(err), 3, show), 0);
    assert_non_null(strstr(out, xs_ca_cert_path(ca)));
    assert_non_null(strstr(out, fp));
    assert_non_null(strstr(out, "Valid:"));
    assert_non_null(strstr(out, "update-ca-certificates"));
    assert_non_null(strstr(out, "ca_certs="));
    xs_ca_free(ca);
}

static void test_ca_cmd_exit_codes(void **state)
{
    struct fixture *f = *state;
    char out[8192], err[2048];
    const char *help[] = {"ca", "--help"};
    const char *h[] = {"ca", "show", "-h"};
    const char *none[] = {"ca"};
    const char *bogus[] = {"ca", "frobnicate"};
    const char *opt[] = {"ca", "init", "--bogus"};
    const char *extra[] = {"ca", "init", "show"};
    const char *nodir[] = {"ca", "init", "--ca-dir"};
    const char *show_empty[] = {"ca", "show", "--ca-dir", f->dir};

    assert_int_equal(run_cmd(f->dir, out, sizeof(out), err, sizeof(err), 2, help), 0);
    assert_non_null(strstr(out, "usage: xmppscope ca"));
    assert_int_equal(run_cmd(f->dir, out, sizeof(out), err, sizeof(err), 3, h), 0);
    assert_non_null(strstr(out, "usage: xmppscope ca"));
    assert_int_equal(run_cmd(f->dir, out, sizeof(out), err, sizeof(err), 1, none), 2);
    assert_non_null(strstr(err, "--help"));
    assert_int_equal(run_cmd(f->dir, out, sizeof(out), err, sizeof(err), 2, bogus), 2);
    assert_non_null(strstr(err, "frobnicate"));
    assert_int_equal(run_cmd(f->dir, out, sizeof(out), err, sizeof(err), 3, opt), 2);
    assert_int_equal(run_cmd(f->dir, out, sizeof(out), err, sizeof(err), 3, extra), 2);
    assert_int_equal(run_cmd(f->dir, out, sizeof(out), err, sizeof(err), 3, nodir), 2);
    /* A refused CA directory is a configuration error. */
    char bad[600];
    path_in(bad, sizeof(bad), f->dir, "open");
    assert_int_equal(mkdir(bad, 0777), 0);
    assert_int_equal(chmod(bad, 0777), 0);
    const char *init_bad[] = {"ca", "init", "--ca-dir", bad};
    assert_int_equal(run_cmd(f->dir, out, sizeof(out), err, sizeof(err), 4, init_bad), 2);
    assert_non_null(strstr(err, "writable by group or others"));
    /* `show` never creates a CA. */
    assert_int_equal(run_cmd(f->dir, out, sizeof(out), err, sizeof(err), 4, show_empty), 1);
    assert_non_null(strstr(err, "xmppscope ca init"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ca_create_sets_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_ca_certificate_is_a_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_reopen_same_fingerprint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_forged_chain_verifies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_forge_ip_literal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_forge_adds_local_address_san, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_cache_same_name_same_cert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_cache_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_forge_rejects_bad_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_open_without_create_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_refuses_key_readable_by_others, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_refuses_untrusted_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_refuses_fifo_and_linked_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_half_present_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_mismatched_pair_is_an_error, setup, teardown),
        cmocka_unit_test(test_ca_default_dir),
        cmocka_unit_test_setup_teardown(test_ca_cmd_init_and_show, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_cmd_exit_codes, setup, teardown),
    };
    return cmocka_run_group_tests_name("ca", tests, NULL, NULL);
}
