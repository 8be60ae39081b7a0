/* The rules-file reader: text in, a compiled rule set or every error with its position out.
 * See rules.h for the language. This file reads the text: lines, words, namespace declarations,
 * rules and their errors; rules_compile.c compiles what a line says (XPaths, regexes, fragments,
 * actions), so that applying a rule to a stanza never meets a syntax error. */
#include "filters/features.h"
#include "filters/rule_set.h"
#include "filters/rules_compile.h"
#include "filters/rules_impl.h"

#include "inspect/alloc.h"
#include "inspect/error.h"
#include "inspect/reference.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/xpathInternals.h>

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

static size_t columns(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            c++;
    return c;
}

static void diag_add(xs_rules_pstate *ps, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void diag_add(xs_rules_pstate *ps, unsigned line, unsigned col, const char *fmt, ...)
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

void xs_rules_err_at(xs_rules_pstate *ps, size_t off, const char *fmt, ...)
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

#define MAX_WORDS 6

/* ---- words ----------------------------------------------------------------------------------- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Splits the current line into at most `max` words (at most MAX_WORDS). Stops at a comment.
 * `scratch` has room for the line plus a NUL per word. Returns the number of words, or -1 after
 * reporting an error (when `report`). */
static int split_words(xs_rules_pstate *ps, size_t max, char *scratch, xs_rules_word *w,
                       bool report)
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
            xs_rules_err_at(ps, i, "too many arguments (quote text that contains blanks)");
            return -1;
        }
        xs_rules_word *cur = &w[nw++];
        cur->off = i;
        cur->s = o;
        cur->quoted = l[i] == '"';
        if (cur->quoted) {
            i++;
            for (;;) {
                if (i >= n) {
                    if (report)
                        xs_rules_err_at(ps, cur->off,
                                        "unterminated string (a string ends on its line)");
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
                    xs_rules_err_at(ps, i, "expected a blank after the closing quote");
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

bool xs_rules_label_ok(const char *s, size_t n)
{
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

char *xs_rules_dup_word(xs_rules_pstate *ps, const xs_rules_word *w)
{
    char *s = xs_strndup(w->s, w->len);
    if (s == NULL)
        ps->oom = true;
    return s;
}

/* ---- namespaces ------------------------------------------------------------------------------ */

const char *xs_rules_prefix_uri(xs_rules_pstate *ps, const char *p, size_t n)
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
static int uri_index(xs_rules_pstate *ps, const char *uri)
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

int xs_rules_resolve_prefix(void *user, const char *prefix, size_t len)
{
    xs_rules_pstate *ps = user;
    if (len == 3 && memcmp(prefix, "xml", 3) == 0)
        return -2;
    const char *uri = xs_rules_prefix_uri(ps, prefix, len);
    if (uri == NULL)
        return -1;
    int idx = uri_index(ps, uri);
    return idx < 0 ? -3 : idx; /* out of memory: a non-index that is not "unknown" */
}

static void declare(xs_rules_pstate *ps, const xs_rules_word *w, int nw)
{
    if (nw != 3) {
        xs_rules_err_at(ps, nw > 3 ? w[3].off : 0, "namespace needs PREFIX URI");
        return;
    }
    const xs_rules_word *p = &w[1], *u = &w[2];
    if (xmlValidateNCName(BAD_CAST p->s, 0) != 0) {
        xs_rules_err_at(ps, p->off, "'%s' is not a valid namespace prefix", p->s);
        return;
    }
    if (strcmp(p->s, "xml") == 0 || strcmp(p->s, "xmlns") == 0) {
        xs_rules_err_at(ps, p->off, "the prefix '%s' is reserved by XML", p->s);
        return;
    }
    if (u->len == 0 || strcmp(u->s, XS_RULES_FRAGMENT_NS) == 0 ||
        strcmp(u->s, "http://www.w3.org/2000/xmlns/") == 0) {
        xs_rules_err_at(ps, u->off, "'%s' cannot be used as a namespace URI", u->s);
        return;
    }
    xs_rules *set = ps->set;
    for (size_t i = ps->first_decl; i < set->n_decls; i++) {
        if (strcmp(set->decls[i].prefix, p->s) != 0)
            continue;
        if (strcmp(set->decls[i].uri, u->s) != 0)
            xs_rules_err_at(ps, p->off, "prefix '%s' is already bound to %s (line %u)", p->s,
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
int xs_rules_frag_decls(xs_rules_pstate *ps)
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
        if (xs_rules_prefix_uri(ps, b->prefix, strlen(b->prefix)) != b->uri)
            continue; /* rebound by the file */
        d[n++] = (xs_attr){.prefix = b->prefix, .uri = b->uri};
    }
    xs_free(ps->frag_decls);
    ps->frag_decls = d;
    ps->n_frag_decls = n;
    return 0;
}

static void ignore_xpath_error(void *user, xmlError *error)
{
    (void)user;
    (void)error;
}

/* ---- rules ----------------------------------------------------------------------------------- */

static char *dup_trimmed(xs_rules_pstate *ps, const char *s, size_t n)
{
    while (n > 0 && is_blank(s[n - 1]))
        n--;
    char *d = xs_strndup(s, n);
    if (d == NULL)
        ps->oom = true;
    return d;
}

static bool add_match(xs_rules_pstate *ps, xs_rule *r, size_t from)
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
        xs_rules_err_at(ps, 0, "too many match lines in one rule (at most %u)",
                        XS_RULES_MAX_MATCHES);
        return false;
    }
    xs_xpath x;
    if (!xs_rules_compile_xpath(ps, l + i, len - i, i, false, "match", &x))
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

static bool add_action(xs_rules_pstate *ps, xs_rule *r, xs_rules_word *w, int nw)
{
    if (r->n_actions == XS_RULES_MAX_ACTIONS) {
        xs_rules_err_at(ps, 0, "too many actions in one rule (at most %u)", XS_RULES_MAX_ACTIONS);
        return false;
    }
    xs_action a;
    if (!xs_rules_compile_action(ps, w, nw, &a)) {
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
static void finish_rule(xs_rules_pstate *ps, xs_rule *r, bool bad)
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
static bool next_line(xs_rules_pstate *ps, const char *text, size_t len, size_t *pos)
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
static void declare_all(xs_rules_pstate *ps, const char *text, size_t len, char *scratch,
                        xs_rules_word *w)
{
    size_t pos;

    pos = 0;
    ps->line_no = 0;
    while (next_line(ps, text, len, &pos)) {
        if (ps->line_len > XS_RULES_MAX_LINE || utf8_check(ps->line, ps->line_len) != ps->line_len)
            continue;
        int nw = split_words(ps, 1, scratch, w, false);
        if (nw == 1 && xs_rules_word_is(&w[0], "namespace")) {
            nw = split_words(ps, MAX_WORDS, scratch, w, true);
            if (nw > 0)
                declare(ps, w, nw);
        }
    }
}

/* A rule line: starts the rule *cur (ending one left open without 'end'). Returns whether the
 * rule is bad already. */
static bool start_rule(xs_rules_pstate *ps, xs_rule *cur, bool in_rule, xs_rules_word *w, int nw)
{
    bool bad = false;

    if (in_rule) {
        xs_rules_err_at(ps, w[0].off, "missing 'end' of rule \"%s\" (line %u) before this rule",
                        cur->name ? cur->name : "?", cur->line);
        finish_rule(ps, cur, true);
    }
    ps->line_failed = false;
    memset(cur, 0, sizeof(*cur));
    cur->line = ps->line_no;
    if (nw != 2 || !xs_rules_label_ok(w[1].s, w[1].len)) {
        xs_rules_err_at(ps, nw >= 2 ? w[1].off : ps->line_len,
                        nw > 2 ? "a rule name with blanks must be quoted"
                               : "rule needs a name of 1 to 128 bytes: rule \"NAME\"");
        cur->name = xs_strdup("?");
        bad = true;
    } else {
        cur->name = xs_rules_dup_word(ps, &w[1]);
        const xs_rule *dup = cur->name ? find_rule(ps->set, cur->name) : NULL;
        if (dup != NULL) {
            xs_rules_err_at(ps, w[1].off, "duplicate rule name \"%s\" (first at line %u)",
                            cur->name, dup->line);
            bad = true;
        } else if (ps->builtin == 0 && cur->name != NULL && reserved_name(cur->name)) {
            xs_rules_err_at(ps, w[1].off, "the rule name \"%s\" is reserved for a built-in rule",
                            cur->name);
            bad = true;
        }
    }
    if (cur->name == NULL)
        ps->oom = true;
    return bad;
}

/* A direction line of the rule *cur. Returns false on an error (reported). */
static bool rule_direction(xs_rules_pstate *ps, xs_rule *cur, const xs_rules_word *w, int nw,
                           bool *dir_seen)
{
    bool bad = false;

    xs_rule_dir d = XS_RULE_ANY;
    if (nw != 2) {
        xs_rules_err_at(ps, nw > 2 ? w[2].off : ps->line_len,
                        "direction needs one of c2s, s2c, any");
        bad = true;
    } else if (xs_rules_word_is(&w[1], "c2s") || xs_rules_word_is(&w[1], "s2c") ||
               xs_rules_word_is(&w[1], "any")) {
        d = xs_rules_word_is(&w[1], "c2s")   ? XS_RULE_C2S
            : xs_rules_word_is(&w[1], "s2c") ? XS_RULE_S2C
                                             : XS_RULE_ANY;
        if (*dir_seen) {
            xs_rules_err_at(ps, w[0].off, "direction given twice in one rule");
            bad = true;
        }
        *dir_seen = true;
        cur->dir = d;
    } else {
        xs_rules_err_at(ps, w[1].off, "unknown direction '%s' (c2s, s2c or any)", w[1].s);
        bad = true;
    }
    return !bad;
}

static void compile_text(xs_rules_pstate *ps, const char *text, size_t len)
{
    char *scratch = xs_malloc(XS_RULES_MAX_LINE + MAX_WORDS + 1);
    xs_rules_word w[MAX_WORDS];
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
            xs_rules_err_at(ps, 0, "line longer than %u bytes", XS_RULES_MAX_LINE);
            bad = true;
            continue;
        }
        size_t badbyte = utf8_check(ps->line, ps->line_len);
        if (badbyte != ps->line_len) {
            unsigned char b = (unsigned char)ps->line[badbyte];
            if (b < 0x20)
                xs_rules_err_at(ps, badbyte, "control character 0x%02x (not allowed in XML)", b);
            else
                xs_rules_err_at(ps, badbyte, "invalid UTF-8, or a character not allowed in XML");
            bad = true;
            continue;
        }
        /* A match line is the keyword and an XPath, which has its own syntax. A namespace line
         * was read in the first pass. */
        int nw = split_words(ps, 1, scratch, w, false);
        if (nw == 1 && xs_rules_word_is(&w[0], "namespace") && !in_rule)
            continue;
        if (nw == 1 && xs_rules_word_is(&w[0], "match")) {
            if (!in_rule)
                xs_rules_err_at(ps, w[0].off,
                                "'match' outside a rule (start one with: rule \"NAME\")");
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
        if (xs_rules_word_is(&w[0], "namespace")) {
            if (in_rule) {
                xs_rules_err_at(ps, w[0].off, "namespace declarations go outside rules");
                bad = true;
            }
        } else if (xs_rules_word_is(&w[0], "rule")) {
            bad = start_rule(ps, &cur, in_rule, w, nw);
            in_rule = true;
            dir_seen = false;
        } else if (xs_rules_word_is(&w[0], "end") || xs_rules_word_is(&w[0], "direction") ||
                   xs_rules_word_is(&w[0], "then")) {
            if (!in_rule) {
                xs_rules_err_at(ps, w[0].off, "'%s' outside a rule (start one with: rule \"NAME\")",
                                w[0].s);
                continue;
            }
            if (xs_rules_word_is(&w[0], "end")) {
                if (nw > 1) {
                    xs_rules_err_at(ps, w[1].off, "nothing may follow 'end'");
                    bad = true;
                }
                finish_rule(ps, &cur, bad);
                in_rule = false;
            } else if (xs_rules_word_is(&w[0], "direction")) {
                if (!rule_direction(ps, &cur, w, nw, &dir_seen))
                    bad = true;
            } else {
                if (!add_action(ps, &cur, w, nw))
                    bad = true;
            }
        } else {
            xs_rules_err_at(ps, w[0].off,
                            "unknown keyword '%s' (namespace, rule, direction, match, then, end)",
                            w[0].s);
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
    xs_rules_pstate ps;
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
    xs_rules_pstate ps;
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
