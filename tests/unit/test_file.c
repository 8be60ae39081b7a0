/* Unit tests of proxy/file.c: files opened as ssh's StrictModes would have them.
 *
 * Every case works in a fresh directory under $XS_TEST_TMP (or /tmp), mode 0700, removed
 * afterwards. A FIFO must be refused without waiting for a peer: an alarm turns a hang into a
 * failure. The owner checks need a file of another user, which only root can make: they are
 * skipped for anybody else. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/unit/tmpdir.h"

#include "inspect/error.h"
#include "proxy/file.h"

#define NOBODY 65534

static int setup(void **state)
{
    /* A hang on a FIFO ends the test run instead of the CI job. */
    alarm(20);
    return tmpdir_setup(state, "test_file");
}

static int teardown(void **state)
{
    alarm(0);
    return tmpdir_teardown(state);
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

/* The diagnostics of the last call, as every call below passes it. */
static xs_diag diag;

static void assert_error_has(const char *a, const char *b)
{
    const char *e = diag.text;
    if (strstr(e, a) == NULL || (b != NULL && strstr(e, b) == NULL))
        fail_msg("error \"%s\" lacks \"%s\"%s%s", e, a, b ? " or " : "", b ? b : "");
}

static void test_file_append_creates_0600_and_appends(void **state)
{
    struct fixture *f = *state;
    char path[600];
    struct stat st;
    int fd = -1, others;
    mode_t old = umask(0);

    path_in(path, sizeof(path), f->dir, "log");
    assert_int_equal(xs_file_open_append(path, "--write", &fd, &others, &diag), 0);
    umask(old);
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(others, 0);
    assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0); /* blocking again */
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(write(fd, "a\n", 2), 2);
    close(fd);
    assert_int_equal(xs_file_open_append(path, "--write", &fd, &others, &diag), 0);
    assert_int_equal(write(fd, "b\n", 2), 2);
    close(fd);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 4);

    /* A file its owner made readable by others is used: the caller warns. */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(xs_file_open_append(path, "--write", &fd, &others, &diag), 0);
    assert_int_equal(others, 1);
    close(fd);
}

/* Only root can make a device node, so none can have been planted: /dev/null and /dev/full
 * (root's, writable by all) are written to as they are. Reading the CA from one is refused. */
static void test_file_append_accepts_character_device(void **state)
{
    int fd = -1, others = 1;
    (void)state;

    assert_int_equal(xs_file_open_append("/dev/null", "--write", &fd, &others, &diag), 0);
    assert_int_equal(others, 0);
    assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    close(fd);
    assert_int_equal(xs_file_open_read("/dev/null", "the CA certificate", 0, &fd, &diag),
                     XS_EINVAL);
    assert_error_has("a character device, not a regular file", NULL);
}

static void test_file_append_refuses_symlink(void **state)
{
    struct fixture *f = *state;
    char target[600], link_path[600], dangling[600], missing[600];
    struct stat st;
    int fd = 7, others;

    path_in(target, sizeof(target), f->dir, "target");
    path_in(link_path, sizeof(link_path), f->dir, "k");
    path_in(dangling, sizeof(dangling), f->dir, "dangling");
    path_in(missing, sizeof(missing), f->dir, "missing");
    write_text(target, "", 0600);
    assert_int_equal(symlink(target, link_path), 0);
    assert_int_equal(xs_file_open_append(link_path, "--keylog", &fd, &others, &diag), XS_EINVAL);
    assert_int_equal(fd, -1);
    assert_error_has("refusing --keylog ", "it is a symbolic link");
    assert_error_has("give the real path", link_path);

    /* A link to nowhere is not followed to create its target. */
    assert_int_equal(symlink(missing, dangling), 0);
    assert_int_equal(xs_file_open_append(dangling, "SSLKEYLOGFILE", &fd, &others, &diag),
                     XS_EINVAL);
    assert_error_has("refusing SSLKEYLOGFILE ", "symbolic link");
    assert_int_equal(lstat(missing, &st), -1);
    assert_int_equal(errno, ENOENT);
}

static void test_file_fifo_refused_without_hang(void **state)
{
    struct fixture *f = *state;
    char path[600];
    int fd = 7, others, reader;

    path_in(path, sizeof(path), f->dir, "fifo");
    assert_int_equal(mkfifo(path, 0600), 0);
    /* No reader: opening to write would block without O_NONBLOCK. */
    assert_int_equal(xs_file_open_append(path, "--write", &fd, &others, &diag), XS_EINVAL);
    assert_error_has("a FIFO (named pipe), not a regular file", path);
    /* With a reader the open succeeds; fstat() refuses it. */
    reader = open(path, O_RDONLY | O_NONBLOCK);
    assert_true(reader >= 0);
    assert_int_equal(xs_file_open_append(path, "--write", &fd, &others, &diag), XS_EINVAL);
    assert_error_has("a FIFO (named pipe), not a regular file", NULL);
    close(reader);
    /* Opening to read would block until a writer comes. */
    assert_int_equal(xs_file_open_read(path, "the CA certificate", 0, &fd, &diag), XS_EINVAL);
    assert_error_has("refusing the CA certificate ", "a FIFO (named pipe)");
    assert_int_equal(fd, -1);
}

static void test_file_refuses_directory_and_missing_parent(void **state)
{
    struct fixture *f = *state;
    char path[600];
    int fd, others;

    assert_int_equal(xs_file_open_append(f->dir, "--write", &fd, &others, &diag), XS_EINVAL);
    assert_error_has("a directory, not a regular file", NULL);
    path_in(path, sizeof(path), f->dir, "no/such/dir/log");
    assert_int_equal(xs_file_open_append(path, "--write", &fd, &others, &diag), XS_EIO);
    assert_error_has("cannot open --write ", strerror(ENOENT));
}

