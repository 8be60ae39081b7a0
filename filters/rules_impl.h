/* Internals of the rule engine shared by its files: the compiled form of a rule set
 * (rules_parse.c builds it, rules.c applies it), the XPath prefix rewriter and quick evaluator
 * (xpath_ns.c) and a capped string buffer. Not for use outside filters/rules*.c and xpath_ns.c
 * (and the tests of the engine). */
#ifndef XS_FILTERS_RULES_IMPL_H
#define XS_FILTERS_RULES_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <pcre2.h>

#include "filters/rules.h"

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

/* ---- capped string buffer -------------------------------------------------------------------- */

typedef struct xs_sbuf {
    char *s;
    size_t len, cap, max; /* max: the length may not pass it (0: no limit) */
    int err;              /* first failure (XS_ENOMEM, XS_ETOOBIG); later appends do nothing */
} xs_sbuf;

void xs_sbuf_init(xs_sbuf *b, size_t max);
void xs_sbuf_add(xs_sbuf *b, const char *s, size_t n);
void xs_sbuf_adds(xs_sbuf *b, const char *s);
void xs_sbuf_addf(xs_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the NUL-terminated string over to the caller (free()) and resets the buffer; NULL if an
 * append failed (then b->err says why) or out of memory. */
char *xs_sbuf_take(xs_sbuf *b, size_t *len);
void xs_sbuf_free(xs_sbuf *b);

/* ---- XPath prefix rewriting (xpath_ns.c) ----------------------------------------------------- */

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

/* ---- the quick evaluator (xpath_ns.c) -------------------------------------------------------- */

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

/* ---- the compiled form ----------------------------------------------------------------------- */

typedef enum xs_act_kind {
    XS_ACT_DROP,
    XS_ACT_BOUNCE,
    XS_ACT_SET_ATTR,
    XS_ACT_REMOVE_ATTR,
    XS_ACT_SET_TEXT,
    XS_ACT_REPLACE_TEXT,
    XS_ACT_REMOVE,
    XS_ACT_INSERT,
    XS_ACT_INJECT,
    XS_ACT_DELAY,
    XS_ACT_TAG,
    XS_ACT_PASS,
} xs_act_kind;

const char *xs_act_name(xs_act_kind kind);

/* One compiled XPath of a rule, with what lets most evaluations skip libxml2. */
typedef struct xs_xpath {
    xmlXPathCompExpr *comp; /* NULL: none */
    xs_qx *quick;           /* the quick form, or NULL when outside its subset */
    bool own_doc;           /* xs_xpath_rw.own_doc */
    /* A match is true only for a stanza of this name (xs_xpath_rw.root_local): most rules start
     * with /message, /iq or /stream:features, and most stanzas are decided by the name alone. */
    char *root_local; /* NULL: no such condition */
    int root_ns;      /* URI index, or -1 for the stream's content namespace */
} xs_xpath;

/* What every match of a replace-text regex needs in a text: `run` consecutive characters that its
 * first item can match, when it starts (after \b, ^ and the like) with an item matching one
 * character with a minimum count (`\d{4}`, `[a-z]+`, `x`). Scanning a text for that is many
 * times faster than PCRE2 trying a Unicode-aware pattern at every position, and most texts do
 * not have it. Which ASCII characters can match is found with PCRE2 itself (the item compiled
 * alone with the same options); a character beyond ASCII always counts as one that can. */
typedef struct xs_re_run {
    unsigned run; /* 0: nothing known, try the regex */
    /* For each byte: XS_RE_BREAK (an ASCII character the item cannot match), XS_RE_COUNT (one it
     * can match, or the first byte of a character beyond ASCII) or XS_RE_SAME (a continuation
     * byte of such a character). */
    unsigned char step[256];
    /* The ASCII characters that count are exactly lo to hi (\d, [a-z]), and no lead byte below
     * `lead` counts: texts are then skipped sixteen bytes at a time. */
    bool range;
    unsigned char lo, hi, lead;
} xs_re_run;

enum { XS_RE_BREAK = 0, XS_RE_COUNT = 1, XS_RE_SAME = 2 };

/* False when `n` bytes of UTF-8 at `s` cannot hold a match (see xs_re_run). */
bool xs_re_may_match(const xs_re_run *f, const char *s, size_t n);

typedef struct xs_action {
    xs_act_kind kind;
    unsigned line;
    xs_xpath target;   /* the nodes it works on (attr, text, remove, insert) */
    char *attr_local;  /* set-attr, remove-attr: the attribute's local name */
    char *attr_prefix; /* and its prefix and namespace, or NULL */
    char *attr_uri;
    char *value;           /* set-attr VALUE, set-text TEXT, replace-text REPLACEMENT, tag LABEL */
    bool value_vars;       /* value contains a {placeholder} */
    const char *condition; /* bounce: static strings */
    const char *error_type;
    pcre2_code *re;
    xs_re_run re_run;
    xmlDoc *fragment;   /* insert, inject: the wrapper element's children are the fragment */
    bool fragment_vars; /* a text or attribute value of the fragment contains '{' */
    size_t fragment_size;
    xs_rule_dir inject_dir;
    unsigned long ms;
} xs_action;

typedef struct xs_rule {
    char *name;
    xs_rule_dir dir;
    unsigned line;
    unsigned builtin; /* XS_REWRITE_* bit, 0 for a rule of the file */
    xs_xpath *matches;
    char **match_src;
    size_t n_matches;
    xs_action *actions;
    char **action_src;
    size_t n_actions;
    unsigned long hits;
    /* The stanza the rule's matches need (see xs_xpath.root_local): an index in the set's
     * roots, or RULE_ANY_ROOT when no match names one, two name different ones or the roots
     * are full (then each match's root is compared on the stanza). */
    int root;
} xs_rule;

enum { RULE_ANY_ROOT = -1 };

/* A stanza a rule may need: its local name and URI index (-1: the stream's content namespace). */
typedef struct xs_rule_root {
    const char *local; /* the first match's root_local that named it */
    int ns;
} xs_rule_root;

#define XS_RULES_MAX_ROOTS 64 /* distinct stanzas rules are sorted by; more are not sorted */

struct xs_rules {
    unsigned refs;
    char *filename;
    xs_rule *rules;
    size_t n_rules, n_builtin;
    char **uris; /* the URI table the compiled XPaths refer to (xs-N) */
    size_t n_uris;
    xs_rules_ns *decls; /* the file's namespace declarations, for listings */
    size_t n_decls;
    /* The distinct stanzas the rules need: a stanza is looked up here once, and only the rules
     * that need it or any stanza are tried. */
    xs_rule_root roots[XS_RULES_MAX_ROOTS];
    size_t n_roots;
    /* Scratch for xs_rules_apply(), made once so that a stanza no rule changes costs no
     * allocation of ours: an XPath context with the URI table registered, the content namespace
     * XS_XPATH_STANZA_PREFIX is bound to in it (a copy), an empty document the parser's stanza
     * is lent to while an XPath looks at it, PCRE2's match context (with limits) and match
     * data, and two arrays of nodes. */
    xmlXPathContext *xpath;
    char *stanza_ns;
    xmlDoc *shell;
    pcre2_match_context *mctx;
    pcre2_match_data *mdata;
    xmlNode **selected; /* XS_RULES_MAX_NODES + 1 entries: what the quick evaluator selects */
    xmlNode **texts;    /* XS_RULES_MAX_NODES entries: the text nodes of a replace-text */
    /* The reference switch (inspect/reference.h), and for tests: apply the slow way the fast
     * paths must agree with, every stanza copied before the first rule, every XPath evaluated by
     * libxml2 and every regex tried. */
    bool reference;
};

/* Creates the scratch objects of `set` once set->uris is complete. */
int xs_rules_prepare(xs_rules *set);

/* Frees a set whatever its state of construction. */
void xs_rules_free(xs_rules *set);

/* Bounce conditions of RFC 6120 section 8.3.3 and their recommended error types. */
const char *xs_bounce_type(const char *condition);

#endif
