/* The incremental XMPP stream parser: our byte scanner in front of libxml2's push parser.
 *
 * The scanner sees every byte once. It knows where tags begin and end, the element depth, and so
 * the exact span of the stream header, of each stanza and of the closing tag. It refuses DTDs,
 * comments and processing instructions the moment it sees their first bytes, and it checks the
 * size and depth limits before anything is buffered. libxml2 is then fed in chunks that end
 * exactly at the end of each depth-1 element, so its SAX callbacks for that element have all
 * fired when the chunk returns and nothing after the element has been read.
 *
 * Whitespace between stanzas (keepalives) is never fed to libxml2: its push parser would hold it
 * until the next '<', and a peer sending only spaces would grow libxml2's buffer without bound.
 */
#include "inspect/parser.h"

#include "inspect/alloc.h"
#include "inspect/error.h"
#include "inspect/reference.h"
#include "inspect/wf.h"

#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/SAX2.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>

/* Names longer than this are compared only for the stream-restart check, which needs the
 * stream element's qualified name; longer names simply never match it. */
#define NAME_CAP 64
/* libxml2 interns element and attribute names in a dictionary that lives as long as the parser.
 * A peer inventing new names forever would grow it; this caps it. */
#define DICT_LIMIT (1u << 20)

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
    unsigned char aname; /* where the current attribute's name stands (enum aname_state) */
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

/* ---- small helpers --------------------------------------------------------------------------- */

static int buf_reserve(buf *b, size_t extra, size_t limit)
{
    if (extra > limit || b->len > limit - extra)
        return XS_ETOOBIG;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap *= 2;
    if (ncap > limit)
        ncap = limit;
    char *nd = xs_realloc(b->data, ncap);
    if (nd == NULL)
        return XS_ENOMEM;
    b->data = nd;
    b->cap = ncap;
    return 0;
}

