/* JSON Lines. They are written directly, not through a jansson tree: building and dumping one
 * tree per stanza cost more than everything else the proxy does for it. The output is byte for
 * byte what json_dumps(JSON_COMPACT) made of the same tree (tests/unit/test_print.c keeps that
 * tree as the reference); jansson is still used for the stream header's attribute maps, once per
 * stream. See print.h for the schema. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libxml/tree.h>

#include "inspect/error.h"
#include "inspect/print_impl.h"
#include "inspect/utf8.h"

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
static void json_escape(xs_buf *b, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF";
    const char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

    switch (c) {
    case '"':
        xs_buf_add(b, "\\\"", 2);
        break;
    case '\\':
        xs_buf_add(b, "\\\\", 2);
        break;
    case '\b':
        xs_buf_add(b, "\\b", 2);
        break;
    case '\f':
        xs_buf_add(b, "\\f", 2);
        break;
    case '\n':
        xs_buf_add(b, "\\n", 2);
        break;
    case '\r':
        xs_buf_add(b, "\\r", 2);
        break;
    case '\t':
        xs_buf_add(b, "\\t", 2);
        break;
    default:
        if (c == '\0' || c >= 0x80)
            xs_buf_add(b, UTF8_REPLACEMENT, 3);
        else
            xs_buf_add(b, u, sizeof(u));
        break;
    }
}

/* Appends n bytes as a JSON string, escaped and made valid UTF-8 as print.h says. Runs of bytes
 * that need nothing, valid non-ASCII characters included, are copied whole, eight bytes are
 * looked at a time, and nothing is allocated but the output: most of a stanza is one run. */
static void json_str(xs_buf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0;

    xs_buf_add(b, "\"", 1);
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
            if (k > 0 && !xs_term_unsafe_cp(cp)) {
                i += k;
                continue;
            }
            if (k > 0) {
                /* Valid JSON as it is, but not for a terminal (see xs_term_unsafe_cp()): the one
                 * place JSON goes beyond what jansson escapes. */
                xs_buf_add(b, s + run, i - run);
                xs_print_fmt(b, "\\u%04X", (unsigned)cp);
                run = i += k;
                continue;
            }
        }
        xs_buf_add(b, s + run, i - run);
        json_escape(b, c);
        run = ++i;
    }
    xs_buf_add(b, s + run, n - run);
    xs_buf_add(b, "\"", 1);
}

