/* Explanations (--explain): what each event of a session is and why it is there, in plain words.
 *
 * An analyser observer (observer.h): its `annotate` callback adds to each parser event one or a
 * few lines (xs_annot_explain()) saying what the stream header, feature, STARTTLS or SASL step,
 * stanza, payload namespace or error condition is, with the section of the RFC or XEP that
 * defines it and a link. The printers show them under the event ("  ? ...") and as JSON
 * "explain".
 *
 * The words are data, not code: one catalog per language (inspect/explain/en.txt, zh.txt), a
 * text file a translator reads and edits, embedded in the binary at build time
 * (inspect/explain/embed.cmake). Each entry has a key, a text with placeholders, and optionally
 * the reference and link. The explainer computes the lines from the MASKED event (ev->masked):
 * the SASL lines show user names, nonces, salts and iteration counts, never a password, a proof or
 * a signature, even with --show-secrets.
 *
 * Cost: nothing runs unless the observer is registered (the commands add it for --explain only).
 */
#ifndef XS_INSPECT_EXPLAIN_H
#define XS_INSPECT_EXPLAIN_H

#include <stddef.h>

#include "inspect/observer.h"

/* The languages of the catalogs. */
typedef enum xs_lang {
    XS_LANG_EN,
    XS_LANG_ZH,
} xs_lang;
#define XS_LANG_COUNT 2

/* Parses a --lang value: "en" or "zh". Returns 0 and sets *out, or XS_EINVAL. */
int xs_lang_parse(const char *name, xs_lang *out);

/* The name of a language, as xs_lang_parse() reads it. */
const char *xs_lang_name(xs_lang lang);

/* The language of the environment: the first of LC_ALL, LC_MESSAGES and LANG that is set and not
 * empty (POSIX's order); one starting with "zh" gives XS_LANG_ZH, anything else XS_LANG_EN. It
 * reads the variables only: it never calls setlocale(), so numbers keep their '.'. */
xs_lang xs_lang_from_env(void);

/* ---- the catalog ----------------------------------------------------------------------------- */

typedef struct xs_catalog xs_catalog;

/* One entry. Strings belong to the catalog. ref and link are NULL when the entry has none. */
typedef struct xs_catalog_entry {
    const char *key;
    const char *text; /* may hold placeholders: {name} (given by the code) or {@attr} */
    const char *ref;  /* "RFC 6120 §4.2" */
    const char *link; /* "https://www.rfc-editor.org/rfc/rfc6120#section-4.2" */
    unsigned line;    /* where it starts in its file */
} xs_catalog_entry;

/* Parses a catalog (the format is described at the top of inspect/explain/en.txt). Returns 0 and
 * sets *out, XS_ENOMEM, or XS_EPARSE with "LINE: what is wrong" in err (cap bytes). Free with
 * xs_catalog_free(). */
int xs_catalog_parse(const char *text, size_t len, xs_catalog **out, char *err, size_t cap);

/* The catalog embedded in the binary for `lang`, parsed; as xs_catalog_parse(). */
int xs_catalog_builtin(xs_lang lang, xs_catalog **out, char *err, size_t cap);

/* The text of the catalog embedded for `lang` (NUL-terminated), and its length in *len. */
const char *xs_catalog_builtin_text(xs_lang lang, size_t *len);

void xs_catalog_free(xs_catalog *c);

/* The number of entries, and the i-th in key order. */
size_t xs_catalog_count(const xs_catalog *c);
const xs_catalog_entry *xs_catalog_at(const xs_catalog *c, size_t i);

/* The entry of `key`, or NULL. */
const xs_catalog_entry *xs_catalog_find(const xs_catalog *c, const char *key);

/* Copies the placeholders of `text` ("{user}", "{@to}"), sorted and each once, separated by
 * spaces, into out (cap bytes, cut when longer): the test that both languages use the same. */
void xs_catalog_placeholders(const char *text, char *out, size_t cap);

/* ---- the explainer --------------------------------------------------------------------------- */

typedef struct xs_explainer xs_explainer;

/* Makes an explainer speaking `lang`. Returns 0 and sets *out, XS_ENOMEM, or XS_EPARSE when the
 * embedded catalog is broken (a build error; err says where). Free with xs_explainer_free() after
 * the last event. */
int xs_explainer_new(xs_lang lang, xs_explainer **out, char *err, size_t cap);
void xs_explainer_free(xs_explainer *x);

/* The observer (annotate only; it needs the stanzas' trees). Shared by every session of a proxy:
 * what it remembers of a session (the SASL mechanism chosen) is keyed by meta->session and
 * forgotten at its XS_OBS_CLOSED. x must outlive the observer. */
xs_observer xs_explainer_observer(xs_explainer *x);

/* The annotate callback itself, for tests: adds the lines of ev to *annot. */
void xs_explain_annotate(void *x, const xs_obs_event *ev, xs_annot *annot);

#endif
