/* The stream parser's byte scanner. It sees every byte once and knows where tags begin and end,
 * the element depth, and so the exact span of the stream header, of each stanza and of the
 * closing tag. It refuses DTDs, comments and processing instructions the moment it sees their
 * first bytes, counts attributes and namespace declarations against --max-attrs at each value's
 * opening quote, and checks the size and depth limits before anything is buffered. The events
 * and libxml2's feeding are parser.c's and parser_sax.c's.
 */
#include "inspect/error.h"
#include "inspect/alloc.h"
#include "inspect/parser_impl.h"

#include <stdio.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Starts a top-level item (stream header, stanza or closing tag) at the current '<'. */
static void begin_item(xs_parser *p)
{
    p->in_elem = true;
    p->elem_start = p->tag_start;
    p->elem_line = p->line;
    p->elem_col = col_of(p, p->tag_start);
    /* A trimmed parser gets its context back here (on failure xs_parser_feed_xml_to() reports it).
     */
    (void)xs_parser_ctxt_rebuild(p);
    p->lx_line = (unsigned)(p->ctxt && p->ctxt->input ? p->ctxt->input->line : 1);
    p->lx_col = (unsigned)(p->ctxt && p->ctxt->input ? p->ctxt->input->col : 1);
}

/* A new stream header begins at tag_start while inside (or after) a stream: restart in place.
 * Its bytes have not been given to libxml2 yet (feed() holds back unfinished top-level tags). */
static int restart_here(xs_parser *p)
{
    uint64_t at = p->tag_start;
    int rc = xs_parser_stream_begin(p, at);
    if (rc < 0)
        return xs_parser_fail(p, rc, XS_PERR_NO_MEMORY, "out of memory");
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
    const char *tag = xs_parser_span_bytes(p, p->tag_start, end);
    if (tag == NULL)
        return xs_parser_fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
    xs_quote_bytes(msg, sizeof(msg), tag, (size_t)(end - p->tag_start), 80);
    snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
             "' arrived after the stream was closed with </");
    xs_quote_bytes(msg, sizeof(msg), p->root, p->root_len, NAME_CAP);
    snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
             "> (XML allows only whitespace after the stream's end)");
    return xs_parser_fail_at(p, XS_ENOTWF, XS_PERR_NOT_WELL_FORMED, p->tag_start, p->elem_line,
                             p->elem_col, msg);
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
            return xs_parser_fail(p, XS_EBADFORMAT, XS_PERR_BAD_FORMAT,
                                  "the stream element is empty: expected <stream:stream ...>");
        p->depth = 1;
        return xs_parser_emit_stream_open(p, end);
    }
    if (p->depth == 1) {
        p->children = 0;
        p->first_child = 0;
        if (empty) {
            p->ns_scope = 0;
            return xs_parser_emit_stanza(p, end);
        }
        if (ns_push(p) < 0)
            return xs_parser_fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
        p->depth = 2;
        return 0;
    }
    if (p->depth == 2 && p->children++ == 0)
        p->first_child = p->tag_start;
    if (p->depth > p->lim.max_depth) {
        char msg[96];
        snprintf(msg, sizeof(msg), "elements nested deeper than the limit of %u", p->lim.max_depth);
        return xs_parser_fail(p, XS_ETOODEEP, XS_PERR_POLICY, msg);
    }
    if (empty) {
        p->ns_scope -= p->tag_ns; /* its declarations go out of scope at once */
    } else {
        if (ns_push(p) < 0)
            return xs_parser_fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
        p->depth++;
    }
    return 0;
}

static int end_tag_done(xs_parser *p)
{
    uint64_t end = p->off + 1;
    switch (p->depth) {
    case 0:
        return xs_parser_fail(p, XS_ENOTWF, XS_PERR_NOT_WELL_FORMED, "end tag without a start tag");
    case 1:
        p->depth = 0;
        return xs_parser_emit_stream_close(p, end);
    case 2:
        p->depth = 1;
        p->ns_scope = 0;
        return xs_parser_emit_stanza(p, end);
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
        return xs_parser_fail(p, XS_ETOOBIG, XS_PERR_POLICY, msg);
    }
    p->tag_ns++;
    if (p->depth == 0) {
        if (p->tag_ns <= p->lim.max_attrs)
            return 0;
        snprintf(msg, sizeof(msg), "%s more than %u namespace declarations (limit --max-attrs)",
                 what, p->lim.max_attrs);
        return xs_parser_fail(p, XS_ETOOBIG, XS_PERR_POLICY, msg);
    }
    if (++p->ns_scope <= p->lim.max_attrs)
        return 0;
    snprintf(msg, sizeof(msg),
             "a stanza has more than %u namespace declarations in scope (limit --max-attrs)",
             p->lim.max_attrs);
    return xs_parser_fail(p, XS_ETOOBIG, XS_PERR_POLICY, msg);
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
    return xs_parser_fail_at(p, XS_ETOOBIG, XS_PERR_POLICY, p->elem_start, p->elem_line,
                             p->elem_col, msg);
}

