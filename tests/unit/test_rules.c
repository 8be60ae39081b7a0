/* Unit tests of the rule language and engine (filters/rules*.c, filters/xpath_ns.c).
 *
 * Stanzas are real parser events: a stream header and the stanza are fed to xs_parser with
 * XS_PARSER_TREE | XS_PARSER_RAW, and the rules are applied from the event callback, exactly as
 * the proxy does. Every application is done twice, once with the stream fed whole and once one
 * byte at a time, and both must give the same result; and once more the slow reference way
 * (xs_rules.reference: a copy of every stanza, libxml2 for every XPath, every regex tried),
 * which the fast paths must agree with. Every application must leave the parser's tree as it
 * was. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <libxml/c14n.h>
#include <libxml/parser.h>

#include "features_ref.h"
#include "filters/rules.h"
#include "proxy/cmd/rules_cmd.h"
#include "filters/rules_impl.h"
#include "inspect/error.h"
#include "inspect/parser.h"

#ifndef XS_SOURCE_DIR
#define XS_SOURCE_DIR "."
#endif

#define C2S_HEADER                                                                                 \
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "                                   \
    "xmlns:stream='http://etherx.jabber.org/streams' to='example.org' version='1.0'>"
#define S2C_HEADER                                                                                 \
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "                                   \
    "xmlns:stream='http://etherx.jabber.org/streams' from='example.org' id='s1' "                  \
    "version='1.0'>"
#define S2S_HEADER                                                                                 \
    "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "        \
    "from='a.example' to='b.example' version='1.0'>"

/* ---- helpers --------------------------------------------------------------------------------- */

static xs_rules *compile(const char *text)
{
    xs_rules *r = NULL;
    xs_rule_diag d = {0};
    int rc = xs_rules_parse(text, strlen(text), "t.rules", 0, &r, &d);
    for (size_t i = 0; i < d.n; i++)
        print_message("unexpected: %s\n", d.errors[i].message);
    assert_int_equal(rc, 0);
    assert_non_null(r);
    xs_rule_diag_clear(&d);
    return r;
}

typedef struct run {
    xs_rules *rules;
    xs_rule_ctx ctx;
    xs_rule_result res;
    int rc;
    int stanzas;
    int applied;
} run;

static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* What the parser's tree of a stanza looks like: its serialization and the pointers that tie it
 * to the stream element. */
typedef struct tree_state {
    char *xml;
    xmlNode *parent, *prev, *next, *first, *last;
    xmlDoc *doc;
    xmlNs *stream_ns;
} tree_state;

static void tree_state_take(const xmlNode *node, tree_state *t)
{
    xmlBuffer *b = xmlBufferCreate();
    assert_non_null(b);
    assert_true(xmlNodeDump(b, node->doc, (xmlNode *)node, 0, 0) >= 0);
    t->xml = strdup((const char *)xmlBufferContent(b));
    xmlBufferFree(b);
    t->parent = node->parent;
    t->prev = node->prev;
    t->next = node->next;
    t->doc = node->doc;
    t->first = node->parent != NULL ? node->parent->children : NULL;
    t->last = node->parent != NULL ? node->parent->last : NULL;
    t->stream_ns = node->parent != NULL ? node->parent->nsDef : NULL;
}

/* Applying rules leaves the parser's tree exactly as it was. */
static void assert_tree_untouched(const xmlNode *node, tree_state *before)
{
    tree_state after;
    tree_state_take(node, &after);
    assert_string_equal(after.xml, before->xml);
    assert_ptr_equal(after.parent, before->parent);
    assert_ptr_equal(after.prev, before->prev);
    assert_ptr_equal(after.next, before->next);
    assert_ptr_equal(after.doc, before->doc);
    assert_ptr_equal(after.first, before->first);
    assert_ptr_equal(after.last, before->last);
    assert_ptr_equal(after.stream_ns, before->stream_ns);
    free(after.xml);
    free(before->xml);
}

static int on_event(void *user, const xs_event *ev)
{
    run *r = user;
    if (ev->kind != XS_EV_STANZA)
        return 0;
    assert_non_null(ev->node);
    r->stanzas++;
    /* The last stanza of the input is the one under test; earlier results are replaced. */
    xs_rule_result_clear(&r->res);
    tree_state before;
    tree_state_take(ev->node, &before);
    r->rc = xs_rules_apply(r->rules, &r->ctx, ev, &r->res);
    assert_tree_untouched(ev->node, &before);
    r->applied++;
    return 0;
}

static void feed(run *r, const char *header, const char *stanza, size_t step)
{
    xs_parser *p = NULL;
    assert_int_equal(xs_parser_new(NULL, XS_PARSER_TREE | XS_PARSER_RAW, on_event, r, &p), 0);
    size_t hl = strlen(header), sl = strlen(stanza);
    char *all = malloc(hl + sl);
    assert_non_null(all);
    memcpy(all, header, hl);
    memcpy(all + hl, stanza, sl);
    size_t n = hl + sl;
    for (size_t at = 0; at < n;) {
        size_t k = step == 0 || step > n - at ? n - at : step;
        size_t used = 0;
        assert_int_equal(xs_parser_feed(p, all + at, k, &used), 0);
        assert_int_equal(used, k);
        at += k;
    }
    free(all);
    xs_parser_free(p);
}

/* Two results are the same (the fast paths against the reference). */
static void assert_same_result(const xs_rule_result *a, const xs_rule_result *b)
{
    assert_int_equal(a->verdict, b->verdict);
    assert_true(same_str(a->xml, b->xml));
    assert_true(same_str(a->bounce, b->bounce));
    assert_true(same_str(a->error, b->error));
    assert_int_equal(a->n_injects, b->n_injects);
    for (size_t i = 0; i < a->n_injects; i++)
        assert_string_equal(a->injects[i].xml, b->injects[i].xml);
    assert_int_equal(a->n_tags, b->n_tags);
    for (size_t i = 0; i < a->n_tags; i++)
        assert_string_equal(a->tags[i], b->tags[i]);
    assert_int_equal(a->n_applied, b->n_applied);
    for (size_t i = 0; i < a->n_applied; i++) {
        assert_string_equal(a->applied[i].action, b->applied[i].action);
        assert_int_equal(a->applied[i].nodes, b->applied[i].nodes);
        assert_true(same_str(a->applied[i].detail, b->applied[i].detail));
        assert_true(same_str(a->applied[i].before, b->applied[i].before));
        assert_true(same_str(a->applied[i].after, b->applied[i].after));
    }
    assert_int_equal(a->delay_ms, b->delay_ms);
    assert_int_equal(a->rules_matched, b->rules_matched);
}

/* Feeds `stanza` as feed() does and again the reference way, and checks both agree. The hit
 * counters are left as the first run made them. */
static void feed_checked(run *r, const char *header, const char *stanza, size_t step)
{
    feed(r, header, stanza, step);
    unsigned long hits[64];
    size_t n = r->rules->n_rules < 64 ? r->rules->n_rules : 64;
    for (size_t i = 0; i < n; i++)
        hits[i] = r->rules->rules[i].hits;
    run ref = {.rules = r->rules, .ctx = r->ctx};
    r->rules->reference = true;
    feed(&ref, header, stanza, step);
    r->rules->reference = false;
    for (size_t i = 0; i < n; i++)
        r->rules->rules[i].hits = hits[i];
    assert_int_equal(ref.rc, r->rc);
    assert_same_result(&r->res, &ref.res);
    xs_rule_result_clear(&ref.res);
}

/* Applies `rules` to the (last) stanza of `stanza`, sent in `dir` after a stream header. */
static void apply_full(xs_rules *rules, xs_rule_dir dir, const char *header, const char *stanza,
                       const char *session, unsigned flags, xs_rule_result *out)
{
    run whole = {.rules = rules, .ctx = {.direction = dir, .session = session, .flags = flags}};
    run bytes = whole;
    feed_checked(&whole, header, stanza, 0);
    assert_int_equal(whole.rc, 0);
    assert_true(whole.applied >= 1);
    /* Byte by byte: the same events, the same result. */
    feed(&bytes, header, stanza, 1);
    assert_int_equal(bytes.rc, 0);
    assert_int_equal(bytes.res.verdict, whole.res.verdict);
    assert_true(same_str(bytes.res.xml, whole.res.xml));
    assert_true(same_str(bytes.res.bounce, whole.res.bounce));
    assert_int_equal(bytes.res.n_injects, whole.res.n_injects);
    assert_int_equal(bytes.res.n_applied, whole.res.n_applied);
    xs_rule_result_clear(&bytes.res);
    *out = whole.res;
}

static void apply(xs_rules *rules, xs_rule_dir dir, const char *stanza, xs_rule_result *out)
{
    apply_full(rules, dir, dir == XS_RULE_S2C ? S2C_HEADER : C2S_HEADER, stanza, "sess-1", 0, out);
}

/* Applies a one-rule text and returns the rewritten XML (which must exist), malloc'd. */
static char *rewrite(const char *text, xs_rule_dir dir, const char *stanza)
{
    xs_rules *r = compile(text);
    xs_rule_result res;
    apply(r, dir, stanza, &res);
    if (res.verdict != XS_VERDICT_REWRITTEN)
        print_message("verdict %s, error %s\n", xs_rule_verdict_name(res.verdict),
                      res.error ? res.error : "-");
    assert_int_equal(res.verdict, XS_VERDICT_REWRITTEN);
    char *xml = strdup(res.xml);
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
    return xml;
}

/* Canonical form (exclusive C14N) of the stanza of `stanza` parsed inside `header`, so that two
 * serializations compare equal when they parse to the same tree. */
typedef struct canon {
    char *c14n;
} canon;

static int canon_event(void *user, const xs_event *ev)
{
    canon *c = user;
    if (ev->kind != XS_EV_STANZA)
        return 0;
    xmlDoc *doc = xs_stanza_copy(ev->node);
    assert_non_null(doc);
    xmlChar *out = NULL;
    assert_true(xmlC14NDocDumpMemory(doc, NULL, XML_C14N_EXCLUSIVE_1_0, NULL, 0, &out) >= 0);
    free(c->c14n);
    c->c14n = strdup((const char *)out);
    xmlFree(out);
    xmlFreeDoc(doc);
    return 0;
}

static char *canonical(const char *header, const char *stanza)
{
    canon c = {0};
    xs_parser *p = NULL;
    assert_int_equal(xs_parser_new(NULL, XS_PARSER_TREE, canon_event, &c, &p), 0);
    assert_int_equal(xs_parser_feed(p, header, strlen(header), NULL), 0);
    assert_int_equal(xs_parser_feed(p, stanza, strlen(stanza), NULL), 0);
    xs_parser_free(p);
    assert_non_null(c.c14n);
    return c.c14n;
}

