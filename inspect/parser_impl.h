/* The stream parser's insides, shared by its three files and by nobody else:
 *   parser.c      the public interface (new, feed, reset, trim, free), the events, the pending
 *                 buffer and the end of each read;
 *   scan.c        the byte scanner: tags, names, attributes, the --max-attrs counts, the refused
 *                 constructs, the spans and the line count;
 *   parser_sax.c  libxml2's push parser: its context, the SAX callbacks, the stream header and
 *                 stanza strings they copy out, libxml2's errors, and the trees.
 * Offsets are absolute (bytes since xs_parser_new()). Every function here that reports an error
 * has emitted the error event and stopped the parser (st == S_FAILED) before it returns.
 */
#ifndef XS_INSPECT_PARSER_IMPL_H
#define XS_INSPECT_PARSER_IMPL_H

#include "inspect/parser.h"
#include "inspect/wf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libxml/parser.h>

/* Names longer than this are compared only for the stream-restart check, which needs the
 * stream element's qualified name; longer names simply never match it. */
#define NAME_CAP 64

enum scan_state {
    S_TEXT,      /* between tags */
    S_LT,        /* after '<' */
    S_NAME,      /* in the name of a start tag */
    S_ATTRS,     /* in a start tag after its name */
    S_QUOTE,     /* in a quoted attribute value */
    S_ENDTAG,    /* in an end tag */
    S_PI_TARGET, /* after "<?" */
    S_PI_BODY,   /* in the XML declaration, looking for "?>" */
    S_BANG,      /* after "<!" */
    S_CDATA,     /* in a CDATA section, looking for "]]>" */
    S_FAILED,
};

/* Where the scanner stands in the name of an attribute, to tell a namespace declaration
 * (xmlns='...', xmlns:p='...') from an attribute when its value's quote opens. */
enum aname_state {
    A_NONE,    /* between names, the last one not a declaration (or none yet) */
    A_X1,      /* in a name: "x" so far */
    A_X2,      /* "xm" */
    A_X3,      /* "xml" */
    A_X4,      /* "xmln" */
    A_XMLNS,   /* "xmlns" */
    A_DECL_IN, /* in "xmlns:..." */
    A_OTHER,   /* in a name that declares nothing */
    A_DECL,    /* between names, the last one a declaration */
};

/* A growable byte buffer with a hard cap. */
typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf;

struct xs_parser {
    xs_parser_limits lim;
    unsigned opts;
    xs_parser_cb cb;
    void *user;

    xmlParserCtxtPtr ctxt;

    /* Scanner. Offsets are absolute: bytes since xs_parser_new(). */
    enum scan_state st;
    unsigned depth;      /* open elements: 0 outside the stream, 1 in it, 2+ in a stanza */
    uint64_t off;        /* offset of the next byte to scan */
    uint64_t tag_start;  /* offset of the current tag's '<' */
    uint64_t elem_start; /* first byte of the current top-level item (header, stanza, close) */
    unsigned elem_line, elem_col;
    bool in_elem;          /* elem_start is valid */
    uint64_t stream_start; /* first byte of the current stream (its XML declaration or header) */
    uint64_t ws_start;     /* start of a whitespace run directly inside the stream */
    bool in_ws;
    unsigned line;
    uint64_t line_start; /* offset of the first byte of the current line */
    char quote;
    bool slash;   /* the last byte of the current start tag outside quotes was '/' */
    unsigned aux; /* bytes matched of "xml " (PI), of "[CDATA[" (bang), of "]]" or "?" */
    char name[NAME_CAP];
    size_t name_len; /* may exceed NAME_CAP: then the name is not stored */
    char root[NAME_CAP];
    size_t root_len;
    bool closed;
    bool after_close; /* the current start tag came after the stream element was closed */
    unsigned stream_no;

    /* The --max-attrs counts of the current start tag, taken at each attribute's opening quote,
     * and the namespace declarations in scope in the current stanza: ns_open[d] holds those of
     * the open element at depth d (1: the stanza), ns_scope their sum plus the current tag's. */
    unsigned tag_attrs, tag_ns;
    unsigned children;    /* direct children of the current stanza (xs_event.n_children) */
    uint64_t first_child; /* the offset of the first one's '<', 0: none yet */
    unsigned char aname;  /* where the current attribute's name stands (enum aname_state) */
    unsigned ns_scope;
    uint16_t *ns_open; /* max_depth + 2 entries, made at the first element that declares a
                        * namespace inside another (NULL: every open element declares none) */

    /* Bytes of earlier reads still needed: unfed to libxml2, or part of the current top-level
     * item when XS_PARSER_RAW. They cover offsets [pend_start, pend_start + pend.len). */
    buf pend;
    uint64_t pend_start;
    uint64_t fed; /* libxml2 has been given every byte before this offset (or skipped it) */

    /* The current read, during xs_parser_feed(). */
    const char *data;
    uint64_t data_base;
    size_t data_len;

    /* libxml2's position when the current top-level item started, to place its errors. */
    unsigned lx_line, lx_col;

    /* SAX side. */
    int sax_depth;
    bool sax_root;      /* the stream element's start was reported */
    bool sax_done;      /* a depth-1 element ended */
    bool sax_closed;    /* the stream element ended */
    xmlNode *sax_node;  /* the depth-1 element being built (tree mode) */
    bool node_in_arena; /* sax_node was built by xs_wf_build() in `arena` */
    xs_wf_arena arena;
    const xmlChar *sax_name, *sax_prefix, *sax_uri;
    int sax_restricted; /* a DTD, comment, PI or entity reached libxml2 */
    bool sax_oom;
    xmlError lx_err; /* first error reported by libxml2 */
    bool have_lx_err;

