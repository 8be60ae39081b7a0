/* The incremental XMPP stream parser.
 *
 * One parser reads one direction of one stream. Bytes go in through xs_parser_feed() in reads of
 * any size; events come out through one callback, in input order, and are the same for every way
 * the input is split into reads (but for keepalives: a run of whitespace cut by reads comes as
 * one keepalive event per piece, each passed on at once). Depth 0 is the stream element, depth 1 a
 * stanza (or stream features, stream error, SASL and STARTTLS elements: anything directly inside
 * the stream).
 *
 * A small scanner of our own walks the bytes first. It tracks tag boundaries and depth, knows the
 * exact byte span of every depth-1 element, refuses what RFC 6120 section 11 forbids (DTDs,
 * comments, processing instructions) and enforces the limits before libxml2 buffers anything.
 * libxml2's push parser then checks well-formedness and namespaces and, when asked, builds the
 * stanza's tree. Without trees, a complete stanza is first checked by the fast, conservative
 * check of inspect/wf.h, and libxml2 sees only the stanzas that check is not sure about. libxml2 is
 * fed up to the end of each stanza exactly, so a callback that returns XS_PARSER_PAUSE leaves every
 * later byte unread (the STARTTLS and SASL restarts need that).
 */
#ifndef XS_INSPECT_PARSER_H
#define XS_INSPECT_PARSER_H

#include <stddef.h>
#include <stdint.h>

#include <libxml/tree.h>

typedef struct xs_parser xs_parser;

/* Limits. A zero field takes its default. */
typedef struct xs_parser_limits {
    size_t max_stanza;  /* bytes of one depth-1 element or stream header; default 262144 */
    unsigned max_depth; /* element depth below the stream element; default 64 */
    /* Attributes of one element (the stream header too), and namespace declarations in scope
     * within one stanza (so also on one element) or on the stream header; default 64, at most
     * XS_PARSER_MAX_MAX_ATTRS. The scanner counts them before libxml2 sees the element: libxml2
     * checks attribute uniqueness pairwise and looks prefixes up through every declaration in
     * scope, so without a cap a 200 KB tag costs seconds. XMPP needs few: a stream header has
     * about 7, the largest common elements (a Jingle ICE candidate) 12. */
    unsigned max_attrs;
} xs_parser_limits;

#define XS_PARSER_DEFAULT_MAX_STANZA 262144u
#define XS_PARSER_DEFAULT_MAX_DEPTH 64u
#define XS_PARSER_DEFAULT_MAX_ATTRS 64u
#define XS_PARSER_MAX_MAX_ATTRS 1024u

/* Option bits for xs_parser_new(). */
enum {
    /* Build the libxml2 tree of each stanza (xs_event.node). Costs time; the printers and the
     * rules need it, plain forwarding does not. */
    XS_PARSER_TREE = 1u << 0,
    /* Keep the raw bytes of each stanza and stream header (xs_event.raw), even when they arrived
     * in several reads. */
    XS_PARSER_RAW = 1u << 1,
    /* A new stream header (`<?xml` or the stream element's own name) met directly inside the
     * stream is a stream restart, as in a capture of one direction of a whole session. Without
     * this bit the caller resets the parser itself (xs_parser_reset) and such a header is an
     * error. */
    XS_PARSER_AUTO_RESTART = 1u << 2,
    /* Give every stanza to libxml2. Stanzas otherwise go through the fast, conservative check
     * of inspect/wf.h first (which also builds their trees) and libxml2 sees only those it is not
     * sure about: same events, same errors, a fraction of the time. For tests. */
    XS_PARSER_LIBXML2_ONLY = 1u << 3,
    /* Leave xs_event.attrs of stanzas empty (nobody reads them: saves decoding them). */
    XS_PARSER_NO_ATTRS = 1u << 4,
};

typedef enum xs_event_kind {
    XS_EV_STREAM_OPEN,  /* the stream header was read (after a restart too) */
    XS_EV_STANZA,       /* a complete depth-1 element */
    XS_EV_KEEPALIVE,    /* whitespace directly inside the stream */
    XS_EV_STREAM_CLOSE, /* the closing tag of the stream element */
    XS_EV_ERROR,        /* the input is refused; the parser stops until reset */
} xs_event_kind;

const char *xs_event_kind_name(xs_event_kind kind);

/* An attribute or namespace declaration of the stream header. Strings are NUL-terminated. */
typedef struct xs_attr {
    const char *prefix; /* NULL when none */
    const char *name;   /* local name; for a namespace declaration NULL */
    const char *uri;    /* namespace of the attribute, or the declared namespace */
    const char *value;  /* attribute value; NULL for a namespace declaration */
} xs_attr;

/* What an error was about, for the stream error the proxy sends back. */
typedef enum xs_parse_error_kind {
    XS_PERR_NOT_WELL_FORMED, /* <not-well-formed/> */
    XS_PERR_RESTRICTED,      /* <restricted-xml/>: DTD, comment, PI, entity */
    XS_PERR_POLICY,          /* <policy-violation/>: a limit was exceeded */
    XS_PERR_BAD_FORMAT,      /* <bad-format/>: text directly in the stream, extra root, ... */
    XS_PERR_NO_MEMORY,       /* <internal-server-error/>: allocation failed */
} xs_parse_error_kind;

