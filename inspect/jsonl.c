/* Replaying JSON Lines logs through the parser. See jsonl.h. */
#include "inspect/jsonl.h"

#include "inspect/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

/* A log may interleave many sessions; each direction of each is one stream. Beyond this many the
 * log is refused rather than holding parsers without bound. */
#define MAX_STREAMS 4096

typedef struct stream {
    char *session;
    char *dir; /* "" offline */
    xs_parser *parser;
} stream;

struct xs_jsonl_reader {
    xs_parser_limits limits;
    xs_jsonl_event_cb on_event;
    xs_jsonl_note_cb on_note;
    void *user;
    stream *streams;
    size_t n_streams, cap_streams;
    xs_print_meta meta; /* of the line being replayed */
};

int xs_jsonl_reader_new(const xs_parser_limits *limits, xs_jsonl_event_cb on_event,
                        xs_jsonl_note_cb on_note, void *user, xs_jsonl_reader **out)
{
    xs_jsonl_reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return XS_ENOMEM;
    if (limits != NULL)
        r->limits = *limits;
    r->on_event = on_event;
    r->on_note = on_note;
    r->user = user;
    *out = r;
    return 0;
}

void xs_jsonl_reader_free(xs_jsonl_reader *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_streams; i++) {
        xs_parser_free(r->streams[i].parser);
        free(r->streams[i].session);
        free(r->streams[i].dir);
    }
    free(r->streams);
    free(r);
}

static int replay_event(void *user, const xs_event *ev)
{
    xs_jsonl_reader *r = user;
    /* Keepalives are logged as lines of their own; they replay as themselves. */
    return r->on_event ? r->on_event(r->user, &r->meta, ev) : 0;
}

static int find_stream(xs_jsonl_reader *r, const char *session, const char *dir, stream **out)
{
    for (size_t i = 0; i < r->n_streams; i++) {
        if (strcmp(r->streams[i].session, session) == 0 && strcmp(r->streams[i].dir, dir) == 0) {
            *out = &r->streams[i];
            return 0;
        }
    }
    if (r->n_streams == MAX_STREAMS)
        return XS_ETOOBIG;
    if (r->n_streams == r->cap_streams) {
        size_t ncap = r->cap_streams ? r->cap_streams * 2 : 8;
        stream *n = realloc(r->streams, ncap * sizeof(*n));
        if (n == NULL)
            return XS_ENOMEM;
        r->streams = n;
        r->cap_streams = ncap;
    }
    stream *s = &r->streams[r->n_streams];
    memset(s, 0, sizeof(*s));
    s->session = strdup(session);
    s->dir = strdup(dir);
    int rc = XS_ENOMEM;
    if (s->session == NULL || s->dir == NULL)
        goto fail;
    rc = xs_parser_new(&r->limits, XS_PARSER_TREE | XS_PARSER_RAW | XS_PARSER_AUTO_RESTART,
                       replay_event, r, &s->parser);
    if (rc < 0)
        goto fail;
    r->n_streams++;
    *out = s;
    return 0;
fail:
    free(s->session);
    free(s->dir);
    return rc;
}

/* Parses "2026-11-24T03:40:00.123456Z". Unknown formats leave the time at zero. */
static struct timespec parse_time(const char *s)
{
    struct timespec ts = {0, 0};
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (s == NULL)
        return ts;
    const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (rest == NULL)
        return ts;
    ts.tv_sec = timegm(&tm);
    if (*rest == '.') {
        long frac = 0;
        int digits = 0;
        for (rest++; *rest >= '0' && *rest <= '9'; rest++) {
            if (digits < 9) {
                frac = frac * 10 + (*rest - '0');
                digits++;
            }
        }
        while (digits++ < 9)
            frac *= 10;
        ts.tv_nsec = frac;
    }
    return ts;
}

static const char *str_field(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int xs_jsonl_reader_line(xs_jsonl_reader *r, const char *line, size_t len, char *err, size_t errcap)
{
    json_error_t jerr;
    int rc = 0;

    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    if (len == 0)
        return 0;
    if (len > XS_JSONL_MAX_LINE) {
        snprintf(err, errcap, "line longer than %u bytes", XS_JSONL_MAX_LINE);
        return XS_EPARSE;
    }
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (o == NULL) {
        snprintf(err, errcap, "not JSON: %s (column %d)", jerr.text, jerr.column);
        return XS_EPARSE;
    }
    if (!json_is_object(o)) {
        snprintf(err, errcap, "not a JSON object");
        rc = XS_EPARSE;
        goto out;
    }
    const char *event = str_field(o, "event");
    if (event == NULL) {
        snprintf(err, errcap, "no \"event\" field: not an xmppscope log line");
        rc = XS_EPARSE;
        goto out;
    }
    const char *session = str_field(o, "session");
    const char *dir = str_field(o, "dir");
    r->meta.time = parse_time(str_field(o, "time"));
    r->meta.untimed = str_field(o, "time") == NULL;
    r->meta.session = session;
    r->meta.direction = dir;
    r->meta.phase = str_field(o, "phase");
    /* Stream-open lines name the session's client and server (the pcap wants them). */
    r->meta.client_addr = str_field(o, "client");
    r->meta.server_addr = str_field(o, "server");

    if (strcmp(event, "error") == 0 || strcmp(event, "note") == 0) {
        const char *text = str_field(o, "message");
        const char *level = str_field(o, "level");
        char buf[512];
        if (strcmp(event, "error") == 0) {
            const char *cond = str_field(o, "condition");
            snprintf(buf, sizeof(buf), "%s: %s", cond ? cond : "error", text ? text : "");
            text = buf;
            level = "error";
        }
        if (r->on_note != NULL)
            rc = r->on_note(r->user, &r->meta, level ? level : "info", text ? text : "");
        goto out;
    }
    if (strcmp(event, "stream-open") != 0 && strcmp(event, "stanza") != 0 &&
        strcmp(event, "keepalive") != 0 && strcmp(event, "stream-close") != 0) {
        /* A kind this version does not know: skip it, as a newer writer may add kinds. */
        goto out;
    }
    json_t *raw = json_object_get(o, "raw");
    if (!json_is_string(raw)) {
        snprintf(err, errcap, "\"%s\" line without \"raw\" XML", event);
        rc = XS_EPARSE;
        goto out;
    }
    stream *s = NULL;
    rc = find_stream(r, session ? session : "", dir ? dir : "", &s);
    if (rc < 0) {
        snprintf(err, errcap, "%s",
                 rc == XS_ETOOBIG ? "more than 4096 streams in one log" : "out of memory");
        goto out;
    }
    rc = xs_parser_feed(s->parser, json_string_value(raw), json_string_length(raw), NULL);
    if (rc == XS_ESTATE) {
        /* This stream failed earlier; a new header starts it again. */
        if (strcmp(event, "stream-open") == 0 && xs_parser_reset(s->parser) == 0)
            rc = xs_parser_feed(s->parser, json_string_value(raw), json_string_length(raw), NULL);
        else
            rc = 0;
    }
    if (rc < 0)
        snprintf(err, errcap, "the XML of this line is malformed: %s", xs_strerror(rc));
out:
    json_decref(o);
    return rc;
}
