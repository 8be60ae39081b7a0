/* Printers: parser events and the proxy's notes as text for people or as JSON Lines.
 *
 * A printer writes to a FILE it does not own. Each event is formatted whole in memory and written
 * with one fwrite() followed by fflush(), so a line is never split by another writer of the same
 * FILE in this process and a watcher sees it at once. A buffered printer
 * (xs_print_options.buffered) keeps whole lines instead and writes them, again with one fwrite()
 * and one fflush(), when its owner calls xs_printer_flush() or when it holds XS_PRINT_BUFFER_MAX
 * bytes: one write for many events, for a log file under load. Secrets are masked in every format
 * (see redact.h) unless show_secrets is set: in one place, xs_obs_mask() (observer.h), before
 * any format runs, for the stanza and for the XML a rule forwarded instead of it
 * (xs_print_meta.rewritten).
 *
 * Formats:
 *   pretty   a header line per event, then the XML indented from the tree (2 spaces per level),
 *            then, for a stanza carrying a SASL or password payload, a line describing it.
 *            Header: local time HH:MM:SS.mmm, session, direction (C→S, S→C, blank offline),
 *            [phase] when set, kind (stream-open, the stanza's name, keepalive, stream-close,
 *            error), size in bytes. Without a tree the (masked) raw text is printed instead.
 *   compact  exactly one line per event: the header fields, from/to/id/type, the annotation in
 *            brackets, and the XML squeezed to one line (whitespace between tags dropped,
 *            newlines shown as \n), cut after 200 characters with "…(+N bytes)".
 *   json     JSON Lines, the schema below.
 *   none     nothing.
 * Colour (ANSI SGR) is used in pretty and compact only when xs_print_options.color is set.
 *
 * Nothing from the wire or a file reaches the output as it is when a terminal would act on it or
 * it would hide or reorder text: C0 controls, DEL, C1 controls (U+0080-U+009F), U+2028, U+2029,
 * the bidirectional controls U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069 and the
 * invisible U+200B-U+200D, U+2060-U+2064, U+FEFF. pretty and compact show them as \xXX or \uXXXX
 * (&#xXX; inside XML), json as \uXXXX, in files (--write) as on the console: a log is often read
 * with cat, tail or less, and the escape reads back as the same character.
 *
 * JSON Lines schema: one object per line, keys in this order, absent keys omitted. No whitespace
 * outside strings. In strings, '"' and '\' are escaped with a backslash, the control characters
 * U+0001 to U+001F as \b, \f, \n, \r, \t or \u00XX (upper-case hex), DEL and the other
 * characters above as \uXXXX (upper-case hex), and nothing else: other non-ASCII characters appear
 * as UTF-8. Invalid UTF-8 sequences and NUL become U+FFFD, one per byte, so every line is valid
 * UTF-8 and valid JSON (RFC 8259): what jansson writes (JSON_COMPACT) but for those \u escapes, and
 * what it reads back (inspect/jsonl.c) to the same strings.
 *   "time"       string, RFC 3339 UTC with microseconds: "2026-11-24T03:40:00.123456Z";
 *                omitted when unknown (events of a raw capture read offline)
 *   "session"    string, the session ("1") or, offline, the input file name
 *   "dir"        "c2s" or "s2c"; omitted offline
 *   "phase"      "plain", "tls" or "authed", when known
 *   "event"      "stream-open", "stanza", "keepalive", "stream-close", "error" or "note"
 *   For parser events:
 *   "stream"     integer, 1 for the first stream of the direction, +1 after every restart
 *   "offset"     integer, byte offset of the event's first byte in the direction's input
 *   "size"       integer, bytes of the event's span (0 for "error")
 *   For "stream-open" and "stanza":
 *   "name"       the element's local name ("message", "stream", "auth")
 *   "prefix"     the element's prefix ("stream"), when it has one
 *   "ns"         the element's namespace URI, when it has one
 *   "from", "to", "id", "type"   the element's attributes of these names in no namespace
 *                (unprefixed), when present; the same with or without the parser's trees
 *   "raw"        the exact bytes of the span (needs XS_PARSER_RAW), as a string: invalid UTF-8
 *                sequences and NUL bytes are replaced by U+FFFD. When secrets were masked, the
 *                masked XML of the stanza instead, and:
 *   "redacted"   true
 *   "sasl"       the one-line annotation of a secret-bearing payload (SASL, SASL2, FAST token,
 *                XEP-0077/0078 password, data form password, MUC or XEP-0249 room password),
 *                e.g. "PLAIN authzid=\"\" authcid=\"alice\" password=***"
 *   "gs2"        for a SCRAM client-first message, its channel binding flag: "n", "y" or
 *                "p=" followed by the binding name ("p=tls-exporter")
 *   For "stream-open":
 *   "attrs"      object, attribute name (with its prefix, "xml:lang") -> value
 *   "namespaces" object, prefix -> namespace URI, "" for the default namespace
 *   "client", "server"   the session's client and server as "IP:PORT" or "[IPv6]:PORT"
 *                (xs_print_meta.client_addr, server_addr), when known: the server's is not
 *                known yet when the client's first stream header arrives
 *   "rules"      array of {"rule", "action", "detail"}: the rules that applied, in order
 *   "verdict"    "forwarded", "rewritten", "dropped" or "bounced", when a rule applied
 *   "rewritten"  the XML forwarded instead of the original (raw stays the original), its
 *                secrets masked as raw's are (xs_redact_rewritten) unless show_secrets
 *   From the analysers (annot.h), for any parser event:
 *   "pair"       for an IQ answer paired with its request: {"dir", "offset", "stream"} of the
 *                request
 *   "rtt_ms"     number, the round trip in milliseconds with 3 decimals, when known
 *   "checks"     array of {"check", "ref", "message"}: the checks' warnings (stable id, the
 *                section of the spec, one line of English); "checks_more": how many more
 *   "explain"    --explain: what the event is, lines separated by \n
 *   For "error":
 *   "error"      symbolic code, "XS_ENOTWF"
 *   "condition"  the stream error condition to send, "not-well-formed"
 *   "message"    one line of English
 *   "line", "column"   integers, 1-based position of the offending byte
 *   For "note" (xs_printer_note):
 *   "level"      "info", "warn" or "error"
 *   "message"    the text
 *   "summary"    at the end of a session: the analysers' summary (IQ count and round trips by
 *                payload namespace), an array of lines
 *   "event": "check" (xs_printer_checks): a check reported on its own (an IQ that timed out, at a
 *                tick or at the end of a session): "check", "ref", "message", and "pair"
 *                pointing at the stanza concerned when there is one.
 */
