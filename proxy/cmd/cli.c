/* Small helpers shared by the subcommands' command lines. See cli.h. */
#include "proxy/cmd/cli.h"
#include "inspect/pcap.h"
#include "inspect/print.h"
#include "proxy/file.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

int xs_cli_open_pcap(const char *cmd, const char *path, int raw_s2c, int flush_each,
                     struct xs_pcap **out)
{
    xs_diag diag = {{0}};
    int fd, others_read;
    int rc = xs_file_open_truncate(path, "--pcap", &fd, &others_read, &diag);

    *out = NULL;
    if (rc != 0) {
        xs_term_printf(stderr, "xmppscope %s: %s\n", cmd, diag.text);
        return rc == XS_EINVAL ? 2 : 1;
    }
    if (others_read)
        xs_term_printf(stderr,
                       "xmppscope %s: warning: --pcap %s is readable by others; it holds the "
                       "decrypted traffic: chmod 600 %s\n",
                       cmd, path, path);
    FILE *f = fdopen(fd, "wb");
    if (f == NULL) {
        xs_term_printf(stderr, "xmppscope %s: cannot open --pcap %s: %s\n", cmd, path,
                       strerror(errno));
        close(fd);
        return 1;
    }
    xs_pcap_options opt = {.raw_s2c = raw_s2c, .flush_each = flush_each};
    rc = xs_pcap_new(f, &opt, out); /* f is the capture's now, whatever happens */
    if (rc != 0) {
        xs_term_printf(stderr, "xmppscope %s: cannot write --pcap %s: %s\n", cmd, path,
                       xs_strerror(rc));
        return 1;
    }
    return 0;
}

int xs_cli_close_pcap(const char *cmd, const char *path, struct xs_pcap *pcap)
{
    if (pcap == NULL)
        return 0;
    if (xs_pcap_close(pcap) != 0) {
        xs_term_printf(stderr, "xmppscope %s: cannot finish writing --pcap %s: %s\n", cmd, path,
                       xs_strerror(XS_EIO));
        return 1;
    }
    return 0;
}
