/* The fast, conservative well-formedness check of one stanza. See wf.h. */
#include "inspect/wf.h"

#include "inspect/alloc.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parserInternals.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef struct span {
    const char *p;
    size_t n;
} span;

typedef struct nsdecl {
    span prefix; /* n == 0: the default namespace */
    span uri;
} nsdecl;

typedef struct frame {
    span qname;
    size_t ns_mark; /* n_ns before the element's own declarations */
} frame;

typedef struct attr {
    span qname, prefix, local, value;
    enum { DECL_NONE, DECL_DEFAULT, DECL_PREFIX } decl; /* xmlns='...', xmlns:p='...' */
    bool special;                                       /* see wf.special */
} attr;

#define XML_NS "http://www.w3.org/XML/1998/namespace"

typedef struct wf {
    const unsigned char *s;
    size_t n, i;
    nsdecl ns[XS_WF_MAX_NS];
    size_t n_ns;
    frame st[XS_WF_MAX_DEPTH];
    size_t depth;
    const xs_attr *decls;
    size_t n_decls;
    const char *default_ns;
    struct builder *b; /* NULL: check only */
    bool special;      /* the last text or value checked holds a reference or a CR (a value: or
                        * a tab or LF): xs_wf_decode() has something to do */
} wf;

/* Bytes of text and attribute values that need no further look (0): printable ASCII but '<',
 * '&' and ']', and tab, LF, CR. */
static const unsigned char text_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* Bytes of attribute values that need no further look (0): printable ASCII but '<', '&', ']'
 * and the two quotes. */
static const unsigned char value_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* Name characters: 1 may start a name (ASCII letters, '_'), 2 may follow. */
static const unsigned char name_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0,
    0, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0, 0, 0, 3,
    0, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* The first byte from i on that is not plain text (text_class), or n. */
static size_t skip_plain(const unsigned char *s, size_t i, size_t n)
{
#if defined(__SSE2__)
    /* Sixteen bytes at a time: '<', '&', ']', and (signed compare) everything below ' ' or
     * above 0x7F stop the run. Tab, LF and CR stop it too; the caller steps over them. */
    const __m128i lt = _mm_set1_epi8('<'), amp = _mm_set1_epi8('&'), br = _mm_set1_epi8(']');
    const __m128i space = _mm_set1_epi8(' ');
    while (n - i >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, lt), _mm_cmpeq_epi8(v, amp)),
                                    _mm_or_si128(_mm_cmpeq_epi8(v, br), _mm_cmplt_epi8(v, space)));
        int m = _mm_movemask_epi8(stop);
        if (m != 0)
            return i + (size_t)__builtin_ctz((unsigned)m);
        i += 16;
    }
#endif
    while (i < n && text_class[s[i]] == 0)
        i++;
    return i;
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool name_start(unsigned char c)
{
    return name_class[c] & 1;
}

static bool name_char(unsigned char c)
{
    return name_class[c] & 2;
}

static bool span_eq(span a, const char *b, size_t bn)
{
    return a.n == bn && (bn == 0 || memcmp(a.p, b, bn) == 0);
}

static bool is_xmlns(span a)
{
    return a.n == 5 && a.p[0] == 'x' && a.p[1] == 'm' && a.p[2] == 'l' && a.p[3] == 'n' &&
           a.p[4] == 's';
}

static bool starts_xml(span name)
{
    return name.n >= 3 && (name.p[0] | 0x20) == 'x' && (name.p[1] | 0x20) == 'm' &&
           (name.p[2] | 0x20) == 'l';
}

/* Whether code point c is an XML 1.0 Char. */
static bool xml_char(uint32_t c)
{
    return c == 0x9 || c == 0xA || c == 0xD || (c >= 0x20 && c <= 0xD7FF) ||
           (c >= 0xE000 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0x10FFFF);
}