/* A NUL-terminated string; NULL is written as "". */
static void json_cstr(xs_buf *b, const char *s)
{
    json_str(b, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

int xs_json_fputs(FILE *f, const char *s)
{
    xs_buf b;
    int rc = 0;

    xs_buf_init(&b, OUT_MAX);
    json_cstr(&b, s);
    if (xs_buf_error(&b) != 0)
        rc = xs_buf_error(&b);
    else if (fwrite(xs_buf_ptr(&b), 1, xs_buf_len(&b), f) != xs_buf_len(&b))
        rc = XS_EIO;
    xs_buf_free(&b);
    return rc;
}

/* ---- the writer: direct, or through jansson -------------------------------------------------
 *
 * Every JSON line is written through a jw. Directly (the fast path), each call appends its text to
 * the buffer. In reference mode (XS_REFERENCE, reference.h) the same calls build a jansson tree,
 * which is dumped with json_dumpb(JSON_COMPACT) when the line ends: the printers then use the
 * reference library alone, and the unit suites, run both ways, hold the two to the same bytes. */

#define JW_DEPTH 4

typedef struct jw {
    xs_buf *b;   /* where the line goes */
    xs_buf *tmp; /* scratch for values made valid UTF-8 (reference mode) */
    int ref;
    int depth;
    int n[JW_DEPTH];         /* members or items written in each open container */
    char kind[JW_DEPTH];     /* '{' or '[' */
    json_t *stack[JW_DEPTH]; /* reference mode: the open containers */
    const char *key;         /* reference mode: the key of the next member */
    int err;                 /* reference mode: out of memory */
} jw;

static void jw_init(jw *w, xs_printer *p, xs_buf *b)
{
    memset(w, 0, sizeof(*w));
    w->b = b;
    w->tmp = &p->scratch;
    w->ref = p->reference;
    w->depth = -1;
}

/* Reference mode: puts v into the open container (at the pending key of an object). Takes v. */
static void jw_put(jw *w, json_t *v)
{
    if (v == NULL) {
        w->err = XS_ENOMEM;
        return;
    }
    if (w->depth < 0) { /* the root: kept in stack[0] by jw_open() */
        json_decref(v);
        return;
    }
    json_t *top = w->stack[w->depth];
    int rc = json_is_object(top) ? json_object_set_new_nocheck(top, w->key, v)
                                 : json_array_append_new(top, v);
    if (rc != 0)
        w->err = XS_ENOMEM;
}

/* Opens an object ('{') or an array ('['), as a value. */
static void jw_open(jw *w, char kind)
{
    if (w->depth + 1 >= JW_DEPTH) {
        w->err = XS_EINVAL;
        return;
    }
    if (!w->ref) {
        if (w->depth >= 0 && w->kind[w->depth] == '[' && w->n[w->depth]++ > 0)
            xs_buf_add(w->b, ",", 1);
        xs_buf_add(w->b, kind == '{' ? "{" : "[", 1);
    } else {
        json_t *c = kind == '{' ? json_object() : json_array();
        if (c == NULL) {
            w->err = XS_ENOMEM;
            c = json_null();
        }
        if (w->depth >= 0)
            jw_put(w, json_incref(c));
        w->stack[w->depth + 1] = c;
    }
    w->key = NULL;
    w->depth++;
    w->kind[w->depth] = kind;
    w->n[w->depth] = 0;
}

/* Appends the escapes of the characters that are valid JSON as they are but not for a terminal
 * (xs_term_unsafe_cp(): DEL, C1, bidirectional and invisible controls) to what jansson dumped:
 * the one place JSON goes beyond what jansson escapes. Its text is valid UTF-8. */
static void add_dumped(xs_buf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        if (u[i] < 0x7f) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = xs_utf8_next(u + i, n - i, &cp);
        if (k == 0)
            k = 1;
        else if (xs_term_unsafe_cp(cp)) {
            xs_buf_add(b, s + run, i - run);
            xs_print_fmt(b, "\\u%04X", (unsigned)cp);
            run = i + k;
        }
        i += k;
    }
    xs_buf_add(b, s + run, n - run);
}

/* Appends a jansson value, compact, as it dumps it, with add_dumped()'s escapes. */
static void json_dump_into(xs_buf *b, const json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15));

    if (text == NULL && b->err == 0)
        b->err = XS_ENOMEM;
    else if (text != NULL)
        add_dumped(b, text, strlen(text));
    free(text);
}

/* Closes the innermost container; the root's close ends the line (reference mode: dumps it). */
static void jw_close(jw *w)
{
    if (w->depth < 0)
        return;
    if (!w->ref) {
        xs_buf_add(w->b, w->kind[w->depth] == '[' ? "]" : "}", 1);
    } else if (w->depth == 0) {
        if (w->err != 0) {
            if (w->b->err == 0)
                w->b->err = w->err;
        } else {
            json_dump_into(w->b, w->stack[0]);
        }
        json_decref(w->stack[0]);
    } else {
        json_decref(w->stack[w->depth]); /* its parent holds it */
    }
    w->depth--;
}

/* Starts the next member of the object being written: a comma unless it is the first, then the
 * key, an ASCII name that needs no escaping (it must have static storage: reference mode keeps
 * it until the value comes). */
