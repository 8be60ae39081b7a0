/* Unit tests for the capped growable buffer and the XML escaper (inspect/buf.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "inspect/buf.h"
#include "inspect/error.h"

static void test_buf_add_grows_and_terminates(void **state)
{
    (void)state;
    xs_buf b;
    xs_buf_init(&b, 0);
    assert_string_equal(xs_buf_ptr(&b), "");
    /* One byte at a time past several doublings: the content stays whole and terminated. */
    for (int i = 0; i < 1000; i++)
        assert_int_equal(xs_buf_add(&b, "x", 1), 0);
    assert_int_equal(xs_buf_len(&b), 1000);
    assert_int_equal(strspn(xs_buf_ptr(&b), "x"), 1000);
    assert_int_equal(xs_buf_ptr(&b)[1000], '\0');
    xs_buf_free(&b);
}

static void test_buf_cap_hit_is_sticky(void **state)
{
    (void)state;
    xs_buf b;
    xs_buf_init(&b, 8);
    assert_int_equal(xs_buf_adds(&b, "12345678"), 0);
    assert_int_equal(xs_buf_add(&b, "9", 1), XS_ETOOBIG);
    /* Later appends do nothing, even one that would fit, and report the first failure. */
    assert_int_equal(xs_buf_add(&b, "abc", 3), XS_ETOOBIG);
    assert_int_equal(xs_buf_add(&b, "", 0), XS_ETOOBIG);
    assert_int_equal(xs_buf_adds(&b, ""), XS_ETOOBIG);
    assert_int_equal(xs_buf_addf(&b, "%d", 1), XS_ETOOBIG);
    assert_int_equal(xs_buf_error(&b), XS_ETOOBIG);
    assert_string_equal(xs_buf_ptr(&b), "12345678");
    /* A failed buffer hands nothing over, and frees what it held. */
    size_t len = 99;
    assert_null(xs_buf_take(&b, &len));
    assert_int_equal(xs_buf_error(&b), XS_ETOOBIG);
    xs_buf_reset(&b);
    assert_int_equal(xs_buf_error(&b), 0);
    assert_int_equal(xs_buf_adds(&b, "ok"), 0);
    char *s = xs_buf_take(&b, &len);
    assert_string_equal(s, "ok");
    assert_int_equal(len, 2);
    free(s);
    xs_buf_free(&b);
}

static void test_buf_cap_exact_fits(void **state)
{
    (void)state;
    xs_buf b;
    xs_buf_init(&b, 100);
    for (int i = 0; i < 100; i++)
        assert_int_equal(xs_buf_add(&b, "y", 1), 0);
    assert_true(b.cap <= 101);
    assert_int_equal(xs_buf_add(&b, "y", 1), XS_ETOOBIG);
    /* Undoing a piece forgets the error. */
    xs_buf_truncate(&b, 50);
    assert_int_equal(xs_buf_error(&b), 0);
    assert_int_equal(xs_buf_add(&b, "z", 1), 0);
    assert_int_equal(xs_buf_len(&b), 51);
    xs_buf_free(&b);
}

static void test_buf_addf_whole_or_nothing(void **state)
{
    (void)state;
    xs_buf b;
    xs_buf_init(&b, 10);
    assert_int_equal(xs_buf_addf(&b, "%s=%d", "a", 42), 0);
    assert_string_equal(xs_buf_ptr(&b), "a=42");
    /* Too long for the cap: nothing of it is appended. */
    assert_int_equal(xs_buf_addf(&b, "%s", "0123456789"), XS_ETOOBIG);
    assert_string_equal(xs_buf_ptr(&b), "a=42");
    xs_buf_free(&b);

    /* Longer than any fixed scratch array: formatted whole. */
    xs_buf_init(&b, 0);
    char big[600];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(xs_buf_addf(&b, "<%s>", big), 0);
    assert_int_equal(xs_buf_len(&b), sizeof(big) + 1);
    xs_buf_free(&b);
}

static void test_buf_take_empty_gives_empty_string(void **state)
{
    (void)state;
    xs_buf b;
    xs_buf_init(&b, 0);
    size_t len = 7;
    char *s = xs_buf_take(&b, &len);
    assert_non_null(s);
    assert_string_equal(s, "");
    assert_int_equal(len, 0);
    free(s);
}

static void test_buf_reserve_commit(void **state)
{
    (void)state;
    xs_buf b;
    xs_buf_init(&b, 0);
    assert_int_equal(xs_buf_reserve(&b, 5), 0);
    memcpy(b.p + b.len, "hello", 5);
    xs_buf_commit(&b, 5);
    assert_string_equal(xs_buf_ptr(&b), "hello");
    xs_buf_free(&b);
}

static void test_buf_xml_escape_attr(void **state)
{
    (void)state;
    xs_buf b;
    xs_buf_init(&b, 0);
    const char in[] = "a&b<c>d'e\"f\tg\nh\ri";
    assert_int_equal(xs_buf_add_xml_escaped(&b, in, sizeof(in) - 1, XS_XML_ATTR), 0);
    assert_string_equal(xs_buf_ptr(&b), "a&amp;b&lt;c&gt;d&apos;e&quot;f&#9;g&#10;h&#13;i");
    xs_buf_free(&b);
}

static void test_buf_xml_escape_text(void **state)
{
    (void)state;
    xs_buf b;
    xs_buf_init(&b, 0);
    const char in[] = "a&b<c>d'e\"f\tg\nh\ri";
    assert_int_equal(xs_buf_add_xml_escaped(&b, in, sizeof(in) - 1, XS_XML_TEXT), 0);
    assert_string_equal(xs_buf_ptr(&b), "a&amp;b&lt;c&gt;d'e\"f\tg\nh&#13;i");
    /* Nothing to escape, and an empty input. */
    xs_buf_reset(&b);
    assert_int_equal(xs_buf_add_xml_escaped(&b, "plain", 5, XS_XML_TEXT), 0);
    assert_int_equal(xs_buf_add_xml_escaped(&b, NULL, 0, XS_XML_TEXT), 0);
    assert_string_equal(xs_buf_ptr(&b), "plain");
    xs_buf_free(&b);
}

static void test_buf_xml_escape_respects_cap(void **state)
{
    (void)state;
    xs_buf b;
    xs_buf_init(&b, 6);
    assert_int_equal(xs_buf_add_xml_escaped(&b, "<<", 2, XS_XML_TEXT), XS_ETOOBIG);
    assert_int_equal(xs_buf_error(&b), XS_ETOOBIG);
    xs_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_add_grows_and_terminates),
        cmocka_unit_test(test_buf_cap_hit_is_sticky),
        cmocka_unit_test(test_buf_cap_exact_fits),
        cmocka_unit_test(test_buf_addf_whole_or_nothing),
        cmocka_unit_test(test_buf_take_empty_gives_empty_string),
        cmocka_unit_test(test_buf_reserve_commit),
        cmocka_unit_test(test_buf_xml_escape_attr),
        cmocka_unit_test(test_buf_xml_escape_text),
        cmocka_unit_test(test_buf_xml_escape_respects_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