/* The rewritten bytes, parsed in the stream they go into, are the tree `expected` describes. */
static void assert_same_tree(const char *header, const char *got, const char *expected)
{
    char *a = canonical(header, got), *b = canonical(header, expected);
    if (strcmp(a, b) != 0)
        print_message("got      %s\nexpected %s\n", a, b);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

/* Expects `text` to fail with one error at line:col whose text contains `what`. */
static void expect_error(const char *text, unsigned line, unsigned col, const char *what)
{
    xs_rules *r = NULL;
    xs_rule_diag d = {0};
    int rc = xs_rules_parse(text, strlen(text), "t.rules", 0, &r, &d);
    if (d.n == 0 || d.errors[0].line != line || d.errors[0].column != col ||
        strstr(d.errors[0].text, what) == NULL) {
        print_message("for:\n%s\nwanted %u:%u '%s', got:\n", text, line, col, what);
        for (size_t i = 0; i < d.n; i++)
            print_message("  %s\n", d.errors[i].message);
    }
    assert_int_equal(rc, XS_EPARSE);
    assert_null(r);
    assert_true(d.n >= 1);
    assert_int_equal(d.errors[0].line, line);
    assert_int_equal(d.errors[0].column, col);
    assert_non_null(strstr(d.errors[0].text, what));
    /* The message is FILE:LINE:COL: text. */
    char head[64];
    snprintf(head, sizeof(head), "t.rules:%u:%u: ", line, col);
    assert_true(strncmp(d.errors[0].message, head, strlen(head)) == 0);
    xs_rule_diag_clear(&d);
}

static const char *applied_action(const xs_rule_result *res, size_t i)
{
    assert_true(i < res->n_applied);
    return res->applied[i].action;
}

/* ---- the language ---------------------------------------------------------------------------- */

static void test_rules_parse_issue_example(void **state)
{
    const char text[] = "namespace cs http://jabber.org/protocol/chatstates\n"
                        "\n"
                        "rule \"no typing notifications\"\n"
                        "    direction c2s\n"
                        "    match /message[cs:composing or cs:paused]\n"
                        "    then drop\n"
                        "end\n"
                        "\n"
                        "rule \"redact card numbers\"   # trailing comment\n"
                        "    direction any\n"
                        "    match /message/body\n"
                        "    then replace-text /message/body \"\\b\\d{4}( ?\\d{4}){3}\\b\" "
                        "\"[card]\"\n"
                        "    then tag redacted\n"
                        "end\n";
    xs_rules *r = compile(text);
    assert_int_equal(xs_rules_count(r), 2);
    assert_int_equal(xs_rules_count_file(r), 2);
    xs_rule_info info;
    assert_int_equal(xs_rules_info(r, 0, &info), 0);
    assert_string_equal(info.name, "no typing notifications");
    assert_int_equal(info.direction, XS_RULE_C2S);
    assert_int_equal(info.line, 3);
    assert_int_equal(info.n_matches, 1);
    assert_string_equal(info.matches[0], "/message[cs:composing or cs:paused]");
    assert_int_equal(info.n_actions, 1);
    assert_string_equal(info.actions[0], "drop");
    assert_int_equal(xs_rules_info(r, 1, &info), 0);
    assert_int_equal(info.direction, XS_RULE_ANY);
    assert_string_equal(info.actions[0],
                        "replace-text /message/body \"\\b\\d{4}( ?\\d{4}){3}\\b\" \"[card]\"");
    assert_string_equal(info.actions[1], "tag redacted");
    assert_int_equal(xs_rules_info(r, 2, &info), XS_EINVAL);
    const xs_rules_ns *decls;
    assert_int_equal(xs_rules_file_namespaces(r, &decls), 1);
    assert_string_equal(decls[0].prefix, "cs");
    xs_rules_unref(r);

    /* An empty file and a file of comments are valid and have no rules. */
    r = compile("");
    assert_int_equal(xs_rules_count(r), 0);
    xs_rules_unref(r);
    r = compile("# nothing\n\n   # at all\r\n");
    assert_int_equal(xs_rules_count(r), 0);
    xs_rules_unref(r);
}

static void test_rules_parse_errors_with_position(void **state)
{
    /* Unknown prefix: at the name test. */
    expect_error("rule \"a\"\n  match /message/foo:bar\n  then drop\nend\n", 2, 18,
                 "unknown namespace prefix 'foo'");
    /* Bad XPath: where libxml2 stopped. */
    expect_error("rule \"a\"\n  match /message[@to = \n  then drop\nend\n", 2, 23, "bad XPath");
    expect_error("rule \"a\"\n  match /message[\n  then drop\nend\n", 2, 18, "bad XPath");
    /* Bad regex: at PCRE2's offset in the pattern. */
    expect_error(
        "rule \"a\"\n  match /message\n  then replace-text /message/body \"ab(c\" x\nend\n", 3, 40,
        "bad regex");
    /* Bad XML fragment. */
    expect_error("rule \"a\"\n  match /message\n  then insert /message \"<a><b></a>\"\nend\n", 3,
                 35, "bad XML: Opening and ending tag mismatch");
    /* Unknown action. */
    expect_error("rule \"a\"\n  match /message\n  then explode\nend\n", 3, 8,
                 "unknown action 'explode'");
    /* Missing end: at the rule, at the end of the file or before the next rule. */
    expect_error("rule \"a\"\n  match /message\n  then drop\n", 1, 1,
                 "missing 'end' of rule \"a\"");
    expect_error("rule \"a\"\n  match /message\n  then drop\nrule \"b\"\n  match /iq\n  then "
                 "drop\nend\n",
                 4, 1, "missing 'end' of rule \"a\" (line 1)");
    /* Unknown direction. */
    expect_error("rule \"a\"\n  direction up\n  match /message\n  then drop\nend\n", 2, 13,
                 "unknown direction 'up'");
    expect_error("rule \"a\"\n  direction c2s\n  direction s2c\n  match /m\n  then drop\nend\n", 3,
                 3, "direction given twice");
    /* Keywords in the wrong place. */
    expect_error("frobnicate\n", 1, 1, "unknown keyword 'frobnicate'");
    expect_error("  then drop\n", 1, 3, "'then' outside a rule");
    expect_error("end\n", 1, 1, "'end' outside a rule");
    expect_error("rule \"a\"\n  namespace x urn:x\n  match /m\n  then drop\nend\n", 2, 3,
                 "namespace declarations go outside rules");
    /* Strings and arguments. */
    expect_error("rule \"a\n", 1, 6, "unterminated string");
    expect_error("rule \"a\"\n  match /m\n  then set-text /m \"a\"b\nend\n", 3, 23,
                 "expected a blank after the closing quote");
    expect_error("rule \"a\"\n  match /m\n  then set-text /m hello world\nend\n", 3, 26,
                 "too many arguments for set-text");
    expect_error("rule \"a\"\n  match /m\n  then set-attr /m\nend\n", 3, 19,
                 "missing arguments for set-attr: usage: set-attr XPATH NAME VALUE");
    expect_error("rule \"a\"\n  match /m\n  then drop now\nend\n", 3, 13, "too many arguments");
    expect_error("rule two words\n  match /m\n  then drop\nend\n", 1, 6, "must be quoted");
    /* Names. */
    expect_error("rule \"a\"\n  match /m\n  then drop\nend\nrule \"a\"\n  match /m\n  then "
                 "drop\nend\n",
                 5, 6, "duplicate rule name \"a\" (first at line 1)");
    expect_error("rule \"sasl-plus\"\n  match /m\n  then drop\nend\n", 1, 6, "reserved");
    expect_error("rule \"a\"\n  then drop\nend\n", 1, 1, "has no match line");
    expect_error("rule \"a\"\n  match /m\nend\n", 1, 1, "has no then line");
    /* XPath checks beyond libxml2's. */
    expect_error("rule \"a\"\n  match /message[frob(body)]\n  then drop\nend\n", 2, 18,
                 "unknown XPath function 'frob'");
    expect_error("rule \"a\"\n  match /message[@to = $me]\n  then drop\nend\n", 2, 24,
                 "variables are not supported");
    expect_error("rule \"a\"\n  match sideways::x\n  then drop\nend\n", 2, 9, "unknown XPath axis");
    expect_error("rule \"a\"\n  match /m\n  then remove count(/m)\nend\n", 3, 15,
                 "must select nodes");
    expect_error("rule \"a\"\n  match /m\n  then remove\nend\n", 3, 14, "missing arguments");
    expect_error("rule \"a\"\n  match\n  then drop\nend\n", 2, 8, "empty XPath");
    /* Replacements refer to groups that exist. */
    expect_error("rule \"a\"\n  match /m\n  then replace-text /m \"(a)(b)\" \"x$3\"\nend\n", 3, 35,
                 "no group 3");
    expect_error("rule \"a\"\n  match /m\n  then replace-text /m \"(?<n>a)\" \"${m}\"\nend\n", 3,
                 35, "no group named 'm'");
    expect_error("rule \"a\"\n  match /m\n  then replace-text /m \"a\" \"$\"\nend\n", 3, 29,
                 "'$' must be followed");
    /* Other actions' arguments. */
    expect_error("rule \"a\"\n  match /m\n  then bounce teapot\nend\n", 3, 15,
                 "unknown stanza error condition 'teapot'");
    expect_error("rule \"a\"\n  match /m\n  then bounce forbidden later\nend\n", 3, 25,
                 "unknown error type 'later'");
    expect_error("rule \"a\"\n  match /m\n  then delay soon\nend\n", 3, 14, "delay: 'soon'");
    expect_error("rule \"a\"\n  match /m\n  then delay 600001\nend\n", 3, 14, "from 0 to 600000");
    expect_error("rule \"a\"\n  match /m\n  then inject up \"<m/>\"\nend\n", 3, 15,
                 "direction must be c2s or s2c");
    expect_error("rule \"a\"\n  match /m\n  then inject s2c \"<m/><n/>\"\nend\n", 3, 19,
                 "exactly one element");
    expect_error("rule \"a\"\n  match /m\n  then insert /m \"<a><!-- no --></a>\"\nend\n", 3, 18,
                 "comments");
    expect_error("rule \"a\"\n  match /m\n  then insert /m \"<x:a/>\"\nend\n", 3, 23,
                 "bad XML: Namespace prefix x on a is not defined");
    expect_error("rule \"a\"\n  match /m\n  then set-attr /m \"a b\" v\nend\n", 3, 20,
                 "not a valid attribute name");
    expect_error("rule \"a\"\n  match /m\n  then set-attr /m xmlns:x v\nend\n", 3, 20,
                 "namespace declarations");
    expect_error("rule \"a\"\n  match /m\n  then set-attr /m foo:x v\nend\n", 3, 20,
                 "unknown namespace prefix 'foo'");
    expect_error("rule \"a\"\n  match /m\n  then tag \"\"\nend\n", 3, 12, "a label is");
    /* Namespace declarations. */
    expect_error("namespace x\n", 1, 1, "namespace needs PREFIX URI");
    expect_error("namespace 1x urn:x\n", 1, 11, "not a valid namespace prefix");
    expect_error("namespace xml urn:x\n", 1, 11, "reserved by XML");
    expect_error("namespace x urn:a\nnamespace x urn:b\n", 2, 11,
                 "already bound to urn:a (line 1)");
    /* Bytes. */
    expect_error("rule \"a\"\n  match /m[. = 'caf\xc3']\n  then drop\nend\n", 2, 20,
                 "invalid UTF-8");
    expect_error("rule \"\xc3\xa9t\xc3\xa9\"\n  match /m[\n  then drop\nend\n", 2, 12, "bad XPath");
    expect_error("rule \"a\"\n  match /m\n  then set-text /m \"\x01\"\nend\n", 3, 21,
                 "control character 0x01");
    expect_error("rule \"a\"\n  match /m\n  then set-text /m \"\xef\xbf\xbf\"\nend\n", 3, 21,
                 "not allowed in XML");
}

static void test_rules_parse_reports_every_error_in_order(void **state)
{
    /* A namespace declared after its use is fine (declarations hold for the whole file). */
    const char text[] = "rule \"a\"\n"
                        "  match /message[x:y]\n"
                        "  then explode\n"
                        "end\n"
                        "rule \"b\"\n"
                        "  direction sideways\n"
                        "  match /message[\n"
                        "  then drop\n"
                        "end\n"
                        "namespace x urn:x\n"
                        "rule \"c\"\n"
                        "  match /m\n";
    xs_rules *r = NULL;
    xs_rule_diag d = {0};
    assert_int_equal(xs_rules_parse(text, strlen(text), "f.rules", 0, &r, &d), XS_EPARSE);
    assert_null(r);
    assert_int_equal(d.n, 4);
    assert_string_equal(d.errors[0].message,
                        "f.rules:3:8: unknown action 'explode' (drop, bounce, set-attr, "
                        "remove-attr, set-text, replace-text, remove, insert, inject, delay, tag, "
                        "pass)");
    assert_int_equal(d.errors[1].line, 6);
    assert_int_equal(d.errors[2].line, 7);
    assert_int_equal(d.errors[3].line, 11);
    assert_non_null(strstr(d.errors[3].text, "missing 'end'"));
    xs_rule_diag_clear(&d);

    /* The number of errors kept is capped; the rest are counted. */
    size_t n = XS_RULES_MAX_ERRORS + 20;
    char *many = malloc(n * 8 + 1);
    assert_non_null(many);
    many[0] = 0;
    for (size_t i = 0; i < n; i++)
        strcat(many, "bogus\n");
    assert_int_equal(xs_rules_parse(many, strlen(many), "m", 0, &r, &d), XS_EPARSE);
    assert_int_equal(d.n, XS_RULES_MAX_ERRORS);
    assert_int_equal(d.omitted, 20);
    xs_rule_diag_clear(&d);
    free(many);
}

static void test_rules_parse_limits(void **state)
{
    xs_rules *r = NULL;
    xs_rule_diag d = {0};
    /* A line longer than the cap. */
    size_t n = XS_RULES_MAX_LINE + 10;
    char *text = malloc(n + 64);
    assert_non_null(text);
    strcpy(text, "rule \"a\"\n  match /m\n  then tag ");
    size_t at = strlen(text);
    memset(text + at, 'x', n);
    strcpy(text + at + n, "\nend\n");
    assert_int_equal(xs_rules_parse(text, strlen(text), "t", 0, &r, &d), XS_EPARSE);
    assert_int_equal(d.errors[0].line, 3);
    assert_non_null(strstr(d.errors[0].text, "line longer than"));
    xs_rule_diag_clear(&d);
    free(text);
    /* A file larger than the cap is refused before it is read. */
    assert_int_equal(xs_rules_parse("", XS_RULES_MAX_FILE + 1, "big", 0, &r, &d), XS_ETOOBIG);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.errors[0].line, 0);
    assert_string_equal(d.errors[0].message, "big: larger than 1048576 bytes");
    xs_rule_diag_clear(&d);
    /* Too many rules. */
    {
        size_t cap = (XS_RULES_MAX_RULES + 2) * 48;
        char *t = malloc(cap);
        assert_non_null(t);
        size_t len = 0;
        for (unsigned i = 0; i < XS_RULES_MAX_RULES + 1; i++)
            len += (size_t)snprintf(t + len, cap - len, "rule r%u\nmatch /m\nthen drop\nend\n", i);
        assert_int_equal(xs_rules_parse(t, len, "t", 0, &r, &d), XS_EPARSE);
        assert_int_equal(d.n, 1);
        assert_non_null(strstr(d.errors[0].text, "too many rules"));
        xs_rule_diag_clear(&d);
        free(t);
    }
    /* Errors without a diag are still errors. */
    assert_int_equal(xs_rules_parse("x\n", 2, "t", 0, &r, NULL), XS_EPARSE);
    /* A file that cannot be read. */
    assert_int_equal(xs_rules_load("/nonexistent/x.rules", 0, &r, &d), XS_EIO);
    assert_int_equal(d.n, 1);
    assert_non_null(strstr(d.errors[0].message, "/nonexistent/x.rules: cannot open"));
    xs_rule_diag_clear(&d);
}

/* ---- actions --------------------------------------------------------------------------------- */

