/* Unit tests of the protocol checks (inspect/check.h, jid.h, sm.h): every check firing on bad
 * traffic and none on good traffic, JID validation, XEP-0198 counting and resumption, the SCRAM
 * downgrade, the options and the cost of bulk stanzas. The harness is in analysis_harness.h. */
#include "analysis_harness.h"

/* ---- checks ---------------------------------------------------------------------------------- */

/* A whole valid session: nothing to say. */
BOTH(test_check_valid_session_silent)
{
    harness h;
    h_open(&h);
    C(&h, C2S_HEADER);
    S(&h, S2C_HEADER);
    S(&h, "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
          "<mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms>"
          "</stream:features>");
    C(&h, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA=="
          "</auth>");
    S(&h, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    C(&h, C2S_HEADER);
    S(&h, S2C_HEADER);
    S(&h, "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
          "<sm xmlns='urn:xmpp:sm:3'/></stream:features>");
    C(&h, BIND_SET);
    S(&h, BIND_RESULT);
    C(&h, "<iq type='get' id='ro'><query xmlns='jabber:iq:roster'/></iq>");
    S(&h, "<iq type='result' id='ro' to='alice@example.test/r'><query xmlns='jabber:iq:roster'>"
          "<item jid='bob@example.test'/></query></iq>");
    C(&h, "<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    S(&h, "<enabled xmlns='urn:xmpp:sm:3' id='sm-1' resume='true'/>");
    C(&h, "<presence><show>away</show></presence>");
    C(&h, "<presence type='subscribe' to='bob@example.test'/>");
    C(&h, "<message to='bob@example.test/phone' type='chat' id='m1'><body>hi</body></message>");
    C(&h, "<message to='room@conference.example.test' type='groupchat'><body>x</body></message>");
    C(&h, "<message to='café.example.test'><body>IDN</body></message>");
    C(&h, "<message to='[::1]' type='headline'/><message to='127.0.0.1' type='normal'/>");
    C(&h, "<r xmlns='urn:xmpp:sm:3'/>");
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='7'/>");
    S(&h, "<message from='bob@example.test/x' to='alice@example.test/r' type='error'>"
          "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
          "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no</text></error></message>");
    S(&h, "<iq type='set' id='push' to='alice@example.test/r'><query xmlns='jabber:iq:roster'>"
          "<item jid='carol@example.test'/></query></iq>");
    C(&h, "<iq type='result' id='push'/>");
    S(&h, "<r xmlns='urn:xmpp:sm:3'/>");
    C(&h, "<a xmlns='urn:xmpp:sm:3' h='2'/>");
    C(&h, "</stream:stream>");
    S(&h, "</stream:stream>");
    h_other(&h, XS_OBS_CLOSED, "1");
    assert_no_checks(&h);
    assert_true(h.n_recs > 30);
    h_free(&h);
}

BOTH(test_check_iq_shape)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    C(&h, "<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert_string_equal(last(&h)->checks, "iq-no-id ");
    C(&h, "<iq id='nt'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert_string_equal(last(&h)->checks, "iq-bad-type ");
    C(&h, "<iq id='bt' type='fetch'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert_string_equal(last(&h)->checks, "iq-bad-type ");
    assert_non_null(strstr(last(&h)->texts, "'fetch'"));
    C(&h, "<iq id='p0' type='get'/>");
    assert_string_equal(last(&h)->checks, "iq-payload-count ");
    C(&h, "<iq id='p2' type='set'><a xmlns='urn:x'/><b xmlns='urn:x'/></iq>");
    assert_string_equal(last(&h)->checks, "iq-payload-count ");
    assert_non_null(strstr(last(&h)->texts, "holds 2"));
    S(&h, "<iq id='p2' type='result'><a xmlns='urn:x'/><b xmlns='urn:x'/></iq>");
    assert_string_equal(last(&h)->checks, "iq-payload-count ");
    /* Text and comments-free whitespace are not children; CDATA is not an element. */
    C(&h, "<iq id='ok' type='get'>\n  <q xmlns='urn:x'><![CDATA[<fake/>]]></q>\n</iq>");
    assert_string_equal(last(&h)->checks, "");
    h_free(&h);
}

BOTH(test_check_error_condition)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    C(&h, "<iq type='get' id='e1'><ping xmlns='urn:xmpp:ping'/></iq>");
    S(&h, "<iq type='error' id='e1'/>");
    assert_string_equal(last(&h)->checks, "error-no-condition ");
    S(&h, "<message type='error'><error type='cancel'><text "
          "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>only text</text></error></message>");
    assert_string_equal(last(&h)->checks, "error-no-condition ");
    S(&h, "<presence type='error'><error type='cancel'><gone xmlns='urn:other'/></error>"
          "</presence>");
    assert_string_equal(last(&h)->checks, "error-no-condition ");
    /* Prefixed condition, declared on the stanza: fine. */
    S(&h, "<presence type='error' xmlns:s='urn:ietf:params:xml:ns:xmpp-stanzas'><error "
          "type='auth'><s:forbidden/></error></presence>");
    assert_string_equal(last(&h)->checks, "");
    h_free(&h);
}

BOTH(test_check_stanza_types)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    C(&h, "<presence type='available'/>");
    assert_string_equal(last(&h)->checks, "presence-bad-type ");
    C(&h, "<message type='private'/>");
    assert_string_equal(last(&h)->checks, "message-bad-type ");
    C(&h, "<presence type='unavailable'/><message type='chat'/>");
    assert_string_equal(last(&h)->checks, "");
    h_free(&h);
}

BOTH(test_check_before_bind)
{
    harness h;
    h_open(&h);
    h_streams(&h);
    /* In-band registration is allowed before binding (XEP-0077). */
    C(&h, "<iq type='get' id='reg'><query xmlns='jabber:iq:register'/></iq>");
    S(&h, "<iq type='result' id='reg'><query xmlns='jabber:iq:register'/></iq>");
    assert_int_equal(count(&h, "stanza-before-bind"), 0);
    C(&h, "<message to='bob@example.test'><body>too early</body></message>");
    assert_string_equal(last(&h)->checks, "stanza-before-bind ");
    C(&h, "<presence/>");
    assert_int_equal(count(&h, "stanza-before-bind"), 1); /* once per stream */
    C(&h, BIND_SET);
    S(&h, BIND_RESULT);
    C(&h, "<presence/>");
    assert_int_equal(count(&h, "stanza-before-bind"), 1);
    h_free(&h);

    /* Without pairing the same: registration is allowed, a message is not. */
    xs_analysis_cfg checks_only = {.checks = 1};
    h_open_cfg(&h, &checks_only);
    h_streams(&h);
    C(&h, "<iq type='set' id='reg'><query xmlns='jabber:iq:register'/></iq>");
    S(&h, "<iq type='result' id='reg'/>");
    assert_no_checks(&h);
    C(&h, "<message to='bob@example.test'/>");
    assert_string_equal(last(&h)->checks, "stanza-before-bind ");
    C(&h, BIND_SET);
    S(&h, BIND_RESULT);
    C(&h, "<message to='bob@example.test'/>");
    assert_string_equal(last(&h)->checks, "");
    h_free(&h);

    /* SASL2 with Bind2: bound by the success. */
    h_open(&h);
    h_streams(&h);
    S(&h, "<success xmlns='urn:xmpp:sasl:2'><authorization-identifier>alice@example.test/r"
          "</authorization-identifier><bound xmlns='urn:xmpp:bind:0'/></success>");
    C(&h, "<presence/>");
    assert_no_checks(&h);
    h_free(&h);

    /* A component stream has no binding. */
    h_open(&h);
    C(&h, "<stream:stream xmlns='jabber:component:accept' xmlns:stream='" NS_STREAMS
          "' to='c.example.test'>");
    C(&h, "<message from='x@c.example.test' to='a@example.test'/>");
    assert_no_checks(&h);
    h_free(&h);
}

BOTH(test_check_jid_in_stanza)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    C(&h, "<message to='a b@example.test'/>");
    assert_string_equal(last(&h)->checks, "jid-invalid ");
    assert_non_null(strstr(last(&h)->texts, "'to' JID"));
    assert_non_null(strstr(last(&h)->texts, "space"));
    S(&h, "<presence from='alice@exa_mple.test'/>");
    assert_string_equal(last(&h)->checks, "jid-invalid ");
    C(&h, "<message to='bob@ex&amp;ample.test' from='@example.test'/>");
    assert_string_equal(last(&h)->checks, "jid-invalid jid-invalid ");
    C(&h, "<message to='bob@bücher.example'/><message to='bob@bücher.example'/>");
    assert_string_equal(last(&h)->checks, "");
    h_free(&h);
}

static void test_jid_valid(void **state)
{
    static const char *const good[] = {
        "example.test",
        "alice@example.test",
        "alice@example.test/phone",
        "juliet@example.com/foo@bar",
        "juliet@example.com/foo/bar",
        "juliet@example.com/a resource with spaces",
        "example.test.",
        "EXAMPLE.test",
        "[::1]",
        "[2001:db8::1]",
        "[::ffff:192.0.2.1]",
        "[2001:db8:0:0:0:0:0:1]",
        "192.0.2.1",
        "bücher.example",
        "élise@bücher.example/résumé",
        "xn--bcher-kva.example",
        "fußball.example",
        "a-b.c-d.example",
        "1.2.3.example",
    };
    static const char *const bad[] = {
        "",
        "@example.test",
        "alice@",
        "alice@example.test/",
        "/res",
        "a\"b@example.test",
        "a&b@example.test",
        "a'b@example.test",
        "a:b@example.test",
        "a<b@example.test",
        "a>b@example.test",
        "a b@example.test",
        "a\tb@example.test",
        ("a\xc2\xa0"
         "b@example.test"), /* no-break space */
        "a\x7f@example.test",
        "alice@example.test/a\x01z",
        "alice@example.test/a\xc2\x85z", /* C1 */
        "a\xff@example.test",
        "alice@exa_mple.test",
        "alice@-example.test",
        "alice@example-.test",
        "alice@example..test",
        "alice@.example.test",
        "[::g]",
        "[1:2:3:4:5:6:7:8:9]",
        "[::1",
        "xn--zz.example",
        "bad\xe2\x80\x83space.example", /* em space in a domain */
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *why = "unset";
        if (!xs_jid_valid(good[i], strlen(good[i]), &why))
            fail_msg("'%s' refused: %s", good[i], why);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = NULL;
        if (xs_jid_valid(bad[i], strlen(bad[i]), &why))
            fail_msg("'%s' accepted", bad[i]);
        assert_non_null(why);
    }
    /* Lengths: each part up to 1023 bytes; a label up to 63. */
    char *j = malloc(3000);
    memset(j, 'a', 1023);
    strcpy(j + 1023, "@example.test");
    assert_true(xs_jid_valid(j, strlen(j), NULL));
    memset(j, 'a', 1024);
    strcpy(j + 1024, "@example.test");
    assert_false(xs_jid_valid(j, strlen(j), NULL));
    strcpy(j, "a@example.test/");
    memset(j + 15, 'r', 1023);
    j[15 + 1023] = '\0';
    assert_true(xs_jid_valid(j, strlen(j), NULL));
    strcat(j, "r");
    assert_false(xs_jid_valid(j, strlen(j), NULL));
    memset(j, 'd', 63);
    strcpy(j + 63, ".example");
    assert_true(xs_jid_valid(j, strlen(j), NULL));
    memset(j, 'd', 64);
    strcpy(j + 64, ".example");
    assert_false(xs_jid_valid(j, strlen(j), NULL));
    /* A domain over 1023 bytes of short labels. */
    size_t n = 0;
    while (n < 1030) {
        memcpy(j + n, "abc.", 4);
        n += 4;
    }
    memcpy(j + n, "example", 8);
    assert_false(xs_jid_valid(j, strlen(j), NULL));
    /* Not NUL-terminated: only len bytes count. */
    assert_true(xs_jid_valid("alice@example.test/xx", 18, NULL));
    free(j);
}

/* ---- stream management ----------------------------------------------------------------------- */

static void sm_enable(harness *h, const char *id)
{
    char xml[128];
    C(h, "<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    snprintf(xml, sizeof(xml), "<enabled xmlns='urn:xmpp:sm:3' id='%s' resume='true'/>", id);
    S(h, xml);
}

BOTH(test_sm_h_counts)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    C(&h, "<presence/>"); /* before <enable/>: not counted */
    sm_enable(&h, "s1");
    C(&h, "<message type='chat'/><message type='chat'/><presence/>");
    C(&h, "<r xmlns='urn:xmpp:sm:3'/>");
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='3'/>");
    assert_no_checks(&h);
    /* A rule drops the fifth: the server counts one less than the client sent. */
    C(&h, "<message type='chat'/>");
    h.verdict = "drop";
    C(&h, "<message type='chat'/>");
    h.verdict = NULL;
    C(&h, "<r xmlns='urn:xmpp:sm:3'/>");
    C(&h, "<message type='chat'/>"); /* after the <r/>: may be counted or not */
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='4'/>");
    assert_string_equal(last(&h)->checks, "sm-h-mismatch ");
    assert_non_null(strstr(last(&h)->texts, "had sent 5 stanzas before its <r/>: 1 stanza would "
                                            "be lost"));
    assert_non_null(strstr(last(&h)->texts, "a rule dropped 1"));
    /* Still one short at the next <r/>: the same loss, not said again. */
    C(&h, "<r xmlns='urn:xmpp:sm:3'/>");
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='5'/>");
    assert_string_equal(last(&h)->checks, "");
    /* More than sent. */
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='9'/>");
    assert_string_equal(last(&h)->checks, "sm-h-mismatch ");
    assert_non_null(strstr(last(&h)->texts, "sent only 6"));
    /* Going back. */
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='4'/>");
    assert_string_equal(last(&h)->checks, "sm-h-mismatch ");
    assert_non_null(strstr(last(&h)->texts, "went back"));
    /* The client's acks of the server's stanzas: counted after <enabled/>. */
    S(&h, "<message type='chat' to='alice@example.test/r'/><iq type='get' id='sp'>"
          "<ping xmlns='urn:xmpp:ping'/></iq>");
    S(&h, "<r xmlns='urn:xmpp:sm:3'/>");
    C(&h, "<a xmlns='urn:xmpp:sm:3' h='2'/>");
    assert_string_equal(last(&h)->checks, "");
    C(&h, "<a xmlns='urn:xmpp:sm:3' h='not-a-number'/>");
    assert_string_equal(last(&h)->checks, "");
    h_free(&h);
}

BOTH(test_sm_h_wraps)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    C(&h, "<enable xmlns='urn:xmpp:sm:3'/>");
    /* h counts mod 2^32: an ack of 4294967295 then 0 goes forward. */
    S(&h, "<enabled xmlns='urn:xmpp:sm:3'/>");
    C(&h, "<presence/>");
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='1'/>");
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='4294967296'/>"); /* out of range: ignored */
    assert_no_checks(&h);
    h_free(&h);
}

