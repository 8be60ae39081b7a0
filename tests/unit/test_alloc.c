/* Allocation failure: for every N, the Nth allocation of a run fails, and the run must end in
 * XS_ENOMEM (or recover and give exactly what a run without failures gives), without a crash or
 * a leak (ASan/LSan). Allocations are counted through our allocator hook (inspect/alloc.h) and
 * libxml2's; see failalloc.h. Each loop prints how many failure points it exercised. The session
 * (proxy/session.c) is driven with plain buffers, as tests/unit/test_session.c does, on plain legs
 * so that no TLS is needed: there a failure must end the session in order (both legs closed, the
 * observer told why), or change nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "failalloc.h"
#include "filters/features.h"
#include "filters/rules.h"
#include "inspect/error.h"
#include "inspect/observer.h"
#include "inspect/parser.h"
#include "proxy/session.h"

#include <libxml/parser.h>
#include <libxml/tree.h>

/* ---- a log of what a run did, built without counted allocations ------------------------------ */

typedef struct runlog {
    char text[16384];
    size_t len;
    int enomem_events; /* error events that said XS_ENOMEM */
    int other_errors;  /* error events that said anything else */
} runlog;

static void log_add(runlog *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void log_add(runlog *l, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(l->text + l->len, sizeof(l->text) - l->len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof(l->text) - l->len);
    l->len += (size_t)n;
}

/* ---- the parser ------------------------------------------------------------------------------ */

/* A small stream: stanzas the fast path takes, one it leaves to libxml2 (a character reference in
 * a prefixed element), a keepalive, and the close. */
static const char STREAM[] =
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>"
    "<message to='juliet@example.com' id='m1' type='chat'><body>hi &amp; bye</body>"
    "<x xmlns='urn:x' a='1'/></message> "
    "<iq type='get' id='i1'><query xmlns='jabber:iq:version'/></iq>"
    "<message xmlns:p='urn:p'><p:a p:b='c'>&#x263A;</p:a></message>"
    "<presence><show>away</show></presence></stream:stream>";

static int on_event(void *user, const xs_event *ev)
{
    runlog *l = user;

    fa.paused = true;
    log_add(l, "%s %llu+%zu %s", xs_event_kind_name(ev->kind), (unsigned long long)ev->offset,
            ev->len, ev->name != NULL ? ev->name : "-");
    if (ev->node != NULL) {
        xmlDoc *doc = xs_stanza_copy(ev->node);
        xmlChar *x = NULL;
        int n = 0;

        assert_non_null(doc);
        xmlDocDumpMemory(doc, &x, &n);
        assert_non_null(x);
        log_add(l, " %s", (const char *)x);
        xmlFree(x);
        xmlFreeDoc(doc);
    }
    if (ev->kind == XS_EV_ERROR) {
        if (ev->error == XS_ENOMEM && ev->error_kind == XS_PERR_NO_MEMORY)
            l->enomem_events++;
        else
            l->other_errors++;
        log_add(l, " %s %s", xs_errname(ev->error), ev->message != NULL ? ev->message : "");
    }
    log_add(l, "\n");
    fa.paused = false;
    return 0;
}

/* Feeds STREAM in reads of `step` bytes (0: at once) to a new parser with trees. */
static int parse_run(unsigned options, size_t step, runlog *l)
{
    xs_parser *p = NULL;
    size_t len = sizeof(STREAM) - 1;
    int rc;

    memset(l, 0, sizeof(*l));
    rc = xs_parser_new(NULL, options, on_event, l, &p);
    for (size_t at = 0; rc == 0 && at < len;) {
        size_t n = step == 0 || len - at < step ? len - at : step;
        rc = xs_parser_feed(p, STREAM + at, n, NULL);
        at += n;
    }
    xs_parser_free(p);
    return rc;
}

/* What a loop over every failure point found. */
typedef struct points {
    unsigned long ours; /* failures of our allocations: each ended in XS_ENOMEM or recovered */
    unsigned long libs; /* failures of libxml2's allocations */
    /* Failures of libxml2's allocations that libxml2 itself reported as something else (2.9
     * turns some into a parse error: "xmlns: '...' is not a valid URI"); no crash, no leak. */
    unsigned long misreported;
} points;

typedef int (*run_fn)(const void *arg, runlog *l);

/* Fails every allocation point of `run` in turn, once each: our allocations must end in
 * XS_ENOMEM, or be recovered from with exactly the output of a run without failures. */
static points every_failure(run_fn run, const void *arg, bool ours_only)
{
    static runlog ref, got;
    points pt = {0};

    fa_arm(0, false);
    assert_int_equal(run(arg, &ref), 0);
    if (ref.enomem_events + ref.other_errors != 0)
        fprintf(stderr, "%s", ref.text);
    assert_int_equal(ref.enomem_events + ref.other_errors, 0);
    for (unsigned long n = 1;; n++) {
        fa_arm(n, ours_only);
        int rc = run(arg, &got);
        if (!fa.failed)
            break;
        bool proper =
            got.other_errors == 0 && (rc == 0 ? strcmp(got.text, ref.text) == 0 : rc == XS_ENOMEM);
        if (fa.failed_ours) {
            pt.ours++;
            if (!proper)
                fprintf(stderr, "allocation %lu (ours): %s\n--- got\n%s--- want\n%s", n,
                        xs_errname(rc), got.text, ref.text);
            assert_true(proper);
        } else {
            pt.libs++;
            pt.misreported += !proper;
        }
    }
    fa_arm(0, false);
    return pt;
}

static int parse_run_arg(const void *arg, runlog *l)
{
    const size_t *a = arg;
    return parse_run((unsigned)a[0], a[1], l);
}

static void test_alloc_parser_every_failure(void **state)
{
    static const struct {
        unsigned options;
        size_t step;
    } runs[] = {
        {XS_PARSER_TREE | XS_PARSER_RAW, 0},
        {XS_PARSER_TREE | XS_PARSER_RAW, 37},
        {XS_PARSER_RAW, 0},
        {XS_PARSER_TREE | XS_PARSER_LIBXML2_ONLY, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
        size_t arg[2] = {runs[i].options, runs[i].step};
        points pt = every_failure(parse_run_arg, arg, false);
        printf("parser (options %#x, reads of %zu): %lu failure points (%lu ours, %lu libxml2's, "
               "%lu of those misreported by libxml2)\n",
               runs[i].options, runs[i].step, pt.ours + pt.libs, pt.ours, pt.libs, pt.misreported);
        assert_true(pt.ours > 0);
    }
}

/* ---- the rules ------------------------------------------------------------------------------- */

static const char RULES[] = "namespace h urn:example:hint\n"
                            "rule \"mark chats\"\n"
                            "  direction c2s\n"
                            "  match /message[@type = 'chat']/body\n"
                            "  then set-attr /message h:seen yes\n"
                            "  then replace-text /message/body \"\\b(hi|bye)\\b\" \"<$1>\"\n"
                            "  then insert /message \"<h:note>held {id}</h:note>\"\n"
                            "  then remove-attr /message id\n"
                            "  then tag marked\n"
                            "end\n"
                            "rule \"bounce version\"\n"
                            "  match /iq[@type = 'get']/version:query\n"
                            "  then bounce service-unavailable\n"
                            "end\n"
                            "rule \"quiet presence\"\n"
                            "  match /presence[show = 'away']\n"
                            "  then remove /presence/show\n"
                            "  then set-text /presence/status \"gone\"\n"
                            "end\n"
                            "rule \"drop typing\"\n"
                            "  match /message[chatstates:composing]\n"
                            "  then drop\n"
                            "end\n";

static const char *const STANZAS[] = {
    "<message to='juliet@example.com' id='m1' type='chat'><body>hi &amp; bye</body></message>",
    "<iq type='get' id='i1' to='example.com'><query xmlns='jabber:iq:version'/></iq>",
    "<presence><show>away</show><status>x</status></presence>",
    "<message><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
    "<message type='normal'><body>untouched</body></message>",
};
#define N_STANZAS (sizeof(STANZAS) / sizeof(STANZAS[0]))

typedef struct stanzas {
    xmlDoc *doc[N_STANZAS];
    xs_event ev[N_STANZAS];
} stanzas;

static void stanzas_make(stanzas *s)
{
    static const xs_attr decls[] = {
        {NULL, NULL, "jabber:client", NULL},
        {"stream", NULL, "http://etherx.jabber.org/streams", NULL},
    };

    for (size_t i = 0; i < N_STANZAS; i++) {
        xmlNode *el = NULL;
        assert_int_equal(
            xs_element_parse(STANZAS[i], strlen(STANZAS[i]), decls, 2, &s->doc[i], &el), 0);
        s->ev[i] = (xs_event){.kind = XS_EV_STANZA,
                              .node = el,
                              .name = (const char *)el->name,
                              .raw = STANZAS[i],
                              .len = strlen(STANZAS[i])};
    }
}

static void stanzas_free(stanzas *s)
{
    for (size_t i = 0; i < N_STANZAS; i++)
        xmlFreeDoc(s->doc[i]);
}

/* Compiles RULES (with the built-in rules) and applies them to every stanza. */
static int rules_run(const stanzas *s, runlog *l)
{
    xs_rules *set = NULL;
    xs_rule_diag diag;
    int rc;

    memset(l, 0, sizeof(*l));
    memset(&diag, 0, sizeof(diag));
    rc = xs_rules_parse(RULES, sizeof(RULES) - 1, "test.rules", XS_REWRITE_DEFAULT, &set, &diag);
    if (rc != 0 && diag.n > 0)
        log_add(l, "diag %s\n", diag.errors[0].message);
    xs_rule_diag_clear(&diag);
    for (size_t i = 0; rc == 0 && i < N_STANZAS; i++) {
        xs_rule_ctx ctx = {.direction = XS_RULE_C2S, .session = "s1"};
        xs_rule_result res;

        rc = xs_rules_apply(set, &ctx, &s->ev[i], &res);
        if (rc == 0) {
            log_add(l, "%zu %s %s %s %s %zu tags %zu applied\n", i,
                    xs_rule_verdict_name(res.verdict), res.xml != NULL ? res.xml : "-",
                    res.bounce != NULL ? res.bounce : "-", res.error != NULL ? res.error : "-",
                    res.n_tags, res.n_applied);
        }
        xs_rule_result_clear(&res);
    }
    xs_rules_unref(set);
    return rc;
}

static int rules_run_arg(const void *arg, runlog *l)
{
    return rules_run(arg, l);
}

static void test_alloc_rules_every_failure(void **state)
{
    stanzas s;

    (void)state;
    fa_arm(0, false);
    stanzas_make(&s);
    /* Only our allocations fail here: libxml2 2.9's XPath dereferences NULL when it cannot
     * allocate an evaluation context (xmlXPathCompiledEval() runs a parser context it did not
     * check), which no caller can prevent; later libxml2 releases check it. */
    points pt = every_failure(rules_run_arg, &s, true);
    printf("rules (compile + apply to %zu stanzas): %lu failure points (ours)\n", N_STANZAS,
           pt.ours);
    assert_true(pt.ours > 0);
    stanzas_free(&s);
}

/* ---- the session ----------------------------------------------------------------------------- */

#define NS_STREAMS "xmlns:stream='http://etherx.jabber.org/streams'"
static const char C_HDR[] = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' " NS_STREAMS
                            " to='example.test' version='1.0'>";
static const char S_HDR[] = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' " NS_STREAMS
                            " from='example.test' id='s-1' version='1.0'>";
static const char S_FEAT[] =
    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    "<mechanism>PLAIN</mechanism></mechanisms></stream:features>";
static const char C_AUTH[] =
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>";
static const char C_MSG[] = "<message to='bob@example.test' type='chat' id='m1'><body>h&amp;i "
                            "&#x41;</body></message>";
static const char S_MSG[] = "<message from='bob@example.test/x' type='chat' id='m2'>\n  <body "
                            "xml:lang=\"en\">hi</body>\n</message>";
static const char END[] = "</stream:stream>";

/* The legs: what the session does to them goes into the run's log. */
typedef struct legs {
    runlog *log;
    unsigned closes[2];
} legs;

static int legs_write(void *ctx, xs_side side, const char *data, size_t len)
{
    legs *g = ctx;
    log_add(g->log, "write %c %.*s\n", side == XS_CLIENT ? 'C' : 'S', (int)len, data);
    return 0;
}

static int legs_start_tls(void *ctx, xs_side side, const char *name)
{
    (void)ctx, (void)side, (void)name;
    fail_msg("start_tls on plain legs");
    return XS_ESTATE;
}

static int legs_connect(void *ctx)
{
    legs *g = ctx;
    log_add(g->log, "connect\n");
    return 0;
}

static void legs_close(void *ctx, xs_side side)
{
    legs *g = ctx;
    g->closes[side]++;
    log_add(g->log, "close %c\n", side == XS_CLIENT ? 'C' : 'S');
}

static uint64_t legs_now_us(void *ctx, int wall)
{
    (void)ctx;
    return wall ? 1700000000000000u : 0;
}

static void legs_diag(void *ctx, const char *text)
{
    legs *g = ctx;
    log_add(g->log, "diag %s\n", text);
}

static const xs_session_io legs_io = {
    .write = legs_write,
    .start_tls = legs_start_tls,
    .connect = legs_connect,
    .close = legs_close,
    .now_us = legs_now_us,
    .diag = legs_diag,
};

/* An observer that writes what it is told into the run's log, and counts the ends. */
typedef struct watch {
    runlog *log;
    unsigned closed;
} watch;

static int watch_event(void *ctx, const xs_obs_event *ev)
{
    watch *w = ctx;

    switch (ev->kind) {
    case XS_OBS_PARSED:
        log_add(w->log, "seen %s %s\n", xs_event_kind_name(ev->ev->kind),
                ev->ev->name != NULL ? ev->ev->name : "-");
        if (ev->ev->kind == XS_EV_ERROR) {
            if (ev->ev->error == XS_ENOMEM)
                w->log->enomem_events++;
            else
                w->log->other_errors++;
        }
        break;
    case XS_OBS_CLOSED:
        w->closed++;
        log_add(w->log, "closed: %s\n", ev->summary->cause != NULL ? ev->summary->cause : "-");
        break;
    default:
        log_add(w->log, "%s %s\n", ev->level != NULL ? ev->level : "-",
                ev->text != NULL ? ev->text : "-");
        break;
    }
    return 0;
}

/* Feeds one side unless the session is closing; returns whether it took everything. */
static void session_feed(xs_session *s, xs_side side, const char *data)
{
    if (!xs_session_closing(s))
        assert_int_equal(xs_session_on_data(s, side, data, strlen(data)), strlen(data));
}

/* The result of one run of the session besides its log. */
typedef struct session_end {
    int rc;       /* of xs_session_new() */
    bool closing; /* the session decided to close */
    unsigned closes[2];
    unsigned closed; /* XS_OBS_CLOSED events */
} session_end;

/* A small exchange on plain legs: headers, features, PLAIN auth (a secret to mask), a message
 * each way and both closes; every stanza with its tree (the observer asks for them). */
static void session_run(xs_rules *const *rules, runlog *l, session_end *end)
{
    legs g = {.log = l};
    watch w = {.log = l};
    const xs_observer obs = {.on_event = watch_event,
                             .ctx = &w,
                             .policy = XS_OBS_WARN,
                             .needs_tree = 1,
                             .name = "the test's observer"};
    xs_session_cfg cfg = {.client_mode = XS_TLSMODE_NONE,
                          .server_mode = XS_TLSMODE_NONE,
                          .rewrites = XS_REWRITE_DEFAULT,
                          .observers = &obs,
                          .n_observers = 1,
                          .rules = rules};
    xs_session *s = NULL;

    memset(l, 0, sizeof(*l));
    memset(end, 0, sizeof(*end));
    end->rc = xs_session_new(&cfg, &legs_io, &g, 7, "127.0.0.1:40000", &s);
    if (end->rc != 0)
        return;
    xs_session_start(s);
    session_feed(s, XS_CLIENT, C_HDR);
    if (!xs_session_closing(s))
        xs_session_on_connected(s, 0, NULL);
    session_feed(s, XS_SERVER, S_HDR);
    session_feed(s, XS_SERVER, S_FEAT);
    session_feed(s, XS_CLIENT, C_AUTH);
    session_feed(s, XS_CLIENT, C_MSG);
    session_feed(s, XS_SERVER, S_MSG);
    session_feed(s, XS_SERVER, END);
    session_feed(s, XS_CLIENT, END);
    end->closing = xs_session_closing(s) != 0;
    xs_session_free(s);
    end->closes[0] = g.closes[0];
    end->closes[1] = g.closes[1];
    end->closed = w.closed;
}

/* Fails every allocation of a session run in turn. Ours only: libxml2 2.9's XPath dereferences
 * NULL when it cannot allocate (see the rules' loop), and its xmlDOMWrapCloneNode() leaks the
 * partial copy when an allocation fails inside it (the masking's copy of a stanza).
 * TODO(issue 12): count libxml2's too once the masking copies without xmlDOMWrapCloneNode(). */
static points session_every_failure(xs_rules *const *rules, bool ours_only,
                                    unsigned long *recovered)
{
    static runlog ref, got;
    session_end end;
    points pt = {0};

    fa_arm(0, false);
    session_run(rules, &ref, &end);
    if (ref.other_errors + ref.enomem_events != 0 || !end.closing || end.closes[0] != 1 ||
        end.closes[1] != 1 || end.closed != 1)
        fprintf(stderr, "%s", ref.text);
    assert_int_equal(end.rc, 0);
    assert_int_equal(ref.other_errors + ref.enomem_events, 0);
    assert_true(end.closing);
    assert_int_equal(end.closes[0], 1);
    assert_int_equal(end.closes[1], 1);
    assert_int_equal(end.closed, 1);
    *recovered = 0;
    for (unsigned long n = 1;; n++) {
        fa_arm(n, ours_only);
        session_run(rules, &got, &end);
        if (!fa.failed)
            break;
        *(fa.failed_ours ? &pt.ours : &pt.libs) += 1;
        if (end.rc != 0) {
            /* Nothing was made, nothing is left: LSan checks the second half at exit. */
            assert_int_equal(end.rc, XS_ENOMEM);
            continue;
        }
        if (strcmp(got.text, ref.text) == 0) {
            (*recovered)++;
            continue;
        }
        /* An orderly end: the session closed both legs it had (the server's only once it was
         * asked to connect) and told the observer why, once. */
        bool orderly = end.closing && end.closes[0] == 1 && end.closes[1] <= 1 && end.closed == 1;
        if (!orderly)
            fprintf(stderr, "allocation %lu (%s): --- got\n%s--- want\n%s", n,
                    fa.failed_ours ? "ours" : "libxml2's", got.text, ref.text);
        assert_true(orderly);
    }
    fa_arm(0, false);
    return pt;
}

static void test_alloc_session_every_failure(void **state)
{
    xs_rules *builtin = NULL;
    xs_rules *none = NULL;
    unsigned long recovered;

    (void)state;
    fa_arm(0, false);
    assert_int_equal(xs_rules_builtin(XS_REWRITE_DEFAULT | XS_REWRITE_STARTTLS, &builtin), 0);
    points pt = session_every_failure(&builtin, true, &recovered);
    printf("session (plain legs, built-in rules): %lu failure points (ours; %lu recovered from "
           "with the same output)\n",
           pt.ours, recovered);
    assert_true(pt.ours > 0);
    pt = session_every_failure(&none, true, &recovered);
    printf("session (plain legs, no rules): %lu failure points (ours; %lu recovered from with the "
           "same output)\n",
           pt.ours, recovered);
    assert_true(pt.ours > 0);
    xs_rules_unref(builtin);
}

static void quiet(void *ctx, const char *fmt, ...)
{
    (void)ctx, (void)fmt;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_parser_every_failure),
        cmocka_unit_test(test_alloc_rules_every_failure),
        cmocka_unit_test(test_alloc_session_every_failure),
    };
    if (fa_install() != 0) {
        fprintf(stderr, "could not install the counting allocator\n");
        return 1;
    }
    xmlInitParser();
    /* libxml2 prints what fails before a context has our handlers; the test checks the codes. */
    xmlSetGenericErrorFunc(NULL, quiet);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