/* ---- one function per scanner state -------------------------------------------------------------
 *
 * Each takes the bytes from p->off up to `lim` (the end of the read, or the current item's size
 * limit if that comes first; p->off < lim) and returns 0 to go on, or what xs_parser_scan()
 * returns: XS_PARSER_PAUSE or a negative error. They are static inline: they are the hot path.
 */

/* The byte at absolute offset o of the current read. */
static inline const unsigned char *at(const xs_parser *p, uint64_t o)
{
    return (const unsigned char *)p->data + (o - p->data_base);
}

/* Counts the line ended by the '\n' at absolute offset nl: the one place the line and the start
 * of the line (for columns) are moved on. */
static inline void newline_at(xs_parser *p, uint64_t nl)
{
    p->line++;
    p->line_start = nl + 1;
}

/* Stanza content: jumps to the next '<', counting lines on the way. */
static inline int scan_content(xs_parser *p, uint64_t lim)
{
    const unsigned char *s = at(p, p->off);
    const unsigned char *e = s + (lim - p->off);
    const unsigned char *q = memchr(s, '<', (size_t)(e - s));
    const unsigned char *stop = q ? q : e;
    for (const unsigned char *nl = s; (nl = memchr(nl, '\n', (size_t)(stop - nl))) != NULL; nl++)
        newline_at(p, p->off + (uint64_t)(nl - s));
    p->off += (uint64_t)(stop - s);
    if (q != NULL) {
        tag_open(p);
        p->off++;
    }
    return 0;
}

/* Text that is not whitespace outside any stanza. */
static int stray_text(xs_parser *p)
{
    if (p->depth == 1)
        return xs_parser_fail(p, XS_EBADFORMAT, XS_PERR_BAD_FORMAT,
                              "text directly inside the stream (only whitespace keepalives "
                              "are allowed between stanzas)");
    if (p->closed) {
        /* As for an element after the end (after_close()): not well-formed. */
        char msg[256] = "text arrived after the stream was closed with </";
        xs_quote_bytes(msg, sizeof(msg), p->root, p->root_len, NAME_CAP);
        snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
                 "> (XML allows only whitespace after the stream's end)");
        return xs_parser_fail(p, XS_ENOTWF, XS_PERR_NOT_WELL_FORMED, msg);
    }
    return xs_parser_fail(p, XS_ENOTWF, XS_PERR_NOT_WELL_FORMED, "text before the stream header");
}

/* Between tags. */
static inline int scan_text(xs_parser *p, uint64_t lim)
{
    if (p->depth >= 2)
        return scan_content(p, lim);
    unsigned char c = *at(p, p->off);
    if (c == '<') {
        if (p->in_ws) {
            int rc = xs_parser_emit_keepalive(p, p->off);
            if (rc != 0)
                return rc;
        }
        tag_open(p);
        /* Everything directly inside the stream, and the header itself, is a top-level item
         * from its first byte on, so its size is bounded from there. */
        if (!p->in_elem)
            begin_item(p);
        p->off++;
        return 0;
    }
    if (!is_ws(c))
        return stray_text(p);
    if (p->depth == 1 && !p->in_ws) {
        p->in_ws = true;
        p->ws_start = p->off;
    }
    if (c == '\n')
        newline_at(p, p->off);
    p->off++;
    if (p->depth != 1 && !p->in_elem)
        skip_xml_to(p, p->off);
    return 0;
}

/* After '<'. */
static inline int scan_lt(xs_parser *p)
{
    unsigned char c = *at(p, p->off);
    if (c == '/') {
        p->st = S_ENDTAG;
    } else if (c == '?') {
        p->st = S_PI_TARGET;
    } else if (c == '!') {
        p->st = S_BANG;
    } else {
        p->st = S_NAME;
        return 0; /* the byte is the name's first */
    }
    p->off++;
    return 0;
}

/* In the name of a start tag. */
static inline int scan_name(xs_parser *p, uint64_t lim)
{
    const unsigned char *s = at(p, p->off);
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
        return 0;
    int rc = start_name_done(p);
    if (rc < 0)
        return rc;
    p->st = S_ATTRS;
    return 0;
}

