/* The rule language: compiled rule sets that drop, bounce, rewrite, delay, tag stanzas and inject
 * new ones.
 *
 * A rules file (UTF-8, one directive a line, `#` starts a comment at the start of a line or
 * after a blank outside quotes):
 *
 *     namespace cs http://jabber.org/protocol/chatstates
 *
 *     rule "no typing notifications"
 *         direction c2s                      # c2s, s2c or any (the default)
 *         match /message[cs:composing or cs:paused]
 *         then drop
 *     end
 *
 * - `namespace PREFIX URI` binds a prefix for the whole file (also for rules above it). Most
 *   files need none: the built-in table (xs_rules_builtin_namespaces(), `xmppscope rules
 *   namespaces`) binds client, server, stream, sasl, sasl2, tls, bind, session, roster,
 *   disco-info, disco-items, muc, cs/chatstates, receipts, sm, carbons, mam, ping, delay,
 *   pubsub, vcard, version, csi and more. A file may rebind a built-in prefix.
 * - `match XPATH` takes the rest of the line: an XPath 1.0 expression evaluated with the stanza
 *   as the root element of a document of its own (`/message/body`, `/stream:features/sm:sm`) and
 *   as the context node (`body`). It matches when its value is true as by XPath's boolean():
 *   a non-empty node-set, a non-zero number, a non-empty string. A rule's matches must all match.
 *   Unprefixed element names mean the stream's content namespace (jabber:client or
 *   jabber:server: the default namespace the stream element declares), so `/message` matches a
 *   message and `/auth` does not match SASL's <auth/> (write `/sasl:auth`). Attribute names are
 *   unprefixed as in XML. Variables and functions beyond XPath 1.0's core library are refused.
 * - `then ACTION ARGS...` actions run in order. Arguments are words or "double-quoted strings"
 *   in which \" and \\ are escapes and any other backslash is kept (so "\d{4}" is a regex).
 *   XPATH arguments with blanks must be quoted.
 *     drop                          the stanza is not forwarded
 *     bounce [CONDITION [TYPE]]     not forwarded; the sender gets an RFC 6120 section 8.3 error
 *                                   (same name and id, from/to swapped, default
 *                                   service-unavailable). An error, a result, or an element that
 *                                   is not a message, presence or iq is dropped instead.
 *     set-attr XPATH NAME VALUE     on each selected element (NAME may be prefix:name)
 *     remove-attr XPATH NAME
 *     set-text XPATH TEXT           an element's children become TEXT; an attribute or text
 *                                   node gets TEXT as its value
 *     replace-text XPATH REGEX REPLACEMENT
 *                                   PCRE2 (UTF-8, Unicode properties), every match of every text
 *                                   node under the selected nodes; $1, ${name}, $$ in REPLACEMENT
 *     remove XPATH                  selected elements, attributes, text (never the stanza itself)
 *     insert XPATH XML-FRAGMENT     appended as last children of each selected element
 *     inject c2s|s2c XML-STANZA     a new stanza sent in that direction after this one
 *     delay MILLISECONDS            hold the stanza (the direction's order is kept)
 *     tag LABEL                     a label for the log
 *     pass                          try no later rule
 *   drop and bounce decide the stanza's fate: the rest of that rule's actions still run (a tag
 *   or an inject after them applies) and no later rule is tried. Later rules see the stanza as
 *   earlier rules rewrote it. VALUE, TEXT, REPLACEMENT and the text and attribute values of
 *   fragments may use {from}, {to}, {id} (attributes of the stanza as it arrived; empty when
 *   absent) and {session} (xs_rule_ctx.session). In fragments unprefixed elements are in the
 *   stream's content namespace; prefixes are the file's.
 *
 * Limits, so that a hostile file or stanza costs bounded time and memory: a file is at most
 * XS_RULES_MAX_FILE bytes, a line XS_RULES_MAX_LINE bytes, a set XS_RULES_MAX_RULES rules;
 * an action changes at most XS_RULES_MAX_NODES nodes; the rewrites of one stanza may add at most
 * XS_RULES_MAX_GROWTH bytes; an XPath evaluation has an operation limit. A limit hit while
 * applying is reported in xs_rule_result.error and the stanza goes on with what was done until
 * then, except for the regex budget: all replace-text matches of a stanza, of every rule, share
 * XS_RULES_REGEX_STEPS + XS_RULES_REGEX_STEPS_PER_BYTE * (its size) steps, and when they use it up
 * no later action or rule runs and the stanza passes unchanged: the result is as if no rule had
 * applied (verdict unchanged, no rewrite, drop, bounce, inject, delay or tag), but for
 * rules_matched and the error 'rule "NAME": replace-text: the regex budget of this stanza was used
 * up (N steps); the stanza passes unchanged'. A stanza is forwarded whole or as the rules
 * rewrote it all, never as far as a budget let them.
 *
 * Threads: a set is compiled once and then only read, except for its hit counters and the scratch
 * objects xs_rules_apply() uses (an XPath context, a shell document the stanza is lent to); so
 * one thread (the proxy's loop) applies a given set.
 */
