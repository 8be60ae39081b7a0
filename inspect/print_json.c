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

/* Starts the next member of the object being written: a comma unless it is the first (*n counts
 * the members), then the key, an ASCII name that needs no escaping. */
static void json_key(xs_buf *b, int *n, const char *key)
{
    if ((*n)++ > 0)
        xs_buf_add(b, ",", 1);
    xs_buf_add(b, "\"", 1);
    xs_print_str(b, key);
    xs_buf_add(b, "\":", 2);
}

/* An integer, capped at the largest json_int_t as before. */
static void json_uint(xs_buf *b, uint64_t v)
{
    char d[20];
    size_t i = sizeof(d);

    if (v > (uint64_t)INT64_MAX)
        v = (uint64_t)INT64_MAX;
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    xs_buf_add(b, d + i, sizeof(d) - i);
}

/* The event's time as a JSON string, RFC 3339 UTC with microseconds. The date and the time of day
 * are formatted once per second; the microseconds are written by hand. */
static void json_time(xs_printer *p, xs_buf *b, const xs_print_meta *m)
{
    struct timespec ts;
    char frac[8];
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
    us = ts.tv_nsec / 1000L;
    frac[0] = '.';
    for (int i = 6; i >= 1; i--) {
        frac[i] = (char)('0' + us % 10);
        us /= 10;
    }
    frac[7] = 'Z';
    xs_buf_add(b, "\"", 1);
    xs_buf_add(b, p->time_text, p->time_len);
    xs_buf_add(b, frac, sizeof(frac));
    xs_buf_add(b, "\"", 1);
}

