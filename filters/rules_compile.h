/* Internals of the rules-file compiler shared by its two files: the reader (rules_parse.c:
 * lines, words, declarations, rules, errors) and the compiler of a line's arguments
 * (rules_compile.c: XPaths, regexes, fragments, actions). Not for use outside those two files. */
#ifndef XS_FILTERS_RULES_COMPILE_H
#define XS_FILTERS_RULES_COMPILE_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "filters/rule_set.h"
#include "filters/rules_impl.h"
#include "inspect/fragment.h"

/* The compiler's state while it reads one text. */
typedef struct xs_rules_pstate {
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
} xs_rules_pstate;

typedef struct xs_rules_word {
    char *s; /* unescaped, NUL-terminated, in the line's scratch buffer */
    size_t len;
    size_t off; /* byte offset of its first character (the quote, if quoted) in the line */
    bool quoted;
} xs_rules_word;

/* The column offset of byte `k` of a word's unescaped text, as a byte offset in the line
 * (escapes before it make it approximate). */
static inline size_t xs_rules_word_off(const xs_rules_word *w, size_t k)
{
    return w->off + (w->quoted ? 1 : 0) + k;
}

static inline bool xs_rules_word_is(const xs_rules_word *w, const char *s)
{
    return !w->quoted && strcmp(w->s, s) == 0;
}

/* ---- the reader (rules_parse.c) ------------------------------------------------------------- */

/* Reports an error at byte offset `off` of the current line; only the first of a line counts. */
void xs_rules_err_at(xs_rules_pstate *ps, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Whether `n` bytes at `s` make a tag label: 1 to 128 bytes without control characters. */
bool xs_rules_label_ok(const char *s, size_t n);

/* A malloc'd copy of a word's text; NULL (and ps->oom) when out of memory. */
char *xs_rules_dup_word(xs_rules_pstate *ps, const xs_rules_word *w);

/* The URI the prefix `p` (`n` bytes) has in the text being read, or NULL when unknown. */
const char *xs_rules_prefix_uri(xs_rules_pstate *ps, const char *p, size_t n);

/* An xs_xpath_resolve for xs_xpath_rewrite(), with the state as `user`. */
int xs_rules_resolve_prefix(void *user, const char *prefix, size_t len);

/* Lists the declarations that fragments are parsed in (ps->frag_decls). 0 or XS_ENOMEM. */
int xs_rules_frag_decls(xs_rules_pstate *ps);

/* ---- compiling a line's arguments (rules_compile.c) ----------------------------------------- */

/* Compiles the XPath `src` found at byte `off` of the line (unescaped, as in a quoted word when
 * `quoted`) into *out (zeroed when it fails). With `nodes`, it must select nodes (an action's
 * target). Returns false on an error (reported) or out of memory (ps->oom). */
bool xs_rules_compile_xpath(xs_rules_pstate *ps, const char *src, size_t len, size_t off,
                            bool nodes, const char *what, xs_xpath *out);

/* Compiles `then ACTION ARGS` (w[0] is "then") into *a, which the caller frees with
 * xs_action_free() in every case. Returns false after an error (reported) or out of memory. */
bool xs_rules_compile_action(xs_rules_pstate *ps, xs_rules_word *w, int nw, xs_action *a);

#endif
