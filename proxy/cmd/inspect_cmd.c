/* `xmppscope inspect`: offline reading of raw XMPP streams and of xmppscope's JSON Lines logs. */
#include "proxy/cmd/inspect_cmd.h"

#include "filters/filter_obs.h"
#include "filters/rules.h"

#include "proxy/cmd/cli.h"
#include "proxy/cmd/filter_cmd.h"
#include "inspect/check.h"
#include "inspect/error.h"
#include "inspect/explain.h"
#include "inspect/jsonl.h"
#include "inspect/observer.h"
#include "inspect/parser.h"
#include "inspect/pcap.h"
#include "inspect/print.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_SIZE 65536
/* Distinct stanza kinds or payload namespaces counted by --stats; the rest are "(other)". */
#define MAX_STAT_ROWS 512

typedef struct stat_row {
    char *key;
    unsigned long count;
    unsigned long long bytes;
} stat_row;

typedef struct stat_table {
    stat_row *rows;
    size_t n, cap;
} stat_table;

/* Observers of an inspect run: the printer, then those the options add (analysers, ...). */
#define MAX_OBSERVERS 8

typedef struct inspect {
    xs_printer *printer;
    xs_observer obs[MAX_OBSERVERS]; /* every event goes to these, the printer first */
    size_t n_obs;
    bool show_secrets;
    bool stats;
    const char *file; /* name shown for the current input */
    xs_print_meta meta;
    stat_table kinds, payloads;
    unsigned long events, stanzas, streams, errors, keepalives;
    unsigned long long stanza_bytes;
    int print_rc;            /* first output failure */
    xs_rules *rules;         /* --rules: applied to every stanza as a dry run */
    xs_rule_dir raw_dir;     /* --direction: the direction of raw captures */
    bool failed;             /* the current input had an error */
    xs_observer pcap;        /* --pcap: the capture's observer, called through pcap_quiet() */
    xs_analysis *analysis;   /* IQ pairing and checks (NULL with --no-checks) */
    xs_explainer *explainer; /* --explain */
    xs_pcap *pcap_file;      /* --pcap */
    xs_filter *filter;       /* --filter, and its wrapper around the printer */
    xs_filter_obs *filtered;
} inspect;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: xmppscope inspect [options] [FILE...|-]\n"
            "\n"
            "Reads XMPP traffic offline and prints it stanza by stanza. Each FILE is either a\n"
            "raw XMPP stream as captured (one direction; a new stream header, with or without\n"
            "an XML declaration, is a stream restart) or a JSON Lines log written by\n"
            "xmppscope (--write, --format json); the kind is detected from the first byte.\n"
            "Without FILE, or with -, standard input is read.\n"
            "\n"
            "options:\n"
            "  -f, --format FMT     pretty (default), compact, json or none\n"
            "  -s, --stats          print counts and bytes by stanza kind and by payload\n"
            "                       namespace after the input, and IQ requests and round\n"
            "                       trips (p50, p95, max) by payload namespace\n"
            "      --show-secrets   show SASL and password payloads in clear (masked by default)\n"
            "      --filter EXPR    show only what EXPR selects ('xmppscope filter --help'):\n"
            "                       --filter 'jid:bob@example.test message'. Errors and\n"
            "                       warnings are always shown; stream headers and notes when\n"
            "                       EXPR says yes to them: they are no message, so 'message'\n"
            "                       hides them and 'session:3' or 'not presence' shows them;\n"
            "                       a JID atom asks about the JID the session is bound to.\n"
            "                       tag: needs --rules (a log does not keep rules' results)\n"
            "      --rules FILE     dry run: show what the rules in FILE would do to each\n"
            "                       stanza (nothing is changed), and the hits per rule\n"
            "      --direction DIR  c2s or s2c: the direction of raw captures, for rules\n"
            "                       that name one (default: only 'direction any' rules)\n"
            "                       and for --pcap (default: c2s)\n"
            "      --explain        under each event, one or two lines of what it is and why\n"
            "                       it is there, with its RFC/XEP section and link (never a\n"
            "                       secret: computed from the masked event)\n"
            "      --lang LANG      language of --explain: en or zh (default: from LC_ALL,\n"
            "                       LC_MESSAGES or LANG; zh* gives zh, else en)\n"
            "      --pcap OUT       also write the traffic to OUT as TCP connections for\n"
            "                       Wireshark, one per session, between the client and server\n"
            "                       addresses a log names (mode 0600; an existing OUT is\n"
            "                       replaced; secrets masked unless --show-secrets)\n"
            "      --iq-timeout S   an IQ get/set without an answer after S seconds (of the\n"
            "                       log's time) is flagged iq-unanswered (default 30); so is\n"
            "                       one still waiting at the end of the input\n"
            "      --no-checks      no IQ pairing, round trips or protocol checks (on by\n"
            "                       default: warnings under the stanza, \"checks\" in JSON;\n"
            "                       IQs are paired in JSON Lines logs, which hold both\n"
            "                       directions, not in raw one-direction captures)\n"
            "      --color WHEN     auto (default: only on a terminal, never with NO_COLOR),\n"
            "                       always or never\n"
            "      --max-stanza N   refuse stanzas larger than N bytes (default %u)\n"
            "      --max-depth N    refuse elements nested deeper than N (default %u)\n"
            "      --max-attrs N    refuse elements with more than N attributes, or more than N\n"
            "                       namespace declarations in scope (default %u, at most %u)\n"
            "  -h, --help           show this help\n"
            "\n"
            "exit status: 0 all input read, 1 malformed input or a read error (the events\n"
            "before it are printed, then the error with its line and column), 2 usage error.\n"
            "\n"
            "examples:\n"
            "  xmppscope inspect examples/captures/c2s-plain.xml\n"
            "  xmppscope inspect --format compact --stats session.jsonl\n"
            "  xmppscope inspect --format json capture.xml > capture.jsonl\n"
            "  xmppscope inspect --explain --lang zh session.jsonl\n"
            "  xmppscope inspect --format none --pcap session.pcap session.jsonl\n",
            XS_PARSER_DEFAULT_MAX_STANZA, XS_PARSER_DEFAULT_MAX_DEPTH, XS_PARSER_DEFAULT_MAX_ATTRS,
            XS_PARSER_MAX_MAX_ATTRS);
}

