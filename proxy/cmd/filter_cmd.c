/* `xmppscope filter`: checking filter expressions, and their errors as every command shows them. */
#include "proxy/cmd/filter_cmd.h"

#include "proxy/cmd/cli.h"
#include "inspect/buf.h"
#include "inspect/error.h"
#include "inspect/print.h"
#include "inspect/utf8.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: xmppscope filter check EXPR\n"
            "\n"
            "Checks a filter expression, as --filter (proxy, inspect) and --write-filter (proxy)\n"
            "take it, and prints it in a normalised form: every 'and' written, parentheses\n"
            "where precedence needs them, namespace prefixes resolved. Several words after\n"
            "'check' are joined by blanks.\n"
            "\n"
            "The language: atoms joined by and, or, not and parentheses; 'not' binds tighter\n"
            "than 'and', 'and' tighter than 'or'; two atoms side by side mean 'and'.\n"
            "  message, presence, iq    the stanza is one\n"
            "  type:X                   its type (a message without one is type:normal, a\n"
            "                           presence without one type:available)\n"
            "  from:JID, to:JID, jid:JID\n"
            "                           from, to, or either is JID; a bare JID matches every\n"
            "                           resource. A client's stanza without 'from' is from the\n"
            "                           JID its session is bound to (and the other way round)\n"
            "  ns:URI, ns:PREFIX        an element of the stanza is in that namespace; PREFIX\n"
            "                           from 'xmppscope rules namespaces' (sm, roster, ...)\n"
            "  dir:c2s, dir:s2c         the direction\n"
            "  session:N                the session\n"
            "  id:ID                    its id\n"
            "  text:WORDS               a text in it (the body, ...) contains WORDS, without\n"
            "                           regard to the case of ASCII letters\n"
            "  tag:LABEL                a rule tagged it LABEL\n"
            "  check, check:ID          an analyser flagged it (any check, or that one)\n"
            "  xpath:EXPR               the XPath is true for it, as a rule's match\n"
            "A value with blanks or parentheses is quoted: text:\"good morning\" (\\\" and \\\\\n"
            "escape inside quotes).\n"
            "\n"
            "Events other than stanzas: errors and warnings are always shown; stream headers,\n"
            "TLS, notes and session summaries only when the filter says yes to them, which\n"
            "session:, dir: and the JID atoms can (the JID atoms once the session is bound):\n"
            "'jid:bob@example.test' shows bob's session notes, 'message' none, 'not presence'\n"
            "all.\n"
            "\n"
            "exit status: 0 valid, 2 invalid (the error and its column on stderr) or usage error.\n"
            "\n"
            "examples:\n"
            "  xmppscope filter check 'jid:bob@example.test message'\n"
            "  xmppscope filter check 'iq and (ns:roster or ns:disco-info) and not type:result'\n");
}

/* Terminal columns of one character: two for East Asian wide characters, one otherwise. */
static unsigned char_width(uint32_t cp)
{
    return (cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF && cp != 0x303F) ||
                   (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) ||
                   (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
                   (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1F64F) ||
                   (cp >= 0x20000 && cp <= 0x3FFFD)
               ? 2
               : 1;
}

/* Terminal columns the first `chars` characters of `expr` take once printed as xs_term_printf()
 * prints them (escapes included). */
static size_t shown_width(const char *expr, unsigned chars)
{
    size_t end = 0;
    for (unsigned c = 0; expr[end] != 0 && c < chars; c++)
        do
            end++;
        while (((unsigned char)expr[end] & 0xC0) == 0x80);
    char *shown = NULL;
    size_t len = 0, width = 0;
    FILE *mem = open_memstream(&shown, &len);
    if (mem == NULL)
        return chars;
    xs_term_printf(mem, "%.*s", (int)end, expr);
    if (fclose(mem) != 0 || shown == NULL) {
        free(shown);
        return chars;
    }
    for (size_t i = 0; i < len;) {
        uint32_t cp = '?';
        size_t k = xs_utf8_next((const unsigned char *)shown + i, len - i, &cp);
        width += char_width(cp);
        i += k > 0 ? k : 1;
    }
    free(shown);
    return width;
}

/* Prints the expression and a caret under its column `column` (in characters). Blanks are shown
 * as spaces, so that the caret stays under its character. */
static void show_caret(const char *expr, unsigned column)
{
    xs_buf line;
    xs_buf_init(&line, 0);
    for (const char *p = expr; *p != 0; p++)
        xs_buf_add(&line, *p == '\t' || *p == '\n' || *p == '\r' ? " " : p, 1);
    xs_buf_adds(&line, "");
    const char *shown = xs_buf_error(&line) == 0 ? xs_buf_ptr(&line) : expr;
    xs_term_printf(stderr, "  %s\n", shown);
    fprintf(stderr, "  %*s^\n", (int)shown_width(shown, column > 0 ? column - 1 : 0), "");
    xs_buf_free(&line);
}

int xs_filter_cmd_compile(const char *cmd, const char *option, const char *expr, xs_filter **out)
{
    xs_filter_error err;
    int rc = xs_filter_parse(expr, out, &err);
    if (rc == 0)
        return 0;
    if (rc == XS_ENOMEM) {
        xs_term_printf(stderr, "xmppscope %s: out of memory\n", cmd);
        return 1;
    }
    xs_term_printf(stderr, "xmppscope %s: %s%scolumn %u: %s\n", cmd, option ? option : "",
                   option ? ": " : "", err.column, err.message);
    show_caret(expr, err.column);
    return 2;
}

int xs_filter_cmd_main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc < 2)
        return xs_cli_usage_error("filter", "expected a command: check EXPR");
    if (strcmp(argv[1], "check") != 0)
        return xs_cli_usage_error("filter", "unknown command '%s' (check)", argv[1]);
    if (argc < 3)
        return xs_cli_usage_error("filter", "check needs an expression: filter check EXPR");
    xs_buf expr;
    xs_buf_init(&expr, 1u << 20);
    for (int i = 2; i < argc; i++) {
        if (i > 2)
            xs_buf_adds(&expr, " ");
        xs_buf_adds(&expr, argv[i]);
    }
    if (xs_buf_error(&expr) != 0) {
        xs_buf_free(&expr);
        xs_term_printf(stderr, "xmppscope filter: the expression is too long\n");
        return 2;
    }
    xs_filter *f = NULL;
    int status = xs_filter_cmd_compile("filter", NULL, xs_buf_ptr(&expr), &f);
    xs_buf_free(&expr);
    if (status != 0)
        return status;
    xs_buf norm;
    xs_buf_init(&norm, 0);
    if (xs_filter_format(f, &norm) != 0) {
        xs_term_printf(stderr, "xmppscope filter: out of memory\n");
        status = 1;
    } else {
        xs_term_printf(stdout, "%s\n", xs_buf_ptr(&norm));
    }
    xs_buf_free(&norm);
    xs_filter_free(f);
    return status;
}