/* The first byte of [q, e) that is c1, c2, c3 or c4 (pass a repeat for fewer), or e. Sixteen
 * bytes at a time where SSE2 is there: attribute values and the space between them are short,
 * but they are most of a stanza's bytes outside text. */
static inline const unsigned char *find_any4(const unsigned char *q, const unsigned char *e,
                                             unsigned char c1, unsigned char c2, unsigned char c3,
                                             unsigned char c4)
{
#if defined(__SSE2__)
    const __m128i v1 = _mm_set1_epi8((char)c1), v2 = _mm_set1_epi8((char)c2);
    const __m128i v3 = _mm_set1_epi8((char)c3), v4 = _mm_set1_epi8((char)c4);
    while (e - q >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)q);
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, v1), _mm_cmpeq_epi8(v, v2)),
                                   _mm_or_si128(_mm_cmpeq_epi8(v, v3), _mm_cmpeq_epi8(v, v4)));
        int m = _mm_movemask_epi8(hit);
        if (m != 0)
            return q + __builtin_ctz((unsigned)m);
        q += 16;
    }
#endif
    while (q < e && *q != c1 && *q != c2 && *q != c3 && *q != c4)
        q++;
    return q;
}

static inline int aname_sep(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '=';
}

/* The name state (aname_step) after the bytes [s, q) of a start tag, which hold no quote, given
 * p->aname before s. Only the last name matters: a separator after "xmlns" or "xmlns:..."
 * keeps its meaning up to the value, any other name resets it. So this looks back over the
 * separators before q and the name before them, and decides from that name alone, without a
 * state change per byte: most names do not even start with 'x'. */
static unsigned char aname_at(const xs_parser *p, const unsigned char *s, const unsigned char *q,
                              const unsigned char *e)
{
    const unsigned char *r = q;
    while (r > s && aname_sep(r[-1]))
        r--;
    bool sep = r < q;
    const unsigned char *b = r;
    while (b > s && !aname_sep(b[-1]))
        b--;
    unsigned char a;
    if (b == s || (!sep && q == e)) {
        /* A name that starts at s may have begun before it (a read, or a line, ended in it);
         * one that reaches the end of the read may go on in the next: step through it. */
        a = b == s ? p->aname : A_NONE;
        for (; b < r; b++)
            a = aname_step(a, *b);
    } else if (*b != 'x' || r - b < 5 || memcmp(b, "xmlns", 5) != 0) {
        a = A_OTHER;
    } else {
        a = r - b == 5 ? A_XMLNS : b[5] == ':' ? A_DECL_IN : A_OTHER;
    }
    return sep ? aname_step(a, ' ') : a;
}