#ifndef XS_INSPECT_PRINT_H
#define XS_INSPECT_PRINT_H

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "inspect/parser.h"

typedef enum xs_format {
    XS_FORMAT_PRETTY,
    XS_FORMAT_COMPACT,
    XS_FORMAT_JSON,
    XS_FORMAT_NONE,
} xs_format;

/* Parses a --format value: "pretty", "compact", "json" or "none". Returns 0 and sets *out, or
 * XS_EINVAL for anything else. */
int xs_format_parse(const char *name, xs_format *out);

/* The name of a format, as xs_format_parse() reads it. */
const char *xs_format_name(xs_format format);

typedef struct xs_print_options {
    xs_format format;
    int color;        /* ANSI colours in pretty and compact; see xs_color_wanted() */
    int show_secrets; /* print SASL and password payloads in clear */
    /* 0: every event is written and flushed at once. 1: lines are kept until xs_printer_flush()
     * or until XS_PRINT_BUFFER_MAX bytes are held; for a log file written under load, whose
     * owner flushes after each batch of input (a socket read). */
    int buffered;
    /* Where the output goes instead of the FILE, when set: called with whole events (or, when
     * buffered, whole lines) and returning 0 or XS_EIO, as fwrite()+fflush() would. The proxy's
     * console uses it to queue its lines for a writer thread (proxy/console.h). */
    int (*sink)(void *sink_ctx, const char *data, size_t len);
    void *sink_ctx;
} xs_print_options;

/* A buffered printer writes what it holds as soon as it holds this many bytes or more, so it never
 * holds more than this and one event. */
#define XS_PRINT_BUFFER_MAX ((size_t)256 << 10)

/* Whether colour suits file descriptor fd: it is a terminal, NO_COLOR is unset or empty, and
 * TERM is not "dumb". */
int xs_color_wanted(int fd);

/* What one rule did to a stanza (filters/rules.h), for the output. Strings are borrowed. */
typedef struct xs_print_rule {
    const char *rule;   /* the rule's name */
    const char *action; /* "drop", "set-attr", "bounce", ... */
    const char *detail; /* the action's arguments or what it produced, one line; or NULL */
} xs_print_rule;

/* Where an event comes from. The strings are borrowed for the duration of the call. */
typedef struct xs_print_meta {
    struct timespec time;  /* when the bytes were read (CLOCK_REALTIME) */
    const char *session;   /* "1", or the file name offline; NULL: none */
    const char *direction; /* "c2s", "s2c", or NULL offline */
    const char *phase;     /* "plain", "tls", "authed", or NULL */
    /* The far ends of the session's two TCP connections, "IP:PORT" or "[IPv6]:PORT": the client
     * as the proxy accepted it, the server as the proxy connected to it (NULL until then, and
     * for the proxy's own notes of no session). Offline, what the log's stream-open lines said
     * ("client", "server"), or NULL. For the pcap (pcap.h) and the log. */
    const char *client_addr;
    const char *server_addr;
    int untimed;           /* the time is unknown (a raw capture read offline): none is printed */
    /* The rules that applied to a stanza, in order, and what became of it: "forwarded",
     * "rewritten", "dropped", "bounced" (NULL when no rule applied). For a rewrite, `rewritten`
     * is the XML that was forwarded instead of the original. */
    const xs_print_rule *rules;
    size_t n_rules;
    const char *verdict;
    const char *rewritten;
    /* What the analysers found out (annot.h): an IQ answer's pair and round trip, checks. NULL:
     * nothing. */
    const struct xs_annot *annot;
} xs_print_meta;