static int buf_append(buf *b, const void *src, size_t n, size_t limit)
{
    int rc = buf_reserve(b, n, limit);
    if (rc < 0)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

static void buf_free(buf *b)
{
    xs_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

const char *xs_event_kind_name(xs_event_kind kind)
{
    switch (kind) {
    case XS_EV_STREAM_OPEN:
        return "stream-open";
    case XS_EV_STANZA:
        return "stanza";
    case XS_EV_KEEPALIVE:
        return "keepalive";
    case XS_EV_STREAM_CLOSE:
        return "stream-close";
    case XS_EV_ERROR:
        return "error";
    }
    return "unknown";
}

const char *xs_parse_error_condition(xs_parse_error_kind kind)
{
    switch (kind) {
    case XS_PERR_NOT_WELL_FORMED:
        return "not-well-formed";
    case XS_PERR_RESTRICTED:
        return "restricted-xml";
    case XS_PERR_POLICY:
        return "policy-violation";
    case XS_PERR_BAD_FORMAT:
        return "bad-format";
    case XS_PERR_NO_MEMORY:
        return "internal-server-error";
    }
    return "undefined-condition";
}

/* ---- SAX callbacks -----------------------------------------------------------------------------
 */

static xs_parser *parser_of(void *ctx)
{
    xmlParserCtxtPtr ctxt = ctx;
    return ctxt->_private;
}

/* Copies a NUL-terminated string (or `len` bytes when len != SIZE_MAX) into the header's string
 * pool and returns its offset + 1, or 0 on failure. */
static size_t hdr_intern(xs_parser *p, const char *s, size_t len)
{
    if (s == NULL)
        return 0;
    if (len == SIZE_MAX)
        len = strlen(s);
    size_t at = p->hdr_strings.len;
    if (buf_append(&p->hdr_strings, s, len, SIZE_MAX / 2) < 0 ||
        buf_append(&p->hdr_strings, "", 1, SIZE_MAX / 2) < 0) {
        p->sax_oom = true;
        return 0;
    }
    return at + 1;
}

static int grow_attrs(xs_attr **arr, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 8;
    while (ncap < need)
        ncap *= 2;
    xs_attr *n = xs_realloc(*arr, ncap * sizeof(*n));
    if (n == NULL)
        return XS_ENOMEM;
    *arr = n;
    *cap = ncap;
    return 0;
}

/* The header's attributes are stored as string-pool offsets cast into the pointer fields while
 * the pool may still move; header_fixup() turns them into pointers once it is complete. */
#define POOL_REF(off) ((const char *)(uintptr_t)(off))

static void capture_header(xs_parser *p, const xmlChar *localname, const xmlChar *prefix,
                           const xmlChar *uri, int nb_ns, const xmlChar **ns, int nb_attrs,
                           const xmlChar **attrs)
{
    p->hdr_strings.len = 0;
    p->hdr_n_attrs = p->hdr_n_ns = 0;
    p->hdr_default_ns = 0;
    p->hdr_name = hdr_intern(p, (const char *)localname, SIZE_MAX);
    p->hdr_prefix = hdr_intern(p, (const char *)prefix, SIZE_MAX);
    p->hdr_uri = hdr_intern(p, (const char *)uri, SIZE_MAX);
    if (grow_attrs(&p->hdr_ns, &p->hdr_cap_ns, (size_t)nb_ns) < 0 ||
        grow_attrs(&p->hdr_attrs, &p->hdr_cap_attrs, (size_t)nb_attrs) < 0) {
        p->sax_oom = true;
        return;
    }
    for (int i = 0; i < nb_ns; i++) {
        xs_attr *a = &p->hdr_ns[p->hdr_n_ns++];
        a->prefix = POOL_REF(hdr_intern(p, (const char *)ns[2 * i], SIZE_MAX));
        a->name = NULL;
        a->uri = POOL_REF(hdr_intern(p, (const char *)ns[2 * i + 1], SIZE_MAX));
        a->value = NULL;
        if (ns[2 * i] == NULL)
            p->hdr_default_ns = (size_t)(uintptr_t)a->uri;
    }
    for (int i = 0; i < nb_attrs; i++) {
        const xmlChar **at = &attrs[5 * i];
        xs_attr *a = &p->hdr_attrs[p->hdr_n_attrs++];
        a->name = POOL_REF(hdr_intern(p, (const char *)at[0], SIZE_MAX));
        a->prefix = POOL_REF(hdr_intern(p, (const char *)at[1], SIZE_MAX));
        a->uri = POOL_REF(hdr_intern(p, (const char *)at[2], SIZE_MAX));
        a->value = POOL_REF(hdr_intern(p, (const char *)at[3], (size_t)(at[4] - at[3])));
    }
}

static const char *pool_ptr(const xs_parser *p, const char *ref)
{
    size_t off = (size_t)(uintptr_t)ref;
    return off ? p->hdr_strings.data + off - 1 : NULL;
}

/* What st_intern() does to the bytes it copies. */
typedef enum st_kind {
    ST_PLAIN,     /* nothing */
    ST_RAW_VALUE, /* an attribute value as written (checked by wf.c): normalized, references
                   * replaced */
    ST_LX_VALUE,  /* an attribute value from libxml2: its &#38; (a '&') replaced */
} st_kind;

/* Copies n bytes (NULL: absent) into the stanza's string pool, transformed as `kind` says.
 * Returns the offset + 1, or 0 when absent or out of memory (then sax_oom is set). */
static size_t st_intern(xs_parser *p, const char *s, size_t n, st_kind kind)
{
    if (s == NULL)
        return 0;
    size_t at = p->st_strings.len;
    if (buf_reserve(&p->st_strings, n + 1, SIZE_MAX / 2) < 0) {
        p->sax_oom = true;
        return 0;
    }
    char *o = p->st_strings.data + at;
    size_t k;
    if (kind == ST_PLAIN) {
        memcpy(o, s, n);
        o[n] = 0;
        k = n;
    } else {
        k = xs_wf_decode(o, s, n, kind == ST_RAW_VALUE ? XS_WF_VALUE : XS_WF_REFS);
    }
    p->st_strings.len = at + k + 1;
    return at + 1;
}

static const char *st_ptr(const xs_parser *p, size_t ref)
{
    return ref ? p->st_strings.data + ref - 1 : NULL;
}

/* Appends an attribute of the stanza (strings as pool offsets until the event). */
static void st_attr(xs_parser *p, const xs_wf_str *name, const xs_wf_str *prefix,
                    const xs_wf_str *uri, const xs_wf_str *value, st_kind kind)
{
    if (grow_attrs(&p->st_attrs, &p->st_cap_attrs, p->st_n_attrs + 1) < 0) {
        p->sax_oom = true;
        return;
    }
    xs_attr *a = &p->st_attrs[p->st_n_attrs++];
    a->name = POOL_REF(st_intern(p, name->p, name->n, ST_PLAIN));
    a->prefix = POOL_REF(st_intern(p, prefix->p, prefix->n, ST_PLAIN));
    a->uri = POOL_REF(st_intern(p, uri->p, uri->n, ST_PLAIN));
    a->value = POOL_REF(st_intern(p, value->p ? value->p : "", value->n, kind));
}

static void sax_start_element(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                              const xmlChar *uri, int nb_ns, const xmlChar **ns, int nb_attrs,
                              int nb_defaulted, const xmlChar **attrs)
{
    xmlParserCtxtPtr ctxt = ctx;
    xs_parser *p = parser_of(ctx);

    if (p->sax_depth == 0) {
        p->sax_root = true;
        if (!p->replaying)
            capture_header(p, localname, prefix, uri, nb_ns, ns, nb_attrs, attrs);
    } else if (p->sax_depth == 1) {
        p->sax_name = localname;
        p->sax_prefix = prefix;
        p->sax_uri = uri;
        p->sax_node = NULL;
        p->st_strings.len = 0;
        p->st_n_attrs = 0;
        for (int i = 0; i < nb_attrs && !(p->opts & XS_PARSER_NO_ATTRS); i++) {
            const xmlChar **at = &attrs[5 * i];
            xs_wf_str n = {(const char *)at[0], strlen((const char *)at[0])};
            xs_wf_str pf = {(const char *)at[1], at[1] ? strlen((const char *)at[1]) : 0};
            xs_wf_str u = {(const char *)at[2], at[2] ? strlen((const char *)at[2]) : 0};
            xs_wf_str v = {(const char *)at[3], (size_t)(at[4] - at[3])};
            st_attr(p, &n, &pf, &u, &v, ST_LX_VALUE);
        }
    }
    p->sax_depth++;
    if (p->opts & XS_PARSER_TREE) {
        xmlSAX2StartElementNs(ctx, localname, prefix, uri, nb_ns, ns, nb_attrs, nb_defaulted,
                              attrs);
        if (p->sax_depth == 2)
            p->sax_node = ctxt->node;
        if (ctxt->node == NULL || ctxt->errNo == XML_ERR_NO_MEMORY) {
            p->sax_oom = true;
            xmlStopParser(ctxt);
        }
    }
}

static void sax_end_element(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                            const xmlChar *uri)
{
    xs_parser *p = parser_of(ctx);

    if (p->opts & XS_PARSER_TREE)
        xmlSAX2EndElementNs(ctx, localname, prefix, uri);
    p->sax_depth--;
    if (p->sax_depth == 1)
        p->sax_done = true;
    else if (p->sax_depth == 0)
        p->sax_closed = true;
}

static void sax_characters(void *ctx, const xmlChar *ch, int len)
{
    xs_parser *p = parser_of(ctx);

    /* Text directly inside the stream is whitespace (the scanner refuses anything else) and is
     * not kept: a tree that collected keepalives would grow for the whole session. */
    if ((p->opts & XS_PARSER_TREE) && p->sax_depth >= 2)
        xmlSAX2Characters(ctx, ch, len);
}

static void sax_cdata(void *ctx, const xmlChar *value, int len)
{
    xs_parser *p = parser_of(ctx);

    if ((p->opts & XS_PARSER_TREE) && p->sax_depth >= 2)
        xmlSAX2CDataBlock(ctx, value, len);
}

static void sax_restricted(xs_parser *p)
{
    if (p->sax_restricted == 0)
        p->sax_restricted = 1;
    xmlStopParser(p->ctxt);
}

static void sax_comment(void *ctx, const xmlChar *value)
{
    sax_restricted(parser_of(ctx));
}

static void sax_pi(void *ctx, const xmlChar *target, const xmlChar *data)
{
    sax_restricted(parser_of(ctx));
}

static void sax_internal_subset(void *ctx, const xmlChar *name, const xmlChar *eid,
                                const xmlChar *sid)
{
    sax_restricted(parser_of(ctx));
}

static void sax_reference(void *ctx, const xmlChar *name)
{
    sax_restricted(parser_of(ctx));
}

static xmlEntityPtr sax_get_entity(void *ctx, const xmlChar *name)
{
    /* The five predefined entities never reach this; anything else is not allowed. libxml2
     * reports the undefined entity by name right after, which makes the better message. */
    xs_parser *p = parser_of(ctx);
    if (p->sax_restricted == 0)
        p->sax_restricted = 1;
    return NULL;
}

static void sax_entity_decl(void *ctx, const xmlChar *name, int type, const xmlChar *public_id,
                            const xmlChar *system_id, xmlChar *content)
{
    sax_restricted(parser_of(ctx));
}

static void sax_serror(void *ctx, xmlErrorPtr err)
{
    xs_parser *p = parser_of(ctx);

    /* libxml2 reports an allocation failure inside xmlCreatePushParserCtxt() before ctxt_create()
     * has tied the context to us; the NULL context it then returns is the error. */
    if (p == NULL || err == NULL || err->level < XML_ERR_ERROR || p->have_lx_err)
        return;
    p->have_lx_err = true;
    p->lx_err.code = err->code;
    p->lx_err.line = err->line;
    p->lx_err.int2 = err->int2;
    p->lx_err.level = err->level;
    /* The message is copied at reporting time from a fixed buffer; keep a private copy. */
    p->lx_err.message = err->message ? xs_strdup(err->message) : NULL;
}

/* The SAX handlers, the same for every parser (libxml2 copies them into each context); the
 * second also builds trees. */
#define SAX_HANDLERS                                                                               \
    .startElementNs = sax_start_element, .endElementNs = sax_end_element,                          \
    .characters = sax_characters, .ignorableWhitespace = sax_characters, .cdataBlock = sax_cdata,  \
    .comment = sax_comment, .processingInstruction = sax_pi,                                       \
    .internalSubset = sax_internal_subset, .externalSubset = sax_internal_subset,                  \
    .reference = sax_reference, .getEntity = sax_get_entity, .getParameterEntity = sax_get_entity, \
    .entityDecl = sax_entity_decl, .serror = sax_serror, .initialized = XML_SAX2_MAGIC
static const xmlSAXHandler sax_plain = {SAX_HANDLERS};
static const xmlSAXHandler sax_tree = {SAX_HANDLERS, .startDocument = xmlSAX2StartDocument};
#undef SAX_HANDLERS

static int ctxt_create(xs_parser *p)
{
    /* libxml2 copies the handler into the context. */
    p->ctxt = xmlCreatePushParserCtxt(
        (xmlSAXHandler *)((p->opts & XS_PARSER_TREE) ? &sax_tree : &sax_plain), NULL, NULL, 0,
        NULL);
    if (p->ctxt == NULL)
        return XS_ENOMEM;
    p->ctxt->_private = p;
    p->ctxt->userData = p->ctxt; /* SAX callbacks receive the context */
    xmlCtxtUseOptions(p->ctxt, XML_PARSE_NONET | XML_PARSE_IGNORE_ENC | XML_PARSE_NOWARNING);
    xmlSwitchEncoding(p->ctxt, XML_CHAR_ENCODING_UTF8);
    if (p->ctxt->dict != NULL)
        xmlDictSetLimit(p->ctxt->dict, DICT_LIMIT);
    return 0;
}

/* Takes the depth-1 element out of the document and frees it (the arena's: gives it back). */
static void drop_node(xs_parser *p)
{
    if (p->sax_node == NULL)
        return;
    if (p->node_in_arena) {
        xs_wf_unlink(p->sax_node);
        xs_wf_arena_reset(&p->arena);
    } else {
        xmlUnlinkNode(p->sax_node);
        xmlFreeNode(p->sax_node);
    }
    p->sax_node = NULL;
    p->node_in_arena = false;
}

static void ctxt_destroy(xs_parser *p)
{
    if (p->sax_node != NULL && p->node_in_arena)
        drop_node(p); /* never to xmlFreeDoc() */
    if (p->ctxt == NULL)
        return;
    if (p->ctxt->myDoc != NULL) {
        xmlFreeDoc(p->ctxt->myDoc);
        p->ctxt->myDoc = NULL;
    }
    xmlFreeParserCtxt(p->ctxt);
    p->ctxt = NULL;
}

static void clear_lx_err(xs_parser *p)
{
    xs_free(p->lx_err.message);
    memset(&p->lx_err, 0, sizeof(p->lx_err));
    p->have_lx_err = false;
}

/* After xs_parser_trim(): a new libxml2 context, given the stream header again so that its
 * namespace declarations are in scope (and, with XS_PARSER_TREE, the stream element exists
 * for the stanzas to hang from). No event fires. The header parsed before, so only memory can
 * fail here. */
static int ctxt_rebuild(xs_parser *p)
{
    if (p->ctxt != NULL)
        return 0;
    int rc = ctxt_create(p);
    if (rc < 0)
        return rc;
    p->replaying = true;
    p->sax_depth = 0;
    p->sax_root = false;
    int lx = xmlParseChunk(p->ctxt, p->hdr_raw.data, (int)p->hdr_raw.len, 0);
    p->replaying = false;
    if (lx != 0 || !p->sax_root || p->sax_depth != 1 || p->have_lx_err || p->sax_oom) {
        ctxt_destroy(p);
        clear_lx_err(p);
        p->sax_oom = false;
        return XS_ENOMEM;
    }
    return 0;
}

/* Puts the scanner and libxml2 at the start of a new stream beginning at offset `at`. */
static int stream_begin(xs_parser *p, uint64_t at)
{
    ctxt_destroy(p);
    int rc = ctxt_create(p);
    if (rc < 0)
        return rc;
    p->depth = 0;
    p->closed = false;
    p->in_ws = false;
    p->in_elem = false;
    p->stream_start = at;
    p->fed = at;
    p->sax_depth = 0;
    p->sax_root = p->sax_done = p->sax_closed = false;
    p->sax_node = NULL;
    p->sax_restricted = 0;
    p->sax_oom = false;
    p->root_len = 0;
    p->hdr_raw.len = 0;
    p->ns_scope = 0;
    clear_lx_err(p);
    return 0;
}

/* ---- events ------------------------------------------------------------------------------------
 */

static unsigned col_of(const xs_parser *p, uint64_t at)
{
    return (unsigned)(at - p->line_start + 1);
}

static int emit(xs_parser *p, xs_event *ev)
{
    ev->stream_no = p->stream_no;
    p->in_callback = true;
    int rc = p->cb ? p->cb(p->user, ev) : 0;
    p->in_callback = false;
    return rc;
}

/* Reports an error found at offset `at` and stops the parser. Returns the error code. */
static int fail_at(xs_parser *p, int code, xs_parse_error_kind kind, uint64_t at, unsigned line,
                   unsigned col, const char *msg)
{
    xs_event ev = {0};
    ev.kind = XS_EV_ERROR;
    ev.offset = at;
    ev.line = line;
    ev.column = col;
    ev.error = code;
    ev.error_kind = kind;
    ev.message = msg;
    p->st = S_FAILED;
    p->failed = code;
    (void)emit(p, &ev);
    return code;
}

static int fail(xs_parser *p, int code, xs_parse_error_kind kind, const char *msg)
{
    return fail_at(p, code, kind, p->off, p->line, col_of(p, p->off), msg);
}

/* Reports the error libxml2 found (or the restriction a SAX callback caught). */
static int fail_lx(xs_parser *p)
{
    char msg[256];
    int code = XS_ENOTWF;
    xs_parse_error_kind kind = XS_PERR_NOT_WELL_FORMED;
    unsigned line = p->elem_line, col = p->elem_col;

    if (p->sax_oom || (p->have_lx_err && p->lx_err.code == XML_ERR_NO_MEMORY)) {
        return fail_at(p, XS_ENOMEM, XS_PERR_NO_MEMORY, p->elem_start, line, col,
                       "out of memory while parsing");
    }
    if (p->have_lx_err) {
        int c = p->lx_err.code;
        if (c == XML_ERR_UNDECLARED_ENTITY || c == XML_WAR_UNDECLARED_ENTITY ||
            c == XML_ERR_ENTITY_PE_INTERNAL || c == XML_ERR_ENTITYREF_NO_NAME ||
            p->sax_restricted) {
            code = XS_ERESTRICTED;
            kind = XS_PERR_RESTRICTED;
        }
        if (p->lx_err.line > 0 && (unsigned)p->lx_err.line >= p->lx_line) {
            line = p->elem_line + (unsigned)p->lx_err.line - p->lx_line;
            if ((unsigned)p->lx_err.line == p->lx_line && p->lx_err.int2 > 0)
                col = p->elem_col + (unsigned)p->lx_err.int2 - p->lx_col;
            else if (p->lx_err.int2 > 0)
                col = (unsigned)p->lx_err.int2;
        }
        const char *m = p->lx_err.message ? p->lx_err.message : "malformed XML";
        size_t n = strlen(m);
        while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
            n--;
        snprintf(msg, sizeof(msg), "%.*s", (int)(n > 200 ? 200 : n), m);
    } else if (p->sax_restricted) {
        code = XS_ERESTRICTED;
        kind = XS_PERR_RESTRICTED;
        snprintf(msg, sizeof(msg), "entity reference, DTD, comment or processing instruction");
    } else {
        snprintf(msg, sizeof(msg), "malformed XML");
    }
    if (code == XS_ERESTRICTED && strstr(msg, "ntity") != NULL)
        snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
                 " (only the five predefined entities are allowed)");
    uint64_t at = p->elem_start;
    return fail_at(p, code, kind, at, line, col, msg);
}

/* Gives libxml2 every byte before absolute offset `to`, from the pending buffer and then from
 * the current read. */
static int feed_xml_to(xs_parser *p, uint64_t to)
{
    if (p->fed < to && p->ctxt == NULL && ctxt_rebuild(p) < 0)
        return fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    while (p->fed < to) {
        const char *chunk;
        size_t n;
        uint64_t pend_end = p->pend_start + p->pend.len;
        if (p->fed < pend_end && p->fed >= p->pend_start) {
            chunk = p->pend.data + (p->fed - p->pend_start);
            n = (size_t)((to < pend_end ? to : pend_end) - p->fed);
        } else {
            assert(p->fed >= p->data_base);
            chunk = p->data + (p->fed - p->data_base);
            n = (size_t)(to - p->fed);
        }
        int rc = xmlParseChunk(p->ctxt, chunk, (int)n, 0);
        p->fed += n;
        if (rc != 0 || p->sax_restricted || p->sax_oom || p->have_lx_err)
            return fail_lx(p);
    }
    return 0;
}

/* Skips bytes libxml2 never needs to see (whitespace between stanzas). */
static void skip_xml_to(xs_parser *p, uint64_t to)
{
    if (p->fed < to)
        p->fed = to;
}

/* The bytes of [from, to) as one contiguous range: from the read when possible, else gathered in
 * the pending buffer. */
static const char *span_bytes(xs_parser *p, uint64_t from, uint64_t to)
{
    if (from >= p->data_base)
        return p->data + (from - p->data_base);
    /* The span began in an earlier read: the pending buffer holds its start. */
    uint64_t pend_end = p->pend_start + p->pend.len;
    assert(from >= p->pend_start && pend_end >= p->data_base);
    size_t have = (size_t)(pend_end - p->data_base);
    size_t more = (size_t)(to - p->data_base);
    if (more > have && buf_append(&p->pend, p->data + have, more - have, SIZE_MAX / 2) < 0)
        return NULL;
    return p->pend.data + (from - p->pend_start);
}

/* Empties the pending buffer; a large one is given back, so a session that once carried a big
 * stanza does not keep its memory while idle. */
static void pend_clear(xs_parser *p, uint64_t at)
{
    p->pend.len = 0;
    p->pend_start = at;
    if (p->pend.cap > 16384)
        buf_free(&p->pend);
}

/* Forgets pending bytes before `at` (they were all delivered). */
static void pend_drop_before(xs_parser *p, uint64_t at)
{
    uint64_t pend_end = p->pend_start + p->pend.len;
    if (at >= pend_end)
        pend_clear(p, at);
}

static int emit_keepalive(xs_parser *p, uint64_t end)
{
    p->in_ws = false;
    if (end <= p->ws_start)
        return 0;
    xs_event ev = {0};
    ev.kind = XS_EV_KEEPALIVE;
    ev.offset = p->ws_start;
    ev.len = (size_t)(end - p->ws_start);
    ev.line = p->line; /* approximate for multi-line runs: the line where the run ends */
    ev.column = 1;
    if (p->opts & XS_PARSER_RAW)
        ev.raw = p->data + (p->ws_start - p->data_base);
    skip_xml_to(p, end);
    return emit(p, &ev);
}

static int emit_stream_open(xs_parser *p, uint64_t end)
{
    int rc = feed_xml_to(p, end);
    if (rc < 0)
        return rc;
    if (!p->sax_root)
        return fail_lx(p);
    if (p->sax_oom)
        return fail_lx(p);
    /* Turn pool offsets into pointers now that the pool no longer moves. */
    for (size_t i = 0; i < p->hdr_n_attrs; i++) {
        xs_attr *a = &p->hdr_attrs[i];
        a->name = pool_ptr(p, a->name);
        a->prefix = pool_ptr(p, a->prefix);
        a->uri = pool_ptr(p, a->uri);
        a->value = pool_ptr(p, a->value);
    }
    for (size_t i = 0; i < p->hdr_n_ns; i++) {
        xs_attr *a = &p->hdr_ns[i];
        a->prefix = pool_ptr(p, a->prefix);
        a->uri = pool_ptr(p, a->uri);
    }
    xs_event ev = {0};
    ev.kind = XS_EV_STREAM_OPEN;
    ev.offset = p->elem_start;
    ev.len = (size_t)(end - p->elem_start);
    ev.line = p->elem_line;
    ev.column = p->elem_col;
    ev.name = pool_ptr(p, POOL_REF(p->hdr_name));
    ev.prefix = pool_ptr(p, POOL_REF(p->hdr_prefix));
    ev.ns = pool_ptr(p, POOL_REF(p->hdr_uri));
    ev.attrs = p->hdr_attrs;
    ev.n_attrs = p->hdr_n_attrs;
    ev.nsdecls = p->hdr_ns;
    ev.n_nsdecls = p->hdr_n_ns;
    ev.default_ns = pool_ptr(p, POOL_REF(p->hdr_default_ns));
    if (p->opts & XS_PARSER_RAW) {
        ev.raw = span_bytes(p, p->elem_start, end);
        if (ev.raw == NULL)
            return fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
        /* Kept for ctxt_rebuild() (so only a parser with XS_PARSER_RAW can be trimmed); the
         * header is within the stanza limit. */
        p->hdr_raw.len = 0;
        if (buf_append(&p->hdr_raw, ev.raw, ev.len, p->lim.max_stanza + 8) < 0)
            return fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    }
    p->in_elem = false;
    rc = emit(p, &ev);
    pend_drop_before(p, end);
    return rc;
}

/* The fast path of emit_stanza(): the well-formedness check of wf.c on the stanza's bytes, none
 * of which libxml2 has seen. Returns 1 when it passed (the event's names set), 0 when libxml2
 * must decide, or a negative error. */
static int fast_stanza(xs_parser *p, uint64_t end, xs_event *ev)
{
    if (!p->fast || p->fed > p->elem_start)
        return 0;
    size_t len = (size_t)(end - p->elem_start);
    const char *bytes = span_bytes(p, p->elem_start, end);
    if (bytes == NULL)
        return fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    xs_wf_root rbuf, *root = &rbuf;
    const char *default_ns = pool_ptr(p, POOL_REF(p->hdr_default_ns));
    if (p->opts & XS_PARSER_TREE) {
        /* The check builds the tree as it goes, as libxml2's SAX2 builder would, under the
         * stream element. */
        if (ctxt_rebuild(p) < 0)
            return fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
        xmlNode *stream = p->ctxt->myDoc ? xmlDocGetRootElement(p->ctxt->myDoc) : NULL;
        xmlNode *node = NULL;
        if (stream == NULL || !xs_wf_element_tree(bytes, len, p->hdr_ns, p->hdr_n_ns, default_ns,
                                                  root, stream, &p->arena, &node)) {
            xs_wf_arena_reset(&p->arena);
            return 0; /* libxml2 decides (and reports a refused name or no memory) */
        }
        p->sax_node = node;
        p->node_in_arena = true;
        ev->node = node;
    } else if (!xs_wf_element(bytes, len, p->hdr_ns, p->hdr_n_ns, default_ns, root)) {
        return 0;
    }
    p->st_strings.len = 0;
    p->st_n_attrs = 0;
    size_t name = st_intern(p, root->name.p, root->name.n, ST_PLAIN);
    size_t prefix = st_intern(p, root->prefix.p, root->prefix.n, ST_PLAIN);
    size_t uri = st_intern(p, root->ns.p, root->ns.n, ST_PLAIN);
    for (size_t i = 0; i < root->n_attrs && !(p->opts & XS_PARSER_NO_ATTRS); i++)
        st_attr(p, &root->attrs[i].name, &root->attrs[i].prefix, &root->attrs[i].ns,
                &root->attrs[i].value, ST_RAW_VALUE);
    if (p->sax_oom) {
        p->sax_oom = false;
        return fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    }
    ev->name = st_ptr(p, name);
    ev->prefix = st_ptr(p, prefix);
    ev->ns = st_ptr(p, uri);
    ev->raw = bytes;
    skip_xml_to(p, end);
    p->n_fast++;
    return 1;
}

static int emit_stanza(xs_parser *p, uint64_t end)
{
    xs_event ev = {0};
    int rc = fast_stanza(p, end, &ev);
    if (rc < 0)
        return rc;
    if (rc == 1)
        goto emit;
    p->sax_done = false;
    rc = feed_xml_to(p, end);
    if (rc < 0)
        return rc;
    if (!p->sax_done) {
        /* Our scanner and libxml2 disagree about where the element ends; libxml2 is right
         * about well-formedness, so this is reported as malformed input. */
        if (!p->have_lx_err && !p->sax_restricted)
            sax_serror(p->ctxt, &(xmlError){.level = XML_ERR_FATAL,
                                            .code = XML_ERR_TAG_NOT_FINISHED,
                                            .message = (char *)"element not finished"});
        return fail_lx(p);
    }
    ev.name = (const char *)p->sax_name;
    ev.prefix = (const char *)p->sax_prefix;
    ev.ns = (const char *)p->sax_uri;
    ev.node = p->sax_node;
    if (p->sax_oom)
        return fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    if (p->opts & XS_PARSER_RAW) {
        ev.raw = span_bytes(p, p->elem_start, end);
        if (ev.raw == NULL)
            return fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    }
emit:
    /* The stanza's attributes: pool offsets become pointers now that the pool is complete. */
    for (size_t i = 0; i < p->st_n_attrs; i++) {
        xs_attr *a = &p->st_attrs[i];
        a->name = st_ptr(p, (size_t)(uintptr_t)a->name);
        a->prefix = st_ptr(p, (size_t)(uintptr_t)a->prefix);
        a->uri = st_ptr(p, (size_t)(uintptr_t)a->uri);
        a->value = st_ptr(p, (size_t)(uintptr_t)a->value);
    }
    ev.attrs = p->st_attrs;
    ev.n_attrs = p->st_n_attrs;
    ev.kind = XS_EV_STANZA;
    ev.offset = p->elem_start;
    ev.len = (size_t)(end - p->elem_start);
    ev.line = p->elem_line;
    ev.column = p->elem_col;
    if (!(p->opts & XS_PARSER_RAW))
        ev.raw = NULL;
    p->in_elem = false;
    rc = emit(p, &ev);
    drop_node(p);
    pend_drop_before(p, end);
    return rc;
}

static int emit_stream_close(xs_parser *p, uint64_t end)
{
    int rc = feed_xml_to(p, end);
    if (rc < 0)
        return rc;
    if (!p->sax_closed)
        return fail_lx(p);
    xs_event ev = {0};
    ev.kind = XS_EV_STREAM_CLOSE;
    ev.offset = p->elem_start;
    ev.len = (size_t)(end - p->elem_start);
    ev.line = p->elem_line;
    ev.column = p->elem_col;
    if (p->opts & XS_PARSER_RAW) {
        ev.raw = span_bytes(p, p->elem_start, end);
        if (ev.raw == NULL)
            return fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    }
    p->in_elem = false;
    p->closed = true;
    rc = emit(p, &ev);
    pend_drop_before(p, end);
    return rc;
}

/* ---- the scanner --------------------------------------------------------------------------------
 */

/* Starts a top-level item (stream header, stanza or closing tag) at the current '<'. */
static void begin_item(xs_parser *p)
{
    p->in_elem = true;
    p->elem_start = p->tag_start;
    p->elem_line = p->line;
    p->elem_col = col_of(p, p->tag_start);
    /* A trimmed parser gets its context back here (on failure feed_xml_to() reports it). */
    (void)ctxt_rebuild(p);
    p->lx_line = (unsigned)(p->ctxt && p->ctxt->input ? p->ctxt->input->line : 1);
    p->lx_col = (unsigned)(p->ctxt && p->ctxt->input ? p->ctxt->input->col : 1);
}

/* A new stream header begins at tag_start while inside (or after) a stream: restart in place.
 * Its bytes have not been given to libxml2 yet (feed() holds back unfinished top-level tags). */
static int restart_here(xs_parser *p)
{
    uint64_t at = p->tag_start;
    int rc = stream_begin(p, at);
    if (rc < 0)
        return fail(p, rc, XS_PERR_NO_MEMORY, "out of memory");
    p->stream_no++;
    begin_item(p);
    return 0;
}

/* The name of a start tag is complete. */
static int start_name_done(xs_parser *p)
{
    if (p->depth == 0) {
        if (p->closed) {
            /* Only a new stream header (the same name as the stream element) starts a new
             * stream; anything else is a second root element, refused once its start tag is
             * complete, so that the error can quote it. */
            if (!(p->opts & XS_PARSER_AUTO_RESTART) || p->root_len == 0 ||
                p->name_len != p->root_len || memcmp(p->name, p->root, p->root_len) != 0) {
                p->after_close = true;
                return 0;
            }
            int rc = restart_here(p);
            if (rc < 0)
                return rc;
        } else if (!p->in_elem) {
            begin_item(p);
        }
        /* Otherwise an XML declaration began this item. */
        if (p->name_len <= NAME_CAP) {
            memcpy(p->root, p->name, p->name_len);
            p->root_len = p->name_len;
        }
        return 0;
    }
    if (p->depth == 1) {
        if ((p->opts & XS_PARSER_AUTO_RESTART) && p->root_len > 0 && p->name_len == p->root_len &&
            memcmp(p->name, p->root, p->root_len) == 0) {
            int rc = restart_here(p);
            if (rc < 0)
                return rc;
            memcpy(p->root, p->name, p->name_len);
            p->root_len = p->name_len;
            return 0;
        }
        begin_item(p);
    }
    return 0;
}

/* A start tag after the stream element's end (a second root element), complete at `end`. XML
 * allows only whitespace after the root element, so this is not well-formed (RFC 6120 4.9.3.13;
 * <bad-format/> is for XML that is well-formed but cannot be processed). The error names the tag
 * and what it followed. */
static int after_close(xs_parser *p, uint64_t end)
{
    char msg[256] = "'";
    const char *tag = span_bytes(p, p->tag_start, end);
    if (tag == NULL)
        return fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    xs_quote_bytes(msg, sizeof(msg), tag, (size_t)(end - p->tag_start), 80);
    snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
             "' arrived after the stream was closed with </");
    xs_quote_bytes(msg, sizeof(msg), p->root, p->root_len, NAME_CAP);
    snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
             "> (XML allows only whitespace after the stream's end)");
    return fail_at(p, XS_ENOTWF, XS_PERR_NOT_WELL_FORMED, p->tag_start, p->elem_line, p->elem_col,
                   msg);
}

