/* Parsing a fragment in a namespace context: see fragment.h. */
#include "inspect/fragment.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <libxml/parser.h>

#include "inspect/buf.h"
#include "inspect/error.h"

/* libxml2 reports the errors of a parse through this; the first one is the one to show (later
 * ones are consequences, such as "premature end of data"). */
typedef struct first_error {
    int code;
    int column;
    char message[200];
} first_error;

static void keep_first_error(void *user, xmlError *e)
{
    xmlParserCtxt *pc = user;
    first_error *fe = pc->_private;
    size_t n;

    if (fe == NULL || fe->code != 0 || e == NULL || e->level < XML_ERR_ERROR)
        return;
    fe->code = e->code != 0 ? e->code : -1;
    fe->column = e->int2;
    snprintf(fe->message, sizeof(fe->message), "%s", e->message ? e->message : "not well-formed");
    n = strlen(fe->message);
    while (n > 0 &&
           (fe->message[n - 1] == '\n' || fe->message[n - 1] == ' ' || fe->message[n - 1] == '.'))
        fe->message[--n] = '\0';
}

/* The wrapper's start tag: the root's name and the declarations, each value escaped. */
static void wrapper_open(const xs_fragment_ctx *ctx, xs_buf *b)
{
    xs_buf_adds(b, "<");
    xs_buf_adds(b, ctx->root != NULL ? ctx->root : "w");
    for (size_t i = 0; i < ctx->n_decls; i++) {
        const xs_attr *d = &ctx->decls[i];

        if (d->uri == NULL)
            continue;
        xs_buf_adds(b, " xmlns");
        if (d->prefix != NULL) {
            xs_buf_adds(b, ":");
            xs_buf_adds(b, d->prefix);
        }
        xs_buf_adds(b, "='");
        xs_buf_add_xml_escaped(b, d->uri, strlen(d->uri), XS_XML_ATTR);
        xs_buf_adds(b, "'");
    }
    xs_buf_adds(b, ">");
}

/* The byte of raw that libxml2's column (in characters, on the wrapped text, whose wrapper takes
 * `wrap` columns) points at. */
static size_t error_offset(const char *raw, size_t len, int column, size_t wrap)
{
    size_t col = column > 0 ? (size_t)column : 0;
    size_t k = col > wrap + 1 ? col - wrap - 1 : 0;
    size_t byte = 0;

    while (byte < len && k > 0) {
        byte++;
        while (byte < len && ((unsigned char)raw[byte] & 0xC0) == 0x80)
            byte++;
        k--;
    }
    return byte;
}

static size_t columns(const char *s, size_t n)
{
    size_t c = 0;

    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            c++;
    return c;
}

static bool is_blank_text(const xmlNode *n)
{
    return n->type == XML_TEXT_NODE &&
           (n->content == NULL ||
            strspn((const char *)n->content, " \t\r\n") == strlen((const char *)n->content));
}

/* Checks the parsed content of the wrapper: nothing restricted anywhere, then its shape. Sets
 * *el to what the caller gets. */
static int check_content(const xs_fragment_ctx *ctx, xmlNode *root, xmlNode **el,
                         xs_fragment_error *err)
{
    xmlNode *one = NULL;
    bool other = false;

    /* Walk the fragment in document order, without recursion. */
    for (xmlNode *n = root->children; n != NULL;) {
        if (n->type == XML_COMMENT_NODE || n->type == XML_PI_NODE ||
            n->type == XML_ENTITY_REF_NODE || n->type == XML_DTD_NODE) {
            snprintf(err->message, sizeof(err->message),
                     "comments, processing instructions and entities are not allowed in XMPP");
            return XS_ERESTRICTED;
        }
        if (n->parent == root) {
            if (n->type == XML_ELEMENT_NODE && one == NULL)
                one = n;
            else if (n->type == XML_ELEMENT_NODE || !is_blank_text(n))
                other = true;
        }
        if (n->type == XML_ELEMENT_NODE && n->children != NULL) {
            n = n->children;
            continue;
        }
        while (n != root && n->next == NULL)
            n = n->parent;
        n = n == root ? NULL : n->next;
    }
    if (root->children == NULL) {
        snprintf(err->message, sizeof(err->message), "empty XML fragment");
        return XS_EBADFORMAT;
    }
    if (ctx->flags & XS_FRAGMENT_CONTENT) {
        *el = root->children;
        return 0;
    }
    if (one == NULL || other) {
        snprintf(err->message, sizeof(err->message), "needs exactly one element (a stanza)");
        return XS_EBADFORMAT;
    }
    *el = one;
    return 0;
}

int xs_fragment_parse(const xs_fragment_ctx *ctx, const char *raw, size_t len, xmlDoc **doc,
                      xmlNode **el, xs_fragment_error *err)
{
    xs_fragment_error spare;
    xmlParserCtxt *pc = NULL;
    xmlDoc *d = NULL;
    first_error fe = {0};
    size_t wrap;
    xs_buf b;
    int rc;

    *doc = NULL;
    *el = NULL;
    if (err == NULL)
        err = &spare;
    memset(err, 0, sizeof(*err));
    /* libxml2 takes an int length. */
    xs_buf_init(&b, INT_MAX);
    wrapper_open(ctx, &b);
    wrap = columns(xs_buf_ptr(&b), xs_buf_len(&b));
    xs_buf_add(&b, raw, len);
    xs_buf_adds(&b, "</");
    xs_buf_adds(&b, ctx->root != NULL ? ctx->root : "w");
    rc = xs_buf_adds(&b, ">");
    if (rc != 0)
        goto out;
    rc = XS_ENOMEM;
    pc = xmlNewParserCtxt();
    if (pc == NULL)
        goto out;
    pc->_private = &fe;
    pc->sax->serror = keep_first_error;
    /* No network, no DTD loading, no entity substitution: the default options are safe with
     * the network off. */
    d = xmlCtxtReadMemory(pc, b.p, (int)b.len, NULL, "UTF-8",
                          XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                              ((ctx->flags & XS_FRAGMENT_NOCDATA) ? XML_PARSE_NOCDATA : 0));
    if (d == NULL || !pc->wellFormed || !pc->nsWellFormed || fe.code != 0) {
        if (fe.code == XML_ERR_NO_MEMORY || pc->errNo == XML_ERR_NO_MEMORY)
            goto out;
        rc = XS_ENOTWF;
        err->off = error_offset(raw, len, fe.column, wrap);
        snprintf(err->message, sizeof(err->message), "%s",
                 fe.code != 0 ? fe.message : "not well-formed");
        goto out;
    }
    rc = check_content(ctx, xmlDocGetRootElement(d), el, err);
    if (rc != 0)
        goto out;
    *doc = d;
    d = NULL;
out:
    xmlFreeDoc(d);
    xmlFreeParserCtxt(pc);
    xs_buf_free(&b);
    return rc;
}