    /* The stream header, copied out of libxml2's buffers. */
    buf hdr_raw;    /* its bytes, to rebuild libxml2's context after xs_parser_trim() */
    bool replaying; /* hdr_raw is being given to a rebuilt context: no header capture */
    buf hdr_strings;
    xs_attr *hdr_attrs;
    size_t hdr_n_attrs, hdr_cap_attrs;
    xs_attr *hdr_ns;
    size_t hdr_n_ns, hdr_cap_ns;
    size_t hdr_name, hdr_prefix, hdr_uri, hdr_default_ns; /* offsets into hdr_strings + 1 */

    /* Without trees, complete stanzas go through xs_wf_element() first and libxml2 only sees
     * those it is not sure about. fast_str holds the event's names for the callback. */
    bool fast;
    uint64_t n_fast;

    /* The current stanza's names and attributes (xs_event.attrs), copied into st_strings as
     * offsets + 1 until the event is emitted. */
    buf st_strings;
    xs_attr *st_attrs;
    size_t st_n_attrs, st_cap_attrs;

    bool in_callback;
    int failed; /* the error code once the parser stopped */
};

/* The header's attributes are stored as string-pool offsets cast into the pointer fields while
 * the pool may still move; header_fixup() turns them into pointers once it is complete. */
#define POOL_REF(off) ((const char *)(uintptr_t)(off))

static inline const char *pool_ptr(const xs_parser *p, const char *ref)
{
    size_t off = (size_t)(uintptr_t)ref;
    return off ? p->hdr_strings.data + off - 1 : NULL;
}

/* What xs_parser_st_intern() does to the bytes it copies. */
typedef enum st_kind {
    ST_PLAIN,     /* nothing */
    ST_RAW_VALUE, /* an attribute value as written (checked by wf.c): normalized, references
                   * replaced */
    ST_LX_VALUE,  /* an attribute value from libxml2: its &#38; (a '&') replaced */
} st_kind;

static inline const char *st_ptr(const xs_parser *p, size_t ref)
{
    return ref ? p->st_strings.data + ref - 1 : NULL;
}

static inline bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static inline unsigned col_of(const xs_parser *p, uint64_t at)
{
    return (unsigned)(at - p->line_start + 1);
}

/* Skips bytes libxml2 never needs to see (whitespace between stanzas). */
static inline void skip_xml_to(xs_parser *p, uint64_t to)
{
    if (p->fed < to)
        p->fed = to;
}

/* ---- parser.c ---- */

/* The capped buffer: append fails with XS_ETOOBIG past `limit`, XS_ENOMEM without memory. */
int xs_parser_buf_reserve(buf *b, size_t extra, size_t limit);
int xs_parser_buf_append(buf *b, const void *src, size_t n, size_t limit);
void xs_parser_buf_free(buf *b);

/* Report an error (at offset `at`, or at p->off) and stop the parser; return `code`. */
int xs_parser_fail_at(xs_parser *p, int code, xs_parse_error_kind kind, uint64_t at, unsigned line,
                      unsigned col, const char *msg);
int xs_parser_fail(xs_parser *p, int code, xs_parse_error_kind kind, const char *msg);

/* The bytes of [from, to) as one contiguous range (NULL: out of memory). */
const char *xs_parser_span_bytes(xs_parser *p, uint64_t from, uint64_t to);

/* The events of the top-level items that end at `end`: the callback's result, or an error. */
int xs_parser_emit_keepalive(xs_parser *p, uint64_t end);
int xs_parser_emit_stream_open(xs_parser *p, uint64_t end);
int xs_parser_emit_stanza(xs_parser *p, uint64_t end);
int xs_parser_emit_stream_close(xs_parser *p, uint64_t end);

/* ---- scan.c ---- */

/* Scans the current read from p->off. Returns 0 at its end, XS_PARSER_PAUSE when a callback
 * paused (p->off is then just past the event), or a negative error. */
int xs_parser_scan(xs_parser *p);

/* ---- parser_sax.c ---- */

/* Puts the scanner and libxml2 at the start of a new stream beginning at offset `at`. */
int xs_parser_stream_begin(xs_parser *p, uint64_t at);
/* A new libxml2 context after xs_parser_trim() (0 when there is one already). */
int xs_parser_ctxt_rebuild(xs_parser *p);
void xs_parser_ctxt_destroy(xs_parser *p);
void xs_parser_clear_lx_err(xs_parser *p);
/* Frees the depth-1 element's tree (the arena's: gives it back). */
void xs_parser_drop_node(xs_parser *p);

/* The stanza's string pool and attributes (see st_kind); failures set sax_oom. */
size_t xs_parser_st_intern(xs_parser *p, const char *s, size_t n, st_kind kind);
void xs_parser_st_attr(xs_parser *p, const xs_wf_str *name, const xs_wf_str *prefix,
                       const xs_wf_str *uri, const xs_wf_str *value, st_kind kind);

/* Gives libxml2 every byte before `to`; reports libxml2's error if it finds one. */
int xs_parser_feed_xml_to(xs_parser *p, uint64_t to);
/* Reports the error libxml2 found (or the restriction a SAX callback caught). */
int xs_parser_fail_lx(xs_parser *p);
/* Records that libxml2 did not see the element end where the scanner did, unless it reported
 * something already. */
void xs_parser_lx_unfinished(xs_parser *p);

#endif