/* Records the namespace declarations of the element whose start tag just ended at depth
 * p->depth, for its end tag to take them out of scope. */
static int ns_push(xs_parser *p)
{
    if (p->ns_open == NULL) {
        if (p->tag_ns == 0)
            return 0;
        p->ns_open = xs_calloc((size_t)p->lim.max_depth + 2, sizeof(*p->ns_open));
        if (p->ns_open == NULL)
            return XS_ENOMEM;
    }
    p->ns_open[p->depth] = (uint16_t)p->tag_ns;
    return 0;
}

/* A start tag ended with '>' (empty: "/>") at offset p->off. */
static int start_tag_done(xs_parser *p, bool empty)
{
    uint64_t end = p->off + 1;
    if (p->depth == 0) {
        if (p->after_close)
            return after_close(p, end);
        if (empty)
            return fail(p, XS_EBADFORMAT, XS_PERR_BAD_FORMAT,
                        "the stream element is empty: expected <stream:stream ...>");
        p->depth = 1;
        return emit_stream_open(p, end);
    }
    if (p->depth == 1) {
        if (empty) {
            p->ns_scope = 0;
            return emit_stanza(p, end);
        }
        if (ns_push(p) < 0)
            return fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
        p->depth = 2;
        return 0;
    }
    if (p->depth > p->lim.max_depth) {
        char msg[96];
        snprintf(msg, sizeof(msg), "elements nested deeper than the limit of %u", p->lim.max_depth);
        return fail(p, XS_ETOODEEP, XS_PERR_POLICY, msg);
    }
    if (empty) {
        p->ns_scope -= p->tag_ns; /* its declarations go out of scope at once */
    } else {
        if (ns_push(p) < 0)
            return fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
        p->depth++;
    }
    return 0;
}