/* ---- statistics ---------------------------------------------------------------------------- */

static void stat_add(stat_table *t, const char *key, unsigned long long bytes)
{
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->rows[i].key, key) == 0) {
            t->rows[i].count++;
            t->rows[i].bytes += bytes;
            return;
        }
    }
    if (t->n == MAX_STAT_ROWS) {
        if (strcmp(key, "(other)") != 0)
            stat_add(t, "(other)", bytes);
        else {
            /* The last row is "(other)" once the table is full. */
            t->rows[t->n - 1].count++;
            t->rows[t->n - 1].bytes += bytes;
        }
        return;
    }
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        stat_row *r = realloc(t->rows, ncap * sizeof(*r));
        if (r == NULL)
            return; /* statistics are best effort when memory runs out */
        t->rows = r;
        t->cap = ncap;
    }
    char *k = strdup(key);
    if (k == NULL)
        return;
    t->rows[t->n++] = (stat_row){.key = k, .count = 1, .bytes = bytes};
}

static void stat_free(stat_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->rows[i].key);
    free(t->rows);
}

static int row_cmp(const void *a, const void *b)
{
    const stat_row *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return strcmp(x->key, y->key);
}

static bool is_stanza_ns(const char *ns)
{
    return ns != NULL && (strcmp(ns, "jabber:client") == 0 || strcmp(ns, "jabber:server") == 0 ||
                          strcmp(ns, "jabber:component:accept") == 0);
}

static void count_stanza(inspect *in, const xs_event *ev)
{
    char key[512];
    if (is_stanza_ns(ev->ns) || ev->ns == NULL)
        snprintf(key, sizeof(key), "%s", ev->name);
    else if (ev->prefix != NULL)
        snprintf(key, sizeof(key), "%s:%s", ev->prefix, ev->name);
    else
        snprintf(key, sizeof(key), "%s {%s}", ev->name, ev->ns);
    stat_add(&in->kinds, key, ev->len);

    if (ev->node == NULL)
        return;
    /* Each distinct namespace among the stanza's children counts once per stanza. */
    const char *seen[32];
    size_t n_seen = 0;
    for (xmlNode *c = ev->node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        const char *ns = c->ns && c->ns->href ? (const char *)c->ns->href : "(none)";
        bool dup = false;
        for (size_t i = 0; i < n_seen; i++)
            dup = dup || strcmp(seen[i], ns) == 0;
        if (dup)
            continue;
        if (n_seen < 32)
            seen[n_seen++] = ns;
        stat_add(&in->payloads, ns, ev->len);
    }
}

