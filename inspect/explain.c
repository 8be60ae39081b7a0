/* Explanations: the observer, the lines, and the stream-level events (stream header, features,
 * STARTTLS, SASL and SASL2, stream errors, other nonzas). See explain.h. */
#include "inspect/explain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "inspect/b64.h"
#include "inspect/error.h"
#include "inspect/explain_impl.h"
#include "inspect/redact.h"
#include "inspect/utf8.h"

/* A value shown in a line is cut after this many bytes (on a character boundary), "…" added. */
#define VALUE_MAX 80
/* One line, before the annotation cuts the whole. */
#define EX_LINE_MAX 1024
/* Sessions remembered at once; beyond, new ones are explained without memory. */
#define MAX_SESSIONS 65536

/* ---- the lines ----------------------------------------------------------------------------- */

const char *xs_ex_attr(const xmlNode *el, const char *name)
{
    if (el == NULL || el->type != XML_ELEMENT_NODE)
        return NULL;
    for (const xmlAttr *at = el->properties; at != NULL; at = at->next) {
        if (at->ns == NULL && strcmp((const char *)at->name, name) == 0) {
            const xmlNode *t = at->children;
            if (t == NULL)
                return "";
            return t->next == NULL && t->content != NULL ? (const char *)t->content : NULL;
        }
    }
    return NULL;
}

const char *xs_ex_ns(const xmlNode *el)
{
    return el != NULL && el->ns != NULL && el->ns->href != NULL ? (const char *)el->ns->href : "";
}

int xs_ex_is(const xmlNode *el, const char *ns, const char *name)
{
    return el != NULL && el->type == XML_ELEMENT_NODE && strcmp(xs_ex_ns(el), ns) == 0 &&
           (name == NULL || strcmp((const char *)el->name, name) == 0);
}

const char *xs_ex_text(const xmlNode *el)
{
    for (const xmlNode *c = el != NULL ? el->children : NULL; c != NULL; c = c->next)
        if (c->type == XML_TEXT_NODE && c->content != NULL)
            return (const char *)c->content;
    return NULL;
}

/* The attribute of a stream header event. */
static const char *event_attr(const xs_event *ev, const char *name)
{
    for (size_t i = 0; i < ev->n_attrs; i++)
        if (ev->attrs[i].prefix == NULL && ev->attrs[i].name != NULL &&
            strcmp(ev->attrs[i].name, name) == 0)
            return ev->attrs[i].value;
    return NULL;
}

/* Appends a value from the wire: at most VALUE_MAX bytes, whole characters, line breaks and tabs
 * as spaces (a line is one line). Escaping the rest is the printers' job. */
static void put_value(char *out, size_t cap, size_t *len, const char *v)
{
    size_t n = strlen(v), i = 0;
    while (i < n && *len + 4 < cap) {
        uint32_t cp;
        size_t k = xs_utf8_next((const unsigned char *)v + i, n - i, &cp);
        if (k == 0) {
            /* Not UTF-8 (a value cut by a buffer of ours): '?', so every line stays UTF-8. */
            out[(*len)++] = '?';
            i++;
            continue;
        }
        if (i + k > VALUE_MAX) {
            memcpy(out + *len, "…", 3);
            *len += 3;
            break;
        }
        if (k == 1 && (v[i] == '\n' || v[i] == '\r' || v[i] == '\t'))
            out[(*len)++] = ' ';
        else {
            memcpy(out + *len, v + i, k);
            *len += k;
        }
        i += k;
    }
    out[*len] = '\0';
}

/* Expands the placeholders of text into out. */
static void expand(const char *text, const xs_ex_src *src, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (const char *p = text; *p != '\0' && len + 1 < cap;) {
        const char *close = p[0] == '{' ? strchr(p, '}') : NULL;
        if (close == NULL || close - p > 40) {
            out[len++] = *p++;
            out[len] = '\0';
            continue;
        }
        char name[48];
        memcpy(name, p + 1, (size_t)(close - p - 1));
        name[close - p - 1] = '\0';
        const char *v = NULL;
        if (name[0] == '@' && src != NULL)
            v = src->ev != NULL ? event_attr(src->ev, name + 1) : xs_ex_attr(src->el, name + 1);
        for (size_t i = 0; name[0] != '@' && src != NULL && i < src->n_vars; i++)
            if (strcmp(src->vars[i].name, name) == 0)
                v = src->vars[i].value;
        put_value(out, cap, &len, v != NULL ? v : "?");
        p = close + 1;
    }
}