static int end_tag_done(xs_parser *p)
{
    uint64_t end = p->off + 1;
    switch (p->depth) {
    case 0:
        return fail(p, XS_ENOTWF, XS_PERR_NOT_WELL_FORMED, "end tag without a start tag");
    case 1:
        p->depth = 0;
        return emit_stream_close(p, end);
    case 2:
        p->depth = 1;
        p->ns_scope = 0;
        return emit_stanza(p, end);
    default:
        p->depth--;
        p->ns_scope -= p->ns_open != NULL ? p->ns_open[p->depth] : 0u;
        return 0;
    }
}

/* Starts a tag at the '<' at p->off. Text before it has been handled. */
static void tag_open(xs_parser *p)
{
    p->tag_start = p->off;
    p->st = S_LT;
    p->name_len = 0;
    p->aux = 0;
    p->slash = false;
    p->after_close = false;
    p->tag_attrs = p->tag_ns = 0;
    p->aname = A_NONE;
}

/* The name state after byte c of a start tag outside quotes (not '>', not a quote). */
static unsigned char aname_step(unsigned char a, unsigned char c)
{
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '=')
        return a == A_XMLNS || a == A_DECL_IN || a == A_DECL ? A_DECL : A_NONE;
    switch (a) {
    case A_NONE:
    case A_DECL:
        return c == 'x' ? A_X1 : A_OTHER;
    case A_X1:
    case A_X2:
    case A_X3:
    case A_X4:
        return c == (unsigned char)"xmlns"[a] ? (unsigned char)(a + 1) : A_OTHER;
    case A_XMLNS:
        return c == ':' ? A_DECL_IN : A_OTHER;
    default:
        return a; /* A_DECL_IN, A_OTHER: the rest of the name changes nothing */
    }
}

