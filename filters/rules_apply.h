/* Internals of the rule engine shared by its two files: rules.c (which rules a stanza meets,
 * their matches, the stanza they see, what is recorded) and rules_actions.c (what each action
 * does). Not for use outside those two files. */
#ifndef XS_FILTERS_RULES_APPLY_H
#define XS_FILTERS_RULES_APPLY_H

#include <stdbool.h>
#include <stddef.h>

#include "filters/rule_set.h"
#include "filters/rules_impl.h"

/* The regex work one stanza may cost, shared by every match of every rule (see
 * xs_apply_regex_step()). */
typedef struct xs_re_budget {
    unsigned long total; /* the stanza's budget, for the message */
    unsigned long left;
    size_t pos; /* subject position at the previous step */
    bool spent; /* used up: the stanza passes unchanged */
} xs_re_budget;

typedef struct xs_applying {
    xs_rules *set;
    const xs_rule_ctx *ctx;
    const xs_event *ev;
    xs_rule_result *res;
    const xs_rule *rule; /* the rule running */
    /* The stanza the rules see (see lend()): the parser's element until an action is about to
     * change it, then a copy of it in a document of its own. */
    xmlDoc *doc;   /* the copy, or NULL */
    xmlNode *root; /* the copy's root element, or the parser's element */
    bool lent;     /* the parser's element is lent to the set's shell document */
    xmlNode *lent_parent, *lent_prev, *lent_next; /* what it had before */
    bool want_copy;         /* an action stopped before its first change (xs_apply_need_copy()) */
    bool ns_bound;          /* XS_XPATH_STANZA_PREFIX is bound to content_ns */
    const char *content_ns; /* the stream's content namespace */
    xs_qx_env qenv;         /* for the quick evaluator */
    xmlChar *orig[3];       /* from, to, id of the stanza as it arrived (NULL until asked) */
    bool orig_read;
    size_t budget;   /* bytes the rewrites may still add */
    xs_re_budget re; /* the steps the stanza's regexes may still take */
    bool modified;   /* the copy differs from the original */
    bool decided;    /* drop or bounce ran */
    char *last_xml;  /* XS_RULE_EXPLAIN: the copy as last serialized */
    int err;         /* XS_ENOMEM once allocation failed */
} xs_applying;

/* ---- the engine (rules.c) ------------------------------------------------------------------- */

/* Notes the first error of the stanza in res->error ("rule "NAME": ..."). */
void xs_apply_note_error(xs_applying *ap, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Serializes `node` (of `doc`). With `stream`, namespace declarations on `node` that the stream
 * element already makes in the same way are left out. Returns a malloc'd string (and its length
 * in *len when not NULL), or NULL when out of memory. */
char *xs_apply_serialize(const xmlNode *stream, xmlDoc *doc, xmlNode *node, size_t *len);

/* Records an action that ran, with `detail` (copied; may be NULL). NULL when the list is full
 * or out of memory (ap->err). */
xs_rule_applied *xs_apply_add_applied(xs_applying *ap, xs_act_kind kind, unsigned nodes,
                                      const char *detail);

/* xs_apply_add_applied() with a formatted detail. */
xs_rule_applied *xs_apply_add_appliedf(xs_applying *ap, xs_act_kind kind, unsigned nodes,
                                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Records a rewrite that changed `nodes` nodes. */
void xs_apply_note_rewrite(xs_applying *ap, xs_act_kind kind, unsigned nodes);

/* Makes the copy the rules work on from now on. False when out of memory. */
bool xs_apply_ensure_copy(xs_applying *ap);

/* Called by an action right before its first change: true when the stanza is still the
 * parser's, and the action must stop changing nothing, to be run again on a copy. */
bool xs_apply_need_copy(xs_applying *ap);

/* The nodes an action's XPath selects, in document order (see rules.c). Returns the count (at
 * most XS_RULES_MAX_NODES) and *out (xs_free()), or 0. */
size_t xs_apply_select_nodes(xs_applying *ap, const xs_xpath *xp, bool not_root, xmlNode ***out);

/* ---- the actions (rules_actions.c) ---------------------------------------------------------- */

/* Whether `n` is in jabber:client or jabber:server. */
bool xs_apply_is_stanza_ns(const xmlNode *n);

/* The PCRE2 callout that charges the stanza's regex budget (`data` is its xs_re_budget). */
int xs_apply_regex_step(pcre2_callout_block *cb, void *data);

/* Runs one action. Returns true when no later rule should be tried. */
bool xs_apply_run_action(xs_applying *ap, const xs_action *a);

#endif