#ifndef XS_FILTERS_RULES_H
#define XS_FILTERS_RULES_H

#include <stddef.h>

#include "inspect/parser.h"

#define XS_RULES_MAX_FILE (1024u * 1024u)
#define XS_RULES_MAX_LINE 16384u
#define XS_RULES_MAX_RULES 1024u
#define XS_RULES_MAX_MATCHES 32u     /* match lines of one rule */
#define XS_RULES_MAX_ACTIONS 64u     /* then lines of one rule */
#define XS_RULES_MAX_ERRORS 100u     /* errors kept by a xs_rule_diag; more are counted */
#define XS_RULES_MAX_NODES 1024u     /* nodes one action changes in one stanza */
#define XS_RULES_MAX_GROWTH 1048576u /* bytes the rewrites of one stanza may add */
#define XS_RULES_MAX_DELAY_MS 600000u
#define XS_RULES_MAX_APPLIED 256u /* entries of xs_rule_result.applied; more are counted */
/* The regex budget of one stanza: steps (an item tried, or a character the subject position moved
 * by) that all replace-text matches of all rules may take together, this many plus so many per
 * byte of the stanza. */
#define XS_RULES_REGEX_STEPS 1000000ul
#define XS_RULES_REGEX_STEPS_PER_BYTE 16ul

typedef struct xs_rules xs_rules;

/* Where a stanza is going. A rule's direction is one of the three; a stanza's is C2S or S2C. */
typedef enum xs_rule_dir {
    XS_RULE_ANY = 0,
    XS_RULE_C2S = 1, /* from the client to the server */
    XS_RULE_S2C = 2, /* from the server to the client */
} xs_rule_dir;

const char *xs_rule_dir_name(xs_rule_dir dir); /* "any", "c2s", "s2c" */

/* ---- compiling ------------------------------------------------------------------------------- */

/* One error found in a rules file. */
typedef struct xs_rule_error {
    unsigned line;    /* 1-based; 0 when about the whole file (too big, unreadable) */
    unsigned column;  /* 1-based, in characters (UTF-8 code points); 0 with line 0 */
    char *message;    /* "FILE:LINE:COL: text" (or "FILE: text"), malloc'd, no newline */
    const char *text; /* the part of message after the position */
} xs_rule_error;

/* Errors of a compilation, sorted by position. Zero it before use; xs_rule_diag_clear() frees
 * what it holds and may be called on a zeroed one. */
typedef struct xs_rule_diag {
    xs_rule_error *errors;
    size_t n, cap;
    size_t omitted; /* errors beyond XS_RULES_MAX_ERRORS, not kept */
} xs_rule_diag;

void xs_rule_diag_clear(xs_rule_diag *diag);

/* Compiles a rules file held in memory (`len` bytes, no NUL needed). `filename` names it in the
 * messages. `builtin` selects built-in rules by their XS_REWRITE_* bit (filters/features.h): they
 * come first in the set, before the file's rules, and their names are reserved. On success
 * returns 0 and sets *out to a set with one reference (release with xs_rules_unref()). When the
 * text has errors, returns XS_EPARSE, leaves *out NULL and appends every error to `diag` (may be
 * NULL). XS_ETOOBIG (an error at line 0) when `len` is over XS_RULES_MAX_FILE; XS_ENOMEM when
 * out of memory. */
