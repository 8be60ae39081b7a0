/* The `xmppscope proxy` subcommand. */
#ifndef XS_CMD_PROXY_CMD_H
#define XS_CMD_PROXY_CMD_H

/* Runs `xmppscope proxy` with argv[0] == "proxy". Returns the exit status: 0 after a clean stop,
 * 1 on a runtime failure, 2 on a usage error. */
int xs_proxy_main(int argc, char **argv);

#endif