/* An attribute's value opens at p->off: counts it against --max-attrs, before libxml2 sees any
 * of the tag (it sees a start tag only once its '>' is there). */
static int count_attr(xs_parser *p)
{
    bool decl = p->aname == A_XMLNS || p->aname == A_DECL_IN || p->aname == A_DECL;
    const char *what =
        p->depth == 0 && !p->after_close ? "the stream header has" : "an element has";
    char msg[160];
    p->aname = A_NONE;
    if (!decl) {
        if (++p->tag_attrs <= p->lim.max_attrs)
            return 0;
        snprintf(msg, sizeof(msg), "%s more than %u attributes (limit --max-attrs)", what,
                 p->lim.max_attrs);
        return fail(p, XS_ETOOBIG, XS_PERR_POLICY, msg);
    }
    p->tag_ns++;
    if (p->depth == 0) {
        if (p->tag_ns <= p->lim.max_attrs)
            return 0;
        snprintf(msg, sizeof(msg), "%s more than %u namespace declarations (limit --max-attrs)",
                 what, p->lim.max_attrs);
        return fail(p, XS_ETOOBIG, XS_PERR_POLICY, msg);
    }
    if (++p->ns_scope <= p->lim.max_attrs)
        return 0;
    snprintf(msg, sizeof(msg),
             "a stanza has more than %u namespace declarations in scope (limit --max-attrs)",
             p->lim.max_attrs);
    return fail(p, XS_ETOOBIG, XS_PERR_POLICY, msg);
}

