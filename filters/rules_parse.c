/* The rules-file compiler: text in, a compiled rule set or every error with its position out.
 * See rules.h for the language. Everything that can be checked is checked here, once, so that
 * applying a rule to a stanza never meets a syntax error: XPaths are rewritten for namespaces,
 * compiled and tried on a dummy stanza; regexes and their replacements are compiled and checked;
 * XML fragments are parsed. */
#include "filters/features.h"
#include "filters/rule_set.h"
#include "filters/rules_impl.h"

#include "inspect/alloc.h"
#include "inspect/error.h"
#include "inspect/fragment.h"
#include "inspect/reference.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/xpathInternals.h>

/* replace-text regexes are UTF-8 with Unicode properties (\d is any decimal digit). */
#define REGEX_OPTIONS (PCRE2_UTF | PCRE2_UCP)

/* ---- tables ---------------------------------------------------------------------------------- */

static const xs_rules_ns builtin_ns[] = {
    {"client", "jabber:client"},
    {"server", "jabber:server"},
    {"stream", "http://etherx.jabber.org/streams"},
    {"stream-error", "urn:ietf:params:xml:ns:xmpp-streams"},
    {"stanza-error", "urn:ietf:params:xml:ns:xmpp-stanzas"},
    {"tls", "urn:ietf:params:xml:ns:xmpp-tls"},
    {"sasl", "urn:ietf:params:xml:ns:xmpp-sasl"},
    {"sasl2", "urn:xmpp:sasl:2"},
    {"sasl-cb", "urn:xmpp:sasl-cb:0"},
    {"fast", "urn:xmpp:fast:0"},
    {"bind", "urn:ietf:params:xml:ns:xmpp-bind"},
    {"bind2", "urn:xmpp:bind:0"},
    {"session", "urn:ietf:params:xml:ns:xmpp-session"},
    {"compress", "http://jabber.org/features/compress"},
    {"sm", "urn:xmpp:sm:3"},
    {"csi", "urn:xmpp:csi:0"},
    {"roster", "jabber:iq:roster"},
    {"disco-info", "http://jabber.org/protocol/disco#info"},
    {"disco-items", "http://jabber.org/protocol/disco#items"},
    {"caps", "http://jabber.org/protocol/caps"},
    {"muc", "http://jabber.org/protocol/muc"},
    {"muc-user", "http://jabber.org/protocol/muc#user"},
    {"muc-admin", "http://jabber.org/protocol/muc#admin"},
    {"muc-owner", "http://jabber.org/protocol/muc#owner"},
    {"cs", "http://jabber.org/protocol/chatstates"},
    {"chatstates", "http://jabber.org/protocol/chatstates"},
    {"receipts", "urn:xmpp:receipts"},
    {"markers", "urn:xmpp:chat-markers:0"},
    {"correct", "urn:xmpp:message-correct:0"},
    {"reply", "urn:xmpp:reply:0"},
    {"hints", "urn:xmpp:hints"},
    {"sid", "urn:xmpp:sid:0"},
    {"carbons", "urn:xmpp:carbons:2"},
    {"forward", "urn:xmpp:forward:0"},
    {"mam", "urn:xmpp:mam:2"},
    {"ping", "urn:xmpp:ping"},
    {"delay", "urn:xmpp:delay"},
    {"time", "urn:xmpp:time"},
    {"version", "jabber:iq:version"},
    {"last", "jabber:iq:last"},
    {"private", "jabber:iq:private"},
    {"register", "jabber:iq:register"},
    {"blocking", "urn:xmpp:blocking"},
    {"pubsub", "http://jabber.org/protocol/pubsub"},
    {"pubsub-event", "http://jabber.org/protocol/pubsub#event"},
    {"pubsub-owner", "http://jabber.org/protocol/pubsub#owner"},
    {"vcard", "vcard-temp"},
    {"vcard4", "urn:ietf:params:xml:ns:vcard-4.0"},
    {"nick", "http://jabber.org/protocol/nick"},
    {"xdata", "jabber:x:data"},
    {"oob", "jabber:x:oob"},
    {"commands", "http://jabber.org/protocol/commands"},
    {"xhtml-im", "http://jabber.org/protocol/xhtml-im"},
    {"xhtml", "http://www.w3.org/1999/xhtml"},
    {"http-upload", "urn:xmpp:http:upload:0"},
    {"jingle", "urn:xmpp:jingle:1"},
    {"push", "urn:xmpp:push:0"},
    {"omemo", "eu.siacs.conversations.axolotl"},
    {NULL, NULL},
};

const xs_rules_ns *xs_rules_builtin_namespaces(void)
{
    return builtin_ns;
}

/* The XPath that selects the -PLUS mechanisms of SASL and SASL2 features, as features.c does:
 * any child named mechanism whose text is longer than "-PLUS" and ends in it. */
#define PLUS_XPATH                                                                                 \
    "/stream:features/*[self::sasl:mechanisms or self::sasl2:authentication]"                      \
    "/*[local-name() = 'mechanism' and string-length(.) > 5 and "                                  \
    "substring(., string-length(.) - 4) = '-PLUS']"

static const struct {
    unsigned bit;
    const char *text;
} builtin_rules[] = {
    {XS_REWRITE_SASL_PLUS, "# A man in the middle cannot carry channel binding.\n"
                           "rule \"sasl-plus\"\n"
                           "    direction s2c\n"
                           "    match " PLUS_XPATH "\n"
                           "    then remove \"" PLUS_XPATH "\"\n"
                           "    then tag channel-binding-offered\n"
                           "end\n"},
    {XS_REWRITE_CHANNEL_BINDING, "# XEP-0440: the server's list of channel-binding types.\n"
                                 "rule \"channel-binding\"\n"
                                 "    direction s2c\n"
                                 "    match /stream:features/sasl-cb:sasl-channel-binding\n"
                                 "    then remove /stream:features/sasl-cb:sasl-channel-binding\n"
                                 "    then tag channel-binding-offered\n"
                                 "end\n"},
    {XS_REWRITE_COMPRESSION, "# XEP-0138: xmppscope cannot read a compressed stream.\n"
                             "rule \"compression\"\n"
                             "    direction s2c\n"
                             "    match /stream:features/compress:compression\n"
                             "    then remove /stream:features/compress:compression\n"
                             "end\n"},
    {XS_REWRITE_STARTTLS, "# For a client leg that xmppscope secured itself.\n"
                          "rule \"starttls\"\n"
                          "    direction s2c\n"
                          "    match /stream:features/tls:starttls\n"
                          "    then remove /stream:features/tls:starttls\n"
                          "end\n"},
};

#define N_BUILTIN (sizeof(builtin_rules) / sizeof(builtin_rules[0]))

const char *xs_rules_builtin_text(unsigned bit)
{
    for (size_t i = 0; i < N_BUILTIN; i++)
        if (builtin_rules[i].bit == bit)
            return builtin_rules[i].text;
    return NULL;
}

static const struct {
    const char *condition;
    const char *type;
} conditions[] = {
    {"bad-request", "modify"},
    {"conflict", "cancel"},
    {"feature-not-implemented", "cancel"},
    {"forbidden", "auth"},
    {"gone", "cancel"},
    {"internal-server-error", "cancel"},
    {"item-not-found", "cancel"},
    {"jid-malformed", "modify"},
    {"not-acceptable", "modify"},
    {"not-allowed", "cancel"},
    {"not-authorized", "auth"},
    {"policy-violation", "modify"},
    {"recipient-unavailable", "wait"},
    {"redirect", "modify"},
    {"registration-required", "auth"},
    {"remote-server-not-found", "cancel"},
    {"remote-server-timeout", "wait"},
    {"resource-constraint", "wait"},
    {"service-unavailable", "cancel"},
    {"subscription-required", "auth"},
    {"undefined-condition", "cancel"},
    {"unexpected-request", "wait"},
};

static const char *const error_types[] = {"auth", "cancel", "continue", "modify", "wait", NULL};

