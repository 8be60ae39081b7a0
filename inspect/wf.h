/* A fast, conservative well-formedness check of one complete depth-1 element (a stanza).
 *
 * The stream parser (parser.c) checks each stanza here before libxml2 sees it, at a fraction of
 * libxml2's cost, and builds its tree in the same pass when trees are wanted; libxml2 never sees
 * a stanza the check accepts. A stanza that arrives whole in one read is checked at once; one
 * cut between two reads waits for its end when its first part passes xs_wf_prefix(), and
 * otherwise goes to libxml2 as it arrives (so that a fault is found before its end). The
 * check only ever says "surely well-formed" or "not sure": it accepts a subset of XML 1.0 with
 * namespaces that covers what XMPP peers send, and hands everything else (a non-ASCII name, an
 * entity other than the five predefined, CDATA, a namespace undeclared, more than XS_WF_MAX_ATTRS
 * attributes, ...) back to libxml2, which then decides and reports the error with its position. So
 * an element it accepts is one libxml2 accepts too; the fuzz target fuzz_parser checks that the two
 * paths agree.
 *
 * Accepted:
 * - UTF-8 that is valid and made of XML Chars (no C0 controls but tab, LF and CR; no U+FFFE,
 *   U+FFFF; no surrogates);
 * - names of ASCII letters, digits, '_', '-', '.', starting with a letter or '_', with at most
 *   one ':' separating a non-empty prefix and local part; element names not starting with "xml";
 * - attributes NAME S? = S? 'VALUE' or "VALUE", separated by whitespace, pairwise distinct local
 *   names, values without '<';
 * - references &lt; &gt; &amp; &quot; &apos; &#N; &#xH; to an XML Char, in text and values;
 * - namespace declarations xmlns='URI' and xmlns:P='URI' with a non-empty URI made of ASCII
 *   URI characters (RFC 3986), not one of the two names XML reserves; of the xml: attributes
 *   only xml:lang;
 *   every prefix used (on elements and attributes; "xml" is bound) declared on the element, an
 *   ancestor in the stanza, or the stream header;
 * - end tags matching their start tag, optional whitespace before '>'; text without "]]>".
 */
#ifndef XS_INSPECT_WF_H
#define XS_INSPECT_WF_H

#include <stddef.h>

#include <libxml/tree.h>

#include "inspect/parser.h"

#define XS_WF_MAX_ATTRS 32 /* attributes (namespace declarations included) of one element */
#define XS_WF_MAX_NS 32    /* namespace declarations in scope within one stanza */
#define XS_WF_MAX_DEPTH 64 /* element depth within the stanza */
#define XS_WF_MAX_NAME 256 /* bytes of a qualified name */

/* A string of the checked bytes or of the stream's declarations (not NUL-terminated). */
typedef struct xs_wf_str {
    const char *p; /* NULL when absent */
    size_t n;
} xs_wf_str;

/* The stanza's root element, when the check accepted it: its name, and its attributes but for
 * namespace declarations. Attribute values are as written (references not replaced). */
typedef struct xs_wf_root {
    xs_wf_str name, prefix, ns;
    size_t n_attrs;
    struct {
        xs_wf_str name, prefix, ns, value;
    } attrs[XS_WF_MAX_ATTRS];
} xs_wf_root;

/* Checks the element in s[0, n) (its first byte '<', its last '>', nothing after it) in the
 * scope of the stream header's namespace declarations (`decls`, `default_ns` may be NULL).
 * Returns 1 when it is surely well-formed (and fills *root), 0 when not sure. */
int xs_wf_element(const char *s, size_t n, const xs_attr *decls, size_t n_decls,
                  const char *default_ns, xs_wf_root *root);

/* Checks the start of an element, s[0, n) (its first byte '<', its end not there yet), as
 * xs_wf_element() would the whole: returns 1 when every tag and text in it is surely
 * well-formed and the element still open, 0 when not sure. A tag not finished at the end is not
 * looked at (neither does libxml2 before its '>'); a text at the end is, as far as it goes, and
 * a character or reference cut at the end makes it "not sure". */
int xs_wf_prefix(const char *s, size_t n, const xs_attr *decls, size_t n_decls,
                 const char *default_ns);

/* How xs_wf_decode() treats what it copies. */
typedef enum xs_wf_decode_mode {
    XS_WF_TEXT,  /* character data as written: line ends become LF, references replaced */
    XS_WF_VALUE, /* an attribute value as written: also each whitespace character a space */
    XS_WF_REFS,  /* only references replaced (libxml2's attribute values, where a '&' of the
                  * value is written &#38;) */
} xs_wf_decode_mode;

/* Copies s[0, n) to out (room for n + 1 bytes: the result is never longer), decoded as `mode`
 * says, NUL-terminated; returns its length. A '&' that starts no valid reference is copied. */
size_t xs_wf_decode(char *out, const char *s, size_t n, xs_wf_decode_mode mode);

/* Where xs_wf_build() puts its trees: chunks of memory handed out in order and given back all
 * at once. Zero-initialized before first use. */
typedef struct xs_wf_arena {
    struct xs_wf_chunk *head; /* the chunk being filled */
    size_t hint;              /* bytes of the next first chunk */
} xs_wf_arena;

/* Gives back everything built in the arena, keeping one chunk (at most 64 KiB) for the next. */
void xs_wf_arena_reset(xs_wf_arena *a);

/* Gives back all of the arena's memory. */
void xs_wf_arena_free(xs_wf_arena *a);

/* xs_wf_element() that, when it accepts the element, also builds its libxml2 tree as the last
 * child of `parent` (the stream element of the parser's document), in the same pass, the way
 * libxml2's SAX2 tree builder would: the same nodes, namespace declarations on their elements,
 * namespaces resolved through the ancestors, references replaced, attribute values normalized,
 * one text node per run of text.
 *
 * The nodes, their names and strings and namespace declarations live in the arena `a`, not in
 * memory of their own (names are not from the document's dictionary): the tree is read-only, is
 * never given to xmlFreeNode() or any libxml2 function that frees or reallocates part of it,
 * and must be taken out of `parent` with xs_wf_unlink() before the arena is reset. Copies
 * (xmlDocCopyNode()) are ordinary trees. Returns 1 and sets *out; 0 when not sure or out of
 * memory: then nothing is left attached, and what was built stays in the arena until the
 * caller resets it. */
int xs_wf_element_tree(const char *s, size_t n, const xs_attr *decls, size_t n_decls,
                       const char *default_ns, xs_wf_root *root, xmlNode *parent, xs_wf_arena *a,
                       xmlNode **out);

/* Takes a tree built by xs_wf_element_tree() out of its parent (without freeing anything). */
void xs_wf_unlink(xmlNode *root);

#endif