/* The byte limit of the current top-level item, as an offset one past the last allowed byte. */
static uint64_t item_limit(const xs_parser *p)
{
    return p->elem_start + p->lim.max_stanza;
}

static int too_big(xs_parser *p)
{
    char msg[96];
    snprintf(msg, sizeof(msg), "element larger than the limit of %zu bytes", p->lim.max_stanza);
    return fail_at(p, XS_ETOOBIG, XS_PERR_POLICY, p->elem_start, p->elem_line, p->elem_col, msg);
}

/* Scans the current read from p->off. Returns 0 at its end, XS_PARSER_PAUSE when a callback
 * paused (p->off is then just past the event), or a negative error. */
static int scan(xs_parser *p)
{
    const unsigned char *d = (const unsigned char *)p->data;
    const uint64_t end = p->data_base + p->data_len;
    int rc = 0;

#define AT(o) (d[(o)-p->data_base])

    while (p->off < end && rc == 0) {
        /* Bytes inside a top-level item count against the size limit. */
        if ((p->in_elem || p->depth >= 2) && p->off >= item_limit(p) && p->st != S_FAILED)
            return too_big(p);
        uint64_t lim = end;
        if ((p->in_elem || p->depth >= 2) && item_limit(p) < lim)
            lim = item_limit(p);

        unsigned char c = AT(p->off);
        switch (p->st) {
        case S_TEXT:
            if (p->depth >= 2) {
                /* Stanza content: jump to the next '<', counting lines on the way. */
                const unsigned char *s = &AT(p->off);
                const unsigned char *e = s + (lim - p->off);
                const unsigned char *q = memchr(s, '<', (size_t)(e - s));
                const unsigned char *stop = q ? q : e;
                for (const unsigned char *nl = s;
                     (nl = memchr(nl, '\n', (size_t)(stop - nl))) != NULL; nl++) {
                    p->line++;
                    p->line_start = p->data_base + (uint64_t)(nl - d) + 1;
                }
                p->off += (uint64_t)(stop - s);
                if (q != NULL) {
                    tag_open(p);
                    p->off++;
                }
                continue;
            }
            if (c == '<') {
                if (p->in_ws) {
                    rc = emit_keepalive(p, p->off);
                    if (rc != 0)
                        break;
                }
                tag_open(p);
                /* Everything directly inside the stream, and the header itself, is a top-level
                 * item from its first byte on, so its size is bounded from there. */
                if (!p->in_elem)
                    begin_item(p);
                p->off++;
                continue;
            }
            if (!is_ws(c)) {
                if (p->depth == 1)
                    return fail(p, XS_EBADFORMAT, XS_PERR_BAD_FORMAT,
                                "text directly inside the stream (only whitespace keepalives "
                                "are allowed between stanzas)");
                if (p->closed) {
                    /* As for an element after the end (after_close()): not well-formed. */
                    char msg[256] = "text arrived after the stream was closed with </";
                    xs_quote_bytes(msg, sizeof(msg), p->root, p->root_len, NAME_CAP);
                    snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
                             "> (XML allows only whitespace after the stream's end)");
                    return fail(p, XS_ENOTWF, XS_PERR_NOT_WELL_FORMED, msg);
                }
                return fail(p, XS_ENOTWF, XS_PERR_NOT_WELL_FORMED, "text before the stream header");
            }
            if (p->depth == 1 && !p->in_ws) {
                p->in_ws = true;
                p->ws_start = p->off;
            }
            if (c == '\n') {
                p->line++;
                p->line_start = p->off + 1;
            }
            p->off++;
            if (p->depth != 1 && !p->in_elem)
                skip_xml_to(p, p->off);
            continue;

        case S_LT:
            if (c == '/') {
                p->st = S_ENDTAG;
            } else if (c == '?') {
                p->st = S_PI_TARGET;
            } else if (c == '!') {
                p->st = S_BANG;
            } else {
                p->st = S_NAME;
                continue; /* the byte is the name's first */
            }
            p->off++;
            continue;

        case S_NAME: {
            const unsigned char *s = &AT(p->off);
            const unsigned char *e = s + (lim - p->off);
            const unsigned char *q = s;
            while (q < e && !is_ws(*q) && *q != '>' && *q != '/') {
                if (p->name_len < NAME_CAP)
                    p->name[p->name_len] = (char)*q;
                p->name_len++;
                q++;
            }
            p->off += (uint64_t)(q - s);
            if (q == e)
                continue;
            rc = start_name_done(p);
            if (rc < 0)
                return rc;
            p->st = S_ATTRS;
            continue;
        }

        case S_ATTRS: {
            /* Find the next byte that matters. */
            const unsigned char *s = &AT(p->off);
            const unsigned char *e = s + (lim - p->off);
            const unsigned char *q = s;
            unsigned char a = p->aname;
            while (q < e && *q != '>' && *q != '"' && *q != '\'' && *q != '\n')
                a = aname_step(a, *q++);
            p->aname = a;
            if (q > s)
                p->slash = (q[-1] == '/');
            p->off += (uint64_t)(q - s);
            if (q == e)
                continue;
            if (*q == '\n') {
                p->line++;
                p->line_start = p->off + 1;
                p->slash = false;
                p->aname = aname_step(p->aname, '\n');
            } else if (*q == '>') {
                p->st = S_TEXT;
                rc = start_tag_done(p, p->slash);
            } else {
                rc = count_attr(p);
                if (rc < 0)
                    return rc;
                p->quote = (char)*q;
                p->st = S_QUOTE;
                p->slash = false;
            }
            p->off++;
            continue;
        }

        case S_QUOTE: {
            const unsigned char *s = &AT(p->off);
            const unsigned char *e = s + (lim - p->off);
            const unsigned char *q = s;
            while (q < e && *q != (unsigned char)p->quote && *q != '\n')
                q++;
            p->off += (uint64_t)(q - s);
            if (q == e)
                continue;
            if (*q == '\n') {
                p->line++;
                p->line_start = p->off + 1;
            } else {
                p->st = S_ATTRS;
            }
            p->off++;
            continue;
        }

        case S_ENDTAG: {
            const unsigned char *s = &AT(p->off);
            const unsigned char *e = s + (lim - p->off);
            const unsigned char *q = s;
            while (q < e && *q != '>' && *q != '\n')
                q++;
            p->off += (uint64_t)(q - s);
            if (q == e)
                continue;
            if (*q == '>') {
                p->st = S_TEXT;
                rc = end_tag_done(p);
            } else {
                p->line++;
                p->line_start = p->off + 1;
            }
            p->off++;
            continue;
        }

        case S_PI_TARGET: {
            /* Only the XML declaration, and only as the first thing of a stream. */
            static const char xml[] = "xml";
            if (p->aux < 3 && c == (unsigned char)xml[p->aux]) {
                p->aux++;
                p->off++;
                continue;
            }
            if (p->aux == 3 && is_ws(c)) {
                bool at_start = p->depth == 0 && !p->closed && p->tag_start == p->stream_start;
                bool restart = (p->opts & XS_PARSER_AUTO_RESTART) &&
                               (p->depth == 1 || (p->depth == 0 && p->closed));
                if (at_start || restart) {
                    if (restart) {
                        rc = restart_here(p);
                        if (rc < 0)
                            return rc;
                    } else {
                        begin_item(p);
                    }
                    p->st = S_PI_BODY;
                    p->aux = 0;
                    continue;
                }
                return fail_at(p, XS_ERESTRICTED, XS_PERR_RESTRICTED, p->tag_start, p->line,
                               col_of(p, p->tag_start),
                               "XML declaration in the middle of a stream");
            }
            return fail_at(p, XS_ERESTRICTED, XS_PERR_RESTRICTED, p->tag_start, p->line,
                           col_of(p, p->tag_start),
                           "processing instruction (not allowed in XMPP, RFC 6120 11.1)");
        }

        case S_PI_BODY:
            if (c == '>' && p->aux == 1) {
                p->st = S_TEXT;
                p->off++;
                /* The declaration is part of the stream header's span; libxml2 gets it with
                 * the header. Whitespace after it belongs to the header as well. */
                continue;
            }
            p->aux = (c == '?');
            if (c == '\n') {
                p->line++;
                p->line_start = p->off + 1;
            }
            p->off++;
            continue;

        case S_BANG: {
            static const char cdata[] = "[CDATA[";
            if (p->aux == 0 && c == '-')
                return fail_at(p, XS_ERESTRICTED, XS_PERR_RESTRICTED, p->tag_start, p->line,
                               col_of(p, p->tag_start),
                               "comment (not allowed in XMPP, RFC 6120 11.1)");
            if (c == (unsigned char)cdata[p->aux]) {
                p->aux++;
                p->off++;
                if (p->aux == 7) {
                    if (p->depth < 2)
                        return fail_at(p, XS_EBADFORMAT, XS_PERR_BAD_FORMAT, p->tag_start, p->line,
                                       col_of(p, p->tag_start),
                                       "CDATA section directly inside the stream");
                    p->st = S_CDATA;
                    p->aux = 0;
                }
                continue;
            }
            return fail_at(p, XS_ERESTRICTED, XS_PERR_RESTRICTED, p->tag_start, p->line,
                           col_of(p, p->tag_start),
                           "document type declaration (DTDs are not allowed in XMPP, "
                           "RFC 6120 11.1)");
        }

        case S_CDATA:
            if (c == ']') {
                if (p->aux < 2)
                    p->aux++;
            } else if (c == '>' && p->aux == 2) {
                p->st = S_TEXT;
            } else {
                p->aux = 0;
                if (c == '\n') {
                    p->line++;
                    p->line_start = p->off + 1;
                }
            }
            p->off++;
            continue;

        case S_FAILED:
            return p->failed;
        }
    }