const char *xs_bounce_type(const char *condition)
{
    for (size_t i = 0; i < sizeof(conditions) / sizeof(conditions[0]); i++)
        if (strcmp(conditions[i].condition, condition) == 0)
            return conditions[i].type;
    return NULL;
}

static const char *condition_static(const char *s)
{
    for (size_t i = 0; i < sizeof(conditions) / sizeof(conditions[0]); i++)
        if (strcmp(conditions[i].condition, s) == 0)
            return conditions[i].condition;
    return NULL;
}

/* Usage of each action, for messages: its arguments after the name. */
static const char *const act_usage[] = {
    [XS_ACT_DROP] = "",
    [XS_ACT_BOUNCE] = " [CONDITION [TYPE]]",
    [XS_ACT_SET_ATTR] = " XPATH NAME VALUE",
    [XS_ACT_REMOVE_ATTR] = " XPATH NAME",
    [XS_ACT_SET_TEXT] = " XPATH TEXT",
    [XS_ACT_REPLACE_TEXT] = " XPATH REGEX REPLACEMENT",
    [XS_ACT_REMOVE] = " XPATH",
    [XS_ACT_INSERT] = " XPATH XML-FRAGMENT",
    [XS_ACT_INJECT] = " c2s|s2c XML-STANZA",
    [XS_ACT_DELAY] = " MILLISECONDS",
    [XS_ACT_TAG] = " LABEL",
    [XS_ACT_PASS] = "",
};

/* Arguments: minimum and maximum. */
static const unsigned char act_args[][2] = {
    [XS_ACT_DROP] = {0, 0},        [XS_ACT_BOUNCE] = {0, 2},   [XS_ACT_SET_ATTR] = {3, 3},
    [XS_ACT_REMOVE_ATTR] = {2, 2}, [XS_ACT_SET_TEXT] = {2, 2}, [XS_ACT_REPLACE_TEXT] = {3, 3},
    [XS_ACT_REMOVE] = {1, 1},      [XS_ACT_INSERT] = {2, 2},   [XS_ACT_INJECT] = {2, 2},
    [XS_ACT_DELAY] = {1, 1},       [XS_ACT_TAG] = {1, 1},      [XS_ACT_PASS] = {0, 0},
};

/* ---- diagnostics ----------------------------------------------------------------------------- */

void xs_rule_diag_clear(xs_rule_diag *diag)
{
    if (diag == NULL)
        return;
    for (size_t i = 0; i < diag->n; i++)
        xs_free(diag->errors[i].message);
    xs_free(diag->errors);
    memset(diag, 0, sizeof(*diag));
}

/* The compiler's state while it reads one text. */
typedef struct pstate {
    xs_rules *set;
    xs_rule_diag *diag;
    const char *filename; /* of the text being read */
    unsigned builtin;     /* the XS_REWRITE_* bit of the text being read, 0 for the file */
    size_t errors;        /* counted even without a diag */
    bool oom;
    /* Prefixes in force for the text being read: its declarations (set->decls from
     * first_decl on), then the built-in table. */
    size_t first_decl;
    unsigned *decl_lines;
    xmlXPathContext *cctx; /* compiles XPaths and tries them on `dummy` */
    xmlDoc *dummy;
    xs_attr *frag_decls; /* the declarations fragments are parsed in, NULL until needed */
    size_t n_frag_decls;
    /* The line being compiled, for positions. */
    const char *line;
    size_t line_len;
    unsigned line_no;
    bool line_failed; /* one error per line is enough */
} pstate;

static size_t columns(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            c++;
    return c;
}