static void jw_key(jw *w, const char *key)
{
    if (w->ref) {
        w->key = key;
        return;
    }
    if (w->n[w->depth]++ > 0)
        xs_buf_add(w->b, ",", 1);
    xs_buf_add(w->b, "\"", 1);
    xs_print_str(w->b, key);
    xs_buf_add(w->b, "\":", 2);
}

/* Before a value in an array (direct mode): the comma. */
static void jw_item(jw *w)
{
    if (!w->ref && w->depth >= 0 && w->kind[w->depth] == '[' && w->n[w->depth]++ > 0)
        xs_buf_add(w->b, ",", 1);
}

/* Appends n bytes as valid UTF-8 without NUL: invalid sequences and NUL become U+FFFD. jansson
 * takes valid UTF-8 only, and NUL in a JSON string trips up many readers. */
static void out_utf8(xs_buf *t, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        uint32_t cp;
        size_t k = xs_utf8_next(u + i, n - i, &cp);
        if (k == 0 || cp == 0) {
            xs_print_str(t, UTF8_REPLACEMENT);
            i++;
        } else {
            xs_buf_add(t, s + i, k);
            i += k;
        }
    }
}

/* A string value of n bytes. */
static void jw_str(jw *w, const char *s, size_t n)
{
    if (!w->ref) {
        jw_item(w);
        json_str(w->b, s, n);
        return;
    }
    xs_print_scratch_clear(w->tmp);
    out_utf8(w->tmp, s, n);
    if (w->tmp->err != 0) {
        w->err = w->tmp->err;
        return;
    }
    jw_put(w, json_stringn_nocheck(xs_buf_ptr(w->tmp), w->tmp->len));
}