BOTH(test_sm_resume_mismatch)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    sm_enable(&h, "prev-1");
    C(&h, "<message type='chat'/><message type='chat'/><message type='chat'/>");
    S(&h, "<message type='chat'/><message type='chat'/><message type='chat'/>"
          "<message type='chat'/><message type='chat'/>");
    h_other(&h, XS_OBS_CLOSED, "1");
    /* Session 2 resumes: the client got 4 of the server's 5, the server 3 of the client's 3. */
    h.session = "2";
    xs_parser_free(h.p[0]);
    xs_parser_free(h.p[1]);
    unsigned opts = XS_PARSER_RAW | XS_PARSER_AUTO_RESTART | (with_tree ? XS_PARSER_TREE : 0);
    for (int k = 0; k < 2; k++)
        assert_int_equal(xs_parser_new(NULL, opts, on_parser_event, &h, &h.p[k]), 0);
    h_streams(&h);
    C(&h, "<resume xmlns='urn:xmpp:sm:3' previd='prev-1' h='4'/>");
    assert_string_equal(last(&h)->checks, "sm-resume-mismatch ");
    assert_non_null(strstr(last(&h)->texts, "server sent 5 stanzas in session 1: 1 would be sent "
                                            "again"));
    S(&h, "<resumed xmlns='urn:xmpp:sm:3' previd='prev-1' h='3'/>");
    assert_string_equal(last(&h)->checks, "");
    /* Resumed: bound, and the counters go on from the old ones. */
    C(&h, "<message type='chat'/>");
    assert_string_equal(last(&h)->checks, "");
    C(&h, "<r xmlns='urn:xmpp:sm:3'/>");
    S(&h, "<a xmlns='urn:xmpp:sm:3' h='4'/>");
    assert_string_equal(last(&h)->checks, "");
    h_other(&h, XS_OBS_CLOSED, "2");

    /* Session 3 resumes session 2's id while the server says it handled too many. */
    h.session = "3";
    xs_parser_free(h.p[0]);
    xs_parser_free(h.p[1]);
    for (int k = 0; k < 2; k++)
        assert_int_equal(xs_parser_new(NULL, opts, on_parser_event, &h, &h.p[k]), 0);
    h_streams(&h);
    C(&h, "<resume xmlns='urn:xmpp:sm:3' previd='prev-1' h='4'/>");
    assert_string_equal(last(&h)->checks, "");
    S(&h, "<resumed xmlns='urn:xmpp:sm:3' previd='prev-1' h='6'/>");
    assert_string_equal(last(&h)->checks, "sm-resume-mismatch ");
    assert_non_null(strstr(last(&h)->texts, "sent only 4 stanzas in session 2"));
    /* An id never seen: nothing to compare. */
    C(&h, "<resume xmlns='urn:xmpp:sm:3' previd='other' h='5'/>");
    assert_string_equal(last(&h)->checks, "");
    h_free(&h);
}