int xs_ex_line(const xs_explainer *x, xs_annot *a, const char *key, const xs_ex_src *src)
{
    const xs_catalog_entry *e = xs_catalog_find(x->cat, key);
    if (e == NULL)
        return 0;
    char text[EX_LINE_MAX], line[EX_LINE_MAX];
    expand(e->text, src, text, sizeof(text));
    const xs_catalog_entry *f = xs_catalog_find(x->cat, "format");
    if (f == NULL || e->ref == NULL) {
        xs_annot_explain(a, "%s", text);
        return 1;
    }
    /* The catalog's own strings go in whole: only wire values are cut. */
    xs_ex_var v[3] = {{"text", text}, {"ref", e->ref}, {"link", e->link ? e->link : ""}};
    size_t len = 0;
    line[0] = '\0';
    for (const char *p = f->text; *p != '\0' && len + 1 < sizeof(line);) {
        const char *val = NULL;
        size_t skip = 0;
        for (size_t i = 0; i < 3 && val == NULL; i++) {
            size_t k = strlen(v[i].name);
            if (p[0] == '{' && strncmp(p + 1, v[i].name, k) == 0 && p[k + 1] == '}') {
                val = v[i].value;
                skip = k + 2;
            }
        }
        if (val == NULL) {
            line[len++] = *p++;
            line[len] = '\0';
            continue;
        }
        int k = snprintf(line + len, sizeof(line) - len, "%s", val);
        len = k < 0 ? len : len + (size_t)k >= sizeof(line) ? sizeof(line) - 1 : len + (size_t)k;
        p += skip;
    }
    xs_annot_explain(a, "%s", line);
    return 1;
}

int xs_ex_linef(const xs_explainer *x, xs_annot *a, const xmlNode *el, const char *prefix,
                const char *part, const char *part2)
{
    char key[512];
    int n = part2 != NULL ? snprintf(key, sizeof(key), "%s %s %s", prefix, part, part2)
                          : snprintf(key, sizeof(key), "%s %s", prefix, part);
    if (n < 0 || (size_t)n >= sizeof(key))
        return 0;
    xs_ex_src src = {.el = el};
    return xs_ex_line(x, a, key, &src);
}

int xs_ex_element(const xs_explainer *x, xs_annot *a, const xmlNode *el)
{
    const char *ns = xs_ex_ns(el);
    if (ns[0] == '\0')
        return 0;
    return xs_ex_linef(x, a, el, "ns", ns, (const char *)el->name) ||
           xs_ex_linef(x, a, el, "ns", ns, NULL);
}

void xs_ex_condition(const xs_explainer *x, xs_annot *a, const xmlNode *parent, const char *ns,
                     const char *prefix)
{
    for (const xmlNode *c = parent != NULL ? parent->children : NULL; c != NULL; c = c->next) {
        if (!xs_ex_is(c, ns, NULL) || strcmp((const char *)c->name, "text") == 0)
            continue;
        if (!xs_ex_linef(x, a, c, prefix, (const char *)c->name, NULL)) {
            char key[64];
            snprintf(key, sizeof(key), "%s-unknown", prefix);
            xs_ex_var v = {"condition", (const char *)c->name};
            xs_ex_src src = {.el = c, .vars = &v, .n_vars = 1};
            xs_ex_line(x, a, key, &src);
        }
        return;
    }
}

/* ---- sessions ------------------------------------------------------------------------------ */

static xs_ex_sess *session_get(xs_explainer *x, const xs_print_meta *m, int create)
{
    if (m == NULL || m->session == NULL)
        return NULL;
    for (xs_ex_sess *s = x->sessions; s != NULL; s = s->next)
        if (strcmp(s->id, m->session) == 0)
            return s;
    if (!create || x->n_sessions == MAX_SESSIONS)
        return NULL;
    xs_ex_sess *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->id = strdup(m->session)) == NULL) {
        free(s);
        return NULL; /* explained without memory */
    }
    s->next = x->sessions;
    x->sessions = s;
    x->n_sessions++;
    return s;
}

/* Forgets a session, or all of them (session NULL: the end of an offline input). */
static void session_forget(xs_explainer *x, const char *session)
{
    for (xs_ex_sess **pp = &x->sessions; *pp != NULL;) {
        xs_ex_sess *s = *pp;
        if (session != NULL && strcmp(s->id, session) != 0) {
            pp = &s->next;
            continue;
        }
        *pp = s->next;
        free(s->id);
        free(s);
        x->n_sessions--;
    }
}

