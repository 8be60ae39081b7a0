/* Reading back the JSON Lines logs that xmppscope writes (`--write`, `--format json`).
 *
 * Each stream-open, stanza, keepalive and stream-close line carries the exact XML of its span
 * ("raw"), so the reader rebuilds every (session, direction) stream and runs it through a parser
 * of its own: the events it hands on are real parser events, with trees, exactly as if the
 * stream had been read live. Error and note lines are handed on as notes. */
#ifndef XS_INSPECT_JSONL_H
#define XS_INSPECT_JSONL_H

#include <stddef.h>

#include "inspect/parser.h"
#include "inspect/print.h"

typedef struct xs_jsonl_reader xs_jsonl_reader;

/* Called for every parser event of a replayed stream, with the time, session, direction and
 * phase of the log line it came from. A negative return stops the reader. */
typedef int (*xs_jsonl_event_cb)(void *user, const xs_print_meta *meta, const xs_event *ev);
/* Called for "error" and "note" lines of the log. */
typedef int (*xs_jsonl_note_cb)(void *user, const xs_print_meta *meta, const char *level,
                                const char *text);

/* Longest line accepted: a stanza at the largest --max-stanza, escaped. */
#define XS_JSONL_MAX_LINE (16u << 20)

int xs_jsonl_reader_new(const xs_parser_limits *limits, xs_jsonl_event_cb on_event,
                        xs_jsonl_note_cb on_note, void *user, xs_jsonl_reader **out);

/* Takes one line (without its newline). Returns 0, XS_EPARSE with a message in `err` for a line
 * that is not a log line, or the error a replayed stream ran into (after its error event). */
int xs_jsonl_reader_line(xs_jsonl_reader *r, const char *line, size_t len, char *err,
                         size_t errcap);

void xs_jsonl_reader_free(xs_jsonl_reader *r);

#endif