/* The old session still open when the client resumes (the server has not noticed it died). */
BOTH(test_sm_resume_live_session)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    sm_enable(&h, "live");
    S(&h, "<message type='chat'/><message type='chat'/>");
    xs_parser *old[2] = {h.p[0], h.p[1]};
    unsigned opts = XS_PARSER_RAW | XS_PARSER_AUTO_RESTART | (with_tree ? XS_PARSER_TREE : 0);
    for (int k = 0; k < 2; k++)
        assert_int_equal(xs_parser_new(NULL, opts, on_parser_event, &h, &h.p[k]), 0);
    h.session = "2";
    h_streams(&h);
    C(&h, "<resume xmlns='urn:xmpp:sm:3' previd='live' h='2'/>");
    S(&h, "<resumed xmlns='urn:xmpp:sm:3' previd='live' h='0'/>");
    assert_no_checks(&h);
    h_other(&h, XS_OBS_CLOSED, "1");
    h_other(&h, XS_OBS_CLOSED, "2");
    xs_parser_free(old[0]);
    xs_parser_free(old[1]);
    h_free(&h);
}

/* ---- SASL downgrade -------------------------------------------------------------------------- */

/* base64 of "y,,n=alice,r=abcdef" and "n,,n=alice,r=abcdef" */
#define SCRAM_Y "eSwsbj1hbGljZSxyPWFiY2RlZg=="
#define SCRAM_N "biwsbj1hbGljZSxyPWFiY2RlZg=="
#define FEATURES_PLUS                                                                              \
    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"                       \
    "<mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-1</mechanism></mechanisms>"       \
    "</stream:features>"
