/* The printers for people: pretty (the XML indented from the tree) and compact (one line per
 * event), and the header line they and the notes share. See print.h for the formats. */
#include <stdint.h>
#include <string.h>

#include <libxml/tree.h>

#include "inspect/error.h"
#include "inspect/print_impl.h"
#include "inspect/utf8.h"

/* Characters of XML shown on a compact line. */
#define COMPACT_XML_CHARS 200
/* Deeper elements are elided by the pretty printer (the parser allows 64 by default). */
#define PRETTY_MAX_DEPTH 256u

/* ---- the event's names and XML ------------------------------------------------------------- */

/* The element's qualified name. */
static void out_qname(xs_buf *b, const char *prefix, const char *name)
{
    if (prefix != NULL && prefix[0] != '\0') {
        xs_term_esc_str(b, prefix, XS_ESC_LINE);
        xs_print_str(b, ":");
    }
    xs_term_esc_str(b, name != NULL ? name : "?", XS_ESC_LINE);
}

static void event_qname(xs_buf *b, const xs_event *ev, const xs_redaction *red)
{
    const xmlNode *n = xs_print_event_node(ev, red);

    if (ev->name != NULL)
        out_qname(b, ev->prefix, ev->name);
    else if (n != NULL)
        out_qname(b, n->ns != NULL ? (const char *)n->ns->prefix : NULL, (const char *)n->name);
    else
        xs_print_str(b, xs_event_kind_name(ev->kind));
}

/* The XML text of an event: the masked copy, the raw span, or, without either, the tree
 * serialized into `tmp`. Sets *s to NULL when there is none. */
static void event_xml(const xs_event *ev, const xs_redaction *red, xs_buf *tmp, const char **s,
                      size_t *len)
{
    *s = NULL;
    *len = 0;
    if (red->xml != NULL) {
        *s = red->xml;
        *len = red->xml_len;
    } else if (ev->raw != NULL && ev->kind != XS_EV_ERROR) {
        *s = ev->raw;
        *len = ev->len;
    } else if (ev->kind == XS_EV_STANZA && ev->node != NULL) {
        xmlBuffer *xb = xmlBufferCreate();

        xs_print_scratch_clear(tmp);
        if (xb == NULL) {
            tmp->err = XS_ENOMEM;
            return;
        }
        /* xmlNodeDump() only reads the node; its prototype predates const. */
        if (xmlNodeDump(xb, ev->node->doc, (xmlNode *)ev->node, 0, 0) < 0)
            tmp->err = XS_ENOMEM;
        else
            xs_buf_add(tmp, xmlBufferContent(xb), (size_t)xmlBufferLength(xb));
        xmlBufferFree(xb);
        *s = tmp->p;
        *len = tmp->len;
    }
}

/* ---- header line (pretty, compact, notes) -------------------------------------------------- */

static void out_head(const xs_printer *p, xs_buf *b, const xs_print_meta *m)
{
    struct timespec ts;
    struct tm tm;
    const char *dir = m != NULL ? m->direction : NULL;

    bool timed = m == NULL || !m->untimed;
    if (timed) {
        xs_print_event_time(m, &ts);
        if (localtime_r(&ts.tv_sec, &tm) == NULL)
            memset(&tm, 0, sizeof(tm));
        xs_print_sgr(p, b, SGR_TIME);
        xs_print_fmt(b, "%02d:%02d:%02d.%03ld", tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000L);
        xs_print_sgr(p, b, SGR_RESET);
    }
    if (m != NULL && m->session != NULL) {
        if (timed)
            xs_print_str(b, " ");
        xs_term_esc_str(b, m->session, XS_ESC_LINE);
    }
    xs_print_str(b, " ");
    if (dir == NULL) {
        xs_print_str(b, "   ");
    } else if (strcmp(dir, "c2s") == 0) {
        xs_print_sgr(p, b, SGR_C2S);
        xs_print_str(b, "C→S");
        xs_print_sgr(p, b, SGR_RESET);
    } else if (strcmp(dir, "s2c") == 0) {
        xs_print_sgr(p, b, SGR_S2C);
        xs_print_str(b, "S→C");
        xs_print_sgr(p, b, SGR_RESET);
    } else {
        xs_term_esc_str(b, dir, XS_ESC_LINE);
    }
    if (m != NULL && m->phase != NULL) {
        xs_print_str(b, " [");
        xs_term_esc_str(b, m->phase, XS_ESC_LINE);
        xs_print_str(b, "]");
    }
}