int xs_rules_parse(const char *text, size_t len, const char *filename, unsigned builtin,
                   xs_rules **out, xs_rule_diag *diag);

/* Reads `path` and compiles it as xs_rules_parse() does. A file that cannot be read or is larger
 * than XS_RULES_MAX_FILE is an error at line 0 (XS_EIO, XS_ETOOBIG). */
int xs_rules_load(const char *path, unsigned builtin, xs_rules **out, xs_rule_diag *diag);

/* The built-in rules selected by `builtin` alone, as a set (see xs_rules_parse()):
 *   "sasl-plus"        (XS_REWRITE_SASL_PLUS) removes SASL and SASL2 mechanisms ending in -PLUS
 *                      from the server's stream features and tags channel-binding-offered;
 *   "channel-binding"  (XS_REWRITE_CHANNEL_BINDING) removes XEP-0440 <sasl-channel-binding/>
 *                      and tags channel-binding-offered;
 *   "compression"      (XEP-0138, XS_REWRITE_COMPRESSION) removes <compression/>;
 *   "starttls"         (XS_REWRITE_STARTTLS) removes <starttls/>, for a client leg the proxy
 *                      secured itself.
 * They are xs_rules_builtin_text() compiled, and act on s2c <stream:features/> only. */
int xs_rules_builtin(unsigned builtin, xs_rules **out);

/* The source of the built-in rule of one XS_REWRITE_* bit (a static string), or NULL. */
const char *xs_rules_builtin_text(unsigned bit);

/* The built-in namespace table. Entries are static; the last has prefix NULL. */
typedef struct xs_rules_ns {
    const char *prefix;
    const char *uri;
} xs_rules_ns;

const xs_rules_ns *xs_rules_builtin_namespaces(void);

/* Sets are reference counted: the proxy holds one reference and swaps in a new set on SIGHUP;
 * the old one goes when its last holder lets go. Nothing that xs_rules_apply() returns points
 * into a set, so a result may outlive it (a delayed stanza). ref returns its argument; unref of
 * NULL does nothing. */
xs_rules *xs_rules_ref(xs_rules *rules);
void xs_rules_unref(xs_rules *rules);

/* ---- reading a set --------------------------------------------------------------------------- */

/* What xs_rules_info() tells about rule i. Strings and arrays belong to the set. */
typedef struct xs_rule_info {
    const char *name;
    xs_rule_dir direction;
    const char *file;   /* the file it comes from, "<builtin>" for a built-in rule */
    unsigned line;      /* of its `rule` line */
    unsigned builtin;   /* its XS_REWRITE_* bit; 0 for a rule of a file */
    unsigned long hits; /* stanzas it matched since the set was compiled */
    size_t n_matches;
    const char *const *matches; /* each XPath as written */
    size_t n_actions;
    const char *const *actions; /* each action as written after `then` */
} xs_rule_info;

size_t xs_rules_count(const xs_rules *rules);
size_t xs_rules_count_file(const xs_rules *rules); /* rules that came from the file */

/* Fills *info for rule i (0-based, in the order rules are tried). Returns 0, or XS_EINVAL when
 * i is out of range. */
int xs_rules_info(const xs_rules *rules, size_t i, xs_rule_info *info);

/* The namespace declarations of the file, in file order (for listings). */
size_t xs_rules_file_namespaces(const xs_rules *rules, const xs_rules_ns **decls);

/* ---- applying -------------------------------------------------------------------------------- */

enum {
    /* Fill before/after in each applied rewrite (costs a serialization per rewrite). */
    XS_RULE_EXPLAIN = 1u << 0,
};

/* The context of one stanza. */
typedef struct xs_rule_ctx {
    xs_rule_dir direction; /* XS_RULE_C2S or XS_RULE_S2C; XS_RULE_ANY when unknown (a raw
                            * capture read offline): only rules with `direction any` apply */
    const char *session;   /* for {session}, UTF-8 (control characters are left out); NULL: "" */
    unsigned builtin_off;  /* XS_REWRITE_* bits of built-in rules to skip for this stanza */
    unsigned flags;        /* XS_RULE_EXPLAIN */
} xs_rule_ctx;