#define AUTH(b64)                                                                                  \
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>" b64 "</auth>"

BOTH(test_check_sasl_downgrade)
{
    harness h;
    h_open(&h);
    h_streams(&h);
    h.rewritten = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                  "<mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>";
    S(&h, FEATURES_PLUS);
    h.rewritten = NULL;
    C(&h, AUTH(SCRAM_Y));
    assert_string_equal(last(&h)->checks, "sasl-downgrade ");
    assert_non_null(strstr(last(&h)->texts, "SCRAM-SHA-1-PLUS"));
    assert_non_null(strstr(last(&h)->texts, "sasl-plus rewrite"));
    h_free(&h);

    /* Flag 'n': no downgrade. */
    h_open(&h);
    h_streams(&h);
    S(&h, FEATURES_PLUS);
    C(&h, AUTH(SCRAM_N));
    assert_no_checks(&h);
    h_free(&h);

    /* 'y' without -PLUS on offer: what 'y' is for. */
    h_open(&h);
    h_streams(&h);
    S(&h, "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
          "<mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>");
    C(&h, AUTH(SCRAM_Y));
    assert_no_checks(&h);
    h_free(&h);
}

/* ---- options, costs, output ------------------------------------------------------------------ */

BOTH(test_check_off)
{
    harness h;
    xs_analysis_cfg cfg = {0};
    h_open_cfg(&h, &cfg);
    h_bound(&h);
    C(&h, "<iq type='get'/><message to='a b@x' type='bad'/>");
    S(&h, "<iq type='result' id='zz'/>");
    h_other(&h, XS_OBS_CLOSED, "1");
    for (size_t i = 0; i < h.n_recs; i++) {
        assert_string_equal(h.recs[i].checks, "");
        assert_null(h.recs[i].pair_dir);
        assert_string_equal(h.recs[i].summary, "");
    }
    h_free(&h);

    /* Pairing alone. */
    xs_analysis_cfg pairing = {.pairing = 1};
    h_open_cfg(&h, &pairing);
    h_bound(&h);
    assert_non_null(last(&h)->pair_dir);
    C(&h, "<message to='a b@x' type='bad'/>");
    S(&h, "<iq type='result' id='zz'/>");
    assert_int_equal(total_checks(&h), 1);
    assert_int_equal(count(&h, "iq-unknown-id"), 1);
    h_free(&h);
}

