/* Unit tests of the built-in feature rewrites: the reference implementation (features_ref.c)
 * and the helpers of filters/features.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "features_ref.h"
#include "inspect/error.h"

static const xs_attr decls[] = {
    {.prefix = NULL, .uri = "jabber:client"},
    {.prefix = "stream", .uri = "http://etherx.jabber.org/streams"},
};

#define PROSODY_TLS12                                                                              \
    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"                       \
    "<mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-1</mechanism>"                    \
    "<mechanism>PLAIN</mechanism></mechanisms>"                                                    \
    "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-unique'/>"        \
    "</sasl-channel-binding><compression xmlns='http://jabber.org/features/compress'>"             \
    "<method>zlib</method></compression></stream:features>"

static void test_features_default_strips_binding_and_compression(void **state)
{
    xs_features_result r;
    assert_int_equal(
        xs_features_rewrite(PROSODY_TLS12, strlen(PROSODY_TLS12), decls, 2, XS_REWRITE_DEFAULT, &r),
        0);
    assert_non_null(r.xml);
    assert_int_equal(r.offered_binding, 1);
    assert_null(strstr(r.xml, "PLUS"));
    assert_null(strstr(r.xml, "sasl-channel-binding"));
    assert_null(strstr(r.xml, "compression"));
    assert_non_null(strstr(r.xml, "<mechanism>SCRAM-SHA-1</mechanism>"));
    assert_non_null(strstr(r.xml, "<mechanism>PLAIN</mechanism>"));
    /* Serialized for the stream it goes into: the stream prefix, no re-declaration. */
    assert_true(strncmp(r.xml, "<stream:features>", 17) == 0);
    assert_null(strstr(r.xml, "xmlns:stream"));
    assert_string_equal(
        r.removed, "SCRAM-SHA-1-PLUS, sasl-channel-binding (XEP-0440), compression (XEP-0138)");
    free(r.xml);
}

static void test_features_each_rewrite_can_be_turned_off(void **state)
{
    xs_features_result r;
    assert_int_equal(xs_features_rewrite(PROSODY_TLS12, strlen(PROSODY_TLS12), decls, 2,
                                         XS_REWRITE_CHANNEL_BINDING, &r),
                     0);
    assert_non_null(strstr(r.xml, "SCRAM-SHA-1-PLUS"));
    assert_non_null(strstr(r.xml, "compression"));
    assert_null(strstr(r.xml, "sasl-channel-binding"));
    free(r.xml);
    assert_int_equal(xs_features_rewrite(PROSODY_TLS12, strlen(PROSODY_TLS12), decls, 2, 0, &r), 0);
    assert_null(r.xml); /* unchanged: forwarded byte for byte */
    assert_int_equal(r.offered_binding, 1);
}

static void test_features_untouched_when_nothing_to_remove(void **state)
{
    const char f[] = "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                     "</stream:features>";
    xs_features_result r;
    assert_int_equal(xs_features_rewrite(f, strlen(f), decls, 2, XS_REWRITE_DEFAULT, &r), 0);
    assert_null(r.xml);
    assert_int_equal(r.offered_binding, 0);
    /* Not a features element at all. */
    const char m[] = "<message><body>-PLUS</body></message>";
    assert_int_equal(xs_features_rewrite(m, strlen(m), decls, 2, XS_REWRITE_DEFAULT, &r), 0);
    assert_null(r.xml);
}

static void test_features_sasl2_and_starttls(void **state)
{
    const char f[] = "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
                     "<authentication xmlns='urn:xmpp:sasl:2'><mechanism>SCRAM-SHA-256-PLUS"
                     "</mechanism><mechanism>SCRAM-SHA-256</mechanism></authentication>"
                     "</stream:features>";
    xs_features_result r;
    assert_int_equal(
        xs_features_rewrite(f, strlen(f), decls, 2, XS_REWRITE_DEFAULT | XS_REWRITE_STARTTLS, &r),
        0);
    assert_non_null(r.xml);
    assert_null(strstr(r.xml, "PLUS"));
    assert_null(strstr(r.xml, "starttls"));
    assert_non_null(strstr(r.xml, "SCRAM-SHA-256<"));
    free(r.xml);
}

static void test_features_malformed_and_names(void **state)
{
    xs_features_result r;
    assert_int_equal(xs_features_rewrite("<stream:features>", 17, decls, 2, XS_REWRITE_DEFAULT, &r),
                     XS_ENOTWF);
    unsigned bit = 0;
    assert_int_equal(xs_rewrite_parse("sasl-plus", &bit), 0);
    assert_int_equal(bit, XS_REWRITE_SASL_PLUS);
    assert_string_equal(xs_rewrite_name(XS_REWRITE_COMPRESSION), "compression");
    assert_int_equal(xs_rewrite_parse("bogus", &bit), XS_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_features_default_strips_binding_and_compression),
        cmocka_unit_test(test_features_each_rewrite_can_be_turned_off),
        cmocka_unit_test(test_features_untouched_when_nothing_to_remove),
        cmocka_unit_test(test_features_sasl2_and_starttls),
        cmocka_unit_test(test_features_malformed_and_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