/* An IQ answer's round trip, after the size: " ↩ 12.4 ms" (or " ↩" when the time is unknown). */
static void out_rtt(const xs_printer *p, xs_buf *b, const xs_print_meta *m)
{
    const xs_annot *a = m != NULL ? m->annot : NULL;
    if (a == NULL || a->pair_dir == NULL)
        return;
    xs_print_sgr(p, b, SGR_NOTE);
    if (a->rtt_ms >= 0)
        xs_print_fmt(b, " ↩ %.1f ms", a->rtt_ms);
    else
        xs_print_str(b, " ↩");
    xs_print_sgr(p, b, SGR_RESET);
}

/* "id: text (ref)" of one check. */
static void check_body(xs_buf *b, const xs_check_hit *h)
{
    xs_print_str(b, h->id);
    xs_print_str(b, ": ");
    xs_term_esc_str(b, h->text, XS_ESC_LINE);
    if (h->ref != NULL) {
        xs_print_str(b, " (");
        xs_print_str(b, h->ref);
        xs_print_str(b, ")");
    }
}

/* The checks of an event, one line each under it: "  ! iq-no-id: text (RFC 6120 §8.2.3)", then
 * its explanation, "  ? " before each line. */
void xs_print_text_checks(const xs_printer *p, xs_buf *b, const xs_print_meta *m)
{
    const xs_annot *a = m != NULL ? m->annot : NULL;
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->n_checks; i++) {
        xs_print_indent(b, 2);
        xs_print_sgr(p, b, SGR_WARN);
        xs_print_str(b, "! ");
        check_body(b, &a->checks[i]);
        xs_print_sgr(p, b, SGR_RESET);
        xs_print_str(b, "\n");
    }
    if (a->more_checks > 0) {
        xs_print_indent(b, 2);
        xs_print_fmt(b, "! and %zu more checks\n", a->more_checks);
    }
    if (a->explain_len > 0) {
        const char *s = a->explain, *end = a->explain + a->explain_len;
        while (s < end) {
            const char *nl = memchr(s, '\n', (size_t)(end - s));
            size_t n = (size_t)((nl != NULL ? nl : end) - s);
            xs_print_indent(b, 2);
            xs_print_sgr(p, b, SGR_TIME);
            xs_print_str(b, "? ");
            xs_term_esc(b, s, n, XS_ESC_LINE, 0);
            xs_print_sgr(p, b, SGR_RESET);
            xs_print_str(b, "\n");
            s += n + 1;
        }
    }
}

/* Header fields shared by pretty and compact after the time and direction: kind and size. */
static void out_kind(const xs_printer *p, xs_buf *b, const xs_event *ev, const xs_redaction *red)
{
    xs_print_str(b, " ");
    xs_print_sgr(p, b, ev->kind == XS_EV_ERROR ? SGR_ERROR : SGR_KIND);
    if (ev->kind == XS_EV_STANZA)
        event_qname(b, ev, red);
    else
        xs_print_str(b, xs_event_kind_name(ev->kind));
    xs_print_sgr(p, b, SGR_RESET);
    if (ev->kind == XS_EV_STREAM_OPEN)
        xs_print_fmt(b, " #%u", ev->stream_no);
}

static void out_error_detail(const xs_printer *p, xs_buf *b, const xs_event *ev)
{
    const char *cond = xs_parse_error_condition(ev->error_kind);

    xs_print_sgr(p, b, SGR_ERROR);
    xs_print_str(b, xs_errname(ev->error));
    xs_print_sgr(p, b, SGR_RESET);
    if (cond != NULL) {
        xs_print_str(b, " <");
        xs_print_str(b, cond);
        xs_print_str(b, "/>");
    }
    xs_print_fmt(b, " at %u:%u (offset %llu)", ev->line, ev->column,
                 (unsigned long long)ev->offset);
    if (ev->message != NULL) {
        xs_print_str(b, ": ");
        xs_term_esc_str(b, ev->message, XS_ESC_LINE);
    }
}

/* ---- pretty -------------------------------------------------------------------------------- */

