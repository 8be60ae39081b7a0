/* The original destination of a redirected connection. See transparent.h. */
#include "proxy/transparent.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <uv.h>

/* From linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h, which clash with the C
 * library's netinet/in.h when both are included. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
}

int xs_transparent_dst(int fd, struct sockaddr_storage *out, bool *redirected)
{
    struct sockaddr_storage local;
    socklen_t len = sizeof(local);
    memset(&local, 0, sizeof(local));
    if (getsockname(fd, (struct sockaddr *)&local, &len) != 0)
        return uv_translate_sys_error(errno);
    memset(out, 0, sizeof(*out));
    int rc = -1;
    bool mapped = local.ss_family == AF_INET6 &&
                  IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&local)->sin6_addr);
    if (local.ss_family == AF_INET || mapped) {
        /* An IPv4 client, on an IPv4 or a dual-stack listener. */
        len = sizeof(struct sockaddr_in);
        rc = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, out, &len);
        if (rc == 0 && mapped) {
            /* Compare like with like: the local address as IPv4. */
            struct sockaddr_in6 l6 = *(struct sockaddr_in6 *)&local;
            struct sockaddr_in *l4 = (struct sockaddr_in *)&local;
            memset(&local, 0, sizeof(local));
            l4->sin_family = AF_INET;
            l4->sin_port = l6.sin6_port;
            memcpy(&l4->sin_addr, &l6.sin6_addr.s6_addr[12], 4);
        }
    } else if (local.ss_family == AF_INET6) {
        len = sizeof(struct sockaddr_in6);
        rc = getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, out, &len);
    }
    if (rc != 0) /* no conntrack entry: TPROXY, or no redirection at all */
        *out = local;
    *redirected = !same_addr(out, &local);
    return 0;
}
