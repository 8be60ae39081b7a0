/* `xmppscope web LOG.jsonl [--web ADDR:PORT]`: a saved log in the web inspector. */
#ifndef XS_CMD_WEB_CMD_H
#define XS_CMD_WEB_CMD_H

/* Runs the command; returns the exit status (0, 1 runtime failure, 2 usage). */
int xs_web_cmd_main(int argc, char **argv);

#endif
