/* The rule set: the compiled form of rules, owned by this module. The compiler (rules_parse.c,
 * rules_compile.c) builds a set and hands it to xs_rules_prepare(); the engine (rules.c,
 * rules_actions.c) applies it; readers (xs_rules_info() and the like, rules.h) list it;
 * xs_rules_unref() frees it here. So compile -> set <- apply: neither the compiler nor the
 * engine calls the other. Not for use outside filters/ (and the tests of the engine). */
#ifndef XS_FILTERS_RULE_SET_H
#define XS_FILTERS_RULE_SET_H

#include <stdbool.h>
#include <stddef.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <pcre2.h>

#include "filters/rules.h"

/* The quick form of an XPath (xpath_compile.c, xpath_ns.c, rules_impl.h). */
typedef struct xs_qx xs_qx;

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

/* The number of action kinds (the last is XS_ACT_PASS). */
#define XS_ACT_N (XS_ACT_PASS + 1)

/* The name of an action as written after `then` ("drop", "set-attr", ...), static. */
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

/* Sorts the rules of `set` by the stanza their matches need and creates the scratch objects
 * xs_rules_apply() uses, once set->uris is complete (the compiler's last step). Returns 0 or
 * XS_ENOMEM; the set is then freed with xs_rules_free() as it is. */
int xs_rules_prepare(xs_rules *set);

/* Free what they hold and zero them, whatever their state of construction (the compiler frees a
 * half-built rule, action or XPath with them). */
void xs_xpath_free(xs_xpath *x);
void xs_action_free(xs_action *a);
void xs_rule_free(xs_rule *r);

/* Frees a set whatever its state of construction (xs_rules_unref() calls it for the last
 * reference). */
void xs_rules_free(xs_rules *set);

#endif