static void diag_add(pstate *ps, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void diag_add(pstate *ps, unsigned line, unsigned col, const char *fmt, ...)
{
    ps->errors++;
    xs_rule_diag *d = ps->diag;
    if (d == NULL)
        return;
    if (d->n == XS_RULES_MAX_ERRORS) {
        d->omitted++;
        return;
    }
    if (d->n == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 8;
        xs_rule_error *e = xs_realloc(d->errors, ncap * sizeof(*e));
        if (e == NULL) {
            ps->oom = true;
            return;
        }
        d->errors = e;
        d->cap = ncap;
    }
    char text[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    xs_buf b;
    xs_buf_init(&b, 0);
    size_t head;
    if (line > 0)
        xs_buf_addf(&b, "%s:%u:%u: ", ps->filename, line, col);
    else
        xs_buf_addf(&b, "%s: ", ps->filename);
    head = b.len;
    xs_buf_adds(&b, text);
    char *msg = xs_buf_take(&b, NULL);
    if (msg == NULL) {
        ps->oom = true;
        return;
    }
    xs_rule_error *e = &d->errors[d->n++];
    e->line = line;
    e->column = line > 0 ? col : 0;
    e->message = msg;
    e->text = msg + head;
}

/* Reports an error at byte offset `off` of the current line; only the first of a line counts. */
static void err_at(pstate *ps, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void err_at(pstate *ps, size_t off, const char *fmt, ...)
{
    if (ps->line_failed)
        return;
    ps->line_failed = true;
    char text[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (off > ps->line_len)
        off = ps->line_len;
    diag_add(ps, ps->line_no, (unsigned)(1 + columns(ps->line, off)), "%s", text);
}

static int cmp_errors(const void *a, const void *b)
{
    const xs_rule_error *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->column != y->column)
        return x->column < y->column ? -1 : 1;
    return 0;
}

/* ---- words ----------------------------------------------------------------------------------- */

#define MAX_WORDS 6

typedef struct word {
    char *s; /* unescaped, NUL-terminated, in the line's scratch buffer */
    size_t len;
    size_t off; /* byte offset of its first character (the quote, if quoted) in the line */
    bool quoted;
} word;

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Splits the current line into at most `max` words (at most MAX_WORDS). Stops at a comment.
 * `scratch` has room for the line plus a NUL per word. Returns the number of words, or -1 after
 * reporting an error (when `report`). */
static int split_words(pstate *ps, size_t max, char *scratch, word *w, bool report)
{
    const char *l = ps->line;
    size_t n = ps->line_len, i = 0, nw = 0;
    char *o = scratch;
    for (;;) {
        while (i < n && is_blank(l[i]))
            i++;
        if (i >= n || l[i] == '#')
            break;
        if (nw == max) {
            if (!report)
                break;
            err_at(ps, i, "too many arguments (quote text that contains blanks)");
            return -1;
        }
        word *cur = &w[nw++];
        cur->off = i;
        cur->s = o;
        cur->quoted = l[i] == '"';
        if (cur->quoted) {
            i++;
            for (;;) {
                if (i >= n) {
                    if (report)
                        err_at(ps, cur->off, "unterminated string (a string ends on its line)");
                    return -1;
                }
                if (l[i] == '"')
                    break;
                if (l[i] == '\\' && i + 1 < n && (l[i + 1] == '"' || l[i + 1] == '\\'))
                    i++;
                *o++ = l[i++];
            }
            i++;
            if (i < n && !is_blank(l[i])) {
                if (report)
                    err_at(ps, i, "expected a blank after the closing quote");
                return -1;
            }
        } else {
            while (i < n && !is_blank(l[i]))
                *o++ = l[i++];
        }
        cur->len = (size_t)(o - cur->s);
        *o++ = 0;
    }
    return (int)nw;
}

/* The column offset of byte `k` of a word's unescaped text, as a byte offset in the line
 * (escapes before it make it approximate). */
static size_t word_off(const word *w, size_t k)
{
    return w->off + (w->quoted ? 1 : 0) + k;
}

static bool is(const word *w, const char *s)
{
    return !w->quoted && strcmp(w->s, s) == 0;
}

/* ---- namespaces ------------------------------------------------------------------------------ */

static const char *prefix_uri(pstate *ps, const char *p, size_t n)
{
    for (size_t i = ps->first_decl; i < ps->set->n_decls; i++)
        if (strlen(ps->set->decls[i].prefix) == n && memcmp(ps->set->decls[i].prefix, p, n) == 0)
            return ps->set->decls[i].uri;
    for (size_t i = 0; builtin_ns[i].prefix != NULL; i++)
        if (strlen(builtin_ns[i].prefix) == n && memcmp(builtin_ns[i].prefix, p, n) == 0)
            return builtin_ns[i].uri;
    return NULL;
}

/* Index of `uri` in the set's table, added (and bound in the compile context) if new; -1 when
 * out of memory. */
static int uri_index(pstate *ps, const char *uri)
{
    xs_rules *set = ps->set;
    for (size_t i = 0; i < set->n_uris; i++)
        if (strcmp(set->uris[i], uri) == 0)
            return (int)i;
    char **u = xs_realloc(set->uris, (set->n_uris + 1) * sizeof(*u));
    if (u == NULL)
        goto oom;
    set->uris = u;
    set->uris[set->n_uris] = xs_strdup(uri);
    if (set->uris[set->n_uris] == NULL)
        goto oom;
    char pfx[32];
    snprintf(pfx, sizeof(pfx), XS_XPATH_NS_PREFIX "%zu", set->n_uris);
    if (xmlXPathRegisterNs(ps->cctx, BAD_CAST pfx, BAD_CAST uri) != 0)
        goto oom;
    return (int)set->n_uris++;
oom:
    ps->oom = true;
    return -1;
}

static int resolve_prefix(void *user, const char *prefix, size_t len)
{
    pstate *ps = user;
    if (len == 3 && memcmp(prefix, "xml", 3) == 0)
        return -2;
    const char *uri = prefix_uri(ps, prefix, len);
    if (uri == NULL)
        return -1;
    int idx = uri_index(ps, uri);
    return idx < 0 ? -3 : idx; /* out of memory: a non-index that is not "unknown" */
}

static void declare(pstate *ps, const word *w, int nw)
{
    if (nw != 3) {
        err_at(ps, nw > 3 ? w[3].off : 0, "namespace needs PREFIX URI");
        return;
    }
    const word *p = &w[1], *u = &w[2];
    if (xmlValidateNCName(BAD_CAST p->s, 0) != 0) {
        err_at(ps, p->off, "'%s' is not a valid namespace prefix", p->s);
        return;
    }
    if (strcmp(p->s, "xml") == 0 || strcmp(p->s, "xmlns") == 0) {
        err_at(ps, p->off, "the prefix '%s' is reserved by XML", p->s);
        return;
    }
    if (u->len == 0 || strcmp(u->s, XS_RULES_FRAGMENT_NS) == 0 ||
        strcmp(u->s, "http://www.w3.org/2000/xmlns/") == 0) {
        err_at(ps, u->off, "'%s' cannot be used as a namespace URI", u->s);
        return;
    }
    xs_rules *set = ps->set;
    for (size_t i = ps->first_decl; i < set->n_decls; i++) {
        if (strcmp(set->decls[i].prefix, p->s) != 0)
            continue;
        if (strcmp(set->decls[i].uri, u->s) != 0)
            err_at(ps, p->off, "prefix '%s' is already bound to %s (line %u)", p->s,
                   set->decls[i].uri, ps->decl_lines[i - ps->first_decl]);
        return;
    }
    size_t k = set->n_decls - ps->first_decl;
    xs_rules_ns *d = xs_realloc(set->decls, (set->n_decls + 1) * sizeof(*d));
    if (d != NULL)
        set->decls = d;
    unsigned *dl = xs_realloc(ps->decl_lines, (k + 1) * sizeof(*dl));
    if (dl != NULL)
        ps->decl_lines = dl;
    char *pc = xs_strdup(p->s), *uc = xs_strdup(u->s);
    if (d == NULL || dl == NULL || pc == NULL || uc == NULL) {
        xs_free(pc);
        xs_free(uc);
        ps->oom = true;
        return;
    }
    set->decls[set->n_decls].prefix = pc;
    set->decls[set->n_decls].uri = uc;
    set->n_decls++;
    ps->decl_lines[k] = ps->line_no;
}

/* Lists the declarations that fragments are parsed in: the fragment namespace as default and
 * every prefix in force. */
static int build_frag_decls(pstate *ps)
{
    size_t n_builtin = sizeof(builtin_ns) / sizeof(builtin_ns[0]) - 1, n = 0;
    xs_attr *d = xs_calloc(1 + ps->set->n_decls - ps->first_decl + n_builtin, sizeof(*d));

    if (d == NULL) {
        ps->oom = true;
        return XS_ENOMEM;
    }
    d[n++] = (xs_attr){.prefix = NULL, .uri = XS_RULES_FRAGMENT_NS};
    for (size_t i = ps->first_decl; i < ps->set->n_decls; i++)
        d[n++] = (xs_attr){.prefix = ps->set->decls[i].prefix, .uri = ps->set->decls[i].uri};
    for (size_t i = 0; i < n_builtin; i++) {
        const xs_rules_ns *b = &builtin_ns[i];
        if (prefix_uri(ps, b->prefix, strlen(b->prefix)) != b->uri)
            continue; /* rebound by the file */
        d[n++] = (xs_attr){.prefix = b->prefix, .uri = b->uri};
    }
    xs_free(ps->frag_decls);
    ps->frag_decls = d;
    ps->n_frag_decls = n;
    return 0;
}

/* ---- compiling arguments --------------------------------------------------------------------- */

static void ignore_xpath_error(void *user, xmlError *error)
{
    (void)user;
    (void)error;
}

/* Compiles the XPath `src` found at byte `off` of the line (unescaped, as in a quoted word when
 * `quoted`) into *out (zeroed when it fails). With `nodes`, it must select nodes (an action's
 * target). Returns false on an error (reported) or out of memory (ps->oom). */
static bool compile_xpath(pstate *ps, const char *src, size_t len, size_t off, bool nodes,
                          const char *what, xs_xpath *out)
{
    xs_xpath_rw rw;
    xmlXPathCompExpr *comp = NULL;
    xmlXPathObject *obj = NULL;
    memset(out, 0, sizeof(*out));
    if (len == 0) {
        err_at(ps, off, "%s: empty XPath", what);
        return false;
    }
    int rc = xs_xpath_rewrite(src, len, resolve_prefix, ps, &rw);
    if (rc == XS_ENOMEM || ps->oom) {
        ps->oom = true;
        goto out;
    }
    if (rc != 0) {
        err_at(ps, off + rw.err_offset, "%s: %s", what, rw.err);
        goto out;
    }
    xmlResetError(&ps->cctx->lastError);
    comp = xmlXPathCtxtCompile(ps->cctx, BAD_CAST rw.expr);
    if (comp == NULL) {
        int code = ps->cctx->lastError.code;
        size_t at = ps->cctx->lastError.int1 > 0 ? (size_t)ps->cctx->lastError.int1 : 0;
        if (XS_XPATH_OOM(code))
            ps->oom = true;
        else
            err_at(ps, off + xs_xpath_map_offset(&rw, at), "%s: bad XPath: %s", what,
                   xs_xpath_error_text(code));
        goto out;
    }
    out->own_doc = rw.own_doc;
    out->root_ns = rw.root_ns;
    if (!nodes && rw.root_local != NULL &&
        (out->root_local = xs_strndup(rw.root_local, rw.root_local_len)) == NULL)
        ps->oom = true;
    if (!ps->oom && xs_qx_compile(rw.expr, nodes, &out->quick) != 0)
        ps->oom = true;
    if (ps->oom) {
        xmlXPathFreeCompExpr(comp);
        comp = NULL;
        goto out;
    }
    /* Some errors (a function given the wrong type) show only when evaluated: try it on a
     * stanza that has nothing in it. */
    xmlResetError(&ps->cctx->lastError);
    ps->cctx->doc = ps->dummy;
    ps->cctx->node = xmlDocGetRootElement(ps->dummy);
    ps->cctx->contextSize = 1;
    ps->cctx->proximityPosition = 1;
    ps->cctx->opLimit = 100000;
    ps->cctx->opCount = 0;
    obj = xmlXPathCompiledEval(comp, ps->cctx);
    if (obj == NULL) {
        int code = ps->cctx->lastError.code;
        if (XS_XPATH_OOM(code))
            ps->oom = true;
        else
            err_at(ps, off, "%s: bad XPath: %s", what, xs_xpath_error_text(code));
        xmlXPathFreeCompExpr(comp);
        comp = NULL;
    } else if (nodes && obj->type != XPATH_NODESET) {
        err_at(ps, off, "%s: the XPath must select nodes (it gives a %s)", what,
               obj->type == XPATH_BOOLEAN  ? "boolean"
               : obj->type == XPATH_NUMBER ? "number"
                                           : "string");
        xmlXPathFreeCompExpr(comp);
        comp = NULL;
    }
out:
    if (obj != NULL)
        xmlXPathFreeObject(obj);
    xmlResetError(&ps->cctx->lastError);
    xs_xpath_rw_clear(&rw);
    out->comp = comp;
    if (comp == NULL)
        xs_xpath_free(out);
    return comp != NULL;
}

static bool has_placeholder(const char *s)
{
    static const char *const names[] = {"{from}", "{to}", "{id}", "{session}", NULL};
    for (size_t i = 0; names[i] != NULL; i++)
        if (strstr(s, names[i]) != NULL)
            return true;
    return false;
}

/* Checks a PCRE2 replacement string against the groups of `re`. */
static bool check_replacement(pstate *ps, pcre2_code *re, const word *w)
{
    uint32_t groups = 0;
    pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &groups);
    const char *s = w->s;
    for (size_t i = 0; i < w->len; i++) {
        if (s[i] != '$')
            continue;
        size_t at = i++;
        if (i < w->len && s[i] == '$')
            continue;
        bool braced = i < w->len && s[i] == '{';
        if (braced)
            i++;
        size_t start = i;
        if (i < w->len && s[i] >= '0' && s[i] <= '9') {
            unsigned long n = 0;
            while (i < w->len && s[i] >= '0' && s[i] <= '9' && n < 100000)
                n = n * 10 + (unsigned long)(s[i++] - '0');
            if (n > groups) {
                err_at(ps, word_off(w, at), "replace-text: the regex has no group %lu (it has %u)",
                       n, groups);
                return false;
            }
        } else {
            while (i < w->len && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                                  (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
                i++;
            if (i == start) {
                err_at(ps, word_off(w, at),
                       "replace-text: '$' must be followed by a group number, a group name, "
                       "{NUMBER or NAME} or '$'");
                return false;
            }
            char name[64];
            size_t n = i - start < sizeof(name) - 1 ? i - start : sizeof(name) - 1;
            memcpy(name, s + start, n);
            name[n] = 0;
            if (pcre2_substring_number_from_name(re, (PCRE2_SPTR)name) < 0) {
                err_at(ps, word_off(w, at), "replace-text: the regex has no group named '%s'",
                       name);
                return false;
            }
        }
        if (braced) {
            if (i >= w->len || s[i] != '}') {
                err_at(ps, word_off(w, at), "replace-text: '${' without its '}'");
                return false;
            }
        } else {
            i--;
        }
    }
    return true;
}

static pcre2_code *compile_regex(pstate *ps, const word *w)
{
    int code;
    PCRE2_SIZE erroff;
    /* Auto callouts let the engine count the steps of every match against the stanza's regex
     * budget (see regex_step() in rules.c); they change nothing in what matches. */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)w->s, w->len, REGEX_OPTIONS | PCRE2_AUTO_CALLOUT,
                                   &code, &erroff, NULL);
    if (re == NULL) {
        PCRE2_UCHAR msg[160];
        if (pcre2_get_error_message(code, msg, sizeof(msg)) < 0)
            snprintf((char *)msg, sizeof(msg), "error %d", code);
        if (code == PCRE2_ERROR_HEAPLIMIT || code == PCRE2_ERROR_NOMEMORY)
            ps->oom = true;
        else
            err_at(ps, word_off(w, erroff), "replace-text: bad regex: %s", (const char *)msg);
        return NULL;
    }
    /* JIT makes matching several times faster; without it (no JIT on this platform, or no
     * memory for it) the interpreter does the same work. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

static bool ascii_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Every character whose UTF-8 starts with byte `lead` (0xC2 to 0xEF), in order, written to
 * out (room for 3 * 4096 bytes); returns the length. Surrogates are left out. */
static size_t lead_subject(unsigned lead, unsigned char *out)
{
    size_t n = 0;
    if (lead < 0xE0) {
        for (unsigned t = 0x80; t < 0xC0; t++) {
            out[n++] = (unsigned char)lead;
            out[n++] = (unsigned char)t;
        }
        return n;
    }
    unsigned lo = lead == 0xE0 ? 0xA0 : 0x80, hi = lead == 0xED ? 0xA0 : 0xC0;
    for (unsigned t = lo; t < hi; t++) {
        for (unsigned u = 0x80; u < 0xC0; u++) {
            out[n++] = (unsigned char)lead;
            out[n++] = (unsigned char)t;
            out[n++] = (unsigned char)u;
        }
    }
    return n;
}

/* Finds what every match of the regex `p` (`len` bytes, compiled with `options`) needs in a
 * subject (see xs_re_run), or leaves *out empty. It skips the zero-width items a pattern may
 * start with (\b, \B, \A, \G, ^), then takes the first item when it matches exactly one
 * character: an ASCII letter or digit, `.`, \d \D \w \W \s \S \h \H \v \V, \p and \P
 * with a property, or a bracket class without a `[` in it; and its quantifier's minimum (none
 * or `+`: 1, `{n}`, `{n,}`, `{n,m}` with n at least 1). A `|` anywhere in the pattern (an
 * alternative might not start so), anything else first, or any other quantifier gives
 * nothing. */
static void regex_run(const char *p, size_t len, uint32_t options, xs_re_run *out)
{
    memset(out, 0, sizeof(*out));
    if (memchr(p, '|', len) != NULL)
        return;
    size_t i = 0;
    for (;;) {
        if (i < len && p[i] == '^')
            i++;
        else if (i + 1 < len && p[i] == '\\' && p[i + 1] != 0 && strchr("bBAG", p[i + 1]) != NULL)
            i += 2;
        else
            break;
    }
    if (i >= len)
        return;
    size_t start = i;
    if (p[i] == '\\') {
        char e = i + 1 < len ? p[i + 1] : 0;
        if (e != 0 && strchr("dDwWsShHvV", e) != NULL) {
            i += 2;
        } else if ((e == 'p' || e == 'P') && i + 2 < len && p[i + 2] == '{') {
            const char *end = memchr(p + i + 3, '}', len - i - 3);
            if (end == NULL)
                return;
            i = (size_t)(end - p) + 1;
        } else if ((e == 'p' || e == 'P') && i + 2 < len && ascii_alnum(p[i + 2])) {
            i += 3;
        } else {
            return;
        }
    } else if (p[i] == '.' || ascii_alnum(p[i])) {
        i++;
    } else if (p[i] == '[') {
        size_t k = i + 1;
        if (k < len && p[k] == '^')
            k++;
        if (k < len && p[k] == ']')
            k++;
        for (; k < len && p[k] != ']'; k++) {
            if (p[k] == '[' || (p[k] == '\\' && k + 1 < len && p[k + 1] == 'Q'))
                return;
            if (p[k] == '\\')
                k++;
        }
        if (k >= len)
            return;
        i = k + 1;
    } else {
        return;
    }
    size_t end = i;
    unsigned run = 1;
    if (i < len && (p[i] == '?' || p[i] == '*'))
        return;
    if (i < len && p[i] == '{') {
        size_t k = i + 1;
        unsigned n = 0;
        while (k < len && p[k] >= '0' && p[k] <= '9' && n < 65536)
            n = n * 10 + (unsigned)(p[k++] - '0');
        if (k == i + 1 || n == 0 || k >= len)
            return;
        if (p[k] == ',')
            for (k++; k < len && p[k] >= '0' && p[k] <= '9';)
                k++;
        if (k >= len || p[k] != '}')
            return;
        run = n;
    }
    /* Sort the ASCII characters with the item alone. */
    int code;
    PCRE2_SIZE erroff;
    pcre2_code *item =
        pcre2_compile((PCRE2_SPTR)p + start, end - start, options, &code, &erroff, NULL);
    pcre2_match_data *md = item != NULL ? pcre2_match_data_create(1, NULL) : NULL;
    uint32_t min = 0;
    if (md == NULL || pcre2_pattern_info(item, PCRE2_INFO_MINLENGTH, &min) != 0 || min != 1)
        goto out;
    for (unsigned c = 0; c < 128; c++) {
        PCRE2_UCHAR one = (PCRE2_UCHAR)c;
        int rc = pcre2_match(item, &one, 1, 0, PCRE2_ANCHORED, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            continue;
        if (rc < 0)
            goto out;
        out->step[c] = XS_RE_COUNT;
    }
    for (unsigned c = 0x80; c < 0x100; c++)
        out->step[c] = c < 0xC0 ? XS_RE_SAME : XS_RE_COUNT;
    /* A lead byte of two or three bytes whose every character the item refuses breaks runs too
     * (é, —, most letters and punctuation of other scripts); four-byte characters, rarer and
     * too many to try, always count. */
    for (unsigned lead = 0xC2; lead <= 0xEF; lead++) {
        unsigned char subject[3 * 4096];
        size_t n = lead_subject(lead, subject);
        int rc = pcre2_match(item, subject, n, 0, 0, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            out->step[lead] = XS_RE_BREAK;
    }
    /* Bytes that valid UTF-8 never holds (texts always are valid UTF-8) break runs. */
    out->step[0xC0] = out->step[0xC1] = XS_RE_BREAK;
    for (unsigned c = 0xF5; c < 0x100; c++)
        out->step[c] = XS_RE_BREAK;
    /* The smallest lead byte that counts: bytes from it on may count, to the fast skip. */
    out->lead = 0xF5;
    for (unsigned c = 0xC2; c < 0xF5 && out->lead == 0xF5; c++)
        if (out->step[c] == XS_RE_COUNT)
            out->lead = (unsigned char)c;
    int lo = -1, hi = -1, ranges = 0;
    for (int c = 0; c < 128; c++) {
        if (out->step[c] != XS_RE_COUNT)
            continue;
        if (c == 0 || out->step[c - 1] != XS_RE_COUNT)
            ranges++;
        if (lo < 0)
            lo = c;
        hi = c;
    }
    if (ranges == 1) {
        out->range = true;
        out->lo = (unsigned char)lo;
        out->hi = (unsigned char)hi;
    }
    out->run = run;
out:
    pcre2_match_data_free(md);
    pcre2_code_free(item);
    if (out->run == 0)
        memset(out, 0, sizeof(*out));
}

/* Parses an XML fragment (insert, inject). `one_element`: exactly one element, and nothing but
 * blanks around it. */
static xmlDoc *parse_fragment(pstate *ps, const word *w, bool one_element, const char *what,
                              bool *vars)
{
    xmlDoc *doc = NULL;
    xmlNode *el = NULL;
    xs_fragment_error fe;
    if (ps->frag_decls == NULL && build_frag_decls(ps) != 0)
        return NULL;
    xs_fragment_ctx ctx = {
        .root = "xs-fragment",
        .decls = ps->frag_decls,
        .n_decls = ps->n_frag_decls,
        .flags = XS_FRAGMENT_NOCDATA | (one_element ? 0u : (unsigned)XS_FRAGMENT_CONTENT),
    };
    int rc = xs_fragment_parse(&ctx, w->s, w->len, &doc, &el, &fe);
    if (rc == XS_ENOMEM) {
        ps->oom = true;
        return NULL;
    }
    if (rc == XS_ENOTWF || rc == XS_ETOOBIG) {
        err_at(ps, word_off(w, fe.off), "%s: bad XML: %s", what,
               rc == XS_ETOOBIG ? "too big" : fe.message);
        return NULL;
    }
    if (rc != 0) {
        err_at(ps, w->off, "%s: %s", what, fe.message);
        return NULL;
    }
    /* Note whether a placeholder is used. */
    xmlNode *root = xmlDocGetRootElement(doc);
    *vars = false;
    for (xmlNode *n = root->children; n != NULL;) {
        if (n->type == XML_TEXT_NODE && n->content != NULL &&
            has_placeholder((const char *)n->content))
            *vars = true;
        if (n->type == XML_ELEMENT_NODE)
            for (xmlAttr *a = n->properties; a != NULL; a = a->next)
                if (a->children != NULL && a->children->content != NULL &&
                    has_placeholder((const char *)a->children->content))
                    *vars = true;
        /* Next in document order, without recursion. */
        if (n->type == XML_ELEMENT_NODE && n->children != NULL) {
            n = n->children;
            continue;
        }
        while (n != root && n->next == NULL)
            n = n->parent;
        n = n == root ? NULL : n->next;
    }
    return doc;
}

/* An attribute name for set-attr and remove-attr: NAME or PREFIX:NAME. */
static bool attr_name(pstate *ps, const word *w, xs_action *a)
{
    if (xmlValidateQName(BAD_CAST w->s, 0) != 0) {
        err_at(ps, w->off, "'%s' is not a valid attribute name", w->s);
        return false;
    }
    const char *colon = strchr(w->s, ':');
    if (strcmp(w->s, "xmlns") == 0 || strncmp(w->s, "xmlns:", 6) == 0) {
        err_at(ps, w->off, "namespace declarations are not attributes to set or remove");
        return false;
    }
    if (colon != NULL) {
        size_t plen = (size_t)(colon - w->s);
        const char *uri = plen == 3 && memcmp(w->s, "xml", 3) == 0 ? (const char *)XML_XML_NAMESPACE
                                                                   : prefix_uri(ps, w->s, plen);
        if (uri == NULL) {
            err_at(ps, w->off, "unknown namespace prefix '%.*s'", (int)plen, w->s);
            return false;
        }
        a->attr_prefix = xs_strndup(w->s, plen);
        a->attr_uri = xs_strdup(uri);
        a->attr_local = xs_strdup(colon + 1);
        if (a->attr_prefix == NULL || a->attr_uri == NULL)
            ps->oom = true;
    } else {
        a->attr_local = xs_strdup(w->s);
    }
    if (a->attr_local == NULL)
        ps->oom = true;
    return !ps->oom;
}

static bool label_ok(const char *s, size_t n)
{
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static char *dup_word(pstate *ps, const word *w)
{
    char *s = xs_strndup(w->s, w->len);
    if (s == NULL)
        ps->oom = true;
    return s;
}

/* Compiles `then ACTION ARGS` (w[0] is "then"). Returns false after an error. */
/* bounce [CONDITION [TYPE]] */
static bool compile_bounce(pstate *ps, const word *arg, unsigned nargs, xs_action *a)
{
    a->condition = "service-unavailable";
    if (nargs >= 1) {
        a->condition = condition_static(arg[0].s);
        if (a->condition == NULL) {
            err_at(ps, arg[0].off,
                   "unknown stanza error condition '%s' (RFC 6120 section 8.3.3, e.g. "
                   "service-unavailable, item-not-found, not-allowed, forbidden)",
                   arg[0].s);
            return false;
        }
    }
    a->error_type = xs_bounce_type(a->condition);
    if (nargs == 2) {
        size_t t;
        for (t = 0; error_types[t] != NULL; t++)
            if (strcmp(error_types[t], arg[1].s) == 0)
                break;
        if (error_types[t] == NULL) {
            err_at(ps, arg[1].off,
                   "unknown error type '%s' (auth, cancel, continue, modify or wait)", arg[1].s);
            return false;
        }
        a->error_type = error_types[t];
    }
    return true;
}

/* The actions on a target: set-attr, remove-attr, set-text, replace-text, remove, insert. */
static bool compile_target_action(pstate *ps, word *arg, const char *what, xs_action *a)
{
    if (!compile_xpath(ps, arg[0].s, arg[0].len, word_off(&arg[0], 0), true, what, &a->target))
        return false;
    if (a->kind == XS_ACT_SET_ATTR || a->kind == XS_ACT_REMOVE_ATTR) {
        if (!attr_name(ps, &arg[1], a))
            return false;
        if (a->kind == XS_ACT_SET_ATTR && (a->value = dup_word(ps, &arg[2])) == NULL)
            return false;
    } else if (a->kind == XS_ACT_SET_TEXT) {
        if ((a->value = dup_word(ps, &arg[1])) == NULL)
            return false;
    } else if (a->kind == XS_ACT_REPLACE_TEXT) {
        if (arg[1].len == 0) {
            err_at(ps, arg[1].off, "replace-text: empty regex");
            return false;
        }
        a->re = compile_regex(ps, &arg[1]);
        if (a->re == NULL || !check_replacement(ps, a->re, &arg[2]))
            return false;
        regex_run(arg[1].s, arg[1].len, REGEX_OPTIONS, &a->re_run);
        if ((a->value = dup_word(ps, &arg[2])) == NULL)
            return false;
    } else if (a->kind == XS_ACT_INSERT) {
        a->fragment = parse_fragment(ps, &arg[1], false, what, &a->fragment_vars);
        a->fragment_size = arg[1].len;
        if (a->fragment == NULL)
            return false;
    }
    return true;
}

/* inject c2s|s2c STANZA */
static bool compile_inject(pstate *ps, word *arg, const char *what, xs_action *a)
{
    if (is(&arg[0], "c2s"))
        a->inject_dir = XS_RULE_C2S;
    else if (is(&arg[0], "s2c"))
        a->inject_dir = XS_RULE_S2C;
    else {
        err_at(ps, arg[0].off, "inject: direction must be c2s or s2c, not '%s'", arg[0].s);
        return false;
    }
    a->fragment = parse_fragment(ps, &arg[1], true, what, &a->fragment_vars);
    a->fragment_size = arg[1].len;
    if (a->fragment == NULL)
        return false;
    return true;
}

/* delay MS */
static bool compile_delay(pstate *ps, const word *arg, xs_action *a)
{
    const char *s = arg[0].s;
    unsigned long ms = 0;
    bool ok = arg[0].len > 0 && arg[0].len <= 7;
    for (size_t i = 0; ok && i < arg[0].len; i++) {
        if (s[i] < '0' || s[i] > '9')
            ok = false;
        else
            ms = ms * 10 + (unsigned long)(s[i] - '0');
    }
    if (!ok || ms > XS_RULES_MAX_DELAY_MS) {
        err_at(ps, arg[0].off, "delay: '%s' is not a number of milliseconds from 0 to %u", s,
               XS_RULES_MAX_DELAY_MS);
        return false;
    }
    a->ms = ms;
    return true;
}

/* tag LABEL */
static bool compile_tag(pstate *ps, const word *arg, xs_action *a)
{
    if (!label_ok(arg[0].s, arg[0].len)) {
        err_at(ps, arg[0].off, "tag: a label is 1 to 128 bytes without control characters");
        return false;
    }
    if ((a->value = dup_word(ps, &arg[0])) == NULL)
        return false;
    return true;
}

static bool compile_action(pstate *ps, word *w, int nw, xs_action *a)
{
    memset(a, 0, sizeof(*a));
    a->line = ps->line_no;
    if (nw < 2) {
        err_at(ps, ps->line_len,
               "then needs an action (drop, bounce, set-attr, remove-attr, "
               "set-text, replace-text, remove, insert, inject, delay, tag, "
               "pass)");
        return false;
    }
    size_t k;
    for (k = 0; k < XS_ACT_N; k++)
        if (is(&w[1], xs_act_name((xs_act_kind)k)))
            break;
    if (k == XS_ACT_N) {
        err_at(ps, w[1].off,
               "unknown action '%s' (drop, bounce, set-attr, remove-attr, set-text, replace-text, "
               "remove, insert, inject, delay, tag, pass)",
               w[1].s);
        return false;
    }
    a->kind = (xs_act_kind)k;
    unsigned nargs = (unsigned)nw - 2;
    if (nargs < act_args[k][0] || nargs > act_args[k][1]) {
        size_t at = nargs > act_args[k][1] ? w[2 + act_args[k][1]].off : ps->line_len;
        err_at(ps, at, "%s %s: usage: %s%s%s",
               nargs > act_args[k][1] ? "too many arguments for" : "missing arguments for",
               xs_act_name((xs_act_kind)k), xs_act_name((xs_act_kind)k), act_usage[k],
               nargs > act_args[k][1] ? " (quote text that contains blanks)" : "");
        return false;
    }
    word *arg = &w[2];
    const char *what = xs_act_name((xs_act_kind)k);
    bool ok = true;
    switch (a->kind) {
    case XS_ACT_DROP:
    case XS_ACT_PASS:
        break;
    case XS_ACT_BOUNCE:
        ok = compile_bounce(ps, arg, nargs, a);
        break;
    case XS_ACT_SET_ATTR:
    case XS_ACT_REMOVE_ATTR:
    case XS_ACT_SET_TEXT:
    case XS_ACT_REPLACE_TEXT:
    case XS_ACT_REMOVE:
    case XS_ACT_INSERT:
        ok = compile_target_action(ps, arg, what, a);
        break;
    case XS_ACT_INJECT:
        ok = compile_inject(ps, arg, what, a);
        break;
    case XS_ACT_DELAY:
        ok = compile_delay(ps, arg, a);
        break;
    case XS_ACT_TAG:
        ok = compile_tag(ps, arg, a);
        break;
    }
    if (!ok)
        return false;
    if (a->value != NULL && a->kind != XS_ACT_TAG)
        a->value_vars = has_placeholder(a->value);
    return true;
}

/* ---- rules ----------------------------------------------------------------------------------- */

static char *dup_trimmed(pstate *ps, const char *s, size_t n)
{
    while (n > 0 && is_blank(s[n - 1]))
        n--;
    char *d = xs_strndup(s, n);
    if (d == NULL)
        ps->oom = true;
    return d;
}

static bool add_match(pstate *ps, xs_rule *r, size_t from)
{
    const char *l = ps->line;
    size_t n = ps->line_len, i = from;
    while (i < n && is_blank(l[i]))
        i++;
    /* The rest of the line, up to a comment: a '#' after a blank, outside XPath literals. */
    size_t end = i;
    char quote = 0;
    for (; end < n; end++) {
        if (quote != 0) {
            if (l[end] == quote)
                quote = 0;
        } else if (l[end] == '"' || l[end] == '\'') {
            quote = l[end];
        } else if (l[end] == '#' && end > 0 && is_blank(l[end - 1])) {
            break;
        }
    }
    size_t len = end;
    while (len > i && is_blank(l[len - 1]))
        len--;
    if (r->n_matches == XS_RULES_MAX_MATCHES) {
        err_at(ps, 0, "too many match lines in one rule (at most %u)", XS_RULES_MAX_MATCHES);
        return false;
    }
    xs_xpath x;
    if (!compile_xpath(ps, l + i, len - i, i, false, "match", &x))
        return false;
    xs_xpath *m = xs_realloc(r->matches, (r->n_matches + 1) * sizeof(*m));
    if (m != NULL)
        r->matches = m;
    char **s = xs_realloc(r->match_src, (r->n_matches + 1) * sizeof(*s));
    if (s != NULL)
        r->match_src = s;
    char *src = dup_trimmed(ps, l + i, len - i);
    if (m == NULL || s == NULL || src == NULL) {
        ps->oom = true;
        xs_free(src);
        xs_xpath_free(&x);
        return false;
    }
    r->matches[r->n_matches] = x;
    r->match_src[r->n_matches] = src;
    r->n_matches++;
    return true;
}

static bool add_action(pstate *ps, xs_rule *r, word *w, int nw)
{
    if (r->n_actions == XS_RULES_MAX_ACTIONS) {
        err_at(ps, 0, "too many actions in one rule (at most %u)", XS_RULES_MAX_ACTIONS);
        return false;
    }
    xs_action a;
    if (!compile_action(ps, w, nw, &a)) {
        xs_action_free(&a);
        return false;
    }
    xs_action *acts = xs_realloc(r->actions, (r->n_actions + 1) * sizeof(*acts));
    if (acts != NULL)
        r->actions = acts;
    char **s = xs_realloc(r->action_src, (r->n_actions + 1) * sizeof(*s));
    if (s != NULL)
        r->action_src = s;
    /* The action as written: from the action's name to the end of the line or a comment. */
    size_t end = w[nw - 1].off;
    if (w[nw - 1].quoted) {
        end++;
        while (end < ps->line_len && ps->line[end] != '"') {
            if (ps->line[end] == '\\' && end + 1 < ps->line_len)
                end++;
            end++;
        }
        end++;
    } else {
        end += w[nw - 1].len;
    }
    char *src = dup_trimmed(ps, ps->line + w[1].off, end - w[1].off);
    if (acts == NULL || s == NULL || src == NULL) {
        ps->oom = true;
        xs_free(src);
        xs_action_free(&a);
        return false;
    }
    r->actions[r->n_actions] = a;
    r->action_src[r->n_actions] = src;
    r->n_actions++;
    return true;
}

static const xs_rule *find_rule(const xs_rules *set, const char *name)
{
    for (size_t i = 0; i < set->n_rules; i++)
        if (strcmp(set->rules[i].name, name) == 0)
            return &set->rules[i];
    return NULL;
}

static bool reserved_name(const char *name)
{
    static const char *const names[] = {"sasl-plus", "channel-binding", "compression", "starttls",
                                        NULL};
    for (size_t i = 0; names[i] != NULL; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

/* Ends the rule being read: kept if it had no error. */
static void finish_rule(pstate *ps, xs_rule *r, bool bad)
{
    if (!bad && !ps->oom) {
        if (r->n_matches == 0 || r->n_actions == 0) {
            diag_add(ps, r->line, 1, "rule \"%s\" has no %s line", r->name,
                     r->n_matches == 0 ? "match" : "then");
        } else if (ps->set->n_rules == XS_RULES_MAX_RULES) {
            diag_add(ps, r->line, 1, "too many rules (at most %u)", XS_RULES_MAX_RULES);
        } else {
            xs_rule *rules =
                xs_realloc(ps->set->rules, (ps->set->n_rules + 1) * sizeof(*ps->set->rules));
            if (rules == NULL) {
                ps->oom = true;
            } else {
                ps->set->rules = rules;
                r->builtin = ps->builtin;
                rules[ps->set->n_rules++] = *r;
                memset(r, 0, sizeof(*r));
                return;
            }
        }
    }
    xs_rule_free(r);
}

/* ---- lines ----------------------------------------------------------------------------------- */

/* Checks UTF-8 (no overlong forms, surrogates or values above U+10FFFF) and that every
 * character may appear in XML 1.0 (no control character but tab, no U+FFFE or U+FFFF): what a
 * rule writes into a stanza must serialize to well-formed XML. Returns the offset of the first
 * bad byte, or n. */
static size_t utf8_check(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = u[i];
        if (c < 0x20 && c != '\t')
            return i;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            k = 1, cp = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (n - i <= k)
            return i;
        for (size_t j = 1; j <= k; j++) {
            if ((u[i + j] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (u[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE ||
            cp == 0xFFFF)
            return i;
        i += k + 1;
    }
    return n;
}

/* Moves to the next line of `text`; false at the end. */
static bool next_line(pstate *ps, const char *text, size_t len, size_t *pos)
{
    if (*pos >= len)
        return false;
    const char *s = text + *pos;
    const char *nl = memchr(s, '\n', len - *pos);
    size_t n = nl != NULL ? (size_t)(nl - s) : len - *pos;
    *pos += n + (nl != NULL ? 1 : 0);
    if (n > 0 && s[n - 1] == '\r')
        n--;
    ps->line = s;
    ps->line_len = n;
    ps->line_no++;
    ps->line_failed = false;
    return true;
}

/* Compiles one text (a file or a built-in rule) into ps->set. */
/* The first pass over the text: namespace declarations, so that they hold for the whole file. */
static void declare_all(pstate *ps, const char *text, size_t len, char *scratch, word *w)
{
    size_t pos;

    pos = 0;
    ps->line_no = 0;
    while (next_line(ps, text, len, &pos)) {
        if (ps->line_len > XS_RULES_MAX_LINE || utf8_check(ps->line, ps->line_len) != ps->line_len)
            continue;
        int nw = split_words(ps, 1, scratch, w, false);
        if (nw == 1 && is(&w[0], "namespace")) {
            nw = split_words(ps, MAX_WORDS, scratch, w, true);
            if (nw > 0)
                declare(ps, w, nw);
        }
    }
}

/* A rule line: starts the rule *cur (ending one left open without 'end'). Returns whether the
 * rule is bad already. */
static bool start_rule(pstate *ps, xs_rule *cur, bool in_rule, word *w, int nw)
{
    bool bad = false;

    if (in_rule) {
        err_at(ps, w[0].off, "missing 'end' of rule \"%s\" (line %u) before this rule",
               cur->name ? cur->name : "?", cur->line);
        finish_rule(ps, cur, true);
    }
    ps->line_failed = false;
    memset(cur, 0, sizeof(*cur));
    cur->line = ps->line_no;
    if (nw != 2 || !label_ok(w[1].s, w[1].len)) {
        err_at(ps, nw >= 2 ? w[1].off : ps->line_len,
               nw > 2 ? "a rule name with blanks must be quoted"
                      : "rule needs a name of 1 to 128 bytes: rule \"NAME\"");
        cur->name = xs_strdup("?");
        bad = true;
    } else {
        cur->name = dup_word(ps, &w[1]);
        const xs_rule *dup = cur->name ? find_rule(ps->set, cur->name) : NULL;
        if (dup != NULL) {
            err_at(ps, w[1].off, "duplicate rule name \"%s\" (first at line %u)", cur->name,
                   dup->line);
            bad = true;
        } else if (ps->builtin == 0 && cur->name != NULL && reserved_name(cur->name)) {
            err_at(ps, w[1].off, "the rule name \"%s\" is reserved for a built-in rule", cur->name);
            bad = true;
        }
    }
    if (cur->name == NULL)
        ps->oom = true;
    return bad;
}

/* A direction line of the rule *cur. Returns false on an error (reported). */
static bool rule_direction(pstate *ps, xs_rule *cur, const word *w, int nw, bool *dir_seen)
{
    bool bad = false;

    xs_rule_dir d = XS_RULE_ANY;
    if (nw != 2) {
        err_at(ps, nw > 2 ? w[2].off : ps->line_len, "direction needs one of c2s, s2c, any");
        bad = true;
    } else if (is(&w[1], "c2s") || is(&w[1], "s2c") || is(&w[1], "any")) {
        d = is(&w[1], "c2s") ? XS_RULE_C2S : is(&w[1], "s2c") ? XS_RULE_S2C : XS_RULE_ANY;
        if (*dir_seen) {
            err_at(ps, w[0].off, "direction given twice in one rule");
            bad = true;
        }
        *dir_seen = true;
        cur->dir = d;
    } else {
        err_at(ps, w[1].off, "unknown direction '%s' (c2s, s2c or any)", w[1].s);
        bad = true;
    }
    return !bad;
}

static void compile_text(pstate *ps, const char *text, size_t len)
{
    char *scratch = xs_malloc(XS_RULES_MAX_LINE + MAX_WORDS + 1);
    word w[MAX_WORDS];
    xs_rule cur;
    bool in_rule = false, bad = false, dir_seen = false;
    size_t pos;

    memset(&cur, 0, sizeof(cur));
    if (scratch == NULL) {
        ps->oom = true;
        return;
    }
    /* First pass: namespace declarations, so that they hold for the whole file. */
    declare_all(ps, text, len, scratch, w);
    /* Second pass: everything else. */
    pos = 0;
    ps->line_no = 0;
    while (!ps->oom && next_line(ps, text, len, &pos)) {
        if (ps->line_len > XS_RULES_MAX_LINE) {
            err_at(ps, 0, "line longer than %u bytes", XS_RULES_MAX_LINE);
            bad = true;
            continue;
        }
        size_t badbyte = utf8_check(ps->line, ps->line_len);
        if (badbyte != ps->line_len) {
            unsigned char b = (unsigned char)ps->line[badbyte];
            if (b < 0x20)
                err_at(ps, badbyte, "control character 0x%02x (not allowed in XML)", b);
            else
                err_at(ps, badbyte, "invalid UTF-8, or a character not allowed in XML");
            bad = true;
            continue;
        }
        /* A match line is the keyword and an XPath, which has its own syntax. A namespace line
         * was read in the first pass. */
        int nw = split_words(ps, 1, scratch, w, false);
        if (nw == 1 && is(&w[0], "namespace") && !in_rule)
            continue;
        if (nw == 1 && is(&w[0], "match")) {
            if (!in_rule)
                err_at(ps, w[0].off, "'match' outside a rule (start one with: rule \"NAME\")");
            else if (!add_match(ps, &cur, w[0].off + 5))
                bad = true;
            continue;
        }
        nw = split_words(ps, MAX_WORDS, scratch, w, true);
        if (nw < 0) {
            bad = true;
            continue;
        }
        if (nw == 0)
            continue;
        if (is(&w[0], "namespace")) {
            if (in_rule) {
                err_at(ps, w[0].off, "namespace declarations go outside rules");
                bad = true;
            }
        } else if (is(&w[0], "rule")) {
            bad = start_rule(ps, &cur, in_rule, w, nw);
            in_rule = true;
            dir_seen = false;
        } else if (is(&w[0], "end") || is(&w[0], "direction") || is(&w[0], "then")) {
            if (!in_rule) {
                err_at(ps, w[0].off, "'%s' outside a rule (start one with: rule \"NAME\")", w[0].s);
                continue;
            }
            if (is(&w[0], "end")) {
                if (nw > 1) {
                    err_at(ps, w[1].off, "nothing may follow 'end'");
                    bad = true;
                }
                finish_rule(ps, &cur, bad);
                in_rule = false;
            } else if (is(&w[0], "direction")) {
                if (!rule_direction(ps, &cur, w, nw, &dir_seen))
                    bad = true;
            } else {
                if (!add_action(ps, &cur, w, nw))
                    bad = true;
            }
        } else {
            err_at(ps, w[0].off,
                   "unknown keyword '%s' (namespace, rule, direction, match, then, end)", w[0].s);
            bad = true;
        }
    }
    if (in_rule) {
        diag_add(ps, cur.line, 1, "missing 'end' of rule \"%s\"", cur.name ? cur.name : "?");
        finish_rule(ps, &cur, true);
    }
    xs_free(scratch);
}

/* ---- entry points ---------------------------------------------------------------------------- */

int xs_rules_parse(const char *text, size_t len, const char *filename, unsigned builtin,
                   xs_rules **out, xs_rule_diag *diag)
{
    pstate ps;
    int rc = XS_ENOMEM;

    *out = NULL;
    memset(&ps, 0, sizeof(ps));
    ps.diag = diag;
    ps.filename = filename != NULL ? filename : "<rules>";
    if (len > XS_RULES_MAX_FILE) {
        diag_add(&ps, 0, 0, "larger than %u bytes", XS_RULES_MAX_FILE);
        return XS_ETOOBIG;
    }
    ps.set = xs_calloc(1, sizeof(*ps.set));
    if (ps.set == NULL)
        goto out;
    ps.set->refs = 1;
    /* The reference switch (inspect/reference.h): libxml2's XPath on a copy of every stanza. */
    ps.set->reference = xs_reference_mode();
    ps.set->filename = xs_strdup(ps.filename);
    ps.cctx = xmlXPathNewContext(NULL);
    static const char dummy[] = "<message xmlns='jabber:client'/>";
    ps.dummy = xmlReadMemory(dummy, sizeof(dummy) - 1, NULL, "UTF-8", XML_PARSE_NONET);
    if (ps.set->filename == NULL || ps.cctx == NULL || ps.dummy == NULL)
        goto out;
    ps.cctx->error = ignore_xpath_error;
    if (xmlXPathRegisterNs(ps.cctx, BAD_CAST XS_XPATH_STANZA_PREFIX, BAD_CAST "jabber:client") != 0)
        goto out;

    for (size_t i = 0; i < N_BUILTIN && !ps.oom; i++) {
        if (!(builtin & builtin_rules[i].bit))
            continue;
        ps.filename = "<builtin>";
        ps.builtin = builtin_rules[i].bit;
        ps.first_decl = ps.set->n_decls;
        compile_text(&ps, builtin_rules[i].text, strlen(builtin_rules[i].text));
        ps.set->n_builtin = ps.set->n_rules;
    }
    ps.filename = filename != NULL ? filename : "<rules>";
    ps.builtin = 0;
    ps.first_decl = ps.set->n_decls;
    xs_free(ps.frag_decls);
    ps.frag_decls = NULL;
    if (!ps.oom)
        compile_text(&ps, text, len);
    if (ps.oom)
        goto out;
    if (ps.errors > 0) {
        rc = XS_EPARSE;
        goto out;
    }
    rc = xs_rules_prepare(ps.set);
    if (rc != 0)
        goto out;
    *out = ps.set;
    ps.set = NULL;
out:
    if (diag != NULL && diag->n > 1)
        qsort(diag->errors, diag->n, sizeof(diag->errors[0]), cmp_errors);
    xs_rules_free(ps.set);
    if (ps.cctx != NULL)
        xmlXPathFreeContext(ps.cctx);
    if (ps.dummy != NULL)
        xmlFreeDoc(ps.dummy);
    xs_free(ps.frag_decls);
    xs_free(ps.decl_lines);
    return rc;
}

int xs_rules_load(const char *path, unsigned builtin, xs_rules **out, xs_rule_diag *diag)
{
    pstate ps;
    memset(&ps, 0, sizeof(ps));
    ps.diag = diag;
    ps.filename = path;
    *out = NULL;

    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        diag_add(&ps, 0, 0, "cannot open: %s", strerror(e));
        return XS_EIO;
    }
    char *buf = xs_malloc(XS_RULES_MAX_FILE + 1);
    if (buf == NULL) {
        fclose(f);
        return XS_ENOMEM;
    }
    size_t n = fread(buf, 1, XS_RULES_MAX_FILE + 1, f);
    int rc;
    if (ferror(f)) {
        int e = errno;
        diag_add(&ps, 0, 0, "cannot read: %s", strerror(e));
        rc = XS_EIO;
    } else if (n > XS_RULES_MAX_FILE) {
        diag_add(&ps, 0, 0, "larger than %u bytes", XS_RULES_MAX_FILE);
        rc = XS_ETOOBIG;
    } else {
        rc = xs_rules_parse(buf, n, path, builtin, out, diag);
    }
    fclose(f);
    xs_free(buf);
    return rc;
}

int xs_rules_builtin(unsigned builtin, xs_rules **out)
{
    return xs_rules_parse("", 0, "<builtin>", builtin, out, NULL);
}