const char *xs_parse_error_condition(xs_parse_error_kind kind);

/* One event. Everything it points to belongs to the parser and is valid only during the
 * callback; copy what you keep (xs_stanza_copy for the tree). */
typedef struct xs_event {
    xs_event_kind kind;
    uint64_t offset; /* byte offset of the event's first byte, counted from xs_parser_new() */
    size_t len;      /* bytes of the event's span; for an error 0 */
    unsigned line;   /* 1-based line and byte column of `offset` */
    unsigned column;
    unsigned stream_no; /* 1 for the first stream, +1 on every restart */

    /* XS_EV_STREAM_OPEN and XS_EV_STANZA: the element's local name, prefix and namespace URI
     * (NULL when none). */
    const char *name;
    const char *prefix;
    const char *ns;

    /* XS_EV_STREAM_OPEN: attributes and namespace declarations of the stream header.
     * XS_EV_STANZA: the stanza element's own attributes (not its namespace declarations), values
     * with references replaced, with or without XS_PARSER_TREE. */
    const xs_attr *attrs;
    size_t n_attrs;
    const xs_attr *nsdecls;
    size_t n_nsdecls;
    const char *default_ns; /* the stream's default namespace (jabber:client), or NULL */

    /* XS_EV_STANZA with XS_PARSER_TREE: the element, still attached to the stream element so
     * namespace declarations inherited from it resolve. NULL otherwise. It belongs to the parser
     * (built in its arena on the fast path): a consumer reads it and never changes or frees it;
     * one that wants to change the stanza changes a copy (xs_stanza_copy). */
    const xmlNode *node;

    /* With XS_PARSER_RAW: the exact bytes of the span (stanza, stream header, keepalive, stream
     * close). NULL otherwise. */
    const char *raw;

    /* XS_EV_STANZA: how many child elements the stanza has (its direct children), counted by the
     * scanner as it finds the stanza's end, with or without a tree; and the offset of the first
     * one's '<' from the stanza's first byte (0: none). Readers of the raw bytes (the analysers)
     * need not scan a whole stanza to count them. */
    unsigned n_children;
    size_t first_child;

    /* XS_EV_ERROR */
    int error; /* XS_ENOTWF, XS_ERESTRICTED, XS_ETOOBIG, ... */
    xs_parse_error_kind error_kind;
    const char *message; /* one line of English, no trailing newline */
} xs_event;

/* Return values of the callback: 0 goes on, XS_PARSER_PAUSE makes xs_parser_feed() return right
 * after this event with *used counting the bytes up to its end; a negative code aborts the feed
 * and is returned by it. */
#define XS_PARSER_PAUSE 1

typedef int (*xs_parser_cb)(void *user, const xs_event *ev);

/* Creates a parser. `limits` may be NULL. Returns 0 and sets *out, or XS_ENOMEM/XS_EINVAL.
 * The caller frees it with xs_parser_free(). */
int xs_parser_new(const xs_parser_limits *limits, unsigned options, xs_parser_cb cb, void *user,
                  xs_parser **out);

/* Reads `len` bytes. Events fire from inside this call. Sets *used (may be NULL) to the bytes
 * consumed: all of them unless a callback paused. Returns 0, or the negative code of an error
 * (after the XS_EV_ERROR event), or what a callback returned. After an error every further feed
 * returns XS_ESTATE until xs_parser_reset(). */
int xs_parser_feed(xs_parser *p, const char *data, size_t len, size_t *used);

/* Starts a new stream: the next byte fed is the first byte of a new stream header. Bytes of an
 * unfinished element are discarded. Byte offsets keep counting. Returns 0 or XS_ENOMEM. */
int xs_parser_reset(xs_parser *p);

/* True once the stream element has been closed. */
int xs_parser_closed(const xs_parser *p);

/* Total bytes consumed since creation. */
uint64_t xs_parser_offset(const xs_parser *p);

/* Stanzas that passed the fast check of inspect/wf.h (libxml2 never saw them). */
uint64_t xs_parser_fast_stanzas(const xs_parser *p);

/* Gives back the memory an idle parser holds (libxml2's context, about 17 KiB, and the pending
 * buffer) when it stands between two stanzas of an open stream; the next stanza rebuilds the
 * context from a copy of the stream header, without any event. Call it for a direction that
 * has been quiet for a while (the proxy: a second). Only a parser with XS_PARSER_RAW keeps the
 * header's bytes. Returns 1 when memory was given back, 0 when the parser was not at such a
 * point (or had nothing to give back). Not from a callback. */
int xs_parser_trim(xs_parser *p);

void xs_parser_free(xs_parser *p);

/* Copies a stanza's tree into a document of its own, with the namespace declarations it
 * inherited from the stream element made explicit on the copy. The caller frees the result with
 * xmlFreeDoc(). Returns NULL when out of memory. */
xmlDoc *xs_stanza_copy(const xmlNode *node);

#endif