/* Messages and presences in bulk cost the analyser no allocation. */
BOTH(test_check_bulk_no_allocation)
{
    harness h;
    h_open(&h);
    h_bound(&h);
    sm_enable(&h, "bulk");
    C(&h, "<message to='bob@example.test' type='chat'><body>warm up</body></message>");
    S(&h, "<message from='bob@example.test/x' to='alice@example.test/r' type='chat'>"
          "<body>warm up</body></message>");
    h.allocs = 0;
    for (int i = 0; i < 500; i++) {
        C(&h, "<message to='bob@example.test' type='chat' id='b'><body>hello</body></message>");
        S(&h, "<message from='bob@bücher.example/x' to='alice@example.test/r' type='chat'>"
              "<body>hi</body></message>");
        C(&h, "<presence><show>dnd</show></presence>");
        h.n_recs = 0;
    }
    assert_int_equal(h.allocs, 0);
    h_free(&h);
}

int main(void)
{
    static const xs_allocator counting = {count_malloc, count_realloc, free};
    xs_alloc_set(&counting);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_valid_session_silent),
        cmocka_unit_test(test_check_iq_shape),
        cmocka_unit_test(test_check_error_condition),
        cmocka_unit_test(test_check_stanza_types),
        cmocka_unit_test(test_check_before_bind),
        cmocka_unit_test(test_check_jid_in_stanza),
        cmocka_unit_test(test_jid_valid),
        cmocka_unit_test(test_sm_h_counts),
        cmocka_unit_test(test_sm_h_wraps),
        cmocka_unit_test(test_sm_resume_mismatch),
        cmocka_unit_test(test_sm_resume_live_session),
        cmocka_unit_test(test_check_sasl_downgrade),
        cmocka_unit_test(test_check_off),
        cmocka_unit_test(test_check_bulk_no_allocation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