typedef enum xs_rule_verdict {
    XS_VERDICT_UNCHANGED = 0, /* forward the original bytes (ev->raw) */
    XS_VERDICT_REWRITTEN,     /* forward xs_rule_result.xml instead */
    XS_VERDICT_DROP,          /* forward nothing */
    XS_VERDICT_BOUNCE,        /* forward nothing; send xs_rule_result.bounce back to the sender */
} xs_rule_verdict;

const char *xs_rule_verdict_name(xs_rule_verdict verdict); /* "unchanged", "rewritten", ... */

/* A stanza to send after this one. */
typedef struct xs_rule_inject {
    xs_rule_dir direction; /* C2S: to the server; S2C: to the client */
    char *xml;             /* serialized with its namespace declared, NUL-terminated */
    size_t len;
} xs_rule_inject;

/* One action that ran, for the console and the log. */
typedef struct xs_rule_applied {
    char *rule;         /* the rule's name */
    const char *action; /* static: "drop", "bounce", "set-attr", ... */
    /* Short text: "service-unavailable", "2 nodes", "s2c", "500 ms"; or NULL. It lives in the
     * allocation of `rule` (not freed on its own). */
    char *detail;
    unsigned nodes; /* nodes a rewrite changed (0: it changed nothing) */
    /* With XS_RULE_EXPLAIN, for a rewrite that changed nodes: the stanza before and after it. */
    char *before;
    char *after;
} xs_rule_applied;

/* Everything xs_rules_apply() decided. Every pointer is malloc'd and owned by the result until
 * xs_rule_result_clear(); nothing points into the rule set or the event. */
typedef struct xs_rule_result {
    xs_rule_verdict verdict;
    /* XS_VERDICT_REWRITTEN: the stanza to forward, NUL-terminated. It is meant for the stream it
     * came from: namespace declarations that the stream element already makes are not repeated,
     * any other is (so the bytes parse to the rewritten tree inside that stream). */
    char *xml;
    size_t len;
    /* XS_VERDICT_BOUNCE: the error stanza for the sender, with its namespace declared. */
    char *bounce;
    size_t bounce_len;
    xs_rule_inject *injects; /* in action order */
    size_t n_injects;
    unsigned long delay_ms; /* sum of the delays, at most XS_RULES_MAX_DELAY_MS */
    char **tags;            /* distinct labels in the order first tagged */
    size_t n_tags;
    xs_rule_applied *applied;
    size_t n_applied;
    size_t applied_omitted; /* entries beyond XS_RULES_MAX_APPLIED */
    unsigned rules_matched;
    /* The first problem met while applying (an XPath that failed to evaluate, a limit), or NULL;
     * the stanza still got what the other actions did. When the regex budget ran out, that note
     * and nothing else (see the limits above). The proxy and `inspect --rules` both show it as
     * a "warn" note "rules: " followed by this text. */
    char *error;
} xs_rule_result;

/* Runs the rules of `rules` for the depth-1 element of `ev` (an XS_EV_STANZA event with its tree:
 * a parser made with XS_PARSER_TREE; ev->node still attached to the stream element). Fills *res
 * (which need not be initialized; clear it with xs_rule_result_clear() afterwards, also after an
 * error). Rules are tried in order; an untouched stanza yields XS_VERDICT_UNCHANGED so that the
 * caller forwards the original bytes. Returns 0, XS_EINVAL (not a stanza event, no tree, a
 * direction other than C2S/S2C), or XS_ENOMEM (then the caller should forward the original).
 * The parser's tree is left as it was; during the call the stanza element's parent and sibling
 * pointers are lent to the set's shell document for a while (nothing else may read that tree
 * meanwhile). */
int xs_rules_apply(xs_rules *rules, const xs_rule_ctx *ctx, const xs_event *ev,
                   xs_rule_result *res);

void xs_rule_result_clear(xs_rule_result *res);

#endif
