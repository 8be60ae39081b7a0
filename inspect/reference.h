/* The reference-library switch.
 *
 * Beside the libraries it builds on, xmppscope has fast paths of its own: the well-formedness
 * check and tree builder of inspect/wf.c beside libxml2's parser, and the quick XPath evaluator
 * of filters/xpath_ns.c beside libxml2's. They are fuzzed against the libraries; this switch turns
 * them off, so a whole test suite (or a user who suspects a fast path) can run on the reference
 * libraries alone and compare. It is the environment variable XS_REFERENCE: set and not "0", the
 * parser gives every stanza to libxml2 and the rules use libxml2's XPath on a copy of every
 * stanza. Each parser and rule set reads it once, when it is created. */
#ifndef XS_INSPECT_REFERENCE_H
#define XS_INSPECT_REFERENCE_H

#include <stdbool.h>

#define XS_REFERENCE_ENV "XS_REFERENCE"

/* True when XS_REFERENCE asks for the reference libraries alone. */
bool xs_reference_mode(void);

#endif
