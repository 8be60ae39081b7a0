/* The rule set: the compiled form of rules, its names, its scratch objects, its readers and its
 * free. See rule_set.h. The compiler (rules_parse.c) and the engine (rules.c) both use this file
 * and neither calls the other. */
#include "filters/rule_set.h"
#include "filters/rules_impl.h"

#include "inspect/alloc.h"
#include "inspect/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/xpathInternals.h>

/* ---- names ----------------------------------------------------------------------------------- */

static const char *const act_names[] = {
    [XS_ACT_DROP] = "drop",         [XS_ACT_BOUNCE] = "bounce",
    [XS_ACT_SET_ATTR] = "set-attr", [XS_ACT_REMOVE_ATTR] = "remove-attr",
    [XS_ACT_SET_TEXT] = "set-text", [XS_ACT_REPLACE_TEXT] = "replace-text",
    [XS_ACT_REMOVE] = "remove",     [XS_ACT_INSERT] = "insert",
    [XS_ACT_INJECT] = "inject",     [XS_ACT_DELAY] = "delay",
    [XS_ACT_TAG] = "tag",           [XS_ACT_PASS] = "pass",
};

_Static_assert(sizeof(act_names) / sizeof(act_names[0]) == XS_ACT_N, "a name for every action");

const char *xs_act_name(xs_act_kind kind)
{
    return (size_t)kind < XS_ACT_N ? act_names[kind] : "unknown";
}

const char *xs_rule_dir_name(xs_rule_dir dir)
{
    switch (dir) {
    case XS_RULE_C2S:
        return "c2s";
    case XS_RULE_S2C:
        return "s2c";
    case XS_RULE_ANY:
        break;
    }
    return "any";
}

/* ---- building and freeing -------------------------------------------------------------------- */

/* PCRE2's memory limit per match (the default is 20 MB). Time is bounded by the stanza's regex
 * budget instead (see xs_apply_regex_step() in rules_actions.c). */
#define REGEX_HEAP_LIMIT_KB 8192u

static void ignore_xpath_error(void *user, xmlError *error)
{
    (void)user;
    (void)error;
}

/* The index of the stanza (local, ns) in set->roots, added when new; RULE_ANY_ROOT when the
 * table is full. */
static int root_index(xs_rules *set, const char *local, int ns)
{
    for (size_t k = 0; k < set->n_roots; k++)
        if (set->roots[k].ns == ns && strcmp(set->roots[k].local, local) == 0)
            return (int)k;
    if (set->n_roots == XS_RULES_MAX_ROOTS)
        return RULE_ANY_ROOT;
    set->roots[set->n_roots] = (xs_rule_root){local, ns};
    return (int)set->n_roots++;
}

/* Sorts the rules by the stanza their matches need (see rule_may_match() in rules.c). */
static void sort_by_root(xs_rules *set)
{
    set->n_roots = 0;
    for (size_t i = 0; i < set->n_rules; i++) {
        xs_rule *r = &set->rules[i];
        r->root = RULE_ANY_ROOT;
        for (size_t m = 0; m < r->n_matches; m++) {
            const xs_xpath *f = &r->matches[m];
            if (f->root_local == NULL)
                continue;
            if (r->root == RULE_ANY_ROOT) {
                r->root = root_index(set, f->root_local, f->root_ns);
                if (r->root == RULE_ANY_ROOT)
                    break; /* the table is full: the rule is tried on every stanza */
            } else if (strcmp(set->roots[r->root].local, f->root_local) != 0 ||
                       set->roots[r->root].ns != f->root_ns) {
                /* Two names for the one stanza element: unless both namespaces are the same
                 * URI, nothing matches; rule_may_match() decides on the stanza. */
                r->root = RULE_ANY_ROOT;
                break;
            }
        }
    }
}

