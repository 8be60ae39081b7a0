/* `xmppscope rules`: check and list rule files. See rules_cmd.h. */
#include "proxy/cmd/rules_cmd.h"

#include "proxy/cmd/cli.h"

#include "filters/features.h"
#include "filters/rules.h"
#include "inspect/error.h"
#include "inspect/print.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: xmppscope rules check FILE\n"
            "       xmppscope rules list [--builtin] [FILE]\n"
            "       xmppscope rules namespaces\n"
            "\n"
            "Checks and shows filter and rewrite rules (the proxy's --rules FILE).\n"
            "\n"
            "commands:\n"
            "  check FILE        compile FILE; print 'ok: N rules', or every error as\n"
            "                    FILE:LINE:COLUMN: message\n"
            "  list [FILE]       print the rules of FILE as they will be tried\n"
            "  namespaces        print the built-in namespace prefixes\n"
            "\n"
            "options:\n"
            "  -b, --builtin     list the built-in rules too (they run before the file's;\n"
            "                    the proxy turns each off with --no-rewrite NAME)\n"
            "  -h, --help        show this help\n"
            "\n"
            "exit status: 0 ok, 1 runtime failure, 2 usage error or a file with errors.\n"
            "\n"
            "a rule:\n"
            "  namespace cs http://jabber.org/protocol/chatstates\n"
            "  rule \"no typing notifications\"\n"
            "      direction c2s\n"
            "      match /message[cs:composing or cs:paused]\n"
            "      then drop\n"
            "  end\n"
            "actions: drop, bounce [CONDITION [TYPE]], set-attr XPATH NAME VALUE,\n"
            "  remove-attr XPATH NAME, set-text XPATH TEXT, replace-text XPATH REGEX REPL,\n"
            "  remove XPATH, insert XPATH XML, inject c2s|s2c XML, delay MS, tag LABEL, pass.\n"
            "Examples are in examples/rules/.\n");
}

static void print_diag(const xs_rule_diag *diag)
{
    for (size_t i = 0; i < diag->n; i++)
        xs_term_printf(stderr, "%s\n", diag->errors[i].message);
    if (diag->omitted > 0)
        fprintf(stderr, "(%zu more errors not shown)\n", diag->omitted);
}

/* Loads FILE; on failure prints why and returns the exit code (else 0). */
static int load(const char *path, unsigned builtin, xs_rules **out)
{
    xs_rule_diag diag = {0};
    int rc = xs_rules_load(path, builtin, out, &diag);
    print_diag(&diag);
    xs_rule_diag_clear(&diag);
    if (rc == XS_ENOMEM) {
        fprintf(stderr, "xmppscope rules: %s\n", xs_strerror(rc));
        return 1;
    }
    return rc == 0 ? 0 : 2;
}

/* A rule's name as the file quotes it; what the file holds is escaped for the terminal. */
static void print_quoted(const char *s)
{
    size_t n = strlen(s);
    char *q = malloc(2 * n + 1), *o = q;
    if (q == NULL)
        return;
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            *o++ = '\\';
        *o++ = *s;
    }
    *o = 0;
    xs_term_printf(stdout, "\"%s\"", q);
    free(q);
}

static void print_rules(const xs_rules *set, bool builtin)
{
    size_t n = xs_rules_count(set);
    for (size_t i = 0; i < n; i++) {
        xs_rule_info info;
        if (xs_rules_info(set, i, &info) != 0 || (info.builtin != 0) != builtin)
            continue;
        printf("rule ");
        print_quoted(info.name);
        if (info.builtin != 0)
            xs_term_printf(stdout, "    # built in; turn off with --no-rewrite %s\n", info.name);
        else
            xs_term_printf(stdout, "    # %s:%u\n", info.file, info.line);
        printf("    direction %s\n", xs_rule_dir_name(info.direction));
        for (size_t k = 0; k < info.n_matches; k++)
            xs_term_printf(stdout, "    match %s\n", info.matches[k]);
        for (size_t k = 0; k < info.n_actions; k++)
            xs_term_printf(stdout, "    then %s\n", info.actions[k]);
        printf("end\n\n");
    }
}

