/* The console: what the proxy prints on standard output, written by a thread of its own so that
 * a slow terminal or a pipe nobody reads never stops the traffic.
 *
 * Observers must not block (inspect/observer.h), and write(2) to a terminal or a pipe does when
 * the reader is slow: a pager left on one screen, a terminal scrolled back, `| grep` behind a
 * stuck consumer. So the console printer hands each event's lines to xs_console_write(), which
 * only copies them into a bounded queue under a mutex; a writer thread takes what is queued and
 * writes it. When the queue is full, whole events are dropped (never part of one) and counted;
 * once the writer has caught up, the count is said on standard error once, with where the full
 * record is. The --write log is not behind this: it is a file, and it keeps everything; nor is
 * a standard output that is a regular file, which takes each line at once.
 */
#ifndef XS_PROXY_CONSOLE_H
#define XS_PROXY_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

/* What the queue may hold before events are dropped. */
#define XS_CONSOLE_QUEUE_MAX ((size_t)8 << 20)

typedef struct xs_console xs_console;

/* Starts a console writing to file descriptor fd (which stays the caller's), holding at most cap
 * bytes not yet written (0: XS_CONSOLE_QUEUE_MAX). Returns 0 or XS_ENOMEM / XS_EIO (no thread). */
int xs_console_new(int fd, size_t cap, xs_console **out);

/* Queues one event's bytes for the writer; never blocks on the descriptor. When they do not fit,
 * they are dropped whole and counted. Returns 0 (queued or dropped: a console's loss is not an
 * error of the session) or XS_EIO once writing has failed for good (EPIPE: nobody reads). The
 * signature is that of xs_print_options.sink, whose ctx is the console. */
int xs_console_write(void *console, const char *data, size_t len);

/* Events dropped so far. */
uint64_t xs_console_dropped(const xs_console *c);

/* Waits at most wait_ms for the writer to write what is queued, then stops it and frees the
 * console. NULL is allowed. Returns the number of bytes not known to be written: those still
 * queued, and those of a write(2) that did not return (then the writer thread, blocked, is left
 * to the end of the process). */
size_t xs_console_free(xs_console *c, unsigned wait_ms);

#endif