int xs_rules_prepare(xs_rules *set)
{
    sort_by_root(set);
    set->xpath = xmlXPathNewContext(NULL);
    set->shell = xmlNewDoc(BAD_CAST "1.0");
    set->mctx = pcre2_match_context_create(NULL);
    /* Only whether a regex matches is asked with it (see act_replace_text()). */
    set->mdata = pcre2_match_data_create(1, NULL);
    set->selected = xs_malloc((XS_RULES_MAX_NODES + 1) * sizeof(*set->selected));
    set->texts = xs_malloc(XS_RULES_MAX_NODES * sizeof(*set->texts));
    if (set->xpath == NULL || set->shell == NULL || set->mctx == NULL || set->mdata == NULL ||
        set->selected == NULL || set->texts == NULL)
        return XS_ENOMEM;
    /* Errors are read from lastError, not printed. */
    set->xpath->error = ignore_xpath_error;
    pcre2_set_heap_limit(set->mctx, REGEX_HEAP_LIMIT_KB);
    for (size_t i = 0; i < set->n_uris; i++) {
        char pfx[32];
        snprintf(pfx, sizeof(pfx), XS_XPATH_NS_PREFIX "%zu", i);
        if (xmlXPathRegisterNs(set->xpath, BAD_CAST pfx, BAD_CAST set->uris[i]) != 0)
            return XS_ENOMEM;
    }
    return 0;
}

xs_rules *xs_rules_ref(xs_rules *rules)
{
    if (rules != NULL)
        rules->refs++;
    return rules;
}

void xs_rules_unref(xs_rules *rules)
{
    if (rules == NULL)
        return;
    if (--rules->refs == 0)
        xs_rules_free(rules);
}

size_t xs_rules_count(const xs_rules *rules)
{
    return rules->n_rules;
}

size_t xs_rules_count_file(const xs_rules *rules)
{
    return rules->n_rules - rules->n_builtin;
}

int xs_rules_info(const xs_rules *rules, size_t i, xs_rule_info *info)
{
    if (i >= rules->n_rules)
        return XS_EINVAL;
    const xs_rule *r = &rules->rules[i];
    info->name = r->name;
    info->direction = r->dir;
    info->file = r->builtin ? "<builtin>" : rules->filename;
    info->line = r->line;
    info->builtin = r->builtin;
    info->hits = r->hits;
    info->n_matches = r->n_matches;
    info->matches = (const char *const *)r->match_src;
    info->n_actions = r->n_actions;
    info->actions = (const char *const *)r->action_src;
    return 0;
}

size_t xs_rules_file_namespaces(const xs_rules *rules, const xs_rules_ns **decls)
{
    *decls = rules->decls;
    return rules->n_decls;
}

void xs_xpath_free(xs_xpath *x)
{
    if (x->comp != NULL)
        xmlXPathFreeCompExpr(x->comp);
    xs_qx_free(x->quick);
    xs_free(x->root_local);
    memset(x, 0, sizeof(*x));
}

void xs_action_free(xs_action *a)
{
    xs_xpath_free(&a->target);
    xs_free(a->attr_local);
    xs_free(a->attr_prefix);
    xs_free(a->attr_uri);
    xs_free(a->value);
    if (a->re != NULL)
        pcre2_code_free(a->re);
    if (a->fragment != NULL)
        xmlFreeDoc(a->fragment);
    memset(a, 0, sizeof(*a));
}

void xs_rule_free(xs_rule *r)
{
    xs_free(r->name);
    for (size_t i = 0; i < r->n_matches; i++) {
        xs_xpath_free(&r->matches[i]);
        xs_free(r->match_src[i]);
    }
    xs_free(r->matches);
    xs_free(r->match_src);
    for (size_t i = 0; i < r->n_actions; i++) {
        xs_action_free(&r->actions[i]);
        xs_free(r->action_src[i]);
    }
    xs_free(r->actions);
    xs_free(r->action_src);
    memset(r, 0, sizeof(*r));
}

void xs_rules_free(xs_rules *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n_rules; i++)
        xs_rule_free(&set->rules[i]);
    xs_free(set->rules);
    for (size_t i = 0; i < set->n_uris; i++)
        xs_free(set->uris[i]);
    xs_free(set->uris);
    for (size_t i = 0; i < set->n_decls; i++) {
        xs_free((char *)set->decls[i].prefix);
        xs_free((char *)set->decls[i].uri);
    }
    xs_free(set->decls);
    if (set->xpath != NULL)
        xmlXPathFreeContext(set->xpath);
    xs_free(set->stanza_ns);
    if (set->shell != NULL) {
        /* It never keeps a lent stanza; make sure freeing it cannot reach one. */
        set->shell->children = set->shell->last = NULL;
        xmlFreeDoc(set->shell);
    }
    if (set->mctx != NULL)
        pcre2_match_context_free(set->mctx);
    if (set->mdata != NULL)
        pcre2_match_data_free(set->mdata);
    xs_free(set->selected);
    xs_free(set->texts);
    xs_free(set->filename);
    xs_free(set);
}