/* The IQ rows of --stats (the analyser's), most requests first; NULL when none. */
static xs_iq_stat *iq_rows(inspect *in, size_t *n)
{
    *n = 0;
    if (in->analysis == NULL)
        return NULL;
    size_t total = xs_analysis_iq_stats(in->analysis, NULL, 0);
    xs_iq_stat *rows = total ? malloc(total * sizeof(*rows)) : NULL;
    if (rows != NULL)
        *n = xs_analysis_iq_stats(in->analysis, rows, total);
    return rows;
}

static void print_ms(double ms)
{
    if (ms < 0)
        printf(" %10s", "-");
    else
        printf(" %10.1f", ms);
}

static void print_iq_stats_text(inspect *in)
{
    size_t n;
    xs_iq_stat *rows = iq_rows(in, &n);
    if (rows == NULL)
        return;
    printf("\n%-40s %8s %8s %6s %6s %10s %10s %10s\n", "IQ requests by payload namespace",
           "requests", "answered", "errors", "unansw", "p50 ms", "p95 ms", "max ms");
    for (size_t i = 0; i < n; i++) {
        xs_term_printf(stdout, "  %-38s %8llu %8llu %6llu %6llu", rows[i].ns,
                       (unsigned long long)rows[i].requests, (unsigned long long)rows[i].answered,
                       (unsigned long long)rows[i].errors, (unsigned long long)rows[i].unanswered);
        print_ms(rows[i].p50);
        print_ms(rows[i].p95);
        print_ms(rows[i].max);
        printf("\n");
    }
    free(rows);
}

static void json_ms(const char *key, double ms)
{
    if (ms >= 0)
        printf(",\"%s\":%.3f", key, ms);
}

/* ,"iq":{NS:{"requests","answered","errors","unanswered","p50_ms","p95_ms","max_ms"}} */
static void print_iq_stats_json(inspect *in)
{
    size_t n;
    xs_iq_stat *rows = iq_rows(in, &n);
    if (in->analysis == NULL)
        return;
    printf(",\"iq\":{");
    for (size_t i = 0; i < n; i++) {
        printf("%s", i ? "," : "");
        xs_json_fputs(stdout, rows[i].ns);
        printf(":{\"requests\":%llu,\"answered\":%llu,\"errors\":%llu,\"unanswered\":%llu",
               (unsigned long long)rows[i].requests, (unsigned long long)rows[i].answered,
               (unsigned long long)rows[i].errors, (unsigned long long)rows[i].unanswered);
        json_ms("p50_ms", rows[i].p50);
        json_ms("p95_ms", rows[i].p95);
        json_ms("max_ms", rows[i].max);
        printf("}");
    }
    printf("}");
    free(rows);
}