static void pretty_attr(const xs_printer *p, xs_buf *b, const char *prefix, const char *name)
{
    xs_print_str(b, " ");
    xs_print_sgr(p, b, SGR_ATTR);
    out_qname(b, prefix, name);
    xs_print_sgr(p, b, SGR_RESET);
    xs_print_str(b, "=");
    xs_print_sgr(p, b, SGR_VALUE);
    xs_print_str(b, "'");
}

static void pretty_attr_end(const xs_printer *p, xs_buf *b)
{
    xs_print_str(b, "'");
    xs_print_sgr(p, b, SGR_RESET);
}

static void pretty_nsdecl(const xs_printer *p, xs_buf *b, const char *prefix, const char *uri)
{
    if (prefix != NULL)
        pretty_attr(p, b, "xmlns", prefix);
    else
        pretty_attr(p, b, NULL, "xmlns");
    xs_term_esc_str(b, uri, XS_ESC_ATTR);
    pretty_attr_end(p, b);
}

static void pretty_tag_name(const xs_printer *p, xs_buf *b, const char *before, const xmlNode *n,
                            const char *after)
{
    xs_print_sgr(p, b, SGR_ELEM);
    xs_print_str(b, before);
    out_qname(b, n->ns != NULL ? (const char *)n->ns->prefix : NULL, (const char *)n->name);
    xs_print_str(b, after);
    xs_print_sgr(p, b, SGR_RESET);
}

/* A text node inside an element that also has element children: on lines of its own. */
static void pretty_text_block(xs_buf *b, const char *s, unsigned indent)
{
    size_t len = strlen(s), i = 0;

    while (i < len && xs_print_xml_space(s[i]))
        i++;
    while (len > i && xs_print_xml_space(s[len - 1]))
        len--;
    while (i < len) {
        const char *nl = memchr(s + i, '\n', len - i);
        size_t end = nl != NULL ? (size_t)(nl - s) : len, e = end;

        while (e > i && s[e - 1] == '\r')
            e--;
        xs_print_indent(b, indent);
        xs_term_esc(b, s + i, e - i, XS_ESC_TEXT, 0);
        xs_print_str(b, "\n");
        i = end + 1;
    }
}

static int blank(const char *s)
{
    for (; s != NULL && *s != '\0'; s++)
        if (!xs_print_xml_space(*s))
            return 0;
    return 1;
}

static void pretty_element(const xs_printer *p, xs_buf *b, const xmlNode *n, unsigned depth)
{
    unsigned indent = 2 + 2 * depth;
    int elements = 0, text = 0, newline = 0;

    xs_print_indent(b, indent);
    if (depth > PRETTY_MAX_DEPTH) {
        xs_print_str(b, "…\n");
        return;
    }
    pretty_tag_name(p, b, "<", n, "");
    for (const xmlNs *ns = n->nsDef; ns != NULL; ns = ns->next)
        pretty_nsdecl(p, b, (const char *)ns->prefix, (const char *)ns->href);
    for (const xmlAttr *a = n->properties; a != NULL; a = a->next) {
        pretty_attr(p, b, a->ns != NULL ? (const char *)a->ns->prefix : NULL,
                    (const char *)a->name);
        for (const xmlNode *k = a->children; k != NULL; k = k->next) {
            if (k->type == XML_TEXT_NODE)
                xs_term_esc_str(b, (const char *)k->content, XS_ESC_ATTR);
            else if (k->type == XML_ENTITY_REF_NODE)
                xs_print_fmt(b, "&%s;", (const char *)k->name);
        }
        pretty_attr_end(p, b);
    }
    for (const xmlNode *k = n->children; k != NULL; k = k->next) {
        if (k->type == XML_ELEMENT_NODE) {
            elements++;
        } else if (k->type == XML_TEXT_NODE || k->type == XML_CDATA_SECTION_NODE ||
                   k->type == XML_ENTITY_REF_NODE) {
            text++;
            if (k->content != NULL && strchr((const char *)k->content, '\n') != NULL)
                newline = 1;
        }
    }
    if (elements == 0 && text == 0) {
        xs_print_sgr(p, b, SGR_ELEM);
        xs_print_str(b, "/>");
        xs_print_sgr(p, b, SGR_RESET);
        xs_print_str(b, "\n");
        return;
    }
    xs_print_sgr(p, b, SGR_ELEM);
    xs_print_str(b, ">");
    xs_print_sgr(p, b, SGR_RESET);
    if (elements == 0 && !newline) {
        /* Text only, on one line: <body>hello</body>. */
        for (const xmlNode *k = n->children; k != NULL; k = k->next) {
            if (k->type == XML_ENTITY_REF_NODE)
                xs_print_fmt(b, "&%s;", (const char *)k->name);
            else if (k->type == XML_TEXT_NODE || k->type == XML_CDATA_SECTION_NODE)
                xs_term_esc_str(b, (const char *)k->content, XS_ESC_TEXT);
        }
        pretty_tag_name(p, b, "</", n, ">");
        xs_print_str(b, "\n");
        return;
    }
    xs_print_str(b, "\n");
    for (const xmlNode *k = n->children; k != NULL && b->err == 0; k = k->next) {
        if (k->type == XML_ELEMENT_NODE)
            pretty_element(p, b, k, depth + 1);
        else if ((k->type == XML_TEXT_NODE || k->type == XML_CDATA_SECTION_NODE) &&
                 !blank((const char *)k->content))
            pretty_text_block(b, (const char *)k->content, indent + 2);
        else if (k->type == XML_ENTITY_REF_NODE) {
            xs_print_indent(b, indent + 2);
            xs_print_fmt(b, "&%s;\n", (const char *)k->name);
        }
    }
    xs_print_indent(b, indent);
    pretty_tag_name(p, b, "</", n, ">");
    xs_print_str(b, "\n");
}