/* The start of every JSON line: time, session, direction, phase, event. */
static void json_head(xs_printer *p, xs_buf *b, const xs_print_meta *m, const char *event, int *n)
{
    xs_buf_add(b, "{", 1);
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

static void json_element(xs_buf *b, xs_buf *tmp, int *n, const xs_event *ev,
                         const xs_redaction *red)
{
    const xmlNode *node = xs_print_event_node(ev, red);
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
    for (size_t i = 0; i < sizeof(xs_print_key_attrs) / sizeof(xs_print_key_attrs[0]); i++) {
        if (xs_print_key_attr(ev, red, xs_print_key_attrs[i], tmp)) {
            json_key(b, n, xs_print_key_attrs[i]);
            json_str(b, xs_buf_ptr(tmp), tmp->len);
        }
    }
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

/* Appends a jansson value, compact, as it dumps it. */
static void json_dump_into(xs_buf *b, const json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);

    if (text == NULL && b->err == 0)
        b->err = XS_ENOMEM;
    else if (text != NULL)
        xs_print_str(b, text);
    free(text);
}

/* The stream header's "attrs" and "namespaces" maps. These still go through jansson, once per
 * stream, for its rule on a repeated key (the later value, at the earlier key's place): names
 * that differ only in invalid UTF-8 are equal once it is replaced. */
static void json_stream_header(xs_buf *b, xs_buf *tmp, int *n, const xs_event *ev)
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

static void json_rules(xs_buf *b, int *n, const xs_print_meta *m)
{
    json_key(b, n, "rules");
    xs_buf_add(b, "[", 1);
    for (size_t i = 0; i < m->n_rules; i++) {
        int k = 0;

        xs_print_str(b, i > 0 ? ",{" : "{");
        json_key(b, &k, "rule");
        json_cstr(b, m->rules[i].rule);
        json_key(b, &k, "action");
        json_cstr(b, m->rules[i].action);
        if (m->rules[i].detail != NULL) {
            json_key(b, &k, "detail");
            json_cstr(b, m->rules[i].detail);
        }
        xs_buf_add(b, "}", 1);
    }
    xs_buf_add(b, "]", 1);
    if (m->verdict != NULL) {
        json_key(b, n, "verdict");
        json_cstr(b, m->verdict);
    }
    if (m->rewritten != NULL) {
        json_key(b, n, "rewritten");
        json_cstr(b, m->rewritten);
    }
}

static void json_pair(xs_buf *b, int *n, const xs_annot *a)
{
    json_key(b, n, "pair");
    xs_print_str(b, "{\"dir\":");
    json_cstr(b, a->pair_dir);
    xs_print_str(b, ",\"offset\":");
    json_uint(b, a->pair_offset);
    xs_print_str(b, ",\"stream\":");
    json_uint(b, a->pair_stream);
    xs_print_str(b, "}");
    if (a->rtt_ms >= 0) {
        json_key(b, n, "rtt_ms");
        xs_print_fmt(b, "%.3f", a->rtt_ms);
    }
}

static void json_check_fields(xs_buf *b, int *n, const xs_check_hit *h)
{
    json_key(b, n, "check");
    json_cstr(b, h->id);
    if (h->ref != NULL) {
        json_key(b, n, "ref");
        json_cstr(b, h->ref);
    }
    json_key(b, n, "message");
    json_cstr(b, h->text);
}

/* "pair", "rtt_ms", "checks", "checks_more" and "explain" of an event's annotations. */
static void json_annot(xs_buf *b, int *n, const xs_print_meta *m)
{
    const xs_annot *a = m != NULL ? m->annot : NULL;
    if (a == NULL)
        return;
    if (a->pair_dir != NULL)
        json_pair(b, n, a);
    if (a->n_checks > 0) {
        json_key(b, n, "checks");
        xs_print_str(b, "[");
        for (size_t i = 0; i < a->n_checks; i++) {
            int k = 0;
            xs_print_str(b, i ? ",{" : "{");
            json_check_fields(b, &k, &a->checks[i]);
            xs_print_str(b, "}");
        }
        xs_print_str(b, "]");
    }
    if (a->more_checks > 0) {
        json_key(b, n, "checks_more");
        json_uint(b, a->more_checks);
    }
    if (a->explain_len > 0) {
        json_key(b, n, "explain");
        json_str(b, a->explain, a->explain_len);
    }
}

void xs_print_json_check_lines(xs_printer *p, xs_buf *b, const xs_print_meta *m)
{
    const xs_annot *a = m->annot;
    for (size_t i = 0; i < a->n_checks; i++) {
        int n = 0;
        json_head(p, b, m, "check", &n);
        json_check_fields(b, &n, &a->checks[i]);
        if (i == 0 && a->pair_dir != NULL)
            json_pair(b, &n, a);
        xs_buf_add(b, "}\n", 2);
    }
}

void xs_print_json(xs_printer *p, xs_buf *b, xs_buf *tmp, const xs_print_meta *m,
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
        xs_print_str(b, "true");
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
        xs_print_scratch_clear(tmp);
        if (red->gs2_flag == 'p') {
            xs_print_str(tmp, "p=");
            xs_print_str(tmp, red->cb_name);
        } else {
            xs_print_str(tmp, red->gs2_flag == 'y' ? "y" : "n");
        }
        json_str(b, xs_buf_ptr(tmp), tmp->len);
    }
    if (m != NULL && m->n_rules > 0)
        json_rules(b, &n, m);
    json_annot(b, &n, m);
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
    xs_buf_add(b, "}\n", 2);
    if (tmp->err != 0 && b->err == 0)
        b->err = tmp->err;
}

/* "summary": the analysers' summary of a session (annot.h), an array of lines. */
static void json_summary(xs_buf *b, int *n, const xs_print_meta *m)
{
    const char *s = m != NULL && m->annot != NULL ? m->annot->summary : NULL;
    if (s == NULL || *s == '\0')
        return;
    json_key(b, n, "summary");
    xs_print_str(b, "[");
    for (int first = 1; s != NULL; first = 0) {
        const char *nl = strchr(s, '\n');
        size_t len = nl != NULL ? (size_t)(nl - s) : strlen(s);
        if (!first)
            xs_print_str(b, ",");
        json_str(b, s, len);
        s = nl != NULL ? nl + 1 : NULL;
    }
    xs_print_str(b, "]");
}

void xs_print_json_note(xs_printer *p, xs_buf *b, const xs_print_meta *m, const char *level,
                        const char *text)
{
    int n = 0;

    json_head(p, b, m, "note", &n);
    json_key(b, &n, "level");
    json_cstr(b, level);
    json_key(b, &n, "message");
    json_cstr(b, text);
    json_summary(b, &n, m);
    xs_buf_add(b, "}\n", 2);
}
