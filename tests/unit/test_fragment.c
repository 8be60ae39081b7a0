/* Unit tests for parsing a fragment in a namespace context (inspect/fragment.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <libxml/parser.h>

#include "inspect/error.h"
#include "inspect/fragment.h"

static const xs_attr decls[] = {
    {.prefix = NULL, .uri = "jabber:client"},
    {.prefix = "stream", .uri = "http://etherx.jabber.org/streams"},
    {.prefix = "q", .uri = "urn:q:'quoted'"},
    {.prefix = "skipped", .uri = NULL},
};

static int parse(const char *raw, unsigned flags, xmlDoc **doc, xmlNode **el,
                 xs_fragment_error *err)
{
    xs_fragment_ctx ctx = {.decls = decls, .n_decls = 4, .flags = flags};
    return xs_fragment_parse(&ctx, raw, strlen(raw), doc, el, err);
}

/* Expects raw to be refused with rc and a message containing `msg`. */
static void refused(const char *raw, unsigned flags, int rc, const char *msg)
{
    xmlDoc *doc = (xmlDoc *)1;
    xmlNode *el = (xmlNode *)1;
    xs_fragment_error err;
    assert_int_equal(parse(raw, flags, &doc, &el, &err), rc);
    assert_null(doc);
    assert_null(el);
    assert_non_null(strstr(err.message, msg));
}

static void test_fragment_names_resolve_in_the_context(void **state)
{
    (void)state;
    xmlDoc *doc;
    xmlNode *el;
    assert_int_equal(parse(" \n<message><q:x a='1'/></message>\t", 0, &doc, &el, NULL), 0);
    assert_string_equal((const char *)el->name, "message");
    assert_string_equal((const char *)el->ns->href, "jabber:client");
    assert_string_equal((const char *)xmlDocGetRootElement(doc)->name, "w");
    /* The declared URI, quotes in it, reads back exactly. */
    assert_string_equal((const char *)el->children->ns->href, "urn:q:'quoted'");
    xmlFreeDoc(doc);

    assert_int_equal(parse("<stream:features/>", 0, &doc, &el, NULL), 0);
    assert_string_equal((const char *)el->ns->href, "http://etherx.jabber.org/streams");
    xmlFreeDoc(doc);
}

static void test_fragment_not_well_formed_says_where(void **state)
{
    (void)state;
    xmlDoc *doc;
    xmlNode *el;
    xs_fragment_error err;
    /* libxml2 stops at the end tag that does not match; the offset is in bytes of the fragment,
     * the two-byte character in it counted once as a column: after the name of the end tag. */
    assert_int_equal(parse("<a>\xc3\xa9</b>", 0, &doc, &el, &err), XS_ENOTWF);
    assert_non_null(strstr(err.message, "Opening and ending tag mismatch"));
    assert_int_equal(err.off, 9);
    /* A namespace error is one too (not namespace-well-formed). */
    refused("<skipped:a/>", 0, XS_ENOTWF, "Namespace prefix skipped on a is not defined");
    refused("<a>&nope;</a>", 0, XS_ENOTWF, "nope");
    refused("<a><![CDATA[x]]>", 0, XS_ENOTWF, "");
}

static void test_fragment_restricted_xml_refused(void **state)
{
    (void)state;
    refused("<a><!-- no --></a>", 0, XS_ERESTRICTED, "comments");
    refused("<a><?pi x?></a>", 0, XS_ERESTRICTED, "processing instructions");
    refused("<!-- no --><a/>", XS_FRAGMENT_CONTENT, XS_ERESTRICTED, "comments");
    refused("<!DOCTYPE a><a/>", 0, XS_ENOTWF, "");
}

static void test_fragment_one_element_only(void **state)
{
    (void)state;
    refused("<a/><b/>", 0, XS_EBADFORMAT, "exactly one element");
    refused("x<a/>", 0, XS_EBADFORMAT, "exactly one element");
    refused("<a/><![CDATA[ ]]>", 0, XS_EBADFORMAT, "exactly one element");
    refused("   ", 0, XS_EBADFORMAT, "exactly one element");
    refused("", 0, XS_EBADFORMAT, "empty XML fragment");
    refused("", XS_FRAGMENT_CONTENT, XS_EBADFORMAT, "empty XML fragment");
}

static void test_fragment_content_and_cdata_flags(void **state)
{
    (void)state;
    xmlDoc *doc;
    xmlNode *el;
    assert_int_equal(parse(" text <a/><b/>", XS_FRAGMENT_CONTENT, &doc, &el, NULL), 0);
    assert_int_equal(el->type, XML_TEXT_NODE);
    assert_string_equal((const char *)el->next->name, "a");
    xmlFreeDoc(doc);
    /* A blank CDATA section is blank text with NOCDATA, so one element with blanks around. */
    assert_int_equal(
        parse("<a><![CDATA[x]]></a><![CDATA[ ]]>", XS_FRAGMENT_NOCDATA, &doc, &el, NULL), 0);
    assert_int_equal(el->children->type, XML_TEXT_NODE);
    xmlFreeDoc(doc);
    assert_int_equal(parse("<a><![CDATA[x]]></a>", 0, &doc, &el, NULL), 0);
    assert_int_equal(el->children->type, XML_CDATA_SECTION_NODE);
    xmlFreeDoc(doc);
}

static void test_fragment_every_cut_refused(void **state)
{
    (void)state;
    const char *raw = "<message to='a@b'><body>h\xc3\xa9</body><q:x/></message>";
    size_t len = strlen(raw);
    xs_fragment_ctx ctx = {.decls = decls, .n_decls = 4};
    /* Every proper prefix of the one element is refused, none crashes or leaks; the whole one
     * parses. */
    for (size_t k = 0; k <= len; k++) {
        xmlDoc *doc;
        xmlNode *el;
        int rc = xs_fragment_parse(&ctx, raw, k, &doc, &el, NULL);
        if (k == len) {
            assert_int_equal(rc, 0);
            xmlFreeDoc(doc);
        } else {
            assert_true(rc == XS_ENOTWF || rc == XS_EBADFORMAT);
            assert_null(doc);
        }
    }
}

static void test_fragment_other_root_name(void **state)
{
    (void)state;
    xs_fragment_ctx ctx = {.root = "xs-fragment"};
    xmlDoc *doc;
    xmlNode *el;
    assert_int_equal(xs_fragment_parse(&ctx, "<a/>", 4, &doc, &el, NULL), 0);
    assert_string_equal((const char *)xmlDocGetRootElement(doc)->name, "xs-fragment");
    assert_null(el->ns);
    xmlFreeDoc(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fragment_names_resolve_in_the_context),
        cmocka_unit_test(test_fragment_not_well_formed_says_where),
        cmocka_unit_test(test_fragment_restricted_xml_refused),
        cmocka_unit_test(test_fragment_one_element_only),
        cmocka_unit_test(test_fragment_content_and_cdata_flags),
        cmocka_unit_test(test_fragment_every_cut_refused),
        cmocka_unit_test(test_fragment_other_root_name),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    xmlCleanupParser();
    return rc;
}
