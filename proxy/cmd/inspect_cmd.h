/* The `xmppscope inspect` subcommand. */
#ifndef XS_CMD_INSPECT_CMD_H
#define XS_CMD_INSPECT_CMD_H

/* Runs `xmppscope inspect` with argv[0] == "inspect". Returns the exit status: 0 all input read,
 * 1 malformed input or an I/O error, 2 a usage error. */
int xs_inspect_main(int argc, char **argv);

#endif
