/* A fresh, empty directory per test case, under $XS_TEST_TMP (ctest sets it) or /tmp, removed
 * with everything in it afterwards; shared by the unit suites that work on files. Include after
 * <cmocka.h>. */
#ifndef XS_TESTS_UNIT_TMPDIR_H
#define XS_TESTS_UNIT_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

struct fixture {
    char dir[512]; /* a fresh, empty directory */
};

static int tmpdir_rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

/* Makes the directory, named after the suite (`prefix`). Returns 0 or -1. */
static int tmpdir_setup(void **state, const char *prefix)
{
    const char *base = getenv("XS_TEST_TMP");
    struct fixture *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    mkdir(base, 0700); /* ctest's XS_TEST_TMP may not exist yet */
    snprintf(f->dir, sizeof(f->dir), "%s/%s.XXXXXX", base, prefix);
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int tmpdir_teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->dir, tmpdir_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* buf = dir/name, which must fit. */
static void path_in(char *buf, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < cap);
}

#endif