static const struct option opts[] = {
    {"builtin", no_argument, NULL, 'b'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Reads options until the first other argument (`spec` "+bh") or all of them ("bh"). Returns -1
 * to go on, or the exit status: 0 after --help, 2 for an unknown option. */
static int read_options(int argc, char **argv, const char *spec, bool *builtin)
{
    int c;

    while ((c = getopt_long(argc, argv, spec, opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            *builtin = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return xs_cli_usage_error("rules", "unknown option '%s'", argv[optind - 1]);
        }
    }
    return -1;
}

int xs_rules_cmd_main(int argc, char **argv)
{
    bool builtin = false;
    int c;

    optind = 1;
    opterr = 0;
    if ((c = read_options(argc, argv, "+bh", &builtin)) >= 0)
        return c;
    if (optind >= argc)
        return xs_cli_usage_error("rules", "a command is needed: check, list or namespaces");
    const char *cmd = argv[optind++];
    /* Options may also follow the command. */
    if ((c = read_options(argc, argv, "bh", &builtin)) >= 0)
        return c;
    int nargs = argc - optind;
    char **args = argv + optind;

    if (strcmp(cmd, "check") == 0) {
        if (nargs != 1 || builtin)
            return xs_cli_usage_error("rules", "usage: xmppscope rules check FILE");
        xs_rules *set = NULL;
        int rc = load(args[0], 0, &set);
        if (rc != 0)
            return rc;
        size_t n = xs_rules_count_file(set);
        printf("ok: %zu rule%s\n", n, n == 1 ? "" : "s");
        xs_rules_unref(set);
        return 0;
    }
    if (strcmp(cmd, "list") == 0) {
        if (nargs > 1 || (nargs == 0 && !builtin))
            return xs_cli_usage_error("rules", "usage: xmppscope rules list [--builtin] [FILE]");
        if (builtin) {
            xs_rules *b = NULL;
            unsigned all = XS_REWRITE_SASL_PLUS | XS_REWRITE_CHANNEL_BINDING |
                           XS_REWRITE_COMPRESSION | XS_REWRITE_STARTTLS;
            if (xs_rules_builtin(all, &b) != 0) {
                fprintf(stderr, "xmppscope rules: cannot compile the built-in rules\n");
                return 1;
            }
            printf("# built-in rules (starttls runs only for a client leg xmppscope secured "
                   "itself)\n\n");
            print_rules(b, true);
            xs_rules_unref(b);
        }
        if (nargs == 1) {
            xs_rules *set = NULL;
            int rc = load(args[0], 0, &set);
            if (rc != 0)
                return rc;
            size_t n = xs_rules_count_file(set);
            xs_term_printf(stdout, "# %s: %zu rule%s, tried in this order\n", args[0], n,
                           n == 1 ? "" : "s");
            const xs_rules_ns *decls;
            size_t nd = xs_rules_file_namespaces(set, &decls);
            for (size_t i = 0; i < nd; i++)
                xs_term_printf(stdout, "namespace %s %s\n", decls[i].prefix, decls[i].uri);
            printf("\n");
            print_rules(set, false);
            xs_rules_unref(set);
        }
        return 0;
    }
    if (strcmp(cmd, "namespaces") == 0) {
        if (nargs != 0 || builtin)
            return xs_cli_usage_error("rules", "usage: xmppscope rules namespaces");
        printf("# built-in prefixes (a rules file may rebind them with namespace PREFIX URI)\n");
        for (const xs_rules_ns *ns = xs_rules_builtin_namespaces(); ns->prefix != NULL; ns++)
            printf("%-14s %s\n", ns->prefix, ns->uri);
        return 0;
    }
    return xs_cli_usage_error("rules", "unknown command '%s' (check, list or namespaces)", cmd);
}
