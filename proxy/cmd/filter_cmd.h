/* `xmppscope filter`: check a filter expression; and the one way the commands compile the
 * --filter and --write-filter options. */
#ifndef XS_CMD_FILTER_CMD_H
#define XS_CMD_FILTER_CMD_H

#include "filters/filter.h"

/* Runs `xmppscope filter check EXPR...` (the words after `check` joined by blanks); argv[0] is
 * "filter". Prints the normalised form on stdout and returns 0, or prints the error with a caret
 * under its column on stderr and returns 2 (also for a usage error); 1 when out of memory. */
int xs_filter_cmd_main(int argc, char **argv);

/* Compiles `expr`, the value of option `option` ("--filter") of command `cmd` ("proxy"). Returns
 * 0 and sets *out (the caller frees it with xs_filter_free()), or prints
 * "xmppscope CMD: OPTION: column N: MESSAGE", the expression and a caret under the column on
 * stderr and returns 2, the exit status of a usage error (1 when out of memory). */
int xs_filter_cmd_compile(const char *cmd, const char *option, const char *expr, xs_filter **out);

#endif
