/* Allocation-failure injection for the unit tests.
 *
 * fa_install() routes our allocator hook (inspect/alloc.h) and libxml2's (xmlMemSetup) through
 * one counter; with FA_OPENSSL defined, OpenSSL's (CRYPTO_set_mem_functions) too. fa_arm(n) makes
 * the nth allocation from then on fail, once (counting our hook's alone, or the libraries' too);
 * fa_arm(0, ...) fails none. The counting allocator only
 * wraps libc's, so memory allocated before fa_install() may be freed through it. Call
 * fa_install() first thing in main(), before libxml2 or OpenSSL allocates anything. */
#ifndef XS_TESTS_FAILALLOC_H
#define XS_TESTS_FAILALLOC_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/xmlmemory.h>

#include "inspect/alloc.h"

#ifdef FA_OPENSSL
#include <openssl/crypto.h>
#endif

static struct {
    unsigned long count;   /* allocations since fa_arm() */
    unsigned long fail_at; /* the one to fail, 1-based; 0 for none */
    bool failed;           /* it was reached and failed */
    bool paused;           /* the test's own work: neither counted nor failed */
    bool ours_only;        /* count only our allocator hook's allocations, not the libraries' */
    bool failed_ours;      /* the one that failed was ours */
} fa;

static bool fa_fail_any(bool ours)
{
    if (fa.paused || (fa.ours_only && !ours) || ++fa.count != fa.fail_at)
        return false;
    fa.failed = true;
    fa.failed_ours = ours;
    return true;
}

static void *fa_malloc(size_t n)
{
    return fa_fail_any(true) ? NULL : malloc(n);
}

static void *fa_realloc(void *p, size_t n)
{
    return fa_fail_any(true) ? NULL : realloc(p, n);
}

static void *fa_lib_malloc(size_t n)
{
    return fa_fail_any(false) ? NULL : malloc(n);
}

static void *fa_lib_realloc(void *p, size_t n)
{
    return fa_fail_any(false) ? NULL : realloc(p, n);
}

static char *fa_xml_strdup(const char *s)
{
    return fa_fail_any(false) ? NULL : strdup(s);
}

#ifdef FA_OPENSSL
static void *fa_ossl_malloc(size_t n, const char *file, int line)
{
    (void)file, (void)line;
    return fa_lib_malloc(n);
}

static void *fa_ossl_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file, (void)line;
    return fa_lib_realloc(p, n);
}

static void fa_ossl_free(void *p, const char *file, int line)
{
    (void)file, (void)line;
    free(p);
}
#endif

/* Returns 0, or -1 when a library had allocated already and refused the new functions. */
static int fa_install(void)
{
    static const xs_allocator a = {fa_malloc, fa_realloc, free};

    xs_alloc_set(&a);
    if (xmlMemSetup(free, fa_lib_malloc, fa_lib_realloc, fa_xml_strdup) != 0)
        return -1;
#ifdef FA_OPENSSL
    if (CRYPTO_set_mem_functions(fa_ossl_malloc, fa_ossl_realloc, fa_ossl_free) != 1)
        return -1;
#endif
    return 0;
}

/* Arms the nth allocation to fail: of ours alone (`ours_only`), or of ours and the libraries'. */
static void fa_arm(unsigned long n, bool ours_only)
{
    fa.ours_only = ours_only;
    fa.count = 0;
    fa.fail_at = n;
    fa.failed = false;
    fa.failed_ours = false;
}

#endif