/* The stream header from the event's fields: <stream:stream xmlns=... to=... version=...>. */
static void pretty_stream_tag(const xs_printer *p, xs_buf *b, const xs_event *ev)
{
    xs_print_sgr(p, b, SGR_ELEM);
    xs_print_str(b, "<");
    out_qname(b, ev->prefix, ev->name != NULL ? ev->name : "stream");
    xs_print_sgr(p, b, SGR_RESET);
    for (size_t i = 0; ev->nsdecls != NULL && i < ev->n_nsdecls; i++)
        pretty_nsdecl(p, b, ev->nsdecls[i].prefix, ev->nsdecls[i].uri);
    for (size_t i = 0; ev->attrs != NULL && i < ev->n_attrs; i++) {
        pretty_attr(p, b, ev->attrs[i].prefix, ev->attrs[i].name);
        xs_term_esc_str(b, ev->attrs[i].value, XS_ESC_ATTR);
        pretty_attr_end(p, b);
    }
    xs_print_sgr(p, b, SGR_ELEM);
    xs_print_str(b, ">");
    xs_print_sgr(p, b, SGR_RESET);
}

/* The rules that applied to a stanza: one line each, then the verdict and the new XML. */
static void pretty_rules(const xs_printer *p, xs_buf *b, const xs_print_meta *m)
{
    if (m == NULL || m->n_rules == 0)
        return;
    for (size_t i = 0; i < m->n_rules; i++) {
        xs_print_indent(b, 2);
        xs_print_sgr(p, b, SGR_NOTE);
        xs_print_str(b, "rule \"");
        xs_term_esc_str(b, m->rules[i].rule, XS_ESC_LINE);
        xs_print_str(b, "\": ");
        xs_term_esc_str(b, m->rules[i].action, XS_ESC_LINE);
        if (m->rules[i].detail != NULL) {
            xs_print_str(b, " ");
            xs_term_esc_str(b, m->rules[i].detail, XS_ESC_LINE);
        }
        xs_print_sgr(p, b, SGR_RESET);
        xs_print_str(b, "\n");
    }
    if (m->verdict != NULL) {
        xs_print_indent(b, 2);
        xs_print_sgr(p, b, SGR_NOTE);
        xs_print_str(b, "=> ");
        xs_term_esc_str(b, m->verdict, XS_ESC_LINE);
        if (m->rewritten != NULL) {
            xs_print_str(b, ": ");
            xs_term_esc_str(b, m->rewritten, XS_ESC_LINE);
        }
        xs_print_sgr(p, b, SGR_RESET);
        xs_print_str(b, "\n");
    }
}

