/* Printers: see print.h.
 *
 * Every event is formatted into the printer's one output buffer first, after the whole lines a
 * buffered printer still holds, and written with a single fwrite(), so a failing FILE is noticed
 * at one place and a line is never half built from the formatter's side: an event that fails is
 * cut off the buffer again. Everything that comes from the wire goes through one escaper
 * (out_esc) that knows the output's context: XML text, XML attribute value, one line, or a block
 * of lines; JSON strings go through json_str. Terminal controls and invalid UTF-8 never reach the
 * FILE as they are: neither do bidirectional controls and invisible characters (unsafe_cp()),
 * which JSON strings carry as \u escapes. Messages printed outside a printer (errors on stderr,
 * listings) go through the same escaper with xs_term_printf().
 *
 * JSON Lines are written directly, not through a jansson tree: building and dumping one tree per
 * stanza cost more than everything else the proxy does for it. The output is byte for byte what
 * json_dumps(JSON_COMPACT) made of the same tree (tests/unit/test_print.c keeps that tree as the
 * reference); jansson is still used for the stream header's attribute maps, once per stream.
 */
#include "inspect/print.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <libxml/tree.h>

#include "inspect/error.h"
#include "inspect/observer.h"
#include "inspect/redact.h"
#include "inspect/utf8.h"

/* Output of one event at most; a stanza is limited by the parser far below this. */
#define OUT_MAX ((size_t)64 << 20)
/* A buffer that one large event made bigger than this is freed once written. */
#define OUT_KEEP ((size_t)1 << 20)
/* Characters of XML shown on a compact line. */
#define COMPACT_XML_CHARS 200
/* Deeper elements are elided by the pretty printer (the parser allows 64 by default). */
#define PRETTY_MAX_DEPTH 256u

#define SGR_RESET "\033[0m"
#define SGR_TIME "\033[2m"
#define SGR_C2S "\033[36m"
#define SGR_S2C "\033[35m"
#define SGR_KIND "\033[1m"
#define SGR_ERROR "\033[1;31m"
#define SGR_WARN "\033[33m"
#define SGR_ELEM "\033[34m"
#define SGR_ATTR "\033[33m"
#define SGR_VALUE "\033[32m"
#define SGR_NOTE "\033[1;33m"

#define UTF8_REPLACEMENT "\xEF\xBF\xBD"

/* ---- output buffer ------------------------------------------------------------------------- */

typedef struct obuf {
    char *p;
    size_t len, cap;
    size_t start; /* where the event being formatted begins; OUT_MAX counts from here */
    int err;      /* sticky: XS_ENOMEM or XS_ETOOBIG; later writes are ignored */
} obuf;

struct xs_printer {
    FILE *out;
    xs_print_options o;
    obuf buf;     /* whole lines not yet written, then the event being formatted */
    obuf scratch; /* one event's attribute values and serialized XML; reused */
    /* The JSON time up to the seconds ("2026-11-24T03:40:00"), for time_sec: only the
     * microseconds change from one event to the next under load. */
    time_t time_sec;
    int time_ok;
    size_t time_len;
    char time_text[80];
};

/* Makes room for n more bytes, or sets b->err. */
static int out_grow(obuf *b, size_t n)
{
    size_t limit = b->start + OUT_MAX, cap = b->cap > 0 ? b->cap : 256;
    char *q;

    if (n > OUT_MAX - (b->len - b->start)) {
        b->err = XS_ETOOBIG;
        return -1;
    }
    while (cap < b->len + n)
        cap = cap > limit / 2 ? limit : cap * 2;
    q = realloc(b->p, cap);
    if (q == NULL) {
        b->err = XS_ENOMEM;
        return -1;
    }
    b->p = q;
    b->cap = cap;
    return 0;
}

