/* `xmppscope web LOG.jsonl [--web ADDR:PORT] [--web-history BYTES]`. See web_cmd.h. */
#include "proxy/cmd/web_cmd.h"

#include "inspect/print.h"
#include "proxy/cmd/cli.h"
#include "proxy/web.h"

#include <getopt.h>
#include <stdio.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: xmppscope web LOG.jsonl [--web ADDR:PORT] [--web-history BYTES]\n"
            "\n"
            "Serves a JSON Lines log written by 'xmppscope proxy --write' in the web inspector,\n"
            "as the proxy's --web serves live sessions (sessions, stanzas, filter, IQ pairs and\n"
            "checks, timeline; no send or intercept). Open the URL printed at start: it holds a\n"
            "random token, and the page refuses any request without it (403).\n"
            "\n"
            "options:\n"
            "  --web ADDR:PORT         where to serve (default " XS_WEB_DEFAULT_ADDR "); loopback\n"
            "                          unless told otherwise, with a warning\n"
            "  --web-history BYTES     events kept for the page (default 64M; K, M, G suffixes)\n"
            "  -h, --help              show this help\n");
}

int xs_web_cmd_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"web", required_argument, NULL, 'w'},
        {"web-history", required_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    xs_web_opts o = {0};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage(stdout);
            return 0;
        case 'w':
            o.addr = optarg;
            break;
        case 'H':
            if (xs_web_parse_size(optarg, &o.history) < 0)
                return xs_cli_usage_error("web",
                                          "--web-history takes bytes from 1M to 64G (K, M, G "
                                          "suffixes), not '%s'",
                                          optarg);
            break;
        case ':':
            return xs_cli_usage_error("web", "option '%s' needs a value", argv[optind - 1]);
        default:
            return xs_cli_usage_error("web", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return xs_cli_usage_error("web", "expected one LOG.jsonl");
    xs_diag diag;
    int rc = xs_web_run_log(&o, argv[optind], &diag);
    if (diag.text[0] != 0)
        xs_term_printf(stderr, "xmppscope web: %s\n", diag.text);
    return rc == 0 ? 0 : rc == XS_EINVAL ? 2 : 1;
}
