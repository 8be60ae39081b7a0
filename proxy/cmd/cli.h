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

struct xs_pcap;

/* Opens the capture file of --pcap for the command `cmd` ("proxy", "inspect"): created with mode
 * 0600, or an existing file emptied, with the checks of the files xmppscope writes (no link,
 * the user's own, not writable by others: proxy/file.h), and starts the capture (inspect/pcap.h)
 * with events without a direction going the server's way when raw_s2c, each event flushed at once
 * when flush_each. Says on stderr what is
 * wrong (refused, cannot be opened) or worth a warning (readable by others). Returns 0 and sets
 * *out, or the exit status: 2 for a refused file, 1 for one that cannot be opened or written. */
int xs_cli_open_pcap(const char *cmd, const char *path, int raw_s2c, int flush_each,
                     struct xs_pcap **out);

/* Ends the capture (xs_pcap_close()); says on stderr when the file could not be written whole.
 * Returns 0, or 1 then. */
int xs_cli_close_pcap(const char *cmd, const char *path, struct xs_pcap *pcap);

#endif