/* ---- SASL ---------------------------------------------------------------------------------- */

/* Copies the quoted string that follows `marker` in the masking's note (note format of
 * redact_sasl.c: `SCRAM-SHA-1 client-first "n,,n=alice,r=..." gs2=n`), undoing the \" and \\
 * escapes and keeping the others (\xNN) as they are. Returns 1, or 0 when there is none. */
static int note_quoted(const char *note, const char *marker, char *out, size_t cap)
{
    const char *p = note != NULL ? strstr(note, marker) : NULL;
    size_t len = 0;
    if (p == NULL)
        return 0;
    for (p += strlen(marker); *p != '\0' && *p != '"' && len + 1 < cap; p++) {
        if (p[0] == '\\' && (p[1] == '"' || p[1] == '\\'))
            p++;
        out[len++] = *p;
    }
    out[len] = '\0';
    return 1;
}

/* The value of SCRAM attribute `key` in a message "k=v,k=v" (in place, cut at its comma), or
 * NULL. Only the keys the explanation shows are ever asked for: n, r, s, i, c, e. */
static const char *scram_get(char *msg, char key, char *buf, size_t cap)
{
    for (char *p = msg; p != NULL; p = strchr(p, ',')) {
        if (*p == ',')
            p++;
        if (p[0] == key && p[1] == '=') {
            size_t n = strcspn(p + 2, ",");
            if (n >= cap)
                n = cap - 1;
            memcpy(buf, p + 2, n);
            buf[n] = '\0';
            return buf;
        }
    }
    return NULL;
}

/* The SCRAM lines of a payload the masking described in its note. Returns 1 when it said
 * something, 0 when the note describes no SCRAM message. */
static int explain_scram(const xs_explainer *x, xs_annot *a, const xs_obs_event *ev,
                         const char *note)
{
    char msg[1024], v1[128], v2[128], v3[128];
    if (note_quoted(note, "client-first \"", msg, sizeof(msg))) {
        xs_ex_var v[] = {{"user", scram_get(msg, 'n', v1, sizeof(v1))},
                         {"nonce", scram_get(msg, 'r', v2, sizeof(v2))}};
        xs_ex_src src = {.vars = v, .n_vars = 2};
        xs_ex_line(x, a, "scram-client-first", &src);
        int flag = ev->masked != NULL ? ev->masked->gs2_flag : 0;
        xs_ex_var cb = {"cb", ev->masked != NULL ? ev->masked->cb_name : ""};
        xs_ex_src csrc = {.vars = &cb, .n_vars = 1};
        xs_ex_line(x, a, flag == 'p' ? "gs2-p" : flag == 'y' ? "gs2-y" : "gs2-n", &csrc);
    } else if (note_quoted(note, "server-first \"", msg, sizeof(msg))) {
        xs_ex_var v[] = {{"nonce", scram_get(msg, 'r', v1, sizeof(v1))},
                         {"salt", scram_get(msg, 's', v2, sizeof(v2))},
                         {"iterations", scram_get(msg, 'i', v3, sizeof(v3))}};
        xs_ex_src src = {.vars = v, .n_vars = 3};
        xs_ex_line(x, a, "scram-server-first", &src);
    } else if (note_quoted(note, "client-final \"", msg, sizeof(msg))) {
        /* c= is the base64 of the GS2 header, then the channel binding data when the flag is
         * 'p': shown decoded as far as the header goes, the data only counted. */
        char hdr[64] = "?";
        const char *c = scram_get(msg, 'c', v1, sizeof(v1));
        unsigned char *dec = NULL;
        size_t dlen = 0;
        if (c != NULL && xs_base64_decode(c, strlen(c), &dec, &dlen) == 0) {
            size_t h = 0;
            for (int commas = 0; h < dlen && commas < 2; h++)
                commas += dec[h] == ',';
            /* Decoded bytes from the wire: printable ASCII as it is, the rest as \xNN. */
            size_t k = 0;
            for (size_t i = 0; i < h && k + 5 < sizeof(hdr) - 24; i++)
                k += (size_t)snprintf(hdr + k, sizeof(hdr) - k,
                                      dec[i] >= 0x20 && dec[i] < 0x7F ? "%c" : "\\x%02X", dec[i]);
            hdr[k] = '\0';
            if (dlen > h)
                snprintf(hdr + k, sizeof(hdr) - k, " + %zu bytes", dlen - h);
        }
        free(dec);
        xs_ex_var v[] = {{"cbind", hdr}, {"nonce", scram_get(msg, 'r', v2, sizeof(v2))}};
        xs_ex_src src = {.vars = v, .n_vars = 2};
        xs_ex_line(x, a, "scram-client-final", &src);
        xs_ex_line(x, a, "scram-proof", NULL);
    } else if (note_quoted(note, "server-final \"", msg, sizeof(msg))) {
        xs_ex_var v = {"error", scram_get(msg, 'e', v1, sizeof(v1))};
        xs_ex_src src = {.vars = &v, .n_vars = 1};
        xs_ex_line(x, a, v.value != NULL ? "scram-error" : "scram-server-final", &src);
    } else {
        return 0;
    }
    return 1;
}

