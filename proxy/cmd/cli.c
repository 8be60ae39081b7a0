/* Small helpers shared by the subcommands' command lines. See cli.h. */
#include "proxy/cmd/cli.h"
#include "inspect/print.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int xs_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "xmppscope %s: ", cmd);
    /* The values quoted come from the command line: escaped like anything printed. */
    xs_term_vprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'xmppscope %s --help'.\n", cmd);
    va_end(ap);
    return 2;
}

int xs_cli_parse_uint(const char *s, unsigned long long min, unsigned long long max,
                      unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != 0 || s[0] == '-' || s[0] == '+' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}