#undef AT
    return rc;
}

/* How many bytes at the end of [s, s+n) form an incomplete UTF-8 sequence. */
static size_t utf8_tail(const unsigned char *s, size_t n)
{
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = s[n - k];
        if ((c & 0xC0) == 0x80)
            continue; /* continuation byte: look further back */
        size_t want = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
        return want > k ? k : 0;
    }
    return 0;
}

/* Whether the unfinished stanza of this read waits for its end instead of going to libxml2
 * now (see finish_read()). */
static bool hold_stanza(const xs_parser *p, uint64_t end)
{
    if (!p->fast || !p->in_elem || p->depth < 2 || p->fed > p->elem_start ||
        p->elem_start < p->data_base)
        return false;
    return xs_wf_prefix(p->data + (p->elem_start - p->data_base), (size_t)(end - p->elem_start),
                        p->hdr_ns, p->hdr_n_ns, pool_ptr(p, POOL_REF(p->hdr_default_ns))) == 1;
}

/* At the end of a read: give libxml2 what it can take and keep what is still needed. */
static int finish_read(xs_parser *p)
{
    const uint64_t end = p->data_base + p->data_len;
    uint64_t safe = end;

    if (p->in_ws) {
        /* Whitespace at the end of a read passes at once. */
        int rc = emit_keepalive(p, end);
        if (rc < 0)
            return rc;
        if (p->st != S_FAILED && p->depth == 1) {
            /* The run may go on in the next read; it becomes a new keepalive event. */
        }
    }
    if (p->st != S_TEXT && p->depth <= 1) {
        /* An unfinished tag directly inside the stream (or the header) waits until it is known
         * whether it starts a new stream. */
        safe = p->tag_start;
    } else if (p->in_elem && p->depth == 0) {
        /* An XML declaration whose header has not started: hold it back too. */
        safe = p->elem_start;
    } else if (p->depth >= 2 || p->st != S_TEXT) {
        size_t n = p->data_len;
        size_t from = p->fed > p->data_base ? (size_t)(p->fed - p->data_base) : 0;
        safe = end - utf8_tail((const unsigned char *)p->data + from, n - from);
    }
    if (safe < p->fed)
        safe = p->fed;
    /* An unfinished stanza goes to libxml2 now, so that a fault in it is found before it ends,
     * as a peer waiting for an answer needs; unless it began in this read and the fast check
     * finds every tag and text of it so far well-formed: then there is no fault to find yet, it
     * waits in the pending buffer for its end and the fast path. */
    if ((p->depth >= 2 || p->in_elem) && !hold_stanza(p, end)) {
        int rc = feed_xml_to(p, safe);
        if (rc < 0)
            return rc;
    }

    /* Keep bytes from `keep` on: unfed ones, and the whole current item for XS_PARSER_RAW. */
    uint64_t keep = p->fed < end ? p->fed : end;
    if ((p->opts & XS_PARSER_RAW) && p->in_elem && p->elem_start < keep)
        keep = p->elem_start;
    if (keep >= end) {
        pend_clear(p, end);
        return 0;
    }
    uint64_t pend_end = p->pend_start + p->pend.len;
    if (keep < p->data_base) {
        /* Earlier bytes are in the pending buffer already: drop what precedes `keep`. */
        assert(keep >= p->pend_start && pend_end == p->data_base);
        (void)pend_end;
        size_t drop = (size_t)(keep - p->pend_start);
        memmove(p->pend.data, p->pend.data + drop, p->pend.len - drop);
        p->pend.len -= drop;
        p->pend_start = keep;
        if (buf_append(&p->pend, p->data, p->data_len, p->lim.max_stanza + 8) < 0)
            return fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    } else {
        p->pend.len = 0;
        p->pend_start = keep;
        if (buf_append(&p->pend, p->data + (keep - p->data_base), (size_t)(end - keep),
                       p->lim.max_stanza + 8) < 0)
            return fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    }
    return 0;
}