/* A SCRAM step whose payload was masked before xmppscope saw it (a --write log read back: the log
 * keeps the masked XML): the session's mechanism says which step it is. */
static void explain_scram_masked(const xs_explainer *x, xs_annot *a, const xmlNode *el)
{
    const char *t = xs_ex_text(el);
    if (t == NULL || strcmp(t, XS_REDACT_MASK) != 0)
        return;
    if (strcmp((const char *)el->name, "response") == 0) {
        xs_ex_line(x, a, "scram-client-final-masked", NULL);
        xs_ex_line(x, a, "scram-proof", NULL);
    } else if (strcmp((const char *)el->name, "success") == 0) {
        xs_ex_line(x, a, "scram-server-final", NULL);
    }
}

/* The PLAIN line, from the note: `PLAIN authzid="..." authcid="..." password=***`. The authcid is
 * read up to its closing quote: whatever follows (the password, with --show-secrets) is never
 * read. */
static void explain_plain(const xs_explainer *x, xs_annot *a, const char *note)
{
    char authzid[128], authcid[128];
    if (!note_quoted(note, "authzid=\"", authzid, sizeof(authzid)) ||
        !note_quoted(note, "authcid=\"", authcid, sizeof(authcid))) {
        xs_ex_line(x, a, "sasl-plain-masked", NULL);
        return;
    }
    xs_ex_var v[] = {{"authzid", authzid}, {"authcid", authcid}};
    xs_ex_src src = {.vars = v, .n_vars = 2};
    xs_ex_line(x, a, authzid[0] != '\0' ? "sasl-plain-authzid" : "sasl-plain", &src);
}

/* The mechanism-specific lines of an <auth/> or <authenticate/>. */
static void explain_mech(const xs_explainer *x, xs_annot *a, const xs_obs_event *ev,
                         const char *mech, const char *note)
{
    if (mech == NULL)
        return;
    if (strcasecmp(mech, "PLAIN") == 0) {
        explain_plain(x, a, note);
    } else if (strncasecmp(mech, "SCRAM-", 6) == 0) {
        xs_ex_line(x, a, "scram-what", NULL);
        explain_scram(x, a, ev, note);
    } else if (strcasecmp(mech, "ANONYMOUS") == 0) {
        xs_ex_line(x, a, "sasl-anonymous", NULL);
    } else if (strcasecmp(mech, "EXTERNAL") == 0) {
        xs_ex_line(x, a, "sasl-external", NULL);
    } else {
        xs_ex_linef(x, a, NULL, "mech", mech, NULL);
    }
}

static void explain_sasl(xs_explainer *x, xs_annot *a, const xs_obs_event *ev, const xmlNode *el)
{
    const char *name = (const char *)el->name;
    const char *note = ev->masked != NULL ? ev->masked->note : NULL;
    int sasl2 = xs_ex_is(el, XS_NS_SASL2, NULL);
    xs_ex_sess *s =
        session_get(x, ev->meta, strcmp(name, "auth") == 0 || strcmp(name, "authenticate") == 0);

    xs_ex_element(x, a, el);
    if (strcmp(name, "auth") == 0 || strcmp(name, "authenticate") == 0) {
        const char *mech = xs_ex_attr(el, "mechanism");
        if (s != NULL && mech != NULL)
            snprintf(s->mech, sizeof(s->mech), "%s", mech);
        explain_mech(x, a, ev, mech, note);
    } else if (strcmp(name, "failure") == 0) {
        xs_ex_condition(x, a, el, XS_NS_SASL, "sasl-failure"); /* SASL2 too */
    } else if (s == NULL || s->mech[0] == '\0' || strncasecmp(s->mech, "SCRAM-", 6) == 0) {
        if (!explain_scram(x, a, ev, note) && s != NULL && s->mech[0] != '\0')
            explain_scram_masked(x, a, el);
    }
    /* SASL2 and Bind2: the children say what else is negotiated in the same round trip. */
    if (sasl2) {
        int n = 0;
        for (const xmlNode *c = el->children; c != NULL && n < 6; c = c->next)
            if (c->type == XML_ELEMENT_NODE && !xs_ex_is(c, XS_NS_SASL2, NULL) &&
                !xs_ex_is(c, XS_NS_SASL, NULL))
                n += xs_ex_element(x, a, c);
    }
}

