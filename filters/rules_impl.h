/* Internals of the rule engine shared by its files: the compiled form of a rule set
 * (rules_parse.c builds it, rules.c applies it), the XPath prefix rewriter (xpath_ns.c) and a
 * capped string buffer. Not for use outside filters/rules*.c and xpath_ns.c. */
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

typedef struct xs_action {
    xs_act_kind kind;
    unsigned line;
    xmlXPathCompExpr *target; /* the nodes it works on (attr, text, remove, insert) */
    char *attr_local;         /* set-attr, remove-attr: the attribute's local name */
    char *attr_prefix;        /* and its prefix and namespace, or NULL */
    char *attr_uri;
    char *value;           /* set-attr VALUE, set-text TEXT, replace-text REPLACEMENT, tag LABEL */
    bool value_vars;       /* value contains a {placeholder} */
    const char *condition; /* bounce: static strings */
    const char *error_type;
    pcre2_code *re;
    xmlDoc *fragment;   /* insert, inject: the wrapper element's children are the fragment */
    bool fragment_vars; /* a text or attribute value of the fragment contains '{' */
    size_t fragment_size;
    xs_rule_dir inject_dir;
    unsigned long ms;
} xs_action;

/* What a match needs of the stanza's own name for it to be worth evaluating at all (see
 * xs_xpath_rw.root_local): most rules start with /message, /iq or /stream:features, and most
 * stanzas are then decided without copying them. */
typedef struct xs_root_filter {
    char *local; /* NULL: no filter */
    int ns;      /* URI index, or -1 for the stream's content namespace */
} xs_root_filter;

typedef struct xs_rule {
    char *name;
    xs_rule_dir dir;
    unsigned line;
    unsigned builtin; /* XS_REWRITE_* bit, 0 for a rule of the file */
    xmlXPathCompExpr **matches;
    char **match_src;
    xs_root_filter *filters;
    size_t n_matches;
    xs_action *actions;
    char **action_src;
    size_t n_actions;
    unsigned long hits;
} xs_rule;

struct xs_rules {
    unsigned refs;
    char *filename;
    xs_rule *rules;
    size_t n_rules, n_builtin;
    char **uris; /* the URI table the compiled XPaths refer to (xs-N) */
    size_t n_uris;
    xs_rules_ns *decls; /* the file's namespace declarations, for listings */
    size_t n_decls;
    /* Scratch for xs_rules_apply(): an XPath context with the URI table registered, and PCRE2's
     * match context with limits. */
    xmlXPathContext *xpath;
    pcre2_match_context *mctx;
};

/* Creates set->xpath and set->mctx once set->uris is complete. */
int xs_rules_prepare(xs_rules *set);

/* Frees a set whatever its state of construction. */
void xs_rules_free(xs_rules *set);

/* Bounce conditions of RFC 6120 section 8.3.3 and their recommended error types. */
const char *xs_bounce_type(const char *condition);

#endif