/* ---- public interface ---------------------------------------------------------------------------
 */

int xs_parser_new(const xs_parser_limits *limits, unsigned options, xs_parser_cb cb, void *user,
                  xs_parser **out)
{
    xs_parser *p = xs_calloc(1, sizeof(*p));
    if (p == NULL)
        return XS_ENOMEM;
    if (limits != NULL)
        p->lim = *limits;
    if (p->lim.max_stanza == 0)
        p->lim.max_stanza = XS_PARSER_DEFAULT_MAX_STANZA;
    if (p->lim.max_depth == 0)
        p->lim.max_depth = XS_PARSER_DEFAULT_MAX_DEPTH;
    if (p->lim.max_attrs == 0)
        p->lim.max_attrs = XS_PARSER_DEFAULT_MAX_ATTRS;
    if (p->lim.max_stanza > (1u << 30) || p->lim.max_attrs > XS_PARSER_MAX_MAX_ATTRS ||
        p->lim.max_depth > (1u << 20)) {
        xs_free(p);
        return XS_EINVAL;
    }
    p->opts = options;
    /* The reference switch (inspect/reference.h) sends every stanza to libxml2 too. */
    p->fast = !(options & XS_PARSER_LIBXML2_ONLY) && !xs_reference_mode();
    p->cb = cb;
    p->user = user;
    p->line = 1;
    p->stream_no = 1;
    int rc = stream_begin(p, 0);
    if (rc < 0) {
        xs_parser_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int xs_parser_feed(xs_parser *p, const char *data, size_t len, size_t *used)
{
    if (used != NULL)
        *used = 0;
    if (p->st == S_FAILED)
        return XS_ESTATE;
    if (p->in_callback)
        return XS_ESTATE;
    if (len == 0)
        return 0;
    p->data = data;
    p->data_base = p->off;
    p->data_len = len;

    int rc = scan(p);
    if (rc == 0)
        rc = finish_read(p);
    else if (rc == XS_PARSER_PAUSE) {
        /* Paused right after an event: everything before p->off was delivered. */
        rc = 0;
        if (p->pend.len > 0 && p->pend_start + p->pend.len <= p->off)
            p->pend.len = 0;
        if (p->pend.len == 0)
            p->pend_start = p->off;
    }
    if (used != NULL)
        *used = (size_t)(p->off - p->data_base);
    p->data = NULL;
    if (rc < 0 && p->st != S_FAILED) {
        /* A callback aborted: the parser cannot go on consistently. */
        p->st = S_FAILED;
        p->failed = rc;
    }
    return rc;
}

int xs_parser_reset(xs_parser *p)
{
    if (p->in_callback)
        return XS_ESTATE;
    p->pend.len = 0;
    p->pend_start = p->off;
    p->st = S_TEXT;
    p->failed = 0;
    int rc = stream_begin(p, p->off);
    if (rc < 0) {
        p->st = S_FAILED;
        p->failed = rc;
        return rc;
    }
    p->stream_no++;
    return 0;
}

int xs_parser_closed(const xs_parser *p)
{
    return p->closed;
}

uint64_t xs_parser_offset(const xs_parser *p)
{
    return p->off;
}

uint64_t xs_parser_fast_stanzas(const xs_parser *p)
{
    return p->n_fast;
}

int xs_parser_trim(xs_parser *p)
{
    if (p->ctxt == NULL || p->in_callback || p->st != S_TEXT || p->depth != 1 || p->in_elem ||
        p->closed || p->fed != p->off || p->sax_depth != 1 || p->hdr_raw.len == 0 ||
        p->have_lx_err || p->sax_node != NULL)
        return 0;
    ctxt_destroy(p);
    if (p->pend.len == 0) {
        buf_free(&p->pend);
        p->pend_start = p->off;
    }
    buf_free(&p->st_strings); /* the last stanza's names and attributes, no longer referenced */
    xs_wf_arena_free(&p->arena);
    xs_free(p->st_attrs);
    p->st_attrs = NULL;
    p->st_n_attrs = p->st_cap_attrs = 0;
    xs_free(p->ns_open); /* no stanza element is open */
    p->ns_open = NULL;
    return 1;
}

void xs_parser_free(xs_parser *p)
{
    if (p == NULL)
        return;
    ctxt_destroy(p);
    xs_wf_arena_free(&p->arena);
    clear_lx_err(p);
    buf_free(&p->pend);
    buf_free(&p->hdr_raw);
    buf_free(&p->st_strings);
    xs_free(p->st_attrs);
    buf_free(&p->hdr_strings);
    xs_free(p->hdr_attrs);
    xs_free(p->hdr_ns);
    xs_free(p->ns_open);
    xs_free(p);
}

xmlDoc *xs_stanza_copy(const xmlNode *node)
{
    xmlDoc *doc = xmlNewDoc(BAD_CAST "1.0");
    if (doc == NULL)
        return NULL;
    xmlNode *copy = xmlDocCopyNode((xmlNode *)node, doc, 1);
    if (copy == NULL) {
        xmlFreeDoc(doc);
        return NULL;
    }
    xmlDocSetRootElement(doc, copy);
    return doc;
}