/* ---- stream level -------------------------------------------------------------------------- */

static void explain_open(const xs_explainer *x, xs_annot *a, const xs_obs_event *ev)
{
    const char *dir = ev->meta != NULL ? ev->meta->direction : NULL;
    int server = dir != NULL ? strcmp(dir, "s2c") == 0 : event_attr(ev->ev, "id") != NULL;
    xs_ex_src src = {.ev = ev->ev};
    xs_ex_line(x, a, server ? "stream-open-server" : "stream-open-client", &src);
    if (ev->ev->stream_no > 1)
        xs_ex_line(x, a, "stream-restart", NULL);
}

static void explain_mechanisms(const xs_explainer *x, xs_annot *a, const xmlNode *mechs)
{
    char list[512];
    size_t len = 0;
    list[0] = '\0';
    for (const xmlNode *m = mechs->children; m != NULL; m = m->next) {
        const char *t = xs_ex_is(m, xs_ex_ns(mechs), "mechanism") ? xs_ex_text(m) : NULL;
        if (t != NULL && len + strlen(t) + 3 < sizeof(list))
            len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", len ? ", " : "", t);
    }
    xs_ex_var v = {"mechs", list};
    xs_ex_src src = {.el = mechs, .vars = &v, .n_vars = 1};
    xs_ex_line(x, a, "feature " XS_NS_SASL " mechanisms", &src);
    int n = 0;
    for (const xmlNode *m = mechs->children; m != NULL && n < 8; m = m->next) {
        const char *t = xs_ex_is(m, xs_ex_ns(mechs), "mechanism") ? xs_ex_text(m) : NULL;
        if (t == NULL)
            continue;
        n++;
        if (!xs_ex_linef(x, a, m, "mech", t, NULL)) {
            xs_ex_var mv = {"mech", t};
            xs_ex_src ms = {.el = m, .vars = &mv, .n_vars = 1};
            xs_ex_line(x, a, "mech-unknown", &ms);
        }
    }
}

static void explain_feature(const xs_explainer *x, xs_annot *a, const xmlNode *f)
{
    const char *ns = xs_ex_ns(f), *name = (const char *)f->name;
    if (strcmp(name, "mechanisms") == 0 && strcmp(ns, XS_NS_SASL) == 0) {
        explain_mechanisms(x, a, f);
        return;
    }
    if (xs_ex_linef(x, a, f, "feature", ns, name)) {
        /* SASL2 offers its mechanisms and what may be done inline (Bind2, stream management). */
        for (const xmlNode *c = f->children; c != NULL; c = c->next) {
            if (xs_ex_is(c, XS_NS_SASL2, "inline"))
                for (const xmlNode *i = c->children; i != NULL; i = i->next)
                    if (i->type == XML_ELEMENT_NODE)
                        xs_ex_linef(x, a, i, "feature", xs_ex_ns(i), (const char *)i->name);
        }
        return;
    }
    xs_ex_var v[] = {{"name", name}, {"ns", ns}};
    xs_ex_src src = {.el = f, .vars = v, .n_vars = 2};
    xs_ex_line(x, a, "feature-unknown", &src);
}

static void explain_features(const xs_explainer *x, xs_annot *a, const xmlNode *el)
{
    xs_ex_line(x, a, "features", NULL);
    int n = 0;
    for (const xmlNode *f = el->children; f != NULL && n < 12; f = f->next) {
        if (f->type != XML_ELEMENT_NODE)
            continue;
        n++;
        explain_feature(x, a, f);
    }
}