static void test_file_refuses_writable_by_others(void **state)
{
    struct fixture *f = *state;
    char path[600];
    int fd, others;

    path_in(path, sizeof(path), f->dir, "k");
    write_text(path, "", 0620);
    assert_int_equal(xs_file_open_append(path, "--keylog", &fd, &others, &diag), XS_EINVAL);
    assert_error_has("writable by group or others (mode 0620)", "chmod go-w");
    assert_int_equal(chmod(path, 0602), 0);
    assert_int_equal(xs_file_open_read(path, "the CA certificate", 0, &fd, &diag), XS_EINVAL);
    assert_error_has("writable by group or others (mode 0602)", NULL);
}

static void test_file_refuses_hard_link(void **state)
{
    struct fixture *f = *state;
    char path[600], other[600];
    int fd, others;

    path_in(other, sizeof(other), f->dir, "authorized_keys");
    path_in(path, sizeof(path), f->dir, "keylog");
    write_text(other, "ssh-ed25519 AAAA\n", 0600);
    assert_int_equal(link(other, path), 0);
    assert_int_equal(xs_file_open_append(path, "--keylog", &fd, &others, &diag), XS_EINVAL);
    assert_error_has("has 2 hard links", "one name");
    assert_int_equal(xs_file_open_read(path, "the CA key", 1, &fd, &diag), XS_EINVAL);
    assert_error_has("has 2 hard links", NULL);
}

static void test_file_read_secret_mode(void **state)
{
    struct fixture *f = *state;
    char path[600];
    int fd = -1;

    path_in(path, sizeof(path), f->dir, "ca.key");
    write_text(path, "key", 0640);
    assert_int_equal(xs_file_open_read(path, "the CA key", 1, &fd, &diag), XS_EINVAL);
    assert_error_has("accessible by group or others (mode 0640)", "chmod 600");
    /* The certificate next to it may be read by all. */
    assert_int_equal(xs_file_open_read(path, "the CA certificate", 0, &fd, &diag), 0);
    close(fd);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(xs_file_open_read(path, "the CA key", 1, &fd, &diag), 0);
    assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    close(fd);
}

static void test_file_refuses_other_owner(void **state)
{
    struct fixture *f = *state;
    char path[600], dir[600];
    int fd, others;

    if (geteuid() != 0)
        skip(); /* only root can give a file away */
    path_in(path, sizeof(path), f->dir, "k");
    write_text(path, "", 0600);
    assert_int_equal(chown(path, NOBODY, NOBODY), 0);
    assert_int_equal(xs_file_open_append(path, "--keylog", &fd, &others, &diag), XS_EINVAL);
    assert_error_has("it belongs to uid 65534, not to you (uid 0)", "give a path of your own");
    assert_int_equal(xs_file_open_read(path, "the CA key", 1, &fd, &diag), XS_EINVAL);
    assert_error_has("belongs to uid 65534", NULL);

    path_in(dir, sizeof(dir), f->dir, "d");
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(chown(dir, NOBODY, NOBODY), 0);
    assert_int_equal(xs_file_check_dir(dir, "the CA directory", &diag), XS_EINVAL);
    assert_error_has("belongs to uid 65534", "put files of their choosing in it");
}

static void test_file_check_dir(void **state)
{
    struct fixture *f = *state;
    char dir[600], link_path[600], file[600], missing[600];

    path_in(dir, sizeof(dir), f->dir, "ca");
    path_in(link_path, sizeof(link_path), f->dir, "ca-link");
    path_in(file, sizeof(file), f->dir, "file");
    path_in(missing, sizeof(missing), f->dir, "missing");
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(xs_file_check_dir(dir, "the CA directory", &diag), 0);
    assert_int_equal(chmod(dir, 0755), 0);
    assert_int_equal(xs_file_check_dir(dir, "the CA directory", &diag), 0);

    assert_int_equal(chmod(dir, 0777), 0);
    assert_int_equal(xs_file_check_dir(dir, "the CA directory", &diag), XS_EINVAL);
    assert_error_has("writable by group or others (mode 0777)", "chmod go-w");
    assert_int_equal(chmod(dir, 01777), 0); /* sticky like /tmp: others still create files */
    assert_int_equal(xs_file_check_dir(dir, "the CA directory", &diag), XS_EINVAL);
    assert_int_equal(chmod(dir, 0770), 0);
    assert_int_equal(xs_file_check_dir(dir, "the CA directory", &diag), XS_EINVAL);
    assert_int_equal(chmod(dir, 0700), 0);

    assert_int_equal(symlink(dir, link_path), 0);
    assert_int_equal(xs_file_check_dir(link_path, "the CA directory", &diag), XS_EINVAL);
    assert_error_has("refusing the CA directory ", "it is a symbolic link");

    write_text(file, "", 0600);
    assert_int_equal(xs_file_check_dir(file, "the CA directory", &diag), XS_EINVAL);
    assert_error_has("it is a regular file, not a directory", NULL);
    assert_int_equal(xs_file_check_dir(missing, "the CA directory", &diag), XS_EIO);
    assert_error_has(strerror(ENOENT), missing);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_file_append_creates_0600_and_appends, setup, teardown),
        cmocka_unit_test(test_file_append_accepts_character_device),
        cmocka_unit_test_setup_teardown(test_file_append_refuses_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_fifo_refused_without_hang, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_refuses_directory_and_missing_parent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_file_refuses_writable_by_others, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_refuses_hard_link, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_read_secret_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_refuses_other_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_check_dir, setup, teardown),
    };
    return cmocka_run_group_tests_name("file", tests, NULL, NULL);
}