/* A NUL-terminated string; NULL is written as "". */
static void jw_cstr(jw *w, const char *s)
{
    jw_str(w, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

/* An integer, capped at the largest json_int_t. */
static void jw_uint(jw *w, uint64_t v)
{
    if (v > (uint64_t)INT64_MAX)
        v = (uint64_t)INT64_MAX;
    if (w->ref) {
        jw_put(w, json_integer((json_int_t)v));
        return;
    }
    char d[20];
    size_t i = sizeof(d);
    jw_item(w);
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    xs_buf_add(w->b, d + i, sizeof(d) - i);
}

/* A number with at most 3 decimals, as jansson writes a real (JSON_REAL_PRECISION(15)): the
 * shortest form, with ".0" when it has no fraction. */
static void jw_real3(jw *w, double v)
{
    double r = (double)(int64_t)(v * 1000.0 + (v < 0 ? -0.5 : 0.5)) / 1000.0;
    if (w->ref) {
        jw_put(w, json_real(r));
        return;
    }
    char t[48];
    int k = snprintf(t, sizeof(t), "%.15g", r);
    if (k <= 0 || (size_t)k >= sizeof(t))
        k = snprintf(t, sizeof(t), "0.0");
    jw_item(w);
    xs_buf_add(w->b, t, (size_t)k);
    if (strpbrk(t, ".eE") == NULL)
        xs_buf_add(w->b, ".0", 2);
}

static void jw_true(jw *w)
{
    if (w->ref) {
        jw_put(w, json_true());
        return;
    }
    jw_item(w);
    xs_buf_add(w->b, "true", 4);
}

/* A jansson value made elsewhere (the stream header's maps). Takes v. */
static void jw_json(jw *w, json_t *v)
{
    if (w->ref) {
        jw_put(w, v);
        return;
    }
    jw_item(w);
    json_dump_into(w->b, v);
    json_decref(v);
}

/* A member whose value is a NUL-terminated string (NULL: ""), or an integer. */
static void jw_kstr(jw *w, const char *key, const char *s)
{
    jw_key(w, key);
    jw_cstr(w, s);
}

static void jw_kuint(jw *w, const char *key, uint64_t v)
{
    jw_key(w, key);
    jw_uint(w, v);
}

/* The event's time as a JSON string, RFC 3339 UTC with microseconds. The date and the time of day
 * are formatted once per second; the microseconds are written by hand. */
static void json_time(xs_printer *p, jw *w, const xs_print_meta *m)
{
    struct timespec ts;
    char t[96];
    long us;

    xs_print_event_time(m, &ts);
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
    memcpy(t, p->time_text, p->time_len);
    char *frac = t + p->time_len;
    us = ts.tv_nsec / 1000L;
    frac[0] = '.';
    for (int i = 6; i >= 1; i--) {
        frac[i] = (char)('0' + us % 10);
        us /= 10;
    }
    frac[7] = 'Z';
    jw_str(w, t, p->time_len + 8);
}

/* The start of every JSON line: '{', then time, session, direction, phase, event. */
static void json_head(xs_printer *p, jw *w, const xs_print_meta *m, const char *event)
{
    jw_open(w, '{');
    if (m == NULL || !m->untimed) {
        jw_key(w, "time");
        json_time(p, w, m);
    }
    if (m != NULL && m->session != NULL) {
        jw_kstr(w, "session", m->session);
    }
    if (m != NULL && m->direction != NULL) {
        jw_kstr(w, "dir", m->direction);
    }
    if (m != NULL && m->phase != NULL) {
        jw_kstr(w, "phase", m->phase);
    }
    jw_kstr(w, "event", event);
}

/* The end of every JSON line. */
static void json_end(jw *w)
{
    jw_close(w);
    xs_buf_add(w->b, "\n", 1);
}

static void json_element(jw *w, xs_buf *attr, const xs_event *ev, const xs_redaction *red)
{
    const xmlNode *node = xs_print_event_node(ev, red);
    const char *name = ev->name, *prefix = ev->prefix, *ns = ev->ns;

    if (name == NULL && node != NULL) {
        name = (const char *)node->name;
        prefix = node->ns != NULL ? (const char *)node->ns->prefix : NULL;
        ns = node->ns != NULL ? (const char *)node->ns->href : NULL;
    }
    if (name != NULL) {
        jw_kstr(w, "name", name);
    }
    if (prefix != NULL) {
        jw_kstr(w, "prefix", prefix);
    }
    if (ns != NULL) {
        jw_kstr(w, "ns", ns);
    }
    for (size_t i = 0; i < sizeof(xs_print_key_attrs) / sizeof(xs_print_key_attrs[0]); i++) {
        if (xs_print_key_attr(ev, red, xs_print_key_attrs[i], attr)) {
            jw_key(w, xs_print_key_attrs[i]);
            /* The value is in attr, which jw_str() in reference mode does not use. */
            jw_str(w, xs_buf_ptr(attr), attr->len);
        }
    }
}

/* A jansson string, made valid as by out_utf8(). Returns NULL when out of memory. */
static json_t *jstr(xs_buf *tmp, const char *s)
{
    xs_print_scratch_clear(tmp);
    out_utf8(tmp, s, strlen(s));
    if (tmp->err != 0)
        return NULL;
    return json_stringn_nocheck(xs_buf_ptr(tmp), tmp->len);
}

/* Sets o[prefix:name] = v with the key made valid as by out_utf8(). Takes v, also on failure. */
static void jset_key(json_t *o, xs_buf *tmp, const char *prefix, const char *name, json_t *v,
                     int *bad)
{
    xs_print_scratch_clear(tmp);
    if (prefix != NULL) {
        out_utf8(tmp, prefix, strlen(prefix));
        xs_print_str(tmp, ":");
    }
    out_utf8(tmp, name, strlen(name));
    xs_buf_add(tmp, "", 1);
    if (v == NULL || tmp->err != 0) {
        json_decref(v);
        *bad = 1;
    } else if (json_object_set_new_nocheck(o, tmp->p, v) != 0) {
        *bad = 1;
    }
}

/* The stream header's "attrs" and "namespaces" maps. These go through jansson in both modes,
 * once per stream, for its rule on a repeated key (the later value, at the earlier key's place):
 * names that differ only in invalid UTF-8 are equal once it is replaced. */
static void json_stream_header(jw *w, xs_buf *tmp, const xs_event *ev)
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
        if (w->b->err == 0)
            w->b->err = tmp->err != 0 ? tmp->err : XS_ENOMEM;
        json_decref(attrs);
        json_decref(nss);
        return;
    }
    jw_key(w, "attrs");
    jw_json(w, attrs);
    jw_key(w, "namespaces");
    jw_json(w, nss);
}