/* In a start tag after its name: finds the next byte that matters. */
static inline int scan_attrs(xs_parser *p, uint64_t lim)
{
    const unsigned char *s = at(p, p->off);
    const unsigned char *e = s + (lim - p->off);
    int rc = 0;
    const unsigned char *q = find_any4(s, e, '>', '"', '\'', '\n');
    if (q > s)
        p->slash = (q[-1] == '/');
    p->off += (uint64_t)(q - s);
    if (q == e || *q != '>')
        p->aname = aname_at(p, s, q, e);
    if (q == e)
        return 0;
    if (*q == '\n') {
        newline_at(p, p->off);
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
    return rc;
}

/* In a quoted attribute value. */
static inline int scan_quote(xs_parser *p, uint64_t lim)
{
    const unsigned char *s = at(p, p->off);
    const unsigned char *e = s + (lim - p->off);
    const unsigned char *q = find_any4(s, e, (unsigned char)p->quote, '\n', '\n', '\n');
    p->off += (uint64_t)(q - s);
    if (q == e)
        return 0;
    if (*q == '\n')
        newline_at(p, p->off);
    else
        p->st = S_ATTRS;
    p->off++;
    return 0;
}

/* In an end tag. */
static inline int scan_endtag(xs_parser *p, uint64_t lim)
{
    const unsigned char *s = at(p, p->off);
    const unsigned char *e = s + (lim - p->off);
    const unsigned char *q = s;
    int rc = 0;
    while (q < e && *q != '>' && *q != '\n')
        q++;
    p->off += (uint64_t)(q - s);
    if (q == e)
        return 0;
    if (*q == '>') {
        p->st = S_TEXT;
        rc = end_tag_done(p);
    } else {
        newline_at(p, p->off);
    }
    p->off++;
    return rc;
}

/* Reports an error in the current tag, placed at its '<'. */
static int fail_at_tag(xs_parser *p, int code, xs_parse_error_kind kind, const char *msg)
{
    return xs_parser_fail_at(p, code, kind, p->tag_start, p->line, col_of(p, p->tag_start), msg);
}

/* After "<?": only the XML declaration, and only as the first thing of a stream. */
static inline int scan_pi_target(xs_parser *p)
{
    static const char xml[] = "xml";
    unsigned char c = *at(p, p->off);
    if (p->aux < 3 && c == (unsigned char)xml[p->aux]) {
        p->aux++;
        p->off++;
        return 0;
    }
    if (p->aux != 3 || !is_ws(c))
        return fail_at_tag(p, XS_ERESTRICTED, XS_PERR_RESTRICTED,
                           "processing instruction (not allowed in XMPP, RFC 6120 11.1)");
    bool at_start = p->depth == 0 && !p->closed && p->tag_start == p->stream_start;
    bool restart =
        (p->opts & XS_PARSER_AUTO_RESTART) && (p->depth == 1 || (p->depth == 0 && p->closed));
    if (!at_start && !restart)
        return fail_at_tag(p, XS_ERESTRICTED, XS_PERR_RESTRICTED,
                           "XML declaration in the middle of a stream");
    if (restart) {
        int rc = restart_here(p);
        if (rc < 0)
            return rc;
    } else {
        begin_item(p);
    }
    p->st = S_PI_BODY;
    p->aux = 0;
    return 0;
}

/* In the XML declaration, looking for "?>". */
static inline int scan_pi_body(xs_parser *p)
{
    unsigned char c = *at(p, p->off);
    if (c == '>' && p->aux == 1) {
        /* The declaration is part of the stream header's span; libxml2 gets it with the header.
         * Whitespace after it belongs to the header as well. */
        p->st = S_TEXT;
        p->off++;
        return 0;
    }
    p->aux = (c == '?');
    if (c == '\n')
        newline_at(p, p->off);
    p->off++;
    return 0;
}

/* After "<!": only a CDATA section, and only inside a stanza. */
static inline int scan_bang(xs_parser *p)
{
    static const char cdata[] = "[CDATA[";
    unsigned char c = *at(p, p->off);
    if (p->aux == 0 && c == '-')
        return fail_at_tag(p, XS_ERESTRICTED, XS_PERR_RESTRICTED,
                           "comment (not allowed in XMPP, RFC 6120 11.1)");
    if (c != (unsigned char)cdata[p->aux])
        return fail_at_tag(p, XS_ERESTRICTED, XS_PERR_RESTRICTED,
                           "document type declaration (DTDs are not allowed in XMPP, "
                           "RFC 6120 11.1)");
    p->aux++;
    p->off++;
    if (p->aux == 7) {
        if (p->depth < 2)
            return fail_at_tag(p, XS_EBADFORMAT, XS_PERR_BAD_FORMAT,
                               "CDATA section directly inside the stream");
        p->st = S_CDATA;
        p->aux = 0;
    }
    return 0;
}

/* In a CDATA section, looking for "]]>". */
static inline int scan_cdata(xs_parser *p)
{
    unsigned char c = *at(p, p->off);
    if (c == ']') {
        if (p->aux < 2)
            p->aux++;
    } else if (c == '>' && p->aux == 2) {
        p->st = S_TEXT;
    } else {
        p->aux = 0;
        if (c == '\n')
            newline_at(p, p->off);
    }
    p->off++;
    return 0;
}

/* One step in the current state. */
static inline int scan_step(xs_parser *p, uint64_t lim)
{
    switch (p->st) {
    case S_TEXT:
        return scan_text(p, lim);
    case S_LT:
        return scan_lt(p);
    case S_NAME:
        return scan_name(p, lim);
    case S_ATTRS:
        return scan_attrs(p, lim);
    case S_QUOTE:
        return scan_quote(p, lim);
    case S_ENDTAG:
        return scan_endtag(p, lim);
    case S_PI_TARGET:
        return scan_pi_target(p);
    case S_PI_BODY:
        return scan_pi_body(p);
    case S_BANG:
        return scan_bang(p);
    case S_CDATA:
        return scan_cdata(p);
    case S_FAILED:
        break;
    }
    return p->failed;
}

int xs_parser_scan(xs_parser *p)
{
    const uint64_t end = p->data_base + p->data_len;
    int rc = 0;

    while (p->off < end && rc == 0) {
        /* Bytes inside a top-level item count against the size limit. */
        uint64_t lim = end;
        if (p->in_elem || p->depth >= 2) {
            uint64_t item_end = item_limit(p);
            if (p->off >= item_end && p->st != S_FAILED)
                return too_big(p);
            if (item_end < lim)
                lim = item_end;
        }
        rc = scan_step(p, lim);
    }
    return rc;
}
