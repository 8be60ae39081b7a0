/* The pure parts of finding a server: SRV order, domain names, --allow-domain. See resolve.h. */
#include "proxy/resolve.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static uint32_t default_random(void *ctx, uint32_t bound)
{
    (void)ctx;
    return bound == 0 ? 0 : (uint32_t)((unsigned long)random() % ((unsigned long)bound + 1));
}

static void swap(xs_srv_target *a, xs_srv_target *b)
{
    xs_srv_target t = *a;
    *a = *b;
    *b = t;
}

/* Sorts by priority (insertion sort: stable, n is small), weight 0 first within a priority so
 * that the running sums of RFC 2782 put them first. */
static void sort_by_priority(xs_srv_target *t, size_t n)
{
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0; j--) {
            const xs_srv_target *a = &t[j - 1], *b = &t[j];
            bool after =
                a->prio > b->prio || (a->prio == b->prio && a->weight > 0 && b->weight == 0);
            if (!after)
                break;
            swap(&t[j - 1], &t[j]);
        }
}

/* RFC 2782's selection within one priority, t[0..n): repeatedly draw a number in [0, sum of the
 * weights left] and take the first target whose running sum reaches it. */
static void order_group(xs_srv_target *t, size_t n, xs_srv_random rnd, void *ctx)
{
    for (size_t first = 0; first + 1 < n; first++) {
        uint32_t sum = 0;
        for (size_t i = first; i < n; i++)
            sum += t[i].weight;
        uint32_t draw = rnd(ctx, sum), running = 0;
        size_t pick = n - 1;
        for (size_t i = first; i < n; i++) {
            running += t[i].weight;
            if (running >= draw) {
                pick = i;
                break;
            }
        }
        /* The one picked goes next; the rest keep their order (zero weights first). */
        xs_srv_target chosen = t[pick];
        memmove(&t[first + 1], &t[first], (pick - first) * sizeof(*t));
        t[first] = chosen;
    }
}

void xs_srv_order(xs_srv_target *t, size_t n, xs_srv_random rnd, void *ctx)
{
    if (rnd == NULL)
        rnd = default_random;
    sort_by_priority(t, n);
    size_t start = 0;
    while (start < n) {
        size_t end = start + 1;
        while (end < n && t[end].prio == t[start].prio)
            end++;
        order_group(t + start, end - start, rnd, ctx);
        start = end;
    }
}

int xs_dns_name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > XS_DNS_NAME_MAX)
        return 0;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch == '.') {
            if (label == 0 || name[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!(isalnum(ch) || ch == '-' || ch == '_') || ch > 127)
            return 0;
        if (ch == '-' && label == 0)
            return 0;
        if (++label > 63)
            return 0;
    }
    return name[len - 1] != '-';
}

/* Compares a[0..n) with b[0..n) without regard to ASCII case. */
static int same_text(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i]))
            return 0;
    return 1;
}

int xs_domain_match(const char *pattern, const char *domain)
{
    size_t pl = strlen(pattern), dl = strlen(domain);
    if (pl > 0 && pattern[pl - 1] == '.')
        pl--;
    if (dl > 0 && domain[dl - 1] == '.')
        dl--;
    if (pl >= 2 && pattern[0] == '*' && pattern[1] == '.') {
        /* "*.example.test": a name that ends in ".example.test" and has something before it. */
        size_t sl = pl - 1; /* ".example.test" */
        return dl > sl && same_text(domain + dl - sl, pattern + 1, sl);
    }
    return pl == dl && pl > 0 && same_text(pattern, domain, pl);
}