static void print_stats(inspect *in, xs_format format)
{
    qsort(in->kinds.rows, in->kinds.n, sizeof(stat_row), row_cmp);
    qsort(in->payloads.rows, in->payloads.n, sizeof(stat_row), row_cmp);
    if (format == XS_FORMAT_JSON) {
        /* One JSON object, as the last line, in the spirit of the event lines. */
        printf("{\"event\":\"stats\",\"streams\":%lu,\"stanzas\":%lu,\"stanza_bytes\":%llu,"
               "\"keepalives\":%lu,\"errors\":%lu,\"kinds\":{",
               in->streams, in->stanzas, in->stanza_bytes, in->keepalives, in->errors);
        /* Keys are element names and namespace URIs from the input: JSON strings escaped as the
         * printer escapes them. */
        for (size_t t = 0; t < 2; t++) {
            stat_table *tab = t == 0 ? &in->kinds : &in->payloads;
            if (t == 1)
                printf("},\"payloads\":{");
            for (size_t i = 0; i < tab->n; i++) {
                printf("%s", i ? "," : "");
                xs_json_fputs(stdout, tab->rows[i].key);
                printf(":{\"count\":%lu,\"bytes\":%llu}", tab->rows[i].count, tab->rows[i].bytes);
            }
        }
        printf("}");
        print_iq_stats_json(in);
        printf("}\n");
        return;
    }
    printf("\n%-52s %10s %12s\n", "stanzas by kind", "count", "bytes");
    for (size_t i = 0; i < in->kinds.n; i++)
        xs_term_printf(stdout, "  %-50s %10lu %12llu\n", in->kinds.rows[i].key,
                       in->kinds.rows[i].count, in->kinds.rows[i].bytes);
    printf("\n%-52s %10s %12s\n", "payload namespaces (children of stanzas)", "stanzas", "bytes");
    for (size_t i = 0; i < in->payloads.n; i++)
        xs_term_printf(stdout, "  %-50s %10lu %12llu\n", in->payloads.rows[i].key,
                       in->payloads.rows[i].count, in->payloads.rows[i].bytes);
    print_iq_stats_text(in);
    printf("\ntotal: %lu stream%s, %lu stanza%s (%llu bytes), %lu keepalive%s, %lu error%s\n",
           in->streams, in->streams == 1 ? "" : "s", in->stanzas, in->stanzas == 1 ? "" : "s",
           in->stanza_bytes, in->keepalives, in->keepalives == 1 ? "" : "s", in->errors,
           in->errors == 1 ? "" : "s");
}

/* ---- events -------------------------------------------------------------------------------- */

static int handle_event(inspect *in, const xs_print_meta *meta, const xs_event *ev)
{
    in->events++;
    switch (ev->kind) {
    case XS_EV_STREAM_OPEN:
        in->streams++;
        break;
    case XS_EV_STANZA:
        in->stanzas++;
        in->stanza_bytes += ev->len;
        if (in->stats)
            count_stanza(in, ev);
        break;
    case XS_EV_KEEPALIVE:
        in->keepalives++;
        break;
    case XS_EV_STREAM_CLOSE:
        break;
    case XS_EV_ERROR:
        in->errors++;
        in->failed = true;
        xs_term_printf(stderr, "xmppscope inspect: %s:%u:%u: %s: %s\n", in->file, ev->line,
                       ev->column, xs_parse_error_condition(ev->error_kind), ev->message);
        break;
    }
    xs_print_meta m = *meta;
    xs_rule_result res;
    xs_print_rule pr[32];
    bool applied = false;
    if (in->rules != NULL && ev->kind == XS_EV_STANZA) {
        xs_rule_ctx ctx = {.session = meta->session};
        ctx.direction = meta->direction == NULL               ? in->raw_dir
                        : strcmp(meta->direction, "c2s") == 0 ? XS_RULE_C2S
                        : strcmp(meta->direction, "s2c") == 0 ? XS_RULE_S2C
                                                              : XS_RULE_ANY;
        if (xs_rules_apply(in->rules, &ctx, ev, &res) == 0) {
            applied = true;
            /* As the proxy reports it (proxy/session.c run_rules()): a note before the stanza. */
            if (res.error != NULL) {
                char text[1024];
                snprintf(text, sizeof(text), "rules: %s", res.error);
                int nrc = xs_printer_note(in->printer, meta, "warn", text);
                if (nrc < 0 && in->print_rc == 0)
                    in->print_rc = nrc;
            }
            size_t n = res.n_applied < 32 ? res.n_applied : 32;
            for (size_t i = 0; i < n; i++)
                pr[i] = (xs_print_rule){.rule = res.applied[i].rule,
                                        .action = res.applied[i].action,
                                        .detail = res.applied[i].detail};
            if (n > 0) {
                m.rules = pr;
                m.n_rules = n;
                m.verdict = xs_rule_verdict_name(res.verdict);
                m.rewritten = res.verdict == XS_VERDICT_REWRITTEN ? res.xml : NULL;
            }
        }
    }
    int rc = xs_obs_emit_event(in->obs, in->n_obs, &m, ev, in->show_secrets);
    if (rc < 0 && in->print_rc == 0)
        in->print_rc = rc;
    if (applied)
        xs_rule_result_clear(&res);
    return 0;
}

static int on_raw_event(void *user, const xs_event *ev)
{
    inspect *in = user;
    return handle_event(in, &in->meta, ev);
}