typedef struct xs_printer xs_printer;

/* Creates a printer writing to `out`, which stays the caller's: it must outlive the printer and
 * is never closed by it (NULL when options->sink is set). The options are copied. Returns 0 and
 * sets *printer, or XS_EINVAL / XS_ENOMEM. Free with xs_printer_free(). */
int xs_printer_new(FILE *out, const xs_print_options *options, xs_printer **printer);

/* Prints one parser event; call it from the parser callback (the event is only valid there).
 * `meta` may be NULL (no session, no direction, the current time). Returns 0, XS_EIO when the
 * FILE fails (disk full, closed pipe; nothing more is tried for that event), XS_ENOMEM, or
 * XS_ETOOBIG when one event would need more than 64 MiB of output. On an error nothing, or a
 * truncated line, was written; never an unmasked secret.
 *
 * A buffered printer returns XS_EIO only when this event made it write what it held and that
 * failed; the lines it held are then dropped, this event's included. An XS_ENOMEM or XS_ETOOBIG
 * drops this event only: the lines held before it stay whole. */
int xs_printer_event(xs_printer *printer, const xs_print_meta *meta, const xs_event *ev);

struct xs_redaction;

/* Prints one parser event whose secrets xs_obs_mask() masked already: `meta` is the masked meta
 * (xs_obs_masked.meta, or NULL), `red` the stanza's masks (xs_obs_masked.red; NULL: none).
 * xs_printer_event() is xs_obs_mask() followed by this. Returns as xs_printer_event(). */
int xs_printer_masked(xs_printer *printer, const xs_print_meta *meta, const xs_event *ev,
                      const struct xs_redaction *red);

/* Prints a diagnostic of the proxy in the same format as the events (JSON: event "note").
 * level is "info", "warn" or "error" (NULL: "info"); text is one message, newlines are shown
 * escaped. Returns as xs_printer_event(). */
int xs_printer_note(xs_printer *printer, const xs_print_meta *meta, const char *level,
                    const char *text);

/* Prints the checks of meta->annot on their own, one line (pretty/compact: "  ! id: text (ref)";
 * json: an "event": "check" object) each; nothing when there are none. Returns as
 * xs_printer_event(). */
int xs_printer_checks(xs_printer *printer, const xs_print_meta *meta);

/* Writes the lines a buffered printer holds with one fwrite() and one fflush(), so that the FILE
 * never holds part of a line afterwards. Returns 0 (also when nothing was held, and always for
 * an unbuffered printer, which holds nothing), XS_EINVAL for a NULL printer, or XS_EIO when the
 * FILE fails (disk full): the lines held are dropped then, and the printer goes on with the next
 * event. */
int xs_printer_flush(xs_printer *printer);

/* Whether the printer needs the stanzas' trees (XS_PARSER_TREE) for its output: 1 for pretty,
 * which indents the XML from the tree (without one it shows the raw text as it came); 0 for
 * json, compact and none, and for a NULL printer. json prints a stanza event without a tree
 * byte for byte as with it: its name, namespace and from/to/id/type come from the event
 * (xs_event.attrs), and redaction parses the raw bytes of the few stanzas that may carry a
 * secret (see redact.h). So does compact, as long as the parser keeps the raw bytes
 * (XS_PARSER_RAW); without them and without a tree it shows no XML. Trees are costly to build,
 * so the proxy asks the parser for them only when a printer or a rule needs them. */
int xs_printer_needs_tree(const xs_printer *printer);

/* Writes a message of the program to `f` (stderr, or stdout for listings) formatted as by
 * printf, with every character that could act on a terminal or hide text escaped as the printers
 * escape it on one line (see above; invalid UTF-8 as \xXX, a newline as \n) except one newline at
 * the end. Every text printed outside a printer that may hold something from the wire, a file or
 * the command line goes through it. Returns 0, XS_ENOMEM or XS_EIO. */
int xs_term_printf(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int xs_term_vprintf(FILE *f, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Writes `s` to `f` as a JSON string (quotes included) escaped as the JSON printer escapes
 * strings. Returns 0, XS_ENOMEM or XS_EIO. */
int xs_json_fputs(FILE *f, const char *s);

/* Frees the printer; a buffered printer first writes what it holds, ignoring errors (call
 * xs_printer_flush() before to see them). The FILE stays open. NULL is allowed. */
void xs_printer_free(xs_printer *printer);

#endif