static void test_rules_drop(void **state)
{
    xs_rules *r = compile("rule \"d\"\n match /message[body = 'spam']\n then drop\nend\n");
    xs_rule_result res;
    apply(r, XS_RULE_C2S, "<message to='b@x'><body>spam</body></message>", &res);
    assert_int_equal(res.verdict, XS_VERDICT_DROP);
    assert_null(res.xml);
    assert_int_equal(res.n_applied, 1);
    assert_string_equal(res.applied[0].rule, "d");
    assert_string_equal(res.applied[0].action, "drop");
    xs_rule_result_clear(&res);
    apply(r, XS_RULE_C2S, "<message to='b@x'><body>ham</body></message>", &res);
    assert_int_equal(res.verdict, XS_VERDICT_UNCHANGED);
    assert_int_equal(res.n_applied, 0);
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

static void test_rules_bounce_error_stanza(void **state)
{
    xs_rules *r = compile("rule \"no version\"\n"
                          "  match /iq/version:query\n"
                          "  then bounce\n"
                          "end\n");
    xs_rule_result res;
    const char iq[] = "<iq type='get' id='v&amp;1' from='alice@example.org/phone' "
                      "to='bob@example.org/pc'><query xmlns='jabber:iq:version'/></iq>";
    apply(r, XS_RULE_C2S, iq, &res);
    assert_int_equal(res.verdict, XS_VERDICT_BOUNCE);
    assert_null(res.xml);
    assert_non_null(res.bounce);
    assert_int_equal(res.bounce_len, strlen(res.bounce));
    /* RFC 6120 section 8.3: same name and id, from/to swapped, type error, a defined condition
     * in the stanzas namespace inside <error/> with its type. */
    assert_same_tree(S2C_HEADER, res.bounce,
                     "<iq from='bob@example.org/pc' to='alice@example.org/phone' id='v&amp;1' "
                     "type='error'><error type='cancel'><service-unavailable "
                     "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text "
                     "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>bounced by xmppscope rule "
                     "\"no version\"</text></error></iq>");
    /* It declares its namespace, whatever the stream it goes into. */
    assert_true(strncmp(res.bounce, "<iq xmlns=\"jabber:client\"", 25) == 0);
    assert_string_equal(applied_action(&res, 0), "bounce");
    assert_string_equal(res.applied[0].detail, "service-unavailable");
    xs_rule_result_clear(&res);
    xs_rules_unref(r);

    /* Another condition, its recommended type, and a type given explicitly. */
    r = compile("rule \"b\"\n match /message\n then bounce item-not-found\nend\n"
                "rule \"c\"\n match /presence\n then bounce forbidden wait\nend\n");
    apply(r, XS_RULE_C2S, "<message id='m1' to='x@y'><body>hi</body></message>", &res);
    assert_same_tree(S2C_HEADER, res.bounce,
                     "<message from='x@y' id='m1' type='error'><error type='cancel'>"
                     "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text "
                     "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>bounced by xmppscope rule "
                     "\"b\"</text></error></message>");
    xs_rule_result_clear(&res);
    apply(r, XS_RULE_S2C, "<presence from='x@y/r'/>", &res);
    assert_int_equal(res.verdict, XS_VERDICT_BOUNCE);
    assert_non_null(strstr(res.bounce, "<error type=\"wait\"><forbidden "));
    assert_non_null(strstr(res.bounce, " to=\"x@y/r\""));
    assert_null(strstr(res.bounce, " from="));
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

static void test_rules_bounce_never_errors_or_results(void **state)
{
    xs_rules *r = compile("rule \"b\"\n match /*\n then bounce\n then tag seen\nend\n");
    static const char *const no[] = {
        "<iq type='result' id='1'/>",
        ("<iq type='error' id='1'><error type='cancel'><item-not-found "
         "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"),
        "<message type='error' id='2'><error type='cancel'/></message>",
        "<presence type='error'/>",
        "<r xmlns='urn:xmpp:sm:3'/>",
    };
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        xs_rule_result res;
        apply(r, XS_RULE_C2S, no[i], &res);
        assert_int_equal(res.verdict, XS_VERDICT_DROP);
        assert_null(res.bounce);
        assert_string_equal(applied_action(&res, 0), "bounce");
        assert_non_null(strstr(res.applied[0].detail, "dropped instead"));
        /* The rest of the rule's actions still ran. */
        assert_int_equal(res.n_tags, 1);
        xs_rule_result_clear(&res);
    }
    /* A message of type chat is bounced. */
    xs_rule_result res;
    apply(r, XS_RULE_C2S, "<message type='chat' id='3'/>", &res);
    assert_int_equal(res.verdict, XS_VERDICT_BOUNCE);
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

static void test_rules_set_and_remove_attr(void **state)
{
    char *x = rewrite("rule \"a\"\n match /message\n then set-attr /message type headline\n"
                      " then set-attr /message/body xml:lang de\n"
                      " then remove-attr /message id\n"
                      " then set-attr /message/sid:origin-id id new-{id}\nend\n",
                      XS_RULE_C2S,
                      "<message id='m1' type='chat'><body>hi</body>"
                      "<origin-id xmlns='urn:xmpp:sid:0' id='o1'/></message>");
    assert_same_tree(C2S_HEADER, x,
                     "<message type='headline'><body xml:lang='de'>hi</body>"
                     "<origin-id xmlns='urn:xmpp:sid:0' id='new-m1'/></message>");
    free(x);
    /* A namespaced attribute gets a declaration. */
    x = rewrite("namespace h urn:example:hint\n"
                "rule \"a\"\n match /message\n then set-attr /message h:seen yes\nend\n",
                XS_RULE_C2S, "<message/>");
    assert_same_tree(C2S_HEADER, x, "<message xmlns:h='urn:example:hint' h:seen='yes'/>");
    free(x);
    /* A prefix bound to something else where the attribute goes is not reused: the
     * descendants that use it keep their namespace. */
    x = rewrite("namespace h urn:example:hint\n"
                "rule \"a\"\n match /message\n then set-attr /message/h:x h:seen yes\nend\n",
                XS_RULE_C2S,
                "<message xmlns:h='urn:other'><h:x xmlns:h='urn:example:hint'><h:y/></h:x>"
                "<h:x><h:y/></h:x></message>");
    assert_same_tree(C2S_HEADER, x,
                     "<message xmlns:h='urn:other'><h:x xmlns:h='urn:example:hint' h:seen='yes'>"
                     "<h:y/></h:x><h:x><h:y/></h:x></message>");
    free(x);
    x = rewrite("namespace h urn:example:hint\n"
                "rule \"a\"\n match /message\n then set-attr //*[local-name()='x'] h:seen yes\n"
                "end\n",
                XS_RULE_C2S, "<message xmlns:h='urn:other'><h:x><h:y/></h:x></message>");
    assert_same_tree(C2S_HEADER, x,
                     "<message xmlns:h='urn:other'><h:x xmlns:ns0='urn:example:hint' "
                     "ns0:seen='yes'><h:y/></h:x></message>");
    free(x);
    /* Setting a value that is already there changes nothing. */
    xs_rules *r = compile("rule \"a\"\n match /message\n then set-attr /message type chat\n"
                          " then remove-attr /message nothere\nend\n");
    xs_rule_result res;
    apply(r, XS_RULE_C2S, "<message type='chat'/>", &res);
    assert_int_equal(res.verdict, XS_VERDICT_UNCHANGED);
    assert_int_equal(res.n_applied, 2);
    assert_int_equal(res.applied[0].nodes, 0);
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

static void test_rules_set_text(void **state)
{
    /* An element's children become the text; markup in the text is text. */
    char *x = rewrite("rule \"a\"\n match /message\n then set-text /message/body \"<b>&amp; "
                      "{from}\"\nend\n",
                      XS_RULE_S2C, "<message from='a@b/c'><body>old <i>x</i></body></message>");
    assert_same_tree(S2C_HEADER, x,
                     "<message from='a@b/c'><body>&lt;b&gt;&amp;amp; a@b/c</body></message>");
    assert_non_null(strstr(x, "&lt;b&gt;&amp;amp; a@b/c"));
    free(x);
    /* An attribute and a text node. */
    x = rewrite("rule \"a\"\n match /message\n then set-text /message/@to x@y\n"
                " then set-text /message/subject/text() S\nend\n",
                XS_RULE_C2S, "<message to='a@b'><subject>s</subject></message>");
    assert_same_tree(C2S_HEADER, x, "<message to='x@y'><subject>S</subject></message>");
    free(x);
    /* An element and its own text selected together: no node is touched after it is freed. */
    x = rewrite("rule \"a\"\n match /message\n then set-text \"//body | //body/text() | "
                "//body/@*\" z\nend\n",
                XS_RULE_C2S, "<message><body a='1'>t<x/>u</body></message>");
    assert_same_tree(C2S_HEADER, x, "<message><body a='z'>z</body></message>");
    free(x);
    /* Empty text empties the element. */
    x = rewrite("rule \"a\"\n match /message\n then set-text /message/body \"\"\nend\n",
                XS_RULE_C2S, "<message><body>t</body></message>");
    assert_same_tree(C2S_HEADER, x, "<message><body/></message>");
    free(x);
}

static void test_rules_replace_text_groups_and_utf8(void **state)
{
    const char cards[] = "rule \"redact\"\n"
                         "  match /message/body\n"
                         "  then replace-text /message/body \"\\b\\d{4}( ?\\d{4}){3}\\b\" "
                         "\"[card]\"\n"
                         "  then tag redacted\n"
                         "end\n";
    char *x = rewrite(cards, XS_RULE_C2S,
                      "<message><body>pay 4111 1111 1111 1111 or 5500000000000004, not 1234"
                      "</body></message>");
    assert_same_tree(C2S_HEADER, x,
                     "<message><body>pay [card] or [card], not 1234</body></message>");
    free(x);
    /* Groups by number and by name, $$ for a dollar. */
    x = rewrite("rule \"g\"\n match /message\n then replace-text /message/body "
                "\"(\\w+)@(?<host>[\\w.]+)\" \"$2 at ${host}: ${1}$$\"\nend\n",
                XS_RULE_C2S, "<message><body>mail bob@example.org now</body></message>");
    assert_same_tree(C2S_HEADER, x,
                     "<message><body>mail example.org at example.org: bob$ now</body></message>");
    free(x);
    /* UTF-8 text and Unicode classes: \w matches é, . matches one character. */
    x = rewrite("rule \"u\"\n match /message\n then replace-text /message/body "
                "\"caf\\w\" \"thé\"\n then replace-text /message/subject \"^.\" \"Ω\"\nend\n",
                XS_RULE_C2S,
                "<message><subject>日本</subject><body>un café, deux café</body></message>");
    assert_same_tree(C2S_HEADER, x,
                     "<message><subject>Ω本</subject><body>un thé, deux thé</body></message>");
    /* Serialized as UTF-8, not as character references. */
    assert_non_null(strstr(x, "Ω本"));
    free(x);
    /* Attributes, and every text under a selected element, each once. */
    x = rewrite("rule \"a\"\n match /message\n then replace-text \"/message/@to | //x | "
                "//x/text()\" o 0\nend\n",
                XS_RULE_C2S, "<message to='foo'><x>boo<y>zoo</y></x></message>");
    assert_same_tree(C2S_HEADER, x, "<message to='f00'><x>b00<y>z00</y></x></message>");
    free(x);
    /* Placeholders in the replacement are literal, even with a '$' in them. */
    xs_rules *r = compile("rule \"p\"\n match /message\n then replace-text /message/body x "
                          "\"{session}\"\nend\n");
    xs_rule_result res;
    apply_full(r, XS_RULE_C2S, C2S_HEADER, "<message><body>x</body></message>", "s$1", 0, &res);
    assert_non_null(strstr(res.xml, "<body>s$1</body>"));
    xs_rule_result_clear(&res);
    /* No match: unchanged. */
    apply(r, XS_RULE_C2S, "<message><body>y</body></message>", &res);
    assert_int_equal(res.verdict, XS_VERDICT_UNCHANGED);
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

static void test_rules_remove(void **state)
{
    /* Elements, attributes and text; an element and its descendant selected together. */
    char *x = rewrite("rule \"r\"\n match /message\n then remove \"//cs:* | //html | "
                      "//html/body | /message/@id | /message/subject/text()\"\nend\n",
                      XS_RULE_C2S,
                      "<message id='1'><subject>s</subject><body>b</body>"
                      "<active xmlns='http://jabber.org/protocol/chatstates'/>"
                      "<html><body>x</body></html></message>");
    assert_same_tree(C2S_HEADER, x, "<message><subject/><body>b</body></message>");
    free(x);
    /* The stanza itself is never removed (use drop). */
    xs_rules *r = compile("rule \"r\"\n match /message\n then remove /message\nend\n");
    xs_rule_result res;
    apply(r, XS_RULE_C2S, "<message/>", &res);
    assert_int_equal(res.verdict, XS_VERDICT_UNCHANGED);
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

static void test_rules_insert_fragment_namespaces(void **state)
{
    /* Unprefixed elements of a fragment are in the stanza's namespace; prefixed ones in the
     * file's; placeholders are expanded in text and attributes. */
    const char text[] = "namespace x urn:example:x\n"
                        "rule \"i\"\n"
                        "  match /message\n"
                        "  then insert /message \"<body>hello {to}</body><x:note n='{id}'/>"
                        "<delay:delay stamp='s'/>\"\n"
                        "end\n";
    char *x = rewrite(text, XS_RULE_C2S, "<message to='b@x' id='i1'/>");
    assert_same_tree(C2S_HEADER, x,
                     "<message to='b@x' id='i1'><body>hello b@x</body>"
                     "<x:note xmlns:x='urn:example:x' n='i1'/>"
                     "<delay:delay xmlns:delay='urn:xmpp:delay' stamp='s'/></message>");
    /* No redundant declaration of the content namespace on the inserted body. */
    assert_non_null(strstr(x, "<body>hello b@x</body>"));
    free(x);
    /* In a jabber:server stream the same fragment is in jabber:server. */
    xs_rules *r = compile(text);
    xs_rule_result res;
    apply_full(r, XS_RULE_C2S, S2S_HEADER, "<message to='b@x' id='i1'/>", NULL, 0, &res);
    assert_int_equal(res.verdict, XS_VERDICT_REWRITTEN);
    assert_same_tree(S2S_HEADER, res.xml,
                     "<message to='b@x' id='i1'><body>hello b@x</body>"
                     "<x:note xmlns:x='urn:example:x' n='i1'/>"
                     "<delay:delay xmlns:delay='urn:xmpp:delay' stamp='s'/></message>");
    char *wrong = canonical(C2S_HEADER, "<message to='b@x' id='i1'><body>hello b@x</body>"
                                        "<x:note xmlns:x='urn:example:x' n='i1'/>"
                                        "<delay:delay xmlns:delay='urn:xmpp:delay' stamp='s'/>"
                                        "</message>");
    char *got = canonical(S2S_HEADER, res.xml);
    assert_string_not_equal(got, wrong);
    assert_non_null(strstr(got, "jabber:server"));
    free(wrong);
    free(got);
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
    /* Into every selected element; text fragments merge into text. */
    x = rewrite("rule \"i\"\n match /message\n then insert //body \" (via xmppscope)\"\nend\n",
                XS_RULE_C2S, "<message><body>a</body><x><body>b</body></x></message>");
    assert_same_tree(C2S_HEADER, x,
                     "<message><body>a (via xmppscope)</body><x><body>b (via xmppscope)</body>"
                     "</x></message>");
    free(x);
}

static void test_rules_inject_and_delay(void **state)
{
    xs_rules *r = compile("rule \"i\"\n"
                          "  match /message[body]\n"
                          "  then inject s2c \"<message from='{to}' id='echo-{id}'><body>seen "
                          "{id} in {session}</body></message>\"\n"
                          "  then inject c2s \"<r xmlns='urn:xmpp:sm:3'/>\"\n"
                          "  then delay 250\n"
                          "  then delay 100\n"
                          "end\n");
    xs_rule_result res;
    apply(r, XS_RULE_C2S, "<message to='bob@x' id='m&lt;1'><body>hi</body></message>", &res);
    /* Injecting and delaying do not change the stanza itself. */
    assert_int_equal(res.verdict, XS_VERDICT_UNCHANGED);
    assert_int_equal(res.n_injects, 2);
    assert_int_equal(res.injects[0].direction, XS_RULE_S2C);
    assert_int_equal(res.injects[0].len, strlen(res.injects[0].xml));
    assert_same_tree(S2C_HEADER, res.injects[0].xml,
                     "<message from='bob@x' id='echo-m&lt;1'><body>seen m&lt;1 in "
                     "sess-1</body></message>");
    /* Injected stanzas declare their namespace. */
    assert_true(strncmp(res.injects[0].xml, "<message xmlns=\"jabber:client\"", 30) == 0);
    assert_int_equal(res.injects[1].direction, XS_RULE_C2S);
    assert_string_equal(res.injects[1].xml, "<r xmlns=\"urn:xmpp:sm:3\"/>");
    assert_int_equal(res.delay_ms, 350);
    assert_string_equal(applied_action(&res, 0), "inject");
    assert_string_equal(res.applied[0].detail, "s2c");
    assert_string_equal(applied_action(&res, 2), "delay");
    assert_string_equal(res.applied[2].detail, "250 ms");
    xs_rule_result_clear(&res);
    xs_rules_unref(r);

    /* The sum of delays is capped. */
    r = compile("rule \"d\"\n match /message\n then delay 600000\n then delay 600000\nend\n");
    apply(r, XS_RULE_C2S, "<message/>", &res);
    assert_int_equal(res.delay_ms, XS_RULES_MAX_DELAY_MS);
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

static void test_rules_tags(void **state)
{
    xs_rules *r = compile("rule \"a\"\n match /message\n then tag one\n then tag \"two words\"\n"
                          "end\nrule \"b\"\n match /message\n then tag one\nend\n");
    xs_rule_result res;
    apply(r, XS_RULE_C2S, "<message/>", &res);
    assert_int_equal(res.verdict, XS_VERDICT_UNCHANGED);
    assert_int_equal(res.n_tags, 2);
    assert_string_equal(res.tags[0], "one");
    assert_string_equal(res.tags[1], "two words");
    assert_int_equal(res.n_applied, 3);
    assert_int_equal(res.rules_matched, 2);
    assert_string_equal(res.applied[2].rule, "b");
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

/* ---- order, pass, direction, placeholders ---------------------------------------------------- */

static void test_rules_order_and_pass(void **state)
{
    /* A later rule sees what an earlier one did. */
    char *x = rewrite("rule \"1\"\n match /message\n then set-attr /message type chat\nend\n"
                      "rule \"2\"\n match /message[@type = 'chat']\n then insert /message "
                      "\"<body>2</body>\"\nend\n",
                      XS_RULE_C2S, "<message/>");
    assert_same_tree(C2S_HEADER, x, "<message type='chat'><body>2</body></message>");
    free(x);
    /* pass stops the rule list after its own rule's actions. */
    xs_rules *r = compile("rule \"1\"\n match /message\n then pass\n then tag one\nend\n"
                          "rule \"2\"\n match /message\n then drop\nend\n");
    xs_rule_result res;
    apply(r, XS_RULE_C2S, "<message/>", &res);
    assert_int_equal(res.verdict, XS_VERDICT_UNCHANGED);
    assert_int_equal(res.n_tags, 1);
    assert_int_equal(res.rules_matched, 1);
    assert_string_equal(applied_action(&res, 0), "pass");
    xs_rule_result_clear(&res);
    /* A rule that does not match does not stop the list. */
    apply(r, XS_RULE_C2S, "<iq type='get' id='1'/>", &res);
    assert_int_equal(res.verdict, XS_VERDICT_UNCHANGED);
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
    /* drop decides: no later rule runs, a rewrite before it is not serialized. */
    r = compile("rule \"1\"\n match /message\n then set-attr /message a b\n then drop\nend\n"
                "rule \"2\"\n match /message\n then tag never\nend\n");
    apply(r, XS_RULE_C2S, "<message/>", &res);
    assert_int_equal(res.verdict, XS_VERDICT_DROP);
    assert_null(res.xml);
    assert_int_equal(res.n_tags, 0);
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
    /* All match lines must match. */
    r = compile("rule \"1\"\n match /message\n match /message/body\n then drop\nend\n");
    apply(r, XS_RULE_C2S, "<message/>", &res);
    assert_int_equal(res.verdict, XS_VERDICT_UNCHANGED);
    xs_rule_result_clear(&res);
    apply(r, XS_RULE_C2S, "<message><body/></message>", &res);
    assert_int_equal(res.verdict, XS_VERDICT_DROP);
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

static void test_rules_direction_filter(void **state)
{
    xs_rules *r = compile("rule \"c\"\n direction c2s\n match /message\n then tag c\nend\n"
                          "rule \"s\"\n direction s2c\n match /message\n then tag s\nend\n"
                          "rule \"a\"\n match /message\n then tag a\nend\n");
    xs_rule_result res;
    apply(r, XS_RULE_C2S, "<message/>", &res);
    assert_int_equal(res.n_tags, 2);
    assert_string_equal(res.tags[0], "c");
    assert_string_equal(res.tags[1], "a");
    xs_rule_result_clear(&res);
    apply(r, XS_RULE_S2C, "<message/>", &res);
    assert_int_equal(res.n_tags, 2);
    assert_string_equal(res.tags[0], "s");
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

static void test_rules_placeholders(void **state)
{
    xs_rules *r = compile("rule \"p\"\n match /message\n then set-text /message/body "
                          "\"{from}|{to}|{id}|{session}|{nope}|{from\"\n"
                          " then set-attr /message id \"{id}-2\"\n"
                          " then set-attr /message/body x {id}\nend\n");
    xs_rule_result res;
    apply_full(r, XS_RULE_S2C, S2C_HEADER,
               "<message from='a@b/c' to='d@e' id='7'><body/></message>", "S9", 0, &res);
    /* {id} is the id as it arrived, even after a rule changed it. */
    assert_same_tree(S2C_HEADER, res.xml,
                     "<message from='a@b/c' to='d@e' id='7-2'><body x='7'>a@b/c|d@e|7|S9|{nope}|"
                     "{from</body></message>");
    xs_rule_result_clear(&res);
    /* Control characters of the caller's session id are left out. */
    apply_full(r, XS_RULE_S2C, S2C_HEADER, "<message><body/></message>", "a\001b\n", 0, &res);
    assert_non_null(strstr(res.xml, ">|||ab|{nope}|{from<"));
    xs_rule_result_clear(&res);
    /* Absent attributes and no session are empty. */
    apply_full(r, XS_RULE_S2C, S2C_HEADER, "<message><body/></message>", NULL, 0, &res);
    assert_non_null(strstr(res.xml, ">||||{nope}|{from<"));
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

/* ---- namespaces ------------------------------------------------------------------------------ */

static void test_rules_xpath_namespaces(void **state)
{
    xs_rules *r = compile(
        "namespace e urn:example:ext\n"
        "rule \"builtin prefixes\"\n match /message/receipts:request\n then tag receipts\nend\n"
        "rule \"declared prefix\"\n match /message/e:thing[@e:attr = 'v']\n then tag e\nend\n"
        "rule \"unprefixed\"\n match /message[body and @type = 'chat']\n then tag plain\nend\n"
        "rule \"axes\"\n match child::body = 'x' and attribute::type and self::message\n"
        " then tag axes\nend\n"
        "rule \"functions\"\n match count(*) * 2 = 6 and name() = 'message' and "
        "local-name(*[2]) = 'request' and string-length(body) = 1 and body div 1 != 0 or true()\n"
        " then tag functions\nend\n"
        "rule \"literal with #\"\n match namespace-uri(*[2]) != 'urn:a#b' # a comment\n"
        " then tag literal\nend\n"
        "rule \"star\"\n match /*/client:body and /*/*[@e:attr] and /message/e:*\n then tag star\n"
        "end\n");
    xs_rule_result res;
    apply(r, XS_RULE_C2S,
          "<message type='chat' xmlns:x='urn:example:ext'><body>x</body>"
          "<request xmlns='urn:xmpp:receipts'/><x:thing x:attr='v'/></message>",
          &res);
    const char *want[] = {"receipts", "e", "plain", "axes", "functions", "literal", "star"};
    assert_int_equal(res.n_tags, 7);
    for (size_t i = 0; i < 7; i++)
        assert_string_equal(res.tags[i], want[i]);
    xs_rule_result_clear(&res);
    /* A body in another namespace is not `body`. */
    apply(r, XS_RULE_C2S, "<message type='chat'><body xmlns='urn:other'>x</body></message>", &res);
    for (size_t i = 0; i < res.n_tags; i++)
        assert_string_not_equal(res.tags[i], "plain");
    xs_rule_result_clear(&res);
    xs_rules_unref(r);

    /* Unprefixed means the stream's content namespace: jabber:server on a server stream. */
    r = compile("rule \"m\"\n match /message/body\n then tag yes\nend\n");
    apply_full(r, XS_RULE_C2S, S2S_HEADER, "<message><body>x</body></message>", NULL, 0, &res);
    assert_int_equal(res.n_tags, 1);
    xs_rule_result_clear(&res);
    /* SASL's <auth/> is not in the content namespace. */
    xs_rules_unref(r);
    r = compile("rule \"m\"\n match /auth\n then tag plain\nend\n"
                "rule \"n\"\n match /sasl:auth\n then tag sasl\nend\n");
    apply(r, XS_RULE_C2S,
          "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>", &res);
    assert_int_equal(res.n_tags, 1);
    assert_string_equal(res.tags[0], "sasl");
    xs_rule_result_clear(&res);
    xs_rules_unref(r);

    /* A file may rebind a built-in prefix; the built-in rules keep theirs. */
    r = NULL;
    const char rebind[] = "namespace sasl urn:example:not-sasl\n"
                          "rule \"x\"\n match /message/sasl:thing\n then tag rebound\nend\n";
    xs_rule_diag d = {0};
    assert_int_equal(xs_rules_parse(rebind, strlen(rebind), "t", XS_REWRITE_DEFAULT, &r, &d), 0);
    apply(r, XS_RULE_C2S, "<message><thing xmlns='urn:example:not-sasl'/></message>", &res);
    assert_int_equal(res.n_tags, 1);
    xs_rule_result_clear(&res);
    apply(r, XS_RULE_S2C,
          "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
          "<mechanism>SCRAM-SHA-1-PLUS</mechanism></mechanisms></stream:features>",
          &res);
    assert_int_equal(res.verdict, XS_VERDICT_REWRITTEN);
    assert_null(strstr(res.xml, "PLUS"));
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

static void test_rules_xpath_tokens(void **state)
{
    /* Each expression must compile and be true on the stanza below: XPath's lexical corners
     * (multiplication against name tests, operator names, numbers, hyphenated names, axes and
     * node types) with names rewritten and attributes left alone. */
    static const char *const exprs[] = {
        "count(/message/*) * 2 = 8",
        "/message/*[2]/@id-x = 'b-1'",
        "count(//*[local-name() = 'x-y']) = 1",
        "count(//node()) > 4 and count(//text()) = 1",
        "7 mod 4 = 3 and 9 div 2 = 4.5 and .5 + .5 = 1 and 2-1 = 1 and -1 < 0",
        "/message/body/.. = /message and ./body/../@type = 'chat'",
        "count(@*) = 2 and count(attribute::*) = 2 and count(/message/@*[. = 'chat']) = 1",
        "count(namespace::*) >= 1",
        "//x-y/ancestor-or-self::message and //x-y/parent::*/child::body/following-sibling::x-y",
        "/message/body[. != 'x' and text() = 'hello']",
        "/message[@type='chat'][body]|/iq",
        "string(/message/*[last()]/@n) = '5' and position() = 1",
        "boolean(/message/hints:store) and not(/message/hints:no-store)",
        "/message/*[self::hints:store or self::x-y]",
        "starts-with(normalize-space(' a  b '), 'a b') and translate('abc', 'b', 'B') = 'aBc'",
        "concat(substring-before('a:b', ':'), substring-after('a:b', ':')) = 'ab'",
        "sum(/message/*/@n) = 5 and floor(1.5) = 1 and ceiling(1.5) = 2 and round(1.5) = 2",
        "lang('en') and string-length(name(/*)) = 7 and namespace-uri() = 'jabber:client'",
        "/ message / body",
        "/message/body[contains(., '#') = false()]",
        "//*[@id-x]/@id-x = \"b-1\"",
    };
    for (size_t i = 0; i < sizeof(exprs) / sizeof(exprs[0]); i++) {
        char text[600];
        snprintf(text, sizeof(text), "rule \"x\"\n match %s\n then tag yes\nend\n", exprs[i]);
        xs_rules *r = compile(text);
        xs_rule_result res;
        apply(r, XS_RULE_C2S,
              "<message type='chat' xml:lang='en'><body>hello</body><x-y id-x='b-1'/>"
              "<store xmlns='urn:xmpp:hints'/><q n='5'/></message>",
              &res);
        if (res.n_tags != 1)
            print_message("false: %s (%s)\n", exprs[i], res.error ? res.error : "-");
        assert_int_equal(res.n_tags, 1);
        xs_rule_result_clear(&res);
        xs_rules_unref(r);
    }
}

static void test_rules_root_name_shortcut(void **state)
{
    /* A match that is a path from the root is skipped for stanzas of another name; one with an
     * operator outside brackets is not a path and must still be evaluated. */
    static const struct {
        const char *expr;
        int on_iq;
    } cases[] = {
        {"/message/body", 0},
        {"/message[@type = 'chat' or true()]", 0},
        {"/ message", 0},
        {"/client:message", 0},
        {"/iq", 1},
        {"/client:iq[@id = 'q']", 1},
        {"/server:iq", 0},
        {"/message | /iq", 1},
        {"/message or /iq", 1},
        {"not(/message)", 1},
        {"/message or 1 = 1", 1},
        {"count(/message) = 0", 1},
        {"/message[1] * 0 = 0", 0},
        {"-count(/message) = 0", 1},
        {"/*[local-name() = 'iq']", 1},
        {"//ping:ping", 1},
        {"/iq/ping:ping/../@id = 'q'", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[300];
        snprintf(text, sizeof(text), "rule \"x\"\n match %s\n then tag yes\nend\n", cases[i].expr);
        xs_rules *r = compile(text);
        xs_rule_result res;
        apply(r, XS_RULE_C2S, "<iq type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq>", &res);
        if ((int)res.n_tags != cases[i].on_iq)
            print_message("%s: %zu\n", cases[i].expr, res.n_tags);
        assert_int_equal(res.n_tags, cases[i].on_iq);
        xs_rule_result_clear(&res);
        xs_rules_unref(r);
    }
}

static void test_rules_stream_features_sm(void **state)
{
    const char features[] =
        "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><required/></bind>"
        "<sm xmlns='urn:xmpp:sm:3'/><csi xmlns='urn:xmpp:csi:0'/></stream:features>";
    char *x = rewrite("rule \"no sm\"\n direction s2c\n match /stream:features/sm:sm\n"
                      " then remove /stream:features/sm:sm\nend\n",
                      XS_RULE_S2C, features);
    /* Serialized for the stream it goes into: the stream prefix, no re-declaration. */
    assert_string_equal(x, "<stream:features><bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\">"
                           "<required/></bind><csi xmlns=\"urn:xmpp:csi:0\"/></stream:features>");
    assert_same_tree(S2C_HEADER, x,
                     "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><required/>"
                     "</bind><csi xmlns='urn:xmpp:csi:0'/></stream:features>");
    free(x);
}

static void test_rules_rewritten_output_reparses(void **state)
{
    /* A stanza with prefixes of its own, a default namespace redeclared inside, and a prefix
     * the stream declares: every rewrite parses back to the intended tree in its stream. */
    const char header[] = "<stream:stream xmlns='jabber:client' "
                          "xmlns:stream='http://etherx.jabber.org/streams' "
                          "xmlns:db='jabber:server:dialback' version='1.0'>";
    const char stanza[] = "<message xmlns:p='urn:p' p:a='1' to='x@y'>"
                          "<body>b</body><p:e><inner xmlns='urn:q'><leaf/></inner></p:e>"
                          "<db:x/></message>";
    xs_rules *r = compile("namespace q urn:q\n"
                          "rule \"r\"\n match /message\n"
                          " then insert //q:inner \"<added/><client:c/>\"\n"
                          " then set-text /message/body \"<&>\"\n"
                          " then set-attr //q:leaf xml:lang fr\nend\n");
    xs_rule_result res;
    apply_full(r, XS_RULE_C2S, header, stanza, NULL, 0, &res);
    assert_int_equal(res.verdict, XS_VERDICT_REWRITTEN);
    /* db: is declared by the stream and not repeated. */
    assert_null(strstr(res.xml, "xmlns:db"));
    assert_same_tree(header, res.xml,
                     "<message xmlns:p='urn:p' p:a='1' to='x@y'><body>&lt;&amp;&gt;</body><p:e>"
                     "<inner xmlns='urn:q'><leaf xml:lang='fr'/><added xmlns='jabber:client'/>"
                     "<client:c xmlns:client='jabber:client'/></inner></p:e><db:x/></message>");
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

static void test_rules_untouched_is_unchanged(void **state)
{
    /* Rules that match but change nothing, rules that do not match, and rules of the other
     * direction leave the stanza to be forwarded byte for byte. */
    xs_rules *r = compile("rule \"t\"\n match /message\n then tag t\n"
                          " then remove /message/nothing\n then replace-text //body zzz y\n"
                          " then set-text //nothing x\nend\n"
                          "rule \"o\"\n direction s2c\n match /message\n then drop\nend\n");
    xs_rule_result res;
    apply(r, XS_RULE_C2S, "<message  to = 'x'><body>b</body></message>", &res);
    assert_int_equal(res.verdict, XS_VERDICT_UNCHANGED);
    assert_null(res.xml);
    assert_int_equal(res.n_applied, 4);
    for (size_t i = 1; i < 4; i++)
        assert_int_equal(res.applied[i].nodes, 0);
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
    /* An empty set. */
    r = compile("");
    apply(r, XS_RULE_S2C, "<message/>", &res);
    assert_int_equal(res.verdict, XS_VERDICT_UNCHANGED);
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

static void test_rules_explain_before_after(void **state)
{
    xs_rules *r = compile("rule \"e\"\n match /message\n then set-attr /message a 1\n"
                          " then tag t\n then set-attr /message b 2\nend\n");
    xs_rule_result res;
    apply_full(r, XS_RULE_C2S, C2S_HEADER, "<message/>", NULL, XS_RULE_EXPLAIN, &res);
    assert_int_equal(res.n_applied, 3);
    assert_string_equal(res.applied[0].before, "<message/>");
    assert_string_equal(res.applied[0].after, "<message a=\"1\"/>");
    assert_null(res.applied[1].before);
    assert_string_equal(res.applied[2].before, "<message a=\"1\"/>");
    assert_string_equal(res.applied[2].after, "<message a=\"1\" b=\"2\"/>");
    assert_string_equal(res.xml, "<message a=\"1\" b=\"2\"/>");
    assert_string_equal(res.applied[0].detail, "1 node");
    xs_rule_result_clear(&res);
    /* Without the flag, nothing is serialized per action. */
    apply(r, XS_RULE_C2S, "<message/>", &res);
    assert_null(res.applied[0].before);
    assert_null(res.applied[0].after);
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

/* ---- built-in rules -------------------------------------------------------------------------- */

#define PROSODY_FEATURES                                                                           \
    "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"                         \
    "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"                                        \
    "<mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-1</mechanism>"                    \
    "<mechanism>PLAIN</mechanism></mechanisms>"                                                    \
    "<authentication xmlns='urn:xmpp:sasl:2'><mechanism>SCRAM-SHA-256-PLUS</mechanism>"            \
    "<mechanism>SCRAM-SHA-256</mechanism><mechanism>-PLUS</mechanism></authentication>"            \
    "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-unique'/>"        \
    "</sasl-channel-binding><compression xmlns='http://jabber.org/features/compress'>"             \
    "<method>zlib</method></compression><sm xmlns='urn:xmpp:sm:3'/></stream:features>"

static void test_rules_builtin_equivalent_to_features(void **state)
{
    static const xs_attr decls[] = {
        {.prefix = NULL, .uri = "jabber:client"},
        {.prefix = "stream", .uri = "http://etherx.jabber.org/streams"},
    };
    const unsigned all = XS_REWRITE_SASL_PLUS | XS_REWRITE_CHANNEL_BINDING |
                         XS_REWRITE_COMPRESSION | XS_REWRITE_STARTTLS;
    /* Every combination of the four rewrites gives the same bytes as features.c. */
    for (unsigned mask = 0; mask <= all; mask++) {
        xs_features_result fr;
        assert_int_equal(
            xs_features_rewrite(PROSODY_FEATURES, strlen(PROSODY_FEATURES), decls, 2, mask, &fr),
            0);
        xs_rules *r = NULL;
        assert_int_equal(xs_rules_builtin(mask, &r), 0);
        assert_int_equal(xs_rules_count_file(r), 0);
        xs_rule_result res;
        apply(r, XS_RULE_S2C, PROSODY_FEATURES, &res);
        if (fr.xml == NULL) {
            assert_int_equal(res.verdict, XS_VERDICT_UNCHANGED);
        } else {
            assert_int_equal(res.verdict, XS_VERDICT_REWRITTEN);
            assert_string_equal(res.xml, fr.xml);
        }
        bool tagged = res.n_tags == 1 && strcmp(res.tags[0], "channel-binding-offered") == 0;
        assert_int_equal(tagged, (mask & (XS_REWRITE_SASL_PLUS | XS_REWRITE_CHANNEL_BINDING)) != 0);
        free(fr.xml);
        xs_rule_result_clear(&res);
        /* Built-in rules act on the server's features only. */
        apply(r, XS_RULE_C2S, PROSODY_FEATURES, &res);
        assert_int_equal(res.verdict, XS_VERDICT_UNCHANGED);
        xs_rule_result_clear(&res);
        xs_rules_unref(r);
    }
    /* A built-in rule can be skipped per stanza, and they come before the file's rules. */
    xs_rules *r = NULL;
    const char text[] = "rule \"mine\"\n direction s2c\n match /stream:features/sm:sm\n"
                        " then remove //sm:sm\nend\n";
    assert_int_equal(xs_rules_parse(text, strlen(text), "t", XS_REWRITE_DEFAULT, &r, NULL), 0);
    assert_int_equal(xs_rules_count(r), 4);
    assert_int_equal(xs_rules_count_file(r), 1);
    xs_rule_info info;
    assert_int_equal(xs_rules_info(r, 0, &info), 0);
    assert_string_equal(info.name, "sasl-plus");
    assert_int_equal(info.builtin, XS_REWRITE_SASL_PLUS);
    assert_string_equal(info.file, "<builtin>");
    assert_int_equal(xs_rules_info(r, 3, &info), 0);
    assert_string_equal(info.name, "mine");
    assert_string_equal(info.file, "t");
    run run1 = {.rules = r,
                .ctx = {.direction = XS_RULE_S2C, .builtin_off = XS_REWRITE_COMPRESSION}};
    feed(&run1, S2C_HEADER, PROSODY_FEATURES, 0);
    assert_int_equal(run1.res.verdict, XS_VERDICT_REWRITTEN);
    assert_non_null(strstr(run1.res.xml, "compression"));
    assert_null(strstr(run1.res.xml, "SHA-1-PLUS"));
    assert_null(strstr(run1.res.xml, "SHA-256-PLUS"));
    assert_null(strstr(run1.res.xml, "urn:xmpp:sm:3"));
    assert_non_null(strstr(run1.res.xml, "starttls")); /* not in the set */
    xs_rule_result_clear(&run1.res);
    xs_rules_unref(r);
    /* The texts of the built-in rules are available for listings. */
    assert_non_null(strstr(xs_rules_builtin_text(XS_REWRITE_COMPRESSION), "rule \"compression\""));
    assert_null(xs_rules_builtin_text(1u << 20));
}

static void test_rules_split_reads(void **state)
{
    /* The stream split at every byte offset into two reads gives the same rewrite. */
    xs_rules *r = compile("rule \"s\"\n match /message/body\n then replace-text //body "
                          "\"é+\" \"e\"\n then set-attr /message id x{id}\nend\n");
    const char stanza[] = "<message id='1'><body>caf\xc3\xa9\xc3\xa9 &amp; th\xc3\xa9</body>"
                          "</message>";
    run whole = {.rules = r, .ctx = {.direction = XS_RULE_C2S}};
    feed(&whole, C2S_HEADER, stanza, 0);
    assert_string_equal(whole.res.xml, "<message id=\"x1\"><body>cafe &amp; the</body></message>");
    size_t hl = strlen(C2S_HEADER), n = hl + strlen(stanza);
    char *all = malloc(n);
    assert_non_null(all);
    memcpy(all, C2S_HEADER, hl);
    memcpy(all + hl, stanza, n - hl);
    for (size_t at = 1; at < n; at++) {
        run part = {.rules = r, .ctx = {.direction = XS_RULE_C2S}};
        xs_parser *p = NULL;
        assert_int_equal(xs_parser_new(NULL, XS_PARSER_TREE | XS_PARSER_RAW, on_event, &part, &p),
                         0);
        assert_int_equal(xs_parser_feed(p, all, at, NULL), 0);
        assert_int_equal(xs_parser_feed(p, all + at, n - at, NULL), 0);
        xs_parser_free(p);
        assert_int_equal(part.rc, 0);
        assert_string_equal(part.res.xml, whole.res.xml);
        xs_rule_result_clear(&part.res);
    }
    free(all);
    xs_rule_result_clear(&whole.res);
    xs_rules_unref(r);
}

/* ---- the fast paths -------------------------------------------------------------------------- */

#define DB_HEADER                                                                                  \
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "                                   \
    "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "           \
    "to='example.org' version='1.0'>"

static void test_rules_copy_on_write(void **state)
{
    /* Rules that match and only tag, and rewrites that change nothing, make no copy and leave
     * the parser's tree as it was (on_event() checks that for every test); a rewrite after them
     * works on a copy made then. Namespaces the stanza inherits from the stream element (db:)
     * resolve in matches and targets, by the quick evaluator and by libxml2 (//, a union). */
    xs_rules *r = compile("namespace db jabber:server:dialback\n"
                          "rule \"tag\"\n match /message[body]\n then tag seen\nend\n"
                          "rule \"no-op\"\n match /message\n then remove /message/nothing\n"
                          " then replace-text /message/body \"\\d{4}\" x\n"
                          " then set-text /message/body hello\n then set-attr /message to x@y\n"
                          " then remove-attr /message nothing\nend\n"
                          "rule \"inherited\"\n match /message/db:x[@a = '1']\n then tag db\nend\n"
                          "rule \"libxml2\"\n match count(//db:x | /iq) = 1\n then tag lib\nend\n"
                          "rule \"own doc\"\n match count(namespace::*) = 3\n then tag ns\nend\n");
    assert_non_null(r->rules[2].matches[0].quick);
    assert_null(r->rules[3].matches[0].quick);
    assert_true(r->rules[4].matches[0].own_doc);
    xs_rule_result res;
    const char stanza[] = "<message to='x@y'><body>hello</body><db:x a='1'/></message>";
    apply_full(r, XS_RULE_C2S, DB_HEADER, stanza, NULL, XS_RULE_EXPLAIN, &res);
    assert_int_equal(res.verdict, XS_VERDICT_UNCHANGED);
    assert_null(res.xml);
    const char *want[] = {"seen", "db", "lib", "ns"};
    assert_int_equal(res.n_tags, 4);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(res.tags[i], want[i]);
    for (size_t i = 0; i < res.n_applied; i++) {
        assert_int_equal(res.applied[i].nodes, 0);
        assert_null(res.applied[i].before);
    }
    xs_rule_result_clear(&res);
    xs_rules_unref(r);

    /* A rewrite after a rule that only looked: the copy is made for it, and the tree it writes
     * is the stanza's, inherited namespaces and all. */
    r = compile("namespace db jabber:server:dialback\n"
                "rule \"look\"\n match /message/db:x\n then tag seen\nend\n"
                "rule \"write\"\n match /message/body = 'hello'\n then set-attr /message/db:x b 2\n"
                " then replace-text /message/body l+ L\nend\n"
                "rule \"after\"\n match /message/db:x/@b = '2' and //db:x[@b = 2]\n"
                " then tag after\nend\n");
    apply_full(r, XS_RULE_C2S, DB_HEADER, stanza, NULL, XS_RULE_EXPLAIN, &res);
    assert_int_equal(res.verdict, XS_VERDICT_REWRITTEN);
    assert_string_equal(res.xml, "<message to=\"x@y\"><body>heLo</body><db:x a=\"1\" b=\"2\"/>"
                                 "</message>");
    assert_int_equal(res.n_tags, 2);
    assert_string_equal(res.tags[1], "after");
    assert_string_equal(res.applied[1].before, "<message to=\"x@y\"><body>hello</body><db:x "
                                               "a=\"1\"/></message>");
    assert_same_tree(DB_HEADER, res.xml,
                     "<message to='x@y'><body>heLo</body><db:x a='1' b='2'/></message>");
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

/* Applies `r` to `node`, a stanza of a tree made by hand, and checks the tree is as it was. */
static void apply_to_node(xs_rules *r, xmlNode *node, xs_rule_result *res)
{
    xs_event ev = {.kind = XS_EV_STANZA, .node = node, .name = (const char *)node->name};
    xs_rule_ctx ctx = {.direction = XS_RULE_C2S};
    for (int reference = 1; reference >= 0; reference--) {
        tree_state before;
        tree_state_take(node, &before);
        r->reference = reference;
        if (reference) {
            assert_int_equal(xs_rules_apply(r, &ctx, &ev, res), 0);
            xs_rule_result ref = *res;
            assert_tree_untouched(node, &before);
            tree_state_take(node, &before);
            assert_int_equal(xs_rules_apply(r, &ctx, &ev, res), 0);
            r->reference = false;
            assert_same_result(res, &ref);
            xs_rule_result_clear(&ref);
        }
        assert_tree_untouched(node, &before);
    }
}

static void test_rules_stanza_is_its_own_document(void **state)
{
    /* A stanza with siblings in its stream: `/` is the stanza's own document, whose only child
     * it is; no axis leads to the stream element or the other stanzas. */
    static const char stream[] =
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
        "xmlns:db='jabber:server:dialback'><presence/><message id='m'><body>b</body><db:x/>"
        "</message><iq/></stream:stream>";
    xmlDoc *doc = xmlReadMemory(stream, sizeof(stream) - 1, NULL, NULL, XML_PARSE_NONET);
    assert_non_null(doc);
    xmlNode *message = xmlDocGetRootElement(doc)->children->next;
    assert_string_equal((const char *)message->name, "message");
    static const char *const exprs[] = {
        "count(/*) = 1",
        "/message and not(/stream:stream) and not(/presence)",
        "count(//*) = 3",
        "count(/message/../*) = 1 and not(/message/../self::*)",
        "not(preceding-sibling::*) and not(following-sibling::*)",
        "not(preceding::*) and not(following::*) and count(ancestor::*) = 0",
        "count(/message/ancestor::node()) = 1 and name(/*) = 'message'",
        "/message/db:x and count(/message/db:x) = 1 and //db:x",
        "count(namespace::*) = 3",
        "count(//node()) = 4 and string(/) = 'b'",
    };
    xs_buf text;
    xs_buf_init(&text, 0);
    xs_buf_adds(&text, "namespace db jabber:server:dialback\n");
    for (size_t i = 0; i < sizeof(exprs) / sizeof(exprs[0]); i++)
        xs_buf_addf(&text, "rule \"r%zu\"\n match %s\n then tag t%zu\nend\n", i, exprs[i], i);
    xs_buf_adds(&text, "rule \"w\"\n match /message\n then set-attr //db:x a 1\nend\n");
    char *t = xs_buf_take(&text, NULL);
    assert_non_null(t);
    xs_rules *r = compile(t);
    free(t);
    xs_rule_result res;
    apply_to_node(r, message, &res);
    for (size_t i = 0; i < res.n_tags || i < sizeof(exprs) / sizeof(exprs[0]); i++) {
        char want[32];
        snprintf(want, sizeof(want), "t%zu", i);
        if (i >= res.n_tags || strcmp(res.tags[i], want) != 0)
            print_message("false: %s\n", exprs[i]);
        assert_true(i < res.n_tags);
        assert_string_equal(res.tags[i], want);
    }
    assert_int_equal(res.verdict, XS_VERDICT_REWRITTEN);
    assert_string_equal(res.xml, "<message id=\"m\"><body>b</body><db:x a=\"1\"/></message>");
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
    xmlFreeDoc(doc);
}

static void test_rules_quick_evaluator_agrees(void **state)
{
    /* Each expression gives what libxml2 gives, on each stanza; `quick` says whether it is in the
     * quick evaluator's subset (so that both paths are really compared). */
    static const struct {
        const char *expr;
        bool quick;
    } cases[] = {
        {"/message/n = 5", true},
        {"/message/n > 4.5 and /message/n <= 5 and 5 >= /message/n and 4 < /message/n", true},
        {"number(/message/n) = 5 and number() != number()", true},
        {"/message/n != 5", true},
        {"/message/missing != 5 or /message/missing = 5", true},
        {"/message/body > 1 or /message/body < 1 or /message/body = 1", true},
        {"/message/body != 1 and number('x') != number('x')", true},
        {"number(/message/body) or boolean(number('x')) or count(/message/missing)", true},
        {"/message/@type = 'chat' and 'chat' = /message/@type", true},
        {"/message/@type != 'chat'", true},
        {"/message/@missing != 'x'", true},
        {"/message/body = true() and /message/missing = false() and true() = 'x'", true},
        {"/message/body < true() or /message/missing >= true()", true},
        {"'2' > '10' or '10' = 10.0 or 1 = true() or '' = false()", true},
        {"string-length(/message/body) = 5 and string-length('caf\xc3\xa9') = 4", true},
        {"string-length() > 10 and string-length(/message/missing) = 0", true},
        {"contains(/message/body, 'ell') and starts-with(., 'hel') and contains(., '')", true},
        {"contains(/message, 'a<b') and contains(string(/message), 'hello 5')", true},
        {"local-name(/message/*) = 'body' and local-name() = 'message'", true},
        {"namespace-uri(/message/x:y) = 'urn:x' and namespace-uri(/message/x:y/@x:a) = 'urn:x'",
         true},
        {"count(/message/*) = 3 and count(/message/@*) = 2 and count(/message/x:*) = 1", true},
        {"/message/body/text() = 'hello' and /message/text()", true},
        {"/message/x:y/c = 'a<b' and /message/x:y/c/text() = 'a<b'", true},
        {"/message/*[@x:a] and /message/*[@x:a = '2'] and not(/message/*[@x:a = 2.5])", true},
        {"/*/client:body and /*/body and /message/./body", true},
        {"/message[@type='chat'][body] and /message[body[. = 'hello']]", true},
        {"/message/body[contains(., 'password:')]", true},
        {"contains(/message/body, 'd: 12') and not(contains(/message/body, 'd: 13'))", true},
        {"contains(/message/body, ':b:c') and contains(/message/body, ':a:b')", true},
        {"contains(/message/body, ':c:') or contains(/message/body, 'a:a:x')", true},
        {"/message/*[local-name()='body' and namespace-uri()='jabber:client']", true},
        {"/message/n[number(.) > 100] or /message/n[. > 4]", true},
        {"boolean(/message/n) and not(/message/body[. = 'x']) and (true() or false())", true},
        {"/message/x:y[contains(., 'tu')] and /message/x:y = 'ta<bu'", true},
        {"/*[@type='error'] or /iq/error", true},
        {"/iq[@type='get']/*[local-name()='query' and namespace-uri()='jabber:iq:last']", true},
        {"string(/message/x:y/@x:a) = '2' and string() = string(/)", false},
        {"//body", false},
        {"/message/*[1]", false},
        {"count(/message/*) * 2 = 6", false},
        {"/message/body | /iq", false},
        {"name() = 'message'", false},
        {"/message/..", false},
        {"-1 < 0", false},
        {"/message/n = /message/n", false},
        {"string(1) = '1'", false},
        {"/message/@xml:lang = 'en' or lang('en')", false},
        {"1 = 1 = 1", false},
    };
    static const char *const stanzas[] = {
        ("<message type='chat' xmlns:x='urn:x' x:a='1'><body>hello</body><n> 5 </n>"
         "<x:y x:a='2'>t<c><![CDATA[a<b]]></c>u</x:y></message>"),
        "<message xml:lang='en'><body>password: 1234</body><n>-0.5e1</n></message>",
        "<iq type='error' id='1'><error type='cancel'/></iq>",
        "<iq type='get'><query xmlns='jabber:iq:last'/></iq>",
        "<message><body/><n/><x:y xmlns:x='urn:x' x:a=''/></message>",
        "<message><body>:a:a:a:a:a:a:a:a:a:a:a:a:a:a:a:a:a:a:a:a:a:a:a:a:a:b:c</body></message>",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[600];
        snprintf(text, sizeof(text),
                 "namespace x urn:x\nrule \"x\"\n match %s\n then tag yes\nend\n"
                 "rule \"t\"\n match /message\n then set-attr %s q 1\nend\n",
                 cases[i].expr, cases[i].quick ? "/message/*[@x:a]" : "//x:y");
        xs_rules *r = compile(text);
        if ((r->rules[0].matches[0].quick != NULL) != cases[i].quick)
            print_message("%s: quick form %s\n", cases[i].expr,
                          r->rules[0].matches[0].quick ? "made" : "not made");
        assert_true((r->rules[0].matches[0].quick != NULL) == cases[i].quick);
        for (size_t k = 0; k < sizeof(stanzas) / sizeof(stanzas[0]); k++) {
            xs_rule_result res;
            /* apply() compares with the reference. */
            apply(r, XS_RULE_C2S, stanzas[k], &res);
            xs_rule_result_clear(&res);
        }
        xs_rules_unref(r);
    }
    /* The first cases are true on the first stanza. */
    xs_rules *r = compile("namespace x urn:x\n"
                          "rule \"x\"\n match /message/n = 5 and /message/n != 6 and "
                          "/message/x:y = 'ta<bu' and string-length(/message/body) = 5\n"
                          " then tag yes\nend\n");
    xs_rule_result res;
    apply(r, XS_RULE_C2S, stanzas[0], &res);
    assert_int_equal(res.n_tags, 1);
    xs_rule_result_clear(&res);
    xs_rules_unref(r);

    /* Expressions too large or too deep for the quick form are left to libxml2. */
    xs_buf big;
    xs_buf_init(&big, 0);
    xs_buf_adds(&big, "rule \"big\"\n match /message/body");
    for (int i = 0; i < 200; i++)
        xs_buf_adds(&big, " and /message/n");
    xs_buf_adds(&big, "\n then tag big\nend\nrule \"deep\"\n match ");
    for (int i = 0; i < 40; i++)
        xs_buf_adds(&big, "not(");
    xs_buf_adds(&big, "/message/body");
    for (int i = 0; i < 40; i++)
        xs_buf_adds(&big, ")");
    xs_buf_adds(&big, "\n then tag deep\nend\n");
    char *big_text = xs_buf_take(&big, NULL);
    assert_non_null(big_text);
    r = compile(big_text);
    free(big_text);
    assert_null(r->rules[0].matches[0].quick);
    assert_null(r->rules[1].matches[0].quick);
    apply(r, XS_RULE_C2S, stanzas[0], &res);
    assert_int_equal(res.n_tags, 2);
    xs_rule_result_clear(&res);
    xs_rules_unref(r);

    /* Targets the quick evaluator selects, against libxml2's. */
    static const char *const targets[] = {
        "/message/*",
        "/message/x:y/c",
        "/message/@type",
        "/message/x:y/text()",
        "/message",
        "body",
        ".",
        "/message/*[not(@x:a)]",
        "/message/x:y/@*",
    };
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        char text[600];
        snprintf(text, sizeof(text),
                 "namespace x urn:x\nrule \"t\"\n match /message\n then set-attr %s q 1\n"
                 " then set-text %s \"new\"\n then remove %s\nend\n",
                 targets[i], targets[i], targets[i]);
        r = compile(text);
        assert_non_null(r->rules[0].actions[0].target.quick);
        apply(r, XS_RULE_C2S, stanzas[0], &res);
        assert_int_equal(res.verdict, XS_VERDICT_REWRITTEN);
        xs_rule_result_clear(&res);
        xs_rules_unref(r);
    }
}

static void test_rules_regex_prefilter(void **state)
{
    /* What a regex needs before it is tried (xs_re_run), and that texts without it are left
     * alone as the regex would leave them; digits beyond ASCII are digits to \d. */
    static const struct {
        const char *re;
        unsigned run;
    } cases[] = {
        {"\\b\\d{4}( ?\\d{4}){3}\\b", 4},
        {"[a-c]+", 1},
        {"x{2,}", 2},
        {"\\d{3,5}", 3},
        {"^\\b.{2}", 2},
        {"\\p{Nd}{2}", 2},
        {"[^]a]b", 1},
        {"a?b", 0},
        {"a|b", 0},
        {"(ab)", 0},
        {"\\d*", 0},
        {"[[:digit:]]", 0},
        {"a{,3}", 0},
        {"a{0}b", 0},
        {"\xc3\xa9", 0},
        {"\\Qa\\E", 0},
        {"(?i)a", 0},
    };
    static const char *const texts[] = {
        "card 4111 1111 1111 1111 here",
        "digits \xd9\xa0\xd9\xa1\xd9\xa2\xd9\xa3 and \xef\xbc\x91\xef\xbc\x92\xef\xbc\x93",
        "abc xx xxx 12 123 12345 \xc3\xa9 A]b bb",
        "nothing to see &lt;3 caf\xc3\xa9 \xf0\x9f\x9a\x80\xf0\x9f\x98\x80",
        "",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[300];
        snprintf(text, sizeof(text),
                 "rule \"r\"\n match /message\n then replace-text //body \"%s\" "
                 "\"<$0>\"\nend\n",
                 cases[i].re);
        xs_rules *r = compile(text);
        const xs_re_run *f = &r->rules[0].actions[0].re_run;
        if (f->run != cases[i].run)
            print_message("%s: run %u\n", cases[i].re, f->run);
        assert_int_equal(f->run, cases[i].run);
        for (size_t k = 0; k < sizeof(texts) / sizeof(texts[0]); k++) {
            char stanza[300];
            snprintf(stanza, sizeof(stanza), "<message><body>%s</body></message>", texts[k]);
            xs_rule_result res;
            apply(r, XS_RULE_C2S, stanza, &res);
            xs_rule_result_clear(&res);
        }
        xs_rules_unref(r);
    }
    xs_rules *r = compile("rule \"r\"\n match /message\n then replace-text //body \"\\d{4}\" X\n"
                          "end\n");
    const xs_re_run *f = &r->rules[0].actions[0].re_run;
    assert_false(xs_re_may_match(f, "12 345 <3 caf\xc3\xa9", 13));
    assert_false(xs_re_may_match(f, "\xf0\x9f\x9a\x80\xf0\x9f\x98\x80\xf0\x9f\x9a\x80", 12));
    assert_true(xs_re_may_match(f, "ab 1234", 7));
    assert_true(xs_re_may_match(f, "\xd9\xa0\xd9\xa1\xd9\xa2\xd9\xa3", 8));
    /* A lead byte none of whose characters is a digit breaks a run; one that has digits
     * (Devanagari, fullwidth) does not; a four-byte character always counts. */
    assert_false(xs_re_may_match(f, "1\xc3\xa9\x32\x33", 5));
    assert_false(xs_re_may_match(f, "12\xe2\x80\x94\x33\x34", 7));
    assert_true(xs_re_may_match(f, "\xe0\xa5\xa7\xe0\xa5\xa8\xe0\xa5\xa9\xe0\xa5\xaa", 12));
    assert_true(xs_re_may_match(f, "\xef\xbc\x91\xef\xbc\x92\xef\xbc\x93\xef\xbc\x94", 12));
    assert_true(xs_re_may_match(f, "1\xf0\x9f\x9a\x80\x32\x33", 7));
    static const char long_yes[] = "caf\xc3\xa9 \xe2\x80\x94 the meeting is at noon 9876";
    static const char long_no[] = "caf\xc3\xa9 \xe2\x80\x94 the meeting is at noon 987 12 3";
    assert_true(xs_re_may_match(f, long_yes, strlen(long_yes)));
    assert_false(xs_re_may_match(f, long_no, strlen(long_no)));
    xs_rule_result res;
    apply(r, XS_RULE_C2S, "<message><body>x \xd9\xa0\xd9\xa1\xd9\xa2\xd9\xa3 y</body></message>",
          &res);
    assert_string_equal(res.xml, "<message><body>x X y</body></message>");
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

/* Rules are sorted by the stanza their matches name, looked up once per stanza: past the table's
 * 64 entries, with two matches naming the same stanza or different ones, with a prefixed name. */
static void test_rules_sorted_by_stanza(void **state)
{
    size_t cap = 80 * 80 + 600, at = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    at += (size_t)snprintf(text + at, cap - at, "namespace c jabber:client\n");
    for (int i = 0; i < 70; i++)
        at += (size_t)snprintf(text + at, cap - at,
                               "rule \"r%d\"\n match /r%d\n then tag t%d\nend\n", i, i, i);
    at += (size_t)snprintf(text + at, cap - at,
                           "rule \"same\"\n match /r5[@a]\n match /c:r5\n then tag same\nend\n"
                           "rule \"two\"\n match /r5\n match /r6\n then tag two\nend\n"
                           "rule \"any\"\n match /*[@a]\n then tag any\nend\n");
    xs_rules *r = compile(text);
    static const struct {
        const char *stanza;
        const char *tags;
    } cases[] = {
        {"<r0/>", "t0"},
        {"<r63/>", "t63"},
        {"<r64/>", "t64"},
        {"<r69 a='1'/>", "t69 any"},
        {"<r5 a=''/>", "t5 same any"},
        {"<r5/>", "t5"},
        {"<r6/>", "t6"},
        {"<r70/>", ""},
        {"<x:r1 xmlns:x='urn:x'/>", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        xs_rule_result res;
        apply(r, XS_RULE_C2S, cases[i].stanza, &res);
        char got[200] = "";
        for (size_t k = 0; k < res.n_tags; k++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", k ? " " : "",
                     res.tags[k]);
        if (strcmp(got, cases[i].tags) != 0)
            print_message("%s: tags '%s'\n", cases[i].stanza, got);
        assert_string_equal(got, cases[i].tags);
        xs_rule_result_clear(&res);
    }
    xs_rules_unref(r);
    free(text);
}

/* string-length() of long texts of characters of one to four bytes (counted sixteen bytes at a
 * time, in lanes summed every 255 blocks): exactly the characters. */
static void test_rules_string_length_long(void **state)
{
    static const char *const chars[] = {"a", "\xc3\xa9", "\xe2\x80\x94", "\xf0\x9f\x9a\x80"};
    for (size_t len = 0; len < 6000; len = len * 3 + 7) {
        char *stanza = malloc(len * 4 + 64);
        assert_non_null(stanza);
        size_t at = (size_t)sprintf(stanza, "<message><body>");
        for (size_t i = 0; i < len; i++) {
            const char *c = chars[(i * 7 + i / 5) % 4];
            memcpy(stanza + at, c, strlen(c));
            at += strlen(c);
        }
        strcpy(stanza + at, "</body></message>");
        char text[200];
        snprintf(text, sizeof(text),
                 "rule \"n\"\n match string-length(/message/body) = %zu\n then tag yes\nend\n",
                 len);
        xs_rules *r = compile(text);
        xs_rule_result res;
        apply(r, XS_RULE_C2S, stanza, &res);
        assert_int_equal(res.n_tags, 1);
        xs_rule_result_clear(&res);
        xs_rules_unref(r);
        free(stanza);
    }
}

/* Random texts of pieces that count and pieces that break runs, at every length up to a few
 * blocks of sixteen bytes: the prefilter says "maybe" exactly when a run of characters that
 * count is long enough (measured here byte by byte), and never "no" where the regex matches. */
static void test_rules_regex_prefilter_random(void **state)
{
    static const char *const regexes[] = {"\\d{4}",     "\\b[a-f]{3}", "x{2,}",
                                          "\\p{Nd}{2}", ".{3}",        "[^ ]{5}"};
    static const char *const pieces[] = {"a",
                                         "x",
                                         "7",
                                         "1",
                                         "  ",
                                         "f",
                                         "\xc3\xa9",
                                         "\xe2\x80\x94",
                                         "\xf0\x9f\x9a\x80",
                                         "\xd9\xa3",
                                         "\xef\xbc\x91",
                                         "\xe0\xa5\xa7",
                                         "q",
                                         "\n",
                                         "-"};
    uint32_t seed = 12345;
    for (size_t r = 0; r < sizeof(regexes) / sizeof(regexes[0]); r++) {
        char text[300];
        snprintf(text, sizeof(text),
                 "rule \"r\"\n match /message\n then replace-text //body \"%s\" X\nend\n",
                 regexes[r]);
        xs_rules *rs = compile(text);
        const xs_action *a = &rs->rules[0].actions[0];
        const xs_re_run *f = &a->re_run;
        assert_int_not_equal(f->run, 0);
        pcre2_match_data *md = pcre2_match_data_create(1, NULL);
        assert_non_null(md);
        for (int k = 0; k < 4000; k++) {
            char t[128];
            size_t n = 0;
            seed = seed * 1103515245u + 12345u;
            size_t want = (seed >> 16) % 70;
            while (n < want) {
                seed = seed * 1103515245u + 12345u;
                const char *pc = pieces[(seed >> 16) % (sizeof(pieces) / sizeof(pieces[0]))];
                memcpy(t + n, pc, strlen(pc));
                n += strlen(pc);
            }
            size_t cur = 0, best = 0;
            for (size_t i = 0; i < n; i++) {
                unsigned st = f->step[(unsigned char)t[i]];
                cur = st == XS_RE_BREAK ? 0 : cur + (st == XS_RE_COUNT);
                best = cur > best ? cur : best;
            }
            bool maybe = xs_re_may_match(f, t, n);
            if (maybe != (best >= f->run))
                print_message("%s on %.*s: %d\n", regexes[r], (int)n, t, maybe);
            assert_int_equal(maybe, best >= f->run);
            int rc = pcre2_match(a->re, (PCRE2_SPTR)t, n, 0, 0, md, NULL);
            if (!maybe)
                assert_int_equal(rc, PCRE2_ERROR_NOMATCH);
        }
        pcre2_match_data_free(md);
        xs_rules_unref(rs);
    }
}

/* ---- counters, references, limits, misuse ---------------------------------------------------- */

static void test_rules_hit_counters_and_refs(void **state)
{
    xs_rules *r = compile("rule \"m\"\n match /message\n then tag m\nend\n"
                          "rule \"i\"\n match /iq\n then tag i\nend\n");
    xs_rule_result res;
    /* apply() runs each stanza twice (whole and byte by byte). */
    apply(r, XS_RULE_C2S, "<message/>", &res);
    xs_rule_result_clear(&res);
    apply(r, XS_RULE_C2S, "<message/>", &res);
    xs_rule_result_clear(&res);
    apply(r, XS_RULE_S2C, "<presence/>", &res);
    xs_rule_result_clear(&res);
    xs_rule_info info;
    assert_int_equal(xs_rules_info(r, 0, &info), 0);
    assert_int_equal(info.hits, 4);
    assert_int_equal(xs_rules_info(r, 1, &info), 0);
    assert_int_equal(info.hits, 0);
    /* A reference keeps the set; a result outlives it. */
    xs_rules *held = xs_rules_ref(r);
    assert_ptr_equal(held, r);
    run run1 = {.rules = r, .ctx = {.direction = XS_RULE_C2S}};
    feed(&run1, C2S_HEADER, "<message/>", 0);
    xs_rules_unref(r);
    xs_rules_unref(held);
    xs_rules_unref(NULL);
    assert_string_equal(run1.res.applied[0].rule, "m");
    assert_string_equal(run1.res.tags[0], "m");
    xs_rule_result_clear(&run1.res);
}

static void test_rules_limits_when_applying(void **state)
{
    /* More nodes than an action may change. */
    size_t n = XS_RULES_MAX_NODES + 50;
    char *stanza = malloc(n * 10 + 64);
    assert_non_null(stanza);
    strcpy(stanza, "<message>");
    for (size_t i = 0; i < n; i++)
        strcat(stanza, "<x a='1'/>");
    strcat(stanza, "</message>");
    /* By libxml2 and by the quick evaluator. */
    static const char *const many[] = {
        "rule \"n\"\n match /message\n then remove-attr //x a\nend\n",
        "rule \"n\"\n match /message\n then remove-attr /message/x a\nend\n",
        "rule \"n\"\n match /message\n then remove-attr /message/*[@a] a\nend\n",
    };
    xs_rules *r;
    for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++) {
        r = compile(many[i]);
        assert_true((r->rules[0].actions[0].target.quick != NULL) == (i > 0));
        run run1 = {.rules = r, .ctx = {.direction = XS_RULE_C2S}};
        feed_checked(&run1, C2S_HEADER, stanza, 0);
        assert_int_equal(run1.res.verdict, XS_VERDICT_REWRITTEN);
        assert_int_equal(run1.res.applied[0].nodes, XS_RULES_MAX_NODES);
        assert_non_null(strstr(run1.res.error, "more than 1024 nodes"));
        xs_rule_result_clear(&run1.res);
        xs_rules_unref(r);
    }
    free(stanza);

    /* Growth: a replacement that would add more than the budget. */
    r = compile("rule \"g\"\n match /message\n then replace-text //body a "
                "\"0123456789012345678901234567890123456789\"\nend\n");
    char big[40000];
    strcpy(big, "<message><body>");
    memset(big + 15, 'a', 30000);
    strcpy(big + 15 + 30000, "</body></message>");
    run run2 = {.rules = r, .ctx = {.direction = XS_RULE_C2S}};
    feed(&run2, C2S_HEADER, big, 0);
    assert_int_equal(run2.rc, 0);
    assert_int_equal(run2.res.verdict, XS_VERDICT_UNCHANGED);
    assert_non_null(strstr(run2.res.error, "would add more than"));
    xs_rule_result_clear(&run2.res);
    xs_rules_unref(r);

    /* An XPath that would take too long is stopped, and the rule does not match. */
    r = compile("rule \"slow\"\n match count(//*[count(//*[count(//*) > 0]) > 0]) > 0\n"
                " then tag slow\nend\n");
    stanza = malloc(3000 * 4 + 64);
    assert_non_null(stanza);
    strcpy(stanza, "<message>");
    for (size_t i = 0; i < 3000; i++)
        strcat(stanza, "<x/>");
    strcat(stanza, "</message>");
    run run3 = {.rules = r, .ctx = {.direction = XS_RULE_C2S}};
    feed(&run3, C2S_HEADER, stanza, 0);
    assert_int_equal(run3.rc, 0);
    assert_int_equal(run3.res.n_tags, 0);
    assert_non_null(run3.res.error);
    assert_non_null(strstr(run3.res.error, "rule \"slow\": XPath"));
    xs_rule_result_clear(&run3.res);
    xs_rules_unref(r);
    free(stanza);

    /* A regex that backtracks too much. */
    r = compile("rule \"re\"\n match /message\n then replace-text //body \"(a+)+$\" x\nend\n");
    run run4 = {.rules = r, .ctx = {.direction = XS_RULE_C2S}};
    feed(&run4, C2S_HEADER,
         "<message><body>aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab</body></message>",
         0);
    assert_int_equal(run4.rc, 0);
    assert_int_equal(run4.res.verdict, XS_VERDICT_UNCHANGED);
    assert_non_null(strstr(run4.res.error, "replace-text"));
    xs_rule_result_clear(&run4.res);
    xs_rules_unref(r);
}

/* Builds <message><body>!</body> then `n` <b> elements of `len` x's each </message>. */
static char *budget_stanza(size_t n, size_t len)
{
    size_t cap = 64 + n * (len + 7);
    char *s = malloc(cap);
    assert_non_null(s);
    size_t at = (size_t)sprintf(s, "<message><body>!</body>");
    for (size_t i = 0; i < n; i++) {
        memcpy(s + at, "<b>", 3);
        memset(s + at + 3, 'x', len);
        memcpy(s + at + 3 + len, "</b>", 4);
        at += len + 7;
    }
    strcpy(s + at, "</message>");
    return s;
}

/* Every regex of a stanza draws on one budget: a pattern that backtracks badly, run by a global
 * replace-text on many text nodes, used to cost PCRE2's match limit once per text node and per
 * match (seconds of CPU for one stanza). Now the stanza passes unchanged, whatever earlier rules
 * rewrote, with a note naming the rule; no later rule runs. */
static void test_rules_regex_budget_per_stanza(void **state)
{
    (void)state;
    static const char text[] = "rule \"tag\"\n match /message\n then tag seen\nend\n"
                               "rule \"cheap\"\n match /message\n then replace-text /message/body"
                               " \"!\" \"?\"\nend\n"
                               "rule \"boom\"\n match /message\n then replace-text //b"
                               " \"(x+x+)+y|!\" \"?\"\nend\n"
                               "rule \"after\"\n match /message\n then tag after\nend\n";
    /* A few long texts (one match call each goes far past any per-call limit), and many short
     * ones (each call well under it, together far over the budget). */
    static const size_t shapes[][2] = {{300, 800}, {1000, 16}};
    for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
        xs_rules *r = compile(text);
        char *stanza = budget_stanza(shapes[k][0], shapes[k][1]);
        run run1 = {.rules = r, .ctx = {.direction = XS_RULE_C2S}};
        feed_checked(&run1, C2S_HEADER, stanza, 0);
        assert_int_equal(run1.rc, 0);
        assert_int_equal(run1.res.verdict, XS_VERDICT_UNCHANGED);
        assert_null(run1.res.xml);
        assert_int_equal(run1.res.n_tags, 0);
        assert_int_equal(run1.res.n_applied, 0);
        assert_int_equal(run1.res.rules_matched, 3);
        char want[200];
        snprintf(want, sizeof(want),
                 "rule \"boom\": replace-text: the regex budget of this stanza was used up (%lu "
                 "steps); the stanza passes unchanged",
                 XS_RULES_REGEX_STEPS + XS_RULES_REGEX_STEPS_PER_BYTE * strlen(stanza));
        assert_string_equal(run1.res.error, want);
        xs_rule_result_clear(&run1.res);
        free(stanza);
        xs_rules_unref(r);
    }

    /* The same rules on a stanza the pattern handles quickly: every rule applies. */
    xs_rules *r = compile(text);
    run run2 = {.rules = r, .ctx = {.direction = XS_RULE_C2S}};
    feed_checked(&run2, C2S_HEADER, "<message><body>!</body><b>xxy!</b></message>", 0);
    assert_int_equal(run2.res.verdict, XS_VERDICT_REWRITTEN);
    assert_null(run2.res.error);
    assert_non_null(strstr(run2.res.xml, "<body>?</body><b>?\?</b>"));
    assert_int_equal(run2.res.n_tags, 2);
    xs_rule_result_clear(&run2.res);
    xs_rules_unref(r);
}

static int wrong_event(void *user, const xs_event *ev)
{
    xs_rules *r = user;
    xs_rule_result res;
    xs_rule_ctx ctx = {.direction = XS_RULE_C2S};
    if (ev->kind == XS_EV_STREAM_OPEN) {
        assert_int_equal(xs_rules_apply(r, &ctx, ev, &res), XS_EINVAL);
    } else if (ev->kind == XS_EV_STANZA) {
        ctx.direction = XS_RULE_ANY;
        assert_int_equal(xs_rules_apply(r, &ctx, ev, &res), XS_EINVAL);
        /* Without a tree. */
        assert_null(ev->node);
        ctx.direction = XS_RULE_C2S;
        assert_int_equal(xs_rules_apply(r, &ctx, ev, &res), XS_EINVAL);
    }
    xs_rule_result_clear(&res);
    return 0;
}

static void test_rules_apply_refuses_misuse(void **state)
{
    xs_rules *r = compile("rule \"m\"\n match /message\n then drop\nend\n");
    xs_parser *p = NULL;
    assert_int_equal(xs_parser_new(NULL, XS_PARSER_RAW, wrong_event, r, &p), 0);
    const char s[] = C2S_HEADER "<message/>";
    assert_int_equal(xs_parser_feed(p, s, strlen(s), NULL), 0);
    xs_parser_free(p);
    xs_rules_unref(r);
}

/* ---- files and the command ------------------------------------------------------------------- */

static void test_rules_examples_compile(void **state)
{
    static const char *const files[] = {"no-typing.rules", "redact-cards.rules", "strip-sm.rules",
                                        "bounce-version.rules", "slow-and-marked.rules"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/examples/rules/%s", XS_SOURCE_DIR, files[i]);
        xs_rules *r = NULL;
        xs_rule_diag d = {0};
        int rc = xs_rules_load(path, XS_REWRITE_DEFAULT, &r, &d);
        for (size_t k = 0; k < d.n; k++)
            print_message("%s\n", d.errors[k].message);
        assert_int_equal(rc, 0);
        assert_true(xs_rules_count_file(r) >= 1);
        xs_rule_diag_clear(&d);
        xs_rules_unref(r);
    }
    /* And they do what they say. */
    char path[512];
    snprintf(path, sizeof(path), "%s/examples/rules/no-typing.rules", XS_SOURCE_DIR);
    xs_rules *r = NULL;
    assert_int_equal(xs_rules_load(path, 0, &r, NULL), 0);
    xs_rule_result res;
    apply(r, XS_RULE_C2S,
          "<message to='b@x'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
          &res);
    assert_int_equal(res.verdict, XS_VERDICT_DROP);
    xs_rule_result_clear(&res);
    apply(r, XS_RULE_C2S,
          "<message to='b@x'><body>hi</body><active "
          "xmlns='http://jabber.org/protocol/chatstates'/></message>",
          &res);
    assert_int_equal(res.verdict, XS_VERDICT_UNCHANGED);
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
    snprintf(path, sizeof(path), "%s/examples/rules/redact-cards.rules", XS_SOURCE_DIR);
    assert_int_equal(xs_rules_load(path, 0, &r, NULL), 0);
    apply(r, XS_RULE_S2C,
          "<message><body>4111-1111-1111-1111 and 4111 1111-1111 1111</body>"
          "</message>",
          &res);
    assert_non_null(strstr(res.xml, "<body>[card] and 4111 1111-1111 1111</body>"));
    xs_rule_result_clear(&res);
    xs_rules_unref(r);
}

static char *write_temp(const char *text)
{
    const char *dir = getenv("XS_TEST_TMP");
    char *path = malloc(512);
    assert_non_null(path);
    snprintf(path, 512, "%s/test_rules_XXXXXX", dir != NULL ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        snprintf(path, 512, "/tmp/test_rules_XXXXXX");
        fd = mkstemp(path);
    }
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static int run_cmd(int argc, const char *const *args)
{
    char *argv[8];
    for (int i = 0; i < argc; i++)
        argv[i] = (char *)args[i];
    argv[argc] = NULL;
    fflush(stdout);
    return xs_rules_cmd_main(argc, argv);
}

static void test_rules_command(void **state)
{
    char *good = write_temp("namespace x urn:x\nrule \"a b\"\n match /message/x:y\n then drop\n"
                            "end\n");
    char *bad = write_temp("rule \"a\"\n match /message[\n then explode\nend\n");
    const char *check_good[] = {"rules", "check", good};
    assert_int_equal(run_cmd(3, check_good), 0);
    const char *check_bad[] = {"rules", "check", bad};
    assert_int_equal(run_cmd(3, check_bad), 2);
    const char *list[] = {"rules", "list", "--builtin", good};
    assert_int_equal(run_cmd(4, list), 0);
    const char *list_only_builtin[] = {"rules", "--builtin", "list"};
    assert_int_equal(run_cmd(3, list_only_builtin), 0);
    const char *ns[] = {"rules", "namespaces"};
    assert_int_equal(run_cmd(2, ns), 0);
    const char *help[] = {"rules", "--help"};
    assert_int_equal(run_cmd(2, help), 0);
    const char *none[] = {"rules"};
    assert_int_equal(run_cmd(1, none), 2);
    const char *unknown[] = {"rules", "frob"};
    assert_int_equal(run_cmd(2, unknown), 2);
    const char *missing[] = {"rules", "check"};
    assert_int_equal(run_cmd(2, missing), 2);
    const char *nofile[] = {"rules", "check", "/nonexistent.rules"};
    assert_int_equal(run_cmd(3, nofile), 2);
    const char *badopt[] = {"rules", "check", "--frob", good};
    assert_int_equal(run_cmd(4, badopt), 2);
    unlink(good);
    unlink(bad);
    free(good);
    free(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_parse_issue_example),
        cmocka_unit_test(test_rules_parse_errors_with_position),
        cmocka_unit_test(test_rules_parse_reports_every_error_in_order),
        cmocka_unit_test(test_rules_parse_limits),
        cmocka_unit_test(test_rules_drop),
        cmocka_unit_test(test_rules_bounce_error_stanza),
        cmocka_unit_test(test_rules_bounce_never_errors_or_results),
        cmocka_unit_test(test_rules_set_and_remove_attr),
        cmocka_unit_test(test_rules_set_text),
        cmocka_unit_test(test_rules_replace_text_groups_and_utf8),
        cmocka_unit_test(test_rules_remove),
        cmocka_unit_test(test_rules_insert_fragment_namespaces),
        cmocka_unit_test(test_rules_inject_and_delay),
        cmocka_unit_test(test_rules_tags),
        cmocka_unit_test(test_rules_order_and_pass),
        cmocka_unit_test(test_rules_direction_filter),
        cmocka_unit_test(test_rules_placeholders),
        cmocka_unit_test(test_rules_xpath_namespaces),
        cmocka_unit_test(test_rules_xpath_tokens),
        cmocka_unit_test(test_rules_root_name_shortcut),
        cmocka_unit_test(test_rules_stream_features_sm),
        cmocka_unit_test(test_rules_rewritten_output_reparses),
        cmocka_unit_test(test_rules_untouched_is_unchanged),
        cmocka_unit_test(test_rules_explain_before_after),
        cmocka_unit_test(test_rules_builtin_equivalent_to_features),
        cmocka_unit_test(test_rules_split_reads),
        cmocka_unit_test(test_rules_copy_on_write),
        cmocka_unit_test(test_rules_stanza_is_its_own_document),
        cmocka_unit_test(test_rules_quick_evaluator_agrees),
        cmocka_unit_test(test_rules_regex_prefilter),
        cmocka_unit_test(test_rules_regex_prefilter_random),
        cmocka_unit_test(test_rules_string_length_long),
        cmocka_unit_test(test_rules_sorted_by_stanza),
        cmocka_unit_test(test_rules_hit_counters_and_refs),
        cmocka_unit_test(test_rules_limits_when_applying),
        cmocka_unit_test(test_rules_regex_budget_per_stanza),
        cmocka_unit_test(test_rules_apply_refuses_misuse),
        cmocka_unit_test(test_rules_examples_compile),
        cmocka_unit_test(test_rules_command),
    };
    xmlInitParser();
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    xmlCleanupParser();
    return failed;
}