static bool hex_digit(char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* A namespace name libxml2 surely takes as a URI (it refuses the declaration otherwise): an
 * absolute URI of a restricted form, scheme ":" ["//" host [":" port]] path ["?" query]
 * ["#" fragment], in ASCII, with only unreserved characters, sub-delimiters but '&' and '\'',
 * ':', '@', '/', '?' and percent escapes; and not one of the two names XML reserves. */
static bool plain_uri(span v)
{
    static const char ok[] = "-._~!$()*+,;=:@/";
    size_t k = 0;
    if (span_eq(v, "http://www.w3.org/XML/1998/namespace", 36) ||
        span_eq(v, "http://www.w3.org/2000/xmlns/", 29))
        return false;
    if (v.n == 0 || !((v.p[0] | 0x20) >= 'a' && (v.p[0] | 0x20) <= 'z'))
        return false;
    while (k < v.n && (name_char((unsigned char)v.p[k]) || v.p[k] == '+') && v.p[k] != '_')
        k++;
    if (k >= v.n || v.p[k] != ':')
        return false;
    k++;
    if (v.n - k >= 2 && v.p[k] == '/' && v.p[k + 1] == '/') {
        size_t host = k += 2;
        while (k < v.n && (name_char((unsigned char)v.p[k]) && v.p[k] != '_'))
            k++;
        if (k == host)
            return false;
        if (k < v.n && v.p[k] == ':') {
            size_t port = ++k;
            while (k < v.n && v.p[k] >= '0' && v.p[k] <= '9')
                k++;
            if (k == port || k - port > 9)
                return false; /* libxml2 refuses a port above INT_MAX */
        }
        if (k < v.n && v.p[k] != '/' && v.p[k] != '?' && v.p[k] != '#')
            return false;
    }
    bool fragment = false;
    for (; k < v.n; k++) {
        char c = v.p[k];
        if (c == '%') {
            if (k + 2 >= v.n || !hex_digit(v.p[k + 1]) || !hex_digit(v.p[k + 2]))
                return false;
            k += 2;
        } else if (c == '#') {
            if (fragment)
                return false;
            fragment = true;
        } else if (!(name_char((unsigned char)c) || c == '?' ||
                     (c != 0 && strchr(ok, c) != NULL))) {
            return false;
        }
    }
    return true;
}

/* One UTF-8 sequence of two to four bytes at w->i, valid and an XML Char. */
static bool utf8_char(wf *w)
{
    const unsigned char *s = w->s + w->i;
    size_t left = w->n - w->i;
    uint32_t c;
    size_t len;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2;
        c = s[0] & 0x1Fu;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        c = s[0] & 0x0Fu;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        c = s[0] & 0x07u;
    } else {
        return false;
    }
    if (left < len)
        return false;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return false;
        c = (c << 6) | (s[k] & 0x3Fu);
    }
    /* Overlong forms and surrogates are not Chars of the right length. */
    if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) || !xml_char(c))
        return false;
    w->i += len;
    return true;
}

/* The length of the reference at r[0, n) ("&...;": one of the five predefined entities or a
 * character reference of at most 8 digits to a code point up to U+10FFFF) and its code point,
 * or 0 when r does not start with one. */
static size_t ref_value(const char *r, size_t n, uint32_t *c)
{
    static const struct {
        const char *ref;
        char c;
    } ents[] = {{"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&quot;", '"'}, {"&apos;", '\''}};
    for (size_t e = 0; e < sizeof(ents) / sizeof(ents[0]); e++) {
        size_t len = strlen(ents[e].ref);
        if (n >= len && memcmp(r, ents[e].ref, len) == 0) {
            *c = (uint32_t)ents[e].c;
            return len;
        }
    }
    if (n < 4 || r[1] != '#')
        return 0;
    bool hex = r[2] == 'x';
    size_t k = hex ? 3 : 2, digits = 0;
    uint32_t v = 0;
    for (; k < n && r[k] != ';'; k++, digits++) {
        char d = r[k];
        if (digits == 8)
            return 0;
        if (d >= '0' && d <= '9')
            v = v * (hex ? 16u : 10u) + (uint32_t)(d - '0');
        else if (hex && (d | 0x20) >= 'a' && (d | 0x20) <= 'f')
            v = v * 16u + (uint32_t)((d | 0x20) - 'a' + 10);
        else
            return 0;
    }
    if (k == n || digits == 0 || v == 0 || v > 0x10FFFF)
        return 0;
    *c = v;
    return k + 1;
}

