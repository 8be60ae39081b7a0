/* The client's end of the benchmark's XMPP streams. See bench_stream.h. */
#include "bench_stream.h"

#include "bench_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t bn_stream_header(char *out, size_t cap, const char *domain, const char *attrs)
{
    int n = snprintf(out, cap,
                     "<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' "
                     "xmlns:stream='http://etherx.jabber.org/streams' version='1.0' "
                     "xml:lang='en'%s>",
                     domain, attrs);
    if (n < 0)
        return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

int bn_el_is(const char *el, size_t n, const char *name)
{
    size_t k = strlen(name);
    return n > k + 1 && memcmp(el + 1, name, k) == 0 &&
           (el[k + 1] == ' ' || el[k + 1] == '>' || el[k + 1] == '/');
}

int bn_el_is_count(const char *el, size_t n)
{
    return bn_el_is(el, n, "count") && memmem(el, n, BN_NS_BENCH, strlen(BN_NS_BENCH)) != NULL;
}

int bn_count_read(const char *el, size_t n, long long *stanzas, long long *bytes, char *text,
                  size_t cap)
{
    size_t k = n < cap - 1 ? n : cap - 1;
    memcpy(text, el, k);
    text[k] = 0;
    const char *st = strstr(text, "stanzas='"), *by = strstr(text, "bytes='");
    if (st == NULL || by == NULL)
        return -1;
    *stanzas = strtoll(st + 9, NULL, 10);
    *bytes = strtoll(by + 7, NULL, 10);
    return 0;
}

int bn_stream_starttls(bn_conn *c, bx *scan, uint64_t *base, struct ssl_ctx_st *ctx,
                       const char *domain)
{
    bx_reset(scan);
    *base = 0;
    return bn_conn_start_tls(c, ctx, 0, domain);
}