void xs_print_pretty(const xs_printer *p, xs_buf *b, xs_buf *tmp, const xs_print_meta *m,
                     const xs_event *ev, const xs_redaction *red)
{
    const char *xml;
    size_t len;

    out_head(p, b, m);
    out_kind(p, b, ev, red);
    if (ev->kind != XS_EV_ERROR)
        xs_print_fmt(b, " %zu B", ev->len);
    out_rtt(p, b, m);
    xs_print_str(b, "\n");
    switch (ev->kind) {
    case XS_EV_STREAM_OPEN:
        xs_print_indent(b, 2);
        pretty_stream_tag(p, b, ev);
        xs_print_str(b, "\n");
        break;
    case XS_EV_STANZA:
        if (ev->node != NULL) {
            pretty_element(p, b, red->node != NULL ? red->node : ev->node, 0);
        } else {
            event_xml(ev, red, tmp, &xml, &len);
            if (xml != NULL) {
                while (len > 0 && xs_print_xml_space(xml[len - 1]))
                    len--;
                xs_print_indent(b, 2);
                xs_term_esc(b, xml, len, XS_ESC_BLOCK, 2);
                xs_print_str(b, "\n");
            }
        }
        if (red->note != NULL) {
            xs_print_indent(b, 2);
            xs_print_sgr(p, b, SGR_NOTE);
            xs_print_str(b, "# ");
            xs_term_esc_str(b, red->note, XS_ESC_LINE);
            xs_print_sgr(p, b, SGR_RESET);
            xs_print_str(b, "\n");
        }
        pretty_rules(p, b, m);
        break;
    case XS_EV_STREAM_CLOSE:
        if (ev->raw != NULL) {
            xs_print_indent(b, 2);
            xs_term_esc(b, ev->raw, ev->len, XS_ESC_LINE, 0);
            xs_print_str(b, "\n");
        }
        break;
    case XS_EV_ERROR:
        xs_print_indent(b, 2);
        out_error_detail(p, b, ev);
        xs_print_str(b, "\n");
        break;
    case XS_EV_KEEPALIVE:
        break;
    }
    xs_print_text_checks(p, b, m);
    if (tmp->err != 0 && b->err == 0)
        b->err = tmp->err;
}

/* ---- compact ------------------------------------------------------------------------------- */

/* The XML on one line: whitespace between tags dropped, controls escaped, cut after
 * COMPACT_XML_CHARS characters with a count of the bytes left out. */
static void compact_xml(xs_buf *b, const char *s, size_t n)
{
    size_t i = 0, end = n, shown = 0;

    while (i < end && xs_print_xml_space(s[i]))
        i++;
    while (end > i && xs_print_xml_space(s[end - 1]))
        end--;
    while (i < end && shown < COMPACT_XML_CHARS) {
        uint32_t cp;
        size_t k;

        if (xs_print_xml_space(s[i]) && i > 0 && s[i - 1] == '>') {
            size_t j = i;
            while (j < end && xs_print_xml_space(s[j]))
                j++;
            if (j < end && s[j] == '<') {
                i = j;
                continue;
            }
        }
        k = xs_utf8_next((const unsigned char *)s + i, end - i, &cp);
        if (k == 0)
            k = 1;
        xs_term_esc(b, s + i, k, XS_ESC_LINE, 0);
        i += k;
        shown++;
    }
    if (i < end)
        xs_print_fmt(b, "…(+%zu bytes)", end - i);
}