/* A reference at w->i ('&'): one of the five predefined entities or a character reference to
 * an XML Char. */
static bool reference(wf *w)
{
    uint32_t c;
    size_t len = ref_value((const char *)w->s + w->i, w->n - w->i, &c);
    if (len == 0 || !xml_char(c))
        return false;
    w->i += len;
    return true;
}

/* Character data up to the next '<' (or the end). */
static bool text(wf *w)
{
    w->special = false;
    while (w->i < w->n) {
        size_t i = skip_plain(w->s, w->i, w->n);
        w->i = i;
        if (i == w->n)
            break;
        unsigned char c = w->s[i];
        if (text_class[c] == 0) {
            w->special |= c == '\r';
            w->i++; /* tab, LF, CR */
        } else if (c == '<') {
            return true;
        } else if (c == '&') {
            w->special = true;
            if (!reference(w))
                return false;
        } else if (c == ']') {
            if (w->n - w->i >= 3 && w->s[w->i + 1] == ']' && w->s[w->i + 2] == '>')
                return false;
            w->i++;
        } else if (c >= 0x80) {
            if (!utf8_char(w))
                return false;
        } else {
            return false; /* a C0 control */
        }
    }
    return true;
}

/* A qualified name at w->i: prefix and local part (prefix.n == 0 when none). */
static bool qname(wf *w, span *q, span *prefix, span *local)
{
    size_t start = w->i, colon = 0;
    if (w->i >= w->n || !name_start(w->s[w->i]))
        return false;
    w->i++;
    while (w->i < w->n) {
        unsigned char c = w->s[w->i];
        if (name_char(c)) {
            w->i++;
        } else if (c == ':' && colon == 0 && w->i + 1 < w->n && name_start(w->s[w->i + 1])) {
            colon = w->i;
            w->i++;
        } else {
            break;
        }
    }
    const char *p = (const char *)w->s;
    *q = (span){p + start, w->i - start};
    if (q->n > XS_WF_MAX_NAME)
        return false;
    if (colon != 0) {
        *prefix = (span){p + start, colon - start};
        *local = (span){p + colon + 1, w->i - colon - 1};
    } else {
        *prefix = (span){NULL, 0};
        *local = *q;
    }
    return true;
}

static void skip_space(wf *w)
{
    while (w->i < w->n && is_space(w->s[w->i]))
        w->i++;
}

/* A quoted attribute value at w->i; its bytes without the quotes go to *v. */
static bool att_value(wf *w, span *v)
{
    if (w->i >= w->n || (w->s[w->i] != '"' && w->s[w->i] != '\''))
        return false;
    unsigned char q = w->s[w->i++];
    size_t start = w->i;
    w->special = false;
    while (w->i < w->n) {
        size_t i = w->i;
        while (i < w->n && value_class[w->s[i]] == 0)
            i++;
        w->i = i;
        if (i == w->n)
            break;
        unsigned char c = w->s[i];
        if (c == q) {
            *v = (span){(const char *)w->s + start, w->i - start};
            w->i++;
            return true;
        }
        if (c == '"' || c == '\'' || c == ']') {
            w->i++;
        } else if (c == '\t' || c == '\n' || c == '\r') {
            w->special = true; /* normalized to a space */
            w->i++;
        } else if (c == '&') {
            w->special = true;
            if (!reference(w))
                return false;
        } else if (c >= 0x80) {
            if (!utf8_char(w))
                return false;
        } else {
            return false; /* '<' or a C0 control */
        }
    }
    return false;
}

/* The namespace a prefix (n == 0: the default namespace) is bound to, innermost first; false
 * when unbound. A default namespace may be unbound: then *uri is empty and the result true. */
static bool resolve(const wf *w, span prefix, span *uri)
{
    for (size_t k = w->n_ns; k-- > 0;) {
        if (span_eq(w->ns[k].prefix, prefix.p, prefix.n)) {
            *uri = w->ns[k].uri;
            return true;
        }
    }
    if (prefix.n == 0) {
        *uri = (span){w->default_ns, w->default_ns ? strlen(w->default_ns) : 0};
        return true;
    }
    for (size_t k = 0; k < w->n_decls; k++) {
        const xs_attr *d = &w->decls[k];
        if (d->prefix != NULL && d->uri != NULL && span_eq(prefix, d->prefix, strlen(d->prefix))) {
            *uri = (span){d->uri, strlen(d->uri)};
            return true;
        }
    }
    return false;
}

