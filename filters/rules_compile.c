/* The rules-file compiler's second half: what one line of a rule says, compiled and checked
 * once (see rules_parse.c for the reader). XPaths are rewritten for namespaces, compiled and
 * tried on a dummy stanza; regexes and their replacements are compiled and checked; XML fragments
 * are parsed; each action's arguments are checked. */
#include "filters/rule_set.h"
#include "filters/rules_compile.h"
#include "filters/rules_impl.h"

#include "inspect/alloc.h"
#include "inspect/error.h"
#include "inspect/fragment.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/xpathInternals.h>

/* replace-text regexes are UTF-8 with Unicode properties (\d is any decimal digit). */
#define REGEX_OPTIONS (PCRE2_UTF | PCRE2_UCP)

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

/* ---- compiling arguments --------------------------------------------------------------------- */

/* Compiles the XPath `src` found at byte `off` of the line (unescaped, as in a quoted word when
 * `quoted`) into *out (zeroed when it fails). With `nodes`, it must select nodes (an action's
 * target). Returns false on an error (reported) or out of memory (ps->oom). */
bool xs_rules_compile_xpath(xs_rules_pstate *ps, const char *src, size_t len, size_t off,
                            bool nodes, const char *what, xs_xpath *out)
{
    xs_xpath_rw rw;
    xmlXPathCompExpr *comp = NULL;
    xmlXPathObject *obj = NULL;
    memset(out, 0, sizeof(*out));
    if (len == 0) {
        xs_rules_err_at(ps, off, "%s: empty XPath", what);
        return false;
    }
    int rc = xs_xpath_rewrite(src, len, xs_rules_resolve_prefix, ps, &rw);
    if (rc == XS_ENOMEM || ps->oom) {
        ps->oom = true;
        goto out;
    }
    if (rc != 0) {
        xs_rules_err_at(ps, off + rw.err_offset, "%s: %s", what, rw.err);
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
            xs_rules_err_at(ps, off + xs_xpath_map_offset(&rw, at), "%s: bad XPath: %s", what,
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
            xs_rules_err_at(ps, off, "%s: bad XPath: %s", what, xs_xpath_error_text(code));
        xmlXPathFreeCompExpr(comp);
        comp = NULL;
    } else if (nodes && obj->type != XPATH_NODESET) {
        xs_rules_err_at(ps, off, "%s: the XPath must select nodes (it gives a %s)", what,
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
static bool check_replacement(xs_rules_pstate *ps, pcre2_code *re, const xs_rules_word *w)
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
                xs_rules_err_at(ps, xs_rules_word_off(w, at),
                                "replace-text: the regex has no group %lu (it has %u)", n, groups);
                return false;
            }
        } else {
            while (i < w->len && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                                  (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
                i++;
            if (i == start) {
                xs_rules_err_at(
                    ps, xs_rules_word_off(w, at),
                    "replace-text: '$' must be followed by a group number, a group name, "
                    "{NUMBER or NAME} or '$'");
                return false;
            }
            char name[64];
            size_t n = i - start < sizeof(name) - 1 ? i - start : sizeof(name) - 1;
            memcpy(name, s + start, n);
            name[n] = 0;
            if (pcre2_substring_number_from_name(re, (PCRE2_SPTR)name) < 0) {
                xs_rules_err_at(ps, xs_rules_word_off(w, at),
                                "replace-text: the regex has no group named '%s'", name);
                return false;
            }
        }
        if (braced) {
            if (i >= w->len || s[i] != '}') {
                xs_rules_err_at(ps, xs_rules_word_off(w, at), "replace-text: '${' without its '}'");
                return false;
            }
        } else {
            i--;
        }
    }
    return true;
}

static pcre2_code *compile_regex(xs_rules_pstate *ps, const xs_rules_word *w)
{
    int code;
    PCRE2_SIZE erroff;
    /* Auto callouts let the engine count the steps of every match against the stanza's regex
     * budget (see xs_apply_regex_step() in rules_actions.c); they change nothing in what
     * matches. */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)w->s, w->len, REGEX_OPTIONS | PCRE2_AUTO_CALLOUT,
                                   &code, &erroff, NULL);
    if (re == NULL) {
        PCRE2_UCHAR msg[160];
        if (pcre2_get_error_message(code, msg, sizeof(msg)) < 0)
            snprintf((char *)msg, sizeof(msg), "error %d", code);
        if (code == PCRE2_ERROR_HEAPLIMIT || code == PCRE2_ERROR_NOMEMORY)
            ps->oom = true;
        else
            xs_rules_err_at(ps, xs_rules_word_off(w, erroff), "replace-text: bad regex: %s",
                            (const char *)msg);
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

/* The first item of the regex `p` (`len` bytes) that matches one character, as regex_run()
 * describes: false when there is none, else true with the item at [*from, *to) and its
 * quantifier's minimum in *min_run. */
static bool first_item(const char *p, size_t len, size_t *from, size_t *to, unsigned *min_run)
{
    if (memchr(p, '|', len) != NULL)
        return false;
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
        return false;
    size_t s0 = i;
    if (p[i] == '\\') {
        char e = i + 1 < len ? p[i + 1] : 0;
        if (e != 0 && strchr("dDwWsShHvV", e) != NULL) {
            i += 2;
        } else if ((e == 'p' || e == 'P') && i + 2 < len && p[i + 2] == '{') {
            const char *end = memchr(p + i + 3, '}', len - i - 3);
            if (end == NULL)
                return false;
            i = (size_t)(end - p) + 1;
        } else if ((e == 'p' || e == 'P') && i + 2 < len && ascii_alnum(p[i + 2])) {
            i += 3;
        } else {
            return false;
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
                return false;
            if (p[k] == '\\')
                k++;
        }
        if (k >= len)
            return false;
        i = k + 1;
    } else {
        return false;
    }
    size_t e0 = i;
    unsigned r0 = 1;
    if (i < len && (p[i] == '?' || p[i] == '*'))
        return false;
    if (i < len && p[i] == '{') {
        size_t k = i + 1;
        unsigned n = 0;
        while (k < len && p[k] >= '0' && p[k] <= '9' && n < 65536)
            n = n * 10 + (unsigned)(p[k++] - '0');
        if (k == i + 1 || n == 0 || k >= len)
            return false;
        if (p[k] == ',')
            for (k++; k < len && p[k] >= '0' && p[k] <= '9';)
                k++;
        if (k >= len || p[k] != '}')
            return false;
        r0 = n;
    }
    *from = s0;
    *to = e0;
    *min_run = r0;
    return true;
}

/* Fills *out for the item at `src` (`src_len` bytes, compiled with `options`) whose quantifier's
 * minimum is `run`, or leaves it empty when the item does not match exactly one character. */
static void item_table(const char *src, size_t src_len, uint32_t options, unsigned run,
                       xs_re_run *out)
{
    /* Sort the ASCII characters with the item alone. */
    int code;
    PCRE2_SIZE erroff;
    pcre2_code *item = pcre2_compile((PCRE2_SPTR)src, src_len, options, &code, &erroff, NULL);
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
    size_t start, end;
    unsigned run;
    memset(out, 0, sizeof(*out));
    if (first_item(p, len, &start, &end, &run))
        item_table(p + start, end - start, options, run, out);
}

/* Parses an XML fragment (insert, inject). `one_element`: exactly one element, and nothing but
 * blanks around it. */
static xmlDoc *parse_fragment(xs_rules_pstate *ps, const xs_rules_word *w, bool one_element,
                              const char *what, bool *vars)
{
    xmlDoc *doc = NULL;
    xmlNode *el = NULL;
    xs_fragment_error fe;
    if (ps->frag_decls == NULL && xs_rules_frag_decls(ps) != 0)
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
        xs_rules_err_at(ps, xs_rules_word_off(w, fe.off), "%s: bad XML: %s", what,
                        rc == XS_ETOOBIG ? "too big" : fe.message);
        return NULL;
    }
    if (rc != 0) {
        xs_rules_err_at(ps, w->off, "%s: %s", what, fe.message);
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
static bool attr_name(xs_rules_pstate *ps, const xs_rules_word *w, xs_action *a)
{
    if (xmlValidateQName(BAD_CAST w->s, 0) != 0) {
        xs_rules_err_at(ps, w->off, "'%s' is not a valid attribute name", w->s);
        return false;
    }
    const char *colon = strchr(w->s, ':');
    if (strcmp(w->s, "xmlns") == 0 || strncmp(w->s, "xmlns:", 6) == 0) {
        xs_rules_err_at(ps, w->off, "namespace declarations are not attributes to set or remove");
        return false;
    }
    if (colon != NULL) {
        size_t plen = (size_t)(colon - w->s);
        const char *uri = plen == 3 && memcmp(w->s, "xml", 3) == 0
                              ? (const char *)XML_XML_NAMESPACE
                              : xs_rules_prefix_uri(ps, w->s, plen);
        if (uri == NULL) {
            xs_rules_err_at(ps, w->off, "unknown namespace prefix '%.*s'", (int)plen, w->s);
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

/* bounce [CONDITION [TYPE]] */
static bool compile_bounce(xs_rules_pstate *ps, const xs_rules_word *arg, unsigned nargs,
                           xs_action *a)
{
    a->condition = "service-unavailable";
    if (nargs >= 1) {
        a->condition = condition_static(arg[0].s);
        if (a->condition == NULL) {
            xs_rules_err_at(ps, arg[0].off,
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
            xs_rules_err_at(ps, arg[1].off,
                            "unknown error type '%s' (auth, cancel, continue, modify or wait)",
                            arg[1].s);
            return false;
        }
        a->error_type = error_types[t];
    }
    return true;
}

/* The actions on a target: set-attr, remove-attr, set-text, replace-text, remove, insert. */
static bool compile_target_action(xs_rules_pstate *ps, xs_rules_word *arg, const char *what,
                                  xs_action *a)
{
    if (!xs_rules_compile_xpath(ps, arg[0].s, arg[0].len, xs_rules_word_off(&arg[0], 0), true, what,
                                &a->target))
        return false;
    if (a->kind == XS_ACT_SET_ATTR || a->kind == XS_ACT_REMOVE_ATTR) {
        if (!attr_name(ps, &arg[1], a))
            return false;
        if (a->kind == XS_ACT_SET_ATTR && (a->value = xs_rules_dup_word(ps, &arg[2])) == NULL)
            return false;
    } else if (a->kind == XS_ACT_SET_TEXT) {
        if ((a->value = xs_rules_dup_word(ps, &arg[1])) == NULL)
            return false;
    } else if (a->kind == XS_ACT_REPLACE_TEXT) {
        if (arg[1].len == 0) {
            xs_rules_err_at(ps, arg[1].off, "replace-text: empty regex");
            return false;
        }
        a->re = compile_regex(ps, &arg[1]);
        if (a->re == NULL || !check_replacement(ps, a->re, &arg[2]))
            return false;
        regex_run(arg[1].s, arg[1].len, REGEX_OPTIONS, &a->re_run);
        if ((a->value = xs_rules_dup_word(ps, &arg[2])) == NULL)
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
static bool compile_inject(xs_rules_pstate *ps, xs_rules_word *arg, const char *what, xs_action *a)
{
    if (xs_rules_word_is(&arg[0], "c2s"))
        a->inject_dir = XS_RULE_C2S;
    else if (xs_rules_word_is(&arg[0], "s2c"))
        a->inject_dir = XS_RULE_S2C;
    else {
        xs_rules_err_at(ps, arg[0].off, "inject: direction must be c2s or s2c, not '%s'", arg[0].s);
        return false;
    }
    a->fragment = parse_fragment(ps, &arg[1], true, what, &a->fragment_vars);
    a->fragment_size = arg[1].len;
    if (a->fragment == NULL)
        return false;
    return true;
}

/* delay MS */
static bool compile_delay(xs_rules_pstate *ps, const xs_rules_word *arg, xs_action *a)
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
        xs_rules_err_at(ps, arg[0].off, "delay: '%s' is not a number of milliseconds from 0 to %u",
                        s, XS_RULES_MAX_DELAY_MS);
        return false;
    }
    a->ms = ms;
    return true;
}

/* tag LABEL */
static bool compile_tag(xs_rules_pstate *ps, const xs_rules_word *arg, xs_action *a)
{
    if (!xs_rules_label_ok(arg[0].s, arg[0].len)) {
        xs_rules_err_at(ps, arg[0].off,
                        "tag: a label is 1 to 128 bytes without control characters");
        return false;
    }
    if ((a->value = xs_rules_dup_word(ps, &arg[0])) == NULL)
        return false;
    return true;
}

bool xs_rules_compile_action(xs_rules_pstate *ps, xs_rules_word *w, int nw, xs_action *a)
{
    memset(a, 0, sizeof(*a));
    a->line = ps->line_no;
    if (nw < 2) {
        xs_rules_err_at(ps, ps->line_len,
                        "then needs an action (drop, bounce, set-attr, remove-attr, "
                        "set-text, replace-text, remove, insert, inject, delay, tag, "
                        "pass)");
        return false;
    }
    size_t k;
    for (k = 0; k < XS_ACT_N; k++)
        if (xs_rules_word_is(&w[1], xs_act_name((xs_act_kind)k)))
            break;
    if (k == XS_ACT_N) {
        xs_rules_err_at(
            ps, w[1].off,
            "unknown action '%s' (drop, bounce, set-attr, remove-attr, set-text, replace-text, "
            "remove, insert, inject, delay, tag, pass)",
            w[1].s);
        return false;
    }
    a->kind = (xs_act_kind)k;
    unsigned nargs = (unsigned)nw - 2;
    if (nargs < act_args[k][0] || nargs > act_args[k][1]) {
        size_t at = nargs > act_args[k][1] ? w[2 + act_args[k][1]].off : ps->line_len;
        xs_rules_err_at(ps, at, "%s %s: usage: %s%s%s",
                        nargs > act_args[k][1] ? "too many arguments for" : "missing arguments for",
                        xs_act_name((xs_act_kind)k), xs_act_name((xs_act_kind)k), act_usage[k],
                        nargs > act_args[k][1] ? " (quote text that contains blanks)" : "");
        return false;
    }
    xs_rules_word *arg = &w[2];
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
