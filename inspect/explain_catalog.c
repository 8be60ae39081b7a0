/* The explanation catalogs: languages, parsing the embedded text files, look-up. See explain.h. */
#include "inspect/explain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inspect/error.h"

/* The catalogs, embedded at build time (inspect/explain/embed.cmake). */
extern const unsigned char xs_explain_data_en[];
extern const unsigned long xs_explain_data_en_len;
extern const unsigned char xs_explain_data_zh[];
extern const unsigned long xs_explain_data_zh_len;

/* A catalog never has more entries than this, nor a line longer than this. */
#define MAX_ENTRIES 4096
#define MAX_LINE 4096

struct xs_catalog {
    char *text; /* a copy of the file, cut into NUL-terminated strings in place */
    xs_catalog_entry *entries;
    size_t n;
};

int xs_lang_parse(const char *name, xs_lang *out)
{
    if (name != NULL && strcmp(name, "en") == 0)
        *out = XS_LANG_EN;
    else if (name != NULL && strcmp(name, "zh") == 0)
        *out = XS_LANG_ZH;
    else
        return XS_EINVAL;
    return 0;
}

const char *xs_lang_name(xs_lang lang)
{
    return lang == XS_LANG_ZH ? "zh" : "en";
}

xs_lang xs_lang_from_env(void)
{
    static const char *const vars[] = {"LC_ALL", "LC_MESSAGES", "LANG"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        const char *v = getenv(vars[i]);
        if (v != NULL && v[0] != '\0')
            return strncmp(v, "zh", 2) == 0 ? XS_LANG_ZH : XS_LANG_EN;
    }
    return XS_LANG_EN;
}

const char *xs_catalog_builtin_text(xs_lang lang, size_t *len)
{
    if (lang == XS_LANG_ZH) {
        *len = (size_t)xs_explain_data_zh_len;
        return (const char *)xs_explain_data_zh;
    }
    *len = (size_t)xs_explain_data_en_len;
    return (const char *)xs_explain_data_en;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const xs_catalog_entry *)a)->key, ((const xs_catalog_entry *)b)->key);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static int fail(char *err, size_t cap, unsigned line, const char *what)
{
    if (err != NULL && cap > 0)
        snprintf(err, cap, "%u: %s", line, what);
    return XS_EPARSE;
}

/* Takes one "name = value" line into the current entry. */
static int take_field(xs_catalog_entry *e, char *s, unsigned line, char *err, size_t cap)
{
    char *eq = strchr(s, '=');
    if (eq == NULL)
        return fail(err, cap, line, "expected 'text = ...', 'ref = ...' or 'link = ...'");
    *eq = '\0';
    char *name = trim(s), *value = trim(eq + 1);
    const char **slot = strcmp(name, "text") == 0   ? &e->text
                        : strcmp(name, "ref") == 0  ? &e->ref
                        : strcmp(name, "link") == 0 ? &e->link
                                                    : NULL;
    if (slot == NULL)
        return fail(err, cap, line, "unknown field (text, ref or link)");
    if (*slot != NULL)
        return fail(err, cap, line, "field given twice");
    if (value[0] == '\0')
        return fail(err, cap, line, "empty value");
    *slot = value;
    return 0;
}

/* Cuts c->text into lines and entries. */
static int parse_lines(xs_catalog *c, size_t len, char *err, size_t cap)
{
    char *p = c->text, *end = c->text + len;
    unsigned line = 0;
    xs_catalog_entry *cur = NULL;

    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *next = nl != NULL ? nl + 1 : end;
        line++;
        if (nl != NULL)
            *nl = '\0';
        if ((size_t)(next - p) > MAX_LINE)
            return fail(err, cap, line, "line too long");
        char *s = trim(p);
        p = next;
        if (s[0] == '\0' || s[0] == '#')
            continue;
        if (s[0] == '[') {
            char *close = strrchr(s, ']');
            if (close == NULL || close[1] != '\0' || close == s + 1)
                return fail(err, cap, line, "a key is written [key]");
            if (cur != NULL && cur->text == NULL)
                return fail(err, cap, cur->line, "entry without text");
            if (c->n == MAX_ENTRIES)
                return fail(err, cap, line, "too many entries");
            *close = '\0';
            cur = &c->entries[c->n++];
            *cur = (xs_catalog_entry){.key = trim(s + 1), .line = line};
            continue;
        }
        if (cur == NULL)
            return fail(err, cap, line, "field before the first [key]");
        int rc = take_field(cur, s, line, err, cap);
        if (rc != 0)
            return rc;
    }
    if (cur != NULL && cur->text == NULL)
        return fail(err, cap, cur->line, "entry without text");
    return 0;
}