static bool build_start(wf *w, span prefix, span local, const attr *at, size_t n_at, bool empty);
static bool build_text(wf *w, size_t start);

/* A start tag at w->i ('<' already passed): name, attributes, namespace declarations. Sets
 * *empty for "/>". */
static bool start_tag(wf *w, bool *empty, xs_wf_root *root)
{
    attr at[XS_WF_MAX_ATTRS];
    size_t n_at = 0;
    span q, prefix, local;
    size_t ns_mark = w->n_ns;
    if (root != NULL)
        root->n_attrs = 0;
    if (!qname(w, &q, &prefix, &local) || starts_xml(q))
        return false;
    for (;;) {
        size_t before = w->i;
        skip_space(w);
        if (w->i >= w->n)
            return false;
        unsigned char c = w->s[w->i];
        if (c == '>' || c == '/')
            break;
        if (w->i == before || n_at == XS_WF_MAX_ATTRS)
            return false; /* attributes are separated by whitespace */
        attr *a = &at[n_at++];
        span v = {NULL, 0};
        if (!qname(w, &a->qname, &a->prefix, &a->local))
            return false;
        skip_space(w);
        if (w->i >= w->n || w->s[w->i] != '=')
            return false;
        w->i++;
        skip_space(w);
        if (!att_value(w, &v))
            return false;
        a->value = v;
        a->special = w->special;
        bool decl_default = is_xmlns(a->qname);
        bool decl_prefix = is_xmlns(a->prefix);
        a->decl = decl_default ? DECL_DEFAULT : decl_prefix ? DECL_PREFIX : DECL_NONE;
        if (decl_default || decl_prefix) {
            if (!plain_uri(v) || w->n_ns == XS_WF_MAX_NS || (decl_prefix && starts_xml(a->local)))
                return false;
            w->ns[w->n_ns++] = (nsdecl){decl_default ? (span){NULL, 0} : a->local, v};
        } else if (starts_xml(a->qname) &&
                   !(span_eq(a->prefix, "xml", 3) && span_eq(a->local, "lang", 4))) {
            return false; /* of the xml: attributes only xml:lang, which XMPP uses */
        }
    }
    if (w->s[w->i] == '/') {
        if (w->i + 1 >= w->n || w->s[w->i + 1] != '>')
            return false;
        *empty = true;
        w->i += 2;
    } else {
        *empty = false;
        w->i++;
    }
    /* Attributes: distinct local names (distinct expanded names, conservatively), every
     * prefix bound. Declarations: distinct prefixes. Pairwise, but over at most XS_WF_MAX_ATTRS;
     * a prefix is looked up among at most XS_WF_MAX_NS declarations of the stanza and the stream
     * header's, which the parser caps (--max-attrs): so the cost per byte is bounded. */
    for (size_t k = 0; k < n_at; k++) {
        bool decl = at[k].decl != DECL_NONE;
        for (size_t j = 0; j < k; j++) {
            bool decl_j = at[j].decl != DECL_NONE;
            if (decl == decl_j && span_eq(at[k].local, at[j].local.p, at[j].local.n))
                return false;
        }
        span uri = {NULL, 0};
        if (span_eq(at[k].prefix, "xml", 3))
            uri = (span){XML_NS, sizeof(XML_NS) - 1};
        else if (!decl && at[k].prefix.n > 0 && !resolve(w, at[k].prefix, &uri))
            return false;
        if (root != NULL && !decl) {
            size_t r = root->n_attrs++;
            root->attrs[r].name = (xs_wf_str){at[k].local.p, at[k].local.n};
            root->attrs[r].prefix =
                (xs_wf_str){at[k].prefix.n ? at[k].prefix.p : NULL, at[k].prefix.n};
            root->attrs[r].ns = (xs_wf_str){uri.n ? uri.p : NULL, uri.n};
            root->attrs[r].value = (xs_wf_str){at[k].value.p, at[k].value.n};
        }
    }
    span uri;
    if (!resolve(w, prefix, &uri))
        return false;
    if (root != NULL) {
        root->name = (xs_wf_str){local.p, local.n};
        root->prefix = (xs_wf_str){prefix.n ? prefix.p : NULL, prefix.n};
        root->ns = (xs_wf_str){uri.n ? uri.p : NULL, uri.n};
    }
    if (w->b != NULL && !build_start(w, prefix, local, at, n_at, *empty))
        return false;
    if (*empty) {
        w->n_ns = ns_mark;
        return true;
    }
    if (w->depth == XS_WF_MAX_DEPTH)
        return false;
    w->st[w->depth++] = (frame){q, ns_mark};
    return true;
}

