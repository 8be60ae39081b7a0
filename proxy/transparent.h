/* Transparent mode: connections the kernel redirected to a listener (nftables/iptables REDIRECT
 * or DNAT, which keep the original destination in conntrack; TPROXY, which keeps it as the
 * socket's own address). */
#ifndef XS_PROXY_TRANSPARENT_H
#define XS_PROXY_TRANSPARENT_H

#include <stdbool.h>

#include <sys/socket.h>

/* The destination the client of the connected socket `fd` dialled: SO_ORIGINAL_DST (IPv4) or
 * IP6T_SO_ORIGINAL_DST (IPv6), else the socket's own address. *redirected is false when that is
 * the socket's own address, i.e. the client connected to the listener itself: going there would
 * loop. Returns 0 or a negative errno-style libuv code. */
int xs_transparent_dst(int fd, struct sockaddr_storage *out, bool *redirected);

#endif