void xs_print_compact(const xs_printer *p, xs_buf *b, xs_buf *tmp, const xs_print_meta *m,
                      const xs_event *ev, const xs_redaction *red)
{
    const char *xml;
    size_t len;

    out_head(p, b, m);
    out_kind(p, b, ev, red);
    if (ev->kind == XS_EV_ERROR) {
        xs_print_str(b, " ");
        out_error_detail(p, b, ev);
        xs_print_str(b, "\n");
        return;
    }
    for (size_t i = 0; i < sizeof(xs_print_key_attrs) / sizeof(xs_print_key_attrs[0]); i++) {
        if (!xs_print_key_attr(ev, red, xs_print_key_attrs[i], tmp))
            continue;
        xs_print_str(b, " ");
        xs_print_str(b, xs_print_key_attrs[i]);
        xs_print_str(b, "=");
        if (tmp->len == 0 || memchr(tmp->p, ' ', tmp->len) != NULL) {
            xs_print_str(b, "'");
            xs_term_esc(b, tmp->p, tmp->len, XS_ESC_LINE, 0);
            xs_print_str(b, "'");
        } else {
            xs_term_esc(b, tmp->p, tmp->len, XS_ESC_LINE, 0);
        }
    }
    xs_print_fmt(b, " %zuB", ev->len);
    out_rtt(p, b, m);
    if (red->note != NULL) {
        xs_print_str(b, " ");
        xs_print_sgr(p, b, SGR_NOTE);
        xs_print_str(b, "[");
        xs_term_esc_str(b, red->note, XS_ESC_LINE);
        xs_print_str(b, "]");
        xs_print_sgr(p, b, SGR_RESET);
    }
    if (m != NULL && m->n_rules > 0) {
        xs_print_sgr(p, b, SGR_NOTE);
        xs_print_str(b, " {");
        for (size_t i = 0; i < m->n_rules; i++) {
            xs_print_str(b, i ? "; " : "");
            xs_term_esc_str(b, m->rules[i].rule, XS_ESC_LINE);
            xs_print_str(b, ": ");
            xs_term_esc_str(b, m->rules[i].action, XS_ESC_LINE);
        }
        if (m->verdict != NULL) {
            xs_print_str(b, " => ");
            xs_term_esc_str(b, m->verdict, XS_ESC_LINE);
        }
        xs_print_str(b, "}");
        xs_print_sgr(p, b, SGR_RESET);
    }
    xs_print_scratch_clear(tmp);
    event_xml(ev, red, tmp, &xml, &len);
    if (xml != NULL && ev->kind != XS_EV_KEEPALIVE) {
        xs_print_str(b, " ");
        compact_xml(b, xml, len);
    } else if (ev->kind == XS_EV_STREAM_OPEN) {
        xs_printer plain = {.out = p->out, .o = p->o};
        plain.o.color = 0;
        xs_print_str(b, " ");
        pretty_stream_tag(&plain, b, ev);
    }
    xs_print_str(b, "\n");
    xs_print_text_checks(p, b, m);
    if (tmp->err != 0 && b->err == 0)
        b->err = tmp->err;
}

/* ---- notes --------------------------------------------------------------------------------- */

void xs_print_text_check_lines(const xs_printer *p, xs_buf *b, const xs_print_meta *m)
{
    const xs_annot *a = m->annot;
    for (size_t i = 0; i < a->n_checks; i++) {
        out_head(p, b, m);
        xs_print_str(b, " ");
        xs_print_sgr(p, b, SGR_WARN);
        xs_print_str(b, "check ");
        check_body(b, &a->checks[i]);
        xs_print_sgr(p, b, SGR_RESET);
        xs_print_str(b, "\n");
    }
}

/* The analysers' summary of a session (annot.h), under the line that says it ended: one line
 * each, "  = " before it. */
static void print_summary(xs_buf *b, const xs_print_meta *m)
{
    const char *s = m != NULL && m->annot != NULL ? m->annot->summary : NULL;
    while (s != NULL && *s != '\0') {
        const char *nl = strchr(s, '\n');
        size_t n = nl != NULL ? (size_t)(nl - s) : strlen(s);
        xs_print_indent(b, 2);
        xs_print_str(b, "= ");
        xs_term_esc(b, s, n, XS_ESC_LINE, 0);
        xs_print_str(b, "\n");
        s = nl != NULL ? nl + 1 : NULL;
    }
}

void xs_print_text_note(const xs_printer *p, xs_buf *b, const xs_print_meta *m, const char *level,
                        const char *text)
{
    out_head(p, b, m);
    xs_print_str(b, " ");
    if (strcmp(level, "error") == 0)
        xs_print_sgr(p, b, SGR_ERROR);
    else if (strcmp(level, "warn") == 0)
        xs_print_sgr(p, b, SGR_WARN);
    xs_term_esc_str(b, level, XS_ESC_LINE);
    xs_print_str(b, ": ");
    xs_term_esc_str(b, text, XS_ESC_LINE);
    xs_print_sgr(p, b, SGR_RESET);
    xs_print_str(b, "\n");
    print_summary(b, m);
}