static void build_end(wf *w);

/* An end tag at w->i ("</" already passed). */
static bool end_tag(wf *w)
{
    span q, prefix, local;
    if (w->depth == 0 || !qname(w, &q, &prefix, &local))
        return false;
    skip_space(w);
    if (w->i >= w->n || w->s[w->i] != '>')
        return false;
    w->i++;
    frame *f = &w->st[--w->depth];
    if (!span_eq(q, f->qname.p, f->qname.n))
        return false;
    w->n_ns = f->ns_mark;
    if (w->b != NULL)
        build_end(w);
    return true;
}

/* The check of s[0, n): a whole element, or with `partial` the start of one (its end tags not
 * all there yet; n must end a tag or a text). Builds the tree as it goes when b is set. */
static int check(const char *s, size_t n, const xs_attr *decls, size_t n_decls,
                 const char *default_ns, xs_wf_root *root, struct builder *b, bool partial)
{
    wf w; /* not zeroed: its stacks are only read below their counts */
    w.s = (const unsigned char *)s;
    w.n = n;
    w.i = 0;
    w.n_ns = 0;
    w.depth = 0;
    w.decls = decls;
    w.n_decls = n_decls;
    w.default_ns = default_ns;
    w.b = b;
    bool first = true;
    if (n < 3 || s[0] != '<')
        return 0;
    while (w.i < w.n) {
        if (w.s[w.i] != '<') {
            size_t start = w.i;
            if (!text(&w) || (b != NULL && !build_text(&w, start)))
                return 0;
            continue;
        }
        w.i++;
        if (w.i >= w.n)
            return 0;
        if (w.s[w.i] == '/') {
            w.i++;
            if (!end_tag(&w))
                return 0;
        } else {
            bool empty;
            if (!start_tag(&w, &empty, first ? root : NULL))
                return 0;
            first = false;
        }
        if (w.depth == 0)
            return !partial && w.i == w.n;
    }
    return partial && w.depth > 0;
}

int xs_wf_element(const char *s, size_t n, const xs_attr *decls, size_t n_decls,
                  const char *default_ns, xs_wf_root *root)
{
    return check(s, n, decls, n_decls, default_ns, root, NULL, false);
}

int xs_wf_prefix(const char *s, size_t n, const xs_attr *decls, size_t n_decls,
                 const char *default_ns)
{
    /* Everything but a tag not finished yet: libxml2 looks at a tag only once its '>' is
     * there, but at a text as soon as it has it. (A '>' inside a value makes the check of the
     * tag fail, which is "not sure".) */
    const char *gt = n > 0 ? memrchr(s, '>', n) : NULL;
    const char *lt = n > 0 ? memrchr(s, '<', n) : NULL;
    if (gt == NULL || lt == NULL)
        return 0;
    size_t cut = lt > gt ? (size_t)(lt - s) : n;
    xs_wf_root root;
    return check(s, cut, decls, n_decls, default_ns, &root, NULL, true);
}

/* ---- building the tree of an accepted element ---------------------------------------------- */

/* A chunk of the arena; its bytes follow the header (32 bytes, so they are 16-aligned). */
struct xs_wf_chunk {
    struct xs_wf_chunk *next; /* the chunk filled before this one */
    size_t cap, at;
    size_t pad;
};

#define ARENA_MIN 4096u        /* bytes of the first chunk */
#define ARENA_KEEP (64u << 10) /* at most this much stays allocated between stanzas */