static void json_rules(jw *w, const xs_print_meta *m)
{
    jw_key(w, "rules");
    jw_open(w, '[');
    for (size_t i = 0; i < m->n_rules; i++) {
        jw_open(w, '{');
        jw_kstr(w, "rule", m->rules[i].rule);
        jw_kstr(w, "action", m->rules[i].action);
        if (m->rules[i].detail != NULL) {
            jw_kstr(w, "detail", m->rules[i].detail);
        }
        jw_close(w);
    }
    jw_close(w);
    if (m->verdict != NULL) {
        jw_kstr(w, "verdict", m->verdict);
    }
    if (m->rewritten != NULL) {
        jw_kstr(w, "rewritten", m->rewritten);
    }
}

static void json_pair(jw *w, const xs_annot *a)
{
    jw_key(w, "pair");
    jw_open(w, '{');
    jw_kstr(w, "dir", a->pair_dir);
    jw_kuint(w, "offset", a->pair_offset);
    jw_kuint(w, "stream", a->pair_stream);
    jw_close(w);
    if (a->rtt_ms >= 0) {
        jw_key(w, "rtt_ms");
        jw_real3(w, a->rtt_ms);
    }
}

static void json_check_fields(jw *w, const xs_check_hit *h)
{
    jw_kstr(w, "check", h->id);
    if (h->ref != NULL) {
        jw_kstr(w, "ref", h->ref);
    }
    jw_kstr(w, "message", h->text);
}

/* "pair", "rtt_ms", "checks", "checks_more" and "explain" of an event's annotations. */
static void json_annot(jw *w, const xs_print_meta *m)
{
    const xs_annot *a = m != NULL ? m->annot : NULL;
    if (a == NULL)
        return;
    if (a->pair_dir != NULL)
        json_pair(w, a);
    if (a->n_checks > 0) {
        jw_key(w, "checks");
        jw_open(w, '[');
        for (size_t i = 0; i < a->n_checks; i++) {
            jw_open(w, '{');
            json_check_fields(w, &a->checks[i]);
            jw_close(w);
        }
        jw_close(w);
    }
    if (a->more_checks > 0) {
        jw_kuint(w, "checks_more", a->more_checks);
    }
    if (a->explain_len > 0) {
        jw_key(w, "explain");
        jw_str(w, a->explain, a->explain_len);
    }
}

void xs_print_json_check_lines(xs_printer *p, xs_buf *b, const xs_print_meta *m)
{
    const xs_annot *a = m->annot;
    for (size_t i = 0; i < a->n_checks; i++) {
        jw w;
        jw_init(&w, p, b);
        json_head(p, &w, m, "check");
        json_check_fields(&w, &a->checks[i]);
        if (i == 0 && a->pair_dir != NULL)
            json_pair(&w, a);
        json_end(&w);
    }
}

static void json_gs2(jw *w, const xs_redaction *red)
{
    char t[80];
    if (red->gs2_flag == 'p')
        snprintf(t, sizeof(t), "p=%s", red->cb_name);
    else
        snprintf(t, sizeof(t), "%s", red->gs2_flag == 'y' ? "y" : "n");
    jw_kstr(w, "gs2", t);
}

