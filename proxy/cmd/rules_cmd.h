/* `xmppscope rules`: check and list rule files. */
#ifndef XS_CMD_RULES_CMD_H
#define XS_CMD_RULES_CMD_H

/* Runs `xmppscope rules check FILE`, `rules list [--builtin] [FILE]` or `rules namespaces`;
 * argv[0] is "rules". Prints to stdout, errors to stderr. Returns the process exit code: 0 ok
 * (also for --help), 1 runtime failure (out of memory), 2 usage error or a rules file with
 * errors. */
int xs_rules_cmd_main(int argc, char **argv);

#endif