static void *arena_alloc(xs_wf_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct xs_wf_chunk *c = a->head;
    if (c == NULL || c->cap - c->at < n) {
        size_t cap = c != NULL ? 2 * c->cap : a->hint != 0 ? a->hint : ARENA_MIN;
        while (cap < n)
            cap *= 2;
        struct xs_wf_chunk *nc = xs_malloc(sizeof(*nc) + cap);
        if (nc == NULL)
            return NULL;
        nc->next = c;
        nc->cap = cap;
        nc->at = 0;
        a->head = c = nc;
    }
    void *p = (char *)(c + 1) + c->at;
    c->at += n;
    return p;
}

void xs_wf_arena_reset(xs_wf_arena *a)
{
    struct xs_wf_chunk *c = a->head;
    if (c == NULL)
        return;
    if (c->next == NULL && c->cap <= ARENA_KEEP) {
        c->at = 0;
        return;
    }
    /* The stanza needed more than one chunk: next time one chunk of about the total does. */
    size_t total = 0;
    while (c != NULL) {
        struct xs_wf_chunk *next = c->next;
        total += c->cap;
        xs_free(c);
        c = next;
    }
    a->head = NULL;
    size_t hint = ARENA_MIN;
    while (hint < total && hint < ARENA_KEEP)
        hint *= 2;
    a->hint = hint;
}

void xs_wf_arena_free(xs_wf_arena *a)
{
    xs_wf_arena_reset(a);
    xs_free(a->head);
    a->head = NULL;
    a->hint = 0;
}

/* The UTF-8 of code point c at o; returns its length. */
static size_t put_utf8(char *o, uint32_t c)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xC0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* The bytes xs_wf_decode() must look at: bit 1 in XS_WF_REFS, 2 in XS_WF_TEXT, 4 in
 * XS_WF_VALUE (stop_bit()). */
static const unsigned char decode_stop[256] = {['&'] = 7, ['\r'] = 6, ['\t'] = 4, ['\n'] = 4};

static unsigned stop_bit(xs_wf_decode_mode mode)
{
    return mode == XS_WF_REFS ? 1u : mode == XS_WF_TEXT ? 2u : 4u;
}

/* The first byte from i on that xs_wf_decode() must look at in `mode` ('&'; CR unless
 * XS_WF_REFS; tab and LF in XS_WF_VALUE), or n. */
static size_t copy_run(const char *s, size_t i, size_t n, xs_wf_decode_mode mode)
{
#if defined(__SSE2__)
    bool cr = mode != XS_WF_REFS, tabs = mode == XS_WF_VALUE;
    const __m128i amp = _mm_set1_epi8('&');
    const __m128i ret = _mm_set1_epi8(cr ? '\r' : '&');
    const __m128i tab = _mm_set1_epi8(tabs ? '\t' : '&'), lf = _mm_set1_epi8(tabs ? '\n' : '&');
    while (n - i >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, amp), _mm_cmpeq_epi8(v, ret)),
                                    _mm_or_si128(_mm_cmpeq_epi8(v, tab), _mm_cmpeq_epi8(v, lf)));
        int m = _mm_movemask_epi8(stop);
        if (m != 0)
            return i + (size_t)__builtin_ctz((unsigned)m);
        i += 16;
    }
#endif
    unsigned bit = stop_bit(mode);
    while (i < n && !(decode_stop[(unsigned char)s[i]] & bit))
        i++;
    return i;
}