/* An element directly inside the stream. */
static void explain_top(xs_explainer *x, xs_annot *a, const xs_obs_event *ev, const xmlNode *el)
{
    const char *ns = xs_ex_ns(el), *name = (const char *)el->name;
    if (strcmp(ns, XS_NS_STREAM) == 0 && strcmp(name, "features") == 0) {
        explain_features(x, a, el);
    } else if (strcmp(ns, XS_NS_STREAM) == 0 && strcmp(name, "error") == 0) {
        xs_ex_element(x, a, el);
        xs_ex_condition(x, a, el, XS_NS_STREAMS_ERR, "stream-error");
    } else if (strcmp(name, "message") == 0 || strcmp(name, "presence") == 0 ||
               strcmp(name, "iq") == 0) {
        xs_ex_stanza(x, a, el, ev->meta != NULL ? ev->meta->direction : NULL);
    } else if (strcmp(ns, XS_NS_SASL) == 0 || strcmp(ns, XS_NS_SASL2) == 0) {
        explain_sasl(x, a, ev, el);
    } else if (xs_ex_element(x, a, el)) {
        /* Stream management's <failed/> carries a stanza error condition. */
        xs_ex_condition(x, a, el, XS_NS_STANZAS, "stanza-error");
    } else {
        xs_ex_var v[] = {{"name", name}, {"ns", ns}};
        xs_ex_src src = {.el = el, .vars = v, .n_vars = 2};
        xs_ex_line(x, a, "nonza-unknown", &src);
    }
}

static void explain_parsed(xs_explainer *x, const xs_obs_event *ev, xs_annot *a)
{
    const xs_event *e = ev->ev;
    switch (e->kind) {
    case XS_EV_STREAM_OPEN:
        explain_open(x, a, ev);
        break;
    case XS_EV_STANZA: {
        /* The masked tree when secrets were masked; the stanza's own otherwise (nothing secret
         * in it). A stanza masked whole (no tree) is explained by its name alone. */
        const xmlNode *el =
            ev->masked != NULL && ev->masked->xml != NULL ? ev->masked->node : e->node;
        if (el != NULL)
            explain_top(x, a, ev, el);
        else if (e->ns != NULL && !xs_ex_linef(x, a, NULL, "ns", e->ns, e->name))
            xs_ex_linef(x, a, NULL, "ns", e->ns, NULL);
        break;
    }
    case XS_EV_KEEPALIVE: {
        xs_ex_sess *s = session_get(x, ev->meta, 1);
        if (s == NULL || !s->keepalive_said)
            xs_ex_line(x, a, "keepalive", NULL);
        if (s != NULL)
            s->keepalive_said = 1;
        break;
    }
    case XS_EV_STREAM_CLOSE:
        xs_ex_line(x, a, "stream-close", NULL);
        break;
    case XS_EV_ERROR: {
        const char *cond = xs_parse_error_condition(e->error_kind);
        xs_ex_var v = {"condition", cond};
        xs_ex_src src = {.vars = &v, .n_vars = 1};
        xs_ex_line(x, a, "parse-error", &src);
        xs_ex_linef(x, a, NULL, "stream-error", cond, NULL);
        break;
    }
    }
}

void xs_explain_annotate(void *ctx, const xs_obs_event *ev, xs_annot *annot)
{
    xs_explainer *x = ctx;
    if (ev->kind == XS_OBS_CLOSED) {
        session_forget(x, ev->meta != NULL ? ev->meta->session : NULL);
        return;
    }
    if (ev->kind != XS_OBS_PARSED || ev->ev == NULL || annot == NULL)
        return;
    explain_parsed(x, ev, annot);
}

/* ---- the explainer ------------------------------------------------------------------------- */

int xs_explainer_new(xs_lang lang, xs_explainer **out, char *err, size_t cap)
{
    xs_explainer *x = calloc(1, sizeof(*x));
    *out = NULL;
    if (x == NULL)
        return XS_ENOMEM;
    x->lang = lang;
    int rc = xs_catalog_builtin(lang, &x->cat, err, cap);
    if (rc != 0) {
        free(x);
        return rc;
    }
    *out = x;
    return 0;
}

void xs_explainer_free(xs_explainer *x)
{
    if (x == NULL)
        return;
    session_forget(x, NULL);
    xs_catalog_free(x->cat);
    free(x);
}

xs_observer xs_explainer_observer(xs_explainer *x)
{
    return (xs_observer){.annotate = xs_explain_annotate,
                         .ctx = x,
                         .policy = XS_OBS_BEST_EFFORT,
                         .needs_tree = 1,
                         .name = "the explanations"};
}
