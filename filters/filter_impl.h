/* The compiled form of a filter, shared by its compiler (filter.c) and its evaluator
 * (filter_eval.c). Not for use outside filters/filter*.c (and the tests of the filter). */
#ifndef XS_FILTERS_FILTER_IMPL_H
#define XS_FILTERS_FILTER_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#include "filters/filter.h"
#include "filters/rules.h"

typedef enum xs_fkind {
    XS_F_AND,
    XS_F_OR,
    XS_F_NOT,
    XS_F_MESSAGE,
    XS_F_PRESENCE,
    XS_F_IQ,
    XS_F_CHECK, /* value NULL: any check */
    XS_F_TYPE,
    XS_F_FROM,
    XS_F_TO,
    XS_F_JID,
    XS_F_NS,
    XS_F_DIR,
    XS_F_SESSION,
    XS_F_ID,
    XS_F_TEXT,
    XS_F_TAG,
    XS_F_XPATH,
} xs_fkind;

/* One node: an operator (a, b: indexes of its operands; b unused for not) or an atom. */
typedef struct xs_fnode {
    xs_fkind kind;
    int a, b;
    char *value; /* the atom's value, unescaped, NUL-terminated (ns: the URI); NULL for words */
    size_t len;
    /* JID atoms: the length of the bare part, and whether the value has a resource. */
    size_t bare_len;
    bool full;
    /* text: the value with ASCII letters lowered, and its Knuth-Morris-Pratt failure table. */
    size_t *kmp;
    /* xpath: a set of one rule matching the expression; dir: 1 c2s, 2 s2c. */
    xs_rules *rules;
    int dir;
} xs_fnode;

struct xs_filter {
    xs_fnode *nodes;
    size_t n, cap;
    int root;
    bool needs_tree;
    size_t n_xpath;
};

/* The tree of the stanza of oe (an XS_OBS_PARSED stanza event): with as_shown, the masked copy's
 * when secrets were masked; else (or without as_shown) the parser's, else one parsed from its
 * bytes (inspect/fragment.h), which *doc then holds for the caller to free with xmlFreeDoc()
 * (NULL otherwise). NULL when there is none: a stanza masked whole, bytes that do not parse on
 * their own, no memory. */
const xmlNode *xs_filter_stanza_tree(const xs_obs_event *oe, bool as_shown, xmlDoc **doc);

/* The names of the keys as written (for messages and the normalised form). */
const char *xs_filter_key_name(xs_fkind kind);

#endif