static void out_put(obuf *b, const void *s, size_t n)
{
    if (b->err != 0 || n == 0)
        return;
    if (n > b->cap - b->len && out_grow(b, n) != 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* Empties the buffer for reuse, freeing it when one large event made it big. */
static void out_reset(obuf *b)
{
    b->len = 0;
    b->start = 0;
    b->err = 0;
    if (b->cap > OUT_KEEP) {
        free(b->p);
        b->p = NULL;
        b->cap = 0;
    }
}

static void out_str(obuf *b, const char *s)
{
    out_put(b, s, strlen(s));
}

static void out_fmt(obuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* For short formatted pieces (numbers, times); longer output is cut, which never happens with
 * the formats used here. */
static void out_fmt(obuf *b, const char *fmt, ...)
{
    char tmp[160];
    va_list ap;
    int k;

    va_start(ap, fmt);
    k = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (k > 0)
        out_put(b, tmp, (size_t)k < sizeof(tmp) ? (size_t)k : sizeof(tmp) - 1);
}

static void out_indent(obuf *b, unsigned n)
{
    static const char spaces[] = "                                ";
    while (n > 0) {
        unsigned k = n < sizeof(spaces) - 1 ? n : (unsigned)sizeof(spaces) - 1;
        out_put(b, spaces, k);
        n -= k;
    }
}

/* ---- escaping ------------------------------------------------------------------------------ */

typedef enum esc_mode {
    ESC_TEXT,  /* XML character data on one line */
    ESC_ATTR,  /* XML attribute value between single quotes */
    ESC_LINE,  /* anything on one line: C-style escapes for controls, XML left as it is */
    ESC_BLOCK, /* like ESC_LINE, but a newline starts a new indented line */
} esc_mode;

/* Code points no output shows as they are, in any format: those a terminal would act on (C0,
 * DEL, C1: U+009B is the 8-bit CSI), those that break a line (U+2028, U+2029), the bidirectional
 * controls that reorder what follows (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) and
 * the invisible ones that hide or join text (U+200B-U+200D, U+2060-U+2064, U+FEFF). */
static int unsafe_cp(uint32_t cp)
{
    if (cp < 0x80)
        return cp < 0x20 || cp == 0x7f;
    return cp <= 0x9f || cp == 0x061c || (cp >= 0x200b && cp <= 0x200f) ||
           (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x2064) ||
           (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff;
}

static void out_esc(obuf *b, const char *str, size_t n, esc_mode m, unsigned block_indent)
{
    const unsigned char *s = (const unsigned char *)str;
    int xml = m == ESC_TEXT || m == ESC_ATTR;
    size_t i = 0;

    while (i < n && b->err == 0) {
        uint32_t cp;
        size_t k = xs_utf8_next(s + i, n - i, &cp);
        const char *rep = NULL;

        if (k == 0) {
            if (xml)
                out_str(b, UTF8_REPLACEMENT);
            else
                out_fmt(b, "\\x%02X", s[i]);
            i++;
            continue;
        }
        switch (cp) {
        case '&':
            rep = xml ? "&amp;" : NULL;
            break;
        case '<':
            rep = xml ? "&lt;" : NULL;
            break;
        case '>':
            rep = xml ? "&gt;" : NULL;
            break;
        case '\'':
            rep = m == ESC_ATTR ? "&apos;" : NULL;
            break;
        case '\t':
            rep = m == ESC_ATTR ? "&#x9;" : m == ESC_LINE ? "\\t" : "\t";
            break;
        case '\r':
            rep = xml ? "&#xD;" : "\\r";
            break;
        case '\0':
            rep = xml ? "&#xFFFD;" : "\\0";
            break;
        case '\n':
            if (m == ESC_BLOCK) {
                out_str(b, "\n");
                out_indent(b, block_indent);
                i++;
                continue;
            }
            rep = xml ? "&#xA;" : "\\n";
            break;
        default:
            break;
        }
        if (rep != NULL)
            out_str(b, rep);
        else if (!unsafe_cp(cp))
            out_put(b, s + i, k);
        else if (xml)
            out_fmt(b, "&#x%X;", (unsigned)cp);
        else if (k == 1)
            out_fmt(b, "\\x%02X", (unsigned)cp);
        else
            out_fmt(b, "\\u%04X", (unsigned)cp);
        i += k;
    }
}

static void out_esc_str(obuf *b, const char *s, esc_mode m)
{
    if (s != NULL)
        out_esc(b, s, strlen(s), m, 0);
}

int xs_term_vprintf(FILE *f, const char *fmt, va_list ap)
{
    obuf raw = {0}, b = {0};
    va_list copy;
    int n, rc = 0;

    va_copy(copy, ap);
    n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0 || out_grow(&raw, (size_t)n + 1) != 0) {
        rc = XS_ENOMEM;
        goto out;
    }
    vsnprintf(raw.p, (size_t)n + 1, fmt, ap);
    raw.len = (size_t)n;
    /* One newline at the end is the caller's; any other is escaped with the rest. */
    int nl = raw.len > 0 && raw.p[raw.len - 1] == '\n';
    out_esc(&b, raw.p, raw.len - nl, ESC_LINE, 0);
    if (nl)
        out_put(&b, "\n", 1);
    if (b.err != 0) {
        rc = b.err;
        goto out;
    }
    if (b.len > 0 && fwrite(b.p, 1, b.len, f) != b.len)
        rc = XS_EIO;
out:
    free(raw.p);
    free(b.p);
    return rc;
}

int xs_term_printf(FILE *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = xs_term_vprintf(f, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- small helpers ------------------------------------------------------------------------- */

static void sgr(const xs_printer *p, obuf *b, const char *code)
{
    if (p->o.color)
        out_str(b, code);
}

static int xml_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void event_time(const xs_print_meta *m, struct timespec *ts)
{
    if (m != NULL && (m->time.tv_sec != 0 || m->time.tv_nsec != 0))
        *ts = m->time;
    else
        clock_gettime(CLOCK_REALTIME, ts);
    if (ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000L)
        ts->tv_nsec = 0;
}

/* The stanza's tree to read names and attributes from: the parser's, or the masked copy of a
 * stanza that came without a tree. */
static const xmlNode *event_node(const xs_event *ev, const xs_redaction *red)
{
    return ev->node != NULL ? ev->node : red->node;
}

/* The element's qualified name. */
static void out_qname(obuf *b, const char *prefix, const char *name)
{
    if (prefix != NULL && prefix[0] != '\0') {
        out_esc_str(b, prefix, ESC_LINE);
        out_str(b, ":");
    }
    out_esc_str(b, name != NULL ? name : "?", ESC_LINE);
}

static void event_qname(obuf *b, const xs_event *ev, const xs_redaction *red)
{
    const xmlNode *n = event_node(ev, red);

    if (ev->name != NULL)
        out_qname(b, ev->prefix, ev->name);
    else if (n != NULL)
        out_qname(b, n->ns != NULL ? (const char *)n->ns->prefix : NULL, (const char *)n->name);
    else
        out_str(b, xs_event_kind_name(ev->kind));
}

/* The value of an attribute without a namespace, appended to t. Returns 0 when absent. */
static int plain_attr(const xmlNode *n, const char *name, obuf *t)
{
    for (const xmlAttr *a = n->properties; a != NULL; a = a->next) {
        if (a->ns != NULL || strcmp((const char *)a->name, name) != 0)
            continue;
        for (const xmlNode *k = a->children; k != NULL; k = k->next) {
            if (k->type == XML_TEXT_NODE && k->content != NULL) {
                out_str(t, (const char *)k->content);
            } else if (k->type == XML_ENTITY_REF_NODE) {
                out_str(t, "&");
                out_str(t, (const char *)k->name);
                out_str(t, ";");
            }
        }
        return 1;
    }
    return 0;
}

static const char *const key_attrs[] = {"from", "to", "id", "type"};

/* The value of an attribute without a namespace (unprefixed: attributes do not take the default
 * namespace) from the event's list, appended to t. Returns 0 when absent. */
static int plain_event_attr(const xs_event *ev, const char *name, obuf *t)
{
    for (size_t i = 0; i < ev->n_attrs; i++) {
        const xs_attr *a = &ev->attrs[i];
        if (a->prefix == NULL && a->name != NULL && strcmp(a->name, name) == 0) {
            out_str(t, a->value != NULL ? a->value : "");
            return 1;
        }
    }
    return 0;
}

/* Looks up one of key_attrs on the event: for a stanza from its tree when it has one, else from
 * the attributes the parser gives with every stanza event (the same values: libxml2 keeps an
 * entity reference in an attribute's tree only for an entity it does not know, which the parser
 * refuses); for the stream header from its attributes. */
static int key_attr(const xs_event *ev, const xs_redaction *red, const char *name, obuf *t)
{
    t->len = 0;
    if (ev->kind == XS_EV_STREAM_OPEN)
        return ev->attrs != NULL && plain_event_attr(ev, name, t);
    if (ev->kind != XS_EV_STANZA)
        return 0;
    if (ev->node != NULL)
        return plain_attr(ev->node, name, t);
    if (ev->attrs != NULL)
        return plain_event_attr(ev, name, t);
    /* An event made without the parser's attributes: the masked copy, when there is one, has
     * the stanza's own. */
    return red->node != NULL && plain_attr(red->node, name, t);
}

/* The XML text of an event: the masked copy, the raw span, or, without either, the tree
 * serialized into `tmp`. Sets *s to NULL when there is none. */
static void event_xml(const xs_event *ev, const xs_redaction *red, obuf *tmp, const char **s,
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

        tmp->len = 0;
        if (xb == NULL) {
            tmp->err = XS_ENOMEM;
            return;
        }
        /* xmlNodeDump() only reads the node; its prototype predates const. */
        if (xmlNodeDump(xb, ev->node->doc, (xmlNode *)ev->node, 0, 0) < 0)
            tmp->err = XS_ENOMEM;
        else
            out_put(tmp, xmlBufferContent(xb), (size_t)xmlBufferLength(xb));
        xmlBufferFree(xb);
        *s = tmp->p;
        *len = tmp->len;
    }
}

/* ---- header line (pretty, compact, notes) -------------------------------------------------- */

static void out_head(const xs_printer *p, obuf *b, const xs_print_meta *m)
{
    struct timespec ts;
    struct tm tm;
    const char *dir = m != NULL ? m->direction : NULL;

    bool timed = m == NULL || !m->untimed;
    if (timed) {
        event_time(m, &ts);
        if (localtime_r(&ts.tv_sec, &tm) == NULL)
            memset(&tm, 0, sizeof(tm));
        sgr(p, b, SGR_TIME);
        out_fmt(b, "%02d:%02d:%02d.%03ld", tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L);
        sgr(p, b, SGR_RESET);
    }
    if (m != NULL && m->session != NULL) {
        if (timed)
            out_str(b, " ");
        out_esc_str(b, m->session, ESC_LINE);
    }
    out_str(b, " ");
    if (dir == NULL) {
        out_str(b, "   ");
    } else if (strcmp(dir, "c2s") == 0) {
        sgr(p, b, SGR_C2S);
        out_str(b, "C→S");
        sgr(p, b, SGR_RESET);
    } else if (strcmp(dir, "s2c") == 0) {
        sgr(p, b, SGR_S2C);
        out_str(b, "S→C");
        sgr(p, b, SGR_RESET);
    } else {
        out_esc_str(b, dir, ESC_LINE);
    }
    if (m != NULL && m->phase != NULL) {
        out_str(b, " [");
        out_esc_str(b, m->phase, ESC_LINE);
        out_str(b, "]");
    }
}

/* Header fields shared by pretty and compact after the time and direction: kind and size. */
static void out_kind(const xs_printer *p, obuf *b, const xs_event *ev, const xs_redaction *red)
{
    out_str(b, " ");
    sgr(p, b, ev->kind == XS_EV_ERROR ? SGR_ERROR : SGR_KIND);
    if (ev->kind == XS_EV_STANZA)
        event_qname(b, ev, red);
    else
        out_str(b, xs_event_kind_name(ev->kind));
    sgr(p, b, SGR_RESET);
    if (ev->kind == XS_EV_STREAM_OPEN)
        out_fmt(b, " #%u", ev->stream_no);
}

static void out_error_detail(const xs_printer *p, obuf *b, const xs_event *ev)
{
    const char *cond = xs_parse_error_condition(ev->error_kind);

    sgr(p, b, SGR_ERROR);
    out_str(b, xs_errname(ev->error));
    sgr(p, b, SGR_RESET);
    if (cond != NULL) {
        out_str(b, " <");
        out_str(b, cond);
        out_str(b, "/>");
    }
    out_fmt(b, " at %u:%u (offset %llu)", ev->line, ev->column, (unsigned long long)ev->offset);
    if (ev->message != NULL) {
        out_str(b, ": ");
        out_esc_str(b, ev->message, ESC_LINE);
    }
}

/* ---- pretty -------------------------------------------------------------------------------- */

static void pretty_attr(const xs_printer *p, obuf *b, const char *prefix, const char *name)
{
    out_str(b, " ");
    sgr(p, b, SGR_ATTR);
    out_qname(b, prefix, name);
    sgr(p, b, SGR_RESET);
    out_str(b, "=");
    sgr(p, b, SGR_VALUE);
    out_str(b, "'");
}

static void pretty_attr_end(const xs_printer *p, obuf *b)
{
    out_str(b, "'");
    sgr(p, b, SGR_RESET);
}

static void pretty_nsdecl(const xs_printer *p, obuf *b, const char *prefix, const char *uri)
{
    if (prefix != NULL)
        pretty_attr(p, b, "xmlns", prefix);
    else
        pretty_attr(p, b, NULL, "xmlns");
    out_esc_str(b, uri, ESC_ATTR);
    pretty_attr_end(p, b);
}

static void pretty_tag_name(const xs_printer *p, obuf *b, const char *before, const xmlNode *n,
                            const char *after)
{
    sgr(p, b, SGR_ELEM);
    out_str(b, before);
    out_qname(b, n->ns != NULL ? (const char *)n->ns->prefix : NULL, (const char *)n->name);
    out_str(b, after);
    sgr(p, b, SGR_RESET);
}

/* A text node inside an element that also has element children: on lines of its own. */
static void pretty_text_block(obuf *b, const char *s, unsigned indent)
{
    size_t len = strlen(s), i = 0;

    while (i < len && xml_space(s[i]))
        i++;
    while (len > i && xml_space(s[len - 1]))
        len--;
    while (i < len) {
        const char *nl = memchr(s + i, '\n', len - i);
        size_t end = nl != NULL ? (size_t)(nl - s) : len, e = end;

        while (e > i && s[e - 1] == '\r')
            e--;
        out_indent(b, indent);
        out_esc(b, s + i, e - i, ESC_TEXT, 0);
        out_str(b, "\n");
        i = end + 1;
    }
}

static int blank(const char *s)
{
    for (; s != NULL && *s != '\0'; s++)
        if (!xml_space(*s))
            return 0;
    return 1;
}

static void pretty_element(const xs_printer *p, obuf *b, const xmlNode *n, unsigned depth)
{
    unsigned indent = 2 + 2 * depth;
    int elements = 0, text = 0, newline = 0;

    out_indent(b, indent);
    if (depth > PRETTY_MAX_DEPTH) {
        out_str(b, "…\n");
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
                out_esc_str(b, (const char *)k->content, ESC_ATTR);
            else if (k->type == XML_ENTITY_REF_NODE)
                out_fmt(b, "&%s;", (const char *)k->name);
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
        sgr(p, b, SGR_ELEM);
        out_str(b, "/>");
        sgr(p, b, SGR_RESET);
        out_str(b, "\n");
        return;
    }
    sgr(p, b, SGR_ELEM);
    out_str(b, ">");
    sgr(p, b, SGR_RESET);
    if (elements == 0 && !newline) {
        /* Text only, on one line: <body>hello</body>. */
        for (const xmlNode *k = n->children; k != NULL; k = k->next) {
            if (k->type == XML_ENTITY_REF_NODE)
                out_fmt(b, "&%s;", (const char *)k->name);
            else if (k->type == XML_TEXT_NODE || k->type == XML_CDATA_SECTION_NODE)
                out_esc_str(b, (const char *)k->content, ESC_TEXT);
        }
        pretty_tag_name(p, b, "</", n, ">");
        out_str(b, "\n");
        return;
    }
    out_str(b, "\n");
    for (const xmlNode *k = n->children; k != NULL && b->err == 0; k = k->next) {
        if (k->type == XML_ELEMENT_NODE)
            pretty_element(p, b, k, depth + 1);
        else if ((k->type == XML_TEXT_NODE || k->type == XML_CDATA_SECTION_NODE) &&
                 !blank((const char *)k->content))
            pretty_text_block(b, (const char *)k->content, indent + 2);
        else if (k->type == XML_ENTITY_REF_NODE) {
            out_indent(b, indent + 2);
            out_fmt(b, "&%s;\n", (const char *)k->name);
        }
    }
    out_indent(b, indent);
    pretty_tag_name(p, b, "</", n, ">");
    out_str(b, "\n");
}

/* The stream header from the event's fields: <stream:stream xmlns=... to=... version=...>. */
static void pretty_stream_tag(const xs_printer *p, obuf *b, const xs_event *ev)
{
    sgr(p, b, SGR_ELEM);
    out_str(b, "<");
    out_qname(b, ev->prefix, ev->name != NULL ? ev->name : "stream");
    sgr(p, b, SGR_RESET);
    for (size_t i = 0; ev->nsdecls != NULL && i < ev->n_nsdecls; i++)
        pretty_nsdecl(p, b, ev->nsdecls[i].prefix, ev->nsdecls[i].uri);
    for (size_t i = 0; ev->attrs != NULL && i < ev->n_attrs; i++) {
        pretty_attr(p, b, ev->attrs[i].prefix, ev->attrs[i].name);
        out_esc_str(b, ev->attrs[i].value, ESC_ATTR);
        pretty_attr_end(p, b);
    }
    sgr(p, b, SGR_ELEM);
    out_str(b, ">");
    sgr(p, b, SGR_RESET);
}

/* The rules that applied to a stanza: one line each, then the verdict and the new XML. */
static void pretty_rules(const xs_printer *p, obuf *b, const xs_print_meta *m)
{
    if (m == NULL || m->n_rules == 0)
        return;
    for (size_t i = 0; i < m->n_rules; i++) {
        out_indent(b, 2);
        sgr(p, b, SGR_NOTE);
        out_str(b, "rule \"");
        out_esc_str(b, m->rules[i].rule, ESC_LINE);
        out_str(b, "\": ");
        out_esc_str(b, m->rules[i].action, ESC_LINE);
        if (m->rules[i].detail != NULL) {
            out_str(b, " ");
            out_esc_str(b, m->rules[i].detail, ESC_LINE);
        }
        sgr(p, b, SGR_RESET);
        out_str(b, "\n");
    }
    if (m->verdict != NULL) {
        out_indent(b, 2);
        sgr(p, b, SGR_NOTE);
        out_str(b, "=> ");
        out_esc_str(b, m->verdict, ESC_LINE);
        if (m->rewritten != NULL) {
            out_str(b, ": ");
            out_esc_str(b, m->rewritten, ESC_LINE);
        }
        sgr(p, b, SGR_RESET);
        out_str(b, "\n");
    }
}

static void pretty_event(const xs_printer *p, obuf *b, obuf *tmp, const xs_print_meta *m,
                         const xs_event *ev, const xs_redaction *red)
{
    const char *xml;
    size_t len;

    out_head(p, b, m);
    out_kind(p, b, ev, red);
    if (ev->kind != XS_EV_ERROR)
        out_fmt(b, " %zu B", ev->len);
    out_str(b, "\n");
    switch (ev->kind) {
    case XS_EV_STREAM_OPEN:
        out_indent(b, 2);
        pretty_stream_tag(p, b, ev);
        out_str(b, "\n");
        break;
    case XS_EV_STANZA:
        if (ev->node != NULL) {
            pretty_element(p, b, red->node != NULL ? red->node : ev->node, 0);
        } else {
            event_xml(ev, red, tmp, &xml, &len);
            if (xml != NULL) {
                while (len > 0 && xml_space(xml[len - 1]))
                    len--;
                out_indent(b, 2);
                out_esc(b, xml, len, ESC_BLOCK, 2);
                out_str(b, "\n");
            }
        }
        if (red->note != NULL) {
            out_indent(b, 2);
            sgr(p, b, SGR_NOTE);
            out_str(b, "# ");
            out_esc_str(b, red->note, ESC_LINE);
            sgr(p, b, SGR_RESET);
            out_str(b, "\n");
        }
        pretty_rules(p, b, m);
        break;
    case XS_EV_STREAM_CLOSE:
        if (ev->raw != NULL) {
            out_indent(b, 2);
            out_esc(b, ev->raw, ev->len, ESC_LINE, 0);
            out_str(b, "\n");
        }
        break;
    case XS_EV_ERROR:
        out_indent(b, 2);
        out_error_detail(p, b, ev);
        out_str(b, "\n");
        break;
    case XS_EV_KEEPALIVE:
        break;
    }
    if (tmp->err != 0 && b->err == 0)
        b->err = tmp->err;
}

/* ---- compact ------------------------------------------------------------------------------- */

/* The XML on one line: whitespace between tags dropped, controls escaped, cut after
 * COMPACT_XML_CHARS characters with a count of the bytes left out. */
static void compact_xml(obuf *b, const char *s, size_t n)
{
    size_t i = 0, end = n, shown = 0;

    while (i < end && xml_space(s[i]))
        i++;
    while (end > i && xml_space(s[end - 1]))
        end--;
    while (i < end && shown < COMPACT_XML_CHARS) {
        uint32_t cp;
        size_t k;

        if (xml_space(s[i]) && i > 0 && s[i - 1] == '>') {
            size_t j = i;
            while (j < end && xml_space(s[j]))
                j++;
            if (j < end && s[j] == '<') {
                i = j;
                continue;
            }
        }
        k = xs_utf8_next((const unsigned char *)s + i, end - i, &cp);
        if (k == 0)
            k = 1;
        out_esc(b, s + i, k, ESC_LINE, 0);
        i += k;
        shown++;
    }
    if (i < end)
        out_fmt(b, "…(+%zu bytes)", end - i);
}

static void compact_event(const xs_printer *p, obuf *b, obuf *tmp, const xs_print_meta *m,
                          const xs_event *ev, const xs_redaction *red)
{
    const char *xml;
    size_t len;

    out_head(p, b, m);
    out_kind(p, b, ev, red);
    if (ev->kind == XS_EV_ERROR) {
        out_str(b, " ");
        out_error_detail(p, b, ev);
        out_str(b, "\n");
        return;
    }
    for (size_t i = 0; i < sizeof(key_attrs) / sizeof(key_attrs[0]); i++) {
        if (!key_attr(ev, red, key_attrs[i], tmp))
            continue;
        out_str(b, " ");
        out_str(b, key_attrs[i]);
        out_str(b, "=");
        if (tmp->len == 0 || memchr(tmp->p, ' ', tmp->len) != NULL) {
            out_str(b, "'");
            out_esc(b, tmp->p, tmp->len, ESC_LINE, 0);
            out_str(b, "'");
        } else {
            out_esc(b, tmp->p, tmp->len, ESC_LINE, 0);
        }
    }
    out_fmt(b, " %zuB", ev->len);
    if (red->note != NULL) {
        out_str(b, " ");
        sgr(p, b, SGR_NOTE);
        out_str(b, "[");
        out_esc_str(b, red->note, ESC_LINE);
        out_str(b, "]");
        sgr(p, b, SGR_RESET);
    }
    if (m != NULL && m->n_rules > 0) {
        sgr(p, b, SGR_NOTE);
        out_str(b, " {");
        for (size_t i = 0; i < m->n_rules; i++) {
            out_str(b, i ? "; " : "");
            out_esc_str(b, m->rules[i].rule, ESC_LINE);
            out_str(b, ": ");
            out_esc_str(b, m->rules[i].action, ESC_LINE);
        }
        if (m->verdict != NULL) {
            out_str(b, " => ");
            out_esc_str(b, m->verdict, ESC_LINE);
        }
        out_str(b, "}");
        sgr(p, b, SGR_RESET);
    }
    tmp->len = 0;
    event_xml(ev, red, tmp, &xml, &len);
    if (xml != NULL && ev->kind != XS_EV_KEEPALIVE) {
        out_str(b, " ");
        compact_xml(b, xml, len);
    } else if (ev->kind == XS_EV_STREAM_OPEN) {
        xs_printer plain = {.out = p->out, .o = p->o};
        plain.o.color = 0;
        out_str(b, " ");
        pretty_stream_tag(&plain, b, ev);
    }
    out_str(b, "\n");
    if (tmp->err != 0 && b->err == 0)
        b->err = tmp->err;
}

/* ---- JSON ---------------------------------------------------------------------------------- */

#define WORD_ONES UINT64_C(0x0101010101010101)
#define WORD_HIGH UINT64_C(0x8080808080808080)

/* Whether one of the eight bytes of v needs more than a copy into a JSON string: a control
 * character, DEL, '"', '\\', or a byte of a non-ASCII character (whose UTF-8 must be checked). The
 * tests for a byte below 0x20 and for a byte equal to '"', '\\' or DEL are exact while no byte has
 * its high bit set, and a byte that has it answers on its own. */
static int json_word_special(uint64_t v)
{
    uint64_t quote = v ^ (WORD_ONES * '"'), bslash = v ^ (WORD_ONES * '\\');
    uint64_t del = v ^ (WORD_ONES * 0x7f);
    uint64_t hits = ((v - WORD_ONES * 0x20) & ~v) | ((quote - WORD_ONES) & ~quote) |
                    ((bslash - WORD_ONES) & ~bslash) | ((del - WORD_ONES) & ~del) | v;

    return (hits & WORD_HIGH) != 0;
}

/* Appends the escape of a byte json_str() stopped at: '"', '\\' and the control characters as
 * jansson writes them, NUL and the first byte of an invalid UTF-8 sequence as U+FFFD. */
static void json_escape(obuf *b, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF";
    const char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

    switch (c) {
    case '"':
        out_put(b, "\\\"", 2);
        break;
    case '\\':
        out_put(b, "\\\\", 2);
        break;
    case '\b':
        out_put(b, "\\b", 2);
        break;
    case '\f':
        out_put(b, "\\f", 2);
        break;
    case '\n':
        out_put(b, "\\n", 2);
        break;
    case '\r':
        out_put(b, "\\r", 2);
        break;
    case '\t':
        out_put(b, "\\t", 2);
        break;
    default:
        if (c == '\0' || c >= 0x80)
            out_put(b, UTF8_REPLACEMENT, 3);
        else
            out_put(b, u, sizeof(u));
        break;
    }
}

/* Appends n bytes as a JSON string, escaped and made valid UTF-8 as print.h says. Runs of bytes
 * that need nothing, valid non-ASCII characters included, are copied whole, eight bytes are
 * looked at a time, and nothing is allocated but the output: most of a stanza is one run. */
static void json_str(obuf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0;

    out_put(b, "\"", 1);
    while (i < n) {
        unsigned char c;

        if (n - i >= 8) {
            uint64_t v;
            memcpy(&v, s + i, sizeof(v));
            if (!json_word_special(v)) {
                i += 8;
                continue;
            }
        }
        c = s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            i++;
            continue;
        }
        if (c >= 0x7f) {
            uint32_t cp;
            size_t k = xs_utf8_next(s + i, n - i, &cp);
            if (k > 0 && !unsafe_cp(cp)) {
                i += k;
                continue;
            }
            if (k > 0) {
                /* Valid JSON as it is, but not for a terminal (see unsafe_cp()): the one place
                 * JSON goes beyond what jansson escapes. */
                out_put(b, s + run, i - run);
                out_fmt(b, "\\u%04X", (unsigned)cp);
                run = i += k;
                continue;
            }
        }
        out_put(b, s + run, i - run);
        json_escape(b, c);
        run = ++i;
    }
    out_put(b, s + run, n - run);
    out_put(b, "\"", 1);
}

/* A NUL-terminated string; NULL is written as "". */
static void json_cstr(obuf *b, const char *s)
{
    json_str(b, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

int xs_json_fputs(FILE *f, const char *s)
{
    obuf b = {0};
    int rc = 0;

    json_cstr(&b, s);
    if (b.err != 0)
        rc = b.err;
    else if (fwrite(b.p, 1, b.len, f) != b.len)
        rc = XS_EIO;
    free(b.p);
    return rc;
}

/* Starts the next member of the object being written: a comma unless it is the first (*n counts
 * the members), then the key, an ASCII name that needs no escaping. */
static void json_key(obuf *b, int *n, const char *key)
{
    if ((*n)++ > 0)
        out_put(b, ",", 1);
    out_put(b, "\"", 1);
    out_str(b, key);
    out_put(b, "\":", 2);
}

/* An integer, capped at the largest json_int_t as before. */
static void json_uint(obuf *b, uint64_t v)
{
    char d[20];
    size_t i = sizeof(d);

    if (v > (uint64_t)INT64_MAX)
        v = (uint64_t)INT64_MAX;
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    out_put(b, d + i, sizeof(d) - i);
}

/* The event's time as a JSON string, RFC 3339 UTC with microseconds. The date and the time of day
 * are formatted once per second; the microseconds are written by hand. */
static void json_time(xs_printer *p, obuf *b, const xs_print_meta *m)
{
    struct timespec ts;
    char frac[8];
    long us;

    event_time(m, &ts);
    if (!p->time_ok || ts.tv_sec != p->time_sec) {
        struct tm tm;
        int k;

        if (gmtime_r(&ts.tv_sec, &tm) == NULL)
            memset(&tm, 0, sizeof(tm));
        k = snprintf(p->time_text, sizeof(p->time_text), "%04d-%02d-%02dT%02d:%02d:%02d",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec);
        p->time_len = k > 0 && (size_t)k < sizeof(p->time_text) ? (size_t)k : 0;
        p->time_sec = ts.tv_sec;
        p->time_ok = 1;
    }
    us = ts.tv_nsec / 1000L;
    frac[0] = '.';
    for (int i = 6; i >= 1; i--) {
        frac[i] = (char)('0' + us % 10);
        us /= 10;
    }
    frac[7] = 'Z';
    out_put(b, "\"", 1);
    out_put(b, p->time_text, p->time_len);
    out_put(b, frac, sizeof(frac));
    out_put(b, "\"", 1);
}

/* The start of every JSON line: time, session, direction, phase, event. */
static void json_head(xs_printer *p, obuf *b, const xs_print_meta *m, const char *event, int *n)
{
    out_put(b, "{", 1);
    if (m == NULL || !m->untimed) {
        json_key(b, n, "time");
        json_time(p, b, m);
    }
    if (m != NULL && m->session != NULL) {
        json_key(b, n, "session");
        json_cstr(b, m->session);
    }
    if (m != NULL && m->direction != NULL) {
        json_key(b, n, "dir");
        json_cstr(b, m->direction);
    }
    if (m != NULL && m->phase != NULL) {
        json_key(b, n, "phase");
        json_cstr(b, m->phase);
    }
    json_key(b, n, "event");
    json_cstr(b, event);
}

static void json_element(obuf *b, obuf *tmp, int *n, const xs_event *ev, const xs_redaction *red)
{
    const xmlNode *node = event_node(ev, red);
    const char *name = ev->name, *prefix = ev->prefix, *ns = ev->ns;

    if (name == NULL && node != NULL) {
        name = (const char *)node->name;
        prefix = node->ns != NULL ? (const char *)node->ns->prefix : NULL;
        ns = node->ns != NULL ? (const char *)node->ns->href : NULL;
    }
    if (name != NULL) {
        json_key(b, n, "name");
        json_cstr(b, name);
    }
    if (prefix != NULL) {
        json_key(b, n, "prefix");
        json_cstr(b, prefix);
    }
    if (ns != NULL) {
        json_key(b, n, "ns");
        json_cstr(b, ns);
    }
    for (size_t i = 0; i < sizeof(key_attrs) / sizeof(key_attrs[0]); i++) {
        if (key_attr(ev, red, key_attrs[i], tmp)) {
            json_key(b, n, key_attrs[i]);
            json_str(b, tmp->p != NULL ? tmp->p : "", tmp->len);
        }
    }
}

/* Appends n bytes as valid UTF-8 without NUL: invalid sequences and NUL become U+FFFD. jansson
 * takes valid UTF-8 only, and NUL in a JSON string trips up many readers. */
static void out_utf8(obuf *t, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        uint32_t cp;
        size_t k = xs_utf8_next(u + i, n - i, &cp);
        if (k == 0 || cp == 0) {
            out_str(t, UTF8_REPLACEMENT);
            i++;
        } else {
            out_put(t, s + i, k);
            i += k;
        }
    }
}

/* A jansson string, made valid as by out_utf8(). Returns NULL when out of memory. */
static json_t *jstr(obuf *tmp, const char *s)
{
    tmp->len = 0;
    out_utf8(tmp, s, strlen(s));
    if (tmp->err != 0)
        return NULL;
    return json_stringn_nocheck(tmp->p != NULL ? tmp->p : "", tmp->len);
}

/* Sets o[prefix:name] = v with the key made valid as by out_utf8(). Takes v, also on failure. */
static void jset_key(json_t *o, obuf *tmp, const char *prefix, const char *name, json_t *v,
                     int *bad)
{
    tmp->len = 0;
    if (prefix != NULL) {
        out_utf8(tmp, prefix, strlen(prefix));
        out_str(tmp, ":");
    }
    out_utf8(tmp, name, strlen(name));
    out_put(tmp, "", 1);
    if (v == NULL || tmp->err != 0) {
        json_decref(v);
        *bad = 1;
    } else if (json_object_set_new_nocheck(o, tmp->p, v) != 0) {
        *bad = 1;
    }
}

/* Appends a jansson value, compact, as it dumps it. */
static void json_dump_into(obuf *b, const json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);

    if (text == NULL && b->err == 0)
        b->err = XS_ENOMEM;
    else if (text != NULL)
        out_str(b, text);
    free(text);
}

/* The stream header's "attrs" and "namespaces" maps. These still go through jansson, once per
 * stream, for its rule on a repeated key (the later value, at the earlier key's place): names
 * that differ only in invalid UTF-8 are equal once it is replaced. */
static void json_stream_header(obuf *b, obuf *tmp, int *n, const xs_event *ev)
{
    json_t *attrs = json_object(), *nss = json_object();
    int bad = attrs == NULL || nss == NULL;

    for (size_t i = 0; !bad && ev->attrs != NULL && i < ev->n_attrs; i++) {
        const xs_attr *a = &ev->attrs[i];
        json_t *v;

        if (a->name == NULL)
            continue;
        /* The value is made before the key, which reuses tmp. */
        v = jstr(tmp, a->value != NULL ? a->value : "");
        jset_key(attrs, tmp, a->prefix, a->name, v, &bad);
    }
    for (size_t i = 0; !bad && ev->nsdecls != NULL && i < ev->n_nsdecls; i++) {
        const xs_attr *d = &ev->nsdecls[i];
        json_t *v = jstr(tmp, d->uri != NULL ? d->uri : "");

        jset_key(nss, tmp, NULL, d->prefix != NULL ? d->prefix : "", v, &bad);
    }
    if (bad) {
        if (b->err == 0)
            b->err = tmp->err != 0 ? tmp->err : XS_ENOMEM;
    } else {
        json_key(b, n, "attrs");
        json_dump_into(b, attrs);
        json_key(b, n, "namespaces");
        json_dump_into(b, nss);
    }
    json_decref(attrs);
    json_decref(nss);
}

static void json_rules(obuf *b, int *n, const xs_print_meta *m)
{
    json_key(b, n, "rules");
    out_put(b, "[", 1);
    for (size_t i = 0; i < m->n_rules; i++) {
        int k = 0;

        out_str(b, i > 0 ? ",{" : "{");
        json_key(b, &k, "rule");
        json_cstr(b, m->rules[i].rule);
        json_key(b, &k, "action");
        json_cstr(b, m->rules[i].action);
        if (m->rules[i].detail != NULL) {
            json_key(b, &k, "detail");
            json_cstr(b, m->rules[i].detail);
        }
        out_put(b, "}", 1);
    }
    out_put(b, "]", 1);
    if (m->verdict != NULL) {
        json_key(b, n, "verdict");
        json_cstr(b, m->verdict);
    }
    if (m->rewritten != NULL) {
        json_key(b, n, "rewritten");
        json_cstr(b, m->rewritten);
    }
}

static void json_event(xs_printer *p, obuf *b, obuf *tmp, const xs_print_meta *m,
                       const xs_event *ev, const xs_redaction *red)
{
    int n = 0;

    json_head(p, b, m, xs_event_kind_name(ev->kind), &n);
    json_key(b, &n, "stream");
    json_uint(b, ev->stream_no);
    json_key(b, &n, "offset");
    json_uint(b, ev->offset);
    json_key(b, &n, "size");
    json_uint(b, ev->len);
    if (ev->kind == XS_EV_STREAM_OPEN || ev->kind == XS_EV_STANZA)
        json_element(b, tmp, &n, ev, red);
    if (red->xml != NULL) {
        json_key(b, &n, "raw");
        json_str(b, red->xml, red->xml_len);
        json_key(b, &n, "redacted");
        out_str(b, "true");
    } else if (ev->raw != NULL && ev->kind != XS_EV_ERROR) {
        json_key(b, &n, "raw");
        json_str(b, ev->raw, ev->len);
    }
    if (red->note != NULL) {
        json_key(b, &n, "sasl");
        json_cstr(b, red->note);
    }
    if (red->gs2_flag != 0) {
        json_key(b, &n, "gs2");
        tmp->len = 0;
        if (red->gs2_flag == 'p') {
            out_str(tmp, "p=");
            out_str(tmp, red->cb_name);
        } else {
            out_str(tmp, red->gs2_flag == 'y' ? "y" : "n");
        }
        json_str(b, tmp->p != NULL ? tmp->p : "", tmp->len);
    }
    if (m != NULL && m->n_rules > 0)
        json_rules(b, &n, m);
    if (ev->kind == XS_EV_STREAM_OPEN)
        json_stream_header(b, tmp, &n, ev);
    if (ev->kind == XS_EV_ERROR) {
        const char *cond = xs_parse_error_condition(ev->error_kind);
        json_key(b, &n, "error");
        json_cstr(b, xs_errname(ev->error));
        if (cond != NULL) {
            json_key(b, &n, "condition");
            json_cstr(b, cond);
        }
        if (ev->message != NULL) {
            json_key(b, &n, "message");
            json_cstr(b, ev->message);
        }
        json_key(b, &n, "line");
        json_uint(b, ev->line);
        json_key(b, &n, "column");
        json_uint(b, ev->column);
    }
    out_put(b, "}\n", 2);
    if (tmp->err != 0 && b->err == 0)
        b->err = tmp->err;
}

/* ---- public -------------------------------------------------------------------------------- */

static const char *const format_names[] = {
    [XS_FORMAT_PRETTY] = "pretty",
    [XS_FORMAT_COMPACT] = "compact",
    [XS_FORMAT_JSON] = "json",
    [XS_FORMAT_NONE] = "none",
};

int xs_format_parse(const char *name, xs_format *out)
{
    if (name == NULL || out == NULL)
        return XS_EINVAL;
    for (size_t i = 0; i < sizeof(format_names) / sizeof(format_names[0]); i++) {
        if (strcmp(name, format_names[i]) == 0) {
            *out = (xs_format)i;
            return 0;
        }
    }
    return XS_EINVAL;
}

const char *xs_format_name(xs_format format)
{
    if ((unsigned)format < sizeof(format_names) / sizeof(format_names[0]))
        return format_names[format];
    return "unknown";
}

int xs_color_wanted(int fd)
{
    const char *no_color = getenv("NO_COLOR"), *term = getenv("TERM");

    if (!isatty(fd))
        return 0;
    if (no_color != NULL && no_color[0] != '\0')
        return 0;
    if (term != NULL && strcmp(term, "dumb") == 0)
        return 0;
    return 1;
}

int xs_printer_new(FILE *out, const xs_print_options *options, xs_printer **printer)
{
    xs_printer *p;

    if (printer == NULL)
        return XS_EINVAL;
    *printer = NULL;
    if (out == NULL || options == NULL || (unsigned)options->format > XS_FORMAT_NONE)
        return XS_EINVAL;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return XS_ENOMEM;
    p->out = out;
    p->o = *options;
    *printer = p;
    return 0;
}

/* Writes the whole lines the buffer holds with one fwrite() and one fflush(), so the FILE holds
 * no part of a line afterwards, and empties the buffer whatever happens: lines a FILE failed to
 * take are not tried again. */
static int write_out(xs_printer *p)
{
    obuf *b = &p->buf;
    int rc = 0;

    if (b->len > 0 && fwrite(b->p, 1, b->len, p->out) != b->len)
        rc = XS_EIO;
    else if (fflush(p->out) != 0)
        rc = XS_EIO;
    out_reset(b);
    return rc;
}

/* Starts one event, after the lines a buffered printer holds. Returns the buffer to format into. */
static obuf *event_begin(xs_printer *p)
{
    p->buf.start = p->buf.len;
    p->buf.err = 0;
    p->scratch.len = 0;
    p->scratch.err = 0;
    return &p->buf;
}

/* Ends one event: cuts it off the buffer again when it could not be formatted whole, else writes
 * it at once (unbuffered) or with the lines held once they are enough. */
static int event_end(xs_printer *p)
{
    obuf *b = &p->buf;
    int rc = b->err;

    out_reset(&p->scratch);
    if (rc != 0) {
        b->len = b->start;
        b->err = 0;
        if (b->len == 0)
            out_reset(b);
        return rc;
    }
    if (!p->o.buffered || b->len >= XS_PRINT_BUFFER_MAX)
        return write_out(p);
    return 0;
}

int xs_printer_flush(xs_printer *p)
{
    if (p == NULL)
        return XS_EINVAL;
    if (p->buf.len == 0)
        return 0;
    return write_out(p);
}

int xs_printer_needs_tree(const xs_printer *p)
{
    return p != NULL && p->o.format == XS_FORMAT_PRETTY;
}

void xs_printer_free(xs_printer *p)
{
    if (p == NULL)
        return;
    (void)xs_printer_flush(p);
    free(p->buf.p);
    free(p->scratch.p);
    free(p);
}

int xs_printer_masked(xs_printer *p, const xs_print_meta *meta, const xs_event *ev,
                      const xs_redaction *red)
{
    static const xs_redaction none;
    obuf *b;

    if (p == NULL || ev == NULL)
        return XS_EINVAL;
    if (p->o.format == XS_FORMAT_NONE)
        return 0;
    if (red == NULL)
        red = &none;
    b = event_begin(p);
    switch (p->o.format) {
    case XS_FORMAT_PRETTY:
        pretty_event(p, b, &p->scratch, meta, ev, red);
        break;
    case XS_FORMAT_COMPACT:
        compact_event(p, b, &p->scratch, meta, ev, red);
        break;
    case XS_FORMAT_JSON:
        json_event(p, b, &p->scratch, meta, ev, red);
        break;
    case XS_FORMAT_NONE:
        break;
    }
    return event_end(p);
}

/* The masking is xs_obs_mask()'s, the one place where it happens (inspect/observer.c): every
 * output of a stanza goes through it, this one included. */
int xs_printer_event(xs_printer *p, const xs_print_meta *meta, const xs_event *ev)
{
    xs_obs_masked m;
    int rc;

    if (p == NULL || ev == NULL)
        return XS_EINVAL;
    if (p->o.format == XS_FORMAT_NONE)
        return 0;
    rc = xs_obs_mask(ev, meta, p->o.show_secrets, &m);
    if (rc != 0)
        return rc;
    rc = xs_printer_masked(p, meta != NULL ? &m.meta : NULL, ev, &m.red);
    xs_obs_masked_clear(&m);
    return rc;
}

int xs_printer_note(xs_printer *p, const xs_print_meta *meta, const char *level, const char *text)
{
    obuf *b;
    int n = 0;

    if (p == NULL)
        return XS_EINVAL;
    if (p->o.format == XS_FORMAT_NONE)
        return 0;
    if (level == NULL)
        level = "info";
    if (text == NULL)
        text = "";
    b = event_begin(p);
    switch (p->o.format) {
    case XS_FORMAT_PRETTY:
    case XS_FORMAT_COMPACT:
        out_head(p, b, meta);
        out_str(b, " ");
        if (strcmp(level, "error") == 0)
            sgr(p, b, SGR_ERROR);
        else if (strcmp(level, "warn") == 0)
            sgr(p, b, SGR_WARN);
        out_esc_str(b, level, ESC_LINE);
        out_str(b, ": ");
        out_esc_str(b, text, ESC_LINE);
        sgr(p, b, SGR_RESET);
        out_str(b, "\n");
        break;
    case XS_FORMAT_JSON:
        json_head(p, b, meta, "note", &n);
        json_key(b, &n, "level");
        json_cstr(b, level);
        json_key(b, &n, "message");
        json_cstr(b, text);
        out_put(b, "}\n", 2);
        break;
    case XS_FORMAT_NONE:
        break;
    }
    return event_end(p);
}