int xs_catalog_parse(const char *text, size_t len, xs_catalog **out, char *err, size_t cap)
{
    int rc = XS_ENOMEM;
    xs_catalog *c = calloc(1, sizeof(*c));

    *out = NULL;
    if (err != NULL && cap > 0)
        err[0] = '\0';
    if (c == NULL)
        goto out;
    c->text = malloc(len + 1);
    c->entries = calloc(MAX_ENTRIES, sizeof(*c->entries));
    if (c->text == NULL || c->entries == NULL)
        goto out;
    memcpy(c->text, text, len);
    c->text[len] = '\0';
    if (memchr(text, '\0', len) != NULL) {
        rc = fail(err, cap, 0, "NUL byte in the catalog");
        goto out;
    }
    rc = parse_lines(c, len, err, cap);
    if (rc != 0)
        goto out;
    /* Give back what the entries did not use. */
    xs_catalog_entry *shrunk = realloc(c->entries, (c->n > 0 ? c->n : 1) * sizeof(*c->entries));
    if (shrunk != NULL)
        c->entries = shrunk;
    qsort(c->entries, c->n, sizeof(*c->entries), entry_cmp);
    for (size_t i = 1; i < c->n; i++) {
        if (strcmp(c->entries[i - 1].key, c->entries[i].key) == 0) {
            rc = fail(err, cap, c->entries[i].line, "key given twice");
            goto out;
        }
    }
    *out = c;
    c = NULL;
out:
    xs_catalog_free(c);
    return rc;
}

int xs_catalog_builtin(xs_lang lang, xs_catalog **out, char *err, size_t cap)
{
    size_t len;
    const char *text = xs_catalog_builtin_text(lang, &len);
    return xs_catalog_parse(text, len, out, err, cap);
}

void xs_catalog_free(xs_catalog *c)
{
    if (c == NULL)
        return;
    free(c->text);
    free(c->entries);
    free(c);
}

size_t xs_catalog_count(const xs_catalog *c)
{
    return c->n;
}

const xs_catalog_entry *xs_catalog_at(const xs_catalog *c, size_t i)
{
    return i < c->n ? &c->entries[i] : NULL;
}

const xs_catalog_entry *xs_catalog_find(const xs_catalog *c, const char *key)
{
    xs_catalog_entry k = {.key = key};
    return bsearch(&k, c->entries, c->n, sizeof(k), entry_cmp);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void xs_catalog_placeholders(const char *text, char *out, size_t cap)
{
    char names[64][48];
    const char *sorted[64];
    size_t n = 0, used = 0;

    for (const char *p = strchr(text, '{'); p != NULL && n < 64; p = strchr(p + 1, '{')) {
        const char *close = strchr(p, '}');
        if (close == NULL)
            break;
        size_t len = (size_t)(close - p + 1);
        if (len >= sizeof(names[0]))
            len = sizeof(names[0]) - 1;
        memcpy(names[n], p, len);
        names[n][len] = '\0';
        sorted[n] = names[n];
        n++;
    }
    qsort(sorted, n, sizeof(sorted[0]), str_cmp);
    if (cap > 0)
        out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(sorted[i], sorted[i - 1]) == 0)
            continue;
        int k = snprintf(out + used, cap - used, "%s%s", used > 0 ? " " : "", sorted[i]);
        if (k < 0 || (size_t)k >= cap - used)
            break;
        used += (size_t)k;
    }
}
