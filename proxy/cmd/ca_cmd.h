/* `xmppscope ca`: create the CA and show how to make clients trust it. */
#ifndef XS_CMD_CA_CMD_H
#define XS_CMD_CA_CMD_H

/* Runs `xmppscope ca init|show [--ca-dir DIR]`; argv[0] is "ca". Prints to stdout, errors to
 * stderr. Returns the process exit code: 0 ok (also for --help), 1 runtime failure, 2 usage
 * error. */
int xs_ca_cmd_main(int argc, char **argv);

#endif