size_t xs_wf_decode(char *out, const char *s, size_t n, xs_wf_decode_mode mode)
{
    size_t k = 0, i = 0;
    if (n < 32) {
        /* Short strings (most attribute values): copied as they are checked. */
        unsigned bit = stop_bit(mode);
        for (; i < n && !(decode_stop[(unsigned char)s[i]] & bit); i++)
            out[i] = s[i];
        if (i == n) {
            out[n] = 0;
            return n;
        }
        k = i;
    }
    for (;;) {
        size_t j = copy_run(s, i, n, mode);
        memcpy(out + k, s + i, j - i);
        k += j - i;
        if (j >= n)
            break;
        char c = s[j];
        uint32_t v;
        size_t rl;
        i = j + 1;
        if (c == '\r') {
            /* Line ends: CR LF and a lone CR are LF (XML 1.0 section 2.11). */
            out[k++] = mode == XS_WF_VALUE ? ' ' : '\n';
            if (i < n && s[i] == '\n')
                i++;
        } else if (c == '&' && (rl = ref_value(s + j, n - j, &v)) > 0) {
            k += put_utf8(out + k, v); /* never longer than the reference */
            i = j + rl;
        } else if (c == '&') {
            out[k++] = c;
        } else {
            out[k++] = ' '; /* tab or LF in a value: attribute-value normalization, 3.3.3 */
        }
    }
    out[k] = 0;
    return k;
}

/* s[0, n) decoded as `mode` says, NUL-terminated, in the arena; NULL when out of memory. */
static const char *decode(xs_wf_arena *a, const char *s, size_t n, xs_wf_decode_mode mode)
{
    char *o = arena_alloc(a, n + 1);
    if (o != NULL)
        xs_wf_decode(o, s, n, mode);
    return o;
}

/* A NUL-terminated copy of v in the arena. */
static char *arena_str(xs_wf_arena *a, span v)
{
    char *o = arena_alloc(a, v.n + 1);
    if (o != NULL) {
        memcpy(o, v.p, v.n);
        o[v.n] = 0;
    }
    return o;
}

/* A name in the arena. libxml2's builders take names from the document's dictionary, but no
 * reader of the tree relies on that (copies take names into their own document), and the
 * lookup cost more than the copy. */
static const xmlChar *node_name(xs_wf_arena *a, span name)
{
    return (const xmlChar *)arena_str(a, name);
}

static xmlNode *new_node(xs_wf_arena *a, xmlDoc *doc, xmlElementType type)
{
    xmlNode *n = arena_alloc(a, sizeof(*n));
    if (n != NULL) {
        memset(n, 0, sizeof(*n));
        n->type = type;
        n->doc = doc;
    }
    return n;
}

/* A text node of content t (NUL-terminated), with no parent yet. */
static xmlNode *new_text(xs_wf_arena *a, xmlDoc *doc, const char *t)
{
    xmlNode *n = t != NULL ? new_node(a, doc, XML_TEXT_NODE) : NULL;
    if (n != NULL) {
        n->name = xmlStringText;
        n->content = (xmlChar *)t;
    }
    return n;
}

static void append_child(xmlNode *parent, xmlNode *n)
{
    n->parent = parent;
    n->prev = parent->last;
    if (parent->last != NULL)
        parent->last->next = n;
    else
        parent->children = n;
    parent->last = n;
}

/* The namespace for prefix (n == 0: the default namespace) in scope at node: its own
 * declarations, its ancestors', up through the stream element, as xmlSearchNs() finds it. */
static xmlNs *find_ns(xmlNode *node, span prefix)
{
    if (span_eq(prefix, "xml", 3))
        return xmlSearchNs(node->doc, node, (const xmlChar *)"xml");
    for (xmlNode *n = node; n != NULL && n->type == XML_ELEMENT_NODE; n = n->parent) {
        for (xmlNs *d = n->nsDef; d != NULL; d = d->next) {
            /* A default namespace declared empty (xmlns='', which only the stream header can
             * hold here) means none: SAX2 gives such an element no namespace. */
            if (prefix.n == 0 && d->prefix == NULL && d->href != NULL)
                return d->href[0] != 0 ? d : NULL;
            if (prefix.n > 0 && d->prefix != NULL &&
                strncmp((const char *)d->prefix, prefix.p, prefix.n) == 0 &&
                d->prefix[prefix.n] == 0)
                return d;
        }
    }
    return NULL;
}

/* What check() builds as it goes when it builds a tree. */
struct builder {
    xs_wf_arena *a;
    xmlDoc *doc;
    xmlNode *parent; /* the stream element */
    xmlNode *cur;    /* the element whose content comes next */
    xmlNode *root;   /* the stanza's element, once started */
};

