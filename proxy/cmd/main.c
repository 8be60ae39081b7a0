/* The xmppscope command: dispatches to the subcommands. */
#include <stdio.h>
#include <string.h>

#include <libxml/parser.h>

#include "proxy/cmd/rules_cmd.h"
#include "proxy/cmd/inspect_cmd.h"
#include "inspect/print.h"
#include "proxy/cmd/ca_cmd.h"
#include "proxy/cmd/filter_cmd.h"
#include "proxy/cmd/proxy_cmd.h"
#include "proxy/cmd/web_cmd.h"

#ifndef XS_VERSION
#define XS_VERSION "0.1.0"
#endif

static void usage(FILE *out)
{
    fprintf(out, "usage: xmppscope COMMAND [options]\n"
                 "\n"
                 "An XMPP man-in-the-middle proxy and stanza inspector.\n"
                 "\n"
                 "commands:\n"
                 "  proxy --upstream HOST:PORT\n"
                 "                        run the man-in-the-middle proxy: show, log and\n"
                 "                        forward every stanza of live sessions\n"
                 "  inspect [FILE...|-]   read raw XMPP streams or xmppscope JSON Lines logs\n"
                 "                        offline and print them stanza by stanza\n"
                 "  rules check|list      check a rules file, list its rules or the built-in\n"
                 "                        ones\n"
                 "  web LOG.jsonl         serve a saved log in the web inspector (the proxy\n"
                 "                        serves live sessions with --web)\n"
                 "  filter check EXPR     check a --filter expression and print it\n"
                 "                        normalised, or its error and column\n"
                 "  ca init|show          create or show the CA that signs the certificates\n"
                 "                        the proxy presents to clients\n"
                 "\n"
                 "Run 'xmppscope COMMAND --help' for the options of a command.\n"
                 "  -h, --help      show this help\n"
                 "  -V, --version   show the version\n");
}

int main(int argc, char **argv)
{
    int status;

    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    xmlInitParser();
    if (strcmp(cmd, "proxy") == 0) {
        status = xs_proxy_main(argc - 1, argv + 1);
    } else if (strcmp(cmd, "inspect") == 0) {
        status = xs_inspect_main(argc - 1, argv + 1);
    } else if (strcmp(cmd, "rules") == 0) {
        status = xs_rules_cmd_main(argc - 1, argv + 1);
    } else if (strcmp(cmd, "filter") == 0) {
        status = xs_filter_cmd_main(argc - 1, argv + 1);
    } else if (strcmp(cmd, "web") == 0) {
        status = xs_web_cmd_main(argc - 1, argv + 1);
    } else if (strcmp(cmd, "ca") == 0) {
        status = xs_ca_cmd_main(argc - 1, argv + 1);
    } else if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        status = 0;
    } else if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf("xmppscope %s (libxml2 %s)\n", XS_VERSION, xmlParserVersion);
        status = 0;
    } else {
        xs_term_printf(stderr, "xmppscope: unknown command '%s'\n", cmd);
        fprintf(stderr, "Try 'xmppscope --help'.\n");
        status = 2;
    }
    xmlCleanupParser();
    return status;
}