static void json_error(jw *w, const xs_event *ev)
{
    const char *cond = xs_parse_error_condition(ev->error_kind);
    jw_kstr(w, "error", xs_errname(ev->error));
    if (cond != NULL) {
        jw_kstr(w, "condition", cond);
    }
    if (ev->message != NULL) {
        jw_kstr(w, "message", ev->message);
    }
    jw_kuint(w, "line", ev->line);
    jw_kuint(w, "column", ev->column);
}

/* A stream-open's "client" and "server" addresses, when known (for `inspect --pcap`). */
static void json_addrs(jw *w, const xs_print_meta *m)
{
    if (m != NULL && m->client_addr != NULL)
        jw_kstr(w, "client", m->client_addr);
    if (m != NULL && m->server_addr != NULL)
        jw_kstr(w, "server", m->server_addr);
}

void xs_print_json(xs_printer *p, xs_buf *b, xs_buf *tmp, const xs_print_meta *m,
                   const xs_event *ev, const xs_redaction *red)
{
    jw w;
    jw_init(&w, p, b);
    /* Reference mode makes its strings in the scratch buffer; attribute values go elsewhere. */
    xs_buf *attr = tmp;
    xs_buf own;
    if (w.ref) {
        xs_buf_init(&own, OUT_MAX);
        attr = &own;
    }
    json_head(p, &w, m, xs_event_kind_name(ev->kind));
    jw_key(&w, "stream");
    jw_uint(&w, ev->stream_no);
    jw_key(&w, "offset");
    jw_uint(&w, ev->offset);
    jw_key(&w, "size");
    jw_uint(&w, ev->len);
    if (ev->kind == XS_EV_STREAM_OPEN || ev->kind == XS_EV_STANZA)
        json_element(&w, attr, ev, red);
    if (red->xml != NULL) {
        jw_key(&w, "raw");
        jw_str(&w, red->xml, red->xml_len);
        jw_key(&w, "redacted");
        jw_true(&w);
    } else if (ev->raw != NULL && ev->kind != XS_EV_ERROR) {
        jw_key(&w, "raw");
        jw_str(&w, ev->raw, ev->len);
    }
    if (red->note != NULL) {
        jw_key(&w, "sasl");
        jw_cstr(&w, red->note);
    }
    if (red->gs2_flag != 0)
        json_gs2(&w, red);
    if (m != NULL && m->n_rules > 0)
        json_rules(&w, m);
    json_annot(&w, m);
    if (ev->kind == XS_EV_STREAM_OPEN) {
        json_stream_header(&w, attr, ev);
        json_addrs(&w, m);
    }
    if (ev->kind == XS_EV_ERROR)
        json_error(&w, ev);
    json_end(&w);
    if (w.ref) {
        if (own.err != 0 && b->err == 0)
            b->err = own.err;
        xs_buf_free(&own);
    }
    if (tmp->err != 0 && b->err == 0)
        b->err = tmp->err;
}

/* "summary": the analysers' summary of a session (annot.h), an array of lines. */
static void json_summary(jw *w, const xs_print_meta *m)
{
    const char *s = m != NULL && m->annot != NULL ? m->annot->summary : NULL;
    if (s == NULL || *s == '\0')
        return;
    jw_key(w, "summary");
    jw_open(w, '[');
    while (s != NULL) {
        const char *nl = strchr(s, '\n');
        jw_str(w, s, nl != NULL ? (size_t)(nl - s) : strlen(s));
        s = nl != NULL ? nl + 1 : NULL;
    }
    jw_close(w);
}

void xs_print_json_note(xs_printer *p, xs_buf *b, const xs_print_meta *m, const char *level,
                        const char *text)
{
    jw w;
    jw_init(&w, p, b);
    json_head(p, &w, m, "note");
    jw_key(&w, "level");
    jw_cstr(&w, level);
    jw_key(&w, "message");
    jw_cstr(&w, text);
    json_summary(&w, m);
    json_end(&w);
}