static int on_log_event(void *user, const xs_print_meta *meta, const xs_event *ev)
{
    return handle_event(user, meta, ev);
}

static int on_log_note(void *user, const xs_print_meta *meta, const char *level, const char *text)
{
    inspect *in = user;
    if (strcmp(level, "error") == 0)
        in->errors++;
    xs_obs_event e = {.kind = XS_OBS_NOTE, .meta = meta, .level = level, .text = text};
    int rc = xs_obs_emit_other(in->obs, in->n_obs, &e);
    if (rc < 0 && in->print_rc == 0)
        in->print_rc = rc;
    return 0;
}

/* The --pcap observer, whose failure is said once, when the capture is closed, and not as a
 * failure of the output. */
static int pcap_quiet(void *ctx, const xs_obs_event *ev)
{
    const xs_observer *o = ctx;
    (void)o->on_event(o->ctx, ev);
    return 0;
}

/* ---- inputs -------------------------------------------------------------------------------- */

static int read_raw(inspect *in, FILE *f, const xs_parser_limits *lim, const char *first,
                    size_t first_len)
{
    xs_parser *p = NULL;
    int rc = xs_parser_new(lim, XS_PARSER_TREE | XS_PARSER_RAW | XS_PARSER_AUTO_RESTART,
                           on_raw_event, in, &p);
    if (rc < 0) {
        xs_term_printf(stderr, "xmppscope inspect: %s\n", xs_strerror(rc));
        return 1;
    }
    in->meta = (xs_print_meta){.session = in->file, .untimed = 1};
    char *buf = malloc(READ_SIZE);
    if (buf == NULL) {
        xs_parser_free(p);
        return 1;
    }
    int status = 0;
    rc = xs_parser_feed(p, first, first_len, NULL);
    while (rc == 0) {
        size_t n = fread(buf, 1, READ_SIZE, f);
        if (n == 0)
            break;
        rc = xs_parser_feed(p, buf, n, NULL);
    }
    if (rc < 0) {
        status = 1; /* reported by the error event */
    } else if (ferror(f)) {
        xs_term_printf(stderr, "xmppscope inspect: %s: read error: %s\n", in->file,
                       strerror(errno));
        status = 1;
    }
    free(buf);
    xs_parser_free(p);
    return status;
}

/* Splits the input into lines of at most XS_JSONL_MAX_LINE bytes and replays each. */
static int read_jsonl(inspect *in, FILE *f, const xs_parser_limits *lim, const char *first,
                      size_t first_len)
{
    xs_jsonl_reader *r = NULL;
    if (xs_jsonl_reader_new(lim, on_log_event, on_log_note, in, &r) < 0)
        return 1;
    size_t cap = READ_SIZE * 2, len = 0;
    char *line = malloc(cap);
    char *buf = malloc(READ_SIZE);
    int status = 0;
    unsigned long lineno = 0;
    const char *chunk = first;
    size_t chunk_len = first_len;
    if (line == NULL || buf == NULL) {
        status = 1;
        goto out;
    }
    for (;;) {
        const char *end = chunk + chunk_len;
        const char *p = chunk;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n = (size_t)((nl ? nl : end) - p);
            if (len + n > XS_JSONL_MAX_LINE) {
                xs_term_printf(stderr, "xmppscope inspect: %s:%lu: line longer than %u bytes\n",
                               in->file, lineno + 1, XS_JSONL_MAX_LINE);
                status = 1;
                goto out;
            }
            if (len + n + 1 > cap) {
                while (len + n + 1 > cap)
                    cap *= 2;
                char *nline = realloc(line, cap);
                if (nline == NULL) {
                    status = 1;
                    goto out;
                }
                line = nline;
            }
            memcpy(line + len, p, n);
            len += n;
            p += n;
            if (nl != NULL) {
                p++;
                lineno++;
                char err[256] = "";
                int rc = xs_jsonl_reader_line(r, line, len, err, sizeof(err));
                len = 0;
                if (rc < 0) {
                    xs_term_printf(stderr, "xmppscope inspect: %s:%lu: %s\n", in->file, lineno,
                                   err[0] ? err : xs_strerror(rc));
                    status = 1;
                    goto out;
                }
            }
        }
        size_t n = fread(buf, 1, READ_SIZE, f);
        if (n == 0)
            break;
        chunk = buf;
        chunk_len = n;
    }
    if (len > 0) {
        char err[256] = "";
        lineno++;
        int rc = xs_jsonl_reader_line(r, line, len, err, sizeof(err));
        if (rc < 0) {
            xs_term_printf(stderr, "xmppscope inspect: %s:%lu: %s\n", in->file, lineno,
                           err[0] ? err : xs_strerror(rc));
            status = 1;
        }
    }
    if (ferror(f)) {
        xs_term_printf(stderr, "xmppscope inspect: %s: read error: %s\n", in->file,
                       strerror(errno));
        status = 1;
    }
