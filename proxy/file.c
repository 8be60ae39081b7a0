/* Opening files the way ssh's StrictModes checks them (see file.h). */
#include "proxy/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "inspect/error.h"

/* "a FIFO (named pipe)" and so on, for "it is %s, not a regular file". */
static const char *kind(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISFIFO(mode))
        return "a FIFO (named pipe)";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISLNK(mode))
        return "a symbolic link";
    if (S_ISREG(mode))
        return "a regular file";
    return "a special file";
}

/* Why open() failed: a refusal (XS_EINVAL) when the file is what it must not be (a link, a FIFO
 * without a reader, a directory), else XS_EIO as for any file that cannot be opened.
 * `verb` says what xmppscope does with such files: "writes" or "trusts". */
static int open_failed(const char *path, const char *what, const char *verb, int err, xs_diag *diag)
{
    struct stat st;
    int have = lstat(path, &st) == 0;

    if (have && S_ISLNK(st.st_mode)) {
        (void)xs_diag_set(
            diag, 0,
            "refusing %s %s: it is a symbolic link (xmppscope never follows links for the "
            "files it %s); give the real path",
            what, path, verb);
        return XS_EINVAL;
    }
    if (have && !S_ISREG(st.st_mode) && (err == ENXIO || err == EISDIR || err == ENODEV)) {
        (void)xs_diag_set(
            diag, 0,
            "refusing %s %s: it is %s, not a regular file; give the path of a regular file", what,
            path, kind(st.st_mode));
        return XS_EINVAL;
    }
    (void)xs_diag_set(diag, 0,
                      "cannot open %s %s: %s; check the path and the permissions of its directory",
                      what, path, strerror(err));
    return XS_EIO;
}

/* The checks made on what was opened (or, for a directory, found by lstat). `secret`: group and
 * others must not read it either. */
static int check_stat(const struct stat *st, const char *path, const char *what, int want_dir,
                      int secret, xs_diag *diag)
{
    uid_t me = geteuid();
    unsigned mode = (unsigned)(st->st_mode & 07777);

    if (S_ISLNK(st->st_mode)) {
        (void)xs_diag_set(
            diag, 0,
            "refusing %s %s: it is a symbolic link (xmppscope never follows links for the "
            "files it trusts); give the real path",
            what, path);
        return XS_EINVAL;
    }
    if (want_dir ? !S_ISDIR(st->st_mode) : !S_ISREG(st->st_mode)) {
        (void)xs_diag_set(diag, 0, "refusing %s %s: it is %s, not %s; give the path of %s", what,
                          path, kind(st->st_mode), want_dir ? "a directory" : "a regular file",
                          want_dir ? "a directory" : "a regular file");
        return XS_EINVAL;
    }
    if (st->st_uid != me) {
        (void)xs_diag_set(
            diag, 0,
            "refusing %s %s: it belongs to uid %lu, not to you (uid %lu), so its owner "
            "could %s; remove it, or give a path of your own",
            what, path, (unsigned long)st->st_uid, (unsigned long)me,
            want_dir ? "put files of their choosing in it" : "read or change it");
        return XS_EINVAL;
    }
    /* A second name for one of our own files (made by another user where the kernel does not
     * protect hard links) would have us append secrets to whatever file it names. */
    if (!want_dir && st->st_nlink > 1) {
        (void)xs_diag_set(
            diag, 0,
            "refusing %s %s: it has %lu hard links, so it may be another file of yours under "
            "a second name; give the path of a file with one name",
            what, path, (unsigned long)st->st_nlink);
        return XS_EINVAL;
    }
    if ((mode & 022) != 0) {
        (void)xs_diag_set(
            diag, 0,
            "refusing %s %s: it is writable by group or others (mode %04o), so they could "
            "change what xmppscope %s; run `chmod go-w %s`",
            what, path, mode, want_dir ? "keeps in it" : "reads or writes", path);
        return XS_EINVAL;
    }
    if (secret && (mode & 077) != 0) {
        (void)xs_diag_set(
            diag, 0,
            "refusing %s %s: it is accessible by group or others (mode %04o); run `chmod 600 "
            "%s`, and replace it if others may have read it",
            what, path, mode, path);
        return XS_EINVAL;
    }
    return 0;
}

/* Checks the open descriptor and makes it blocking again: O_NONBLOCK was only there so that
 * opening a FIFO could not hang. `chardev_ok`: a character device passes (see below). */
static int check_fd(int fd, const char *path, const char *what, int secret, int chardev_ok,
                    xs_diag *diag)
{
    struct stat st;
    int flags;
    int rc;

    if (fstat(fd, &st) != 0) {
        (void)xs_diag_set(diag, 0, "cannot examine %s %s: %s", what, path, strerror(errno));
        return XS_EIO;
    }
    /* A character device (/dev/null, /dev/full) is written to as it is: only root can make one,
     * so no other user can have planted it, and the system's are shared by design. */
    rc = chardev_ok && S_ISCHR(st.st_mode) ? 0 : check_stat(&st, path, what, 0, secret, diag);
    if (rc != 0)
        return rc;
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        (void)xs_diag_set(diag, 0, "cannot use %s %s: %s", what, path, strerror(errno));
        return XS_EIO;
    }
    return 0;
}

/* Opens a file xmppscope writes, appending or (after the checks) from the start. */
static int open_write(const char *path, const char *what, int append, int *fd, int *others_read,
                      xs_diag *diag)
{
    struct stat st;
    int f;
    int rc;

    *fd = -1;
    *others_read = 0;
    f = open(path,
             O_WRONLY | (append ? O_APPEND : 0) | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
                 O_CLOEXEC,
             0600);
    if (f < 0)
        return open_failed(path, what, "writes", errno, diag);
    rc = check_fd(f, path, what, 0, 1, diag);
    if (rc == 0 && fstat(f, &st) == 0) {
        *others_read = S_ISREG(st.st_mode) && (st.st_mode & 044) != 0;
        /* Emptied only now that it is known to be ours (O_TRUNC would have come first). */
        if (!append && S_ISREG(st.st_mode) && ftruncate(f, 0) != 0) {
            (void)xs_diag_set(diag, 0, "cannot empty %s %s: %s", what, path, strerror(errno));
            rc = XS_EIO;
        }
    }
    if (rc != 0) {
        close(f);
        return rc;
    }
    *fd = f;
    return 0;
}

int xs_file_open_append(const char *path, const char *what, int *fd, int *others_read,
                        xs_diag *diag)
{
    return open_write(path, what, 1, fd, others_read, diag);
}

int xs_file_open_truncate(const char *path, const char *what, int *fd, int *others_read,
                          xs_diag *diag)
{
    return open_write(path, what, 0, fd, others_read, diag);
}

int xs_file_open_read(const char *path, const char *what, int secret, int *fd, xs_diag *diag)
{
    int f;
    int rc;

    *fd = -1;
    f = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (f < 0)
        return open_failed(path, what, "trusts", errno, diag);
    rc = check_fd(f, path, what, secret, 0, diag);
    if (rc != 0) {
        close(f);
        return rc;
    }
    *fd = f;
    return 0;
}

int xs_file_check_dir(const char *path, const char *what, xs_diag *diag)
{
    struct stat st;

    if (lstat(path, &st) != 0) {
        int err = errno;
        (void)xs_diag_set(diag, 0, "cannot use %s %s: %s", what, path, strerror(err));
        return XS_EIO;
    }
    return check_stat(&st, path, what, 1, 0, diag);
}