/* The text node of w->s[start, w->i). */
static bool build_text(wf *w, size_t start)
{
    struct builder *b = w->b;
    span raw = {(const char *)w->s + start, w->i - start};
    const char *t = w->special ? decode(b->a, raw.p, raw.n, XS_WF_TEXT) : arena_str(b->a, raw);
    xmlNode *tn = new_text(b->a, b->doc, t);
    if (tn == NULL)
        return false;
    append_child(b->cur, tn);
    return true;
}

/* The element of a start tag that passed the check: its namespace declarations in document
 * order, its namespace, its attributes with values decoded and normalized. */
static bool build_start(wf *w, span prefix, span local, const attr *at, size_t n_at, bool empty)
{
    struct builder *b = w->b;
    xs_wf_arena *a = b->a;
    xmlNode *el = new_node(a, b->doc, XML_ELEMENT_NODE);
    if (el == NULL || (el->name = node_name(a, local)) == NULL)
        return false;
    append_child(b->cur, el);
    if (b->root == NULL)
        b->root = el;
    xmlNs **decl_tail = &el->nsDef;
    for (size_t k = 0; k < n_at; k++) {
        bool decl_default = at[k].decl == DECL_DEFAULT;
        if (at[k].decl == DECL_NONE)
            continue;
        /* The URI is plain (no references), the prefix a name. */
        xmlNs *ns = arena_alloc(a, sizeof(*ns));
        if (ns == NULL)
            return false;
        memset(ns, 0, sizeof(*ns));
        ns->type = XML_NAMESPACE_DECL;
        ns->href = (const xmlChar *)arena_str(a, at[k].value);
        ns->prefix = decl_default ? NULL : (const xmlChar *)arena_str(a, at[k].local);
        if (ns->href == NULL || (!decl_default && ns->prefix == NULL))
            return false;
        *decl_tail = ns;
        decl_tail = &ns->next;
    }
    el->ns = find_ns(el, prefix);
    if (prefix.n > 0 && el->ns == NULL)
        return false;
    xmlAttr *last = NULL;
    for (size_t k = 0; k < n_at; k++) {
        if (at[k].decl != DECL_NONE)
            continue;
        xmlAttr *prop = arena_alloc(a, sizeof(*prop));
        if (prop == NULL)
            return false;
        memset(prop, 0, sizeof(*prop));
        prop->type = XML_ATTRIBUTE_NODE;
        prop->doc = b->doc;
        prop->parent = el;
        if (at[k].prefix.n > 0 && (prop->ns = find_ns(el, at[k].prefix)) == NULL)
            return false;
        const char *v = at[k].special ? decode(a, at[k].value.p, at[k].value.n, XS_WF_VALUE)
                                      : arena_str(a, at[k].value);
        xmlNode *vn = new_text(a, b->doc, v);
        if ((prop->name = node_name(a, at[k].local)) == NULL || vn == NULL)
            return false;
        vn->parent = (xmlNode *)prop;
        prop->children = prop->last = vn;
        prop->prev = last;
        if (last != NULL)
            last->next = prop;
        else
            el->properties = prop;
        last = prop;
    }
    if (!empty)
        b->cur = el;
    return true;
}

static void build_end(wf *w)
{
    w->b->cur = w->b->cur->parent;
}

int xs_wf_element_tree(const char *s, size_t n, const xs_attr *decls, size_t n_decls,
                       const char *default_ns, xs_wf_root *root, xmlNode *parent, xs_wf_arena *a,
                       xmlNode **out)
{
    struct builder b = {a, parent->doc, parent, parent, NULL};
    *out = NULL;
    int ok = check(s, n, decls, n_decls, default_ns, root, &b, false);
    if (b.root == NULL)
        return 0;
    if (!ok) {
        /* Nothing of the arena is freed here: the caller resets it. */
        xs_wf_unlink(b.root);
        return 0;
    }
    *out = b.root;
    return 1;
}

void xs_wf_unlink(xmlNode *root)
{
    xmlNode *parent = root->parent;
    if (parent == NULL)
        return;
    if (root->prev != NULL)
        root->prev->next = root->next;
    else
        parent->children = root->next;
    if (root->next != NULL)
        root->next->prev = root->prev;
    else
        parent->last = root->prev;
    root->parent = root->prev = root->next = NULL;
}