out:
    free(line);
    free(buf);
    xs_jsonl_reader_free(r);
    return status;
}

static int inspect_file(inspect *in, const char *path, const xs_parser_limits *lim)
{
    FILE *f = stdin;
    if (strcmp(path, "-") != 0) {
        f = fopen(path, "rb");
        if (f == NULL) {
            xs_term_printf(stderr, "xmppscope inspect: cannot open %s: %s\n", path,
                           strerror(errno));
            return 1;
        }
    }
    in->file = strcmp(path, "-") == 0 ? "stdin" : path;
    in->failed = false;

    /* Sniff: skip whitespace and a UTF-8 byte order mark; '{' means JSON Lines. */
    char first[4096];
    size_t n = fread(first, 1, sizeof(first), f);
    size_t i = 0;
    if (n >= 3 && memcmp(first, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    size_t j = i;
    while (j < n && (first[j] == ' ' || first[j] == '\n' || first[j] == '\r' || first[j] == '\t'))
        j++;
    int status;
    if (j < n && first[j] == '{')
        status = read_jsonl(in, f, lim, first + i, n - i);
    else
        status = read_raw(in, f, lim, first + i, n - i);
    if (status == 0 && in->failed)
        status = 1;
    if (f != stdin)
        fclose(f);
    return status;
}

/* The long options of `xmppscope inspect`. */
static const struct option longopts[] = {
    {"format", required_argument, NULL, 'f'},
    {"stats", no_argument, NULL, 's'},
    {"show-secrets", no_argument, NULL, 'S'},
    {"color", required_argument, NULL, 'C'},
    {"colour", required_argument, NULL, 'C'},
    {"max-stanza", required_argument, NULL, 'M'},
    {"max-depth", required_argument, NULL, 'D'},
    {"max-attrs", required_argument, NULL, 'A'},
    {"rules", required_argument, NULL, 'R'},
    {"direction", required_argument, NULL, 'd'},
    {"explain", no_argument, NULL, 'E'},
    {"lang", required_argument, NULL, 'L'},
    {"pcap", required_argument, NULL, 'P'},
    {"filter", required_argument, NULL, 'F'},
    {"iq-timeout", required_argument, NULL, 'T'},
    {"no-checks", no_argument, NULL, 'N'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* The options as given. */
typedef struct inspect_args {
    xs_print_options popt;
    xs_parser_limits lim;
    const char *color;
    const char *rules_path;
    const char *pcap_path; /* --pcap OUT; NULL: none */
    const char *filter;    /* --filter as given */
    inspect *in;
    bool explain;       /* --explain */
    xs_lang lang;       /* --lang, else from the environment */
    xs_analysis_cfg an; /* IQ pairing and checks */
} inspect_args;

/* Takes one option and its value. Returns 0, or the exit status of a usage error. */
static int take_option(inspect_args *a, int c, const char *arg)
{
    unsigned long long v;

    switch (c) {
    case 'f':
        if (xs_format_parse(arg, &a->popt.format) < 0)
            return xs_cli_usage_error("inspect",
                                      "unknown format '%s' (pretty, compact, json or none)", arg);
        break;
    case 's':
        a->in->stats = true;
        break;
    case 'S':
        a->popt.show_secrets = 1;
        break;
    case 'C':
        if (strcmp(arg, "auto") != 0 && strcmp(arg, "always") != 0 && strcmp(arg, "never") != 0)
            return xs_cli_usage_error("inspect", "--color takes auto, always or never, not '%s'",
                                      arg);
        a->color = arg;
        break;
    case 'M':
        if (xs_cli_parse_uint(arg, 64, 1u << 30, &v) < 0)
            return xs_cli_usage_error("inspect",
                                      "--max-stanza takes a byte count from 64 to 1073741824, "
                                      "not '%s'",
                                      arg);
        a->lim.max_stanza = (size_t)v;
        break;
    case 'D':
        if (xs_cli_parse_uint(arg, 1, 10000, &v) < 0)
            return xs_cli_usage_error("inspect",
                                      "--max-depth takes a number from 1 to 10000, not '%s'", arg);
        a->lim.max_depth = (unsigned)v;
        break;
    case 'A':
        if (xs_cli_parse_uint(arg, 1, XS_PARSER_MAX_MAX_ATTRS, &v) < 0)
            return xs_cli_usage_error("inspect",
                                      "--max-attrs takes a number from 1 to %u, not '%s'",
                                      XS_PARSER_MAX_MAX_ATTRS, arg);
        a->lim.max_attrs = (unsigned)v;
        break;
    case 'R':
        a->rules_path = arg;
        break;
    case 'P':
        a->pcap_path = arg;
        break;
    case 'F':
        a->filter = arg;
        break;
    case 'T':
        if (xs_analysis_parse_timeout(arg, &a->an.iq_timeout) < 0)
            return xs_cli_usage_error(
                "inspect", "--iq-timeout takes seconds from 0.001 to 86400, not '%s'", arg);
        break;
    case 'N':
        a->an.pairing = a->an.checks = 0;
        break;
    case 'd':
        if (strcmp(arg, "c2s") == 0)
            a->in->raw_dir = XS_RULE_C2S;
        else if (strcmp(arg, "s2c") == 0)
            a->in->raw_dir = XS_RULE_S2C;
        else
            return xs_cli_usage_error("inspect", "--direction takes c2s or s2c, not '%s'", arg);
        break;
    case 'E':
        a->explain = true;
        break;
    case 'L':
        if (xs_lang_parse(arg, &a->lang) < 0)
            return xs_cli_usage_error("inspect", "--lang takes en or zh, not '%s'", arg);
        break;
    }
    return 0;
}

/* Loads the --rules file, its diagnostics on stderr. Returns 0 or the exit status 2. */
static int load_rules(inspect *in, const char *rules_path)
{
    xs_rule_diag diag = {0};
    int rc = xs_rules_load(rules_path, 0, &in->rules, &diag);
    for (size_t i = 0; i < diag.n; i++)
        xs_term_printf(stderr, "%s\n", diag.errors[i].message);
    xs_rule_diag_clear(&diag);
    if (rc < 0) {
        xs_term_printf(stderr, "xmppscope inspect: cannot use the rules in %s (%s)\n", rules_path,
                       xs_strerror(rc));
        return 2;
    }
    return 0;
}

/* The hits of each rule, after a dry run with --rules (not in JSON, which has them per event). */
static void print_dry_run(const inspect *in)
{
    printf("\n%-52s %10s\n", "rule (dry run)", "hits");
    for (size_t i = 0; i < xs_rules_count(in->rules); i++) {
        xs_rule_info info;
        if (xs_rules_info(in->rules, i, &info) == 0)
            xs_term_printf(stdout, "  %-50s %10lu\n", info.name, info.hits);
    }
}

/* Makes the printer and the observers the options ask for: the printer (behind --filter), the
 * analysers, --explain, --pcap. Returns 0 or an exit status; teardown() in both cases. */
static int setup(inspect *in, inspect_args *a)
{
    int rc;
    if (a->filter != NULL &&
        (rc = xs_filter_cmd_compile("inspect", "--filter", a->filter, &in->filter)) != 0)
        return rc;
    if (a->rules_path != NULL && (rc = load_rules(in, a->rules_path)) != 0)
        return rc;
    if (xs_printer_new(stdout, &a->popt, &in->printer) < 0)
        goto oom;
    in->show_secrets = a->popt.show_secrets;
    in->obs[in->n_obs++] = xs_printer_observer(in->printer, XS_OBS_WARN, 1, "the output");
    if (in->filter != NULL) {
        if (xs_filter_obs_new(&in->obs[0], in->filter, 0, &in->filtered) < 0)
            goto oom;
        in->obs[0] = xs_filter_observer(in->filtered);
    }
    if (a->an.pairing || a->an.checks) {
        if (xs_analysis_new(&a->an, &in->analysis) < 0)
            goto oom;
        in->obs[in->n_obs++] = xs_analysis_observer(in->analysis);
    }
    /* --explain: an analyser too; without it nothing of it runs. */
    if (a->explain) {
        char err[256];
        if (xs_explainer_new(a->lang, &in->explainer, err, sizeof(err)) < 0) {
            xs_term_printf(stderr, "xmppscope inspect: cannot load the explanations: %s\n", err);
            return 1;
        }
        in->obs[in->n_obs++] = xs_explainer_observer(in->explainer);
    }
    if (a->pcap_path != NULL) {
        rc = xs_cli_open_pcap("inspect", a->pcap_path, in->raw_dir == XS_RULE_S2C, 0,
                              &in->pcap_file);
        if (rc != 0)
            return rc;
        in->pcap = xs_pcap_observer(in->pcap_file, XS_OBS_BEST_EFFORT);
        in->obs[in->n_obs++] = (xs_observer){.on_event = pcap_quiet,
                                             .ctx = &in->pcap,
                                             .policy = XS_OBS_BEST_EFFORT,
                                             .name = in->pcap.name};
    }
    return 0;
oom:
    xs_term_printf(stderr, "xmppscope inspect: out of memory\n");
    return 1;
}

/* Frees what setup() made. Returns 1 when the --pcap file could not be finished, else 0. */
static int teardown(inspect *in, inspect_args *a)
{
    int st = xs_cli_close_pcap("inspect", a->pcap_path, in->pcap_file) != 0;
    xs_rules_unref(in->rules);
    xs_printer_free(in->printer);
    xs_explainer_free(in->explainer);
    xs_filter_obs_free(in->filtered);
    xs_filter_free(in->filter);
    xs_analysis_free(in->analysis);
    stat_free(&in->kinds);
    stat_free(&in->payloads);
    return st;
}

int xs_inspect_main(int argc, char **argv)
{
    inspect in = {0};
    inspect_args a = {.popt = {.format = XS_FORMAT_PRETTY},
                      .color = "auto",
                      .in = &in,
                      .lang = xs_lang_from_env(),
                      .an = {.pairing = 1, .checks = 1, .lazy_timeouts = 1}};
    int c, rc;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:sh", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            return xs_cli_usage_error("inspect", "option '%s' needs a value", argv[optind - 1]);
        case '?':
            return xs_cli_usage_error("inspect", "unknown option '%s'", argv[optind - 1]);
        default:
            if ((rc = take_option(&a, c, optarg)) != 0)
                return rc;
        }
    }
    if (strcmp(a.color, "always") == 0)
        a.popt.color = 1;
    else if (strcmp(a.color, "auto") == 0)
        a.popt.color = xs_color_wanted(STDOUT_FILENO);

    if ((rc = setup(&in, &a)) != 0) {
        teardown(&in, &a);
        return rc;
    }
    int status = 0;
    if (optind == argc) {
        if (isatty(STDIN_FILENO))
            xs_term_printf(stderr, "xmppscope inspect: reading standard input (give a FILE, or see "
                                   "--help)\n");
        status = inspect_file(&in, "-", &a.lim);
    }
    for (int i = optind; i < argc; i++) {
        int st = inspect_file(&in, argv[i], &a.lim);
        if (st != 0)
            status = st;
    }
    /* The end of the input ends every session in it (session NULL: all): an analyser reports
     * what was left open. */
    xs_print_meta endm = {.untimed = 1};
    xs_obs_event end = {.kind = XS_OBS_CLOSED, .meta = &endm, .level = "info"};
    rc = xs_obs_emit_other(in.obs, in.n_obs, &end);
    if (rc < 0 && in.print_rc == 0)
        in.print_rc = rc;
    if (in.stats)
        print_stats(&in, a.popt.format);
    if (in.rules != NULL && a.popt.format != XS_FORMAT_JSON)
        print_dry_run(&in);
    if (fflush(stdout) != 0 || in.print_rc < 0) {
        xs_term_printf(stderr, "xmppscope inspect: cannot write the output: %s\n",
                       in.print_rc < 0 ? xs_strerror(in.print_rc) : strerror(errno));
        status = 1;
    }
    if (teardown(&in, &a) != 0)
        status = 1;
    return status;
}
