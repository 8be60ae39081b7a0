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
#include "inspect/parser_impl.h"
#include "inspect/reference.h"
#include "inspect/wf.h"

#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/tree.h>

/* ---- small helpers --------------------------------------------------------------------------- */

int xs_parser_buf_reserve(buf *b, size_t extra, size_t limit)
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

int xs_parser_buf_append(buf *b, const void *src, size_t n, size_t limit)
{
    int rc = xs_parser_buf_reserve(b, n, limit);
    if (rc < 0)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

void xs_parser_buf_free(buf *b)
{
    xs_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
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

/* ---- events ------------------------------------------------------------------------------------
 */

static int emit(xs_parser *p, xs_event *ev)
{
    ev->stream_no = p->stream_no;
    p->in_callback = true;
    int rc = p->cb ? p->cb(p->user, ev) : 0;
    p->in_callback = false;
    return rc;
}

/* Reports an error found at offset `at` and stops the parser. Returns the error code. */
int xs_parser_fail_at(xs_parser *p, int code, xs_parse_error_kind kind, uint64_t at, unsigned line,
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

int xs_parser_fail(xs_parser *p, int code, xs_parse_error_kind kind, const char *msg)
{
    return xs_parser_fail_at(p, code, kind, p->off, p->line, col_of(p, p->off), msg);
}

/* The bytes of [from, to) as one contiguous range: from the read when possible, else gathered in
 * the pending buffer. */
const char *xs_parser_span_bytes(xs_parser *p, uint64_t from, uint64_t to)
{
    if (from >= p->data_base)
        return p->data + (from - p->data_base);
    /* The span began in an earlier read: the pending buffer holds its start. */
    uint64_t pend_end = p->pend_start + p->pend.len;
    assert(from >= p->pend_start && pend_end >= p->data_base);
    size_t have = (size_t)(pend_end - p->data_base);
    size_t more = (size_t)(to - p->data_base);
    if (more > have &&
        xs_parser_buf_append(&p->pend, p->data + have, more - have, SIZE_MAX / 2) < 0)
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
        xs_parser_buf_free(&p->pend);
}

/* Forgets pending bytes before `at` (they were all delivered). */
static void pend_drop_before(xs_parser *p, uint64_t at)
{
    uint64_t pend_end = p->pend_start + p->pend.len;
    if (at >= pend_end)
        pend_clear(p, at);
}

int xs_parser_emit_keepalive(xs_parser *p, uint64_t end)
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

int xs_parser_emit_stream_open(xs_parser *p, uint64_t end)
{
    int rc = xs_parser_feed_xml_to(p, end);
    if (rc < 0)
        return rc;
    if (!p->sax_root)
        return xs_parser_fail_lx(p);
    if (p->sax_oom)
        return xs_parser_fail_lx(p);
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
        ev.raw = xs_parser_span_bytes(p, p->elem_start, end);
        if (ev.raw == NULL)
            return xs_parser_fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
        /* Kept for xs_parser_ctxt_rebuild() (so only a parser with XS_PARSER_RAW can be trimmed);
         * the header is within the stanza limit. */
        p->hdr_raw.len = 0;
        if (xs_parser_buf_append(&p->hdr_raw, ev.raw, ev.len, p->lim.max_stanza + 8) < 0)
            return xs_parser_fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    }
    p->in_elem = false;
    rc = emit(p, &ev);
    pend_drop_before(p, end);
    return rc;
}

/* The fast path of xs_parser_emit_stanza(): the well-formedness check of wf.c on the stanza's
 * bytes, none of which libxml2 has seen. Returns 1 when it passed (the event's names set), 0 when
 * libxml2 must decide, or a negative error. */
static int fast_stanza(xs_parser *p, uint64_t end, xs_event *ev)
{
    if (!p->fast || p->fed > p->elem_start)
        return 0;
    size_t len = (size_t)(end - p->elem_start);
    const char *bytes = xs_parser_span_bytes(p, p->elem_start, end);
    if (bytes == NULL)
        return xs_parser_fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    xs_wf_root rbuf, *root = &rbuf;
    const char *default_ns = pool_ptr(p, POOL_REF(p->hdr_default_ns));
    if (p->opts & XS_PARSER_TREE) {
        /* The check builds the tree as it goes, as libxml2's SAX2 builder would, under the
         * stream element. */
        if (xs_parser_ctxt_rebuild(p) < 0)
            return xs_parser_fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
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
    size_t name = xs_parser_st_intern(p, root->name.p, root->name.n, ST_PLAIN);
    size_t prefix = xs_parser_st_intern(p, root->prefix.p, root->prefix.n, ST_PLAIN);
    size_t uri = xs_parser_st_intern(p, root->ns.p, root->ns.n, ST_PLAIN);
    for (size_t i = 0; i < root->n_attrs && !(p->opts & XS_PARSER_NO_ATTRS); i++)
        xs_parser_st_attr(p, &root->attrs[i].name, &root->attrs[i].prefix, &root->attrs[i].ns,
                          &root->attrs[i].value, ST_RAW_VALUE);
    if (p->sax_oom) {
        p->sax_oom = false;
        return xs_parser_fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    }
    ev->name = st_ptr(p, name);
    ev->prefix = st_ptr(p, prefix);
    ev->ns = st_ptr(p, uri);
    ev->raw = bytes;
    skip_xml_to(p, end);
    p->n_fast++;
    return 1;
}

int xs_parser_emit_stanza(xs_parser *p, uint64_t end)
{
    xs_event ev = {0};
    int rc = fast_stanza(p, end, &ev);
    if (rc < 0)
        return rc;
    if (rc == 1)
        goto emit;
    p->sax_done = false;
    rc = xs_parser_feed_xml_to(p, end);
    if (rc < 0)
        return rc;
    if (!p->sax_done) {
        /* Our scanner and libxml2 disagree about where the element ends; libxml2 is right
         * about well-formedness, so this is reported as malformed input. */
        xs_parser_lx_unfinished(p);
        return xs_parser_fail_lx(p);
    }
    ev.name = (const char *)p->sax_name;
    ev.prefix = (const char *)p->sax_prefix;
    ev.ns = (const char *)p->sax_uri;
    ev.node = p->sax_node;
    if (p->sax_oom)
        return xs_parser_fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    if (p->opts & XS_PARSER_RAW) {
        ev.raw = xs_parser_span_bytes(p, p->elem_start, end);
        if (ev.raw == NULL)
            return xs_parser_fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    }
emit:
    ev.n_children = p->children;
    ev.first_child = p->children > 0 ? (size_t)(p->first_child - p->elem_start) : 0;
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
    xs_parser_drop_node(p);
    pend_drop_before(p, end);
    return rc;
}

int xs_parser_emit_stream_close(xs_parser *p, uint64_t end)
{
    int rc = xs_parser_feed_xml_to(p, end);
    if (rc < 0)
        return rc;
    if (!p->sax_closed)
        return xs_parser_fail_lx(p);
    xs_event ev = {0};
    ev.kind = XS_EV_STREAM_CLOSE;
    ev.offset = p->elem_start;
    ev.len = (size_t)(end - p->elem_start);
    ev.line = p->elem_line;
    ev.column = p->elem_col;
    if (p->opts & XS_PARSER_RAW) {
        ev.raw = xs_parser_span_bytes(p, p->elem_start, end);
        if (ev.raw == NULL)
            return xs_parser_fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    }
    p->in_elem = false;
    p->closed = true;
    rc = emit(p, &ev);
    pend_drop_before(p, end);
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
        int rc = xs_parser_emit_keepalive(p, end);
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
        int rc = xs_parser_feed_xml_to(p, safe);
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
        if (xs_parser_buf_append(&p->pend, p->data, p->data_len, p->lim.max_stanza + 8) < 0)
            return xs_parser_fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    } else {
        p->pend.len = 0;
        p->pend_start = keep;
        if (xs_parser_buf_append(&p->pend, p->data + (keep - p->data_base), (size_t)(end - keep),
                                 p->lim.max_stanza + 8) < 0)
            return xs_parser_fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
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
    int rc = xs_parser_stream_begin(p, 0);
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

    int rc = xs_parser_scan(p);
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
    int rc = xs_parser_stream_begin(p, p->off);
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
    xs_parser_ctxt_destroy(p);
    if (p->pend.len == 0) {
        xs_parser_buf_free(&p->pend);
        p->pend_start = p->off;
    }
    xs_parser_buf_free(
        &p->st_strings); /* the last stanza's names and attributes, no longer referenced */
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
    xs_parser_ctxt_destroy(p);
    xs_wf_arena_free(&p->arena);
    xs_parser_clear_lx_err(p);
    xs_parser_buf_free(&p->pend);
    xs_parser_buf_free(&p->hdr_raw);
    xs_parser_buf_free(&p->st_strings);
    xs_free(p->st_attrs);
    xs_parser_buf_free(&p->hdr_strings);
    xs_free(p->hdr_attrs);
    xs_free(p->hdr_ns);
    xs_free(p->ns_open);
    xs_free(p);
}