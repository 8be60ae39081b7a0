/* Internals of the rule engine shared by its files: the compiled form of a rule set
 * (rule_set.h: rules_parse.c and rules_compile.c build it, rules.c and rules_actions.c apply
 * it), the XPath prefix rewriter (xpath_rewrite.c) and quick evaluator (xpath_ns.c). Not for use
 * outside filters/rule*.c and filters/xpath*.c (and the tests of the engine). */
#ifndef XS_FILTERS_RULES_IMPL_H
#define XS_FILTERS_RULES_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <pcre2.h>

#include "filters/rule_set.h"
#include "filters/rules.h"
#include "inspect/buf.h"

/* Compiled XPaths never contain a prefix the user wrote: every prefixed name test becomes
 * XS_XPATH_NS_PREFIX followed by the index of its URI in the set's URI table ("xs-3:sm"), and
 * every unprefixed element name test becomes XS_XPATH_STANZA_PREFIX, bound at evaluation to
 * the stream's content namespace. So one evaluation context serves built-in and file rules even
 * when the file rebinds a built-in prefix, and XPath 1.0's lack of a default namespace is made
 * up for. */
#define XS_XPATH_NS_PREFIX "xs-"
#define XS_XPATH_STANZA_PREFIX "xs-s"

/* Fragments (insert, inject) are parsed at load time with this URI as their default namespace;
 * when applied it is replaced by the stream's content namespace. */
#define XS_RULES_FRAGMENT_NS "urn:xmppscope:stanza-namespace"

/* ---- XPath tokens ---------------------------------------------------------------------------- */

/* The character classes of XPath's tokens, as the prefix rewriter and the quick compiler read
 * them (one definition for both). */
static inline bool xs_xp_name_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static inline bool xs_xp_name_char(unsigned char c)
{
    return xs_xp_name_start(c) || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

static inline bool xs_xp_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static inline bool xs_xp_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* ---- XPath prefix rewriting (xpath_rewrite.c) ------------------------------------------------ */

/* Resolves a prefix written in an XPath: returns the index of its URI in the set's table, -1 when
 * the prefix is unknown, -2 for `xml` (libxml2 binds it itself). */
typedef int (*xs_xpath_resolve)(void *user, const char *prefix, size_t len);

typedef struct xs_xpath_rw {
    char *expr; /* the rewritten expression, NUL-terminated, malloc'd */
    /* Token starts: map_new[i] in expr corresponds to map_old[i] in the source. */
    size_t *map_new, *map_old;
    size_t n_map, cap_map;
    /* When the expression is a location path whose first step is a name test from the root
     * (`/message[...]/...`, with no operator outside brackets and parentheses), it can only
     * select something, and so be true, for a stanza of that name: root_local points to the name
     * in the source (root_local_len bytes) and root_ns is its URI index, or -1 for the stream's
     * content namespace. NULL otherwise. */
    const char *root_local;
    size_t root_local_len;
    int root_ns;
    /* The expression calls id() or uses the namespace axis: what they give depends on the
     * document the stanza is in and the declarations in scope, so it is evaluated on the
     * stanza's copy in a document of its own, never on the parser's element (see rules.c). */
    bool own_doc;
    /* On XS_EPARSE: where (byte offset in the source) and what. */
    size_t err_offset;
    char err[200];
} xs_xpath_rw;

/* Rewrites the XPath `src` (`len` bytes) as described above, refusing unknown prefixes, unknown
 * functions, unknown axes and variables. Returns 0, XS_EPARSE (rw->err, rw->err_offset) or
 * XS_ENOMEM. Free with xs_xpath_rw_clear() in every case. */
int xs_xpath_rewrite(const char *src, size_t len, xs_xpath_resolve resolve, void *user,
                     xs_xpath_rw *rw);

/* Maps a byte offset in rw->expr back to the source. */
size_t xs_xpath_map_offset(const xs_xpath_rw *rw, size_t offset);

void xs_xpath_rw_clear(xs_xpath_rw *rw);

/* ---- the quick evaluator (xpath_compile.c, xpath_ns.c) --------------------------------------- */

/* libxml2 spends some hundreds of nanoseconds on any XPath evaluation (it allocates a parser
 * context, a value stack and node sets each time), and with a few dozen rules that was most of
 * what a stanza cost. Most matches and targets use a small part of XPath, which the quick
 * evaluator computes exactly, walking the tree and allocating nothing in the common case:
 *   - location paths of child steps from the stanza (`/message/body`) or from the context node
 *     (`body`, `.`), with name tests (`client:body`, `e:*`, `*`), `text()` and a last `@name`
 *     step (`@*`, `@e:name`), and predicates that are not numbers (no positions);
 *   - `and`, `or`, parentheses, one comparison (= != < <= > >=) of anything but two node-sets,
 *     string and number literals;
 *   - the functions not, true, false, boolean, contains, starts-with, string-length, string,
 *     number, count, local-name and namespace-uri (with the argument types XPath gives them
 *     without conversions of numbers or booleans to strings).
 * Anything else (other axes, `//`, `..`, unions, arithmetic, positions, other functions) leaves
 * the expression to libxml2. It works on the compiled text (xs_xpath_rw.expr), whose element
 * names all carry an xs- prefix. */
typedef struct xs_qx xs_qx;

/* What the names of compiled expressions mean during an evaluation. */
typedef struct xs_qx_env {
    char *const *uris;      /* the set's URI table: xs-N */
    const char *stanza_ns;  /* the stream's content namespace: xs-s */
    unsigned long op_limit; /* nodes an evaluation may visit before it gives up */
} xs_qx_env;

/* Compiles the rewritten XPath `expr` when it lies in the subset. Returns 0 and sets *out (NULL
 * when outside it), or XS_ENOMEM. With `nodes`, it must be a location path (a target). */
int xs_qx_compile(const char *expr, bool nodes, xs_qx **out);

void xs_qx_free(xs_qx *q);

/* Evaluates `q` as by XPath's boolean(), with `root` as the root element of its document and the
 * context node (also when `root` is in fact attached to a stream element: no axis of the subset
 * leaves the stanza). Returns 1 or 0, or -1 when it gave up (the operation limit, or out of
 * memory): then libxml2 should decide. */
int xs_qx_bool(const xs_qx *q, const xs_qx_env *env, xmlNode *root);

/* The nodes a path compiled with `nodes` selects, in document order: at most `max` go to `out`,
 * and *n says how many. Returns 0, 1 when more than `max` were selected, or -1 when it gave
 * up. */
int xs_qx_select(const xs_qx *q, const xs_qx_env *env, xmlNode *root, xmlNode **out, size_t max,
                 size_t *n);

/* A text for libxml2's XPath error `code` (xmlError.code). */
const char *xs_xpath_error_text(int code);

/* True when `code` says libxml2 ran out of memory. */
#define XS_XPATH_OOM(code) ((code) == XML_ERR_NO_MEMORY || (code) == XML_XPATH_MEMORY_ERROR)

/* ---- applying (rules_actions.c) -------------------------------------------------------------- */

/* False when `n` bytes of UTF-8 at `s` cannot hold a match (see xs_re_run). */
bool xs_re_may_match(const xs_re_run *f, const char *s, size_t n);

/* ---- compiling (rules_compile.c) ------------------------------------------------------------- */

/* Bounce conditions of RFC 6120 section 8.3.3 and their recommended error types. */
const char *xs_bounce_type(const char *condition);

#endif
