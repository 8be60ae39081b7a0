/* The filter language: which events a person wants to see (`--filter`) or keep (`--write-filter`).
 *
 * An expression is atoms joined by `and`, `or`, `not` and parentheses; `not` binds tighter than
 * `and`, which binds tighter than `or`, and two atoms side by side mean `and` (as in a search
 * box: `jid:bob@example.test message` is `jid:bob@example.test and message`). The keywords are
 * case-insensitive. Atoms:
 *
 *   message, presence, iq   the stanza is one (in the stream's content namespace)
 *   type:X                  its type attribute is X; a message without one is type:normal, a
 *                           presence without one type:available
 *   from:JID, to:JID        its from / to is JID; a bare JID (no /resource) matches the bare JID
 *                           and every resource of it. The local part and domain compare without
 *                           regard to ASCII case, the resource exactly. A stanza a client sends
 *                           without `from` is from the JID the server bound for its session, one
 *                           without `to` is to that account (RFC 6120 §8.1.1.1, §8.1.2.1); the
 *                           other way round for the server's stanzas to the client.
 *   jid:JID                 from:JID or to:JID
 *   ns:URI, ns:PREFIX       the stanza or an element in it is in (or declares) namespace URI; a
 *                           word without ':' or '/' is a prefix of the rules' built-in table
 *                           (xs_rules_builtin_namespaces(): ns:sm, ns:roster, ns:disco-info, ...)
 *   dir:c2s, dir:s2c        the direction
 *   session:N               the session ("1"; offline, what the log says or the file name)
 *   id:ID                   its id attribute is ID
 *   text:WORDS              a text of the stanza (the body, or any element's text) contains WORDS;
 *                           ASCII letters compare without regard to case, anything else exactly
 *   tag:LABEL               a rule's `tag LABEL` action applied to it
 *   check, check:ID         an analyser flagged it with a check (any, or the one of that id)
 *   xpath:EXPR              the XPath 1.0 expression is true for the stanza, as a rule's `match`
 *                           (filters/rules.h: the same engine, the same prefix table)
 *
 * A value is a word (it ends at a blank or at a ')' that closes no '(' of its own) or a quoted
 * string "..." in which \" and \\ are escapes: text:"good morning", xpath:"/message[body]".
 *
 * Events other than stanzas (a stream opened or closed, a keepalive, TLS up, a note, the end of a
 * session, a tick with checks) are judged on the facts each atom asks about: such an event is no
 * message, presence or iq and has no type, id, namespace, text or tag; session:, dir: and check
 * ask what they ask of a stanza; the JID atoms ask about the JID the session is bound to, which
 * is unknown before the bind. `and`, `or` and `not` follow three-valued logic (Kleene's) over
 * that unknown, and the observer (filter_obs.h) passes such an event on only on a clear yes: with
 * `jid:bob@example.test` bob's session's notes show once it is bound, with `message` none does,
 * with `not presence` all do.
 *
 * Limits (a filter comes from a command line, which may be anything): XS_FILTER_MAX_LEN bytes,
 * XS_FILTER_MAX_DEPTH levels of parentheses and `not`, XS_FILTER_MAX_ATOMS atoms of which
 * XS_FILTER_MAX_XPATHS xpath: atoms. Evaluating costs time linear in the stanza's size (text: is
 * a Knuth-Morris-Pratt search, xpath: has the rules' operation limit) and allocates nothing for
 * the atoms but text: and xpath: on a stanza that came without a tree (its bytes are parsed then)
 * and xpath: (the rules engine).
 */
#ifndef XS_FILTERS_FILTER_H
#define XS_FILTERS_FILTER_H

#include <stddef.h>

#include "inspect/buf.h"
#include "inspect/observer.h"

#define XS_FILTER_MAX_LEN 4096u
#define XS_FILTER_MAX_DEPTH 32u
#define XS_FILTER_MAX_ATOMS 256u
#define XS_FILTER_MAX_XPATHS 16u
/* A JID is at most 3071 bytes (RFC 7622 §3.1). */
#define XS_FILTER_MAX_JID 3071u

typedef struct xs_filter xs_filter;

/* Why an expression was refused. */
typedef struct xs_filter_error {
    unsigned column;   /* 1-based, in characters (UTF-8 code points) of the expression */
    char message[320]; /* one line, no final period: what was found and what was expected */
} xs_filter_error;

/* Compiles the NUL-terminated expression `expr`. Returns 0 and sets *out (free it with
 * xs_filter_free()), XS_EPARSE with *err filled (err may be NULL) when the expression is wrong,
 * or XS_ENOMEM (err says so too). */
int xs_filter_parse(const char *expr, xs_filter **out, xs_filter_error *err);

void xs_filter_free(xs_filter *f);

/* Appends the expression in a normalised form to *out: every `and` written, parentheses only
 * where precedence needs them, ns: prefixes resolved to their URI, values quoted where a word
 * would not do. Parsing it again gives the same filter. Returns 0 or the buffer's error. */
int xs_filter_format(const xs_filter *f, xs_buf *out);

/* Whether some atom looks inside the stanza beyond its name and attributes (text:, xpath:).
 * Such an atom uses the event's tree, or parses the stanza's bytes when it came without one. */
int xs_filter_needs_tree(const xs_filter *f);

typedef enum xs_filter_answer {
    XS_FILTER_NO = 0,
    XS_FILTER_YES = 1,
    XS_FILTER_UNKNOWN = 2, /* only for events other than stanzas (see above) */
} xs_filter_answer;

/* Evaluates f for one observer event. `account` is the JID the session of the event is bound
 * to (the <bind/> result), or NULL when it is not known: it stands for a missing from or to
 * (see above) and is what the JID atoms compare for events other than stanzas. A stanza gets
 * XS_FILTER_YES or XS_FILTER_NO; any other event may also get XS_FILTER_UNKNOWN. f is not const:
 * an xpath: atom uses the scratch objects of its rule set (one thread evaluates a filter). */
xs_filter_answer xs_filter_eval(xs_filter *f, const xs_obs_event *ev, const char *account);

/* Whether the characters s[0, len) are a JID as the JID atoms take it: not empty, at most
 * XS_FILTER_MAX_JID bytes, no blank or control character, a domain part, and no empty local
 * part or resource where '@' or '/' says there is one. */
int xs_filter_jid_ok(const char *s, size_t len);

#endif
