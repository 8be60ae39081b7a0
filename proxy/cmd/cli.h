/* Small helpers shared by the subcommands' command lines. */
#ifndef XS_CMD_CLI_H
#define XS_CMD_CLI_H

/* Prints "xmppscope CMD: MESSAGE" and "Try 'xmppscope CMD --help'." to stderr and returns 2,
 * the exit status of a usage error. */
int xs_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reads a decimal number in [min, max] (no sign, no trailing characters). Returns 0 and sets
 * *out, or -1. */
int xs_cli_parse_uint(const char *s, unsigned long long min, unsigned long long max,
                      unsigned long long *out);

#endif
