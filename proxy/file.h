/* Files that hold secrets or decide what clients trust, opened as ssh's StrictModes would have
 * them: the --write log, the TLS key log (--keylog, SSLKEYLOGFILE), the CA directory and its
 * ca.crt and ca.key.
 *
 * A local user must not be able to make xmppscope write secrets into a file they can read, or
 * plant the CA that users are told to trust. So a file is never reached through a symbolic link
 * (O_NOFOLLOW), never blocks the program (O_NONBLOCK: a FIFO put in its place is refused, not
 * waited on), and after opening, fstat() must show a regular file that belongs to the effective
 * user and that group and others cannot write. A directory is checked with lstat() the same way.
 *
 * Every refusal returns XS_EINVAL, a configuration error (exit status 2), with a message in
 * the caller's xs_diag that names the file as the user gave it, the path, the cause and the fix:
 *   refusing --keylog /tmp/k: it is a symbolic link (xmppscope never follows links for the files
 *   it writes); give the real path
 * A file that cannot be opened at all (no such directory, no permission, out of descriptors)
 * returns XS_EIO, as any other file would.
 */
#ifndef XS_PROXY_FILE_H
#define XS_PROXY_FILE_H

#include "inspect/error.h"

/* Opens `path` to append to it, creating it with mode 0600 when missing. A character device
 * (/dev/null, /dev/full) is accepted whatever its owner and mode: only root can make one. `what`
 * names the file in messages as the user gave it ("--keylog", "SSLKEYLOGFILE", "--write"). On
 * success *fd is a blocking, close-on-exec descriptor the caller closes, and *others_read is 1 when
 * group or others may read the file (the caller may warn: it was made that way by its owner).
 * Returns 0, XS_EINVAL (refused) or XS_EIO; *diag says why. */
int xs_file_open_append(const char *path, const char *what, int *fd, int *others_read,
                        xs_diag *diag);

/* Opens `path` to write it from the start (a capture file, --pcap), with the checks of
 * xs_file_open_append(): created with mode 0600 when missing; an existing regular file is
 * emptied only after it passed them (never someone else's file, nor one reached through a link).
 * A character device is written to as it is. Returns as xs_file_open_append(). */
int xs_file_open_truncate(const char *path, const char *what, int *fd, int *others_read,
                          xs_diag *diag);

/* Opens an existing file to read it: no link followed, no blocking; a regular file of the
 * effective user that group and others cannot write, and, when `secret` != 0, cannot read
 * either. On success *fd is a blocking, close-on-exec descriptor the caller closes. Returns 0,
 * XS_EINVAL (refused) or XS_EIO (missing, unreadable); *diag says why. */
int xs_file_open_read(const char *path, const char *what, int secret, int *fd, xs_diag *diag);

/* Checks an existing directory that holds secrets: not a symbolic link, a directory, owned by
 * the effective user, not writable by group or others. Returns 0, XS_EINVAL (refused) or XS_EIO
 * (missing, cannot be examined); *diag says why. */
int xs_file_check_dir(const char *path, const char *what, xs_diag *diag);

#endif
