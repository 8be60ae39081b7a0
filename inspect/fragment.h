/* The one way to parse a piece of XML (a stanza's bytes, a rule's fragment) in a namespace
 * context that is not in the bytes themselves.
 *
 * The bytes are parsed inside a wrapper element that makes the given namespace declarations, as
 * the stream element makes them for a stanza, so that the names resolve as they would in the
 * stream. The strictness is the same for every caller: no network, the bytes must be
 * well-formed and namespace-well-formed, and no comment, processing instruction, entity
 * reference or DTD may appear (RFC 6120 section 11). By default the content must be exactly one
 * element with nothing but blanks around it. */
#ifndef XS_INSPECT_FRAGMENT_H
#define XS_INSPECT_FRAGMENT_H

#include <stddef.h>

#include <libxml/tree.h>

#include "inspect/parser.h"

typedef enum xs_fragment_flags {
    /* Any content, elements and text, as long as there is some: the children of an element
     * rather than one element (a rule's insert). */
    XS_FRAGMENT_CONTENT = 1u << 0,
    /* CDATA sections come back as text nodes (for trees whose text is walked and copied). */
    XS_FRAGMENT_NOCDATA = 1u << 1,
} xs_fragment_flags;

/* The namespace context. */
typedef struct xs_fragment_ctx {
    const char *root;     /* the wrapper element's name (an ASCII XML name); NULL: "w" */
    const xs_attr *decls; /* declarations made on the wrapper, in order: prefix (NULL for the
                           * default namespace) and uri; entries with a NULL uri are skipped */
    size_t n_decls;
    unsigned flags; /* xs_fragment_flags */
} xs_fragment_ctx;

/* Why a fragment was refused. */
typedef struct xs_fragment_error {
    size_t off;        /* XS_ENOTWF: the byte of the fragment where libxml2 stopped (by the
                        * column of its first error; 0 when it gave none) */
    char message[200]; /* a sentence without a final period: libxml2's first error, or ours */
} xs_fragment_error;

/* Parses raw[0, len) in the context ctx. On success returns 0 and sets *doc (the caller frees it
 * with xmlFreeDoc()), whose root element is the wrapper, and *el: the one element, or with
 * XS_FRAGMENT_CONTENT the wrapper's first child. Otherwise *doc and *el are NULL and it returns
 * XS_ENOTWF (not well-formed or not namespace-well-formed: err->off and err->message say where
 * and why), XS_ERESTRICTED (a comment, processing instruction, entity reference or DTD),
 * XS_EBADFORMAT (no content at all, or not exactly one element with only blanks around it),
 * XS_ETOOBIG (past what libxml2 takes, INT_MAX bytes with the wrapper), XS_ENOMEM. err may be
 * NULL. */
int xs_fragment_parse(const xs_fragment_ctx *ctx, const char *raw, size_t len, xmlDoc **doc,
                      xmlNode **el, xs_fragment_error *err);

#endif
