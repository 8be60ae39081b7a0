/* The stream parser's libxml2 side: the push parser's context (made, rebuilt after a trim,
 * destroyed), the SAX callbacks that copy the stream header and the stanza's names and attributes
 * out of libxml2's buffers and build trees, and the translation of libxml2's errors into ours.
 * The scanner (scan.c) decides what libxml2 is fed and when; see parser.c.
 */
#include "inspect/alloc.h"
#include "inspect/error.h"
#include "inspect/parser_impl.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include <libxml/SAX2.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>

/* libxml2 interns element and attribute names in a dictionary that lives as long as the parser.
 * A peer inventing new names forever would grow it; this caps it. */
#define DICT_LIMIT (1u << 20)

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
    if (xs_parser_buf_append(&p->hdr_strings, s, len, SIZE_MAX / 2) < 0 ||
        xs_parser_buf_append(&p->hdr_strings, "", 1, SIZE_MAX / 2) < 0) {
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

/* Copies n bytes (NULL: absent) into the stanza's string pool, transformed as `kind` says.
 * Returns the offset + 1, or 0 when absent or out of memory (then sax_oom is set). */
size_t xs_parser_st_intern(xs_parser *p, const char *s, size_t n, st_kind kind)
{
    if (s == NULL)
        return 0;
    size_t at = p->st_strings.len;
    if (xs_parser_buf_reserve(&p->st_strings, n + 1, SIZE_MAX / 2) < 0) {
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

/* Appends an attribute of the stanza (strings as pool offsets until the event). */
void xs_parser_st_attr(xs_parser *p, const xs_wf_str *name, const xs_wf_str *prefix,
                       const xs_wf_str *uri, const xs_wf_str *value, st_kind kind)
{
    if (grow_attrs(&p->st_attrs, &p->st_cap_attrs, p->st_n_attrs + 1) < 0) {
        p->sax_oom = true;
        return;
    }
    xs_attr *a = &p->st_attrs[p->st_n_attrs++];
    a->name = POOL_REF(xs_parser_st_intern(p, name->p, name->n, ST_PLAIN));
    a->prefix = POOL_REF(xs_parser_st_intern(p, prefix->p, prefix->n, ST_PLAIN));
    a->uri = POOL_REF(xs_parser_st_intern(p, uri->p, uri->n, ST_PLAIN));
    a->value = POOL_REF(xs_parser_st_intern(p, value->p ? value->p : "", value->n, kind));
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
            xs_parser_st_attr(p, &n, &pf, &u, &v, ST_LX_VALUE);
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
void xs_parser_drop_node(xs_parser *p)
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

void xs_parser_ctxt_destroy(xs_parser *p)
{
    if (p->sax_node != NULL && p->node_in_arena)
        xs_parser_drop_node(p); /* never to xmlFreeDoc() */
    if (p->ctxt == NULL)
        return;
    if (p->ctxt->myDoc != NULL) {
        xmlFreeDoc(p->ctxt->myDoc);
        p->ctxt->myDoc = NULL;
    }
    xmlFreeParserCtxt(p->ctxt);
    p->ctxt = NULL;
}

void xs_parser_clear_lx_err(xs_parser *p)
{
    xs_free(p->lx_err.message);
    memset(&p->lx_err, 0, sizeof(p->lx_err));
    p->have_lx_err = false;
}

/* After xs_parser_trim(): a new libxml2 context, given the stream header again so that its
 * namespace declarations are in scope (and, with XS_PARSER_TREE, the stream element exists
 * for the stanzas to hang from). No event fires. The header parsed before, so only memory can
 * fail here. */
int xs_parser_ctxt_rebuild(xs_parser *p)
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
        xs_parser_ctxt_destroy(p);
        xs_parser_clear_lx_err(p);
        p->sax_oom = false;
        return XS_ENOMEM;
    }
    return 0;
}

int xs_parser_stream_begin(xs_parser *p, uint64_t at)
{
    xs_parser_ctxt_destroy(p);
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
    xs_parser_clear_lx_err(p);
    return 0;
}

/* Reports the error libxml2 found (or the restriction a SAX callback caught). */
int xs_parser_fail_lx(xs_parser *p)
{
    char msg[256];
    int code = XS_ENOTWF;
    xs_parse_error_kind kind = XS_PERR_NOT_WELL_FORMED;
    unsigned line = p->elem_line, col = p->elem_col;

    if (p->sax_oom || (p->have_lx_err && p->lx_err.code == XML_ERR_NO_MEMORY)) {
        return xs_parser_fail_at(p, XS_ENOMEM, XS_PERR_NO_MEMORY, p->elem_start, line, col,
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
    return xs_parser_fail_at(p, code, kind, at, line, col, msg);
}

/* Gives libxml2 every byte before absolute offset `to`, from the pending buffer and then from
 * the current read. */
int xs_parser_feed_xml_to(xs_parser *p, uint64_t to)
{
    if (p->fed < to && p->ctxt == NULL && xs_parser_ctxt_rebuild(p) < 0)
        return xs_parser_fail(p, XS_ENOMEM, XS_PERR_NO_MEMORY, "out of memory");
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
            return xs_parser_fail_lx(p);
    }
    return 0;
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

void xs_parser_lx_unfinished(xs_parser *p)
{
    if (!p->have_lx_err && !p->sax_restricted)
        sax_serror(p->ctxt, &(xmlError){.level = XML_ERR_FATAL,
                                        .code = XML_ERR_TAG_NOT_FINISHED,
                                        .message = (char *)"element not finished"});
}
